/* Huge blocks (> 4 MiB, each its own mapping) from many threads at once: malloc, realloc shrinking
 * and growing (mremap), aligned and HUGE-zone allocations, mixed with large buddy blocks. Mappings
 * released by one thread are immediately reused by the kernel for another thread's block, so any
 * window where the allocator's bookkeeping (pagemap) of a released range is updated after the range
 * went back to the kernel shows up as a block that is no longer recognised (bsl_owns() == 0, or
 * free() reporting an invalid pointer).
 * Only the first and last page of each block are written (keeps the test fast).
 * usage: stress_huge [threads=6] [seconds=6] */
#include "bsl_test.h"

#include <malloc.h>
#include <pthread.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define EDGE 4096

typedef struct hblk {
    unsigned char *p;
    size_t n;
    uint64_t seed;
} hblk;

static double deadline;
static unsigned long total_ops;

static void put(hblk *b)
{
    bsl_fill(b->p, EDGE, b->seed);
    bsl_fill(b->p + b->n - EDGE, EDGE, b->seed ^ 0xabcdef);
}

static void check(const hblk *b, const char *when)
{
    CHECKF(bsl_owns(b->p) == 1, "%s: huge block %p (%zu bytes) not owned any more", when, (void *)b->p, b->n);
    CHECKF(bsl_zone_of(b->p) != -1, "%s: huge block %p (%zu bytes) foreign", when, (void *)b->p, b->n);
    size_t off = bsl_check(b->p, EDGE, b->seed);
    CHECKF(off == (size_t)-1, "%s: block %p (%zu bytes) head corrupted at %zu", when, (void *)b->p, b->n, off);
    off = bsl_check(b->p + b->n - EDGE, EDGE, b->seed ^ 0xabcdef);
    CHECKF(off == (size_t)-1, "%s: block %p (%zu bytes) tail corrupted at %zu", when, (void *)b->p, b->n, off);
}

static size_t hsize(bsl_rng *r)
{
    return 4 * MiB + 1 + bsl_rand_below(r, 28 * MiB);
}

static void *worker(void *arg)
{
    long id = (long)arg;
    bsl_rng r;
    bsl_rng_seed(&r, 0x4a6e + (uint64_t)id);
    hblk b[8] = {{0}};
    unsigned long ops = 0;
    while (bsl_now() < deadline) {
        hblk *s = &b[bsl_rand_below(&r, 8)];
        uint64_t op = bsl_rand_below(&r, 100);
        ops++;
        if (s->p) {
            check(s, "before an operation");
            if (op < 40) {
                /* realloc to another huge size: shrink in place or grow (in place or moved) */
                size_t nn = hsize(&r);
                unsigned char *q = realloc(s->p, nn);
                CHECKF(q != NULL, "realloc(%zu -> %zu) failed", s->n, nn);
                if (!q)
                    continue;
                CHECK(bsl_check(q, EDGE, s->seed) == (size_t)-1);
                if (nn >= s->n)
                    CHECK(bsl_check(q + s->n - EDGE, EDGE, s->seed ^ 0xabcdef) == (size_t)-1);
                s->p = q;
                s->n = nn;
                s->seed = (uintptr_t)q ^ ops;
                put(s);
                check(s, "after realloc");
            } else if (op < 50) {
                /* realloc down to a large (buddy) or small block */
                size_t nn = op < 45 ? 64 * KiB + bsl_rand_below(&r, 3 * MiB) : 16 + bsl_rand_below(&r, 4000);
                unsigned char *q = realloc(s->p, nn);
                CHECK(q != NULL);
                CHECK(bsl_check(q, nn < EDGE ? nn : EDGE, s->seed) == (size_t)-1);
                CHECK(bsl_owns(q) == 1);
                free(q);
                s->p = NULL;
            } else {
                free(s->p);
                s->p = NULL;
            }
            continue;
        }
        size_t n = hsize(&r);
        unsigned char *p;
        if (op < 60) {
            p = malloc(n);
        } else if (op < 70) {
            p = calloc(1, n);
            CHECK(p != NULL && bsl_all_zero(p, EDGE) && bsl_all_zero(p + n - EDGE, EDGE));
        } else if (op < 80) {
            void *q = NULL;
            size_t a = (size_t)2 * MiB << bsl_rand_below(&r, 4); /* 2 .. 16 MiB */
            CHECK(posix_memalign(&q, a, n) == 0);
            CHECKF(((uintptr_t)q & (a - 1)) == 0, "posix_memalign(%zu MiB, %zu) = %p", a >> 20, n, q);
            p = q;
        } else if (op < 90) {
            p = bsl_zone_malloc(BSL_ZONE_HUGE, n);
            CHECK(p != NULL && ((uintptr_t)p & (2 * MiB - 1)) == 0 && bsl_zone_of(p) == BSL_ZONE_HUGE);
        } else {
            /* a large buddy block grown into a huge one */
            n = 1 * MiB + bsl_rand_below(&r, 3 * MiB);
            p = malloc(n);
            CHECK(p != NULL);
            bsl_fill(p, EDGE, 5);
            unsigned char *q = realloc(p, n + 4 * MiB);
            CHECK(q != NULL && bsl_check(q, EDGE, 5) == (size_t)-1);
            p = q;
            n += 4 * MiB;
        }
        CHECKF(p != NULL, "allocation of %zu bytes failed", n);
        if (!p)
            continue;
        s->p = p;
        s->n = n;
        s->seed = (uintptr_t)p ^ ((uint64_t)id << 50) ^ ops;
        put(s);
        check(s, "after allocation");
    }
    for (int i = 0; i < 8; i++)
        if (b[i].p) {
            check(&b[i], "at the end");
            free(b[i].p);
        }
    __atomic_fetch_add(&total_ops, ops, __ATOMIC_RELAXED);
    return NULL;
}

int main(int argc, char **argv)
{
    int nthreads = argc > 1 ? atoi(argv[1]) : 6;
    double secs = argc > 2 ? atof(argv[2]) : 6.0;
    bsl_test_begin("stress_huge");
    double t0 = bsl_now();
    deadline = t0 + secs;
    pthread_t *t = malloc(sizeof *t * (size_t)nthreads);
    for (long i = 0; i < nthreads; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    free(t);
    bsl_stats_t s;
    bsl_stats_get(&s);
    printf("stress_huge: %d threads, %lu operations in %.2f s; huge_bytes now %zu\n", nthreads, total_ops,
           bsl_now() - t0, s.huge_bytes);
    CHECKF(s.huge_bytes == 0, "%zu bytes of huge mappings still accounted after every block was freed",
           s.huge_bytes);
    CHECK(total_ops > 1000);
    return bsl_test_end();
}
