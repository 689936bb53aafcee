/* The debug checks' reporting side (os/check.h): failed assertions and the lock-order check.
 *
 * Each thread keeps the locks it holds in a stack in TLS: a fixed array, no malloc (the check runs
 * inside the allocator). Locks are usually released in reverse order, but not always (slab_free_bulk
 * hands over from one cache's lock to the next), so a release removes its entry wherever it is.
 * Deeper than OS_LOCK_MAX_HELD is a bug too (the rank table has fewer ranks than that, and no rank
 * is held twice). Only BSL_DEBUG builds call it, and only they compile it: a release library has
 * none of this code. */
#include "os/os.h"

#if BSL_DEBUG

#define OS_LOCK_MAX_HELD 24

static const char *const rank_name[LOCK_RANK_NR] = {
    [LOCK_RANK_NONE] = "unranked lock",
#define BSL_LOCK_RANK_NAME(name, what) [LOCK_RANK_##name] = what,
    BSL_LOCK_RANKS(BSL_LOCK_RANK_NAME)
#undef BSL_LOCK_RANK_NAME
};

static __thread const os_lock_t *held[OS_LOCK_MAX_HELD] __attribute__((tls_model("initial-exec")));
static __thread unsigned nr_held __attribute__((tls_model("initial-exec")));

const char *os_lock_rank_name(unsigned rank) { return rank < LOCK_RANK_NR ? rank_name[rank] : "bad rank"; }

static const char *name_of(const os_lock_t *l) { return os_lock_rank_name(l->rank); }

void os_assert_fail(const char *file, int line, const char *cond)
{
    os_printf(2, "buddyslab: assertion failed: %s (%s:%d)\n", cond, file, line);
    os_abort();
}

void os_lock_not_held(const os_lock_t *l, const char *file, int line, const char *what)
{
    os_printf(2, "buddyslab: lock not held: %s (%s, rank %u, %p) must be held by this thread (%s:%d)\n", what,
              name_of(l), (unsigned)l->rank, (const void *)l, file, line);
    os_abort();
}

void os_lock_check_order(const os_lock_t *l)
{
    if (unlikely(l->rank == LOCK_RANK_NONE || l->rank >= LOCK_RANK_NR)) {
        os_printf(2, "buddyslab: lock order: taking a lock with no rank (%p, rank %u): give it one in os/lock_rank.h\n",
                  (const void *)l, (unsigned)l->rank);
        os_abort();
    }
    for (unsigned i = 0; i < nr_held; i++) {
        const os_lock_t *h = held[i];
        if (h == l) {
            os_printf(2, "buddyslab: lock order: taking %s (rank %u, %p) which this thread holds already\n",
                      name_of(l), (unsigned)l->rank, (const void *)l);
            os_abort();
        }
        if (h->rank >= l->rank) {
            os_printf(2,
                      "buddyslab: lock order violation: taking %s (rank %u, %p) while holding %s (rank %u, %p); "
                      "the order is os/lock_rank.h\n",
                      name_of(l), (unsigned)l->rank, (const void *)l, name_of(h), (unsigned)h->rank,
                      (const void *)h);
            os_abort();
        }
    }
}

void os_lock_note_taken(const os_lock_t *l)
{
    if (unlikely(nr_held == OS_LOCK_MAX_HELD)) {
        os_printf(2, "buddyslab: lock order: more than %d locks held at once (taking %s, %p)\n", OS_LOCK_MAX_HELD,
                  name_of(l), (const void *)l);
        os_abort();
    }
    held[nr_held] = l;
    __atomic_signal_fence(__ATOMIC_SEQ_CST); /* a signal handler on this thread sees the entry whole */
    nr_held++;
}

void os_lock_note_released(const os_lock_t *l)
{
    if (unlikely(!os_lock_held(l)))
        os_lock_not_held(l, "os_unlock", 0, "the lock being released");
    for (unsigned i = nr_held; i-- > 0;)
        if (held[i] == l) {
            for (unsigned j = i; j + 1 < nr_held; j++)
                held[j] = held[j + 1];
            nr_held--;
            return;
        }
    /* Held but not recorded: taken by fork's prepare handler (unchecked) and released by the
     * caller as its own lock. Not a case the library has: report it. */
    os_printf(2, "buddyslab: lock order: releasing %s (%p), which os_lock did not record\n", name_of(l),
              (const void *)l);
    os_abort();
}

#endif
