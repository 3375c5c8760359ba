/* Latent replay with trainable fully connected upper layers: port of tinycl_nodes/core/latent.py
 * (LatentUpperHead) and of the int8 ReplayBuffer it keeps (core/replay.py, core/quantize.py).
 * float32 arithmetic where numpy is float32 (forward, softmax, gradients, updates), double where
 * Python computes in double (the int8 grid calibration, lr·upper_lr_scale). Sums run in index
 * order: numpy's BLAS sums in blocks, so results agree to rounding, not bit for bit. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "tinycl_bytes.h"
#include "tinycl_latent.h"
#include "tinycl_util.h"

#define QMIN (-128)
#define QMAX 127

#if TINYCL_LATENT_MEMORY > 65535 || TINYCL_LATENT_ORDER_CAP > 65535
#error "replay indices are uint16"
#endif
#if TINYCL_MAX_CLASSES > 256
#error "replay labels are uint8 class rows"
#endif
#if TINYCL_LATENT_F > 65535
#error "the blob header's feature count is u16"
#endif

static const uint16_t k_fc_in[TINYCL_LATENT_N_FC] = TINYCL_LATENT_FC_IN_DIMS;
static const uint16_t k_fc_out[TINYCL_LATENT_N_FC] = TINYCL_LATENT_FC_OUT_DIMS;
static const uint8_t k_fc_relu[TINYCL_LATENT_N_FC] = TINYCL_LATENT_FC_RELU;

/* ---- PCG32 (tinycl_nodes/core/draws.py) ------------------------------------------------------ */
uint32_t tinycl_pcg32_next(tinycl_pcg32_t *r) {
    const uint64_t old = r->state;
    r->state = old * 6364136223846793005ULL + r->inc;
    const uint32_t xs = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    const uint32_t rot = (uint32_t)(old >> 59u);
    return (xs >> rot) | (xs << ((0u - rot) & 31u));
}

void tinycl_pcg32_seed(tinycl_pcg32_t *r, uint64_t seed, uint64_t stream) {
    r->inc = (stream << 1u) | 1u;
    r->state = 0;
    (void)tinycl_pcg32_next(r);
    r->state += seed;
    (void)tinycl_pcg32_next(r);
}

static uint32_t below(tinycl_pcg32_t *r, uint32_t n) {
    return (uint32_t)(((uint64_t)tinycl_pcg32_next(r) * n) >> 32);
}

void tinycl_pcg32_choice(tinycl_pcg32_t *r, uint32_t n, uint32_t k, uint16_t *out) {
    uint32_t need = k, m = 0;
    for (uint32_t i = 0; i < n && need; i++)
        if (below(r, n - i) < need) {
            out[m++] = (uint16_t)i;
            need--;
        }
}

void tinycl_pcg32_permutation(tinycl_pcg32_t *r, uint32_t n, uint16_t *out) {
    for (uint32_t i = 0; i < n; i++) out[i] = (uint16_t)i;
    for (uint32_t i = n; i-- > 1;) {
        const uint32_t j = below(r, i + 1);
        const uint16_t t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
}

/* ---- int8 grids (quantize.py) ---------------------------------------------------------------- */
#define GRID_SIZE(h) ((h)->n_grids == 1 ? TINYCL_LATENT_F : (TINYCL_LATENT_HEIGHT * TINYCL_LATENT_WIDTH))

/* The grid(s) of a head that calibrates them: on its first batch, queued as floats. */
static void fit_grids(tinycl_latent_t *h, uint32_t n) {
#if TINYCL_LATENT_FLOAT_BATCH == 0
    (void)h, (void)n; /* never reached: heads of this build learn after use_grid only */
#else
    const uint32_t grids = h->p.quantization == TINYCL_LATENT_QUANT_CHANNEL ? TINYCL_LATENT_CH : 1u;
    const uint32_t S = TINYCL_LATENT_F / grids;
    for (uint32_t g = 0; g < grids; g++) {
        double lo = 0.0, hi = 0.0; /* the range always includes 0 */
        for (uint32_t i = 0; i < n; i++)
            for (uint32_t f = g * S; f < (g + 1) * S; f++) {
                const double v = h->pend.x[i][f];
                if (v < lo) lo = v;
                if (v > hi) hi = v;
            }
        lo *= 1.0 + h->p.margin;
        hi *= 1.0 + h->p.margin;
        if (hi - lo <= 0) {
            h->q_scale[g] = 1.0f;
            h->q_zp[g] = 0;
            continue;
        }
        const double scale = (hi - lo) / (double)(QMAX - QMIN);
        double zp = rint((double)QMIN - lo / scale);
        if (zp < QMIN) zp = QMIN;
        if (zp > QMAX) zp = QMAX;
        h->q_scale[g] = (float)scale;
        h->q_zp[g] = (int32_t)zp;
    }
    h->n_grids = grids;
#endif
}

static void quantize_row(const tinycl_latent_t *h, const float *x, int8_t *q) {
    const uint32_t S = GRID_SIZE(h);
    for (uint32_t f = 0; f < TINYCL_LATENT_F; f++) {
        const uint32_t g = f / S;
        float v = rintf(x[f] / h->q_scale[g]) + (float)h->q_zp[g];
        if (v < (float)QMIN) v = (float)QMIN;
        if (v > (float)QMAX) v = (float)QMAX;
        q[f] = (int8_t)v;
    }
}


/* (q − zp)·scale with each value's grid: ReplayBuffer's dequantisation. */
static void dequantize_row(const tinycl_latent_t *h, const int8_t *q, float *out) {
    const uint32_t S = GRID_SIZE(h);
    for (uint32_t g = 0; g < h->n_grids; g++) {
        const float z = (float)h->q_zp[g], sc = h->q_scale[g];
        for (uint32_t f = g * S; f < (g + 1) * S; f++) out[f] = ((float)q[f] - z) * sc;
    }
}

/* Element e of a training pass: new pattern e (< n_new) or replay slot pick[e − n_new]. */
static const float *pattern(tinycl_latent_t *h, uint32_t e, uint32_t n_new, float *scratch) {
#if TINYCL_LATENT_FLOAT_BATCH > 0
    if (e < n_new && !h->coded) return h->pend.x[e];
#endif
    dequantize_row(h, e < n_new ? h->pend.q[e] : h->mem_x[h->pick[e - n_new]], scratch);
    return scratch;
}

/* Column f of the patterns idx[0..m) into out (replayed values dequantised with f's grid). */
static void gather_column(tinycl_latent_t *h, const uint16_t *idx, uint32_t m, uint32_t n_new, uint32_t f,
                          float *out) {
    const uint32_t g = h->n_grids ? f / GRID_SIZE(h) : 0;
    const float z = (float)h->q_zp[g], sc = h->q_scale[g];
    for (uint32_t j = 0; j < m; j++) {
        const uint32_t e = idx[j];
#if TINYCL_LATENT_FLOAT_BATCH > 0
        if (e < n_new && !h->coded) {
            out[j] = h->pend.x[e][f];
            continue;
        }
#endif
        out[j] = ((float)(e < n_new ? h->pend.q[e][f] : h->mem_x[h->pick[e - n_new]][f]) - z) * sc;
    }
}

static uint8_t pattern_row(const tinycl_latent_t *h, uint32_t e, uint32_t n_new) {
    return e < n_new ? h->pend_row[e] : h->mem_row[h->pick[e - n_new]];
}

/* ---- forward --------------------------------------------------------------------------------- */
/* Σ a[i]·b[i] in four interleaved partial sums, (s0 + s1) + (s2 + s3), then the tail in order; each
 * step a fused multiply-add (fmaf: correctly rounded on every target, one VFMA on the M7). */
static inline float dot(const float *a, const float *b, uint32_t n) {
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    const uint32_t n4 = n & ~3u;
    uint32_t i = 0;
    for (; i < n4; i += 4) {
        s0 = fmaf(a[i], b[i], s0);
        s1 = fmaf(a[i + 1], b[i + 1], s1);
        s2 = fmaf(a[i + 2], b[i + 2], s2);
        s3 = fmaf(a[i + 3], b[i + 3], s3);
    }
    float s = (s0 + s1) + (s2 + s3);
    for (uint32_t t = 0; t < (n & 3u); t++) s = fmaf(a[n4 + t], b[n4 + t], s);
    return s;
}

/* Upper layers (acts: every FC output after its ReLU) then the classifier logits. */
static void forward(const tinycl_latent_t *h, const float *x, float *acts, float *logits) {
    const float *in = x;
    const float *w = h->fc_w, *b = h->fc_b;
    float *out = acts;
    for (uint32_t l = 0; l < TINYCL_LATENT_N_FC; l++) {
        const uint32_t I = k_fc_in[l], O = k_fc_out[l];
        for (uint32_t o = 0; o < O; o++) {
            float acc = dot(in, w + (size_t)o * I, I);
            acc += b[o];
            out[o] = (k_fc_relu[l] && !(acc > 0.0f)) ? 0.0f : acc;
        }
        w += (size_t)O * I;
        b += O;
        in = out;
        out += O;
    }
    for (uint32_t c = 0; c < h->n_classes; c++) {
        logits[c] = dot(in, h->cls_w[c], TINYCL_LATENT_EMBED) + h->cls_b[c];
    }
}

static const float *layer_input(const float *x, const float *acts, uint32_t l) {
    if (l == 0) return x;
    uint32_t off = 0;
    for (uint32_t j = 0; j + 1 < l; j++) off += k_fc_out[j];
    return acts + off;
}

/* A weight update that keeps every weight finite: the new value, unless it is NaN or ±inf (then the old one
 * stays and *bad is set). latent.py undoes a whole diverged batch from a copy of its weights; the C head has no
 * RAM for that copy (~300 KB), so it never writes a non-finite weight and drops the rest of the batch instead. */
static inline void update(float *w, float delta, int *bad) {
    const float t = *w - delta;
    if (fabsf(t) <= FLT_MAX)
        *w = t;
    else
        *bad = 1;
}

/* ---- one SGD step on m patterns (latent.py _sgd_step / loss_and_grads) ------------------------- */
/* TINYCL_EDIVERGED when the forward gives a NaN/inf probability (the step is not taken) or an update would
 * (that weight keeps its value): the learning rate is too high for these features. */
static int sgd_step(tinycl_latent_t *h, const uint16_t *idx, uint32_t m, uint32_t n_new) {
    const uint32_t C = h->n_classes;
    const float fm = (float)m; /* P /= np.float32(k) */
    /* forward, softmax, (P − onehot) / m */
    for (uint32_t j = 0; j < m; j++) {
        const float *x = pattern(h, idx[j], n_new, h->x_row);
        float *z = h->probs[j];
        forward(h, x, h->acts[j], z);
        float mx = z[0], sum = 0.0f;
        for (uint32_t c = 1; c < C; c++)
            if (z[c] > mx) mx = z[c];
        for (uint32_t c = 0; c < C; c++) {
            z[c] = expf(z[c] - mx);
            sum += z[c];
        }
        if (!(sum <= FLT_MAX)) return TINYCL_EDIVERGED; /* NaN/inf logits: nothing written yet */
        for (uint32_t c = 0; c < C; c++) z[c] /= sum;
        z[pattern_row(h, idx[j], n_new)] -= 1.0f;
        for (uint32_t c = 0; c < C; c++) z[c] /= fm;
    }
    int bad = 0;
    const int train_upper = h->p.upper_lr_scale > 0.0;
    const float lr = (float)h->p.lr;
    const float ulr = (float)(h->p.lr * h->p.upper_lr_scale);
    uint32_t off_last = 0;
    for (uint32_t l = 0; l + 1 < TINYCL_LATENT_N_FC; l++) off_last += k_fc_out[l];
    /* gradient at the embedding, with the classifier's weights before its update */
    int cur = 0;
    if (train_upper)
        for (uint32_t j = 0; j < m; j++)
            for (uint32_t e = 0; e < TINYCL_LATENT_EMBED; e++) {
                float acc = 0.0f;
                for (uint32_t c = 0; c < C; c++) acc += h->probs[j][c] * h->cls_w[c][e];
                h->grad[cur][j][e] = acc;
            }
    /* classifier update: W −= lr·Pᵀ·H, b −= lr·ΣP */
    for (uint32_t c = 0; c < C; c++) {
        for (uint32_t e = 0; e < TINYCL_LATENT_EMBED; e++) {
            float acc = 0.0f;
            for (uint32_t j = 0; j < m; j++) acc += h->probs[j][c] * h->acts[j][off_last + e];
            update(&h->cls_w[c][e], lr * acc, &bad);
        }
        float acc = 0.0f;
        for (uint32_t j = 0; j < m; j++) acc += h->probs[j][c];
        update(&h->cls_b[c], lr * acc, &bad);
    }
    if (!train_upper) return bad ? TINYCL_EDIVERGED : TINYCL_OK;
    /* upper FC layers, last first: ReLU mask, input gradient (old weights), then the update */
    size_t w_off = TINYCL_LATENT_FC_WEIGHTS, b_off = TINYCL_LATENT_FC_BIASES;
    for (uint32_t l = TINYCL_LATENT_N_FC; l-- > 0;) {
        const uint32_t I = k_fc_in[l], O = k_fc_out[l];
        w_off -= (size_t)O * I;
        b_off -= O;
        float *W = h->fc_w + w_off, *B = h->fc_b + b_off;
        float(*G)[TINYCL_LATENT_MAX_WIDTH] = h->grad[cur];
        if (k_fc_relu[l]) {
            uint32_t off = 0;
            for (uint32_t j = 0; j < l; j++) off += k_fc_out[j];
            for (uint32_t j = 0; j < m; j++)
                for (uint32_t o = 0; o < O; o++)
                    if (!(h->acts[j][off + o] > 0.0f)) G[j][o] = 0.0f;
        }
        if (l > 0) {
            float(*Gp)[TINYCL_LATENT_MAX_WIDTH] = h->grad[cur ^ 1];
            for (uint32_t j = 0; j < m; j++)
                for (uint32_t i = 0; i < I; i++) {
                    float acc = 0.0f;
                    for (uint32_t o = 0; o < O; o++) acc += G[j][o] * W[(size_t)o * I + i];
                    Gp[j][i] = acc;
                }
        }
        /* W −= ulr·Gᵀ·X: one input column at a time, Gᵀ rows contiguous */
        for (uint32_t o = 0; o < O; o++) {
            float acc = 0.0f;
            for (uint32_t j = 0; j < m; j++) {
                h->grad_t[o][j] = G[j][o];
                acc += G[j][o];
            }
            update(&B[o], ulr * acc, &bad);
        }
        for (uint32_t i = 0; i < I; i++) {
            if (l == 0)
                gather_column(h, idx, m, n_new, i, h->gather);
            else
                for (uint32_t j = 0; j < m; j++) h->gather[j] = layer_input(NULL, h->acts[j], l)[i];
            for (uint32_t o = 0; o < O; o++) update(&W[(size_t)o * I + i], ulr * dot(h->grad_t[o], h->gather, m), &bad);
        }
        cur ^= 1;
    }
    return bad ? TINYCL_EDIVERGED : TINYCL_OK;
}

/* ---- memory rule (replay.py ReplayBuffer._add) ----------------------------------------------- */
static void memory_add(tinycl_latent_t *h, uint32_t n) {
    if (n == 0) return;
    if (h->n_grids == 0) fit_grids(h, n);
    const uint32_t cap = h->p.memory_size;
    uint32_t keep = (uint32_t)(cap / ((uint64_t)h->n_batches + 1u)); /* Python's ints: no wrap to ÷ 0 */
    if (keep > n) keep = n;
    if (keep) {
        tinycl_pcg32_choice(&h->rng_mem, n, keep, h->keep);
        const uint32_t free_slots = cap - h->mem_size;
        const uint32_t n_fill = keep < free_slots ? keep : free_slots;
        for (uint32_t i = 0; i < n_fill; i++) h->slots[i] = (uint16_t)(h->mem_size + i);
        tinycl_pcg32_choice(&h->rng_mem, h->mem_size, keep - n_fill, h->slots + n_fill);
        for (uint32_t i = 0; i < keep; i++) {
            if (h->coded) /* dequantised and quantised again on the same grid: the same code */
                memcpy(h->mem_x[h->slots[i]], h->pend.q[h->keep[i]], TINYCL_LATENT_F);
#if TINYCL_LATENT_FLOAT_BATCH > 0
            else
                quantize_row(h, h->pend.x[h->keep[i]], h->mem_x[h->slots[i]]);
#endif
            h->mem_row[h->slots[i]] = h->pend_row[h->keep[i]];
        }
        h->mem_size += n_fill;
    }
    h->n_batches = tinycl_sat_inc(h->n_batches); /* kept 0 from 1,500 batches on: the same at 2^32 − 1 */
}

/* Train on the queued batch mixed with replays, then let the memory rule keep some of it; a diverged step ends
 * the batch, which is dropped (not kept in memory: latent.py's _train_batch). */
static int train_batch(tinycl_latent_t *h) {
    const uint32_t n = h->n_pending;
    for (uint32_t ep = 0; ep < h->p.epochs; ep++) {
        uint32_t k = 0;
        if (h->mem_size && h->p.replay != 0) {
            k = h->p.replay < h->mem_size ? h->p.replay : h->mem_size;
            tinycl_pcg32_choice(&h->rng_sgd, h->mem_size, k, h->pick);
        }
        const uint32_t total = n + k;
        tinycl_pcg32_permutation(&h->rng_sgd, total, h->order);
        for (uint32_t s = 0; s < total; s += h->p.minibatch) {
            const uint32_t m = total - s < h->p.minibatch ? total - s : h->p.minibatch;
            if (sgd_step(h, h->order + s, m, n) != TINYCL_OK) {
                h->n_pending = 0;
                return TINYCL_EDIVERGED;
            }
        }
    }
    memory_add(h, n);
    h->n_pending = 0;
    return TINYCL_OK;
}

/* ---- public API ------------------------------------------------------------------------------- */
void tinycl_latent_default_params(tinycl_latent_params_t *p) {
    p->lr = TINYCL_LATENT_DEFAULT_LR;
    p->upper_lr_scale = TINYCL_LATENT_DEFAULT_UPPER_LR_SCALE;
    p->margin = TINYCL_LATENT_DEFAULT_MARGIN;
    p->memory_size = TINYCL_LATENT_DEFAULT_MEMORY < TINYCL_LATENT_MEMORY ? TINYCL_LATENT_DEFAULT_MEMORY
                                                                         : TINYCL_LATENT_MEMORY;
    p->batch_size = TINYCL_LATENT_DEFAULT_BATCH;
    p->epochs = TINYCL_LATENT_DEFAULT_EPOCHS;
    p->replay = TINYCL_LATENT_DEFAULT_REPLAY;
    p->minibatch = TINYCL_LATENT_DEFAULT_MINIBATCH;
    p->quantization = TINYCL_LATENT_DEFAULT_QUANT;
    p->seed = TINYCL_LATENT_DEFAULT_SEED;
}

static int params_ok(const tinycl_latent_params_t *p) {
    if (!p || !(p->lr > 0.0) || !isfinite(p->lr) || !(p->upper_lr_scale >= 0.0) || !isfinite(p->upper_lr_scale) ||
        !(p->margin >= 0.0) || !isfinite(p->margin))
        return 0;
    if (p->memory_size < 1 || p->memory_size > TINYCL_LATENT_MEMORY || p->batch_size < 1 ||
        p->batch_size > TINYCL_LATENT_MAX_BATCH || p->epochs < 1 || p->minibatch < 1 ||
        p->minibatch > TINYCL_LATENT_MAX_MINIBATCH)
        return 0;
    const uint32_t k = p->replay < p->memory_size ? p->replay : p->memory_size;
    if (k > TINYCL_LATENT_PICK_CAP) return 0;
    return p->quantization == TINYCL_LATENT_QUANT_TENSOR || p->quantization == TINYCL_LATENT_QUANT_CHANNEL;
}

int tinycl_latent_init(tinycl_latent_t *h, const tinycl_latent_params_t *p) {
    if (!h || !params_ok(p)) return TINYCL_EINVAL;
    memset(h, 0, sizeof *h);
    h->p = *p;
    memcpy(h->fc_w, tinycl_latent_init_w, sizeof h->fc_w);
    memcpy(h->fc_b, tinycl_latent_init_b, sizeof h->fc_b);
    tinycl_pcg32_seed(&h->rng_mem, p->seed, 1u);
    tinycl_pcg32_seed(&h->rng_sgd, p->seed, 2u);
    return TINYCL_OK;
}

/* Queue a sample given as floats x (quantised on the grid when coded) or, on a coded head, as codes q. */
static int learn_sample(tinycl_latent_t *h, const float *x, const int8_t *q, int32_t y) {
    if (y < 0 || (!h->coded && h->p.batch_size > TINYCL_LATENT_FLOAT_BATCH)) return TINYCL_EINVAL;
    uint32_t row = 0;
    while (row < h->n_classes && h->classes[row] != y) row++;
    if (row == h->n_classes) {
        if (h->n_classes >= TINYCL_MAX_CLASSES) return TINYCL_EFULL;
        memset(h->cls_w[row], 0, sizeof h->cls_w[row]);
        h->cls_b[row] = 0.0f;
        h->classes[row] = y;
        h->class_seen[row] = 0;
        h->n_classes++;
    }
    if (q)
        memcpy(h->pend.q[h->n_pending], q, TINYCL_LATENT_F);
    else if (h->coded)
        quantize_row(h, x, h->pend.q[h->n_pending]);
#if TINYCL_LATENT_FLOAT_BATCH > 0
    else
        memcpy(h->pend.x[h->n_pending], x, sizeof h->pend.x[0]);
#endif
    h->pend_row[h->n_pending] = (uint8_t)row;
    h->n_pending++;
    if (h->n_pending >= h->p.batch_size && train_batch(h) != TINYCL_OK) return TINYCL_EDIVERGED;
    h->n_seen = tinycl_sat_inc(h->n_seen);
    h->class_seen[row] = tinycl_sat_inc(h->class_seen[row]);
    return TINYCL_OK;
}

int tinycl_latent_learn(tinycl_latent_t *h, const float *x, int32_t y) {
    if (!h || !x) return TINYCL_EINVAL;
    for (uint32_t f = 0; f < TINYCL_LATENT_F; f++)
        if (!isfinite(x[f])) return TINYCL_EINVAL;
    return learn_sample(h, x, NULL, y);
}

int tinycl_latent_flush(tinycl_latent_t *h) {
    if (!h) return TINYCL_EINVAL;
    return h->n_pending ? train_batch(h) : TINYCL_OK;
}

int tinycl_latent_scores(tinycl_latent_t *h, const float *x, float *scores) {
    if (!h || !x || !scores) return TINYCL_EINVAL;
    for (uint32_t f = 0; f < TINYCL_LATENT_F; f++)
        if (!isfinite(x[f])) return TINYCL_EINVAL;
    forward(h, x, h->acts[0], scores);
    return TINYCL_OK;
}

int tinycl_latent_predict(tinycl_latent_t *h, const float *x, int32_t *y) {
    if (!h || !y) return TINYCL_EINVAL;
    if (h->n_classes == 0) return TINYCL_EEMPTY;
    float *z = h->probs[0];
    const int rc = tinycl_latent_scores(h, x, z);
    if (rc) return rc;
    uint32_t best = 0;
    for (uint32_t c = 1; c < h->n_classes; c++)
        if (z[c] > z[best]) best = c;
    *y = h->classes[best];
    return TINYCL_OK;
}

/* ---- int8 latents on the head's own grid (the board's CNN cut) ------------------------------------ */
int tinycl_latent_use_grid(tinycl_latent_t *h, float scale, int32_t zero_point) {
    if (!h || !(scale > 0.0f) || !isfinite(scale) || zero_point < QMIN || zero_point > QMAX ||
        h->p.quantization != TINYCL_LATENT_QUANT_TENSOR || h->n_seen || h->n_pending || h->mem_size)
        return TINYCL_EINVAL;
    h->q_scale[0] = scale;
    h->q_zp[0] = zero_point;
    h->n_grids = 1;
    h->coded = 1;
    return TINYCL_OK;
}

/* (q − zp)·scale on the head's per-tensor grid into the scratch row: ReplayBuffer's dequantisation. */
static const float *dequantized(tinycl_latent_t *h, const int8_t *q) {
    if (!q || h->n_grids != 1 || h->p.quantization != TINYCL_LATENT_QUANT_TENSOR) return NULL;
    dequantize_row(h, q, h->x_row);
    return h->x_row;
}

int tinycl_latent_learn_q(tinycl_latent_t *h, const int8_t *q, int32_t y) {
    if (!h) return TINYCL_EINVAL;
    if (h->coded) return q ? learn_sample(h, NULL, q, y) : TINYCL_EINVAL;
    const float *x = dequantized(h, q); /* a calibrated per-tensor grid: learnt as floats */
    return x ? tinycl_latent_learn(h, x, y) : TINYCL_EINVAL;
}

int tinycl_latent_scores_q(tinycl_latent_t *h, const int8_t *q, float *scores) {
    if (!h) return TINYCL_EINVAL;
    const float *x = dequantized(h, q);
    return x ? tinycl_latent_scores(h, x, scores) : TINYCL_EINVAL;
}

int tinycl_latent_predict_q(tinycl_latent_t *h, const int8_t *q, int32_t *y) {
    if (!h) return TINYCL_EINVAL;
    if (h->n_classes == 0) return TINYCL_EEMPTY;
    const float *x = dequantized(h, q);
    return x ? tinycl_latent_predict(h, x, y) : TINYCL_EINVAL;
}

void tinycl_latent_view(const tinycl_latent_t *h, tinycl_latent_view_t *v) {
    v->fc_w = h->fc_w;
    v->fc_b = h->fc_b;
    v->cls_w = &h->cls_w[0][0];
    v->cls_b = h->cls_b;
    v->classes = h->classes;
    v->class_seen = h->class_seen;
    v->mem_x = &h->mem_x[0][0];
    v->mem_row = h->mem_row;
    v->q_scale = h->q_scale;
    v->q_zp = h->q_zp;
    v->n_classes = h->n_classes;
    v->n_seen = h->n_seen;
    v->n_pending = h->n_pending;
    v->mem_size = h->mem_size;
    v->n_batches = h->n_batches;
    v->n_grids = h->n_grids;
}

size_t tinycl_sizeof_latent(void) { return sizeof(tinycl_latent_t); }

void tinycl_latent_build(uint32_t out[12]) {
    const uint32_t v[12] = {TINYCL_LATENT_F, TINYCL_LATENT_CH, TINYCL_LATENT_HEIGHT, TINYCL_LATENT_WIDTH, TINYCL_LATENT_N_FC,
                            TINYCL_LATENT_EMBED, TINYCL_LATENT_FC_WEIGHTS, TINYCL_LATENT_FC_BIASES, TINYCL_LATENT_MEMORY,
                            TINYCL_LATENT_MAX_BATCH, TINYCL_LATENT_MAX_MINIBATCH, TINYCL_LATENT_PICK_CAP};
    memcpy(out, v, sizeof v);
}

void tinycl_latent_fc_dims(uint32_t *in_dims, uint32_t *out_dims, uint32_t *relu) {
    for (uint32_t l = 0; l < TINYCL_LATENT_N_FC; l++) {
        in_dims[l] = k_fc_in[l];
        out_dims[l] = k_fc_out[l];
        relu[l] = k_fc_relu[l];
    }
}

/* ---- state blob (format in tinycl_latent.h; bytes by tinycl_bytes.h) ---------------------------- */
static size_t state_bytes(uint32_t C, uint32_t G, uint32_t P, uint32_t M, uint32_t coded) {
    return TINYCL_HEADER_BYTES + TINYCL_LATENT_STATE_FIXED + 8u * C +
           4u * (TINYCL_LATENT_FC_WEIGHTS + TINYCL_LATENT_FC_BIASES) + 4u * C * (TINYCL_LATENT_EMBED + 1u) + 8u * G +
           (size_t)P * ((coded ? 1u : 4u) * TINYCL_LATENT_F + 1u) + (size_t)M * (TINYCL_LATENT_F + 1u) + 4u;
}

size_t tinycl_latent_state_size(const tinycl_latent_t *h) {
    return state_bytes(h->n_classes, h->n_grids, h->n_pending, h->mem_size, h->coded);
}

/* The blob's fields in order (to memory or to a stream): the one writer of the format. */
static void write_state(const tinycl_latent_t *h, wr_t *w, const uint8_t *start) {
    const uint32_t C = h->n_classes;
    put_header_v(w, TINYCL_KIND_LATENT, TINYCL_LATENT_STATE_VERSION, TINYCL_LATENT_F, C);
    put_f64(w, h->p.lr);
    put_f64(w, h->p.upper_lr_scale);
    put_f64(w, h->p.margin);
    const uint32_t u[] = {h->p.memory_size, h->p.batch_size, h->p.epochs, h->p.replay, h->p.minibatch,
                          h->p.quantization, h->p.seed, TINYCL_LATENT_FC_WEIGHTS, TINYCL_LATENT_FC_BIASES,
                          TINYCL_LATENT_EMBED, h->n_seen, h->n_batches, h->mem_size, h->n_pending, h->n_grids,
                          h->coded};
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) put_u32(w, u[i]);
    put_u64(w, h->rng_mem.state);
    put_u64(w, h->rng_mem.inc);
    put_u64(w, h->rng_sgd.state);
    put_u64(w, h->rng_sgd.inc);
    for (uint32_t c = 0; c < C; c++) put_u32(w, (uint32_t)h->classes[c]);
    for (uint32_t c = 0; c < C; c++) put_u32(w, h->class_seen[c]);
    for (uint32_t i = 0; i < TINYCL_LATENT_FC_WEIGHTS; i++) put_f32(w, h->fc_w[i]);
    for (uint32_t i = 0; i < TINYCL_LATENT_FC_BIASES; i++) put_f32(w, h->fc_b[i]);
    for (uint32_t c = 0; c < C; c++)
        for (uint32_t e = 0; e < TINYCL_LATENT_EMBED; e++) put_f32(w, h->cls_w[c][e]);
    for (uint32_t c = 0; c < C; c++) put_f32(w, h->cls_b[c]);
    for (uint32_t g = 0; g < h->n_grids; g++) put_f32(w, h->q_scale[g]);
    for (uint32_t g = 0; g < h->n_grids; g++) put_u32(w, (uint32_t)h->q_zp[g]);
    if (h->coded)
        put_bytes(w, h->pend.q, (size_t)h->n_pending * TINYCL_LATENT_F); /* rows are contiguous */
#if TINYCL_LATENT_FLOAT_BATCH > 0
    else
        for (uint32_t i = 0; i < h->n_pending; i++)
            for (uint32_t f = 0; f < TINYCL_LATENT_F; f++) put_f32(w, h->pend.x[i][f]);
#endif
    put_bytes(w, h->pend_row, h->n_pending);
    put_bytes(w, h->mem_x, (size_t)h->mem_size * TINYCL_LATENT_F); /* rows are contiguous */
    put_bytes(w, h->mem_row, h->mem_size);
    put_crc(w, start);
}

int tinycl_latent_save(const tinycl_latent_t *h, uint8_t *buf, size_t cap, size_t *written) {
    if (!h || !buf) return TINYCL_EINVAL;
    if (cap < tinycl_latent_state_size(h)) return TINYCL_ESPACE;
    wr_t w = WR_MEM(buf);
    write_state(h, &w, buf);
    if (written) *written = (size_t)(w.p - buf);
    return TINYCL_OK;
}

int tinycl_latent_save_to(const tinycl_latent_t *h, tinycl_sink_fn sink, void *ctx, uint8_t *scratch, size_t cap) {
    if (!h || !sink || !scratch || cap < 8u) return TINYCL_EINVAL;
    wr_t w = {scratch, scratch, scratch + cap, sink, ctx, 0u, 0};
    write_state(h, &w, scratch);
    return w.err ? TINYCL_ESPACE : TINYCL_OK;
}

/* Reads the blob's fields in order. dst NULL: checks everything (nothing written); else copies them into dst
 * (a blob checked before). TINYCL_ESTATE on anything this build cannot hold or that is malformed. */
static int read_state(rd_t *r, size_t len, tinycl_latent_t *dst) {
    uint8_t version;
    const int n = get_header_v(r, TINYCL_KIND_LATENT, TINYCL_LATENT_STATE_VERSION, TINYCL_LATENT_F, &version);
    if (n < 0) return n;
    if (version != TINYCL_LATENT_STATE_VERSION) return TINYCL_ESTATE; /* version 1: see tinycl_latent.h */
    const uint32_t C = (uint32_t)n;
    tinycl_latent_params_t prm;
    prm.lr = get_f64(r);
    prm.upper_lr_scale = get_f64(r);
    prm.margin = get_f64(r);
    uint32_t u[16];
    for (int i = 0; i < 16; i++) u[i] = get_u32(r);
    prm.memory_size = u[0], prm.batch_size = u[1], prm.epochs = u[2], prm.replay = u[3], prm.minibatch = u[4];
    prm.quantization = u[5], prm.seed = u[6];
    const uint32_t M = u[12], P = u[13], G = u[14], coded = u[15];
    if (!params_ok(&prm) || u[7] != TINYCL_LATENT_FC_WEIGHTS || u[8] != TINYCL_LATENT_FC_BIASES ||
        u[9] != TINYCL_LATENT_EMBED || M > prm.memory_size || P >= prm.batch_size ||
        (G != 0 && G != (prm.quantization == TINYCL_LATENT_QUANT_CHANNEL ? TINYCL_LATENT_CH : 1u)) ||
        ((M || P) && C == 0) || (M && G == 0) || coded > 1u ||
        (coded && (G != 1 || prm.quantization != TINYCL_LATENT_QUANT_TENSOR)) ||
        (!coded && prm.batch_size > TINYCL_LATENT_FLOAT_BATCH) || len != state_bytes(C, G, P, M, coded))
        return TINYCL_ESTATE;
    tinycl_pcg32_t rm, rs;
    rm.state = get_u64(r), rm.inc = get_u64(r), rs.state = get_u64(r), rs.inc = get_u64(r);
    if (!(rm.inc & 1u) || !(rs.inc & 1u)) return TINYCL_ESTATE;
    if (dst) {
        memset(dst, 0, sizeof *dst);
        dst->p = prm;
        dst->n_classes = C, dst->n_seen = u[10], dst->n_batches = u[11], dst->mem_size = M, dst->n_pending = P;
        dst->n_grids = G, dst->coded = coded, dst->rng_mem = rm, dst->rng_sgd = rs;
    }
    int32_t ids[TINYCL_MAX_CLASSES];
    for (uint32_t c = 0; c < C; c++) {
        ids[c] = (int32_t)get_u32(r);
        if (ids[c] < 0) return TINYCL_ESTATE;
        for (uint32_t d = 0; d < c; d++)
            if (ids[d] == ids[c]) return TINYCL_ESTATE;
        if (dst) dst->classes[c] = ids[c];
    }
    for (uint32_t c = 0; c < C; c++) {
        const uint32_t v = get_u32(r);
        if (dst) dst->class_seen[c] = v;
    }
    /* every float: the upper layers, the classifier, then (after the grids) the pending batch */
    float *const fl[4] = {dst ? dst->fc_w : NULL, dst ? dst->fc_b : NULL, dst ? &dst->cls_w[0][0] : NULL,
                          dst ? dst->cls_b : NULL};
    const size_t nf[4] = {TINYCL_LATENT_FC_WEIGHTS, TINYCL_LATENT_FC_BIASES, 0, C};
    for (int k = 0; k < 4; k++) {
        const size_t cnt = k == 2 ? (size_t)C * TINYCL_LATENT_EMBED : nf[k];
        for (size_t i = 0; i < cnt; i++) {
            const float v = get_f32(r);
            if (!isfinite(v)) return TINYCL_ESTATE;
            if (dst) fl[k][i] = v; /* cls_w rows are contiguous: row c at c·TINYCL_LATENT_EMBED */
        }
    }
    for (uint32_t g = 0; g < G; g++) {
        const float v = get_f32(r);
        if (!(v > 0.0f) || !isfinite(v)) return TINYCL_ESTATE;
        if (dst) dst->q_scale[g] = v;
    }
    for (uint32_t g = 0; g < G; g++) {
        const int32_t z = (int32_t)get_u32(r);
        if (z < QMIN || z > QMAX) return TINYCL_ESTATE;
        if (dst) dst->q_zp[g] = z;
    }
    if (coded)
        get_bytes(r, dst ? &dst->pend.q[0][0] : NULL, (size_t)P * TINYCL_LATENT_F); /* codes: any byte is valid */
#if TINYCL_LATENT_FLOAT_BATCH > 0
    else
        for (uint32_t i = 0; i < P; i++)
            for (uint32_t f = 0; f < TINYCL_LATENT_F; f++) {
                const float v = get_f32(r);
                if (!isfinite(v)) return TINYCL_ESTATE;
                if (dst) dst->pend.x[i][f] = v;
            }
#endif
    for (uint32_t i = 0; i < P; i++) {
        const uint8_t row = get_u8(r);
        if (row >= C) return TINYCL_ESTATE;
        if (dst) dst->pend_row[i] = row;
    }
    get_bytes(r, dst ? &dst->mem_x[0][0] : NULL, (size_t)M * TINYCL_LATENT_F); /* codes: any byte is valid */
    for (uint32_t i = 0; i < M; i++) {
        const uint8_t row = get_u8(r);
        if (row >= C) return TINYCL_ESTATE;
        if (dst) dst->mem_row[i] = row;
    }
    return r->err ? TINYCL_ESTATE : TINYCL_OK;
}

/* Checks everything first (the head is untouched on any error), then copies. */
int tinycl_latent_load(tinycl_latent_t *h, const uint8_t *buf, size_t len) {
    if (!h || !buf || len < TINYCL_HEADER_BYTES + TINYCL_LATENT_STATE_FIXED + 4u || !crc_ok(buf, len))
        return TINYCL_ESTATE;
    rd_t check = RD_MEM(buf), copy = check;
    const int rc = read_state(&check, len, NULL);
    return rc ? rc : read_state(&copy, len, h);
}

int tinycl_latent_load_from(tinycl_latent_t *h, tinycl_source_fn source, void *ctx, size_t len, uint8_t *scratch,
                            size_t cap) {
    if (!h || !source || !scratch || cap < 8u) return TINYCL_EINVAL;
    if (len < TINYCL_HEADER_BYTES + TINYCL_LATENT_STATE_FIXED + 4u) return TINYCL_ESTATE;
    uint32_t crc = 0u; /* of everything before the last 4 bytes */
    for (size_t off = 0; off < len - 4u; off += cap) {
        const size_t n = len - 4u - off < cap ? len - 4u - off : cap;
        if (source(ctx, off, scratch, n) != n) return TINYCL_ESTATE;
        crc = tinycl_crc32_update(crc, scratch, n);
    }
    uint8_t tail[4];
    if (source(ctx, len - 4u, tail, 4u) != 4u) return TINYCL_ESTATE;
    rd_t t = RD_MEM(tail);
    if (get_u32(&t) != crc) return TINYCL_ESTATE;
    rd_t check = {scratch, scratch, scratch, cap, 0, source, ctx, 0}, copy = check;
    const int rc = read_state(&check, len, NULL);
    return rc ? rc : read_state(&copy, len, h);
}
