/* The soft OOM policy's public API (include/buddyslab.h): budgets, limits, tags, the handler,
 * statistics and reports. The policy itself lives in src/oom/; this file starts site tracking
 * when a budget is first set from code. */
#include "malloc/debug.h"
#include "malloc/hooks.h"
#include "malloc/internal.h"
#include "oom/oom.h"

#include <errno.h>
#include <string.h>

os_lock_t bsl_tracking_lock = OS_LOCK_INIT(LOCK_RANK_TRACKING_START); /* serializes the start below */

/* Budgets need sites: start tracking now if it was not started at init (sampled per oom_sample
 * unless leak/leak_sample say otherwise). Returns 0, or -1 when tracking is unavailable. */
int bsl_tracking_start(void)
{
    bsl_ensure_init();
    if (__atomic_load_n(&bsl_hooks_on, __ATOMIC_ACQUIRE) & HOOK_LEAK)
        return 0;
    static int state; /* 0: not tried, 1: on, -1: unavailable */
    os_lock(&bsl_tracking_lock);
    if (state == 0) {
        unsigned h = hooks_start_tracking();
        state = h ? 1 : -1;
        __atomic_fetch_or(&bsl_hooks_on, h, __ATOMIC_RELEASE);
    }
    int r = state;
    os_unlock(&bsl_tracking_lock);
    return r > 0 ? 0 : -1;
}

BSL_EXPORT int bsl_budget_set(const char *pattern, size_t bytes)
{
    if (!pattern) {
        errno = EINVAL;
        return -1;
    }
    bsl_ensure_init();
    if (oom_budget_set(pattern, bytes) != 0)
        return -1;
    if (bytes && bsl_tracking_start() != 0) {
        errno = ENOSYS;
        return -1;
    }
    return 0;
}

BSL_EXPORT int bsl_budget_get(const char *pattern, bsl_budget_info_t *out)
{
    if (!pattern || !out)
        return -1;
    unsigned a = oom_acct_named(pattern);
    if (!a)
        return -1;
    oom_acct_info(a, out);
    return 0;
}

BSL_EXPORT int bsl_oom_set_limits(size_t soft_limit, size_t hard_limit)
{
    bsl_ensure_init();
    oom_set_limits(soft_limit, hard_limit);
    if ((soft_limit || hard_limit) && bsl_tracking_start() != 0)
        return 0; /* the limits hold; reports just cannot name sites */
    return 0;
}

BSL_EXPORT int bsl_tag_push(const char *name) { return oom_tag_push(name); }
BSL_EXPORT int bsl_tag_pop(void) { return oom_tag_pop(); }
BSL_EXPORT const char *bsl_tag_current(void) { return oom_tag_name(); }

BSL_EXPORT void bsl_oom_set_handler(bsl_oom_handler_fn fn, void *arg)
{
    bsl_ensure_init();
    oom_handler_set(fn, arg);
}

BSL_EXPORT int bsl_oom_stats(bsl_oom_stats_t *out)
{
    if (!out)
        return -1;
    memset(out, 0, sizeof(*out));
    bsl_ensure_init();
    oom_stats_get(out, track_mode());
    return 0;
}

BSL_EXPORT int bsl_oom_report(const char *path)
{
    bsl_ensure_init();
    if (!track_mode() || !__atomic_load_n(&oom_on, __ATOMIC_ACQUIRE))
        return -1;
    return oom_report_now(path);
}
