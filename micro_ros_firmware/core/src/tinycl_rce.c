/* TinyRCE (Pau & Ambrose, tinyML 2023): operation-for-operation port of tinycl_nodes/core/rce.py.
 *
 * Prototypes (center, radius, class row, hits, last use) in static arrays of
 * TINYCL_RCE_MAX_PROTOTYPES; the memory budget (memory_bytes, as in Python) caps how many are used.
 * Distances follow numpy's order of operations so that radii are bit-identical to Python's on
 * x86-64 (numpy's baseline SSE build):
 *   l2: sqrt of np.einsum("ij,ij->i", diff, diff): 4 float lanes, blocks of 16 accumulated from
 *       the last group of 4 to the first, lanes summed (l0 + l1) + (l2 + l3);
 *   l1: np.abs(diff).sum(1): numpy's pairwise summation (8 partial sums per block of ≤ 128).
 * Hyper-parameters are doubles (Python floats) and compared as Python compares them (double
 * against a Python float, float32 where numpy compares a float32 array with a Python scalar).
 * Compile with -ffp-contract=off.
 *
 * int8 centers (int8_range > 0): x is coded once per call (rint(x / scale), clipped to ±127, as
 * rce.py's _code), every distance is an exact int32 sum, then (float)sum (l1) or sqrtf((float)sum)
 * (l2) times scale in float32, as numpy. On the Cortex-M7 the sums use the DSP instructions: per 4
 * features USADA8 (l1, on the codes offset by 128) or SXTB16 + SSUB16 + 2 SMLAD (l2).
 * Visit cap (max_visit > 0 and more prototypes): the coarse pass ranks every prototype by its sum
 * over the first prefix_features features (the int32 sum, or the float32 sum in numpy's order; the
 * same order as the distance, ties: the lower index), keeps the max_visit smallest in a sorted list
 * and gives them their full distance (the int8 prefix sum reused; fp32 recomputed in numpy's order). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tinycl.h"
#include "tinycl_util.h"

#define F TINYCL_N_FEATURES
#define PMAX TINYCL_RCE_SLOTS

/* Σ (a − b)² over the first n features in np.einsum's order (see top). Inlined: with n = F the loops
 * are unrolled as before n existed. */
static inline __attribute__((always_inline)) float sumsq_einsum(const float *a, const float *b, int n) {
    float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int m = 3; m >= 0; m--)
            for (int l = 0; l < 4; l++) {
                const float t = a[i + 4 * m + l] - b[i + 4 * m + l];
                v[l] = t * t + v[l];
            }
    for (; i < n; i += 4) /* tail: 4 lanes at a time, zero padded */
        for (int l = 0; l < 4 && i + l < n; l++) {
            const float t = a[i + l] - b[i + l];
            v[l] = t * t + v[l];
        }
    return (v[0] + v[1]) + (v[2] + v[3]);
}

/* numpy's pairwise sum of a contiguous float32 vector */
static float pairwise(const float *a, int n) {
    if (n < 8) {
        float s = -0.0f;
        for (int i = 0; i < n; i++) s += a[i];
        return s;
    }
    if (n <= 128) {
        float r[8];
        int i;
        for (int j = 0; j < 8; j++) r[j] = a[j];
        for (i = 8; i < n - n % 8; i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + j];
        float s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) s += a[i];
        return s;
    }
    int n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise(a, n2) + pairwise(a + n2, n - n2);
}

/* fp32: the sum before the root over the first n features (numpy's order: _acc in rce.py) */
static __attribute__((noinline)) float acc_f32(const tinycl_rce_t *r, const float *c, const float *x, int n) {
    if (r->metric == TINYCL_RCE_L1) {
        float t[F];
        for (int f = 0; f < n; f++) t[f] = fabsf(c[f] - x[f]);
        return pairwise(t, n);
    }
    return sumsq_einsum(c, x, n);
}

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
static inline uint32_t ld32(const int8_t *p) {
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}
static inline uint32_t ror8(uint32_t v) { return v >> 8 | v << 24; } /* folds into SXTB16's ROR #8 */
#endif

/* int8: Σ |a − b| (l1) or Σ (a − b)² (l2) over features [from, to), exact in int32 */
static int32_t acc_q8(uint32_t metric, const int8_t *a, const int8_t *b, int from, int to) {
    int32_t s = 0;
    int f = from;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    if (metric == TINYCL_RCE_L1) {
        uint32_t u = 0; /* |a − b| = |(a + 128) − (b + 128)|: unsigned bytes, 4 per USADA8 */
        for (; f + 4 <= to; f += 4) u = __usada8(ld32(a + f) ^ 0x80808080u, ld32(b + f) ^ 0x80808080u, u);
        s = (int32_t)u;
    } else {
        for (; f + 4 <= to; f += 4) {
            const uint32_t wa = ld32(a + f), wb = ld32(b + f);
            const int16x2_t lo = __ssub16(__sxtb16(wa), __sxtb16(wb));               /* bytes 0, 2 */
            const int16x2_t hi = __ssub16(__sxtb16(ror8(wa)), __sxtb16(ror8(wb))); /* bytes 1, 3 */
            s = __smlad(hi, hi, __smlad(lo, lo, s));
        }
    }
#endif
    if (metric == TINYCL_RCE_L1)
        for (; f < to; f++) s += abs((int32_t)a[f] - (int32_t)b[f]);
    else
        for (; f < to; f++) {
            const int32_t t = (int32_t)a[f] - (int32_t)b[f];
            s += t * t;
        }
    return s;
}

/* int8: the distance of an int32 sum, as rce.py's _pair: float32 of the sum (its root for l2) × scale */
static float q8_dist(const tinycl_rce_t *r, int32_t acc) {
    const float d = (float)acc;
    return (r->metric == TINYCL_RCE_L1 ? d : sqrtf(d)) * r->scale;
}

/* int8 coarse pass: key[j] = the sum over features [0, K) for every prototype (acc_q8's sums). On
 * the M7 x's words are prepared once (offset by 128 for USADA8; SXTB16 halves for SMLAD), so a
 * prototype costs per 4 features one load and one USADA8 (+ EOR) or 2 SXTB16, 2 SSUB16, 2 SMLAD. */
static __attribute__((noinline)) void coarse_q8(const tinycl_rce_t *r, const int8_t *xc, int K, uint32_t *key) {
    const uint32_t P = r->n_prototypes;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    const int W = K / 4, tail = 4 * W < K;
    const int8_t *c = r->centers.q8[0];
    uint32_t xa[F / 4 + 1], xb[F / 4 + 1];
    if (r->metric == TINYCL_RCE_L1) {
        for (int w = 0; w < W; w++) xa[w] = ld32(xc + 4 * w) ^ 0x80808080u;
        for (uint32_t j = 0; j < P; j++, c += F) {
            uint32_t u = 0;
            for (int w = 0; w < W; w++) u = __usada8(ld32(c + 4 * w) ^ 0x80808080u, xa[w], u);
            key[j] = u + (tail ? (uint32_t)acc_q8(TINYCL_RCE_L1, c, xc, 4 * W, K) : 0u);
        }
    } else {
        for (int w = 0; w < W; w++) {
            const uint32_t v = ld32(xc + 4 * w);
            xa[w] = (uint32_t)__sxtb16(v);
            xb[w] = (uint32_t)__sxtb16(ror8(v));
        }
        for (uint32_t j = 0; j < P; j++, c += F) {
            int32_t s = 0;
            for (int w = 0; w < W; w++) {
                const uint32_t v = ld32(c + 4 * w);
                const int16x2_t lo = __ssub16(__sxtb16(v), (int16x2_t)xa[w]);
                const int16x2_t hi = __ssub16(__sxtb16(ror8(v)), (int16x2_t)xb[w]);
                s = __smlad(hi, hi, __smlad(lo, lo, s));
            }
            key[j] = (uint32_t)(s + (tail ? acc_q8(TINYCL_RCE_L2, c, xc, 4 * W, K) : 0));
        }
    }
#else
    for (uint32_t j = 0; j < P; j++) key[j] = (uint32_t)acc_q8(r->metric, r->centers.q8[j], xc, 0, K);
#endif
}

static float dist_f32(const tinycl_rce_t *r, const float *c, const float *x) {
    if (r->metric == TINYCL_RCE_L1) return acc_f32(r, c, x, F);
    return sqrtf(sumsq_einsum(c, x, F)); /* unrolled for F */
}

/* x as the distances see it: a pointer to the float features, or to their int8 codes in q */
static const void *code(const tinycl_rce_t *r, const float *x, int8_t q[F]) {
    if (r->int8_range == 0.0) return x;
    for (int f = 0; f < F; f++) {
        float v = rintf(x[f] / r->scale); /* numpy: np.rint(x / scale) in float32, half to even */
        if (v > 127.0f) v = 127.0f;
        if (v < -127.0f) v = -127.0f;
        q[f] = (int8_t)v;
    }
    return q;
}

/* distance between prototype j's center and xc (coded as code() returns, or another center) */
static float dist_j(const tinycl_rce_t *r, uint32_t j, const void *xc) {
    if (r->int8_range == 0.0) return dist_f32(r, r->centers.f32[j], (const float *)xc);
    return q8_dist(r, acc_q8(r->metric, r->centers.q8[j], (const int8_t *)xc, 0, F));
}

static const void *center_of(const tinycl_rce_t *r, uint32_t j) {
    return r->int8_range == 0.0 ? (const void *)r->centers.f32[j] : (const void *)r->centers.q8[j];
}

static int capped(const tinycl_rce_t *r) { return r->max_visit && r->n_prototypes > r->max_visit; }

/* Distances from xc to the prototypes: returns how many are visited, d[j] for every j (inf where not
 * visited) and, with the cap, their indices in increasing order in vis (*all = 0; without the cap
 * *all = 1: every j < P, vis unused). With the cap, the coarse prefix sums (order-preserving uint32 keys:
 * the int32 sum, or the float32 sum's bits, both >= 0) go through a sorted list of the max_visit
 * smallest (stable: a later index never displaces an equal key); rce.py's _visit picks the same set. */
static uint32_t distances(const tinycl_rce_t *r, const void *xc, float *d, uint32_t *vis, int *all) {
    const uint32_t P = r->n_prototypes;
    *all = !capped(r);
    if (*all) {
        if (r->int8_range == 0.0)
            for (uint32_t j = 0; j < P; j++) d[j] = dist_f32(r, r->centers.f32[j], (const float *)xc);
        else
            for (uint32_t j = 0; j < P; j++) d[j] = dist_j(r, j, xc);
        return P;
    }
    const uint32_t m = r->max_visit;
    const int K = (int)r->prefix_features, q8 = r->int8_range != 0.0;
    uint32_t key[PMAX], best_key[PMAX], n = 0;
    if (q8) {
        coarse_q8(r, (const int8_t *)xc, K, key);
    } else {
        for (uint32_t j = 0; j < P; j++) {
            const float s = acc_f32(r, r->centers.f32[j], (const float *)xc, K);
            memcpy(&key[j], &s, 4);
        }
    }
    for (uint32_t j = 0; j < P; j++) d[j] = INFINITY;
    for (uint32_t j = 0; j < P; j++) {
        const uint32_t k = key[j];
        if (n == m && k >= best_key[m - 1]) continue;
        uint32_t i = n < m ? n++ : m - 1;
        for (; i > 0 && best_key[i - 1] > k; i--) {
            best_key[i] = best_key[i - 1];
            vis[i] = vis[i - 1];
        }
        best_key[i] = k;
        vis[i] = j;
    }
    for (uint32_t i = 0; i < m; i++) { /* the rest of each distance (the int8 prefix sum reused) */
        const uint32_t j = vis[i];
        d[j] = q8 ? q8_dist(r, (int32_t)best_key[i] + acc_q8(r->metric, r->centers.q8[j], (const int8_t *)xc, K, F))
                  : dist_f32(r, r->centers.f32[j], (const float *)xc);
    }
    for (uint32_t i = 1; i < m; i++) { /* indices in increasing order: the scans below keep numpy's ties */
        const uint32_t v = vis[i];
        uint32_t k = i;
        for (; k > 0 && vis[k - 1] > v; k--) vis[k] = vis[k - 1];
        vis[k] = v;
    }
    return m;
}

#define VIS(i) (all ? (i) : vis[i]) /* the i-th visited prototype */

/* MACs of a distance pass that gives `visited` prototypes their full distance (rce.py _distance_macs) */
static uint64_t distance_macs(const tinycl_rce_t *r, uint32_t visited) {
    if (capped(r))
        return (uint64_t)r->n_prototypes * r->prefix_features + (uint64_t)visited * (F - r->prefix_features);
    return (uint64_t)visited * F;
}

uint64_t tinycl_rce_inference_macs(const tinycl_rce_t *r) {
    if (!r) return 0;
    return distance_macs(r, capped(r) ? r->max_visit : r->n_prototypes);
}

static float ratio_of(float d, float radius) { return d / (radius > 1e-12f ? radius : 1e-12f); }

/* Python: (memory_bytes − 8·max(C, 1)) // prototype bytes (4F + 14, or F + 14 int8), floor division */
static int32_t cap_for(uint32_t memory_bytes, uint32_t n_classes, int int8) {
    const int64_t num = (int64_t)memory_bytes - (int64_t)TINYCL_RCE_CLASS_BYTES * (n_classes > 1 ? n_classes : 1);
    const int64_t pb = int8 ? TINYCL_RCE_PROTOTYPE_BYTES_INT8 : TINYCL_RCE_PROTOTYPE_BYTES;
    int64_t q = num / pb;
    if (num % pb != 0 && num < 0) q--;
    return (int32_t)q;
}

int tinycl_rce_params_ok_ex(uint32_t memory_bytes, double r_max, double r_min, double grow_margin, uint32_t metric,
                            double int8_range, uint32_t max_visit, uint32_t prefix_features) {
    if (!(r_max > 0.0) || r_max > DBL_MAX || !(r_min >= 0.0) || !(r_min < r_max)) return 0;
    if (!(grow_margin >= 0.0) || grow_margin > DBL_MAX) return 0;
    if (metric != TINYCL_RCE_L2 && metric != TINYCL_RCE_L1) return 0;
    if (!(int8_range >= 0.0) || int8_range > DBL_MAX || prefix_features < 1) return 0;
    if (int8_range != 0.0 && !((float)(int8_range / 127.0) > 0.0f && (float)(int8_range / 127.0) <= FLT_MAX))
        return 0; /* a scale float32 holds: neither 0 nor inf (1e300 made every distance NaN) */
    if (max_visit && prefix_features >= (uint32_t)F) return 0;
    const int int8 = int8_range != 0.0;
    const int32_t cap = cap_for(memory_bytes, 1, int8);
    return cap >= 1 && cap <= (int8 ? TINYCL_RCE_MAX_PROTOTYPES_INT8 : TINYCL_RCE_MAX_PROTOTYPES);
}

int tinycl_rce_params_ok(uint32_t memory_bytes, double r_max, double r_min, double grow_margin, uint32_t metric) {
    return tinycl_rce_params_ok_ex(memory_bytes, r_max, r_min, grow_margin, metric, 0.0, 0, 8);
}

int tinycl_rce_init_ex(tinycl_rce_t *r, uint32_t memory_bytes, double r_max, double r_min, double grow_margin,
                       uint32_t metric, double int8_range, uint32_t max_visit, uint32_t prefix_features) {
    if (!r || !tinycl_rce_params_ok_ex(memory_bytes, r_max, r_min, grow_margin, metric, int8_range, max_visit,
                                       prefix_features))
        return TINYCL_EINVAL;
    memset(r, 0, sizeof *r);
    r->memory_bytes = memory_bytes;
    r->r_max = r_max;
    r->r_min = r_min;
    r->grow_margin = grow_margin;
    r->metric = metric;
    r->int8_range = int8_range;
    r->scale = int8_range != 0.0 ? (float)(int8_range / 127.0) : 1.0f; /* numpy: np.float32(int8_range / 127.0) */
    r->max_visit = max_visit;
    r->prefix_features = prefix_features;
    tinycl_model_sha256_bytes(r->extractor_sha256);
    return TINYCL_OK;
}

int tinycl_rce_init(tinycl_rce_t *r, uint32_t memory_bytes, double r_max, double r_min, double grow_margin,
                    uint32_t metric) {
    return tinycl_rce_init_ex(r, memory_bytes, r_max, r_min, grow_margin, metric, 0.0, 0, 8);
}

int32_t tinycl_rce_max_prototypes(const tinycl_rce_t *r) {
    return r ? cap_for(r->memory_bytes, r->n_classes, r->int8_range != 0.0) : 0;
}

uint32_t tinycl_rce_budget_bytes(uint32_t n_prototypes) {
    return n_prototypes * TINYCL_RCE_PROTOTYPE_BYTES + TINYCL_RCE_CLASS_BYTES;
}

/* ------------------------------------------------------------------------------- inference */
int tinycl_rce_decide(const tinycl_rce_t *r, const float *x, tinycl_rce_decision_t *out) {
    if (!r || !out || !tinycl_finite_vec(x)) return TINYCL_EINVAL;
    memset(out, 0, sizeof *out);
    out->label = out->nearest = -1;
    const uint32_t P = r->n_prototypes;
    if (P == 0) {
        out->reason = TINYCL_RCE_EMPTY;
        out->novelty = out->distance = INFINITY;
        return TINYCL_OK;
    }
    float d[PMAX];
    uint32_t vis[PMAX];
    int8_t q8[F];
    int all;
    const uint32_t n_vis = distances(r, code(r, x, q8), d, vis, &all);
    uint32_t near = 0;
    float best_ratio = INFINITY;
    int32_t best_d_idx[TINYCL_MAX_CLASSES]; /* per class row: closest firing prototype */
    for (uint32_t c = 0; c < r->n_classes; c++) best_d_idx[c] = -1;
    int any = 0;
    /* an unvisited prototype has d = inf, d/r = inf and never fires: only the visited ones can win
     * (numpy's argmin: the first minimum; all inf: prototype 0) */
    for (uint32_t i = 0; i < n_vis; i++) {
        const uint32_t j = VIS(i);
        const float q = ratio_of(d[j], r->radii[j]);
        if (q < best_ratio) {
            best_ratio = q;
            near = j;
        }
        if (d[j] < r->radii[j]) {
            int32_t *b = &best_d_idx[r->rows[j]];
            if (*b < 0 || d[j] < d[*b]) *b = (int32_t)j; /* ties: the lower index (stable sort) */
            any = 1;
        }
    }
    out->nearest = r->classes[r->rows[near]];
    out->novelty = best_ratio;
    if (!any) {
        out->reason = TINYCL_RCE_UNKNOWN;
        out->distance = d[near];
        return TINYCL_OK;
    }
    /* candidates: classes of the firing prototypes, by distance (then index) of their closest */
    uint32_t n = 0;
    for (;;) {
        int32_t pick = -1;
        for (uint32_t c = 0; c < r->n_classes; c++) {
            const int32_t j = best_d_idx[c];
            if (j < 0) continue;
            if (pick < 0 || d[j] < d[best_d_idx[pick]] || (d[j] == d[best_d_idx[pick]] && j < best_d_idx[pick]))
                pick = (int32_t)c;
        }
        if (pick < 0) break;
        if (n == 0) out->distance = d[best_d_idx[pick]];
        out->candidates[n++] = r->classes[pick];
        best_d_idx[pick] = -1;
    }
    out->n_candidates = n;
    out->label = out->candidates[0];
    out->reason = n > 1 ? TINYCL_RCE_AMBIGUOUS : TINYCL_RCE_COVERED;
    return TINYCL_OK;
}

int tinycl_rce_predict(const tinycl_rce_t *r, const float *x, int32_t *y) {
    tinycl_rce_decision_t dec;
    if (!y) return TINYCL_EINVAL;
    int rc = tinycl_rce_decide(r, x, &dec);
    if (rc) return rc;
    if (dec.reason == TINYCL_RCE_EMPTY) return TINYCL_EEMPTY;
    *y = dec.label >= 0 ? dec.label : dec.nearest;
    return TINYCL_OK;
}

/* -------------------------------------------------------------------------------- learning */
static void remove_at(tinycl_rce_t *r, uint32_t j) {
    const uint32_t tail = r->n_prototypes - j - 1;
    if (r->int8_range != 0.0)
        memmove(r->centers.q8[j], r->centers.q8[j + 1], sizeof r->centers.q8[0] * tail);
    else
        memmove(r->centers.f32[j], r->centers.f32[j + 1], sizeof r->centers.f32[0] * tail);
    memmove(&r->radii[j], &r->radii[j + 1], sizeof r->radii[0] * tail);
    memmove(&r->rows[j], &r->rows[j + 1], sizeof r->rows[0] * tail);
    memmove(&r->hits[j], &r->hits[j + 1], sizeof r->hits[0] * tail);
    memmove(&r->last_used[j], &r->last_used[j + 1], sizeof r->last_used[0] * tail);
    r->n_prototypes--;
}

/* least recently useful prototype (last use, then hits, then index) whose class keeps another */
static int evict(tinycl_rce_t *r) {
    uint32_t per_class[TINYCL_MAX_CLASSES] = {0};
    for (uint32_t j = 0; j < r->n_prototypes; j++) per_class[r->rows[j]]++;
    int32_t best = -1;
    for (uint32_t j = 0; j < r->n_prototypes; j++) {
        if (per_class[r->rows[j]] < 2) continue;
        if (best < 0 || r->last_used[j] < r->last_used[best] ||
            (r->last_used[j] == r->last_used[best] && r->hits[j] < r->hits[best]))
            best = (int32_t)j;
    }
    if (best < 0) return 0;
    remove_at(r, (uint32_t)best);
    r->counters[TINYCL_RCE_EVICTED]++;
    return 1;
}

static void commit(tinycl_rce_t *r, const void *xc, uint32_t row, double radius, uint32_t step) {
    if (radius <= r->r_min) { /* x sits on another class's prototype: nothing to cover */
        r->counters[TINYCL_RCE_DROPPED]++;
        return;
    }
    if ((int64_t)r->n_prototypes >= tinycl_rce_max_prototypes(r) && !evict(r)) {
        r->counters[TINYCL_RCE_DROPPED]++;
        return;
    }
    if (r->n_prototypes >= (r->int8_range != 0.0 ? TINYCL_RCE_MAX_PROTOTYPES_INT8 : TINYCL_RCE_MAX_PROTOTYPES)) {
        r->counters[TINYCL_RCE_DROPPED]++; /* unreachable: the budget never exceeds the static arrays */
        return;
    }
    const uint32_t j = r->n_prototypes++;
    if (r->int8_range != 0.0)
        memcpy(r->centers.q8[j], xc, sizeof r->centers.q8[j]);
    else
        memcpy(r->centers.f32[j], xc, sizeof r->centers.f32[j]);
    r->radii[j] = (float)radius;
    r->rows[j] = (uint16_t)row;
    r->hits[j] = 0;
    r->last_used[j] = step;
    r->counters[TINYCL_RCE_COMMITTED]++;
}

/* aging upward: the right-class prototype with the smallest d/r below 1 + grow_margin grows to
 * cover x, unless the new radius passes r_max or reaches another class's center (of those visited) */
static int grow(tinycl_rce_t *r, const float *d, const uint32_t *vis, int all, uint32_t n_vis, uint32_t row,
                uint32_t step) {
    if (r->grow_margin == 0.0) return 0;
    int32_t j = -1;
    float best = INFINITY;
    for (uint32_t i = 0; i < n_vis; i++) { /* unvisited: d/r = inf, never below 1 + grow_margin */
        const uint32_t k = VIS(i);
        if (r->rows[k] != row) continue;
        const float q = ratio_of(d[k], r->radii[k]);
        if (j < 0 || q < best) {
            best = q;
            j = (int32_t)k;
        }
    }
    if (j < 0 || !(best < (float)(1.0 + r->grow_margin))) return 0; /* numpy: f32 vs weak Python float */
    const double new_r = (double)d[j] * (1.0 + 1e-4);
    if (new_r > r->r_max) return 0;
    float dc = INFINITY;
    uint32_t n_other = 0;
    for (uint32_t i = 0; i < n_vis; i++) {
        const uint32_t k = VIS(i);
        if (r->rows[k] == row) continue;
        const float v = dist_j(r, k, center_of(r, (uint32_t)j));
        if (n_other++ == 0 || v < dc) dc = v;
    }
    if (n_other) {
        r->learning_macs += (uint64_t)n_other * F;
        if (new_r >= (double)dc) return 0;
    }
    r->radii[j] = (float)new_r;
    r->last_used[j] = step;
    r->hits[j] = tinycl_sat_inc(r->hits[j]);
    r->counters[TINYCL_RCE_GROWN]++;
    return 1;
}

static void prune_dead(tinycl_rce_t *r) {
    const float r_min = (float)r->r_min; /* numpy: f32 array <= Python float compares in f32 */
    uint32_t w = 0, dead = 0;
    for (uint32_t j = 0; j < r->n_prototypes; j++) {
        if (r->radii[j] <= r_min) {
            dead++;
            continue;
        }
        if (w != j) {
            if (r->int8_range != 0.0)
                memcpy(r->centers.q8[w], r->centers.q8[j], sizeof r->centers.q8[0]);
            else
                memcpy(r->centers.f32[w], r->centers.f32[j], sizeof r->centers.f32[0]);
            r->radii[w] = r->radii[j];
            r->rows[w] = r->rows[j];
            r->hits[w] = r->hits[j];
            r->last_used[w] = r->last_used[j];
        }
        w++;
    }
    r->n_prototypes = w;
    r->counters[TINYCL_RCE_PRUNED] += dead;
}

static void learn_row(tinycl_rce_t *r, const float *x, uint32_t row, uint32_t step) {
    const uint32_t P = r->n_prototypes;
    int8_t q8[F];
    const void *xc = code(r, x, q8);
    if (P == 0) {
        commit(r, xc, row, r->r_max, step);
        return;
    }
    float d[PMAX];
    uint32_t vis[PMAX];
    int all;
    const uint32_t n_vis = distances(r, xc, d, vis, &all);
    r->learning_macs += distance_macs(r, n_vis);
    int32_t hit = -1;
    float other_min = INFINITY;
    uint32_t n_other = 0;
    for (uint32_t i = 0; i < n_vis; i++) { /* unvisited: d = inf, no fire, no smaller other_min */
        const uint32_t j = VIS(i);
        const int fire = d[j] < r->radii[j];
        if (r->rows[j] != row) {
            if (n_other++ == 0 || d[j] < other_min) other_min = d[j];
            if (fire) { /* shrink a wrong-class prototype that fires to the distance of x */
                r->radii[j] = d[j];
                r->counters[TINYCL_RCE_SHRUNK]++;
            }
        } else if (fire && (hit < 0 || d[j] < d[hit])) {
            hit = (int32_t)j;
        }
    }
    if (hit >= 0) {
        r->hits[hit] = tinycl_sat_inc(r->hits[hit]);
        r->last_used[hit] = step;
    } else if (!grow(r, d, vis, all, n_vis, row, step)) {
        double radius = r->r_max;
        if (n_other && (double)other_min < radius) radius = (double)other_min;
        commit(r, xc, row, radius, step);
    }
    prune_dead(r);
}

int tinycl_rce_learn(tinycl_rce_t *r, const float *x, int32_t y) {
    if (!r || y < 0 || !tinycl_finite_vec(x)) return TINYCL_EINVAL;
    int idx = -1;
    for (uint32_t c = 0; c < r->n_classes; c++)
        if (r->classes[c] == y) idx = (int)c;
    if (idx < 0) {
        if (r->n_classes >= TINYCL_MAX_CLASSES) return TINYCL_EFULL;
        idx = (int)r->n_classes++;
        r->classes[idx] = y;
        r->class_seen[idx] = 0;
    }
    learn_row(r, x, (uint32_t)idx, tinycl_sat_inc(r->n_seen));
    r->n_seen = tinycl_sat_inc(r->n_seen);
    r->class_seen[idx] = tinycl_sat_inc(r->class_seen[idx]);
    return TINYCL_OK;
}

int tinycl_rce_set_extractor(tinycl_rce_t *r, const uint8_t sha256[32]) {
    if (!r || !sha256) return TINYCL_EINVAL;
    memcpy(r->extractor_sha256, sha256, 32);
    return TINYCL_OK;
}

size_t tinycl_sizeof_rce(void) { return sizeof(tinycl_rce_t); }
uint32_t tinycl_rce_capacity(void) { return TINYCL_RCE_MAX_PROTOTYPES; }
uint32_t tinycl_rce_capacity_int8(void) { return TINYCL_RCE_MAX_PROTOTYPES_INT8; }
