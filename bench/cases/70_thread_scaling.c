/* thread_scaling/threads:T, T = 1..N (N = online CPUs, or BENCH_MAX_THREADS): every thread
 * runs the same private workload: a window of 32 live blocks from the realistic size mix, each
 * operation frees the oldest and mallocs a new one. No memory is shared, so an allocator that
 * scales perfectly keeps ns/op(T) = ns/op(1)/T (the driver plots throughput against T).
 * One item = one malloc + one free. */
#include <stdlib.h>

#include "bench.h"
#include "util.h"

#define WINDOW 32
#define OPS 64 /* per benchmark iteration */

static void bm_thread_scaling(bench_state *st)
{
    const uint32_t *mix = bench_mix_table(BENCH_MIX_MASK, 70 + (uint64_t)bench_thread_index(st));
    void *win[WINDOW];
    size_t k = 0;
    for (int i = 0; i < WINDOW; i++) {
        size_t size = mix[k++ & BENCH_MIX_MASK];
        win[i] = malloc(size);
        if (!win[i])
            abort();
        bench_touch(win[i], size);
    }
    while (bench_keep_running(st)) {
        for (int i = 0; i < OPS; i++) {
            size_t size = mix[k & BENCH_MIX_MASK];
            size_t w = k++ & (WINDOW - 1);
            free(win[w]);
            void *p = malloc(size);
            if (!p)
                abort();
            bench_touch(p, size);
            win[w] = p;
        }
    }
    for (int i = 0; i < WINDOW; i++)
        free(win[i]);
    bench_set_items(st, bench_iterations(st) * OPS);
}

static void def_thread_scaling(bench_def *d)
{
    int n = bench_max_threads();
    for (int t = 1; t <= n; t++)
        bench_def_threads(d, t);
}
BENCH_CASE("thread_scaling", bm_thread_scaling, def_thread_scaling)
