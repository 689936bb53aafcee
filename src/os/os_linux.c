/* Linux implementation of the platform layer.
 *
 * Cancellation: glibc's write, open, read, close and nanosleep are cancellation points. Everything
 * here goes through syscall() instead, which never acts on a cancellation request: a report or
 * malloc_stats() is never cut short by pthread_cancel (glibc bug 22830's scenario), and no lock is
 * left held by a thread cancelled inside the allocator. */
#include "os/os.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0x4000
#endif
#ifndef AT_RSEQ_FEATURE_SIZE
#define AT_RSEQ_FEATURE_SIZE 27
#endif

extern char **environ;
/* Exported by glibc 2.35+; weak so that we still link (and take the fallback) without them. */
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));

/* One anonymous private mapping; NULL on failure. `noreserve`: address space only, not charged. */
static void *map_anon(size_t size, int prot, int noreserve, int extra)
{
    void *p = mmap(NULL, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | (noreserve ? MAP_NORESERVE : 0) | extra, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* The extra mmap flag for `low32` (MAP_32BIT), or -1 where there is none. */
static int low32_flag(int low32)
{
#ifdef MAP_32BIT
    return low32 ? MAP_32BIT : 0;
#else
    return low32 ? -1 : 0;
#endif
}

/* [p, p + size + align), over-reserved: keep the aligned [base, base + size), unmap the rest. */
static void *trim_to_align(void *p, size_t size, size_t align)
{
    uintptr_t base = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
    if (base > (uintptr_t)p)
        munmap(p, base - (uintptr_t)p);
    uintptr_t end = (uintptr_t)p + size + align;
    if (end > base + size)
        munmap((void *)(base + size), end - (base + size));
    return (void *)base;
}

/* A mapping of `size` bytes aligned to `align`: tried as is, else over-reserved with `over_prot`
 * and trimmed, then given PROT_READ|PROT_WRITE if it was not (mprotect charges it then). A low32
 * mapping that ended above 4 GiB is dropped. */
static void *map_aligned(size_t size, size_t align, int low32, int noreserve, int over_prot)
{
    int saved = errno;
    int extra = low32_flag(low32);
    if (extra < 0)
        return NULL;
    void *p = map_anon(size, PROT_READ | PROT_WRITE, noreserve, extra);
    if (!p || ((uintptr_t)p & (align - 1)) == 0)
        goto out;
    munmap(p, size);
    p = map_anon(size + align, over_prot, noreserve, extra);
    if (!p)
        goto out;
    p = trim_to_align(p, size, align);
    if (over_prot != (PROT_READ | PROT_WRITE) && mprotect(p, size, PROT_READ | PROT_WRITE) != 0) {
        munmap(p, size);
        p = NULL;
    }
out:
    if (p && low32 && (uintptr_t)p + size > ((uintptr_t)1 << 32)) {
        munmap(p, size);
        p = NULL;
    }
    errno = saved;
    return p;
}

void *os_reserve(size_t size, size_t align, int low32)
{
    return map_aligned(size, align, low32, 1, PROT_READ | PROT_WRITE);
}

/* Private writable mappings without MAP_NORESERVE are charged (and checked) when made; the
 * over-reservation for alignment is PROT_NONE (not charged) until trimmed. */
void *os_map_committed(size_t size, size_t align, int low32)
{
    return map_aligned(size, align, low32, 0, PROT_NONE);
}

int os_map_committed_at(void *addr, size_t size)
{
#ifdef MAP_FIXED_NOREPLACE
    int saved = errno;
    void *p = mmap(addr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p != MAP_FAILED && p != addr) /* a kernel before 4.17 takes the flag as a hint */
        munmap(p, size);
    errno = saved;
    return p == addr ? 0 : -1;
#else
    (void)addr;
    (void)size;
    return -1;
#endif
}

int os_commit_fixed(void *addr, size_t size)
{
    int saved = errno;
    void *p = mmap(addr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    errno = saved;
    return p == addr ? 0 : -1;
}

int os_release(void *addr, size_t size)
{
    int saved = errno;
    int r = munmap(addr, size);
    errno = saved;
    return r;
}

int os_purge(void *addr, size_t size)
{
    int saved = errno;
    int r = madvise(addr, size, MADV_DONTNEED);
    errno = saved;
    return r;
}

void os_advise_huge(void *addr, size_t size, int on)
{
#ifdef MADV_HUGEPAGE
    int saved = errno;
    madvise(addr, size, on ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    errno = saved;
#else
    (void)addr;
    (void)size;
    (void)on;
#endif
}

int os_resident_pages(void *addr, size_t size)
{
    unsigned char vec[512];
    size_t n = (size + OS_PAGE_SIZE - 1) >> OS_PAGE_SHIFT;
    if (n > sizeof(vec))
        n = sizeof(vec);
    int saved = errno;
    int r = mincore(addr, n << OS_PAGE_SHIFT, vec);
    errno = saved;
    if (r != 0)
        return -1;
    int resident = 0;
    for (size_t i = 0; i < n; i++)
        resident += vec[i] & 1;
    return resident;
}

int os_zero_resident(void *addr, size_t size)
{
    uint64_t ent[512]; /* pagemap entries: bit 63 present, bit 62 swapped */
    int fd = os_open_read("/proc/self/pagemap");
    if (fd < 0)
        return -1;
    uintptr_t a = (uintptr_t)addr, end = a + size;
    int rc = 0;
    /* A failed read stops here: the pages written so far are zeros, the caller clears the rest. */
    for (uintptr_t at = a; at < end;) {
        size_t n = (end - at) >> OS_PAGE_SHIFT;
        if (n > sizeof(ent) / sizeof(ent[0]))
            n = sizeof(ent) / sizeof(ent[0]);
        long want = (long)(n * sizeof(ent[0]));
        if (os_pread(fd, ent, (size_t)want, (uint64_t)(at >> OS_PAGE_SHIFT) * sizeof(ent[0])) != want) {
            rc = -1;
            break;
        }
        for (size_t i = 0; i < n;) { /* runs of pages that may hold data */
            if (!(ent[i] >> 62)) {
                i++;
                continue;
            }
            size_t j = i + 1;
            while (j < n && (ent[j] >> 62))
                j++;
            memset((char *)at + (i << OS_PAGE_SHIFT), 0, (j - i) << OS_PAGE_SHIFT);
            i = j;
        }
        at += n << OS_PAGE_SHIFT;
    }
    os_close(fd);
    return rc;
}

int os_protect(void *addr, size_t size, int access)
{
    int saved = errno;
    int r = mprotect(addr, size, access ? PROT_READ | PROT_WRITE : PROT_NONE);
    errno = saved;
    return r;
}

void *os_remap(void *addr, size_t old_size, size_t new_size, int may_move, void *fixed_at)
{
    int saved = errno;
    void *p;
    if (fixed_at)
        p = mremap(addr, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, fixed_at);
    else
        p = mremap(addr, old_size, new_size, may_move ? MREMAP_MAYMOVE : 0);
    errno = saved;
    return p == MAP_FAILED ? NULL : p;
}

uint64_t os_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ~(os_clock_ms() at the first os_now_ms(), minus 1), set once; 0 while unset. Kept inverted so
 * that it does not look like a pointer either. */
static uint64_t clock_base_inv;

uint64_t os_now_ms(void)
{
    uint64_t now = os_clock_ms(), inv = __atomic_load_n(&clock_base_inv, __ATOMIC_RELAXED);
    if (__builtin_expect(inv == 0, 0)) {
        uint64_t expect = 0;
        inv = ~(now - 1);
        if (!__atomic_compare_exchange_n(&clock_base_inv, &expect, inv, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            inv = expect; /* another thread set it first */
    }
    return now - ~inv;
}

uint64_t os_random64(void)
{
    uint64_t v = 0;
    int saved = errno;
    if (syscall(SYS_getrandom, &v, sizeof(v), 0x1 /* GRND_NONBLOCK */) != (long)sizeof(v)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        v = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&v * 0x9E3779B97F4A7C15ull;
    }
    errno = saved;
    return v;
}

void os_sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    int saved = errno;
    while (syscall(SYS_nanosleep, &ts, &ts) != 0 && errno == EINTR) /* raw: not a cancellation point */
        ;
    errno = saved;
}

unsigned os_ncpus(void)
{
    /* sched_getaffinity through the raw syscall: sysconf() may allocate. */
    unsigned long mask[64];
    long n = syscall(SYS_sched_getaffinity, 0, sizeof(mask), mask);
    if (n <= 0)
        return 1;
    unsigned cnt = 0;
    for (long i = 0; i < n / (long)sizeof(unsigned long); i++) /* not __builtin_popcountl: a call to */
        for (unsigned long m = mask[i]; m; m &= m - 1)             /* libgcc, at the end of the text */
            cnt++;
    return cnt ? cnt : 1;
}

const char *os_getenv(const char *name)
{
    if (!environ)
        return NULL;
    size_t n = 0;
    while (name[n])
        n++;
    for (char **e = environ; *e; e++) {
        const char *s = *e;
        size_t i = 0;
        while (i < n && s[i] == name[i])
            i++;
        if (i == n && s[n] == '=')
            return s + n + 1;
    }
    return NULL;
}

void os_write_all(int fd, const char *buf, size_t len)
{
    int saved = errno;
    while (len > 0) {
        ssize_t w = syscall(SYS_write, fd, buf, len); /* raw: never a cancellation point */
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        buf += w;
        len -= (size_t)w;
    }
    errno = saved;
}

int os_open_write(const char *path)
{
    int saved = errno;
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    errno = saved;
    return fd;
}

int os_open_append(const char *path)
{
    int saved = errno;
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    errno = saved;
    return fd;
}

/* os_open_read and os_pread live here, not with the other /proc readers (os_proc.c, cold):
 * calloc reads /proc/self/pagemap through them (os_zero_resident). */
int os_open_read(const char *path)
{
    int saved = errno;
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    errno = saved;
    return fd < 0 ? -1 : fd;
}

long os_pread(int fd, void *buf, size_t n, uint64_t off)
{
    int saved = errno;
    size_t got = 0;
    while (got < n) {
        long r = syscall(SYS_pread64, fd, (char *)buf + got, n - got, (long)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            errno = saved;
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    errno = saved;
    return (long)got;
}

void os_close(int fd)
{
    int saved = errno;
    syscall(SYS_close, fd);
    errno = saved;
}

void *os_map_shared_file(const char *path, size_t size)
{
    int saved = errno;
    void *p = NULL;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
        if (ftruncate(fd, (off_t)size) == 0) {
            p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (p == MAP_FAILED)
                p = NULL;
        }
        close(fd);
        if (!p)
            unlink(path);
    }
    errno = saved;
    return p;
}

void os_unlink(const char *path)
{
    int saved = errno;
    unlink(path);
    errno = saved;
}

void os_abort(void)
{
    /* abort() may run atexit-like cleanups in other libcs; raise SIGABRT directly. */
    syscall(SYS_tgkill, (long)getpid(), (long)syscall(SYS_gettid), 6 /* SIGABRT */);
    os_exit_group(134);
}

void os_exit_group(int status)
{
    for (;;)
        syscall(SYS_exit_group, status);
}

int os_catch_default_signals(const int *sigs, int n, void (*handler)(int))
{
    int saved = errno, caught = 0;
    for (int i = 0; i < n; i++) {
        struct sigaction old, sa;
        if (sigaction(sigs[i], NULL, &old) != 0 || (old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL)
            continue;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = handler;
        sa.sa_flags = SA_RESETHAND | SA_NODEFER | SA_ONSTACK | SA_RESTART;
        sigemptyset(&sa.sa_mask);
        if (sigaction(sigs[i], &sa, NULL) == 0)
            caught++;
    }
    errno = saved;
    return caught;
}

void os_die_by_signal(int sig)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    syscall(SYS_tgkill, (long)syscall(SYS_getpid), (long)syscall(SYS_gettid), (long)sig);
}

const char *os_signal_name(int sig)
{
    switch (sig) {
    case SIGABRT: return "SIGABRT";
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGILL: return "SIGILL";
    case SIGFPE: return "SIGFPE";
    case SIGSYS: return "SIGSYS";
    case SIGTRAP: return "SIGTRAP";
    case SIGQUIT: return "SIGQUIT";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGHUP: return "SIGHUP";
    case SIGPIPE: return "SIGPIPE";
    default: return "signal";
    }
}

long os_getpid(void) { return (long)syscall(SYS_getpid); }
long os_getppid(void) { return (long)syscall(SYS_getppid); }

size_t os_rss(void)
{
    int saved = errno;
    int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/statm", O_RDONLY | O_CLOEXEC);
    size_t rss = 0;
    if (fd >= 0) {
        char buf[128];
        ssize_t n = syscall(SYS_read, fd, buf, sizeof(buf) - 1);
        syscall(SYS_close, fd);
        if (n > 0) {
            buf[n] = 0;
            const char *s = buf;
            while (*s && *s != ' ')
                s++; /* skip total size */
            while (*s == ' ')
                s++;
            while (*s >= '0' && *s <= '9')
                rss = rss * 10 + (size_t)(*s++ - '0');
            rss *= OS_PAGE_SIZE;
        }
    }
    errno = saved;
    return rss;
}

int os_rseq_probe(long *tp_offset, int *has_mm_cid)
{
    if (&__rseq_size == NULL || &__rseq_offset == NULL || __rseq_size == 0)
        return -1;
    *tp_offset = (long)__rseq_offset;
    /* glibc 2.36 reports __rseq_size 20 even where the kernel fills mm_cid: ask the kernel. */
    unsigned long feat = getauxval(AT_RSEQ_FEATURE_SIZE);
    *has_mm_cid = feat >= 28;
    return 0;
}

#define MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ_ (1 << 7)
#define MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ_ (1 << 8)

int os_rseq_fence(void)
{
    int saved = errno;
    long r = syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ_, 0, 0);
    if (r != 0 && errno == EPERM && /* not registered yet (or a forked child's new mm) */
        syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ_, 0, 0) == 0)
        r = syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ_, 0, 0);
    errno = saved;
    return r == 0 ? 0 : -1;
}

void os_lock_slow(os_lock_t *l)
{
    for (int spin = 0; spin < 100; spin++) {
        int zero = 0;
        if (__atomic_load_n(&l->state, __ATOMIC_RELAXED) == 0 &&
            __atomic_compare_exchange_n(&l->state, &zero, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    int saved = errno;
    while (__atomic_exchange_n(&l->state, 2, __ATOMIC_ACQUIRE) != 0)
        syscall(SYS_futex, &l->state, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
    errno = saved;
}

void os_unlock_wake(os_lock_t *l)
{
    int saved = errno;
    syscall(SYS_futex, &l->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    errno = saved;
}

__thread int os_lock_depth __attribute__((tls_model("initial-exec")));

void os_backoff(unsigned n)
{
    if (n < 64) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    } else if (n < 256) {
        syscall(SYS_sched_yield);
    } else {
        int saved = errno;
        struct timespec ts = {0, 50000};
        syscall(SYS_nanosleep, &ts, NULL); /* raw: not a cancellation point */
        errno = saved;
    }
}

/* fork_kept: 0 taken for fork, 1 already held by the forking thread (left to it), 2 not taken
 * (careful mode gave up: its holder waits, directly or not, for a lock the forking thread holds). */
void os_fork_lock(os_lock_t *l, int careful)
{
    l->fork_kept = 0;
    if (os_lock_held(l)) {
        l->fork_kept = 1;
        return;
    }
    if (!careful) {
        os_lock_raw(l); /* unchecked: fork takes several locks of one rank */
        return;
    }
    for (unsigned i = 0; i < 20000; i++) { /* about a second */
        if (os_trylock_raw(l))
            return;
        os_backoff(i);
    }
    l->fork_kept = 2;
}

void os_fork_unlock_parent(os_lock_t *l)
{
    if (l->fork_kept == 0)
        os_unlock_raw(l);
    l->fork_kept = 0;
}

void os_fork_reset_child(os_lock_t *l)
{
    if (l->fork_kept == 0)
        os_lock_depth--; /* taken by this thread's prepare handler */
    if (l->fork_kept != 1)
        os_lock_reinit(l);
    l->fork_kept = 0;
}
