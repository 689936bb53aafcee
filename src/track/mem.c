/* The tracker's memory: blocks from the core allocator (struct track_core), the scratch list of a
 * report, whole files read into such a block; and the dynamic loader, when there is one.
 *
 * Blocks carry a 16-byte header holding the size and how many bytes from the start may have been
 * written, so that track_free can wipe them (block addresses left in freed memory would be taken
 * for pointers by a later scan once the program got that memory back) without asking the
 * allocator, whose malloc_usable_size reads debug canaries our blocks do not have. A file buffer
 * (track_read_file) is wiped only as far as the file's bytes: the rest of its 64 KiB was never
 * touched, and a wipe of all of it faulted in 15 pages at every report. The blocks that exist only during a report (snapshot, buffers) are also
 * listed: the heap walk of a sampled report must not take them for the program's (they hold block
 * addresses). Only the reporting thread (between track_report_begin and _end, which the leak
 * report calls under its report lock) adds and removes entries. */
#include "track/track_int.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <string.h>

static struct track_core core; /* set once at init, before any tracking */

uint64_t *(*track_core_rec_fn)(void *p, int create);

BSL_RARE void track_set_core(const struct track_core *c)
{
    core = *c;
    track_core_rec_fn = c->rec; /* read by every tracked malloc and free: one indirect call */
}

void track_core_mark(void *p, int sign)
{
    if (core.mark)
        core.mark(p, sign);
}


void track_core_rec_walk(void (*fn)(uintptr_t start, uint64_t rec, void *arg), void *arg)
{
    if (core.rec_walk)
        core.rec_walk(fn, arg);
}

#define TRACK_SCRATCH_MAX 256
static uintptr_t scratch[TRACK_SCRATCH_MAX]; /* block starts (headers) */
static unsigned nscratch;
static __thread int in_report; /* this thread is writing a report */

void track_report_begin(void)
{
    in_report = 1;
    nscratch = 0;
}

void track_report_end(void) { in_report = 0; }

static void *alloc_raw(size_t n)
{
    char *b = core.alloc ? core.alloc(n + TRACK_HDR) : NULL;
    if (!b)
        return NULL;
    ((size_t *)(void *)b)[0] = n;
    ((size_t *)(void *)b)[1] = n; /* the bytes to wipe when freed (track_read_file lowers it) */
    if (in_report && nscratch < TRACK_SCRATCH_MAX)
        scratch[nscratch++] = (uintptr_t)b;
    return b + TRACK_HDR;
}

void *track_alloc(size_t n) { return alloc_raw(n); } /* the core's memory comes zeroed */

size_t track_own_blocks(uintptr_t *out, size_t max)
{
    size_t n = 0;
    for (unsigned i = 0; i < nscratch && n < max; i++)
        out[n++] = scratch[i];
    return n;
}

void track_free(void *p)
{
    if (!p)
        return;
    char *b = (char *)p - TRACK_HDR;
    size_t wipe = ((size_t *)(void *)b)[1];
    memset(b, 0, (wipe < ((size_t *)(void *)b)[0] ? wipe : ((size_t *)(void *)b)[0]) + TRACK_HDR);
    if (in_report)
        for (unsigned i = 0; i < nscratch; i++)
            if (scratch[i] == (uintptr_t)b) {
                scratch[i] = scratch[--nscratch];
                break;
            }
    core.free(b);
}

void *track_realloc(void *p, size_t old, size_t n)
{
    void *q = alloc_raw(n);
    if (!q)
        return NULL;
    if (p) {
        memcpy(q, p, old < n ? old : n);
        track_free(p);
    }
    return q;
}

char *track_read_file(const char *path, size_t *len)
{
    int fd = os_open_read(path);
    if (fd < 0)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = alloc_raw(cap);
    while (buf) {
        if (cap - n < 4096) {
            char *nb = track_realloc(buf, n, cap * 2);
            if (!nb) {
                track_free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        long r = os_read(fd, buf + n, cap - n - 1);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    os_close(fd);
    if (buf) {
        buf[n] = 0;
        ((size_t *)(void *)(buf - TRACK_HDR))[1] = n + 1; /* see the top: the rest is untouched */
    }
    if (len)
        *len = n;
    return buf;
}

/* ---- the dynamic loader ----
 * A weak reference to dlsym only: a static program (linked with libbuddyslab.a) gets NULL unless
 * it links the dl functions in itself, and then has no tracking (it needs dlopen for liburcu and
 * libdw). dlopen itself is looked up with dlsym: naming it would make the static link warn
 * ("Using 'dlopen' in statically linked applications..."), even through a weak reference. */
extern void *dlsym(void *, const char *) __attribute__((weak));
static void *(*dlopen_fn)(const char *, int);

/* A program without a dynamic loader (cc -static) cannot dlopen the shared libraries we need. */
static int is_dynamic_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_INTERP)
            *(int *)arg = 1;
    return 1; /* the first object is the main program */
}

static int dynamic = -1;
int track_is_dynamic(void)
{
    if (dynamic < 0) {
        int d = 0;
        if (dlsym)
            dl_iterate_phdr(is_dynamic_cb, &d);
        if (d)
            *(void **)&dlopen_fn = dlsym(RTLD_DEFAULT, "dlopen");
        dynamic = d && dlopen_fn;
    }
    return dynamic;
}

void *track_dlopen(const char *name)
{
    if (!track_is_dynamic())
        return NULL;
    return dlopen_fn(name, RTLD_NOW | RTLD_LOCAL);
}

void *track_dlsym(void *handle, const char *name)
{
    if (!track_is_dynamic())
        return NULL;
    return dlsym(handle, name);
}

