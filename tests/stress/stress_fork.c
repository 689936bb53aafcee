/* fork() from a multithreaded program: worker threads keep allocating and freeing while main forks
 * many times. Each child checks and frees blocks it inherited, allocates/frees/checks on its own,
 * starts a thread that does the same, and _exits 0. The parent checks every child's status.
 * A child that hangs (e.g. on an allocator lock held by a thread that does not exist in the child)
 * is killed by alarm() and reported. Phase 2 forks while threads run the allocator's locked paths
 * (huge mappings, buddy blocks, slab refill/drain) in tight loops, and the child takes all of them.
 * usage: stress_fork [forks=200] [worker threads=4] */
#include "bsl_test.h"

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define NMAIN 64

extern char **environ;

typedef struct blk {
    unsigned char *p;
    size_t n;
    uint64_t seed;
} blk;

static volatile int stop;
static unsigned long worker_ops;

static size_t rsize(bsl_rng *r)
{
    uint64_t x = bsl_rand(r);
    if (x % 50 == 0)
        return 64 * KiB + (x >> 8) % (1 * MiB);
    if (x % 3000 == 1)
        return 4 * MiB + (x >> 8) % (4 * MiB);
    return 16 + (x >> 8) % 2000;
}

/* Children do less big-block work than the workers: the point is many forks. */
static size_t child_size(bsl_rng *r)
{
    uint64_t x = bsl_rand(r);
    if (x % 400 == 0)
        return 64 * KiB + (x >> 8) % (1 * MiB);
    return 16 + (x >> 8) % 2000;
}

static void *worker(void *arg)
{
    long id = (long)arg;
    bsl_rng r;
    bsl_rng_seed(&r, 777 + (uint64_t)id);
    blk b[256] = {{0}};
    unsigned long ops = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        blk *s = &b[bsl_rand_below(&r, 256)];
        if (s->p) {
            size_t off = bsl_check(s->p, s->n, s->seed);
            CHECKF(off == (size_t)-1, "worker %ld: block corrupted at %zu", id, off);
            free(s->p);
            s->p = NULL;
        } else {
            s->n = rsize(&r);
            s->p = (ops & 7) == 0 ? calloc(1, s->n) : malloc(s->n);
            CHECK(s->p != NULL);
            s->seed = (uintptr_t)s->p ^ ops;
            bsl_fill(s->p, s->n, s->seed);
        }
        ops++;
    }
    for (int i = 0; i < 256; i++)
        free(b[i].p);
    __atomic_fetch_add(&worker_ops, ops, __ATOMIC_RELAXED);
    return NULL;
}

/* In the child: any failure exits with a distinct status. */
#define CHILD_CHECK(e, code)                                                                                     \
    do {                                                                                                         \
        if (!(e)) {                                                                                              \
            dprintf(2, "child %d: %s:%d: CHECK failed: %s\n", (int)getpid(), __FILE__, __LINE__, #e);            \
            _exit(code);                                                                                         \
        }                                                                                                        \
    } while (0)

static void *child_thread(void *arg)
{
    bsl_rng r;
    bsl_rng_seed(&r, (uint64_t)(uintptr_t)arg);
    for (int i = 0; i < 500; i++) {
        size_t n = child_size(&r);
        unsigned char *p = malloc(n);
        CHILD_CHECK(p != NULL, 20);
        bsl_fill(p, n, i);
        CHILD_CHECK(bsl_check(p, n, i) == (size_t)-1, 21);
        free(p);
    }
    return NULL;
}

static void child(blk *mainblk, int round)
{
    alarm(10);
    /* blocks allocated by the parent before the fork */
    for (int i = 0; i < NMAIN; i++) {
        CHILD_CHECK(bsl_check(mainblk[i].p, mainblk[i].n, mainblk[i].seed) == (size_t)-1, 10);
        CHILD_CHECK(bsl_owns(mainblk[i].p) == 1, 11);
        if (i & 1) {
            free(mainblk[i].p);
            mainblk[i].p = NULL;
        }
    }
    bsl_rng r;
    bsl_rng_seed(&r, (uint64_t)round * 31 + 7);
    blk mine[128] = {{0}};
    for (int i = 0; i < 2000; i++) {
        blk *s = &mine[bsl_rand_below(&r, 128)];
        if (s->p) {
            CHILD_CHECK(bsl_check(s->p, s->n, s->seed) == (size_t)-1, 12);
            free(s->p);
            s->p = NULL;
        } else {
            s->n = child_size(&r);
            s->p = malloc(s->n);
            CHILD_CHECK(s->p != NULL, 13);
            s->seed = (uintptr_t)s->p + (uint64_t)i;
            bsl_fill(s->p, s->n, s->seed);
        }
    }
    /* realloc a block inherited from the parent */
    unsigned char *q = realloc(mainblk[0].p, mainblk[0].n + 100 * KiB);
    CHILD_CHECK(q != NULL && bsl_check(q, mainblk[0].n, mainblk[0].seed) == (size_t)-1, 14);
    free(q);
    if (round % 4 == 0) {
        pthread_t t;
        CHILD_CHECK(pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)round) == 0, 15);
        CHILD_CHECK(pthread_join(t, NULL) == 0, 16);
    }
    for (int i = 0; i < 128; i++)
        free(mine[i].p);
    for (int i = 2; i < NMAIN; i += 2)
        free(mainblk[i].p);
    /* the child's heap still works after all that */
    void *z = calloc(1000, 10);
    CHILD_CHECK(z != NULL && bsl_all_zero(z, 10000), 17);
    free(z);
    _exit(0);
}

/* ---- phase 2: fork while other threads run the allocator's locked paths in tight loops ----
 * Blocks are not touched: a page fault (THP: zeroing 2 MiB) would dwarf the allocator's own work,
 * and it is the allocator's locks that must be in every state when fork() happens. Thread 0 maps
 * and unmaps huge blocks, thread 1 alternates huge and large (buddy) blocks, thread 2 allocates
 * and frees small blocks in batches bigger than any per-CPU/per-thread cache (refill and drain). */
static volatile int stop_tight;
static void *tight_worker(void *arg)
{
    int kind = (int)(uintptr_t)arg;
    bsl_rng r;
    bsl_rng_seed(&r, 5000 + (uint64_t)kind);
    unsigned long ops = 0;
    void *batch[512];
    while (!__atomic_load_n(&stop_tight, __ATOMIC_RELAXED)) {
        if (kind == 0 || (kind == 1 && (ops & 1))) {
            size_t n = 4 * MiB + 1 + bsl_rand_below(&r, 8 * MiB);
            void *p = (ops & 3) == 0 ? bsl_zone_malloc(BSL_ZONE_HUGE, n) : malloc(n);
            CHECK(p != NULL);
            free(p);
        } else if (kind == 1) {
            size_t n = 32 * KiB + bsl_rand_below(&r, 4 * MiB - 32 * KiB);
            void *p = (ops & 7) == 0 ? bsl_zone_malloc(BSL_ZONE_LOW32, n) : malloc(n);
            CHECK(p != NULL);
            free(p);
        } else {
            size_t n = 16 + bsl_rand_below(&r, 3000);
            for (int i = 0; i < 512; i++)
                batch[i] = malloc(n);
            for (int i = 0; i < 512; i++)
                free(batch[i]);
        }
        ops++;
    }
    __atomic_fetch_add(&worker_ops, ops, __ATOMIC_RELAXED);
    return NULL;
}

static void child_tight(void)
{
    alarm(5);
    void *v[600];
    for (int round = 0; round < 3; round++) {
        unsigned char *p = malloc(6 * MiB);
        CHILD_CHECK(p != NULL, 30);
        p[0] = 1;
        p[6 * MiB - 1] = 2;
        unsigned char *q = realloc(p, 10 * MiB);
        CHILD_CHECK(q != NULL && q[0] == 1 && q[6 * MiB - 1] == 2, 31);
        free(q);
        q = bsl_zone_malloc(BSL_ZONE_HUGE, 100);
        CHILD_CHECK(q != NULL, 32);
        free(q);
        for (int i = 0; i < 600; i++) {
            v[i] = malloc(16 + (size_t)(i * 37 + round) % 3000);
            CHILD_CHECK(v[i] != NULL, 33);
        }
        for (int i = 0; i < 600; i++)
            free(v[i]);
        for (int i = 0; i < 8; i++) {
            v[i] = i & 1 ? bsl_zone_malloc(BSL_ZONE_LOW32, 100 * KiB) : malloc((size_t)(i + 1) * 300 * KiB);
            CHILD_CHECK(v[i] != NULL, 34);
        }
        for (int i = 0; i < 8; i++)
            free(v[i]);
    }
    bsl_stats_t s;
    CHILD_CHECK(bsl_stats_get(&s) == 0, 35);
    bsl_purge();
    _exit(0);
}

static int fork_during_tight_loops(int nforks, double limit)
{
    pthread_t tw[3];
    for (long i = 0; i < 3; i++)
        CHECK(pthread_create(&tw[i], NULL, tight_worker, (void *)i) == 0);
    int failed = 0, f;
    double t0 = bsl_now();
    for (f = 0; f < nforks && bsl_now() - t0 < limit; f++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0)
            child_tight();
        int st = 0;
        CHECK(waitpid(pid, &st, 0) == pid);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            failed++;
            if (WIFSIGNALED(st))
                fprintf(stderr, "phase 2, fork %d: child killed by signal %d%s\n", f, WTERMSIG(st),
                        WTERMSIG(st) == SIGALRM ? " (hung for 5 s: a lock held across fork?)" : "");
            else
                fprintf(stderr, "phase 2, fork %d: child exited with status %d\n", f, WEXITSTATUS(st));
            if (failed >= 2)
                break;
        }
    }
    __atomic_store_n(&stop_tight, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 3; i++)
        pthread_join(tw[i], NULL);
    printf("stress_fork: phase 2 (tight loops): %d forks, %d failed, in %.2f s\n", f, failed, bsl_now() - t0);
    return failed;
}

int main(int argc, char **argv)
{
    int nforks = argc > 1 ? atoi(argv[1]) : 200;
    int nworkers = argc > 2 ? atoi(argv[2]) : 4;
    bsl_test_begin("stress_fork");
    double t0 = bsl_now();
    pthread_t *w = malloc(sizeof *w * (size_t)nworkers);
    for (long i = 0; i < nworkers; i++)
        CHECK(pthread_create(&w[i], NULL, worker, (void *)i) == 0);

    static blk mainblk[NMAIN];
    bsl_rng r;
    bsl_rng_seed(&r, 1);
    for (int i = 0; i < NMAIN; i++) {
        mainblk[i].n = rsize(&r);
        mainblk[i].p = malloc(mainblk[i].n);
        mainblk[i].seed = (uintptr_t)mainblk[i].p;
        bsl_fill(mainblk[i].p, mainblk[i].n, mainblk[i].seed);
    }
    int failed = 0, spawned = 0;
    for (int f = 0; f < nforks; f++) {
        /* replace a few parent blocks between forks */
        for (int k = 0; k < 4; k++) {
            int i = (int)bsl_rand_below(&r, NMAIN);
            CHECK(bsl_check(mainblk[i].p, mainblk[i].n, mainblk[i].seed) == (size_t)-1);
            free(mainblk[i].p);
            mainblk[i].n = rsize(&r);
            mainblk[i].p = malloc(mainblk[i].n);
            mainblk[i].seed = (uintptr_t)mainblk[i].p ^ (uint64_t)f;
            bsl_fill(mainblk[i].p, mainblk[i].n, mainblk[i].seed);
        }
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0)
            child(mainblk, f);
        int st = 0;
        CHECK(waitpid(pid, &st, 0) == pid);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            failed++;
            if (WIFSIGNALED(st))
                fprintf(stderr, "fork %d: child killed by signal %d%s\n", f, WTERMSIG(st),
                        WTERMSIG(st) == SIGALRM ? " (hung for 10 s: deadlock after fork?)" : "");
            else
                fprintf(stderr, "fork %d: child exited with status %d\n", f, WEXITSTATUS(st));
            if (failed >= 3)
                break;
        }
        /* posix_spawn (vfork-like clone) from the threaded program, now and then */
        if (f % 20 == 0) {
            char *args[] = {"/bin/true", NULL};
            pid_t sp;
            if (posix_spawn(&sp, "/bin/true", NULL, NULL, args, environ) == 0) {
                CHECK(waitpid(sp, &st, 0) == sp && WIFEXITED(st) && WEXITSTATUS(st) == 0);
                spawned++;
            }
        }
        if (bsl_now() - t0 > 9.0) {
            printf("stress_fork: time limit reached after %d forks\n", f + 1);
            nforks = f + 1;
            break;
        }
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < nworkers; i++)
        pthread_join(w[i], NULL);
    for (int i = 0; i < NMAIN; i++) {
        CHECK(bsl_check(mainblk[i].p, mainblk[i].n, mainblk[i].seed) == (size_t)-1);
        free(mainblk[i].p);
    }
    free(w);
    printf("stress_fork: %d forks (%d failed), %d spawns, %lu worker ops in %.2f s\n", nforks, failed, spawned,
           worker_ops, bsl_now() - t0);
    CHECKF(failed == 0, "%d children failed", failed);
    int tfailed = fork_during_tight_loops(500, 9.0);
    CHECKF(tfailed == 0, "%d children failed in phase 2", tfailed);
    return bsl_test_end();
}
