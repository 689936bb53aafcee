/* bsl_stats_get / bsl_stats_print / bsl_stats_print_json / bsl_purge / bsl_option_set / bsl_options_explain /
 * bsl_version. */
#include "bsl_test.h"

#include <ctype.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <sys/mman.h>

#define MiB ((size_t)1 << 20)
#define KiB ((size_t)1 << 10)

static void print_stats(const char *what, const bsl_stats_t *s)
{
    fprintf(stderr,
            "  %s: reserved %zu committed %zu allocated %zu slab %zu large %zu huge %zu dirty %zu clean %zu "
            "purged %zu nmalloc %llu nfree %llu\n",
            what, s->reserved, s->committed, s->allocated, s->slab_bytes, s->large_bytes, s->huge_bytes,
            s->free_dirty, s->free_clean, s->purged_total, (unsigned long long)s->nmalloc,
            (unsigned long long)s->nfree);
}

/* Invariants every snapshot must satisfy. */
static void check_consistent(const char *what, const bsl_stats_t *s)
{
    int ok = 1;
#define INV(e)                                                                                                     \
    do {                                                                                                           \
        CHECKF(e, "stats invariant broken at '%s'", what);                                                         \
        ok &= !!(e);                                                                                               \
    } while (0)
    INV(s->reserved > 0);
    INV(s->committed <= s->reserved);
    INV(s->allocated <= s->committed);
    INV(s->allocated <= s->slab_bytes + s->large_bytes + s->huge_bytes);
    INV(s->slab_bytes + s->large_bytes + s->huge_bytes <= s->committed);
    INV(s->huge_bytes <= s->reserved);
    INV(s->free_dirty <= s->committed);
    INV(s->free_dirty + s->free_clean <= s->reserved);
#undef INV
    if (!ok)
        print_stats(what, s);
}

static bsl_stats_t snap(const char *what)
{
    bsl_stats_t s;
    memset(&s, 0xa5, sizeof s);
    CHECK(bsl_stats_get(&s) == 0);
    check_consistent(what, &s);
    return s;
}

static void test_stats_get(void)
{
    bsl_stats_t a = snap("start");

    /* a large (buddy) block */
    unsigned char *l = malloc(1 * MiB);
    memset(l, 1, 1 * MiB);
    bsl_stats_t b = snap("after 1 MiB");
    CHECKF(b.allocated >= a.allocated + 1 * MiB, "allocated %zu -> %zu after malloc(1 MiB)", a.allocated, b.allocated);
    CHECKF(b.large_bytes + b.huge_bytes >= a.large_bytes + a.huge_bytes + 1 * MiB, "large %zu -> %zu", a.large_bytes,
           b.large_bytes);
    CHECKF(b.nmalloc > a.nmalloc, "nmalloc %llu -> %llu after a large allocation", (unsigned long long)a.nmalloc,
           (unsigned long long)b.nmalloc);

    /* a huge block */
    unsigned char *h = malloc(12 * MiB);
    memset(h, 1, 12 * MiB);
    bsl_stats_t c = snap("after 12 MiB");
    CHECKF(c.allocated >= b.allocated + 12 * MiB, "allocated %zu -> %zu after malloc(12 MiB)", b.allocated,
           c.allocated);
    CHECKF(c.huge_bytes + c.large_bytes >= b.huge_bytes + b.large_bytes + 12 * MiB, "huge %zu -> %zu", b.huge_bytes,
           c.huge_bytes);
    CHECK(c.reserved >= c.allocated);

    /* many slab objects */
    enum { N = 8192 };
    static void *v[N];
    for (int i = 0; i < N; i++)
        v[i] = malloc(256);
    bsl_stats_t d = snap("after 8192 x 256 B");
    CHECKF(d.slab_bytes >= c.slab_bytes + N * 256 / 2, "slab_bytes %zu -> %zu after 2 MiB of small blocks",
           c.slab_bytes, d.slab_bytes);
    CHECKF(d.allocated >= c.allocated + N * 256 / 2, "allocated %zu -> %zu after 2 MiB of small blocks", c.allocated,
           d.allocated);
    for (int i = 0; i < N; i++)
        free(v[i]);

    free(h);
    bsl_stats_t e = snap("after free(12 MiB)");
    CHECKF(e.allocated + 12 * MiB <= d.allocated, "allocated %zu -> %zu after free(12 MiB)", d.allocated,
           e.allocated);
    free(l);
    bsl_stats_t f = snap("after free(1 MiB)");
    CHECKF(f.allocated + 1 * MiB <= e.allocated, "allocated %zu -> %zu after free(1 MiB)", e.allocated, f.allocated);
    CHECKF(f.nfree > d.nfree, "nfree %llu -> %llu after a large free", (unsigned long long)d.nfree,
           (unsigned long long)f.nfree);
    CHECK(f.nmalloc >= d.nmalloc);
}

static void test_purge(void)
{
    CHECK(bsl_option_set("decay_ms", "600000") == 0); /* keep dirty pages until we purge */
    /* 2 MiB: well under the live-heap rule's floor (8 MiB per zone, split among the shards), which
     * purges on a free whatever the decay (4 MiB with two shards sat exactly on that floor, and
     * the dirty frames rule 1's reserve keeps from test_stats_get took it over). */
    enum { N = 8 };
    void *v[N];
    for (int i = 0; i < N; i++) {
        v[i] = malloc(256 * KiB);
        CHECK(v[i] != NULL);
        memset(v[i], 0x33, 256 * KiB);
    }
    for (int i = 0; i < N; i++)
        free(v[i]);
    bsl_stats_t a = snap("before purge");
    CHECKF(a.free_dirty >= 1 * MiB, "free_dirty %zu after freeing 2 MiB of touched large blocks (decay_ms=600000)",
           a.free_dirty);
    size_t purged = bsl_purge();
    bsl_stats_t b = snap("after purge");
    CHECKF(purged >= 1 * MiB, "bsl_purge() = %zu with %zu dirty bytes", purged, a.free_dirty);
    CHECKF(b.free_dirty < a.free_dirty, "free_dirty %zu -> %zu", a.free_dirty, b.free_dirty);
    CHECKF(b.purged_total >= a.purged_total + purged, "purged_total %zu -> %zu, bsl_purge() = %zu", a.purged_total,
           b.purged_total, purged);
    CHECKF(b.free_clean >= a.free_clean + purged / 2, "free_clean %zu -> %zu", a.free_clean, b.free_clean);
    /* nothing left to purge right away */
    size_t again = bsl_purge();
    CHECKF(again < purged, "second bsl_purge() = %zu, first %zu", again, purged);
    /* memory is usable after purge */
    unsigned char *p = malloc(512 * KiB);
    memset(p, 1, 512 * KiB);
    free(p);
    CHECK(bsl_option_set("decay_ms", "1000") == 0);
}

static char *read_all(int fd, size_t *len)
{
    off_t end = lseek(fd, 0, SEEK_END);
    CHECK(end >= 0);
    char *buf = malloc((size_t)end + 1);
    ssize_t n = pread(fd, buf, (size_t)end, 0);
    CHECK(n == end);
    buf[n < 0 ? 0 : n] = 0;
    *len = n < 0 ? 0 : (size_t)n;
    return buf;
}

/* ---- a minimal JSON validator (RFC 8259 grammar) ---- */
static const char *js;
static int json_value(void);
static void ws(void)
{
    while (*js == ' ' || *js == '\t' || *js == '\n' || *js == '\r')
        js++;
}
static int json_string(void)
{
    if (*js++ != '"')
        return 0;
    while (*js && *js != '"') {
        if ((unsigned char)*js < 0x20)
            return 0;
        if (*js == '\\') {
            js++;
            if (*js == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!isxdigit((unsigned char)js[i]))
                        return 0;
                js += 5;
                continue;
            }
            if (!strchr("\"\\/bfnrt", *js) || !*js)
                return 0;
        }
        js++;
    }
    return *js++ == '"';
}
static int json_number(void)
{
    const char *s = js;
    if (*js == '-')
        js++;
    if (*js == '0')
        js++;
    else if (isdigit((unsigned char)*js))
        while (isdigit((unsigned char)*js))
            js++;
    else
        return 0;
    if (*js == '.') {
        js++;
        if (!isdigit((unsigned char)*js))
            return 0;
        while (isdigit((unsigned char)*js))
            js++;
    }
    if (*js == 'e' || *js == 'E') {
        js++;
        if (*js == '+' || *js == '-')
            js++;
        if (!isdigit((unsigned char)*js))
            return 0;
        while (isdigit((unsigned char)*js))
            js++;
    }
    return js > s;
}
static int json_value(void)
{
    ws();
    if (*js == '{') {
        js++;
        ws();
        if (*js == '}')
            return js++, 1;
        for (;;) {
            ws();
            if (!json_string())
                return 0;
            ws();
            if (*js++ != ':')
                return 0;
            if (!json_value())
                return 0;
            ws();
            if (*js == ',') {
                js++;
                continue;
            }
            return *js++ == '}';
        }
    }
    if (*js == '[') {
        js++;
        ws();
        if (*js == ']')
            return js++, 1;
        for (;;) {
            if (!json_value())
                return 0;
            ws();
            if (*js == ',') {
                js++;
                continue;
            }
            return *js++ == ']';
        }
    }
    if (*js == '"')
        return json_string();
    if (!strncmp(js, "true", 4))
        return js += 4, 1;
    if (!strncmp(js, "false", 5))
        return js += 5, 1;
    if (!strncmp(js, "null", 4))
        return js += 4, 1;
    return json_number();
}
static int json_valid_object(const char *s)
{
    js = s;
    ws();
    if (*js != '{')
        return 0;
    if (!json_value())
        return 0;
    ws();
    return *js == 0;
}

static int tmpfd(void)
{
    char path[] = "/tmp/bsl-test-stats-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    return fd;
}

static void test_stats_print(void)
{
    /* some activity in every zone so the views have content */
    void *keep[4] = {malloc(100), malloc(300 * KiB), bsl_zone_malloc(BSL_ZONE_LOW32, 64),
                     bsl_zone_malloc(BSL_ZONE_HUGE, 4096)};
    int fd = tmpfd(), efd = tmpfd();
    fflush(stdout);
    fflush(stderr);
    int saved_err = dup(2), saved_out = dup(1);
    dup2(efd, 2); /* anything going to stdout/stderr instead of fd is a bug */
    dup2(efd, 1);
    bsl_stats_print(fd);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_err, 2);
    dup2(saved_out, 1);
    close(saved_err);
    close(saved_out);
    size_t n, en;
    char *txt = read_all(fd, &n);
    char *etxt = read_all(efd, &en);
    CHECKF(n > 0, "bsl_stats_print wrote nothing");
    CHECKF(en == 0, "bsl_stats_print wrote %zu bytes to stdout/stderr instead of the fd: %.200s", en, etxt);
    size_t lines = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        lines += txt[i] == '\n';
        bad += !(isprint((unsigned char)txt[i]) || txt[i] == '\n' || txt[i] == '\t');
    }
    CHECKF(lines >= 3, "bsl_stats_print wrote %zu lines (zoneinfo/buddyinfo/slabinfo expected)", lines);
    CHECKF(bad == 0, "bsl_stats_print output has %zu non-text bytes", bad);
    CHECKF(n > 0 && txt[n - 1] == '\n', "text output does not end with a newline");
    free(txt);
    free(etxt);
    close(fd);
    close(efd);

    fd = tmpfd();
    efd = tmpfd();
    fflush(stdout);
    fflush(stderr);
    saved_err = dup(2);
    saved_out = dup(1);
    dup2(efd, 2);
    dup2(efd, 1);
    bsl_stats_print_json(fd);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_err, 2);
    dup2(saved_out, 1);
    close(saved_err);
    close(saved_out);
    char *json = read_all(fd, &n);
    etxt = read_all(efd, &en);
    CHECKF(n > 2, "bsl_stats_print_json wrote %zu bytes", n);
    CHECKF(en == 0, "bsl_stats_print_json wrote %zu bytes to stdout/stderr", en);
    CHECKF(strlen(json) == n, "JSON output contains NUL bytes");
    CHECKF(json_valid_object(json), "bsl_stats_print_json output is not one valid JSON object: %.300s%s", json,
           n > 300 ? "..." : "");
    free(json);
    free(etxt);
    close(fd);
    close(efd);
    for (int i = 0; i < 4; i++)
        free(keep[i]);
}

/* bsl_option_set must print exactly one line naming the key on a bad key/value. */
static int option_set_captured(const char *k, const char *v, char *out, size_t cap)
{
    int fd = tmpfd();
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    int rc = bsl_option_set(k, v);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, out, cap - 1, 0);
    out[n < 0 ? 0 : n] = 0;
    close(fd);
    return rc;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_options(void)
{
    char out[4096];
    struct {
        const char *k, *v;
        int want_rc;
    } cases[] = {
        {"decay_ms", "1000", 0}, {"decay_ms", "0", 0},       {"decay_ms", "5000", 0},
        {"thp", "0", 0},         {"thp", "1", 0},            {"stats", "0", 0},
        {"bogus", "1", -1},      {"decay_ms", "abc", -1},    {"decay_ms", "", -1},
        {"decay_ms", "12x", -1}, {"thp", "banana", -1},      {"stats", "yes please", -1},
        {"", "1", -1},           {"no_such_option", "0", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int rc = option_set_captured(cases[i].k, cases[i].v, out, sizeof out);
        CHECKF(rc == cases[i].want_rc, "bsl_option_set(\"%s\", \"%s\") = %d, want %d", cases[i].k, cases[i].v, rc,
               cases[i].want_rc);
        if (cases[i].want_rc == 0) {
            CHECKF(out[0] == 0, "bsl_option_set(\"%s\", \"%s\") printed: %s", cases[i].k, cases[i].v, out);
        } else {
            CHECKF(count_lines(out) == 1 && out[strlen(out) - 1] == '\n',
                   "bsl_option_set(\"%s\", \"%s\") printed %zu lines: '%s'", cases[i].k, cases[i].v, count_lines(out),
                   out);
            if (cases[i].k[0])
                CHECKF(strstr(out, cases[i].k) != NULL, "message for bad option does not name '%s': '%s'", cases[i].k,
                       out);
        }
    }
    /* the allocator still works and keeps sane behaviour with decay_ms=0 (purge immediately) */
    CHECK(bsl_option_set("decay_ms", "0") == 0);
    for (int i = 0; i < 50; i++) {
        void *p = malloc(600 * KiB);
        memset(p, 1, 600 * KiB);
        free(p);
        void *q = calloc(1, 600 * KiB);
        CHECK(bsl_all_zero(q, 600 * KiB));
        free(q);
    }
    CHECK(bsl_option_set("decay_ms", "1000") == 0);
}

/* bsl_options_explain: the resolved value of every option, the library's one line per bad entry,
 * and the live options untouched. */
static void test_options_explain(void)
{
    int out = tmpfd(), err = tmpfd();
    fflush(stderr);
    int saved = dup(2);
    dup2(err, 2);
    int bad = bsl_options_explain("leak_sample=64K,decay_ms=abc,stats,budget=f_*:1M,budget=tag:c:2G,"
                                  "oom_action=explode,soft_limit=3m,leak_report=/tmp/x%p.json,nope=1,,thp=0",
                                  out);
    int empty = bsl_options_explain("", out);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    size_t n, en;
    char *txt = read_all(out, &n), *etxt = read_all(err, &en);
    CHECKF(bad == 3, "bsl_options_explain: %d bad entries, want 3 (decay_ms, oom_action, nope): %s", bad, etxt);
    CHECKF(empty == 0, "bsl_options_explain(\"\") = %d", empty);
    CHECKF(count_lines(etxt) == 3 && strstr(etxt, "option 'decay_ms': bad value 'abc'") &&
               strstr(etxt, "option 'oom_action': bad value 'explode'") && strstr(etxt, "unknown option 'nope'"),
           "bsl_options_explain's error lines: '%s'", etxt);
    const char *want[] = {"\nleak_sample=65536\n", "\ndecay_ms=10000\n", "stats=1\n", "\nbudget=f_*:1M\n",
                          "\nbudget=tag:c:2G\n", "\noom_action=report\n", "\nsoft_limit=3145728\n",
                          "\nleak_report=/tmp/x%p.json\n", "\nthp=0\n", "\nrseq=1\n", "\noom_report=\n"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        CHECKF(strstr(txt, want[i]) != NULL, "bsl_options_explain output lacks '%s':\n%s", want[i], txt);
    /* The second call (empty string) printed the defaults: one line per option, no budget. */
    const char *second = strstr(txt + 1, "stats=0\n");
    CHECKF(second && !strstr(second, "budget="), "bsl_options_explain(\"\") output:\n%s", second ? second : txt);
    /* The live options did not change: setting a start-only option to its live value succeeds (any
     * other value is refused), so leak_sample is still 0 and rseq still as started. */
    CHECKF(bsl_option_set("leak_sample", "0") == 0, "bsl_options_explain changed the live leak_sample");
    free(txt);
    free(etxt);
    close(out);
    close(err);
}

static void test_version(void)
{
    const char *v = bsl_version();
    CHECK(v != NULL);
    CHECKF(v && strcmp(v, BSL_VERSION) == 0, "bsl_version() = '%s', header says '%s'", v ? v : "(null)", BSL_VERSION);
}

/* Stats are readable while other threads allocate. */
static volatile int stop_flag;
static void *churn(void *arg)
{
    (void)arg;
    unsigned i = 0;
    while (!__atomic_load_n(&stop_flag, __ATOMIC_ACQUIRE)) {
        void *p = malloc(16 + (i * 97) % 70000);
        free(p);
        i++;
    }
    return NULL;
}

static void test_stats_concurrent(void)
{
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, churn, NULL);
    double end = bsl_now() + 0.5;
    while (bsl_now() < end) {
        bsl_stats_t s;
        CHECK(bsl_stats_get(&s) == 0); /* no crash or deadlock; values may be mid-update */
    }
    __atomic_store_n(&stop_flag, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
}

int main(void)
{
    bsl_test_begin("stats_options");
    test_version();
    test_stats_get();
    test_purge();
    test_stats_print();
    test_options();
    test_options_explain();
    test_stats_concurrent();
    snap("end");
    return bsl_test_end();
}
