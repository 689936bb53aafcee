/* Configure-time probe: can clang build a libFuzzer target here (libclang-rt-14-dev)? */
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)data;
    (void)size;
    return 0;
}
