/* Loads libleaky.so (argv[1]) with dlopen and leaks through it. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "leak_common.h"

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    void *(*leak)(size_t) = (void *(*)(size_t))dlsym(h, "lk_lib_leak");
    void (*keep)(void) = (void (*)(void))dlsym(h, "keep_lib");
    if (!leak || !keep)
        return 2;
    void *p = leak(1234);
    p = NULL;
    keep();
    scrub_stack();
    printf("dlprog: done%s\n", p ? "?" : "");
    return 0;
}
