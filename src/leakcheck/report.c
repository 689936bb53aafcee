/* The leak report: records per (site, kind), symbols, suppressions, text and JSON output.
 *
 * Symbols come from libdw (elfutils), loaded with dlopen when the first report is written:
 * function names from the symbol tables, file:line from DWARF where the object has it. Module and
 * offset come from dladdr1 (the offset is from the object's load bias, what addr2line expects).
 * C++ names are demangled with __cxa_demangle from the libstdc++ already loaded. Everything that
 * may call malloc here runs with lk_guard set (the report's caller sets it). */
#include "leakcheck/lk.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern int dladdr1(const void *, Dl_info *, void **, int) __attribute__((weak));

/* ---- a string arena for the report's lifetime ---- */
struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    char data[];
};
static struct arena_chunk *str_chunks;

static char *str_dup_n(const char *s, size_t n)
{
    if (!s)
        return NULL;
    struct arena_chunk *c = str_chunks;
    if (!c || c->cap - c->used < n + 1) {
        size_t cap = n + 1 > (64u << 10) ? n + 1 : (64u << 10);
        c = lk_alloc(sizeof(*c) + cap);
        if (!c)
            return NULL;
        c->cap = cap;
        c->next = str_chunks;
        str_chunks = c;
    }
    char *r = c->data + c->used;
    memcpy(r, s, n);
    r[n] = 0;
    c->used += n + 1;
    return r;
}

static char *str_dup(const char *s) { return s ? str_dup_n(s, strlen(s)) : NULL; }

static void str_free_all(void)
{
    while (str_chunks) {
        struct arena_chunk *n = str_chunks->next;
        lk_free(str_chunks);
        str_chunks = n;
    }
}

/* ---- libdw ---- */
typedef struct {
    void *find_elf, *find_debuginfo, *section_address;
    char **debuginfo_path;
} lk_dwfl_callbacks; /* Dwfl_Callbacks (libdwfl.h), stable since elfutils 0.133 */

static struct {
    int tried, ok;
    void *(*begin)(const lk_dwfl_callbacks *);
    void (*end)(void *);
    int (*proc_report)(void *, int);
    int (*report_end)(void *, void *, void *);
    void *(*addrmodule)(void *, uint64_t);
    const char *(*addrname)(void *, uint64_t);
    void *(*getsrc)(void *, uint64_t);
    const char *(*lineinfo)(void *, uint64_t *, int *, int *, uint64_t *, uint64_t *);
    lk_dwfl_callbacks cb;
    char *(*demangle)(const char *, char *, size_t *, int *);
} dw;

static void dw_load(void)
{
    if (dw.tried)
        return;
    dw.tried = 1;
    *(void **)&dw.demangle = lk_dlsym(NULL, "__cxa_demangle");
    void *h = lk_dlopen("libdw.so.1");
    if (!h)
        return;
    *(void **)&dw.begin = lk_dlsym(h, "dwfl_begin");
    *(void **)&dw.end = lk_dlsym(h, "dwfl_end");
    *(void **)&dw.proc_report = lk_dlsym(h, "dwfl_linux_proc_report");
    *(void **)&dw.report_end = lk_dlsym(h, "dwfl_report_end");
    *(void **)&dw.addrmodule = lk_dlsym(h, "dwfl_addrmodule");
    *(void **)&dw.addrname = lk_dlsym(h, "dwfl_module_addrname");
    *(void **)&dw.getsrc = lk_dlsym(h, "dwfl_module_getsrc");
    *(void **)&dw.lineinfo = lk_dlsym(h, "dwfl_lineinfo");
    dw.cb.find_elf = lk_dlsym(h, "dwfl_linux_proc_find_elf");
    dw.cb.find_debuginfo = lk_dlsym(h, "dwfl_standard_find_debuginfo");
    dw.ok = dw.begin && dw.end && dw.proc_report && dw.report_end && dw.addrmodule && dw.addrname && dw.getsrc &&
            dw.lineinfo && dw.cb.find_elf && dw.cb.find_debuginfo;
}

/* ---- symbols, one per distinct return address ---- */
struct sym {
    uintptr_t pc;
    const char *func, *file, *module;
    int line;
    uintptr_t off;
};
static struct sym *syms;
static size_t syms_mask;
static void *dwfl;
static char exe_path[4096];

static const char *demangle(const char *name)
{
    if (!name || !dw.demangle || name[0] != '_' || name[1] != 'Z')
        return str_dup(name);
    int status = -1;
    char *d = dw.demangle(name, NULL, NULL, &status);
    if (!d || status != 0)
        return str_dup(name);
    const char *r = str_dup(d);
    free(d); /* libstdc++ allocated it with malloc: ours, guarded */
    return r;
}

static void sym_fill(struct sym *s)
{
    uintptr_t a = s->pc - 1; /* inside the call instruction */
    Dl_info info;
    struct link_map *lm = NULL;
    memset(&info, 0, sizeof(info));
    if (dladdr1 && dladdr1((void *)a, &info, (void **)&lm, RTLD_DL_LINKMAP) && lm) {
        s->off = s->pc - lm->l_addr;
        const char *mod = lm->l_name && lm->l_name[0] ? lm->l_name : exe_path;
        s->module = str_dup(mod);
        if (info.dli_sname && info.dli_saddr)
            s->func = demangle(info.dli_sname);
    }
    if (dwfl) {
        void *m = dw.addrmodule(dwfl, a);
        if (m) {
            const char *n = dw.addrname(m, a);
            if (n)
                s->func = demangle(n);
            void *line = dw.getsrc(m, a);
            if (line) {
                uint64_t addr;
                int ln = 0;
                const char *f = dw.lineinfo(line, &addr, &ln, NULL, NULL, NULL);
                if (f) {
                    s->file = str_dup(f);
                    s->line = ln;
                }
            }
        }
    }
}

static const struct sym *sym_get(uintptr_t pc)
{
    size_t i = (size_t)((pc * 0x9E3779B97F4A7C15ull) >> 20) & syms_mask;
    while (syms[i].pc && syms[i].pc != pc)
        i = (i + 1) & syms_mask;
    if (!syms[i].pc) {
        syms[i].pc = pc;
        sym_fill(&syms[i]);
    }
    return &syms[i];
}

static int syms_begin(size_t npcs)
{
    size_t cap = 64;
    while (cap < npcs * 2)
        cap *= 2;
    syms = lk_alloc(cap * sizeof(struct sym));
    if (!syms)
        return -1;
    syms_mask = cap - 1;
    ssize_t n = readlink("/proc/self/exe", exe_path, sizeof(exe_path) - 1);
    exe_path[n > 0 ? n : 0] = 0;
    dw_load();
    if (dw.ok) {
        dwfl = dw.begin(&dw.cb);
        if (dwfl && (dw.proc_report(dwfl, getpid()) != 0 || dw.report_end(dwfl, NULL, NULL) != 0)) {
            dw.end(dwfl);
            dwfl = NULL;
        }
    }
    return 0;
}

static void syms_end(void)
{
    if (dwfl)
        dw.end(dwfl);
    dwfl = NULL;
    lk_free(syms);
    syms = NULL;
    str_free_all();
}

/* ---- suppressions: "leak:PATTERN" lines, '*' wildcards, '^' / '$' anchors (LSan's rules) ---- */
struct supp {
    const char *pat;
    uint64_t hits, bytes;
};
static struct supp *supps;
static size_t nsupps;

static const char *find_n(const char *s, const char *seg, size_t n)
{
    if (n == 0)
        return s;
    for (; *s; s++)
        if (strncmp(s, seg, n) == 0)
            return s;
    return NULL;
}

static int tmatch(const char *t, const char *s)
{
    if (!s || !*s)
        return 0;
    int astart = *t == '^';
    if (astart)
        t++;
    size_t tl = strlen(t);
    int aend = tl && t[tl - 1] == '$';
    if (aend)
        tl--;
    const char *p = s;
    size_t i = 0;
    int first = 1;
    while (i <= tl) {
        size_t j = i;
        while (j < tl && t[j] != '*')
            j++;
        size_t n = j - i;
        int last = j >= tl;
        if (first && astart) {
            if (strncmp(p, t + i, n) != 0)
                return 0;
            p += n;
        } else if (last && aend) {
            size_t pl = strlen(p);
            if (pl < n || strncmp(p + pl - n, t + i, n) != 0)
                return 0;
            p += pl;
        } else {
            const char *q = find_n(p, t + i, n);
            if (!q)
                return 0;
            p = q + n;
        }
        first = 0;
        i = j + 1;
    }
    return 1;
}

static void supp_load(void)
{
    supps = NULL;
    nsupps = 0;
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
                supps[nsupps++].pat = str_dup_n(q + 5, (size_t)(qe - q - 5));
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
        const struct sym *s = sym_get(fr[k]);
        const char *base = s->module ? strrchr(s->module, '/') : NULL;
        for (size_t i = 0; i < nsupps; i++)
            if (tmatch(supps[i].pat, s->func) || tmatch(supps[i].pat, s->file) || tmatch(supps[i].pat, s->module) ||
                (base && tmatch(supps[i].pat, base + 1)))
                return (long)i;
    }
    return -1;
}

/* ---- output ---- */
struct out {
    int fd;
    size_t n;
    char buf[16384];
};

static void out_flush(struct out *o)
{
    if (o->n)
        os_write_all(o->fd, o->buf, o->n);
    o->n = 0;
}

static void out_put(struct out *o, const char *s)
{
    while (*s) {
        if (o->n == sizeof(o->buf))
            out_flush(o);
        o->buf[o->n++] = *s++;
    }
}

static void out_fmt(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_fmt(struct out *o, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    os_vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    out_put(o, tmp);
}

static void out_json_str(struct out *o, const char *s)
{
    out_put(o, "\"");
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
        out_put(o, tmp);
    }
    out_put(o, "\"");
}

/* 1234567 -> "1,234,567" */
static const char *commas(char *buf, uint64_t v)
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

static void weigh(uint64_t size, double *blocks, double *bytes)
{
    if (!lk_sample_bytes || size >= lk_sample_bytes) {
        *blocks = 1;
        *bytes = (double)size;
        return;
    }
    /* A block of s bytes was sampled with probability 1 - exp(-s/T): it stands for 1/p blocks. */
    double p = 1 - lk_exp(-(double)(size ? size : 1) / (double)lk_sample_bytes);
    *blocks = 1 / p;
    *bytes = (double)size / p;
}

static void agg_add(struct agg *a, uint64_t size)
{
    double wb, wy;
    weigh(size, &wb, &wy);
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

static void write_frames(struct out *o, const struct lk_site *site, int json)
{
    const uintptr_t *fr;
    unsigned d = site ? lk_site_frames(site, &fr) : 0;
    for (unsigned k = 0; k < d; k++) {
        const struct sym *s = sym_get(fr[k]);
        if (json) {
            out_fmt(o, "%s{\"pc\": \"0x%lx\", \"function\": ", k ? ", " : "", (unsigned long)s->pc);
            if (s->func)
                out_json_str(o, s->func);
            else
                out_put(o, "null");
            out_put(o, ", \"file\": ");
            if (s->file)
                out_json_str(o, s->file);
            else
                out_put(o, "null");
            out_fmt(o, ", \"line\": %d, \"module\": ", s->line);
            if (s->module)
                out_json_str(o, s->module);
            else
                out_put(o, "null");
            out_fmt(o, ", \"offset\": \"0x%lx\"}", (unsigned long)s->off);
        } else {
            out_fmt(o, "==%ld==    #%u 0x%lx in ", os_getpid(), k, (unsigned long)s->pc);
            out_put(o, s->func ? s->func : "??");
            if (s->file) {
                out_put(o, " ");
                out_put(o, s->file);
                out_fmt(o, ":%d", s->line);
            }
            out_put(o, " (");
            out_put(o, s->module ? s->module : "??");
            out_fmt(o, "+0x%lx)\n", (unsigned long)s->off);
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

static int open_report(const char *path, int *json)
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
    int fd = os_open_write(p);
    if (fd < 0) {
        os_printf(2, "buddyslab: leak report: cannot open '%s': writing to stderr\n", p);
        *json = 0;
        return 2;
    }
    return fd;
}

static void agg_json(struct out *o, const char *name, const struct agg *a, int comma)
{
    out_fmt(o, "    \"%s\": {\"bytes\": %llu, \"blocks\": %llu", name, (unsigned long long)(a->est_bytes + 0.5),
            (unsigned long long)(a->est_blocks + 0.5));
    if (lk_sample_bytes)
        out_fmt(o, ", \"sampled_bytes\": %llu, \"sampled_blocks\": %llu", (unsigned long long)a->bytes,
                (unsigned long long)a->blocks);
    out_fmt(o, "}%s\n", comma ? "," : "");
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
    /* every distinct frame, to size the symbol table */
    size_t npcs = 0;
    for (uint32_t i = 0; i <= nsites; i++) {
        const struct lk_site *s = lk_site_get(i);
        const uintptr_t *fr;
        if (s)
            npcs += lk_site_frames(s, &fr);
    }
    syms_begin(npcs);
    supp_load();

    struct totals tot;
    memset(&tot, 0, sizeof(tot));
    for (size_t i = 0; i < n; i++) {
        const struct lk_block *x = &b[i];
        if (x->state == LK_FREED)
            continue;
        uint32_t site = x->site <= nsites ? x->site : 0;
        if (x->state == LK_REACHABLE) {
            agg_add(&ag[site * 3 + K_REACHABLE], x->size);
            agg_add(&tot.k[K_REACHABLE], x->size);
            continue;
        }
        /* lost: suppressed when its own site or its clique's leader's site is */
        uint32_t lsite = x->state == LK_INDIRECT ? b[x->clique].site : site;
        if (lsite > nsites)
            lsite = 0;
        int sup = nsupps && (is_supp(site, supp_of, supp_idx) || is_supp(lsite, supp_of, supp_idx));
        if (sup) {
            agg_add(&tot.suppressed, x->size);
            long si = supp_idx[supp_of[site] == 2 ? site : lsite];
            if (si >= 0) {
                supps[si].hits++;
                supps[si].bytes += x->size;
            }
            continue;
        }
        unsigned k = x->state == LK_INDIRECT ? K_INDIRECT : K_DEFINITE;
        agg_add(&ag[site * 3 + k], x->size);
        agg_add(&tot.k[k], x->size);
        if (k == K_INDIRECT) {
            struct agg *l = &ag[lsite * 3 + K_DEFINITE];
            double wb, wy;
            weigh(x->size, &wb, &wy);
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
    struct out *o = quiet ? NULL : lk_alloc(sizeof(struct out));
    int fd = quiet ? 2 : open_report(path, &json);
    long pid = os_getpid();
    char c1[32], c2[32], c3[32];
    if (o) {
        o->fd = fd;
        if (json) {
            out_fmt(o, "{\n  \"tool\": \"buddyslab-leak\",\n  \"format\": 1,\n  \"pid\": %ld,\n  \"at_exit\": %s,\n", pid,
                    at_exit ? "true" : "false");
            out_fmt(o, "  \"mode\": \"%s\",\n  \"sample_bytes\": %llu,\n  \"depth\": %ld,\n",
                    lk_sample_bytes ? "sampled" : "full", (unsigned long long)lk_sample_bytes, opt_leak_depth);
            out_put(o, "  \"summary\": {\n");
            agg_json(o, "definitely_lost", &tot.k[K_DEFINITE], 1);
            agg_json(o, "indirectly_lost", &tot.k[K_INDIRECT], 1);
            agg_json(o, "still_reachable", &tot.k[K_REACHABLE], 1);
            agg_json(o, "suppressed", &tot.suppressed, 0);
            out_put(o, "  },\n  \"leaks\": [");
            for (size_t i = 0; i < nrec; i++) {
                const struct rec *x = &recs[i];
                out_fmt(o, "%s\n    {\"kind\": \"%s\", \"site\": %u, \"bytes\": %llu, \"blocks\": %llu", i ? "," : "",
                        kind_json[x->kind], x->site, (unsigned long long)(x->a.est_bytes + 0.5),
                        (unsigned long long)(x->a.est_blocks + 0.5));
                if (lk_sample_bytes)
                    out_fmt(o, ", \"sampled_bytes\": %llu, \"sampled_blocks\": %llu", (unsigned long long)x->a.bytes,
                            (unsigned long long)x->a.blocks);
                if (x->kind == K_DEFINITE)
                    out_fmt(o, ", \"indirect_bytes\": %llu, \"indirect_blocks\": %llu",
                            (unsigned long long)(x->a.ind_est_bytes + 0.5), (unsigned long long)x->a.ind_blocks);
                out_put(o, ",\n     \"stack\": [");
                write_frames(o, lk_site_get(x->site), 1);
                out_put(o, "]}");
            }
            out_put(o, "\n  ],\n  \"suppressions\": [");
            for (size_t i = 0, k = 0; i < nsupps; i++) {
                out_put(o, k++ ? ", " : "");
                out_put(o, "{\"pattern\": ");
                out_json_str(o, supps[i].pat);
                out_fmt(o, ", \"blocks\": %llu, \"bytes\": %llu}", (unsigned long long)supps[i].hits,
                        (unsigned long long)supps[i].bytes);
            }
            out_put(o, "]\n}\n");
        } else {
            out_fmt(o, "==%ld== buddyslab leak report%s: %s tracking", pid, at_exit ? " at exit" : "",
                    lk_sample_bytes ? "sampled" : "full");
            if (lk_sample_bytes)
                out_fmt(o, " (about one allocation per %s bytes; byte and block counts are estimates)",
                        commas(c1, lk_sample_bytes));
            out_fmt(o, ", stacks of up to %ld frames\n==%ld==\n", opt_leak_depth, pid);
            for (size_t i = 0; i < nrec; i++) {
                const struct rec *x = &recs[i];
                out_fmt(o, "==%ld== %s%s bytes in %s%s blocks are %s", pid, lk_sample_bytes ? "about " : "",
                        commas(c1, (uint64_t)(x->a.est_bytes + 0.5)), lk_sample_bytes ? "about " : "",
                        commas(c2, (uint64_t)(x->a.est_blocks + 0.5)), kind_text[x->kind]);
                if (x->kind == K_DEFINITE && x->a.ind_blocks)
                    out_fmt(o, " (and hold %s bytes in %llu indirectly lost blocks)",
                            commas(c3, (uint64_t)(x->a.ind_est_bytes + 0.5)), (unsigned long long)x->a.ind_blocks);
                out_fmt(o, " (record %zu of %zu)\n", i + 1, nrec);
                if (lk_sample_bytes)
                    out_fmt(o, "==%ld==    (%llu sampled blocks, %llu bytes)\n", pid, (unsigned long long)x->a.blocks,
                            (unsigned long long)x->a.bytes);
                write_frames(o, lk_site_get(x->site), 0);
                out_fmt(o, "==%ld==\n", pid);
            }
            out_fmt(o, "==%ld== LEAK SUMMARY:\n", pid);
            static const char *const lab[4] = {"definitely lost", "indirectly lost", "still reachable", "suppressed"};
            for (unsigned k = 0; k < 4; k++) {
                const struct agg *a = k < 3 ? &tot.k[k] : &tot.suppressed;
                out_fmt(o, "==%ld==    %15s: %s%s bytes in %s%s blocks\n", pid, lab[k], lk_sample_bytes ? "about " : "",
                        commas(c1, (uint64_t)(a->est_bytes + 0.5)), lk_sample_bytes ? "about " : "",
                        commas(c2, (uint64_t)(a->est_blocks + 0.5)));
            }
            if (!opt_leak_reachable && tot.k[K_REACHABLE].blocks)
                out_fmt(o, "==%ld== Reachable blocks are not shown; set leak_reachable=1 to see them.\n", pid);
            for (size_t i = 0; i < nsupps; i++)
                if (supps[i].hits)
                    out_fmt(o, "==%ld== suppressed by 'leak:%s': %s bytes in %llu blocks\n", pid, supps[i].pat,
                            commas(c1, supps[i].bytes), (unsigned long long)supps[i].hits);
        }
        out_flush(o);
    }
    if (fd != 2)
        os_close(fd);
    size_t lost = lk_sample_bytes ? (size_t)(tot.k[K_DEFINITE].est_blocks + 0.5) : tot.k[K_DEFINITE].blocks;
    lk_free(o);
    lk_free(recs);
    lk_free(supps);
    supps = NULL;
    nsupps = 0;
    syms_end();
    lk_free(ag);
    lk_free(supp_of);
    lk_free(supp_idx);
    return lost;
}
