/* Threads allocate blocks of random sizes, keep some, and hand others to each other (the scenario of
 * mimalloc's test/test-stress.c).
 *
 * Rounds of 4 threads each (new threads every round). A thread does a few thousand steps: allocate
 * a block (mostly small, sometimes up to 64 KiB, rarely up to 5 MiB), fill every word with a value
 * derived from its address, and either keep it, free one of its kept blocks, or swap it into a
 * global transfer array of 1,000 slots (an atomic exchange: whatever was there, allocated by any
 * thread, is checked and freed). Blocks kept at the end of a round stay in a retained array for
 * the next round's threads to free. Every block's contents are checked before it is freed.
 * Runs for [seconds] (default 2).
 * usage: mimalloc_stress [seconds] */
#include "conf.h"

#include <malloc.h>
#include <pthread.h>

#define NTHREADS 4
#define TRANSFERS 1000

struct blk {
    uintptr_t *p; /* p[0] = word count */
};

static uintptr_t *volatile transfer[TRANSFERS];
/* [round parity][thread]: a round reads the previous round's lists and writes its own */
static uintptr_t *retained[2][NTHREADS][2000];
static int nretained[2][NTHREADS];
static unsigned long nallocs;

static uintptr_t *alloc_items(size_t words, bsl_rng *r)
{
    if (bsl_rand_below(r, 100) == 0)
        words *= 1000; /* sometimes large: up to ~64 KiB * 8 */
    else if (bsl_rand_below(r, 10000) == 0)
        words = 500000 + bsl_rand_below(r, 150000); /* rarely huge: ~4-5 MiB */
    if (words == 0)
        words = 1;
    uintptr_t *p = malloc(words * sizeof(uintptr_t));
    CHECK(p != NULL);
    uintptr_t cookie = (uintptr_t)p ^ 0xbf58476d1ce4e5b9ULL;
    p[0] = words;
    for (size_t i = 1; i < words; i++)
        p[i] = (words - i) ^ cookie;
    __atomic_fetch_add(&nallocs, 1, __ATOMIC_RELAXED);
    return p;
}

static void free_items(uintptr_t *p)
{
    if (!p)
        return;
    uintptr_t cookie = (uintptr_t)p ^ 0xbf58476d1ce4e5b9ULL;
    size_t words = p[0];
    for (size_t i = 1; i < words; i++)
        if (p[i] != ((words - i) ^ cookie)) {
            CHECKF(0, "block %p of %zu words: word %zu is %#lx, want %#lx", (void *)p, words, i, (unsigned long)p[i],
                   (unsigned long)((words - i) ^ cookie));
            break;
        }
    free(p);
}

struct targ {
    int id;
    int round;
};

static void *stress(void *arg)
{
    struct targ *t = arg;
    bsl_rng r;
    bsl_rng_seed(&r, (uint64_t)(t->id * 1000 + t->round));
    enum { KEEP = 2000 };
    uintptr_t **data = calloc(KEEP, sizeof *data);
    CHECK(data != NULL);
    int n = 0;
    /* free what a thread of the previous round retained (cross-thread, after that thread exited) */
    int other = (t->id + 1) % NTHREADS, prev = (t->round + 1) % 2, cur = t->round % 2;
    for (int i = 0; i < nretained[prev][other]; i++)
        free_items(retained[prev][other][i]);
    nretained[prev][other] = 0;
    for (int step = 0; step < 4000; step++) {
        uint64_t x = bsl_rand_below(&r, 100);
        if (x < 50 && n < KEEP) {
            data[n++] = alloc_items(bsl_rand_below(&r, 64), &r);
        } else if (x < 80 && n > 0) {
            int i = (int)bsl_rand_below(&r, (uint64_t)n);
            free_items(data[i]);
            data[i] = data[--n];
        } else {
            uintptr_t *mine = alloc_items(bsl_rand_below(&r, 64), &r);
            uintptr_t *got = __atomic_exchange_n(&transfer[bsl_rand_below(&r, TRANSFERS)], mine, __ATOMIC_ACQ_REL);
            free_items(got);
        }
    }
    /* keep up to 2000 for the next round, free the rest */
    int keep = n < 2000 ? n : 2000;
    for (int i = 0; i < n; i++) {
        if (i < keep)
            retained[cur][t->id][i] = data[i];
        else
            free_items(data[i]);
    }
    nretained[cur][t->id] = keep;
    free(data);
    return NULL;
}

int main(int argc, char **argv)
{
    conf_begin("mimalloc_stress", 40);
    double secs = argc > 1 ? atof(argv[1]) : 2.0;
    double t0 = bsl_now();
    int round = 0;
    while (bsl_now() - t0 < secs || round < 4) {
        pthread_t th[NTHREADS];
        struct targ ta[NTHREADS];
        for (int i = 0; i < NTHREADS; i++) {
            ta[i] = (struct targ){i, round};
            CHECK(pthread_create(&th[i], NULL, stress, &ta[i]) == 0);
        }
        for (int i = 0; i < NTHREADS; i++)
            pthread_join(th[i], NULL);
        round++;
    }
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < NTHREADS; i++)
            for (int j = 0; j < nretained[k][i]; j++)
                free_items(retained[k][i][j]);
    for (int i = 0; i < TRANSFERS; i++)
        free_items(transfer[i]);
    printf("mimalloc_stress: %d rounds of %d threads, %lu blocks in %.1f s\n", round, NTHREADS, nallocs, bsl_now() - t0);
    return conf_end();
}
