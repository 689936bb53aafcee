/* The thread registry: every thread that made a tracked allocation, with its stack bounds (the
 * leak scan's roots, the unwinder's bounds), kept after it exits (its stack may be cached by
 * glibc and still hold pointers). Per-thread state (struct track_thread) is set up at a thread's
 * first tracked call and freed by a pthread key's destructor.
 *
 * Locking: treg_lock guards the registry list and each entry's tid. fork(): taken in the inner
 * phase after the block map shards (track_fork_prepare).
 *
 * A fork child has one thread, the one that forked, but its registry holds the parent's tids: it
 * is fixed only when something reads or changes the registry in the child (treg_fix_locked), not
 * in the fork handler, which would copy the page of every entry in every child (a shell's
 * subshells mostly exit without tracking anything). track_proc (track.h) says whether it is stale
 * and which entry is the forking thread's. */
#include "track/track_int.h"

#include <errno.h>
#include <pthread.h>

__thread struct track_thread *track_self;
__thread int track_tstate;
static pthread_key_t track_key; /* its destructor notes thread exit */

struct track_treg {
    struct track_treg *next;
    struct track_thread_info info;
};
static struct track_treg *treg_head;
static os_lock_t treg_lock = OS_LOCK_INIT(LOCK_RANK_LEAK_THREADS);
#define TRACK_MAX_DEAD 256 /* exited threads remembered (their stacks may be cached by glibc) */

/* In a fork child: every thread but the one that forked is gone; that one's tid is the child's pid. */
static void treg_fix_locked(void)
{
    if (likely(!track_proc.treg_stale))
        return;
    for (struct track_treg *x = treg_head; x; x = x->next)
        x->info.tid = 0;
    if (track_proc.treg_forker)
        ((struct track_treg *)track_proc.treg_forker)->info.tid = os_getpid();
    track_proc.treg_stale = 0;
}

static void treg_add(struct track_treg *r)
{
    os_lock(&treg_lock);
    treg_fix_locked();
    /* A new thread on a recycled stack replaces the dead thread that had it; forget the oldest
     * dead threads beyond TRACK_MAX_DEAD. */
    unsigned dead = 0;
    for (struct track_treg **pp = &treg_head; *pp;) {
        struct track_treg *x = *pp;
        int overlap = x->info.lo < r->info.hi && r->info.lo < x->info.hi;
        if (x->info.tid == 0 && (overlap || ++dead > TRACK_MAX_DEAD)) {
            *pp = x->next;
            track_free(x);
            continue;
        }
        pp = &x->next;
    }
    r->next = treg_head;
    treg_head = r;
    os_unlock(&treg_lock);
}

size_t track_threads_snapshot(struct track_thread_info *out, size_t max)
{
    size_t n = 0;
    os_lock(&treg_lock);
    treg_fix_locked();
    for (struct track_treg *x = treg_head; x && n < max; x = x->next)
        out[n++] = x->info;
    os_unlock(&treg_lock);
    return n;
}

static void thread_exit(void *arg)
{
    struct track_thread *t = arg;
    int g = track_guard;
    track_guard = 1;
    if (t && t == track_self) {
        os_lock(&treg_lock);
        treg_fix_locked();
        t->reg->info.tid = 0;
        os_unlock(&treg_lock);
        track_self = NULL;
        track_tstate = 2;
        track_free(t);
    }
    track_guard = g;
}

struct track_thread *track_thread_setup(void)
{
    struct track_thread *t = track_alloc(sizeof(*t));
    struct track_treg *r = track_alloc(sizeof(*r));
    if (!t || !r) {
        track_free(t);
        track_free(r);
        track_tstate = 2;
        return NULL;
    }
    pthread_attr_t a;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        void *addr;
        size_t sz;
        if (pthread_attr_getstack(&a, &addr, &sz) == 0) {
            t->lo = (uintptr_t)addr;
            t->hi = (uintptr_t)addr + sz;
        }
        pthread_attr_destroy(&a);
    }
    t->errno_p = &errno;
    long tid = os_gettid();
    t->rng = os_random64() ^ ((uint64_t)tid << 32) ^ (uintptr_t)t;
    t->reg = r;
    r->info.tid = tid;
    r->info.tp = (uintptr_t)pthread_self();
    r->info.lo = t->lo;
    r->info.hi = t->hi;
    treg_add(r);
    pthread_setspecific(track_key, t);
    track_self = t;
    track_tstate = 1;
    return t;
}


int track_threads_init(void) { return pthread_key_create(&track_key, thread_exit) == 0 ? 0 : -1; }

void track_threads_fork_prepare(int careful) { os_fork_lock(&treg_lock, careful); }

void track_threads_fork_parent(void) { os_fork_unlock_parent(&treg_lock); }

/* Only the forking thread survives: the others' stacks are still mapped, as dead threads'. The
 * registry is fixed when next used (see the top). locked: track_threads_fork_prepare ran. */
BSL_RARE void track_threads_fork_child(int locked) /* with the rest of a fork child's path: see malloc/exit.c */
{
    if (locked)
        os_fork_reset_child(&treg_lock);
    void *forker = track_self ? track_self->reg : NULL;
    if (track_proc.treg_forker != forker)
        track_proc.treg_forker = forker;
    track_proc.treg_stale = 1; /* the child's one page of track_proc */
}
