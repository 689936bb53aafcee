/* Soft OOM policy: the hooks layer's view of it (see docs/DESIGN.md, "Soft OOM policy").
 *
 * Budgets are accounts: a process-wide soft and hard limit on committed memory, pattern budgets
 * (every site with a frame whose function matches the pattern) and tag budgets (every block
 * allocated while the thread's current tag is that tag). A consumer of the tracking layer
 * (src/track/track.h): live bytes are charged per site through its accounting hooks (exactly when
 * tracking is full, as unbiased estimates when sampled) and summed per account. It knows nothing
 * of the leak report.
 *
 * Files: budget.c (accounts, tags, options, charging, admission), policy.c (reclaim, the handler,
 * actions, the process limits), report.c (the report). */
#ifndef BSL_OOM_H
#define BSL_OOM_H

#include <stddef.h>
#include <stdint.h>

#include "buddyslab.h"
#include "os/os.h"
#include "track/track.h"

/* A site's accounting, kept in the tracked site's consumer area (oom_site_of). Counters are updated
 * with atomics by any thread; `acct`/`gen` are written by whoever resolves the site first (a racy
 * but idempotent write: every resolver computes the same account for a generation). */
struct oom_site {
    int64_t bytes;     /* live bytes (estimated when sampled) */
    int64_t blocks_fp; /* live blocks << 16 (sampled blocks weigh a fraction of 1/p) */
    int64_t reported;  /* bytes at the last report: growth since then is part of the badness */
    uint32_t gen;      /* the budget generation `acct` was resolved in (0: never) */
    uint16_t acct;     /* pattern budget account (0: none) */
    uint16_t pad;
};

_Static_assert(sizeof(struct oom_site) <= TRACK_SITE_DATA, "struct oom_site must fit a site's consumer area");
static inline struct oom_site *oom_site_of(const struct track_site *s) { return (struct oom_site *)track_site_data(s); }

#define OOM_WEIGHT_SHIFT 16

/* Its options (the table in src/malloc/options.c points at them). */
BSL_HIDDEN extern long opt_soft_limit, opt_hard_limit, opt_oom_interval_ms, opt_oom_sample;
BSL_HIDDEN extern char opt_budget[4096], opt_oom_action[16], opt_oom_report[256];

/* Set at start (or by the first bsl_budget_set/bsl_tag_push): sites are charged. */
BSL_HIDDEN extern int oom_on;
/* A soft or hard limit is set: the allocation slow paths call oom_commit_check. */
BSL_HIDDEN extern int oom_limits_on;
/* The calling thread's current tag (an account index; 0: none). Part of a site's identity. */
BSL_HIDDEN extern __thread uint16_t oom_tag;
/* Per account (256): its allocations are tracked in full, sampling or not (a budget enforced
 * exactly, see budget.c). For a tag this needs no global switch: the thread knows its tag. */
BSL_HIDDEN extern uint8_t oom_forced[];
static inline int oom_force_here(void)
{
    return oom_tag && __atomic_load_n(&oom_forced[oom_tag], __ATOMIC_RELAXED);
}

/* At init, after oom_apply took in the options: 1 when the policy needs site tracking (a budget
 * or a limit is set). */
BSL_HIDDEN int oom_wants_tracking(void);
/* Option checks (options.c calls them on every value; one line naming the option when bad). */
BSL_HIDDEN int oom_budget_check(const char *val, size_t n);
BSL_HIDDEN int oom_action_check(const char *val, size_t n);
/* After options change (init, bsl_option_set): take in limits, budgets and the action. Does not
 * allocate (it may run under the init lock). */
BSL_HIDDEN void oom_apply(void);
/* Bytes per sample the policy wants from the tracker when options leak/leak_sample do not say. */
BSL_HIDDEN uint64_t oom_sample_bytes(void);

/* ---- the accounting hooks the tracker calls (struct track_accounting, registered when the policy
 * turns on; track_guard set, outside every allocator lock) ---- */
/* May a block of `size` bytes be allocated from site `s`? 0: yes; -1: no (oom_action=fail and
 * an account of the site is over budget, or the site is the soft limit's victim). Runs reclaim,
 * the handler and the report when an account crosses its budget. */
BSL_HIDDEN int oom_admit(const struct track_site *s, uint64_t size, int exact);
/* A tracked block of `size` bytes from site `s` was allocated (sign 1) or freed (sign -1).
 * exact: tracked outside sampling (weighs 1). */
BSL_HIDDEN void oom_charge(const struct track_site *s, uint64_t size, int sign, int exact);

/* ---- called by the public API's slow paths (outside every allocator lock) ---- */
/* About to commit up to n more bytes. 0: go on; -1: refuse (the hard limit, after reclaim and the
 * handler): the caller fails with ENOMEM. Over the soft limit: reclaim, then the policy. */
BSL_HIDDEN int oom_commit_check(size_t n);
/* The OS refused memory for an allocation of n bytes (the zones could not grow: their min
 * watermark, in this allocator's terms). Reclaims, then (with a limit or budget set) asks the
 * handler and reports. 1: something was freed, retry the allocation once; 0: fail with ENOMEM. */
BSL_HIDDEN int oom_alloc_failed(size_t n);
static inline int oom_commit_ok(size_t n)
{
    return likely(!oom_limits_on) || oom_commit_check(n) == 0;
}

/* ---- for the public API (src/malloc/oom_api.c) ---- */
/* "pattern" or "tag:NAME": set its budget (0: none). 0, or -1 with errno EINVAL or ENOSPC. */
BSL_HIDDEN int oom_budget_set(const char *pattern, uint64_t bytes);
/* The account named "pattern" or "tag:NAME" (0: none) and its figures. */
BSL_HIDDEN unsigned oom_acct_named(const char *name);
BSL_HIDDEN void oom_acct_info(unsigned acct, bsl_budget_info_t *out);
BSL_HIDDEN int oom_tag_push(const char *name);
BSL_HIDDEN int oom_tag_pop(void);
BSL_HIDDEN const char *oom_tag_name(void);
BSL_HIDDEN void oom_set_limits(uint64_t soft, uint64_t hard);
BSL_HIDDEN void oom_handler_set(bsl_oom_handler_fn fn, void *arg);
BSL_HIDDEN void oom_stats_get(bsl_oom_stats_t *out, int tracking);
/* The policy's section of the published statistics page (inside its seqlock write). */
struct bsl_shm_page;
BSL_HIDDEN void oom_publish(struct bsl_shm_page *pg);
/* The policy's section of the statistics (text, or a JSON member ',"oom":{...}'); nothing when
 * no limit or budget is set. */
BSL_HIDDEN void oom_print(int fd, int json);
/* Write a report now (path: NULL for option oom_report, "" for stderr). */
BSL_HIDDEN int oom_report_now(const char *path);
/* fork(): the policy lock, then the accounts' lock (their order everywhere: a policy evaluation
 * moves the victim under oom_acct_lock). */
BSL_HIDDEN void oom_fork_locks(os_lock_visit_fn visit);

#endif
