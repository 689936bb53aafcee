/* The statistics page a buddyslab process publishes for `buddyslab top` (option publish=1).
 *
 * File: /dev/shm/buddyslab.<pid> (mode 0600: only the same user can watch), created at start,
 * removed at normal exit. A watcher maps it read-write, increments `watchers` (atomically) while it
 * watches and decrements it when done (scripts/bsl-top.py does it with libatomic through ctypes,
 * or under flock(2) on the file where libatomic is missing; the process only reads the count).
 * Only the NORMAL zone's size classes are published. The process rewrites the page from its periodic tick (at
 * most every 100 ms, or decay_ms/4) only while watchers > 0: nobody watching costs one load per tick.
 *
 * Consistency: a seqlock. The writer makes `seq` odd, writes, then makes it even again; a reader
 * copies the page and retries if `seq` was odd or changed meanwhile. */
#ifndef BUDDYSLAB_SHM_H
#define BUDDYSLAB_SHM_H

#include <stdint.h>

#define BSL_SHM_MAGIC 0x42534c53484d3031ull /* "BSLSHM01" */
#define BSL_SHM_VERSION 4 /* 2: the soft OOM section; 3: 64 size classes; 4: top allocation sites */
#define BSL_SHM_ZONES 2    /* LOW32, NORMAL (HUGE has no buddy lists) */
#define BSL_SHM_ORDERS 11  /* orders 0..10 */
#define BSL_SHM_CLASSES 64
#define BSL_SHM_BUDGETS 16      /* the first accounts (budgets and tags) of the soft OOM policy */
#define BSL_SHM_BUDGET_NAME 56
#define BSL_SHM_SITES 16  /* allocation sites with the most live bytes */
#define BSL_SHM_SITE_FRAMES 8

struct bsl_shm_class {
    uint32_t size;     /* object size */
    uint32_t order;    /* slab order */
    uint64_t inuse;    /* objects out of slabs (with callers or in caches) */
    uint64_t slabs;    /* slabs */
    uint64_t objs_per_slab;
    uint64_t refills, drains;
};

struct bsl_shm_budget {
    char name[BSL_SHM_BUDGET_NAME]; /* "PATTERN" or "tag:NAME", NUL-terminated (cut to fit) */
    uint64_t budget;                /* bytes; 0: none (a tag without a budget) */
    uint64_t live;                  /* live bytes charged to it (an estimate when sampled) */
    uint64_t failed;                /* allocations refused (oom_action=fail) */
};

/* An allocation site of the leak tracker or the soft OOM policy (when tracking is on). */
struct bsl_shm_site {
    uint32_t idx;     /* the tracker's site index (stable for the process's life) */
    uint32_t nframes; /* entries of frames[] in use, innermost first */
    int64_t live;     /* live bytes (an estimate when sampled) */
    int64_t mblocks;  /* live blocks, in thousandths (an estimate when sampled) */
    uint64_t allocs;  /* tracked allocations ever made there */
    uint64_t frames[BSL_SHM_SITE_FRAMES]; /* return addresses in the process (top symbolizes them) */
};

struct bsl_shm_page {
    uint64_t magic;
    uint32_t version;
    uint32_t pid;
    uint64_t seq;        /* seqlock: odd while being written */
    uint64_t watchers;   /* incremented by each watcher */
    uint64_t updated_ms; /* CLOCK_MONOTONIC time of the last update, ms */
    uint64_t updates;    /* how many times the page was written */
    uint32_t rseq, shards;
    /* totals, bytes (as bsl_stats_t) */
    uint64_t reserved, committed, allocated, slab_bytes, large_bytes, huge_bytes;
    uint64_t free_dirty, free_clean, purged_total, cached, rss;
    /* buddyinfo: free blocks per order, summed over shards */
    uint64_t nr_free[BSL_SHM_ZONES][BSL_SHM_ORDERS];
    struct bsl_shm_class classes[BSL_SHM_CLASSES];
    /* soft OOM policy (docs/OOM.md): limits (0: none), counters as in bsl_oom_stats_t */
    uint64_t soft_limit, hard_limit;
    uint64_t oom_events, oom_reclaims, oom_reports, oom_failed;
    uint32_t oom_tracking; /* 0: off, 1: every allocation, 2: sampled */
    uint32_t nbudgets;     /* entries of budgets[] in use */
    struct bsl_shm_budget budgets[BSL_SHM_BUDGETS];
    /* version 4: tracking (leak or soft OOM), its sampling, the sites with the most live bytes */
    uint32_t track_mode;    /* 0: off, 1: every allocation, 2: sampled */
    uint32_t nsites;        /* entries of sites[] in use, most live bytes first */
    uint64_t sample_bytes;  /* sampling period when track_mode is 2 */
    uint64_t track_nsites;  /* sites the tracker knows */
    struct bsl_shm_site sites[BSL_SHM_SITES];
};

#endif
