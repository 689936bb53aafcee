// C++ operator new / delete, so that C++ programs reach the allocator directly.
// new honours the new-handler and throws std::bad_alloc; nothrow variants return nullptr.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <malloc.h>
#include <new>

// Sized and aligned delete check the size and alignment they are given against the block
// (malloc.c: free_sized's check; SIZE_MAX: no size). noexcept, so that delete tail-calls them.
extern "C" __attribute__((visibility("hidden"))) void bsl_free_sized_checked(void *p, std::size_t size,
                                                                              const char *func) noexcept;
extern "C" __attribute__((visibility("hidden"))) void bsl_free_checked(void *p, std::size_t size, std::size_t align,
                                                                        const char *func) noexcept;
// Plain new and delete enter the allocator directly (malloc.c: bsl_new, bsl_delete): new's fast
// path is malloc's, without a frame of its own, and reaches bsl_new_slow below (the new-handler
// loop, bad_alloc) by a tail call only when malloc's fast path cannot serve it.
extern "C" __attribute__((visibility("hidden"))) void *bsl_new(std::size_t n);
extern "C" __attribute__((visibility("hidden"))) void bsl_delete(void *p) noexcept;
extern "C" __attribute__((visibility("hidden"))) void *bsl_new_slow(std::size_t n);

#pragma GCC visibility push(default)

namespace {
void *alloc_or_handle(std::size_t n, std::size_t align)
{
    for (;;) {
        void *p = align ? memalign(align, n ? n : 1) : std::malloc(n);
        if (p)
            return p;
        std::new_handler h = std::get_new_handler();
        if (!h)
            throw std::bad_alloc();
        h();
    }
}
void *alloc_nothrow(std::size_t n, std::size_t align) noexcept
{
    try {
        return alloc_or_handle(n, align);
    } catch (...) {
        return nullptr;
    }
}
} // namespace

void *bsl_new_slow(std::size_t n) { return alloc_or_handle(n, 0); }

void *operator new(std::size_t n) { return bsl_new(n); }
void *operator new[](std::size_t n) { return bsl_new(n); }
void *operator new(std::size_t n, const std::nothrow_t &) noexcept { return alloc_nothrow(n, 0); }
void *operator new[](std::size_t n, const std::nothrow_t &) noexcept { return alloc_nothrow(n, 0); }
void *operator new(std::size_t n, std::align_val_t a) { return alloc_or_handle(n, static_cast<std::size_t>(a)); }
void *operator new[](std::size_t n, std::align_val_t a) { return alloc_or_handle(n, static_cast<std::size_t>(a)); }
void *operator new(std::size_t n, std::align_val_t a, const std::nothrow_t &) noexcept
{
    return alloc_nothrow(n, static_cast<std::size_t>(a));
}
void *operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t &) noexcept
{
    return alloc_nothrow(n, static_cast<std::size_t>(a));
}

void operator delete(void *p) noexcept { bsl_delete(p); }
void operator delete[](void *p) noexcept { bsl_delete(p); }
void operator delete(void *p, const std::nothrow_t &) noexcept { std::free(p); }
void operator delete[](void *p, const std::nothrow_t &) noexcept { std::free(p); }
namespace {
constexpr std::size_t no_size = SIZE_MAX;
std::size_t align_of(std::align_val_t a) { return static_cast<std::size_t>(a); }
} // namespace

void operator delete(void *p, std::size_t n) noexcept { bsl_free_sized_checked(p, n, "operator delete()"); }
void operator delete[](void *p, std::size_t n) noexcept { bsl_free_sized_checked(p, n, "operator delete[]()"); }
void operator delete(void *p, std::align_val_t a) noexcept { bsl_free_checked(p, no_size, align_of(a), "operator delete()"); }
void operator delete[](void *p, std::align_val_t a) noexcept
{
    bsl_free_checked(p, no_size, align_of(a), "operator delete[]()");
}
void operator delete(void *p, std::align_val_t a, const std::nothrow_t &) noexcept
{
    bsl_free_checked(p, no_size, align_of(a), "operator delete()");
}
void operator delete[](void *p, std::align_val_t a, const std::nothrow_t &) noexcept
{
    bsl_free_checked(p, no_size, align_of(a), "operator delete[]()");
}
// Aligned new of 0 bytes asks memalign for 1 (alloc_or_handle): either size is right here.
void operator delete(void *p, std::size_t n, std::align_val_t a) noexcept
{
    bsl_free_checked(p, n, align_of(a), "operator delete()");
}
void operator delete[](void *p, std::size_t n, std::align_val_t a) noexcept
{
    bsl_free_checked(p, n, align_of(a), "operator delete[]()");
}

#pragma GCC visibility pop
