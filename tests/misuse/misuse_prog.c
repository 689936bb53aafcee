/* Heap misuse, one case per run: misuse_prog CASE. Run by misuse_driver.py, which checks what the
 * allocator printed on stderr and how the process ended (see tests/misuse/meson.build).
 *
 * Before the misuse the program prints "PTR 0x..." on stdout: the pointer the allocator's message
 * must name. A case that is not caught falls through to the end and prints "SURVIVED <case>"
 * (exit status 0), which the driver reports as a failure: every case fails if its check is missing.
 * Cases that must run on (junk, uaf-scribble) print "OK <case>" after their own checks and exit 0. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "buddyslab.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static char static_buf[256] __attribute__((aligned(64)));

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

/* The compiler must not see through these: the misuse has to reach the allocator. */
static void *launder(void *p)
{
    __asm__ volatile("" : "+r"(p));
    return p;
}

static void show(const void *p)
{
    printf("PTR %p\n", p);
    fflush(stdout);
}

static void fail(const char *what)
{
    printf("FAILED %s\n", what);
    fflush(stdout);
    exit(2);
}

/* A 1-byte overflow: the byte right after the caller's n bytes. */
static void overflow_by_one(size_t n)
{
    unsigned char *p = malloc(n);
    if (!p)
        fail("malloc");
    memset(p, 'x', n);
    show(p);
    p[n] = 0; /* one byte too far */
    free(launder(p));
}

/* Use after free: write over every byte of many freed small objects (the free key in their second
 * word included), then allocate them all again. The slab allocator keeps no pointer inside free
 * objects (free-object bitmaps and pointer caches live outside them), so the writes cannot steer it:
 * every object comes back exactly once, inside its slab, and the heap checks clean. (With junk=1 and
 * a quarantine the write itself is reported: case write-after-free.) */
static void uaf_scribble(size_t size, int nobj)
{
    void **v = calloc((size_t)nobj, sizeof(void *)), **w = calloc((size_t)nobj, sizeof(void *));
    if (!v || !w)
        fail("calloc");
    for (int i = 0; i < nobj; i++) {
        v[i] = malloc(size);
        if (!v[i])
            fail("malloc");
    }
    for (int i = 0; i < nobj; i++)
        free(v[i]);
    for (int i = 0; i < nobj; i++) /* use after free: write into every freed object */
        memset(launder(v[i]), 0x41, size);
    for (int i = 0; i < nobj; i++) {
        w[i] = malloc(size);
        if (!w[i] || bsl_owns(w[i]) != 1)
            fail("malloc after the scribbling");
        memset(w[i], 0x42, size);
    }
    /* no object handed out twice */
    qsort(w, (size_t)nobj, sizeof(void *), cmp_ptr);
    for (int i = 1; i < nobj; i++)
        if (w[i] == w[i - 1] || (char *)w[i] < (char *)w[i - 1] + size)
            fail("an object was handed out twice (overlapping blocks)");
    if (bsl_check_heap() != 0)
        fail("bsl_check_heap after the scribbling");
    for (int i = 0; i < nobj; i++)
        free(w[i]);
    free(v);
    free(w);
    if (bsl_check_heap() != 0)
        fail("bsl_check_heap at the end");
}

static int all_bytes(const unsigned char *p, size_t from, size_t to, unsigned char v)
{
    for (size_t i = from; i < to; i++)
        if (p[i] != v) {
            printf("byte %zu of %p is 0x%02x, expected 0x%02x\n", i, (const void *)p, p[i], v);
            return 0;
        }
    return 1;
}

/* junk=1: fresh blocks read 0xa5 (malloc, memalign, realloc's new tail), freed blocks 0x5a, calloc
 * still gives zeros. Without the option, fresh memory reads zero and the checks fail. */
static void junk_case(void)
{
    static const size_t sizes[] = {1, 24, 100, 1000, 5000, 32 * KiB, 100 * KiB, 1 * MiB};
    for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        unsigned char *p = malloc(n);
        if (!p || !all_bytes(p, 0, n, 0xa5))
            fail("malloc: fresh block is not junk-filled with 0xa5");
        unsigned char *z = calloc(1, n);
        if (!z || !all_bytes(z, 0, n, 0))
            fail("calloc: block is not zeroed");
        void *a = NULL;
        if (posix_memalign(&a, 256, n) != 0 || !all_bytes(a, 0, n, 0xa5))
            fail("posix_memalign: fresh block is not junk-filled with 0xa5");
        memset(p, 1, n);
        /* realloc copies the old block up to its usable size: the new bytes past that are junk */
        size_t us = malloc_usable_size(p);
        unsigned char *r = realloc(p, 2 * n);
        if (!r || !all_bytes(r, 0, n, 1) || (us < 2 * n && !all_bytes(r, us, 2 * n, 0xa5)))
            fail("realloc: old bytes not kept or new tail not junk-filled");
        /* Reading a freed block is fine here: slab and buddy memory stays mapped. The first 16
         * bytes of a freed small object belong to the allocator (free key). */
        size_t keep = n < 4096 ? n : 4096;
        free(z);
        free(a);
        unsigned char *f = launder(r);
        free(r);
        if (!all_bytes(f, 16, keep, 0x5a))
            fail("free: freed block is not junk-filled with 0x5a");
    }
    printf("OK junk\n");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: misuse_prog CASE\n");
        return 2;
    }
    const char *c = argv[1];
    setvbuf(stdout, NULL, _IOLBF, 0);
    void *p;

    /* ---- double free ---- */
    if (!strcmp(c, "double-free-small")) {
        p = malloc(24);
        show(p);
        free(p);
        free(launder(p));
    } else if (!strcmp(c, "double-free-small-drained")) {
        /* The first free is pushed deep: 5000 more frees of the class move it out of the per-CPU
         * cache into the transfer cache or back to its slab before the second free. */
        void *v[5000];
        p = malloc(48);
        for (int i = 0; i < 5000; i++)
            v[i] = malloc(48);
        show(p);
        free(p);
        for (int i = 0; i < 5000; i++)
            free(v[i]);
        free(launder(p));
    } else if (!strcmp(c, "double-free-small-reused-key")) {
        /* The block was freed, handed out again (malloc clears its free key) and freed: a third free
         * is the double free. Allocate until the freed block comes back (it is usually the first). */
        void *held[256];
        int nheld = 0;
        p = malloc(32);
        free(p);
        void *q = malloc(32);
        while (q != p && nheld < 256) {
            held[nheld++] = q;
            q = malloc(32);
        }
        if (q != p)
            fail("the freed object was not reused (cannot build the case)");
        for (int i = 0; i < nheld; i++)
            free(held[i]);
        show(q);
        free(q);
        free(launder(q));
    } else if (!strcmp(c, "double-free-large")) {
        p = malloc(100 * KiB);
        show(p);
        free(p);
        free(launder(p));
    } else if (!strcmp(c, "double-free-huge")) {
        p = malloc(8 * MiB);
        show(p);
        free(p);
        free(launder(p));
    }
    /* ---- foreign pointers ---- */
    else if (!strcmp(c, "free-stack")) {
        char buf[64] __attribute__((aligned(16)));
        memset(buf, 0, sizeof(buf));
        p = launder(buf);
        show(p);
        free(p);
    } else if (!strcmp(c, "free-static")) {
        p = launder(static_buf);
        show(p);
        free(p);
    } else if (!strcmp(c, "free-mmap")) {
        p = mmap(NULL, 64 * KiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            fail("mmap");
        show(p);
        free(p);
    }
    /* ---- interior and misaligned pointers ---- */
    else if (!strcmp(c, "free-interior-small")) {
        /* 16-byte aligned, inside a 64-byte object: not the start of any block */
        char *b = malloc(64);
        show(b + 16);
        free(launder(b + 16));
    } else if (!strcmp(c, "free-interior-large")) {
        char *b = malloc(100 * KiB);
        show(b + 4096);
        free(launder(b + 4096));
    } else if (!strcmp(c, "free-interior-huge")) {
        char *b = malloc(8 * MiB);
        show(b + 4096);
        free(launder(b + 4096));
    } else if (!strcmp(c, "free-misaligned")) {
        char *b = malloc(64);
        show(b + 1);
        free(launder(b + 1));
    } else if (!strcmp(c, "free-misaligned-8")) {
        char *b = malloc(64);
        show(b + 8);
        free(launder(b + 8));
    } else if (!strcmp(c, "free-misaligned-large")) {
        char *b = malloc(100 * KiB);
        show(b + 8);
        free(launder(b + 8));
    }
    /* ---- realloc and malloc_usable_size ---- */
    else if (!strcmp(c, "realloc-freed-small")) {
        p = malloc(24);
        show(p);
        free(p);
        p = realloc(launder(p), 48);
    } else if (!strcmp(c, "realloc-freed-large")) {
        p = malloc(100 * KiB);
        show(p);
        free(p);
        p = realloc(launder(p), 200 * KiB);
    } else if (!strcmp(c, "realloc-foreign")) {
        char buf[64] __attribute__((aligned(16)));
        p = launder(buf);
        show(p);
        p = realloc(p, 100);
    } else if (!strcmp(c, "usable-size-foreign")) {
        char buf[64] __attribute__((aligned(16)));
        p = launder(buf);
        show(p);
        printf("usable %zu\n", malloc_usable_size(p));
    }
    /* ---- use after free writes cannot corrupt the slab allocator (out-of-band metadata) ---- */
    else if (!strcmp(c, "uaf-scribble")) {
        uaf_scribble(64, 20000);
        printf("OK uaf-scribble\n");
        return 0;
    } else if (!strcmp(c, "uaf-scribble-1k")) {
        uaf_scribble(1024, 4000);
        printf("OK uaf-scribble-1k\n");
        return 0;
    }
    /* ---- hardening options (run with BUDDYSLAB_OPTIONS set by the registration) ---- */
    else if (!strcmp(c, "overflow-small")) {
        overflow_by_one(24);
    } else if (!strcmp(c, "overflow-large")) {
        overflow_by_one(100000);
    } else if (!strcmp(c, "write-after-free")) {
        /* junk=1,quarantine=1M: the freed block waits in the quarantine; when enough other frees
         * push it out, its junk is checked and the write is found. */
        unsigned char *b = malloc(100);
        show(b);
        free(b);
        launder(b);
        b[50] = 1; /* write after free */
        for (int i = 0; i < 4000; i++)
            free(malloc(1000)); /* 4 MB through a 1 MiB quarantine */
        malloc_trim(0);         /* flushes the quarantine: the last chance to find it */
    } else if (!strcmp(c, "guard")) {
        /* guard=1: the page after a large block is inaccessible; writing just past the usable size
         * faults at once (SIGSEGV). Without the guard the write lands in mapped memory. */
        unsigned char *b = malloc(40 * KiB);
        size_t u = malloc_usable_size(b);
        printf("usable %zu\n", u);
        show(b + u);
        b = launder(b);
        b[u] = 1;
        free(b);
    } else if (!strcmp(c, "junk")) {
        junk_case();
        return 0;
    } else {
        fprintf(stderr, "misuse_prog: unknown case '%s'\n", c);
        return 2;
    }
    printf("SURVIVED %s\n", c);
    return 0;
}
