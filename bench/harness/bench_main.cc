// bench_main.cc: the thin C++ shim between the C cases (bench/cases/*.c) and Google Benchmark.
//
// The C API in bench.h maps one to one onto benchmark::State / benchmark::internal::Benchmark.
// BENCH_CASE() constructors fill `g_cases`; main() sorts them by (file, line), registers each
// with benchmark::RegisterBenchmark, and runs Google Benchmark as usual, so every
// --benchmark_* flag works. Extras:
//   - every case runs with UseRealTime() (wall clock; aggregate throughput for threaded cases);
//   - a "maxrss_kb" counter (getrusage ru_maxrss) is added to every run;
//   - the JSON context carries "malloc_impl": the object that actually provides malloc (so a
//     driver can tell whether LD_PRELOAD took effect) and "bench_quick";
//   - the process exits 1 when any case called bench_fail(), so a smoke run can trust $?;
//   - BENCH_EXPECT_MALLOC=substring makes it exit 1 unless malloc comes from a matching object.
#include <benchmark/benchmark.h>

#include <dlfcn.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "bench.h"
#include "util.h"

namespace {

struct CaseEntry {
    const char *name;
    bench_fn fn;
    bench_def_fn def;
    const char *file;
    int line;
};

// Filled by constructors before main(): a fixed table, no allocation at that point.
constexpr int kMaxCases = 256;
CaseEntry g_cases[kMaxCases];
int g_ncases = 0;
std::atomic<int> g_failures{0};

inline benchmark::State *S(bench_state *st) { return reinterpret_cast<benchmark::State *>(st); }
inline const benchmark::State *S(const bench_state *st)
{
    return reinterpret_cast<const benchmark::State *>(st);
}
inline benchmark::internal::Benchmark *B(bench_def *d)
{
    return reinterpret_cast<benchmark::internal::Benchmark *>(d);
}

const char *base_name(const char *path)
{
    const char *s = std::strrchr(path, '/');
    return s ? s + 1 : path;
}

void run_case(benchmark::State &state, bench_fn fn)
{
    fn(reinterpret_cast<bench_state *>(&state));
    if (state.thread_index() == 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        state.counters["maxrss_kb"] = benchmark::Counter(static_cast<double>(ru.ru_maxrss));
    }
}

std::string malloc_provider()
{
    void *sym = dlsym(RTLD_DEFAULT, "malloc");
    Dl_info info;
    if (sym && dladdr(sym, &info) && info.dli_fname)
        return info.dli_fname;
    return "unknown";
}

}  // namespace

extern "C" {

void bench_register(const char *name, bench_fn fn, bench_def_fn def, const char *file, int line)
{
    if (g_ncases >= kMaxCases) {
        std::fprintf(stderr, "bench: too many cases (max %d)\n", kMaxCases);
        std::abort();
    }
    g_cases[g_ncases++] = CaseEntry{name, fn, def, file, line};
}

bool bench_keep_running(bench_state *st) { return S(st)->KeepRunning(); }
int64_t bench_iterations(const bench_state *st) { return S(st)->iterations(); }
// Google Benchmark aborts on Pause/ResumeTiming after SkipWithError: make them no-ops then, so a
// case may call bench_fail() anywhere.
void bench_pause(bench_state *st)
{
    if (!S(st)->error_occurred())
        S(st)->PauseTiming();
}
void bench_resume(bench_state *st)
{
    if (!S(st)->error_occurred())
        S(st)->ResumeTiming();
}
int64_t bench_range(const bench_state *st, size_t index) { return S(st)->range(index); }
int bench_threads(const bench_state *st) { return S(st)->threads(); }
int bench_thread_index(const bench_state *st) { return S(st)->thread_index(); }
void bench_set_items(bench_state *st, int64_t items) { S(st)->SetItemsProcessed(items); }
void bench_set_bytes(bench_state *st, int64_t bytes) { S(st)->SetBytesProcessed(bytes); }

void bench_counter(bench_state *st, const char *name, double value, enum bench_counter_kind kind)
{
    benchmark::Counter::Flags f = benchmark::Counter::kDefaults;
    if (kind == BENCH_COUNTER_RATE)
        f = benchmark::Counter::kIsRate;
    else if (kind == BENCH_COUNTER_PER_ITER)
        f = benchmark::Counter::kAvgIterations;
    S(st)->counters[name] = benchmark::Counter(value, f);
}

void bench_set_label(bench_state *st, const char *label) { S(st)->SetLabel(label); }

void bench_fail(bench_state *st, const char *message)
{
    g_failures.fetch_add(1);
    S(st)->SkipWithError(message);
}

void bench_def_arg(bench_def *d, int64_t a) { B(d)->Arg(a); }
void bench_def_args(bench_def *d, int64_t a, int64_t b) { B(d)->Args({a, b}); }
void bench_def_arg_names(bench_def *d, const char *a, const char *b)
{
    if (b)
        B(d)->ArgNames({a, b});
    else
        B(d)->ArgName(a);
}
void bench_def_threads(bench_def *d, int threads) { B(d)->Threads(threads); }
void bench_def_iterations(bench_def *d, int64_t n) { B(d)->Iterations(n); }
void bench_def_unit(bench_def *d, enum bench_unit unit)
{
    static const benchmark::TimeUnit map[] = {benchmark::kNanosecond, benchmark::kMicrosecond,
                                              benchmark::kMillisecond, benchmark::kSecond};
    B(d)->Unit(map[unit]);
}

// C++ allocation for the cases, which are C: what `new char[n]` and a sized `delete` reach. The
// allocator's own operators when it replaces them (jemalloc, tcmalloc, mimalloc, buddyslab),
// libstdc++'s (malloc and free) under glibc. noinline: the compiler must not pair them up.
__attribute__((noinline)) void *bench_new(size_t n) { return ::operator new(n); }
__attribute__((noinline)) void bench_delete_sized(void *p, size_t n) { ::operator delete(p, n); }

}  // extern "C"

int main(int argc, char **argv)
{
    std::stable_sort(g_cases, g_cases + g_ncases, [](const CaseEntry &a, const CaseEntry &b) {
        int c = std::strcmp(base_name(a.file), base_name(b.file));
        return c != 0 ? c < 0 : a.line < b.line;
    });
    for (int i = 0; i < g_ncases; i++) {
        const CaseEntry &c = g_cases[i];
        bench_fn fn = c.fn;
        benchmark::internal::Benchmark *b = benchmark::RegisterBenchmark(
            c.name, [fn](benchmark::State &state) { run_case(state, fn); });
        b->UseRealTime();
        if (c.def)
            c.def(reinterpret_cast<bench_def *>(b));
    }

    const std::string impl = malloc_provider();
    // BENCH_EXPECT_MALLOC=substring: refuse to run unless malloc comes from a matching object
    // (the smoke test uses it to make sure LD_PRELOAD really brought buddyslab in).
    const char *expect = std::getenv("BENCH_EXPECT_MALLOC");
    if (expect && *expect && impl.find(expect) == std::string::npos) {
        std::fprintf(stderr, "bench: malloc comes from %s, expected an object matching '%s'\n",
                     impl.c_str(), expect);
        return 1;
    }
    benchmark::AddCustomContext("malloc_impl", impl);
    benchmark::AddCustomContext("bench_quick", bench_quick() ? "1" : "0");
    benchmark::AddCustomContext("bench_max_threads", std::to_string(bench_max_threads()));
    const char *alloc = std::getenv("BENCH_ALLOCATOR");
    benchmark::AddCustomContext("allocator", alloc ? alloc : "");

    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 2;
    size_t ran = benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    if (g_failures.load() != 0) {
        std::fprintf(stderr, "bench: %d run(s) failed\n", g_failures.load());
        return 1;
    }
    const char *need = std::getenv("BENCH_REQUIRE_RUN");
    if (need && *need && ran == 0) {
        std::fprintf(stderr, "bench: no benchmark matched the filter\n");
        return 1;
    }
    return 0;
}
