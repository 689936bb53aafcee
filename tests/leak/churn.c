/* Sampled tracking under churn: four threads allocate blocks of every kind (small slab objects,
 * page-sized and larger slab classes, large buddy blocks, a few huge mappings) and swap them through
 * a shared table, so that most blocks are freed by another thread than the one that allocated
 * them, then everything is freed except keep_churn's blocks. A free of a sampled block that the
 * tracker misses (the untracked free path must send blocks of marked frames to it) leaves an
 * lk_churn record behind: the driver fails on any. keep_churn's 2000 blocks of 1000 bytes must be
 * found (estimated) as still reachable, so the test cannot pass with tracking off.
 *
 *   leak_churn [iterations per thread]   prints "churn: done" */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "leak_common.h"

#define THREADS 4
#define SLOTS 4096
static void *slots[SLOTS];
static void *kept[2000];
static long iters = 200000;

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static NOINLINE void *lk_churn(uint64_t *r)
{
    uint64_t x = rnd(r);
    unsigned band = (unsigned)(x % 1000);
    size_t n = band < 700 ? 8 + (x >> 20) % 256          /* small */
               : band < 950 ? 257 + (x >> 20) % 8000     /* larger slab classes */
               : band < 998 ? 32769 + (x >> 20) % 400000 /* large buddy blocks */
                            : (4u << 20) + (x >> 20) % (4u << 20); /* huge */
    void *p = (x >> 40) & 1 ? malloc(n) : calloc(1, n);
    touch(p, n < 64 ? n : 64);
    return p;
}

static void *worker(void *arg)
{
    uint64_t r = 0x9E3779B97F4A7C15ull * (uintptr_t)arg + 1;
    for (long i = 0; i < iters; i++) {
        void *p = lk_churn(&r);
        if (!p)
            abort();
        unsigned k = (unsigned)(rnd(&r) % SLOTS);
        void *old = __atomic_exchange_n(&slots[k], p, __ATOMIC_ACQ_REL);
        if ((rnd(&r) & 15) == 0 && old) { /* now and then a realloc of a block another thread made */
            void *q = realloc(old, 1 + rnd(&r) % 3000);
            if (!q)
                abort();
            old = q;
        }
        free(old);
    }
    return NULL;
}

static NOINLINE void keep_churn(void)
{
    for (int i = 0; i < 2000; i++) {
        kept[i] = malloc(1000);
        touch(kept[i], 1000);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1)
        iters = atol(argv[1]);
    keep_churn();
    pthread_t t[THREADS];
    for (uintptr_t i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)(i + 1)) != 0)
            return 1;
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < SLOTS; i++)
        free(slots[i]);
    scrub_stack();
    printf("churn: done\n");
    return 0;
}
