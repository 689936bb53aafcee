/* fork(): one handler table, in lock order, registered once with pthread_atfork.
 *
 * Why a fork handler at all: a child has only the forking thread. Any allocator lock that another
 * thread held at fork() would stay held forever in the child, over data it was half-way through
 * changing. So the prepare handler takes every lock (the parent then has no operation in flight),
 * and the child re-initialises them, as glibc, jemalloc and tcmalloc do.
 *
 * The order is the lock order, os/lock_rank.h: the table below visits the ranks outermost first
 * (debug builds check it on every fork: fork_check_rank), each module's visit function its locks
 * in rank order, every lock of one rank (all kmem_caches, all shards) together:
 *
 *   stdio list lock      glibc's _IO_list_lock, when the process has threads (see below)
 *   -- outer phase: taken with trylock, all or nothing --
 *   tracking start       bsl_tracking_lock: held while the tracker starts (it takes everything below)
 *   init                 init_lock: first-use initialisation
 *   soft OOM policy      oom_policy_lock, then oom_acct_lock: an evaluation allocates, tracks, frees,
 *                        and symbolizes for its report
 *   leak report          report_lock (src/leakcheck/leak.c)
 *   tracking             resize, site and symbol locks (src/track/)
 *   -- inner phase: taken in order, waiting as long as it takes --
 *   tracking             block map shards, thread registry, then liburcu's locks (urcu_bp_before_fork)
 *   quarantine           q_lock (debug.c)
 *   tick                 tick_lock: held while the tick flushes, shrinks and purges
 *   per-CPU caches       pcp_lock (set-up of caches and slot arrays)
 *   slab                 every kmem_cache lock, zone by zone, class by class
 *   buddy                every shard lock
 *   zones                zone locks, huge_lock, pagemap_lock, meta_lock
 *
 * The stdio list lock, and why there are two phases. fork() takes _IO_list_lock itself, but only
 * after every prepare handler has run, so a prepare handler that holds allocator locks while fork
 * waits for the list lock closes a cycle (glibc bug 19431, tst-malloc-fork-deadlock): a thread in
 * fflush(NULL) holds the list lock and waits for a FILE's lock, whose holder (in getline) waits in
 * malloc for a lock we hold. glibc's own malloc takes its locks after the list lock; so do we: the
 * list lock nests (it is recursive), so fork's own acquisition after ours is free.
 * But some of our locks are held while stdio is used: an OOM evaluation or a leak report
 * symbolizes with libdw, which reads /proc/PID/maps with fopen (and so waits for the list lock),
 * and a plain malloc can wait for those same locks (a budget evaluation). Waiting for them while
 * holding the list lock closes the other cycle. So the outer phase, whose holders may use stdio,
 * is taken with trylock only: on a busy lock, everything taken so far (the list lock included) is
 * released, the busy lock is waited for with nothing held, and the whole acquisition starts over.
 * Nothing is ever waited for while something is held, so no cycle can form. The inner phase's
 * holders never use stdio and never wait for an outer lock (the outer ones nest outside them), so
 * its locks are taken in order, each waited for.
 *
 * Single-threaded processes (glibc's __libc_single_threaded): nothing is taken. No other thread
 * can be inside the allocator, and the only code that can be is the forking thread's own, when a
 * signal handler forks on top of an interrupted malloc (glibc's tst-mallocfork2): its locks must
 * not be waited for (they would never be released), and the interrupted frame carries on and
 * releases them, in the parent and in the child alike. glibc skips its malloc locks the same way.
 *
 * A forking thread that holds allocator locks, or is taking one (fork from a soft OOM handler,
 * which runs under oom_policy_lock, or from a signal handler on a thread interrupted inside the
 * allocator while other threads exist; os_lock_depth counts them): each lock it holds is kept
 * (os_fork_lock: left to the frame that holds it, in both processes), the list lock is left alone,
 * and the others are taken in "careful" mode: a lock whose holder does not let go within about a
 * second (it waits, directly or not, for one of ours, or it is this thread between its
 * compare-and-swap and its owner store) is given up and re-initialised in the child. That last
 * case cannot be made exact (glibc's fork is not async-signal-safe in a threaded process either:
 * it holds its own atfork lock across fork); it only must not hang.
 *
 * vfork() and posix_spawn() run no fork handlers and need none: the child only execs. */
#include "leakcheck/leakcheck.h"
#include "malloc/debug.h"
#include "malloc/internal.h"
#include "oom/oom.h"
#include "track/track.h"

#include <pthread.h>
#include <sys/single_threaded.h>

/* glibc's stdio list lock (exported since 2.2.5, not declared in a header). Weak: absent in other
 * C libraries, where the first step is skipped. */
extern void _IO_list_lock(void) __attribute__((weak));
extern void _IO_list_unlock(void) __attribute__((weak));

struct fork_entry {
    const char *name;
    int outer;                             /* 1: outer phase (see above) */
    void (*locks)(os_lock_visit_fn visit); /* the module's os_locks, in its lock order */
    void (*prepare)(int careful);          /* inner work of its own after its locks (NULL: none) */
    void (*parent)(void);                  /* ... undone in the parent (before its locks) */
    void (*child)(void);                   /* runs in every child, after every lock is reset */
};

static const struct fork_entry fork_table[] = {
    {"tracking start, init", 1, bsl_init_fork_locks, NULL, NULL, NULL},
    {"soft OOM policy", 1, oom_fork_locks, NULL, NULL, NULL},
    {"leak report", 1, leak_fork_locks, NULL, NULL, leak_fork_child},
    {"tracking (outer)", 1, track_fork_locks, NULL, NULL, NULL},
    {"tracking (inner)", 0, NULL, track_fork_prepare, track_fork_parent, track_fork_child},
    {"quarantine", 0, debug_fork_locks, NULL, NULL, NULL},
    {"tick", 0, bsl_tick_fork_locks, NULL, NULL, bsl_tick_fork_child},
    {"per-CPU caches", 0, pcp_fork_locks, NULL, NULL, NULL},
    {"slab", 0, slab_fork_locks, NULL, NULL, NULL},
    {"buddy", 0, buddy_fork_locks, NULL, NULL, NULL},
    {"zones", 0, zones_fork_locks, NULL, NULL, NULL},
};
#define NR_FORK_ENTRIES (sizeof(fork_table) / sizeof(fork_table[0]))

/* The state of the fork in progress: written and read only by the forking thread, between its
 * prepare handler and its parent or child handler (glibc's atfork lock serializes forks). */
static int fork_locked;       /* prepare took the locks (the process had threads) */
static int fork_stdio;        /* prepare took the stdio list lock */
static int fork_careful;      /* the forking thread holds or is taking an allocator lock */
static os_lock_t *fork_busy;  /* outer phase: the lock found busy (NULL: none yet) */
static os_lock_t *fork_outer[32]; /* outer phase: the locks taken so far */
static unsigned fork_nr_outer;

static unsigned fork_last_rank; /* debug builds: the rank of the lock visited last */

/* The table must visit the locks in rank order (os/lock_rank.h): a lock of a lower rank than one
 * visited before it means the table and the rank table disagree, and a fork could deadlock against
 * a thread that takes the two in rank order. Checked as fork visits them (BSL_DEBUG >= 1). */
static void fork_check_rank(const os_lock_t *l)
{
    if (l->rank < fork_last_rank || l->rank == LOCK_RANK_NONE) {
        os_printf(2, "buddyslab: fork: %s (rank %u, %p) visited after %s (rank %u): the fork table is not in "
                  "the order of os/lock_rank.h\n", os_lock_rank_name(l->rank), (unsigned)l->rank, (const void *)l,
                  os_lock_rank_name(fork_last_rank), fork_last_rank);
        os_abort();
    }
    fork_last_rank = l->rank;
}

static void take(os_lock_t *l)
{
    if (BSL_DEBUG)
        fork_check_rank(l);
    os_fork_lock(l, fork_careful);
}

/* The outer locks are taken unchecked (os_trylock_raw) like every lock fork takes: its handlers
 * hold several locks of one rank, which the order check refuses, and release them through
 * os_fork_unlock_parent. */
static void try_outer(os_lock_t *l)
{
    if (fork_busy)
        return;
    if (BSL_DEBUG)
        fork_check_rank(l);
    if (fork_nr_outer == sizeof(fork_outer) / sizeof(fork_outer[0]) || !os_trylock_raw(l)) {
        fork_busy = l;
        return;
    }
    l->fork_kept = 0;
    fork_outer[fork_nr_outer++] = l;
}

/* The outer phase, with the stdio list lock: all or nothing, waiting with nothing held. */
static void take_outer(void)
{
    for (;;) {
        if (_IO_list_lock && _IO_list_unlock) {
            _IO_list_lock();
            fork_stdio = 1;
        }
        fork_busy = NULL;
        fork_nr_outer = 0;
        fork_last_rank = 0;
        for (unsigned i = 0; i < NR_FORK_ENTRIES && !fork_busy; i++)
            if (fork_table[i].outer && fork_table[i].locks)
                fork_table[i].locks(try_outer);
        if (!fork_busy)
            return;
        while (fork_nr_outer)
            os_unlock_raw(fork_outer[--fork_nr_outer]);
        if (fork_stdio)
            _IO_list_unlock();
        fork_stdio = 0;
        os_lock(fork_busy); /* wait for its holder, holding nothing */
        os_unlock(fork_busy);
    }
}

/* Every page a fork handler writes is copied on write twice, in the child and in the parent (each
 * fault ~10 us on this project's VMs): in a single-threaded process (a shell forking its
 * subshells) the handlers write nothing. The variables are set only when they change, and the
 * thread's last restartable sequence is forgotten so that the kernel does not read its descriptor
 * and abort signature (pages of the library the child has not mapped yet) when the child first
 * returns to user space. */
static void prefork(void)
{
    pcp_rseq_forget();
    int locked = !__libc_single_threaded;
    if (fork_locked != locked)
        fork_locked = locked;
    if (fork_stdio)
        fork_stdio = 0;
    if (!locked)
        return;
    /* A lock this thread owns counts in its os_lock_depth too: no scan of the table is needed. */
    fork_careful = os_lock_depth > 0;
    fork_last_rank = 0;
    if (!fork_careful)
        take_outer();
    /* In careful mode the list lock is left alone (a thread holding it may wait for us; fork()
     * takes it anyway), and every lock goes through os_fork_lock's careful path, in order. */
    for (unsigned i = 0; i < NR_FORK_ENTRIES; i++) {
        if (fork_table[i].locks && (fork_careful || !fork_table[i].outer))
            fork_table[i].locks(take);
        if (fork_table[i].prepare)
            fork_table[i].prepare(fork_careful);
    }
}

static void postfork_parent(void)
{
    if (!fork_locked)
        return;
    for (unsigned i = NR_FORK_ENTRIES; i-- > 0;) {
        if (fork_table[i].parent)
            fork_table[i].parent();
        if (fork_table[i].locks)
            fork_table[i].locks(os_fork_unlock_parent);
    }
    if (fork_stdio)
        _IO_list_unlock(); /* fork() has dropped its own nesting already */
    fork_locked = fork_stdio = 0;
}

/* BSL_RARE: with the rest of what a forked child runs of this library (see exit.c). */
static BSL_RARE void postfork_child(void)
{
    if (fork_locked) /* the child has one thread: every lock another thread held is free again */
        for (unsigned i = NR_FORK_ENTRIES; i-- > 0;)
            if (fork_table[i].locks)
                fork_table[i].locks(os_fork_reset_child);
    /* The stdio list lock was reset by fork() itself (glibc resets it in a child of a threaded
     * process). Now that the allocator works again, the entries' child work may allocate. */
    for (unsigned i = 0; i < NR_FORK_ENTRIES; i++)
        if (fork_table[i].child)
            fork_table[i].child();
    if (fork_locked)
        fork_locked = 0;
    if (fork_stdio)
        fork_stdio = 0;
}

/* pthread_atfork is not in libc.so: libc_nonshared.a supplies it, as a call to glibc's exported
 * __register_atfork with the caller's __dso_handle, and the linker puts that object after all of
 * ours, at the end of the text, where only this one call at start-up would fault it in (a 64 KiB
 * fault-around window of otherwise cold code: src/meson.build). Make the same call from here. */
extern int __register_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void), void *dso);
extern void *__dso_handle;
void bsl_fork_register(void) { __register_atfork(prefork, postfork_parent, postfork_child, __dso_handle); }
