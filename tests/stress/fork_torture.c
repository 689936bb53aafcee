/* Fork torture: every way a threaded program forks around the allocator, at once, for a time.
 *
 *  - stdio threads: fflush(NULL), getline() on a pipe fed by another thread, fopen/fprintf/fclose
 *    of a temporary file (glibc's tst-malloc-fork-deadlock cycle: the stdio list lock, a FILE
 *    lock and the allocator's locks);
 *  - allocating threads: small, large and huge blocks with checked patterns, a share of them
 *    freed by another thread;
 *  - a forking thread: fork() in a loop; each child checks blocks it inherited, allocates in every
 *    size range, starts a thread that does the same, and exits 0;
 *  - a signalling thread: pthread_kill(SIGUSR1) at the allocating threads, one signal in flight at
 *    a time, whose handler forks (the child _exits at once: after a fork from a signal handler in a
 *    threaded process only async-signal-safe calls are allowed);
 *  - posix_spawn of /bin/true and vfork + _exit.
 * The forking thread and the signal-forks take turns (phases of about 20 ms), and the stdio
 * threads pause during the signal phases. glibc's fork() is async-signal-safe only in a
 * single-threaded process: it holds its own atfork lock across fork(), and it takes the stdio list
 * lock. So a handler forking on a thread interrupted while it holds an allocator lock deadlocks in
 * glibc whatever the allocator does, if another thread is inside fork() waiting for that lock, or
 * if a thread in fflush(NULL) holds the list lock and waits for a FILE whose holder waits in malloc
 * for that lock (glibc's own malloc deadlocks in both). The signalled threads never call fork()
 * themselves, for the same reason.
 * Every child is waited for; any child not exiting 0 fails the run. A hang is caught by alarm(),
 * set to the run time plus a margin: it prints HANG and exits 3.
 * usage: fork_torture [seconds=5] [allocating threads=3] [signal-forks: 1, or 0 to compare with an
 * allocator whose fork is not async-signal-safe in a threaded process, like glibc's] */
#include "bsl_test.h"

#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define NSLOT 256

extern char **environ;

static volatile int stop;
static volatile int sig_phase;                /* 1: the signaller may send; 0: the main thread forks */
static volatile int sig_idle = 1;             /* the signaller has seen sig_phase == 0, nothing in flight */
static volatile unsigned long n_sent, n_handled;
static unsigned long n_fork, n_sigfork, n_spawn, n_vfork, n_stdio, n_ops;
static int pipefd[2];
static volatile int reader_done; /* the feeder writes until the reader has stopped reading */
static volatile int stdio_pause;  /* the stdio threads stop between calls (signal phases) */
static volatile int stdio_paused; /* ... and how many have */

/* A stdio thread between two calls: wait while a signal phase runs. */
static void stdio_break(void)
{
    if (!stdio_pause)
        return;
    BSL_ATOMIC_ADD(&stdio_paused, 1);
    while (stdio_pause && !stop)
        usleep(200);
    BSL_ATOMIC_ADD(&stdio_paused, -1);
}

struct slot {
    unsigned char *p;
    size_t n;
    unsigned char v;
};

static size_t pick_size(bsl_rng *r)
{
    uint64_t x = bsl_rand(r);
    if (x % 97 == 0)
        return 40 * KiB + (x >> 8) % (2 * MiB);
    if (x % 4001 == 1)
        return 5 * MiB + (x >> 8) % (3 * MiB);
    return 1 + (x >> 8) % 3000;
}

static void fill(struct slot *s, size_t n, unsigned char v)
{
    s->p = malloc(n);
    CHECK(s->p != NULL);
    s->n = n;
    s->v = v;
    memset(s->p, v, n < 4096 ? n : 4096);
}

static int intact(const struct slot *s)
{
    size_t n = s->n < 4096 ? s->n : 4096;
    for (size_t i = 0; i < n; i++)
        if (s->p[i] != s->v)
            return 0;
    return 1;
}

/* Allocate, check, free in every size range: the child's proof that the allocator works. */
static int churn(unsigned seed, int rounds)
{
    bsl_rng r = {seed * 2654435761u + 1};
    struct slot s[64] = {{0}};
    for (int i = 0; i < rounds; i++) {
        struct slot *x = &s[bsl_rand(&r) % 64];
        if (x->p) {
            if (!intact(x))
                return 0;
            free(x->p);
        }
        x->p = malloc(x->n = pick_size(&r));
        if (!x->p)
            return 0;
        x->v = (unsigned char)i;
        memset(x->p, x->v, x->n < 4096 ? x->n : 4096);
    }
    for (int i = 0; i < 64; i++)
        if (s[i].p) {
            if (!intact(&s[i]))
                return 0;
            free(s[i].p);
        }
    return 1;
}

static void *child_thread(void *arg) { return (void *)(intptr_t)churn((unsigned)(uintptr_t)arg, 300); }

/* The SIGUSR1 handler: fork; the child exits at once (async-signal-safe only), the parent reaps. */
static void on_usr1(int sig)
{
    (void)sig;
    int e = errno;
    pid_t p = fork();
    if (p == 0)
        _exit(0);
    if (p > 0) {
        int st;
        while (waitpid(p, &st, 0) < 0 && errno == EINTR)
            ;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            static const char m[] = "signal-fork child failed\n";
            write(2, m, sizeof(m) - 1);
            _exit(1);
        }
        BSL_ATOMIC_ADD(&n_sigfork, 1);
    }
    BSL_ATOMIC_ADD(&n_handled, 1);
    errno = e;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char m[] = "HANG: fork_torture made no progress before its alarm\n";
    write(2, m, sizeof(m) - 1);
    _exit(3);
}

static void *allocator(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    bsl_rng r = {id * 7919u + 17};
    static struct slot shared[NSLOT]; /* freed by whichever allocator thread comes next */
    static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
    struct slot mine[NSLOT] = {{0}};
    while (!stop) {
        for (int k = 0; k < 64; k++) {
            struct slot *x = &mine[bsl_rand(&r) % NSLOT];
            if (x->p) {
                CHECK(intact(x));
                free(x->p);
            }
            fill(x, pick_size(&r), (unsigned char)bsl_rand(&r));
        }
        unsigned i = (unsigned)(bsl_rand(&r) % NSLOT);
        struct slot give;
        fill(&give, pick_size(&r), (unsigned char)i);
        pthread_mutex_lock(&shared_lock);
        struct slot old = shared[i];
        shared[i] = give;
        pthread_mutex_unlock(&shared_lock);
        if (old.p) {
            CHECK(intact(&old));
            free(old.p);
        }
        BSL_ATOMIC_ADD(&n_ops, 65);
    }
    for (int i = 0; i < NSLOT; i++)
        free(mine[i].p);
    return NULL;
}

static void *flusher(void *arg)
{
    (void)arg;
    while (!stop) {
        stdio_break();
        fflush(NULL);
        BSL_ATOMIC_ADD(&n_stdio, 1);
    }
    return NULL;
}

static void *feeder(void *arg)
{
    (void)arg;
    static const char line[] = "a line of text for getline, long enough to need a buffer of its own\n";
    /* Until the reader is done: a getline() blocked in read() holds its FILE's lock, which
     * fflush(NULL) waits for. */
    while (!reader_done)
        if (write(pipefd[1], line, sizeof(line) - 1) < 0) {
            if (errno != EAGAIN)
                break;
            usleep(100);
        }
    return NULL;
}

static void *reader(void *arg)
{
    (void)arg;
    FILE *in = fdopen(pipefd[0], "r");
    CHECK(in != NULL);
    char *buf = NULL;
    size_t cap = 0;
    while (!stop && (stdio_break(), getline(&buf, &cap, in) > 0)) {
        free(buf); /* a fresh buffer each time: getline allocates while holding the FILE lock */
        buf = NULL;
        cap = 0;
        BSL_ATOMIC_ADD(&n_stdio, 1);
    }
    free(buf);
    reader_done = 1;
    return NULL;
}

static void *filer(void *arg)
{
    (void)arg;
    char path[] = "/tmp/bsl-fork-torture-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    while (!stop) {
        stdio_break();
        FILE *f = fopen(path, "w");
        CHECK(f != NULL);
        for (int i = 0; i < 50; i++)
            fprintf(f, "%d %s\n", i, path);
        fclose(f);
        BSL_ATOMIC_ADD(&n_stdio, 1);
    }
    unlink(path);
    return NULL;
}

/* vfork() in a frame of its own: the child only calls _exit, so no caller variable is at risk. */
static __attribute__((noinline)) pid_t vfork_exit(void)
{
    pid_t p = vfork();
    if (p == 0)
        _exit(0);
    return p;
}

struct forker_arg {
    pthread_t *targets;
    int ntargets;
};

static void *signaller(void *arg)
{
    struct forker_arg *a = arg;
    bsl_rng r = {99};
    while (!stop) {
        if (!sig_phase) {
            sig_idle = 1;
            usleep(500);
            continue;
        }
        sig_idle = 0;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (!sig_phase)
            continue;
        n_sent++;
        pthread_kill(a->targets[bsl_rand(&r) % (unsigned)a->ntargets], SIGUSR1);
        while (__atomic_load_n(&n_handled, __ATOMIC_ACQUIRE) < n_sent) /* one signal in flight */
            usleep(100);
    }
    sig_idle = 1;
    return NULL;
}

static void reap(pid_t p, const char *what)
{
    int st;
    CHECK(p > 0);
    while (waitpid(p, &st, 0) < 0)
        CHECK(errno == EINTR);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s child: status 0x%x", what, st);
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 5;
    int nalloc = argc > 2 ? atoi(argv[2]) : 3;
    int sigforks = argc > 3 ? atoi(argv[3]) : 1;
    if (nalloc < 1)
        nalloc = 1;
    signal(SIGALRM, on_alarm);
    alarm((unsigned)secs + 60);
    struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    CHECK(pipe(pipefd) == 0);
    CHECK(fcntl(pipefd[1], F_SETFL, O_NONBLOCK) == 0);

    /* Blocks the children check: allocated before any thread exists. */
    struct slot inherited[32];
    bsl_rng r0 = {5};
    for (int i = 0; i < 32; i++)
        fill(&inherited[i], pick_size(&r0), (unsigned char)(i + 1));

    pthread_t alloc_t[16], stdio_t[4], sig_t;
    if (nalloc > 16)
        nalloc = 16;
    for (int i = 0; i < nalloc; i++)
        CHECK(pthread_create(&alloc_t[i], NULL, allocator, (void *)(uintptr_t)(i + 1)) == 0);
    CHECK(pthread_create(&stdio_t[0], NULL, flusher, NULL) == 0);
    CHECK(pthread_create(&stdio_t[1], NULL, feeder, NULL) == 0);
    CHECK(pthread_create(&stdio_t[2], NULL, reader, NULL) == 0);
    CHECK(pthread_create(&stdio_t[3], NULL, filer, NULL) == 0);
    struct forker_arg fa = {alloc_t, nalloc};
    CHECK(pthread_create(&sig_t, NULL, signaller, &fa) == 0);

    /* The main thread is the forking thread (SIGUSR1 is only ever sent to the allocating ones). */
    double end = bsl_now() + secs;
    unsigned seed = 1;
    while (bsl_now() < end) {
        if (seed % 16 == 1) { /* a signal phase (the first iteration has one): handlers fork, this
                               * thread spawns, for 20 ms and until a signal has been handled (a
                               * loaded machine may not run the signaller at once), 2 s at most */
            stdio_pause = sigforks;
            while (sigforks && stdio_paused < 3) /* flusher, reader, filer */
                usleep(100);
            sig_phase = sigforks;
            unsigned long handled0 = n_handled;
            double start = bsl_now();
            while (bsl_now() < start + 0.02 || (sigforks && n_handled == handled0 && bsl_now() < start + 2)) {
                char *args[] = {"/bin/true", NULL};
                pid_t sp;
                CHECK(posix_spawn(&sp, "/bin/true", NULL, NULL, args, environ) == 0);
                reap(sp, "posix_spawn");
                n_spawn++;
                reap(vfork_exit(), "vfork");
                n_vfork++;
            }
            sig_phase = 0;
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
            while (!sig_idle)
                usleep(100);
            stdio_pause = 0;
        }
        pid_t p = fork();
        if (p == 0) {
            alarm(30);
            for (int i = 0; i < 32; i++)
                if (!intact(&inherited[i]))
                    _exit(10);
            for (int i = 0; i < 32; i += 2)
                free(inherited[i].p);
            if (!churn(seed, 500))
                _exit(11);
            pthread_t t;
            void *ok = NULL;
            if (pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)seed) != 0 || pthread_join(t, &ok) != 0 ||
                !ok)
                _exit(12);
            _exit(0);
        }
        reap(p, "fork");
        n_fork++;
        seed++;
    }
    stop = 1;
    pthread_join(sig_t, NULL);
    for (int i = 0; i < nalloc; i++)
        pthread_join(alloc_t[i], NULL);
    pthread_join(stdio_t[0], NULL);
    pthread_join(stdio_t[2], NULL);
    pthread_join(stdio_t[1], NULL);
    pthread_join(stdio_t[3], NULL);
    for (int i = 0; i < 32; i++) {
        CHECK(intact(&inherited[i]));
        free(inherited[i].p);
    }
    printf("fork_torture: %.0f s, %lu forks, %lu forks from signal handlers, %lu posix_spawn, %lu vfork, "
           "%lu stdio calls, %lu allocations\n",
           secs, n_fork, n_sigfork, n_spawn, n_vfork, n_stdio, n_ops);
    CHECK(n_fork > 0 && (n_sigfork > 0 || !sigforks) && n_stdio > 0);
    return 0;
}
