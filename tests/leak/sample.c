/* For leak_sample: leaks a known amount in many blocks of many sizes, keeps a known amount
 * reachable, and frees much more. Prints the true totals for the driver to compare.
 * "large-roots" (run with leak_sample=1M): 20 blocks of 1 MiB (always tracked) reachable only
 * through 40 KiB holders (large blocks, beyond the slab sizes, untracked but for about 1 in 26):
 * the scan must read untracked large blocks as roots, or call the 1 MiB blocks lost. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leak_common.h"

static uint64_t rng = 88172645463325252ull;
static size_t rnd(size_t lo, size_t hi)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return lo + (size_t)(rng % (hi - lo + 1));
}

void **volatile g_kept;

NOINLINE void lk_sample_leak(size_t n) { touch(malloc(n), n < 64 ? n : 64); }

NOINLINE void lk_sample_big(size_t n) { touch(malloc(n), 64); }

NOINLINE void *keep_sample(size_t n)
{
    void *p = malloc(n);
    touch(p, n < 64 ? n : 64);
    return p;
}

NOINLINE void churn(size_t n)
{
    void *p = malloc(n);
    touch(p, n < 64 ? n : 64);
    free(p);
}

NOINLINE void *keep_held(void)
{
    void *p = malloc(1u << 20);
    touch(p, 64);
    return p;
}

void **volatile g_holders[20];

static int large_roots(void)
{
    for (int h = 0; h < 20; h++) {
        void **v = malloc(40 << 10);
        touch(v, 40 << 10);
        v[1000 + h] = keep_held(); /* one pointer, in the middle of the holder */
        g_holders[h] = v;
    }
    scrub_stack();
    printf("large-roots: done\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "large-roots") == 0)
        return large_roots();
    size_t leaked = 0, nleaked = 0, kept = 0, nkept = 20000;
    g_kept = malloc(nkept * sizeof(void *));
    for (size_t i = 0; i < 60000; i++) {
        size_t n = rnd(16, 1200);
        lk_sample_leak(n);
        leaked += n;
        nleaked++;
        if (i < nkept) {
            size_t k = rnd(16, 800);
            g_kept[i] = keep_sample(k);
            kept += k;
        }
        for (int j = 0; j < 4; j++)
            churn(rnd(16, 4000));
    }
    for (int i = 0; i < 4; i++) {
        lk_sample_big(1u << 20);
        leaked += 1u << 20;
        nleaked++;
    }
    scrub_stack();
    printf("leaked_bytes=%zu leaked_blocks=%zu kept_bytes=%zu kept_blocks=%zu\n", leaked, nleaked, kept, nkept);
    return 0;
}
