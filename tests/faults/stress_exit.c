/* exit() while other threads still allocate. Each round starts a child (fresh: posix_spawn of this
 * program, with the round's BUDDYSLAB_OPTIONS; or inherited: fork() of the already initialised
 * parent) that starts worker threads allocating, reallocating and freeing with checked patterns
 * (some also create short-lived threads of their own, trim, or map huge blocks), and after a
 * random 0..8 ms one of them ends the process while the others run on: exit(0) from main, exit(0)
 * from a worker, or a return from main. The child must end with status 0: no crash in the
 * allocator's exit-time work (destructors, the stats report with stats=1, the quarantine) racing
 * with the workers, no hang (an alarm in the child turns a hang into SIGALRM), no corrupted block
 * (status 3).
 * usage: stress_exit [rounds=60] [threads=4]
 *        stress_exit child MODE SEED THREADS   (what each round runs) */
#include "bsl_test.h"

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

extern char **environ;

enum mode { M_EXIT_MAIN, M_EXIT_WORKER, M_RETURN_MAIN, NR_MODES };
static const char *mode_name[NR_MODES] = {"exit-main", "exit-worker", "return-main"};

static int child_mode;
static uint64_t child_seed;
static volatile int go_exit; /* a worker must call exit(0) */
static volatile unsigned long child_ops;

static void corrupted(const void *p, size_t n, size_t off)
{
    dprintf(2, "stress_exit child %d: block %p (%zu bytes) corrupted at byte %zu\n", (int)getpid(), p, n, off);
    _exit(3);
}

static void *short_thread(void *arg)
{
    size_t n = (size_t)(uintptr_t)arg;
    unsigned char *p = malloc(n);
    if (p) {
        bsl_fill(p, n, n);
        size_t off = bsl_check(p, n, n);
        if (off != (size_t)-1)
            corrupted(p, n, off);
        free(p);
    }
    return NULL;
}

static void *worker(void *arg)
{
    long id = (long)arg;
    bsl_rng r;
    bsl_rng_seed(&r, child_seed * 131 + (uint64_t)id);
    enum { S = 128 };
    struct {
        unsigned char *p;
        size_t n;
        uint64_t seed;
    } b[S] = {{0}};
    for (unsigned long ops = 0;; ops++) {
        if (id == 0 && go_exit)
            exit(0); /* this worker ends the process while the others allocate */
        unsigned s = (unsigned)bsl_rand_below(&r, S);
        uint64_t x = bsl_rand(&r);
        if (b[s].p) {
            size_t off = bsl_check(b[s].p, b[s].n, b[s].seed);
            if (off != (size_t)-1)
                corrupted(b[s].p, b[s].n, off);
            if (x % 5 == 0) {
                size_t m = 1 + (x >> 8) % 3000;
                unsigned char *q = realloc(b[s].p, m);
                if (!q)
                    _exit(4);
                size_t keep = m < b[s].n ? m : b[s].n;
                off = bsl_check(q, keep, b[s].seed);
                if (off != (size_t)-1)
                    corrupted(q, keep, off);
                b[s].p = q;
                b[s].n = m;
                bsl_fill(q, m, b[s].seed);
            } else {
                free(b[s].p);
                b[s].p = NULL;
            }
        } else {
            size_t n = x % 300 == 0 ? 4 * MiB + (x >> 8) % MiB : x % 20 == 0 ? 40 * KiB + (x >> 8) % (100 * KiB)
                                                                            : 1 + (x >> 8) % 2000;
            b[s].p = (x & 7) == 0 ? calloc(1, n) : malloc(n);
            if (!b[s].p)
                _exit(4);
            b[s].n = n;
            b[s].seed = x;
            bsl_fill(b[s].p, n, x);
        }
        if (x % 997 == 0) { /* thread churn while the process exits */
            pthread_t t;
            if (pthread_create(&t, NULL, short_thread, (void *)(uintptr_t)(1 + x % 5000)) == 0)
                pthread_detach(t);
        }
        if (x % 4001 == 0)
            malloc_trim(0);
        __atomic_fetch_add(&child_ops, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static int child_main(int mode, uint64_t seed, int nthreads)
{
    alarm(20); /* a hang in exit becomes SIGALRM, which the parent reports */
    child_mode = mode;
    child_seed = seed;
    pthread_t t;
    for (long i = 0; i < nthreads; i++)
        if (pthread_create(&t, NULL, worker, (void *)i) != 0)
            _exit(5);
    /* let them get going, then end the process in the middle of their work */
    while (__atomic_load_n(&child_ops, __ATOMIC_RELAXED) < 200)
        sched_yield();
    usleep((useconds_t)(seed % 8000));
    switch (mode) {
    case M_EXIT_MAIN:
        exit(0);
    case M_EXIT_WORKER:
        go_exit = 1;
        for (;;)
            pause();
    default:
        return 0; /* return from main: exit(0) through libc's start code */
    }
}

/* ---- parent ---- */
static const char *round_options(int round)
{
    static const char *opts[] = {"", "rseq=0", "stats=1", "junk=1,quarantine=1M", "canary=1,guard=1", "decay_ms=0",
                                 "background_thread=1,decay_ms=1"};
    return opts[round % (sizeof(opts) / sizeof(opts[0]))];
}

static int wait_child(pid_t pid, int round, const char *how, const char *opts)
{
    int st;
    if (waitpid(pid, &st, 0) != pid) {
        perror("waitpid");
        return 0;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 1;
    if (WIFEXITED(st))
        fprintf(stderr, "round %d (%s, BUDDYSLAB_OPTIONS=%s): child exited with status %d\n", round, how, opts,
                WEXITSTATUS(st));
    else
        fprintf(stderr, "round %d (%s, BUDDYSLAB_OPTIONS=%s): child killed by signal %d (%s)%s\n", round, how, opts,
                WTERMSIG(st), strsignal(WTERMSIG(st)), WTERMSIG(st) == SIGALRM ? ": it hung" : "");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && !strcmp(argv[1], "child")) {
        int mode = atoi(argv[2]);
        return child_main(mode, strtoull(argv[3], NULL, 10), atoi(argv[4]));
    }
    int rounds = argc > 1 ? atoi(argv[1]) : 60;
    int nthreads = argc > 2 ? atoi(argv[2]) : 4;
    bsl_test_begin("stress_exit");
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
    CHECK(len > 0);
    self[len > 0 ? len : 0] = 0;

    int ok = 0, spawned = 0, forked = 0;
    double t0 = bsl_now();
    for (int round = 0; round < rounds; round++) {
        int mode = round % NR_MODES;
        uint64_t seed = bsl_mix64((uint64_t)round) % 1000000;
        if (round % 4 == 3) {
            /* fork without exec: the child inherits the parent's initialised allocator */
            pid_t pid = fork();
            CHECK(pid >= 0);
            if (pid == 0)
                _exit(child_main(mode == M_RETURN_MAIN ? M_EXIT_MAIN : mode, seed, nthreads));
            forked++;
            char how[64];
            snprintf(how, sizeof(how), "fork, %s", mode_name[mode == M_RETURN_MAIN ? M_EXIT_MAIN : mode]);
            ok += wait_child(pid, round, how, "(inherited)");
            continue;
        }
        const char *opts = round_options(round);
        /* environment: ours with BUDDYSLAB_OPTIONS replaced */
        static char optvar[256];
        snprintf(optvar, sizeof(optvar), "BUDDYSLAB_OPTIONS=%s", opts);
        char *envp[512];
        int ne = 0;
        for (char **e = environ; *e && ne < 500; e++)
            if (strncmp(*e, "BUDDYSLAB_OPTIONS=", 18) != 0)
                envp[ne++] = *e;
        envp[ne++] = optvar;
        envp[ne] = NULL;
        char a2[16], a3[32], a4[16];
        snprintf(a2, sizeof(a2), "%d", mode);
        snprintf(a3, sizeof(a3), "%llu", (unsigned long long)seed);
        snprintf(a4, sizeof(a4), "%d", nthreads);
        char *args[] = {self, "child", a2, a3, a4, NULL};
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        if (strstr(opts, "stats=1")) /* the report is long: keep the test log readable */
            posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        pid_t pid;
        int rc = posix_spawn(&pid, self, &fa, NULL, args, envp);
        posix_spawn_file_actions_destroy(&fa);
        CHECKF(rc == 0, "posix_spawn: %s", strerror(rc));
        if (rc)
            continue;
        spawned++;
        ok += wait_child(pid, round, mode_name[mode], opts);
    }
    CHECKF(ok == rounds, "%d of %d children did not exit cleanly with status 0", rounds - ok, rounds);
    printf("stress_exit: %d rounds (%d spawned, %d forked), %d threads each, all exited with 0 (%.1f s)\n", rounds,
           spawned, forked, nthreads, bsl_now() - t0);
    return bsl_test_end();
}
