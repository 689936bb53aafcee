/* realloc's contract (the scenario of glibc malloc/tst-realloc, plus size sequences).
 *
 * realloc(NULL, n) is malloc(n) (n = 0 included: a unique block); realloc(p, 0) frees p and
 * returns NULL (glibc's behaviour, which programs written for glibc rely on); shrinking keeps the
 * first bytes; growing keeps all old bytes; a failed realloc (impossible size) returns NULL with
 * ENOMEM and leaves the old block valid and unchanged; realloc to the same size keeps the data;
 * reallocarray follows the same rules and catches overflowing products. Each step works in every
 * size range: slab classes, large (32 KiB .. 4 MiB) and huge (> 4 MiB) blocks, and across them. */
#include "conf.h"

#include <malloc.h>

static void fill_chk(unsigned char *p, size_t n, uint64_t seed, const char *what, size_t keep)
{
    size_t off = bsl_check(p, keep, seed);
    CHECKF(off == (size_t)-1, "%s: byte %zu of the first %zu changed", what, off, keep);
    (void)n;
}

static void sequence(const size_t *sizes, size_t count, uint64_t seed)
{
    unsigned char *p = NULL;
    size_t cur = 0;
    for (size_t i = 0; i < count; i++) {
        size_t n = sizes[i];
        unsigned char *q = realloc(p, n);
        CHECKF(q != NULL, "realloc(%p, %zu) failed", (void *)p, n);
        if (!q)
            return;
        size_t keep = cur < n ? cur : n;
        if (keep)
            fill_chk(q, n, seed, "sequence", keep);
        CHECKF(malloc_usable_size(q) >= n, "usable size %zu < %zu", malloc_usable_size(q), n);
        bsl_fill(q, n, seed);
        p = q;
        cur = n;
    }
    free(p);
}

int main(void)
{
    conf_begin("glibc_realloc", 60);

    /* realloc(NULL, n) behaves like malloc(n) */
    size_t ns[] = {0, 1, 16, 1000, 40 * KiB, 5 * MiB};
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++) {
        errno = 0;
        void *p = realloc(NULL, conf_size(ns[i]));
        CHECKF(p != NULL, "realloc(NULL, %zu) = NULL", ns[i]);
        CHECKF(malloc_usable_size(p) >= ns[i], "realloc(NULL, %zu): usable %zu", ns[i], malloc_usable_size(p));
        free(p);
    }
    void *a = realloc(NULL, 0), *b = realloc(NULL, 0);
    CHECK(a && b && a != b);
    free(a);
    free(b);

    /* realloc(p, 0) frees p and returns NULL (glibc); the freed block is reusable */
    for (size_t i = 1; i < sizeof ns / sizeof *ns; i++) {
        void *p = malloc(ns[i]);
        CHECK(p != NULL);
        void *q = realloc(p, conf_size(0));
        CHECKF(q == NULL, "realloc(p of %zu, 0) = %p, want NULL (freed)", ns[i], q);
        free(q);
    }

    /* shrinking keeps data, in every range and across ranges */
    size_t shrink[][2] = {{100, 10},        {1000, 999},      {4096, 17},       {40 * KiB, 33 * KiB},
                          {40 * KiB, 200},  {1 * MiB, 4 * KiB}, {5 * MiB, 4 * MiB + 1}, {9 * MiB, 5 * MiB},
                          {9 * MiB, 64},    {3 * MiB, 3 * MiB - 1}};
    for (size_t i = 0; i < sizeof shrink / sizeof *shrink; i++) {
        unsigned char *p = malloc(shrink[i][0]);
        CHECK(p != NULL);
        bsl_fill(p, shrink[i][0], 77 + i);
        unsigned char *q = realloc(p, conf_size(shrink[i][1]));
        CHECKF(q != NULL, "realloc(%zu -> %zu) failed", shrink[i][0], shrink[i][1]);
        fill_chk(q, shrink[i][1], 77 + i, "shrink", shrink[i][1]);
        free(q);
    }

    /* growing keeps data; same size keeps data */
    size_t grow[][2] = {{10, 100},         {100, 100},       {999, 1000},          {17, 4096},
                        {200, 40 * KiB},   {33 * KiB, 40 * KiB}, {4 * KiB, 1 * MiB}, {1 * MiB, 1 * MiB},
                        {4 * MiB, 5 * MiB}, {5 * MiB, 9 * MiB}, {64, 9 * MiB}};
    for (size_t i = 0; i < sizeof grow / sizeof *grow; i++) {
        unsigned char *p = malloc(grow[i][0]);
        CHECK(p != NULL);
        bsl_fill(p, grow[i][0], 99 + i);
        unsigned char *q = realloc(p, conf_size(grow[i][1]));
        CHECKF(q != NULL, "realloc(%zu -> %zu) failed", grow[i][0], grow[i][1]);
        fill_chk(q, grow[i][1], 99 + i, "grow", grow[i][0]);
        memset(q + grow[i][0], 1, grow[i][1] - grow[i][0]); /* the new tail is writable */
        free(q);
    }

    /* a failed realloc leaves the old block alone */
    size_t olds[] = {24, 50 * KiB, 6 * MiB};
    for (size_t i = 0; i < sizeof olds / sizeof *olds; i++) {
        unsigned char *p = malloc(olds[i]);
        CHECK(p != NULL);
        bsl_fill(p, olds[i], 5 + i);
        errno = 0;
        void *q = realloc(p, conf_size(SIZE_MAX - 4096));
        CHECKF(q == NULL && errno == ENOMEM, "realloc(%zu -> SIZE_MAX-4096) = %p errno %d", olds[i], q, errno);
        fill_chk(p, olds[i], 5 + i, "after failed realloc", olds[i]);
        errno = 0;
        q = reallocarray(p, conf_size(SIZE_MAX / 2), 3);
        CHECKF(q == NULL && errno == ENOMEM, "reallocarray overflow = %p errno %d", q, errno);
        fill_chk(p, olds[i], 5 + i, "after failed reallocarray", olds[i]);
        q = reallocarray(p, 3, conf_size(olds[i]));
        CHECK(q != NULL);
        fill_chk(q, olds[i], 5 + i, "reallocarray grow", olds[i]);
        free(q);
    }

    /* sequences through every range */
    size_t seq1[] = {1, 2, 3, 8, 16, 17, 100, 512, 513, 4000, 8192, 32 * KiB, 32 * KiB + 1, 70 * KiB, 1 * MiB,
                     4 * MiB, 4 * MiB + 1, 12 * MiB, 5 * MiB, 100 * KiB, 3000, 24, 1};
    sequence(seq1, sizeof seq1 / sizeof *seq1, 31);
    bsl_rng r;
    bsl_rng_seed(&r, 32);
    size_t seq2[150];
    for (int i = 0; i < 150; i++) {
        uint64_t x = bsl_rand(&r);
        seq2[i] = 1 + (x % 8 == 0 ? (x >> 8) % (6 * MiB) : x % 9 == 0 ? (x >> 8) % (200 * KiB) : (x >> 8) % 3000);
    }
    sequence(seq2, 150, 33);
    return conf_end();
}
