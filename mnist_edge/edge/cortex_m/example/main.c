/* main.c: classify the digits embedded in digits.h with the generated model and print each result through
   semihosting (QEMU, or a debugger); exit status: how many differ from what ONNX Runtime predicted for
   them at export time (0: all agree). */
#include <stdint.h>

#include "digits.h"
#include "mnist_edge_model.h"
#include "semihost.h"

static char *append(char *at, const char *s)
{
    while (*s) *at++ = *s++;
    return at;
}

static char *append_int(char *at, int32_t v)
{
    char digits[12];
    int32_t n = 0;
    if (v < 0) { *at++ = '-'; v = -v; }
    do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) *at++ = digits[--n];
    return at;
}

int main(void)
{
    int32_t i, wrong = 0;
    for (i = 0; i < EXAMPLE_DIGITS; ++i) {
        char line[96], *at = line;
        const int top = mnist_edge_predict(example_pixels[i], 0);
        at = append(at, "image ");
        at = append_int(at, i);
        at = append(at, ": ");
        at = append(at, mnist_edge_class_names[top]);
        at = append(at, top == example_expected[i] ? " (as expected)\n" : " (expected ");
        if (top != example_expected[i]) {
            at = append(at, mnist_edge_class_names[example_expected[i]]);
            at = append(at, ")\n");
            ++wrong;
        }
        *at = 0;
        sh_puts(line);
    }
    return (int)wrong;
}
