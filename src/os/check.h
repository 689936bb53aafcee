/* Debug checks: assertion levels and the lock-order check (the table is os/lock_rank.h).
 *
 * BSL_DEBUG, set per library build (meson: the debug variant libbuddyslab-debug.a is compiled with
 * -DBSL_DEBUG=2; option -Dchecks=N sets it for the main library, default 0):
 *   0  release: no check runs; every bsl_assert and lock check is still compiled (and type-checked)
 *      and removed as dead code, so a debug-only branch cannot rot (jemalloc's config_debug);
 *   1  cheap invariants (bsl_assert(1, ...)), the lock order on every os_lock, and the lock a
 *      `_locked` function needs (bsl_assert_locked);
 *   2  also the expensive ones (bsl_assert(2, ...)): whole-structure checks, buddy_check and
 *      slab_check, after every reclaim (malloc_trim, bsl_purge, an OOM reclaim) and at exit.
 * A failed check prints one line naming it and aborts. */
#ifndef BSL_OS_CHECK_H
#define BSL_OS_CHECK_H

#ifndef BSL_DEBUG
#define BSL_DEBUG 0
#endif

/* Included by os/os.h (for BSL_HIDDEN and unlikely), which every module includes. */
BSL_HIDDEN __attribute__((noreturn, cold)) void os_assert_fail(const char *file, int line, const char *cond);

#define bsl_assert(level, cond)                                                                    \
    do {                                                                                           \
        if (BSL_DEBUG >= (level) && unlikely(!(cond)))                                             \
            os_assert_fail(__FILE__, __LINE__, #cond);                                             \
    } while (0)

#endif
