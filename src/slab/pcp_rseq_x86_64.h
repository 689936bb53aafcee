/* Per-CPU cache operations as restartable sequences, x86-64 (included by pcp.h only).
 *
 * Each operation publishes its struct rseq_cs in this thread's struct rseq (thread pointer +
 * bsl_rseq_tp_off), then runs a critical section [start, end) whose only store visible to other
 * threads is the last one, which commits the bin's new count. If the kernel preempts, migrates or
 * signals the thread inside the section, it resumes at the abort handler (in section
 * .text.unlikely.bsl_rseq_abort, preceded by glibc's RSEQ_SIG), which starts the sequence over.
 * The kernel reads the signature more often than it aborts: whenever it returns to a thread whose
 * rseq_cs is set (after any preemption, signal or migration once the thread has run a sequence),
 * before it looks at the instruction pointer. So the handlers must sit in text every process has
 * mapped anyway: .text.unlikely.* is the head of the text (the linker's default script), the
 * window of start-up code (src/meson.build). Named .text.bsl_rseq_abort, the section stayed whole
 * in the prelinked object and landed after all of its text, the library's last page: one more
 * page resident in every process and a fault in each fork child (librseq's name,
 * __rseq_failure, is an orphan section that lands there too). Every input
 * stays in its register across a restart; only the scratch outputs are rewritten.
 *
 * Offsets and sizes come from pcp_layout.h as strings (struct rseq's cpu_id and rseq_cs, struct
 * pcp_bin's fields, PCP_MAX_CID, PCP_SHIFT), where they are checked against the structs.
 */
#ifndef BSL_PCP_RSEQ_X86_64_H
#define BSL_PCP_RSEQ_X86_64_H

#include "slab/pcp_layout.h"

#define PCP_HAVE_RSEQ 1

/* Operands "off(%[bin])" for struct pcp_bin's fields. */
#define PCP_BIN_TOP_S PCP_STR(PCP_BIN_TOP) "(%[bin])"
#define PCP_BIN_BASE_S PCP_STR(PCP_BIN_BASE_LO) "(%[bin])"
#define PCP_BIN_END_S PCP_STR(PCP_BIN_END_LO) "(%[bin])"

/* The descriptor, the abort handler, and the section prologue: when it falls through, %[bin] is
 * &pcp_cpus[cid].bins[c]; it jumps to FAIL (a local label, or an asm goto operand) when rseq is not
 * live or the id is too big. */
#define PCP_RSEQ_ENTER PCP_RSEQ_ENTER_TO(".Lfail%=")
#define PCP_RSEQ_ENTER_TO(FAIL)                                                                    \
    ".pushsection .data.rel.ro, \"aw\"\n"                                                          \
    ".p2align 5\n"                                                                                 \
    ".Lcs%=: .long 0, 0\n"                              /* version, flags */                      \
    ".quad .Lstart%=, .Lend%= - .Lstart%=, .Labort%=\n" /* start, post_commit_offset, abort */    \
    ".popsection\n"                                                                                \
    ".pushsection .text.unlikely.bsl_rseq_abort, \"ax\"\n"                                         \
    ".long " PCP_STR(PCP_RSEQ_SIG) "\n"                                                            \
    ".Labort%=: jmp .Lrestart%=\n"                                                                 \
    ".popsection\n"                                                                                \
    ".Lrestart%=:\n"                                                                               \
    "mov %[tpoff], %[t]\n"           /* t = bsl_rseq_tp_off */                                    \
    "lea .Lcs%=(%%rip), %[bin]\n"                                                                  \
    "mov %[bin], %%fs:" PCP_STR(RSEQ_OFF_RSEQ_CS) "(%[t])\n"     /* rseq->rseq_cs = &cs */                                    \
    ".Lstart%=:\n"                                                                                 \
    "mov %%fs:" PCP_STR(RSEQ_OFF_CPU_ID) "(%[t]), %k[bin]\n"    /* if ((int)rseq->cpu_id < 0) fail */                        \
    "test %k[bin], %k[bin]\n"                                                                      \
    "js " FAIL "\n"                                                                                 \
    "mov %[cidoff], %[t]\n"          /* cid = rseq->mm_cid (or cpu_id) */                         \
    "mov %%fs:(%[t]), %k[bin]\n"                                                                   \
    "cmp $" PCP_STR(PCP_MAX_CID) ", %k[bin]\n"           /* if (cid >= PCP_MAX_CID) fail */                           \
    "jae " FAIL "\n"                                                                                \
    "shl $" PCP_STR(PCP_SHIFT) ", %[bin]\n"              /* bin = &pcp_cpus[cid].bins[c] */                           \
    "add %[binoff], %[bin]\n"

/* The two offsets are memory operands, read into the scratch registers inside the sequence (again
 * after a restart): the sequence then holds only bin, t, the bin offset and its own operands in
 * registers, and the callers' fast paths keep their values in call-clobbered registers (no frame). */
#define PCP_RSEQ_INPUTS(c)                                                                         \
    [tpoff] "m"(bsl_rseq_tp_off), [cidoff] "m"(bsl_rseq_cid_off),                                 \
        [binoff] "r"((uintptr_t)pcp_cpus + (uintptr_t)(c) * sizeof(struct pcp_bin))

/* Pop the top object of bin c of this CPU's cache; NULL when empty or there is no cache. The
 * failure exits jump straight to the caller's slow path (asm goto): the success path carries no
 * flag to test afterwards, and a bin never holds NULL, which the compiler is told. */
static inline void *pcp_rseq_pop(unsigned c)
{
    void *ret;
    uintptr_t bin, t;
    __asm__ volatile goto(PCP_RSEQ_ENTER_TO("%l[fail]")
                 "mov " PCP_BIN_TOP_S ", %[t]\n"    /* t = bin->top */
                 "cmp " PCP_BIN_BASE_S ", %k[t]\n"  /* if (lo32(t) <= bin->base_lo) fail: empty, stopped */
                 "jbe %l[fail]\n"
                 "mov -8(%[t]), %[ret]\n"  /* ret = t[-1] */
                 "sub $8, %[t]\n"
                 "mov %[t], " PCP_BIN_TOP_S "\n"    /* commit: bin->top = t - 1 */
                 ".Lend%=:\n"
                 : [ret] "=&r"(ret), [bin] "=&r"(bin), [t] "=&r"(t)
                 : PCP_RSEQ_INPUTS(c)
                 : "memory", "cc"
                 : fail);
    if (!ret)
        __builtin_unreachable();
    return ret;
fail:
    return NULL;
}

/* Push p onto bin c of this CPU's cache: 1, or 0 when the bin is full or there is no cache. */
static inline int pcp_rseq_push(void *p, unsigned c)
{
    uintptr_t bin, t;
    __asm__ volatile goto(PCP_RSEQ_ENTER_TO("%l[fail]")
                 "mov " PCP_BIN_TOP_S ", %[t]\n"     /* t = bin->top */
                 "cmp " PCP_BIN_END_S ", %k[t]\n"  /* if (lo32(t) >= bin->end_lo) fail: full, stopped */
                 "jae %l[fail]\n"
                 "mov %[p], (%[t])\n"       /* *t = p: invisible until the commit */
                 "add $8, %[t]\n"
                 "mov %[t], " PCP_BIN_TOP_S "\n"     /* commit: bin->top = t + 1 */
                 ".Lend%=:\n"
                 : [bin] "=&r"(bin), [t] "=&r"(t)
                 : [p] "r"(p), PCP_RSEQ_INPUTS(c)
                 : "memory", "cc"
                 : fail);
    return 1;
fail:
    return 0;
}

/* Move the top k = min(n, count) objects of bin c to out[0, k); returns k. */
static inline unsigned pcp_rseq_pop_bulk(void **out, unsigned n, unsigned c)
{
    uintptr_t bin, k, t, i, tmp;
    __asm__ volatile(PCP_RSEQ_ENTER
                     "mov " PCP_BIN_TOP_S ", %[t]\n"     /* t = bin->top */
                     "mov %k[t], %k[k]\n"       /* k = min(n, (lo32(t) - base_lo) / 8) */
                     "sub " PCP_BIN_BASE_S ", %k[k]\n"
                     "jbe .Lfail%=\n"           /* empty, or stopped (base_lo above t) */
                     "shr $3, %k[k]\n"
                     "cmp %k[nn], %k[k]\n"
                     "jbe 1f\n"
                     "mov %k[nn], %k[k]\n"
                     "1: test %k[k], %k[k]\n"
                     "jz .Lfail%=\n"
                     "shl $3, %[k]\n"
                     "sub %[k], %[t]\n"         /* t -= k */
                     "shr $3, %[k]\n"
                     "xor %k[i], %k[i]\n"
                     "2: mov (%[t], %[i], 8), %[tmp]\n" /* out[i] = t[i] for i < k */
                     "mov %[tmp], (%[out], %[i], 8)\n"
                     "add $1, %k[i]\n"
                     "cmp %k[k], %k[i]\n"
                     "jb 2b\n"
                     "mov %[t], " PCP_BIN_TOP_S "\n"     /* commit: bin->top = t */
                     ".Lend%=:\n"
                     "jmp .Ldone%=\n"
                     ".Lfail%=: xor %k[k], %k[k]\n"
                     ".Ldone%=:\n"
                     : [k] "=&r"(k), [bin] "=&r"(bin), [t] "=&r"(t), [i] "=&r"(i), [tmp] "=&r"(tmp)
                     : [out] "r"(out), [nn] "r"(n), PCP_RSEQ_INPUTS(c)
                     : "memory", "cc");
    return (unsigned)k;
}

/* Push in[0, k) with k = min(n, room) onto bin c; returns k. */
static inline unsigned pcp_rseq_push_bulk(void *const *in, unsigned n, unsigned c)
{
    uintptr_t bin, k, t, i, tmp;
    __asm__ volatile(PCP_RSEQ_ENTER
                     "mov " PCP_BIN_TOP_S ", %[t]\n"     /* t = bin->top */
                     "mov " PCP_BIN_END_S ", %k[k]\n"  /* k = min(n, (end_lo - lo32(t)) / 8) */
                     "sub %k[t], %k[k]\n"
                     "jbe .Lfail%=\n"           /* full, or stopped (end_lo below t) */
                     "shr $3, %k[k]\n"
                     "cmp %k[nn], %k[k]\n"
                     "jbe 1f\n"
                     "mov %k[nn], %k[k]\n"
                     "1: test %k[k], %k[k]\n"
                     "jz .Lfail%=\n"
                     "xor %k[i], %k[i]\n"
                     "2: mov (%[in], %[i], 8), %[tmp]\n" /* t[i] = in[i] for i < k */
                     "mov %[tmp], (%[t], %[i], 8)\n"
                     "add $1, %k[i]\n"
                     "cmp %k[k], %k[i]\n"
                     "jb 2b\n"
                     "lea (%[t], %[k], 8), %[t]\n"
                     "mov %[t], " PCP_BIN_TOP_S "\n"     /* commit: bin->top = t + k */
                     ".Lend%=:\n"
                     "jmp .Ldone%=\n"
                     ".Lfail%=: xor %k[k], %k[k]\n"
                     ".Ldone%=:\n"
                     : [k] "=&r"(k), [bin] "=&r"(bin), [t] "=&r"(t), [i] "=&r"(i), [tmp] "=&r"(tmp)
                     : [in] "r"(in), [nn] "r"(n), PCP_RSEQ_INPUTS(c)
                     : "memory", "cc");
    return (unsigned)k;
}

#endif
