/* The program tests/tools/pprof_test.py profiles: 200000 bytes definitely lost at one site
 * (pp_leak_site), 300000 bytes still reachable at another (pp_keep_site), and a little of both
 * elsewhere. Built -O0 with frame pointers so each site is its own function on the stack. */
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline, noipa))

void *volatile pp_kept[3]; /* pp_keep_site's blocks: reachable from .bss */
void *volatile pp_small;   /* pp_small_keep's block */

static void touch(void *p, size_t n)
{
    if (p)
        memset(p, 0x5a, n);
    __asm__ volatile("" : : "r"(p) : "memory");
}

/* 4 blocks of 50000 bytes, every pointer dropped: 200000 bytes definitely lost. */
NOINLINE void pp_leak_site(void)
{
    for (int i = 0; i < 4; i++)
        touch(malloc(50000), 50000);
}

/* 3 blocks of 100000 bytes kept in a global: 300000 bytes still reachable. */
NOINLINE void pp_keep_site(void)
{
    for (int i = 0; i < 3; i++) {
        pp_kept[i] = malloc(100000);
        touch(pp_kept[i], 100000);
    }
}

/* Smaller sites of both kinds, so that the top one has to be picked. */
NOINLINE void pp_small_leak(void) { touch(malloc(3000), 3000); }
NOINLINE void pp_small_keep(void)
{
    pp_small = malloc(5000);
    touch(pp_small, 5000);
}

/* Dead frames below main keep stale copies of dropped pointers; overwrite them. */
NOINLINE void pp_scrub(void)
{
    volatile char buf[64 << 10];
    memset((char *)buf, 0, sizeof(buf));
    __asm__ volatile("" : : "r"(buf) : "memory");
}

int main(void)
{
    pp_leak_site();
    pp_keep_site();
    pp_small_leak();
    pp_small_keep();
    pp_scrub();
    return 0;
}
