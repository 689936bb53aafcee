/* Per-CPU cache operations as restartable sequences, x86-64.
 *
 * Each function publishes its struct rseq_cs in this thread's struct rseq (found at the thread
 * pointer + bsl_rseq_tp_off), then runs a critical section [start, end) whose only store that
 * other threads can observe is the final one that commits the bin's new count. If the kernel
 * preempts, migrates or signals the thread inside the section, it moves the instruction pointer
 * to the abort label (preceded by glibc's RSEQ_SIG), which starts over. Registers live across a
 * restart are the arguments only; everything else is reloaded.
 *
 * struct rseq: cpu_id at 4 (negative while unregistered), rseq_cs at 8. struct pcp_bin (16 bytes):
 * count at 0, cap at 4, slots at 8. pcp_table: PCP_MAX_CID pointers to struct pcp (bins[]).
 */
#if defined(__x86_64__)

#define RSEQ_SIG 0x53053053
#define RSEQ_CPU_ID 4
#define RSEQ_CS 8
#define PCP_MAX_CID 4096

/* Common prologue of a critical section: %r8 = &pcp_table[cid]->bins[0] + %r11 (bin offset), or
 * jump to `fail` when rseq is not live for this thread or the id has no cache. Clobbers rax,rcx,rdx. */
.macro ENTER cs, start, fail
    mov bsl_rseq_tp_off(%rip), %rcx
    lea \cs(%rip), %rax
    mov %rax, %fs:RSEQ_CS(%rcx)          /* rseq->rseq_cs = &cs */
\start:
    mov %fs:RSEQ_CPU_ID(%rcx), %eax      /* if ((int)rseq->cpu_id < 0) fail */
    test %eax, %eax
    js \fail
    mov bsl_rseq_cid_off(%rip), %rdx
    mov %fs:(%rdx), %eax                 /* cid = rseq->mm_cid (or cpu_id) */
    cmp $PCP_MAX_CID, %eax
    jae \fail
    lea pcp_table(%rip), %r8
    mov (%r8,%rax,8), %r8                /* pcp = pcp_table[cid] */
    test %r8, %r8
    jz \fail
    add %r11, %r8                        /* bin = &pcp->bins[c] */
.endm

.macro CS_DESC name, start, end, abort
    .pushsection .data.rel.ro, "aw"
    .p2align 5
\name:
    .long 0, 0                           /* version, flags */
    .quad \start, \end - \start, \abort  /* start_ip, post_commit_offset, abort_ip */
    .popsection
.endm

    .text

/* void *pcp_rseq_pop(unsigned c) */
    .globl pcp_rseq_pop
    .hidden pcp_rseq_pop
    .type pcp_rseq_pop, @function
    .p2align 4
pcp_rseq_pop:
    .cfi_startproc
    mov %edi, %r11d
    shl $4, %r11                         /* bin offset = c * 16 */
.Lpop_restart:
    ENTER .Lpop_cs, .Lpop_start, .Lpop_fail
    mov (%r8), %r9d                      /* n = bin->count */
    test %r9d, %r9d
    jz .Lpop_fail                        /* if (n == 0) fail */
    sub $1, %r9d
    mov 8(%r8), %r10
    mov (%r10,%r9,8), %rax               /* ret = bin->slots[n - 1] */
    mov %r9d, (%r8)                      /* commit: bin->count = n - 1 */
.Lpop_end:
    ret
.Lpop_fail:
    xor %eax, %eax
    ret
    .long RSEQ_SIG
.Lpop_abort:
    jmp .Lpop_restart
    .cfi_endproc
    .size pcp_rseq_pop, . - pcp_rseq_pop
    CS_DESC .Lpop_cs, .Lpop_start, .Lpop_end, .Lpop_abort

/* int pcp_rseq_push(void *p, unsigned c) */
    .globl pcp_rseq_push
    .hidden pcp_rseq_push
    .type pcp_rseq_push, @function
    .p2align 4
pcp_rseq_push:
    .cfi_startproc
    mov %esi, %r11d
    shl $4, %r11
.Lpush_restart:
    ENTER .Lpush_cs, .Lpush_start, .Lpush_fail
    mov (%r8), %r9d                      /* n = bin->count */
    cmp 4(%r8), %r9d
    jae .Lpush_fail                      /* if (n >= bin->cap) fail */
    mov 8(%r8), %r10
    mov %rdi, (%r10,%r9,8)               /* bin->slots[n] = p (invisible until the commit) */
    add $1, %r9d
    mov %r9d, (%r8)                      /* commit: bin->count = n + 1 */
.Lpush_end:
    mov $1, %eax
    ret
.Lpush_fail:
    xor %eax, %eax
    ret
    .long RSEQ_SIG
.Lpush_abort:
    jmp .Lpush_restart
    .cfi_endproc
    .size pcp_rseq_push, . - pcp_rseq_push
    CS_DESC .Lpush_cs, .Lpush_start, .Lpush_end, .Lpush_abort

/* unsigned pcp_rseq_pop_bulk(void **out, unsigned n, unsigned c): moves the top k = min(n, count)
 * objects to out[0, k) and returns k. */
    .globl pcp_rseq_pop_bulk
    .hidden pcp_rseq_pop_bulk
    .type pcp_rseq_pop_bulk, @function
    .p2align 4
pcp_rseq_pop_bulk:
    .cfi_startproc
    mov %edx, %r11d
    shl $4, %r11
    mov %esi, %esi
.Lpopb_restart:
    ENTER .Lpopb_cs, .Lpopb_start, .Lpopb_fail
    mov (%r8), %r9d                      /* cnt = bin->count */
    mov %esi, %eax                       /* k = min(n, cnt) */
    cmp %r9d, %eax
    jbe 1f
    mov %r9d, %eax
1:  test %eax, %eax
    jz .Lpopb_fail
    sub %eax, %r9d                       /* first = cnt - k */
    mov 8(%r8), %r10
    lea (%r10,%r9,8), %r10               /* src = &bin->slots[first] */
    xor %ecx, %ecx
2:  mov (%r10,%rcx,8), %rdx              /* out[i] = src[i] for i < k */
    mov %rdx, (%rdi,%rcx,8)
    add $1, %ecx
    cmp %eax, %ecx
    jb 2b
    mov %r9d, (%r8)                      /* commit: bin->count = first */
.Lpopb_end:
    ret
.Lpopb_fail:
    xor %eax, %eax
    ret
    .long RSEQ_SIG
.Lpopb_abort:
    jmp .Lpopb_restart
    .cfi_endproc
    .size pcp_rseq_pop_bulk, . - pcp_rseq_pop_bulk
    CS_DESC .Lpopb_cs, .Lpopb_start, .Lpopb_end, .Lpopb_abort

/* unsigned pcp_rseq_push_bulk(void *const *in, unsigned n, unsigned c): pushes in[0, k) with
 * k = min(n, cap - count) and returns k. */
    .globl pcp_rseq_push_bulk
    .hidden pcp_rseq_push_bulk
    .type pcp_rseq_push_bulk, @function
    .p2align 4
pcp_rseq_push_bulk:
    .cfi_startproc
    mov %edx, %r11d
    shl $4, %r11
    mov %esi, %esi
.Lpushb_restart:
    ENTER .Lpushb_cs, .Lpushb_start, .Lpushb_fail
    mov (%r8), %r9d                      /* cnt = bin->count */
    mov 4(%r8), %eax
    sub %r9d, %eax                       /* k = min(cap - cnt, n) */
    cmp %esi, %eax
    jbe 1f
    mov %esi, %eax
1:  test %eax, %eax
    jz .Lpushb_fail
    mov 8(%r8), %r10
    lea (%r10,%r9,8), %r10               /* dst = &bin->slots[cnt] */
    xor %ecx, %ecx
2:  mov (%rdi,%rcx,8), %rdx              /* dst[i] = in[i] for i < k */
    mov %rdx, (%r10,%rcx,8)
    add $1, %ecx
    cmp %eax, %ecx
    jb 2b
    add %eax, %r9d
    mov %r9d, (%r8)                      /* commit: bin->count = cnt + k */
.Lpushb_end:
    ret
.Lpushb_fail:
    xor %eax, %eax
    ret
    .long RSEQ_SIG
.Lpushb_abort:
    jmp .Lpushb_restart
    .cfi_endproc
    .size pcp_rseq_push_bulk, . - pcp_rseq_push_bulk
    CS_DESC .Lpushb_cs, .Lpushb_start, .Lpushb_end, .Lpushb_abort

#endif
    .section .note.GNU-stack, "", @progbits
