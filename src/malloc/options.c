/* The options table and BUDDYSLAB_OPTIONS parsing ("key=value,key=value"), without allocating. */
#include "malloc/internal.h"
#include "leakcheck/leakcheck.h"
#include "oom/oom.h"

long opt_stats = 0, opt_rseq = 1, opt_decay_ms = 10000, opt_thp = 1, opt_shards = 0, opt_background_thread = 0;
long opt_junk = 0, opt_canary = 0, opt_quarantine = 0, opt_guard = 0, opt_publish = 0;

#define NUM(n, k, d, lo, hi, var, help) {n, k, d, lo, hi, &var, NULL, 0, NULL, help, NULL, NULL}
#define STR(n, buf, help) {n, OPT_STR, 0, 0, 0, NULL, buf, sizeof(buf), "", help, NULL, NULL}
#define STRC(n, kind, buf, sdef, check, ex, help) {n, kind, 0, 0, 0, NULL, buf, sizeof(buf), sdef, help, check, ex}
const struct bsl_option bsl_options[] = {
    NUM("stats", OPT_BOOL, 0, 0, 1, opt_stats, "print zone, buddy and slab statistics to stderr at exit"),
    NUM("rseq", OPT_BOOL, 1, 0, 1, opt_rseq,
        "per-CPU caches on restartable sequences; 0 forces the per-thread fallback (read at start only)"),
    NUM("decay_ms", OPT_INT, 10000, -1, 86400000, opt_decay_ms,
        "milliseconds a free page frame stays committed before it is returned to the OS (-1: never, "
        "except malloc_trim and the zone high watermark)"),
    NUM("thp", OPT_BOOL, 1, 0, 1, opt_thp, "advise transparent huge pages (MADV_HUGEPAGE) on huge blocks"),
    NUM("background_thread", OPT_BOOL, 0, 0, 1, opt_background_thread,
        "a thread that purges and shrinks idle caches even when the program makes no allocation calls"),
    NUM("shards", OPT_INT, 0, 0, BUDDY_MAX_SHARDS, opt_shards,
        "buddy shards per zone; 0 picks one per CPU up to 16 (read at start only)"),
    NUM("publish", OPT_BOOL, 0, 0, 1, opt_publish,
        "publish statistics in /dev/shm/buddyslab.<pid> for `buddyslab top` (refreshed only while watched) "
        "(read at start only)"),
    NUM("junk", OPT_BOOL, 0, 0, 1, opt_junk,
        "fill new blocks with 0xa5 and freed blocks with 0x5a (read at start only)"),
    NUM("canary", OPT_BOOL, 0, 0, 1, opt_canary,
        "8 canary bytes after every block, checked on free: reports heap overflows; free_sized and sized "
        "operator delete must then give the exact size (read at start only)"),
    NUM("quarantine", OPT_SIZE, 0, 0, 1L << 40, opt_quarantine,
        "bytes of freed blocks held back before reuse (0: off), filled with 0x5a: a write after free is "
        "reported when the block leaves, at malloc_trim and at exit; a second free at once (read at start only)"),
    NUM("guard", OPT_BOOL, 0, 0, 1, opt_guard,
        "an inaccessible guard page after every large block (32 KiB .. 4 MiB) (read at start only)"),
    NUM("leak", OPT_BOOL, 0, 0, 1, opt_leak, "track every allocation and report leaks at exit (read at start only)"),
    NUM("leak_sample", OPT_SIZE, 0, 0, 1L << 40, opt_leak_sample,
        "track about one allocation per this many bytes allocated, with unbiased size estimates; 0: off "
        "(read at start only)"),
    NUM("leak_depth", OPT_INT, 16, 1, 64, opt_leak_depth, "stack frames recorded per allocation site"),
    STR("leak_report", opt_leak_report, "write the leak report to this file (JSON when it ends in .json; "
        "'%p': the pid); a process that is not the file's owner (a forked child, or a program started with "
        "leak_report_parent set whose parent is another process) writes FILE.<pid>.ext instead; default: stderr"),
    NUM("leak_report_parent", OPT_INT, 0, 0, 0x7fffffff, opt_leak_report_parent,
        "leak_report belongs to the process whose parent has this pid when tracking starts (`buddyslab run` "
        "sets its own pid: the program it starts owns the file); the processes that one starts, exec'd or "
        "forked, write FILE.<pid>.ext (0: the process that started tracking owns the file)"),
    STR("leak_suppressions", opt_leak_suppressions,
        "file of leak suppressions (leak:PATTERN lines over function or module names)"),
    NUM("leak_exitcode", OPT_INT, 0, 0, 255, opt_leak_exitcode,
        "exit status to use when leaks were reported (0: keep the program's)"),
    NUM("leak_reachable", OPT_BOOL, 0, 0, 1, opt_leak_reachable,
        "also report blocks still reachable at exit, not only definitely lost ones"),
    NUM("leak_fatal", OPT_BOOL, 1, 0, 1, opt_leak_fatal,
        "with leak or leak_sample: write the report also when the program dies of a signal it does not "
        "handle (abort, a fault, kill) or calls _exit (read at start only)"),
    NUM("soft_limit", OPT_SIZE, 0, 0, 1L << 50, opt_soft_limit,
        "soft OOM: when committed memory crosses this, reclaim, then apply oom_action (0: no limit)"),
    NUM("hard_limit", OPT_SIZE, 0, 0, 1L << 50, opt_hard_limit,
        "soft OOM: allocations that would commit memory beyond this fail with ENOMEM after reclaim and the "
        "handler (0: no limit)"),
    STRC("budget", OPT_LIST, opt_budget, "", oom_budget_check, "`budget=parse_*:64M,budget=tag:cache:256M`",
         "soft OOM: a budget PATTERN:SIZE for the live bytes of every site with a frame whose function matches "
         "PATTERN ('*' wildcards, '^'/'$' anchors), or tag:NAME:SIZE for blocks allocated under bsl_tag_push(NAME); "
         "repeatable"),
    STRC("oom_action", OPT_STR, opt_oom_action, "report", oom_action_check, "`oom_action=fail`",
         "soft OOM: what happens past a limit or budget, after reclaim: report (nothing fails), fail "
         "(allocations from the over-budget sites and tags return NULL with ENOMEM), abort (report, then abort)"),
    STR("oom_report", opt_oom_report, "soft OOM: append reports (text) to this file and JSON lines to FILE.json "
        "('%p': the pid); default: text on stderr"),
    NUM("oom_interval_ms", OPT_INT, 1000, 0, 3600000, opt_oom_interval_ms,
        "soft OOM: at most one report per this many milliseconds (the others are counted)"),
    NUM("oom_sample", OPT_SIZE, 64 << 10, 0, 1L << 40, opt_oom_sample,
        "soft OOM: track about one allocation per this many bytes to account budgets (0: every allocation, "
        "exact); leak=1 or leak_sample set the tracking instead (read at start only)"),
};
const unsigned bsl_nr_options = sizeof(bsl_options) / sizeof(bsl_options[0]);

static int str_eq_n(const char *a, size_t n, const char *b)
{
    size_t i = 0;
    for (; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return b[i] == 0;
}

/* A size: digits with an optional K, M, G or T suffix (powers of 1024, case-insensitive). */
static int parse_long(const char *s, size_t n, long *out)
{
    if (n == 0 || n > 18)
        return -1;
    int neg = 0;
    size_t i = 0;
    if (s[0] == '-') {
        neg = 1;
        i = 1;
        if (n == 1)
            return -1;
    }
    long v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = neg ? -v : v;
    return 0;
}

/* Where option values are written: the live options (the table's own variables and buffers), or
 * a scratch copy that bsl_options_explain fills and prints without changing the live ones. */
#define OPT_SCRATCH_MAX 48
struct opt_scratch {
    long num[OPT_SCRATCH_MAX];
    char *str[OPT_SCRATCH_MAX];
    char pool[8192]; /* str[i] points here: the options' buffers, each o->strcap bytes */
};

/* Set option `o` to `val` (length vlen) in `sc` (NULL: the live options). 0, or -1 after printing
 * one line naming the option; the value it had is kept. */
static int option_set_in(const struct bsl_option *o, struct opt_scratch *sc, const char *val, size_t vlen)
{
    unsigned i = (unsigned)(o - bsl_options);
    if (o->kind == OPT_STR || o->kind == OPT_LIST) {
        char *str = sc ? sc->str[i] : o->str;
        size_t at = 0;
        if (o->kind == OPT_LIST)
            while (str[at])
                at++;
        size_t need = at + (at ? 1 : 0) + vlen;
        if (need >= o->strcap) {
            os_printf(2, "buddyslab: option '%s': value too long (%zu bytes at most in all); ignored\n", o->name,
                      o->strcap - 1);
            return -1;
        }
        if (o->check && o->check(val, vlen) != 0)
            return -1; /* it printed why */
        if (at)
            str[at++] = ';';
        for (size_t k = 0; k < vlen; k++)
            str[at + k] = val[k];
        str[at + vlen] = 0;
        return 0;
    }
    long *value = sc ? &sc->num[i] : o->value;
    long v;
    int bad = o->kind == OPT_SIZE ? os_parse_size(val, vlen, &v) : parse_long(val, vlen, &v);
    if (bad != 0 || v < o->min || v > o->max) {
        char vb[64];
        size_t n = vlen < sizeof(vb) - 1 ? vlen : sizeof(vb) - 1;
        for (size_t k = 0; k < n; k++)
            vb[k] = val[k];
        vb[n] = 0;
        if (o->kind == OPT_BOOL)
            os_printf(2, "buddyslab: option '%s': bad value '%s' (expected 0 or 1); keeping %ld\n", o->name, vb,
                      *value);
        else if (o->kind == OPT_SIZE)
            os_printf(2, "buddyslab: option '%s': bad value '%s' (expected a size like 4096, 512K, 64M, 2G); "
                      "keeping %ld\n", o->name, vb, *value);
        else
            os_printf(2, "buddyslab: option '%s': bad value '%s' (expected an integer %ld..%ld); keeping %ld\n",
                      o->name, vb, o->min, o->max, *value);
        return -1;
    }
    *value = v;
    return 0;
}

/* Set option `key` (length klen) to `val` (length vlen) in `sc` (NULL: live). 0, or -1 after
 * printing one line. */
static int option_set_n(struct opt_scratch *sc, const char *key, size_t klen, const char *val, size_t vlen)
{
    for (unsigned i = 0; i < bsl_nr_options; i++)
        if (str_eq_n(key, klen, bsl_options[i].name))
            return option_set_in(&bsl_options[i], sc, val, vlen);
    char kb[64];
    size_t n = klen < sizeof(kb) - 1 ? klen : sizeof(kb) - 1;
    for (size_t k = 0; k < n; k++)
        kb[k] = key[k];
    kb[n] = 0;
    os_printf(2, "buddyslab: unknown option '%s' in BUDDYSLAB_OPTIONS (ignored)\n", kb);
    return -1;
}

/* The one parser of an options string: "key=value,key=value", a bare key means key=1, later
 * entries override earlier ones (a list option appends). Returns the number of bad entries. */
static unsigned options_parse_into(struct opt_scratch *sc, const char *s)
{
    unsigned bad = 0;
    while (*s) {
        const char *e = s;
        while (*e && *e != ',')
            e++;
        if (e > s) {
            const char *eq = s;
            while (eq < e && *eq != '=')
                eq++;
            if (eq == e) /* a bare key means key=1 */
                bad += option_set_n(sc, s, (size_t)(e - s), "1", 1) != 0;
            else
                bad += option_set_n(sc, s, (size_t)(eq - s), eq + 1, (size_t)(e - eq - 1)) != 0;
        }
        s = *e ? e + 1 : e;
    }
    return bad;
}

void options_parse_env(void)
{
    const char *s = os_getenv("BUDDYSLAB_OPTIONS");
    if (s)
        options_parse_into(NULL, s);
}

/* One "name=value" line (value of length n) on fd. */
static void explain_line(int fd, const char *name, const char *v, size_t n)
{
    size_t nl = 0;
    while (name[nl])
        nl++;
    os_write_all(fd, name, nl);
    os_write_all(fd, "=", 1);
    os_write_all(fd, v, n);
    os_write_all(fd, "\n", 1);
}

/* For tools (the launcher calls it through ctypes on the library it preloads): needs no
 * initialisation and changes no live option. */
BSL_EXPORT int bsl_options_explain(const char *options, int fd)
{
    struct opt_scratch sc;
    size_t used = 0;
    if (bsl_nr_options > OPT_SCRATCH_MAX)
        return -1;
    for (unsigned i = 0; i < bsl_nr_options; i++) {
        const struct bsl_option *o = &bsl_options[i];
        sc.num[i] = o->def;
        sc.str[i] = NULL;
        if (o->kind != OPT_STR && o->kind != OPT_LIST)
            continue;
        if (used + o->strcap > sizeof(sc.pool))
            return -1;
        sc.str[i] = sc.pool + used;
        used += o->strcap;
        size_t k = 0;
        for (; o->sdef[k] && k + 1 < o->strcap; k++)
            sc.str[i][k] = o->sdef[k];
        sc.str[i][k] = 0;
    }
    unsigned bad = options ? options_parse_into(&sc, options) : 0;
    for (unsigned i = 0; i < bsl_nr_options; i++) {
        const struct bsl_option *o = &bsl_options[i];
        if (o->kind == OPT_LIST) { /* one line per value, so that the lines joined by ',' read back */
            const char *v = sc.str[i];
            while (*v) {
                size_t n = 0;
                while (v[n] && v[n] != ';')
                    n++;
                explain_line(fd, o->name, v, n);
                v += n + (v[n] == ';');
            }
        } else if (o->kind == OPT_STR) {
            size_t n = 0;
            while (sc.str[i][n])
                n++;
            explain_line(fd, o->name, sc.str[i], n);
        } else {
            os_printf(fd, "%s=%ld\n", o->name, sc.num[i]);
        }
    }
    return (int)bad;
}

void options_apply(void)
{
    oom_apply();
    buddy_decay_ms = opt_decay_ms;
    huge_thp = (int)opt_thp;
}

BSL_EXPORT int bsl_option_set(const char *key, const char *value)
{
    if (!key || !value)
        return -1;
    bsl_ensure_init();
    size_t kl = 0, vl = 0;
    while (key[kl])
        kl++;
    while (value[vl])
        vl++;
    /* Options that shape the heap's layout or the hooks are read at start only. */
    long *fixed[] = {&opt_rseq,   &opt_shards,     &opt_leak,  &opt_leak_sample, &opt_junk,
                     &opt_canary, &opt_quarantine, &opt_guard, &opt_publish,     &opt_oom_sample};
    long before[sizeof(fixed) / sizeof(fixed[0])];
    for (unsigned i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        before[i] = *fixed[i];
    if (option_set_n(NULL, key, kl, value, vl) != 0)
        return -1;
    for (unsigned i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (*fixed[i] != before[i]) {
            os_printf(2, "buddyslab: option '%s' is read at start only: set it in BUDDYSLAB_OPTIONS\n", key);
            *fixed[i] = before[i];
            return -1;
        }
    options_apply();
    if (__atomic_load_n(&oom_on, __ATOMIC_ACQUIRE))
        bsl_tracking_start(); /* a budget or limit set from code needs sites */
    return 0;
}
