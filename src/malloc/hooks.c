/* The hook dispatch (hooks.h): wiring the tracking layer to the core allocator and to its
 * consumers' options, and the leak report's public API. */
#include "malloc/hooks.h"

#include "leakcheck/leakcheck.h"

static const struct track_core core = {bsl_raw_calloc, bsl_raw_free, bsl_frame_mark, bsl_block_record, slab_recs_walk};

void hooks_init(void) { track_set_core(&core); }

unsigned hooks_start_tracking(void)
{
    uint64_t sample = opt_leak ? 0 : opt_leak_sample ? (uint64_t)opt_leak_sample : oom_sample_bytes();
    if (!track_start(opt_leak_depth, sample, opt_publish != 0))
        return 0;
    leak_start();
    return HOOK_LEAK | (sample ? 0 : HOOK_FULL);
}

BSL_EXPORT int bsl_leak_report(const char *path)
{
    bsl_ensure_init();
    long r = leak_report(path && *path ? path : opt_leak_report, 0);
    return r > 0x7fffffff ? 0x7fffffff : (int)r;
}

BSL_EXPORT int bsl_leak_tracking(void)
{
    bsl_ensure_init();
    return track_stopped() ? 0 : track_mode();
}
