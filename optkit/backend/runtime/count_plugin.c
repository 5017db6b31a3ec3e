/* optkit's instruction-counting plugin for qemu user mode (plugin API version 1, QEMU 7.2).
 *
 * Every translated block gets a record keyed by (guest address, instruction count) holding its static
 * mix -- instructions, SIMD instructions (any v/q register), loads, stores, SDOT/UDOT -- and an
 * execution counter bumped inline, so counting costs one add per block execution. At exit the records
 * are written to outfile=PATH at every mark the guest makes and at exit: a line `mark LABEL`, then one line
 * per executed block:  vaddr insns simd loads stores dots executions
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*tb_trans_cb)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*udata_cb)(qemu_plugin_id_t, void *);
typedef void (*syscall_cb)(qemu_plugin_id_t, unsigned int, int64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                           uint64_t, uint64_t, uint64_t);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, tb_trans_cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *, size_t);
char *qemu_plugin_insn_disas(const struct qemu_plugin_insn *);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *, enum qemu_plugin_op, void *, uint64_t);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, udata_cb, void *);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t, syscall_cb);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

struct block {
    uint64_t vaddr, insns, simd, loads, stores, dots, executions;
    struct block *next;
};

#define BUCKETS (1u << 20)
static struct block **table;
static const char *outfile = "count.txt";

static int vector_register(const char *ops) {
    /* v0..v31 (with arrangement or lane) or q0..q31 */
    for (const char *p = ops; *p; p++) {
        if ((*p == 'v' || *p == 'q') && isdigit((unsigned char)p[1]) && (p == ops || !isalnum((unsigned char)p[-1])))
            return 1;
    }
    return 0;
}

/* Dot products by encoding: QEMU 7.2's disassembler prints SDOT/UDOT as raw bytes. */
static int dot_product(uint32_t word) {
    return (word & 0xBFE0FC00u) == 0x0E809400u || (word & 0xBFE0FC00u) == 0x2E809400u   /* SDOT/UDOT (vector) */
        || (word & 0x9FC0F400u) == 0x0F80E000u;                                          /* SDOT/UDOT (element) */
}

static void classify(const char *text, uint32_t word, struct block *b) {
    char mnemonic[32] = {0};
    size_t i = 0;
    while (text[i] && !isspace((unsigned char)text[i]) && i < sizeof mnemonic - 1) {
        mnemonic[i] = text[i];
        i++;
    }
    int unknown = mnemonic[0] == '.';                 /* ".byte ...": an instruction the disassembler lacks */
    if (dot_product(word)) b->dots++;
    if (vector_register(text + i) || dot_product(word) || (unknown && ((word >> 25) & 7) == 7)) b->simd++;
    if (!strncmp(mnemonic, "ld", 2)) b->loads++;
    else if (!strncmp(mnemonic, "st", 2)) b->stores++;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    uint64_t vaddr = qemu_plugin_tb_vaddr(tb);
    size_t n = qemu_plugin_tb_n_insns(tb);
    uint64_t h = ((vaddr >> 2) ^ (vaddr >> 22) ^ (n * 0x9e3779b97f4a7c15ull)) & (BUCKETS - 1);
    struct block *b = table[h];
    while (b && !(b->vaddr == vaddr && b->insns == n)) b = b->next;
    if (!b) {
        b = calloc(1, sizeof *b);
        b->vaddr = vaddr;
        b->insns = n;
        for (size_t k = 0; k < n; k++) {
            struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, k);
            char *text = qemu_plugin_insn_disas(insn);
            uint32_t word;
            memcpy(&word, qemu_plugin_insn_data(insn), sizeof word);
            classify(text ? text : "", word, b);
            free(text);
        }
        b->next = table[h];
        table[h] = b;
    }
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->executions, 1);
}

static FILE *out;

/* The guest marks a point of interest with getpriority(MARK_WHICH, label): an invalid `which` that fails
 * with EINVAL and does nothing else. Each mark writes every block's executions so far. */
#define NR_GETPRIORITY 141
#define MARK_WHICH 0x6f70746bu

static void write_counts(const char *label) {
    FILE *f = out;
    fprintf(f, "mark %s\n", label);
    for (size_t h = 0; h < BUCKETS; h++)
        for (struct block *b = table[h]; b; b = b->next)
            if (b->executions)
                fprintf(f, "%llx %llu %llu %llu %llu %llu %llu\n", (unsigned long long)b->vaddr,
                        (unsigned long long)b->insns, (unsigned long long)b->simd, (unsigned long long)b->loads,
                        (unsigned long long)b->stores, (unsigned long long)b->dots,
                        (unsigned long long)b->executions);
    fflush(f);
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2, uint64_t a3,
                       uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8) {
    if (num == NR_GETPRIORITY && a1 == MARK_WHICH) {
        char label[32];
        snprintf(label, sizeof label, "%llu", (unsigned long long)a2);
        write_counts(label);
    }
}

static void on_exit_cb(qemu_plugin_id_t id, void *unused) {
    write_counts("exit");
    fclose(out);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const void *info, int argc,
                                                               char **argv) {
    for (int i = 0; i < argc; i++)
        if (!strncmp(argv[i], "outfile=", 8)) outfile = argv[i] + 8;
    table = calloc(BUCKETS, sizeof *table);
    out = fopen(outfile, "w");
    if (!table || !out) return -1;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, on_exit_cb, NULL);
    return 0;
}
