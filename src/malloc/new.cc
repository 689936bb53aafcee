// C++ operator new / delete, so that C++ programs reach the allocator directly.
// new honours the new-handler and throws std::bad_alloc; nothrow variants return nullptr.
#include <cstddef>
#include <cstdlib>
#include <malloc.h>
#include <new>

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

void *operator new(std::size_t n) { return alloc_or_handle(n, 0); }
void *operator new[](std::size_t n) { return alloc_or_handle(n, 0); }
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

void operator delete(void *p) noexcept { std::free(p); }
void operator delete[](void *p) noexcept { std::free(p); }
void operator delete(void *p, const std::nothrow_t &) noexcept { std::free(p); }
void operator delete[](void *p, const std::nothrow_t &) noexcept { std::free(p); }
void operator delete(void *p, std::size_t) noexcept { std::free(p); }
void operator delete[](void *p, std::size_t) noexcept { std::free(p); }
void operator delete(void *p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void *p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void *p, std::align_val_t, const std::nothrow_t &) noexcept { std::free(p); }
void operator delete[](void *p, std::align_val_t, const std::nothrow_t &) noexcept { std::free(p); }
void operator delete(void *p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void *p, std::size_t, std::align_val_t) noexcept { std::free(p); }

#pragma GCC visibility pop
