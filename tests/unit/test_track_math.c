/* The tracker's own log and exp (src/track/sample.c: the static archive must not need -lm) against
 * libm's. track_log draws every sampling countdown (-log(u) * leak_sample bytes), track_exp weighs
 * every sampled block (1 / (1 - exp(-size / leak_sample))): both must stay accurate when they are
 * made cheaper (the log went from nine terms of its series to five; each sample's countdown now
 * comes from track_neg_log_u53's table and four terms of ln(1 + x)). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "track/track_int.h"

static int failed;

static void check_log(double x, double tol)
{
    double got = track_log(x), want = log(x);
    double err = fabs(got - want) / (fabs(want) > 1e-300 ? fabs(want) : 1);
    if (!(err <= tol) && failed++ < 10)
        printf("FAIL: track_log(%.17g) = %.17g, log = %.17g (relative error %.3g > %.3g)\n", x, got, want, err, tol);
}

static void check_neg_log(uint64_t n, double tol)
{
    double got = track_neg_log_u53(n), want = -log((double)n * 0x1p-53);
    /* relative, or absolute under 0.01 (u near 1: 53 ln 2 - ln n cancels; a countdown of
     * 1e-10 sample intervals more or less is nothing) */
    double err = fabs(got - want) / (want > 0.01 ? want : 0.01);
    if (n == (1ull << 53))
        err = fabs(got); /* u = 1: exactly 0 */
    if (!(err <= tol) && failed++ < 10)
        printf("FAIL: track_neg_log_u53(%llu) = %.17g, -log(n/2^53) = %.17g (relative error %.3g > %.3g)\n",
               (unsigned long long)n, got, want, err, tol);
}

static void check_exp(double x, double tol)
{
    double got = track_exp(x), want = exp(x);
    double err = fabs(got - want) / want;
    if (!(err <= tol) && failed++ < 10)
        printf("FAIL: track_exp(%.17g) = %.17g, exp = %.17g (relative error %.3g > %.3g)\n", x, got, want, err, tol);
}

int main(void)
{
    uint64_t s = 0x9E3779B97F4A7C15ull;
    track_sample_init();
    for (int i = 0; i < 200000; i++) { /* the countdown's argument: (0, 1], 53-bit steps */
        s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
        uint64_t n = ((s * 0x2545F4914F6CDD1Dull) >> 11) + 1;
        check_log((double)n * 0x1p-53, 1e-8);
        check_neg_log(n, 1e-8);
        check_neg_log(n >> (i % 53) | 1, 1e-8); /* small n too: the tail of the exponential */
    }
    check_neg_log(1ull << 53, 0);
    check_neg_log(1, 1e-12);
    for (double x = 1e-300; x < 1e300; x *= 1.37) /* every binade */
        check_log(x, 1e-8);
    check_log(1.0, 0); /* exactly 0 */
    for (double x = -60; x <= 0; x += 0.0137) /* -size/leak_sample: a block up to 60 intervals big */
        check_exp(x, 1e-12);
    if (failed) {
        printf("%d values out of tolerance\n", failed);
        return 1;
    }
    printf("track_log and track_neg_log_u53: relative error <= 1e-8 on 200000 countdown draws (and every "
           "binade for track_log); track_exp <= 1e-12\n");
    return 0;
}
