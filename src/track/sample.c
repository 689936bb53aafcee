/* Sampling: about one allocation per track_sample_bytes bytes is tracked, chosen by an exponential
 * countdown of bytes per thread (the inline fast path in track.h takes each allocation's bytes off
 * it), and each sampled block stands for 1/p blocks of its size (track_weigh). exp and log are
 * written here: the static archive must not need -lm. */
#include "track/track_int.h"

#include <errno.h>

uint64_t track_sample_bytes;
uint64_t track_lean_max;
__thread int64_t track_countdown;
/* Sampling suspended (track_force > 0): every allocation is tracked exactly. The inline lean path
 * held off (track_lean_hold > 0): every allocation goes through track_before_alloc, which samples as
 * usual (a tag's budget is enforced exactly: only the tagged thread's allocations are forced, but
 * the inline path cannot see the tag, so it steps aside for every thread). track_lean_max follows
 * both (0 while either is nonzero): each change stores lean_max from the counts it read, then reads
 * them again and redoes the store if one moved meanwhile, so the last store always matches the
 * final counts (a concurrent change can leave a stale value for the few instructions until it is
 * redone). No lock: the callers hold the soft OOM policy's locks, and fork must not find one of
 * ours held. */
static int track_force, track_lean_hold;

static void lean_max_update(void)
{
    for (;;) {
        int f = __atomic_load_n(&track_force, __ATOMIC_SEQ_CST), h = __atomic_load_n(&track_lean_hold, __ATOMIC_SEQ_CST);
        __atomic_store_n(&track_lean_max, f || h ? 0 : track_sample_bytes, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&track_force, __ATOMIC_SEQ_CST) == f && __atomic_load_n(&track_lean_hold, __ATOMIC_SEQ_CST) == h)
            return;
    }
}

void track_force_add(int delta)
{
    __atomic_add_fetch(&track_force, delta, __ATOMIC_SEQ_CST);
    lean_max_update();
}

void track_lean_hold_add(int delta)
{
    __atomic_add_fetch(&track_lean_hold, delta, __ATOMIC_SEQ_CST);
    lean_max_update();
}

int track_forced(void) { return __atomic_load_n(&track_force, __ATOMIC_ACQUIRE) != 0; }

double track_log(double x)
{
    if (!(x > 0))
        return -1e300;
    union {
        double d;
        uint64_t u;
    } v = {x};
    int e = (int)((v.u >> 52) & 0x7ff) - 1023;
    v.u = (v.u & 0x000fffffffffffffull) | 0x3ff0000000000000ull; /* mantissa in [1, 2) */
    double m = v.d;
    if (m > 1.4142135623730951) {
        m *= 0.5;
        e++;
    }
    /* |s| <= 0.172: ln m = 2 atanh s = 2 s (1 + s2/3 + s2^2/5 + ...). Five terms: the next,
     * s2^5/11 <= 2e-9, is the relative error, far below what a sampling countdown needs; every
     * sample draws one (malloc_free/262144 under leak_sample=512K samples 39 % of its blocks, and
     * the nine-term chain of dependent multiply-adds was a fifth of that benchmark's time). */
    double s = (m - 1) / (m + 1), s2 = s * s;
    double r = 2.0 / 9;
    for (int k = 7; k >= 1; k -= 2)
        r = 2.0 / k + s2 * r;
    return s * r + e * 0.6931471805599453;
}

double track_exp(double x)
{
    if (x < -700)
        return 0;
    if (x > 700)
        x = 700;
    long k = (long)(x * 1.4426950408889634 + (x >= 0 ? 0.5 : -0.5));
    double r = x - (double)k * 0.6931471805599453; /* |r| <= 0.35 */
    double t = 1, sum = 1;
    for (int i = 1; i <= 14; i++) {
        t *= r / i;
        sum += t;
    }
    union {
        double d;
        uint64_t u;
    } v;
    v.u = (uint64_t)(k + 1023) << 52;
    return sum * v.d;
}

void track_weigh(uint64_t size, int exact, double *blocks, double *bytes)
{
    if (!track_sample_bytes || size >= track_sample_bytes || exact) {
        *blocks = 1;
        *bytes = (double)size;
        return;
    }
    /* A block of s bytes was sampled with probability 1 - exp(-s/T): it stands for 1/p blocks. */
    double p = 1 - track_exp(-(double)(size ? size : 1) / (double)track_sample_bytes);
    *blocks = 1 / p;
    *bytes = (double)size / p;
}

static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* -ln(u) for u = n / 2^53, n in [1, 2^53]: what every sample's next countdown needs, without
 * track_log's division and chain of multiply-adds (about 30 ns a sample, a fifth of
 * malloc_free/32768 under leak_sample=512K). n = 2^e m with m in [1, 2); m's top six fraction
 * bits pick c = 1 + i/64 from a table of ln c and 1/c, and ln m = ln c + ln(1 + x) with
 * x = m/c - 1 in [0, 1/64): four terms of ln(1 + x), error under x^5/5 < 2e-10. */
static double lnc_tab[64], invc_tab[64];

void track_sample_init(void)
{
    for (int i = 0; i < 64; i++) {
        double c = 1 + i / 64.0;
        lnc_tab[i] = track_log(c);
        invc_tab[i] = 1 / c;
    }
}

double track_neg_log_u53(uint64_t n)
{
    int e = 63 - __builtin_clzll(n);
    uint64_t frac = (n << (63 - e)) << 1; /* the 63 bits after the leading one, left-aligned */
    unsigned i = (unsigned)(frac >> 58);
    union {
        uint64_t u;
        double d;
    } m = {0x3ff0000000000000ull | frac >> 12};
    double x = m.d * invc_tab[i] - 1;
    double ln_m = lnc_tab[i] + x * (1 - x * (0.5 - x * (1.0 / 3 - x * 0.25)));
    return (53 - e) * 0.6931471805599453 - ln_m;
}

/* Bytes until the next sample: exponential with mean track_sample_bytes (memoryless, so every byte
 * has the same chance of being the sampled one). */
static int64_t draw_countdown(struct track_thread *t)
{
    double v = track_neg_log_u53((rng_next(&t->rng) >> 11) + 1) * (double)track_sample_bytes; /* u in (0, 1] */
    if (v < 1)
        v = 1;
    if (v > 0x1p62)
        v = 0x1p62;
    return (int64_t)v + 1;
}

__attribute__((noinline)) int track_sample_slow(size_t size)
{
    if (track_tstate == 2)
        return 0;
    struct track_thread *t = track_self;
    if (!t) {
        int saved = errno;
        track_guard = 1;
        t = track_thread_setup();
        track_guard = 0;
        errno = saved;
        if (!t)
            return 0;
        track_countdown = draw_countdown(t) - (int64_t)size;
        if (track_countdown > 0)
            return 0;
    }
    track_countdown = draw_countdown(t);
    return 1;
}
