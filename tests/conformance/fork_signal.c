/* fork() from a signal handler that interrupts malloc, free and fork (the scenarios of glibc
 * malloc/tst-mallocfork, tst-mallocfork2 and tst-mallocfork3, glibc bug 24161).
 *
 * The main thread loops: free a random slot of 257 and malloc a new block of up to 70,000 bytes
 * there (patterned and checked), and one time in seven fork() first (the child _exits 0). SIGUSR1
 * arrives all the time, from two sources: three helper processes that kill(parent, SIGUSR1) once
 * per main-loop iteration each, at a random moment, and a POSIX interval timer (5 ms). The handler
 * forks; its child _exits 0 and the handler waits for it. So signals land inside malloc, inside free and inside fork itself, and the fork in
 * the handler must neither deadlock on a lock the interrupted call holds nor on the fork handlers'
 * own locks.
 *
 * mode "single" (tst-mallocfork2): the process has only the main thread; the handler calls fork().
 * mode "threaded" (tst-mallocfork3): a second thread allocates and frees all along; the handler
 * calls _Fork() (fork() from a signal handler is async-signal-safe only single-threaded; _Fork is
 * the multithreaded variant), the main loop still calls fork().
 * Runs for [seconds] (default 2), counts the signals that landed in each call, and needs signals
 * to have landed at all. A deadlock is caught by the watchdog (HANG).
 * usage: fork_signal single|threaded [seconds] */
#include "conf.h"

#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <time.h>

enum { NOBJ = 257, MAXSZ = 70000, NSENDERS = 3 };

static volatile sig_atomic_t got_signal, handler_error;
static volatile sig_atomic_t handler_forks;
static int threaded;
static pid_t senders[NSENDERS];
static volatile int stop;

static void on_usr1(int sig)
{
    (void)sig;
    int saved = errno;
    got_signal = 1;
    pid_t pid = threaded ? _Fork() : fork();
    if (pid < 0) {
        conf_write("fork_signal: fork in the signal handler failed\n");
        handler_error = 1;
        errno = saved;
        return;
    }
    if (pid == 0)
        _exit(0);
    int st;
    pid_t r;
    do
        r = waitpid(pid, &st, 0);
    while (r < 0 && errno == EINTR);
    if (r != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        conf_write("fork_signal: the signal handler's child did not exit with 0\n");
        handler_error = 1;
    }
    handler_forks++;
    errno = saved;
}

/* Shared with the sender processes: the main loop's iteration number. A sender signals at most
 * once per iteration (after a random delay of up to 300 us), like the barrier of tst-mallocfork2,
 * so that the handler's forks cannot starve the main loop. */
static volatile unsigned long *shared_iter;

static void __attribute__((noreturn)) sender(pid_t target, unsigned seed)
{
    unsigned long last = (unsigned long)-1;
    for (;;) {
        unsigned long cur = *shared_iter;
        if (cur == last) {
            usleep(20);
            if (getppid() != target)
                _exit(0); /* the parent is gone */
            continue;
        }
        last = cur;
        seed = seed * 1103515245u + 12345u;
        usleep((seed >> 16) % 300);
        if (kill(target, SIGUSR1) != 0)
            _exit(0);
    }
}

static void *second_thread(void *arg)
{
    (void)arg;
    int me = conf_slot("second thread");
    conf_at(me, "malloc/free");
    bsl_rng r;
    bsl_rng_seed(&r, 99);
    void *slot[256] = {0};
    /* signals are for the main thread */
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        int i = (int)bsl_rand_below(&r, 256);
        free(slot[i]);
        slot[i] = malloc(bsl_rand_below(&r, MAXSZ));
        CHECK(slot[i] != NULL);
    }
    for (int i = 0; i < 256; i++)
        free(slot[i]);
    conf_at(me, "done");
    return NULL;
}

int main(int argc, char **argv)
{
    threaded = argc > 1 && !strcmp(argv[1], "threaded");
    conf_begin(threaded ? "fork_signal threaded" : "fork_signal single", 20);
    double secs = argc > 2 ? atof(argv[2]) : 2.0;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);

    pthread_t th;
    if (threaded)
        CHECK(pthread_create(&th, NULL, second_thread, NULL) == 0);

    shared_iter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(shared_iter != MAP_FAILED);
    pid_t self = getpid();
    conf_phase = "fork() of the signal senders (their signals may already arrive)";
    for (int i = 0; i < NSENDERS; i++) {
        senders[i] = fork();
        CHECK(senders[i] >= 0);
        if (senders[i] == 0) {
            conf_child(60);
            sender(self, (unsigned)i * 7919u + 1);
        }
        conf_track(senders[i]);
    }
    conf_phase = "starting the timer";
    timer_t timer;
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGUSR1;
    CHECK(timer_create(CLOCK_MONOTONIC, &sev, &timer) == 0);
    struct itimerspec its = {{0, 5000000}, {0, 5000000}};
    CHECK(timer_settime(timer, 0, &its, NULL) == 0);

    static unsigned char *obj[NOBJ];
    static size_t objsz[NOBJ];
    bsl_rng r;
    bsl_rng_seed(&r, 1);
    unsigned long iters = 0, in_fork = 0, in_free = 0, in_malloc = 0, forks = 0;
    double t0 = bsl_now();
    /* The time given, and on a loaded machine longer (up to 10 s) until some signal has landed
     * inside fork, free or malloc, which is the point of the test. */
    while ((bsl_now() - t0 < secs || (in_fork + in_free + in_malloc == 0 && bsl_now() - t0 < 10)) &&
           !handler_error) {
        int slot = (int)bsl_rand_below(&r, NOBJ);
        size_t size = bsl_rand_below(&r, MAXSZ);
        if (bsl_rand_below(&r, 7) == 0) {
            conf_phase = "fork() in the main loop (a signal handler may fork inside it)";
            got_signal = 0;
            pid_t pid = fork();
            if (got_signal)
                in_fork++;
            if (pid == 0)
                _exit(0);
            CHECK(pid > 0);
            conf_track(pid);
            conf_phase = "waitpid() in the main loop";
            CHECK(conf_wait_status(pid, 0, "main loop fork child"));
            forks++;
        }
        conf_phase = "free() interrupted by a forking signal handler";
        if (obj[slot])
            CHECKF(bsl_check(obj[slot], objsz[slot], (uint64_t)(uintptr_t)obj[slot]) == (size_t)-1,
                   "a block of %zu bytes changed", objsz[slot]);
        got_signal = 0;
        free(obj[slot]);
        if (got_signal)
            in_free++;
        conf_phase = "malloc() interrupted by a forking signal handler";
        got_signal = 0;
        obj[slot] = malloc(size);
        if (got_signal)
            in_malloc++;
        CHECKF(obj[slot] != NULL || size == 0, "malloc(%zu) failed", size);
        objsz[slot] = size;
        if (obj[slot])
            bsl_fill(obj[slot], size, (uint64_t)(uintptr_t)obj[slot]);
        iters++;
        *shared_iter = iters;
    }
    conf_phase = "stopping the signal sources";
    its = (struct itimerspec){{0, 0}, {0, 0}};
    timer_settime(timer, 0, &its, NULL);
    timer_delete(timer);
    for (int i = 0; i < NSENDERS; i++) {
        kill(senders[i], SIGKILL);
        waitpid(senders[i], NULL, 0);
        conf_untrack(senders[i]);
    }
    signal(SIGUSR1, SIG_IGN);
    if (threaded) {
        __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
        pthread_join(th, NULL);
    }
    for (int i = 0; i < NOBJ; i++)
        free(obj[i]);
    printf("%s: %lu iterations, %lu forks in the loop, %d forks in the handler; signals landed in fork %lu, free %lu, "
           "malloc %lu\n", conf_name, iters, forks, (int)handler_forks, in_fork, in_free, in_malloc);
    CHECKF(!handler_error, "the signal handler's fork failed");
    CHECKF(handler_forks > 20, "only %d signals handled", (int)handler_forks);
    CHECKF(in_fork + in_free + in_malloc > 0, "no signal landed inside fork, free or malloc");
    return conf_end();
}
