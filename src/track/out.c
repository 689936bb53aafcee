/* Report output, shared by the leak report and the soft OOM report: a buffered writer without
 * malloc (os_vsnprintf into a 16 KiB buffer), JSON strings, thousands separators, a site's frames
 * as text or JSON, and the report file ("%p" for the pid, ".json" for JSON). Symbols come from
 * syms.c: callers hold track_guard. */
#include "track/track_int.h"

#include <stdarg.h>
#include <string.h>

void track_out_flush(struct track_out *o)
{
    if (o->n)
        os_write_all(o->fd, o->buf, o->n);
    o->n = 0;
}

void track_out_put(struct track_out *o, const char *s)
{
    while (*s) {
        if (o->n == sizeof(o->buf))
            track_out_flush(o);
        o->buf[o->n++] = *s++;
    }
}

void track_out_fmt(struct track_out *o, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    os_vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    track_out_put(o, tmp);
}

void track_out_json_str(struct track_out *o, const char *s)
{
    track_out_put(o, "\"");
    char tmp[8];
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            tmp[2] = 0;
        } else if (c < 0x20) {
            os_snprintf(tmp, sizeof(tmp), "\\u%04x", c);
        } else {
            tmp[0] = (char)c;
            tmp[1] = 0;
        }
        track_out_put(o, tmp);
    }
    track_out_put(o, "\"");
}

/* 1234567 -> "1,234,567" */
const char *track_commas(char *buf, uint64_t v)
{
    char tmp[32];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    int k = 0;
    for (int i = n - 1; i >= 0; i--) {
        buf[k++] = tmp[i];
        if (i && i % 3 == 0)
            buf[k++] = ',';
    }
    buf[k] = 0;
    return buf;
}

/* Frames outward of main (libc's start code, the same under every stack) get names but no file and
 * line: where the C library's debug information is installed, looking them up decompressed its
 * line tables at every report (perl's report at exit: 56 ms of zlib for two libc frames). */
void track_write_frames(struct track_out *o, const struct track_site *site, int json)
{
    const uintptr_t *fr;
    unsigned d = site ? track_site_frames(site, &fr) : 0;
    int past_main = 0;
    for (unsigned k = 0; k < d; k++) {
        const struct track_sym *s = past_main ? track_sym_name(fr[k]) : track_sym_get(fr[k]);
        if (s->func && strcmp(s->func, "main") == 0)
            past_main = 1;
        if (json) {
            track_out_fmt(o, "%s{\"pc\": \"0x%lx\", \"function\": ", k ? ", " : "", (unsigned long)s->pc);
            if (s->func)
                track_out_json_str(o, s->func);
            else
                track_out_put(o, "null");
            track_out_put(o, ", \"file\": ");
            if (s->file)
                track_out_json_str(o, s->file);
            else
                track_out_put(o, "null");
            track_out_fmt(o, ", \"line\": %d, \"module\": ", s->line);
            if (s->module)
                track_out_json_str(o, s->module);
            else
                track_out_put(o, "null");
            track_out_fmt(o, ", \"offset\": \"0x%lx\"}", (unsigned long)s->off);
        } else {
            track_out_fmt(o, "==%ld==    #%u 0x%lx in ", os_getpid(), k, (unsigned long)s->pc);
            track_out_put(o, s->func ? s->func : "??");
            if (s->file) {
                track_out_put(o, " ");
                track_out_put(o, s->file);
                track_out_fmt(o, ":%d", s->line);
            }
            track_out_put(o, " (");
            track_out_put(o, s->module ? s->module : "??");
            track_out_fmt(o, "+0x%lx)\n", (unsigned long)s->off);
        }
    }
}

int track_open_report(const char *path, int *json, const char *what, int append)
{
    *json = 0;
    if (!path || !*path)
        return 2;
    char p[600];
    size_t k = 0;
    for (const char *s = path; *s && k < sizeof(p) - 24; s++) {
        if (s[0] == '%' && s[1] == 'p') {
            k += os_snprintf(p + k, sizeof(p) - k, "%ld", os_getpid());
            s++;
        } else {
            p[k++] = *s;
        }
    }
    p[k] = 0;
    *json = k >= 5 && strcmp(p + k - 5, ".json") == 0;
    int fd = append ? os_open_append(p) : os_open_write(p);
    if (fd < 0) {
        os_printf(2, "buddyslab: %s: cannot open '%s': writing to stderr\n", what, p);
        *json = 0;
        return 2;
    }
    return fd;
}

