/* bsl_leak_report() in the middle of a run (found with dlsym: the program does not link
 * buddyslab), twice; a block freed between the two reports disappears from the second. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "leak_common.h"

void *volatile g_later_freed;

NOINLINE void lk_early(void) { touch(malloc(500), 500); }

NOINLINE void keep_late(void)
{
    g_later_freed = malloc(600);
    touch(g_later_freed, 600);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    int (*report)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT, "bsl_leak_report");
    int (*tracking)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "bsl_leak_tracking");
    if (!report || !tracking) {
        fprintf(stderr, "bsl_leak_report not found: run with LD_PRELOAD=libbuddyslab.so\n");
        return 2;
    }
    lk_early();
    keep_late();
    g_later_freed = (char *)g_later_freed + 0; /* still reachable */
    scrub_stack();
    int n1 = report(argv[1]);
    free(g_later_freed);
    g_later_freed = NULL;
    scrub_stack();
    int n2 = report(argv[2]);
    printf("ondemand: tracking=%d first=%d second=%d\n", tracking(), n1, n2);
    return 0;
}
