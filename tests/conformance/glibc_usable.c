/* malloc_usable_size (the scenario of glibc malloc/tst-malloc-usable and mimalloc's calloc0).
 *
 * For every size from 0 up through the slab classes, large and huge blocks, and for every way of
 * getting a block (malloc, calloc, realloc up and down, memalign, posix_memalign, aligned_alloc,
 * valloc), malloc_usable_size(p) >= the size asked for, and the whole usable area belongs to the
 * caller: it is filled to the last byte, the neighbours allocated around it keep their contents,
 * and freeing it raises no report (with canary=1 a write into bytes that are not the caller's
 * would abort). malloc_usable_size(NULL) is 0. A 0-byte block (malloc(0), calloc(0, n)) is a real
 * block with a small usable size: 1 .. 64 bytes (glibc: 24; 0 would read as NULL's). */
#include "conf.h"

#include <malloc.h>

#define NB 3

static void use_fully(unsigned char *p, size_t asked, const char *how)
{
    CHECKF(p != NULL, "%s(%zu) failed", how, asked);
    if (!p)
        return;
    size_t us = malloc_usable_size(p);
    CHECKF(us >= asked, "%s(%zu): malloc_usable_size = %zu", how, asked, us);
    memset(p, 0xe7, us);
}

static void sizes_round(size_t n, uint64_t seed)
{
    /* neighbours of the same size, filled with a pattern, then the middle one used fully */
    unsigned char *b[NB];
    for (int i = 0; i < NB; i++) {
        b[i] = malloc(conf_size(n));
        CHECK(b[i] != NULL);
        bsl_fill(b[i], n, seed + (uint64_t)i);
    }
    unsigned char *m = malloc(conf_size(n));
    use_fully(m, n, "malloc");
    unsigned char *c = calloc(1, conf_size(n));
    use_fully(c, n, "calloc");
    for (int i = 0; i < NB; i++)
        CHECKF(bsl_check(b[i], n, seed + (uint64_t)i) == (size_t)-1, "size %zu: a neighbour changed after the usable "
               "area of another block was filled", n);
    free(m);
    free(c);
    for (int i = 0; i < NB; i++)
        free(b[i]);
}

int main(void)
{
    conf_begin("glibc_usable", 60);
    CHECK(malloc_usable_size(NULL) == 0);

    void *z = malloc(conf_size(0));
    CHECK(z != NULL);
    size_t zu = malloc_usable_size(z);
    CHECKF(zu >= 1 && zu <= 64, "malloc(0): usable size %zu (want a small block: 1 .. 64 bytes; 0 is for NULL)", zu);
    memset(z, 1, zu);
    free(z);
    z = calloc(conf_size(0), 1000);
    CHECK(z != NULL);
    zu = malloc_usable_size(z);
    CHECKF(zu >= 1 && zu <= 64, "calloc(0, 1000): usable size %zu (want a small block: 1 .. 64 bytes)", zu);
    memset(z, 1, zu);
    free(z);

    for (size_t n = 0; n <= 7 * MiB; n = n < 1100 ? n + 1 : n < 70000 ? n + 211 : n * 3 / 2)
        sizes_round(n, n);

    /* realloc: after growing and after shrinking */
    unsigned char *p = NULL;
    size_t steps[] = {1, 30, 500, 5000, 40000, 300000, 5 * MiB, 100000, 700, 12, 6 * MiB, 3};
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        p = realloc(p, conf_size(steps[i]));
        use_fully(p, steps[i], "realloc");
    }
    free(p);

    /* aligned functions */
    for (size_t a = 16; a <= 2 * MiB; a *= 4) {
        size_t ns[] = {1, a / 2 + 3, a + 1, 3 * a};
        for (size_t i = 0; i < 4; i++) {
            unsigned char *q = memalign(a, ns[i]);
            use_fully(q, ns[i], "memalign");
            free(q);
            q = NULL;
            CHECK(posix_memalign((void **)&q, a, ns[i]) == 0);
            use_fully(q, ns[i], "posix_memalign");
            free(q);
            q = aligned_alloc(a, ns[i]);
            use_fully(q, ns[i], "aligned_alloc");
            free(q);
        }
    }
    unsigned char *v = valloc(100);
    use_fully(v, 100, "valloc");
    free(v);
    return conf_end();
}
