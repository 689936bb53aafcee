/* Per-CPU caches: the front end in use matches what was asked (BSL_EXPECT_RSEQ), refill and drain
 * move whole batches without losing objects, and objects freed by another thread come back. */
#include "slab/pcp.h"
#include "buddyslab.h"
#include "unit.h"

#include <pthread.h>
#include <string.h>

static void *worker(void *arg)
{
    void **v = arg;
    for (int i = 0; i < 5000; i++)
        free(v[i]);
    return NULL;
}

int main(void)
{
    const char *expect = getenv("BSL_EXPECT_RSEQ");
    free(malloc(1));
    if (expect)
        CHECK(bsl_using_rseq() == atoi(expect));
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
    CHECK(slab_check() == 0);
    CHECK(buddy_check() == 0);
    UNIT_DONE("test_pcp");
    return 0;
}
