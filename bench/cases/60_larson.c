/* larson/threads:T: a larson-like server workload. One array of slots (4096 per thread) is
 * shared by all threads; each operation picks a random slot, mallocs a block of 16..1024 B,
 * writes it, swaps it into the slot and frees the block that was there. That block was most
 * likely allocated by another thread, so (T-1)/T of the frees are cross-thread, and blocks live
 * for a random while, like requests and sessions in a server. Runs with 2, nproc and 2*nproc
 * threads (2*nproc oversubscribes the CPUs: threads get preempted inside the allocator).
 * One item = one malloc + one free.
 *
 * larson_sized/threads:T: the same server written in C++: blocks come from operator new and go
 * back through the sized operator delete (C++14's default), which must cost no more than free.
 * Each block holds its size in its first word, which the freeing thread reads (as a destructor
 * reads its object) to pass the size. */
#include <stdatomic.h>
#include <stdlib.h>

#include "bench.h"
#include "util.h"

#define SLOTS_PER_THREAD 4096
#define OPS 64 /* per benchmark iteration */
#define MIN_SIZE 16
#define MAX_SIZE 1024

static void *_Atomic *g_slots; /* set up by thread 0 before the start barrier */
static size_t g_nslots;

static inline void *larson_alloc(size_t size, int sized)
{
    void *p = sized ? bench_new(size) : malloc(size);
    if (!p)
        abort();
    if (sized) {
        *(size_t *)p = size;
        ((volatile unsigned char *)p)[size - 1] = (unsigned char)size;
    } else {
        bench_touch(p, size);
    }
    return p;
}

static inline void larson_free(void *p, int sized)
{
    if (sized)
        bench_delete_sized(p, *(size_t *)p);
    else
        free(p);
}

static void larson(bench_state *st, int sized)
{
    if (bench_thread_index(st) == 0) {
        g_nslots = (size_t)SLOTS_PER_THREAD * (size_t)bench_threads(st);
        g_slots = bench_map(g_nslots * sizeof *g_slots);
        bench_rng r = bench_rng_seed(60);
        for (size_t i = 0; i < g_nslots; i++)
            atomic_init(&g_slots[i], larson_alloc(bench_rng_range(&r, MIN_SIZE, MAX_SIZE), sized));
    }
    bench_rng r = bench_rng_seed(6000 + (uint64_t)bench_thread_index(st));
    while (bench_keep_running(st)) {
        void *_Atomic *slots = g_slots;
        size_t nslots = g_nslots;
        for (int i = 0; i < OPS; i++) {
            uint64_t x = bench_rng_next(&r);
            size_t idx = (size_t)(((unsigned __int128)(x & 0xFFFFFFFFu) * nslots) >> 32);
            size_t size = MIN_SIZE + (size_t)((x >> 32) % (MAX_SIZE - MIN_SIZE + 1));
            void *p = larson_alloc(size, sized);
            void *old = atomic_exchange_explicit(&slots[idx], p, memory_order_acq_rel);
            larson_free(old, sized);
        }
    }
    bench_set_items(st, bench_iterations(st) * OPS);
    if (bench_thread_index(st) == 0) {
        for (size_t i = 0; i < g_nslots; i++)
            larson_free(atomic_load(&g_slots[i]), sized);
        bench_unmap((void *)g_slots, g_nslots * sizeof *g_slots);
    }
}

static void bm_larson(bench_state *st) { larson(st, 0); }
static void bm_larson_sized(bench_state *st) { larson(st, 1); }

static void def_larson(bench_def *d)
{
    int n = bench_max_threads();
    int t[3] = {2, n, 2 * n};
    for (int i = 0; i < 3; i++) {
        int dup = 0;
        for (int j = 0; j < i; j++)
            dup |= t[j] == t[i];
        if (!dup && t[i] >= 2)
            bench_def_threads(d, t[i]);
    }
}
BENCH_CASE("larson", bm_larson, def_larson)
BENCH_CASE("larson_sized", bm_larson_sized, def_larson)
