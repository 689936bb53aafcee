/* Periodic maintenance (the "tick"): shrink idle transfer caches and spare slabs, and purge the
 * buddy blocks that have been free longer than decay_ms, in every shard of every zone.
 *
 * The ticking thread also empties its own per-CPU (or per-thread) cache of idle classes, and
 * every per-CPU cache that was not touched since the last tick (a sleeping program's, or one whose
 * threads exited).
 *
 * Without a background thread, the tick runs from the allocation slow paths (refills, drains, large
 * and huge blocks) at most once per tick interval, like jemalloc's decay ticks: a program that
 * allocates returns its idle memory by itself. An idle program needs option background_thread=1: a
 * thread that ticks on its own (started lazily on a slow path, outside every lock, and restarted
 * in a forked child). */
#include "malloc/internal.h"

#include <pthread.h>

static os_lock_t tick_lock = OS_LOCK_INIT(LOCK_RANK_TICK);
static uint64_t next_tick_ms;
static int bg_state; /* 0 not started, 1 starting or running */

static uint64_t tick_interval_ms(void)
{
    long d = buddy_decay_ms;
    uint64_t i = d < 0 ? 1000 : (uint64_t)d / 4;
    if (opt_publish && i > 100)
        i = 100; /* a watched process refreshes its page ten times a second */
    return i < 10 ? 10 : i > 1000 ? 1000 : i;
}

static void tick(uint64_t now)
{
    if (!os_trylock(&tick_lock))
        return; /* someone else is ticking */
    __atomic_store_n(&next_tick_ms, now + tick_interval_ms(), __ATOMIC_RELAXED);
    /* Classes idle centrally: this thread's (or CPU's) cache gives them back too. Caches of
     * other CPUs that nobody has touched for a tick interval give back everything (rseq mode). */
    uint64_t idle = slab_idle_classes();
    pcp_flush_classes(idle, pcp_large_idle());
    pcp_drain_idle();
    slab_shrink(idle);
    long d = buddy_decay_ms;
    if (d >= 0) {
        buddy_purge(d > 0 ? (uint64_t)d : 1);
        buddy_trim_to_live(); /* free dirty frames within a share of the live heap */
    }
    buddy_relax_reserve(); /* rule 1's reserve back toward a quarter when growth stopped refaulting */
    huge_tick(now, d < 0 ? UINT64_MAX / 2 : (uint64_t)d);
    publish_update();
    os_unlock(&tick_lock);
}

static void *background(void *arg)
{
    (void)arg;
    for (;;) {
        os_sleep_ms(tick_interval_ms());
        tick(os_now_ms());
    }
    return NULL;
}

void bsl_tick_maybe(void)
{
    uint64_t now = os_now_ms();
    if (likely(now < __atomic_load_n(&next_tick_ms, __ATOMIC_RELAXED)))
        return;
    tick(now);
    int expect = 0;
    if ((opt_background_thread || opt_publish) &&
        __atomic_compare_exchange_n(&bg_state, &expect, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, background, NULL) != 0)
            __atomic_store_n(&bg_state, 0, __ATOMIC_RELEASE);
        pthread_attr_destroy(&attr);
    }
}

void bsl_tick_fork_locks(os_lock_visit_fn visit) { visit(&tick_lock); }

BSL_RARE void bsl_tick_fork_child(void) /* with the rest of a fork child's path: see exit.c */
{
    if (bg_state) /* no store otherwise: a page written after fork() is copied (fork.c) */
        bg_state = 0; /* the thread did not survive fork(): the next slow path restarts it */
    publish_postfork_child();
}
