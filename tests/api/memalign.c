/* posix_memalign / aligned_alloc / memalign / valloc / pvalloc / free_sized / free_aligned_sized. */
#include "bsl_test.h"

#include <malloc.h>

/* C23 functions; glibc 2.36's headers do not declare them. */
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

#define MiB ((size_t)1 << 20)
#define KiB ((size_t)1 << 10)

static volatile size_t vzero = 0;

static void check_aligned(void *p, size_t align, size_t size, const char *fn)
{
    CHECKF(p != NULL, "%s(align=%zu, size=%zu) failed", fn, align, size);
    if (!p)
        return;
    CHECKF(((uintptr_t)p & (align - 1)) == 0, "%s(align=%zu, size=%zu)=%p misaligned", fn, align, size, p);
    CHECKF(bsl_owns(p) == 1, "%s(align=%zu, size=%zu)=%p not owned", fn, align, size, p);
    size_t us = malloc_usable_size(p);
    CHECKF(us >= size, "%s(align=%zu, size=%zu): usable size %zu", fn, align, size, us);
    if (size) {
        ((unsigned char *)p)[0] = 1;
        ((unsigned char *)p)[size - 1] = 2;
        ((unsigned char *)p)[us - 1] = 3;
    }
}

static void test_posix_memalign(void)
{
    void *sentinel = (void *)0x1234;
    void *p;
    /* invalid alignments: EINVAL returned (not -1 / errno), *memptr untouched */
    size_t bad[] = {0, 1, 2, 4, 3, 12, 24, 48, 100, 4095, 4097, 3 * 4096, ((size_t)1 << 20) + 8, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        p = sentinel;
        errno = 4321;
        int rc = posix_memalign(&p, bad[i], 64);
        CHECKF(rc == EINVAL, "posix_memalign(align=%zu) returned %d, want EINVAL", bad[i], rc);
        CHECKF(p == sentinel, "posix_memalign(align=%zu) wrote *memptr on failure", bad[i]);
        CHECKF(errno == 4321, "posix_memalign(align=%zu) set errno to %d", bad[i], errno); /* glibc keeps it */
    }
    /* valid alignments from sizeof(void*) up to 4 MiB, sizes around the alignment */
    for (size_t a = sizeof(void *); a <= 64 * MiB; a *= 2) {
        size_t sizes[] = {1, 8, a - 1, a, a + 1, a > 4 * MiB ? 4097 : 3 * a, 100, 5000};
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            if (sizes[i] == 0)
                continue;
            p = sentinel;
            errno = 0;
            int rc = posix_memalign(&p, a, sizes[i]);
            CHECKF(rc == 0, "posix_memalign(align=%zu, size=%zu) returned %d", a, sizes[i], rc);
            if (rc == 0) {
                check_aligned(p, a, sizes[i], "posix_memalign");
                free(p);
            }
        }
    }
    /* many aligned blocks alive together: no overlap */
    enum { N = 64 };
    void *v[N];
    for (int i = 0; i < N; i++) {
        size_t a = (size_t)64 << (i % 10);
        CHECK(posix_memalign(&v[i], a, 1000 + i) == 0);
        CHECK(((uintptr_t)v[i] & (a - 1)) == 0);
        bsl_fill(v[i], 1000 + i, (uintptr_t)v[i]);
    }
    for (int i = 0; i < N; i++) {
        CHECK(bsl_check(v[i], 1000 + i, (uintptr_t)v[i]) == (size_t)-1);
        free(v[i]);
    }
    /* size 0: success, freeable */
    p = sentinel;
    CHECK(posix_memalign(&p, 64, vzero) == 0);
    CHECK(p != sentinel);
    free(p);
    /* impossible sizes: ENOMEM returned, *memptr untouched */
    size_t huge[] = {SIZE_MAX, SIZE_MAX - 100, SIZE_MAX - MiB, SIZE_MAX / 2 + 1};
    for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
        p = sentinel;
        errno = 4321;
        int rc = posix_memalign(&p, MiB, huge[i]);
        CHECKF(rc == ENOMEM, "posix_memalign(1 MiB, %zu) returned %d, want ENOMEM", huge[i], rc);
        CHECK(p == sentinel);
        rc = posix_memalign(&p, 64, huge[i]);
        CHECKF(rc == ENOMEM, "posix_memalign(64, %zu) returned %d, want ENOMEM", huge[i], rc);
        CHECK(p == sentinel);
        CHECKF(errno == 4321, "posix_memalign(.., %zu) set errno to %d on failure", huge[i], errno);
    }
    /* a valid alignment too large to be had: ENOMEM, never EINVAL (glibc's tst-malloc-too-large) */
    for (unsigned sh = 41; sh < 64; sh++) {
        size_t a = (size_t)1 << sh;
        p = sentinel;
        errno = 4321;
        int rc = posix_memalign(&p, a, 16);
        CHECKF(rc == ENOMEM && p == sentinel && errno == 4321, "posix_memalign(2^%u, 16)=%d errno=%d", sh, rc,
               errno);
        errno = 0;
        void *m = memalign(a, 16);
        CHECKF(m == NULL && errno == ENOMEM, "memalign(2^%u, 16)=%p errno=%d, want ENOMEM", sh, m, errno);
        errno = 0;
        m = aligned_alloc(a, a);
        CHECKF(m == NULL && errno == ENOMEM, "aligned_alloc(2^%u, 2^%u)=%p errno=%d, want ENOMEM", sh, sh, m, errno);
    }
}

static void test_aligned_alloc(void)
{
    for (size_t a = 1; a <= 2 * MiB; a *= 2) {
        size_t sizes[] = {a, 2 * a, 5 * a, a < 64 ? 64 : a};
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            void *p = aligned_alloc(a, sizes[i]);
            check_aligned(p, a < 16 ? 1 : a, sizes[i], "aligned_alloc");
            free(p);
        }
    }
    errno = 0;
    CHECK(aligned_alloc(4096, SIZE_MAX - 4095) == NULL);
    CHECK(errno == ENOMEM);
}

static void test_memalign(void)
{
    for (size_t a = 1; a <= 4 * MiB; a *= 2) {
        size_t sizes[] = {1, a, a + 7, 3000};
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            void *p = memalign(a, sizes[i]);
            check_aligned(p, a, sizes[i], "memalign");
            free(p);
        }
    }
    /* glibc: alignment 0 means none, a non-power-of-two alignment is rounded up to one */
    void *p = memalign(0, 100);
    CHECK(p != NULL && ((uintptr_t)p & 15) == 0 && bsl_owns(p) == 1);
    free(p);
    size_t odd[] = {24, 100, 3000, 5000, 100000, 3 * MiB};
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
        size_t want = 1;
        while (want < odd[i])
            want <<= 1;
        p = memalign(odd[i], 1000);
        CHECKF(p != NULL && ((uintptr_t)p & (want - 1)) == 0, "memalign(%zu, 1000) = %p, want %zu-aligned", odd[i], p,
               want);
        free(p);
    }
    errno = 0;
    CHECK(memalign(MiB, SIZE_MAX - MiB / 2) == NULL);
    CHECK(errno == ENOMEM);
}

static void test_valloc_pvalloc(void)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t sizes[] = {1, 100, 4095, 4096, 4097, 10000, 100 * KiB, 3 * MiB, 9 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        void *p = valloc(sizes[i]);
        check_aligned(p, pg, sizes[i], "valloc");
        free(p);
        p = pvalloc(sizes[i]);
        size_t rounded = (sizes[i] + pg - 1) & ~(pg - 1);
        check_aligned(p, pg, rounded, "pvalloc");
        CHECKF(malloc_usable_size(p) >= rounded, "pvalloc(%zu): usable size %zu < %zu", sizes[i],
               malloc_usable_size(p), rounded);
        if (p)
            memset(p, 0x3c, rounded); /* the whole rounded range is ours */
        free(p);
    }
    void *p = pvalloc(vzero);
    CHECK(p != NULL && ((uintptr_t)p & (pg - 1)) == 0);
    free(p);
    errno = 0;
    CHECK(valloc(SIZE_MAX) == NULL);
    CHECK(errno == ENOMEM);
    errno = 0;
    CHECK(pvalloc(SIZE_MAX - 100) == NULL); /* page rounding must not wrap around */
    CHECK(errno == ENOMEM);
}

static void test_free_sized(void)
{
    free_sized(NULL, 0);
    free_aligned_sized(NULL, 64, 0);
    bsl_rng r;
    bsl_rng_seed(&r, 11);
    for (int i = 0; i < 3000; i++) {
        size_t n;
        if (i % 100 == 99)
            n = 4 * MiB + bsl_rand_below(&r, 4 * MiB);
        else if (i % 10 == 9)
            n = bsl_rand_below(&r, 1 * MiB);
        else
            n = bsl_rand_below(&r, 2048);
        void *p = malloc(n);
        CHECK(p != NULL);
        memset(p, 0x42, n);
        free_sized(p, n);
        CHECK(bsl_owns(p) == 0);
        size_t a = (size_t)16 << bsl_rand_below(&r, 12);
        size_t m = (bsl_rand_below(&r, 8) + 1) * a;
        void *q = aligned_alloc(a, m);
        CHECK(q != NULL && ((uintptr_t)q & (a - 1)) == 0);
        memset(q, 0x24, m);
        free_aligned_sized(q, a, m);
        CHECK(bsl_owns(q) == 0);
    }
    /* calloc'd arrays are freed with nmemb*size */
    void *c = calloc(100, 24);
    free_sized(c, 2400);
    CHECK(bsl_owns(c) == 0);
    /* The size of the last realloc is right whatever realloc did (kept the block in its class,
     * shrank or grew large blocks in place, kept or remapped huge ones); also huge blocks served
     * from the cache of freed mappings (a mapping up to twice the size). */
    static const size_t steps[] = {0, 1, 16, 17, 64, 100, 60, 33, 500, 300, 257, 4000, 2100, 20000, 10001,
                                   16385, 40000, 33000, 70000, 36000, 5 * MiB, 9 * MiB, 4 * MiB + 1,
                                   20 * MiB, 11 * MiB, 3 * MiB, 1000, 0};
    for (unsigned from = 0; from < sizeof steps / sizeof *steps; from++)
        for (unsigned to = 0; to < sizeof steps / sizeof *steps; to += 3) {
            void *q = malloc(steps[from]);
            CHECK(q != NULL);
            void *r = steps[to] ? realloc(q, steps[to]) : q;
            CHECK(r != NULL);
            free_sized(r, steps[to] ? steps[to] : steps[from]);
        }
    void *h8 = malloc(8 * MiB); /* freed into the huge cache, then served for 4 MiB + 1 */
    free(h8);
    for (size_t n = 4 * MiB + 1; n <= 8 * MiB; n += MiB) {
        void *q = malloc(n);
        CHECK(q != NULL);
        free_sized(q, n);
    }
    /* aligned blocks: the class an alignment picks, frames, sections (memalign, posix_memalign and
     * aligned_alloc, freed with free_aligned_sized) */
    for (size_t a = 32; a <= 16 * MiB; a *= 4)
        for (size_t n = 0; n <= 3 * a; n += a / 2 + 1) {
            void *q = memalign(a, n);
            CHECK(q != NULL);
            free_aligned_sized(q, a, n);
            CHECK(posix_memalign(&q, a, n) == 0);
            free_aligned_sized(q, a, n);
            q = aligned_alloc(a, n);
            CHECK(q != NULL);
            free_aligned_sized(q, a, n);
        }
    void *z = bsl_zone_malloc(BSL_ZONE_HUGE, 100); /* whole sections for any size */
    free_sized(z, 100);
    z = bsl_zone_malloc(BSL_ZONE_LOW32, 40000);
    free_sized(z, 40000);
}

int main(void)
{
    bsl_test_begin("memalign");
    test_posix_memalign();
    test_aligned_alloc();
    test_memalign();
    test_valloc_pvalloc();
    test_free_sized();
    return bsl_test_end();
}
