/* The conservative scan: which tracked blocks can the program still reach?
 *
 * Roots, as Valgrind's memcheck takes them:
 *  - every readable and writable mapping of the process (/proc/self/maps): data and bss of every
 *    loaded object, thread-local storage, memory the program mapped itself (custom allocators,
 *    Python's arenas), except the allocator's own memory: heap sections (2 MiB sections the
 *    pagemap owns: arenas and huge blocks, tracked blocks are reached through the graph only),
 *    the allocator's metadata, and the library's own data (allocator and tracker state);
 *  - thread stacks, from the stack pointer up: the current thread's from its current sp (its
 *    callee-saved registers are spilled into a jmp_buf on that stack by setjmp); every other live
 *    thread the tracker has seen allocate (its stack bounds are known) from the sp the kernel shows
 *    in /proc/self/task/TID/syscall while it blocks in a system call, else its whole stack; a
 *    thread that has exited leaves only its TLS and thread descriptor (the top static-TLS-size
 *    bytes of its stack block, which glibc may keep cached) as roots, not its dead frames.
 *    Threads the tracker never saw allocate have their stack mapping scanned whole.
 * Then the graph: a pointer to the start or the inside of a tracked block reaches it (like LSan;
 * Valgrind would call blocks reached only through interior pointers "possibly lost"), and a
 * reached block's contents are scanned in turn. Blocks left over are lost: as in Valgrind, each
 * one not reachable from another lost block is "definitely lost" and heads a clique of the lost
 * blocks reachable from it ("indirectly lost").
 *
 * With leak_sample, only sampled blocks are tracked: every live block of the heap that is not
 * tracked (handed over by the slab layer's heap walk and the zones' walk of huge blocks, objects
 * waiting free in a cache told apart by slab_marked_free) is scanned as a root, so a sampled block
 * referenced by any live block counts as reachable. The scan reads no allocator structure itself,
 * and makes its system calls through src/os. */
#include "leakcheck/leak_int.h"

#include "slab/slab.h" /* the heap walk (slab_heap_walk, zones_for_each_huge), heap sections */

#include <setjmp.h>
#include <string.h>

struct range {
    uintptr_t lo, hi;
};
struct rvec {
    struct range *v;
    size_t n, cap;
};

static void rv_add(struct rvec *r, uintptr_t lo, uintptr_t hi)
{
    if (lo >= hi)
        return;
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 256;
        struct range *nv = track_realloc(r->v, r->cap * sizeof(*nv), nc * sizeof(*nv));
        if (!nv)
            return;
        r->v = nv;
        r->cap = nc;
    }
    r->v[r->n].lo = lo;
    r->v[r->n].hi = hi;
    r->n++;
}

static void rv_sort(struct rvec *r)
{
    for (size_t i = 1; i < r->n; i++) { /* short lists: insertion sort */
        struct range t = r->v[i];
        size_t j = i;
        while (j > 0 && r->v[j - 1].lo > t.lo) {
            r->v[j] = r->v[j - 1];
            j--;
        }
        r->v[j] = t;
    }
}

/* ---- /proc/self/maps ---- */
struct vma {
    uintptr_t lo, hi;
    uint8_t r, w, anon, skip;
};
struct maps {
    struct vma *v;
    size_t n;
};

static uintptr_t hexnum(const char **p)
{
    uintptr_t v = 0;
    for (;;) {
        char c = **p;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return v;
        v = v * 16 + (uintptr_t)d;
        (*p)++;
    }
}

static int prefix(const char *s, const char *p)
{
    while (*p)
        if (*s++ != *p++)
            return 0;
    return 1;
}

static int maps_read(struct maps *m)
{
    size_t len;
    char *buf = track_read_file("/proc/self/maps", &len);
    m->v = NULL;
    m->n = 0;
    if (!buf)
        return -1;
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    m->v = track_alloc((lines + 1) * sizeof(struct vma));
    if (!m->v) {
        track_free(buf);
        return -1;
    }
    const char *p = buf;
    while (*p) {
        struct vma *v = &m->v[m->n];
        v->lo = hexnum(&p);
        if (*p == '-')
            p++;
        v->hi = hexnum(&p);
        while (*p == ' ')
            p++;
        v->r = p[0] == 'r';
        v->w = p[1] == 'w';
        /* offset, device, inode, then the path (if any) */
        for (int f = 0; f < 4 && *p && *p != '\n'; f++) {
            while (*p && *p != ' ' && *p != '\n')
                p++;
            while (*p == ' ')
                p++;
        }
        const char *path = p;
        while (*p && *p != '\n')
            p++;
        v->anon = path == p;
        v->skip = !v->anon && ((prefix(path, "/dev/") && !prefix(path, "/dev/zero") && !prefix(path, "/dev/shm/")) ||
                               prefix(path, "[vvar") || prefix(path, "[vsyscall") || prefix(path, "[vdso"));
        if (*p == '\n')
            p++;
        if (v->hi > v->lo && m->n < lines + 1)
            m->n++;
    }
    track_free(buf);
    return 0;
}

static const struct vma *maps_find(const struct maps *m, uintptr_t a)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (m->v[mid].hi <= a)
            lo = mid + 1;
        else if (m->v[mid].lo > a)
            hi = mid;
        else
            return &m->v[mid];
    }
    return NULL;
}

/* ---- reading memory that may go away under us ---- */
/* Copy up to len bytes at addr; returns how many could be read (0: addr unreadable). */
static size_t safe_read(uintptr_t addr, void *buf, size_t len) { return os_read_self(addr, buf, len); }

/* ---- marking ---- */
struct scan {
    struct track_block *b;
    size_t n;
    uintptr_t lo, hi; /* lowest start, highest end of tracked blocks */
    size_t *work;
    size_t nwork, capwork;
    int phase;     /* 0: from roots; 1: from a lost clique leader */
    size_t leader; /* phase 1 */
    char *buf;     /* safe_read buffer (SCAN_BUF bytes) */
    char *win;     /* the heap walk's window on slab objects (SCAN_WIN bytes after buf) */
    uintptr_t win_lo;
    size_t win_got; /* [win_lo, win_lo + win_got) is in win */
    size_t nreached; /* phase 0: blocks found reachable; at n the roots can tell nothing more */
};
/* Every tracked block is reachable already: the rest of the roots need not be read (a short
 * program under sampling holds a handful of tracked blocks, found early in its data and stacks,
 * while the heap walk reads every untracked block). */
static inline int all_reached(const struct scan *s) { return s->nreached == s->n; }
#define SCAN_BUF (256u << 10)
/* Slab objects are read through a window: one safe_read of up to SCAN_WIN bytes from the first
 * object the last window did not hold, the following objects (the walk goes up the addresses)
 * taken from it. One system call per object made python3 -c pass under leak_sample issue 805
 * process_vm_readv calls; the window makes 56. */
#define SCAN_WIN (64u << 10)

static inline size_t bsize(const struct track_block *b) { return b->size ? b->size : 1; }

/* Index of the tracked block holding address w, or (size_t)-1. */
static size_t find_block(const struct scan *s, uintptr_t w)
{
    if (w < s->lo || w >= s->hi)
        return (size_t)-1;
    size_t lo = 0, hi = s->n;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (s->b[mid].start <= w)
            lo = mid;
        else
            hi = mid;
    }
    const struct track_block *b = &s->b[lo];
    return w >= b->start && w - b->start < bsize(b) ? lo : (size_t)-1;
}

static void push(struct scan *s, size_t i)
{
    if (s->nwork == s->capwork) {
        size_t nc = s->capwork ? s->capwork * 2 : 4096;
        size_t *nw = track_realloc(s->work, s->capwork * sizeof(size_t), nc * sizeof(size_t));
        if (!nw)
            return; /* out of memory: that block's contents go unscanned (more leaks, never fewer) */
        s->work = nw;
        s->capwork = nc;
    }
    s->work[s->nwork++] = i;
}

static inline void consider(struct scan *s, uintptr_t w)
{
    if (w - s->lo >= s->hi - s->lo)
        return;
    size_t i = find_block(s, w);
    if (i == (size_t)-1)
        return;
    struct track_block *b = &s->b[i];
    if (s->phase == 0) {
        if (b->state != LEAK_UNREACHED)
            return;
        b->state = LEAK_REACHABLE;
        s->nreached++;
        push(s, i);
    } else {
        if (b->state != LEAK_UNREACHED || i == s->leader)
            return;
        b->state = LEAK_INDIRECT;
        b->clique = (uint32_t)s->leader; /* a former leader keeps its clique: chains resolve later */
        push(s, i);
    }
}

static void scan_words(struct scan *s, const uintptr_t *w, size_t nw)
{
    if (s->phase == 0 && all_reached(s))
        return;
    for (size_t k = 0; k < nw; k++)
        consider(s, w[k]);
}

/* Scan [lo, hi) of memory that is not ours to lock: read it with safe_read, skipping heap
 * sections (tracked blocks are reached through the graph; the rest of the heap is not a root). */
static void scan_range(struct scan *s, uintptr_t lo, uintptr_t hi)
{
    lo = (lo + 7) & ~(uintptr_t)7;
    hi &= ~(uintptr_t)7;
    uintptr_t a = lo;
    while (a < hi && !all_reached(s)) {
        uintptr_t sec_end = (a | (SECTION_SIZE - 1)) + 1;
        if (sec_end > hi || sec_end < a)
            sec_end = hi;
        if (pagemap_entry((const void *)a)) {
            a = sec_end;
            continue;
        }
        while (a < sec_end) {
            size_t len = sec_end - a < SCAN_BUF ? sec_end - a : SCAN_BUF;
            size_t got = safe_read(a, s->buf, len);
            scan_words(s, (const uintptr_t *)(const void *)s->buf, got / 8);
            if (got < len) /* unreadable page: skip it */
                a = ((a + got) | (PAGE_SIZE - 1)) + 1;
            else
                a += len;
        }
    }
}

/* Scan the blocks on the work list (tracked blocks: the map is locked, they cannot be freed). */
static void drain(struct scan *s)
{
    while (s->nwork) {
        const struct track_block *b = &s->b[s->work[--s->nwork]];
        scan_words(s, (const uintptr_t *)b->start, b->size / 8);
    }
}

/* ---- threads ---- */
/* The sp of thread tid while it blocks (field 8 of /proc/self/task/TID/syscall), 0 if unknown. */
static uintptr_t task_sp(long tid)
{
    char path[64], buf[256];
    os_snprintf(path, sizeof(path), "/proc/self/task/%ld/syscall", tid);
    int fd = os_open_read(path);
    if (fd < 0)
        return 0;
    long n = os_read(fd, buf, sizeof(buf) - 1);
    os_close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    if (buf[0] == 'r') /* "running" */
        return 0;
    const char *p = buf;
    int field = 0;
    uintptr_t sp = 0;
    /* "NR a1 a2 a3 a4 a5 a6 SP PC", or "-1 SP PC" when blocked outside a system call */
    int nfields = 1;
    for (const char *q = buf; *q; q++)
        nfields += *q == ' ';
    int want = nfields >= 9 ? 7 : nfields == 3 ? 1 : -1;
    if (want < 0)
        return 0;
    while (*p && field < want) {
        if (*p == ' ')
            field++;
        p++;
    }
    if (p[0] == '0' && p[1] == 'x')
        p += 2;
    sp = hexnum(&p);
    return sp;
}

/* Live thread ids. */
static size_t live_tids(long *out, size_t max) { return os_proc_numbers("/proc/self/task", out, max); }

/* glibc's static TLS size (TLS blocks + surplus + thread descriptor), for dead threads' roots.
 * Looked up by leak_scan_init, outside the report: dlsym may free the program's dlerror state. A
 * static program has the function (with pthread_create) but no dlsym that sees it: its symbol
 * table then. Without it, 64 KiB: a dead thread's frames below its TLS are roots too. */
static size_t static_tls = 64 << 10;

void leak_scan_init(void)
{
    void (*get)(size_t *, size_t *) = (void (*)(size_t *, size_t *))track_dlsym(NULL, "_dl_get_tls_static_info");
    if (!get)
        *(void **)&get = track_exe_function("_dl_get_tls_static_info");
    size_t sz = 0, al = 0;
    if (get)
        get(&sz, &al);
    if (sz)
        static_tls = sz;
}

static size_t static_tls_size(void) { return static_tls; }

/* ---- the allocator's metadata: never roots ---- */
static void meta_chunk_cb(uintptr_t start, size_t size, void *arg) { rv_add(arg, start, start + size); }

/* Every metadata reservation (pagemap leaves, arena structs, huge block descriptors, per-CPU and
 * per-thread cache slot arrays, transfer caches), as the zones layer lists them. */
static void meta_exclude(struct rvec *ex) { meta_for_each_chunk(meta_chunk_cb, ex); }

/* ---- sampling: the untracked live heap is a root ---- */
BSL_BIG_BSS static uintptr_t own_set[512];
static size_t own_n;

/* A tracked block (a graph node), or one of the tracker's own blocks (never a root). */
static int tracked_start(const struct scan *s, uintptr_t a)
{
    size_t i = find_block(s, a);
    if (i != (size_t)-1 && s->b[i].start == a)
        return 1;
    for (size_t k = 0; k < own_n; k++)
        if (own_set[k] == a)
            return 1;
    return 0;
}

/* Scan an untracked large or huge block of the heap as a root. Not with scan_range, which skips
 * heap sections: large blocks live in them, and the leak_sample scan used to miss every pointer
 * held in an untracked large block (above the 32 KiB slab sizes, below the sample interval):
 * python3 -c pass at leak_sample=512K reported a false definitely lost block in 3 runs of 15,
 * where leak=1 found no leak. */
static void scan_heap_span(struct scan *s, uintptr_t base, size_t len)
{
    for (uintptr_t a = base; a < base + len && !all_reached(s);) {
        size_t n = base + len - a < SCAN_BUF ? base + len - a : SCAN_BUF;
        size_t got = safe_read(a, s->buf, n);
        scan_words(s, (const uintptr_t *)(const void *)s->buf, got / 8);
        if (got < n)
            break;
        a += n;
    }
}

/* A block of the heap that is not tracked is a root (tracked ones are graph nodes; the tracker's
 * own blocks are neither). A slab object waiting free in a cache holds nothing of the program's. */
static void heap_block(uintptr_t a, size_t len, int kind, void *arg)
{
    struct scan *s = arg;
    if (all_reached(s) || tracked_start(s, a))
        return;
    if (kind == SLAB_WALK_LARGE) {
        scan_heap_span(s, a, len);
        return;
    }
    if (len > SCAN_WIN)
        len = SCAN_WIN;
    if (a < s->win_lo || a - s->win_lo + len > s->win_got) {
        s->win_lo = a; /* a snapshot from here: racy like the walk, which the caller tolerates */
        s->win_got = safe_read(a, s->win, SCAN_WIN);
    }
    size_t got = a - s->win_lo < s->win_got ? s->win_got - (a - s->win_lo) : 0;
    if (got > len)
        got = len;
    const uintptr_t *obj = (const uintptr_t *)(const void *)(s->win + (a - s->win_lo));
    if (got >= 16 && slab_marked_free(a, obj))
        return; /* free in a per-CPU or transfer cache */
    scan_words(s, obj, got / 8);
}

/* A live huge block: scan_range skips heap sections, so it is read directly. */
static void heap_huge(uintptr_t base, size_t usable, void *arg)
{
    struct scan *s = arg;
    if (all_reached(s) || tracked_start(s, base))
        return;
    scan_heap_span(s, base, usable);
}

static void heap_roots(struct scan *s)
{
    if (all_reached(s))
        return;
    own_n = track_shard_tables(own_set, 256);
    own_n += track_own_blocks(own_set + own_n, 512 - own_n);
    slab_heap_walk(heap_block, s);
    zones_for_each_huge(heap_huge, s);
}

/* ---- putting it together ---- */
/* Subtract the sorted, merged exclusions from [lo, hi) and scan what is left. */
static void scan_minus(struct scan *s, uintptr_t lo, uintptr_t hi, const struct rvec *ex)
{
    size_t a = 0, b = ex->n; /* first exclusion ending after lo */
    while (a < b) {
        size_t mid = (a + b) / 2;
        if (ex->v[mid].hi <= lo)
            a = mid + 1;
        else
            b = mid;
    }
    for (size_t i = a; i < ex->n && lo < hi; i++) {
        if (ex->v[i].lo >= hi)
            break;
        if (ex->v[i].lo > lo)
            scan_range(s, lo, ex->v[i].lo);
        if (ex->v[i].hi > lo)
            lo = ex->v[i].hi;
    }
    if (lo < hi)
        scan_range(s, lo, hi);
}

static __attribute__((noinline)) void scan_roots(struct scan *s, uintptr_t my_sp)
{
    struct maps m;
    if (maps_read(&m) != 0)
        return;
    size_t maxth = 4096;
    struct track_thread_info *th = track_alloc(maxth * sizeof(*th));
    long *tids = track_alloc(maxth * sizeof(long));
    size_t nth = th ? track_threads_snapshot(th, maxth) : 0;
    size_t ntid = tids ? live_tids(tids, maxth) : 0;
    long self = os_gettid();
    uintptr_t *tsp = track_alloc((ntid ? ntid : 1) * sizeof(uintptr_t));
    for (size_t i = 0; tsp && i < ntid; i++)
        tsp[i] = tids[i] == self ? my_sp : task_sp(tids[i]);
    /* A thread shown "running" has no known sp, and its whole stack, dead frames included, would be
     * scanned. Threads that allocate soon block on the shards we hold (the lock's slow path sleeps):
     * look again a few times, 20 ms at most. */
    for (int round = 0; tsp && round < 40; round++) {
        int unknown = 0;
        for (size_t i = 0; i < ntid; i++)
            if (!tsp[i] && (tsp[i] = task_sp(tids[i])) == 0)
                unknown = 1;
        if (!unknown)
            break;
        os_sleep_us(500);
    }

    struct rvec ex = {0}, roots = {0};
    uintptr_t own[8][2];
    size_t nown = track_own_data(own, 8);
    for (size_t i = 0; i < nown; i++)
        rv_add(&ex, own[i][0], own[i][1]);
    meta_exclude(&ex);

    /* Threads the tracker knows: precise stacks. */
    size_t tls = static_tls_size();
    int self_done = 0;
    for (size_t t = 0; t < nth; t++) {
        const struct track_thread_info *x = &th[t];
        if (!x->lo || x->hi <= x->lo)
            continue;
        rv_add(&ex, x->lo, x->hi);
        uintptr_t sp = 0;
        int live = 0;
        for (size_t i = 0; i < ntid; i++) {
            uintptr_t q = tsp ? tsp[i] : 0;
            if (x->tid && tids[i] == x->tid) {
                live = 1;
                sp = q;
            } else if (!sp && q >= x->lo && q < x->hi) {
                live = 1; /* another live thread runs on this (recycled) stack */
                sp = q;
            }
        }
        if (live && sp >= x->lo && sp < x->hi) {
            if (sp == my_sp) { /* this thread: from the current sp exactly (below it lies our own past) */
                rv_add(&roots, sp, x->hi);
                self_done = 1;
            } else { /* a blocked thread: its red zone too */
                rv_add(&roots, sp > x->lo + 128 ? sp - 128 : x->lo, x->hi);
            }
        } else if (live) {
            rv_add(&roots, x->lo, x->hi);
        } else {
            rv_add(&roots, x->hi - tls > x->lo ? x->hi - tls : x->lo, x->hi); /* TLS and descriptor */
        }
    }
    if (!self_done) { /* the current thread was never set up: its stack mapping from sp */
        const struct vma *v = maps_find(&m, my_sp);
        if (v) {
            rv_add(&ex, v->lo, v->hi);
            rv_add(&roots, my_sp, v->hi);
        }
    }
    rv_sort(&ex);
    /* merge exclusions */
    size_t k = 0;
    for (size_t i = 0; i < ex.n; i++) {
        if (k && ex.v[i].lo <= ex.v[k - 1].hi) {
            if (ex.v[i].hi > ex.v[k - 1].hi)
                ex.v[k - 1].hi = ex.v[i].hi;
        } else {
            ex.v[k++] = ex.v[i];
        }
    }
    ex.n = k;

    for (size_t i = 0; i < m.n; i++) {
        const struct vma *v = &m.v[i];
        if (v->r && v->w && !v->skip)
            scan_minus(s, v->lo, v->hi, &ex);
    }
    uintptr_t rlo, rhi;
    if (track_static_relro(&rlo, &rhi)) /* read-only, so not in the loop above */
        scan_minus(s, rlo, rhi, &ex);
    for (size_t i = 0; i < roots.n; i++)
        scan_range(s, roots.v[i].lo, roots.v[i].hi);
    if (track_sample_bytes)
        heap_roots(s);

    track_free(ex.v);
    track_free(roots.v);
    track_free(tsp);
    track_free(tids);
    track_free(th);
    track_free(m.v);
}

void leak_scan(struct track_block *blocks, size_t n)
{
    if (!n)
        return;
    struct scan s;
    memset(&s, 0, sizeof(s));
    s.b = blocks;
    s.n = n;
    s.lo = blocks[0].start;
    for (size_t i = 0; i < n; i++) {
        blocks[i].state = LEAK_UNREACHED;
        blocks[i].leader = 0;
        blocks[i].clique = (uint32_t)i;
        uintptr_t end = blocks[i].start + bsize(&blocks[i]);
        if (end > s.hi)
            s.hi = end;
    }
    s.buf = track_alloc(SCAN_BUF + SCAN_WIN);
    if (!s.buf)
        return;
    s.win = s.buf + SCAN_BUF;
    /* The registers of this thread: setjmp spills the callee-saved ones into jb, on the stack
     * that scan_roots scans from sp (the caller-saved ones hold nothing of the program's here). */
    jmp_buf jb;
    setjmp(jb);
    __asm__ volatile("" : : "r"(&jb) : "memory");
    scan_roots(&s, (uintptr_t)__builtin_frame_address(0) < (uintptr_t)&jb ? (uintptr_t)__builtin_frame_address(0)
                                                                             : (uintptr_t)&jb);
    drain(&s);
    /* Lost cliques, in address order (Valgrind's way). */
    s.phase = 1;
    for (size_t i = 0; i < n; i++) {
        if (blocks[i].state != LEAK_UNREACHED)
            continue;
        s.leader = i;
        blocks[i].leader = 1;
        push(&s, i);
        drain(&s);
    }
    /* Resolve clique chains (a leader later found inside another clique): point every indirect
     * block at the definitely lost block that holds it. */
    for (size_t i = 0; i < n; i++) {
        if (blocks[i].state != LEAK_INDIRECT)
            continue;
        size_t c = blocks[i].clique, hops = 0;
        while (blocks[c].state == LEAK_INDIRECT && hops++ < n)
            c = blocks[c].clique;
        blocks[i].clique = (uint32_t)c;
    }
    track_free(s.buf);
    track_free(s.work);
}
