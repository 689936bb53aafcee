/* Debugging and hardening features that cost nothing unless enabled (hooks layer):
 * junk filling, canaries after blocks, a quarantine that delays reuse, and describing blocks to
 * Valgrind with client requests. Guard pages live in the large-block path of malloc.c. */
#ifndef BSL_MALLOC_DEBUG_H
#define BSL_MALLOC_DEBUG_H

#include <stddef.h>

#include "os/os.h"

#define HOOK_LEAK 1u  /* site tracking (src/track, through hooks.h) */
#define HOOK_DEBUG 2u /* this file: junk, canary, quarantine, Valgrind */
#define HOOK_INIT 4u  /* not initialised yet: the first call takes the hooked path, which initialises
                       * and then sees the real hooks, so even the very first block is tracked */
#define HOOK_FULL 8u  /* with HOOK_LEAK: every block is tracked (leak=1), so every free asks the
                       * tracker; HOOK_LEAK alone is sampled tracking, whose frees of untracked
                       * blocks take the untracked path (frames holding tracked blocks: PG_TRACKED) */

/* Called once at init (inside the init lock: must not allocate). Returns HOOK_DEBUG when a feature
 * is on (options junk, canary, quarantine, or running under Valgrind), else 0. */
BSL_HIDDEN unsigned debug_init(void);
BSL_HIDDEN extern int debug_valgrind; /* running under Valgrind: describe blocks to memcheck */
/* The size to give the caller who asked for n: with canaries, malloc(0) is malloc(1), so that the
 * block has a usable size above 0 like every other allocator's. */
BSL_HIDDEN size_t debug_user_size(size_t n);
/* Bytes to ask the allocator for when the caller asked for n (room for the canary). */
BSL_HIDDEN size_t debug_size(size_t n);
/* A block p of `usable` bytes now belongs to the caller, who asked for n bytes. */
BSL_HIDDEN void debug_on_alloc(void *p, size_t n, size_t usable, int zeroed);
/* The caller (func, for messages) gives p back, a live block (the caller checked): verify its
 * canary, junk it, tell Valgrind. Returns 1 when the block entered the quarantine (the caller must
 * not free it now), 0 when the caller frees it. A quarantined block is filled with the free pattern
 * (checked when it leaves, on malloc_trim / bsl_purge and at exit) and carries the free key in its
 * second word, so that a second free finds it (debug_quarantined). */
BSL_HIDDEN int debug_on_free(void *p, size_t usable, void (*really_free)(void *), const char *func);
/* Whether p waits in the quarantine (a scan of it: call only when p carries the free key). */
BSL_HIDDEN int debug_quarantined(const void *p);
/* The size the caller asked for (the canary records it), or `usable` without canaries. */
BSL_HIDDEN size_t debug_requested(const void *p, size_t usable, const char *func);
/* Around the allocator's own work while Valgrind watches: its accesses to free blocks are legal. */
BSL_HIDDEN void debug_vg_quiet_slow(int on);
static inline void debug_vg_quiet(int on) /* inline: the hooked paths call it on every block */
{
    if (__builtin_expect(debug_valgrind, 0))
        debug_vg_quiet_slow(on);
}
/* Empty the quarantine, checking every block (malloc_trim and bsl_purge: func). At exit the
 * quarantine is checked without being emptied (a destructor in debug.c). */
BSL_HIDDEN void debug_flush_quarantine(void (*really_free)(void *), const char *func);
/* fork(): the quarantine's lock (taken before the allocator's: released blocks are freed outside it,
 * but its ring comes from meta_alloc under it). */
BSL_HIDDEN void debug_fork_locks(os_lock_visit_fn visit);

#endif
