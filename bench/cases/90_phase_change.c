/* phase_change: RSS over time across the phases of a program's life.
 *   start        0.1 s idle (baseline)
 *   alloc_big    512 MiB in blocks of 1..64 KiB, every page touched; held 0.3 s
 *   free_big     all of it freed (odd blocks first, then even)
 *   idle         2 s without a single allocator call: is the memory given back while idle?
 *   alloc_small  256 MiB in blocks of 16..128 B: is the memory freed above reused for a
 *                different size? held 0.3 s
 *   free_small   all of it freed
 *   idle_end     1 s
 * A sampler thread reads /proc/self/statm every 10 ms (no malloc) and, when BENCH_SERIES_OUT
 * names a file, the series is written there as CSV (t_s,rss_kb,phase); bench/run plots it.
 * Counters (KiB): rss_start_kb, rss_big_kb, rss_after_free_big_kb, rss_after_idle_kb,
 * rss_small_kb, rss_end_kb. Time counts only the allocating/freeing phases (sleeps paused);
 * one item = one block. BENCH_QUICK: 32 MiB / 16 MiB and short idles. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "util.h"

enum { P_START, P_ALLOC_BIG, P_HOLD_BIG, P_FREE_BIG, P_IDLE, P_ALLOC_SMALL, P_HOLD_SMALL,
       P_FREE_SMALL, P_IDLE_END, P_DONE };
static const char *const phase_names[] = {"start",       "alloc_big",  "hold_big",
                                          "free_big",    "idle",       "alloc_small",
                                          "hold_small",  "free_small", "idle_end"};

struct sample {
    float t;
    int phase;
    long rss_kb;
};

#define MAX_SAMPLES 65536
static struct {
    _Atomic int phase;
    _Atomic int stop;
    double t0;
    size_t n;
    struct sample *s;
} g_series;

static void *sampler(void *arg)
{
    (void)arg;
    while (!atomic_load(&g_series.stop) && g_series.n < MAX_SAMPLES) {
        struct sample *x = &g_series.s[g_series.n++];
        x->t = (float)(bench_now() - g_series.t0);
        x->phase = atomic_load(&g_series.phase);
        x->rss_kb = bench_rss_kb();
        bench_sleep(0.010);
    }
    return NULL;
}

static void write_series(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    char line[128];
    int len = snprintf(line, sizeof line, "t_s,rss_kb,phase\n");
    (void)!write(fd, line, (size_t)len);
    for (size_t i = 0; i < g_series.n; i++) {
        const struct sample *x = &g_series.s[i];
        int ph = x->phase < P_DONE ? x->phase : P_IDLE_END;
        len = snprintf(line, sizeof line, "%.3f,%ld,%s\n", (double)x->t, x->rss_kb,
                       phase_names[ph]);
        (void)!write(fd, line, (size_t)len);
    }
    close(fd);
}

static void set_phase(int p) { atomic_store(&g_series.phase, p); }

/* Sleep with the clock stopped. */
static void idle(bench_state *st, double seconds)
{
    bench_pause(st);
    bench_sleep(seconds);
    bench_resume(st);
}

static void bm_phase_change(bench_state *st)
{
    int quick = bench_quick();
    size_t big = quick ? (size_t)32 << 20 : (size_t)512 << 20;
    size_t small = quick ? (size_t)16 << 20 : (size_t)256 << 20;
    double idle_s = quick ? 0.2 : 2.0, idle_end_s = quick ? 0.1 : 1.0, hold_s = quick ? 0.05 : 0.3;
    size_t cap_big = big / 1024 + 1, cap_small = small / 16 + 1;
    void **pb = bench_map(cap_big * sizeof *pb);
    void **ps = bench_map(cap_small * sizeof *ps);
    g_series.s = bench_map(MAX_SAMPLES * sizeof *g_series.s);
    long rss_start = 0, rss_big = 0, rss_free_big = 0, rss_idle = 0, rss_small = 0, rss_end = 0;
    int64_t items = 0;

    while (bench_keep_running(st)) {
        bench_pause(st);
        g_series.n = 0;
        g_series.t0 = bench_now();
        atomic_store(&g_series.stop, 0);
        set_phase(P_START);
        pthread_t th;
        int have_sampler = pthread_create(&th, NULL, sampler, NULL) == 0;
        bench_sleep(0.1);
        rss_start = bench_rss_kb();
        bench_rng r = bench_rng_seed(90);
        bench_resume(st);

        set_phase(P_ALLOC_BIG);
        size_t nb = 0, total = 0;
        while (total < big && nb < cap_big) {
            size_t size = bench_rng_range(&r, 1024, 64 << 10);
            void *p = malloc(size);
            if (!p) {
                bench_fail(st, "malloc returned NULL");
                break;
            }
            bench_touch_pages(p, size);
            pb[nb++] = p;
            total += size;
        }
        rss_big = bench_rss_kb();
        set_phase(P_HOLD_BIG);
        idle(st, hold_s);

        set_phase(P_FREE_BIG);
        for (size_t i = 1; i < nb; i += 2)
            free(pb[i]);
        for (size_t i = 0; i < nb; i += 2)
            free(pb[i]);
        rss_free_big = bench_rss_kb();

        set_phase(P_IDLE);
        idle(st, idle_s);
        rss_idle = bench_rss_kb();

        set_phase(P_ALLOC_SMALL);
        size_t ns = 0;
        total = 0;
        while (total < small && ns < cap_small) {
            size_t size = bench_rng_range(&r, 16, 128);
            void *p = malloc(size);
            if (!p) {
                bench_fail(st, "malloc returned NULL");
                break;
            }
            bench_touch(p, size);
            ps[ns++] = p;
            total += size;
        }
        rss_small = bench_rss_kb();
        set_phase(P_HOLD_SMALL);
        idle(st, hold_s);

        set_phase(P_FREE_SMALL);
        for (size_t i = 0; i < ns; i++)
            free(ps[i]);

        set_phase(P_IDLE_END);
        idle(st, idle_end_s);
        rss_end = bench_rss_kb();
        items += (int64_t)(nb + ns);

        bench_pause(st);
        atomic_store(&g_series.stop, 1);
        if (have_sampler)
            pthread_join(th, NULL);
        const char *out = getenv("BENCH_SERIES_OUT");
        if (out && *out)
            write_series(out);
        bench_resume(st);
    }
    bench_set_items(st, items);
    bench_counter(st, "rss_start_kb", (double)rss_start, BENCH_COUNTER_VALUE);
    bench_counter(st, "rss_big_kb", (double)rss_big, BENCH_COUNTER_VALUE);
    bench_counter(st, "rss_after_free_big_kb", (double)rss_free_big, BENCH_COUNTER_VALUE);
    bench_counter(st, "rss_after_idle_kb", (double)rss_idle, BENCH_COUNTER_VALUE);
    bench_counter(st, "rss_small_kb", (double)rss_small, BENCH_COUNTER_VALUE);
    bench_counter(st, "rss_end_kb", (double)rss_end, BENCH_COUNTER_VALUE);
    bench_unmap(pb, cap_big * sizeof *pb);
    bench_unmap(ps, cap_small * sizeof *ps);
    bench_unmap(g_series.s, MAX_SAMPLES * sizeof *g_series.s);
}

static void def_phase_change(bench_def *d)
{
    bench_def_iterations(d, 1);
    bench_def_unit(d, BENCH_MS);
}
BENCH_CASE("phase_change", bm_phase_change, def_phase_change)
