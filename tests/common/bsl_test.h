/* Tiny test harness shared by the api and stress suites (header only).
 *
 * CHECK(expr) prints "file:line: CHECK failed: expr" and exits with status 1.
 * With BSL_TEST_KEEP_GOING=1 in the environment a failed CHECK is reported and the test goes on
 * (the exit status is still 1); useful to see every failure of a run at once.
 * bsl_test_begin() makes sure the malloc under test is buddyslab's and that the rseq mode is the
 * one the test registration asked for (BSL_EXPECT_RSEQ=0/1); bsl_test_end() prints the summary. */
#ifndef BSL_TEST_H
#define BSL_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buddyslab.h"

#define BSL_ATOMIC_ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)

static unsigned long bsl_test_nchecks;
static unsigned long bsl_test_nfailed;
static const char *bsl_test_name = "test";

static inline int bsl_test_keep_going(void)
{
    static int cached = -1;
    if (cached < 0) {
        const char *e = getenv("BSL_TEST_KEEP_GOING");
        cached = (e && *e && *e != '0') ? 1 : 0;
    }
    return cached;
}

static inline void bsl_test_fail(const char *file, int line, const char *expr)
{
    BSL_ATOMIC_ADD(&bsl_test_nfailed, 1);
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", file, line, expr);
    fflush(stderr);
    if (!bsl_test_keep_going())
        exit(1);
}

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        BSL_ATOMIC_ADD(&bsl_test_nchecks, 1);                                                      \
        if (!(expr))                                                                               \
            bsl_test_fail(__FILE__, __LINE__, #expr);                                              \
    } while (0)

/* CHECK with a printf-style explanation printed after the failure line. */
#define CHECKF(expr, ...)                                                                          \
    do {                                                                                           \
        BSL_ATOMIC_ADD(&bsl_test_nchecks, 1);                                                      \
        if (!(expr)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n    ", __FILE__, __LINE__, #expr);           \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            fflush(stderr);                                                                        \
            BSL_ATOMIC_ADD(&bsl_test_nfailed, 1);                                                  \
            if (!bsl_test_keep_going())                                                            \
                exit(1);                                                                           \
        }                                                                                          \
    } while (0)

static inline double bsl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Expected rseq mode from the environment: -1 when the registration did not say. */
static inline int bsl_test_expected_rseq(void)
{
    const char *e = getenv("BSL_EXPECT_RSEQ");
    if (!e || !*e)
        return -1;
    return atoi(e) != 0;
}

static inline void bsl_test_begin(const char *name)
{
    bsl_test_name = name;
    /* The program must really run on buddyslab: a malloc from libc would not be owned. */
    void *volatile p = malloc(10);
    CHECKF(p != NULL && bsl_owns(p) == 1,
           "malloc(10)=%p is not a buddyslab block: the allocator is not interposed", (void *)p);
    free(p);
    int want = bsl_test_expected_rseq();
    if (want >= 0)
        CHECKF(bsl_using_rseq() == want, "bsl_using_rseq()=%d, BSL_EXPECT_RSEQ=%d (BUDDYSLAB_OPTIONS=%s)",
               bsl_using_rseq(), want, getenv("BUDDYSLAB_OPTIONS") ? getenv("BUDDYSLAB_OPTIONS") : "");
}

static inline int bsl_test_end(void)
{
    unsigned long n = __atomic_load_n(&bsl_test_nchecks, __ATOMIC_RELAXED);
    unsigned long f = __atomic_load_n(&bsl_test_nfailed, __ATOMIC_RELAXED);
    printf("%s: %s: %lu checks, %lu failed (rseq=%d)\n", bsl_test_name, f ? "FAIL" : "PASS", n, f,
           bsl_using_rseq());
    fflush(stdout);
    return f ? 1 : 0;
}

/* ---- deterministic random numbers and block patterns ---- */

static inline uint64_t bsl_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

typedef struct bsl_rng {
    uint64_t s;
} bsl_rng;

static inline uint64_t bsl_rand(bsl_rng *r)
{
    /* xorshift64* */
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static inline void bsl_rng_seed(bsl_rng *r, uint64_t seed)
{
    r->s = bsl_mix64(seed + 0x9E3779B97F4A7C15ULL) | 1;
}

/* uniform in [0, n) */
static inline uint64_t bsl_rand_below(bsl_rng *r, uint64_t n)
{
    return n ? bsl_rand(r) % n : 0;
}

/* Fill n bytes at p with a pattern derived from seed (callers mix the block address in).
 * Byte i depends only on (seed, i), so a prefix of a filled block checks with a shorter n. */
static inline void bsl_fill(void *p, size_t n, uint64_t seed)
{
    uint64_t v = bsl_mix64(seed);
    size_t nw = n / 8, i;
    unsigned char *b = (unsigned char *)p;
    for (i = 0; i < nw; i++) {
        uint64_t w = v + (uint64_t)i * 0x9E3779B97F4A7C15ULL;
        memcpy(b + i * 8, &w, 8);
    }
    for (i = nw * 8; i < n; i++)
        b[i] = (unsigned char)((v + (uint64_t)nw * 0x9E3779B97F4A7C15ULL) >> ((i & 7) * 8));
}

/* Offset of the first byte that does not match bsl_fill(p, n, seed), or (size_t)-1. */
static inline size_t bsl_check(const void *p, size_t n, uint64_t seed)
{
    uint64_t v = bsl_mix64(seed);
    size_t nw = n / 8, i;
    const unsigned char *b = (const unsigned char *)p;
    for (i = 0; i < nw; i++) {
        uint64_t w = v + (uint64_t)i * 0x9E3779B97F4A7C15ULL, got;
        memcpy(&got, b + i * 8, 8);
        if (got != w) {
            size_t j = 0;
            while (j < 8 && ((got >> (8 * j)) & 0xff) == ((w >> (8 * j)) & 0xff))
                j++;
            return i * 8 + j;
        }
    }
    for (i = nw * 8; i < n; i++)
        if (b[i] != (unsigned char)((v + (uint64_t)nw * 0x9E3779B97F4A7C15ULL) >> ((i & 7) * 8)))
            return i;
    return (size_t)-1;
}

/* Prefix check used after realloc: the first n bytes of a block filled with (old_n, seed). */
#define bsl_check_prefix(p, n, seed) bsl_check((p), (n), (seed))

static inline int bsl_all_zero(const void *p, size_t n)
{
    const unsigned char *b = (const unsigned char *)p;
    size_t i = 0;
    for (; i < n && ((uintptr_t)(b + i) & 7); i++)
        if (b[i])
            return 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        if (w)
            return 0;
    }
    for (; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

#endif
