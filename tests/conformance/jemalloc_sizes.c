/* Sizes, overflow, sized frees and per-thread allocation (the standard-API scenarios of jemalloc's
 * test/integration/allocated.c, overflow.c, free_sized.c, thread_arena.c and malloc.c; the
 * mallctl/mallocx parts have no standard equivalent).
 *
 * - usable sizes: for every size up to 4 KiB (then every 64 bytes to 64 KiB, every 256 KiB to 4 MiB,
 *   then a few huge ones)
 *   malloc_usable_size >= size, and usable sizes never decrease as the size grows (size classes);
 *   a thread's running total of usable bytes allocated and freed balances (allocated.c's counters,
 *   computed by the program);
 * - overflow: malloc, calloc(1, n) and realloc for the largest size plus one and for SIZE_MAX
 *   give NULL; realloc leaves the block valid;
 * - free_sized / free_aligned_sized (C23) with the sizes used to allocate;
 * - 8 threads allocate 2,000 blocks each at once: no two live blocks overlap (sorted by address),
 *   each is owned, and each thread frees the blocks of the next one. */
#include "conf.h"

#include <malloc.h>
#include <pthread.h>

void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

#define NT 8
#define PER 2000
static struct span {
    uintptr_t lo, hi;
} spans[NT * PER];
static void *blocks[NT][PER];
static pthread_barrier_t bar;

static int cmp_span(const void *a, const void *b)
{
    const struct span *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static void *arena_thread(void *arg)
{
    int id = (int)(intptr_t)arg;
    bsl_rng r;
    bsl_rng_seed(&r, (uint64_t)id + 100);
    size_t total_alloc = 0, total_free = 0;
    for (int i = 0; i < PER; i++) {
        size_t n = bsl_rand_below(&r, 50) == 0 ? 40 * KiB + bsl_rand_below(&r, 200 * KiB) : 1 + bsl_rand_below(&r, 3000);
        blocks[id][i] = malloc(n);
        CHECK(blocks[id][i] != NULL);
        size_t u = malloc_usable_size(blocks[id][i]);
        CHECK(u >= n);
        total_alloc += u;
        spans[id * PER + i] = (struct span){(uintptr_t)blocks[id][i], (uintptr_t)blocks[id][i] + n};
    }
    pthread_barrier_wait(&bar); /* every thread's blocks are live: main checks for overlaps */
    pthread_barrier_wait(&bar);
    int next = (id + 1) % NT;
    for (int i = 0; i < PER; i++) {
        CHECK(CONF_BSL(bsl_owns)(blocks[next][i]) == 1);
        total_free += malloc_usable_size(blocks[next][i]);
        free(blocks[next][i]);
    }
    (void)total_free;
    (void)total_alloc;
    return NULL;
}

int main(void)
{
    conf_begin("jemalloc_sizes", 60);

    /* usable sizes are at least the size and monotone */
    size_t prev = 0;
    for (size_t n = 1; n <= 20 * MiB; n = n < 4096 ? n + 1 : n < 64 * KiB ? n + 64 : n < 4 * MiB ? n + 256 * KiB : n + 3 * MiB) {
        void *p = malloc(n);
        CHECK(p != NULL);
        size_t u = malloc_usable_size(p);
        CHECKF(u >= n, "malloc(%zu): usable %zu", n, u);
        CHECKF(u >= prev, "malloc(%zu): usable %zu < %zu for a smaller size", n, u, prev);
        prev = u;
        free(p);
    }
    /* allocated/deallocated balance in one thread */
    size_t allocated = 0, deallocated = 0;
    void *v[1000];
    for (int i = 0; i < 1000; i++) {
        v[i] = malloc((size_t)i * 37 + 1);
        allocated += malloc_usable_size(v[i]);
    }
    for (int i = 0; i < 1000; i++) {
        deallocated += malloc_usable_size(v[i]);
        free(v[i]);
    }
    CHECK(allocated == deallocated && allocated >= 999 * 1000 / 2 * 37);

    /* overflow */
    size_t max_class = (size_t)PTRDIFF_MAX;
    CHECK(malloc(conf_size(max_class + 1)) == NULL);
    CHECK(malloc(conf_size(SIZE_MAX)) == NULL);
    CHECK(calloc(1, conf_size(max_class + 1)) == NULL);
    CHECK(calloc(1, conf_size(SIZE_MAX)) == NULL);
    unsigned char *p = malloc(1);
    CHECK(p != NULL);
    *p = 0x42;
    CHECK(realloc(p, conf_size(max_class + 1)) == NULL);
    CHECK(realloc(p, conf_size(SIZE_MAX)) == NULL);
    CHECK(*p == 0x42);
    free(p);

    /* free_sized / free_aligned_sized */
    for (size_t n = 1; n <= 8 * MiB; n = n * 3 + 1) {
        void *q = malloc(n);
        CHECK(q != NULL);
        CONF_BSL(free_sized)(q, n); /* glibc 2.36 has none: the preloaded one, via dlsym */
        q = aligned_alloc(256, n);
        CHECK(q != NULL);
        CONF_BSL(free_aligned_sized)(q, 256, n);
    }

    /* threads: no overlapping live blocks, frees of another thread's blocks */
    pthread_barrier_init(&bar, NULL, NT + 1);
    pthread_t th[NT];
    for (long i = 0; i < NT; i++)
        CHECK(pthread_create(&th[i], NULL, arena_thread, (void *)i) == 0);
    pthread_barrier_wait(&bar);
    qsort(spans, NT * PER, sizeof *spans, cmp_span);
    int overlaps = 0;
    for (int i = 1; i < NT * PER; i++)
        overlaps += spans[i].lo < spans[i - 1].hi;
    CHECKF(overlaps == 0, "%d live blocks of different threads overlap", overlaps);
    pthread_barrier_wait(&bar);
    for (int i = 0; i < NT; i++)
        pthread_join(th[i], NULL);
    return conf_end();
}
