/* A shared library loaded with dlopen by dlprog: one leak, one block kept in its own .bss. */
#include <stdlib.h>

#include "leak_common.h"

static void *volatile lib_kept;

NOINLINE void *lk_lib_leak(size_t n)
{
    void *p = malloc(n);
    touch(p, n);
    return p;
}

NOINLINE void keep_lib(void)
{
    lib_kept = malloc(4321);
    touch(lib_kept, 4321);
}
