/* Leak tracker internals shared by its files (leakcheck.c: hooks, threads, block map, site table;
 * unwind.c: stack capture; scan.c: the conservative scan; report.c: symbols, suppressions,
 * output). See docs/DESIGN.md, "Leak tracker".
 *
 * Memory: everything the tracker keeps comes from bsl_raw_malloc (allocator pages, no hooks, so the
 * scan never mistakes it for program memory: heap sections are not roots) or lives in the
 * library's own .bss (not a root either). Code that may call the public malloc (the unwinder,
 * dlopen, liburcu, libdw, pthread_getattr_np) runs with lk_guard set: the hooks then return at
 * once, so those blocks are neither tracked nor looked up. */
#ifndef BSL_LEAKCHECK_LK_H
#define BSL_LEAKCHECK_LK_H

#include <stddef.h>
#include <stdint.h>

#include "leakcheck/leakcheck.h"
#include "malloc/internal.h"
#include "oom/oom.h"

#define LK_MAX_DEPTH 64
/* A block record packs two flags, its size (38 bits, clamped) and its site index (24 bits). */
#define LK_SITE_IDX_BITS 24
#define LK_MAX_SITES ((1u << LK_SITE_IDX_BITS) - 1)
#define LK_SIZE_MAX (((uint64_t)1 << (62 - LK_SITE_IDX_BITS)) - 1)
/* The block was tracked outside sampling (the soft OOM policy enforcing a budget): it weighs 1. */
#define LK_EXACT ((uint64_t)1 << 63)
/* The block's bytes were charged to its site's accounts (the soft OOM policy was on when it was
 * allocated): its free takes them off. Without a policy, tracking pays no charging atomics. */
#define LK_CHARGED ((uint64_t)1 << 62)
#define LK_FLAGS (LK_EXACT | LK_CHARGED)

/* The per-thread re-entrancy guard: set while the tracker runs code that may allocate. */
BSL_HIDDEN extern __thread int lk_guard;

/* ---- sites: deduplicated allocation stacks (leakcheck.c) ----
 * Immortal once published: a site is never freed, so a pointer to one stays valid without RCU. */
struct lk_site;
BSL_HIDDEN extern uint32_t lk_nsites; /* published sites have indices 1 .. lk_nsites (0: unknown) */
/* The site with index i (NULL for an index lost to an insertion race or not yet published). */
BSL_HIDDEN const struct lk_site *lk_site_get(uint32_t i);
BSL_HIDDEN unsigned lk_site_frames(const struct lk_site *s, const uintptr_t **frames);
/* The soft OOM policy's accounting of a site (src/oom/), and the tag it was allocated under
 * (a site is a stack and a tag: the same stack under two tags is two sites). */
BSL_HIDDEN struct oom_site *lk_site_oom(const struct lk_site *s);
BSL_HIDDEN uint16_t lk_site_tag(const struct lk_site *s);
BSL_HIDDEN uint32_t lk_site_idx(const struct lk_site *s);
/* A sampled block of `size` bytes stands for *bytes bytes in *blocks blocks (1 and size when
 * tracking in full, for blocks of at least lk_sample_bytes, and for exact ones: LK_EXACT). */
BSL_HIDDEN void lk_weigh(uint64_t size, int exact, double *blocks, double *bytes);
/* lk_force (leakcheck.h): sampling is suspended (every allocation tracked, exactly) while it is
 * nonzero; the soft OOM policy sets it while an account under oom_action=fail is at its budget. */

/* ---- block records (leakcheck.c) ---- */
struct lk_block {
    uintptr_t start;
    uint64_t size;    /* bytes requested */
    uint32_t site;    /* site index */
    uint8_t state;    /* scan.c: LK_UNREACHED, LK_REACHABLE, LK_INDIRECT */
    uint8_t leader;   /* scan.c: processed as the head of a lost clique */
    uint8_t exact;    /* LK_EXACT: weighs 1 even when sampling */
    uint8_t pad;
    uint32_t clique;  /* scan.c: for LK_INDIRECT, the index of the lost block that holds it */
    uint32_t pad2;
};
enum { LK_UNREACHED = 0, LK_REACHABLE = 1, LK_INDIRECT = 2, LK_FREED = 3 /* freed during the report */ };
/* Lock every block map shard (the caller then owns the map; blocks cannot be freed) and copy all
 * records into a fresh bsl_raw_malloc array sorted by address. *n receives the count. NULL when
 * out of memory (the shards stay locked: call lk_blocks_unlock in every case). */
BSL_HIDDEN struct lk_block *lk_blocks_lock_snapshot(size_t *n);
BSL_HIDDEN void lk_blocks_unlock(void);
/* The tracker's own heap blocks that hold block addresses: the map's tables (call with the map
 * locked) and the report's scratch blocks. Starts only, up to max; returns the count. */
BSL_HIDDEN size_t lk_shard_tables(uintptr_t *out, size_t max);
BSL_HIDDEN size_t lk_own_blocks(uintptr_t *out, size_t max);

/* ---- threads (leakcheck.c) ---- */
struct lk_thread_info {
    long tid;        /* 0 for a thread that has exited */
    uintptr_t tp;    /* thread pointer (pthread_self) */
    uintptr_t lo, hi; /* stack bounds from pthread_getattr_np (0, 0 when unknown) */
};
/* Copy up to max registered threads (live and recently dead) into out; returns the count. */
BSL_HIDDEN size_t lk_threads_snapshot(struct lk_thread_info *out, size_t max);

/* ---- options as the tracker sees them: lk_sample_bytes (leakcheck.h) ---- */

/* ---- stack capture (unwind.c) ---- */
BSL_HIDDEN void lk_unwind_init(void);
/* The calling thread's previous stack (see unwind.c): levels with their stack addresses. */
#define LK_MEMO_MAX (LK_MAX_DEPTH + 16)
struct lk_memo {
    unsigned n, nown, complete; /* levels; leading own levels; ended at the stack's end, not at max */
    uint32_t site;              /* the site the previous capture found (for *same) */
    uintptr_t pc[LK_MEMO_MAX], sp[LK_MEMO_MAX];
};
/* Frames of the caller's stack (return addresses), the tracker's and allocator's own frames
 * skipped. lo/hi: the calling thread's stack bounds (0, 0 when unknown: the slow unwinder is
 * used). m: the thread's memo (or NULL); *same is set when the stack is exactly the previous
 * capture's: then m->site is its site and out[] is NOT filled. Returns the depth (<= max). */
BSL_HIDDEN unsigned lk_capture(uintptr_t *out, unsigned max, uintptr_t lo, uintptr_t hi, struct lk_memo *m,
                               int *same);
/* Whether pc lies in the allocator library's own code. */
BSL_HIDDEN int lk_own_code(uintptr_t pc);
/* Our library's writable segments (not roots): up to max [start, end) pairs. */
BSL_HIDDEN size_t lk_own_data(uintptr_t (*ranges)[2], size_t max);

/* ---- the scan (scan.c) ---- */
struct lk_scan_result {
    struct lk_block *blocks; /* sorted by address, states filled in */
    size_t nblocks;
};
/* Once at start (outside any lock): what the scan needs from the dynamic loader. */
BSL_HIDDEN void lk_scan_init(void);
/* Classify every tracked block. Call with the map locked (lk_blocks_lock_snapshot). */
BSL_HIDDEN void lk_scan(struct lk_block *blocks, size_t n);

/* ---- the report (report.c) ---- */
/* Write the report of the classified blocks to path ("" or NULL: stderr; *.json: JSON). Returns
 * the number of definitely lost blocks that are not suppressed. */
BSL_HIDDEN size_t lk_report_write(const struct lk_block *blocks, size_t n, const char *path, int at_exit);

/* ---- symbols (syms.c): a process-lifetime cache, one entry per return address ----
 * Call with lk_guard set (libdw and dladdr1 allocate). Entries and their strings never move. */
struct lk_sym {
    uintptr_t pc;
    const char *func, *file, *module; /* NULL when unknown */
    int line;
    uintptr_t off; /* from the module's load bias */
    int lines_done; /* file and line were looked up */
    int names_done; /* func was looked up with libdw (not only dladdr1) */
};
/* Set by a thread writing a report while the system refuses memory: symbols come from dladdr1
 * only (libdw crashes when its own malloc fails), and cached entries are used as they are. */
BSL_HIDDEN extern __thread int lk_sym_lean;
BSL_HIDDEN extern os_lock_t lk_sym_lock; /* taken by leak_fork_prepare */
BSL_HIDDEN const struct lk_sym *lk_sym_get(uintptr_t pc);
/* The same entry with only func, module and off certain (no DWARF line lookup: cheaper). */
BSL_HIDDEN const struct lk_sym *lk_sym_name(uintptr_t pc);
BSL_HIDDEN char *lk_str_dup_n(const char *s, size_t n); /* into the symbols' arena (never freed) */
/* Call fn for every function symbol (with a size) of every loaded module that module(base) wants:
 * its address range and its (demangled) name. *adds: the dynamic loader's load count the walk
 * reflects (see lk_syms_adds). 0, or -1 when libdw is unavailable. Call with lk_guard set; the
 * callbacks must not call lk_sym_*. */
BSL_HIDDEN int lk_syms_walk(int (*module)(uintptr_t base, void *arg),
                            void (*fn)(uintptr_t lo, uintptr_t hi, const char *name, void *arg), void *arg,
                            unsigned long long *adds);
/* The dynamic loader's count of objects loaded so far (dl_iterate_phdr's dlpi_adds). */
BSL_HIDDEN unsigned long long lk_syms_adds(void);
/* LSan's pattern rules: '*' wildcards, a leading '^' and a trailing '$' anchor; else a substring. */
BSL_HIDDEN int lk_tmatch(const char *pattern, const char *s);

/* ---- report output (report.c), shared with the soft OOM report ---- */
struct lk_out {
    int fd;
    size_t n;
    char buf[16384];
};
BSL_HIDDEN void lk_out_flush(struct lk_out *o);
BSL_HIDDEN void lk_out_put(struct lk_out *o, const char *s);
BSL_HIDDEN void lk_out_fmt(struct lk_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
BSL_HIDDEN void lk_out_json_str(struct lk_out *o, const char *s);
BSL_HIDDEN const char *lk_commas(char *buf, uint64_t v); /* 1234567 -> "1,234,567" */
/* The site's frames, one "#k 0x... in func file:line (module+0x...)" line each, or JSON objects. */
BSL_HIDDEN void lk_write_frames(struct lk_out *o, const struct lk_site *site, int json);
/* Open a report file ("%p": the pid); 2 (stderr) for "" or NULL, or when it cannot be opened (one
 * line naming `what` says so). *json: the name ends in ".json". append: O_APPEND, else truncate. */
BSL_HIDDEN int lk_open_report(const char *path, int *json, const char *what, int append);

/* ---- small helpers (leakcheck.c) ---- */
BSL_HIDDEN void *lk_alloc(size_t n); /* bsl_raw_malloc, zeroed; NULL on failure */
BSL_HIDDEN void lk_free(void *p);
BSL_HIDDEN void *lk_realloc(void *p, size_t old, size_t n);
/* dlopen/dlsym when the program is dynamically linked (weak references: NULL in static programs). */
BSL_HIDDEN void *lk_dlopen(const char *name);
BSL_HIDDEN void *lk_dlsym(void *handle, const char *name);
/* exp(x) and log(x) without libm (the static archive must not need -lm). */
BSL_HIDDEN double lk_exp(double x);
BSL_HIDDEN double lk_log(double x);
/* Read a whole file (e.g. /proc/self/maps) into a bsl_raw_malloc buffer, NUL-terminated. */
BSL_HIDDEN char *lk_read_file(const char *path, size_t *len);

#endif
