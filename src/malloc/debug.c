/* Debugging and hardening features (see debug.h). All of them run only on the hooks path. */
#include "malloc/debug.h"

#include <string.h>

#include "malloc/internal.h"

#ifdef BSL_HAVE_VALGRIND
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#define VALGRIND_MALLOCLIKE_BLOCK(a, b, c, d) ((void)0)
#define VALGRIND_FREELIKE_BLOCK(a, b) ((void)0)
#define VALGRIND_MAKE_MEM_NOACCESS(a, b) ((void)0)
#define VALGRIND_DISABLE_ERROR_REPORTING ((void)0)
#define VALGRIND_ENABLE_ERROR_REPORTING ((void)0)
#endif

#define JUNK_ALLOC 0xa5 /* fresh blocks (not calloc) */
#define JUNK_FREE 0x5a  /* freed blocks: a quarantined block that changed was written after free */
#define CANARY 0xcb
#define CANARY_LEN 8  /* canary bytes checked right after the caller's n bytes */
#define JUNK_MAX ((size_t)4 << 20)

int debug_valgrind;
static uintptr_t canary_key;
static int canary_check; /* the user asked for canaries (under Valgrind only the size word is used:
                          * memcheck reports the overflow itself, and the program must go on) */

BSL_RARE unsigned debug_init(void)
{
    debug_valgrind = RUNNING_ON_VALGRIND ? 1 : 0;
    canary_key = (uintptr_t)os_random64();
    canary_check = (int)opt_canary;
    /* Under Valgrind the block's requested size must be known (malloc_usable_size returns it, as
     * memcheck's own malloc does, and realloc copies only that): the canary layout records it. */
    if (debug_valgrind)
        opt_canary = 1;
    return (opt_junk || opt_canary || opt_quarantine || debug_valgrind) ? HOOK_DEBUG : 0;
}

size_t debug_user_size(size_t n) { return n == 0 && canary_check ? 1 : n; }

size_t debug_size(size_t n)
{
    /* Canary layout in the usable block: [0, n) caller, [n, n + 8) canary bytes, and the last
     * word of the block holds n ^ key. 16 more bytes always leave room for both. */
    if (opt_canary)
        return n > (size_t)-1 - 16 ? (size_t)-1 : n + 16;
    return n;
}

static size_t *size_word(const void *p, size_t usable)
{
    return (size_t *)((char *)p + ((usable - sizeof(size_t)) & ~(sizeof(size_t) - 1)));
}

size_t debug_requested(const void *p, size_t usable, const char *func)
{
    if (!opt_canary)
        return usable;
    size_t n = *size_word(p, usable) ^ canary_key;
    if (n + CANARY_LEN + sizeof(size_t) > usable)
        bsl_misuse(func, "heap overflow: the block's size word after its end was overwritten", p);
    return n;
}

void debug_on_alloc(void *p, size_t n, size_t usable, int zeroed)
{
    debug_vg_quiet(1); /* a reused block is still no-access to memcheck until MALLOCLIKE below */
    if (opt_junk && !zeroed)
        memset(p, JUNK_ALLOC, n < JUNK_MAX ? n : JUNK_MAX);
    if (opt_canary) {
        memset((char *)p + n, CANARY, CANARY_LEN);
        *size_word(p, usable) = n ^ canary_key;
    }
    debug_vg_quiet(0);
    if (debug_valgrind) {
        VALGRIND_MALLOCLIKE_BLOCK(p, n, 0, zeroed);
        /* Bytes past n are not the caller's: touching them is an overflow memcheck reports. */
        VALGRIND_MAKE_MEM_NOACCESS((char *)p + n, usable - n);
    }
}

/* ---- quarantine: a FIFO of freed blocks, released when it holds more than opt_quarantine ---- */
struct qent {
    void *p;
    size_t usable;
};
#define QCAP 65536
static os_lock_t q_lock = OS_LOCK_INIT(LOCK_RANK_QUARANTINE);
static struct qent *q; /* ring of QCAP entries, from metadata pages */
static size_t q_head, q_len, q_bytes;

/* A quarantined block still holds the free pattern, but for its second word (the free key). */
static void check_junk(const struct qent *e, const char *func)
{
    const unsigned char *b = e->p;
    size_t n = e->usable < JUNK_MAX ? e->usable : JUNK_MAX;
    for (size_t i = 0; i < n; i++)
        if (b[i] != JUNK_FREE && (i < sizeof(void *) || i >= 2 * sizeof(void *)))
            bsl_misuse(func, "write after free detected (a quarantined block changed)", e->p);
}

static void release(struct qent *e, void (*really_free)(void *), const char *func)
{
    debug_vg_quiet(1); /* the block is no-access to the program since it was freed */
    check_junk(e, func);
    ((uintptr_t *)e->p)[1] = 0; /* no longer free in the quarantine's sense: the allocator takes it */
    debug_vg_quiet(0);
    really_free(e->p);
}

int debug_on_free(void *p, size_t usable, void (*really_free)(void *), const char *func)
{
    debug_vg_quiet(1); /* the canary and size word are no-access to the program, not to us */
    size_t n = debug_requested(p, usable, func);
    if (canary_check) {
        const unsigned char *c = (const unsigned char *)p + n;
        for (int i = 0; i < CANARY_LEN; i++)
            if (c[i] != CANARY)
                bsl_misuse(func, "heap overflow detected (the canary after the block was overwritten)", p);
    }
    /* junk=1, and every quarantined block: a write after free changes the pattern */
    if (opt_junk || opt_quarantine)
        memset(p, JUNK_FREE, usable < JUNK_MAX ? usable : JUNK_MAX);
    debug_vg_quiet(0);
    if (debug_valgrind)
        VALGRIND_FREELIKE_BLOCK(p, 0);
    if (!opt_quarantine)
        return 0;
    struct qent out[8];
    int nout = 0;
    os_lock(&q_lock);
    if (!q)
        q = meta_alloc(QCAP * sizeof(*q));
    if (!q) {
        os_unlock(&q_lock);
        return 0;
    }
    debug_vg_quiet(1);
    ((uintptr_t *)p)[1] = slab_free_key ^ (uintptr_t)p; /* a second free finds it (debug_quarantined) */
    debug_vg_quiet(0);
    q[(q_head + q_len) % QCAP] = (struct qent){p, usable};
    q_len++;
    q_bytes += usable;
    while ((q_bytes > (size_t)opt_quarantine || q_len == QCAP) && nout < 8) {
        out[nout] = q[q_head];
        q_head = (q_head + 1) % QCAP;
        q_len--;
        q_bytes -= out[nout].usable;
        nout++;
    }
    os_unlock(&q_lock);
    for (int i = 0; i < nout; i++)
        release(&out[i], really_free, func);
    return 1;
}

int debug_quarantined(const void *p)
{
    int found = 0;
    os_lock(&q_lock);
    for (size_t i = 0; i < q_len && !found; i++)
        found = q[(q_head + i) % QCAP].p == p;
    os_unlock(&q_lock);
    return found;
}

/* At exit, a write after free into a block still in the quarantine is found too (the blocks stay
 * where they are: other threads may still run). */
__attribute__((destructor)) static void debug_at_exit(void)
{
    if (!opt_quarantine)
        return;
    os_lock(&q_lock);
    debug_vg_quiet(1);
    for (size_t i = 0; i < q_len; i++)
        check_junk(&q[(q_head + i) % QCAP], "exit()");
    debug_vg_quiet(0);
    os_unlock(&q_lock);
}

void debug_flush_quarantine(void (*really_free)(void *), const char *func)
{
    for (;;) {
        struct qent e;
        os_lock(&q_lock);
        if (!q_len) {
            os_unlock(&q_lock);
            return;
        }
        e = q[q_head];
        q_head = (q_head + 1) % QCAP;
        q_len--;
        q_bytes -= e.usable;
        os_unlock(&q_lock);
        release(&e, really_free, func);
    }
}

void debug_vg_quiet_slow(int on)
{
    if (on)
        VALGRIND_DISABLE_ERROR_REPORTING;
    else
        VALGRIND_ENABLE_ERROR_REPORTING;
}

void debug_fork_locks(os_lock_visit_fn visit) { visit(&q_lock); }
