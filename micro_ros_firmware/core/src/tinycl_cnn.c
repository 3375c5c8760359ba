/* The frozen int8 CNN: [conv3x3 + ReLU + maxpool2] × TINYCL_N_BLOCKS → Gemm → BatchNorm → int8.
 * Integer semantics of onnxruntime's QLinearConv / QGemm (see tinycl_nodes/export/c_model.py; its
 * integer_reference is the plain definition every kernel here must equal, exactly). */
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
#if OUT2 != TINYCL_FC_IN || OUT2 != TINYCL_CUT_F
#error "the last block's output does not match the Gemm input"
#endif

static int16_t s_pad[PAD_MAX] __attribute__((aligned(8))); /* (x − zp) of the current block's input, zero border */
static int8_t s_act[OUT_MAX];   /* pooled int8 output of the last block run */

typedef struct {
    int cin, cout, h, w, in_zp, out_zp;
    const void *wt; /* int8 [co][ky][kx] for the first block (one channel), else Winograd-transformed int16 */
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

/* s_pad layout: (h+2) × (w+2) pixels with a zero border, each pixel's cin values (x − zp) contiguous
 * (channels last), so that a reduction over input channels is one run of memory, like the (transformed)
 * weights. When cin is a multiple of 4, each group of 4 channels is stored as (c0, c2, c1, c3), and so are the
 * (int16) weights of those blocks: the words (c0,c2) and (c1,c3) meet the words (w0,w2) and (w1,w3), and one
 * SMLAD does two multiply-accumulates. The Gemm input uses the same
 * order against int8 weights that SXTB16 unpacks into (w0,w2) and (w1,w3). Integer sums are exact in any
 * order, so the outputs are bit-identical to the plain loops. */
static inline int perm4(int ci) { return (ci & ~3) | ((ci & 1) << 1) | ((ci & 2) >> 1); }

static void pad_input(const int8_t *x, int c, int h, int w, int zp) {
    const int W2 = w + 2, grouped = (c % 4) == 0;
    for (int i = 0; i < (h + 2) * W2 * c; i++) s_pad[i] = 0;
    for (int ci = 0; ci < c; ci++) {
        const int slot = grouped ? perm4(ci) : ci;
        for (int y = 0; y < h; y++) {
            int16_t *dst = s_pad + ((y + 1) * W2 + 1) * c + slot;
            const int8_t *src = x + (ci * h + y) * w;
            for (int xx = 0; xx < w; xx++) dst[xx * c] = (int16_t)(src[xx] - zp);
        }
    }
}

void tinycl_cnn_input(const uint8_t *pixels) {
    int8_t *q = s_act; /* the quantised image, then padded (the buffer is free at this point) */
    for (int i = 0; i < TINYCL_IN_H * TINYCL_IN_W; i++) q[i] = tinycl_in_lut[pixels[i]];
}

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
static inline uint32_t ld32(const void *p) {
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}
static inline void st32(void *p, uint32_t v) { __builtin_memcpy(p, &v, 4); }
/* lo, hi = the 4 int16 at base + off (element offset, constant where unrolled: an immediate; runs of s_pad and
 * of the weights start on 4-byte boundaries since cin is a multiple of 4). GCC splits 64-bit loads into two
 * LDRs; the asm keeps them one LDRD. It reads s_pad behind GCC's back: volatile keeps it after the compiler
 * barrier that follows pad_input (volatile asms stay in order). */
#define LDRD(lo, hi, base, off)                                                                        \
    __asm__ volatile("ldrd %0, %1, [%2, %3]" : "=r"(lo), "=r"(hi) : "r"(base), "i"(2 * (off)))
static inline uint32_t sxtb16_ror8(uint32_t x) { /* bytes 1 and 3, sign-extended: one instruction */
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#endif

/* Two output channels a, b at two positions: a[0..1] = a run of n input values (one Winograd element of a tile:
 * cin channels, contiguous in s_v) at q and q + o1 (the next tile; o1 = 0: one tile only, a[1] and b[1] are
 * left alone) times channel a's weights, b[0..1] the same. n is a multiple
 * of 4 (cin is) and a compile-time constant where this is inlined: the loop is unrolled (no loop counter,
 * constant offsets). The weights (export/c_model.py) are int16 in the input's (c0, c2, c1, c3) order, the
 * two channels' groups of 4 alternating (wk[2c .. 2c+3] for a, wk[2c+4 .. 2c+7] for b): on the M7, per 4
 * channels, 4 LDRD (2 positions, 2 channels) and 8 SMLAD, 12 instructions for 16 multiply-accumulates, in
 * 4 + 4 + 2 + 2 registers. */
static inline __attribute__((always_inline)) void run2x2(const int16_t *q, int o1, const int16_t *wk, int n,
                                                         int32_t *a, int32_t *b) {
    int32_t a0 = 0, a1 = 0, b0 = 0, b1 = 0;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#pragma GCC unroll 64 /* (not on the host: the unrolled sanitizer build took minutes) */
#endif
    for (int c = 0; c < n; c += 4) {
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
        uint32_t l0, h0, l1 = 0, h1 = 0, wl, wh; /* the volatile loads keep their order: inputs, then each weight */
        LDRD(l0, h0, q, c);
        if (o1) LDRD(l1, h1, q, o1 + c);
        LDRD(wl, wh, wk, 2 * c);
        a0 = __smlad(h0, wh, __smlad(l0, wl, a0));
        if (o1) a1 = __smlad(h1, wh, __smlad(l1, wl, a1));
        LDRD(wl, wh, wk, 2 * c + 4);
        b0 = __smlad(h0, wh, __smlad(l0, wl, b0));
        if (o1) b1 = __smlad(h1, wh, __smlad(l1, wl, b1));
#else
        const int16_t *q1 = q + o1, *wa = wk + 2 * c, *wb = wa + 4;
        for (int j = 0; j < 4; j++) {
            a0 += q[c + j] * wa[j], a1 += q1[c + j] * wa[j];
            b0 += q[c + j] * wb[j], b1 += q1[c + j] * wb[j];
        }
#endif
    }
    a[0] = a0, b[0] = b0;
    if (o1) a[1] = a1, b[1] = b1;
}

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
static inline uint32_t pack16(int8_t lo, int8_t hi) { return (uint16_t)lo | ((uint32_t)(uint16_t)hi << 16); }

/* First block (one channel): acc[0] += r[0..2]·(w0,w1,w2) and acc[1] += r[1..3]·(w0,w1,w2) with two SMLAD and
 * two halfword MACs; p = (w0,w1), h = w2 in the low half. r[1] is not word-aligned: the M7 loads it anyway. */
static inline void row2(const int16_t *r, uint32_t p, uint32_t h, int32_t *acc) {
    const uint32_t l01 = ld32(r), l12 = ld32(r + 1), l23 = ld32(r + 2);
    acc[0] = __smlabb(l23, h, __smlad(l01, p, acc[0]));
    acc[1] = __smlatb(l23, h, __smlad(l12, p, acc[1]));
}
#endif

static inline int8_t pool_quantize(const int32_t *acc, float m, int zp) {
    int32_t a = acc[0] > acc[1] ? acc[0] : acc[1];
    if (acc[2] > a) a = acc[2];
    if (acc[3] > a) a = acc[3];
    return quantize((float)a * m, zp);
}

/* Conv 3×3 pad 1 over s_pad, 2×2 max-pool of the int32 accumulators, one requantisation per output.
 * First block (one input channel): one output channel per pass. */
static void conv_first(const block_t *k) {
    const int w = TINYCL_B0_W, row = w + 2, ph = k->h / 2, pw = w / 2;
    for (int co = 0; co < k->cout; co++) {
        const int8_t *wco = (const int8_t *)k->wt + co * 9;
        const float m = k->mult[co];
        int8_t *out = s_act + co * ph * pw;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
        /* the 9 weights as (w0,w1) pairs and w2 halves, for the whole plane */
        const uint32_t p0 = pack16(wco[0], wco[1]), p1 = pack16(wco[3], wco[4]), p2 = pack16(wco[6], wco[7]);
        const uint32_t h0 = (uint16_t)wco[2], h1 = (uint16_t)wco[5], h2 = (uint16_t)wco[8];
        for (int py = 0; py < ph; py++)
            for (int px = 0; px < pw; px++) {
                const int16_t *r0 = s_pad + (2 * py) * row + 2 * px, *r1 = r0 + row, *r2 = r1 + row, *r3 = r2 + row;
                int32_t acc[4] = {k->bias[co], k->bias[co], k->bias[co], k->bias[co]};
                /* input row j is kernel row j of the top positions and kernel row j−1 of the bottom ones */
                row2(r0, p0, h0, &acc[0]);
                row2(r1, p1, h1, &acc[0]);
                row2(r1, p0, h0, &acc[2]);
                row2(r2, p2, h2, &acc[0]);
                row2(r2, p1, h1, &acc[2]);
                row2(r3, p2, h2, &acc[2]);
                out[py * pw + px] = pool_quantize(acc, m, k->out_zp);
            }
#else
        const int32_t w0 = wco[0], w1 = wco[1], w2 = wco[2], w3 = wco[3], w4 = wco[4], w5 = wco[5],
                      w6 = wco[6], w7 = wco[7], w8 = wco[8];
        for (int py = 0; py < ph; py++)
            for (int px = 0; px < pw; px++) {
                const int16_t *r0 = s_pad + (2 * py) * row + 2 * px, *r1 = r0 + row, *r2 = r1 + row, *r3 = r2 + row;
                int32_t acc[4];
                acc[0] = k->bias[co] + r0[0] * w0 + r0[1] * w1 + r0[2] * w2 + r1[0] * w3 + r1[1] * w4 +
                         r1[2] * w5 + r2[0] * w6 + r2[1] * w7 + r2[2] * w8;
                acc[1] = k->bias[co] + r0[1] * w0 + r0[2] * w1 + r0[3] * w2 + r1[1] * w3 + r1[2] * w4 +
                         r1[3] * w5 + r2[1] * w6 + r2[2] * w7 + r2[3] * w8;
                acc[2] = k->bias[co] + r1[0] * w0 + r1[1] * w1 + r1[2] * w2 + r2[0] * w3 + r2[1] * w4 +
                         r2[2] * w5 + r3[0] * w6 + r3[1] * w7 + r3[2] * w8;
                acc[3] = k->bias[co] + r1[1] * w0 + r1[2] * w1 + r1[3] * w2 + r2[1] * w3 + r2[2] * w4 +
                         r2[3] * w5 + r3[1] * w6 + r3[2] * w7 + r3[3] * w8;
                out[py * pw + px] = pool_quantize(acc, m, k->out_zp);
            }
#endif
    }
}

/* The other blocks (cin a multiple of 4): Winograd F(2×2, 3×3) (Lavin & Gray, 2016). Each 2×2 max-pool window
 * is one output tile, Aᵀ[U ⊙ V]A, from its 4×4 input patch d: V = Bᵀ d B (entries 0, ±1: |V| ≤ 4·255, int16)
 * and the filters U = G' g G'ᵀ, transformed by the generator (export/c_model.py: G' = 2G, so U is 4× the
 * textbook one and integer, |U| ≤ 1,152). Per tile and channel pair: 16 multiply-accumulates instead of 36.
 * Every sum is exact in int32, so the tile is exactly 4× the direct convolution's and >> 2 gives it back: the
 * outputs are bit-identical to the plain loops. Two tiles at a time: their V (16 runs of cin values each, in
 * s_pad's channel order, the two tiles' runs of an element side by side) in s_v, then each output channel
 * pair's 16 products by run2x2 (2 channels × 2 tiles). */
#if TINYCL_B1_CIN > 128 || TINYCL_B2_CIN > 128
#error "tinycl_cnn.c: a Winograd tile's int32 sums are exact up to 128 input channels (9 · 1,152 · 1,020 · 128 < 2^31)"
#endif
#define TILE_MAX MAX2(16 * TINYCL_B1_CIN, 16 * TINYCL_B2_CIN)
static int16_t s_v[2 * TILE_MAX] __attribute__((aligned(8)));

/* V of the tile whose patch starts at p (row: s_pad's row stride), into v: element e = 4i + j of channel c at
 * v[e·es + c]. */
static inline __attribute__((always_inline)) void tile_input(const int16_t *p, int row, int cin, int16_t *v,
                                                             int es) {
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    for (int c = 0; c < cin; c += 2) { /* two channels per word: SADD16 / SSUB16 (no lane overflows) */
        uint32_t t[4][4];
        for (int j = 0; j < 4; j++) { /* Bᵀ d: rows d0 − d2, d1 + d2, d2 − d1, d1 − d3 */
            const uint32_t d0 = ld32(p + j * cin + c), d1 = ld32(p + row + j * cin + c),
                           d2 = ld32(p + 2 * row + j * cin + c), d3 = ld32(p + 3 * row + j * cin + c);
            t[0][j] = __ssub16(d0, d2), t[1][j] = __sadd16(d1, d2), t[2][j] = __ssub16(d2, d1);
            t[3][j] = __ssub16(d1, d3);
        }
        for (int i = 0; i < 4; i++) { /* (Bᵀ d) B: the same on columns */
            int16_t *o = v + 4 * i * es + c;
            st32(o, __ssub16(t[i][0], t[i][2]));
            st32(o + es, __sadd16(t[i][1], t[i][2]));
            st32(o + 2 * es, __ssub16(t[i][2], t[i][1]));
            st32(o + 3 * es, __ssub16(t[i][1], t[i][3]));
        }
    }
#else
    for (int c = 0; c < cin; c++) {
        int32_t t[4][4];
        for (int j = 0; j < 4; j++) {
            const int32_t d0 = p[j * cin + c], d1 = p[row + j * cin + c], d2 = p[2 * row + j * cin + c],
                          d3 = p[3 * row + j * cin + c];
            t[0][j] = d0 - d2, t[1][j] = d1 + d2, t[2][j] = d2 - d1, t[3][j] = d1 - d3;
        }
        for (int i = 0; i < 4; i++) {
            v[(4 * i) * es + c] = (int16_t)(t[i][0] - t[i][2]);
            v[(4 * i + 1) * es + c] = (int16_t)(t[i][1] + t[i][2]);
            v[(4 * i + 2) * es + c] = (int16_t)(t[i][2] - t[i][1]);
            v[(4 * i + 3) * es + c] = (int16_t)(t[i][1] - t[i][3]);
        }
    }
#endif
}

/* Aᵀ M A of one tile's 16 products m[e·4] (stride 4: the products of 2 channels × 2 tiles interleave): its 4
 * outputs ×4, max-pooled, then ÷ 4 (exact: they are multiples of 4), + bias, requantised. */
static inline int8_t tile_output(const int32_t *m, int32_t bias, float mult, int zp) {
    int32_t s0[4], s1[4], y[4];
    for (int j = 0; j < 4; j++) { /* Aᵀ M: rows m0 + m1 + m2, m1 − m2 − m3 */
        s0[j] = m[4 * j] + m[4 * (4 + j)] + m[4 * (8 + j)];
        s1[j] = m[4 * (4 + j)] - m[4 * (8 + j)] - m[4 * (12 + j)];
    }
    y[0] = s0[0] + s0[1] + s0[2], y[1] = s0[1] - s0[2] - s0[3]; /* (Aᵀ M) A: the same on columns */
    y[2] = s1[0] + s1[1] + s1[2], y[3] = s1[1] - s1[2] - s1[3];
    int32_t mx = y[0] > y[1] ? y[0] : y[1];
    if (y[2] > mx) mx = y[2];
    if (y[3] > mx) mx = y[3];
    return quantize((float)((mx >> 2) + bias) * mult, zp);
}

/* cin and w are compile-time constants where it is inlined (offsets become immediates). */
static inline __attribute__((always_inline)) void conv_block(const block_t *k, const int cin, const int w) {
    const int row = (w + 2) * cin, tw = w / 2, nt = (k->h / 2) * tw, ts = 16 * cin; /* ts: a channel's U */
    for (int t = 0; t < nt; t += 2) {
        const int pair = t + 1 < nt; /* 0: an odd last tile, alone */
        for (int n = 0; n <= pair; n++)
            tile_input(s_pad + 2 * ((t + n) / tw) * row + 2 * ((t + n) % tw) * cin, row, cin, s_v + n * cin,
                       2 * cin);
        __asm__ volatile("" ::: "memory"); /* s_v is written before run2x2's LDRDs read it */
        for (int co = 0; co < k->cout; co += 2) {
            const int16_t *u = (const int16_t *)k->wt + co * ts; /* the pair co, co + 1: [16][cin/4][2][4] */
            int32_t m[16 * 4]; /* per e: channel co at tiles t, t + 1, then co + 1 at both */
            for (int e = 0; e < 16; e++) { /* the two tiles' runs are adjacent (offsets fit LDRD's immediate) */
                if (pair)
                    run2x2(s_v + 2 * e * cin, cin, u + 2 * e * cin, cin, &m[4 * e], &m[4 * e + 2]);
                else
                    run2x2(s_v + 2 * e * cin, 0, u + 2 * e * cin, cin, &m[4 * e], &m[4 * e + 2]);
            }
            for (int n = 0; n <= pair; n++) {
                s_act[co * nt + t + n] = tile_output(m + n, k->bias[co], k->mult[co], k->out_zp);
                s_act[(co + 1) * nt + t + n] = tile_output(m + 2 + n, k->bias[co + 1], k->mult[co + 1], k->out_zp);
            }
        }
    }
}

void tinycl_cnn_block(int b) {
    const block_t *k = &k_blocks[b];
    pad_input(s_act, k->cin, k->h, k->w, k->in_zp);
    __asm__ volatile("" ::: "memory"); /* s_pad is written before the kernels' LDRDs read it */
    switch (b) { /* one specialised copy per block */
    case 0: conv_first(k); break;
    case 1: conv_block(k, TINYCL_B1_CIN, TINYCL_B1_W); break;
    default: conv_block(k, TINYCL_B2_CIN, TINYCL_B2_W); break;
    }
}

#if (TINYCL_B1_CIN % 4) || (TINYCL_B2_CIN % 4) || TINYCL_B0_CIN != 1 || (TINYCL_B1_COUT % 2) || (TINYCL_B2_COUT % 2)
#error "tinycl_cnn.c: the first block takes 1 channel, the others a multiple of 4"
#endif

#if !TINYCL_HAS_FC
#error "tinycl_cnn.c runs the whole frozen model, its embedding included: build from the whole int8 model (tinycl design's chosen_full.int8.onnx, whose C is c_full/; its c/ is the part below the cut)"
#endif

#if TINYCL_FC_IN % 4
#error "tinycl_cnn.c: the Gemm input is read 4 values per step"
#endif

/* Gemm (one row of int8 weights per feature) → BatchNorm → int8. The input (x − zp) is stored in groups of 4 as
 * (x0, x2, x1, x3), like s_pad, so that on the M7 one LDRD + two SMLAD do 4 multiply-accumulates. */
void tinycl_cnn_head(int8_t *features_q) {
    int16_t *xin = s_pad; /* (x − zp) of the flattened last block output */
    for (int i = 0; i < TINYCL_FC_IN; i++) xin[perm4(i)] = (int16_t)(s_act[i] - TINYCL_FC_IN_ZP);
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    __asm__ volatile("" ::: "memory"); /* xin is written before the LDRDs below read it */
#endif
    for (int f = 0; f < TINYCL_N_FEATURES; f++) {
        const int8_t *w = tinycl_fc_w + f * TINYCL_FC_IN;
        int32_t acc = tinycl_fc_bias[f];
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
        const int16_t *x = xin;
#pragma GCC unroll 2
        for (int i = 0; i < TINYCL_FC_IN; i += 4) {
            const uint32_t wv = ld32(w + i);
            uint32_t lo, hi;
            __asm__ volatile("ldrd %0, %1, [%2], #8" : "=r"(lo), "=r"(hi), "+r"(x));
            acc = __smlad(hi, sxtb16_ror8(wv), __smlad(lo, __sxtb16(wv), acc));
        }
#else
        for (int i = 0; i < TINYCL_FC_IN; i++) acc += xin[perm4(i)] * w[i];
#endif
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

/* The same forward pass; the last block's pooled output (s_act, which the head only reads) is the cut. */
void tinycl_features_cut_q(const uint8_t *pixels, int8_t *features_q, int8_t *cut_q) {
    tinycl_features_q(pixels, features_q);
    for (int i = 0; i < TINYCL_CUT_F; i++) cut_q[i] = s_act[i];
}

void tinycl_dequantize(const int8_t *features_q, float *features) {
    for (int f = 0; f < TINYCL_N_FEATURES; f++)
        features[f] = (float)(features_q[f] - TINYCL_FEAT_ZP) * TINYCL_FEAT_SCALE;
}
