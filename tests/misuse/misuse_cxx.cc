// The C++ side of misuse_prog: operator new and the sized and aligned operator delete, called from C.
#include <cstddef>
#include <new>

extern "C" {
void *cxx_new(std::size_t n) { return ::operator new(n); }
void *cxx_new_array(std::size_t n) { return ::operator new[](n); }
void *cxx_new_aligned(std::size_t n, std::size_t a) { return ::operator new(n, std::align_val_t(a)); }
void cxx_delete_sized(void *p, std::size_t n) { ::operator delete(p, n); }
void cxx_delete_array_sized(void *p, std::size_t n) { ::operator delete[](p, n); }
void cxx_delete_aligned(void *p, std::size_t a) { ::operator delete(p, std::align_val_t(a)); }
}
