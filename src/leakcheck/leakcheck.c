/* Leak tracker: the hooks, per-thread state, sampling, the block map (block address -> site, size),
 * the site table (liburcu's lock-free hash table, loaded with dlopen), fork handlers, and the
 * report at exit or on demand. See docs/DESIGN.md, "Leak tracker".
 *
 * Locking: each block map shard has a lock (lk_lock_t); site creation takes site_lock; the thread
 * registry takes treg_lock; a report takes report_lock, then every shard in index order. Nothing
 * here holds one of these while waiting for another thread, except the shard -> allocator order
 * (a shard grows its table with bsl_raw_malloc while locked); the hooks run outside every
 * allocator lock, so the order is never reversed. fork(): leak_fork_prepare takes them all (and liburcu's
 * own locks), after the soft OOM policy's locks and before the allocator's (src/malloc/fork.c). */
#include "leakcheck/lk.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* liburcu's header gives the hash table's node layout; without it (liburcu-dev missing) the
 * tracker builds but reports itself unavailable. */
#if defined(__has_include)
#if __has_include(<urcu/rculfhash.h>)
#define BSL_HAVE_URCU 1
#endif
#endif
#ifndef BSL_HAVE_URCU
#define BSL_HAVE_URCU 0
#endif
#if BSL_HAVE_URCU
#include <urcu/rculfhash.h>
#else
struct cds_lfht_node {
    struct cds_lfht_node *next;
    unsigned long reverse_hash;
};
#endif

/* A weak reference to dlsym only: a static program (linked with libbuddyslab.a) gets NULL unless
 * it links the dl functions in itself, and then has no leak tracking (it needs dlopen for liburcu
 * and libdw). dlopen itself is looked up with dlsym: naming it would make the static link warn
 * ("Using 'dlopen' in statically linked applications..."), even through a weak reference. */
extern void *dlsym(void *, const char *) __attribute__((weak));
static void *(*lk_dlopen_fn)(const char *, int);

__thread int lk_guard;
static __thread struct lk_thread *lk_self;
static __thread int lk_tstate;       /* 0: not set up, 1: set up, 2: exiting (key destructor ran) */
__thread int64_t lk_countdown; /* sampling: bytes until the next sampled allocation */

uint64_t lk_sample_bytes;
int lk_force;
static int lk_on;            /* tracking started */
static int lk_done;          /* the exit report was written: the hooks do nothing any more */
static unsigned lk_depth;    /* frames per stack (option leak_depth) */
static pthread_key_t lk_key; /* its destructor notes thread exit */

/* ---- small helpers ---- */
/* The tracker's blocks: bsl_raw_malloc with a 16-byte header holding the size, so that lk_free
 * can wipe them (block addresses left in freed memory would be taken for pointers by a later scan
 * once the program got that memory back) without asking the allocator, whose
 * malloc_usable_size reads debug canaries our blocks do not have.
 * The blocks that exist only during a report (snapshot, buffers) are also listed: the heap walk of
 * a sampled report must not take them for the program's (they hold block addresses). Only the
 * reporting thread (report_lock) adds and removes entries. */
#define LK_HDR 16
#define LK_SCRATCH_MAX 256
static uintptr_t lk_scratch[LK_SCRATCH_MAX]; /* block starts (headers) */
static unsigned lk_nscratch;
static __thread int lk_in_report; /* this thread is writing a report */

static void *lk_alloc_raw(size_t n)
{
    char *b = bsl_raw_malloc(n + LK_HDR);
    if (!b)
        return NULL;
    *(size_t *)(void *)b = n;
    if (lk_in_report && lk_nscratch < LK_SCRATCH_MAX)
        lk_scratch[lk_nscratch++] = (uintptr_t)b;
    return b + LK_HDR;
}

void *lk_alloc(size_t n)
{
    void *p = lk_alloc_raw(n);
    if (p)
        memset(p, 0, n);
    return p;
}

size_t lk_own_blocks(uintptr_t *out, size_t max)
{
    size_t n = 0;
    for (unsigned i = 0; i < lk_nscratch && n < max; i++)
        out[n++] = lk_scratch[i];
    return n;
}

void lk_free(void *p)
{
    if (!p)
        return;
    char *b = (char *)p - LK_HDR;
    memset(b, 0, *(size_t *)(void *)b + LK_HDR);
    if (lk_in_report)
        for (unsigned i = 0; i < lk_nscratch; i++)
            if (lk_scratch[i] == (uintptr_t)b) {
                lk_scratch[i] = lk_scratch[--lk_nscratch];
                break;
            }
    bsl_raw_free(b);
}

void *lk_realloc(void *p, size_t old, size_t n)
{
    void *q = lk_alloc_raw(n);
    if (!q)
        return NULL;
    if (p) {
        memcpy(q, p, old < n ? old : n);
        lk_free(p);
    }
    return q;
}

/* A program without a dynamic loader (cc -static) cannot dlopen the shared libraries we need. */
static int lk_is_dynamic_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_INTERP)
            *(int *)arg = 1;
    return 1; /* the first object is the main program */
}

static int lk_dynamic = -1;
static int lk_is_dynamic(void)
{
    if (lk_dynamic < 0) {
        int d = 0;
        if (dlsym)
            dl_iterate_phdr(lk_is_dynamic_cb, &d);
        if (d)
            *(void **)&lk_dlopen_fn = dlsym(RTLD_DEFAULT, "dlopen");
        lk_dynamic = d && lk_dlopen_fn;
    }
    return lk_dynamic;
}

void *lk_dlopen(const char *name)
{
    if (!lk_is_dynamic())
        return NULL;
    return lk_dlopen_fn(name, RTLD_NOW | RTLD_LOCAL);
}

void *lk_dlsym(void *handle, const char *name)
{
    if (!lk_is_dynamic())
        return NULL;
    return dlsym(handle, name);
}

double lk_log(double x)
{
    if (!(x > 0))
        return -1e300;
    union {
        double d;
        uint64_t u;
    } v = {x};
    int e = (int)((v.u >> 52) & 0x7ff) - 1023;
    v.u = (v.u & 0x000fffffffffffffull) | 0x3ff0000000000000ull; /* mantissa in [1, 2) */
    double m = v.d;
    if (m > 1.4142135623730951) {
        m *= 0.5;
        e++;
    }
    double s = (m - 1) / (m + 1), s2 = s * s; /* |s| <= 0.172: ln m = 2 atanh s */
    double r = 2.0 / 17;
    for (int k = 15; k >= 1; k -= 2)
        r = 2.0 / k + s2 * r;
    return s * r + e * 0.6931471805599453;
}

double lk_exp(double x)
{
    if (x < -700)
        return 0;
    if (x > 700)
        x = 700;
    long k = (long)(x * 1.4426950408889634 + (x >= 0 ? 0.5 : -0.5));
    double r = x - (double)k * 0.6931471805599453; /* |r| <= 0.35 */
    double t = 1, sum = 1;
    for (int i = 1; i <= 14; i++) {
        t *= r / i;
        sum += t;
    }
    union {
        double d;
        uint64_t u;
    } v;
    v.u = (uint64_t)(k + 1023) << 52;
    return sum * v.d;
}

char *lk_read_file(const char *path, size_t *len)
{
    int saved = errno;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        errno = saved;
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = lk_alloc_raw(cap);
    while (buf) {
        if (cap - n < 4096) {
            char *nb = lk_realloc(buf, n, cap * 2);
            if (!nb) {
                lk_free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (buf)
        buf[n] = 0;
    if (len)
        *len = n;
    errno = saved;
    return buf;
}

static inline uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* ---- liburcu (dlopen'ed: no link-time dependency, nothing loaded while tracking is off) ---- */
struct cds_lfht;
struct cds_lfht_iter_lk { /* struct cds_lfht_iter: node, next (no debug member in Debian's build) */
    struct cds_lfht_node *node, *next;
};
typedef int (*lk_match_fn)(struct cds_lfht_node *, const void *);
static struct {
    void (*read_lock)(void);
    void (*read_unlock)(void);
    void (*before_fork)(void);
    void (*after_fork_parent)(void);
    void (*after_fork_child)(void);
    const void *flavor;
    struct cds_lfht *(*lfht_new)(unsigned long, unsigned long, unsigned long, int, const void *, const void *,
                                 pthread_attr_t *);
    void (*lookup)(struct cds_lfht *, unsigned long, lk_match_fn, const void *, struct cds_lfht_iter_lk *);
    struct cds_lfht_node *(*add_unique)(struct cds_lfht *, unsigned long, lk_match_fn, const void *,
                                        struct cds_lfht_node *);
    void (*resize)(struct cds_lfht *, unsigned long);
} urcu;

static int urcu_load(void)
{
#if !BSL_HAVE_URCU
    return -1;
#else
    void *bp = lk_dlopen("liburcu-bp.so.8");
    void *cds = lk_dlopen("liburcu-cds.so.8");
    if (!bp || !cds)
        return -1;
    urcu.read_lock = (void (*)(void))lk_dlsym(bp, "urcu_bp_read_lock");
    urcu.read_unlock = (void (*)(void))lk_dlsym(bp, "urcu_bp_read_unlock");
    urcu.before_fork = (void (*)(void))lk_dlsym(bp, "urcu_bp_before_fork");
    urcu.after_fork_parent = (void (*)(void))lk_dlsym(bp, "urcu_bp_after_fork_parent");
    urcu.after_fork_child = (void (*)(void))lk_dlsym(bp, "urcu_bp_after_fork_child");
    urcu.flavor = lk_dlsym(bp, "urcu_bp_flavor");
    *(void **)&urcu.lfht_new = lk_dlsym(cds, "_cds_lfht_new");
    *(void **)&urcu.lookup = lk_dlsym(cds, "cds_lfht_lookup");
    *(void **)&urcu.add_unique = lk_dlsym(cds, "cds_lfht_add_unique");
    *(void **)&urcu.resize = lk_dlsym(cds, "cds_lfht_resize");
    if (!urcu.read_lock || !urcu.read_unlock || !urcu.before_fork || !urcu.after_fork_parent ||
        !urcu.after_fork_child || !urcu.flavor || !urcu.lfht_new || !urcu.lookup || !urcu.add_unique ||
        !urcu.resize)
        return -1;
    return 0;
#endif
}

/* ---- sites ----
 * A site is published in the lock-free hash table (readers take only urcu's read lock) and in
 * site_dir (index -> site) for the report. Each thread also keeps a small direct-mapped cache of
 * the sites it used last, so a hot allocation site costs no hash table lookup at all. */
struct lk_site {
    struct cds_lfht_node node; /* first: the table links sites through it */
    uint64_t hash;
    uint32_t idx;
    uint16_t depth;
    uint16_t tag;        /* oom_tag when the stack was captured (part of the identity) */
    struct oom_site oom; /* live bytes and budget account (src/oom/) */
    uintptr_t frames[];
};

#define SITE_CHUNK_SHIFT 12
#define SITE_DIR_SIZE ((LK_MAX_SITES >> SITE_CHUNK_SHIFT) + 1)
static struct lk_site **site_dir[SITE_DIR_SIZE];
static os_lock_t site_lock = OS_LOCK_INIT(LOCK_RANK_LEAK_SITE);
static char *site_arena, *site_arena_end;
static uint32_t site_next = 1;   /* next index to hand out (site_lock) */
uint32_t lk_nsites;              /* highest index handed out */
static struct cds_lfht *site_ht;
static unsigned long site_ht_size;
static os_lock_t resize_lock = OS_LOCK_INIT(LOCK_RANK_LEAK_RESIZE);
static struct lk_site site_unknown; /* index 0: stacks we could not record (too many sites) */

const struct lk_site *lk_site_get(uint32_t i)
{
    if (i == 0)
        return &site_unknown;
    struct lk_site **chunk = __atomic_load_n(&site_dir[i >> SITE_CHUNK_SHIFT], __ATOMIC_ACQUIRE);
    return chunk ? __atomic_load_n(&chunk[i & ((1u << SITE_CHUNK_SHIFT) - 1)], __ATOMIC_ACQUIRE) : NULL;
}

unsigned lk_site_frames(const struct lk_site *s, const uintptr_t **frames)
{
    *frames = s->frames;
    return s->depth;
}

struct oom_site *lk_site_oom(const struct lk_site *s) { return (struct oom_site *)&s->oom; }
uint16_t lk_site_tag(const struct lk_site *s) { return s->tag; }
uint32_t lk_site_idx(const struct lk_site *s) { return s->idx; }

struct site_key {
    const uintptr_t *frames;
    unsigned depth;
    uint16_t tag;
};

static int site_match(struct cds_lfht_node *node, const void *key)
{
    const struct lk_site *s = (const struct lk_site *)node;
    const struct site_key *k = key;
    return s->depth == k->depth && s->tag == k->tag &&
           memcmp(s->frames, k->frames, k->depth * sizeof(uintptr_t)) == 0;
}

/* A new site, not yet published (NULL: out of memory or of indices). */
static struct lk_site *site_new(const uintptr_t *frames, unsigned depth, uint16_t tag, uint64_t hash)
{
    size_t sz = (sizeof(struct lk_site) + depth * sizeof(uintptr_t) + 15) & ~(size_t)15;
    os_lock(&site_lock);
    if (site_next > LK_MAX_SITES) {
        os_unlock(&site_lock);
        return NULL;
    }
    uint32_t idx = site_next;
    unsigned ci = idx >> SITE_CHUNK_SHIFT;
    if (!site_dir[ci]) {
        struct lk_site **chunk = lk_alloc(sizeof(struct lk_site *) << SITE_CHUNK_SHIFT);
        if (!chunk) {
            os_unlock(&site_lock);
            return NULL;
        }
        __atomic_store_n(&site_dir[ci], chunk, __ATOMIC_RELEASE);
    }
    if ((size_t)(site_arena_end - site_arena) < sz) {
        size_t csz = 256 << 10;
        site_arena = lk_alloc(csz);
        if (!site_arena) {
            site_arena_end = NULL;
            os_unlock(&site_lock);
            return NULL;
        }
        site_arena_end = site_arena + csz;
    }
    struct lk_site *s = (struct lk_site *)site_arena;
    site_arena += sz;
    site_next++;
    __atomic_store_n(&lk_nsites, idx, __ATOMIC_RELEASE);
    os_unlock(&site_lock);
    s->hash = hash;
    s->idx = idx;
    s->depth = (uint16_t)depth;
    s->tag = tag;
    memcpy(s->frames, frames, depth * sizeof(uintptr_t));
    return s;
}

static void site_publish(struct lk_site *s)
{
    __atomic_store_n(&site_dir[s->idx >> SITE_CHUNK_SHIFT][s->idx & ((1u << SITE_CHUNK_SHIFT) - 1)], s,
                     __ATOMIC_RELEASE);
}

/* The hash table grows by hand (no CDS_LFHT_AUTO_RESIZE: that starts a worker thread in the
 * program): the thread whose insertion makes the table too loaded resizes it, outside the read
 * lock, under resize_lock (so fork never sees a resize half done). */
static void site_ht_maybe_grow(uint32_t nsites)
{
    if (nsites <= 2 * __atomic_load_n(&site_ht_size, __ATOMIC_RELAXED) || !os_trylock(&resize_lock))
        return;
    unsigned long size = site_ht_size;
    if (nsites > 2 * size && size < (1ul << 22)) {
        size *= 4;
        urcu.resize(site_ht, size);
        __atomic_store_n(&site_ht_size, size, __ATOMIC_RELAXED);
    }
    os_unlock(&resize_lock);
}

#define LK_TCACHE 256
struct lk_tcache {
    uint64_t hash;
    const struct lk_site *site;
};

struct lk_thread {
    uintptr_t lo, hi; /* stack bounds */
    uint64_t rng;
    struct lk_treg *reg;
    struct lk_memo memo;
    struct lk_tcache cache[LK_TCACHE];
};

static uint32_t site_find(struct lk_thread *t, const uintptr_t *frames, unsigned depth, uint16_t tag)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ depth ^ ((uint64_t)tag << 32);
    for (unsigned i = 0; i < depth; i++) { /* one multiply per frame; mixed once at the end */
        h = (h ^ frames[i]) * 0x9E3779B97F4A7C15ull;
        h = h << 31 | h >> 33;
    }
    h = mix64(h);
    struct site_key key = {frames, depth, tag};
    struct lk_tcache *ce = t ? &t->cache[h & (LK_TCACHE - 1)] : NULL;
    if (ce && ce->hash == h && ce->site && site_match((struct cds_lfht_node *)ce->site, &key))
        return ce->site->idx;
    struct cds_lfht_iter_lk it;
    urcu.read_lock();
    urcu.lookup(site_ht, (unsigned long)h, site_match, &key, &it);
    const struct lk_site *s = (const struct lk_site *)it.node;
    urcu.read_unlock();
    if (!s) {
        struct lk_site *n = site_new(frames, depth, tag, h);
        if (!n)
            return 0;
        urcu.read_lock();
        struct cds_lfht_node *got = urcu.add_unique(site_ht, (unsigned long)h, site_match, &key, &n->node);
        urcu.read_unlock();
        s = (const struct lk_site *)got;
        if (got == &n->node) {
            site_publish(n);
            site_ht_maybe_grow(n->idx);
        } /* else another thread published the same stack first: n's index stays a hole */
    }
    if (ce) {
        ce->hash = h;
        ce->site = s;
    }
    return s->idx;
}

/* ---- the block map: address -> (size, site), sharded open addressing ---- */
#define LK_SHARD_BITS 7
#define LK_SHARDS (1u << LK_SHARD_BITS)
struct lk_ent {
    uintptr_t key; /* 0: empty */
    uint64_t val;  /* LK_EXACT | LK_CHARGED | size << LK_SITE_IDX_BITS | site */
};
/* The shards' lock: a test-and-set lock released with a plain store, so taking and releasing it
 * costs one atomic instruction instead of the futex mutex's two (the hot path does it on every
 * malloc and free). Critical sections are a few loads and stores; a waiter spins, then yields,
 * then sleeps (a report holds every shard while it scans). */
typedef struct {
    int v;
} lk_lock_t;

static __attribute__((noinline)) void lk_lock_slow(lk_lock_t *l)
{
    for (unsigned n = 0;; n++) {
        while (__atomic_load_n(&l->v, __ATOMIC_RELAXED))
            os_backoff(n < 1000 ? n++ : n);
        if (!__atomic_exchange_n(&l->v, 1, __ATOMIC_ACQUIRE))
            return;
    }
}

static inline void lk_lock(lk_lock_t *l)
{
    if (likely(!__atomic_exchange_n(&l->v, 1, __ATOMIC_ACQUIRE)))
        return;
    lk_lock_slow(l);
}

static inline void lk_unlock(lk_lock_t *l) { __atomic_store_n(&l->v, 0, __ATOMIC_RELEASE); }

static inline int lk_trylock(lk_lock_t *l) { return !__atomic_exchange_n(&l->v, 1, __ATOMIC_ACQUIRE); }

struct lk_shard {
    lk_lock_t lock;
    struct lk_ent *tab;
    size_t mask;
    size_t count;
} __attribute__((aligned(64)));
static struct lk_shard shards[LK_SHARDS];

static inline uint64_t addr_hash(uintptr_t p) { return mix64(p >> 4); }
static inline struct lk_shard *shard_of(uint64_t h) { return &shards[h >> (64 - LK_SHARD_BITS)]; }

/* Sampling's filter of freed blocks: see lk_filter_of in leakcheck.h. */
uint16_t lk_filter[1u << LK_FILTER_BITS];
#define filter_of lk_filter_of

static int shard_grow(struct lk_shard *s)
{
    size_t ncap = s->tab ? (s->mask + 1) * 2 : 256;
    struct lk_ent *nt = lk_alloc(ncap * sizeof(struct lk_ent));
    if (!nt)
        return -1;
    if (s->tab) {
        for (size_t i = 0; i <= s->mask; i++) {
            if (!s->tab[i].key)
                continue;
            size_t j = addr_hash(s->tab[i].key) & (ncap - 1);
            while (nt[j].key)
                j = (j + 1) & (ncap - 1);
            nt[j] = s->tab[i];
        }
        lk_free(s->tab);
    }
    s->tab = nt;
    s->mask = ncap - 1;
    return 0;
}

/* 1: inserted, 0: replaced a stale record for the same address (*old: its value), -1: out of
 * memory. */
static int map_insert(uintptr_t key, uint64_t val, uint64_t h, uint64_t *old)
{
    struct lk_shard *s = shard_of(h);
    lk_lock(&s->lock);
    if ((!s->tab || (s->count + 1) * 4 > (s->mask + 1) * 3) && shard_grow(s) != 0) {
        lk_unlock(&s->lock);
        return -1;
    }
    size_t i = h & s->mask;
    while (s->tab[i].key) {
        if (s->tab[i].key == key) {
            *old = s->tab[i].val;
            s->tab[i].val = val;
            lk_unlock(&s->lock);
            return 0;
        }
        i = (i + 1) & s->mask;
    }
    s->tab[i].key = key;
    s->tab[i].val = val;
    s->count++;
    lk_unlock(&s->lock);
    return 1;
}

/* Remove key's record (linear probing, backward-shift deletion). 1 when there was one (*val: its
 * value), 0 when there was none, -1 when try_only and the shard is busy (perhaps held by this very
 * thread). */
static int map_remove(uintptr_t key, uint64_t h, int try_only, uint64_t *val)
{
    struct lk_shard *s = shard_of(h);
    if (try_only) {
        if (!lk_trylock(&s->lock))
            return -1;
    } else {
        lk_lock(&s->lock);
    }
    if (!s->tab) {
        lk_unlock(&s->lock);
        return 0;
    }
    size_t mask = s->mask, i = h & mask;
    while (s->tab[i].key != key) {
        if (!s->tab[i].key) {
            lk_unlock(&s->lock);
            return 0;
        }
        i = (i + 1) & mask;
    }
    *val = s->tab[i].val;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!s->tab[j].key)
            break;
        size_t k = addr_hash(s->tab[j].key) & mask; /* the slot it wants */
        /* It may move into the hole at i unless its wanted slot lies cyclically in (i, j]. */
        int stays = i <= j ? (k > i && k <= j) : (k > i || k <= j);
        if (!stays) {
            s->tab[i] = s->tab[j];
            i = j;
        }
    }
    s->tab[i].key = 0;
    s->tab[i].val = 0;
    s->count--;
    lk_unlock(&s->lock);
    return 1;
}

/* A free while this thread runs tracker code (lk_guard): libc functions the tracker calls may free
 * blocks the program allocated (dlsym frees the program's dlerror state, for one), whose records
 * must go. The shard is only tried (this thread may hold it: a report holds them all); when busy,
 * the address waits here until the thread leaves the tracker or the report ends. */
#define LK_DEFERRED 64
static __thread uintptr_t lk_deferred[LK_DEFERRED];
static __thread unsigned lk_ndeferred;

/* A record leaves the map: the block's bytes leave its site's account. */
static void uncharge(uint64_t val)
{
    if (!(val & LK_CHARGED))
        return;
    const struct lk_site *site = lk_site_get((uint32_t)(val & LK_MAX_SITES));
    if (site)
        oom_charge(site, (val & ~LK_FLAGS) >> LK_SITE_IDX_BITS, -1, !!(val & LK_EXACT));
}

static void forget(uintptr_t p, int try_only)
{
    uint64_t val = 0;
    int r = map_remove(p, addr_hash(p), try_only, &val);
    if (r == 1)
        uncharge(val);
    if (r == 1 && lk_sample_bytes)
        __atomic_fetch_sub(filter_of(p), 1, __ATOMIC_RELAXED);
    if (r < 0 && lk_ndeferred < LK_DEFERRED)
        lk_deferred[lk_ndeferred++] = p;
}

/* With lk_guard set and no shard held by this thread. */
static void drain_deferred(void)
{
    while (lk_ndeferred)
        forget(lk_deferred[--lk_ndeferred], 0);
}

static void blocks_sort(struct lk_block *a, size_t n)
{
    /* Quicksort on start (distinct keys), smaller half first, insertion sort below 16. */
    struct {
        size_t lo, hi;
    } st[64];
    int sp = 0;
    size_t lo = 0, hi = n;
    for (;;) {
        while (hi - lo > 16) {
            size_t mid = lo + (hi - lo) / 2;
            uintptr_t x = a[lo].start, y = a[mid].start, z = a[hi - 1].start;
            uintptr_t piv = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
            size_t i = lo, j = hi - 1;
            for (;;) {
                while (a[i].start < piv)
                    i++;
                while (a[j].start > piv)
                    j--;
                if (i >= j)
                    break;
                struct lk_block t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
            size_t cut = j + 1; /* [lo, cut) <= piv <= [cut, hi) */
            if (cut - lo < hi - cut) {
                st[sp].lo = cut;
                st[sp].hi = hi;
                hi = cut;
            } else {
                st[sp].lo = lo;
                st[sp].hi = cut;
                lo = cut;
            }
            sp++;
        }
        for (size_t i = lo + 1; i < hi; i++) {
            struct lk_block t = a[i];
            size_t j = i;
            while (j > lo && a[j - 1].start > t.start) {
                a[j] = a[j - 1];
                j--;
            }
            a[j] = t;
        }
        if (sp == 0)
            break;
        sp--;
        lo = st[sp].lo;
        hi = st[sp].hi;
    }
}

struct lk_block *lk_blocks_lock_snapshot(size_t *n)
{
    size_t total = 0;
    for (unsigned i = 0; i < LK_SHARDS; i++) {
        lk_lock(&shards[i].lock);
        total += shards[i].count;
    }
    *n = 0;
    struct lk_block *b = lk_alloc((total ? total : 1) * sizeof(struct lk_block));
    if (!b)
        return NULL;
    size_t k = 0;
    for (unsigned i = 0; i < LK_SHARDS; i++) {
        struct lk_shard *s = &shards[i];
        if (!s->tab)
            continue;
        for (size_t j = 0; j <= s->mask; j++)
            if (s->tab[j].key) {
                b[k].start = s->tab[j].key;
                b[k].size = (s->tab[j].val & ~LK_FLAGS) >> LK_SITE_IDX_BITS;
                b[k].exact = !!(s->tab[j].val & LK_EXACT);
                b[k].site = (uint32_t)(s->tab[j].val & LK_MAX_SITES);
                k++;
            }
    }
    blocks_sort(b, k);
    *n = k;
    return b;
}

size_t lk_shard_tables(uintptr_t *out, size_t max)
{
    size_t n = 0;
    for (unsigned i = 0; i < LK_SHARDS && n < max; i++)
        if (shards[i].tab)
            out[n++] = (uintptr_t)shards[i].tab - LK_HDR; /* block starts */
    return n;
}

void lk_blocks_unlock(void)
{
    for (unsigned i = LK_SHARDS; i-- > 0;)
        lk_unlock(&shards[i].lock);
}

/* ---- threads ---- */
struct lk_treg {
    struct lk_treg *next;
    struct lk_thread_info info;
};
static struct lk_treg *treg_head;
static os_lock_t treg_lock = OS_LOCK_INIT(LOCK_RANK_LEAK_THREADS);
#define LK_MAX_DEAD 256 /* exited threads remembered (their stacks may be cached by glibc) */

static void treg_add(struct lk_treg *r)
{
    os_lock(&treg_lock);
    /* A new thread on a recycled stack replaces the dead thread that had it; forget the oldest
     * dead threads beyond LK_MAX_DEAD. */
    unsigned dead = 0;
    for (struct lk_treg **pp = &treg_head; *pp;) {
        struct lk_treg *x = *pp;
        int overlap = x->info.lo < r->info.hi && r->info.lo < x->info.hi;
        if (x->info.tid == 0 && (overlap || ++dead > LK_MAX_DEAD)) {
            *pp = x->next;
            lk_free(x);
            continue;
        }
        pp = &x->next;
    }
    r->next = treg_head;
    treg_head = r;
    os_unlock(&treg_lock);
}

size_t lk_threads_snapshot(struct lk_thread_info *out, size_t max)
{
    size_t n = 0;
    os_lock(&treg_lock);
    for (struct lk_treg *x = treg_head; x && n < max; x = x->next)
        out[n++] = x->info;
    os_unlock(&treg_lock);
    return n;
}

static void lk_thread_exit(void *arg)
{
    struct lk_thread *t = arg;
    int g = lk_guard;
    lk_guard = 1;
    if (t && t == lk_self) {
        os_lock(&treg_lock);
        t->reg->info.tid = 0;
        os_unlock(&treg_lock);
        lk_self = NULL;
        lk_tstate = 2;
        lk_free(t);
    }
    lk_guard = g;
}

/* First tracked call in this thread (lk_guard set). */
static struct lk_thread *thread_setup(void)
{
    struct lk_thread *t = lk_alloc(sizeof(*t));
    struct lk_treg *r = lk_alloc(sizeof(*r));
    if (!t || !r) {
        lk_free(t);
        lk_free(r);
        lk_tstate = 2;
        return NULL;
    }
    pthread_attr_t a;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        void *addr;
        size_t sz;
        if (pthread_attr_getstack(&a, &addr, &sz) == 0) {
            t->lo = (uintptr_t)addr;
            t->hi = (uintptr_t)addr + sz;
        }
        pthread_attr_destroy(&a);
    }
    long tid = syscall(SYS_gettid);
    t->rng = os_random64() ^ ((uint64_t)tid << 32) ^ (uintptr_t)t;
    t->reg = r;
    r->info.tid = tid;
    r->info.tp = (uintptr_t)pthread_self();
    r->info.lo = t->lo;
    r->info.hi = t->hi;
    treg_add(r);
    pthread_setspecific(lk_key, t);
    lk_self = t;
    lk_tstate = 1;
    return t;
}

/* ---- sampling ---- */
static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Bytes until the next sample: exponential with mean lk_sample_bytes (memoryless, so every byte
 * has the same chance of being the sampled one). */
static int64_t draw_countdown(struct lk_thread *t)
{
    double u = (double)((rng_next(&t->rng) >> 11) + 1) * 0x1p-53; /* (0, 1] */
    double v = -lk_log(u) * (double)lk_sample_bytes;
    if (v < 1)
        v = 1;
    if (v > 0x1p62)
        v = 0x1p62;
    return (int64_t)v + 1;
}

/* The countdown ran out (or the thread has none yet): is this allocation of `size` sampled? */
static __attribute__((noinline)) int sample_slow(size_t size)
{
    if (lk_tstate == 2)
        return 0;
    struct lk_thread *t = lk_self;
    if (!t) {
        int saved = errno;
        lk_guard = 1;
        t = thread_setup();
        lk_guard = 0;
        errno = saved;
        if (!t)
            return 0;
        lk_countdown = draw_countdown(t) - (int64_t)size;
        if (lk_countdown > 0)
            return 0;
    }
    lk_countdown = draw_countdown(t);
    return 1;
}

/* ---- the hooks ---- */
/* The first half of tracking: capture the stack, find its site (under the thread's current tag)
 * and ask the soft OOM policy whether the allocation may go ahead. */
static __attribute__((noinline)) uint64_t track_site(size_t size, int exact)
{
    int saved = errno;
    lk_guard = 1;
    struct lk_thread *t = lk_self;
    if (!t && lk_tstate == 0)
        t = thread_setup();
    uintptr_t frames[LK_MAX_DEPTH];
    int same = 0;
    uint16_t tag = oom_tag;
    unsigned depth = lk_capture(frames, lk_depth, t ? t->lo : 0, t ? t->hi : 0, t ? &t->memo : NULL, &same);
    uint32_t site;
    if (same) {
        site = t->memo.site;
        const struct lk_site *s = lk_site_get(site);
        if (s && s->tag != tag) /* the same stack under another tag: another site */
            site = site_find(t, frames, lk_capture(frames, lk_depth, t->lo, t->hi, NULL, &same), tag);
    } else {
        site = site_find(t, frames, depth, tag);
    }
    if (t)
        t->memo.site = site;
    int refuse = 0;
    if (oom_on) {
        const struct lk_site *s = lk_site_get(site);
        refuse = s && oom_admit(s, size > LK_SIZE_MAX ? LK_SIZE_MAX : size, exact) != 0;
    }
    if (unlikely(lk_ndeferred))
        drain_deferred();
    lk_guard = 0;
    errno = saved;
    return refuse ? LEAK_REFUSE : ((uint64_t)site + 1) | (exact ? LK_EXACT : 0);
}

/* The second half: the block at p (its allocation succeeded) enters the map and its site's account. */
static __attribute__((noinline)) void track_block(void *p, size_t size, uint32_t site, int exact)
{
    int saved = errno;
    lk_guard = 1;
    uint64_t sz = size > LK_SIZE_MAX ? LK_SIZE_MAX : size;
    uint64_t h = addr_hash((uintptr_t)p), old = 0;
    const struct lk_site *s = __atomic_load_n(&oom_on, __ATOMIC_RELAXED) ? lk_site_get(site) : NULL;
    uint64_t val = (exact ? LK_EXACT : 0) | (s ? LK_CHARGED : 0) | sz << LK_SITE_IDX_BITS | site;
    int r = map_insert((uintptr_t)p, val, h, &old);
    if (r >= 0) {
        if (s)
            oom_charge(s, sz, 1, exact);
        if (r == 0)
            uncharge(old); /* a stale record (its free went unseen) */
    }
    if (r == 1 && lk_sample_bytes)
        __atomic_fetch_add(filter_of((uintptr_t)p), 1, __ATOMIC_RELAXED);
    if (unlikely(lk_ndeferred))
        drain_deferred();
    lk_guard = 0;
    errno = saved;
}

uint64_t leak_before_alloc(size_t size)
{
    if (lk_guard || unlikely(lk_done))
        return 0;
    if (lk_sample_bytes && size < lk_sample_bytes) {
        if (unlikely(__atomic_load_n(&lk_force, __ATOMIC_RELAXED) || oom_force_here()))
            return track_site(size, 1); /* a budget is being enforced: no sampling */
        int64_t c = lk_countdown - (int64_t)size;
        lk_countdown = c;
        if (likely(c > 0))
            return 0;
        if (!sample_slow(size))
            return 0;
    }
    return track_site(size, 0); /* every block in full mode; sampled ones (and all >= the sample size) otherwise */
}

void leak_after_alloc(void *p, size_t size, uint64_t ticket)
{
    if (ticket && ticket != LEAK_REFUSE && !lk_guard)
        track_block(p, size, (uint32_t)((ticket & ~LK_EXACT) - 1), !!(ticket & LK_EXACT));
}

void leak_on_alloc(void *p, size_t size)
{
    uint64_t t = leak_before_alloc(size);
    leak_after_alloc(p, size, t);
}

void leak_on_free(void *p)
{
    if (lk_sample_bytes && likely(!__atomic_load_n(filter_of((uintptr_t)p), __ATOMIC_RELAXED)))
        return; /* not sampled: the common case, decided first */
    if (unlikely(lk_done))
        return;
    if (lk_guard) {
        forget((uintptr_t)p, 1);
        return;
    }
    lk_guard = 1;
    forget((uintptr_t)p, 0);
    if (unlikely(lk_ndeferred))
        drain_deferred();
    lk_guard = 0;
}

/* ---- fork (called by src/malloc/fork.c's table) ---- */
static os_lock_t report_lock = OS_LOCK_INIT(LOCK_RANK_LEAK_REPORT);
static int lk_forking; /* leak_fork_prepare ran (the forking thread only) */

/* The tracker's outer locks, in their order: their holders may symbolize (libdw reads files with
 * stdio), so fork takes them in its first phase (fork.c). */
void leak_fork_locks(os_lock_visit_fn visit)
{
    visit(&report_lock);
    visit(&resize_lock);
    visit(&site_lock);
    visit(&lk_sym_lock);
}

/* A shard lock: taken; in careful mode (the forking thread may hold one: lk_guard, or some
 * allocator lock) given up after about a second. */
static unsigned char shard_given_up[LK_SHARDS];

void leak_fork_prepare(int careful)
{
    if (!lk_on)
        return;
    careful = careful || lk_guard;
    for (unsigned i = 0; i < LK_SHARDS; i++) {
        shard_given_up[i] = 0;
        if (!careful) {
            lk_lock(&shards[i].lock);
            continue;
        }
        unsigned n = 0;
        while (!lk_trylock(&shards[i].lock) && n < 20000)
            os_backoff(n++);
        shard_given_up[i] = n >= 20000;
    }
    os_fork_lock(&treg_lock, careful);
    urcu.before_fork();
    lk_forking = 1;
}

void leak_fork_parent(void)
{
    if (!lk_forking)
        return;
    lk_forking = 0;
    urcu.after_fork_parent();
    os_fork_unlock_parent(&treg_lock);
    for (unsigned i = LK_SHARDS; i-- > 0;)
        if (!shard_given_up[i])
            lk_unlock(&shards[i].lock);
}

void leak_fork_child(void)
{
    if (!lk_on)
        return;
    if (lk_forking) {
        lk_forking = 0;
        urcu.after_fork_child();
        os_fork_reset_child(&treg_lock);
        /* A shard given up is held by a thread that is gone, unless this thread was inside the
         * tracker (lk_guard): then its own interrupted frame holds it and releases it. */
        for (unsigned i = 0; i < LK_SHARDS; i++)
            if (!shard_given_up[i] || !lk_guard)
                shards[i].lock.v = 0;
    }
    /* Only the forking thread survives: the others' stacks are still mapped, as dead threads'. */
    for (struct lk_treg *x = treg_head; x; x = x->next)
        x->info.tid = 0;
    if (lk_self)
        lk_self->reg->info.tid = syscall(SYS_gettid);
}

/* ---- start, reports ---- */
int leak_init(void)
{
    int g = lk_guard;
    lk_guard = 1;
    int ok = 0;
    const char *why = NULL;
    lk_depth = (unsigned)(opt_leak_depth < 1 ? 1 : opt_leak_depth > LK_MAX_DEPTH ? LK_MAX_DEPTH : opt_leak_depth);
    lk_sample_bytes = opt_leak ? 0 : opt_leak_sample ? (uint64_t)opt_leak_sample : oom_sample_bytes();
    if (!lk_is_dynamic())
        why = "the program is statically linked (the tracker loads liburcu and libdw with dlopen)";
    else if (!BSL_HAVE_URCU)
        why = "built without liburcu headers (install liburcu-dev and rebuild)";
    else if (urcu_load() != 0)
        why = "liburcu-bp.so.8 / liburcu-cds.so.8 not found (install liburcu8)";
    else if (pthread_key_create(&lk_key, lk_thread_exit) != 0)
        why = "no pthread key left";
    else {
        site_ht_size = 1ul << 12;
        site_ht = urcu.lfht_new(site_ht_size, 1, 1ul << 22, 0, NULL, urcu.flavor, NULL);
        if (!site_ht)
            why = "cannot create the site table";
    }
    if (!why) {
        lk_unwind_init();
        lk_scan_init();
        lk_on = 1;
        ok = 1;
        /* The first thread: set it up now, while nothing else runs. */
        if (!lk_self && lk_tstate == 0)
            thread_setup();
    } else {
        os_printf(2, "buddyslab: allocation site tracking (options leak, leak_sample, budget, soft_limit, "
                     "hard_limit) is not available: %s\n", why);
    }
    lk_guard = g;
    return ok;
}

/* Classify and report (caller: not guarded). Returns the unsuppressed definitely lost blocks, or
 * -1 when tracking is off. */
static long lk_report(const char *path, int at_exit)
{
    if (!lk_on || lk_done)
        return -1;
    int g = lk_guard;
    if (g) { /* exit() from a signal handler that interrupted the tracker: its locks may be ours */
        os_printf(2, "buddyslab: leak report skipped: the process exits from inside the leak tracker\n");
        return -1;
    }
    int saved = errno;
    lk_guard = 1;
    os_lock(&report_lock);
    lk_in_report = 1;
    lk_nscratch = 0;
    size_t n = 0;
    struct lk_block *b = lk_blocks_lock_snapshot(&n);
    if (b)
        lk_scan(b, n);
    lk_blocks_unlock();
    /* Blocks freed by what the scan called (see lk_deferred) are not the program's leaks. */
    for (unsigned d = 0; b && d < lk_ndeferred; d++)
        for (size_t i = 0; i < n; i++)
            if (b[i].start == lk_deferred[d])
                b[i].state = LK_FREED;
    drain_deferred();
    long lost = 0;
    if (b) {
        lost = (long)lk_report_write(b, n, path, at_exit);
        lk_free(b);
    } else {
        os_printf(2, "buddyslab: leak report: out of memory\n");
    }
    lk_in_report = 0;
    os_unlock(&report_lock);
    lk_guard = g;
    errno = saved;
    return lost;
}

void leak_at_exit(void)
{
    if (!lk_on || lk_done || !(opt_leak || opt_leak_sample))
        return; /* tracking only for the soft OOM policy: no leak report, and it goes on */
    long lost = lk_report(opt_leak_report, 1);
    __atomic_store_n(&lk_done, 1, __ATOMIC_RELEASE);
    if (lost > 0 && opt_leak_exitcode) {
        fflush(NULL);
        _exit((int)opt_leak_exitcode);
    }
}

BSL_EXPORT int bsl_leak_report(const char *path)
{
    bsl_ensure_init();
    long r = lk_report(path && *path ? path : opt_leak_report, 0);
    return r > 0x7fffffff ? 0x7fffffff : (int)r;
}

int leak_tracking_mode(void)
{
    if (!lk_on)
        return 0;
    return lk_sample_bytes ? 2 : 1;
}

BSL_EXPORT int bsl_leak_tracking(void)
{
    bsl_ensure_init();
    if (!lk_on || lk_done)
        return 0;
    return lk_sample_bytes ? 2 : 1;
}
