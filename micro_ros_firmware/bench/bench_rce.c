/* Benchmark image of TinyRCE's cheaper distances on the emulated Cortex-M7: the same model learned on
 * every HAR base subject (s01–s12, the 40 KiB budget full) in its two forms, fp32 (plain, version 1
 * blob) and int8 centers + visit cap (version 2 blob), both written by numpy (c_state.rce_to_bytes)
 * and loaded here; then a new subject's windows (real HAR, features of har_elm.onnx) stream through
 * each: decide, then learn the true label. Data: bench_rce_data.c from
 * micro_ros_firmware/tools/bench_firmware.py. Markers: f32_decide / f32_learn and q8_decide /
 * q8_learn (tinycl_rce_decide, tinycl_rce_learn).
 * Output (semihosting): "R <form> <i> <label> <nearest> <reason>" per sample (form 0 fp32, 1 int8 + cap),
 * then "RCE <form> <prototypes> <state blob bytes> <learning MACs low 32 bits> <inference MACs>" and DONE. */
#include <stdint.h>

#include "bench_util.h"
#include "semihost.h"
#include "tinycl.h"

extern const uint32_t brce_n, brce_len[2];
extern const uint8_t brce_sha[32];
extern const uint8_t brce_blob_f32[], brce_blob_q8[];
extern const float brce_x[];
extern const int32_t brce_y[];

MARK(0, other)
MARK(1, f32_decide)
MARK(2, f32_learn)
MARK(3, q8_decide)
MARK(4, q8_learn)
MARK(5, calib_a)
MARK(6, calib_b)

static tinycl_rce_t g_rce;

static void say(uint32_t form, uint32_t i, const tinycl_rce_decision_t *d) {
    char line[64], *p = line;
    *p++ = 'R'; *p++ = ' ';
    p = put_u(p, form); *p++ = ' ';
    p = put_u(p, i); *p++ = ' ';
    p = put_i(p, d->label); *p++ = ' ';
    p = put_i(p, d->nearest); *p++ = ' ';
    p = put_i(p, d->reason);
    *p++ = '\n'; *p = 0;
    sh_puts(line);
}

static int run(uint32_t form) {
    const uint8_t *blob = form ? brce_blob_q8 : brce_blob_f32;
    if (tinycl_rce_init(&g_rce, tinycl_rce_budget_bytes(1), 1.0, 0.0, 0.0, TINYCL_RCE_L2) ||
        tinycl_rce_set_extractor(&g_rce, brce_sha) || tinycl_rce_load(&g_rce, blob, brce_len[form])) {
        sh_puts("load failed\n");
        return 1;
    }
    const uint64_t macs0 = g_rce.learning_macs;
    for (uint32_t i = 0; i < brce_n; i++) {
        const float *x = brce_x + (uint32_t)i * TINYCL_N_FEATURES;
        tinycl_rce_decision_t d;
        int rc;
        if (form) bench_mark_q8_decide(); else bench_mark_f32_decide();
        rc = tinycl_rce_decide(&g_rce, x, &d);
        if (form) bench_mark_q8_learn(); else bench_mark_f32_learn();
        rc |= tinycl_rce_learn(&g_rce, x, brce_y[i]);
        bench_mark_other();
        if (rc) {
            sh_puts("step failed\n");
            return 1;
        }
        say(form, i, &d);
    }
    char line[96], *p = line;
    p = put_u(p, form); *p++ = ' ';
    p = put_u(p, g_rce.n_prototypes); *p++ = ' ';
    p = put_u(p, (uint32_t)tinycl_rce_state_size(&g_rce)); *p++ = ' ';
    p = put_u(p, (uint32_t)(g_rce.learning_macs - macs0)); *p++ = ' ';
    p = put_u(p, (uint32_t)tinycl_rce_inference_macs(&g_rce));
    *p++ = '\n'; *p = 0;
    sh_puts("RCE ");
    sh_puts(line);
    return 0;
}

int main(void) {
    BENCH_CALIBRATE();
    if (run(0) || run(1)) return 1;
    sh_puts("DONE\n");
    return 0;
}
