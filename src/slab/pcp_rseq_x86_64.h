/* Per-CPU cache operations as restartable sequences, x86-64 (included by pcp.h only).
 *
 * Each operation publishes its struct rseq_cs in this thread's struct rseq (thread pointer +
 * bsl_rseq_tp_off), then runs a critical section [start, end) whose only store visible to other
 * threads is the last one, which commits the bin's new count. If the kernel preempts, migrates or
 * signals the thread inside the section, it resumes at the abort handler (in section
 * __rseq_failure, preceded by glibc's RSEQ_SIG), which starts the sequence over. Every input
 * stays in its register across a restart; only the scratch outputs are rewritten.
 *
 * struct rseq: cpu_id at 4 (negative while unregistered), rseq_cs at 8. struct pcp_bin (16
 * bytes): count at 0, cap at 4, slots at 8. pcp_cpus: PCP_MAX_CID caches of 1 << PCP_SHIFT bytes.
 */
#ifndef BSL_PCP_RSEQ_X86_64_H
#define BSL_PCP_RSEQ_X86_64_H

#define PCP_HAVE_RSEQ 1

/* The descriptor, the abort handler, and the section prologue: when it falls through, %[bin] is
 * &pcp_cpus[cid].bins[c]; it jumps to .Lfail%= when rseq is not live or the id is too big. */
#define PCP_RSEQ_ENTER                                                                             \
    ".pushsection .data.rel.ro, \"aw\"\n"                                                          \
    ".p2align 5\n"                                                                                 \
    ".Lcs%=: .long 0, 0\n"                              /* version, flags */                      \
    ".quad .Lstart%=, .Lend%= - .Lstart%=, .Labort%=\n" /* start, post_commit_offset, abort */    \
    ".popsection\n"                                                                                \
    ".pushsection __rseq_failure, \"ax\"\n"                                                        \
    ".long 0x53053053\n" /* RSEQ_SIG */                                                            \
    ".Labort%=: jmp .Lrestart%=\n"                                                                 \
    ".popsection\n"                                                                                \
    ".Lrestart%=:\n"                                                                               \
    "lea .Lcs%=(%%rip), %[bin]\n"                                                                  \
    "mov %[bin], %%fs:8(%[tpoff])\n" /* rseq->rseq_cs = &cs */                                    \
    ".Lstart%=:\n"                                                                                 \
    "mov %%fs:4(%[tpoff]), %k[bin]\n" /* if ((int)rseq->cpu_id < 0) fail */                       \
    "test %k[bin], %k[bin]\n"                                                                      \
    "js .Lfail%=\n"                                                                                \
    "mov %%fs:(%[cidoff]), %k[bin]\n" /* cid = rseq->mm_cid (or cpu_id) */                         \
    "cmp $1024, %k[bin]\n"            /* if (cid >= PCP_MAX_CID) fail */                           \
    "jae .Lfail%=\n"                                                                               \
    "shl $10, %[bin]\n"              /* bin = &pcp_cpus[cid].bins[c] */                           \
    "add %[binoff], %[bin]\n"

#define PCP_RSEQ_INPUTS(c)                                                                         \
    [tpoff] "r"(bsl_rseq_tp_off), [cidoff] "r"(bsl_rseq_cid_off),                                 \
        [binoff] "r"((uintptr_t)pcp_cpus + (uintptr_t)(c) * sizeof(struct pcp_bin))

/* Pop the top object of bin c of this CPU's cache; NULL when empty or there is no cache. */
static inline void *pcp_rseq_pop(unsigned c)
{
    void *ret;
    uintptr_t bin, n;
    __asm__ volatile(PCP_RSEQ_ENTER
                     "mov (%[bin]), %k[n]\n" /* n = bin->count; if (n == 0) fail */
                     "test %k[n], %k[n]\n"
                     "jz .Lfail%=\n"
                     "sub $1, %k[n]\n"
                     "mov 8(%[bin]), %[ret]\n"
                     "mov (%[ret], %[n], 8), %[ret]\n" /* ret = bin->slots[n - 1] */
                     "mov %k[n], (%[bin])\n"           /* commit: bin->count = n - 1 */
                     ".Lend%=:\n"
                     "jmp .Ldone%=\n"
                     ".Lfail%=: xor %k[ret], %k[ret]\n"
                     ".Ldone%=:\n"
                     : [ret] "=&r"(ret), [bin] "=&r"(bin), [n] "=&r"(n)
                     : PCP_RSEQ_INPUTS(c)
                     : "memory", "cc");
    return ret;
}

/* Push p onto bin c of this CPU's cache: 1, or 0 when the bin is full or there is no cache. */
static inline int pcp_rseq_push(void *p, unsigned c)
{
    int ok;
    uintptr_t bin, n, slots;
    __asm__ volatile(PCP_RSEQ_ENTER
                     "mov (%[bin]), %k[n]\n" /* n = bin->count; if (n >= bin->cap) fail */
                     "cmp 4(%[bin]), %k[n]\n"
                     "jae .Lfail%=\n"
                     "mov 8(%[bin]), %[slots]\n"
                     "mov %[p], (%[slots], %[n], 8)\n" /* bin->slots[n] = p: invisible until commit */
                     "add $1, %k[n]\n"
                     "mov %k[n], (%[bin])\n" /* commit: bin->count = n + 1 */
                     ".Lend%=:\n"
                     "mov $1, %[ok]\n"
                     "jmp .Ldone%=\n"
                     ".Lfail%=: xor %[ok], %[ok]\n"
                     ".Ldone%=:\n"
                     : [ok] "=&r"(ok), [bin] "=&r"(bin), [n] "=&r"(n), [slots] "=&r"(slots)
                     : [p] "r"(p), PCP_RSEQ_INPUTS(c)
                     : "memory", "cc");
    return ok;
}

/* Move the top k = min(n, count) objects of bin c to out[0, k); returns k. */
static inline unsigned pcp_rseq_pop_bulk(void **out, unsigned n, unsigned c)
{
    uintptr_t bin, k, first, src, i, tmp;
    __asm__ volatile(PCP_RSEQ_ENTER
                     "mov (%[bin]), %k[first]\n" /* cnt = bin->count; k = min(n, cnt) */
                     "mov %k[nn], %k[k]\n"
                     "cmp %k[first], %k[k]\n"
                     "jbe 1f\n"
                     "mov %k[first], %k[k]\n"
                     "1: test %k[k], %k[k]\n"
                     "jz .Lfail%=\n"
                     "sub %k[k], %k[first]\n" /* first = cnt - k */
                     "mov 8(%[bin]), %[src]\n"
                     "lea (%[src], %[first], 8), %[src]\n"
                     "xor %k[i], %k[i]\n"
                     "2: mov (%[src], %[i], 8), %[tmp]\n" /* out[i] = slots[first + i] */
                     "mov %[tmp], (%[out], %[i], 8)\n"
                     "add $1, %k[i]\n"
                     "cmp %k[k], %k[i]\n"
                     "jb 2b\n"
                     "mov %k[first], (%[bin])\n" /* commit: bin->count = first */
                     ".Lend%=:\n"
                     "jmp .Ldone%=\n"
                     ".Lfail%=: xor %k[k], %k[k]\n"
                     ".Ldone%=:\n"
                     : [k] "=&r"(k), [bin] "=&r"(bin), [first] "=&r"(first), [src] "=&r"(src), [i] "=&r"(i),
                       [tmp] "=&r"(tmp)
                     : [out] "r"(out), [nn] "r"(n), PCP_RSEQ_INPUTS(c)
                     : "memory", "cc");
    return (unsigned)k;
}

/* Push in[0, k) with k = min(n, cap - count) onto bin c; returns k. */
static inline unsigned pcp_rseq_push_bulk(void *const *in, unsigned n, unsigned c)
{
    uintptr_t bin, k, cnt, dst, i, tmp;
    __asm__ volatile(PCP_RSEQ_ENTER
                     "mov (%[bin]), %k[cnt]\n" /* k = min(cap - cnt, n) */
                     "mov 4(%[bin]), %k[k]\n"
                     "sub %k[cnt], %k[k]\n"
                     "cmp %k[nn], %k[k]\n"
                     "jbe 1f\n"
                     "mov %k[nn], %k[k]\n"
                     "1: test %k[k], %k[k]\n"
                     "jz .Lfail%=\n"
                     "mov 8(%[bin]), %[dst]\n"
                     "lea (%[dst], %[cnt], 8), %[dst]\n"
                     "xor %k[i], %k[i]\n"
                     "2: mov (%[in], %[i], 8), %[tmp]\n" /* slots[cnt + i] = in[i] */
                     "mov %[tmp], (%[dst], %[i], 8)\n"
                     "add $1, %k[i]\n"
                     "cmp %k[k], %k[i]\n"
                     "jb 2b\n"
                     "add %k[k], %k[cnt]\n"
                     "mov %k[cnt], (%[bin])\n" /* commit: bin->count = cnt + k */
                     ".Lend%=:\n"
                     "jmp .Ldone%=\n"
                     ".Lfail%=: xor %k[k], %k[k]\n"
                     ".Ldone%=:\n"
                     : [k] "=&r"(k), [bin] "=&r"(bin), [cnt] "=&r"(cnt), [dst] "=&r"(dst), [i] "=&r"(i),
                       [tmp] "=&r"(tmp)
                     : [in] "r"(in), [nn] "r"(n), PCP_RSEQ_INPUTS(c)
                     : "memory", "cc");
    return (unsigned)k;
}

#endif
