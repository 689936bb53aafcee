/* fork() while other threads are in the allocator's slow paths, then a child that uses the whole
 * allocator (compare glibc's tst-mallocfork3 and the fork stress of mimalloc/jemalloc: the child
 * must find every lock free and every structure consistent).
 *
 * Four threads run the locked paths in tight loops: large blocks (64 KiB .. 3 MiB, the buddy
 * allocator), huge blocks (> 4 MiB, their own mappings, realloc'd through mremap), frees of
 * batches of 1,000 small objects (more than a per-CPU cache holds: they drain to the slabs) and
 * malloc_trim (returns memory to the OS). The main thread keeps 64 patterned blocks and forks
 * repeatedly (the threads pause while a child runs, so that it gets the CPUs). Each child: checks the inherited blocks, frees them, allocates, fills, checks and
 * frees in every size range (8 B .. 5 MiB) and with calloc/realloc/posix_memalign, does the same in a new
 * thread, and _exits 0 (1 on a bad pattern). Runs for [seconds] (default 2), at least 8 forks.
 * usage: fork_slowpath [seconds] */
#include "conf.h"

#include <malloc.h>
#include <pthread.h>

static volatile int stop, paused;
static pthread_mutex_t pause_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pause_cond = PTHREAD_COND_INITIALIZER;

static void set_paused(int on)
{
    pthread_mutex_lock(&pause_lock);
    paused = on;
    pthread_cond_broadcast(&pause_cond);
    pthread_mutex_unlock(&pause_lock);
}
static unsigned long work[4];

static void *slow(void *arg)
{
    long kind = (long)arg;
    static const char *const names[] = {"large blocks", "huge blocks", "batches of small frees", "malloc_trim"};
    int me = conf_slot(names[kind]);
    bsl_rng r;
    bsl_rng_seed(&r, (uint64_t)kind + 1);
    static __thread void *batch[1000];
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        if (__atomic_load_n(&paused, __ATOMIC_RELAXED)) { /* the child gets the CPUs */
            conf_at(me, "paused while a child runs");
            pthread_mutex_lock(&pause_lock);
            while (paused && !stop)
                pthread_cond_wait(&pause_cond, &pause_lock);
            pthread_mutex_unlock(&pause_lock);
        }
        conf_at(me, "in the allocator");
        switch (kind) {
        case 0: {
            size_t n = 64 * KiB + bsl_rand_below(&r, 3 * MiB);
            unsigned char *p = malloc(n);
            CHECK(p != NULL);
            p[0] = p[n - 1] = 7;
            free(p);
            break;
        }
        case 1: {
            size_t n = 4 * MiB + 1 + bsl_rand_below(&r, 6 * MiB);
            unsigned char *p = malloc(n);
            CHECK(p != NULL);
            p[0] = p[n - 1] = 7;
            p = realloc(p, n + 3 * MiB);
            CHECK(p != NULL && p[0] == 7);
            free(p);
            break;
        }
        case 2: {
            size_t sz = 8 + bsl_rand_below(&r, 2000);
            for (int i = 0; i < 1000; i++) {
                batch[i] = malloc(sz);
                CHECK(batch[i] != NULL);
            }
            for (int i = 0; i < 1000; i++)
                free(batch[i]);
            break;
        }
        default:
            malloc_trim(0);
            usleep(200);
            break;
        }
        work[kind]++;
        conf_at(me, "between calls");
    }
    conf_at(me, "done");
    return NULL;
}

static int child_round(uint64_t seed)
{
    bsl_rng r;
    bsl_rng_seed(&r, seed);
    int bad = 0;
    static const size_t sizes[] = {8, 33, 133, 533, 2133, 8533, 34133, 136533, 546133, 2 * MiB + 5, 5 * MiB};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        unsigned char *p = malloc(n), *c = calloc(1, n), *a = NULL;
        if (!p || !c || posix_memalign((void **)&a, 64, n) != 0)
            return 1;
        bsl_fill(p, n, seed + n);
        if (!bsl_all_zero(c, n))
            bad = 1;
        bsl_fill(a, n, seed + 2 * n);
        p = realloc(p, n * 2);
        if (!p || bsl_check(p, n, seed + n) != (size_t)-1)
            bad = 1;
        if (bsl_check(a, n, seed + 2 * n) != (size_t)-1)
            bad = 1;
        free(p);
        free(c);
        free(a);
    }
    void *v[500];
    for (int i = 0; i < 500; i++) {
        v[i] = malloc(1 + bsl_rand_below(&r, 1000));
        if (!v[i])
            return 1;
    }
    for (int i = 0; i < 500; i++)
        free(v[i]);
    return bad;
}

static void *child_thread(void *arg)
{
    return (void *)(intptr_t)child_round((uint64_t)(uintptr_t)arg);
}

int main(int argc, char **argv)
{
    conf_begin("fork_slowpath", 25);
    double secs = argc > 1 ? atof(argv[1]) : 2.0;
    enum { NKEEP = 64 };
    unsigned char *keep[NKEEP];
    size_t keepn[NKEEP];
    for (int i = 0; i < NKEEP; i++) {
        keepn[i] = i == 0 ? 6 * MiB : i % 8 == 0 ? 10 * KiB * (size_t)(i + 1) : (size_t)(i * 97 + 1);
        keep[i] = malloc(keepn[i]);
        CHECK(keep[i] != NULL);
        bsl_fill(keep[i], keepn[i], (uint64_t)i);
    }
    pthread_t th[4];
    for (long i = 0; i < 4; i++)
        CHECK(pthread_create(&th[i], NULL, slow, (void *)i) == 0);

    double t0 = bsl_now(), t_fork = 0, t_wait = 0;
    unsigned long forks = 0;
    while ((bsl_now() - t0 < secs || forks < 8) && bsl_now() - t0 < 20) {
        conf_phase = "fork() while threads are in the slow paths";
        fflush(NULL);
        double t1 = bsl_now();
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            conf_child(15);
            conf_phase = "child: checking inherited blocks";
            int bad = 0;
            for (int i = 0; i < NKEEP; i++) {
                if (bsl_check(keep[i], keepn[i], (uint64_t)i) != (size_t)-1)
                    bad = 1;
                free(keep[i]);
            }
            conf_phase = "child: allocating in every size";
            bad |= child_round(forks * 7 + 1);
            conf_phase = "child: a new thread allocating";
            pthread_t t;
            void *ret = (void *)1;
            if (pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)(forks * 7 + 2)) != 0 ||
                pthread_join(t, &ret) != 0)
                bad = 1;
            bad |= ret != NULL;
            _exit(bad);
        }
        set_paused(1);
        double t2 = bsl_now();
        t_fork += t2 - t1;
        conf_track(pid);
        conf_phase = "waitpid() for a child that uses the allocator";
        CHECKF(conf_wait_status(pid, 0, "fork_slowpath child"), "child %lu failed (1: a block or a calloc was wrong)",
               forks);
        t_wait += bsl_now() - t2;
        set_paused(0);
        usleep(2000); /* let the threads get back into their slow paths */
        forks++;
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    set_paused(0);
    conf_phase = "joining the threads";
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < NKEEP; i++) {
        CHECK(bsl_check(keep[i], keepn[i], (uint64_t)i) == (size_t)-1);
        free(keep[i]);
    }
    printf("fork_slowpath: %lu forks in %.1f s (%.1f ms per fork(), %.1f ms per child); slow-path rounds: large %lu, "
           "huge %lu, batches %lu, trims %lu\n", forks, bsl_now() - t0, forks ? 1000 * t_fork / (double)forks : 0.0,
           forks ? 1000 * t_wait / (double)forks : 0.0, work[0], work[1], work[2], work[3]);
    CHECKF(forks >= 8, "only %lu forks", forks);
    return conf_end();
}
