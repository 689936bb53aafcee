/* Shared set-up of the conformance programs (header only; see tests/README.md, "Conformance").
 *
 * Every program is built twice from the same source:
 *   - CONF_STATIC defined: linked with libbuddyslab.a ("static" mode), bsl_* called directly;
 *   - CONF_STATIC undefined: a plain dynamic program that knows nothing of buddyslab, run with
 *     LD_PRELOAD=libbuddyslab.so ("preload" mode); bsl_* functions are found with dlsym, and a
 *     program that does not find them (the preload is missing) fails.
 *
 * conf_begin(name, seconds):
 *   - stdin comes from /dev/null (meson hands the terminal's stdin down, and a test that reads or
 *     a child that waits on it must not hang a CI);
 *   - alarm(seconds): a run still going by then prints "HANG: <name>: ... (phase: <phase>)" and
 *     the phase of every named thread (conf_slot/conf_at), kills the children it knows of and exits
 *     with status 3, so a deadlock is a failure with a name, not a stuck test. Children inherit
 *     the handler; conf_child() arms their own alarm (alarms do not survive fork). Where SIGALRM
 *     is blocked, a watchdog process prints the same report 3 s later and SIGKILLs the program;
 *     meson's timeout is the last line of defence;
 *   - checks that malloc is buddyslab's (bsl_owns of a fresh block) and, with
 *     CONF_EXPECT_HARDENING=1, that the hardening options are in force (junk-filled new blocks).
 * conf_end() prints "<name>: PASS|FAIL: N checks (mode, BUDDYSLAB_OPTIONS)" and returns the
 * exit status. CHECK/CHECKF, the random numbers and the block patterns come from bsl_test.h. */
#ifndef CONF_H
#define CONF_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "bsl_test.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

#ifdef CONF_STATIC
#define CONF_MODE "static"
/* The archive is linked in: call the extension directly. */
#define CONF_BSL(fn) (fn)
#else
#define CONF_MODE "preload"
static inline void *conf_dlsym(const char *name)
{
    void *f = dlsym(RTLD_DEFAULT, name);
    if (!f) {
        fprintf(stderr, "conformance: %s not found (dlsym): buddyslab is not preloaded (LD_PRELOAD=%s)\n",
                name, getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : "");
        exit(1);
    }
    return f;
}
/* The preloaded library's function, looked up by name (resolve outside signal handlers). */
#define CONF_BSL(fn) ((__typeof__(&fn))conf_dlsym(#fn))
#endif

/* Watchdog state. It lives in a MAP_SHARED page so that the watchdog process (see below) can read
 * it: what the program is doing (conf_phase), what each named thread is doing (conf_at), and the
 * children to kill. Phases must be string literals (the watchdog process reads the pointers in its
 * own copy of the program image). */
#define CONF_MAX_KIDS 64
#define CONF_MAX_SLOTS 16
struct conf_shared {
    const char *volatile phase;
    const char *volatile slot_name[CONF_MAX_SLOTS];
    const char *volatile slot_phase[CONF_MAX_SLOTS];
    volatile int nslots;
    volatile pid_t kids[CONF_MAX_KIDS];
};
static struct conf_shared conf_private_state = {"start", {0}, {0}, 0, {0}};
static struct conf_shared *conf_sh = &conf_private_state;
/* What the program is doing now, named in the HANG message (assign a string literal). */
#define conf_phase (conf_sh->phase)
static const char *conf_name = "conformance";
static unsigned conf_alarm_s;
static int conf_err_fd = 2; /* a copy of the original stderr: still there when a test silences fd 2 */
static pid_t conf_watchdog_pid;

/* A named thread's own phase, printed with the HANG message: slot = conf_slot("forker"), then
 * conf_at(slot, "fork()") as it goes. */
static inline int conf_slot(const char *name)
{
    int i = __atomic_fetch_add(&conf_sh->nslots, 1, __ATOMIC_RELAXED);
    if (i >= CONF_MAX_SLOTS)
        return CONF_MAX_SLOTS - 1;
    conf_sh->slot_phase[i] = "started";
    conf_sh->slot_name[i] = name;
    return i;
}
static inline void conf_at(int slot, const char *phase) { conf_sh->slot_phase[slot] = phase; }

/* Children to kill when the watchdog fires (fork loops register the one they wait for). */
static inline void conf_track(pid_t pid)
{
    for (int i = 0; i < CONF_MAX_KIDS; i++)
        if (__sync_bool_compare_and_swap(&conf_sh->kids[i], 0, pid))
            return;
}

static inline void conf_untrack(pid_t pid)
{
    for (int i = 0; i < CONF_MAX_KIDS; i++)
        if (__sync_bool_compare_and_swap(&conf_sh->kids[i], pid, 0))
            return;
}

static inline void conf_write(const char *s)
{
    ssize_t r = write(conf_err_fd, s, strlen(s));
    (void)r;
}

static inline void conf_write_num(unsigned long v)
{
    char tmp[24], num[24];
    int n = 0;
    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) && n < 23);
    for (int i = 0; i < n; i++)
        num[i] = tmp[n - 1 - i];
    num[n] = 0;
    conf_write(num);
}

/* The HANG report (async-signal-safe): the program, the phase, every named thread's phase. */
static void conf_hang_report(unsigned seconds, const char *why)
{
    conf_write("HANG: ");
    conf_write(conf_name);
    conf_write(": still running after ");
    conf_write_num(seconds);
    conf_write(" s (phase: ");
    conf_write(conf_sh->phase ? conf_sh->phase : "?");
    conf_write(")");
    conf_write(why);
    conf_write("\n");
    int n = conf_sh->nslots < CONF_MAX_SLOTS ? conf_sh->nslots : CONF_MAX_SLOTS;
    for (int i = 0; i < n; i++) {
        conf_write("  thread ");
        conf_write(conf_sh->slot_name[i] ? conf_sh->slot_name[i] : "?");
        conf_write(": ");
        conf_write(conf_sh->slot_phase[i] ? conf_sh->slot_phase[i] : "?");
        conf_write("\n");
    }
    for (int i = 0; i < CONF_MAX_KIDS; i++)
        if (conf_sh->kids[i] > 0)
            kill(conf_sh->kids[i], SIGKILL);
}

static void conf_on_alarm(int sig)
{
    (void)sig;
    conf_hang_report(conf_alarm_s, "");
    _exit(3);
}

/* The backstop for a process that blocks SIGALRM where it hangs (the allocator blocks signals in
 * some sections, e.g. around the soft OOM handler): a watchdog process, started by conf_begin,
 * that wakes 3 s after the alarm was due, prints the same HANG report and kills the program with
 * SIGKILL. It goes away as soon as the program exits. */
static void __attribute__((noreturn)) conf_watchdog(pid_t target, unsigned seconds)
{
    for (unsigned long ms = 0; ms < (seconds + 3) * 1000UL; ms += 50) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (getppid() != target)
            _exit(0);
    }
    conf_hang_report(seconds + 3, " and SIGALRM could not be delivered (blocked): killed by the watchdog process");
    kill(target, SIGKILL);
    _exit(0);
}

/* In a child after fork(): its own watchdog state (a private copy, so that it does not disturb the
 * parent's), no children of the parent's to kill, its own alarm (alarms do not survive fork). */
static inline void conf_child(unsigned seconds)
{
    conf_private_state = *conf_sh;
    conf_sh = &conf_private_state;
    for (int i = 0; i < CONF_MAX_KIDS; i++)
        conf_sh->kids[i] = 0;
    conf_watchdog_pid = 0;
    conf_alarm_s = seconds;
    alarm(seconds);
}

/* waitpid that survives signals; the child must exit with `want`. Returns 1 when it did. */
static inline int conf_wait_status(pid_t pid, int want, const char *what)
{
    int st = 0;
    pid_t r;
    do
        r = waitpid(pid, &st, 0);
    while (r < 0 && errno == EINTR);
    conf_untrack(pid);
    if (r != pid) {
        fprintf(stderr, "%s: waitpid(%d) failed: %s\n", what, (int)pid, strerror(errno));
        return 0;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == want)
        return 1;
    if (WIFSIGNALED(st))
        fprintf(stderr, "%s: child %d killed by signal %d (%s)\n", what, (int)pid, WTERMSIG(st),
                strsignal(WTERMSIG(st)));
    else
        fprintf(stderr, "%s: child %d exited with %d, want %d\n", what, (int)pid, WEXITSTATUS(st), want);
    return 0;
}

static inline void conf_stdin_devnull(void)
{
    int fd = open("/dev/null", O_RDONLY);
    if (fd < 0) {
        perror("open /dev/null");
        exit(1);
    }
    if (fd != 0) {
        dup2(fd, 0);
        close(fd);
    }
    struct stat a, b;
    CHECK(fstat(0, &a) == 0 && stat("/dev/null", &b) == 0 && a.st_rdev == b.st_rdev && S_ISCHR(a.st_mode));
}

static inline void conf_begin(const char *name, unsigned alarm_seconds)
{
    conf_name = name;
    bsl_test_name = name;
    setvbuf(stdout, NULL, _IOLBF, 0);
    conf_stdin_devnull();
    int fd = fcntl(2, F_DUPFD_CLOEXEC, 10);
    if (fd >= 0)
        conf_err_fd = fd;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = conf_on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    struct conf_shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh != MAP_FAILED) {
        *sh = *conf_sh;
        conf_sh = sh;
        pid_t self = getpid();
        fflush(NULL);
        pid_t w = fork();
        if (w == 0)
            conf_watchdog(self, alarm_seconds);
        if (w > 0)
            conf_watchdog_pid = w;
    }
    conf_alarm_s = alarm_seconds;
    alarm(alarm_seconds);

    /* The malloc under test must be buddyslab's. */
    void *volatile p = malloc(24);
    int owned = p ? CONF_BSL(bsl_owns)(p) : -1;
    CHECKF(owned == 1, "malloc(24)=%p is not a buddyslab block (bsl_owns=%d, mode %s, LD_PRELOAD=%s)", (void *)p,
           owned, CONF_MODE, getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : "");
    free(p);
#ifndef CONF_STATIC
    const char *pre = getenv("LD_PRELOAD");
    CHECKF(pre && strstr(pre, "libbuddyslab"), "preload mode without libbuddyslab in LD_PRELOAD (%s)", pre ? pre : "");
#endif
    const char *h = getenv("CONF_EXPECT_HARDENING");
    if (h && *h == '1') {
        /* junk=1: a new block is filled with 0xa5 (and so the other options were read too). */
        unsigned char *q = malloc(200);
        CHECK(q != NULL);
        int junk = 1;
        for (int i = 0; q && i < 200; i++)
            junk &= q[i] == 0xa5;
        CHECKF(junk, "CONF_EXPECT_HARDENING=1 but a new block is not junk-filled (BUDDYSLAB_OPTIONS=%s)",
               getenv("BUDDYSLAB_OPTIONS") ? getenv("BUDDYSLAB_OPTIONS") : "");
        free(q);
    }
}

static inline int conf_end(void)
{
    alarm(0);
    if (conf_watchdog_pid > 0) {
        kill(conf_watchdog_pid, SIGKILL);
        waitpid(conf_watchdog_pid, NULL, 0);
        conf_watchdog_pid = 0;
    }
    unsigned long n = __atomic_load_n(&bsl_test_nchecks, __ATOMIC_RELAXED);
    unsigned long f = __atomic_load_n(&bsl_test_nfailed, __ATOMIC_RELAXED);
    printf("%s: %s: %lu checks, %lu failed (mode %s, BUDDYSLAB_OPTIONS=%s)\n", conf_name, f ? "FAIL" : "PASS", n, f,
           CONF_MODE, getenv("BUDDYSLAB_OPTIONS") ? getenv("BUDDYSLAB_OPTIONS") : "");
    fflush(stdout);
    return f ? 1 : 0;
}

/* The compiler must not fold allocation calls on constant arguments, nor drop unused results. */
static inline void *conf_launder(void *p)
{
    __asm__ volatile("" : "+r"(p));
    return p;
}
static inline size_t conf_size(size_t n)
{
    __asm__ volatile("" : "+r"(n));
    return n;
}

#endif
