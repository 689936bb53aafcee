/* The soft OOM report: who holds the memory, ranked like the OOM killer ranks processes.
 *
 * A site's badness is its share of the bytes over a limit (over a budget: the account's excess in
 * proportion to the site's live bytes in it; over a process limit: the excess in proportion to its
 * share of all tracked live bytes) plus its growth since the last report. Text goes to stderr or to
 * option oom_report's file (appended), a JSON line to FILE.json beside it. Reports are
 * rate-limited by oom_interval_ms; the ones held back are counted and the next report says so. */
#include "oom/oom_int.h"

#include <string.h>

#define OOM_REPORT_SITES 10

const char *oom_human(char *buf, size_t cap, double b)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    double v = b < 0 ? -b : b;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        os_snprintf(buf, cap, "%s%ld B", b < 0 ? "-" : "", (long)v);
    else
        os_snprintf(buf, cap, "%s%ld.%ld %s", b < 0 ? "-" : "", (long)v, (long)(v * 10) % 10, unit[u]);
    return buf;
}

struct ranked {
    uint32_t site;
    double badness, over, growth;
    int64_t bytes, blocks_fp;
};

static const char *kind_name(enum oom_kind k)
{
    return k == OOM_EV_BUDGET ? "budget"
           : k == OOM_EV_SOFT ? "soft_limit"
           : k == OOM_EV_HARD ? "hard_limit"
           : k == OOM_EV_NOMEM ? "no_memory"
                               : "request";
}

static const char *action_name(void)
{
    return oom_action == OOM_ACT_FAIL ? "fail" : oom_action == OOM_ACT_ABORT ? "abort" : "report";
}

/* Relative standard error of an estimate of B bytes sampled one per S bytes (small blocks):
 * sqrt(S / B), as a percentage. */
static double rel_err_pct(double S, double B)
{
    if (B <= 0)
        return 100;
    double x = S / B, r = x > 1 ? x : 1; /* sqrt by Newton's method: no libm */
    for (int i = 0; i < 40; i++)
        r = 0.5 * (r + x / r);
    return 100 * r;
}

/* Rank the sites (oom_policy_lock held). Returns how many went into top[]. */
static size_t rank_sites(const struct oom_trigger *t, struct ranked *top, size_t max, int64_t *tracked_total)
{
    uint32_t n = __atomic_load_n(&track_nsites, __ATOMIC_ACQUIRE);
    int64_t total = 0;
    for (uint32_t i = 1; i <= n; i++) {
        const struct track_site *s = track_site_get(i);
        if (s) {
            int64_t b = __atomic_load_n(&oom_site_of(s)->bytes, __ATOMIC_RELAXED);
            total += b > 0 ? b : 0;
        }
    }
    *tracked_total = total;
    double proc_over = 0;
    if (t->kind == OOM_EV_SOFT || t->kind == OOM_EV_HARD) {
        uint64_t c = oom_committed(), lim = t->kind == OOM_EV_HARD ? oom_hard : oom_soft;
        proc_over = c + t->request > lim ? (double)(c + t->request - lim) : 0;
    }
    int process_wide = t->kind != OOM_EV_BUDGET;
    size_t k = 0;
    for (uint32_t i = 1; i <= n; i++) {
        const struct track_site *s = track_site_get(i);
        if (!s)
            continue;
        const struct oom_site *o = oom_site_of(s);
        int64_t live = __atomic_load_n(&o->bytes, __ATOMIC_RELAXED);
        if (live <= 0)
            continue;
        double over = 0;
        unsigned acc[2] = {o->acct, track_site_label(s)};
        for (int j = 0; j < 2; j++) {
            const struct oom_acct *a = &oom_accts[acc[j]];
            int64_t ab = __atomic_load_n(&a->bytes, __ATOMIC_RELAXED);
            if (t->kind == OOM_EV_BUDGET && acc[j] == t->acct)
                ab += (int64_t)t->weight; /* the allocation that crosses it counts, as it is counted */
            if (acc[j] && a->budget && ab > (int64_t)a->budget && ab > 0)
                over += (double)(ab - (int64_t)a->budget) * (double)live / (double)ab;
        }
        if (proc_over > 0 && total > 0)
            over += proc_over * (double)live / (double)total;
        if (!process_wide && over <= 0)
            continue; /* a budget event lists the sites of over-budget accounts */
        double growth = (double)(live - o->reported);
        if (growth < 0)
            growth = 0;
        struct ranked r = {i, over + growth, over, growth, live, __atomic_load_n(&o->blocks_fp, __ATOMIC_RELAXED)};
        if (t->kind == OOM_EV_MANUAL || t->kind == OOM_EV_NOMEM)
            r.badness = over + (double)live + (t->kind == OOM_EV_NOMEM ? growth : 0); /* who holds the most */
        size_t p = k < max ? k++ : max;
        if (p == max) {
            if (r.badness <= top[max - 1].badness)
                continue;
            p = max - 1;
        }
        while (p > 0 && top[p - 1].badness < r.badness) {
            top[p] = top[p - 1];
            p--;
        }
        top[p] = r;
    }
    return k;
}

static void write_text(struct track_out *o, const struct oom_trigger *t, const struct ranked *top, size_t k,
                       int64_t tracked)
{
    long pid = os_getpid();
    char a[32], b[32], c[32], d[32], lab[OOM_NAME_MAX + 8];
    uint64_t committed = oom_committed();
    if (t->kind == OOM_EV_BUDGET) {
        const struct oom_acct *ac = &oom_accts[t->acct];
        oom_acct_label(lab, sizeof lab, ac);
        char w[64] = "";
        if (t->weight != t->request) /* a sampled allocation counts for its weight */
            os_snprintf(w, sizeof w, " (counted as %s: a sampled allocation)", oom_human(d, sizeof d, (double)t->weight));
        track_out_fmt(o, "==%ld== buddyslab soft OOM: budget '%s' crossed: %s live + %s requested%s > budget %s "
                      "(oom_action=%s)\n", pid, lab,
                   oom_human(a, sizeof a, (double)__atomic_load_n(&ac->bytes, __ATOMIC_RELAXED)),
                   oom_human(c, sizeof c, (double)t->request), w, oom_human(b, sizeof b, (double)ac->budget),
                   action_name());
    } else if (t->kind == OOM_EV_MANUAL) {
        track_out_fmt(o, "==%ld== buddyslab soft OOM report (on request)\n", pid);
    } else if (t->kind == OOM_EV_NOMEM) {
        track_out_fmt(o, "==%ld== buddyslab soft OOM: the system refused memory: %s requested with %s committed "
                      "(oom_action=%s; the allocation fails)\n", pid, oom_human(b, sizeof b, (double)t->request),
                   oom_human(a, sizeof a, (double)committed), action_name());
    } else {
        uint64_t lim = t->kind == OOM_EV_HARD ? oom_hard : oom_soft;
        track_out_fmt(o, "==%ld== buddyslab soft OOM: %s limit crossed: %s committed + %s requested > %s (oom_action=%s%s)\n",
                   pid, t->kind == OOM_EV_HARD ? "hard" : "soft", oom_human(a, sizeof a, (double)committed),
                   oom_human(b, sizeof b, (double)t->request), oom_human(c, sizeof c, (double)lim), action_name(),
                   t->kind == OOM_EV_HARD ? "; the allocation fails" : "");
    }
    if (t->kind == OOM_EV_NOMEM)
        track_out_fmt(o, "==%ld==   (names from the dynamic symbol table only: symbolizing needs memory)\n", pid);
    const char *verdict = t->kind == OOM_EV_NOMEM ? "not enough" : "still over";
    if (t->reclaimed == 1)
        track_out_fmt(o, "==%ld==   reclaimed first: %s returned to the OS, committed %s -> %s; %s\n", pid,
                   oom_human(a, sizeof a, (double)t->reclaimed_bytes), oom_human(b, sizeof b, (double)t->before),
                   oom_human(c, sizeof c, (double)t->after), verdict);
    else if (t->reclaimed == 2)
        track_out_fmt(o, "==%ld==   reclaimed %llu ms ago: %s returned to the OS, committed %s -> %s; %s\n", pid,
                   (unsigned long long)t->reclaim_age_ms, oom_human(a, sizeof a, (double)t->reclaimed_bytes),
                   oom_human(b, sizeof b, (double)t->before), oom_human(c, sizeof c, (double)t->after), verdict);
    track_out_fmt(o, "==%ld==   process: committed %s, soft limit %s, hard limit %s; tracked live %s", pid,
               oom_human(a, sizeof a, (double)committed), oom_soft ? oom_human(b, sizeof b, (double)oom_soft) : "none",
               oom_hard ? oom_human(c, sizeof c, (double)oom_hard) : "none", oom_human(d, sizeof d, (double)tracked));
    if (!track_mode())
        track_out_put(o, " (site tracking is unavailable: no sites can be named)\n");
    else if (track_sample_bytes)
        track_out_fmt(o, " (sampled: about one allocation per %s; a site's bytes are estimates, relative standard "
                      "error about sqrt(%s / bytes))\n", oom_human(a, sizeof a, (double)track_sample_bytes),
                   oom_human(b, sizeof b, (double)track_sample_bytes));
    else
        track_out_put(o, " (every allocation tracked: exact)\n");
    unsigned na = __atomic_load_n(&oom_naccts, __ATOMIC_ACQUIRE);
    for (unsigned i = 1; i < na; i++) {
        const struct oom_acct *ac = &oom_accts[i];
        int64_t by = __atomic_load_n(&ac->bytes, __ATOMIC_RELAXED);
        if (!ac->budget)
            continue;
        oom_acct_label(lab, sizeof lab, ac);
        track_out_fmt(o, "==%ld==   budget '%s': %s live of %s%s", pid, lab, oom_human(a, sizeof a, (double)by),
                   oom_human(b, sizeof b, (double)ac->budget), by > (int64_t)ac->budget ? " OVER" : "");
        if (ac->failed)
            track_out_fmt(o, ", %llu allocations refused", (unsigned long long)ac->failed);
        track_out_put(o, "\n");
    }
    if (oom_stats.suppressed)
        track_out_fmt(o, "==%ld==   (%llu events since the last report were not reported: oom_interval_ms=%ld)\n", pid,
                   (unsigned long long)oom_stats.suppressed, opt_oom_interval_ms);
    track_out_fmt(o, "==%ld== %zu site%s ranked by badness (share of the bytes over budget or limit + growth since the last "
                  "report):\n", pid, k, k == 1 ? "" : "s");
    for (size_t i = 0; i < k; i++) {
        const struct ranked *r = &top[i];
        const struct track_site *s = track_site_get(r->site);
        const struct oom_site *os = oom_site_of(s);
        track_out_fmt(o, "==%ld== #%zu badness %s: %s%s live in %s%llu blocks", pid, i + 1,
                   oom_human(a, sizeof a, r->badness), track_sample_bytes ? "about " : "",
                   oom_human(b, sizeof b, (double)r->bytes), track_sample_bytes ? "about " : "",
                   (unsigned long long)oom_blocks(r->blocks_fp));
        if (os->acct) {
            oom_acct_label(lab, sizeof lab, &oom_accts[os->acct]);
            track_out_fmt(o, ", budget %s ('%s')", oom_human(c, sizeof c, (double)oom_accts[os->acct].budget), lab);
        }
        unsigned tg = track_site_label(s);
        if (tg)
            track_out_fmt(o, ", tag %s%s%s", oom_accts[tg].name, oom_accts[tg].budget ? " budget " : "",
                       oom_accts[tg].budget ? oom_human(c, sizeof c, (double)oom_accts[tg].budget) : "");
        track_out_fmt(o, ", +%s since the last report", oom_human(d, sizeof d, r->growth));
        if (track_sample_bytes)
            track_out_fmt(o, " (an estimate: standard error at most about %ld%%)", (long)(rel_err_pct((double)track_sample_bytes, (double)r->bytes) + 0.5));
        track_out_put(o, "\n");
        track_write_frames(o, s, 0);
    }
    track_out_fmt(o, "==%ld==\n", pid);
}

static void write_json(struct track_out *o, const struct oom_trigger *t, const struct ranked *top, size_t k,
                       int64_t tracked)
{
    char lab[OOM_NAME_MAX + 8];
    track_out_fmt(o, "{\"tool\": \"buddyslab-oom\", \"format\": 1, \"pid\": %ld, \"time_ms\": %llu, \"event\": \"%s\"",
               os_getpid(), (unsigned long long)os_clock_ms(), kind_name(t->kind));
    if (t->kind == OOM_EV_BUDGET) {
        oom_acct_label(lab, sizeof lab, &oom_accts[t->acct]);
        track_out_put(o, ", \"budget\": ");
        track_out_json_str(o, lab);
    }
    track_out_fmt(o, ", \"action\": \"%s\", \"request\": %llu, \"request_weight\": %llu", action_name(),
                  (unsigned long long)t->request, (unsigned long long)t->weight);
    track_out_fmt(o, ", \"reclaim\": {\"ran\": %s, \"age_ms\": %llu, \"bytes\": %llu, \"committed_before\": %llu, "
                  "\"committed_after\": %llu}",
               t->reclaimed ? "true" : "false", (unsigned long long)t->reclaim_age_ms,
               (unsigned long long)t->reclaimed_bytes, (unsigned long long)t->before, (unsigned long long)t->after);
    track_out_fmt(o, ", \"process\": {\"committed\": %llu, \"soft_limit\": %llu, \"hard_limit\": %llu, \"tracked_live\": %lld}",
               (unsigned long long)oom_committed(), (unsigned long long)oom_soft, (unsigned long long)oom_hard,
               (long long)tracked);
    track_out_fmt(o, ", \"tracking\": \"%s\", \"sample_bytes\": %llu, \"suppressed\": %llu, \"budgets\": [",
               !track_mode() ? "off" : track_sample_bytes ? "sampled" : "full", (unsigned long long)track_sample_bytes,
               (unsigned long long)oom_stats.suppressed);
    unsigned na = __atomic_load_n(&oom_naccts, __ATOMIC_ACQUIRE), m = 0;
    for (unsigned i = 1; i < na; i++) {
        const struct oom_acct *ac = &oom_accts[i];
        if (!ac->budget && !ac->is_tag)
            continue;
        int64_t by = __atomic_load_n(&ac->bytes, __ATOMIC_RELAXED), bl = oom_acct_blocks_fp(i);
        oom_acct_label(lab, sizeof lab, ac);
        track_out_put(o, m++ ? ", {\"name\": " : "{\"name\": ");
        track_out_json_str(o, lab);
        track_out_fmt(o, ", \"tag\": %s, \"budget\": %llu, \"live_bytes\": %lld, \"live_blocks\": %lld, \"over\": %s, "
                      "\"failed\": %llu}", ac->is_tag ? "true" : "false", (unsigned long long)ac->budget, (long long)by,
                   (long long)oom_blocks(bl),
                   ac->budget && by > (int64_t)ac->budget ? "true" : "false", (unsigned long long)ac->failed);
    }
    track_out_put(o, "], \"sites\": [");
    for (size_t i = 0; i < k; i++) {
        const struct ranked *r = &top[i];
        const struct track_site *s = track_site_get(r->site);
        const struct oom_site *os = oom_site_of(s);
        track_out_fmt(o, "%s{\"rank\": %zu, \"site\": %u, \"badness\": %lld, \"over\": %lld, \"growth\": %lld, "
                      "\"live_bytes\": %lld, \"live_blocks\": %lld, \"budget\": ",
                   i ? ", " : "", i + 1, r->site, (long long)r->badness, (long long)r->over, (long long)r->growth,
                   (long long)r->bytes, (long long)oom_blocks(r->blocks_fp));
        if (os->acct) {
            oom_acct_label(lab, sizeof lab, &oom_accts[os->acct]);
            track_out_fmt(o, "%llu, \"budget_name\": ", (unsigned long long)oom_accts[os->acct].budget);
            track_out_json_str(o, lab);
        } else {
            track_out_put(o, "null, \"budget_name\": null");
        }
        track_out_put(o, ", \"tag\": ");
        if (track_site_label(s))
            track_out_json_str(o, oom_accts[track_site_label(s)].name);
        else
            track_out_put(o, "null");
        track_out_put(o, ", \"stack\": [");
        track_write_frames(o, s, 1);
        track_out_put(o, "]}");
    }
    track_out_put(o, "]}\n");
}

int oom_report_write(const struct oom_trigger *t, const char *path)
{
    if (!path)
        path = opt_oom_report;
    int g = track_guard;
    track_guard = 1;
    struct ranked top[OOM_REPORT_SITES];
    int64_t tracked = 0;
    size_t k = rank_sites(t, top, OOM_REPORT_SITES, &tracked);
    struct track_out *o = track_alloc(sizeof(struct track_out));
    if (!o) {
        os_printf(2, "buddyslab: soft OOM report: out of memory\n");
        track_guard = g;
        return -1;
    }
    int json;
    int lean = track_sym_lean;
    track_sym_lean = t->kind == OOM_EV_NOMEM; /* no libdw while memory is refused */
    o->fd = track_open_report(path, &json, "soft OOM report", 1);
    if (json) /* oom_report=FILE.json: JSON lines only */
        write_json(o, t, top, k, tracked);
    else
        write_text(o, t, top, k, tracked);
    track_out_flush(o);
    if (o->fd != 2)
        os_close(o->fd);
    if (path && *path && !json) { /* JSON beside the text file */
        char jp[300];
        os_snprintf(jp, sizeof jp, "%s.json", path);
        o->fd = track_open_report(jp, &json, "soft OOM report", 1);
        if (o->fd != 2) {
            write_json(o, t, top, k, tracked);
            track_out_flush(o);
            os_close(o->fd);
        }
    }
    track_free(o);
    track_sym_lean = lean;
    /* Growth is measured from here on. */
    uint32_t n = __atomic_load_n(&track_nsites, __ATOMIC_ACQUIRE);
    for (uint32_t i = 1; i <= n; i++) {
        const struct track_site *s = track_site_get(i);
        if (s)
            oom_site_of(s)->reported = __atomic_load_n(&oom_site_of(s)->bytes, __ATOMIC_RELAXED);
    }
    oom_stats.reports++;
    oom_stats.suppressed = 0;
    oom_stats.last_report_seq = ++oom_stats.seq;
    oom_stats.last_report_ms = os_now_ms();
    track_guard = g;
    return 0;
}

void oom_report_maybe(const struct oom_trigger *t, int force)
{
    uint64_t now = os_now_ms();
    if (!force && oom_stats.reports && now < oom_stats.last_report_ms + (uint64_t)opt_oom_interval_ms) {
        oom_stats.suppressed++;
        oom_stats.suppressed_total++;
        return;
    }
    oom_report_write(t, NULL);
}

int oom_report_now(const char *path)
{
    int held = oom_in_policy(); /* from the handler: the lock is this thread's already */
    if (!held)
        os_lock(&oom_policy_lock);
    struct oom_trigger t = {.kind = OOM_EV_MANUAL};
    int r = oom_report_write(&t, path);
    if (!held)
        os_unlock(&oom_policy_lock);
    return r;
}
