/* The options table and BUDDYSLAB_OPTIONS parsing ("key=value,key=value"), without allocating. */
#include "malloc/internal.h"

long opt_stats = 0, opt_rseq = 1, opt_decay_ms = 10000, opt_thp = 1, opt_shards = 0, opt_background_thread = 0;

const struct bsl_option bsl_options[] = {
    {"stats", OPT_BOOL, 0, 0, 1, &opt_stats, "print zone, buddy and slab statistics to stderr at exit"},
    {"rseq", OPT_BOOL, 1, 0, 1, &opt_rseq,
     "per-CPU caches on restartable sequences; 0 forces the per-thread fallback (read at start only)"},
    {"decay_ms", OPT_INT, 10000, -1, 86400000, &opt_decay_ms,
     "milliseconds a free page frame stays committed before it is returned to the OS (-1: never, "
     "except malloc_trim and the zone high watermark)"},
    {"thp", OPT_BOOL, 1, 0, 1, &opt_thp, "advise transparent huge pages (MADV_HUGEPAGE) on huge blocks"},
    {"background_thread", OPT_BOOL, 0, 0, 1, &opt_background_thread,
     "a thread that purges and shrinks idle caches even when the program makes no allocation calls"},
    {"shards", OPT_INT, 0, 0, BUDDY_MAX_SHARDS, &opt_shards,
     "buddy shards per zone; 0 picks one per CPU up to 16 (read at start only)"},
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

/* Set option `key` (length klen) to `val` (length vlen). 0, or -1 after printing one line. */
static int option_set_n(const char *key, size_t klen, const char *val, size_t vlen)
{
    for (unsigned i = 0; i < bsl_nr_options; i++) {
        const struct bsl_option *o = &bsl_options[i];
        if (!str_eq_n(key, klen, o->name))
            continue;
        long v;
        if (parse_long(val, vlen, &v) != 0 || v < o->min || v > o->max) {
            char vb[64];
            size_t n = vlen < sizeof(vb) - 1 ? vlen : sizeof(vb) - 1;
            for (size_t k = 0; k < n; k++)
                vb[k] = val[k];
            vb[n] = 0;
            if (o->kind == OPT_BOOL)
                os_printf(2, "buddyslab: option '%s': bad value '%s' (expected 0 or 1); keeping %ld\n", o->name, vb,
                          *o->value);
            else
                os_printf(2, "buddyslab: option '%s': bad value '%s' (expected an integer %ld..%ld); keeping %ld\n",
                          o->name, vb, o->min, o->max, *o->value);
            return -1;
        }
        *o->value = v;
        return 0;
    }
    char kb[64];
    size_t n = klen < sizeof(kb) - 1 ? klen : sizeof(kb) - 1;
    for (size_t k = 0; k < n; k++)
        kb[k] = key[k];
    kb[n] = 0;
    os_printf(2, "buddyslab: unknown option '%s' in BUDDYSLAB_OPTIONS (ignored)\n", kb);
    return -1;
}

void options_parse_env(void)
{
    const char *s = os_getenv("BUDDYSLAB_OPTIONS");
    if (!s)
        return;
    while (*s) {
        const char *e = s;
        while (*e && *e != ',')
            e++;
        if (e > s) {
            const char *eq = s;
            while (eq < e && *eq != '=')
                eq++;
            if (eq == e) /* a bare key means key=1 */
                option_set_n(s, (size_t)(e - s), "1", 1);
            else
                option_set_n(s, (size_t)(eq - s), eq + 1, (size_t)(e - eq - 1));
        }
        s = *e ? e + 1 : e;
    }
}

void options_apply(void)
{
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
    long old_rseq = opt_rseq, old_shards = opt_shards;
    if (option_set_n(key, kl, value, vl) != 0)
        return -1;
    if (opt_rseq != old_rseq || opt_shards != old_shards) {
        os_printf(2, "buddyslab: option '%s' is read at start only: set it in BUDDYSLAB_OPTIONS\n", key);
        opt_rseq = old_rseq;
        opt_shards = old_shards;
        return -1;
    }
    options_apply();
    return 0;
}
