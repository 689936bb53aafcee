// C++ allocation functions: operator new/delete (plain, sized, aligned, nothrow, arrays),
// new_handler, std::bad_alloc, and that what they hand out comes from buddyslab.
#include "bsl_test.h"

#include <malloc.h>

#include <cstdint>
#include <map>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

static volatile std::size_t vabsurd = SIZE_MAX / 2;
static volatile std::size_t vabsurd2 = SIZE_MAX - 4096;

static void check_ptr(void *p, std::size_t n, std::size_t align, const char *what)
{
    CHECKF(p != nullptr, "%s(%zu) returned null", what, n);
    if (!p)
        return;
    CHECKF(((uintptr_t)p & (align - 1)) == 0, "%s(%zu) = %p not %zu-aligned", what, n, p, align);
    CHECKF(bsl_owns(p) == 1, "%s(%zu) = %p is not a buddyslab block", what, n, p);
    CHECKF(malloc_usable_size(p) >= n, "%s(%zu): usable %zu", what, n, malloc_usable_size(p));
    if (n) {
        static_cast<unsigned char *>(p)[0] = 1;
        static_cast<unsigned char *>(p)[n - 1] = 2;
    }
}

static const std::size_t sizes[] = {0, 1, 8, 16, 24, 100, 1000, 4096, 10000, 100000, 1 << 20, 3 << 20, 9 << 20};

static void test_plain()
{
    for (std::size_t n : sizes) {
        void *p = ::operator new(n);
        check_ptr(p, n, __STDCPP_DEFAULT_NEW_ALIGNMENT__, "operator new");
        ::operator delete(p);
        CHECK(bsl_owns(p) == 0);

        p = ::operator new(n);
        check_ptr(p, n, __STDCPP_DEFAULT_NEW_ALIGNMENT__, "operator new");
        ::operator delete(p, n); // sized
        CHECK(bsl_owns(p) == 0);

        p = ::operator new[](n);
        check_ptr(p, n, __STDCPP_DEFAULT_NEW_ALIGNMENT__, "operator new[]");
        ::operator delete[](p);
        CHECK(bsl_owns(p) == 0);

        p = ::operator new[](n);
        ::operator delete[](p, n);
        CHECK(bsl_owns(p) == 0);

        p = ::operator new(n, std::nothrow);
        check_ptr(p, n, __STDCPP_DEFAULT_NEW_ALIGNMENT__, "operator new(nothrow)");
        ::operator delete(p, std::nothrow);
        p = ::operator new[](n, std::nothrow);
        check_ptr(p, n, __STDCPP_DEFAULT_NEW_ALIGNMENT__, "operator new[](nothrow)");
        ::operator delete[](p, std::nothrow);
    }
    // new-expressions
    char *c = new char[777];
    check_ptr(c, 777, 16, "new char[]");
    delete[] c;
    long *l = new long(5);
    CHECK(*l == 5);
    check_ptr(l, sizeof(long), alignof(long), "new long");
    delete l;
}

struct alignas(64) A64 {
    unsigned char b[100];
};
struct alignas(4096) A4096 {
    int x;
};

static int live_objects;
struct Tracked {
    std::string s;
    Tracked() : s(100, 'x') { live_objects++; }
    ~Tracked() { live_objects--; }
};

static void test_aligned()
{
    for (std::size_t a = 32; a <= (std::size_t)4 << 20; a *= 2) {
        for (std::size_t n : {std::size_t(1), a, a + 1, std::size_t(5000)}) {
            void *p = ::operator new(n, std::align_val_t(a));
            check_ptr(p, n, a, "operator new(align)");
            ::operator delete(p, std::align_val_t(a));
            CHECK(bsl_owns(p) == 0);
            p = ::operator new(n, std::align_val_t(a));
            ::operator delete(p, n, std::align_val_t(a)); // sized + aligned
            CHECK(bsl_owns(p) == 0);
            p = ::operator new[](n, std::align_val_t(a));
            check_ptr(p, n, a, "operator new[](align)");
            ::operator delete[](p, n, std::align_val_t(a));
            CHECK(bsl_owns(p) == 0);
            p = ::operator new(n, std::align_val_t(a), std::nothrow);
            check_ptr(p, n, a, "operator new(align, nothrow)");
            ::operator delete(p, std::align_val_t(a), std::nothrow);
            p = ::operator new[](n, std::align_val_t(a), std::nothrow);
            check_ptr(p, n, a, "operator new[](align, nothrow)");
            ::operator delete[](p, std::align_val_t(a), std::nothrow);
        }
    }
    A64 *x = new A64[10];
    check_ptr(x, sizeof(A64) * 10, 64, "new A64[10]");
    delete[] x;
    A4096 *y = new A4096;
    check_ptr(y, sizeof(A4096), 4096, "new A4096");
    delete y;
    std::vector<A64> v(1000);
    CHECK(((uintptr_t)v.data() & 63) == 0 && bsl_owns(v.data()) == 1);

    // arrays of objects with destructors (array cookie: the block starts before the first element)
    Tracked *t = new Tracked[50];
    CHECK(live_objects == 50);
    for (int i = 0; i < 50; i++)
        CHECK(t[i].s.size() == 100);
    delete[] t;
    CHECK(live_objects == 0);
}

static int handler_calls;
static void counting_handler()
{
    handler_calls++;
    if (handler_calls >= 3)
        std::set_new_handler(nullptr); // next failure throws bad_alloc
}

struct HandlerError {};
static void throwing_handler()
{
    handler_calls++;
    throw HandlerError();
}

static void test_failure()
{
    // new_handler is called on failure, then std::bad_alloc is thrown
    handler_calls = 0;
    std::set_new_handler(counting_handler);
    bool caught = false;
    try {
        char *p = new char[vabsurd];
        CHECKF(false, "new char[SIZE_MAX/2] returned %p", (void *)p);
    } catch (const std::bad_alloc &) {
        caught = true;
    }
    CHECK(caught);
    CHECKF(handler_calls == 3, "new_handler called %d times, want 3", handler_calls);
    CHECK(std::get_new_handler() == nullptr);

    // without a handler: bad_alloc straight away, for every flavour
    std::set_new_handler(nullptr);
    int thrown = 0;
#define EXPECT_BAD_ALLOC(expr)                                                                                         \
    do {                                                                                                               \
        bool ok_ = false;                                                                                              \
        try {                                                                                                          \
            void *volatile r_ = (expr);                                                                                \
            (void)r_;                                                                                                  \
        } catch (const std::bad_alloc &) {                                                                             \
            ok_ = true;                                                                                                \
        }                                                                                                              \
        CHECKF(ok_, "%s did not throw std::bad_alloc", #expr);                                                         \
        thrown += ok_;                                                                                                 \
    } while (0)
    EXPECT_BAD_ALLOC(::operator new(vabsurd));
    EXPECT_BAD_ALLOC(::operator new[](vabsurd2));
    EXPECT_BAD_ALLOC(::operator new(vabsurd, std::align_val_t(64)));
    EXPECT_BAD_ALLOC(::operator new[](vabsurd, std::align_val_t(1 << 21)));
    EXPECT_BAD_ALLOC(::operator new(vabsurd2 + 4096)); // SIZE_MAX
    CHECK(thrown == 5);

    // nothrow versions return nullptr, after calling the handler
    handler_calls = 0;
    std::set_new_handler(counting_handler);
    void *p = ::operator new(vabsurd, std::nothrow);
    CHECK(p == nullptr);
    CHECKF(handler_calls == 3, "nothrow new: handler called %d times, want 3", handler_calls);
    std::set_new_handler(nullptr);
    CHECK(::operator new[](vabsurd, std::nothrow) == nullptr);
    CHECK(::operator new(vabsurd, std::align_val_t(4096), std::nothrow) == nullptr);
    CHECK(::operator new[](vabsurd2, std::align_val_t(64), std::nothrow) == nullptr);
    CHECK(new (std::nothrow) char[vabsurd] == nullptr);

    // a handler that throws: the exception propagates out of new
    handler_calls = 0;
    std::set_new_handler(throwing_handler);
    bool got = false;
    try {
        (void)::operator new(vabsurd, std::align_val_t(256));
    } catch (const HandlerError &) {
        got = true;
    }
    CHECK(got && handler_calls == 1);
    std::set_new_handler(nullptr);

    // the heap is fine afterwards
    void *q = ::operator new(1000);
    check_ptr(q, 1000, 16, "operator new after failures");
    ::operator delete(q);
}

static void test_containers_and_threads()
{
    std::map<std::string, std::vector<int>> m;
    for (int i = 0; i < 20000; i++)
        m["key" + std::to_string(i % 3000)].push_back(i);
    long sum = 0;
    for (auto &kv : m)
        for (int x : kv.second)
            sum += x;
    CHECK(sum == 19999L * 20000 / 2);
    CHECK(bsl_owns(m["key7"].data()) == 1);

    std::vector<std::thread> th;
    std::vector<long> res(8);
    for (int t = 0; t < 8; t++)
        th.emplace_back([t, &res] {
            std::vector<std::unique_ptr<std::string>> v;
            for (int i = 0; i < 20000; i++) {
                v.emplace_back(new std::string(size_t(i % 300) + 20, char('a' + t)));
                if (i % 3 == 0)
                    v[size_t(i) / 2].reset();
            }
            long n = 0;
            for (auto &s : v)
                if (s) {
                    CHECK(bsl_owns(s->data()) == 1);
                    n += long(s->size());
                }
            try {
                throw std::runtime_error(std::string(5000, 'e'));
            } catch (const std::exception &e) {
                n += long(std::string(e.what()).size());
            }
            res[size_t(t)] = n;
        });
    for (auto &t : th)
        t.join();
    for (int t = 1; t < 8; t++)
        CHECK(res[size_t(t)] == res[0]);
}

int main()
{
    bsl_test_begin("cxx_new");
    test_plain();
    test_aligned();
    test_failure();
    test_containers_and_threads();
    return bsl_test_end();
}
