/* The public API layer's shared state: initialisation, options, misuse reports. */
#ifndef BSL_MALLOC_INTERNAL_H
#define BSL_MALLOC_INTERNAL_H

#include "buddyslab.h"
#include "slab/pcp.h"

#define BSL_EXPORT __attribute__((visibility("default")))

/* free() with the size (SIZE_MAX: none) and alignment a sized or aligned deallocation was given,
 * checked against the block (malloc.c); the C++ operators delete (new.c) call them. */
BSL_HIDDEN void bsl_free_sized_checked(void *p, size_t size, const char *func);
BSL_HIDDEN void bsl_free_checked(void *p, size_t size, size_t align, const char *func);
/* operator new's and delete's entries into malloc's and free's fast paths (malloc.c), and new's
 * slow path (new.c: the new-handler loop, std::bad_alloc). */
BSL_HIDDEN void *bsl_new(size_t n);
BSL_HIDDEN void bsl_delete(void *p);
BSL_HIDDEN void *bsl_new_slow(size_t n);

BSL_HIDDEN extern int bsl_inited;
BSL_HIDDEN void bsl_init_slow(void);
static inline void bsl_ensure_init(void)
{
    if (unlikely(!__atomic_load_n(&bsl_inited, __ATOMIC_ACQUIRE)))
        bsl_init_slow();
}

/* ---- options: one table (options.c) drives the env parser, bsl_option_set and the docs ---- */
enum opt_kind {
    OPT_BOOL, /* 0 or 1 */
    OPT_INT,  /* an integer in [min, max] */
    OPT_SIZE, /* bytes, with an optional K, M, G or T suffix (powers of 1024), in [min, max] */
    OPT_STR,  /* a string (a path, a pattern) copied into str[strcap]: no commas (the separator) */
    OPT_LIST, /* repeatable: each value is appended to str[strcap], ';'-separated */
};
struct bsl_option {
    const char *name;
    enum opt_kind kind;
    long def, min, max; /* OPT_STR: unused */
    long *value;        /* OPT_STR: NULL */
    char *str;          /* OPT_STR: the buffer, "" by default */
    size_t strcap;
    const char *sdef;   /* OPT_STR, OPT_LIST: the default (what str holds at start) */
    const char *help;
    /* OPT_STR, OPT_LIST: validates one value (prints one line naming the option and returns -1
     * when it is bad); NULL: anything goes. */
    int (*check)(const char *val, size_t n);
    const char *example; /* for docs/OPTIONS.md; NULL: derived from the kind */
};
BSL_HIDDEN extern const struct bsl_option bsl_options[];
BSL_HIDDEN extern const unsigned bsl_nr_options;
BSL_HIDDEN extern long opt_stats, opt_rseq, opt_decay_ms, opt_thp, opt_shards, opt_background_thread;
BSL_HIDDEN extern long opt_junk, opt_canary, opt_quarantine, opt_guard, opt_publish;
/* The leak report's options are declared in leakcheck/leakcheck.h, the soft OOM policy's in
 * oom/oom.h: each module owns its own. */
/* Parse BUDDYSLAB_OPTIONS (no allocation). Bad entries: one line on stderr each, defaults kept. */
BSL_HIDDEN void options_parse_env(void);
/* Apply option values to the layers below (after init and after bsl_option_set). */
BSL_HIDDEN void options_apply(void);

/* ---- hooks (leak tracking, budgets) on the public entry points ----
 * bsl_hooks_on is set once at init when a hook is configured; with it clear, every public entry
 * point pays one predictable branch. The hooks see every block handed out and every block given
 * back through the public API; the allocator's own internal allocations (bsl_raw_*) bypass them. */
/* Read by every public entry point, written at start and when tracking starts: a cache line of its
 * own (it shared one with the tick's and the init locks). */
struct bsl_hooks_word {
    int on;
} __attribute__((aligned(64)));
BSL_HIDDEN extern struct bsl_hooks_word bsl_hooks;
#define bsl_hooks_on (bsl_hooks.on)
/* The allocator's own allocations for hook data (site tables, records): our pages, no hooks. */
BSL_HIDDEN void *bsl_raw_malloc(size_t n);
BSL_HIDDEN void *bsl_raw_calloc(size_t n); /* zeroed; fresh pages are not touched */
BSL_HIDDEN void bsl_raw_free(void *p);
/* Sampled tracking's frame marks (malloc.c): struct track_core's mark, and whether the block at p
 * may be a tracked one (its frame is marked, or it is huge). */
BSL_HIDDEN void bsl_frame_mark(void *p, int sign);
/* struct track_core's rec: the record slot of the block at p (slab/recs.c). */
BSL_HIDDEN uint64_t *bsl_block_record(void *p, int create);
BSL_HIDDEN int bsl_maybe_tracked(const void *p);

/* Start site tracking after init (the soft OOM policy got a budget or limit from code): 0, or -1
 * when tracking is unavailable (oom_api.c). */
BSL_HIDDEN int bsl_tracking_start(void);

/* Periodic maintenance (decay.c): call from slow paths; cheap when it is not yet time. */
BSL_HIDDEN void bsl_tick_maybe(void);
/* fork(): the tick's lock (held while it flushes, shrinks and purges: before the allocator's), and
 * the child's restart of the background thread and the published page. */
BSL_HIDDEN void bsl_tick_fork_locks(os_lock_visit_fn visit);
BSL_HIDDEN void bsl_tick_fork_child(void);
/* fork(): the first-use initialisation's and the late tracking start's locks (outermost). */
BSL_HIDDEN void bsl_init_fork_locks(os_lock_visit_fn visit);
BSL_HIDDEN extern os_lock_t bsl_tracking_lock;
/* Register the fork handlers (fork.c), once, at first use. */
BSL_HIDDEN void bsl_fork_register(void);
/* The published statistics page (publish.c): created at start with option publish, refreshed
 * by the tick while someone watches, removed at exit. */
BSL_HIDDEN void publish_init(void);
BSL_HIDDEN void publish_update(void);
BSL_HIDDEN void publish_exit(void);
BSL_HIDDEN void publish_postfork_child(void);

/* Double-free detection for small objects (always on): slab_free_key (slab/slab.h). */

/* Heap misuse: print one line naming the pointer and abort (glibc's convention). */
BSL_HIDDEN __attribute__((noreturn, cold)) void bsl_misuse(const char *func, const char *what, const void *p);

#endif
