/* Initialisation on the first allocation (no constructor-order assumptions), fork handlers,
 * the report at exit, and misuse reports. */
#include "leakcheck/leakcheck.h"
#include "malloc/debug.h"
#include "malloc/internal.h"
#include "oom/oom.h"

#include <pthread.h>

int bsl_inited;
uintptr_t bsl_free_key;
static os_lock_t init_lock = OS_LOCK_INIT;
static int atfork_state; /* 0 not registered, 1 registering, 2 registered */

/* Lock order for fork: pcp -> kmem_caches -> buddy shards -> zones (-> pagemap -> meta, huge). */
static void prefork(void)
{
    pcp_prefork();
    slab_prefork();
    buddy_prefork();
    zones_prefork();
}

static void postfork_parent(void)
{
    zones_postfork_parent();
    buddy_postfork_parent();
    slab_postfork_parent();
    pcp_postfork_parent();
}

static void postfork_child(void)
{
    bsl_tick_postfork_child();
    zones_postfork_child();
    buddy_postfork_child();
    slab_postfork_child();
    pcp_postfork_child();
}

void bsl_init_slow(void)
{
    os_lock(&init_lock);
    if (!bsl_inited) {
        options_parse_env();
        bsl_free_key = os_random64() | 1;
        zones_init();
        unsigned ncpu = os_ncpus();
        buddy_init(opt_shards ? (unsigned)opt_shards : ncpu);
        slab_init();
        pcp_init((int)opt_rseq);
        options_apply();
        __atomic_store_n(&bsl_hooks_on, (int)debug_init(), __ATOMIC_RELEASE); /* clears HOOK_INIT */
        __atomic_store_n(&bsl_inited, 1, __ATOMIC_RELEASE);
    }
    os_unlock(&init_lock);
    /* pthread_atfork and the hooks' set-up may allocate (through us, now initialised): run them
     * outside the lock, once. */
    int expect = 0;
    if (__atomic_compare_exchange_n(&atfork_state, &expect, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
        pthread_atfork(prefork, postfork_parent, postfork_child);
        if (opt_publish)
            publish_init();
        if ((opt_leak || opt_leak_sample || oom_wants_tracking()) && leak_init())
            __atomic_fetch_or(&bsl_hooks_on, HOOK_LEAK, __ATOMIC_RELEASE);
        /* Registered last so that it runs first: the policy's locks come before the tracker's and
         * the allocator's (a handler may allocate while the policy lock is held). */
        pthread_atfork(oom_prefork, oom_postfork_parent, oom_postfork_child);
        __atomic_store_n(&atfork_state, 2, __ATOMIC_RELEASE);
    }
}

__attribute__((destructor)) static void bsl_at_exit(void)
{
    if (bsl_inited && opt_stats)
        bsl_stats_print(2);
    if (opt_publish)
        publish_exit();
    if (bsl_hooks_on & HOOK_LEAK)
        leak_at_exit();
    if (debug_valgrind)
        pcp_wipe_stale(); /* stale cache slots must not make leaked blocks look reachable to memcheck */
}

void bsl_misuse(const char *func, const char *what, const void *p)
{
    os_printf(2, "buddyslab: %s: %s: pointer %p\n", func, what, p);
    os_abort();
}
