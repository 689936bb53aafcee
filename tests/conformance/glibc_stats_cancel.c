/* malloc_stats and thread cancellation (the scenario of glibc malloc/tst-malloc-stats-cancellation,
 * glibc bug 22830).
 *
 * 1. A thread with a cancellation request already pending calls malloc_stats(): malloc_stats must
 *    not leave cancellation disabled, so the next cancellation point (pthread_testcancel) ends the
 *    thread with PTHREAD_CANCELED.
 * 2. Deferred cancellation: a thread loops on malloc_stats() (and a malloc/free pair) and is
 *    cancelled after a few milliseconds, 20 times.
 * 3. Asynchronous cancellation: the same with PTHREAD_CANCEL_ASYNCHRONOUS, 200 times, so the request
 *    lands anywhere inside malloc_stats.
 * After every cancellation the main thread must still be able to call malloc_stats, malloc and
 * free without hanging (a lock left held by the cancelled thread would deadlock it: the watchdog
 * then prints HANG). stderr is silenced while malloc_stats runs. */
#include "conf.h"

#include <malloc.h>
#include <pthread.h>

static pthread_barrier_t gate;
static volatile int reached_after_stats;

static void *pending_cancel_thread(void *arg)
{
    (void)arg;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    pthread_barrier_wait(&gate); /* main cancels us now */
    pthread_barrier_wait(&gate); /* the request is pending */
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
    /* malloc_stats runs with the request pending; it may act on it or not, but it must not leave
     * cancellation disabled */
    malloc_stats();
    pthread_testcancel();
    reached_after_stats = 1;
    return NULL;
}

static void *stats_loop(void *arg)
{
    int async = (int)(intptr_t)arg;
    pthread_setcanceltype(async ? PTHREAD_CANCEL_ASYNCHRONOUS : PTHREAD_CANCEL_DEFERRED, NULL);
    for (;;) {
        malloc_stats();
        if (!async) {
            void *p = malloc(100);
            free(p);
            pthread_testcancel();
        }
    }
    return NULL;
}

static void main_still_works(const char *after)
{
    conf_phase = after;
    malloc_stats();
    for (int i = 0; i < 100; i++) {
        void *p = malloc((size_t)(i * 37 % 5000) + 1);
        CHECK(p != NULL);
        free(p);
    }
    void *q = malloc(100000);
    CHECK(q != NULL);
    free(q);
}

int main(void)
{
    conf_begin("glibc_stats_cancel", 10);
    int saved = fcntl(2, F_DUPFD_CLOEXEC, 10), devnull = open("/dev/null", O_WRONLY);
    CHECK(saved >= 0 && devnull >= 0);
    dup2(devnull, 2);

    /* 1 */
    conf_phase = "malloc_stats with a pending cancellation";
    pthread_barrier_init(&gate, NULL, 2);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, pending_cancel_thread, NULL) == 0);
    pthread_barrier_wait(&gate);
    CHECK(pthread_cancel(t) == 0);
    pthread_barrier_wait(&gate);
    void *ret = NULL;
    pthread_join(t, &ret);
    int case1_ok = ret == PTHREAD_CANCELED && !reached_after_stats;
    main_still_works("main thread after case 1");

    /* 2 and 3 */
    int bad_deferred = 0, bad_async = 0;
    for (int async = 0; async < 2; async++) {
        for (int i = 0; i < (async ? 200 : 20); i++) {
            conf_phase = async ? "asynchronous cancellation of malloc_stats" : "deferred cancellation of malloc_stats";
            CHECK(pthread_create(&t, NULL, stats_loop, (void *)(intptr_t)async) == 0);
            usleep(500 + 250 * (useconds_t)(i % 8));
            CHECK(pthread_cancel(t) == 0);
            ret = NULL;
            pthread_join(t, &ret);
            if (ret != PTHREAD_CANCELED)
                *(async ? &bad_async : &bad_deferred) += 1;
            main_still_works(async ? "main thread after an asynchronous cancellation"
                                   : "main thread after a deferred cancellation");
        }
    }
    dup2(saved, 2);
    CHECKF(case1_ok, "a thread that called malloc_stats with a cancellation pending was not cancelled at the next "
           "cancellation point (ret %p, ran on: %d)", ret, reached_after_stats);
    CHECKF(bad_deferred == 0 && bad_async == 0, "%d deferred and %d asynchronous cancellations did not end the thread",
           bad_deferred, bad_async);
    return conf_end();
}
