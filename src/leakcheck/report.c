/* The leak report: records per (site, kind), suppressions, text and JSON output. Symbols come
 * from syms.c. Everything that may call malloc here runs with lk_guard set (the report's caller
 * sets it). */
#include "leakcheck/lk.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

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
    char *buf = lk_read_file(opt_leak_suppressions, &len);
    if (!buf) {
        os_printf(2, "buddyslab: leak_suppressions: cannot read '%s'\n", opt_leak_suppressions);
        return;
    }
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    supps = lk_alloc(lines * sizeof(struct supp));
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
                supps[nsupps++].pat = lk_str_dup_n(q + 5, (size_t)(qe - q - 5));
            else
                os_printf(2, "buddyslab: leak_suppressions: ignoring a line that is not 'leak:PATTERN'\n");
        }
        p = *e ? e + 1 : e;
    }
    lk_free(buf);
}

/* The first pattern matching a frame of the site (function, file, or module), or -1. */
static long site_suppressed(const struct lk_site *site)
{
    if (!nsupps || !site)
        return -1;
    const uintptr_t *fr;
    unsigned d = lk_site_frames(site, &fr);
    for (unsigned k = 0; k < d; k++) {
        const struct lk_sym *s = lk_sym_get(fr[k]);
        const char *base = s->module ? strrchr(s->module, '/') : NULL;
        for (size_t i = 0; i < nsupps; i++)
            if (lk_tmatch(supps[i].pat, s->func) || lk_tmatch(supps[i].pat, s->file) || lk_tmatch(supps[i].pat, s->module) ||
                (base && lk_tmatch(supps[i].pat, base + 1)))
                return (long)i;
    }
    return -1;
}

/* ---- output (lk.h) ---- */
void lk_out_flush(struct lk_out *o)
{
    if (o->n)
        os_write_all(o->fd, o->buf, o->n);
    o->n = 0;
}

void lk_out_put(struct lk_out *o, const char *s)
{
    while (*s) {
        if (o->n == sizeof(o->buf))
            lk_out_flush(o);
        o->buf[o->n++] = *s++;
    }
}

void lk_out_fmt(struct lk_out *o, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    os_vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    lk_out_put(o, tmp);
}

void lk_out_json_str(struct lk_out *o, const char *s)
{
    lk_out_put(o, "\"");
    char tmp[8];
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            tmp[2] = 0;
        } else if (c < 0x20) {
            os_snprintf(tmp, sizeof(tmp), "\\u%04x", c);
        } else {
            tmp[0] = (char)c;
            tmp[1] = 0;
        }
        lk_out_put(o, tmp);
    }
    lk_out_put(o, "\"");
}

/* 1234567 -> "1,234,567" */
const char *lk_commas(char *buf, uint64_t v)
{
    char tmp[32];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    int k = 0;
    for (int i = n - 1; i >= 0; i--) {
        buf[k++] = tmp[i];
        if (i && i % 3 == 0)
            buf[k++] = ',';
    }
    buf[k] = 0;
    return buf;
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

void lk_weigh(uint64_t size, int exact, double *blocks, double *bytes)
{
    if (!lk_sample_bytes || size >= lk_sample_bytes || exact) {
        *blocks = 1;
        *bytes = (double)size;
        return;
    }
    /* A block of s bytes was sampled with probability 1 - exp(-s/T): it stands for 1/p blocks. */
    double p = 1 - lk_exp(-(double)(size ? size : 1) / (double)lk_sample_bytes);
    *blocks = 1 / p;
    *bytes = (double)size / p;
}

static void agg_add(struct agg *a, uint64_t size, int exact)
{
    double wb, wy;
    lk_weigh(size, exact, &wb, &wy);
    a->bytes += size;
    a->blocks++;
    a->est_bytes += wy;
    a->est_blocks += wb;
}

static int is_supp(uint32_t site, int8_t *supp_of, long *supp_idx)
{
    if (!supp_of[site]) {
        supp_idx[site] = site_suppressed(lk_site_get(site));
        supp_of[site] = supp_idx[site] >= 0 ? 2 : 1;
    }
    return supp_of[site] == 2;
}

void lk_write_frames(struct lk_out *o, const struct lk_site *site, int json)
{
    const uintptr_t *fr;
    unsigned d = site ? lk_site_frames(site, &fr) : 0;
    for (unsigned k = 0; k < d; k++) {
        const struct lk_sym *s = lk_sym_get(fr[k]);
        if (json) {
            lk_out_fmt(o, "%s{\"pc\": \"0x%lx\", \"function\": ", k ? ", " : "", (unsigned long)s->pc);
            if (s->func)
                lk_out_json_str(o, s->func);
            else
                lk_out_put(o, "null");
            lk_out_put(o, ", \"file\": ");
            if (s->file)
                lk_out_json_str(o, s->file);
            else
                lk_out_put(o, "null");
            lk_out_fmt(o, ", \"line\": %d, \"module\": ", s->line);
            if (s->module)
                lk_out_json_str(o, s->module);
            else
                lk_out_put(o, "null");
            lk_out_fmt(o, ", \"offset\": \"0x%lx\"}", (unsigned long)s->off);
        } else {
            lk_out_fmt(o, "==%ld==    #%u 0x%lx in ", os_getpid(), k, (unsigned long)s->pc);
            lk_out_put(o, s->func ? s->func : "??");
            if (s->file) {
                lk_out_put(o, " ");
                lk_out_put(o, s->file);
                lk_out_fmt(o, ":%d", s->line);
            }
            lk_out_put(o, " (");
            lk_out_put(o, s->module ? s->module : "??");
            lk_out_fmt(o, "+0x%lx)\n", (unsigned long)s->off);
        }
    }
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

int lk_open_report(const char *path, int *json, const char *what, int append)
{
    *json = 0;
    if (!path || !*path)
        return 2;
    char p[600];
    size_t k = 0;
    for (const char *s = path; *s && k < sizeof(p) - 24; s++) {
        if (s[0] == '%' && s[1] == 'p') {
            k += os_snprintf(p + k, sizeof(p) - k, "%ld", os_getpid());
            s++;
        } else {
            p[k++] = *s;
        }
    }
    p[k] = 0;
    *json = k >= 5 && strcmp(p + k - 5, ".json") == 0;
    int fd = append ? os_open_append(p) : os_open_write(p);
    if (fd < 0) {
        os_printf(2, "buddyslab: %s: cannot open '%s': writing to stderr\n", what, p);
        *json = 0;
        return 2;
    }
    return fd;
}

static void agg_json(struct lk_out *o, const char *name, const struct agg *a, int comma)
{
    lk_out_fmt(o, "    \"%s\": {\"bytes\": %llu, \"blocks\": %llu", name, (unsigned long long)(a->est_bytes + 0.5),
            (unsigned long long)(a->est_blocks + 0.5));
    if (lk_sample_bytes)
        lk_out_fmt(o, ", \"sampled_bytes\": %llu, \"sampled_blocks\": %llu", (unsigned long long)a->bytes,
                (unsigned long long)a->blocks);
    lk_out_fmt(o, "}%s\n", comma ? "," : "");
}

size_t lk_report_write(const struct lk_block *b, size_t n, const char *path, int at_exit)
{
    uint32_t nsites = __atomic_load_n(&lk_nsites, __ATOMIC_ACQUIRE);
    struct agg *ag = lk_alloc(((size_t)nsites + 1) * 3 * sizeof(struct agg));
    int8_t *supp_of = lk_alloc((size_t)nsites + 1); /* 0 unknown, 1 no, 2 yes */
    long *supp_idx = lk_alloc(((size_t)nsites + 1) * sizeof(long));
    if (!ag || !supp_of || !supp_idx) {
        lk_free(ag);
        lk_free(supp_of);
        lk_free(supp_idx);
        os_printf(2, "buddyslab: leak report: out of memory\n");
        return 0;
    }
    supp_load();

    struct totals tot;
    memset(&tot, 0, sizeof(tot));
    for (size_t i = 0; i < n; i++) {
        const struct lk_block *x = &b[i];
        if (x->state == LK_FREED)
            continue;
        uint32_t site = x->site <= nsites ? x->site : 0;
        if (x->state == LK_REACHABLE) {
            agg_add(&ag[site * 3 + K_REACHABLE], x->size, x->exact);
            agg_add(&tot.k[K_REACHABLE], x->size, x->exact);
            continue;
        }
        /* lost: suppressed when its own site or its clique's leader's site is */
        uint32_t lsite = x->state == LK_INDIRECT ? b[x->clique].site : site;
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
        unsigned k = x->state == LK_INDIRECT ? K_INDIRECT : K_DEFINITE;
        agg_add(&ag[site * 3 + k], x->size, x->exact);
        agg_add(&tot.k[k], x->size, x->exact);
        if (k == K_INDIRECT) {
            struct agg *l = &ag[lsite * 3 + K_DEFINITE];
            double wb, wy;
            lk_weigh(x->size, x->exact, &wb, &wy);
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
    struct rec *recs = lk_alloc((nrec ? nrec : 1) * sizeof(struct rec));
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
    struct lk_out *o = quiet ? NULL : lk_alloc(sizeof(struct lk_out));
    int fd = quiet ? 2 : lk_open_report(path, &json, "leak report", 0);
    long pid = os_getpid();
    char c1[32], c2[32], c3[32];
    if (o) {
        o->fd = fd;
        if (json) {
            lk_out_fmt(o, "{\n  \"tool\": \"buddyslab-leak\",\n  \"format\": 1,\n  \"pid\": %ld,\n  \"at_exit\": %s,\n", pid,
                    at_exit ? "true" : "false");
            lk_out_fmt(o, "  \"mode\": \"%s\",\n  \"sample_bytes\": %llu,\n  \"depth\": %ld,\n",
                    lk_sample_bytes ? "sampled" : "full", (unsigned long long)lk_sample_bytes, opt_leak_depth);
            lk_out_put(o, "  \"summary\": {\n");
            agg_json(o, "definitely_lost", &tot.k[K_DEFINITE], 1);
            agg_json(o, "indirectly_lost", &tot.k[K_INDIRECT], 1);
            agg_json(o, "still_reachable", &tot.k[K_REACHABLE], 1);
            agg_json(o, "suppressed", &tot.suppressed, 0);
            lk_out_put(o, "  },\n  \"leaks\": [");
            for (size_t i = 0; i < nrec; i++) {
                const struct rec *x = &recs[i];
                lk_out_fmt(o, "%s\n    {\"kind\": \"%s\", \"site\": %u, \"bytes\": %llu, \"blocks\": %llu", i ? "," : "",
                        kind_json[x->kind], x->site, (unsigned long long)(x->a.est_bytes + 0.5),
                        (unsigned long long)(x->a.est_blocks + 0.5));
                if (lk_sample_bytes)
                    lk_out_fmt(o, ", \"sampled_bytes\": %llu, \"sampled_blocks\": %llu", (unsigned long long)x->a.bytes,
                            (unsigned long long)x->a.blocks);
                if (x->kind == K_DEFINITE)
                    lk_out_fmt(o, ", \"indirect_bytes\": %llu, \"indirect_blocks\": %llu",
                            (unsigned long long)(x->a.ind_est_bytes + 0.5), (unsigned long long)x->a.ind_blocks);
                lk_out_put(o, ",\n     \"stack\": [");
                lk_write_frames(o, lk_site_get(x->site), 1);
                lk_out_put(o, "]}");
            }
            lk_out_put(o, "\n  ],\n  \"suppressions\": [");
            for (size_t i = 0, k = 0; i < nsupps; i++) {
                lk_out_put(o, k++ ? ", " : "");
                lk_out_put(o, "{\"pattern\": ");
                lk_out_json_str(o, supps[i].pat);
                lk_out_fmt(o, ", \"blocks\": %llu, \"bytes\": %llu}", (unsigned long long)supps[i].hits,
                        (unsigned long long)supps[i].bytes);
            }
            lk_out_put(o, "]\n}\n");
        } else {
            lk_out_fmt(o, "==%ld== buddyslab leak report%s: %s tracking", pid, at_exit ? " at exit" : "",
                    lk_sample_bytes ? "sampled" : "full");
            if (lk_sample_bytes)
                lk_out_fmt(o, " (about one allocation per %s bytes; byte and block counts are estimates)",
                        lk_commas(c1, lk_sample_bytes));
            lk_out_fmt(o, ", stacks of up to %ld frames\n==%ld==\n", opt_leak_depth, pid);
            for (size_t i = 0; i < nrec; i++) {
                const struct rec *x = &recs[i];
                lk_out_fmt(o, "==%ld== %s%s bytes in %s%s blocks are %s", pid, lk_sample_bytes ? "about " : "",
                        lk_commas(c1, (uint64_t)(x->a.est_bytes + 0.5)), lk_sample_bytes ? "about " : "",
                        lk_commas(c2, (uint64_t)(x->a.est_blocks + 0.5)), kind_text[x->kind]);
                if (x->kind == K_DEFINITE && x->a.ind_blocks)
                    lk_out_fmt(o, " (and hold %s bytes in %llu indirectly lost blocks)",
                            lk_commas(c3, (uint64_t)(x->a.ind_est_bytes + 0.5)), (unsigned long long)x->a.ind_blocks);
                lk_out_fmt(o, " (record %zu of %zu)\n", i + 1, nrec);
                if (lk_sample_bytes)
                    lk_out_fmt(o, "==%ld==    (%llu sampled blocks, %llu bytes)\n", pid, (unsigned long long)x->a.blocks,
                            (unsigned long long)x->a.bytes);
                lk_write_frames(o, lk_site_get(x->site), 0);
                lk_out_fmt(o, "==%ld==\n", pid);
            }
            lk_out_fmt(o, "==%ld== LEAK SUMMARY:\n", pid);
            static const char *const lab[4] = {"definitely lost", "indirectly lost", "still reachable", "suppressed"};
            for (unsigned k = 0; k < 4; k++) {
                const struct agg *a = k < 3 ? &tot.k[k] : &tot.suppressed;
                lk_out_fmt(o, "==%ld==    %15s: %s%s bytes in %s%s blocks\n", pid, lab[k], lk_sample_bytes ? "about " : "",
                        lk_commas(c1, (uint64_t)(a->est_bytes + 0.5)), lk_sample_bytes ? "about " : "",
                        lk_commas(c2, (uint64_t)(a->est_blocks + 0.5)));
            }
            if (!opt_leak_reachable && tot.k[K_REACHABLE].blocks)
                lk_out_fmt(o, "==%ld== Reachable blocks are not shown; set leak_reachable=1 to see them.\n", pid);
            for (size_t i = 0; i < nsupps; i++)
                if (supps[i].hits)
                    lk_out_fmt(o, "==%ld== suppressed by 'leak:%s': %s bytes in %llu blocks\n", pid, supps[i].pat,
                            lk_commas(c1, supps[i].bytes), (unsigned long long)supps[i].hits);
        }
        lk_out_flush(o);
    }
    if (fd != 2)
        os_close(fd);
    size_t lost = lk_sample_bytes ? (size_t)(tot.k[K_DEFINITE].est_blocks + 0.5) : tot.k[K_DEFINITE].blocks;
    lk_free(o);
    lk_free(recs);
    lk_free(ag);
    lk_free(supp_of);
    lk_free(supp_idx);
    return lost;
}
