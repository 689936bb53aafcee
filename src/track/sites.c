/* The site table: deduplicated allocation stacks. A site is a stack and a label (an opaque
 * per-thread value the caller passes: the soft OOM policy's tag), so the same stack under two labels
 * is two sites. Sites are immortal: published once, never freed.
 *
 * The hash index over them is liburcu's lock-free hash table (liburcu-cds with the urcu-bp
 * flavour, dlopen'ed) in a program with a dynamic loader, and siteindex.c's table in one without
 * (cc -static): `use_urcu` says which, set once by track_sites_load.
 *
 * Locking: site_lock serializes creation (index and arena) and, without liburcu, insertion into
 * siteindex.c's table; resize_lock liburcu's table's growth. Readers take only liburcu's read
 * lock (no lock at all without liburcu). fork(): track_fork_locks visits resize_lock, then
 * site_lock (outer phase); liburcu's own locks are taken last by track_fork_prepare. */
#include "track/track_int.h"

#include <link.h>
#include <pthread.h>
#include <string.h>

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

/* ---- liburcu (dlopen'ed: no link-time dependency, nothing loaded while tracking is off) ---- */
struct cds_lfht;
struct cds_lfht_iter_tr { /* struct cds_lfht_iter: node, next (no debug member in Debian's build) */
    struct cds_lfht_node *node, *next;
};
typedef int (*track_match_fn)(struct cds_lfht_node *, const void *);
static int use_urcu; /* 1: liburcu's hash table; 0: siteindex.c's (set once, before tracking starts) */
static struct {
    void (*read_lock)(void);
    void (*read_unlock)(void);
    void (*before_fork)(void);
    void (*after_fork_parent)(void);
    void (*after_fork_child)(void);
    const void *flavor;
    struct cds_lfht *(*lfht_new)(unsigned long, unsigned long, unsigned long, int, const void *, const void *,
                                 pthread_attr_t *);
    void (*lookup)(struct cds_lfht *, unsigned long, track_match_fn, const void *, struct cds_lfht_iter_tr *);
    struct cds_lfht_node *(*add_unique)(struct cds_lfht *, unsigned long, track_match_fn, const void *,
                                        struct cds_lfht_node *);
    void (*resize)(struct cds_lfht *, unsigned long);
} urcu;

static int urcu_load(void)
{
#if !BSL_HAVE_URCU
    return -1;
#else
    void *bp = track_dlopen("liburcu-bp.so.8");
    void *cds = track_dlopen("liburcu-cds.so.8");
    if (!bp || !cds)
        return -1;
    urcu.read_lock = (void (*)(void))track_dlsym(bp, "urcu_bp_read_lock");
    urcu.read_unlock = (void (*)(void))track_dlsym(bp, "urcu_bp_read_unlock");
    urcu.before_fork = (void (*)(void))track_dlsym(bp, "urcu_bp_before_fork");
    urcu.after_fork_parent = (void (*)(void))track_dlsym(bp, "urcu_bp_after_fork_parent");
    urcu.after_fork_child = (void (*)(void))track_dlsym(bp, "urcu_bp_after_fork_child");
    urcu.flavor = track_dlsym(bp, "urcu_bp_flavor");
    *(void **)&urcu.lfht_new = track_dlsym(cds, "_cds_lfht_new");
    *(void **)&urcu.lookup = track_dlsym(cds, "cds_lfht_lookup");
    *(void **)&urcu.add_unique = track_dlsym(cds, "cds_lfht_add_unique");
    *(void **)&urcu.resize = track_dlsym(cds, "cds_lfht_resize");
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
struct track_site {
    struct cds_lfht_node node; /* first: the table links sites through it */
    uint64_t hash;
    uint32_t idx;
    uint16_t depth;
    uint16_t tag;        /* the caller's label when the stack was captured (part of the identity) */
    uint32_t internal;   /* a frame lies in the site table's helper libraries (track_site_internal) */
    uint64_t data[TRACK_SITE_DATA / 8]; /* a consumer's (track_site_data) */
    /* Its live tracked blocks, for `buddyslab top` (estimates when sampled: bytes and blocks
     * weighed by track_weigh, blocks in thousandths), and the tracked allocations ever made.
     * Atomic adds by every thread that allocates or frees one of its blocks. */
    int64_t live_bytes, live_mblocks;
    uint64_t nr_allocs;
    uintptr_t frames[];
};

#define SITE_CHUNK_SHIFT 12
#define SITE_DIR_SIZE ((TRACK_MAX_SITES >> SITE_CHUNK_SHIFT) + 1)
BSL_BIG_BSS static struct track_site **site_dir[SITE_DIR_SIZE];
static os_lock_t site_lock = OS_LOCK_INIT(LOCK_RANK_LEAK_SITE);
static char *site_arena, *site_arena_end;
static uint32_t site_next = 1;   /* next index to hand out (site_lock) */
uint32_t track_nsites;              /* highest index handed out */
static struct cds_lfht *site_ht;
static unsigned long site_ht_size;
static os_lock_t resize_lock = OS_LOCK_INIT(LOCK_RANK_LEAK_RESIZE);
static struct track_site site_unknown; /* index 0: stacks we could not record (too many sites) */

const struct track_site *track_site_get(uint32_t i)
{
    if (i == 0)
        return &site_unknown;
    struct track_site **chunk = __atomic_load_n(&site_dir[i >> SITE_CHUNK_SHIFT], __ATOMIC_ACQUIRE);
    return chunk ? __atomic_load_n(&chunk[i & ((1u << SITE_CHUNK_SHIFT) - 1)], __ATOMIC_ACQUIRE) : NULL;
}

unsigned track_site_frames(const struct track_site *s, const uintptr_t **frames)
{
    *frames = s->frames;
    return s->depth;
}

void *track_site_data(const struct track_site *s) { return (void *)s->data; }
uint16_t track_site_label(const struct track_site *s) { return s->tag; }
uint32_t track_site_idx(const struct track_site *s) { return s->idx; }
int track_site_internal(const struct track_site *s) { return s && s->internal; }

/* ---- the helper libraries' code ----
 * liburcu runs code of its own outside the tracker's calls: a big resize of the hash table runs in
 * helper threads it starts (partition_resize_helper), which register with urcu-bp and allocate
 * their thread-local storage there, with no track_guard set (the guard is per thread). Such blocks are the allocator's, not the
 * program's: a site with a frame in liburcu-bp or liburcu-cds is internal, and its blocks are not
 * tracked (track.c). */
#define HELPER_MAX 8
static uintptr_t helper_text[HELPER_MAX][2];
static unsigned helper_n;

static int helper_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    const uintptr_t *want = arg; /* two code addresses, one in each library */
    int hit = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X))
            for (int k = 0; k < 2; k++)
                hit |= want[k] >= lo && want[k] < lo + ph->p_memsz;
    }
    for (int i = 0; hit && i < info->dlpi_phnum && helper_n < HELPER_MAX; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            helper_text[helper_n][0] = info->dlpi_addr + ph->p_vaddr;
            helper_text[helper_n][1] = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
            helper_n++;
        }
    }
    return 0;
}

static int helper_code(uintptr_t pc)
{
    for (unsigned i = 0; i < helper_n; i++)
        if (pc >= helper_text[i][0] && pc < helper_text[i][1])
            return 1;
    return 0;
}

static int frames_internal(const uintptr_t *frames, unsigned depth)
{
    for (unsigned i = 0; i < depth; i++)
        if (helper_code(frames[i]))
            return 1;
    return 0;
}

int track_live_sites;

void track_site_live(uint32_t idx, uint64_t size, int exact, int sign)
{
    struct track_site *s = (struct track_site *)track_site_get(idx);
    if (!s)
        return;
    double blocks, bytes;
    track_weigh(size, exact, &blocks, &bytes);
    __atomic_fetch_add(&s->live_bytes, sign * (int64_t)(bytes + 0.5), __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->live_mblocks, sign * (int64_t)(blocks * 1000 + 0.5), __ATOMIC_RELAXED);
    if (sign > 0)
        __atomic_fetch_add(&s->nr_allocs, 1, __ATOMIC_RELAXED);
}

unsigned track_sites_top(struct track_site_stat *out, unsigned n)
{
    unsigned got = 0;
    uint32_t last = __atomic_load_n(&track_nsites, __ATOMIC_ACQUIRE);
    for (uint32_t i = 0; i <= last && n; i++) {
        const struct track_site *s = track_site_get(i);
        if (!s)
            continue;
        int64_t b = __atomic_load_n(&s->live_bytes, __ATOMIC_RELAXED);
        if (b <= 0 || (got == n && b <= out[n - 1].bytes))
            continue;
        unsigned k = got < n ? got++ : n - 1; /* insertion into the sorted array, largest first */
        while (k > 0 && out[k - 1].bytes < b) {
            out[k] = out[k - 1];
            k--;
        }
        out[k] = (struct track_site_stat){s, b, __atomic_load_n(&s->live_mblocks, __ATOMIC_RELAXED),
                                          __atomic_load_n(&s->nr_allocs, __ATOMIC_RELAXED)};
    }
    return got;
}

struct site_key {
    const uintptr_t *frames;
    unsigned depth;
    uint16_t tag;
};

static int site_match_site(const void *site, const void *key)
{
    const struct track_site *s = site;
    const struct site_key *k = key;
    return s->depth == k->depth && s->tag == k->tag &&
           memcmp(s->frames, k->frames, k->depth * sizeof(uintptr_t)) == 0;
}

static int site_match(struct cds_lfht_node *node, const void *key) { return site_match_site(node, key); }

/* A new site, not yet published (NULL: out of memory or of indices). With site_lock held. */
static struct track_site *site_new_locked(const uintptr_t *frames, unsigned depth, uint16_t tag, uint64_t hash)
{
    size_t sz = (sizeof(struct track_site) + depth * sizeof(uintptr_t) + 15) & ~(size_t)15;
    bsl_assert_locked(&site_lock);
    if (site_next > TRACK_MAX_SITES)
        return NULL;
    uint32_t idx = site_next;
    unsigned ci = idx >> SITE_CHUNK_SHIFT;
    if (!site_dir[ci]) {
        struct track_site **chunk = track_alloc(sizeof(struct track_site *) << SITE_CHUNK_SHIFT);
        if (!chunk)
            return NULL;
        __atomic_store_n(&site_dir[ci], chunk, __ATOMIC_RELEASE);
    }
    if ((size_t)(site_arena_end - site_arena) < sz) {
        size_t csz = 256 << 10;
        site_arena = track_alloc(csz);
        if (!site_arena) {
            site_arena_end = NULL;
            return NULL;
        }
        site_arena_end = site_arena + csz;
    }
    struct track_site *s = (struct track_site *)site_arena;
    site_arena += sz;
    site_next++;
    __atomic_store_n(&track_nsites, idx, __ATOMIC_RELEASE);
    s->hash = hash;
    s->idx = idx;
    s->depth = (uint16_t)depth;
    s->tag = tag;
    s->internal = (uint32_t)frames_internal(frames, depth);
    memcpy(s->frames, frames, depth * sizeof(uintptr_t));
    return s;
}

static void site_publish(struct track_site *s)
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

/* Find or add the site of key in liburcu's table. NULL: out of memory or of indices. */
static const struct track_site *site_find_urcu(const struct site_key *key, uint64_t h)
{
    struct cds_lfht_iter_tr it;
    urcu.read_lock();
    urcu.lookup(site_ht, (unsigned long)h, site_match, key, &it);
    const struct track_site *s = (const struct track_site *)it.node;
    urcu.read_unlock();
    if (!s) {
        os_lock(&site_lock);
        struct track_site *n = site_new_locked(key->frames, key->depth, key->tag, h);
        os_unlock(&site_lock);
        if (!n)
            return NULL;
        urcu.read_lock();
        struct cds_lfht_node *got = urcu.add_unique(site_ht, (unsigned long)h, site_match, key, &n->node);
        urcu.read_unlock();
        s = (const struct track_site *)got;
        if (got == &n->node) {
            site_publish(n);
            site_ht_maybe_grow(n->idx);
        } /* else another thread published the same stack first: n's index stays a hole */
    }
    return s;
}

/* The same in siteindex.c's table: looked up without a lock, then again under site_lock, which
 * also covers the insertion (so no index is lost to a race). */
static const struct track_site *site_find_index(const struct site_key *key, uint64_t h)
{
    const struct track_site *s = track_sindex_lookup(h, site_match_site, key);
    if (s)
        return s;
    os_lock(&site_lock);
    s = track_sindex_lookup(h, site_match_site, key);
    if (!s) {
        struct track_site *n = site_new_locked(key->frames, key->depth, key->tag, h);
        if (n && track_sindex_add_locked(h, n) == 0) {
            site_publish(n);
            s = n;
        } /* else out of memory: n's index stays a hole */
    }
    os_unlock(&site_lock);
    return s;
}

uint32_t track_site_find(struct track_thread *t, const uintptr_t *frames, unsigned depth, uint16_t tag)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ depth ^ ((uint64_t)tag << 32);
    for (unsigned i = 0; i < depth; i++) { /* one multiply per frame; mixed once at the end */
        h = (h ^ frames[i]) * 0x9E3779B97F4A7C15ull;
        h = h << 31 | h >> 33;
    }
    h = track_mix64(h);
    struct site_key key = {frames, depth, tag};
    struct track_tcache *ce = t ? &t->cache[h & (TRACK_TCACHE - 1)] : NULL;
    if (ce && ce->hash == h && ce->site && site_match((struct cds_lfht_node *)ce->site, &key))
        return ce->site->idx;
    const struct track_site *s = use_urcu ? site_find_urcu(&key, h) : site_find_index(&key, h);
    if (!s)
        return 0;
    if (ce) {
        ce->hash = h;
        ce->site = s;
    }
    return s->idx;
}


const char *track_sites_load(void)
{
    if (!track_is_dynamic())
        return NULL; /* no dynamic loader: siteindex.c's table, no helper libraries */
    use_urcu = 1;
    if (!BSL_HAVE_URCU)
        return "built without liburcu headers (install liburcu-dev and rebuild)";
    if (urcu_load() != 0)
        return "liburcu-bp.so.8 / liburcu-cds.so.8 not found (install liburcu8)";
    uintptr_t want[2] = {(uintptr_t)urcu.read_lock, (uintptr_t)urcu.lookup};
    dl_iterate_phdr(helper_cb, want);
    return NULL;
}

const char *track_sites_init(void)
{
    if (!use_urcu)
        return NULL; /* siteindex.c's first table comes with the first site */
    site_ht_size = 1ul << 8; /* one page of buckets (4096 were 16 pages faulted in at start); grows by hand */
    site_ht = urcu.lfht_new(site_ht_size, 1, 1ul << 22, 0, NULL, urcu.flavor, NULL);
    if (!site_ht)
        return "cannot create the site table";
    return NULL;
}

void track_sites_fork_locks(os_lock_visit_fn visit)
{
    visit(&resize_lock);
    visit(&site_lock);
}

/* liburcu's fork handlers (nothing to do without it: siteindex.c has no lock of its own). */
void track_urcu_before_fork(void)
{
    if (use_urcu)
        urcu.before_fork();
}

void track_urcu_after_fork_parent(void)
{
    if (use_urcu)
        urcu.after_fork_parent();
}

void track_urcu_after_fork_child(void)
{
    if (use_urcu)
        urcu.after_fork_child();
}
