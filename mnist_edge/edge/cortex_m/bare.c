/* bare.c: the smallest firmware around a generated C model, linked only to be measured: its flash is what
   a product's firmware holds for the model (weights, scales, the model's code and the C library routines
   it calls, with the startup code and vector table any firmware has); its .data and .bss are the model's
   static RAM. The model's stack is measured by runner.c (painted). Never run. */
#include "mnist_edge_model.h"

static float image[MNIST_EDGE_INPUT_SIZE] __attribute__((section(".io")));

int main(void)
{
    return mnist_edge_predict_normalized(image, (float *)0);
}
