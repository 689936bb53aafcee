/* glibc extensions: malloc_trim, mallinfo2, mallinfo, malloc_stats, mallopt, __libc_* entry points,
 * and the limits (SIZE_MAX and other impossible sizes fail with NULL / ENOMEM). */
#include "bsl_test.h"

#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

#define MiB ((size_t)1 << 20)
#define KiB ((size_t)1 << 10)

static void test_malloc_trim(void)
{
    void *v[32];
    for (int i = 0; i < 32; i++) {
        v[i] = malloc(256 * KiB);
        memset(v[i], 1, 256 * KiB);
    }
    for (int i = 0; i < 32; i++)
        free(v[i]);
    int r = malloc_trim(0);
    CHECKF(r == 0 || r == 1, "malloc_trim(0) returned %d", r);
    r = malloc_trim(1 * MiB);
    CHECKF(r == 0 || r == 1, "malloc_trim(1 MiB) returned %d", r);
    /* the heap still works afterwards */
    void *p = malloc(256 * KiB);
    CHECK(p != NULL);
    memset(p, 2, 256 * KiB);
    free(p);
}

static void test_mallinfo(void)
{
    /* a few live blocks of every kind first */
    void *live[3] = {malloc(100), malloc(200 * KiB), malloc(5 * MiB)};
    for (int i = 0; i < 3; i++)
        CHECK(live[i] != NULL);
    struct mallinfo2 a = mallinfo2();
    CHECKF(a.uordblks > 0, "mallinfo2().uordblks = %zu with live blocks", a.uordblks);
    CHECKF(a.uordblks < ((size_t)1 << 40), "mallinfo2().uordblks = %zu implausible", a.uordblks);
    CHECK(a.arena < ((size_t)1 << 46) && a.fordblks < ((size_t)1 << 46) && a.hblkhd < ((size_t)1 << 46));

    unsigned char *big = malloc(10 * MiB);
    CHECK(big != NULL);
    memset(big, 7, 10 * MiB);
    struct mallinfo2 b = mallinfo2();
    CHECKF(b.uordblks >= a.uordblks + 10 * MiB,
           "mallinfo2().uordblks grew from %zu to %zu after malloc(10 MiB)", a.uordblks, b.uordblks);

    /* more small blocks grow it as well (counted at least once their pages are in use) */
    enum { N = 4096 };
    static void *v[N];
    for (int i = 0; i < N; i++)
        v[i] = malloc(1024);
    struct mallinfo2 c = mallinfo2();
    CHECKF(c.uordblks >= b.uordblks + N * 1024 / 2,
           "uordblks %zu -> %zu after %d x 1 KiB", b.uordblks, c.uordblks, N);
    for (int i = 0; i < N; i++)
        free(v[i]);
    free(big);
    struct mallinfo2 d = mallinfo2();
    CHECKF(d.uordblks + 10 * MiB <= c.uordblks, "uordblks %zu -> %zu after freeing 10 MiB", c.uordblks,
           d.uordblks);
    CHECKF(d.uordblks >= 5 * MiB + 200 * KiB, "uordblks %zu with 5.2 MiB still live", d.uordblks);

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    struct mallinfo m0 = mallinfo();
    big = malloc(10 * MiB);
    memset(big, 7, 10 * MiB);
    struct mallinfo m1 = mallinfo();
#pragma GCC diagnostic pop
    CHECKF(m0.uordblks >= 0 && m1.uordblks > 0, "mallinfo().uordblks = %d, %d", m0.uordblks, m1.uordblks);
    CHECKF((long)m1.uordblks >= (long)m0.uordblks + (long)(10 * MiB),
           "mallinfo().uordblks %d -> %d after malloc(10 MiB)", m0.uordblks, m1.uordblks);
    free(big);
    for (int i = 0; i < 3; i++)
        free(live[i]);
}

/* Run fn with stderr redirected to a temporary file; returns the bytes written. */
static size_t capture_stderr(void (*fn)(void), char *buf, size_t cap)
{
    char path[] = "/tmp/bsl-test-stderr-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, buf, cap - 1, 0);
    close(fd);
    if (n < 0)
        n = 0;
    buf[n] = 0;
    return (size_t)n;
}

static void call_malloc_stats(void)
{
    malloc_stats();
}

static void test_malloc_stats(void)
{
    static char buf[1 << 16];
    void *keep = malloc(1000);
    size_t n = capture_stderr(call_malloc_stats, buf, sizeof buf);
    CHECKF(n > 0, "malloc_stats() wrote nothing to stderr");
    /* stdout is not used */
    free(keep);
}

static void test_mallopt(void)
{
    CHECK(mallopt(M_TRIM_THRESHOLD, 256 * 1024) == 1);
    CHECK(mallopt(M_MMAP_THRESHOLD, 1024 * 1024) == 1);
    CHECK(mallopt(M_TOP_PAD, 64 * 1024) == 1);
    CHECK(mallopt(M_ARENA_MAX, 4) == 1);
    void *p = malloc(100);
    CHECK(p != NULL);
    free(p);
}

static void test_libc_entry_points(void)
{
    void *p = __libc_malloc(100);
    CHECK(p != NULL);
    CHECKF(bsl_owns(p) == 1, "__libc_malloc did not return a buddyslab block");
    memset(p, 1, 100);
    free(p);
    CHECK(bsl_owns(p) == 0);

    p = malloc(200);
    CHECK(p != NULL);
    __libc_free(p);
    CHECKF(bsl_owns(p) == 0, "__libc_free did not free a malloc block");
    __libc_free(NULL);

    unsigned char *c = malloc(4096);
    memset(c, 0xff, 4096);
    free(c);
    c = __libc_calloc(64, 64);
    CHECK(c != NULL && bsl_owns(c) == 1);
    CHECK(bsl_all_zero(c, 4096));
    errno = 0;
    CHECK(__libc_calloc(SIZE_MAX / 2, 3) == NULL);
    CHECK(errno == ENOMEM);

    bsl_fill(c, 4096, 5);
    unsigned char *r = __libc_realloc(c, 300000);
    CHECK(r != NULL && bsl_owns(r) == 1);
    CHECK(bsl_check(r, 4096, 5) == (size_t)-1);
    r = realloc(r, 50);
    CHECK(r != NULL && bsl_check(r, 50, 5) == (size_t)-1);
    r = __libc_realloc(r, 10 * MiB);
    CHECK(r != NULL && bsl_check(r, 50, 5) == (size_t)-1);
    __libc_free(r);

    void *a = __libc_memalign(4096, 100);
    CHECK(a != NULL && ((uintptr_t)a & 4095) == 0 && bsl_owns(a) == 1);
    free(a);
    a = __libc_memalign(2 * MiB, 3 * MiB);
    CHECK(a != NULL && ((uintptr_t)a & (2 * MiB - 1)) == 0 && bsl_owns(a) == 1);
    __libc_free(a);
}

static void test_impossible_sizes(void)
{
    static volatile size_t sizes[] = {SIZE_MAX,
                                      SIZE_MAX - 1,
                                      SIZE_MAX - 15,
                                      SIZE_MAX - 4095,
                                      SIZE_MAX - 2 * MiB,
                                      SIZE_MAX - 2 * MiB + 1,
                                      SIZE_MAX / 2,
                                      (size_t)PTRDIFF_MAX + 1,
                                      ((size_t)1 << 62) + 1};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        errno = 0;
        void *p = malloc(n);
        CHECKF(p == NULL && errno == ENOMEM, "malloc(%zu) = %p, errno %d", n, p, errno);
        errno = 0;
        p = calloc(1, n);
        CHECKF(p == NULL && errno == ENOMEM, "calloc(1, %zu) = %p, errno %d", n, p, errno);
        errno = 0;
        p = realloc(NULL, n);
        CHECKF(p == NULL && errno == ENOMEM, "realloc(NULL, %zu) = %p, errno %d", n, p, errno);
        errno = 0;
        p = aligned_alloc(64, n & ~(size_t)63);
        CHECKF(p == NULL && errno == ENOMEM, "aligned_alloc(64, %zu) = %p, errno %d", n & ~(size_t)63, p, errno);
        errno = 0;
        p = memalign(2 * MiB, n);
        CHECKF(p == NULL && errno == ENOMEM, "memalign(2 MiB, %zu) = %p, errno %d", n, p, errno);
        errno = 0;
        p = valloc(n);
        CHECKF(p == NULL && errno == ENOMEM, "valloc(%zu) = %p, errno %d", n, p, errno);
        errno = 0;
        p = pvalloc(n);
        CHECKF(p == NULL && errno == ENOMEM, "pvalloc(%zu) = %p, errno %d", n, p, errno);
        for (int z = 0; z < BSL_NR_ZONES; z++) {
            errno = 0;
            p = bsl_zone_malloc((bsl_zone_id)z, n);
            CHECKF(p == NULL && errno == ENOMEM, "bsl_zone_malloc(%d, %zu) = %p, errno %d", z, n, p, errno);
        }
        void *q = malloc(64);
        errno = 0;
        p = realloc(q, n);
        CHECKF(p == NULL && errno == ENOMEM, "realloc(q, %zu) = %p, errno %d", n, p, errno);
        CHECK(bsl_owns(q) == 1);
        free(q);
    }
    /* The heap is still fine. */
    void *p = malloc(12345);
    CHECK(p != NULL);
    free(p);
}

int main(void)
{
    bsl_test_begin("glibc_ext");
    test_malloc_trim();
    test_mallinfo();
    test_malloc_stats();
    test_mallopt();
    test_libc_entry_points();
    test_impossible_sizes();
    return bsl_test_end();
}
