/* Parsing option values without allocating (the options table and the soft OOM policy's budgets). */
#include "os/os.h"

int os_parse_size(const char *s, size_t n, long *out)
{
    if (n == 0)
        return -1;
    unsigned shift = 0;
    switch (s[n - 1] | 0x20) {
    case 'k': shift = 10; break;
    case 'm': shift = 20; break;
    case 'g': shift = 30; break;
    case 't': shift = 40; break;
    default: break;
    }
    if (shift)
        n--;
    if (n == 0 || n > 15)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (shift && v > (0x7fffffffffffffffL >> shift))
        return -1;
    *out = v << shift;
    return 0;
}
