/* Heap misuse, one case per run: misuse_prog CASE. Run by misuse_driver.py, which checks what the
 * allocator printed on stderr and how the process ended (see tests/misuse/meson.build).
 *
 * Before the misuse the program prints "PTR 0x..." on stdout: the pointer the allocator's message
 * must name. A case that is not caught falls through to the end and prints "SURVIVED <case>"
 * (exit status 0), which the driver reports as a failure: every case fails if its check is missing.
 * Cases that must run on (junk, uaf-scribble) print "OK <case>" after their own checks and exit 0.
 * write-after-free-large returns from main: the check at exit must catch it. A case that needs a
 * function the allocator lacks (free_sized under glibc) prints "UNSUPPORTED <function>", exits 3.
 * Built twice: linked with libbuddyslab.a (misuse_prog), and plain (misuse_plain, -DMISUSE_PLAIN)
 * for misuse_table.py, which preloads each allocator. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#ifdef MISUSE_PLAIN
/* Built without buddyslab (misuse_table.py preloads each allocator): its functions may be missing. */
int bsl_owns(const void *p) __attribute__((weak));
int bsl_check_heap(void) __attribute__((weak));
#define HAVE_BSL(fn) ((fn) != NULL)
#else
#include "buddyslab.h"
#define HAVE_BSL(fn) 1
#endif
/* C23; glibc 2.36 has neither: missing under some allocators (the case then exits 3, "n/a"). */
void free_sized(void *p, size_t size) __attribute__((weak));
void free_aligned_sized(void *p, size_t align, size_t size) __attribute__((weak));
/* misuse_cxx.cc */
void *cxx_new(size_t n);
void *cxx_new_array(size_t n);
void *cxx_new_aligned(size_t n, size_t a);
void cxx_delete_sized(void *p, size_t n);
void cxx_delete_array_sized(void *p, size_t n);
void cxx_delete_aligned(void *p, size_t a);

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

static void need(const void *fn, const char *name)
{
    if (!fn) {
        printf("UNSUPPORTED %s\n", name);
        fflush(stdout);
        exit(3);
    }
}

/* A block of the aligned allocation function that is not aligned to 4096 (so that freeing it with
 * an alignment of 4096 is wrong, whatever the allocator does with the rest). */
static void *not_page_aligned(void *(*alloc)(size_t, size_t), size_t align, size_t n)
{
    void *held[8];
    for (int i = 0; i < 8; i++) {
        held[i] = alloc(align, n);
        if ((uintptr_t)held[i] & 4095) {
            for (int k = 0; k < i; k++)
                free(held[k]);
            return held[i];
        }
    }
    fail("8 blocks in a row were page aligned");
    return NULL;
}
static void *aligned_alloc_ab(size_t a, size_t n) { return aligned_alloc(a, n); }
static void *cxx_new_aligned_ab(size_t a, size_t n) { return cxx_new_aligned(n, a); }

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
        if (!w[i] || (HAVE_BSL(bsl_owns) && bsl_owns(w[i]) != 1))
            fail("malloc after the scribbling");
        memset(w[i], 0x42, size);
    }
    /* no object handed out twice */
    qsort(w, (size_t)nobj, sizeof(void *), cmp_ptr);
    for (int i = 1; i < nobj; i++)
        if (w[i] == w[i - 1] || (char *)w[i] < (char *)w[i - 1] + size)
            fail("an object was handed out twice (overlapping blocks)");
    if (HAVE_BSL(bsl_check_heap) && bsl_check_heap() != 0)
        fail("bsl_check_heap after the scribbling");
    for (int i = 0; i < nobj; i++)
        free(w[i]);
    free(v);
    free(w);
    if (HAVE_BSL(bsl_check_heap) && bsl_check_heap() != 0)
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
        /* Reading a freed block is fine here: slab and buddy memory stays mapped (and resident:
         * the test runs with decay_ms=-1, else the dirty-memory policy may purge a freed large
         * block at once). The first 16 bytes of a freed small object belong to the allocator. */
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
         * is the double free. Allocate until the freed block comes back (it is usually the first;
         * malloc_trim lets it out of a quarantine). */
        static void *held[4096];
        int nheld = 0;
        void *neighbour = malloc(32); /* keeps p's slab from going back to the buddy at the trim */
        p = malloc(32);
        free(p);
        malloc_trim(0);
        void *q = malloc(32);
        while (q != p && nheld < 4096) {
            held[nheld++] = q;
            q = malloc(32);
        }
        if (q != p)
            fail("the freed object was not reused (cannot build the case)");
        for (int i = 0; i < nheld; i++)
            free(held[i]);
        free(neighbour);
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
    } else if (!strcmp(c, "usable-size-freed-small") || !strcmp(c, "usable-size-freed-large") ||
               !strcmp(c, "usable-size-freed-huge")) {
        p = malloc(c[18] == 's' ? 24 : c[18] == 'l' ? 100 * KiB : 8 * MiB);
        show(p);
        free(p);
        printf("usable %zu\n", malloc_usable_size(launder(p)));
    }
    /* ---- sized deallocation with the wrong size or alignment ---- */
    else if (!strcmp(c, "free-sized-small") || !strcmp(c, "free-sized-large") || !strcmp(c, "free-sized-huge")) {
        need((void *)free_sized, "free_sized");
        size_t n = c[11] == 's' ? 24 : c[11] == 'l' ? 100000 : 8 * MiB;
        p = malloc(n);
        show(p);
        free_sized(launder(p), n == 24 ? 4000 : n == 100000 ? n / 2 : n / 8);
    } else if (!strcmp(c, "free-sized-freed")) {
        need((void *)free_sized, "free_sized");
        p = malloc(24);
        show(p);
        free(p);
        free_sized(launder(p), 24);
    } else if (!strcmp(c, "free-aligned-sized-align")) {
        need((void *)free_aligned_sized, "free_aligned_sized");
        p = not_page_aligned(aligned_alloc_ab, 64, 64);
        show(p);
        free_aligned_sized(launder(p), 4096, 64);
    } else if (!strcmp(c, "delete-sized")) {
        p = cxx_new(24);
        show(p);
        cxx_delete_sized(launder(p), 4000);
    } else if (!strcmp(c, "delete-array-sized")) {
        p = cxx_new_array(100000);
        show(p);
        cxx_delete_array_sized(launder(p), 24);
    } else if (!strcmp(c, "delete-aligned")) {
        p = not_page_aligned(cxx_new_aligned_ab, 64, 64);
        show(p);
        cxx_delete_aligned(launder(p), 4096);
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
    } else if (!strcmp(c, "write-after-free-large")) {
        /* Nothing pushes the block out of the quarantine: the check at exit finds the write. */
        unsigned char *b = malloc(100 * KiB);
        show(b);
        free(b);
        launder(b);
        b[5000] = 1; /* write after free */
        printf("EXIT %s\n", c); /* not caught: exit status 0 */
        return 0;
    } else if (!strcmp(c, "usable-zero")) {
        /* malloc(0) has a usable size above 0, whatever the options (canary=1 gave 0) */
        p = malloc(0);
        size_t u = malloc_usable_size(p);
        printf("usable %zu\n", u);
        if (!p || u == 0)
            fail("malloc(0): usable size 0");
        memset(p, 1, u);
        free(p);
        printf("OK usable-zero\n");
        return 0;
    } else if (!strcmp(c, "guard")) {
        /* guard=1: the page after a large block is inaccessible; writing just past the usable size
         * faults at once (SIGSEGV). Without the guard the write lands in mapped memory. */
        unsigned char *b = malloc(40 * KiB);
        size_t u = malloc_usable_size(b);
        printf("usable %zu\n", u);
        printf("PTR any\n"); /* a fault names no pointer; with canary=1 the report names the block */
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
