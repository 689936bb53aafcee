/* prodcons/size:S: two threads; thread 0 mallocs blocks and hands them to thread 1 through a
 * single-producer/single-consumer ring, thread 1 reads and frees them. Every free is a
 * cross-thread free (the block goes back to a heap or cache owned by the other thread), the
 * pattern of work queues and message passing. size:0 = the realistic size mix. One item = one
 * block passed and freed. */
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "bench.h"
#include "util.h"

#define RING 4096  /* slots, a power of two */
#define BATCH 64   /* blocks per benchmark iteration */

struct ring {
    _Alignas(64) _Atomic size_t head; /* written by the producer */
    _Alignas(64) _Atomic size_t tail; /* written by the consumer */
    _Alignas(64) void *slot[RING];
};

static struct ring *g_ring; /* set up by thread 0 before the loop's start barrier */

static void spin(unsigned *n)
{
    if (++*n < 128)
        bench_cpu_relax();
    else
        sched_yield();
}

static void producer(bench_state *st, struct ring *r, size_t fixed)
{
    const uint32_t *mix = bench_mix_table(BENCH_MIX_MASK, 5);
    size_t head = 0, tail_seen = 0, k = 0;
    while (bench_keep_running(st)) {
        for (int i = 0; i < BATCH; i++) {
            size_t size = fixed ? fixed : mix[k++ & BENCH_MIX_MASK];
            unsigned char *p = malloc(size);
            if (!p)
                abort(); /* the consumer waits for it: failing softly would hang */
            bench_touch(p, size);
            /* re-read the consumer's index only when the ring looks full (fewer cache-line
             * transfers, so the allocator's cost dominates) */
            unsigned n = 0;
            while (head - tail_seen >= RING) {
                tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire);
                if (head - tail_seen >= RING)
                    spin(&n);
            }
            r->slot[head & (RING - 1)] = p;
            atomic_store_explicit(&r->head, ++head, memory_order_release);
        }
    }
    bench_set_items(st, bench_iterations(st) * BATCH);
}

static void consumer(bench_state *st, struct ring **rp)
{
    size_t tail = 0, head_seen = 0;
    while (bench_keep_running(st)) {
        struct ring *r = *rp;
        for (int i = 0; i < BATCH; i++) {
            unsigned n = 0;
            while (head_seen == tail) {
                head_seen = atomic_load_explicit(&r->head, memory_order_acquire);
                if (head_seen == tail)
                    spin(&n);
            }
            volatile unsigned char *p = r->slot[tail & (RING - 1)];
            (void)p[0];
            free((void *)p);
            atomic_store_explicit(&r->tail, ++tail, memory_order_release);
        }
    }
}

static void bm_prodcons(bench_state *st)
{
    if (bench_threads(st) != 2) {
        bench_fail(st, "prodcons needs exactly 2 threads");
        while (bench_keep_running(st)) {
        }
        return;
    }
    if (bench_thread_index(st) == 0) {
        g_ring = bench_map(sizeof *g_ring);
        producer(st, g_ring, (size_t)bench_range(st, 0));
        /* both loops have ended (end barrier): the ring is empty and no longer used */
        bench_unmap(g_ring, sizeof *g_ring);
        if (bench_range(st, 0) == 0)
            bench_set_label(st, "size mix");
    } else {
        consumer(st, &g_ring);
    }
}

static void def_prodcons(bench_def *d)
{
    bench_def_arg_names(d, "size", NULL);
    bench_def_arg(d, 64);
    bench_def_arg(d, 0);
    bench_def_threads(d, 2);
}
BENCH_CASE("prodcons", bm_prodcons, def_prodcons)
