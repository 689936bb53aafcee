/* Stack capture for the tracking layer.
 *
 * The fast path walks the stack one frame at a time with a rule per return address: where the
 * function keeps a frame pointer (CFA = rbp + 16, rbp saved at CFA - 16) the step is the classic
 * rbp-chain walk; where it does not (most of Debian's libraries and programs), the rule read from
 * the function's .eh_frame CFI (CFA = rsp + N, rbp saved or not) says where the return address
 * and the caller's rbp are. The rule of each return address is computed once, from the object's
 * .eh_frame_hdr (found with _dl_find_object: no lock, no allocation) and cached in a direct-mapped
 * table, so a steady-state frame costs a hash, a load and two bounded loads from the stack.
 * Every load is checked against the thread's stack bounds and must move up the stack.
 *
 * A program without a dynamic loader (cc -static) has no _dl_find_object to ask (glibc's static
 * one is set up after the first malloc, which may already be tracked): its one object is the
 * executable, whose .eh_frame_hdr (PT_GNU_EH_FRAME) track_unwind_init notes. A static link has
 * none unless linked with -Wl,--eh-frame-hdr (gcc asks for it in dynamic links only): then
 * track_unwind_init builds the same sorted table of FDEs from the executable's .eh_frame (found
 * through its section headers, exe.c). The executable's code segments are kept here too (exe.c
 * has them under track_sym_lock; rule_compute takes no lock).
 *
 * The slow path is the compiler's _Unwind_Backtrace: used when the CFI holds something the fast
 * path does not interpret (expressions: PLT stubs, signal frames), when the stack bounds are
 * unknown (an alternate signal stack, a thread that is exiting), or when _dl_find_object is
 * missing. Code without any CFI (JIT code) is walked by frame pointer, validated the same way. */
#include "track/track_int.h"

#include <dlfcn.h>
#include <link.h>
#include <string.h>
#include <unwind.h>

extern int _dl_find_object(void *, struct dl_find_object *) __attribute__((weak));
#pragma weak _Unwind_Backtrace
#pragma weak _Unwind_GetIP

/* Our own library: frames in it are the allocator's and the tracker's, not the program's; its
 * writable data is not a root of the leak scan. As a shared object (LD_PRELOAD) the library owns
 * its segments; linked into the program (the static archive, in a static program or not), the
 * program's segments hold the program too, and the library is what lies between the markers of
 * image_begin.c and image_end.c: its .text and .text.unlikely (the cold hooked paths) for code,
 * its .data and .bss for data. Set once by track_unwind_init, before tracking starts. */
#define OWN_TEXT_MAX 2
static uintptr_t own_text[OWN_TEXT_MAX][2];
static size_t own_ntext;
#define OWN_DATA_MAX 8
static uintptr_t own_data[OWN_DATA_MAX][2];
static size_t own_ndata;

struct own_find {
    uintptr_t me;  /* an address of our code */
    unsigned seen; /* objects visited: the first is the main program */
    int in_program;
};

static int own_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct own_find *f = arg;
    int mine = 0;
    f->seen++;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && f->me >= lo && f->me < lo + ph->p_memsz)
            mine = 1;
    }
    if (!mine)
        return 0;
    if (f->seen == 1) {
        f->in_program = 1;
        return 1;
    }
    uintptr_t tlo = 0, thi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (ph->p_flags & PF_X) {
            if (!tlo || lo < tlo)
                tlo = lo;
            if (hi > thi)
                thi = hi;
        }
        if ((ph->p_flags & PF_W) && own_ndata < OWN_DATA_MAX) {
            own_data[own_ndata][0] = lo & ~(uintptr_t)4095;
            own_data[own_ndata][1] = (hi + 4095) & ~(uintptr_t)4095;
            own_ndata++;
        }
    }
    own_text[0][0] = tlo;
    own_text[0][1] = thi;
    own_ntext = 1;
    return 1;
}

/* The markers (image_begin.c, image_end.c): each range runs from the first file's marker to the
 * end of the last file's (the end markers are never return addresses, nor hold pointers). */
BSL_HIDDEN int track_image_text_begin(void), track_image_cold_begin(void);
BSL_HIDDEN int track_image_text_end(void), track_image_cold_end(void);
BSL_HIDDEN extern char track_image_data_begin[1], track_image_bss_begin[1];
BSL_HIDDEN extern char track_image_data_end[1], track_image_bss_end[1];
BSL_HIDDEN extern char track_image_lbss_begin[1], track_image_lbss_end[1];

static void own_add(uintptr_t (*r)[2], size_t *n, size_t max, uintptr_t lo, uintptr_t hi)
{
    if (lo < hi && *n < max) {
        r[*n][0] = lo;
        r[*n][1] = hi;
        (*n)++;
    }
}

int track_own_code(uintptr_t pc)
{
    return (pc >= own_text[0][0] && pc < own_text[0][1]) || (pc >= own_text[1][0] && pc < own_text[1][1]);
}

size_t track_own_data(uintptr_t (*ranges)[2], size_t max)
{
    size_t n = own_ndata < max ? own_ndata : max;
    memcpy(ranges, own_data, n * sizeof(ranges[0]));
    return n;
}

/* ---- CFI rules ---- */
enum { RK_NONE = 0, RK_RSP = 1, RK_RBP = 2, RK_SLOW = 3, RK_NOFDE = 4, RK_END = 5 };
#define RB_RBP_SAVED 8u
#define RB_RBP_UNDEF 16u
/* rule word: kind (bits 0-2), flags (3-4), CFA offset (16-47), rbp save offset from CFA (48-63). */
static inline uint64_t rule_make(unsigned kind, unsigned flags, uint32_t cfa_off, int16_t rbp_off)
{
    return kind | flags | (uint64_t)cfa_off << 16 | (uint64_t)(uint16_t)rbp_off << 48;
}

#define RC_BITS 14
BSL_BIG_BSS static struct {
    uint64_t a, b; /* a = pc ^ b: a torn pair fails the check */
} rule_cache[1u << RC_BITS];

static inline size_t rc_slot(uintptr_t pc) { return (size_t)((pc * 0x9E3779B97F4A7C15ull) >> (64 - RC_BITS)); }

static uint64_t uleb(const uint8_t **p, const uint8_t *end)
{
    uint64_t v = 0;
    unsigned sh = 0;
    while (*p < end) {
        uint8_t c = *(*p)++;
        if (sh < 64)
            v |= (uint64_t)(c & 0x7f) << sh;
        sh += 7;
        if (!(c & 0x80))
            break;
    }
    return v;
}

static int64_t sleb(const uint8_t **p, const uint8_t *end)
{
    int64_t v = 0;
    unsigned sh = 0;
    uint8_t c = 0;
    while (*p < end) {
        c = *(*p)++;
        if (sh < 64)
            v |= (int64_t)((uint64_t)(c & 0x7f) << sh);
        sh += 7;
        if (!(c & 0x80))
            break;
    }
    if (sh < 64 && (c & 0x40))
        v |= -((int64_t)1 << sh);
    return v;
}

/* A little-endian integer of `size` bytes (1, 2, 4 or 8), sign-extended when `sign`: the one
 * decoder of fixed-width fields (pointer encodings, advance_loc1/2/4). -1 when it runs past end. */
static int fixed(const uint8_t **p, const uint8_t *end, unsigned size, int sign, uint64_t *v)
{
    if (end - *p < (ptrdiff_t)size)
        return -1;
    uint64_t x = 0;
    memcpy(&x, *p, size); /* little-endian: the low bytes */
    *p += size;
    if (sign && size < 8 && (x >> (size * 8 - 1) & 1))
        x |= ~(uint64_t)0 << (size * 8);
    *v = x;
    return 0;
}

/* An encoded pointer (DW_EH_PE_*). Returns -1 for encodings we do not handle. */
static int read_enc(uint8_t enc, const uint8_t **p, const uint8_t *end, uintptr_t datarel, uintptr_t *out)
{
    if (enc == 0xff)
        return -1;
    const uint8_t *q = *p;
    uintptr_t base;
    switch (enc & 0x70) {
    case 0x00: base = 0; break;
    case 0x10: base = (uintptr_t)q; break;
    case 0x30: base = datarel; break;
    default: return -1;
    }
    uint64_t v;
    /* DW_EH_PE_ low nibble: 0 absptr, 1 uleb128, 2/3/4 udata2/4/8, 9 sleb128, a/b/c sdata2/4/8 */
    unsigned form = enc & 0x0f;
    unsigned size = form == 0x02 || form == 0x0a                   ? 2
                    : form == 0x03 || form == 0x0b                 ? 4
                    : form == 0x00 || form == 0x04 || form == 0x0c ? 8
                                                                   : 0;
    if (form == 0x01)
        v = uleb(&q, end);
    else if (form == 0x09)
        v = (uint64_t)sleb(&q, end);
    else if (!size || fixed(&q, end, size, form & 8, &v) != 0)
        return -1;
    uintptr_t r = base + (uintptr_t)v;
    if (enc & 0x80) {
        if (!r)
            return -1;
        memcpy(&r, (const void *)r, sizeof(r));
    }
    *p = q;
    *out = r;
    return 0;
}

/* What we track of a CFI row: the CFA rule, and the rules of rbp and of the return address. */
enum { REG_SAME = 0, REG_OFFSET = 1, REG_UNDEF = 2, REG_BAD = 3 };
struct row {
    int cfa_reg; /* 6 (rbp), 7 (rsp), or -1 (unsupported) */
    int64_t cfa_off;
    int rbp, ra;
    int64_t rbp_off, ra_off;
};

struct cie {
    uint64_t code_align;
    int64_t data_align;
    uint64_t ra_reg;
    uint8_t fde_enc;
    int has_z, signal;
    const uint8_t *ins, *ins_end;
};

static const uint8_t *entry_bounds(const uint8_t *p, const uint8_t **end)
{
    uint32_t l32;
    memcpy(&l32, p, 4);
    p += 4;
    uint64_t len = l32;
    if (l32 == 0xffffffffu) {
        memcpy(&len, p, 8);
        p += 8;
    }
    if (len == 0 || len > (1u << 24))
        return NULL;
    *end = p + len;
    return p;
}

static int parse_cie(const uint8_t *c, struct cie *ci)
{
    const uint8_t *end;
    const uint8_t *p = entry_bounds(c, &end);
    if (!p)
        return -1;
    uint32_t id;
    memcpy(&id, p, 4);
    p += 4;
    if (id != 0)
        return -1;
    uint8_t version = *p++;
    const char *aug = (const char *)p;
    while (p < end && *p)
        p++;
    p++;
    if (aug[0] == 'e' && aug[1] == 'h')
        return -1;
    ci->code_align = uleb(&p, end);
    ci->data_align = sleb(&p, end);
    ci->ra_reg = version == 1 ? *p++ : uleb(&p, end);
    ci->fde_enc = 0; /* absptr */
    ci->has_z = aug[0] == 'z';
    ci->signal = 0;
    if (ci->has_z) {
        uint64_t alen = uleb(&p, end);
        const uint8_t *aend = p + alen;
        for (const char *a = aug + 1; *a; a++) {
            if (*a == 'R')
                ci->fde_enc = *p++;
            else if (*a == 'L')
                p++;
            else if (*a == 'P') {
                uint8_t penc = *p++;
                uintptr_t dummy;
                if (read_enc(penc & 0x7f, &p, aend, 0, &dummy) != 0)
                    return -1;
            } else if (*a == 'S')
                ci->signal = 1;
            else
                return -1;
        }
        p = aend;
    }
    ci->ins = p;
    ci->ins_end = end;
    return 0;
}

/* The rule of register reg becomes `rule` (REG_OFFSET: saved at CFA + off). Only rbp (6) and the
 * return address column matter; the other registers' rules are not needed to step. */
static void set_rule(struct row *r, const struct cie *ci, uint64_t reg, int rule, int64_t off)
{
    if (reg == 6) {
        r->rbp = rule;
        r->rbp_off = off;
    } else if (reg == ci->ra_reg) {
        r->ra = rule;
        r->ra_off = off;
    }
}

/* DW_CFA_restore: back to the CIE's initial rule. */
static void restore_rule(struct row *r, const struct cie *ci, uint64_t reg, const struct row *init)
{
    if (reg == 6)
        set_rule(r, ci, reg, init->rbp, init->rbp_off);
    else if (reg == ci->ra_reg)
        set_rule(r, ci, reg, init->ra, init->ra_off);
}

/* Run CFA instructions [p, end) from location loc, stopping once loc passes target.
 * Returns 0, or -1 on an instruction we do not interpret. */
static int run_cfi(const uint8_t *p, const uint8_t *end, const struct cie *ci, uintptr_t loc, uintptr_t target,
                   struct row *r, const struct row *init)
{
    struct row stack[8];
    int sp = 0;
    while (p < end) {
        uint8_t op = *p++;
        uint64_t reg = op & 0x3f, delta;
        /* The primary opcodes carry an operand in their low 6 bits. */
        switch (op & 0xc0) {
        case 0x40: /* advance_loc */
            delta = reg;
            goto advance;
        case 0x80: /* offset */
            set_rule(r, ci, reg, REG_OFFSET, (int64_t)uleb(&p, end) * ci->data_align);
            continue;
        case 0xc0: /* restore */
            restore_rule(r, ci, reg, init);
            continue;
        default: break;
        }
        switch (op) {
        case 0x00: continue; /* nop */
        case 0x01: {         /* set_loc */
            uintptr_t a;
            if (read_enc(ci->fde_enc, &p, end, 0, &a) != 0)
                return -1;
            loc = a;
            if (loc > target)
                return 0;
            continue;
        }
        case 0x02: /* advance_loc1, 2, 4 */
        case 0x03:
        case 0x04:
            if (fixed(&p, end, op == 0x02 ? 1 : op == 0x03 ? 2 : 4, 0, &delta) != 0)
                return -1;
            goto advance;
        case 0x05: /* offset_extended */
            reg = uleb(&p, end);
            set_rule(r, ci, reg, REG_OFFSET, (int64_t)uleb(&p, end) * ci->data_align);
            continue;
        case 0x11: /* offset_extended_sf */
            reg = uleb(&p, end);
            set_rule(r, ci, reg, REG_OFFSET, sleb(&p, end) * ci->data_align);
            continue;
        case 0x2f: /* GNU_negative_offset_extended */
            reg = uleb(&p, end);
            set_rule(r, ci, reg, REG_OFFSET, -(int64_t)uleb(&p, end) * ci->data_align);
            continue;
        case 0x06: /* restore_extended */
            restore_rule(r, ci, uleb(&p, end), init);
            continue;
        case 0x07: /* undefined */
            set_rule(r, ci, uleb(&p, end), REG_UNDEF, 0);
            continue;
        case 0x08: /* same_value */
            set_rule(r, ci, uleb(&p, end), REG_SAME, 0);
            continue;
        case 0x09: /* register */
            reg = uleb(&p, end);
            uleb(&p, end);
            set_rule(r, ci, reg, REG_BAD, 0);
            continue;
        case 0x0a: /* remember_state */
            if (sp == 8)
                return -1;
            stack[sp++] = *r;
            continue;
        case 0x0b: /* restore_state */
            if (sp == 0)
                return -1;
            *r = stack[--sp];
            continue;
        case 0x0c: /* def_cfa */
            r->cfa_reg = (int)uleb(&p, end);
            r->cfa_off = (int64_t)uleb(&p, end);
            continue;
        case 0x12: /* def_cfa_sf */
            r->cfa_reg = (int)uleb(&p, end);
            r->cfa_off = sleb(&p, end) * ci->data_align;
            continue;
        case 0x0d: /* def_cfa_register */
            r->cfa_reg = (int)uleb(&p, end);
            continue;
        case 0x0e: /* def_cfa_offset */
            r->cfa_off = (int64_t)uleb(&p, end);
            continue;
        case 0x13: /* def_cfa_offset_sf */
            r->cfa_off = sleb(&p, end) * ci->data_align;
            continue;
        case 0x0f: { /* def_cfa_expression */
            uint64_t n = uleb(&p, end);
            p += n;
            r->cfa_reg = -1;
            continue;
        }
        case 0x10:   /* expression */
        case 0x16: { /* val_expression */
            reg = uleb(&p, end);
            uint64_t n = uleb(&p, end);
            p += n;
            set_rule(r, ci, reg, REG_BAD, 0);
            continue;
        }
        case 0x14: /* val_offset */
        case 0x15: /* val_offset_sf */
            reg = uleb(&p, end);
            if (op == 0x14)
                uleb(&p, end);
            else
                sleb(&p, end);
            set_rule(r, ci, reg, REG_BAD, 0);
            continue;
        case 0x2e: /* GNU_args_size */
            uleb(&p, end);
            continue;
        default: return -1;
        }
    advance: /* every advance_loc form: the row applies up to here */
        loc += delta * ci->code_align;
        if (loc > target)
            return 0;
    }
    return 0;
}

/* ---- where the FDEs are ---- */
/* Without a dynamic loader: the executable's .eh_frame_hdr and code (set once, before tracking). */
static const uint8_t *exe_eh_hdr;
static uintptr_t exe_text[4][2];
static unsigned exe_ntext;

static void exe_segments(void)
{
    const Elf64_Phdr *ph;
    uintptr_t bias;
    size_t n = track_exe_phdrs(&ph, &bias);
    for (size_t i = 0; i < n; i++) {
        uintptr_t lo = bias + ph[i].p_vaddr;
        if (ph[i].p_type == PT_GNU_EH_FRAME)
            exe_eh_hdr = (const uint8_t *)lo;
        else if (ph[i].p_type == PT_LOAD && (ph[i].p_flags & PF_X) && exe_ntext < 4) {
            exe_text[exe_ntext][0] = lo;
            exe_text[exe_ntext][1] = lo + ph[i].p_memsz;
            exe_ntext++;
        }
    }
}

static int exe_code(uintptr_t pc)
{
    for (unsigned i = 0; i < exe_ntext; i++)
        if (pc >= exe_text[i][0] && pc < exe_text[i][1])
            return 1;
    return 0;
}

/* Without a dynamic loader nor .eh_frame_hdr: every FDE of the executable's .eh_frame by initial
 * location (track_unwind_init builds it before tracking starts; read-only after). */
struct exe_fde {
    uintptr_t pc;
    const uint8_t *fde;
};
static struct exe_fde *exe_fdes;
static size_t exe_nfde;

static void build_fde_table(void)
{
    const uint8_t *eh;
    os_lock(&track_sym_lock);
    size_t len = track_exe_eh_frame_locked(&eh);
    os_unlock(&track_sym_lock);
    const uint8_t *end = eh + len, *cie_at = NULL, *p, *next;
    struct cie ci;
    size_t n = 0, cap = 0;
    for (int pass = 0; pass < 2; pass++) { /* count, then fill */
        if (pass == 1 && !(exe_fdes = track_alloc((cap = n) * sizeof(*exe_fdes) + 1)))
            return;
        n = 0;
        for (const uint8_t *e = eh; len && end - e >= 8; e = next) {
            uint32_t l32;
            memcpy(&l32, e, 4);
            if (l32 == 0) /* the terminator */
                break;
            if (!(p = entry_bounds(e, &next)) || next > end)
                break;
            int32_t id;
            memcpy(&id, p, 4);
            if (id == 0) /* a CIE */
                continue;
            if (p - id != cie_at) {
                cie_at = p - id;
                if (parse_cie(cie_at, &ci) != 0) {
                    cie_at = NULL;
                    continue;
                }
            }
            const uint8_t *f = p + 4;
            uintptr_t begin;
            if (read_enc(ci.fde_enc, &f, next, 0, &begin) != 0 || !begin)
                continue;
            if (pass == 1 && n < cap)
                exe_fdes[n] = (struct exe_fde){begin, e};
            n++;
        }
    }
    for (size_t gap = n / 2; gap > 0; gap = gap == 2 ? 1 : gap * 5 / 11) /* Shell sort on pc */
        for (size_t i = gap; i < n; i++) {
            struct exe_fde t = exe_fdes[i];
            size_t j = i;
            for (; j >= gap && exe_fdes[j - gap].pc > t.pc; j -= gap)
                exe_fdes[j] = exe_fdes[j - gap];
            exe_fdes[j] = t;
        }
    exe_nfde = n;
}

/* The FDE that may hold target (its range is still to be checked): 0 and *fde (NULL: no FDE, the
 * frame-pointer walk then), or RK_SLOW when the tables cannot be read. */
static unsigned fde_of(uintptr_t target, const uint8_t **fde)
{
    *fde = NULL;
    const uint8_t *hdr = NULL;
    if (exe_ntext) { /* no dynamic loader: the executable is the only object with CFI */
        if (!exe_code(target))
            return 0;
        if (!exe_eh_hdr) {
            size_t lo = 0, hi = exe_nfde; /* the first entry above target */
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (exe_fdes[mid].pc <= target)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            *fde = lo ? exe_fdes[lo - 1].fde : NULL;
            return 0;
        }
        hdr = exe_eh_hdr;
    } else {
        if (!_dl_find_object)
            return RK_SLOW;
        struct dl_find_object dlfo;
        if (_dl_find_object((void *)target, &dlfo) != 0 || !dlfo.dlfo_eh_frame)
            return 0;
        hdr = dlfo.dlfo_eh_frame;
    }
    if (hdr[0] != 1 || hdr[3] != 0x3b) /* version 1, table of datarel sdata4 pairs */
        return RK_SLOW;
    const uint8_t *p = hdr + 4, *lim = hdr + 64;
    uintptr_t ehf, count;
    if (read_enc(hdr[1], &p, lim, (uintptr_t)hdr, &ehf) != 0 || read_enc(hdr[2], &p, lim, (uintptr_t)hdr, &count) != 0)
        return RK_SLOW;
    const int32_t *tab = (const int32_t *)(const void *)p;
    intptr_t rel = (intptr_t)(target - (uintptr_t)hdr);
    if (count == 0 || rel < tab[0])
        return 0;
    size_t lo = 0, hi = count; /* last entry with initial location <= target */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (tab[2 * mid] <= rel)
            lo = mid;
        else
            hi = mid;
    }
    *fde = hdr + tab[2 * lo + 1];
    return 0;
}

/* The rule for return address pc (the state just before the call, at pc - 1). */
static uint64_t rule_compute(uintptr_t pc)
{
    uintptr_t target = pc - 1;
    const uint8_t *fde, *fend;
    unsigned kind = fde_of(target, &fde);
    if (kind)
        return rule_make(kind, 0, 0, 0);
    if (!fde)
        return rule_make(RK_NOFDE, 0, 0, 0);
    const uint8_t *f = entry_bounds(fde, &fend);
    if (!f)
        return rule_make(RK_SLOW, 0, 0, 0);
    int32_t cie_off;
    memcpy(&cie_off, f, 4);
    struct cie ci;
    if (parse_cie(f - cie_off, &ci) != 0 || ci.signal)
        return rule_make(RK_SLOW, 0, 0, 0);
    f += 4;
    uintptr_t begin, range;
    if (read_enc(ci.fde_enc, &f, fend, 0, &begin) != 0 || read_enc(ci.fde_enc & 0x0f, &f, fend, 0, &range) != 0)
        return rule_make(RK_SLOW, 0, 0, 0);
    if (target < begin || target >= begin + range)
        return rule_make(RK_NOFDE, 0, 0, 0);
    if (ci.has_z) {
        uint64_t alen = uleb(&f, fend);
        f += alen;
    }
    struct row init = {-1, 0, REG_SAME, REG_SAME, 0, 0}, r;
    if (run_cfi(ci.ins, ci.ins_end, &ci, begin, (uintptr_t)-1, &init, &init) != 0)
        return rule_make(RK_SLOW, 0, 0, 0);
    r = init;
    if (run_cfi(f, fend, &ci, begin, target, &r, &init) != 0)
        return rule_make(RK_SLOW, 0, 0, 0);
    if (r.ra == REG_UNDEF)
        return rule_make(RK_END, 0, 0, 0);
    if ((r.cfa_reg != 6 && r.cfa_reg != 7) || r.cfa_off <= 0 || r.cfa_off > 0x7fffffff || r.ra != REG_OFFSET ||
        r.ra_off != -8 || r.rbp == REG_BAD || (r.rbp == REG_OFFSET && (r.rbp_off < -32768 || r.rbp_off > 32767)))
        return rule_make(RK_SLOW, 0, 0, 0);
    unsigned flags = r.rbp == REG_OFFSET ? RB_RBP_SAVED : r.rbp == REG_UNDEF ? RB_RBP_UNDEF : 0;
    return rule_make(r.cfa_reg == 7 ? RK_RSP : RK_RBP, flags, (uint32_t)r.cfa_off,
                     (int16_t)(r.rbp == REG_OFFSET ? r.rbp_off : 0));
}

static inline uint64_t rule_get(uintptr_t pc)
{
    size_t i = rc_slot(pc);
    uint64_t a = __atomic_load_n(&rule_cache[i].a, __ATOMIC_RELAXED);
    uint64_t b = __atomic_load_n(&rule_cache[i].b, __ATOMIC_RELAXED);
    if (likely((a ^ b) == pc && b))
        return b;
    b = rule_compute(pc);
    __atomic_store_n(&rule_cache[i].b, b, __ATOMIC_RELAXED);
    __atomic_store_n(&rule_cache[i].a, b ^ pc, __ATOMIC_RELAXED);
    return b;
}

/* ---- start ---- */
void track_unwind_init(void)
{
    struct own_find f = {(uintptr_t)&track_capture, 0, 0};
    if (!track_is_dynamic()) { /* one object, the program: we are in it */
        exe_segments();
        if (!exe_eh_hdr)
            build_fde_table();
        f.in_program = 1;
    } else {
        dl_iterate_phdr(own_cb, &f);
    }
    if (!f.in_program)
        return;
    own_add(own_text, &own_ntext, OWN_TEXT_MAX, (uintptr_t)&track_image_text_begin,
            (uintptr_t)&track_image_text_end + 1);
    own_add(own_text, &own_ntext, OWN_TEXT_MAX, (uintptr_t)&track_image_cold_begin,
            (uintptr_t)&track_image_cold_end + 1);
    own_add(own_data, &own_ndata, OWN_DATA_MAX, (uintptr_t)track_image_data_begin,
            (uintptr_t)track_image_data_end + 1);
    own_add(own_data, &own_ndata, OWN_DATA_MAX, (uintptr_t)track_image_bss_begin,
            (uintptr_t)track_image_bss_end + 1);
    own_add(own_data, &own_ndata, OWN_DATA_MAX, (uintptr_t)track_image_lbss_begin,
            (uintptr_t)track_image_lbss_end + 1);
}

/* ---- the slow path ---- */
struct ub_state {
    uintptr_t *out;
    unsigned n, max, skipping;
};

static _Unwind_Reason_Code ub_cb(struct _Unwind_Context *ctx, void *arg)
{
    struct ub_state *s = arg;
    uintptr_t ip = (uintptr_t)_Unwind_GetIP(ctx);
    if (!ip)
        return _URC_END_OF_STACK;
    if (s->skipping) {
        if (track_own_code(ip))
            return _URC_NO_REASON;
        s->skipping = 0;
    }
    s->out[s->n++] = ip;
    return s->n >= s->max ? _URC_END_OF_STACK : _URC_NO_REASON;
}

static __attribute__((noinline)) unsigned capture_slow(uintptr_t *out, unsigned max)
{
    if (!_Unwind_Backtrace || !_Unwind_GetIP)
        return 0;
    struct ub_state s = {out, 0, max, 1};
    _Unwind_Backtrace(ub_cb, &s);
    return s.n;
}

/* ---- the fast path ---- */
/* One step up the stack with the rule of pc. 0: done a step; 1: the end of the stack (or a frame
 * that fails validation); 2: a frame only the slow unwinder can step over. */
static inline int step(uintptr_t *pc, uintptr_t *sp, uintptr_t *fp, uintptr_t hi)
{
    uint64_t r = rule_get(*pc);
    unsigned kind = r & 7;
    uintptr_t cfa, ra, nfp;
    if (likely(kind == RK_RSP || kind == RK_RBP)) {
        if (kind == RK_RBP && (*fp < *sp || *fp >= hi))
            return 1;
        cfa = (kind == RK_RSP ? *sp : *fp) + (uint32_t)(r >> 16);
        if (cfa <= *sp || cfa > hi || (cfa & 7))
            return 1;
        ra = ((const uintptr_t *)cfa)[-1];
        if (r & RB_RBP_SAVED) {
            uintptr_t at = cfa + (int16_t)(r >> 48);
            if (at < *sp || at + 8 > hi)
                return 1;
            nfp = *(const uintptr_t *)at;
        } else {
            nfp = (r & RB_RBP_UNDEF) ? 0 : *fp;
        }
    } else if (kind == RK_NOFDE) {
        if (*fp < *sp || *fp + 16 > hi || (*fp & 7))
            return 1;
        cfa = *fp + 16;
        ra = ((const uintptr_t *)*fp)[1];
        nfp = ((const uintptr_t *)*fp)[0];
    } else if (kind == RK_END) {
        return 1;
    } else {
        return 2;
    }
    if (!ra)
        return 1;
    *pc = ra;
    *sp = cfa;
    *fp = nfp;
    return 0;
}

/* The memo: the levels (return address, stack address just above its slot) of the thread's
 * previous capture, own frames included. A level of the new walk that has the same return address
 * at the same stack address is the same frame of the same function, so every level above it sits
 * where it sat before (a frame's position follows from its function, its pc and its sp); checking
 * that each of those slots still holds the recorded return address (independent loads, no rules
 * to look up) proves the rest of the stack unchanged. A loop that allocates from one place thus
 * costs one load per level, and when the whole stack matches, the site is known too. */
__attribute__((noinline)) unsigned track_capture(uintptr_t *out, unsigned max, uintptr_t lo, uintptr_t hi,
                                               struct track_memo *m, int *same)
{
    uintptr_t *fr = __builtin_frame_address(0);
    uintptr_t sp0 = (uintptr_t)fr;
    *same = 0;
    if (!hi || sp0 < lo || sp0 >= hi) {
        if (m)
            m->n = 0;
        return capture_slow(out, max);
    }
    uintptr_t pc = fr[1], sp = (uintptr_t)(fr + 2), fp = fr[0];
    /* The common case first: the very same stack as the previous capture (a loop). Every recorded
     * slot lies above sp and below the stack top, so the loads need no bounds checks; the frames
     * are not copied: the caller reuses the previous site. */
    if (m && m->n && m->sp[0] == sp && m->pc[0] == pc && m->n <= max + m->nown) {
        unsigned k = 1;
        while (k < m->n && ((const uintptr_t *)m->sp[k])[-1] == m->pc[k])
            k++;
        if (k == m->n) {
            *same = 1;
            return m->n - m->nown;
        }
    }
    uintptr_t lpc[TRACK_MEMO_MAX], lsp[TRACK_MEMO_MAX];
    unsigned L = 0, n = 0, nown = 0, owning = 1, complete = 0, j = 0;
    for (;;) {
        if (owning && !track_own_code(pc))
            owning = 0;
        nown += owning;
        lpc[L] = pc;
        lsp[L] = sp;
        L++;
        if (!owning)
            out[n++] = pc;
        if (n >= max)
            break;
        if (m && m->n) {
            while (j < m->n && m->sp[j] < sp)
                j++;
            if (j < m->n && m->sp[j] == sp && m->pc[j] == pc) {
                unsigned k = j + 1, add = 0;
                for (; k < m->n; k++) {
                    uintptr_t a = m->sp[k];
                    if (a - 8 < sp || a > hi || ((const uintptr_t *)a)[-1] != m->pc[k])
                        break;
                    add += k >= m->nown;
                }
                if (k == m->n && (m->complete || n + add >= max)) {
                    for (k = j + 1; k < m->n && L < TRACK_MEMO_MAX; k++) {
                        if (k >= m->nown) {
                            if (n >= max)
                                break;
                            out[n++] = m->pc[k];
                        }
                        lpc[L] = m->pc[k];
                        lsp[L] = m->sp[k];
                        L++;
                    }
                    complete = m->complete && k == m->n;
                    memcpy(m->pc, lpc, L * sizeof(uintptr_t));
                    memcpy(m->sp, lsp, L * sizeof(uintptr_t));
                    m->nown = nown + (j + 1 < m->nown ? m->nown - (j + 1) : 0);
                    m->n = L;
                    m->complete = complete;
                    return n;
                }
            }
        }
        if (L >= TRACK_MEMO_MAX)
            break;
        int r = step(&pc, &sp, &fp, hi);
        if (r == 1) {
            complete = 1;
            break;
        }
        if (r == 2) {
            if (m)
                m->n = 0;
            return capture_slow(out, max);
        }
    }
    if (m) {
        memcpy(m->pc, lpc, L * sizeof(uintptr_t));
        memcpy(m->sp, lsp, L * sizeof(uintptr_t));
        m->n = L;
        m->nown = nown;
        m->complete = complete;
    }
    return n;
}
