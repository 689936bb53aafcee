/* Symbols for return addresses, shared by the leak report and the soft OOM policy (which matches
 * budget patterns against the function names of a new site's frames, and names sites in its
 * reports).
 *
 * Function names come from libdw (elfutils), loaded with dlopen on first use: the symbol tables,
 * static functions included, and file:line from DWARF where the object has it. Module and offset
 * come from dladdr1 (the offset is from the object's load bias, what addr2line expects). C++ names
 * are demangled with __cxa_demangle from the libstdc++ already loaded.
 * A program without a dynamic loader (cc -static) has neither libdw nor dladdr1: names come from
 * the executable's own symbol table (exe.c), module and offset from its load bias, and no
 * file:line (`buddyslab report` and addr2line add them offline from module+offset); C++ names are
 * demangled when the program links __cxa_demangle in (a weak reference).
 *
 * The cache lives as long as the process: one entry per distinct return address, its strings in
 * an arena that only grows (sites are immortal, so are their symbols). Locking: sym_lock protects
 * the table, the arena and the libdw session; callers hold track_guard (libdw, dladdr1 and the
 * demangler call malloc). fork(): track_fork_locks visits track_sym_lock (outer phase). */
#include "track/track_int.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern int dladdr1(const void *, Dl_info *, void **, int) __attribute__((weak));
extern char *__cxa_demangle(const char *, char *, size_t *, int *) __attribute__((weak));

os_lock_t track_sym_lock = OS_LOCK_INIT(LOCK_RANK_LEAK_SYMS);
__thread int track_sym_lean;

/* ---- the string arena (sym_lock) ---- */
struct str_chunk {
    struct str_chunk *next;
    size_t used, cap;
    char data[];
};
static struct str_chunk *str_chunks;

static char *str_dup_locked(const char *s, size_t n)
{
    if (!s)
        return NULL;
    struct str_chunk *c = str_chunks;
    if (!c || c->cap - c->used < n + 1) {
        size_t cap = n + 1 > (64u << 10) ? n + 1 : (64u << 10);
        c = track_alloc(sizeof(*c) + cap);
        if (!c)
            return NULL;
        c->cap = cap;
        c->next = str_chunks;
        str_chunks = c;
    }
    char *r = c->data + c->used;
    memcpy(r, s, n);
    r[n] = 0;
    c->used += n + 1;
    return r;
}

char *track_str_dup_n(const char *s, size_t n)
{
    os_lock(&track_sym_lock);
    char *r = str_dup_locked(s, n);
    os_unlock(&track_sym_lock);
    return r;
}

static char *str_dup(const char *s) { return s ? str_dup_locked(s, strlen(s)) : NULL; }

/* ---- libdw ---- */
typedef struct {
    void *find_elf, *find_debuginfo, *section_address;
    char **debuginfo_path;
} dwfl_callbacks_t; /* Dwfl_Callbacks (libdwfl.h), stable since elfutils 0.133 */

static struct {
    int tried, ok;
    void *(*begin)(const dwfl_callbacks_t *);
    void (*end)(void *);
    int (*proc_report)(void *, int);
    int (*report_end)(void *, void *, void *);
    void *(*addrmodule)(void *, uint64_t);
    const char *(*addrname)(void *, uint64_t);
    void *(*getsrc)(void *, uint64_t);
    const char *(*lineinfo)(void *, uint64_t *, int *, int *, uint64_t *, uint64_t *);
    dwfl_callbacks_t cb;
    char *(*demangle)(const char *, char *, size_t *, int *);
    long (*getmodules)(void *, int (*)(void *, void **, const char *, uint64_t, void *), void *, long);
    int (*getsymtab)(void *);
    const char *(*getsym_info)(void *, int, Elf64_Sym *, uint64_t *, uint32_t *, void **, uint64_t *);
} dw;

static void dw_load(void)
{
    if (dw.tried)
        return;
    dw.tried = 1;
    *(void **)&dw.demangle = track_dlsym(NULL, "__cxa_demangle");
    if (!track_is_dynamic())
        dw.demangle = __cxa_demangle; /* linked in, or NULL */
    void *h = track_dlopen("libdw.so.1");
    if (!h)
        return;
    *(void **)&dw.begin = track_dlsym(h, "dwfl_begin");
    *(void **)&dw.end = track_dlsym(h, "dwfl_end");
    *(void **)&dw.proc_report = track_dlsym(h, "dwfl_linux_proc_report");
    *(void **)&dw.report_end = track_dlsym(h, "dwfl_report_end");
    *(void **)&dw.addrmodule = track_dlsym(h, "dwfl_addrmodule");
    *(void **)&dw.addrname = track_dlsym(h, "dwfl_module_addrname");
    *(void **)&dw.getsrc = track_dlsym(h, "dwfl_module_getsrc");
    *(void **)&dw.lineinfo = track_dlsym(h, "dwfl_lineinfo");
    *(void **)&dw.getmodules = track_dlsym(h, "dwfl_getmodules");
    *(void **)&dw.getsymtab = track_dlsym(h, "dwfl_module_getsymtab");
    *(void **)&dw.getsym_info = track_dlsym(h, "dwfl_module_getsym_info");
    dw.cb.find_elf = track_dlsym(h, "dwfl_linux_proc_find_elf");
    dw.cb.find_debuginfo = track_dlsym(h, "dwfl_standard_find_debuginfo");
    dw.ok = dw.begin && dw.end && dw.proc_report && dw.report_end && dw.addrmodule && dw.addrname && dw.getsrc &&
            dw.lineinfo && dw.cb.find_elf && dw.cb.find_debuginfo;
}

/* The libdw session describes the modules loaded when it was made: it is remade when the dynamic
 * loader has loaded objects since (dl_iterate_phdr's dlpi_adds), so dlopen'ed code gets names. */
static void *dwfl;
static unsigned long long dwfl_adds;
BSL_BIG_BSS static char exe_path[4096];

static int adds_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    if (size >= offsetof(struct dl_phdr_info, dlpi_adds) + sizeof(info->dlpi_adds))
        *(unsigned long long *)arg = info->dlpi_adds;
    return 1;
}

static void dwfl_refresh(void)
{
    unsigned long long adds = 0;
    dl_iterate_phdr(adds_cb, &adds);
    if (dwfl && adds == dwfl_adds)
        return;
    dw_load();
    if (!dw.ok)
        return;
    if (dwfl)
        dw.end(dwfl);
    dwfl = dw.begin(&dw.cb);
    if (dwfl && (dw.proc_report(dwfl, os_getpid()) != 0 || dw.report_end(dwfl, NULL, NULL) != 0)) {
        dw.end(dwfl);
        dwfl = NULL;
    }
    dwfl_adds = adds;
}

static const char *demangle(const char *name)
{
    if (!name || !dw.demangle || name[0] != '_' || name[1] != 'Z')
        return str_dup(name);
    int status = -1;
    char *d = dw.demangle(name, NULL, NULL, &status);
    if (!d || status != 0)
        return str_dup(name);
    const char *r = str_dup(d);
    free(d); /* libstdc++ allocated it with malloc: ours, guarded */
    return r;
}

/* The function name and module (symbol tables only: what budget patterns match). */
static void sym_fill_name(struct track_sym *s)
{
    uintptr_t a = s->pc - 1; /* inside the call instruction */
    if (!exe_path[0]) {      /* the main program's name (dladdr1 gives it as "") */
        ssize_t n = readlink("/proc/self/exe", exe_path, sizeof(exe_path) - 1);
        exe_path[n > 0 ? n : 0] = 0;
    }
    if (!track_is_dynamic()) { /* no loader: the executable's symbol table is all there is */
        dw_load();
        s->names_done = 1;
        if (track_exe_has_locked(a)) {
            s->module = str_dup(exe_path);
            s->off = s->pc - track_exe_bias_locked();
            s->func = demangle(track_exe_func_locked(a));
        }
        return;
    }
    if (!track_sym_lean) { /* lean: dladdr1 only, and the entry may be completed later */
        dwfl_refresh();
        s->names_done = 1;
    }
    Dl_info info;
    struct link_map *lm = NULL;
    memset(&info, 0, sizeof(info));
    if (dladdr1 && dladdr1((void *)a, &info, (void **)&lm, RTLD_DL_LINKMAP) && lm) {
        s->off = s->pc - lm->l_addr;
        const char *mod = lm->l_name && lm->l_name[0] ? lm->l_name : exe_path;
        s->module = str_dup(mod);
        if (info.dli_sname && info.dli_saddr)
            s->func = demangle(info.dli_sname);
    }
    if (dwfl && !track_sym_lean) {
        void *m = dw.addrmodule(dwfl, a);
        if (m) {
            const char *n = dw.addrname(m, a);
            if (n)
                s->func = demangle(n);
        }
    }
}

/* File and line from DWARF (line tables: slower, often compressed), for reports. */
static void sym_fill_lines(struct track_sym *s)
{
    uintptr_t a = s->pc - 1;
    s->lines_done = 1;
    if (dwfl) {
        void *m = dw.addrmodule(dwfl, a);
        if (m) {
            void *line = dw.getsrc(m, a);
            if (line) {
                uint64_t addr;
                int ln = 0;
                const char *f = dw.lineinfo(line, &addr, &ln, NULL, NULL, NULL);
                if (f) {
                    s->file = str_dup(f);
                    s->line = ln;
                }
            }
        }
    }
}

/* ---- the cache: open addressing over pointers to entries that never move ---- */
static struct track_sym **tab;
static size_t tab_mask, tab_count;
static struct track_sym *ent_chunk;
static size_t ent_left;
static struct track_sym sym_none; /* out of memory: no names */

static inline size_t pc_slot(uintptr_t pc) { return (size_t)((pc * 0x9E3779B97F4A7C15ull) >> 20); }

static int tab_grow(void)
{
    size_t ncap = tab ? (tab_mask + 1) * 2 : 1024;
    struct track_sym **nt = track_alloc(ncap * sizeof(*nt));
    if (!nt)
        return -1;
    for (size_t i = 0; tab && i <= tab_mask; i++)
        if (tab[i]) {
            size_t j = pc_slot(tab[i]->pc) & (ncap - 1);
            while (nt[j])
                j = (j + 1) & (ncap - 1);
            nt[j] = tab[i];
        }
    track_free(tab);
    tab = nt;
    tab_mask = ncap - 1;
    return 0;
}

static const struct track_sym *sym_lookup(uintptr_t pc, int lines)
{
    os_lock(&track_sym_lock);
    const struct track_sym *r = &sym_none;
    if ((!tab || (tab_count + 1) * 2 > tab_mask + 1) && tab_grow() != 0)
        goto out;
    size_t i = pc_slot(pc) & tab_mask;
    while (tab[i] && tab[i]->pc != pc)
        i = (i + 1) & tab_mask;
    if (!tab[i]) {
        if (!ent_left) {
            ent_chunk = track_alloc(256 * sizeof(struct track_sym));
            if (!ent_chunk)
                goto out;
            ent_left = 256;
        }
        struct track_sym *s = ent_chunk++;
        ent_left--;
        s->pc = pc;
        sym_fill_name(s);
        tab[i] = s;
        tab_count++;
    } else if (!tab[i]->names_done && !track_sym_lean) {
        sym_fill_name(tab[i]); /* made lean: complete it */
    }
    if (lines && !tab[i]->lines_done && !track_sym_lean)
        sym_fill_lines(tab[i]);
    r = tab[i];
out:
    os_unlock(&track_sym_lock);
    return r;
}

const struct track_sym *track_sym_get(uintptr_t pc) { return sym_lookup(pc, 1); }
const struct track_sym *track_sym_name(uintptr_t pc) { return sym_lookup(pc, 0); }

/* LSan's pattern rules: '*' matches any run of characters, a leading '^' anchors at the start,
 * a trailing '$' at the end; otherwise the pattern may match anywhere in s. */
static const char *find_n(const char *s, const char *seg, size_t n)
{
    if (n == 0)
        return s;
    for (; *s; s++)
        if (strncmp(s, seg, n) == 0)
            return s;
    return NULL;
}

int track_tmatch(const char *t, const char *s)
{
    if (!s || !*s)
        return 0;
    int astart = *t == '^';
    if (astart)
        t++;
    size_t tl = strlen(t);
    int aend = tl && t[tl - 1] == '$';
    if (aend)
        tl--;
    const char *p = s;
    size_t i = 0;
    int first = 1;
    while (i <= tl) {
        size_t j = i;
        while (j < tl && t[j] != '*')
            j++;
        size_t n = j - i;
        int last = j >= tl;
        if (first && astart) {
            if (strncmp(p, t + i, n) != 0)
                return 0;
            p += n;
        } else if (last && aend) {
            size_t pl = strlen(p);
            if (pl < n || strncmp(p + pl - n, t + i, n) != 0)
                return 0;
            p += pl;
        } else {
            const char *q = find_n(p, t + i, n);
            if (!q)
                return 0;
            p = q + n;
        }
        first = 0;
        i = j + 1;
    }
    return 1;
}

/* ---- every function symbol of every loaded module (for the soft OOM policy's pattern index) ---- */
struct walk {
    int (*module)(uintptr_t base, void *arg);
    void (*fn)(uintptr_t lo, uintptr_t hi, const char *name, void *arg);
    void *arg;
};

static int walk_module(void *mod, void **userdata, const char *name, uint64_t base, void *arg)
{
    (void)userdata;
    (void)name;
    struct walk *w = arg;
    if (!w->module((uintptr_t)base, w->arg))
        return 0;
    int n = dw.getsymtab(mod);
    for (int i = 1; i < n; i++) {
        Elf64_Sym sym;
        uint64_t addr = 0;
        const char *sname = dw.getsym_info(mod, i, &sym, &addr, NULL, NULL, NULL);
        if (!sname || !*sname || ELF64_ST_TYPE(sym.st_info) != STT_FUNC || !sym.st_size || !addr)
            continue;
        char *d = NULL;
        int status = -1;
        if (sname[0] == '_' && sname[1] == 'Z' && dw.demangle)
            d = dw.demangle(sname, NULL, NULL, &status);
        w->fn((uintptr_t)addr, (uintptr_t)(addr + sym.st_size), d && status == 0 ? d : sname, w->arg);
        free(d); /* the demangler's malloc: ours, guarded */
    }
    return 0; /* DWARF_CB_OK */
}

int track_syms_walk(int (*module)(uintptr_t base, void *arg),
                 void (*fn)(uintptr_t lo, uintptr_t hi, const char *name, void *arg), void *arg,
                 unsigned long long *adds)
{
    os_lock(&track_sym_lock);
    dwfl_refresh();
    int ok = dwfl && dw.getmodules && dw.getsymtab && dw.getsym_info;
    if (ok) {
        struct walk w = {module, fn, arg};
        dw.getmodules(dwfl, walk_module, &w, 0);
        *adds = dwfl_adds;
    }
    os_unlock(&track_sym_lock);
    return ok ? 0 : -1;
}

unsigned long long track_syms_adds(void)
{
    unsigned long long adds = 0;
    dl_iterate_phdr(adds_cb, &adds);
    return adds;
}
