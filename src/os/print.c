/* A small printf that never allocates: the allocator's only way to format text. */
#include "os/os.h"

struct out {
    char *buf;
    size_t cap, len;
};

static void put(struct out *o, char c)
{
    if (o->len + 1 < o->cap)
        o->buf[o->len] = c;
    o->len++;
}

static void put_num(struct out *o, unsigned long long v, int neg, unsigned base, int width, int zero,
                    int left)
{
    char tmp[24];
    int n = 0;
    do {
        unsigned d = (unsigned)(v % base);
        tmp[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    int len = n + neg;
    if (!left && !zero)
        for (; len < width; len++)
            put(o, ' ');
    if (neg)
        put(o, '-');
    if (!left && zero)
        for (; len < width; len++)
            put(o, '0');
    while (n)
        put(o, tmp[--n]);
    if (left)
        for (; len < width; len++)
            put(o, ' ');
}

size_t os_vsnprintf(char *buf, size_t cap, const char *fmt, va_list ap)
{
    struct out o = {buf, cap, 0};
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            put(&o, *f);
            continue;
        }
        f++;
        int left = 0, zero = 0, width = 0, lng = 0, sz = 0;
        for (;; f++) {
            if (*f == '-')
                left = 1;
            else if (*f == '0')
                zero = 1;
            else
                break;
        }
        while (*f >= '0' && *f <= '9')
            width = width * 10 + (*f++ - '0');
        while (*f == 'l') {
            lng++;
            f++;
        }
        if (*f == 'z') {
            sz = 1;
            f++;
        }
        switch (*f) {
        case 'd':
        case 'i': {
            long long v = sz ? (long long)va_arg(ap, long) : lng ? va_arg(ap, long long) : va_arg(ap, int);
            put_num(&o, v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v, v < 0, 10, width, zero,
                    left);
            break;
        }
        case 'u':
        case 'x': {
            unsigned long long v = (sz || lng) ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned);
            put_num(&o, v, 0, *f == 'x' ? 16 : 10, width, zero, left);
            break;
        }
        case 'p':
            put(&o, '0');
            put(&o, 'x');
            put_num(&o, (uintptr_t)va_arg(ap, void *), 0, 16, width, zero, left);
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            size_t n = 0;
            while (s[n])
                n++;
            if (!left)
                for (size_t i = n; i < (size_t)width; i++)
                    put(&o, ' ');
            for (size_t i = 0; i < n; i++)
                put(&o, s[i]);
            if (left)
                for (size_t i = n; i < (size_t)width; i++)
                    put(&o, ' ');
            break;
        }
        case 'c':
            put(&o, (char)va_arg(ap, int));
            break;
        case '%':
            put(&o, '%');
            break;
        default:
            put(&o, '%');
            if (*f)
                put(&o, *f);
            else
                f--;
        }
    }
    if (cap)
        buf[o.len < cap ? o.len : cap - 1] = 0;
    return o.len < cap ? o.len : (cap ? cap - 1 : 0);
}

size_t os_snprintf(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t n = os_vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return n;
}

void os_printf(int fd, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    size_t n = os_vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    os_write_all(fd, buf, n);
}
