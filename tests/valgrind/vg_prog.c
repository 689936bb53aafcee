/* Programs for memcheck: linked with libbuddyslab.a and run under
 * valgrind --soname-synonyms=somalloc=nouserintercepts, so that the malloc memcheck watches is
 * buddyslab's, which describes its blocks with client requests. vg_driver.py runs one case and
 * checks what memcheck reported (see the table there). Each bug is made in its own function so that
 * the reports have distinct stacks.
 * usage: vg_prog CASE */
#include "bsl_test.h"

#include <malloc.h>
#include <pthread.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* Keep the compiler from reasoning about the pointer: the access has to happen. */
static void *launder(void *p)
{
    __asm__ volatile("" : "+r"(p));
    return p;
}

/* ---- leaks: blocks whose last pointer is dropped ---- */
static void *volatile sink;

__attribute__((noinline)) static void leak_small(void)
{
    sink = malloc(1234);
    memset(sink, 1, 1234);
    sink = NULL;
}

__attribute__((noinline)) static void leak_large(void)
{
    sink = malloc(70000);
    memset(sink, 2, 70000);
    sink = NULL;
}

__attribute__((noinline)) static void leak_huge(void)
{
    sink = calloc(1, 5 * MiB);
    sink = NULL;
}

/* ---- invalid accesses ---- */
__attribute__((noinline)) static void overflow_small(void)
{
    unsigned char *p = malloc(24);
    memset(p, 0, 24);
    ((unsigned char *)launder(p))[24] = 1; /* 0 bytes after a block of size 24 */
    free(p);
}

__attribute__((noinline)) static void overflow_large(void)
{
    unsigned char *p = malloc(100000);
    memset(p, 0, 100000);
    ((unsigned char *)launder(p))[100000] = 1; /* 0 bytes after a block of size 100,000 */
    free(p);
}

__attribute__((noinline)) static void use_after_free(void)
{
    unsigned char *p = malloc(24);
    memset(p, 0, 24);
    free(p);
    ((unsigned char *)launder(p))[3] = 1; /* 3 bytes inside a block of size 24 free'd */
}

__attribute__((noinline)) static void read_after_free(void)
{
    unsigned char *p = malloc(200);
    memset(p, 0, 200);
    free(p);
    printf("read %d\n", ((volatile unsigned char *)launder(p))[100]); /* 100 bytes inside ... 200 free'd */
}

__attribute__((noinline)) static void uninit_read(void)
{
    unsigned char *p = malloc(64);
    if (((volatile unsigned char *)launder(p))[10] == 42) /* never written */
        puts("42");
    free(p);
}

/* ---- correct programs: memcheck must report nothing ---- */
static void *clean_thread(void *arg)
{
    bsl_rng r;
    bsl_rng_seed(&r, (uint64_t)(uintptr_t)arg);
    void *keep[64] = {0};
    for (int i = 0; i < 3000; i++) {
        unsigned s = (unsigned)bsl_rand_below(&r, 64);
        if (keep[s]) {
            free(keep[s]);
            keep[s] = NULL;
        } else {
            size_t n = 1 + bsl_rand_below(&r, i % 50 == 0 ? 200000 : 2000);
            keep[s] = (i & 1) ? calloc(1, n) : malloc(n);
            CHECK(keep[s] != NULL);
            memset(keep[s], i, n);
        }
    }
    for (int s = 0; s < 64; s++)
        free(keep[s]);
    return NULL;
}

static void clean_basic(void)
{
    /* every kind of block, written in full, freed */
    static const size_t sizes[] = {1, 16, 17, 100, 1000, 4096, 20000, 32 * KiB, 40 * KiB, 1 * MiB, 5 * MiB};
    for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        unsigned char *p = malloc(n), *z = calloc(n, 1);
        CHECK(p && z && bsl_all_zero(z, n));
        memset(p, 3, n);
        void *a = NULL;
        CHECK(posix_memalign(&a, 4096, n) == 0);
        memset(a, 4, n);
        unsigned char *m = memalign(64, n);
        memset(m, 5, n);
        free(p);
        free(z);
        free(a);
        free(m);
    }
    for (int z = BSL_ZONE_LOW32; z <= BSL_ZONE_HUGE; z++) {
        void *p = bsl_zone_malloc((bsl_zone_id)z, 3000);
        CHECK(p != NULL);
        memset(p, 6, 3000);
        free(p);
    }
    /* many small blocks, freed in another order */
    void *v[2000];
    for (int i = 0; i < 2000; i++) {
        v[i] = malloc(1 + (size_t)i % 300);
        memset(v[i], 7, 1 + (size_t)i % 300);
    }
    for (int i = 1999; i >= 0; i -= 2)
        free(v[i]);
    for (int i = 0; i < 2000; i += 2)
        free(v[i]);
}

static void clean_threads(void)
{
    pthread_t t[3];
    for (long i = 0; i < 3; i++)
        CHECK(pthread_create(&t[i], NULL, clean_thread, (void *)(i + 1)) == 0);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
}

static void clean_realloc(void)
{
    static const size_t steps[] = {1, 10, 17, 100, 1000, 5000, 40000, 300000, 5 * MiB, 100000, 500, 20, 3};
    size_t n = steps[0];
    unsigned char *p = malloc(n);
    memset(p, 1, n);
    for (unsigned i = 1; i < sizeof(steps) / sizeof(steps[0]); i++) {
        p = realloc(p, steps[i]);
        CHECK(p != NULL);
        memset(p, (int)i, steps[i]);
        n = steps[i];
    }
    free(p);
}

static void clean_usable(void)
{
    /* glibc's contract: all of malloc_usable_size() bytes belong to the caller */
    static const size_t sizes[] = {1, 20, 100, 1000, 33000};
    for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        unsigned char *p = malloc(sizes[i]);
        size_t us = malloc_usable_size(p);
        CHECK(us >= sizes[i]);
        memset(p, 1, us);
        free(p);
    }
}

static void clean_trim(void)
{
    void *v[500];
    for (int i = 0; i < 500; i++) {
        v[i] = malloc(100);
        memset(v[i], 1, 100);
    }
    for (int i = 0; i < 500; i++)
        free(v[i]);
    malloc_trim(0); /* flushes caches: the allocator writes freelist links into freed objects */
    void *p = malloc(100);
    CHECK(p != NULL && bsl_owns(p) == 1);
    free(p);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: vg_prog CASE\n");
        return 2;
    }
    const char *c = argv[1];
    bsl_test_begin(c);
    if (!strcmp(c, "leak")) {
        leak_small();
        leak_large();
    } else if (!strcmp(c, "leak-huge")) {
        leak_huge();
    } else if (!strcmp(c, "overflow")) {
        overflow_small();
        overflow_large();
    } else if (!strcmp(c, "use-after-free")) {
        use_after_free();
        read_after_free();
    } else if (!strcmp(c, "uninit")) {
        uninit_read();
    } else if (!strcmp(c, "clean")) {
        clean_basic();
    } else if (!strcmp(c, "clean-threads")) {
        clean_threads();
    } else if (!strcmp(c, "clean-realloc")) {
        clean_realloc();
    } else if (!strcmp(c, "clean-usable-size")) {
        clean_usable();
    } else if (!strcmp(c, "clean-trim")) {
        clean_trim();
    } else {
        fprintf(stderr, "vg_prog: unknown case '%s'\n", c);
        return 2;
    }
    return bsl_test_end();
}
