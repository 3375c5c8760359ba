/* The frozen int8 CNN: [conv3x3 + ReLU + maxpool2] × TINYCL_N_BLOCKS → Gemm → BatchNorm → int8.
 * Integer semantics of onnxruntime's QLinearConv / QGemm (see tinycl_nodes/export/c_model.py). */
#include "tinycl.h"

#define PAD_SIZE(C, H, W) ((C) * ((H) + 2) * ((W) + 2))
#define MAX2(a, b) ((a) > (b) ? (a) : (b))

/* Largest padded input of a block, and largest pooled output. */
#define PAD0 PAD_SIZE(TINYCL_B0_CIN, TINYCL_B0_H, TINYCL_B0_W)
#define PAD1 PAD_SIZE(TINYCL_B1_CIN, TINYCL_B1_H, TINYCL_B1_W)
#define PAD2 PAD_SIZE(TINYCL_B2_CIN, TINYCL_B2_H, TINYCL_B2_W)
#define OUT0 (TINYCL_B0_COUT * (TINYCL_B0_H / 2) * (TINYCL_B0_W / 2))
#define OUT1 (TINYCL_B1_COUT * (TINYCL_B1_H / 2) * (TINYCL_B1_W / 2))
#define OUT2 (TINYCL_B2_COUT * (TINYCL_B2_H / 2) * (TINYCL_B2_W / 2))
#define PAD_MAX MAX2(PAD0, MAX2(PAD1, PAD2))
#define OUT_MAX MAX2(OUT0, MAX2(OUT1, OUT2))

#if TINYCL_N_BLOCKS != 3
#error "tinycl_cnn.c is written for 3 conv blocks; regenerate or extend the block table"
#endif
#if OUT2 != TINYCL_FC_IN
#error "the last block's output does not match the Gemm input"
#endif

static int16_t s_pad[PAD_MAX];  /* (x − zp) of the current block's input, zero border */
static int8_t s_act[OUT_MAX];   /* pooled int8 output of the last block run */

typedef struct {
    int cin, cout, h, w, in_zp, out_zp;
    const int8_t *wt;
    const int32_t *bias;
    const float *mult;
} block_t;

static const block_t k_blocks[TINYCL_N_BLOCKS] = {
    {TINYCL_B0_CIN, TINYCL_B0_COUT, TINYCL_B0_H, TINYCL_B0_W, TINYCL_B0_IN_ZP, TINYCL_B0_OUT_ZP,
     tinycl_b0_w, tinycl_b0_bias, tinycl_b0_mult},
    {TINYCL_B1_CIN, TINYCL_B1_COUT, TINYCL_B1_H, TINYCL_B1_W, TINYCL_B1_IN_ZP, TINYCL_B1_OUT_ZP,
     tinycl_b1_w, tinycl_b1_bias, tinycl_b1_mult},
    {TINYCL_B2_CIN, TINYCL_B2_COUT, TINYCL_B2_H, TINYCL_B2_W, TINYCL_B2_IN_ZP, TINYCL_B2_OUT_ZP,
     tinycl_b2_w, tinycl_b2_bias, tinycl_b2_mult},
};

/* Round half to even for |v| < 2^22 under the default rounding mode (what cvtps2dq does). */
static inline float round_half_even(float v) {
    const float magic = 12582912.0f; /* 1.5 · 2^23 */
    return (v >= 0.0f) ? (v + magic) - magic : (v - magic) + magic;
}

/* onnxruntime's requantisation: float(acc)·m, clamp to the zero-point-shifted range, round, +zp. */
static inline int8_t quantize(float v, int zp) {
    const float lo = (float)(-128 - zp), hi = (float)(127 - zp);
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return (int8_t)((int32_t)round_half_even(v) + zp);
}

/* Fill s_pad with (x − zp) for a (c, h, w) int8 tensor and a zero border of 1. */
static void pad_input(const int8_t *x, int c, int h, int w, int zp) {
    const int W2 = w + 2, plane = (h + 2) * W2;
    for (int i = 0; i < c * plane; i++) s_pad[i] = 0;
    for (int ci = 0; ci < c; ci++)
        for (int y = 0; y < h; y++) {
            int16_t *dst = s_pad + ci * plane + (y + 1) * W2 + 1;
            const int8_t *src = x + (ci * h + y) * w;
            for (int xx = 0; xx < w; xx++) dst[xx] = (int16_t)(src[xx] - zp);
        }
}

void tinycl_cnn_input(const uint8_t *pixels) {
    int8_t *q = s_act; /* the quantised image, then padded (the buffer is free at this point) */
    for (int i = 0; i < TINYCL_IN_H * TINYCL_IN_W; i++) q[i] = tinycl_in_lut[pixels[i]];
}

/* Conv 3×3 pad 1 over s_pad, 2×2 max-pool of the int32 accumulators, one requantisation. */
void tinycl_cnn_block(int b) {
    const block_t *k = &k_blocks[b];
    const int W2 = k->w + 2, plane = (k->h + 2) * W2, ph = k->h / 2, pw = k->w / 2;
    pad_input(s_act, k->cin, k->h, k->w, k->in_zp);
    for (int co = 0; co < k->cout; co++) {
        const int8_t *wco = k->wt + co * k->cin * 9;
        const int32_t bias = k->bias[co];
        const float m = k->mult[co];
        int8_t *out = s_act + co * ph * pw;
        for (int py = 0; py < ph; py++)
            for (int px = 0; px < pw; px++) {
                int32_t a0 = bias, a1 = bias, a2 = bias, a3 = bias;
                const int16_t *base = s_pad + (2 * py) * W2 + 2 * px;
                const int8_t *wk = wco;
                for (int ci = 0; ci < k->cin; ci++, base += plane, wk += 9) {
                    const int16_t *r0 = base, *r1 = base + W2, *r2 = base + 2 * W2, *r3 = base + 3 * W2;
                    int32_t w0 = wk[0], w1 = wk[1], w2 = wk[2], w3 = wk[3], w4 = wk[4], w5 = wk[5],
                            w6 = wk[6], w7 = wk[7], w8 = wk[8];
                    a0 += r0[0] * w0 + r0[1] * w1 + r0[2] * w2 + r1[0] * w3 + r1[1] * w4 + r1[2] * w5 +
                          r2[0] * w6 + r2[1] * w7 + r2[2] * w8;
                    a1 += r0[1] * w0 + r0[2] * w1 + r0[3] * w2 + r1[1] * w3 + r1[2] * w4 + r1[3] * w5 +
                          r2[1] * w6 + r2[2] * w7 + r2[3] * w8;
                    a2 += r1[0] * w0 + r1[1] * w1 + r1[2] * w2 + r2[0] * w3 + r2[1] * w4 + r2[2] * w5 +
                          r3[0] * w6 + r3[1] * w7 + r3[2] * w8;
                    a3 += r1[1] * w0 + r1[2] * w1 + r1[3] * w2 + r2[1] * w3 + r2[2] * w4 + r2[3] * w5 +
                          r3[1] * w6 + r3[2] * w7 + r3[3] * w8;
                }
                int32_t a = a0 > a1 ? a0 : a1;
                if (a2 > a) a = a2;
                if (a3 > a) a = a3;
                out[py * pw + px] = quantize((float)a * m, k->out_zp);
            }
    }
}

void tinycl_cnn_head(int8_t *features_q) {
    int16_t *xin = s_pad; /* (x − zp) of the flattened last block output */
    for (int i = 0; i < TINYCL_FC_IN; i++) xin[i] = (int16_t)(s_act[i] - TINYCL_FC_IN_ZP);
    for (int f = 0; f < TINYCL_N_FEATURES; f++) {
        const int8_t *w = tinycl_fc_w + f * TINYCL_FC_IN;
        int32_t acc = tinycl_fc_bias[f];
        for (int i = 0; i < TINYCL_FC_IN; i++) acc += xin[i] * w[i];
        const int8_t q = quantize((float)acc * tinycl_fc_mult[f], TINYCL_FC_OUT_ZP);
        const float deq = (float)(q - TINYCL_FC_OUT_ZP) * TINYCL_FC_OUT_SCALE;
        const float y = deq * tinycl_bn_s[f] + tinycl_bn_b[f];
        features_q[f] = quantize(y / TINYCL_FEAT_SCALE, TINYCL_FEAT_ZP);
    }
}

void tinycl_features_q(const uint8_t *pixels, int8_t *features_q) {
    tinycl_cnn_input(pixels);
    for (int b = 0; b < TINYCL_N_BLOCKS; b++) tinycl_cnn_block(b);
    tinycl_cnn_head(features_q);
}

void tinycl_dequantize(const int8_t *features_q, float *features) {
    for (int f = 0; f < TINYCL_N_FEATURES; f++)
        features[f] = (float)(features_q[f] - TINYCL_FEAT_ZP) * TINYCL_FEAT_SCALE;
}
