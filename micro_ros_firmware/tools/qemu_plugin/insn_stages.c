/* QEMU TCG plugin: exact executed-instruction counts per benchmark stage.
 *
 * The guest marks the start of each stage by calling a marker function (bench_mark_<k>, one per
 * stage; addresses given as  marks=ADDR0:ADDR1:...). Every translated block adds its instruction
 * count to a counter when it starts executing (inline op, cheap); a callback on each marker's first
 * instruction reads the counter minus the block's instructions from the marker on, i.e. exactly the
 * instructions executed before the marker, and charges the difference to the stage that was running.
 * Output (file given by out=PATH): one line per stage "stage <k> insns <n> hits <m>".
 *
 * Built against QEMU's public plugin API, version 1 (QEMU 7.x); see qemu_plugin_api.h. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_plugin_api.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MAX_MARKS 32
static uint64_t g_count;               /* instructions of every block entered so far */
static uint64_t g_marks[MAX_MARKS];
static int g_n_marks;
static uint64_t g_stage_insns[MAX_MARKS + 1]; /* index MAX_MARKS: before the first marker */
static uint64_t g_hits[MAX_MARKS];
static int g_stage = MAX_MARKS;
static uint64_t g_last;
static char g_out[4096] = "insn_stages.txt";

static void on_mark(unsigned int vcpu, void *udata) {
    (void)vcpu;
    const uintptr_t v = (uintptr_t)udata;
    const int k = (int)(v & 0xff);
    const uint64_t after = v >> 8; /* instructions of this block from the marker on */
    const uint64_t now = g_count - after;
    g_stage_insns[g_stage] += now - g_last;
    g_last = now;
    g_stage = k;
    g_hits[k]++;
}

static void on_tb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    const size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &g_count, n);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        const uint64_t pc = qemu_plugin_insn_vaddr(insn);
        for (int k = 0; k < g_n_marks; k++)
            if (g_marks[k] == pc) {
                uintptr_t ud = ((uintptr_t)(n - i) << 8) | (uintptr_t)k;
                qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, QEMU_PLUGIN_CB_NO_REGS, (void *)ud);
            }
    }
}

static void at_exit_cb(qemu_plugin_id_t id, void *udata) {
    (void)id;
    (void)udata;
    g_stage_insns[g_stage] += g_count - g_last;
    FILE *f = fopen(g_out, "w");
    if (!f) return;
    for (int k = 0; k < g_n_marks; k++)
        fprintf(f, "stage %d insns %" PRIu64 " hits %" PRIu64 "\n", k, g_stage_insns[k], g_hits[k]);
    fprintf(f, "stage -1 insns %" PRIu64 " hits 0\n", g_stage_insns[MAX_MARKS]);
    fprintf(f, "total %" PRIu64 "\n", g_count);
    fclose(f);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            snprintf(g_out, sizeof g_out, "%s", argv[i] + 4);
        } else if (strncmp(argv[i], "marks=", 6) == 0) {
            char *p = argv[i] + 6;
            while (*p && g_n_marks < MAX_MARKS) {
                char *end;
                uint64_t a = strtoull(p, &end, 0);
                if (end == p) return -1;
                g_marks[g_n_marks++] = a & ~(uint64_t)1; /* Thumb bit off */
                p = (*end == ':') ? end + 1 : end;
            }
        } else {
            fprintf(stderr, "insn_stages: unknown argument %s\n", argv[i]);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
    qemu_plugin_register_atexit_cb(id, at_exit_cb, NULL);
    return 0;
}
