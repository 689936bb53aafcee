/* Minimal assertions for the unit tests: print the failing expression and exit(1). */
#ifndef BSL_UNIT_H
#define BSL_UNIT_H
#include <stdio.h>
#include <stdlib.h>

static int unit_checks;
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        unit_checks++;                                                                             \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
#define UNIT_DONE(name) printf("%s: %d checks passed\n", name, unit_checks)

/* xorshift64*: deterministic pseudo-random numbers for repeatable sequences. */
static unsigned long long unit_rng = 0x9E3779B97F4A7C15ull;
static inline unsigned long long rnd(void)
{
    unit_rng ^= unit_rng >> 12;
    unit_rng ^= unit_rng << 25;
    unit_rng ^= unit_rng >> 27;
    return unit_rng * 2685821657736338717ull;
}
#endif
