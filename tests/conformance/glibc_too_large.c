/* Impossibly large requests fail cleanly (the scenario of glibc malloc/tst-malloc-too-large).
 *
 * Before each request a small block is allocated and freed (so a size computation that wraps
 * around would find a free block to return) and errno is cleared. Then every allocation function
 * must return NULL with errno == ENOMEM for sizes near SIZE_MAX, just above PTRDIFF_MAX, and from
 * 2^50 up in steps of 2^50 (with RLIMIT_AS at 2^50 - 1, as in the glibc test):
 *   malloc, realloc (the old block stays valid and intact), calloc and reallocarray with the size
 *   split into nmemb x size both ways (nmemb 1, 2, 4, 8), memalign / aligned_alloc (every power of
 *   two alignment 2^0 .. 2^63: a valid alignment with an impossible size is ENOMEM, not EINVAL),
 *   posix_memalign (returns ENOMEM, *memptr untouched), valloc, pvalloc.
 * A failure is reported once per (function, alignment, errno) with the number of sizes it hit. */
#include "conf.h"

#include <malloc.h>
#include <sys/resource.h>

#define NREC 256
static struct rec {
    const char *fn;
    int align_log2; /* -1: no alignment argument */
    int err;        /* errno seen (or -1: got a block) */
    size_t first_size;
    unsigned long count;
} recs[NREC];
static int nrec;
static unsigned long ncalls;

static void record(const char *fn, int align_log2, int err, size_t size)
{
    for (int i = 0; i < nrec; i++)
        if (recs[i].fn == fn && recs[i].align_log2 == align_log2 && recs[i].err == err) {
            recs[i].count++;
            return;
        }
    if (nrec < NREC)
        recs[nrec++] = (struct rec){fn, align_log2, err, size, 1};
}

/* A pointer-returning call: NULL and ENOMEM, or a recorded failure. */
static void expect_null(void *p, const char *fn, int align_log2, size_t size)
{
    int e = errno;
    ncalls++;
    BSL_ATOMIC_ADD(&bsl_test_nchecks, 1);
    if (p != NULL) {
        record(fn, align_log2, -1, size);
        free(p); /* (cannot be a real block of that size, but do not leak it) */
    } else if (e != ENOMEM) {
        record(fn, align_log2, e, size);
    }
}

static void setup(void)
{
    void *volatile p = malloc(16);
    CHECK(p != NULL);
    free(p);
    errno = 0;
}

static void large_plain(size_t size)
{
    setup();
    expect_null(malloc(conf_size(size)), "malloc", -1, size);

    unsigned char *old = malloc(16);
    CHECK(old != NULL);
    memset(old, 0x3c, 16);
    setup();
    void *q = realloc(old, conf_size(size));
    expect_null(q, "realloc", -1, size);
    if (!q) {
        for (int i = 0; i < 16; i++)
            CHECKF(old[i] == 0x3c, "realloc(%p, %zu) failed but changed the old block", (void *)old, size);
        free(old);
    }

    for (size_t nmemb = 1; nmemb <= 8 && size % nmemb == 0; nmemb *= 2) {
        setup();
        expect_null(calloc(nmemb, conf_size(size / nmemb)), "calloc(n, size/n)", -1, size);
        setup();
        expect_null(calloc(conf_size(size / nmemb), nmemb), "calloc(size/n, n)", -1, size);
        for (int order = 0; order < 2; order++) {
            unsigned char *r = malloc(16);
            CHECK(r != NULL);
            memset(r, 0x5d, 16);
            setup();
            void *s = order ? reallocarray(r, conf_size(size / nmemb), nmemb) : reallocarray(r, nmemb, conf_size(size / nmemb));
            expect_null(s, order ? "reallocarray(p, size/n, n)" : "reallocarray(p, n, size/n)", -1, size);
            if (!s) {
                CHECK(r[0] == 0x5d && r[15] == 0x5d);
                free(r);
            }
        }
    }
}

static void large_aligned(size_t size)
{
    for (int lg = 0; lg < 64; lg++) {
        size_t align = (size_t)1 << lg;
        setup();
        expect_null(memalign(conf_size(align), conf_size(size)), "memalign", lg, size);
        if (align % sizeof(void *) == 0) {
            void *sentinel = (void *)&recs, *p = sentinel;
            setup();
            int rc = posix_memalign(&p, conf_size(align), conf_size(size));
            ncalls++;
            BSL_ATOMIC_ADD(&bsl_test_nchecks, 1);
            if (rc != ENOMEM)
                record("posix_memalign (return value)", lg, rc, size);
            if (p != sentinel) {
                record("posix_memalign (*memptr written)", lg, 0, size);
                if (rc == 0)
                    free(p);
            }
        }
        if (size % align == 0) {
            setup();
            expect_null(aligned_alloc(conf_size(align), conf_size(size)), "aligned_alloc", lg, size);
        }
    }
    setup();
    expect_null(valloc(conf_size(size)), "valloc", -1, size);
    setup();
    expect_null(pvalloc(conf_size(size)), "pvalloc", -1, size);
}

static void one(size_t size)
{
    large_plain(size);
    large_aligned(size);
}

int main(void)
{
    conf_begin("glibc_too_large", 60);
    /* No address bus is 50 bits wide here: sizes from 2^50 up cannot be satisfied. */
    struct rlimit rl = {((size_t)1 << 50) - 1, ((size_t)1 << 50) - 1};
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0);

    /* Near SIZE_MAX: the last 512 sizes, then every 61st up to 2^14 below. */
    conf_phase = "near SIZE_MAX";
    for (size_t i = 0; i < ((size_t)1 << 14); i += i < 512 ? 1 : 61)
        one(SIZE_MAX - i);
    /* Just above PTRDIFF_MAX: no object may be that large. */
    conf_phase = "above PTRDIFF_MAX";
    for (size_t i = 1; i < ((size_t)1 << 14); i += i < 512 ? 1 : 61)
        one((size_t)PTRDIFF_MAX + i);
    /* 2^50 steps: (msbs << 50) with the low 50 bits all ones, then all zeros. */
    conf_phase = "multiples of 2^50";
    for (size_t msbs = ((size_t)1 << 14) - 1; msbs >= 1; msbs -= msbs > 128 ? 37 : 1) {
        one((msbs << 50) | (((size_t)1 << 50) - 1));
        one(msbs << 50);
    }

    for (int i = 0; i < nrec; i++) {
        char al[32] = "";
        if (recs[i].align_log2 >= 0)
            snprintf(al, sizeof al, "align=2^%d, ", recs[i].align_log2);
        if (recs[i].err == -1)
            fprintf(stderr, "FAIL: %s(%ssize=%#zx) returned a block (%lu sizes), want NULL + ENOMEM\n", recs[i].fn, al,
                    recs[i].first_size, recs[i].count);
        else if (recs[i].err == 0 && strstr(recs[i].fn, "memptr"))
            fprintf(stderr, "FAIL: %s(%ssize=%#zx): *memptr changed on failure (%lu sizes)\n", recs[i].fn, al,
                    recs[i].first_size, recs[i].count);
        else
            fprintf(stderr, "FAIL: %s(%ssize=%#zx): %s %d (%s), want ENOMEM (%lu sizes)\n", recs[i].fn, al,
                    recs[i].first_size, strstr(recs[i].fn, "return") ? "returned" : "NULL with errno", recs[i].err,
                    strerror(recs[i].err), recs[i].count);
        BSL_ATOMIC_ADD(&bsl_test_nfailed, recs[i].count);
    }
    printf("glibc_too_large: %lu impossible requests\n", ncalls);
    return conf_end();
}
