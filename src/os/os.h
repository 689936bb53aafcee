/* Platform layer: the only module that makes system calls or reads the environment.
 * Every function returns 0 / a valid pointer on success; failures are stated per function.
 * Nothing here ever calls malloc. */
#ifndef BSL_OS_H
#define BSL_OS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define BSL_HIDDEN __attribute__((visibility("hidden")))
/* Zero-initialised tables of 2 KiB and more go to .lbss, which the linker places after .bss: the
 * small variables that every program touches at start then share a few pages of .bss instead of
 * one page each between the tables (a read of an untouched page commits it here too). */
#define BSL_BIG_BSS __attribute__((section(".lbss.bsl")))
/* A function every process runs, but only at start-up or from the tick, in a file whose other
 * code an untracked program that makes no huge block never calls (the soft OOM policy, debugging,
 * huge blocks): .text.unlikely, which the linker places at the start of the library's text, next
 * to the hot files (src/meson.build). The kernel maps a file's pages 64 KiB around each fault
 * (fault-around), so one such call from the cold part made 64 KiB more of our text resident. */
#define BSL_RARE __attribute__((cold))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#include "os/check.h" /* bsl_assert, BSL_DEBUG */
#include "os/lock_rank.h"

#define OS_PAGE_SHIFT 12
#define OS_PAGE_SIZE ((size_t)1 << OS_PAGE_SHIFT)

/* Reserve `size` bytes of address space aligned to `align` (a power of two >= page), demand
 * paged (MAP_NORESERVE): nothing is committed until touched. `low32`: below 4 GiB.
 * pre: size and align are page multiples. Returns NULL on failure. */
BSL_HIDDEN void *os_reserve(size_t size, size_t align, int low32);
/* The same for memory the caller will use as a whole (a huge block): mapped without MAP_NORESERVE,
 * so the kernel's overcommit policy judges it at once, as it does glibc's mmap'd chunks: in the
 * heuristic mode (vm.overcommit_memory=0) a mapping larger than RAM + swap is refused, in strict
 * mode (2) one beyond the commit limit; mode 1 accepts everything. Still demand-paged. Only the
 * block itself is charged, not the slack reserved to align it. NULL (errno kept) when refused. */
BSL_HIDDEN void *os_map_committed(size_t size, size_t align, int low32);
/* The same at exactly [addr, addr+size), which must be free address space (MAP_FIXED_NOREPLACE:
 * never replaces a mapping). Returns 0, or -1 (errno kept) when the range is taken or refused. */
BSL_HIDDEN int os_map_committed_at(void *addr, size_t size);
/* Replace [addr, addr+size), a mapping of the caller's, by a fresh committed one (MAP_FIXED).
 * Returns 0, or -1 (errno kept, the old mapping stays) when refused. */
BSL_HIDDEN int os_commit_fixed(void *addr, size_t size);
BSL_HIDDEN int os_release(void *addr, size_t size);
/* Return the frames of [addr, addr+size) to the OS; they read as zero afterwards. */
BSL_HIDDEN int os_purge(void *addr, size_t size);
/* Advise transparent huge pages on a 2 MiB-aligned range (on 0: advise against them). */
BSL_HIDDEN void os_advise_huge(void *addr, size_t size, int on);
/* How many of the pages of [addr, addr + size) are resident (mincore), at most 512 pages (2 MiB)
 * from a page-aligned addr; -1 on failure. */
BSL_HIDDEN int os_resident_pages(void *addr, size_t size);
/* Make the private anonymous pages [addr, addr + size) (page-aligned) read as zeros, writing only
 * those that may hold data: present in memory or in swap, per /proc/self/pagemap (opened, read
 * and closed each call: a cached descriptor would name the parent's memory after a fork, or another
 * file after the program closed it). A page neither present nor swapped out reads as zero already.
 * Returns 0, or -1 when pagemap cannot be read (the caller must clear the block another way). */
BSL_HIDDEN int os_zero_resident(void *addr, size_t size);
/* Make [addr, addr+size) inaccessible (access 0) or readable and writable again (access 1). */
BSL_HIDDEN int os_protect(void *addr, size_t size, int access);
/* Resize a mapping: in place when possible (may_move=0), else to `fixed_at` (a reservation the
 * caller owns, which it replaces) or anywhere (fixed_at NULL, may_move=1). NULL on failure. */
BSL_HIDDEN void *os_remap(void *addr, size_t old_size, size_t new_size, int may_move, void *fixed_at);

/* Milliseconds on the monotonic clock since the library first read it, plus 1 (0 stays "never"):
 * the allocator's timestamps (decay, ticks, reports' rate limits). Small on purpose: a timestamp
 * kept in the allocator's memory must not look like a pointer into the heap. With milliseconds
 * since boot, a machine up 23-24 hours stored values in 0x5000000-0x5500000, where Valgrind puts
 * the heap, and memcheck called a leaked 5 MiB block "possibly lost" (next_tick_ms and a shard's
 * last decay time pointed inside it). */
BSL_HIDDEN uint64_t os_now_ms(void);
/* Milliseconds on CLOCK_MONOTONIC since boot: for what other processes compare with their own
 * clock (the statistics page's update time, the time of a soft OOM report). */
BSL_HIDDEN uint64_t os_clock_ms(void);
/* 64 random bits (getrandom, falling back to the clock and addresses). */
BSL_HIDDEN uint64_t os_random64(void);
BSL_HIDDEN void os_sleep_ms(uint64_t ms);
/* The n-th wait of a spinning waiter: pause (n < 64), yield (n < 256), then sleep 50 us. */
BSL_HIDDEN void os_backoff(unsigned n);
BSL_HIDDEN unsigned os_ncpus(void);
/* Value of environment variable `name`, read from the process environment without allocating. */
BSL_HIDDEN const char *os_getenv(const char *name);
BSL_HIDDEN void os_write_all(int fd, const char *buf, size_t len);
BSL_HIDDEN int os_open_write(const char *path); /* O_WRONLY|O_CREAT|O_TRUNC, -1 on failure */
BSL_HIDDEN int os_open_append(const char *path); /* O_WRONLY|O_CREAT|O_APPEND, -1 on failure */
BSL_HIDDEN void os_close(int fd);
/* Create (0600, truncated to `size`) and map a shared file; NULL on failure. */
BSL_HIDDEN void *os_map_shared_file(const char *path, size_t size);
BSL_HIDDEN void os_unlink(const char *path);
BSL_HIDDEN __attribute__((noreturn)) void os_abort(void);
BSL_HIDDEN long os_getpid(void);
/* exit_group(status) at once: no atexit handlers, no destructors, no stdio flush (what _exit does). */
BSL_HIDDEN __attribute__((noreturn)) void os_exit_group(int status);
/* Catch each signal of sigs[] (n of them) that is at its default action: handler runs once on the
 * thread that got the signal (SA_RESETHAND: the default action is back when it runs; SA_NODEFER;
 * SA_ONSTACK where the program set up an alternate stack). Signals the program ignores or handles
 * itself are left alone. Returns how many were caught. */
BSL_HIDDEN int os_catch_default_signals(const int *sigs, int n, void (*handler)(int));
/* Die of sig as if it had never been caught: its default action, unblocked, raised on this thread.
 * Returns only for a signal whose default action is to be ignored. */
BSL_HIDDEN void os_die_by_signal(int sig);
/* "SIGSEGV" and the like, or "signal" for one without a name here. */
BSL_HIDDEN const char *os_signal_name(int sig);
BSL_HIDDEN long os_getppid(void);
/* Resident set size of this process in bytes (from /proc/self/statm), 0 when unknown. */
BSL_HIDDEN size_t os_rss(void);

/* ---- reading the process's own state (os_proc.c), for the tracking layer and the leak scan ----
 * Raw system calls (never cancellation points); errno is left as it was. */
BSL_HIDDEN int os_open_read(const char *path);  /* O_RDONLY, -1 on failure (os_linux.c, with os_pread) */
/* Up to n bytes from fd (retried on EINTR): the count, 0 at the end, -1 on an error. */
BSL_HIDDEN long os_read(int fd, void *buf, size_t n);
/* Up to n bytes at file offset off (retried on EINTR, short only at the end of the file); -1 on error. */
BSL_HIDDEN long os_pread(int fd, void *buf, size_t n, uint64_t off);
BSL_HIDDEN long os_gettid(void);
/* The numeric entries of a /proc directory (e.g. "/proc/self/task": live thread ids), up to max;
 * returns how many were stored. */
BSL_HIDDEN size_t os_proc_numbers(const char *dir, long *out, size_t max);
/* Copy up to len bytes at addr of this process (process_vm_readv, which fails instead of faulting
 * on an unmapped page); returns how many could be read (0: addr unreadable). Where the system
 * call is refused (seccomp, ENOSYS), it copies directly: the caller must then know addr mapped. */
BSL_HIDDEN size_t os_read_self(uintptr_t addr, void *buf, size_t len);
BSL_HIDDEN void os_sleep_us(uint64_t us);

/* A size: digits with an optional K, M, G or T suffix (powers of 1024). 0, or -1 when malformed
 * (parse.c). */
BSL_HIDDEN int os_parse_size(const char *s, size_t n, long *out);

/* Formatted output without malloc: %s %c %d %i %u %ld %lu %zu %zd %llu %lld %x %lx %zx %p %%,
 * with optional '-', '0' flags and a width. Returns the length written (truncating). */
BSL_HIDDEN size_t os_vsnprintf(char *buf, size_t cap, const char *fmt, va_list ap);
BSL_HIDDEN size_t os_snprintf(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
BSL_HIDDEN void os_printf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- rseq (restartable sequences): glibc registers one struct rseq per thread. ---- */
/* Byte offset from the thread pointer to this thread's struct rseq, and whether the kernel fills
 * mm_cid (Linux 6.3+). Returns 0 when rseq is usable, -1 when it is not (not registered: valgrind,
 * glibc.pthread.rseq=0, old kernel). */
BSL_HIDDEN int os_rseq_probe(long *tp_offset, int *has_mm_cid);
/* Restart every restartable sequence of this process that is in flight on any CPU (membarrier
 * PRIVATE_EXPEDITED_RSEQ, Linux 5.10+): when it returns, no thread is inside a critical section
 * that began before the call. Registers the process on first use (again after fork()). Returns 0,
 * or -1 when the kernel cannot do it. */
BSL_HIDDEN int os_rseq_fence(void);

/* ---- Locks: a futex mutex (Drepper's three-state mutex). 0 unlocked, 1 locked, 2 contended. ----
 * `owner` is the holder's thread pointer (0 when free), written after the lock is taken and
 * cleared before it is released, so only the holder ever reads its own value there: fork() uses it
 * to see that its caller already holds a lock (fork from an OOM handler, or from a signal handler
 * that interrupted this thread inside the allocator), and os_lock_held asserts it. `fork_kept`:
 * set by os_fork_lock for such a lock, read by the post-fork calls (only the forking thread touches
 * it). `rank`: the lock's place in the lock order (os/lock_rank.h), set once when the lock is
 * initialised and read only by the debug checks. */
typedef struct os_lock {
    int state;
    uint8_t fork_kept;
    uint8_t rank; /* enum lock_rank */
    uintptr_t owner;
} os_lock_t;
#define OS_LOCK_INIT(rank) {0, 0, (rank), 0}
/* Give its rank to a lock in zeroed memory (a struct of an array set up at init, before any use):
 * zero is an unlocked lock already. */
static inline void os_lock_init(os_lock_t *l, enum lock_rank rank) { l->rank = (uint8_t)rank; }

/* Locks this thread holds or is taking: raised before the acquiring compare-and-swap, lowered after
 * the release (each with a signal fence, so that a signal handler on this thread sees the order).
 * fork()'s prepare handler runs in careful mode when it is not 0: that covers a signal handler that
 * interrupted this thread while it waits for a lock, or between taking a lock and recording itself
 * as its owner (where `owner` cannot tell yet). Found by fork_torture: a 600 s run hung once there. */
BSL_HIDDEN extern __thread int os_lock_depth __attribute__((tls_model("initial-exec")));

/* This thread's identity: its thread pointer (the TCB address, unique among live threads). */
static inline uintptr_t os_self(void) { return (uintptr_t)__builtin_thread_pointer(); }

BSL_HIDDEN void os_lock_slow(os_lock_t *l);
BSL_HIDDEN void os_unlock_wake(os_lock_t *l);

/* The lock-order check (BSL_DEBUG >= 1; os/lock_check.c): each thread keeps the locks it holds in
 * a small stack in TLS (no malloc). os_lock_check_order: before waiting for l, abort naming both
 * locks when this thread holds a lock of rank >= l's. os_lock_note_taken / os_lock_note_released:
 * push and remove (the release asserts that this thread holds l). */
BSL_HIDDEN void os_lock_check_order(const os_lock_t *l);
BSL_HIDDEN void os_lock_note_taken(const os_lock_t *l);
BSL_HIDDEN void os_lock_note_released(const os_lock_t *l);
BSL_HIDDEN const char *os_lock_rank_name(unsigned rank); /* "kmem_cache lock", ... */
BSL_HIDDEN __attribute__((noreturn, cold)) void os_lock_not_held(const os_lock_t *l, const char *file, int line,
                                                                 const char *what);

/* The lock itself, unchecked: fork's handlers take every lock through these (os_fork_lock), rank
 * by rank, which the order check would refuse (several locks of one rank). */
static inline void os_lock_raw(os_lock_t *l)
{
    int zero = 0;
    os_lock_depth++;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    if (unlikely(!__atomic_compare_exchange_n(&l->state, &zero, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)))
        os_lock_slow(l);
    __atomic_store_n(&l->owner, os_self(), __ATOMIC_RELAXED);
}
static inline int os_trylock_raw(os_lock_t *l)
{
    int zero = 0;
    os_lock_depth++;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    if (!__atomic_compare_exchange_n(&l->state, &zero, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        os_lock_depth--;
        return 0;
    }
    __atomic_store_n(&l->owner, os_self(), __ATOMIC_RELAXED);
    return 1;
}
static inline void os_unlock_raw(os_lock_t *l)
{
    __atomic_store_n(&l->owner, 0, __ATOMIC_RELAXED);
    if (unlikely(__atomic_exchange_n(&l->state, 0, __ATOMIC_RELEASE) == 2))
        os_unlock_wake(l);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    os_lock_depth--;
}

static inline void os_lock(os_lock_t *l)
{
    if (BSL_DEBUG)
        os_lock_check_order(l);
    os_lock_raw(l);
    if (BSL_DEBUG)
        os_lock_note_taken(l);
}
static inline int os_trylock(os_lock_t *l)
{
    if (!os_trylock_raw(l))
        return 0;
    if (BSL_DEBUG)
        os_lock_note_taken(l);
    return 1;
}
static inline void os_unlock(os_lock_t *l)
{
    if (BSL_DEBUG)
        os_lock_note_released(l);
    os_unlock_raw(l);
}
/* Whether this thread holds l (exact for the caller's own locks: only the holder can see its own
 * thread pointer in `owner`). */
static inline int os_lock_held(const os_lock_t *l)
{
    return __atomic_load_n(&l->owner, __ATOMIC_RELAXED) == os_self();
}
/* A `_locked` function's first line: the caller holds l (checked when BSL_DEBUG >= 1). */
#define bsl_assert_locked(l)                                                                       \
    do {                                                                                           \
        if (BSL_DEBUG >= 1 && unlikely(!os_lock_held(l)))                                          \
            os_lock_not_held((l), __FILE__, __LINE__, #l);                                         \
    } while (0)
/* After fork() in the child: only the forking thread exists, every lock it held is released. */
static inline void os_lock_reinit(os_lock_t *l)
{
    l->state = 0;
    l->owner = 0;
}

/* ---- fork(): the calls the fork handler table (src/malloc/fork.c) makes on every lock ----
 * os_fork_lock: take l for fork, unless this thread holds it already (then it is marked kept: the
 * frame that holds it goes on, in the parent and in the child, and releases it itself).
 * `careful`: the caller holds some allocator lock, so taking l in rank order is not guaranteed to
 * be deadlock-free (a signal handler forking on a thread that was inside the allocator): try for
 * about a second, then go on without l (the child re-initialises it; see fork.c).
 * os_fork_unlock_parent / os_fork_reset_child: undo, in the parent and in the child (where a lock
 * the forking thread took for fork is re-initialised and no longer counts in its os_lock_depth). */
typedef void (*os_lock_visit_fn)(os_lock_t *l);
BSL_HIDDEN void os_fork_lock(os_lock_t *l, int careful);
BSL_HIDDEN void os_fork_unlock_parent(os_lock_t *l);
BSL_HIDDEN void os_fork_reset_child(os_lock_t *l);

#endif
