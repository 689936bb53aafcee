/* Soft OOM policy: what happens when a budget or a process limit is crossed.
 *
 * The kernel's order, inside the process: reclaim first (kswapd's job: flush this CPU's caches and
 * the transfer caches, release spare slabs and cached huge mappings, return every free dirty frame
 * to the OS), then the program's handler (it may free memory and ask for a retry), and only if still
 * over, oom_action: report, fail or abort.
 *
 * The process limits measure committed memory and are checked on the allocation slow paths
 * (refills of the per-CPU caches, large and huge blocks), where memory gets committed. The soft
 * limit is the zone's min watermark; its low watermark is soft - soft/8: above it, the slow paths
 * purge dirty frames in the background of normal allocation (rate-limited), like kswapd woken at
 * the low watermark, so that the min watermark is rarely reached by memory that is merely cached.
 *
 * Locking: oom_policy_lock serializes evaluations (reclaim, handler, report); it is taken outside
 * every allocator lock and with track_guard clear. oom_busy marks the thread inside an evaluation: its
 * own allocations (the handler's, the report's) are never refused and never start another one. */
#include "oom/oom_int.h"

#include "buddy/buddy.h"
#include "buddyslab_shm.h"
#include "slab/pcp.h"

#include <errno.h>

/* The policy's state. Under oom_policy_lock: handler, handler_arg, last_reclaim_ms (and
 * last_reclaim below), soft_backoff_ms, and oom_stats except `failed` (an atomic: refusals are
 * counted outside the lock). Read and written with relaxed atomics, outside the lock, by the
 * checks on the allocation paths: soft_over, soft_next_ms, last_bg_ms (the background purge takes
 * the lock with a trylock). oom_victim and victim_forced change under oom_acct_lock (they move
 * track_force_add); oom_victim is read without it. oom_busy: this thread is evaluating an event. */
os_lock_t oom_policy_lock = OS_LOCK_INIT(LOCK_RANK_OOM_POLICY);
uint32_t oom_victim;
struct oom_stats_counters oom_stats;
static __thread int oom_busy;
static bsl_oom_handler_fn handler;
static void *handler_arg;
static uint64_t last_reclaim_ms, last_bg_ms, soft_next_ms;
static uint32_t soft_backoff_ms;
static int soft_over;

/* The next re-evaluation of something found still over: 10 ms, doubling each time it is still over
 * (up to 1 s), so that a program living above a soft limit or budget under oom_action=report is
 * not reclaimed from every few milliseconds; back to 10 ms once it is under. */
static uint64_t backoff(uint32_t *ms, int over, uint64_t now)
{
    uint32_t b = *ms;
    b = !over || !b ? OOM_REEVAL_MS : b * 2 > OOM_REEVAL_MAX_MS ? OOM_REEVAL_MAX_MS : b * 2;
    *ms = b;
    return now + b;
}

uint64_t oom_committed(void) { return (uint64_t)buddy_committed_bytes() + (uint64_t)huge_live_bytes(); }

BSL_RARE void oom_watermarks(void)
{
    uint64_t lim = oom_soft ? oom_soft : oom_hard;
    zones_cap_dirty((size_t)(lim / 8));
}

void oom_set_limits(uint64_t soft, uint64_t hard)
{
    oom_soft = soft;
    oom_hard = hard;
    oom_watermarks();
    __atomic_store_n(&oom_limits_on, soft || hard, __ATOMIC_RELEASE);
    if (soft || hard)
        oom_turn_on();
}

int oom_in_policy(void) { return oom_busy; }

void oom_handler_set(bsl_oom_handler_fn fn, void *arg)
{
    int held = oom_busy; /* called from the handler: this thread holds the policy lock */
    if (!held)
        os_lock(&oom_policy_lock);
    handler = fn;
    handler_arg = arg;
    if (!held)
        os_unlock(&oom_policy_lock);
}

/* Direct reclaim (oom_policy_lock held). For a budget or the soft limit at most once per
 * OOM_REEVAL_MS: a program hovering there would otherwise purge on every slow path (t->reclaimed
 * says whether this event ran one). Before failing an allocation at the hard limit, always. */
static struct oom_trigger last_reclaim; /* its figures, for an event that reuses it */

static void reclaim(struct oom_trigger *t, uint64_t now)
{
    t->before = oom_committed();
    t->after = t->before;
    if (t->kind != OOM_EV_HARD && t->kind != OOM_EV_NOMEM && last_reclaim_ms && now < last_reclaim_ms + OOM_REEVAL_MS) {
        t->reclaimed = 2; /* a moment ago */
        t->reclaim_age_ms = now - last_reclaim_ms;
        t->before = last_reclaim.before;
        t->after = last_reclaim.after;
        t->reclaimed_bytes = last_reclaim.reclaimed_bytes;
        return;
    }
    last_reclaim_ms = now;
    size_t purged = slab_reclaim(now);
    t->after = oom_committed();
    t->reclaimed = 1;
    t->reclaimed_bytes = purged;
    oom_stats.reclaims++;
    oom_stats.reclaimed_bytes += t->before > t->after ? t->before - t->after : 0;
    oom_stats.last_reclaim_seq = ++oom_stats.seq;
    last_reclaim = *t;
}

static int call_handler(const struct oom_trigger *t, uint64_t live, uint64_t limit)
{
    if (!handler)
        return BSL_OOM_CONTINUE;
    bsl_oom_event ev = {
        .kind = t->kind == OOM_EV_BUDGET ? BSL_OOM_BUDGET
                : t->kind == OOM_EV_SOFT ? BSL_OOM_SOFT_LIMIT
                : t->kind == OOM_EV_HARD ? BSL_OOM_HARD_LIMIT
                                         : BSL_OOM_NO_MEMORY,
        .budget = NULL,
        .live = (size_t)live,
        .limit = (size_t)limit,
        .request = (size_t)t->request,
    };
    char name[OOM_NAME_MAX + 8];
    if (t->kind == OOM_EV_BUDGET)
        ev.budget = oom_acct_label(name, sizeof(name), &oom_accts[t->acct]);
    oom_stats.handler_calls++;
    int saved = errno;
    int r = handler(&ev, handler_arg);
    errno = saved;
    return r;
}

static __attribute__((noreturn)) void oom_abort(const struct oom_trigger *t)
{
    char a[32], b[32];
    if (t->kind == OOM_EV_BUDGET) {
        const struct oom_acct *ac = &oom_accts[t->acct];
        char c[32], d[32], w[64] = "";
        if (t->weight != t->request)
            os_snprintf(w, sizeof w, " (counted as %s: a sampled allocation)", oom_human(d, sizeof d, (double)t->weight));
        os_printf(2, "buddyslab: soft OOM: %s '%s' over budget (%s live + %s requested%s > %s budget): aborting "
                     "(oom_action=abort)\n", ac->is_tag ? "tag" : "budget", ac->name,
                  oom_human(a, sizeof a, (double)__atomic_load_n(&ac->bytes, __ATOMIC_RELAXED)),
                  oom_human(c, sizeof c, (double)t->request), w, oom_human(b, sizeof b, (double)ac->budget));
    } else if (t->kind == OOM_EV_NOMEM) {
        os_printf(2, "buddyslab: soft OOM: the system refused memory for %s (%s committed): aborting "
                     "(oom_action=abort)\n", oom_human(a, sizeof a, (double)t->request),
                  oom_human(b, sizeof b, (double)oom_committed()));
    } else {
        os_printf(2, "buddyslab: soft OOM: %s limit crossed (%s committed > %s): aborting (oom_action=abort)\n",
                  t->kind == OOM_EV_HARD ? "hard" : "soft", oom_human(a, sizeof a, (double)oom_committed()),
                  oom_human(b, sizeof b, (double)(t->kind == OOM_EV_HARD ? oom_hard : oom_soft)));
    }
    os_abort();
}

/* An evaluation (reclaim, handler, report) runs under the policy lock, with the tracker's guard
 * clear (the handler's and the report's allocations are the program's) and the thread marked busy
 * (they are never refused and start no evaluation of their own). Returns the guard to restore. */
static int policy_enter(void)
{
    int g = track_guard;
    track_guard = 0;
    oom_busy = 1;
    os_lock(&oom_policy_lock);
    return g;
}

static void policy_leave(int g)
{
    os_unlock(&oom_policy_lock);
    oom_busy = 0;
    track_guard = g;
}

/* Still over after reclaim and the handler (policy lock held): count the event, report it
 * (always under oom_action=abort), and abort when that is the action. */
static void still_over(const struct oom_trigger *t)
{
    oom_stats.events++;
    oom_report_maybe(t, oom_action == OOM_ACT_ABORT);
    if (oom_action == OOM_ACT_ABORT)
        oom_abort(t);
}

/* An allocation refused (of account ac, or NULL for a process-wide reason): count it. */
static int refuse(struct oom_acct *ac)
{
    if (ac)
        __atomic_fetch_add(&ac->failed, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&oom_stats.failed, 1, __ATOMIC_RELAXED);
    return -1;
}

int oom_over_budget(const struct track_site *s, unsigned acct, int64_t w, uint64_t size)
{
    (void)s;
    if (oom_busy)
        return 0;
    struct oom_acct *ac = &oom_accts[acct];
    uint64_t now = os_now_ms();
    /* Evaluated a moment ago and found over: reuse that decision (no reclaim storm). */
    if (__atomic_load_n(&ac->over, __ATOMIC_RELAXED) && now < __atomic_load_n(&ac->next_ms, __ATOMIC_RELAXED))
        return oom_action == OOM_ACT_FAIL ? refuse(ac) : 0;
    int g = policy_enter();
    struct oom_trigger t = {.kind = OOM_EV_BUDGET, .acct = acct, .request = size, .weight = (uint64_t)w};
    reclaim(&t, now);
    int over = oom_acct_would_cross(acct, w);
    if (over && call_handler(&t, (uint64_t)__atomic_load_n(&ac->bytes, __ATOMIC_RELAXED), ac->budget) == BSL_OOM_RETRY) {
        over = oom_acct_would_cross(acct, w);
        oom_stats.handler_recovered += !over;
    }
    __atomic_store_n(&ac->next_ms, backoff(&ac->backoff_ms, over, now), __ATOMIC_RELAXED);
    __atomic_store_n(&ac->over, over, __ATOMIC_RELAXED);
    if (over)
        still_over(&t);
    policy_leave(g);
    return over && oom_action == OOM_ACT_FAIL ? refuse(ac) : 0;
}

/* The OOM killer's choice, inside the process: the site with the most live bytes plus growth
 * since the last report (oom_policy_lock held). */
static uint32_t pick_victim(void)
{
    uint32_t n = __atomic_load_n(&track_nsites, __ATOMIC_ACQUIRE), best = 0;
    int64_t best_b = 0;
    for (uint32_t i = 1; i <= n; i++) {
        const struct track_site *s = track_site_get(i);
        if (!s)
            continue;
        const struct oom_site *o = oom_site_of(s);
        int64_t live = __atomic_load_n(&o->bytes, __ATOMIC_RELAXED), g = live - o->reported;
        int64_t bad = live + (g > 0 ? g : 0);
        if (bad > best_b) {
            best_b = bad;
            best = i;
        }
    }
    return best;
}

/* A victim under sampled tracking: sampling is suspended (track_force_add) while it is chosen, so that
 * every one of its allocations is seen and refused, not only the sampled ones. */
static int victim_forced;

static void victim_set(uint32_t site)
{
    os_lock(&oom_acct_lock);
    __atomic_store_n(&oom_victim, site, __ATOMIC_RELAXED);
    int want = site && track_sample_bytes;
    if (want != victim_forced) {
        victim_forced = want;
        if (want)
            track_force_add(1);
        else
            track_force_add(-1);
    }
    os_unlock(&oom_acct_lock);
}

int oom_victim_admit(void)
{
    if (oom_busy || !oom_soft || oom_committed() <= oom_soft) {
        victim_set(0);
        return 0;
    }
    return oom_action == OOM_ACT_FAIL ? refuse(NULL) : 0;
}

/* Over a process limit (the slow path of oom_commit_check). Returns 0 or -1 (hard limit: refuse). */
static __attribute__((noinline)) int limit_event(enum oom_kind kind, size_t n, uint64_t now)
{
    uint64_t limit = kind == OOM_EV_HARD ? oom_hard : oom_soft;
    if (kind == OOM_EV_SOFT && __atomic_load_n(&soft_over, __ATOMIC_RELAXED) &&
        now < __atomic_load_n(&soft_next_ms, __ATOMIC_RELAXED))
        return 0; /* decided a moment ago: the victim (if any) is already failing */
    int g = policy_enter();
    struct oom_trigger t = {.kind = kind, .request = n, .weight = n};
    reclaim(&t, now);
    int over = oom_committed() + n > limit;
    if (over && call_handler(&t, oom_committed(), limit) == BSL_OOM_RETRY) {
        over = oom_committed() + n > limit;
        oom_stats.handler_recovered += !over;
    }
    if (kind == OOM_EV_SOFT) {
        __atomic_store_n(&soft_next_ms, backoff(&soft_backoff_ms, over, now), __ATOMIC_RELAXED);
        __atomic_store_n(&soft_over, over, __ATOMIC_RELAXED);
    }
    if (over) {
        if (kind == OOM_EV_SOFT && oom_action == OOM_ACT_FAIL)
            victim_set(pick_victim());
        still_over(&t);
    }
    policy_leave(g);
    return over && kind == OOM_EV_HARD ? refuse(NULL) : 0;
}

int oom_alloc_failed(size_t n)
{
    if (oom_busy || track_guard)
        return 0;
    int g = policy_enter();
    struct oom_trigger t = {.kind = OOM_EV_NOMEM, .request = n, .weight = n};
    /* The buddy order the request needs (n <= 4 MiB), to tell whether reclaim made room for it. */
    int order = n > MAX_ORDER_BYTES ? -1
                : n <= SLAB_MAX_SIZE ? (int)kmem_caches[ZONE_NORMAL][slab_class_of(n ? n : 1)].order
                                     : (int)order_for_pages((n + PAGE_SIZE - 1) >> PAGE_SHIFT);
    int fit_before = order >= 0 && buddy_can_serve(ZONE_NORMAL, (unsigned)order);
    reclaim(&t, os_now_ms());
    /* Retry when reclaim released at least the request, or when it made a free block big enough
     * for it where there was none: under RLIMIT_AS the address space is what runs out, and
     * emptying the caches lets the free blocks around their slabs coalesce (tests/exhaust: after a
     * fill of 3 MiB blocks, 48 B objects left in the caches pinned 9 of 57 pageblocks). */
    int retry = (t.before > t.after && t.before - t.after >= n) ||
                (order >= 0 && !fit_before && buddy_can_serve(ZONE_NORMAL, (unsigned)order));
    int policy = __atomic_load_n(&oom_on, __ATOMIC_ACQUIRE);
    if (!retry && policy && call_handler(&t, oom_committed(), 0) == BSL_OOM_RETRY) {
        retry = 1;
        oom_stats.handler_recovered++;
    }
    if (!retry && policy)
        still_over(&t);
    policy_leave(g);
    return retry;
}

int oom_commit_check(size_t n)
{
    if (oom_busy || track_guard)
        return 0; /* the policy's or the tracker's own allocations */
    uint64_t c = oom_committed();
    uint64_t hard = oom_hard, soft = oom_soft;
    if (hard && c + n > hard)
        return limit_event(OOM_EV_HARD, n, os_now_ms());
    if (!soft)
        return 0;
    if (c + n > soft)
        return limit_event(OOM_EV_SOFT, n, os_now_ms());
    if (__atomic_load_n(&soft_over, __ATOMIC_RELAXED))
        __atomic_store_n(&soft_over, 0, __ATOMIC_RELAXED);
    if (unlikely(__atomic_load_n(&oom_victim, __ATOMIC_RELAXED)))
        victim_set(0); /* back under the soft limit */
    if (c + n > soft - soft / 8) { /* past the low watermark: purge dirty frames, kswapd-style */
        uint64_t now = os_now_ms();
        if (now >= __atomic_load_n(&last_bg_ms, __ATOMIC_RELAXED) + OOM_REEVAL_MS && os_trylock(&oom_policy_lock)) {
            __atomic_store_n(&last_bg_ms, now, __ATOMIC_RELAXED);
            buddy_purge(0);
            oom_stats.background_reclaims++;
            os_unlock(&oom_policy_lock);
        }
    }
    return 0;
}

void oom_acct_info(unsigned acct, bsl_budget_info_t *out)
{
    const struct oom_acct *a = &oom_accts[acct];
    int64_t b = __atomic_load_n(&a->bytes, __ATOMIC_RELAXED), k = oom_acct_blocks_fp(acct);
    out->budget = (size_t)a->budget;
    out->live_bytes = b > 0 ? (size_t)b : 0;
    out->live_blocks = k > 0 ? (size_t)oom_blocks(k) : 0;
    out->failed = __atomic_load_n(&a->failed, __ATOMIC_RELAXED);
    out->over = a->budget && b > (int64_t)a->budget;
}

void oom_stats_get(bsl_oom_stats_t *out, int tracking)
{
    out->events = oom_stats.events;
    out->reclaims = oom_stats.reclaims;
    out->reclaimed_bytes = oom_stats.reclaimed_bytes;
    out->background_reclaims = oom_stats.background_reclaims;
    out->reports = oom_stats.reports;
    out->reports_suppressed = oom_stats.suppressed_total;
    out->failed = __atomic_load_n(&oom_stats.failed, __ATOMIC_RELAXED);
    out->handler_calls = oom_stats.handler_calls;
    out->handler_recovered = oom_stats.handler_recovered;
    out->last_reclaim_seq = oom_stats.last_reclaim_seq;
    out->last_report_seq = oom_stats.last_report_seq;
    out->committed = (size_t)oom_committed();
    out->soft_limit = (size_t)oom_soft;
    out->hard_limit = (size_t)oom_hard;
    out->tracking = tracking;
    out->sample_bytes = tracking == 2 ? (size_t)track_sample_bytes : 0;
}

void oom_fork_locks(os_lock_visit_fn visit)
{
    visit(&oom_policy_lock);
    visit(&oom_acct_lock);
}

/* The policy's part of bsl_stats_print / bsl_stats_print_json (nothing when no limit or budget). */
void oom_print(int fd, int json)
{
    if (!__atomic_load_n(&oom_on, __ATOMIC_ACQUIRE))
        return;
    bsl_oom_stats_t st;
    oom_stats_get(&st, track_mode());
    static const char *const act[] = {"report", "fail", "abort"};
    char a[32], b[32], c[32];
    if (json)
        os_printf(fd, ",\"oom\":{\"soft_limit\":%zu,\"hard_limit\":%zu,\"committed\":%zu,\"action\":\"%s\","
                      "\"events\":%llu,\"reclaims\":%llu,\"reclaimed\":%llu,\"background_reclaims\":%llu,"
                      "\"reports\":%llu,\"reports_suppressed\":%llu,\"failed\":%llu,\"handler_calls\":%llu,"
                      "\"budgets\":[",
                  st.soft_limit, st.hard_limit, st.committed, act[oom_action], (unsigned long long)st.events,
                  (unsigned long long)st.reclaims, (unsigned long long)st.reclaimed_bytes,
                  (unsigned long long)st.background_reclaims, (unsigned long long)st.reports,
                  (unsigned long long)st.reports_suppressed, (unsigned long long)st.failed,
                  (unsigned long long)st.handler_calls);
    else
        os_printf(fd, "--- soft OOM ---\nsoft limit %s  hard limit %s  committed %s  action %s  tracking %s\n"
                      "events %llu  reclaims %llu (%llu KiB)  background reclaims %llu  reports %llu (%llu held back)  "
                      "refused %llu  handler calls %llu\n",
                  st.soft_limit ? oom_human(a, sizeof a, (double)st.soft_limit) : "none",
                  st.hard_limit ? oom_human(b, sizeof b, (double)st.hard_limit) : "none",
                  oom_human(c, sizeof c, (double)st.committed), act[oom_action],
                  st.tracking == 1 ? "full" : st.tracking == 2 ? "sampled" : "off", (unsigned long long)st.events,
                  (unsigned long long)st.reclaims, (unsigned long long)(st.reclaimed_bytes >> 10),
                  (unsigned long long)st.background_reclaims, (unsigned long long)st.reports,
                  (unsigned long long)st.reports_suppressed, (unsigned long long)st.failed,
                  (unsigned long long)st.handler_calls);
    unsigned na = __atomic_load_n(&oom_naccts, __ATOMIC_ACQUIRE);
    for (unsigned i = 1, k = 0; i < na; i++) {
        bsl_budget_info_t bi;
        oom_acct_info(i, &bi);
        const struct oom_acct *ac = &oom_accts[i];
        char lab[OOM_NAME_MAX + 8];
        if (json)
            os_printf(fd, "%s{\"name\":\"%s\",\"budget\":%zu,\"live_bytes\":%zu,\"live_blocks\":%zu,\"failed\":%llu,"
                          "\"over\":%s}", k++ ? "," : "", oom_acct_label(lab, sizeof lab, ac), bi.budget,
                      bi.live_bytes, bi.live_blocks, (unsigned long long)bi.failed, bi.over ? "true" : "false");
        else
            os_printf(fd, "%s '%s': %s live in %zu blocks, budget %s%s, %llu refused\n", ac->is_tag ? "tag" : "budget",
                      ac->name, oom_human(a, sizeof a, (double)bi.live_bytes), bi.live_blocks,
                      bi.budget ? oom_human(b, sizeof b, (double)bi.budget) : "none", bi.over ? " (OVER)" : "",
                      (unsigned long long)bi.failed);
    }
    if (json)
        os_printf(fd, "]}");
}

void oom_publish(struct bsl_shm_page *pg)
{
    bsl_oom_stats_t st;
    oom_stats_get(&st, track_mode());
    pg->soft_limit = st.soft_limit;
    pg->hard_limit = st.hard_limit;
    pg->oom_events = st.events;
    pg->oom_reclaims = st.reclaims;
    pg->oom_reports = st.reports;
    pg->oom_failed = st.failed;
    pg->oom_tracking = (uint32_t)st.tracking;
    unsigned na = __atomic_load_n(&oom_naccts, __ATOMIC_ACQUIRE), k = 0;
    for (unsigned i = 1; i < na && k < BSL_SHM_BUDGETS; i++, k++) {
        const struct oom_acct *ac = &oom_accts[i];
        struct bsl_shm_budget *b = &pg->budgets[k];
        int64_t live = __atomic_load_n(&ac->bytes, __ATOMIC_RELAXED);
        oom_acct_label(b->name, sizeof(b->name), ac);
        b->budget = ac->budget;
        b->live = live > 0 ? (uint64_t)live : 0;
        b->failed = __atomic_load_n(&ac->failed, __ATOMIC_RELAXED);
    }
    pg->nbudgets = k;
}
