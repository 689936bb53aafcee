/* Heap bugs that must stop the program (the bug classes of hardened_malloc's test/ directory,
 * glibc's tst-malloc-backtrace and tst-free-errno, mimalloc's test-wrong): conf_misuse CASE.
 *
 * Each case prints "PTR 0x..." (the pointer the allocator's message must name), then makes one
 * bug. conf_misuse.py checks that the process dies by SIGABRT with exactly one line
 * "buddyslab: FUNC(): WHAT: pointer PTR" on stderr (or by SIGSEGV on a guard page). A case the
 * allocator lets through falls to the end and prints "SURVIVED CASE" (exit 0): the driver fails it.
 * Built like the other conformance programs: linked with the archive, or plain and preloaded.
 * Not applicable to buddyslab and so absent: reads after free and of uninitialised memory
 * (no zeroing on free without junk=1), C++ sized delete mismatches (tests/api/cxx_new.cc). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static char data_buf[512] __attribute__((aligned(64)));

/* Keep the compiler from seeing the misuse (it would warn, or drop the call). */
static void *hide(void *p)
{
    __asm__ volatile("" : "+r"(p));
    return p;
}

static void ptr(const void *p)
{
    printf("PTR %p\n", p);
    fflush(stdout);
}

static void setup_failed(const char *what)
{
    printf("FAILED %s\n", what);
    fflush(stdout);
    exit(2);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        setup_failed("malloc");
    memset(p, 0x11, n);
    return p;
}

static void double_free(size_t n, int delayed)
{
    void *p = xmalloc(n), *q = xmalloc(n);
    ptr(p);
    free(p);
    if (delayed)
        free(q); /* something else in between, as in hardened_malloc's *_delayed cases */
    free(hide(p));
    if (!delayed)
        free(q);
}

/* glibc tst-malloc-backtrace: the second free comes from deeper in the call stack. */
static void __attribute__((noinline)) call_free(void *p) { free(hide(p)); }
static void __attribute__((noinline)) deeper(void *p) { call_free(p); }

static void overflow(size_t n, size_t by)
{
    unsigned char *p = xmalloc(n);
    ptr(p);
    memset(p + n, 0x42, by); /* by bytes past the end */
    free(hide(p));
}

static void write_after_free(size_t n)
{
    unsigned char *p = xmalloc(n);
    ptr(p);
    free(p);
    ((unsigned char *)hide(p))[n / 2] = 0x99; /* use after free: a write */
    /* push it through the quarantine (1 MiB) and flush it */
    for (int i = 0; i < 4000; i++)
        free(malloc(1000));
    malloc_trim(0);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: conf_misuse CASE\n");
        return 2;
    }
    const char *c = argv[1];
    if (!strcmp(c, "double_free_small"))
        double_free(16, 0);
    else if (!strcmp(c, "double_free_small_delayed"))
        double_free(16, 1);
    else if (!strcmp(c, "double_free_large"))
        double_free(256 * KiB, 0);
    else if (!strcmp(c, "double_free_large_delayed"))
        double_free(256 * KiB, 1);
    else if (!strcmp(c, "double_free_huge"))
        double_free(8 * MiB, 0);
    else if (!strcmp(c, "double_free_backtrace")) {
        void *p = xmalloc(50);
        ptr(p);
        free(p);
        deeper(p);
    } else if (!strcmp(c, "invalid_free_protected")) {
        unsigned char *m = mmap(NULL, 2 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            setup_failed("mmap");
        ptr(m + 4096);
        free(hide(m + 4096));
    } else if (!strcmp(c, "invalid_free_unprotected")) {
        unsigned char *m = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            setup_failed("mmap");
        ptr(m + 4096);
        free(hide(m + 4096));
    } else if (!strcmp(c, "invalid_free_data")) {
        ptr(data_buf + 64);
        free(hide(data_buf + 64));
    } else if (!strcmp(c, "invalid_free_small_region")) {
        unsigned char *p = xmalloc(64);
        ptr(p + 32);
        free(hide(p + 32));
    } else if (!strcmp(c, "invalid_free_large_region")) {
        unsigned char *p = xmalloc(256 * KiB);
        ptr(p + 8192);
        free(hide(p + 8192));
    } else if (!strcmp(c, "unaligned_free_small")) {
        unsigned char *p = xmalloc(64);
        ptr(p + 1);
        free(hide(p + 1));
    } else if (!strcmp(c, "unaligned_free_large")) {
        unsigned char *p = xmalloc(256 * KiB);
        ptr(p + 1);
        free(hide(p + 1));
    } else if (!strcmp(c, "invalid_malloc_usable_size_small")) {
        unsigned char *p = xmalloc(64);
        ptr(p + 16);
        printf("usable %zu\n", malloc_usable_size(hide(p + 16)));
    } else if (!strcmp(c, "realloc_double_free")) {
        void *p = xmalloc(100);
        ptr(p);
        free(p);
        void *q = realloc(hide(p), 200);
        printf("realloc gave %p\n", q);
    } else if (!strcmp(c, "overflow_small_1_byte")) {
        overflow(24, 1);
    } else if (!strcmp(c, "overflow_small_8_byte")) {
        overflow(24, 8);
    } else if (!strcmp(c, "overflow_large_1_byte")) {
        overflow(100 * KiB + 3, 1);
    } else if (!strcmp(c, "overflow_large_8_byte")) {
        overflow(100 * KiB + 3, 8);
    } else if (!strcmp(c, "overflow_large_guard")) {
        /* guard=1: the page after a large block is inaccessible; run past the usable size */
        unsigned char *p = xmalloc(64 * KiB);
        ptr(p);
        size_t u = malloc_usable_size(p);
        for (size_t i = u; i < u + 8192; i++)
            ((volatile unsigned char *)hide(p))[i] = 0x42;
        free(p);
    } else if (!strcmp(c, "write_after_free_small")) {
        write_after_free(48);
    } else if (!strcmp(c, "write_after_free_large")) {
        write_after_free(64 * KiB);
    } else {
        fprintf(stderr, "conf_misuse: unknown case '%s'\n", c);
        return 2;
    }
    printf("SURVIVED %s\n", c);
    return 0;
}
