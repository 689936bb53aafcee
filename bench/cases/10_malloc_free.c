/* malloc_free: malloc+free pairs of one size (the allocator's fast path), and of the realistic
 * size mix (bench_mix_size: many size classes in a row, so class lookup and cache misses count).
 * Each block's first and last byte are written, as a program initialising it would. */
#include <stdlib.h>

#include "bench.h"
#include "util.h"

#define PAIRS 64 /* pairs per benchmark iteration: amortises the loop's own cost */

static void bm_malloc_free(bench_state *st)
{
    size_t size = (size_t)bench_range(st, 0);
    while (bench_keep_running(st)) {
        for (int i = 0; i < PAIRS; i++) {
            void *p = malloc(size);
            if (!p) {
                bench_fail(st, "malloc returned NULL");
                break;
            }
            bench_touch(p, size);
            free(p);
        }
    }
    bench_set_items(st, bench_iterations(st) * PAIRS);
    bench_set_bytes(st, bench_iterations(st) * PAIRS * (int64_t)size);
}

static void def_malloc_free(bench_def *d)
{
    static const int64_t sizes[] = {16,   32,        64,         128,        256,    512,
                                    1024, 4 << 10,   32 << 10,   256 << 10,  1 << 20};
    bench_def_arg_names(d, "size", NULL);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        bench_def_arg(d, sizes[i]);
}
BENCH_CASE("malloc_free", bm_malloc_free, def_malloc_free)

static void bm_malloc_free_mix(bench_state *st)
{
    const uint32_t *mix = bench_mix_table(BENCH_MIX_MASK, 1);
    size_t k = 0;
    int64_t bytes = 0;
    while (bench_keep_running(st)) {
        for (int i = 0; i < PAIRS; i++) {
            size_t size = mix[k++ & BENCH_MIX_MASK];
            void *p = malloc(size);
            if (!p) {
                bench_fail(st, "malloc returned NULL");
                break;
            }
            bench_touch(p, size);
            free(p);
            bytes += (int64_t)size;
        }
    }
    bench_set_items(st, bench_iterations(st) * PAIRS);
    bench_set_bytes(st, bytes);
}
BENCH_CASE("malloc_free_mix", bm_malloc_free_mix, NULL)
