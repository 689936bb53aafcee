/* The tracker's hooks: what happens on a tracked allocation and free, tying sampling, stack
 * capture, the site table, the block map and the accounting consumer together; starting,
 * stopping, and the fork handlers. src/malloc/hooks.c is the only caller of the hooks.
 *
 * Lock order, outermost first (fork.c's table follows it): resize_lock, site_lock (sites.c),
 * track_sym_lock (syms.c); then the block map shards in index order (blockmap.c), treg_lock
 * (threads.c), liburcu's locks. A consumer's locks nest outside all of them (the leak report's
 * report lock, the soft OOM policy's locks: an evaluation allocates, tracks and symbolizes). */
#include "track/track_int.h"

#include <errno.h>

__thread int track_guard;
int track_on;
unsigned track_depth;
const struct track_accounting *track_acct;
/* track.h. own_seen is read-mostly (set once): a forked child that tracked nothing of its own
 * writes no exit report. */
struct track_proc track_proc;

int track_tracked_since_fork(void) { return __atomic_load_n(&track_proc.own_seen, __ATOMIC_RELAXED); }

void track_set_accounting(const struct track_accounting *a) { __atomic_store_n(&track_acct, a, __ATOMIC_RELEASE); }

/* The first half of tracking: capture the stack, find its site (under the caller's label) and ask
 * the accounting consumer whether the allocation may go ahead. */
static __attribute__((noinline)) uint64_t track_site(size_t size, uint16_t label, int exact)
{
    struct track_thread *t = track_self;
    int *ep = t ? t->errno_p : &errno, saved = *ep;
    track_guard = 1;
    if (!t && track_tstate == 0)
        t = track_thread_setup();
    uintptr_t frames[TRACK_MAX_DEPTH];
    int same = 0;
    unsigned depth =
        track_capture(frames, track_depth, t ? t->lo : 0, t ? t->hi : 0, t ? &t->memo : NULL, &same);
    uint32_t site;
    const struct track_site *s;
    if (same && t->memo.site_ptr && t->memo.site_label == label) { /* a loop: the previous site */
        site = t->memo.site;
        s = t->memo.site_ptr;
    } else {
        if (same) { /* the same stack under another label (another site), or not resolved: the frames */
            site = t->memo.site;
            s = track_site_get(site);
            if (!s || track_site_label(s) != label)
                site = track_site_find(t, frames, track_capture(frames, track_depth, t->lo, t->hi, NULL, &same), label);
        } else {
            site = track_site_find(t, frames, depth, label);
        }
        s = track_site_get(site);
        if (t) {
            t->memo.site_ptr = s;
            t->memo.site_label = label;
            t->memo.site_internal = (uint8_t)track_site_internal(s);
        }
    }
    if (t)
        t->memo.site = site;
    int refuse = 0, internal = 0;
    if (t ? t->memo.site_internal : track_site_internal(s)) {
        internal = 1; /* the allocator's own (liburcu's resize threads): not the program's, never tracked */
    } else {
        const struct track_accounting *acct = __atomic_load_n(&track_acct, __ATOMIC_ACQUIRE);
        if (acct)
            refuse = s && acct->admit(s, size > TRACK_SIZE_MAX ? TRACK_SIZE_MAX : size, exact) != 0;
    }
    if (unlikely(track_ndeferred))
        track_drain_deferred();
    track_guard = 0;
    *ep = saved;
    if (internal)
        return 0;
    return refuse ? TRACK_REFUSE : ((uint64_t)site + 1) | (exact ? TRACK_EXACT : 0);
}

/* The second half: the block at p (its allocation succeeded) enters the map and its site's account. */
static __attribute__((noinline)) void track_block(void *p, size_t size, uint32_t site, int exact)
{
    struct track_thread *t = track_self;
    int *ep = t ? t->errno_p : &errno, saved = *ep;
    track_guard = 1;
    uint64_t sz = size > TRACK_SIZE_MAX ? TRACK_SIZE_MAX : size, old = 0;
    const struct track_accounting *acct = __atomic_load_n(&track_acct, __ATOMIC_ACQUIRE);
    const struct track_site *s = acct ? track_site_get(site) : NULL;
    uint64_t val = (exact ? TRACK_EXACT : 0) | (s ? TRACK_CHARGED : 0) | sz << TRACK_SITE_IDX_BITS | site;
    int r = track_map_insert((uintptr_t)p, val, &old);
    if (r >= 0) {
        if (unlikely(!track_proc.own_seen))
            track_proc.own_seen = 1;
        if (track_live_sites)
            track_site_live(site, sz, exact, 1);
        if (s)
            acct->charge(s, sz, 1, exact);
        if (r == 0)
            track_uncharge(old); /* a stale record (its free went unseen) */
    }
    if (unlikely(track_ndeferred))
        track_drain_deferred();
    track_guard = 0;
    *ep = saved;
}

uint64_t track_before_alloc(size_t size, uint16_t label, int force)
{
    if (track_guard || unlikely(track_proc.done))
        return 0;
    if (track_sample_bytes && size < track_sample_bytes) {
        if (unlikely(track_forced() || force))
            return track_site(size, label, 1); /* sampling suspended: tracked exactly */
        int64_t c = track_countdown - (int64_t)size;
        track_countdown = c;
        if (likely(c > 0))
            return 0;
        if (!track_sample_slow(size))
            return 0;
    }
    return track_site(size, label, 0); /* every block in full mode; sampled ones (and all >= the sample size) otherwise */
}

void track_after_alloc(void *p, size_t size, uint64_t ticket)
{
    if (!ticket || ticket == TRACK_REFUSE || track_guard)
        return;
    uint32_t site = (uint32_t)((ticket & ~TRACK_EXACT) - 1);
    if (!track_sample_bytes && !track_live_sites && !__atomic_load_n(&track_acct, __ATOMIC_RELAXED) &&
        likely(track_proc.own_seen)) {
        /* Full tracking with no counters to keep (the leak report alone): the record goes in the
         * block's own slot with one store (blockmap.c), nothing else to do; a stale record there
         * (its free went unseen) is simply replaced, having nothing to uncharge either. */
        uint64_t *slot = track_core_rec(p, 1);
        if (slot && slot != TRACK_REC_NONE && slot != TRACK_REC_NOMEM) {
            uint64_t sz = size > TRACK_SIZE_MAX ? TRACK_SIZE_MAX : size;
            __atomic_store_n(slot, (ticket & TRACK_EXACT) | sz << TRACK_SITE_IDX_BITS | site, __ATOMIC_RELAXED);
            return;
        }
    }
    track_block(p, size, site, !!(ticket & TRACK_EXACT));
}

void track_on_free(void *p)
{
    if (unlikely(track_proc.done))
        return;
    /* The block's own slot (blockmap.c): only its owner, this thread, writes it, so an empty slot
     * needs no lock (under sampling, nearly every block freed from a frame the allocator marked for
     * another block's sake), and full tracking clears a full one with no lock either. */
    uint64_t *slot = track_core_rec(p, 0);
    if (slot == TRACK_REC_NONE || slot == TRACK_REC_NOMEM)
        return;
    if (slot && !__atomic_load_n(slot, __ATOMIC_RELAXED))
        return;
    if (!track_sample_bytes) {
        if (slot) {
            uint64_t v = __atomic_load_n(slot, __ATOMIC_RELAXED);
            __atomic_store_n(slot, 0, __ATOMIC_RELAXED);
            if (track_live_sites || (v & TRACK_CHARGED)) { /* counters to take it off */
                int g = track_guard;
                track_guard = 1;
                track_uncharge(v);
                track_guard = g;
            }
            return;
        }
    }
    if (track_guard) {
        track_forget((uintptr_t)p, 1);
        return;
    }
    track_guard = 1;
    track_forget((uintptr_t)p, 0);
    if (unlikely(track_ndeferred))
        track_drain_deferred();
    track_guard = 0;
}

/* ---- start, stop ---- */
int track_start(long depth, uint64_t sample_bytes, int live_sites)
{
    int g = track_guard;
    track_guard = 1;
    int ok = 0;
    const char *why = NULL;
    track_depth = (unsigned)(depth < 1 ? 1 : depth > TRACK_MAX_DEPTH ? TRACK_MAX_DEPTH : depth);
    track_sample_bytes = sample_bytes;
    track_lean_max = sample_bytes;
    track_sample_init();
    track_live_sites = live_sites;
    if ((why = track_sites_load()) != NULL)
        ;
    else if (track_threads_init() != 0)
        why = "no pthread key left";
    else
        why = track_sites_init();
    if (!why) {
        track_unwind_init();
        track_on = 1;
        ok = 1;
        /* The first thread: set it up now, while nothing else runs. */
        if (!track_self && track_tstate == 0)
            track_thread_setup();
    } else {
        os_printf(2, "buddyslab: allocation site tracking (options leak, leak_sample, budget, soft_limit, "
                     "hard_limit) is not available: %s\n", why);
    }
    track_guard = g;
    return ok;
}

int track_mode(void)
{
    if (!track_on)
        return 0;
    return track_sample_bytes ? 2 : 1;
}

void track_stop(void) { __atomic_store_n(&track_proc.done, 1, __ATOMIC_RELEASE); }

int track_stopped(void) { return __atomic_load_n(&track_proc.done, __ATOMIC_ACQUIRE); }

/* ---- fork (called by src/malloc/fork.c's table) ---- */
static int forking; /* track_fork_prepare ran (the forking thread only) */

/* The outer locks, in their order: their holders may symbolize (libdw reads files with stdio), so
 * fork takes them in its first phase (fork.c). */
void track_fork_locks(os_lock_visit_fn visit)
{
    track_sites_fork_locks(visit);
    visit(&track_sym_lock);
}

/* The inner phase: the block map shards (in careful mode, given up after about a second: the
 * forking thread may hold one, inside the tracker or under some allocator lock), the thread
 * registry, then liburcu's locks. */
void track_fork_prepare(int careful)
{
    if (!track_on)
        return;
    careful = careful || track_guard;
    track_map_fork_prepare(careful);
    track_threads_fork_prepare(careful);
    track_urcu_before_fork();
    forking = 1;
}

void track_fork_parent(void)
{
    if (!forking)
        return;
    forking = 0;
    track_urcu_after_fork_parent();
    track_threads_fork_parent();
    track_map_fork_parent();
}

BSL_RARE void track_fork_child(void) /* with the rest of a fork child's path: see malloc/exit.c */
{
    if (!track_on)
        return;
    if (track_proc.own_seen) /* struct track_proc: the child's one copied page */
        track_proc.own_seen = 0;
    int locked = forking;
    if (locked) {
        forking = 0;
        track_urcu_after_fork_child();
    }
    track_threads_fork_child(locked);
    if (locked)
        track_map_fork_child();
}
