/* The leak report: records per (site, kind), suppressions, text and JSON output. Symbols come
 * from syms.c. Everything that may call malloc here runs with track_guard set (the report's caller
 * sets it). */
#include "leakcheck/leak_int.h"

#include <string.h>

/* ---- suppressions: "leak:PATTERN" lines, '*' wildcards, '^' / '$' anchors (LSan's rules) ---- */
struct supp {
    const char *pat;
    uint64_t hits, bytes;
};
static struct supp *supps;
static size_t nsupps;

static int supp_loaded;
static void supp_load(void)
{
    for (size_t i = 0; i < nsupps; i++)
        supps[i].hits = supps[i].bytes = 0;
    if (supp_loaded)
        return;
    supp_loaded = 1;
    if (!opt_leak_suppressions[0])
        return;
    size_t len;
    char *buf = track_read_file(opt_leak_suppressions, &len);
    if (!buf) {
        os_printf(2, "buddyslab: leak_suppressions: cannot read '%s'\n", opt_leak_suppressions);
        return;
    }
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    supps = track_alloc(lines * sizeof(struct supp));
    char *p = buf;
    while (supps && *p) {
        char *e = p;
        while (*e && *e != '\n')
            e++;
        char *q = p, *qe = e;
        while (q < qe && (*q == ' ' || *q == '\t'))
            q++;
        while (qe > q && (qe[-1] == ' ' || qe[-1] == '\t' || qe[-1] == '\r'))
            qe--;
        if (qe > q && *q != '#') {
            if (qe - q > 5 && strncmp(q, "leak:", 5) == 0 && qe - q > 5)
                supps[nsupps++].pat = track_str_dup_n(q + 5, (size_t)(qe - q - 5));
            else
                os_printf(2, "buddyslab: leak_suppressions: ignoring a line that is not 'leak:PATTERN'\n");
        }
        p = *e ? e + 1 : e;
    }
    track_free(buf);
}

/* The first pattern matching a frame of the site (function, file, or module), or -1. */
static long site_suppressed(const struct track_site *site)
{
    if (!nsupps || !site)
        return -1;
    const uintptr_t *fr;
    unsigned d = track_site_frames(site, &fr);
    for (unsigned k = 0; k < d; k++) {
        const struct track_sym *s = track_sym_get(fr[k]);
        const char *base = s->module ? strrchr(s->module, '/') : NULL;
        for (size_t i = 0; i < nsupps; i++)
            if (track_tmatch(supps[i].pat, s->func) || track_tmatch(supps[i].pat, s->file) || track_tmatch(supps[i].pat, s->module) ||
                (base && track_tmatch(supps[i].pat, base + 1)))
                return (long)i;
    }
    return -1;
}

/* ---- records ---- */
enum { K_DEFINITE = 0, K_INDIRECT = 1, K_REACHABLE = 2 };
static const char *const kind_text[3] = {"definitely lost", "indirectly lost", "still reachable"};
static const char *const kind_json[3] = {"definitely_lost", "indirectly_lost", "still_reachable"};

struct agg {
    uint64_t bytes, blocks;       /* tracked (sampled) blocks */
    double est_bytes, est_blocks; /* estimated for the whole program (= the above when not sampling) */
    uint64_t ind_bytes, ind_blocks; /* K_DEFINITE: indirectly lost blocks its blocks hold */
    double ind_est_bytes;
};
struct rec {
    uint32_t site;
    uint8_t kind;
    struct agg a;
};
struct totals {
    struct agg k[3], suppressed;
};

static void agg_add(struct agg *a, uint64_t size, int exact)
{
    double wb, wy;
    track_weigh(size, exact, &wb, &wy);
    a->bytes += size;
    a->blocks++;
    a->est_bytes += wy;
    a->est_blocks += wb;
}

static int is_supp(uint32_t site, int8_t *supp_of, long *supp_idx)
{
    if (!supp_of[site]) {
        supp_idx[site] = site_suppressed(track_site_get(site));
        supp_of[site] = supp_idx[site] >= 0 ? 2 : 1;
    }
    return supp_of[site] == 2;
}

static int rec_before(const struct rec *x, const struct rec *y)
{
    if (x->kind != y->kind)
        return x->kind < y->kind;
    if (x->a.est_bytes != y->a.est_bytes)
        return x->a.est_bytes > y->a.est_bytes;
    return x->site < y->site;
}

static void recs_sort(struct rec *r, size_t n)
{
    /* heapsort: no recursion, no allocation */
    for (size_t i = n / 2; i-- > 0;) {
        size_t k = i;
        for (;;) {
            size_t c = 2 * k + 1;
            if (c >= n)
                break;
            if (c + 1 < n && rec_before(&r[c], &r[c + 1]))
                c++;
            if (!rec_before(&r[k], &r[c]))
                break;
            struct rec t = r[k];
            r[k] = r[c];
            r[c] = t;
            k = c;
        }
    }
    for (size_t end = n; end-- > 1;) {
        struct rec t = r[0];
        r[0] = r[end];
        r[end] = t;
        size_t k = 0;
        for (;;) {
            size_t c = 2 * k + 1;
            if (c >= end)
                break;
            if (c + 1 < end && rec_before(&r[c], &r[c + 1]))
                c++;
            if (!rec_before(&r[k], &r[c]))
                break;
            struct rec u = r[k];
            r[k] = r[c];
            r[c] = u;
            k = c;
        }
    }
}

static void agg_json(struct track_out *o, const char *name, const struct agg *a, int comma)
{
    track_out_fmt(o, "    \"%s\": {\"bytes\": %llu, \"blocks\": %llu", name, (unsigned long long)(a->est_bytes + 0.5),
            (unsigned long long)(a->est_blocks + 0.5));
    if (track_sample_bytes)
        track_out_fmt(o, ", \"sampled_bytes\": %llu, \"sampled_blocks\": %llu", (unsigned long long)a->bytes,
                (unsigned long long)a->blocks);
    track_out_fmt(o, "}%s\n", comma ? "," : "");
}

/* The executable mappings of the process, as lines of /proc/self/maps (JSON strings): what a
 * profile needs to tell which object each return address is in (buddyslab report --format
 * pprof|heap; google-pprof reads them as is). Nothing is written when the file cannot be read. */
static void write_mappings(struct track_out *o)
{
    char *buf = track_read_file("/proc/self/maps", NULL);
    if (!buf)
        return;
    int k = 0;
    for (char *p = buf; *p;) {
        char *e = p;
        while (*e && *e != '\n')
            e++;
        char *next = *e ? e + 1 : e;
        *e = 0;
        /* "lo-hi perms offset dev inode path": perms is the second field, 'x' its third letter */
        const char *f = p;
        while (*f && *f != ' ')
            f++;
        while (*f == ' ')
            f++;
        if (f[0] && f[1] && f[2] == 'x') {
            track_out_put(o, k++ ? ",\n    " : "\n    ");
            track_out_json_str(o, p);
        }
        p = next;
    }
    if (k)
        track_out_put(o, "\n  ");
    track_free(buf);
}

size_t leak_report_write(const struct track_block *b, size_t n, const char *path, int at_exit)
{
    uint32_t nsites = __atomic_load_n(&track_nsites, __ATOMIC_ACQUIRE);
    struct agg *ag = track_alloc(((size_t)nsites + 1) * 3 * sizeof(struct agg));
    int8_t *supp_of = track_alloc((size_t)nsites + 1); /* 0 unknown, 1 no, 2 yes */
    long *supp_idx = track_alloc(((size_t)nsites + 1) * sizeof(long));
    if (!ag || !supp_of || !supp_idx) {
        track_free(ag);
        track_free(supp_of);
        track_free(supp_idx);
        os_printf(2, "buddyslab: leak report: out of memory\n");
        return 0;
    }
    supp_load();

    struct totals tot;
    memset(&tot, 0, sizeof(tot));
    for (size_t i = 0; i < n; i++) {
        const struct track_block *x = &b[i];
        if (x->state == LEAK_FREED)
            continue;
        uint32_t site = x->site <= nsites ? x->site : 0;
        if (x->state == LEAK_REACHABLE) {
            agg_add(&ag[site * 3 + K_REACHABLE], x->size, x->exact);
            agg_add(&tot.k[K_REACHABLE], x->size, x->exact);
            continue;
        }
        /* lost: suppressed when its own site or its clique's leader's site is */
        uint32_t lsite = x->state == LEAK_INDIRECT ? b[x->clique].site : site;
        if (lsite > nsites)
            lsite = 0;
        int sup = nsupps && (is_supp(site, supp_of, supp_idx) || is_supp(lsite, supp_of, supp_idx));
        if (sup) {
            agg_add(&tot.suppressed, x->size, x->exact);
            long si = supp_idx[supp_of[site] == 2 ? site : lsite];
            if (si >= 0) {
                supps[si].hits++;
                supps[si].bytes += x->size;
            }
            continue;
        }
        unsigned k = x->state == LEAK_INDIRECT ? K_INDIRECT : K_DEFINITE;
        agg_add(&ag[site * 3 + k], x->size, x->exact);
        agg_add(&tot.k[k], x->size, x->exact);
        if (k == K_INDIRECT) {
            struct agg *l = &ag[lsite * 3 + K_DEFINITE];
            double wb, wy;
            track_weigh(x->size, x->exact, &wb, &wy);
            l->ind_bytes += x->size;
            l->ind_blocks++;
            l->ind_est_bytes += wy;
        }
    }
    size_t nrec = 0;
    for (uint32_t s = 0; s <= nsites; s++)
        for (unsigned k = 0; k < 3; k++)
            if (ag[s * 3 + k].blocks && (k != K_REACHABLE || opt_leak_reachable))
                nrec++;
    struct rec *recs = track_alloc((nrec ? nrec : 1) * sizeof(struct rec));
    size_t r = 0;
    for (uint32_t s = 0; recs && s <= nsites; s++)
        for (unsigned k = 0; k < 3; k++)
            if (ag[s * 3 + k].blocks && (k != K_REACHABLE || opt_leak_reachable)) {
                recs[r].site = s;
                recs[r].kind = (uint8_t)k;
                recs[r].a = ag[s * 3 + k];
                r++;
            }
    nrec = r;
    recs_sort(recs, nrec);

    int json;
    /* At exit on stderr, a clean program stays quiet (LSan's way): no leaks, no report. */
    int quiet = at_exit && (!path || !*path) && !tot.k[K_DEFINITE].blocks && !tot.k[K_INDIRECT].blocks &&
                !opt_leak_reachable;
    struct track_out *o = quiet ? NULL : track_alloc(sizeof(struct track_out));
    int fd = quiet ? 2 : track_open_report(path, &json, "leak report", 0);
    long pid = os_getpid();
    char c1[32], c2[32], c3[32];
    if (o) {
        o->fd = fd;
        if (json) {
            track_out_fmt(o, "{\n  \"tool\": \"buddyslab-leak\",\n  \"format\": 1,\n  \"pid\": %ld,\n  \"at_exit\": %s,\n", pid,
                    at_exit ? "true" : "false");
            track_out_fmt(o, "  \"mode\": \"%s\",\n  \"sample_bytes\": %llu,\n  \"depth\": %ld,\n",
                    track_sample_bytes ? "sampled" : "full", (unsigned long long)track_sample_bytes, opt_leak_depth);
            track_out_put(o, "  \"summary\": {\n");
            agg_json(o, "definitely_lost", &tot.k[K_DEFINITE], 1);
            agg_json(o, "indirectly_lost", &tot.k[K_INDIRECT], 1);
            agg_json(o, "still_reachable", &tot.k[K_REACHABLE], 1);
            agg_json(o, "suppressed", &tot.suppressed, 0);
            track_out_put(o, "  },\n  \"leaks\": [");
            for (size_t i = 0; i < nrec; i++) {
                const struct rec *x = &recs[i];
                track_out_fmt(o, "%s\n    {\"kind\": \"%s\", \"site\": %u, \"bytes\": %llu, \"blocks\": %llu", i ? "," : "",
                        kind_json[x->kind], x->site, (unsigned long long)(x->a.est_bytes + 0.5),
                        (unsigned long long)(x->a.est_blocks + 0.5));
                if (track_sample_bytes)
                    track_out_fmt(o, ", \"sampled_bytes\": %llu, \"sampled_blocks\": %llu", (unsigned long long)x->a.bytes,
                            (unsigned long long)x->a.blocks);
                if (x->kind == K_DEFINITE)
                    track_out_fmt(o, ", \"indirect_bytes\": %llu, \"indirect_blocks\": %llu",
                            (unsigned long long)(x->a.ind_est_bytes + 0.5), (unsigned long long)x->a.ind_blocks);
                track_out_put(o, ",\n     \"stack\": [");
                track_write_frames(o, track_site_get(x->site), 1);
                track_out_put(o, "]}");
            }
            track_out_put(o, "\n  ],\n  \"suppressions\": [");
            for (size_t i = 0, k = 0; i < nsupps; i++) {
                track_out_put(o, k++ ? ", " : "");
                track_out_put(o, "{\"pattern\": ");
                track_out_json_str(o, supps[i].pat);
                track_out_fmt(o, ", \"blocks\": %llu, \"bytes\": %llu}", (unsigned long long)supps[i].hits,
                        (unsigned long long)supps[i].bytes);
            }
            track_out_put(o, "],\n  \"mappings\": [");
            if (nrec) /* they name the objects of the records' frames: none, none needed */
                write_mappings(o);
            track_out_put(o, "]\n}\n");
        } else {
            track_out_fmt(o, "==%ld== buddyslab leak report%s: %s tracking", pid, at_exit ? " at exit" : "",
                    track_sample_bytes ? "sampled" : "full");
            if (track_sample_bytes)
                track_out_fmt(o, " (about one allocation per %s bytes; byte and block counts are estimates)",
                        track_commas(c1, track_sample_bytes));
            track_out_fmt(o, ", stacks of up to %ld frames\n==%ld==\n", opt_leak_depth, pid);
            for (size_t i = 0; i < nrec; i++) {
                const struct rec *x = &recs[i];
                track_out_fmt(o, "==%ld== %s%s bytes in %s%s blocks are %s", pid, track_sample_bytes ? "about " : "",
                        track_commas(c1, (uint64_t)(x->a.est_bytes + 0.5)), track_sample_bytes ? "about " : "",
                        track_commas(c2, (uint64_t)(x->a.est_blocks + 0.5)), kind_text[x->kind]);
                if (x->kind == K_DEFINITE && x->a.ind_blocks)
                    track_out_fmt(o, " (and hold %s bytes in %llu indirectly lost blocks)",
                            track_commas(c3, (uint64_t)(x->a.ind_est_bytes + 0.5)), (unsigned long long)x->a.ind_blocks);
                track_out_fmt(o, " (record %zu of %zu)\n", i + 1, nrec);
                if (track_sample_bytes)
                    track_out_fmt(o, "==%ld==    (%llu sampled blocks, %llu bytes)\n", pid, (unsigned long long)x->a.blocks,
                            (unsigned long long)x->a.bytes);
                track_write_frames(o, track_site_get(x->site), 0);
                track_out_fmt(o, "==%ld==\n", pid);
            }
            track_out_fmt(o, "==%ld== LEAK SUMMARY:\n", pid);
            static const char *const lab[4] = {"definitely lost", "indirectly lost", "still reachable", "suppressed"};
            for (unsigned k = 0; k < 4; k++) {
                const struct agg *a = k < 3 ? &tot.k[k] : &tot.suppressed;
                track_out_fmt(o, "==%ld==    %15s: %s%s bytes in %s%s blocks\n", pid, lab[k], track_sample_bytes ? "about " : "",
                        track_commas(c1, (uint64_t)(a->est_bytes + 0.5)), track_sample_bytes ? "about " : "",
                        track_commas(c2, (uint64_t)(a->est_blocks + 0.5)));
            }
            if (!opt_leak_reachable && tot.k[K_REACHABLE].blocks)
                track_out_fmt(o, "==%ld== Reachable blocks are not shown; set leak_reachable=1 to see them.\n", pid);
            for (size_t i = 0; i < nsupps; i++)
                if (supps[i].hits)
                    track_out_fmt(o, "==%ld== suppressed by 'leak:%s': %s bytes in %llu blocks\n", pid, supps[i].pat,
                            track_commas(c1, supps[i].bytes), (unsigned long long)supps[i].hits);
        }
        track_out_flush(o);
    }
    if (fd != 2)
        os_close(fd);
    size_t lost = track_sample_bytes ? (size_t)(tot.k[K_DEFINITE].est_blocks + 0.5) : tot.k[K_DEFINITE].blocks;
    track_free(o);
    track_free(recs);
    track_free(ag);
    track_free(supp_of);
    track_free(supp_idx);
    return lost;
}
