/* glibc_shim.c: LD_PRELOAD this to force glibc's malloc on a program that links another
 * allocator. redis-server in Debian links libjemalloc, so running it with "nothing preloaded"
 * would measure jemalloc twice; bench/run-macro preloads this shim for the "glibc" row of such
 * programs instead. Every entry point forwards to glibc's own implementation. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

EXPORT void *malloc(size_t n) { return __libc_malloc(n); }
EXPORT void free(void *p) { __libc_free(p); }
EXPORT void cfree(void *p) { __libc_free(p); }
EXPORT void *calloc(size_t n, size_t m) { return __libc_calloc(n, m); }
EXPORT void *realloc(void *p, size_t n) { return __libc_realloc(p, n); }
EXPORT void *memalign(size_t a, size_t n) { return __libc_memalign(a, n); }

EXPORT void *reallocarray(void *p, size_t n, size_t m)
{
    size_t total;
    if (__builtin_mul_overflow(n, m, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_realloc(p, total);
}

EXPORT int posix_memalign(void **out, size_t a, size_t n)
{
    if (a < sizeof(void *) || (a & (a - 1)) != 0)
        return EINVAL;
    void *p = __libc_memalign(a, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

EXPORT void *aligned_alloc(size_t a, size_t n) { return __libc_memalign(a, n); }

EXPORT void *valloc(size_t n) { return __libc_memalign((size_t)sysconf(_SC_PAGESIZE), n); }

EXPORT void *pvalloc(size_t n)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    return __libc_memalign(pg, (n + pg - 1) & ~(pg - 1));
}

/* glibc's malloc_usable_size, found in libc itself (the program's other allocator defines one
 * too, and would come first in the lookup order). */
EXPORT size_t malloc_usable_size(void *p)
{
    static size_t (*fn)(void *);
    if (!fn) {
        void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
        if (libc)
            fn = (size_t (*)(void *))dlsym(libc, "malloc_usable_size");
        if (!fn)
            return 0;
    }
    return fn(p);
}
