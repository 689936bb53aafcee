/* bench.h: the C face of the buddyslab benchmark harness.
 *
 * Benchmark cases are plain C files under bench/cases/ that use nothing but the standard
 * malloc API plus this header. Google Benchmark drives them through a thin C++ shim
 * (bench_main.cc), so a case looks like this:
 *
 *     static void bm_pairs(bench_state *st)
 *     {
 *         size_t size = (size_t)bench_range(st, 0);
 *         while (bench_keep_running(st)) {
 *             void *p = malloc(size);
 *             bench_escape(p);
 *             free(p);
 *         }
 *         bench_set_items(st, bench_iterations(st));
 *     }
 *     static void def_pairs(bench_def *d)
 *     {
 *         bench_def_arg_names(d, "size", NULL);
 *         bench_def_arg(d, 16);
 *         bench_def_arg(d, 64);
 *     }
 *     BENCH_CASE("pairs", bm_pairs, def_pairs);
 *
 * Conventions shared by every case (the driver bench/run relies on them):
 *   - every case calls bench_set_items(): one "item" is one allocation's life (its malloc and
 *     its free, or one realloc step); the driver reports ns per item;
 *   - wall-clock time is measured for every case (UseRealTime), so multi-threaded cases report
 *     aggregate throughput;
 *   - the shim adds a "maxrss_kb" counter (getrusage ru_maxrss of the process) to every run;
 *   - counters named *_kb are memory readings (the driver lists them in the memory table).
 *
 * Registration: BENCH_CASE() plants a constructor that appends the case to a table inside the
 * shim; main() registers the table with Google Benchmark in (file name, line) order, so the
 * numeric prefixes of bench/cases/NN_*.c set the order of the report. */
#ifndef BSL_BENCH_H
#define BSL_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One running benchmark (wraps benchmark::State). Valid only inside the case function. */
typedef struct bench_state bench_state;
/* The definition of a case while it is being registered (wraps benchmark::internal::Benchmark). */
typedef struct bench_def bench_def;

typedef void (*bench_fn)(bench_state *st);
typedef void (*bench_def_fn)(bench_def *d);

/* ---- the benchmark loop ------------------------------------------------------------------ */

/* True while Google Benchmark wants another iteration. Call it until it returns false. In a
 * multi-threaded case all threads meet at a barrier on the first and on the last call, so state
 * that thread 0 sets up before its loop is visible to every thread inside the loop, and thread 0
 * may tear it down after its loop. */
bool bench_keep_running(bench_state *st);
/* Iterations completed so far by this thread (after the loop: all of them). */
int64_t bench_iterations(const bench_state *st);

/* Stop / restart the clock of this thread (both cost around a microsecond: use them around
 * large pieces of work only). */
void bench_pause(bench_state *st);
void bench_resume(bench_state *st);

/* The case's arguments as given by bench_def_arg()/bench_def_args(). */
int64_t bench_range(const bench_state *st, size_t index);
/* Thread count of this run and this thread's index in [0, threads). */
int bench_threads(const bench_state *st);
int bench_thread_index(const bench_state *st);

/* ---- results -------------------------------------------------------------------------------- */

/* Totals for this thread (summed over threads); reported as rates per second. */
void bench_set_items(bench_state *st, int64_t items);
void bench_set_bytes(bench_state *st, int64_t bytes);

enum bench_counter_kind {
    BENCH_COUNTER_VALUE = 0,   /* reported as is (summed over threads: set it in one thread) */
    BENCH_COUNTER_RATE = 1,    /* divided by the run's duration */
    BENCH_COUNTER_PER_ITER = 2 /* divided by the iteration count */
};
/* A custom counter, e.g. bench_counter(st, "rss_after_free_kb", kb, BENCH_COUNTER_VALUE). */
void bench_counter(bench_state *st, const char *name, double value, enum bench_counter_kind kind);
/* A short text shown next to the result. */
void bench_set_label(bench_state *st, const char *label);
/* Mark this run failed (the loop ends at the next bench_keep_running(); the binary exits 1). */
void bench_fail(bench_state *st, const char *message);

/* C++'s operator new(n) and sized operator delete(p, n) (bench_main.cc): the calls a C++ program
 * compiled with sized deallocation (C++14's default) makes. */
void *bench_new(size_t n);
void bench_delete_sized(void *p, size_t n);

/* ---- definitions (in the bench_def_fn given to BENCH_CASE) --------------------------------- */

void bench_def_arg(bench_def *d, int64_t a);               /* one instance with range(0)=a */
void bench_def_args(bench_def *d, int64_t a, int64_t b);   /* one instance with two arguments */
void bench_def_arg_names(bench_def *d, const char *a, const char *b); /* b may be NULL */
void bench_def_threads(bench_def *d, int threads);         /* one instance per call */
void bench_def_iterations(bench_def *d, int64_t n);        /* fixed count, ignores min_time */
enum bench_unit { BENCH_NS, BENCH_US, BENCH_MS, BENCH_S };
void bench_def_unit(bench_def *d, enum bench_unit unit);

/* ---- registration ------------------------------------------------------------------------- */

void bench_register(const char *name, bench_fn fn, bench_def_fn def, const char *file, int line);

#define BENCH_CAT_(a, b) a##b
#define BENCH_CAT(a, b) BENCH_CAT_(a, b)
/* Register case `name` (a string; may contain no '/'); `def` may be NULL. */
#define BENCH_CASE(name, fn, def)                                                              \
    __attribute__((constructor)) static void BENCH_CAT(bench_register_, __LINE__)(void)        \
    {                                                                                          \
        bench_register((name), (fn), (def), __FILE__, __LINE__);                               \
    }

/* ---- helpers for cases ---------------------------------------------------------------------- */

/* Keep the compiler from dropping an allocation it can prove unused. */
static inline void bench_escape(void *p)
{
    __asm__ volatile("" : : "g"(p) : "memory");
}

#ifdef __cplusplus
}
#endif
#endif
