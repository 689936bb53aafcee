/* The cost, for everyone else, of a budget being enforced exactly (bench/oom_overhead.py --enforce).
 *
 * usage: bsl-oom-enforce MODE PAIRS
 *   MODE 0: no budget (no tracking at all)
 *   MODE 1: a tag budget ("tag:cache", 1 MiB) filled past its limit under oom_action=fail
 *   MODE 2: a pattern budget ("cache_fill", 1 MiB) filled past its limit under oom_action=fail
 * Then PAIRS untagged malloc(64)/free pairs elsewhere in the program are timed. At its limit, an
 * account is enforced with every one of its allocations tracked: for a tag only the allocations
 * made under the tag pay for it, for a pattern every allocation does (the site is known only from
 * the stack). Prints "mode M refused R ns_per_pair X". Linked with libbuddyslab (the bsl_* API). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "buddyslab.h"

/* The cache's allocation site: a frame of its own (no tail call) for the pattern to match. */
__attribute__((noinline, optimize("no-optimize-sibling-calls"))) void *cache_fill(size_t n)
{
    void *p = malloc(n);
    __asm__ volatile("" : : "r"(p) : "memory");
    return p;
}

int main(int argc, char **argv)
{
    int mode = argc > 1 ? atoi(argv[1]) : 0;
    long pairs = argc > 2 ? atol(argv[2]) : 5000000;
    if (mode == 1)
        bsl_budget_set("tag:cache", 1 << 20);
    if (mode == 2)
        bsl_budget_set("cache_fill", 1 << 20);
    bsl_option_set("oom_action", "fail");
    bsl_option_set("oom_report", "/dev/null");
    int refused = 0;
    for (int i = 0; i < 4096; i++) { /* 4 MiB asked, 1 MiB allowed */
        if (mode == 1)
            bsl_tag_push("cache");
        void *p = cache_fill(1024);
        if (mode == 1)
            bsl_tag_pop();
        refused += !p;
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < pairs; i++) {
        void *p = malloc(64);
        *(volatile char *)p = 1;
        free(p);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / (double)pairs;
    printf("mode %d refused %d ns_per_pair %.2f\n", mode, refused, ns);
    return 0;
}
