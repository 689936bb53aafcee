/* _exit() and _Exit(): the leak report when the program leaves without running exit handlers
 * (src/leakcheck/fatal.c says in which process), then exit_group as glibc's do. Only calls the
 * program makes reach these (glibc's exit() ends in its own internal _exit, after our destructor
 * has written the report and stopped tracking; a vfork child's _exit finds another pid and writes
 * nothing). In a static link this object replaces libc's _exit.o whole (both names defined here). */
#include "leakcheck/leakcheck.h"
#include "malloc/debug.h"
#include "malloc/hooks.h"
#include "malloc/internal.h"

/* BSL_RARE: .text.unlikely, at the head of the text with the rest of what a forked child runs of
 * this library (fork.c): in a child, every 64 KiB window of text it executes is one more fault. */
BSL_EXPORT BSL_RARE __attribute__((noreturn)) void _exit(int status)
{
    if (__atomic_load_n(&bsl_hooks_on, __ATOMIC_ACQUIRE) & HOOK_LEAK)
        leak_at_fast_exit();
    os_exit_group(status);
}

BSL_EXPORT BSL_RARE __attribute__((noreturn)) void _Exit(int status) { _exit(status); }
