/* malloc / free / calloc / realloc / reallocarray / malloc_usable_size against glibc's contract. */
#include "bsl_test.h"

#include <malloc.h>
#include <sys/mman.h>

#define MiB ((size_t)1 << 20)
#define KiB ((size_t)1 << 10)

/* Sizes read through a volatile so the compiler cannot fold the calls. */
static volatile size_t vzero = 0;

static void test_malloc_zero(void)
{
    void *a = malloc(vzero), *b = malloc(vzero), *c = malloc(vzero);
    CHECK(a != NULL && b != NULL && c != NULL);
    CHECK(a != b && b != c && a != c);
    CHECK(bsl_owns(a) == 1 && bsl_owns(b) == 1 && bsl_owns(c) == 1);
    CHECK(((uintptr_t)a & 15) == 0);
    free(b);
    free(a);
    free(c);
    /* many zero-size blocks alive at once are all distinct */
    enum { N = 1000 };
    static void *v[N];
    for (int i = 0; i < N; i++) {
        v[i] = malloc(vzero);
        CHECK(v[i] != NULL);
    }
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < i + 8 && j < N; j++)
            CHECK(v[i] != v[j]);
    for (int i = 0; i < N; i++)
        free(v[i]);
}

static void test_free_null(void)
{
    int saved = errno = 4242;
    free(NULL);
    CHECK(errno == saved); /* free never clobbers errno (POSIX 2024, glibc >= 2.33) */
    size_t sizes[] = {10, 5000, 200 * KiB, 2 * MiB, 12 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        void *p = malloc(sizes[i]);
        CHECK(p != NULL);
        memset(p, 1, sizes[i]);
        errno = 4242;
        free(p);
        CHECKF(errno == 4242, "free() of a %zu-byte block changed errno to %d", sizes[i], errno);
    }
}

static void check_block(size_t size)
{
    unsigned char *p = malloc(size);
    CHECKF(p != NULL, "malloc(%zu) failed", size);
    if (!p)
        return;
    CHECKF(((uintptr_t)p & 15) == 0, "malloc(%zu)=%p not 16-byte aligned", size, (void *)p);
    CHECKF(bsl_owns(p) == 1, "malloc(%zu)=%p not owned", size, (void *)p);
    size_t us = malloc_usable_size(p);
    CHECKF(us >= size, "malloc_usable_size(malloc(%zu))=%zu", size, us);
    if (size) {
        p[us - 1] = 0x11;
        p[size - 1] = 0xa5;
        p[0] = 0x5a;
        CHECK(p[0] == 0x5a && p[size - 1] == (size == 1 ? 0x5a : 0xa5));
    }
    free(p);
}

static void test_alignment_all_sizes(void)
{
    for (size_t s = 0; s <= 8192; s++)
        check_block(s);
    for (size_t s = 8192; s <= 9 * MiB; s += s / 7 + 1)
        check_block(s);
    for (size_t sh = 4; sh <= 24; sh++) {
        size_t s = (size_t)1 << sh;
        check_block(s - 1);
        check_block(s);
        check_block(s + 1);
        check_block(s + s / 2);
    }
    /* with many blocks alive at once too */
    enum { N = 2000 };
    static void *v[N];
    for (int i = 0; i < N; i++) {
        size_t s = (size_t)(i * 37) % 5000;
        v[i] = malloc(s);
        CHECK(v[i] != NULL && ((uintptr_t)v[i] & 15) == 0);
    }
    for (int i = 0; i < N; i++)
        free(v[i]);
}

/* The usable range of each block is writable and does not overlap any other live block. */
static void test_usable_size(void)
{
    CHECK(malloc_usable_size(NULL) == 0);
    enum { N = 600 };
    static unsigned char *v[N];
    static size_t us[N];
    bsl_rng r;
    bsl_rng_seed(&r, 77);
    for (int i = 0; i < N; i++) {
        size_t s;
        switch (i % 6) {
        case 0: s = bsl_rand_below(&r, 64); break;
        case 1: s = bsl_rand_below(&r, 1024); break;
        case 2: s = bsl_rand_below(&r, 16 * KiB); break;
        case 3: s = bsl_rand_below(&r, 128 * KiB); break;
        case 4: s = bsl_rand_below(&r, 1 * MiB); break;
        default: s = (i % 60 == 5) ? 4 * MiB + bsl_rand_below(&r, 4 * MiB) : bsl_rand_below(&r, 4096); break;
        }
        v[i] = malloc(s);
        CHECK(v[i] != NULL);
        us[i] = malloc_usable_size(v[i]);
        CHECKF(us[i] >= s, "usable %zu < requested %zu", us[i], s);
        bsl_fill(v[i], us[i], (uintptr_t)v[i] ^ (uint64_t)i);
    }
    for (int i = 0; i < N; i++) {
        size_t off = bsl_check(v[i], us[i], (uintptr_t)v[i] ^ (uint64_t)i);
        CHECKF(off == (size_t)-1, "block %d (%p, usable %zu) overwritten at offset %zu", i, (void *)v[i],
               us[i], off);
    }
    for (int i = 0; i < N; i += 2)
        free(v[i]);
    for (int i = 1; i < N; i += 2) {
        size_t off = bsl_check(v[i], us[i], (uintptr_t)v[i] ^ (uint64_t)i);
        CHECKF(off == (size_t)-1, "block %d overwritten at offset %zu after frees", i, off);
        CHECK(malloc_usable_size(v[i]) == us[i]); /* stable for a live block */
        free(v[i]);
    }
}

static void calloc_check(size_t n, size_t sz, int rounds)
{
    for (int k = 0; k < rounds; k++) {
        /* dirty memory of that size class first */
        enum { M = 16 };
        void *d[M];
        for (int i = 0; i < M; i++) {
            d[i] = malloc(n * sz);
            CHECK(d[i] != NULL);
            memset(d[i], 0xAB, malloc_usable_size(d[i]));
        }
        for (int i = 0; i < M; i++)
            free(d[i]);
        for (int i = 0; i < M; i++) {
            d[i] = calloc(n, sz);
            CHECKF(d[i] != NULL, "calloc(%zu, %zu) failed", n, sz);
            CHECKF(bsl_all_zero(d[i], n * sz), "calloc(%zu, %zu) returned non-zero memory (round %d)", n, sz, k);
            CHECK(((uintptr_t)d[i] & 15) == 0);
            memset(d[i], 0xCD, n * sz);
        }
        for (int i = 0; i < M; i++)
            free(d[i]);
    }
}

static void test_calloc(void)
{
    size_t sizes[] = {1, 7, 16, 24, 100, 512, 1000, 4096, 5000, 32768, 65536, 100000, 262144, 1 * MiB,
                      3 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        calloc_check(1, sizes[i], 3);
        calloc_check(sizes[i], 1, 1);
    }
    calloc_check(3, 3 * MiB, 2); /* huge (> 4 MiB) */
    calloc_check(1, 9 * MiB, 2);

    /* after dirty pages were purged (madvise) calloc must still see zeroes */
    for (size_t s = 64 * KiB; s <= 8 * MiB; s *= 4) {
        void *p = malloc(s);
        CHECK(p != NULL);
        memset(p, 0x77, s);
        free(p);
        bsl_purge();
        void *q = calloc(1, s);
        CHECK(q != NULL);
        CHECKF(bsl_all_zero(q, s), "calloc(1, %zu) after bsl_purge not zeroed", s);
        free(q);
    }

    /* a dirty block whose frames are partly resident: a big calloc clears only the pages that are
     * present or swapped out (os_zero_resident); the others must read as zero too, and the
     * written ones must be cleared wherever they sit */
    for (size_t s = 256 * KiB; s <= 4 * MiB; s *= 2) {
        for (int stride = 1; stride <= 7; stride += 3) {
            unsigned char *p = malloc(s - 100);
            CHECK(p != NULL);
            for (size_t off = (size_t)stride * 1000; off < s - 100; off += (size_t)stride * 4096)
                p[off] = 0x5A; /* every stride-th page, at a moving offset */
            p[s - 101] = 0x5A;
            free(p);
            unsigned char *q = calloc(1, s - 100);
            CHECK(q != NULL);
            CHECKF(bsl_all_zero(q, s - 100), "calloc(1, %zu) after sparse writes (stride %d) not zeroed", s - 100,
                   stride);
            memset(q, 0x33, s - 100);
            free(q);
        }
    }

    /* dirty frames given back by a realloc shrink or by splitting a freed block are not zero */
    for (int round = 0; round < 4; round++) {
        unsigned char *big = malloc(4 * MiB - round * 100 * KiB);
        CHECK(big != NULL);
        memset(big, 0xEE, 4 * MiB - round * 100 * KiB);
        unsigned char *small = realloc(big, 512 * KiB); /* the tail goes back dirty */
        CHECK(small != NULL);
        void *c[8];
        for (int i = 0; i < 8; i++) {
            size_t n = (size_t)(64 + 100 * i) * KiB;
            c[i] = calloc(1, n);
            CHECK(c[i] != NULL);
            CHECKF(bsl_all_zero(c[i], n), "calloc(1, %zu) after a dirty realloc shrink not zeroed (round %d)", n, round);
        }
        for (int i = 0; i < 8; i++)
            free(c[i]);
        memset(small, 0xDD, 512 * KiB);
        free(small);
        for (int i = 0; i < 8; i++) {
            size_t n = (size_t)(20 + 40 * i) * KiB;
            c[i] = calloc(n / 8, 8);
            CHECK(c[i] != NULL);
            CHECKF(bsl_all_zero(c[i], n), "calloc(%zu, 8) from a split dirty block not zeroed", n / 8);
        }
        for (int i = 0; i < 8; i++)
            free(c[i]);
    }
    /* a large block grown in place over dirty free neighbours, then freed: calloc still zeroes */
    for (int round = 0; round < 4; round++) {
        unsigned char *a = malloc(256 * KiB), *b = malloc(256 * KiB);
        memset(a, 0x99, 256 * KiB);
        memset(b, 0x98, 256 * KiB);
        free(b);
        a = realloc(a, 700 * KiB);
        CHECK(a != NULL);
        memset(a, 0x97, 700 * KiB);
        free(a);
        unsigned char *z = calloc(1, 700 * KiB);
        CHECKF(z != NULL && bsl_all_zero(z, 700 * KiB), "calloc(1, 700 KiB) after grow-in-place reuse not zeroed");
        free(z);
    }

    /* calloc(0, x) and calloc(x, 0) behave as malloc(0) */
    void *z1 = calloc(vzero, 16), *z2 = calloc(16, vzero);
    CHECK(z1 != NULL && z2 != NULL && z1 != z2);
    free(z1);
    free(z2);

    /* nmemb * size overflow */
    volatile size_t half = SIZE_MAX / 2 + 1, two = 2, big = (size_t)1 << 33;
    errno = 0;
    CHECK(calloc(half, two) == NULL);
    CHECK(errno == ENOMEM);
    errno = 0;
    CHECK(calloc(big, big) == NULL);
    CHECK(errno == ENOMEM);
    errno = 0;
    CHECK(calloc(two, SIZE_MAX / 2 + 8) == NULL);
    CHECK(errno == ENOMEM);
    errno = 0;
    CHECK(calloc(SIZE_MAX, SIZE_MAX) == NULL);
    CHECK(errno == ENOMEM);
}

static void test_realloc_basic(void)
{
    /* realloc(NULL, n) == malloc(n) */
    void *p = realloc(NULL, 100);
    CHECK(p != NULL && bsl_owns(p) == 1 && malloc_usable_size(p) >= 100);
    /* realloc(p, 0) frees p and returns NULL (glibc) */
    errno = 0;
    void *q = realloc(p, vzero);
    CHECK(q == NULL);
    CHECK(bsl_owns(p) == 0);
    /* same for a large and a huge block */
    p = malloc(512 * KiB);
    CHECK(p != NULL);
    CHECK(realloc(p, vzero) == NULL);
    CHECK(bsl_owns(p) == 0);
    p = malloc(12 * MiB);
    CHECK(p != NULL);
    CHECK(realloc(p, vzero) == NULL);
    CHECK(bsl_owns(p) == 0);
    /* realloc(NULL, 0) behaves as malloc(0) */
    p = realloc(NULL, vzero);
    CHECK(p != NULL && bsl_owns(p) == 1);
    free(p);
}

static void test_realloc_shrink_in_place(void)
{
    struct {
        size_t from, to;
    } cases[] = {
        {256 * KiB, 200 * KiB}, {512 * KiB, 300 * KiB}, {1 * MiB, 600 * KiB}, {1 * MiB, 512 * KiB + 1},
        {2 * MiB, 1 * MiB + 1}, {3 * MiB, 2 * MiB}, {4 * MiB, 1 * MiB}, {1 * MiB + 4096, 1 * MiB},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        unsigned char *p = malloc(cases[i].from);
        CHECK(p != NULL);
        bsl_fill(p, cases[i].from, i);
        unsigned char *q = realloc(p, cases[i].to);
        CHECKF(q == p, "realloc(%zu -> %zu) moved a large block (%p -> %p)", cases[i].from, cases[i].to,
               (void *)p, (void *)q);
        if (!q)
            continue;
        CHECK(malloc_usable_size(q) >= cases[i].to);
        CHECK(bsl_check(q, cases[i].to, i) == (size_t)-1);
        /* the tail given back can be reused without hurting q */
        void *o = malloc(cases[i].from - cases[i].to);
        CHECK(o != NULL);
        memset(o, 0xEE, cases[i].from - cases[i].to);
        CHECK(bsl_check(q, cases[i].to, i) == (size_t)-1);
        free(o);
        free(q);
    }
    /* shrinking a small block keeps the contents (pointer may change) */
    unsigned char *p = malloc(1000);
    bsl_fill(p, 1000, 5);
    p = realloc(p, 10);
    CHECK(p != NULL && bsl_check(p, 10, 5) == (size_t)-1);
    free(p);
}

static void test_realloc_grow_chain(void)
{
    const size_t seq[] = {1,         8,         24,        100,       1000,     4096,    16 * KiB,
                          60 * KiB,  200 * KiB, 1 * MiB,   3 * MiB,   5 * MiB,  9 * MiB, 20 * MiB,
                          33 * MiB,  7 * MiB,   4 * MiB,   3 * MiB,   100 * KiB, 5000,   10,
                          3,         2 * MiB,   17 * MiB,  40,        6 * MiB,  6 * MiB + 1};
    for (int rep = 0; rep < 3; rep++) {
        size_t cur = seq[0];
        uint64_t seed = 1000 + rep;
        unsigned char *p = malloc(cur);
        CHECK(p != NULL);
        bsl_fill(p, cur, seed);
        /* a neighbour that must survive every step */
        unsigned char *nb = malloc(cur + 48);
        bsl_fill(nb, cur + 48, 99);
        size_t nbs = cur + 48;
        for (size_t i = 1; i < sizeof seq / sizeof *seq; i++) {
            size_t n = seq[i];
            unsigned char *q = realloc(p, n);
            CHECKF(q != NULL, "realloc(%zu -> %zu) failed", cur, n);
            if (!q)
                break;
            size_t keep = cur < n ? cur : n;
            size_t off = bsl_check(q, keep, seed);
            CHECKF(off == (size_t)-1, "realloc(%zu -> %zu): contents lost at offset %zu", cur, n, off);
            CHECK(((uintptr_t)q & 15) == 0);
            CHECK(malloc_usable_size(q) >= n);
            CHECK(bsl_owns(q) == 1);
            seed = seed * 31 + i;
            bsl_fill(q, n, seed);
            p = q;
            cur = n;
            CHECK(bsl_check(nb, nbs, 99) == (size_t)-1);
        }
        free(p);
        free(nb);
    }
    /* grow by one byte many times (exercises in-place growth and moves) */
    size_t n = 1;
    unsigned char *p = malloc(n);
    p[0] = 0;
    for (; n < 70000; n += 1 + n / 50) {
        unsigned char *q = realloc(p, n + 1 + n / 50);
        CHECK(q != NULL);
        for (size_t k = 0; k < n; k += 97)
            CHECKF(q[k] == (unsigned char)(k * 7), "byte %zu lost growing to %zu", k, n);
        for (size_t k = 0; k < n + 1 + n / 50; k++)
            q[k] = (unsigned char)(k * 7);
        p = q;
    }
    free(p);
}

static void test_realloc_failure_keeps_block(void)
{
    unsigned char *p = malloc(300);
    bsl_fill(p, 300, 3);
    volatile size_t huge = SIZE_MAX - 4096;
    errno = 0;
    CHECK(realloc(p, huge) == NULL);
    CHECK(errno == ENOMEM);
    CHECK(bsl_owns(p) == 1);
    CHECK(bsl_check(p, 300, 3) == (size_t)-1);
    errno = 0;
    CHECK(realloc(p, SIZE_MAX) == NULL);
    CHECK(errno == ENOMEM);
    CHECK(bsl_check(p, 300, 3) == (size_t)-1);
    free(p);
}

static void test_reallocarray(void)
{
    unsigned char *p = reallocarray(NULL, 10, 10);
    CHECK(p != NULL && malloc_usable_size(p) >= 100);
    bsl_fill(p, 100, 8);
    p = reallocarray(p, 1000, 10);
    CHECK(p != NULL && bsl_check(p, 100, 8) == (size_t)-1);
    volatile size_t a = SIZE_MAX / 2, b = 4;
    errno = 0;
    CHECK(reallocarray(p, a, b) == NULL);
    CHECK(errno == ENOMEM);
    CHECK(bsl_owns(p) == 1 && bsl_check(p, 100, 8) == (size_t)-1);
    errno = 0;
    CHECK(reallocarray(NULL, (size_t)1 << 40, (size_t)1 << 40) == NULL);
    CHECK(errno == ENOMEM);
    free(p);
}

/* Free memory from another allocation family mixes fine: malloc'd block, realloc'd to huge and back. */
static void test_free_after_moves(void)
{
    for (int i = 0; i < 200; i++) {
        void *p = malloc((size_t)i * 1000 + 1);
        void *q = calloc(i + 1, 333);
        void *r = realloc(NULL, (size_t)i * 5000);
        CHECK(p && q && r);
        free(q);
        free(p);
        free(r);
    }
}

int main(void)
{
    bsl_test_begin("malloc_basic");
    test_malloc_zero();
    test_free_null();
    test_alignment_all_sizes();
    test_usable_size();
    test_calloc();
    test_realloc_basic();
    test_realloc_shrink_in_place();
    test_realloc_grow_chain();
    test_realloc_failure_keeps_block();
    test_reallocarray();
    test_free_after_moves();
    return bsl_test_end();
}
