/* The tracking layer's internals shared by its files (see track.h for the files and what each
 * owns). */
#ifndef BSL_TRACK_INT_H
#define BSL_TRACK_INT_H

#include "track/track.h"

#include <elf.h>

/* ---- state of track.c, read by the other files ---- */
BSL_HIDDEN extern int track_on;      /* tracking started */
BSL_HIDDEN extern unsigned track_depth; /* frames per stack */
/* The accounting consumer (NULL: none yet); read with a relaxed load on the hooks' path. */
BSL_HIDDEN extern const struct track_accounting *track_acct;

static inline uint64_t track_mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* ---- stack capture (unwind.c) ---- */
BSL_HIDDEN void track_unwind_init(void);
/* The calling thread's previous stack (see unwind.c): levels with their stack addresses. */
#define TRACK_MEMO_MAX (TRACK_MAX_DEPTH + 16)
struct track_memo {
    unsigned n, nown, complete; /* levels; leading own levels; ended at the stack's end, not at max */
    uint32_t site;              /* the site the previous capture found (for *same) */
    /* That site (immortal), its label and whether it is internal: a loop allocating from one
     * place asks the site table nothing (track.c's track_site). NULL: look it up. */
    const struct track_site *site_ptr;
    uint16_t site_label;
    uint8_t site_internal;
    uintptr_t pc[TRACK_MEMO_MAX], sp[TRACK_MEMO_MAX];
};
/* Frames of the caller's stack (return addresses), the tracker's and allocator's own frames
 * skipped. lo/hi: the calling thread's stack bounds (0, 0 when unknown: the slow unwinder is
 * used). m: the thread's memo (or NULL); *same is set when the stack is exactly the previous
 * capture's: then m->site is its site and out[] is NOT filled. Returns the depth (<= max). */
BSL_HIDDEN unsigned track_capture(uintptr_t *out, unsigned max, uintptr_t lo, uintptr_t hi, struct track_memo *m,
                                  int *same);

/* ---- per-thread state (threads.c) ---- */
#define TRACK_TCACHE 256
struct track_tcache { /* a direct-mapped cache of the sites this thread used last (sites.c) */
    uint64_t hash;
    const struct track_site *site;
};
struct track_treg;
struct track_thread {
    uintptr_t lo, hi; /* stack bounds */
    uint64_t rng;     /* sampling's random state */
    int *errno_p;     /* &errno of this thread: the hooks save and restore it without calling
                       * __errno_location (two calls per tracked allocation cost 4 % of leak=1) */
    struct track_treg *reg;
    struct track_memo memo;
    struct track_tcache cache[TRACK_TCACHE];
};
BSL_HIDDEN extern __thread struct track_thread *track_self;
BSL_HIDDEN extern __thread int track_tstate; /* 0: not set up, 1: set up, 2: exiting (key destructor ran) */
/* Once at start (track_guard set): the thread-exit key. 0, or -1 when no key is left. */
BSL_HIDDEN int track_threads_init(void);
/* First tracked call in this thread (track_guard set). NULL when out of memory. */
BSL_HIDDEN struct track_thread *track_thread_setup(void);
BSL_HIDDEN void track_threads_fork_prepare(int careful);
BSL_HIDDEN void track_threads_fork_parent(void);
BSL_HIDDEN void track_threads_fork_child(int locked);

/* ---- sampling (sample.c) ---- */
/* The countdown ran out (or the thread has none yet): is this allocation of `size` sampled? */
BSL_HIDDEN int track_sample_slow(size_t size);
/* Once, when tracking starts: the tables of track_neg_log_u53, -ln(n / 2^53) for n in [1, 2^53]. */
BSL_HIDDEN void track_sample_init(void);
BSL_HIDDEN double track_neg_log_u53(uint64_t n);

/* ---- sites (sites.c) ---- */
/* Choose the index (liburcu's, loaded now, with a dynamic loader; else siteindex.c's): NULL, else
 * why there can be none; then create the table (NULL, else why not). */
BSL_HIDDEN const char *track_sites_load(void);
BSL_HIDDEN const char *track_sites_init(void);
/* The index of the site of (frames, label), created when new (0: out of memory or indices). */
BSL_HIDDEN uint32_t track_site_find(struct track_thread *t, const uintptr_t *frames, unsigned depth, uint16_t label);
BSL_HIDDEN void track_sites_fork_locks(os_lock_visit_fn visit);
/* The site index without liburcu (siteindex.c, for programs without a dynamic loader): a site
 * whose hash is `hash` and that match(site, key) accepts, or NULL (lock-free; NULL may be stale:
 * look again under site_lock before adding). Adding: with sites.c's site_lock held; 0, or -1 when
 * out of memory. */
BSL_HIDDEN const void *track_sindex_lookup(uint64_t hash, int (*match)(const void *site, const void *key),
                                           const void *key);
BSL_HIDDEN int track_sindex_add_locked(uint64_t hash, const void *site);
BSL_HIDDEN void track_urcu_before_fork(void);
BSL_HIDDEN void track_urcu_after_fork_parent(void);
BSL_HIDDEN void track_urcu_after_fork_child(void);

/* ---- the block map (blockmap.c) ---- */
/* The block at p enters the map with value val (TRACK_FLAGS | size << TRACK_SITE_IDX_BITS | site).
 * 1: inserted, 0: replaced a stale record for the same address (*old: its value), -1: out of memory. */
BSL_HIDDEN int track_map_insert(uintptr_t p, uint64_t val, uint64_t *old);
/* The record of p leaves the map (try_only: this thread runs tracker code and may hold the shard:
 * when busy, the address is deferred). Uncharges it. */
BSL_HIDDEN void track_forget(uintptr_t p, int try_only);
/* A record left the map: its block's bytes leave its site's live counters and account. */
BSL_HIDDEN void track_uncharge(uint64_t val);
BSL_HIDDEN extern __thread unsigned track_ndeferred;
BSL_HIDDEN void track_map_fork_prepare(int careful);
BSL_HIDDEN void track_map_fork_parent(void);
BSL_HIDDEN void track_map_fork_child(void);

/* ---- symbols (syms.c) ---- */
BSL_HIDDEN extern os_lock_t track_sym_lock; /* the cache, its arena, the libdw session, exe.c's table */
/* ---- the executable's image (exe.c), for programs without a dynamic loader ----
 * The main program's program headers (*phdr, the count returned) and load bias (*bias), from the
 * auxiliary vector: valid from the first malloc on, even in a static program (where
 * dl_iterate_phdr reports nothing until libc's own start-up has run). No lock. */
BSL_HIDDEN size_t track_exe_phdrs(const Elf64_Phdr **phdr, uintptr_t *bias);
/* Its symbol table, read on the first call. With track_sym_lock held. Whether pc lies in the executable's code; its load
 * bias; the name of the function holding address a (NULL: none known; the string never moves). */
BSL_HIDDEN int track_exe_has_locked(uintptr_t pc);
BSL_HIDDEN uintptr_t track_exe_bias_locked(void);
BSL_HIDDEN const char *track_exe_func_locked(uintptr_t a);
/* The executable's .eh_frame section (*start) and its size; 0 when it has none. */
BSL_HIDDEN size_t track_exe_eh_frame_locked(const uint8_t **start);

/* ---- memory (mem.c) ---- */
/* struct track_core's mark (sampled mode, under the shard of p's frame). */
BSL_HIDDEN void track_core_mark(void *p, int sign);
BSL_HIDDEN extern uint64_t *(*track_core_rec_fn)(void *p, int create); /* struct track_core's rec */
static inline uint64_t *track_core_rec(void *p, int create) { return track_core_rec_fn ? track_core_rec_fn(p, create) : NULL; }
BSL_HIDDEN void track_core_rec_walk(void (*fn)(uintptr_t start, uint64_t rec, void *arg), void *arg);
#define TRACK_HDR 16 /* every track_alloc block has a header this big before it */

#endif
