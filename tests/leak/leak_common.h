/* Helpers for the leak tracker's test programs (tests/leak). Every allocation site the tests check
 * is in a function named lk_* (definitely or indirectly lost) or keep_* (still reachable), so the
 * driver can name a record by the first such function on its stack, for buddyslab's report and for
 * Valgrind's alike. */
#ifndef LEAK_COMMON_H
#define LEAK_COMMON_H

#include <stdint.h>
#include <string.h>

#define NOINLINE __attribute__((noinline, noipa))

/* Dead stack frames below the caller hold stale copies of pointers the program dropped; a
 * conservative scan (ours or Valgrind's) of the frames later built over them could find them.
 * Overwrite them before exit so that both tools see the same thing. */
static NOINLINE void scrub_stack(void)
{
    volatile char buf[64 << 10];
    memset((char *)buf, 0, sizeof(buf));
    __asm__ volatile("" : : "r"(buf) : "memory");
}

/* Keep the compiler from proving a block unused. (NULL: a refused allocation, for tests/oom.) */
static inline void touch(void *p, size_t n)
{
    if (p)
        memset(p, 0x5a, n);
    __asm__ volatile("" : : "r"(p) : "memory");
}

#endif
