/* The tracking layer: which live blocks came from which allocation site.
 *
 * It owns sampling (sample.c), the block map (blockmap.c: block address -> size and site), the site
 * table (sites.c: deduplicated stacks, immortal once published), the thread registry (threads.c),
 * stack capture (unwind.c), symbols (syms.c; exe.c: the executable's own image where there is no
 * dynamic loader), the report writer shared by every report (out.c), the
 * tracker's own memory (mem.c) and the hooks that tie them together (track.c). Two consumers use it
 * and neither knows the other: the leak report (src/leakcheck/: the reachability scan at exit and
 * on demand) and the soft OOM policy (src/oom/: accounts per site, which it keeps in a site's
 * consumer area and is told about through struct track_accounting). The public API layer
 * (src/malloc/hooks.c) is the one place that calls the hooks on malloc and free.
 *
 * Memory: everything the tracker keeps comes from the core allocator through struct track_core
 * (allocator pages, no hooks, so the leak scan never mistakes it for program memory: heap sections
 * are not roots) or lives in the library's own .bss (not a root either). Code that may call the
 * public malloc (the unwinder, dlopen, liburcu, libdw, pthread_getattr_np) runs with track_guard
 * set: the hooks then return at once, so those blocks are neither tracked nor looked up. */
#ifndef BSL_TRACK_H
#define BSL_TRACK_H

#include <stddef.h>
#include <stdint.h>

#include "os/os.h"

/* ---- the core allocator, as the tracker sees it (set once, before the first use) ---- */
struct track_core {
    void *(*alloc)(size_t n); /* the allocator's own pages, zeroed (calloc: fresh pages are not
                               * touched, so a big table costs only what is used): no hooks; NULL
                               * on failure */
    void (*free)(void *p);
    /* Sampled tracking only: the record of the block at p entered (sign 1) or left (-1) the block
     * map. The allocator marks the block's frame, so that a free of an untracked block (nearly all)
     * need not ask the tracker. Called under the map shard that holds every record of p's 4 KiB
     * frame (track_map_shard_key): calls for one frame are serialised. */
    void (*mark)(void *p, int sign);
    /* The record slot of the block at p, kept by the allocator beside the block (a slab's per-object
     * record array, a large block's head descriptor: slab/recs.c), given one now when create; the
     * tracker keeps the block's record (0: none) there instead of in its own block map. NULL: the
     * block has no slot (a huge block): the block map keeps it. TRACK_REC_NONE: p has no record
     * (not a block start, or no slot yet and !create); TRACK_REC_NOMEM: create failed. A slot is
     * written by whoever owns the block, as the block is. */
    uint64_t *(*rec)(void *p, int create);
    /* Every nonzero slot: fn(block start, record, arg); racy (see slab_recs_walk). */
    void (*rec_walk)(void (*fn)(uintptr_t start, uint64_t rec, void *arg), void *arg);
};
#define TRACK_REC_NONE ((uint64_t *)(uintptr_t)1)
#define TRACK_REC_NOMEM ((uint64_t *)(uintptr_t)2)
BSL_HIDDEN void track_set_core(const struct track_core *core);

#define TRACK_MAX_DEPTH 64
/* A block record packs two flags, its size (38 bits, clamped) and its site index (24 bits). */
#define TRACK_SITE_IDX_BITS 24
#define TRACK_MAX_SITES ((1u << TRACK_SITE_IDX_BITS) - 1)
#define TRACK_SIZE_MAX (((uint64_t)1 << (62 - TRACK_SITE_IDX_BITS)) - 1)
/* The block was tracked outside sampling (sampling suspended: track_force_add, or the caller's force
 * flag): it weighs 1. */
#define TRACK_EXACT ((uint64_t)1 << 63)
/* The block was charged through the accounting hooks when it was allocated: its free uncharges
 * it. Without accounting, tracking pays no charging calls. */
#define TRACK_CHARGED ((uint64_t)1 << 62)
#define TRACK_FLAGS (TRACK_EXACT | TRACK_CHARGED)

/* The per-thread re-entrancy guard: set while the tracker runs code that may allocate. */
BSL_HIDDEN extern __thread int track_guard;

/* ---- starting and stopping (track.c) ---- */
/* Start tracking: stacks of up to `depth` frames (clamped to 1 .. TRACK_MAX_DEPTH), every
 * allocation (sample_bytes 0) or about one per sample_bytes bytes. live_sites: keep each site's
 * live counters (track_site_live, read by track_sites_top for `buddyslab top`); they cost shared
 * atomic adds on every tracked allocation and free, so only a published process pays them.
 * Outside every allocator lock. 1: on (the hooks must be called from now on); 0: unavailable
 * (one line on stderr says why). */
BSL_HIDDEN int track_start(long depth, uint64_t sample_bytes, int live_sites);
/* 0: no tracking, 1: every allocation, 2: sampled. */
BSL_HIDDEN int track_mode(void);
/* The exit report was written: the hooks do nothing any more. */
BSL_HIDDEN void track_stop(void);
BSL_HIDDEN int track_stopped(void);
/* 1: this process tracked a block since tracking started or since it was forked. */
BSL_HIDDEN int track_tracked_since_fork(void);

/* What a fork() child writes of the tracking state, on one cache line: a child that tracks nothing
 * (a shell's subshell under sampling) then copies one page of it, not the four that these fields
 * were spread over (each copy is a page fault in the child, and one in the parent when it next
 * writes there). Only the fork child handlers and the exit path write it in a child. */
struct track_proc {
    int done;          /* track.c: the exit report was written: the hooks do nothing any more */
    int own_seen;      /* track.c: a block was tracked since tracking started or the fork (set once) */
    int treg_stale;    /* threads.c: a fork child whose registry still holds the parent's tids */
    void *treg_forker; /* threads.c: then the registry entry of the thread that forked (the only one) */
    long report_pid;   /* leakcheck/fatal.c: the process whose fatal signals write a leak report */
} __attribute__((aligned(64)));
BSL_HIDDEN extern struct track_proc track_proc;

/* ---- the hooks (track.c), called by src/malloc/hooks.c only ---- */
/* An allocation of `size` bytes is about to be made: decide whether it is tracked (sampling; force:
 * track it exactly whatever the sampling), and if so capture its site (the stack under `label`,
 * an opaque per-thread value that is part of the site's identity) and ask the accounting hooks.
 * Returns a ticket for track_after_alloc: 0 (not tracked), TRACK_REFUSE (the accounting refuses
 * it: fail with ENOMEM), or the site. */
#define TRACK_REFUSE UINT64_MAX
BSL_HIDDEN uint64_t track_before_alloc(size_t size, uint16_t label, int force);
/* The allocation succeeded: the block at p enters the tracker (ticket from track_before_alloc). */
BSL_HIDDEN void track_after_alloc(void *p, size_t size, uint64_t ticket);
/* The block at p (p != NULL, maybe never tracked) is about to be given back. In sampled mode the
 * caller asks only for blocks in frames the allocator marked (struct track_core's mark). */
BSL_HIDDEN void track_on_free(void *p);

/* ---- the sampled fast path, inlined into the public entry points (sample.c owns this state) ----
 * With sampling nearly every call is not sampled. Deciding that inline, before the generic hooked
 * path (init check, debug features, Valgrind quieting), keeps sampled tracking close to the
 * untracked cost. Frees need nothing here: the allocator marks frames that hold tracked blocks
 * (struct track_core's mark). */
BSL_HIDDEN extern uint64_t track_sample_bytes;      /* 0: full tracking */
BSL_HIDDEN extern __thread int64_t track_countdown; /* bytes until this thread's next sampled allocation */
/* Allocations below this many bytes may be decided inline: track_sample_bytes while sampling, 0 in
 * full mode and while sampling is suspended (track_force_add). */
BSL_HIDDEN extern uint64_t track_lean_max;
/* Suspend (delta 1) or resume (-1) sampling process-wide: while suspended, every allocation is
 * tracked exactly (a budget is being enforced, a victim chosen). Nests. */
BSL_HIDDEN void track_force_add(int delta);
/* Hold the inline lean path off (delta 1) or let it back (-1) process-wide, sampling unchanged:
 * every allocation then reaches track_before_alloc, whose caller can force it by its own test (the
 * soft OOM policy enforcing a tag's budget exactly: the tag is the thread's). Nests. */
BSL_HIDDEN void track_lean_hold_add(int delta);
BSL_HIDDEN int track_forced(void);
/* 1: an allocation of n bytes is not sampled (its bytes are taken off the countdown): the caller
 * may skip the hooks. 0: track_before_alloc decides (full tracking, a large block, the countdown
 * running out, or sampling suspended). */
static inline int track_unsampled_alloc(size_t n)
{
    if (n >= __atomic_load_n(&track_lean_max, __ATOMIC_RELAXED))
        return 0;
    int64_t c = track_countdown - (int64_t)n;
    if (unlikely(c <= 0))
        return 0;
    track_countdown = c;
    return 1;
}
/* A sampled block of `size` bytes stands for *bytes bytes in *blocks blocks (1 and size when
 * tracking in full, for blocks of at least track_sample_bytes, and for exact ones). */
BSL_HIDDEN void track_weigh(uint64_t size, int exact, double *blocks, double *bytes);

/* ---- sites: deduplicated allocation stacks (sites.c) ----
 * Immortal once published: a site is never freed, so a pointer to one stays valid without RCU. */
struct track_site;
BSL_HIDDEN extern uint32_t track_nsites; /* published sites have indices 1 .. track_nsites (0: unknown) */
/* The site with index i (NULL for an index lost to an insertion race or not yet published). */
BSL_HIDDEN const struct track_site *track_site_get(uint32_t i);
BSL_HIDDEN unsigned track_site_frames(const struct track_site *s, const uintptr_t **frames);
BSL_HIDDEN uint16_t track_site_label(const struct track_site *s);
BSL_HIDDEN uint32_t track_site_idx(const struct track_site *s);
/* 1: the site's stack runs through the tracker's helper libraries (liburcu: the threads its hash
 * table starts for a resize, their registration): its allocations are the allocator's own, never tracked,
 * reported or charged. 0 for NULL. */
BSL_HIDDEN int track_site_internal(const struct track_site *s);
/* A consumer's state per site: TRACK_SITE_DATA bytes, 8-aligned, zero when the site is created,
 * written only by that consumer (the soft OOM policy's accounts). */
#define TRACK_SITE_DATA 32
BSL_HIDDEN void *track_site_data(const struct track_site *s);
/* A tracked block of `size` bytes from site idx arrived (sign 1) or left (-1): its live counters
 * (only when track_live_sites: track_start's live_sites). */
BSL_HIDDEN extern int track_live_sites;
BSL_HIDDEN void track_site_live(uint32_t idx, uint64_t size, int exact, int sign);
/* The n sites with the most live bytes, largest first (none without track_live_sites; racy reads: a view for `buddyslab top`,
 * not an account). Returns how many were filled. Takes no lock; O(sites). */
struct track_site_stat {
    const struct track_site *site;
    int64_t bytes, mblocks; /* live; blocks in thousandths (estimates when sampled) */
    uint64_t allocs;        /* tracked allocations ever made */
};
BSL_HIDDEN unsigned track_sites_top(struct track_site_stat *out, unsigned n);

/* ---- accounting: a consumer told of every tracked block (track.c) ----
 * admit: before a tracked allocation from site s (track_guard set, outside every allocator lock):
 * 0 to go ahead, nonzero to refuse it. charge: a tracked block of `size` bytes from s arrived
 * (sign 1) or left (sign -1); exact: tracked outside sampling. Registered once, never removed. */
struct track_accounting {
    int (*admit)(const struct track_site *s, uint64_t size, int exact);
    void (*charge)(const struct track_site *s, uint64_t size, int sign, int exact);
};
BSL_HIDDEN void track_set_accounting(const struct track_accounting *a);

/* ---- block records (blockmap.c) ---- */
struct track_block {
    uintptr_t start;
    uint64_t size;   /* bytes requested */
    uint32_t site;   /* site index */
    uint8_t state;   /* the snapshot's consumer's (the leak scan: reached or lost) */
    uint8_t leader;  /* the consumer's (the leak scan: processed as the head of a lost clique) */
    uint8_t exact;   /* TRACK_EXACT: weighs 1 even when sampling */
    uint8_t pad;
    uint32_t clique; /* the consumer's (the leak scan: the lost block that holds this one) */
    uint32_t pad2;
};
/* Lock every block map shard and copy all records into a fresh track_alloc array sorted by
 * address. *n receives the count. NULL when out of memory (the shards stay locked: call
 * track_blocks_unlock in every case). While locked, blocks recorded in the map (huge ones) and,
 * under sampling, every tracked block cannot be freed; under full tracking a block whose record
 * is in its slot can (no lock: blockmap.c), so track_block_unchanged tells whether it still is
 * the block the snapshot saw. */
BSL_HIDDEN struct track_block *track_blocks_lock_snapshot(size_t *n);
BSL_HIDDEN void track_blocks_unlock(void);
BSL_HIDDEN int track_block_unchanged(const struct track_block *b);
/* Frees this thread made while it held the map (track_guard set: libc code the tracker or a
 * consumer called), not yet applied: up to max addresses. Then track_drain_deferred applies them. */
BSL_HIDDEN size_t track_deferred(uintptr_t *out, size_t max);
BSL_HIDDEN void track_drain_deferred(void);
/* The tracker's own heap blocks that hold block addresses: the map's tables (call with the map
 * locked) and a report's scratch blocks (track_report_begin). Starts only, up to max. */
BSL_HIDDEN size_t track_shard_tables(uintptr_t *out, size_t max);
BSL_HIDDEN size_t track_own_blocks(uintptr_t *out, size_t max);
/* Between these, the calling thread's track_alloc blocks are listed as scratch (a report's). */
BSL_HIDDEN void track_report_begin(void);
BSL_HIDDEN void track_report_end(void);

/* ---- threads (threads.c) ---- */
struct track_thread_info {
    long tid;         /* 0 for a thread that has exited */
    uintptr_t tp;     /* thread pointer (pthread_self) */
    uintptr_t lo, hi; /* stack bounds from pthread_getattr_np (0, 0 when unknown) */
};
/* Copy up to max registered threads (live and recently dead) into out; returns the count. */
BSL_HIDDEN size_t track_threads_snapshot(struct track_thread_info *out, size_t max);

/* ---- stack capture (unwind.c) ---- */
/* Whether pc lies in the allocator library's own code. */
BSL_HIDDEN int track_own_code(uintptr_t pc);
/* Our library's writable segments (not roots): up to max [start, end) pairs. */
BSL_HIDDEN size_t track_own_data(uintptr_t (*ranges)[2], size_t max);

/* ---- symbols (syms.c): a process-lifetime cache, one entry per return address ----
 * Call with track_guard set (libdw and dladdr1 allocate). Entries and their strings never move. */
struct track_sym {
    uintptr_t pc;
    const char *func, *file, *module; /* NULL when unknown */
    int line;
    uintptr_t off;  /* from the module's load bias */
    int lines_done; /* file and line were looked up */
    int names_done; /* func was looked up with libdw (not only dladdr1) */
};
/* Set by a thread writing a report while the system refuses memory: symbols come from dladdr1
 * only (libdw crashes when its own malloc fails), and cached entries are used as they are. */
BSL_HIDDEN extern __thread int track_sym_lean;
BSL_HIDDEN const struct track_sym *track_sym_get(uintptr_t pc);
/* The same entry with only func, module and off certain (no DWARF line lookup: cheaper). */
BSL_HIDDEN const struct track_sym *track_sym_name(uintptr_t pc);
BSL_HIDDEN char *track_str_dup_n(const char *s, size_t n); /* into the symbols' arena (never freed) */
/* Call fn for every function symbol (with a size) of every loaded module that module(base) wants:
 * its address range and its (demangled) name. *adds: the dynamic loader's load count the walk
 * reflects (see track_syms_adds). 0, or -1 when libdw is unavailable. Call with track_guard set;
 * the callbacks must not call track_sym_*. */
BSL_HIDDEN int track_syms_walk(int (*module)(uintptr_t base, void *arg),
                               void (*fn)(uintptr_t lo, uintptr_t hi, const char *name, void *arg), void *arg,
                               unsigned long long *adds);
/* The dynamic loader's count of objects loaded so far (dl_iterate_phdr's dlpi_adds). */
BSL_HIDDEN unsigned long long track_syms_adds(void);
/* LSan's pattern rules: '*' wildcards, a leading '^' and a trailing '$' anchor; else a substring. */
BSL_HIDDEN int track_tmatch(const char *pattern, const char *s);

/* ---- the executable's image (exe.c) ----
 * In a program without a dynamic loader: the program's RELRO data (read-only once libc's start-up
 * is done, after it allocated blocks it keeps there: a root of the leak scan). 1 and [*lo, *hi),
 * or 0 (none, or a dynamic program). */
BSL_HIDDEN int track_static_relro(uintptr_t *lo, uintptr_t *hi);
/* In a program without a dynamic loader, where dlsym sees none of the program's symbols: the
 * function `name` of the executable, from its symbol table (by its preferred name among aliases),
 * or NULL. NULL in a dynamic program (use track_dlsym). Takes track_sym_lock. */
BSL_HIDDEN void *track_exe_function(const char *name);

/* ---- report output (out.c): the writer of the leak report and the soft OOM report ---- */
struct track_out {
    int fd;
    size_t n;
    char buf[16384];
};
BSL_HIDDEN void track_out_flush(struct track_out *o);
BSL_HIDDEN void track_out_put(struct track_out *o, const char *s);
BSL_HIDDEN void track_out_fmt(struct track_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
BSL_HIDDEN void track_out_json_str(struct track_out *o, const char *s);
BSL_HIDDEN const char *track_commas(char *buf, uint64_t v); /* 1234567 -> "1,234,567" */
/* The site's frames, one "#k 0x... in func file:line (module+0x...)" line each, or JSON objects. */
BSL_HIDDEN void track_write_frames(struct track_out *o, const struct track_site *site, int json);
/* Open a report file ("%p": the pid); 2 (stderr) for "" or NULL, or when it cannot be opened (one
 * line naming `what` says so). *json: the name ends in ".json". append: O_APPEND, else truncate. */
BSL_HIDDEN int track_open_report(const char *path, int *json, const char *what, int append);

/* ---- the tracker's memory and small helpers (mem.c) ---- */
BSL_HIDDEN void *track_alloc(size_t n); /* the core allocator, zeroed; NULL on failure */
BSL_HIDDEN void track_free(void *p);
BSL_HIDDEN void *track_realloc(void *p, size_t old, size_t n);
/* Read a whole file (e.g. /proc/self/maps) into a track_alloc buffer, NUL-terminated. */
BSL_HIDDEN char *track_read_file(const char *path, size_t *len);
/* dlopen/dlsym when the program is dynamically linked (weak references: NULL in static programs). */
BSL_HIDDEN int track_is_dynamic(void);
BSL_HIDDEN void *track_dlopen(const char *name);
BSL_HIDDEN void *track_dlsym(void *handle, const char *name);
/* exp(x) and log(x) without libm (the static archive must not need -lm). */
BSL_HIDDEN double track_exp(double x);
BSL_HIDDEN double track_log(double x);

/* ---- fork: src/malloc/fork.c's table calls these (the prepare only when the process has
 * threads): the outer locks (resize, site, symbols), then the block map shards, the thread
 * registry and liburcu's locks. */
BSL_HIDDEN void track_fork_locks(os_lock_visit_fn visit);
BSL_HIDDEN void track_fork_prepare(int careful);
BSL_HIDDEN void track_fork_parent(void);
BSL_HIDDEN void track_fork_child(void);

#endif
