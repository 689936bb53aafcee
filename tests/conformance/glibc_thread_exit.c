/* Threads come and go by the thousand while they allocate (the scenario of glibc
 * malloc/tst-malloc-thread-exit).
 *
 * Two outer threads loop: each starts 4 inner threads around a barrier. Even ones allocate
 * first and then wait (their cache holds objects when the barrier releases them and they exit);
 * odd ones wait and then allocate. Each inner thread frees its own block and hands a second one,
 * filled with a pattern, to its outer thread, which checks and frees it after the join (a block
 * that outlives the thread that allocated it). Runs for [seconds] (default 1.5) and requires at
 * least 1000 thread exits. Sizes cycle through small, mid and large (40 KiB) requests.
 * usage: glibc_thread_exit [seconds] */
#include "conf.h"

#include <malloc.h>
#include <pthread.h>

#define INNER 4
#define OUTER 2

static volatile int stop;
static unsigned long exits;

struct inner_arg {
    pthread_barrier_t *barrier;
    size_t size;
    uint64_t seed;
    unsigned char *handoff;
};

static void __attribute__((noinline)) opaque_free(void *p) { free(conf_launder(p)); }

static void *malloc_first(void *arg)
{
    struct inner_arg *a = arg;
    void *p = malloc(a->size);
    CHECK(p != NULL);
    a->handoff = malloc(a->size);
    CHECK(a->handoff != NULL);
    bsl_fill(a->handoff, a->size, a->seed);
    pthread_barrier_wait(a->barrier);
    opaque_free(p);
    return NULL;
}

static void *wait_first(void *arg)
{
    struct inner_arg *a = arg;
    pthread_barrier_wait(a->barrier);
    void *p = malloc(a->size);
    CHECK(p != NULL);
    a->handoff = malloc(a->size);
    CHECK(a->handoff != NULL);
    bsl_fill(a->handoff, a->size, a->seed);
    opaque_free(p);
    return NULL;
}

static void *outer(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * 1000003;
    static const size_t sizes[] = {32, 8, 200, 1000, 3000, 40 * KiB};
    pthread_t th[INNER];
    struct inner_arg ia[INNER];
    unsigned long round = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, INNER + 1);
        for (int i = 0; i < INNER; i++) {
            ia[i] = (struct inner_arg){&barrier, sizes[(round + (unsigned long)i) % 6], seed++, NULL};
            int rc = pthread_create(&th[i], NULL, i % 2 ? wait_first : malloc_first, &ia[i]);
            CHECKF(rc == 0, "pthread_create: %s", strerror(rc));
        }
        pthread_barrier_wait(&barrier);
        for (int i = 0; i < INNER; i++) {
            pthread_join(th[i], NULL);
            CHECKF(bsl_check(ia[i].handoff, ia[i].size, ia[i].seed) == (size_t)-1,
                   "a block handed over by an exited thread changed");
            free(ia[i].handoff);
        }
        pthread_barrier_destroy(&barrier);
        __atomic_fetch_add(&exits, INNER, __ATOMIC_RELAXED);
        round++;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    conf_begin("glibc_thread_exit", 40);
    double secs = argc > 1 ? atof(argv[1]) : 1.5;
    conf_phase = "thread churn";
    pthread_t th[OUTER];
    for (long i = 0; i < OUTER; i++)
        CHECK(pthread_create(&th[i], NULL, outer, (void *)i) == 0);
    double t0 = bsl_now();
    while (bsl_now() - t0 < secs && __atomic_load_n(&exits, __ATOMIC_RELAXED) < 200000)
        usleep(20000);
    /* make sure the churn reached the thousands even on a slow machine */
    while (__atomic_load_n(&exits, __ATOMIC_RELAXED) < 1000 && bsl_now() - t0 < 20)
        usleep(20000);
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < OUTER; i++)
        pthread_join(th[i], NULL);
    unsigned long n = __atomic_load_n(&exits, __ATOMIC_RELAXED);
    printf("glibc_thread_exit: %lu threads created and exited in %.1f s\n", n, bsl_now() - t0);
    CHECKF(n >= 1000, "only %lu thread exits", n);
    return conf_end();
}
