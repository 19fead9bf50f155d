/* semihost.h: Arm semihosting (the debugger's file and exit calls, via BKPT 0xAB), which QEMU serves with
   -semihosting-config enable=on,target=native. Enough for a firmware to read its inputs from a host file,
   write its results to another and report an exit status, with no UART driver. */
#ifndef MNIST_EDGE_SEMIHOST_H
#define MNIST_EDGE_SEMIHOST_H

#include <stdint.h>

enum { SH_OPEN = 0x01, SH_CLOSE = 0x02, SH_WRITE0 = 0x04, SH_WRITE = 0x05, SH_READ = 0x06, SH_FLEN = 0x0C,
       SH_EXIT_EXTENDED = 0x20 };
enum { SH_MODE_RB = 1, SH_MODE_WB = 5 };  /* fopen's "rb" and "wb" */

static inline int32_t semihost(int32_t op, const void *arg)
{
    register int32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static inline int32_t sh_strlen(const char *s)
{
    int32_t n = 0;
    while (s[n]) ++n;
    return n;
}

static inline int32_t sh_open(const char *name, int32_t mode)
{
    const uint32_t args[3] = {(uint32_t)name, (uint32_t)mode, (uint32_t)sh_strlen(name)};
    return semihost(SH_OPEN, args);
}

/* Returns the number of bytes NOT transferred (0: all of them), as the semihosting calls do. */
static inline int32_t sh_read(int32_t fd, void *buf, uint32_t n)
{
    const uint32_t args[3] = {(uint32_t)fd, (uint32_t)buf, n};
    return semihost(SH_READ, args);
}

static inline int32_t sh_write(int32_t fd, const void *buf, uint32_t n)
{
    const uint32_t args[3] = {(uint32_t)fd, (uint32_t)buf, n};
    return semihost(SH_WRITE, args);
}

static inline int32_t sh_flen(int32_t fd)
{
    const uint32_t args[1] = {(uint32_t)fd};
    return semihost(SH_FLEN, args);
}

static inline void sh_close(int32_t fd)
{
    const uint32_t args[1] = {(uint32_t)fd};
    (void)semihost(SH_CLOSE, args);
}

static inline void sh_puts(const char *s)
{
    (void)semihost(SH_WRITE0, s);  /* to the debugger's (QEMU's) stdout */
}

/* Ends the emulation with this exit status (ADP_Stopped_ApplicationExit plus a code). */
static inline void sh_exit(int32_t code)
{
    const uint32_t args[2] = {0x20026u, (uint32_t)code};
    for (;;) (void)semihost(SH_EXIT_EXTENDED, args);
}

#endif /* MNIST_EDGE_SEMIHOST_H */
