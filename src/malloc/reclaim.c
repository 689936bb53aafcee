/* Reclaim (reclaim.h): one sequence for malloc_trim, bsl_purge and the soft OOM policy. */
#include "malloc/reclaim.h"

#include "malloc/debug.h"
#include "malloc/internal.h"

size_t bsl_reclaim(void (*quarantine_free)(void *), const char *func)
{
    if (quarantine_free && (__atomic_load_n(&bsl_hooks_on, __ATOMIC_ACQUIRE) & HOOK_DEBUG))
        debug_flush_quarantine(quarantine_free, func); /* checks every block it releases */
    huge_tick(os_now_ms(), 0); /* cached huge mappings go back to the kernel */
    pcp_flush_all();
    slab_flush_transfer();
    slab_release_spares();
    size_t purged = buddy_purge(0);
    bsl_assert(2, buddy_check() == 0 && slab_check() == 0);
    return purged;
}
