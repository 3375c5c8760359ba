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
 * Compile with -ffp-contract=off. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "tinycl.h"
#include "tinycl_util.h"

#define F TINYCL_N_FEATURES
#define PMAX TINYCL_RCE_MAX_PROTOTYPES

/* Σ (a − b)² in np.einsum's order (see top). */
static float sumsq_einsum(const float *a, const float *b) {
    float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int i = 0;
    for (; i + 16 <= F; i += 16)
        for (int m = 3; m >= 0; m--)
            for (int l = 0; l < 4; l++) {
                const float t = a[i + 4 * m + l] - b[i + 4 * m + l];
                v[l] = t * t + v[l];
            }
    for (; i < F; i += 4) /* tail: 4 lanes at a time, zero padded */
        for (int l = 0; l < 4 && i + l < F; l++) {
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

static float dist(const tinycl_rce_t *r, const float *c, const float *x) {
    if (r->metric == TINYCL_RCE_L1) {
        float t[F];
        for (int f = 0; f < F; f++) t[f] = fabsf(c[f] - x[f]);
        return pairwise(t, F);
    }
    return sqrtf(sumsq_einsum(c, x));
}

static float ratio_of(float d, float radius) { return d / (radius > 1e-12f ? radius : 1e-12f); }

static uint32_t sat_inc(uint32_t v) { return v == UINT32_MAX ? v : v + 1u; }

/* Python: (memory_bytes − 8·max(C, 1)) // (4F + 14), floor division */
static int32_t cap_for(uint32_t memory_bytes, uint32_t n_classes) {
    const int64_t num = (int64_t)memory_bytes - (int64_t)TINYCL_RCE_CLASS_BYTES * (n_classes > 1 ? n_classes : 1);
    const int64_t pb = TINYCL_RCE_PROTOTYPE_BYTES;
    int64_t q = num / pb;
    if (num % pb != 0 && num < 0) q--;
    return (int32_t)q;
}

int tinycl_rce_params_ok(uint32_t memory_bytes, double r_max, double r_min, double grow_margin, uint32_t metric) {
    if (!(r_max > 0.0) || r_max > DBL_MAX || !(r_min >= 0.0) || !(r_min < r_max)) return 0;
    if (!(grow_margin >= 0.0) || grow_margin > DBL_MAX) return 0;
    if (metric != TINYCL_RCE_L2 && metric != TINYCL_RCE_L1) return 0;
    const int32_t cap = cap_for(memory_bytes, 1);
    return cap >= 1 && cap <= PMAX;
}

int tinycl_rce_init(tinycl_rce_t *r, uint32_t memory_bytes, double r_max, double r_min, double grow_margin,
                    uint32_t metric) {
    if (!r || !tinycl_rce_params_ok(memory_bytes, r_max, r_min, grow_margin, metric)) return TINYCL_EINVAL;
    memset(r, 0, sizeof *r);
    r->memory_bytes = memory_bytes;
    r->r_max = r_max;
    r->r_min = r_min;
    r->grow_margin = grow_margin;
    r->metric = metric;
    tinycl_model_sha256_bytes(r->extractor_sha256);
    return TINYCL_OK;
}

int32_t tinycl_rce_max_prototypes(const tinycl_rce_t *r) { return r ? cap_for(r->memory_bytes, r->n_classes) : 0; }

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
    uint32_t near = 0;
    float best_ratio = 0.0f;
    int32_t best_d_idx[TINYCL_MAX_CLASSES]; /* per class row: closest firing prototype */
    for (uint32_t c = 0; c < r->n_classes; c++) best_d_idx[c] = -1;
    int any = 0;
    for (uint32_t j = 0; j < P; j++) {
        d[j] = dist(r, r->centers[j], x);
        const float q = ratio_of(d[j], r->radii[j]);
        if (j == 0 || q < best_ratio) {
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
    memmove(r->centers[j], r->centers[j + 1], sizeof r->centers[0] * tail);
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

static void commit(tinycl_rce_t *r, const float *x, uint32_t row, double radius, uint32_t step) {
    if (radius <= r->r_min) { /* x sits on another class's prototype: nothing to cover */
        r->counters[TINYCL_RCE_DROPPED]++;
        return;
    }
    if ((int64_t)r->n_prototypes >= tinycl_rce_max_prototypes(r) && !evict(r)) {
        r->counters[TINYCL_RCE_DROPPED]++;
        return;
    }
    if (r->n_prototypes >= PMAX) { /* unreachable: the budget never exceeds the static arrays */
        r->counters[TINYCL_RCE_DROPPED]++;
        return;
    }
    const uint32_t j = r->n_prototypes++;
    memcpy(r->centers[j], x, sizeof r->centers[j]);
    r->radii[j] = (float)radius;
    r->rows[j] = (uint16_t)row;
    r->hits[j] = 0;
    r->last_used[j] = step;
    r->counters[TINYCL_RCE_COMMITTED]++;
}

/* aging upward: the right-class prototype with the smallest d/r below 1 + grow_margin grows to
 * cover x, unless the new radius passes r_max or reaches another class's center */
static int grow(tinycl_rce_t *r, const float *d, uint32_t row, uint32_t step) {
    if (r->grow_margin == 0.0) return 0;
    int32_t j = -1;
    float best = INFINITY;
    for (uint32_t k = 0; k < r->n_prototypes; k++) {
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
    for (uint32_t k = 0; k < r->n_prototypes; k++) {
        if (r->rows[k] == row) continue;
        const float v = dist(r, r->centers[k], r->centers[j]);
        if (n_other++ == 0 || v < dc) dc = v;
    }
    if (n_other) {
        r->learning_macs += (uint64_t)n_other * F;
        if (new_r >= (double)dc) return 0;
    }
    r->radii[j] = (float)new_r;
    r->last_used[j] = step;
    r->hits[j] = sat_inc(r->hits[j]);
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
            memcpy(r->centers[w], r->centers[j], sizeof r->centers[0]);
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
    if (P == 0) {
        commit(r, x, row, r->r_max, step);
        return;
    }
    float d[PMAX];
    for (uint32_t j = 0; j < P; j++) d[j] = dist(r, r->centers[j], x);
    r->learning_macs += (uint64_t)P * F;
    int32_t hit = -1;
    float other_min = INFINITY;
    uint32_t n_other = 0;
    for (uint32_t j = 0; j < P; j++) {
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
        r->hits[hit] = sat_inc(r->hits[hit]);
        r->last_used[hit] = step;
    } else if (!grow(r, d, row, step)) {
        double radius = r->r_max;
        if (n_other && (double)other_min < radius) radius = (double)other_min;
        commit(r, x, row, radius, step);
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
    learn_row(r, x, (uint32_t)idx, sat_inc(r->n_seen));
    r->n_seen = sat_inc(r->n_seen);
    r->class_seen[idx] = sat_inc(r->class_seen[idx]);
    return TINYCL_OK;
}

int tinycl_rce_set_extractor(tinycl_rce_t *r, const uint8_t sha256[32]) {
    if (!r || !sha256) return TINYCL_EINVAL;
    memcpy(r->extractor_sha256, sha256, 32);
    return TINYCL_OK;
}

size_t tinycl_sizeof_rce(void) { return sizeof(tinycl_rce_t); }
uint32_t tinycl_rce_capacity(void) { return PMAX; }
