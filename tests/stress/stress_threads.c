/* Thread churn: thousands of short-lived threads created and joined in a loop. Each allocates and
 * frees; some exit without freeing and hand their blocks to main (or to the next generation of
 * threads) to check and free; some are detached; some free and allocate from TLS destructors
 * (pthread_key) that run during thread exit, after or before the allocator's own thread cleanup.
 * usage: stress_threads [generations=500] [threads per generation=8] */
#include "bsl_test.h"

#include <malloc.h>
#include <pthread.h>

#define KiB ((size_t)1 << 10)
#define MAXKEEP 48

typedef struct blk {
    unsigned char *p;
    size_t n;
    uint64_t seed;
} blk;

typedef struct job {
    int gen, idx;
    blk inherit[MAXKEEP]; /* blocks from an earlier generation this thread must free */
    int ninherit;
    blk keep[MAXKEEP]; /* blocks this thread leaves behind */
    int nkeep;
} job;

static pthread_key_t key;
static unsigned long dtor_runs, threads_run;
static int detached_live;
static pthread_mutex_t det_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t det_cv = PTHREAD_COND_INITIALIZER;

static void check_blk(const blk *b, const char *who)
{
    size_t off = bsl_check(b->p, b->n, b->seed);
    CHECKF(off == (size_t)-1, "%s: block %p (%zu bytes) corrupted at %zu", who, (void *)b->p, b->n, off);
    CHECKF(bsl_owns(b->p) == 1, "%s: block %p not owned", who, (void *)b->p);
}

/* TLS destructor: checks and frees the block, allocates a new one and re-arms itself a couple of
 * times (glibc runs destructors up to PTHREAD_DESTRUCTOR_ITERATIONS rounds). */
static void tls_dtor(void *v)
{
    blk *b = v;
    check_blk(b, "tls destructor");
    int round = (int)(b->seed & 3);
    free(b->p);
    free(b);
    __atomic_fetch_add(&dtor_runs, 1, __ATOMIC_RELAXED);
    if (round < 2) {
        blk *nb = malloc(sizeof *nb);
        CHECK(nb != NULL);
        nb->n = 100 + (size_t)round * 1000;
        nb->p = malloc(nb->n);
        CHECK(nb->p != NULL);
        nb->seed = (((uintptr_t)nb->p) & ~(uint64_t)3) | (uint64_t)(round + 1);
        bsl_fill(nb->p, nb->n, nb->seed);
        pthread_setspecific(key, nb);
    }
}

static void work(job *j)
{
    bsl_rng r;
    bsl_rng_seed(&r, (uint64_t)j->gen * 1000 + (uint64_t)j->idx);
    for (int i = 0; i < j->ninherit; i++) {
        check_blk(&j->inherit[i], "inherited");
        free(j->inherit[i].p);
    }
    j->ninherit = 0;
    blk local[64];
    int nl = 0;
    int rounds = 150 + (int)bsl_rand_below(&r, 150);
    for (int i = 0; i < rounds; i++) {
        if (nl == 64 || (nl > 0 && bsl_rand_below(&r, 3) == 0)) {
            int k = (int)bsl_rand_below(&r, (uint64_t)nl);
            check_blk(&local[k], "local");
            free(local[k].p);
            local[k] = local[--nl];
        } else {
            size_t n = bsl_rand_below(&r, 10) == 0 ? 4 * KiB + bsl_rand_below(&r, 60 * KiB)
                                                   : 16 + bsl_rand_below(&r, 1000);
            unsigned char *p = malloc(n);
            CHECK(p != NULL);
            local[nl] = (blk){p, n, (uintptr_t)p ^ (uint64_t)i};
            bsl_fill(p, n, local[nl].seed);
            nl++;
        }
    }
    /* one thread in three leaves its blocks behind for someone else */
    if (j->idx % 3 == 0) {
        for (int i = 0; i < nl && j->nkeep < MAXKEEP; i++)
            j->keep[j->nkeep++] = local[i];
        for (int i = j->nkeep; i < nl; i++)
            free(local[i].p);
    } else {
        for (int i = 0; i < nl; i++) {
            check_blk(&local[i], "local at exit");
            free(local[i].p);
        }
    }
    /* one thread in four sets a TLS value freed by its destructor at exit */
    if (j->idx % 4 == 1) {
        blk *b = malloc(sizeof *b);
        b->n = 50 + bsl_rand_below(&r, 3000);
        b->p = malloc(b->n);
        b->seed = ((uintptr_t)b->p) & ~(uint64_t)3;
        bsl_fill(b->p, b->n, b->seed);
        pthread_setspecific(key, b);
    }
    __atomic_fetch_add(&threads_run, 1, __ATOMIC_RELAXED);
}

static void *joinable_main(void *arg)
{
    work(arg);
    return arg;
}

static void *detached_main(void *arg)
{
    job *j = arg;
    work(j);
    for (int i = 0; i < j->nkeep; i++)
        free(j->keep[i].p);
    free(j);
    pthread_mutex_lock(&det_mu);
    if (--detached_live == 0)
        pthread_cond_signal(&det_cv);
    pthread_mutex_unlock(&det_mu);
    return NULL;
}

int main(int argc, char **argv)
{
    int gens = argc > 1 ? atoi(argv[1]) : 500;
    int per = argc > 2 ? atoi(argv[2]) : 8;
    bsl_test_begin("stress_threads");
    CHECK(pthread_key_create(&key, tls_dtor) == 0);
    double t0 = bsl_now();
    job **prev = calloc((size_t)per, sizeof *prev);
    job **cur = calloc((size_t)per, sizeof *cur);
    pthread_t *t = calloc((size_t)per, sizeof *t);
    unsigned long main_freed = 0, ndetached = 0;
    bsl_stats_t early = {0};
    int early_gen = gens / 10;
    for (int g = 0; g < gens; g++) {
        if (g == early_gen)
            bsl_stats_get(&early);
        for (int i = 0; i < per; i++) {
            job *j = calloc(1, sizeof *j);
            CHECK(j != NULL);
            j->gen = g;
            j->idx = i;
            /* half of the blocks left behind by the previous generation go to a new thread */
            if (prev[i] && (g & 1)) {
                memcpy(j->inherit, prev[i]->keep, sizeof(blk) * (size_t)prev[i]->nkeep);
                j->ninherit = prev[i]->nkeep;
                prev[i]->nkeep = 0;
            }
            cur[i] = j;
            CHECK(pthread_create(&t[i], NULL, joinable_main, j) == 0);
        }
        /* some detached threads too */
        if (g % 10 == 0) {
            job *j = calloc(1, sizeof *j);
            j->gen = g;
            j->idx = 0;
            pthread_attr_t a;
            pthread_attr_init(&a);
            pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
            pthread_mutex_lock(&det_mu);
            detached_live++;
            pthread_mutex_unlock(&det_mu);
            pthread_t d;
            CHECK(pthread_create(&d, &a, detached_main, j) == 0);
            pthread_attr_destroy(&a);
            ndetached++;
        }
        /* main frees whatever the previous generation kept and nobody inherited */
        for (int i = 0; i < per; i++) {
            if (!prev[i])
                continue;
            for (int k = 0; k < prev[i]->nkeep; k++) {
                check_blk(&prev[i]->keep[k], "handed to main");
                free(prev[i]->keep[k].p);
                main_freed++;
            }
            free(prev[i]);
            prev[i] = NULL;
        }
        for (int i = 0; i < per; i++) {
            void *ret = NULL;
            CHECK(pthread_join(t[i], &ret) == 0);
            CHECK(ret == cur[i]);
        }
        job **tmp = prev;
        prev = cur;
        cur = tmp;
    }
    for (int i = 0; i < per; i++) {
        if (!prev[i])
            continue;
        for (int k = 0; k < prev[i]->nkeep; k++) {
            check_blk(&prev[i]->keep[k], "handed to main at the end");
            free(prev[i]->keep[k].p);
            main_freed++;
        }
        free(prev[i]);
    }
    pthread_mutex_lock(&det_mu);
    while (detached_live > 0)
        pthread_cond_wait(&det_cv, &det_mu);
    pthread_mutex_unlock(&det_mu);
    free(prev);
    free(cur);
    free(t);
    double dt = bsl_now() - t0;
    unsigned long expected_dtors = 0;
    for (int i = 0; i < per; i++)
        if (i % 4 == 1)
            expected_dtors++;
    expected_dtors = expected_dtors * (unsigned long)gens * 3; /* each TLS value re-arms itself twice */
    printf("stress_threads: %lu threads (%lu detached) in %.2f s, %lu blocks freed by main, %lu TLS destructor "
           "runs\n",
           threads_run, ndetached, dt, main_freed, dtor_runs);
    CHECK(threads_run == (unsigned long)gens * (unsigned long)per + ndetached);
    CHECKF(dtor_runs >= expected_dtors, "TLS destructors ran %lu times, expected at least %lu", dtor_runs,
           expected_dtors);
    CHECK(main_freed > 0);
    /* Caches of exited threads must be given back: memory in use must not grow with the number of
     * threads that have come and gone. */
    bsl_stats_t end;
    bsl_stats_get(&end);
    printf("slab bytes after %d generations: %zu, at the end: %zu; committed %zu -> %zu\n", early_gen,
           early.slab_bytes, end.slab_bytes, early.committed, end.committed);
    CHECKF(end.slab_bytes <= 2 * early.slab_bytes + 16 * ((size_t)1 << 20),
           "slab memory grew from %zu to %zu bytes while threads came and went (thread caches leaked?)",
           early.slab_bytes, end.slab_bytes);
    CHECKF(end.committed <= 2 * early.committed + 64 * ((size_t)1 << 20),
           "committed memory grew from %zu to %zu bytes while threads came and went", early.committed, end.committed);
    return bsl_test_end();
}
