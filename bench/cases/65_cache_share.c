/* Cache lines shared by objects of different threads (false sharing), the two Hoard programs.
 *
 * cache_thrash/threads:T: each thread in a loop mallocs an 8-byte object, writes it WRITES times
 * and frees it. An allocator that gives neighbouring objects of one cache line to different
 * threads makes every write of one thread invalidate the line in the other's cache.
 *
 * cache_scratch/threads:T: thread 0 mallocs T 8-byte objects in a row (they share lines) and
 * hands object t to thread t, which frees it first and then runs the loop of cache_thrash. An
 * allocator that reuses the freed object for the freeing thread's next malloc (a per-thread or
 * per-CPU cache, LIFO) keeps the threads writing one line; one that sends a freed object back
 * to the thread or page that allocated it does not.
 *
 * One item = one malloc, WRITES one-byte read-modify-writes, one free: the writes dominate, so
 * the time shows how often the line bounces, not the allocator's fast path. */
#include <stdatomic.h>
#include <stdlib.h>

#include "bench.h"
#include "util.h"

#define WRITES 64
#define OBJ 8
#define MAX_T 256

static void *g_scratch[MAX_T]; /* cache_scratch: set by thread 0 before the start barrier */

static void thrash_loop(bench_state *st)
{
    while (bench_keep_running(st)) {
        volatile unsigned char *p = malloc(OBJ);
        if (!p)
            abort();
        for (int j = 0; j < WRITES; j++)
            p[j & (OBJ - 1)]++;
        free((void *)p);
    }
    bench_set_items(st, bench_iterations(st));
}

static void bm_cache_thrash(bench_state *st) { thrash_loop(st); }

static void bm_cache_scratch(bench_state *st)
{
    int t = bench_thread_index(st), n = bench_threads(st);
    if (t == 0)
        for (int i = 0; i < n && i < MAX_T; i++)
            if (!(g_scratch[i] = malloc(OBJ)))
                abort();
    /* The first bench_keep_running() is the start barrier: thread 0's objects exist after it. */
    int first = 1;
    while (bench_keep_running(st)) {
        if (first) {
            first = 0;
            free(g_scratch[t]);
        }
        volatile unsigned char *p = malloc(OBJ);
        if (!p)
            abort();
        for (int j = 0; j < WRITES; j++)
            p[j & (OBJ - 1)]++;
        free((void *)p);
    }
    if (first) /* no iteration ran: still free the object */
        free(g_scratch[t]);
    bench_set_items(st, bench_iterations(st));
}

static void def_threads(bench_def *d)
{
    int n = bench_max_threads();
    bench_def_threads(d, 2);
    if (n > 2 && n <= MAX_T)
        bench_def_threads(d, n);
}
BENCH_CASE("cache_thrash", bm_cache_thrash, def_threads)
BENCH_CASE("cache_scratch", bm_cache_scratch, def_threads)
