/* Benchmark image of the latent replay head on the emulated Cortex-M7, end to end on the board's own network:
 * image → int8 CNN (tinycl_features_cut_q: the features and, from the same pass, the last conv block's int8
 * output at presets.LATENT's cut) → latent head (tinycl_latent.c) on those codes, its replay grid fixed to
 * the cut's (tinycl_latent_use_grid: the memory keeps the CNN's own codes).
 * Data (bench_latent_data.c, from micro_ros_firmware/tools/bench_firmware.py): real MNIST test images and
 * their labels; the first bl_n_learn are learned in order (each predicted first), the other bl_n_predict
 * only predicted. The head is the generated one (its hyper-parameters; the replay memory this build holds).
 * Markers: frozen (the CNN), latent_learn (tinycl_latent_learn_q: queueing and, every batch_size samples,
 * the training round: forward + backward + SGD of the upper FC layer and the classifier over new + replayed
 * patterns, then the memory rule) and latent_predict.
 * Output (semihosting): "L <i> <prediction before learning> <CRC-32 of the cut>", "P <i> <prediction> <CRC>",
 * then "LATENT <struct bytes> <memory patterns> <rounds>" and DONE. */
#include <stdint.h>

#include "bench_util.h"
#include "semihost.h"
#include "tinycl_latent.h"

#if TINYCL_LATENT_F != TINYCL_CUT_F
#error "the latent head's cut is not the CNN's last conv block output"
#endif

extern const uint32_t bl_n_learn, bl_n_predict;
extern const uint8_t bl_images[];
extern const int32_t bl_y[];

MARK(0, other)
MARK(1, frozen)
MARK(2, latent_learn)
MARK(3, latent_predict)
MARK(4, calib_a)
MARK(5, calib_b)

static void say(char tag, uint32_t i, int32_t v, uint32_t crc) {
    char line[48], *p = line;
    *p++ = tag; *p++ = ' ';
    p = put_u(p, i); *p++ = ' ';
    p = put_i(p, v); *p++ = ' ';
    p = put_u(p, crc);
    *p++ = '\n'; *p = 0;
    sh_puts(line);
}

static tinycl_latent_t g_head;
static int8_t g_feat[TINYCL_N_FEATURES], g_cut[TINYCL_CUT_F];

int main(void) {
    tinycl_latent_params_t prm;
    BENCH_CALIBRATE();
    tinycl_latent_default_params(&prm);
    if (tinycl_latent_init(&g_head, &prm) || tinycl_latent_use_grid(&g_head, TINYCL_CUT_SCALE, TINYCL_CUT_ZP)) {
        sh_puts("init failed\n");
        return 1;
    }
    for (uint32_t i = 0; i < bl_n_learn + bl_n_predict; i++) {
        int32_t y = -1;
        int rc;
        bench_mark_frozen();
        tinycl_features_cut_q(bl_images + (uint32_t)i * TINYCL_IN_H * TINYCL_IN_W, g_feat, g_cut);
        bench_mark_latent_predict();
        rc = tinycl_latent_predict_q(&g_head, g_cut, &y);
        bench_mark_other();
        if (rc && rc != TINYCL_EEMPTY) {
            sh_puts("predict failed\n");
            return 1;
        }
        say(i < bl_n_learn ? 'L' : 'P', i, rc ? -1 : y, tinycl_crc32((const uint8_t *)g_cut, sizeof g_cut));
        if (i < bl_n_learn) {
            bench_mark_latent_learn();
            rc = tinycl_latent_learn_q(&g_head, g_cut, bl_y[i]);
            bench_mark_other();
            if (rc) {
                sh_puts("learn failed\n");
                return 1;
            }
        }
    }
    char line[64], *p = line;
    p = put_u(p, (uint32_t)sizeof g_head); *p++ = ' ';
    p = put_u(p, g_head.p.memory_size); *p++ = ' ';
    p = put_u(p, g_head.n_batches);
    *p = 0;
    sh_puts("LATENT ");
    sh_puts(line);
    sh_puts("\nDONE\n");
    return 0;
}
