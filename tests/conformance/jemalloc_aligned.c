/* aligned_alloc and posix_memalign (the standard-API scenarios of jemalloc's
 * test/integration/aligned_alloc.c and posix_memalign.c).
 *
 * Errors: alignment 0 and every power of two plus one from sizeof(size_t) up to 4 MiB are invalid
 * (aligned_alloc: NULL + EINVAL; posix_memalign: EINVAL; for posix_memalign also every alignment
 * below sizeof(void *)). Out of memory: (2^63, 2^63), (2^62, 0xc000000000000001) and
 * (16, 0xfffffffffffffff0) give ENOMEM. Alignment and size: for every alignment from 8 to 4 MiB,
 * sizes from 1 to 3 x alignment in steps of alignment/4 - 1, four blocks at a time (fewer once
 * their usable sizes add up to 8 MiB), each aligned, owned, and written at both ends. */
#include "conf.h"

#include <malloc.h>

#define MAXALIGN ((size_t)1 << 22)
#define NITER 4

static void *aa(size_t align, size_t size, int posix, int *err)
{
    if (posix) {
        void *p = &p;
        *err = posix_memalign(&p, conf_size(align), conf_size(size));
        if (*err) {
            CHECKF(p == &p, "posix_memalign(%zu, %zu) failed and wrote *memptr", align, size);
            return NULL;
        }
        return p;
    }
    errno = 0;
    void *p = aligned_alloc(conf_size(align), conf_size(size));
    *err = p ? 0 : errno;
    return p;
}

static void errors(int posix)
{
    const char *fn = posix ? "posix_memalign" : "aligned_alloc";
    int err;
    void *p = aa(0, 1, posix, &err);
    CHECKF(!p && err == EINVAL, "%s(0, 1) = %p, error %d", fn, p, err);
    for (size_t a = sizeof(size_t); a < MAXALIGN; a <<= 1) {
        p = aa(a + 1, 1, posix, &err);
        CHECKF(!p && err == EINVAL, "%s(%zu, 1) = %p, error %d", fn, a + 1, p, err);
    }
    if (posix)
        for (size_t a = 1; a < sizeof(void *); a <<= 1) {
            p = aa(a, 1, posix, &err);
            CHECKF(!p && err == EINVAL, "%s(%zu, 1) = %p, error %d (below sizeof(void *))", fn, a, p, err);
        }
}

static void oom(int posix)
{
    const char *fn = posix ? "posix_memalign" : "aligned_alloc";
    size_t cases[][2] = {{(size_t)1 << 63, (size_t)1 << 63},
                         {(size_t)1 << 62, 0xc000000000000001ULL},
                         {16, 0xfffffffffffffff0ULL}};
    for (size_t i = 0; i < 3; i++) {
        int err;
        void *p = aa(cases[i][0], cases[i][1], posix, &err);
        CHECKF(!p && err == ENOMEM, "%s(%#zx, %#zx) = %p, error %d, want ENOMEM", fn, cases[i][0], cases[i][1], p, err);
    }
}

static void alignment_and_size(int posix)
{
    const char *fn = posix ? "posix_memalign" : "aligned_alloc";
    void *ps[NITER] = {0};
    for (size_t align = 8; align <= MAXALIGN; align <<= 1) {
        size_t total = 0;
        for (size_t size = 1; size < 3 * align; size += (align >> 2) - 1 ? (align >> 2) - 1 : 1) {
            for (int i = 0; i < NITER; i++) {
                int err;
                ps[i] = aa(align, size, posix, &err);
                CHECKF(ps[i] != NULL, "%s(%zu, %zu) failed: %s", fn, align, size, strerror(err));
                if (!ps[i])
                    break;
                CHECKF(((uintptr_t)ps[i] & (align - 1)) == 0, "%s(%zu, %zu) = %p misaligned", fn, align, size, ps[i]);
                ((unsigned char *)ps[i])[0] = 0x5a;
                ((unsigned char *)ps[i])[size - 1] = 0xa5;
                total += malloc_usable_size(ps[i]);
                if (total >= (MAXALIGN << 1))
                    break;
            }
            for (int i = 0; i < NITER; i++) {
                if (ps[i]) {
                    CHECK(CONF_BSL(bsl_owns)(ps[i]) == 1);
                    free(ps[i]);
                    ps[i] = NULL;
                }
            }
        }
    }
}

int main(void)
{
    conf_begin("jemalloc_aligned", 60);
    for (int posix = 0; posix < 2; posix++) {
        errors(posix);
        oom(posix);
        alignment_and_size(posix);
    }
    return conf_end();
}
