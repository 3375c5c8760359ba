/* Benchmark image of the latent replay head (tinycl_latent.c) on the emulated Cortex-M7.
 * Data (bench_latent_data.c, from micro_ros_firmware/tools/bench_firmware.py): real MNIST latents
 * (the fp32 model's activations at presets.LATENT's cut, stored as int8 codes of one grid to save
 * flash), their labels; the first bl_n_learn are learned in order (each predicted first), the
 * other bl_n_predict only predicted. The head is the generated one (its hyper-parameters; the
 * replay memory this build holds). Markers: latent_learn (tinycl_latent_learn: queueing and, every
 * batch_size samples, the training round: forward + backward + SGD of the upper FC layer and the
 * classifier over new + replayed patterns, then the memory rule) and latent_predict.
 * Output (semihosting): "L <i> <prediction before learning>", "P <i> <prediction>", then
 * "LATENT <struct bytes> <memory patterns> <rounds>" and DONE. */
#include <stdint.h>

#include "bench_util.h"
#include "semihost.h"
#include "tinycl_latent.h"

extern const uint32_t bl_n_learn, bl_n_predict;
extern const int8_t bl_x[];
extern const float bl_scale;
extern const int32_t bl_zp;
extern const int32_t bl_y[];

MARK(0, other)
MARK(1, latent_learn)
MARK(2, latent_predict)
MARK(3, calib_a)
MARK(4, calib_b)

static void say(char tag, uint32_t i, int32_t v) {
    char line[32], *p = line;
    *p++ = tag; *p++ = ' ';
    p = put_u(p, i); *p++ = ' ';
    p = put_i(p, v);
    *p++ = '\n'; *p = 0;
    sh_puts(line);
}

static tinycl_latent_t g_head;
static float g_x[TINYCL_LATENT_F];

static void latent(uint32_t i) {
    const int8_t *q = bl_x + (uint32_t)i * TINYCL_LATENT_F;
    for (uint32_t f = 0; f < TINYCL_LATENT_F; f++) g_x[f] = ((float)q[f] - (float)bl_zp) * bl_scale;
}

int main(void) {
    tinycl_latent_params_t prm;
    BENCH_CALIBRATE();
    tinycl_latent_default_params(&prm);
    if (tinycl_latent_init(&g_head, &prm)) {
        sh_puts("init failed\n");
        return 1;
    }
    for (uint32_t i = 0; i < bl_n_learn + bl_n_predict; i++) {
        int32_t y = -1;
        int rc;
        latent(i);
        bench_mark_latent_predict();
        rc = tinycl_latent_predict(&g_head, g_x, &y);
        bench_mark_other();
        if (rc && rc != TINYCL_EEMPTY) {
            sh_puts("predict failed\n");
            return 1;
        }
        say(i < bl_n_learn ? 'L' : 'P', i, rc ? -1 : y);
        if (i < bl_n_learn) {
            bench_mark_latent_learn();
            rc = tinycl_latent_learn(&g_head, g_x, bl_y[i]);
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
