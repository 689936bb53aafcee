/* thread_churn: threads that live briefly, as in a server that starts a thread per task (the
 * mstress pattern, bench/macro/mstress.c, in the micro suite). Each benchmark iteration starts
 * GEN_THREADS threads and joins them; each allocates BLOCKS blocks from the realistic mix, frees
 * three in four of them in a random order, frees what its predecessor in the same slot handed
 * over and hands its surviving quarter to its successor (blocks that outlive the thread that
 * allocated them, freed by another). What it measures beyond the fast path: what the allocator
 * does when a thread starts and exits (a per-thread heap set up and abandoned, its cached objects
 * given back) and how it copes with blocks of dead threads. One item = one block's malloc + free. */
#include <pthread.h>
#include <stdlib.h>

#include "bench.h"
#include "util.h"

#define GEN_THREADS 2
#define BLOCKS 1024
#define KEEP (BLOCKS / 4)

struct slot {
    void *handed[KEEP]; /* the surviving blocks of the previous thread in this slot */
    size_t n;
    uint64_t seed;
};

static void *churn(void *arg)
{
    struct slot *s = arg;
    bench_rng r = bench_rng_seed(s->seed);
    void *live[BLOCKS];
    for (int i = 0; i < BLOCKS; i++) {
        size_t n = bench_mix_size(&r);
        if (n > 4096)
            n = 4096; /* short-lived small and medium blocks, as mstress's */
        live[i] = malloc(n);
        if (!live[i])
            abort();
        bench_touch(live[i], n);
    }
    for (size_t i = 0; i < s->n; i++) /* the predecessor's survivors */
        free(s->handed[i]);
    for (int i = BLOCKS - 1; i > 0; i--) { /* shuffle, then free all but the last KEEP */
        int j = (int)bench_rng_below(&r, (uint64_t)i + 1);
        void *t = live[i];
        live[i] = live[j];
        live[j] = t;
    }
    for (int i = 0; i < BLOCKS - KEEP; i++)
        free(live[i]);
    for (int i = 0; i < KEEP; i++)
        s->handed[i] = live[BLOCKS - KEEP + i];
    s->n = KEEP;
    s->seed = bench_rng_next(&r);
    return NULL;
}

static void bm_thread_churn(bench_state *st)
{
    static struct slot slots[GEN_THREADS];
    for (int i = 0; i < GEN_THREADS; i++)
        slots[i] = (struct slot){.n = 0, .seed = 7500 + (uint64_t)i};
    while (bench_keep_running(st)) {
        pthread_t th[GEN_THREADS];
        for (int i = 0; i < GEN_THREADS; i++)
            if (pthread_create(&th[i], NULL, churn, &slots[i]) != 0) {
                bench_fail(st, "pthread_create failed");
                return;
            }
        for (int i = 0; i < GEN_THREADS; i++)
            pthread_join(th[i], NULL);
    }
    for (int i = 0; i < GEN_THREADS; i++)
        for (size_t k = 0; k < slots[i].n; k++)
            free(slots[i].handed[k]);
    bench_set_items(st, bench_iterations(st) * GEN_THREADS * BLOCKS);
}
BENCH_CASE("thread_churn", bm_thread_churn, NULL)
