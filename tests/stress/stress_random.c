/* Many threads doing random malloc/calloc/realloc/aligned allocations of random sizes
 * (16 B .. 256 KiB, a few huge ones), every block filled with a pattern derived from its address and a
 * seed and checked before it is resized or freed.
 * usage: stress_random [threads=8] [ops per thread=60000] [seconds limit=15] */
#include "bsl_test.h"

#include <malloc.h>
#include <pthread.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define SLOTS 1024

typedef struct slot {
    unsigned char *p;
    size_t n;
    uint64_t seed;
} slot;

static long ops_per_thread = 60000;
static double deadline;
static unsigned long total_ops, total_huge;

static size_t random_size(bsl_rng *r)
{
    uint64_t x = bsl_rand(r);
    unsigned k = (unsigned)(x % 100);
    if (k < 45)
        return 16 + (size_t)(x >> 8) % 240; /* small: 16..255 */
    if (k < 75)
        return 256 + (size_t)(x >> 8) % (4 * KiB);
    if (k < 92)
        return 4 * KiB + (size_t)(x >> 8) % (60 * KiB);
    return 64 * KiB + (size_t)(x >> 8) % (192 * KiB + 1); /* up to 256 KiB */
}

static void check_slot(const slot *s, const char *when)
{
    size_t off = bsl_check(s->p, s->n, s->seed);
    CHECKF(off == (size_t)-1, "block %p (%zu bytes) corrupted at offset %zu %s", (void *)s->p, s->n, off, when);
}

static void *worker(void *arg)
{
    long id = (long)arg;
    slot *slots = calloc(SLOTS, sizeof *slots);
    CHECK(slots != NULL);
    bsl_rng r;
    bsl_rng_seed(&r, 0x5eed0000 + (uint64_t)id);
    long i;
    unsigned long huge = 0;
    for (i = 0; i < ops_per_thread; i++) {
        if ((i & 1023) == 0 && bsl_now() > deadline)
            break;
        slot *s = &slots[bsl_rand_below(&r, SLOTS)];
        uint64_t op = bsl_rand_below(&r, 1000);
        if (s->p) {
            check_slot(s, "before free/realloc");
            if (op < 150) {
                /* realloc: the common prefix must survive */
                size_t nn = (op < 10) ? bsl_rand_below(&r, 16) : random_size(&r);
                unsigned char *q = realloc(s->p, nn);
                if (nn == 0) {
                    CHECK(q == NULL);
                    s->p = NULL;
                    continue;
                }
                CHECKF(q != NULL, "realloc(%zu -> %zu) failed", s->n, nn);
                size_t keep = nn < s->n ? nn : s->n;
                size_t off = bsl_check(q, keep, s->seed);
                CHECKF(off == (size_t)-1, "realloc(%p, %zu -> %zu) = %p lost data at %zu", (void *)s->p, s->n, nn,
                       (void *)q, off);
                CHECK(((uintptr_t)q & 15) == 0);
                s->p = q;
                s->n = nn;
                s->seed = (uintptr_t)q ^ bsl_rand(&r);
                bsl_fill(q, nn, s->seed);
            } else if (op < 180) {
                /* just check and rewrite */
                s->seed ^= 0x1234567;
                bsl_fill(s->p, s->n, s->seed);
            } else {
                free(s->p);
                s->p = NULL;
            }
            continue;
        }
        size_t n = random_size(&r);
        unsigned char *p;
        if (op < 2) {
            n = 4 * MiB + bsl_rand_below(&r, 8 * MiB); /* huge */
            p = malloc(n);
            huge++;
        } else if (op < 600) {
            p = malloc(n);
        } else if (op < 750) {
            p = calloc(1, n);
            CHECKF(p != NULL && bsl_all_zero(p, n), "calloc(1, %zu) = %p not zeroed", n, (void *)p);
        } else if (op < 850) {
            size_t a = (size_t)16 << bsl_rand_below(&r, 9); /* 16 .. 4096 */
            void *q = NULL;
            CHECK(posix_memalign(&q, a, n) == 0);
            CHECKF(((uintptr_t)q & (a - 1)) == 0, "posix_memalign(%zu, %zu) = %p", a, n, q);
            p = q;
        } else if (op < 900) {
            size_t a = (size_t)64 << bsl_rand_below(&r, 6);
            n = (n + a - 1) & ~(a - 1);
            p = aligned_alloc(a, n);
            CHECKF(p != NULL && ((uintptr_t)p & (a - 1)) == 0, "aligned_alloc(%zu, %zu) = %p", a, n, (void *)p);
        } else if (op < 950) {
            int z = (int)bsl_rand_below(&r, 2); /* LOW32 or NORMAL */
            p = bsl_zone_malloc((bsl_zone_id)z, n);
            /* LOW32 blocks must be LOW32; NORMAL may fall back to LOW32 (zonelist). The exact zone
             * of NORMAL blocks is the api/zones test's business. */
            CHECKF(p != NULL && (bsl_zone_of(p) == z || (z == BSL_ZONE_NORMAL && bsl_zone_of(p) == BSL_ZONE_LOW32)),
                   "bsl_zone_malloc(%d, %zu) = %p in zone %d", z, n, (void *)p, bsl_zone_of(p));
            if (z == BSL_ZONE_LOW32)
                CHECKF((uintptr_t)p + n <= ((uintptr_t)1 << 32), "LOW32 block %p above 4 GiB", (void *)p);
        } else {
            p = realloc(NULL, n);
        }
        CHECKF(p != NULL, "allocation of %zu bytes failed", n);
        CHECK(((uintptr_t)p & 15) == 0);
        CHECKF(malloc_usable_size(p) >= n, "malloc_usable_size %zu < %zu", malloc_usable_size(p), n);
        s->p = p;
        s->n = n;
        s->seed = (uintptr_t)p ^ ((uint64_t)id << 48) ^ (uint64_t)i;
        bsl_fill(p, n, s->seed);
    }
    for (int k = 0; k < SLOTS; k++) {
        if (slots[k].p) {
            check_slot(&slots[k], "at the end");
            free(slots[k].p);
        }
    }
    free(slots);
    __atomic_fetch_add(&total_ops, (unsigned long)i, __ATOMIC_RELAXED);
    __atomic_fetch_add(&total_huge, huge, __ATOMIC_RELAXED);
    return NULL;
}

int main(int argc, char **argv)
{
    int nthreads = argc > 1 ? atoi(argv[1]) : 8;
    if (argc > 2)
        ops_per_thread = atol(argv[2]);
    double limit = argc > 3 ? atof(argv[3]) : 15.0;
    bsl_test_begin("stress_random");
    double t0 = bsl_now();
    deadline = t0 + limit;
    pthread_t *t = malloc(sizeof *t * (size_t)nthreads);
    for (long i = 0; i < nthreads; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    free(t);
    double dt = bsl_now() - t0;
    printf("stress_random: %d threads, %lu ops (%lu huge) in %.2f s%s\n", nthreads, total_ops, total_huge, dt,
           total_ops < (unsigned long)nthreads * (unsigned long)ops_per_thread ? " (stopped at the time limit)" : "");
    CHECKF(total_ops >= (unsigned long)nthreads * 1000, "only %lu operations done", total_ops);
    return bsl_test_end();
}
