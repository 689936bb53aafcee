/* buddyslab: a drop-in malloc built like the Linux kernel's memory manager.
 *
 * The standard C/POSIX/glibc allocation API (malloc, free, calloc, realloc, posix_memalign, ...)
 * is provided under its usual names; this header declares only the bsl_* extensions.
 * Every function here is safe to call before the first malloc and from any thread. */
#ifndef BUDDYSLAB_H
#define BUDDYSLAB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BSL_VERSION "0.1.0"

/* Zones, in the kernel's sense: pools of page frames with their own purpose.
 * A zone that runs dry falls back along its zonelist: NORMAL -> LOW32; LOW32 has no fallback;
 * HUGE is never a fallback target (it maps 2 MiB-aligned regions directly). */
typedef enum bsl_zone_id {
    BSL_ZONE_LOW32 = 0,  /* memory below 4 GiB (the ZONE_DMA32 idea) */
    BSL_ZONE_NORMAL = 1, /* everything by default */
    BSL_ZONE_HUGE = 2,   /* 2 MiB-aligned, transparent-huge-page-advised mappings */
    BSL_NR_ZONES = 3
} bsl_zone_id;

/* Allocate `size` bytes from `zone` (free it with free()). NULL + errno=ENOMEM on failure,
 * NULL + errno=EINVAL for an unknown zone. */
void *bsl_zone_malloc(bsl_zone_id zone, size_t size);

/* The zone a pointer we handed out was allocated from, or -1 when the pointer is not ours
 * (foreign). Blocks above 4 MiB are mapped directly (2 MiB aligned) whatever their zone. */
int bsl_zone_of(const void *ptr);

/* 1 when `ptr` is the start of a block we handed out and that is not free, 0 otherwise.
 * Exact for large and huge blocks; a small object counts as free while it sits on its slab's
 * free list or in a per-CPU cache (in fallback mode: the calling thread's cache only). Scans those
 * lists: meant for tests and debugging, not hot paths. */
int bsl_owns(const void *ptr);

/* 1 when the per-CPU caches run on restartable sequences, 0 when the per-thread fallback is used. */
int bsl_using_rseq(void);

/* Whole-heap counters, all in bytes unless named otherwise. */
typedef struct bsl_stats {
    size_t reserved;        /* address space reserved from the OS (zones + huge mappings) */
    size_t committed;       /* frames that may be resident: in use or free-but-not-yet-purged */
    size_t allocated;       /* bytes in live blocks, at block granularity (slab object / pages) */
    size_t slab_bytes;      /* pages held by slabs */
    size_t large_bytes;     /* pages held by large (buddy) blocks */
    size_t huge_bytes;      /* bytes of huge mappings */
    size_t free_dirty;      /* free frames not yet returned to the OS */
    size_t free_clean;      /* free frames already returned (or never touched) */
    size_t purged_total;    /* bytes returned to the OS with madvise since start */
    uint64_t nmalloc;       /* slow-path and large allocations counted centrally */
    uint64_t nfree;
    size_t slab_object_bytes; /* bytes of object slots carved in slabs (slab_bytes minus tail waste) */
    size_t cached;          /* bytes of free objects held in per-CPU and transfer caches */
    size_t rss;             /* resident set size of the process, from /proc/self/statm */
} bsl_stats_t;

#define BSL_MAX_ORDER 10 /* buddy orders 0..10: 4 KiB .. 4 MiB */

/* Free blocks per buddy order in `zone` (summed over its shards), like one line of
 * /proc/buddyinfo. Returns 0, or -1 for a zone without buddy lists (HUGE) or a bad zone. */
int bsl_stats_buddyinfo(bsl_zone_id zone, size_t nr_free[BSL_MAX_ORDER + 1]);

/* The kernel's unusable free space index of `zone` for an allocation of 2^order frames, in
 * thousandths: the share of free memory held in blocks too small for that order (0: none, all
 * free memory usable; 1000: all of it unusable). -1 for a bad zone or order. */
int bsl_stats_unusable_index(bsl_zone_id zone, unsigned order);

/* Fill *out; returns 0. */
int bsl_stats_get(bsl_stats_t *out);

/* Print the zoneinfo / buddyinfo / slabinfo views to `fd` (text), or as one JSON object. */
void bsl_stats_print(int fd);
void bsl_stats_print_json(int fd);

/* Return every free frame to the OS now; returns the number of bytes purged. */
size_t bsl_purge(void);

/* Set one option as BUDDYSLAB_OPTIONS would ("key", "value"). Returns 0, or -1 (and prints one
 * line naming the key) when the key is unknown or the value is bad; the old value is kept. */
int bsl_option_set(const char *key, const char *value);
/* Read an options string as BUDDYSLAB_OPTIONS is read at start, without changing the live options
 * and without initialising the allocator: write every option's resolved value on fd, one
 * "key=value" line each (sizes in bytes; a list option one line per value, none when empty), and
 * the usual one line on stderr for each bad entry. Returns the number of bad entries. The launcher
 * calls it (through ctypes) so that the library is the one parser of option strings. */
int bsl_options_explain(const char *options, int fd);

/* Walk the whole heap (zones, buddy free lists, dirty lists, slabs, transfer caches) and verify
 * its invariants. Returns 0, or -1 after printing what is wrong on stderr. Takes each lock in turn:
 * slow, for tests, fuzzing and debugging. */
int bsl_check_heap(void);

const char *bsl_version(void);

/* ---- Leak tracker (BUDDYSLAB_OPTIONS=leak=1 or leak_sample=BYTES; docs/DESIGN.md, "Leak tracker") ----
 * Write a leak report now: a conservative scan of the roots (data, bss, thread stacks and
 * registers, the program's own mappings) classifies every tracked block as definitely lost,
 * indirectly lost or still reachable, and the report groups them by allocation site. `path`: a
 * file (JSON when it ends in ".json", "%p" is replaced by the process id), or NULL / "" for the
 * leak_report option (stderr when that is empty too). Other threads keep running; their tracked
 * allocations and frees wait until the scan is done. Returns the number of definitely lost blocks
 * that are not suppressed (an estimate with leak_sample), or -1 when tracking is off. */
int bsl_leak_report(const char *path);

/* 0: leak tracking is off (or unavailable); 1: every allocation is tracked (leak=1);
 * 2: allocations are sampled (leak_sample=BYTES). */
int bsl_leak_tracking(void);

/* ---- Soft OOM policy (docs/DESIGN.md, "Soft OOM policy"; options soft_limit, hard_limit, budget,
 * oom_action, oom_report, oom_interval_ms, oom_sample) ----
 * Budgets are checked against live bytes per allocation site and per tag; the process limits
 * against committed memory (live blocks, caches and free frames not yet returned to the OS). When a
 * limit or budget is crossed, the allocator first reclaims (flushes caches, returns free frames to
 * the OS), then calls the handler, and only if still over applies oom_action: report (rank the
 * sites, nothing fails), fail (allocations from over-budget sites and tags return NULL with
 * ENOMEM), or abort. Sites need tracking: a budget or limit turns it on (sampled, see oom_sample). */

/* Set the budget of `pattern` (a function-name pattern: '*' wildcards, '^'/'$' anchors) or of
 * "tag:NAME" to `bytes` (0: no budget, accounting only). Starts site tracking if it was off (then
 * only blocks allocated from now on count). Returns 0, or -1 with errno EINVAL (bad pattern) or
 * ENOSPC (too many budgets and tags), or ENOSYS (site tracking unavailable). */
int bsl_budget_set(const char *pattern, size_t bytes);

typedef struct bsl_budget_info {
    size_t budget;      /* bytes (0: none) */
    size_t live_bytes;  /* live bytes charged to it (an estimate when sampling) */
    size_t live_blocks;
    uint64_t failed;    /* allocations refused under oom_action=fail */
    int over;           /* over budget at the last check */
} bsl_budget_info_t;
/* The account of `pattern` or "tag:NAME": 0, or -1 when there is none. */
int bsl_budget_get(const char *pattern, bsl_budget_info_t *out);

/* Set the process limits on committed bytes (0: none); like options soft_limit and hard_limit. */
int bsl_oom_set_limits(size_t soft_limit, size_t hard_limit);

/* Label this thread's allocations: until the matching pop, blocks count against "tag:NAME" (tags
 * nest, 16 deep). The name is copied (63 bytes at most). 0, or -1 (bad name, too deep, too many). */
int bsl_tag_push(const char *name);
int bsl_tag_pop(void); /* 0, or -1 when no tag is pushed */
const char *bsl_tag_current(void); /* NULL when none */

typedef enum bsl_oom_kind {
    BSL_OOM_BUDGET = 1,     /* a pattern or tag budget */
    BSL_OOM_SOFT_LIMIT = 2, /* the process soft limit */
    BSL_OOM_HARD_LIMIT = 3, /* the process hard limit: the allocation fails unless the handler frees */
    BSL_OOM_NO_MEMORY = 4   /* the OS refused memory (mmap failed: RLIMIT_AS, overcommit, cgroup) */
} bsl_oom_kind;
typedef struct bsl_oom_event {
    bsl_oom_kind kind;
    const char *budget; /* BSL_OOM_BUDGET: the pattern or "tag:NAME"; NULL otherwise */
    size_t live;        /* the account's live bytes, or the process's committed bytes */
    size_t limit;       /* its budget or limit */
    size_t request;     /* bytes of the allocation that crossed it */
} bsl_oom_event;
#define BSL_OOM_CONTINUE 0 /* handler: go on with oom_action */
#define BSL_OOM_RETRY 1    /* handler: memory was freed, check again */
/* Called (after reclaim, before oom_action) in the allocating thread, one event at a time; it may
 * allocate and free (its own allocations are never refused), set budgets, write a report
 * (bsl_oom_report) or replace itself. NULL removes it. */
typedef int (*bsl_oom_handler_fn)(const bsl_oom_event *ev, void *arg);
void bsl_oom_set_handler(bsl_oom_handler_fn fn, void *arg);

typedef struct bsl_oom_stats {
    uint64_t events;              /* limits or budgets found over after reclaim and the handler */
    uint64_t reclaims;            /* direct reclaims run (one per crossing at most every 10 ms) */
    uint64_t reclaimed_bytes;     /* committed bytes they released */
    uint64_t background_reclaims; /* purges near the soft limit (its low watermark) */
    uint64_t reports, reports_suppressed; /* written, and held back by oom_interval_ms */
    uint64_t failed;              /* allocations refused */
    uint64_t handler_calls, handler_recovered; /* handler calls; those after which all was well */
    uint64_t last_reclaim_seq, last_report_seq; /* order of the latest reclaim and report (0: none) */
    size_t committed, soft_limit, hard_limit;
    int tracking;        /* 0: off, 1: every allocation, 2: sampled */
    size_t sample_bytes; /* sampled: about one allocation per this many bytes */
} bsl_oom_stats_t;
int bsl_oom_stats(bsl_oom_stats_t *out);

/* Write a soft OOM report now (sites ranked by live bytes and budgets): path as option oom_report
 * (NULL: that option; "": stderr). 0, or -1 when no limit or budget is set (live bytes are
 * counted per site only while the policy is on) or site tracking is unavailable. */
int bsl_oom_report(const char *path);

#ifdef __cplusplus
}
#endif
#endif
