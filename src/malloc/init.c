/* Initialisation on the first allocation (no constructor-order assumptions),
 * the report at exit, and misuse reports. */
#include "leakcheck/leakcheck.h"
#include "malloc/debug.h"
#include "malloc/hooks.h"
#include "malloc/internal.h"
#include "oom/oom.h"


int bsl_inited;
static os_lock_t init_lock = OS_LOCK_INIT(LOCK_RANK_INIT);
static int atfork_state; /* 0 not started, 1 starting, 2 fork handlers and hooks set up */

void bsl_init_fork_locks(os_lock_visit_fn visit)
{
    visit(&bsl_tracking_lock);
    visit(&init_lock);
}

void bsl_init_slow(void)
{
    os_lock(&init_lock);
    if (!bsl_inited) {
        options_parse_env();
        slab_free_key = os_random64() | 1;
        zones_init();
        unsigned ncpu = os_ncpus();
        buddy_init(opt_shards ? (unsigned)opt_shards : ncpu);
        slab_init();
        pcp_init((int)opt_rseq);
        hooks_init();
        options_apply();
        __atomic_store_n(&bsl_hooks_on, (int)debug_init(), __ATOMIC_RELEASE); /* clears HOOK_INIT */
        __atomic_store_n(&bsl_inited, 1, __ATOMIC_RELEASE);
    }
    os_unlock(&init_lock);
    /* pthread_atfork and the hooks' set-up may allocate (through us, now initialised): run them
     * outside the lock, once. */
    int expect = 0;
    if (__atomic_compare_exchange_n(&atfork_state, &expect, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
        bsl_fork_register();
        if (opt_publish)
            publish_init();
        if (opt_leak || opt_leak_sample || oom_wants_tracking())
            __atomic_fetch_or(&bsl_hooks_on, hooks_start_tracking(), __ATOMIC_RELEASE);
        __atomic_store_n(&atfork_state, 2, __ATOMIC_RELEASE);
    }
}

/* DT_FINI (meson.build links with -Wl,-fini=bsl_dt_fini): the dynamic loader calls DT_FINI at exit,
 * and the default, crtn's empty _fini, sits after all of the text, in the 64 KiB window of cold
 * code that src/meson.build's link order keeps out of the RSS. Our work at exit is the destructor
 * below (.fini_array). */
BSL_HIDDEN void bsl_dt_fini(void);
void bsl_dt_fini(void) {}

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
    /* Debug builds (BSL_DEBUG >= 2): the whole heap's structure, once more at the end. */
    bsl_assert(2, !bsl_inited || (buddy_check() == 0 && slab_check() == 0));
}

void bsl_misuse(const char *func, const char *what, const void *p)
{
    os_printf(2, "buddyslab: %s: %s: pointer %p\n", func, what, p);
    os_abort();
}
