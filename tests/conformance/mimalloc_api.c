/* The standard-API parts of mimalloc's test/test-api.c (its mi_* extensions have no equivalent).
 *
 * malloc(0) gives distinct blocks that can be freed; malloc(PTRDIFF_MAX + 1) and calloc whose
 * product overflows give NULL; free(NULL) is a no-op; posix_memalign: sizeof(void *) works,
 * alignment 3 and 3*sizeof(void *) give EINVAL, size 0 works, SIZE_MAX gives ENOMEM, *memptr is
 * untouched on failure; aligned_alloc and memalign: 32/32, 48/32 (size not a multiple), 8/16,
 * 4097/4096 (usable size 4097 .. 16000: not a whole extra alignment), 1 KiB at alignments up to
 * 64 MiB, 43 + align at every alignment up to 1 KiB, and sizes 1 .. 2 KiB (every one up to 256) at
 * every alignment up to the size (4 blocks each); realloc(NULL, 4), realloc(NULL, 0) and reallocarray(NULL, 0, 16)
 * give blocks, the latter without touching errno; a block grown in 64-byte steps up to 64 KiB
 * 4 times over keeps working; realloc within the usable size stays in place (not checked with
 * the hardening options, where realloc always moves to catch use after realloc); malloc_usable_size
 * is at least the size asked for; realpath(".", NULL) returns a block we own. */
#include "conf.h"

#include <limits.h>
#include <malloc.h>

static int aligned_ok(void *p, size_t align) { return p != NULL && ((uintptr_t)p & (align - 1)) == 0; }

int main(void)
{
    conf_begin("mimalloc_api", 60);
    const char *h = getenv("CONF_EXPECT_HARDENING");
    int hardened = h && *h == '1';

    /* malloc */
    void *z1 = malloc(conf_size(0)), *z2 = malloc(conf_size(0));
    CHECK(z1 && z2 && z1 != z2);
    free(z1);
    free(z2);
    CHECK(malloc(conf_size((size_t)PTRDIFF_MAX + 1)) == NULL);
    free(NULL);
    CHECK(calloc(conf_size((size_t)&main), SIZE_MAX / 1000) == NULL);
    void *big = malloc(conf_size(67108872)); /* 64 MiB + 8 */
    CHECK(big != NULL);
    free(big);

    /* posix_memalign */
    void *p = &p;
    int err = posix_memalign(&p, sizeof(void *), 32);
    CHECK(err == 0 && aligned_ok(p, sizeof(void *)));
    free(p);
    p = &p;
    CHECK(posix_memalign(&p, conf_size(3), 32) == EINVAL && p == &p);
    p = &p;
    err = posix_memalign(&p, sizeof(void *), conf_size(0));
    CHECK(err == 0 && p != &p);
    free(p);
    p = &p;
    CHECK(posix_memalign(&p, conf_size(3 * sizeof(void *)), 32) == EINVAL && p == &p);
    p = &p;
    CHECK(posix_memalign(&p, sizeof(void *), conf_size(SIZE_MAX)) == ENOMEM && p == &p);

    /* aligned allocation */
    p = aligned_alloc(32, 32);
    CHECK(aligned_ok(p, 32));
    free(p);
    void *p1 = aligned_alloc(32, 48), *p2 = aligned_alloc(32, 48);
    CHECK(aligned_ok(p1, 32) && aligned_ok(p2, 32) && p1 != p2);
    free(p2);
    free(p1);
    for (int i = 0; i < 8; i++) {
        p = memalign(16, 8);
        CHECK(aligned_ok(p, 16));
        free(p);
    }
    p = aligned_alloc(4096, 4097);
    size_t us = malloc_usable_size(p);
    CHECKF(aligned_ok(p, 4096) && us >= 4097 && us < 16000, "aligned_alloc(4096, 4097): usable %zu", us);
    free(p);
    for (size_t a = 1; a <= 64 * MiB; a *= 2) {
        p = aligned_alloc(conf_size(a), 1024);
        CHECKF(aligned_ok(p, a), "aligned_alloc(%zu, 1024) = %p", a, p);
        free(p);
    }
    void *ps[11];
    size_t a = 1;
    for (int j = 0; j <= 10; j++, a *= 2) {
        ps[j] = memalign(a, 43 + a);
        CHECKF(aligned_ok(ps[j], a), "memalign(%zu, %zu)", a, 43 + a);
    }
    for (int j = 10; j >= 0; j--)
        free(ps[j]);
    for (size_t size = 1; size <= 2048; size += size < 256 ? 1 : 7)
        for (size_t al = 1; al <= size; al *= 2) {
            void *v[4];
            for (int i = 0; i < 4; i++) {
                v[i] = aligned_alloc(al, size);
                CHECKF(aligned_ok(v[i], al), "aligned_alloc(%zu, %zu) = %p", al, size, v[i]);
            }
            for (int i = 0; i < 4; i++)
                free(v[i]);
        }

    /* realloc */
    p = realloc(NULL, 4);
    CHECK(p != NULL);
    free(p);
    p = realloc(NULL, conf_size(0));
    CHECK(p != NULL);
    free(p);
    errno = 0;
    p = reallocarray(NULL, conf_size(0), 16);
    CHECKF(p != NULL && errno == 0, "reallocarray(NULL, 0, 16) = %p, errno %d", p, errno);
    free(p);
    void *shared = NULL;
    for (int it = 0; it < 4; it++)
        for (int i = 1; i < 1024; i++) {
            shared = realloc(shared, (size_t)i * 64);
            CHECK(shared != NULL);
            ((char *)shared)[(size_t)i * 64 - 1] = 1;
        }
    free(shared);
    if (!hardened) {
        size_t sizes[] = {1, 24, 100, 1000, 5000, 40000, 300000, 5 * MiB};
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            p = malloc(sizes[i]);
            size_t u = malloc_usable_size(p);
            void *q = realloc(p, u);
            CHECKF(q == p, "realloc(p of %zu, its usable size %zu) moved the block", sizes[i], u);
            q = realloc(q, u - (u > 8 ? 7 : 0));
            CHECKF(q == p, "realloc(p of %zu, a few bytes less) moved the block", sizes[i]);
            free(q);
        }
    }

    /* usable sizes */
    for (size_t n = 1; n <= 8 * MiB; n *= 2) {
        p = malloc(n);
        CHECKF(p && malloc_usable_size(p) >= n, "malloc(%zu): usable %zu", n, p ? malloc_usable_size(p) : 0);
        p = realloc(p, n + 1024);
        CHECKF(p && malloc_usable_size(p) >= n + 1024, "realloc to %zu: usable %zu", n + 1024, malloc_usable_size(p));
        free(p);
    }

    char *rp = realpath(".", NULL);
    CHECK(rp != NULL && CONF_BSL(bsl_owns)(rp) == 1);
    free(rp);
    return conf_end();
}
