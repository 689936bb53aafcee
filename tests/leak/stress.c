/* Reports while other threads allocate, free and realloc as fast as they can, then exit() while
 * they still run ("exit"), or join them first: no deadlock, no crash. The program prints how many
 * of its five reports found its one leak: a thread caught running has its whole stack scanned, and
 * a stale copy of a recycled address there can hide a leak (conservative scans err that way). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "leak_common.h"

#define NTHREADS 3

static volatile int stop;

static void *churn(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    void *slots[64] = {0};
    while (!stop) {
        seed = seed * 1103515245u + 12345u;
        unsigned i = (seed >> 8) % 64;
        size_t n = 16 + (seed >> 16) % 3000;
        if ((seed >> 4) & 1)
            slots[i] = realloc(slots[i], n);
        else {
            free(slots[i]);
            slots[i] = malloc(n);
        }
        if (slots[i])
            touch(slots[i], 16);
    }
    for (int i = 0; i < 64; i++)
        free(slots[i]);
    return NULL;
}

NOINLINE void lk_stress(void) { touch(malloc(777), 777); }

int main(int argc, char **argv)
{
    int (*report)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT, "bsl_leak_report");
    if (!report || argc < 2)
        return 2;
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 1));
    lk_stress();
    scrub_stack();
    int bad = 0, found = 0;
    for (int r = 0; r < 5; r++) {
        int n = report(argv[1]);
        bad += n < 0;
        found += n >= 1;
    }
    printf("stress: %d failed reports, %d of 5 found the leak\n", bad, found);
    fflush(stdout);
    if (argc > 2) /* exit while the threads run */
        exit(bad != 0);
    stop = 1;
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    return bad != 0;
}
