/* Per-CPU caches: the front end in use matches what was asked (BSL_EXPECT_RSEQ), refill and drain
 * move whole batches without losing objects, and objects freed by another thread come back.
 * rseq mode: pcp_flush_all empties other CPUs' caches too (an exited thread's), and draining them
 * while threads allocate and free on them loses and duplicates nothing. */
#include "slab/pcp.h"
#include "buddyslab.h"
#include "bsl_test.h"

#include <pthread.h>
#include <string.h>

static volatile int stop;

/* Allocate and free objects of a few classes, each stamped with its owner and checked before it
 * is freed: an object handed out twice (a drain racing a pop or push) shows up as a wrong stamp. */
static void *churn(void *arg)
{
    uintptr_t me = (uintptr_t)arg;
    enum { K = 256 };
    static __thread uintptr_t *live[K];
    uint64_t r = me * 0x9e3779b97f4a7c15ull + 1, ops = 0;
    while (!stop || ops < 100000) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        unsigned i = (unsigned)(r % K);
        if (live[i]) {
            size_t n = live[i][1];
            if (n < 2 || n > 61)
                abort();
            for (size_t w = 0; w < n; w++)
                if (w != 1 && live[i][w] != me)
                    abort();
            free(live[i]);
            live[i] = NULL;
        } else {
            size_t n = 2 + (size_t)(r >> 32) % 60; /* 16 .. 496 bytes */
            uintptr_t *p = malloc(n * sizeof *p);
            if (!p)
                abort();
            for (size_t w = 0; w < n; w++)
                p[w] = me;
            p[1] = n;
            live[i] = p;
        }
        ops++;
    }
    for (unsigned i = 0; i < K; i++)
        free(live[i]);
    return NULL;
}

static void *worker(void *arg)
{
    void **v = arg;
    for (int i = 0; i < 5000; i++)
        free(v[i]);
    return NULL;
}

int main(void)
{
    bsl_test_begin("test_pcp"); /* checks bsl_using_rseq() against BSL_EXPECT_RSEQ */
    unsigned c = slab_class_of(48);
    struct kmem_cache *kc = &kmem_caches[ZONE_NORMAL][c];
    /* Far more objects than a cache holds: refills and drains must happen, nothing lost. */
    enum { N = 20000 };
    static void *v[N];
    uint64_t refill0 = kc->nr_refill, drain0 = kc->nr_drain;
    for (int i = 0; i < N; i++) {
        v[i] = malloc(48);
        CHECK(v[i]);
        memset(v[i], 0x5a, 48);
    }
    for (int i = 0; i < N; i++)
        free(v[i]);
    CHECK(kc->nr_refill > refill0 && kc->nr_drain > drain0);
    /* Cross-thread frees land in the freeing thread's cache and are reusable. */
    for (int i = 0; i < 5000; i++)
        v[i] = malloc(48);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, worker, v) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    size_t objs, bytes;
    pcp_cached(&objs, &bytes);
    if (bsl_using_rseq())
        CHECK(objs > 0); /* the worker's cache (its CPU or mm_cid) kept some */
    pcp_flush_all();
    pcp_cached(&objs, &bytes);
    if (bsl_using_rseq())
        CHECK(objs == 0); /* the worker's cache too, though that thread is gone */
    CHECK(slab_check() == 0);
    /* Drains of every cache while two threads allocate and free on theirs. */
    pthread_t ts[2];
    for (uintptr_t i = 0; i < 2; i++)
        CHECK(pthread_create(&ts[i], NULL, churn, (void *)(i + 1)) == 0);
    for (int i = 0; i < 2000; i++) {
        pcp_flush_all();
        if (i % 64 == 0)
            pcp_drain_idle();
    }
    stop = 1;
    for (int i = 0; i < 2; i++)
        CHECK(pthread_join(ts[i], NULL) == 0);
    pcp_flush_all();
    pcp_cached(&objs, &bytes);
    if (bsl_using_rseq())
        CHECK(objs == 0);
    CHECK(slab_check() == 0);
    CHECK(buddy_check() == 0);
    return bsl_test_end();
}
