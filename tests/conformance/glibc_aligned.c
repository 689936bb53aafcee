/* The aligned allocation functions (the scenarios of glibc malloc/tst-memalign, tst-posix_memalign,
 * tst-aligned-alloc, tst-pvalloc, tst-valloc and tst-mallocalign1).
 *
 * memalign: SIZE_MAX and -pagesize sizes give NULL + ENOMEM; alignment 0 and a non power of two
 *   are accepted (rounded up); every result is aligned and usable for its size.
 * posix_memalign: sizes that cannot be met return ENOMEM, alignment 0, 1, 2, 4, non powers of two
 *   and multiples of sizeof(void *) that are not powers of two return EINVAL; *memptr is left alone
 *   on failure; size 0 gives a block that can be freed.
 * aligned_alloc: 64/64 and 1/64 succeed; 65, 0 and SIZE_MAX/2+1 alignments fail (C17 rules);
 *   sizes that are not a multiple of the alignment are accepted.
 * valloc and pvalloc: page-aligned; pvalloc rounds the usable size up to whole pages (pvalloc(0)
 *   is one page); SIZE_MAX and -pagesize give NULL + ENOMEM.
 * mallocalign1: plain malloc results are aligned to 16 for every size up to 4 MiB and beyond. */
#include "conf.h"

#include <malloc.h>

static size_t pagesize;

static void check_block(void *p, size_t align, size_t size, const char *fn)
{
    CHECKF(p != NULL, "%s(align=%zu, size=%zu) failed: %s", fn, align, size, strerror(errno));
    if (!p)
        return;
    CHECKF(((uintptr_t)p & (align - 1)) == 0, "%s(align=%zu, size=%zu) = %p is misaligned", fn, align, size, p);
    size_t us = malloc_usable_size(p);
    CHECKF(us >= size, "%s(align=%zu, size=%zu): usable size %zu", fn, align, size, us);
    if (size)
        memset(p, 0x77, size);
}

static void test_memalign(void)
{
    errno = 0;
    void *p = memalign(sizeof(void *), conf_size(SIZE_MAX));
    CHECKF(p == NULL && errno == ENOMEM, "memalign(8, SIZE_MAX) = %p errno %d", p, errno);
    errno = 0;
    p = memalign(pagesize, conf_size(-pagesize));
    CHECKF(p == NULL && errno == ENOMEM, "memalign(page, -page) = %p errno %d", p, errno);
    /* alignment 0 and non powers of two are rounded up, like glibc */
    size_t odd[] = {0, 1, 3, 24, 100, 1000, 4095, 5000};
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
        size_t want = 16;
        while (want < odd[i])
            want *= 2;
        p = memalign(conf_size(odd[i]), 40);
        check_block(p, want, 40, "memalign");
        free(p);
    }
    for (size_t a = 1; a <= 8 * MiB; a *= 2) {
        size_t sizes[] = {0, 1, 10, a, 3 * a / 2 + 1, 100000};
        for (size_t j = 0; j < sizeof sizes / sizeof *sizes; j++) {
            p = memalign(conf_size(a), sizes[j]);
            check_block(p, a, sizes[j], "memalign");
            free(p);
        }
    }
}

static void test_posix_memalign(void)
{
    void *sentinel = &pagesize, *p = sentinel;
    int rc = posix_memalign(&p, sizeof(void *), conf_size(SIZE_MAX));
    CHECKF(rc == ENOMEM && p == sentinel, "posix_memalign(8, SIZE_MAX) = %d, p %s", rc, p == sentinel ? "kept" : "written");
    rc = posix_memalign(&p, pagesize, conf_size(-pagesize));
    CHECKF(rc == ENOMEM && p == sentinel, "posix_memalign(page, -page) = %d, p %s", rc, p == sentinel ? "kept" : "written");
    size_t bad[] = {0, 1, 2, 4, sizeof(void *) - 1, sizeof(void *) + 1, 3 * sizeof(void *), 24, 40, 96, 4097, 3 * 4096};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        p = sentinel;
        rc = posix_memalign(&p, conf_size(bad[i]), 10);
        CHECKF(rc == EINVAL && p == sentinel, "posix_memalign(align=%zu) = %d, p %s, want EINVAL", bad[i], rc,
               p == sentinel ? "kept" : "written");
    }
    p = sentinel;
    rc = posix_memalign(&p, sizeof(void *), conf_size(0));
    CHECKF(rc == 0 && p != sentinel, "posix_memalign(8, 0) = %d", rc);
    if (rc == 0)
        free(p);
    for (size_t a = sizeof(void *); a <= 8 * MiB; a *= 2) {
        size_t sizes[] = {1, 10, a - 1, a, a + 1, 70000};
        for (size_t j = 0; j < sizeof sizes / sizeof *sizes; j++) {
            p = sentinel;
            rc = posix_memalign(&p, conf_size(a), sizes[j]);
            CHECKF(rc == 0, "posix_memalign(%zu, %zu) = %d", a, sizes[j], rc);
            if (rc == 0) {
                check_block(p, a, sizes[j], "posix_memalign");
                free(p);
            }
        }
    }
}

static void test_aligned_alloc(void)
{
    void *p1 = aligned_alloc(conf_size(64), 64);
    check_block(p1, 64, 64, "aligned_alloc");
    void *p2 = aligned_alloc(conf_size(1), 64);
    check_block(p2, 1, 64, "aligned_alloc");
    void *p3 = aligned_alloc(conf_size(65), 64);
    CHECKF(p3 == NULL, "aligned_alloc(65, 64) = %p, want NULL", p3);
    void *p4 = aligned_alloc(conf_size(0), 64);
    CHECKF(p4 == NULL, "aligned_alloc(0, 64) = %p, want NULL", p4);
    void *p5 = aligned_alloc(conf_size(SIZE_MAX / 2 + 1), 64);
    CHECKF(p5 == NULL, "aligned_alloc(SIZE_MAX/2+1, 64) = %p, want NULL", p5);
    free(p1);
    free(p2);
    /* C17: the size need not be a multiple of the alignment */
    size_t odd_sizes[] = {1, 7, 100, 4097, 70001};
    for (size_t a = 1; a <= 1 * MiB; a *= 4)
        for (size_t j = 0; j < sizeof odd_sizes / sizeof *odd_sizes; j++) {
            void *p = aligned_alloc(conf_size(a), odd_sizes[j]);
            check_block(p, a, odd_sizes[j], "aligned_alloc");
            free(p);
        }
}

static void test_valloc_pvalloc(void)
{
    errno = 0;
    void *p = valloc(conf_size(SIZE_MAX));
    CHECKF(p == NULL && errno == ENOMEM, "valloc(SIZE_MAX) = %p errno %d", p, errno);
    errno = 0;
    p = valloc(conf_size(-pagesize));
    CHECKF(p == NULL && errno == ENOMEM, "valloc(-page) = %p errno %d", p, errno);
    errno = 0;
    p = pvalloc(conf_size(SIZE_MAX));
    CHECKF(p == NULL && errno == ENOMEM, "pvalloc(SIZE_MAX) = %p errno %d", p, errno);
    errno = 0;
    p = pvalloc(conf_size(-pagesize));
    CHECKF(p == NULL && errno == ENOMEM, "pvalloc(-page) = %p errno %d", p, errno);
    size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 40000, 5 * MiB + 1};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        p = valloc(conf_size(sizes[i]));
        check_block(p, pagesize, sizes[i], "valloc");
        free(p);
        size_t rounded = sizes[i] ? (sizes[i] + pagesize - 1) & ~(pagesize - 1) : pagesize;
        p = pvalloc(conf_size(sizes[i]));
        check_block(p, pagesize, rounded, "pvalloc");
        if (p)
            CHECKF(malloc_usable_size(p) >= rounded, "pvalloc(%zu): usable %zu < %zu whole pages", sizes[i],
                   malloc_usable_size(p), rounded);
        free(p);
    }
}

static void test_malloc_alignment(void)
{
    for (size_t n = 0; n < 9 * MiB; n = n < 600 ? n + 1 : n * 5 / 4) {
        void *p = malloc(conf_size(n));
        CHECKF(p != NULL && ((uintptr_t)p & 15) == 0, "malloc(%zu) = %p: not 16-byte aligned", n, p);
        free(p);
    }
}

int main(void)
{
    conf_begin("glibc_aligned", 60);
    pagesize = (size_t)sysconf(_SC_PAGESIZE);
    test_memalign();
    test_posix_memalign();
    test_aligned_alloc();
    test_valloc_pvalloc();
    test_malloc_alignment();
    return conf_end();
}
