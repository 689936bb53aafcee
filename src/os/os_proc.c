/* Reading the process's own state: files under /proc, thread ids, memory that may be unmapped
 * under us. Raw system calls, as in os_linux.c: none is a cancellation point, errno is kept. */
#include "os/os.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

long os_read(int fd, void *buf, size_t n)
{
    int saved = errno;
    long r;
    while ((r = syscall(SYS_read, fd, buf, n)) < 0 && errno == EINTR)
        ;
    errno = saved;
    return r < 0 ? -1 : r;
}

long os_gettid(void) { return syscall(SYS_gettid); }

struct os_dirent64 { /* struct linux_dirent64 */
    uint64_t ino;
    int64_t off;
    unsigned short reclen;
    unsigned char type;
    char name[];
};

size_t os_proc_numbers(const char *dir, long *out, size_t max)
{
    int saved = errno;
    int fd = (int)syscall(SYS_openat, AT_FDCWD, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        errno = saved;
        return 0;
    }
    size_t n = 0;
    char buf[4096] __attribute__((aligned(8)));
    for (;;) { /* getdents64: opendir would allocate */
        long got = syscall(SYS_getdents64, fd, buf, sizeof(buf));
        if (got <= 0)
            break;
        for (long off = 0; off < got;) {
            const struct os_dirent64 *d = (const struct os_dirent64 *)(const void *)(buf + off);
            off += d->reclen;
            long v = 0;
            const char *c = d->name;
            if (*c < '0' || *c > '9')
                continue;
            while (*c >= '0' && *c <= '9')
                v = v * 10 + (*c++ - '0');
            if (n < max)
                out[n++] = v;
        }
    }
    syscall(SYS_close, fd);
    errno = saved;
    return n;
}

static int read_self_ok = 1;

size_t os_read_self(uintptr_t addr, void *buf, size_t len)
{
    if (read_self_ok) {
        int saved = errno;
        struct iovec l = {buf, len}, r = {(void *)addr, len};
        long got = syscall(SYS_process_vm_readv, syscall(SYS_getpid), &l, 1UL, &r, 1UL, 0UL);
        int err = errno;
        errno = saved;
        if (got >= 0)
            return (size_t)got;
        if (err == EFAULT)
            return 0;
        read_self_ok = 0; /* ENOSYS, EPERM (seccomp): read directly, trusting the caller */
    }
    memcpy(buf, (const void *)addr, len);
    return len;
}

void os_sleep_us(uint64_t us)
{
    int saved = errno;
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    syscall(SYS_nanosleep, &ts, NULL); /* raw: not a cancellation point */
    errno = saved;
}
