/* C++ operator new / delete, so that C++ programs reach the allocator directly, written in C so
 * that the library does not link libstdc++: a C program (bash, as) loaded with it then pays
 * neither libstdc++'s load time nor its resident pages (about 1 MiB with libm and libgcc_s).
 *
 * The symbols are the Itanium C++ ABI's mangled names. new honours the new-handler and throws
 * std::bad_alloc; the nothrow variants return NULL. Both come from libstdc++ through weak
 * references: a program that calls operator new is C++ and has libstdc++ loaded (or linked, for a
 * static program), so the references are bound; when they are not, no handler is installed and a
 * failing throwing new aborts with a message. One difference from libstdc++'s own nothrow new: a
 * new-handler that throws propagates out of the nothrow variant (C cannot catch); libstdc++
 * returns NULL there. Unwinding passes through these frames: the file is built with -fexceptions.
 *
 * Sized and aligned delete check the size and alignment they are given against the block
 * (malloc.c: free_sized's check; SIZE_MAX: no size). */
#include "malloc/internal.h"

#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>

typedef void (*new_handler_fn)(void);
extern new_handler_fn _ZSt15get_new_handlerv(void) __attribute__((weak)); /* std::get_new_handler() */
extern void _ZSt17__throw_bad_allocv(void) __attribute__((weak, noreturn)); /* std::__throw_bad_alloc() */

static void *alloc_or_handle(size_t n, size_t align, int nothrow)
{
    for (;;) {
        void *p = align ? memalign(align, n ? n : 1) : malloc(n);
        if (p)
            return p;
        new_handler_fn h = _ZSt15get_new_handlerv ? _ZSt15get_new_handlerv() : NULL;
        if (h) {
            h();
            continue;
        }
        if (nothrow)
            return NULL;
        if (_ZSt17__throw_bad_allocv)
            _ZSt17__throw_bad_allocv();
        os_printf(2, "buddyslab: operator new(%zu): out of memory and no libstdc++ to throw std::bad_alloc\n", n);
        abort();
    }
}

/* operator new(size_t), new[](size_t), the nothrow_t ones, then the align_val_t ones */
/* Plain new enters malloc's fast path directly (malloc.c: bsl_new), which tail-calls
 * bsl_new_slow (the new-handler loop, bad_alloc) only when that cannot serve it. */
void *bsl_new_slow(size_t n) { return alloc_or_handle(n, 0, 0); }
BSL_EXPORT void *_Znwm(size_t n) { return bsl_new(n); }
BSL_EXPORT void *_Znam(size_t n) { return bsl_new(n); }
BSL_EXPORT void *_ZnwmRKSt9nothrow_t(size_t n, const void *nt) { return (void)nt, alloc_or_handle(n, 0, 1); }
BSL_EXPORT void *_ZnamRKSt9nothrow_t(size_t n, const void *nt) { return (void)nt, alloc_or_handle(n, 0, 1); }
BSL_EXPORT void *_ZnwmSt11align_val_t(size_t n, size_t a) { return alloc_or_handle(n, a, 0); }
BSL_EXPORT void *_ZnamSt11align_val_t(size_t n, size_t a) { return alloc_or_handle(n, a, 0); }
BSL_EXPORT void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t n, size_t a, const void *nt)
{
    return (void)nt, alloc_or_handle(n, a, 1);
}
BSL_EXPORT void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t n, size_t a, const void *nt)
{
    return (void)nt, alloc_or_handle(n, a, 1);
}

/* operator delete(void *), delete[], and with nothrow_t */
BSL_EXPORT void _ZdlPv(void *p) { bsl_delete(p); } /* free's body, without the GOT */
BSL_EXPORT void _ZdaPv(void *p) { bsl_delete(p); }
BSL_EXPORT void _ZdlPvRKSt9nothrow_t(void *p, const void *nt) { (void)nt, free(p); }
BSL_EXPORT void _ZdaPvRKSt9nothrow_t(void *p, const void *nt) { (void)nt, free(p); }
/* sized */
BSL_EXPORT void _ZdlPvm(void *p, size_t n) { bsl_free_sized_checked(p, n, "operator delete()"); }
BSL_EXPORT void _ZdaPvm(void *p, size_t n) { bsl_free_sized_checked(p, n, "operator delete[]()"); }
/* aligned, aligned with nothrow_t, sized and aligned (aligned new of 0 bytes asked memalign for 1:
 * either size is right here) */
BSL_EXPORT void _ZdlPvSt11align_val_t(void *p, size_t a) { bsl_free_checked(p, SIZE_MAX, a, "operator delete()"); }
BSL_EXPORT void _ZdaPvSt11align_val_t(void *p, size_t a) { bsl_free_checked(p, SIZE_MAX, a, "operator delete[]()"); }
BSL_EXPORT void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t a, const void *nt)
{
    (void)nt, bsl_free_checked(p, SIZE_MAX, a, "operator delete()");
}
BSL_EXPORT void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t a, const void *nt)
{
    (void)nt, bsl_free_checked(p, SIZE_MAX, a, "operator delete[]()");
}
BSL_EXPORT void _ZdlPvmSt11align_val_t(void *p, size_t n, size_t a) { bsl_free_checked(p, n, a, "operator delete()"); }
BSL_EXPORT void _ZdaPvmSt11align_val_t(void *p, size_t n, size_t a) { bsl_free_checked(p, n, a, "operator delete[]()"); }
