/* Block records: block address -> (size, site, flags). Most live in a slot the allocator keeps
 * beside the block (struct track_core's rec: a slab's per-object array, a large block's head
 * descriptor; slot_put/slot_take below), found with no hashing and written with no lock in full
 * tracking; the rest (huge blocks) in the block map: open addressing in 128 shards, each under
 * its own lock (shard_lock_t below). The shard is chosen by the block's 4 KiB frame, and its lock
 * also serialises the allocator's frame marks (struct track_core's mark, sampled mode: the frame's
 * count of tracked blocks and its flag), so sampled tracking takes the frame's shard for a slot's
 * record too. A report locks every shard in index order and copies the records out, the slots'
 * by a racy walk (track_blocks_lock_snapshot); nothing here holds a shard while waiting for
 * another thread, except the shard -> allocator order (a shard grows its table with track_alloc
 * while locked): the hooks run outside every allocator lock, so the order is never reversed. */
#include "track/track_int.h"

#include <string.h>
#include <sys/single_threaded.h>

/* ---- the block map: address -> (size, site), sharded open addressing ---- */
#define MAP_SHARD_BITS 7
#define MAP_SHARDS (1u << MAP_SHARD_BITS)
struct map_ent {
    uintptr_t key; /* 0: empty */
    uint64_t val;  /* TRACK_EXACT | TRACK_CHARGED | size << TRACK_SITE_IDX_BITS | site */
};
/* The shards' lock: a test-and-set lock released with a plain store, so taking and releasing it
 * costs one atomic instruction instead of the futex mutex's two (the hot path does it on every
 * malloc and free). Critical sections are a few loads and stores; a waiter spins, then yields,
 * then sleeps (a report holds every shard while it scans).
 *
 * A single-threaded process (glibc's __libc_single_threaded) takes a free lock with a plain store
 * instead of the exchange (6-9 ns each on the 2-core VMs, two per tracked malloc/free pair; bench
 * malloc_free_mix under leak=1 went from a median 3047 to 2593 ns per 64 pairs). glibc's malloc
 * skips its arena locks the same way (SINGLE_THREAD_P). Safe because the flag goes false in
 * pthread_create before the new thread exists (and never goes back, except in a fork child, which
 * has one thread), so no other thread can be between its test and its store. The only other code
 * that may take a shard is this thread's own, from a signal handler: it finds the lock either
 * free (the handler takes and releases it before the interrupted code goes on) or held, and then
 * spins in shard_lock_slow as it would after an exchange. */
typedef struct {
    int v;
} shard_lock_t;

static inline int single_threaded(void) { return __atomic_load_n(&__libc_single_threaded, __ATOMIC_RELAXED); }

static __attribute__((noinline)) void shard_lock_slow(shard_lock_t *l)
{
    for (unsigned n = 0;; n++) {
        while (__atomic_load_n(&l->v, __ATOMIC_RELAXED))
            os_backoff(n < 1000 ? n++ : n);
        if (!__atomic_exchange_n(&l->v, 1, __ATOMIC_ACQUIRE))
            return;
    }
}

static inline int shard_trylock(shard_lock_t *l)
{
    if (single_threaded()) {
        if (__atomic_load_n(&l->v, __ATOMIC_RELAXED))
            return 0;
        __atomic_store_n(&l->v, 1, __ATOMIC_RELAXED);
        __atomic_signal_fence(__ATOMIC_ACQUIRE); /* the section's accesses stay after the store */
        return 1;
    }
    return !__atomic_exchange_n(&l->v, 1, __ATOMIC_ACQUIRE);
}

static inline void shard_lock(shard_lock_t *l)
{
    if (likely(shard_trylock(l)))
        return;
    shard_lock_slow(l);
}

static inline void shard_unlock(shard_lock_t *l) { __atomic_store_n(&l->v, 0, __ATOMIC_RELEASE); }

/* A free inside the tracker only tries (try_only: this thread may hold the shard); 0: busy. */
static inline int shard_lock_maybe(shard_lock_t *l, int try_only)
{
    if (try_only)
        return shard_trylock(l);
    shard_lock(l);
    return 1;
}

struct map_shard {
    shard_lock_t lock;
    struct map_ent *tab;
    size_t mask;
    size_t count;
} __attribute__((aligned(64)));
BSL_BIG_BSS static struct map_shard shards[MAP_SHARDS];

static inline uint64_t addr_hash(uintptr_t p) { return track_mix64(p >> 4); } /* the slot in a shard */
static inline struct map_shard *shard_of(uintptr_t p) /* by frame: see the top of the file */
{
    return &shards[track_mix64(p >> 12) >> (64 - MAP_SHARD_BITS)];
}

static int shard_grow(struct map_shard *s)
{
    size_t ncap = s->tab ? (s->mask + 1) * 2 : 256;
    struct map_ent *nt = track_alloc(ncap * sizeof(struct map_ent));
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
        track_free(s->tab);
    }
    s->tab = nt;
    s->mask = ncap - 1;
    return 0;
}

/* A record in the block's own slot (struct track_core's rec). Full tracking writes it with no lock:
 * the block's owner is the only writer. Sampled tracking also counts the frame's tracked blocks
 * (struct track_core's mark), under the shard of the frame, which serialises marks of one frame. */
static int slot_put(uintptr_t key, uint64_t *slot, uint64_t val, uint64_t *old)
{
    uint64_t o;
    if (track_sample_bytes) {
        struct map_shard *s = shard_of(key);
        shard_lock(&s->lock);
        o = *slot;
        __atomic_store_n(slot, val, __ATOMIC_RELAXED);
        if (!o)
            track_core_mark((void *)key, 1);
        shard_unlock(&s->lock);
    } else {
        o = __atomic_load_n(slot, __ATOMIC_RELAXED);
        __atomic_store_n(slot, val, __ATOMIC_RELAXED);
    }
    *old = o;
    return o ? 0 : 1;
}

/* 1: there was a record (*val), now gone; 0: none; -1: try_only and the shard is busy. */
static int slot_take(uintptr_t key, uint64_t *slot, int try_only, uint64_t *val)
{
    uint64_t v;
    if (track_sample_bytes) {
        struct map_shard *s = shard_of(key);
        if (!shard_lock_maybe(&s->lock, try_only))
            return -1;
        v = *slot;
        if (v) {
            __atomic_store_n(slot, 0, __ATOMIC_RELAXED);
            track_core_mark((void *)key, -1);
        }
        shard_unlock(&s->lock);
    } else {
        v = __atomic_load_n(slot, __ATOMIC_RELAXED);
        if (v)
            __atomic_store_n(slot, 0, __ATOMIC_RELAXED);
    }
    *val = v;
    return v != 0;
}

/* 1: inserted, 0: replaced a stale record for the same address (*old: its value), -1: out of
 * memory. */
int track_map_insert(uintptr_t key, uint64_t val, uint64_t *old)
{
    uint64_t *slot = track_core_rec((void *)key, 1);
    if (slot == TRACK_REC_NOMEM || slot == TRACK_REC_NONE)
        return -1;
    if (slot)
        return slot_put(key, slot, val, old);
    uint64_t h = addr_hash(key);
    struct map_shard *s = shard_of(key);
    shard_lock(&s->lock);
    if ((!s->tab || (s->count + 1) * 4 > (s->mask + 1) * 3) && shard_grow(s) != 0) {
        shard_unlock(&s->lock);
        return -1;
    }
    size_t i = h & s->mask;
    while (s->tab[i].key) {
        if (s->tab[i].key == key) {
            *old = s->tab[i].val;
            s->tab[i].val = val;
            shard_unlock(&s->lock);
            return 0;
        }
        i = (i + 1) & s->mask;
    }
    s->tab[i].key = key;
    s->tab[i].val = val;
    s->count++;
    if (track_sample_bytes)
        track_core_mark((void *)key, 1);
    shard_unlock(&s->lock);
    return 1;
}

/* Remove key's record (linear probing, backward-shift deletion). 1 when there was one (*val: its
 * value), 0 when there was none, -1 when try_only and the shard is busy (perhaps held by this very
 * thread). */
static int map_remove(uintptr_t key, uint64_t h, int try_only, uint64_t *val)
{
    uint64_t *slot = track_core_rec((void *)key, 0);
    if (slot == TRACK_REC_NONE || slot == TRACK_REC_NOMEM)
        return 0;
    if (slot)
        return slot_take(key, slot, try_only, val);
    struct map_shard *s = shard_of(key);
    if (!shard_lock_maybe(&s->lock, try_only))
        return -1;
    if (!s->tab) {
        shard_unlock(&s->lock);
        return 0;
    }
    size_t mask = s->mask, i = h & mask;
    while (s->tab[i].key != key) {
        if (!s->tab[i].key) {
            shard_unlock(&s->lock);
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
    if (track_sample_bytes)
        track_core_mark((void *)key, -1);
    shard_unlock(&s->lock);
    return 1;
}

/* A free while this thread runs tracker code (track_guard): libc functions the tracker calls may free
 * blocks the program allocated (dlsym frees the program's dlerror state, for one), whose records
 * must go. The shard is only tried (this thread may hold it: a report holds them all); when busy,
 * the address waits here until the thread leaves the tracker or the report ends. */
#define MAP_DEFERRED 64
static __thread uintptr_t deferred[MAP_DEFERRED];
__thread unsigned track_ndeferred;

/* A record leaves the map: the block's bytes leave its site's account. */
void track_uncharge(uint64_t val)
{
    if (track_live_sites)
        track_site_live((uint32_t)(val & TRACK_MAX_SITES), (val & ~TRACK_FLAGS) >> TRACK_SITE_IDX_BITS, !!(val & TRACK_EXACT),
                    -1);
    if (!(val & TRACK_CHARGED))
        return;
    const struct track_site *site = track_site_get((uint32_t)(val & TRACK_MAX_SITES));
    if (site) /* TRACK_CHARGED: an accounting consumer was registered, and stays */
        track_acct->charge(site, (val & ~TRACK_FLAGS) >> TRACK_SITE_IDX_BITS, -1, !!(val & TRACK_EXACT));
}

void track_forget(uintptr_t p, int try_only)
{
    uint64_t val = 0;
    int r = map_remove(p, addr_hash(p), try_only, &val);
    if (r == 1)
        track_uncharge(val);
    if (r < 0 && track_ndeferred < MAP_DEFERRED)
        deferred[track_ndeferred++] = p;
}

/* With track_guard set and no shard held by this thread. */
void track_drain_deferred(void)
{
    while (track_ndeferred)
        track_forget(deferred[--track_ndeferred], 0);
}

size_t track_deferred(uintptr_t *out, size_t max)
{
    size_t n = track_ndeferred < max ? track_ndeferred : max;
    memcpy(out, deferred, n * sizeof(uintptr_t));
    return n;
}

static void blocks_sort(struct track_block *a, size_t n)
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
                struct track_block t = a[i];
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
            struct track_block t = a[i];
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

static void block_of(struct track_block *b, uintptr_t start, uint64_t val)
{
    b->start = start;
    b->size = (val & ~TRACK_FLAGS) >> TRACK_SITE_IDX_BITS;
    b->exact = !!(val & TRACK_EXACT);
    b->site = (uint32_t)(val & TRACK_MAX_SITES);
}

/* The records in the blocks' own slots, appended to the snapshot (grown as needed). */
struct slot_snap {
    struct track_block *b;
    size_t n, cap;
    int failed;
};

static void slot_snap_cb(uintptr_t start, uint64_t rec, void *arg)
{
    struct slot_snap *ss = arg;
    if (ss->failed)
        return;
    if (ss->n == ss->cap) {
        struct track_block *nb = track_realloc(ss->b, ss->cap * sizeof(*nb), ss->cap * 2 * sizeof(*nb));
        if (!nb) {
            ss->failed = 1;
            return;
        }
        ss->b = nb;
        ss->cap *= 2;
    }
    block_of(&ss->b[ss->n++], start, rec);
}

struct track_block *track_blocks_lock_snapshot(size_t *n)
{
    size_t total = 0;
    for (unsigned i = 0; i < MAP_SHARDS; i++) {
        shard_lock(&shards[i].lock);
        total += shards[i].count;
    }
    *n = 0;
    /* The slots first (full tracking writes them with no lock: racy, as the heap walk is), then the
     * map's records (huge blocks), which the locks hold still. */
    struct slot_snap ss = {track_alloc((total + 1024) * sizeof(struct track_block)), 0, total + 1024, 0};
    if (!ss.b)
        return NULL;
    track_core_rec_walk(slot_snap_cb, &ss);
    if (ss.failed || ss.cap - ss.n < total) {
        struct track_block *nb = ss.failed ? NULL : track_realloc(ss.b, ss.cap * sizeof(*nb), (ss.n + total + 1) * sizeof(*nb));
        if (!nb) {
            track_free(ss.b);
            return NULL;
        }
        ss.b = nb;
    }
    struct track_block *b = ss.b;
    size_t k = ss.n;
    for (unsigned i = 0; i < MAP_SHARDS; i++) {
        struct map_shard *s = &shards[i];
        if (!s->tab)
            continue;
        for (size_t j = 0; j <= s->mask; j++)
            if (s->tab[j].key)
                block_of(&b[k++], s->tab[j].key, s->tab[j].val);
    }
    blocks_sort(b, k);
    *n = k;
    return b;
}

int track_block_unchanged(const struct track_block *b)
{
    uint64_t *slot = track_core_rec((void *)b->start, 0);
    if (!slot)
        return 1; /* in the map, which the snapshot's locks hold still */
    if (slot == TRACK_REC_NONE || slot == TRACK_REC_NOMEM)
        return 0;
    uint64_t v = __atomic_load_n(slot, __ATOMIC_RELAXED);
    return v && (uint32_t)(v & TRACK_MAX_SITES) == b->site && (v & ~TRACK_FLAGS) >> TRACK_SITE_IDX_BITS == b->size &&
           !!(v & TRACK_EXACT) == b->exact;
}

size_t track_shard_tables(uintptr_t *out, size_t max)
{
    size_t n = 0;
    for (unsigned i = 0; i < MAP_SHARDS && n < max; i++)
        if (shards[i].tab)
            out[n++] = (uintptr_t)shards[i].tab - TRACK_HDR; /* block starts */
    return n;
}

void track_blocks_unlock(void)
{
    for (unsigned i = MAP_SHARDS; i-- > 0;)
        shard_unlock(&shards[i].lock);
}

/* A shard lock: taken; in careful mode (the forking thread may hold one: track_guard, or some
 * allocator lock) given up after about a second. */
static unsigned char shard_given_up[MAP_SHARDS];

void track_map_fork_prepare(int careful)
{
    for (unsigned i = 0; i < MAP_SHARDS; i++) {
        shard_given_up[i] = 0;
        if (!careful) {
            shard_lock(&shards[i].lock);
            continue;
        }
        unsigned n = 0;
        while (!shard_trylock(&shards[i].lock) && n < 20000)
            os_backoff(n++);
        shard_given_up[i] = n >= 20000;
    }
}

void track_map_fork_parent(void)
{
    for (unsigned i = MAP_SHARDS; i-- > 0;)
        if (!shard_given_up[i])
            shard_unlock(&shards[i].lock);
}

/* A shard given up is held by a thread that is gone, unless this thread was inside the tracker
 * (track_guard): then its own interrupted frame holds it and releases it. */
void track_map_fork_child(void)
{
    for (unsigned i = 0; i < MAP_SHARDS; i++)
        if (!shard_given_up[i] || !track_guard)
            shards[i].lock.v = 0;
}
