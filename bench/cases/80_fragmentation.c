/* fragmentation: build a large heap (1 GiB requested, realistic size mix, every page touched),
 * free 90% of it interleaved (every block but each tenth, so the survivors are spread over the
 * whole heap), then read the RSS. An allocator that can hand back the free pages between the
 * survivors (madvise / purging partially used spans) ends far below one that cannot.
 * Counters (KiB): rss_base_kb before, rss_full_kb with the whole heap, live_kb requested bytes
 * still live, rss_after_free_kb right after the frees, rss_after_trim_kb after malloc_trim(0)
 * (glibc's trims its heap; other allocators may not define it, then the call is a no-op on
 * glibc's empty arena), rss_end_kb after freeing the survivors too.
 * Time = building the heap + the 90% of frees; one item = one block. BENCH_QUICK: 64 MiB. */
#include <stdlib.h>

#include "bench.h"
#include "util.h"

#define KEEP_EVERY 10

static void bm_fragmentation(bench_state *st)
{
    size_t target = bench_quick() ? (size_t)64 << 20 : (size_t)1 << 30;
    size_t cap = target / 64; /* more slots than the mix can use (its mean is ~2.3 KiB) */
    size_t *sizes = bench_map(cap * sizeof *sizes);
    void **ptrs = bench_map(cap * sizeof *ptrs);
    size_t n = 0;
    long base = 0, full = 0, after_free = 0, after_trim = 0, end = 0;
    size_t live = 0;

    while (bench_keep_running(st)) {
        bench_pause(st);
        base = bench_rss_kb();
        bench_rng r = bench_rng_seed(80);
        bench_resume(st);

        size_t total = 0;
        n = 0;
        while (total < target && n < cap) {
            size_t size = bench_mix_size(&r);
            void *p = malloc(size);
            if (!p) {
                bench_fail(st, "malloc returned NULL");
                break;
            }
            bench_touch_pages(p, size);
            ptrs[n] = p;
            sizes[n++] = size;
            total += size;
        }
        bench_pause(st);
        full = bench_rss_kb();
        bench_resume(st);

        live = 0;
        for (size_t i = 0; i < n; i++) {
            if (i % KEEP_EVERY != 0) {
                free(ptrs[i]);
                ptrs[i] = NULL;
            } else {
                live += sizes[i];
            }
        }

        bench_pause(st);
        after_free = bench_rss_kb();
        bench_malloc_trim();
        after_trim = bench_rss_kb();
        for (size_t i = 0; i < n; i += KEEP_EVERY)
            free(ptrs[i]);
        end = bench_rss_kb();
        bench_resume(st);
    }
    bench_set_items(st, bench_iterations(st) * (int64_t)n);
    bench_counter(st, "rss_base_kb", (double)base, BENCH_COUNTER_VALUE);
    bench_counter(st, "rss_full_kb", (double)full, BENCH_COUNTER_VALUE);
    bench_counter(st, "live_kb", (double)(live >> 10), BENCH_COUNTER_VALUE);
    bench_counter(st, "rss_after_free_kb", (double)after_free, BENCH_COUNTER_VALUE);
    bench_counter(st, "rss_after_trim_kb", (double)after_trim, BENCH_COUNTER_VALUE);
    bench_counter(st, "rss_end_kb", (double)end, BENCH_COUNTER_VALUE);
    bench_unmap(sizes, cap * sizeof *sizes);
    bench_unmap(ptrs, cap * sizeof *ptrs);
}

static void def_fragmentation(bench_def *d)
{
    bench_def_iterations(d, 1);
    bench_def_unit(d, BENCH_MS);
}
BENCH_CASE("fragmentation", bm_fragmentation, def_fragmentation)
