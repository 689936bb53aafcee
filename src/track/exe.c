/* The executable's own image, for a program without a dynamic loader (cc -static with the
 * archive): its program headers (from the auxiliary vector), its RELRO data (a root of the leak
 * scan), and function names from its ELF symbol table: there neither libdw (dlopen) nor dladdr1
 * can be had, and every return address but the vDSO's lies in the executable. syms.c asks here
 * for names in such programs, unwind.c for code and .eh_frame, the leak scan for RELRO.
 *
 * /proc/self/exe is read with pread into the tracker's memory (track_alloc: the allocator's own
 * pages, never the public malloc): its section headers, then .symtab (.dynsym when stripped) and
 * its string table. The function symbols (with a size) are kept sorted by address, aliases
 * reduced to one name (a global one, and one without a leading '_', when there is a choice);
 * names point into the kept string table. Offsets are from the load bias (0 for a non-PIE
 * executable), what addr2line expects, so `buddyslab report` can add file:line offline.
 * The same reading finds the executable's .eh_frame for unwind.c: a static link has no
 * .eh_frame_hdr unless asked for (gcc passes --eh-frame-hdr to dynamic links only).
 *
 * Locking: the symbol table and .eh_frame are read with syms.c's track_sym_lock held (the _locked
 * functions), once, on the first question, and never change after; the program headers need none. */
#include "track/track_int.h"

#include <string.h>
#include <sys/auxv.h>

struct efunc {
    uintptr_t lo;  /* st_value: the link-time address */
    uint32_t size; /* st_size, clamped */
    uint32_t name; /* offset into strtab */
    uint8_t rank;  /* for aliases: higher is preferred */
};

static struct {
    int tried, ok;
    uintptr_t bias;                   /* load bias */
    uintptr_t text[4][2];             /* the executable's code segments, runtime addresses */
    unsigned ntext;
    struct efunc *f;                  /* sorted by lo, one per address */
    size_t n;
    const char *strtab;
    uintptr_t eh_frame;               /* runtime address of .eh_frame (0: none) */
    size_t eh_frame_size;
} exe;

static void exe_segments(void)
{
    const Elf64_Phdr *ph;
    size_t n = track_exe_phdrs(&ph, &exe.bias);
    for (size_t i = 0; i < n && exe.ntext < 4; i++)
        if (ph[i].p_type == PT_LOAD && (ph[i].p_flags & PF_X)) {
            exe.text[exe.ntext][0] = exe.bias + ph[i].p_vaddr;
            exe.text[exe.ntext][1] = exe.bias + ph[i].p_vaddr + ph[i].p_memsz;
            exe.ntext++;
        }
}

static void *read_at(int fd, uint64_t off, size_t n)
{
    void *b = track_alloc(n + 1); /* +1: a string table read whole stays NUL-terminated */
    if (b && os_pread(fd, b, n, off) != (long)n) {
        track_free(b);
        return NULL;
    }
    return b;
}

/* Heap sort by (lo, then rank descending): no recursion, no libc qsort (which may allocate). */
static int before(const struct efunc *a, const struct efunc *b)
{
    return a->lo < b->lo || (a->lo == b->lo && a->rank > b->rank);
}

static void sift(struct efunc *v, size_t i, size_t n)
{
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            return;
        if (c + 1 < n && before(&v[c], &v[c + 1]))
            c++;
        if (!before(&v[i], &v[c]))
            return;
        struct efunc t = v[i];
        v[i] = v[c];
        v[c] = t;
        i = c;
    }
}

static void sort_funcs(struct efunc *v, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        sift(v, i, n);
    for (size_t k = n; k-- > 1;) {
        struct efunc t = v[0];
        v[0] = v[k];
        v[k] = t;
        sift(v, 0, k);
    }
}

static void load_locked(void)
{
    bsl_assert_locked(&track_sym_lock);
    exe.tried = 1;
    exe_segments();
    int fd = os_open_read("/proc/self/exe");
    if (fd < 0)
        return;
    Elf64_Ehdr eh;
    Elf64_Shdr *sh = NULL;
    Elf64_Sym *sym = NULL;
    if (os_pread(fd, &eh, sizeof(eh), 0) != (long)sizeof(eh) || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
        eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_shentsize != sizeof(Elf64_Shdr) || !eh.e_shnum)
        goto out;
    sh = read_at(fd, eh.e_shoff, (size_t)eh.e_shnum * sizeof(Elf64_Shdr));
    if (!sh)
        goto out;
    if (eh.e_shstrndx < eh.e_shnum) { /* .eh_frame, found by name */
        const Elf64_Shdr *ns = &sh[eh.e_shstrndx];
        char *names = read_at(fd, ns->sh_offset, ns->sh_size);
        if (names)
            names[ns->sh_size] = 0;
        for (unsigned i = 0; names && i < eh.e_shnum; i++)
            if (sh[i].sh_type == SHT_PROGBITS && sh[i].sh_addr && sh[i].sh_name < ns->sh_size &&
                strcmp(names + sh[i].sh_name, ".eh_frame") == 0) {
                exe.eh_frame = exe.bias + sh[i].sh_addr;
                exe.eh_frame_size = sh[i].sh_size;
            }
        track_free(names);
    }
    const Elf64_Shdr *st = NULL;
    for (unsigned i = 0; i < eh.e_shnum; i++)
        if (sh[i].sh_type == SHT_SYMTAB || (sh[i].sh_type == SHT_DYNSYM && !st))
            st = &sh[i];
    if (!st || st->sh_link >= eh.e_shnum || st->sh_entsize != sizeof(Elf64_Sym))
        goto out;
    const Elf64_Shdr *ss = &sh[st->sh_link];
    size_t nsym = st->sh_size / sizeof(Elf64_Sym);
    sym = read_at(fd, st->sh_offset, nsym * sizeof(Elf64_Sym));
    char *strtab = read_at(fd, ss->sh_offset, ss->sh_size);
    exe.f = track_alloc((nsym ? nsym : 1) * sizeof(struct efunc));
    if (!sym || !strtab || !exe.f) {
        track_free(strtab);
        track_free(exe.f);
        exe.f = NULL;
        goto out;
    }
    strtab[ss->sh_size] = 0;
    size_t n = 0;
    for (size_t i = 1; i < nsym; i++) {
        const Elf64_Sym *y = &sym[i];
        unsigned type = ELF64_ST_TYPE(y->st_info), bind = ELF64_ST_BIND(y->st_info);
        if ((type != STT_FUNC && type != STT_GNU_IFUNC) || y->st_shndx == SHN_UNDEF || !y->st_value ||
            !y->st_size || y->st_name >= ss->sh_size || !strtab[y->st_name])
            continue;
        uint8_t rank = (uint8_t)((bind != STB_LOCAL) * 2 + (strtab[y->st_name] != '_'));
        exe.f[n++] = (struct efunc){(uintptr_t)y->st_value, y->st_size > UINT32_MAX ? UINT32_MAX : (uint32_t)y->st_size,
                                    y->st_name, rank};
    }
    sort_funcs(exe.f, n);
    size_t k = 0; /* one entry per address: the best-ranked alias sorts first */
    for (size_t i = 0; i < n; i++)
        if (!k || exe.f[k - 1].lo != exe.f[i].lo)
            exe.f[k++] = exe.f[i];
    exe.n = k;
    exe.strtab = strtab;
    exe.ok = 1;
out:
    track_free(sym);
    track_free(sh);
    os_close(fd);
}

int track_exe_has_locked(uintptr_t pc)
{
    bsl_assert_locked(&track_sym_lock);
    if (!exe.tried)
        load_locked();
    for (unsigned i = 0; i < exe.ntext; i++)
        if (pc >= exe.text[i][0] && pc < exe.text[i][1])
            return 1;
    return 0;
}

uintptr_t track_exe_bias_locked(void)
{
    bsl_assert_locked(&track_sym_lock);
    if (!exe.tried)
        load_locked();
    return exe.bias;
}

size_t track_exe_eh_frame_locked(const uint8_t **start)
{
    bsl_assert_locked(&track_sym_lock);
    if (!exe.tried)
        load_locked();
    *start = (const uint8_t *)exe.eh_frame;
    return exe.eh_frame ? exe.eh_frame_size : 0;
}

const char *track_exe_func_locked(uintptr_t a)
{
    bsl_assert_locked(&track_sym_lock);
    if (!exe.tried)
        load_locked();
    if (!exe.ok || a < exe.bias)
        return NULL;
    uintptr_t v = a - exe.bias;
    size_t lo = 0, hi = exe.n; /* the first entry above v */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (exe.f[mid].lo <= v)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (!lo || v >= exe.f[lo - 1].lo + exe.f[lo - 1].size)
        return NULL;
    return exe.strtab + exe.f[lo - 1].name;
}

void *track_exe_function(const char *name)
{
    if (track_is_dynamic())
        return NULL;
    void *r = NULL;
    os_lock(&track_sym_lock);
    if (!exe.tried)
        load_locked();
    for (size_t i = 0; exe.ok && i < exe.n && !r; i++)
        if (strcmp(exe.strtab + exe.f[i].name, name) == 0)
            r = (void *)(exe.bias + exe.f[i].lo);
    os_unlock(&track_sym_lock);
    return r;
}

/* The main program's program headers, from the auxiliary vector: in a static program the first
 * malloc runs before libc has made its link map (inside _dl_non_dynamic_init), and until then
 * dl_iterate_phdr reports nothing. The load bias: where the ELF header is (the linker's
 * __ehdr_start: we are linked into the executable) less the address of the segment that maps it
 * (file offset 0); 0 for a non-PIE executable, the load address for a static-pie one (which has
 * no PT_PHDR to compare AT_PHDR with). */
extern const char __ehdr_start[] __attribute__((weak, visibility("hidden")));

size_t track_exe_phdrs(const Elf64_Phdr **phdr, uintptr_t *bias)
{
    const Elf64_Phdr *ph = (const Elf64_Phdr *)getauxval(AT_PHDR);
    size_t n = ph ? (size_t)getauxval(AT_PHNUM) : 0;
    *bias = 0;
    for (size_t i = 0; i < n; i++)
        if (ph[i].p_type == PT_LOAD && ph[i].p_offset == 0 && __ehdr_start)
            *bias = (uintptr_t)__ehdr_start - ph[i].p_vaddr;
    *phdr = ph;
    return n;
}

/* A program without a dynamic loader: libc's start-up allocates (_dl_non_dynamic_init: the
 * library search path, _dl_find_object's tables) before it write-protects the program's RELRO
 * data, where it keeps those blocks; the leak scan takes only writable mappings as roots, so it is
 * told of this one. [*lo, *hi) and 1, or 0 (a dynamic program: the loader allocates there with
 * its own allocator, and relocation is done before the program's first malloc). */
int track_static_relro(uintptr_t *lo, uintptr_t *hi)
{
    if (track_is_dynamic())
        return 0;
    const Elf64_Phdr *ph;
    uintptr_t bias;
    size_t n = track_exe_phdrs(&ph, &bias);
    for (size_t i = 0; i < n; i++)
        if (ph[i].p_type == PT_GNU_RELRO) {
            *lo = bias + ph[i].p_vaddr;
            *hi = *lo + ph[i].p_memsz;
            return 1;
        }
    return 0;
}
