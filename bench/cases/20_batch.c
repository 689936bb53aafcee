/* batch_{lifo,fifo,random}: allocate n blocks, then free them all, newest first (LIFO), oldest
 * first (FIFO) or in a fixed random order. Unlike malloc_free, blocks pile up: n=1000 stays in
 * per-thread caches, n=100000 overflows them and exercises refill/flush paths, and FIFO/random
 * order free into slabs/pages that are no longer the "current" one.
 * Arguments: n, size (size:0 = the realistic size mix). */
#include <stdlib.h>

#include "bench.h"
#include "util.h"

enum order { LIFO, FIFO, RANDOM };

static void batch_run(bench_state *st, enum order order)
{
    size_t n = (size_t)bench_range(st, 0);
    size_t fixed = (size_t)bench_range(st, 1);
    void **ptrs = bench_map(n * sizeof *ptrs);
    uint32_t *perm = NULL;
    if (order == RANDOM) {
        perm = bench_map(n * sizeof *perm);
        for (size_t i = 0; i < n; i++)
            perm[i] = (uint32_t)i;
        bench_rng r = bench_rng_seed(20);
        for (size_t i = n - 1; i > 0; i--) {
            size_t j = (size_t)bench_rng_below(&r, i + 1);
            uint32_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
    }
    const uint32_t *mix = bench_mix_table(BENCH_MIX_MASK, 2);
    int64_t bytes = 0;

    while (bench_keep_running(st)) {
        for (size_t i = 0; i < n; i++) {
            size_t size = fixed ? fixed : mix[i & BENCH_MIX_MASK];
            void *p = malloc(size);
            if (!p) {
                bench_fail(st, "malloc returned NULL");
                n = i;
                break;
            }
            bench_touch(p, size);
            ptrs[i] = p;
            bytes += (int64_t)size;
        }
        switch (order) {
        case LIFO:
            for (size_t i = n; i-- > 0;)
                free(ptrs[i]);
            break;
        case FIFO:
            for (size_t i = 0; i < n; i++)
                free(ptrs[i]);
            break;
        case RANDOM:
            for (size_t i = 0; i < n; i++)
                free(ptrs[perm[i]]);
            break;
        }
    }
    bench_set_items(st, bench_iterations(st) * (int64_t)n);
    bench_set_bytes(st, bytes);
    if (!fixed)
        bench_set_label(st, "size mix");
    bench_unmap(ptrs, (size_t)bench_range(st, 0) * sizeof *ptrs);
    bench_unmap(perm, (size_t)bench_range(st, 0) * sizeof *perm);
}

static void bm_batch_lifo(bench_state *st) { batch_run(st, LIFO); }
static void bm_batch_fifo(bench_state *st) { batch_run(st, FIFO); }
static void bm_batch_random(bench_state *st) { batch_run(st, RANDOM); }

static void def_batch(bench_def *d)
{
    bench_def_arg_names(d, "n", "size");
    bench_def_args(d, 1000, 64);
    bench_def_args(d, 100000, 64);
    bench_def_args(d, 1000, 0);
    bench_def_args(d, 100000, 0);
}
BENCH_CASE("batch_lifo", bm_batch_lifo, def_batch)
BENCH_CASE("batch_fifo", bm_batch_fifo, def_batch)
BENCH_CASE("batch_random", bm_batch_random, def_batch)
