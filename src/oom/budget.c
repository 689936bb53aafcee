/* Soft OOM policy: accounts (pattern budgets and tags), the budget options, per-thread tags, the
 * charging of live bytes, and admission of a tracked allocation. See docs/DESIGN.md, "Soft OOM
 * policy", and the locking notes at struct oom_acct (oom_int.h). */
#include "oom/oom_int.h"

#include <errno.h>
#include <string.h>

long opt_soft_limit = 0, opt_hard_limit = 0, opt_oom_interval_ms = 1000, opt_oom_sample = 64 << 10;
BSL_BIG_BSS char opt_budget[4096];
/* Set once a budget value passed its check: until then oom_apply does not read opt_budget, a page
 * of its own that a read would commit (this project's kernels commit an untouched page on a read). */
static int budget_given;
char opt_oom_action[16] = "report", opt_oom_report[256];

int oom_on, oom_limits_on;
__thread uint16_t oom_tag;
static __thread uint16_t tag_stack[OOM_TAG_DEPTH];
static __thread unsigned tag_depth;

BSL_BIG_BSS struct oom_acct oom_accts[OOM_MAX_ACCTS];
uint8_t oom_forced[OOM_MAX_ACCTS];
unsigned oom_naccts = 1;
uint32_t oom_gen = 1;
os_lock_t oom_acct_lock = OS_LOCK_INIT(LOCK_RANK_OOM_ACCT);
int oom_action;
uint64_t oom_soft, oom_hard;

/* The policy turns on (for good): sites are charged from now on. */
static const struct track_accounting oom_accounting = {oom_admit, oom_charge};

void oom_turn_on(void)
{
    if (__atomic_load_n(&oom_on, __ATOMIC_ACQUIRE))
        return;
    track_set_accounting(&oom_accounting);
    __atomic_store_n(&oom_on, 1, __ATOMIC_RELEASE);
}

/* ---- the budget syntax: PATTERN:SIZE or tag:NAME:SIZE (the size after the last ':') ---- */
struct budget_spec {
    const char *name;
    size_t n;
    int is_tag;
    long size;
};

static const char *budget_parse(const char *v, size_t n, struct budget_spec *b)
{
    size_t c = n;
    while (c > 0 && v[c - 1] != ':')
        c--;
    if (c == 0)
        return "no ':' before the size";
    if (os_parse_size(v + c, n - c, &b->size) != 0)
        return "the size is not a number with an optional K, M, G or T";
    b->name = v;
    b->n = c - 1;
    b->is_tag = b->n >= 4 && memcmp(v, "tag:", 4) == 0;
    if (b->is_tag) {
        b->name += 4;
        b->n -= 4;
    }
    if (b->n == 0)
        return b->is_tag ? "empty tag name" : "empty pattern";
    if (b->n >= OOM_NAME_MAX)
        return "pattern or tag longer than 63 bytes";
    for (size_t i = 0; i < b->n; i++)
        if (b->name[i] == ';')
            return "';' in the pattern";
    return NULL;
}

int oom_budget_check(const char *val, size_t n)
{
    struct budget_spec b;
    const char *why = budget_parse(val, n, &b);
    if (!why) {
        __atomic_store_n(&budget_given, 1, __ATOMIC_RELAXED);
        return 0;
    }
    char vb[128];
    size_t k = n < sizeof(vb) - 1 ? n : sizeof(vb) - 1;
    memcpy(vb, val, k);
    vb[k] = 0;
    os_printf(2, "buddyslab: option 'budget': bad value '%s' (expected PATTERN:SIZE or tag:NAME:SIZE, like "
                 "parse_*:64M): %s; ignored\n", vb, why);
    return -1;
}

static const char *const action_names[] = {"report", "fail", "abort"};

BSL_RARE static int action_of(const char *v, size_t n)
{
    for (int i = 0; i < 3; i++)
        if (strlen(action_names[i]) == n && memcmp(v, action_names[i], n) == 0)
            return i;
    return -1;
}

int oom_action_check(const char *val, size_t n)
{
    if (action_of(val, n) >= 0)
        return 0;
    char vb[64];
    size_t k = n < sizeof(vb) - 1 ? n : sizeof(vb) - 1;
    memcpy(vb, val, k);
    vb[k] = 0;
    os_printf(2, "buddyslab: option 'oom_action': bad value '%s' (expected report, fail or abort); keeping '%s'\n", vb,
              action_names[oom_action]);
    return -1;
}

/* ---- accounts ---- */
static unsigned acct_find(const char *name, size_t n, int is_tag)
{
    unsigned na = __atomic_load_n(&oom_naccts, __ATOMIC_ACQUIRE);
    for (unsigned i = 1; i < na; i++) {
        struct oom_acct *a = &oom_accts[i];
        if (a->is_tag == is_tag && strncmp(a->name, name, n) == 0 && a->name[n] == 0)
            return i;
    }
    return 0;
}

/* The account, created when missing (0: the table is full). */
static unsigned acct_get(const char *name, size_t n, int is_tag)
{
    unsigned i = acct_find(name, n, is_tag);
    if (i)
        return i;
    os_lock(&oom_acct_lock);
    i = acct_find(name, n, is_tag);
    if (!i && oom_naccts < OOM_MAX_ACCTS) {
        i = oom_naccts;
        memcpy(oom_accts[i].name, name, n);
        oom_accts[i].name[n] = 0;
        oom_accts[i].is_tag = (uint8_t)is_tag;
        __atomic_store_n(&oom_naccts, i + 1, __ATOMIC_RELEASE);
    }
    os_unlock(&oom_acct_lock);
    return i;
}

/* Set a budget; 0 or -1 (errno ENOSPC: no account left). */
static int budget_set(const char *name, size_t n, int is_tag, uint64_t bytes)
{
    unsigned i = acct_get(name, n, is_tag);
    if (!i) {
        errno = ENOSPC;
        return -1;
    }
    os_lock(&oom_acct_lock);
    uint64_t old = oom_accts[i].budget;
    __atomic_store_n(&oom_accts[i].budget, bytes, __ATOMIC_RELEASE);
    if (!is_tag && (!old) != (!bytes)) /* a pattern joins or leaves the matching: sites re-resolve */
        __atomic_add_fetch(&oom_gen, 1, __ATOMIC_RELEASE);
    os_unlock(&oom_acct_lock);
    if (bytes)
        oom_turn_on();
    return 0;
}

int oom_budget_set_spec(const char *spec, size_t n)
{
    struct budget_spec b;
    if (budget_parse(spec, n, &b)) {
        errno = EINVAL;
        return -1;
    }
    return budget_set(b.name, b.n, b.is_tag, (uint64_t)b.size);
}

/* A name as the API takes it, "pattern" or "tag:NAME": the account's name (*n bytes) and kind. */
static const char *api_name(const char *s, size_t *n, int *is_tag)
{
    size_t len = s ? strlen(s) : 0;
    *is_tag = len > 4 && memcmp(s, "tag:", 4) == 0;
    *n = len - (*is_tag ? 4 : 0);
    return s + (*is_tag ? 4 : 0);
}

/* "pattern" or "tag:NAME" -> the account (0: none). */
unsigned oom_acct_named(const char *name)
{
    size_t n;
    int is_tag;
    const char *nm = api_name(name, &n, &is_tag);
    return acct_find(nm, n, is_tag);
}

int oom_budget_set(const char *pattern, uint64_t bytes)
{
    size_t nn;
    int is_tag;
    const char *name = api_name(pattern, &nn, &is_tag);
    if (nn == 0 || nn >= OOM_NAME_MAX || memchr(name, ';', nn)) {
        errno = EINVAL;
        return -1;
    }
    return budget_set(name, nn, is_tag, bytes);
}

BSL_RARE void oom_apply(void)
{
    oom_soft = (uint64_t)opt_soft_limit;
    oom_hard = (uint64_t)opt_hard_limit;
    int a = action_of(opt_oom_action, strlen(opt_oom_action));
    oom_action = a < 0 ? OOM_ACT_REPORT : a;
    /* Every budget option entry (idempotent: a budget set again keeps its account). */
    const char *s = __atomic_load_n(&budget_given, __ATOMIC_RELAXED) ? opt_budget : "";
    while (*s) {
        const char *e = s;
        while (*e && *e != ';')
            e++;
        oom_budget_set_spec(s, (size_t)(e - s));
        s = *e ? e + 1 : e;
    }
    __atomic_store_n(&oom_limits_on, oom_soft || oom_hard, __ATOMIC_RELEASE);
    oom_watermarks();
    if (oom_soft || oom_hard)
        oom_turn_on();
}

BSL_RARE int oom_wants_tracking(void) { return oom_on || oom_limits_on; }

uint64_t oom_sample_bytes(void) { return (uint64_t)opt_oom_sample; }

/* ---- tags ---- */
int oom_tag_push(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n >= OOM_NAME_MAX || memchr(name, ';', n) || tag_depth >= OOM_TAG_DEPTH)
        return -1;
    unsigned i = 0, na = __atomic_load_n(&oom_naccts, __ATOMIC_ACQUIRE);
    for (unsigned k = 1; k < na; k++) /* a literal pushed again: one pointer compare */
        if (oom_accts[k].is_tag && __atomic_load_n(&oom_accts[k].lit, __ATOMIC_RELAXED) == name) {
            i = k;
            break;
        }
    if (!i) {
        i = acct_get(name, n, 1);
        if (!i)
            return -1;
        __atomic_store_n(&oom_accts[i].lit, name, __ATOMIC_RELAXED);
    }
    tag_stack[tag_depth++] = oom_tag;
    oom_tag = (uint16_t)i;
    return 0;
}

int oom_tag_pop(void)
{
    if (!tag_depth)
        return -1;
    oom_tag = tag_stack[--tag_depth];
    return 0;
}

const char *oom_tag_name(void) { return oom_tag ? oom_accts[oom_tag].name : NULL; }

/* ---- enforcing a budget exactly while sampling ----
 * Sampled tracking sees about one allocation per oom_sample bytes, so under oom_action=fail a
 * runaway site would get only its sampled allocations refused. When an account comes within
 * OOM_FORCE_SAMPLES samples of its budget, its allocations are tracked in full (oom_forced[a]): each
 * weighs 1, so the account's live bytes grow exactly from there and every allocation from an
 * over-budget site is refused. Sampling resumes when the account falls twice that far below its
 * budget (hysteresis: no flapping). For a tag only the allocations made under that tag pay for
 * full tracking (the thread knows its tag; the other threads' allocations only leave the inline
 * unsampled path for the hooked one, which reads the tag: track_lean_hold_add); for a pattern, the site is known only after capturing
 * the stack, so sampling is suspended process-wide (track_force_add) and every allocation pays. */
#define OOM_FORCE_SAMPLES 16

static void force_on(unsigned a)
{
    os_lock(&oom_acct_lock);
    if (!oom_forced[a]) {
        __atomic_store_n(&oom_forced[a], 1, __ATOMIC_RELEASE);
        if (!oom_accts[a].is_tag)
            track_force_add(1);
        else
            track_lean_hold_add(1); /* the inline path does not read the tag (hooks.h) */
    }
    os_unlock(&oom_acct_lock);
}

static __attribute__((noinline)) void force_maybe_off(unsigned a, int64_t bytes)
{
    int64_t margin = (int64_t)(2 * OOM_FORCE_SAMPLES * track_sample_bytes);
    if (bytes + margin > (int64_t)oom_accts[a].budget || !os_trylock(&oom_acct_lock))
        return;
    if (oom_forced[a]) {
        __atomic_store_n(&oom_forced[a], 0, __ATOMIC_RELEASE);
        if (!oom_accts[a].is_tag)
            track_force_add(-1);
        else
            track_lean_hold_add(-1);
    }
    os_unlock(&oom_acct_lock);
}

/* An admitted sampled allocation from account a: near its budget, suspend sampling. */
static inline void force_check(unsigned a, int64_t w)
{
    uint64_t b = oom_accts[a].budget;
    if (b && track_sample_bytes && oom_action == OOM_ACT_FAIL && !oom_forced[a] &&
        __atomic_load_n(&oom_accts[a].bytes, __ATOMIC_RELAXED) + w + (int64_t)(OOM_FORCE_SAMPLES * track_sample_bytes) >
            (int64_t)b)
        force_on(a);
}

/* ---- charging ---- */
void oom_weight(uint64_t size, int exact, int64_t *bytes, int64_t *blocks_fp)
{
    if (!track_sample_bytes || size >= track_sample_bytes || exact) {
        *bytes = (int64_t)size;
        *blocks_fp = (int64_t)1 << OOM_WEIGHT_SHIFT;
        return;
    }
    double wb, wy;
    track_weigh(size, 0, &wb, &wy);
    *bytes = (int64_t)(wy + 0.5);
    *blocks_fp = (int64_t)(wb * (double)(1 << OOM_WEIGHT_SHIFT) + 0.5);
}

void oom_charge(const struct track_site *s, uint64_t size, int sign, int exact)
{
    struct oom_site *o = oom_site_of(s);
    int64_t w, b;
    oom_weight(size, exact, &w, &b);
    w *= sign;
    b *= sign;
    __atomic_fetch_add(&o->bytes, w, __ATOMIC_RELAXED);
    __atomic_fetch_add(&o->blocks_fp, b, __ATOMIC_RELAXED);
    unsigned a = __atomic_load_n(&o->acct, __ATOMIC_RELAXED), t = track_site_label(s);
    if (a) {
        int64_t now = __atomic_add_fetch(&oom_accts[a].bytes, w, __ATOMIC_RELAXED);
        if (unlikely(oom_forced[a]) && sign < 0)
            force_maybe_off(a, now);
    }
    if (t) {
        int64_t now = __atomic_add_fetch(&oom_accts[t].bytes, w, __ATOMIC_RELAXED);
        if (unlikely(oom_forced[t]) && sign < 0)
            force_maybe_off(t, now);
    }
}

/* ---- the pattern index: the address ranges of the functions each budgeted pattern matches ----
 * Built by walking every loaded module's symbol table once (the patterns matched against each
 * function's demangled name), so that resolving a site is a binary search per frame instead of
 * symbolizing its frames: programs with many sites (python: thousands of interpreter stacks) paid
 * for libdw on every frame of every new site (python, budget=main, full tracking: 1.9x). Rebuilt
 * when the budget generation changes; extended with just the new modules when the dynamic loader
 * has loaded objects since. All under oom_acct_lock (-> track_sym_lock inside the walk). */
struct prange {
    uintptr_t lo, hi;
    uint32_t acct;
};
#define PIDX_MODULES 512
BSL_BIG_BSS static struct {
    int state; /* 0: not built, 1: built, -1: libdw unavailable (symbolize frames instead) */
    uint32_t gen;
    unsigned long long adds;
    struct prange *r;
    size_t n, cap;
    uintptr_t mods[PIDX_MODULES]; /* modules walked (load bases) */
    unsigned nmods;
} pidx;

static int pidx_module(uintptr_t base, void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < pidx.nmods; i++)
        if (pidx.mods[i] == base)
            return 0;
    if (pidx.nmods < PIDX_MODULES)
        pidx.mods[pidx.nmods++] = base;
    return 1;
}

static void pidx_add(uintptr_t lo, uintptr_t hi, const char *name, void *arg)
{
    (void)arg;
    unsigned na = oom_naccts, a = 0;
    for (unsigned i = 1; i < na && !a; i++)
        if (!oom_accts[i].is_tag && oom_accts[i].budget && track_tmatch(oom_accts[i].name, name))
            a = i;
    if (!a)
        return;
    if (pidx.n == pidx.cap) {
        size_t ncap = pidx.cap ? pidx.cap * 2 : 256;
        struct prange *nr = track_realloc(pidx.r, pidx.cap * sizeof(*nr), ncap * sizeof(*nr));
        if (!nr)
            return;
        pidx.r = nr;
        pidx.cap = ncap;
    }
    pidx.r[pidx.n++] = (struct prange){lo, hi, a};
}

static void pidx_sort(void)
{
    struct prange *r = pidx.r;
    size_t n = pidx.n;
    for (size_t gap = n / 2; gap > 0; gap = gap == 2 ? 1 : gap * 5 / 11) /* Shell sort on lo */
        for (size_t i = gap; i < n; i++) {
            struct prange t = r[i];
            size_t j = i;
            for (; j >= gap && r[j - gap].lo > t.lo; j -= gap)
                r[j] = r[j - gap];
            r[j] = t;
        }
}

/* The index is current for generation gen and the modules loaded now. */
static void pidx_update(uint32_t gen)
{
    if (pidx.state < 0)
        return;
    if (pidx.state == 1 && pidx.gen == gen && track_syms_adds() == pidx.adds)
        return;
    if (pidx.state == 0 || pidx.gen != gen) { /* new patterns: every module again */
        pidx.n = 0;
        pidx.nmods = 0;
    }
    if (track_syms_walk(pidx_module, pidx_add, NULL, &pidx.adds) != 0) {
        pidx.state = -1;
        return;
    }
    pidx_sort();
    pidx.state = 1;
    pidx.gen = gen;
}

/* The lowest account whose range holds pc, or 0. */
static unsigned pidx_lookup(uintptr_t pc)
{
    size_t lo = 0, hi = pidx.n; /* the last range with r.lo <= pc */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (pidx.r[mid].lo <= pc)
            lo = mid + 1;
        else
            hi = mid;
    }
    unsigned best = 0;
    for (size_t i = lo; i-- > 0 && lo - i <= 8;) /* aliases and nested ranges: a few neighbours */
        if (pc < pidx.r[i].hi && (!best || pidx.r[i].acct < best))
            best = pidx.r[i].acct;
    return best;
}

/* The pattern account of a site: the first (lowest) budgeted pattern matching the function name of
 * any of its frames, from the index (or, without libdw, by symbolizing the frames with dladdr). Runs
 * once per site and budget generation, under oom_acct_lock (it ranks before track_sym_lock,
 * os/lock_rank.h). The site's live bytes move with it. */
static __attribute__((noinline)) void site_resolve(const struct track_site *s, struct oom_site *o)
{
    os_lock(&oom_acct_lock);
    uint32_t gen = __atomic_load_n(&oom_gen, __ATOMIC_ACQUIRE);
    if (o->gen != gen) {
        unsigned best = 0, na = oom_naccts, npat = 0;
        for (unsigned i = 1; i < na; i++)
            npat += !oom_accts[i].is_tag && oom_accts[i].budget;
        const uintptr_t *fr;
        unsigned d = npat ? track_site_frames(s, &fr) : 0; /* no pattern budget: nothing to look up */
        if (d)
            pidx_update(gen);
        for (unsigned k = 0; k < d; k++) {
            if (pidx.state == 1) {
                unsigned a = pidx_lookup(fr[k] - 1); /* inside the call instruction */
                if (a && (!best || a < best))
                    best = a;
                continue;
            }
            const struct track_sym *sym = track_sym_name(fr[k]);
            if (!sym->func)
                continue;
            for (unsigned i = 1; i < na && (!best || i < best); i++)
                if (!oom_accts[i].is_tag && oom_accts[i].budget && track_tmatch(oom_accts[i].name, sym->func))
                    best = i;
        }
        unsigned old = o->acct;
        if (old != best) {
            int64_t w = __atomic_load_n(&o->bytes, __ATOMIC_RELAXED);
            if (old)
                __atomic_fetch_sub(&oom_accts[old].bytes, w, __ATOMIC_RELAXED);
            if (best)
                __atomic_fetch_add(&oom_accts[best].bytes, w, __ATOMIC_RELAXED);
            __atomic_store_n(&o->acct, (uint16_t)best, __ATOMIC_RELAXED);
        }
        __atomic_store_n(&o->gen, gen, __ATOMIC_RELEASE);
    }
    os_unlock(&oom_acct_lock);
}

int64_t oom_acct_blocks_fp(unsigned a)
{
    int64_t sum = 0;
    uint32_t n = __atomic_load_n(&track_nsites, __ATOMIC_ACQUIRE);
    for (uint32_t i = 1; i <= n; i++) {
        const struct track_site *s = track_site_get(i);
        if (s && (oom_site_of(s)->acct == a || track_site_label(s) == a))
            sum += __atomic_load_n(&oom_site_of(s)->blocks_fp, __ATOMIC_RELAXED);
    }
    return sum;
}

int oom_admit(const struct track_site *s, uint64_t size, int exact)
{
    struct oom_site *o = oom_site_of(s);
    if (unlikely(__atomic_load_n(&o->gen, __ATOMIC_ACQUIRE) != __atomic_load_n(&oom_gen, __ATOMIC_RELAXED)))
        site_resolve(s, o);
    int64_t w, b;
    oom_weight(size, exact, &w, &b);
    unsigned a = o->acct, t = track_site_label(s);
    if (a)
        force_check(a, w);
    if (t)
        force_check(t, w);
    if (a && oom_acct_would_cross(a, w) && oom_over_budget(s, a, w, size) != 0)
        return -1;
    if (t && oom_acct_would_cross(t, w) && oom_over_budget(s, t, w, size) != 0)
        return -1;
    if (unlikely(oom_victim) && oom_victim == track_site_idx(s))
        return oom_victim_admit();
    return 0;
}
