/* malloc_trim returns memory and returns (the scenario of glibc malloc/tst-trim1).
 *
 * malloc_trim(0) with nothing to give back returns 0 or 1 and does no harm. After 64 MiB of
 * large blocks and 16 MiB of small ones have been written and freed, malloc_trim(0) returns 1
 * (memory was released) and the resident set shrinks by at least half of those 80 MiB; blocks still
 * alive keep their contents and the heap allocates normally afterwards. malloc_trim with a large
 * pad returns too. malloc_trim from one thread while three others allocate does not deadlock. */
#include "conf.h"

#include <malloc.h>
#include <pthread.h>

static volatile int stop;

static size_t rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

static void *churn(void *arg)
{
    bsl_rng r;
    bsl_rng_seed(&r, (uint64_t)(uintptr_t)arg + 7);
    void *slots[128] = {0};
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        int i = (int)bsl_rand_below(&r, 128);
        free(slots[i]);
        size_t n = bsl_rand_below(&r, 8) == 0 ? 33 * KiB + bsl_rand_below(&r, 300 * KiB) : 1 + bsl_rand_below(&r, 3000);
        slots[i] = malloc(n);
        CHECK(slots[i] != NULL);
        memset(slots[i], 1, n < 64 ? n : 64);
    }
    for (int i = 0; i < 128; i++)
        free(slots[i]);
    return NULL;
}

int main(void)
{
    conf_begin("glibc_trim", 60);
    int rc = malloc_trim(0);
    CHECKF(rc == 0 || rc == 1, "malloc_trim(0) = %d", rc);

    unsigned char *live = malloc(100000);
    CHECK(live != NULL);
    bsl_fill(live, 100000, 42);

    enum { NBIG = 64, NSMALL = 16 * 1024 };
    static void *big[NBIG], *small[NSMALL];
    for (int i = 0; i < NBIG; i++) {
        big[i] = malloc(1 * MiB);
        CHECK(big[i] != NULL);
        memset(big[i], 0x11, 1 * MiB);
    }
    for (int i = 0; i < NSMALL; i++) {
        small[i] = malloc(1024);
        CHECK(small[i] != NULL);
        memset(small[i], 0x22, 1024);
    }
    size_t before = rss();
    for (int i = 0; i < NBIG; i++)
        free(big[i]);
    for (int i = 0; i < NSMALL; i++)
        free(small[i]);
    rc = malloc_trim(0);
    size_t after = rss();
    printf("glibc_trim: malloc_trim(0) = %d, rss %zu KiB -> %zu KiB\n", rc, before >> 10, after >> 10);
    CHECKF(rc == 1, "malloc_trim(0) = %d after freeing 80 MiB, want 1", rc);
    CHECKF(after + 40 * MiB <= before, "rss %zu KiB -> %zu KiB: less than 40 MiB returned", before >> 10, after >> 10);
    CHECK(bsl_check(live, 100000, 42) == (size_t)-1);
    rc = malloc_trim((size_t)1 << 40);
    CHECKF(rc == 0 || rc == 1, "malloc_trim(1 TiB) = %d", rc);
    void *p = malloc(2 * MiB);
    CHECK(p != NULL);
    memset(p, 3, 2 * MiB);
    free(p);

    pthread_t th[3];
    for (long i = 0; i < 3; i++)
        CHECK(pthread_create(&th[i], NULL, churn, (void *)i) == 0);
    conf_phase = "malloc_trim while threads allocate";
    for (int i = 0; i < 50; i++) {
        rc = malloc_trim((size_t)i * 4096);
        CHECK(rc == 0 || rc == 1);
        usleep(500);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    CHECK(bsl_check(live, 100000, 42) == (size_t)-1);
    free(live);
    return conf_end();
}
