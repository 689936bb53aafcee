/* Soft OOM policy internals shared by its files (budget.c, policy.c, report.c). */
#ifndef BSL_OOM_INT_H
#define BSL_OOM_INT_H

#include "buddyslab.h"
#include "track/track.h"
#include "oom/oom.h"

#define OOM_MAX_ACCTS 256 /* pattern and tag accounts together; index 0 means "none" */
#define OOM_NAME_MAX 64
#define OOM_TAG_DEPTH 16  /* nested bsl_tag_push per thread */
#define OOM_REEVAL_MS 10  /* while over: a decision is reused this long before reclaiming again, */
#define OOM_REEVAL_MAX_MS 1000 /* doubling per evaluation that finds it still over, up to this */

/* An account: a pattern budget (every site with a frame whose function matches `name`) or a tag
 * (every block allocated while the thread's current tag was `name`).
 *
 * Locking: accounts are created under oom_acct_lock and never removed; `name` and `is_tag` are
 * written before oom_naccts is raised (release), so readers scan 1 .. oom_naccts without a lock.
 * `budget` changes under the lock (a racy read sees the old or the new value). `bytes` is an
 * atomic (admission reads it on every tracked allocation; an account's blocks are summed from its
 * sites when asked: one atomic fewer per malloc and free); `over`, `next_ms` and `reported` are written under oom_policy_lock. */
struct oom_acct {
    char name[OOM_NAME_MAX];
    const char *lit;          /* tags: the last name pointer bsl_tag_push saw (a fast pointer match) */
    uint8_t is_tag;
    uint64_t budget;          /* bytes; 0: none (accounting only) */
    int64_t bytes;            /* live, summed over the account's sites */
    int64_t reported;         /* bytes at the last report */
    uint64_t next_ms;         /* while over: when to re-evaluate */
    uint32_t backoff_ms;      /* the current re-evaluation interval (see OOM_REEVAL_MAX_MS) */
    int over;                 /* over budget at the last evaluation (after reclaim and the handler) */
    uint64_t failed;          /* allocations refused (oom_action=fail) */
};
BSL_HIDDEN extern struct oom_acct oom_accts[OOM_MAX_ACCTS];
BSL_HIDDEN extern unsigned oom_naccts;  /* accounts 1 .. oom_naccts - 1 exist */
BSL_HIDDEN extern uint32_t oom_gen;     /* bumped when pattern budgets change: sites re-resolve */
BSL_HIDDEN extern os_lock_t oom_acct_lock;
/* Set oom_on and register the accounting hooks with the tracker (idempotent). */
BSL_HIDDEN void oom_turn_on(void);

enum oom_action { OOM_ACT_REPORT, OOM_ACT_FAIL, OOM_ACT_ABORT };
BSL_HIDDEN extern int oom_action;
BSL_HIDDEN extern uint64_t oom_soft, oom_hard; /* process limits on committed bytes (0: none) */
BSL_HIDDEN extern uint32_t oom_victim;         /* soft limit with fail: the site whose allocations fail */

/* One site's live bytes as the account sees them: a tracked block of `size` bytes stands for
 * *bytes bytes and *blocks_fp blocks << OOM_WEIGHT_SHIFT. */
BSL_HIDDEN void oom_weight(uint64_t size, int exact, int64_t *bytes, int64_t *blocks_fp);
/* Would w more bytes take account a past its budget? (0 for an account without one.) */
static inline int oom_acct_would_cross(unsigned a, int64_t w)
{
    uint64_t b = __atomic_load_n(&oom_accts[a].budget, __ATOMIC_RELAXED);
    return b && __atomic_load_n(&oom_accts[a].bytes, __ATOMIC_RELAXED) + w > (int64_t)b;
}
/* A fixed-point block count (<< OOM_WEIGHT_SHIFT), rounded to blocks. */
static inline int64_t oom_blocks(int64_t fp) { return (fp + (1 << (OOM_WEIGHT_SHIFT - 1))) >> OOM_WEIGHT_SHIFT; }
/* An account's name as users write it: "PATTERN" or "tag:NAME". */
static inline const char *oom_acct_label(char *buf, size_t cap, const struct oom_acct *a)
{
    os_snprintf(buf, cap, "%s%s", a->is_tag ? "tag:" : "", a->name);
    return buf;
}
/* Live blocks << OOM_WEIGHT_SHIFT of account a, summed over its sites (a walk of the site table). */
BSL_HIDDEN int64_t oom_acct_blocks_fp(unsigned a);
/* Allocated + cached + dirty: what the process limits measure (racy sums, no lock). */
BSL_HIDDEN uint64_t oom_committed(void);

/* ---- policy.c ---- */
enum oom_kind { OOM_EV_BUDGET = 1, OOM_EV_SOFT = 2, OOM_EV_HARD = 3, OOM_EV_MANUAL = 4, OOM_EV_NOMEM = 5 };
struct oom_trigger {
    enum oom_kind kind;
    unsigned acct;              /* OOM_EV_BUDGET: the account that crossed */
    uint64_t request;           /* bytes the program asked for */
    uint64_t weight;            /* what the allocation adds to its account: request when tracked exactly,
                                 * a sampled block's estimate (request / p, track_weigh) otherwise */
    int reclaimed;              /* 1: a reclaim ran for this event; 2: one ran reclaim_age_ms ago */
    uint64_t reclaim_age_ms;
    uint64_t before, after;     /* committed bytes around that reclaim */
    uint64_t reclaimed_bytes;   /* returned to the OS by it */
};
BSL_HIDDEN extern os_lock_t oom_policy_lock;
/* 1 in a thread evaluating an event (it holds oom_policy_lock: the handler runs there). */
BSL_HIDDEN int oom_in_policy(void);
/* An account of site s would go over budget with w more bytes (called from oom_admit): an
 * allocation of `size` bytes that weighs w (its sampling weight, = size when exact). */
BSL_HIDDEN int oom_over_budget(const struct track_site *s, unsigned acct, int64_t w, uint64_t size);
/* The victim site asks to allocate: 0 when the process is back under the soft limit. */
BSL_HIDDEN int oom_victim_admit(void);
/* The zones' dirty-frame watermarks follow the process limits (zones_cap_dirty at 1/8). */
BSL_HIDDEN void oom_watermarks(void);

/* ---- report.c ---- */
struct oom_stats_counters {
    uint64_t events, reclaims, reclaimed_bytes, background_reclaims, reports, suppressed, suppressed_total, failed;
    uint64_t handler_calls, handler_recovered, seq, last_reclaim_seq, last_report_seq, last_report_ms;
};
BSL_HIDDEN extern struct oom_stats_counters oom_stats;
/* Write a report about trigger t (with oom_policy_lock held; sets track_guard itself) to path (NULL:
 * option oom_report; "": stderr). Returns 0, or -1 when no site could be listed. */
BSL_HIDDEN int oom_report_write(const struct oom_trigger *t, const char *path);
/* Rate-limited: a report when the last one is older than oom_interval_ms, else counted. */
BSL_HIDDEN void oom_report_maybe(const struct oom_trigger *t, int force);
/* Human units: "64.0 MiB". */
BSL_HIDDEN const char *oom_human(char *buf, size_t cap, double bytes);

#endif
