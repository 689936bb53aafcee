/* Signals arriving during allocation. Worker threads allocate, reallocate and free blocks of every
 * kind with a checked pattern in each, while a signaller thread sends SIGUSR1 to the workers with
 * pthread_kill and a queued real-time signal (SIGRTMIN, pthread_sigqueue) as fast as it can, and an interval timer delivers SIGALRM to the process every
 * 200 us. The handlers do not allocate: they check a block allocated before the storm (its
 * contents must never change), touch some stack, and keep errno. SIGUSR1 is installed without
 * SA_RESTART, so system calls inside the allocator (futex waits, mmap, madvise) can return EINTR;
 * in rseq mode every signal that lands inside a per-CPU cache operation aborts and restarts it.
 * Nothing may crash, hang or lose a block; every block is checked before it is freed.
 * usage: stress_signals [threads=4] [seconds=4] */
#include "bsl_test.h"

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define SLOTS 256
#define MAXT 32

typedef struct blk {
    unsigned char *p;
    size_t n;
    uint64_t seed;
} blk;

static volatile int stop;
static unsigned long nsig_usr1, nsig_rt, nsig_alrm, nsent, total_ops;
static unsigned char *witness; /* allocated before the storm; the handlers check it */
static size_t witness_n = 3000;
static volatile int handler_bad;

static void handler(int sig)
{
    int saved = errno;
    volatile unsigned char scratch[512]; /* some stack below the interrupted frame */
    for (unsigned i = 0; i < sizeof(scratch); i += 64)
        scratch[i] = (unsigned char)i;
    if (bsl_check(witness, 64, 99) != (size_t)-1)
        handler_bad = 1;
    __atomic_fetch_add(sig == SIGUSR1 ? &nsig_usr1 : sig == SIGALRM ? &nsig_alrm : &nsig_rt, 1, __ATOMIC_RELAXED);
    errno = saved;
}

static size_t pick(bsl_rng *r)
{
    uint64_t x = bsl_rand(r);
    if (x % 4000 == 0)
        return 4 * MiB + (x >> 16) % (2 * MiB); /* huge: mmap, mremap */
    if (x % 40 == 0)
        return 32 * KiB + (x >> 16) % (300 * KiB); /* large: buddy, locks */
    return 1 + (x >> 16) % 1500;
}

static void *worker(void *arg)
{
    long id = (long)arg;
    bsl_rng r;
    bsl_rng_seed(&r, 4242 + (uint64_t)id);
    blk b[SLOTS] = {{0}};
    unsigned long ops = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        blk *s = &b[bsl_rand_below(&r, SLOTS)];
        unsigned op = (unsigned)bsl_rand_below(&r, 8);
        if (s->p) {
            size_t off = bsl_check(s->p, s->n, s->seed);
            CHECKF(off == (size_t)-1, "thread %ld: block %p (%zu bytes) corrupted at byte %zu", id, (void *)s->p, s->n,
                   off);
            if (op < 2) { /* realloc keeps the prefix */
                size_t m = pick(&r);
                errno = 0;
                unsigned char *q = realloc(s->p, m);
                CHECKF(q != NULL, "thread %ld: realloc(%zu -> %zu) failed: errno %d", id, s->n, m, errno);
                size_t keep = m < s->n ? m : s->n;
                CHECKF(bsl_check(q, keep, s->seed) == (size_t)-1, "thread %ld: realloc lost contents", id);
                s->p = q;
                s->n = m;
                bsl_fill(s->p, s->n, s->seed);
            } else {
                free(s->p);
                s->p = NULL;
            }
        } else {
            s->n = pick(&r);
            errno = 0;
            if (op == 0) {
                s->p = calloc(1, s->n);
                CHECKF(s->p && bsl_all_zero(s->p, s->n), "thread %ld: calloc(%zu) failed or not zeroed", id, s->n);
            } else if (op == 1) {
                void *p = NULL;
                CHECK(posix_memalign(&p, 64, s->n) == 0 && ((uintptr_t)p & 63) == 0);
                s->p = p;
            } else {
                s->p = malloc(s->n);
            }
            CHECKF(s->p != NULL, "thread %ld: allocation of %zu failed: errno %d", id, s->n, errno);
            s->seed = ((uint64_t)id << 48) ^ ops;
            bsl_fill(s->p, s->n, s->seed);
        }
        ops++;
    }
    for (int i = 0; i < SLOTS; i++)
        if (b[i].p) {
            CHECK(bsl_check(b[i].p, b[i].n, b[i].seed) == (size_t)-1);
            free(b[i].p);
        }
    __atomic_fetch_add(&total_ops, ops, __ATOMIC_RELAXED);
    return NULL;
}

static pthread_t workers[MAXT];
static int nworkers;

static void *signaller(void *arg)
{
    (void)arg;
    unsigned long sent = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        for (int i = 0; i < nworkers; i++) {
            /* SIGUSR1 coalesces while pending; a queued real-time signal is delivered each time */
            if ((sent & 1) ? pthread_kill(workers[i], SIGUSR1) == 0
                           : pthread_sigqueue(workers[i], SIGRTMIN, (union sigval){.sival_int = i}) == 0)
                sent++;
        }
        if ((sent & 63) == 0)
            sched_yield();
    }
    nsent = sent;
    return NULL;
}

int main(int argc, char **argv)
{
    nworkers = argc > 1 ? atoi(argv[1]) : 4;
    double seconds = argc > 2 ? atof(argv[2]) : 4;
    if (nworkers < 1 || nworkers > MAXT)
        nworkers = 4;
    bsl_test_begin("stress_signals");

    witness = malloc(witness_n);
    bsl_fill(witness, witness_n, 99);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: interrupted system calls return EINTR */
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    CHECK(sigaction(SIGRTMIN, &sa, NULL) == 0);
    sa.sa_flags = SA_RESTART;
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);

    for (long i = 0; i < nworkers; i++)
        CHECK(pthread_create(&workers[i], NULL, worker, (void *)i) == 0);
    pthread_t sig;
    CHECK(pthread_create(&sig, NULL, signaller, NULL) == 0);
    struct itimerval it = {{0, 200}, {0, 200}};
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);

    /* main sleeps through the storm (its sleep is interrupted by SIGALRM: sleep again) */
    double t0 = bsl_now();
    while (bsl_now() - t0 < seconds)
        usleep(10000);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    pthread_join(sig, NULL);
    for (int i = 0; i < nworkers; i++)
        pthread_join(workers[i], NULL);

    CHECK(!handler_bad);
    CHECK(bsl_check(witness, witness_n, 99) == (size_t)-1);
    free(witness);
    CHECK(bsl_check_heap() == 0);
    /* (low bars: a loaded machine delivers fewer; thousands arrive on an idle one) */
    CHECKF(nsig_usr1 > 50, "only %lu SIGUSR1 handled", nsig_usr1);
    CHECKF(nsig_rt > 200, "only %lu SIGRTMIN handled", nsig_rt);
    CHECKF(nsig_alrm > 50, "only %lu SIGALRM handled", nsig_alrm);
    printf("stress_signals: %d threads, %.1f s: %lu block operations; %lu signals sent to threads, handled: %lu "
           "SIGUSR1, %lu SIGRTMIN, %lu SIGALRM (timer)\n",
           nworkers, bsl_now() - t0, total_ops, nsent, nsig_usr1, nsig_rt, nsig_alrm);
    return bsl_test_end();
}
