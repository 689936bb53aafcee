/* A correct program runs cleanly with every hardening option on (registered with
 * BUDDYSLAB_OPTIONS=canary=1,junk=1,quarantine=4M,guard=1, and with rseq=0 added): realloc chains
 * up and down across small, large and huge sizes, calloc (zeroed even with junk), the aligned
 * allocation calls, writes up to malloc_usable_size(), zones, and threads that free each other's
 * blocks, all with content checks. With BSL_EXPECT_HARDENING=1 it also checks that the options
 * really are on (fresh blocks read 0xa5; with canaries malloc_usable_size is the requested size).
 * usage: hardening_clean [threads=4] [rounds=3000] */
#include "bsl_test.h"

#include <malloc.h>
#include <pthread.h>

/* C23 (glibc 2.36 does not declare them) */
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static int expect_hardening;

static size_t pick_size(bsl_rng *r)
{
    uint64_t x = bsl_rand(r);
    switch (x % 16) {
    case 0:
        return 32 * KiB + (x >> 8) % (200 * KiB); /* large (guard page after it) */
    case 1:
        return (x >> 8) % 17 == 0 ? 5 * MiB + (x >> 12) % MiB : 4 * KiB + (x >> 8) % (28 * KiB);
    default:
        return 1 + (x >> 8) % 700;
    }
}

static void check_fresh(const unsigned char *p, size_t n)
{
    if (!expect_hardening)
        return;
    size_t m = n < 256 ? n : 256;
    for (size_t i = 0; i < m; i++)
        if (p[i] != 0xa5) {
            CHECKF(0, "fresh block %p of %zu bytes: byte %zu is 0x%02x, not junk (0xa5)", (const void *)p, n, i, p[i]);
            return;
        }
    CHECKF(malloc_usable_size((void *)p) == n, "canary=1: malloc_usable_size(%zu-byte block)=%zu", n,
           malloc_usable_size((void *)p));
}

/* realloc chain: grow from 1 byte through every kind of block and back, keeping the contents. */
static void realloc_chain(uint64_t seed)
{
    static const size_t steps[] = {1, 15, 16, 17, 100, 1000, 4096, 20000, 32 * KiB, 40 * KiB, 300 * KiB,
                                   3 * MiB, 6 * MiB, 9 * MiB, 5 * MiB, 1 * MiB, 50 * KiB, 33 * KiB, 8000, 64, 3};
    size_t n = steps[0];
    unsigned char *p = malloc(n);
    CHECK(p != NULL);
    bsl_fill(p, n, seed);
    for (unsigned i = 1; i < sizeof(steps) / sizeof(steps[0]); i++) {
        size_t m = steps[i];
        unsigned char *q = realloc(p, m);
        CHECKF(q != NULL, "realloc(%zu -> %zu) failed", n, m);
        size_t keep = n < m ? n : m;
        size_t off = bsl_check(q, keep, seed);
        CHECKF(off == (size_t)-1, "realloc(%zu -> %zu) lost byte %zu", n, m, off);
        if (m > n && expect_hardening && n + 64 <= 4 * MiB) { /* junk fills the first 4 MiB */
            size_t t = m - n < 64 ? m - n : 64;
            for (size_t k = 0; k < t; k++)
                CHECKF(q[n + k] == 0xa5, "realloc(%zu -> %zu): new byte %zu is 0x%02x, not 0xa5", n, m, n + k, q[n + k]);
        }
        bsl_fill(q, m, seed);
        p = q;
        n = m;
    }
    free_sized(p, n);
}

static void aligned_calls(bsl_rng *r)
{
    for (size_t align = 16; align <= 64 * KiB; align <<= 1) {
        size_t n = 1 + bsl_rand_below(r, 3 * align);
        void *a = NULL;
        CHECK(posix_memalign(&a, align, n) == 0);
        CHECKF(((uintptr_t)a & (align - 1)) == 0, "posix_memalign(%zu, %zu)=%p", align, n, a);
        check_fresh(a, n);
        unsigned char *b = memalign(align, n);
        CHECK(b != NULL && ((uintptr_t)b & (align - 1)) == 0);
        unsigned char *c = aligned_alloc(align, n);
        CHECK(c != NULL && ((uintptr_t)c & (align - 1)) == 0);
        bsl_fill(a, n, align);
        bsl_fill(b, n, align + 1);
        bsl_fill(c, n, align + 2);
        CHECK(bsl_check(a, n, align) == (size_t)-1);
        CHECK(bsl_check(b, n, align + 1) == (size_t)-1);
        CHECK(bsl_check(c, n, align + 2) == (size_t)-1);
        free(a);
        free(b);
        free_aligned_sized(c, align, n);
    }
    unsigned char *v = valloc(5000);
    CHECK(v != NULL && ((uintptr_t)v & 4095) == 0);
    memset(v, 7, 5000);
    free(v);
}

/* Shared mailbox: threads leave blocks for each other. */
#define SLOTS 512
typedef struct blk {
    unsigned char *p;
    size_t n; /* usable size, filled */
    uint64_t seed;
    size_t req; /* the size asked for (free_sized must be given it) */
} blk;
static blk mailbox[SLOTS];
static pthread_mutex_t mbox_lock = PTHREAD_MUTEX_INITIALIZER;
static int rounds = 3000;
static unsigned long total_ops;

static void *worker(void *arg)
{
    long id = (long)arg;
    bsl_rng r;
    bsl_rng_seed(&r, 1000 + (uint64_t)id);
    unsigned long ops = 0;
    for (int i = 0; i < rounds; i++) {
        size_t n = pick_size(&r);
        int use_calloc = (i % 5) == 0;
        unsigned char *p = use_calloc ? calloc(1, n) : malloc(n);
        CHECKF(p != NULL, "thread %ld: allocation of %zu failed", id, n);
        if (use_calloc)
            CHECKF(bsl_all_zero(p, n), "thread %ld: calloc(%zu) not zeroed", id, n);
        else
            check_fresh(p, n);
        /* The whole usable size is the caller's. */
        size_t us = malloc_usable_size(p);
        CHECKF(us >= n, "usable %zu < %zu", us, n);
        uint64_t seed = ((uint64_t)id << 40) ^ (uint64_t)i;
        bsl_fill(p, us, seed);
        blk mine = {p, us, seed, n}, theirs = {0};
        unsigned s = (unsigned)bsl_rand_below(&r, SLOTS);
        pthread_mutex_lock(&mbox_lock);
        theirs = mailbox[s];
        mailbox[s] = mine;
        pthread_mutex_unlock(&mbox_lock);
        if (theirs.p) {
            size_t off = bsl_check(theirs.p, theirs.n, theirs.seed);
            CHECKF(off == (size_t)-1, "thread %ld: block %p (%zu bytes) from another thread corrupted at %zu", id,
                   (void *)theirs.p, theirs.n, off);
            if (theirs.n > 64 && (i & 3) == 0) { /* shrink it with realloc before freeing */
                unsigned char *q = realloc(theirs.p, theirs.n / 2);
                CHECK(q != NULL);
                CHECK(bsl_check(q, theirs.n / 2, theirs.seed) == (size_t)-1);
                theirs.p = q;
                theirs.req = theirs.n / 2;
            }
            if (i & 1) /* sized: checked against the block (exactly with canary=1) */
                free_sized(theirs.p, theirs.req);
            else
                free(theirs.p);
        }
        ops++;
    }
    __atomic_fetch_add(&total_ops, ops, __ATOMIC_RELAXED);
    return NULL;
}

int main(int argc, char **argv)
{
    int nthreads = argc > 1 ? atoi(argv[1]) : 4;
    rounds = argc > 2 ? atoi(argv[2]) : 3000;
    const char *e = getenv("BSL_EXPECT_HARDENING");
    expect_hardening = e && *e == '1';
    bsl_test_begin("hardening_clean");

    bsl_rng r;
    bsl_rng_seed(&r, 42);
    for (int i = 0; i < 4; i++)
        realloc_chain(100 + (uint64_t)i);
    aligned_calls(&r);

    /* calloc of every kind of block reads zero, junk or not */
    static const size_t csz[] = {1, 100, 4000, 32 * KiB, 100 * KiB, 5 * MiB};
    for (unsigned i = 0; i < sizeof(csz) / sizeof(csz[0]); i++) {
        unsigned char *p = calloc(csz[i], 1);
        CHECK(p != NULL && bsl_all_zero(p, csz[i]));
        free(p);
    }
    /* zones */
    for (int z = BSL_ZONE_LOW32; z <= BSL_ZONE_HUGE; z++) {
        size_t n = z == BSL_ZONE_HUGE ? 3 * MiB : 3000;
        unsigned char *p = bsl_zone_malloc((bsl_zone_id)z, n);
        CHECKF(p != NULL, "bsl_zone_malloc(%d, %zu)", z, n);
        CHECK(bsl_zone_of(p) == z || (z != BSL_ZONE_HUGE && bsl_zone_of(p) >= 0));
        bsl_fill(p, n, (uint64_t)z);
        CHECK(bsl_check(p, n, (uint64_t)z) == (size_t)-1);
        free(p);
    }

    pthread_t t[64];
    if (nthreads > 64)
        nthreads = 64;
    for (long i = 0; i < nthreads; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    for (int s = 0; s < SLOTS; s++)
        if (mailbox[s].p) {
            CHECK(bsl_check(mailbox[s].p, mailbox[s].n, mailbox[s].seed) == (size_t)-1);
            free(mailbox[s].p);
        }
    CHECK(bsl_check_heap() == 0);
    malloc_trim(0); /* empties the quarantine: every block in it is checked */
    CHECK(bsl_check_heap() == 0);
    printf("hardening_clean: %d threads, %lu block operations (BUDDYSLAB_OPTIONS=%s)\n", nthreads, total_ops,
           getenv("BUDDYSLAB_OPTIONS") ? getenv("BUDDYSLAB_OPTIONS") : "");
    return bsl_test_end();
}
