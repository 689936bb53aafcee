/* The tracker's own log and exp (src/track/sample.c: the static archive must not need -lm) against
 * libm's. track_log draws every sampling countdown (-log(u) * leak_sample bytes), track_exp weighs
 * every sampled block (1 / (1 - exp(-size / leak_sample))): both must stay accurate when they are
 * made cheaper (the countdown's log went from nine terms of its series to five). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "track/track.h"

static int failed;

static void check_log(double x, double tol)
{
    double got = track_log(x), want = log(x);
    double err = fabs(got - want) / (fabs(want) > 1e-300 ? fabs(want) : 1);
    if (!(err <= tol) && failed++ < 10)
        printf("FAIL: track_log(%.17g) = %.17g, log = %.17g (relative error %.3g > %.3g)\n", x, got, want, err, tol);
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
    for (int i = 0; i < 200000; i++) { /* the countdown's argument: (0, 1], 53-bit steps */
        s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
        double u = (double)(((s * 0x2545F4914F6CDD1Dull) >> 11) + 1) * 0x1p-53;
        check_log(u, 1e-8);
    }
    for (double x = 1e-300; x < 1e300; x *= 1.37) /* every binade */
        check_log(x, 1e-8);
    check_log(1.0, 0); /* exactly 0 */
    for (double x = -60; x <= 0; x += 0.0137) /* -size/leak_sample: a block up to 60 intervals big */
        check_exp(x, 1e-12);
    if (failed) {
        printf("%d values out of tolerance\n", failed);
        return 1;
    }
    printf("track_log: relative error <= 1e-8 on 200000 uniform draws and every binade; track_exp <= 1e-12\n");
    return 0;
}
