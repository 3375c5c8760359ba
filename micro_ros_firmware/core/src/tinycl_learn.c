/* CWR*, NearestCentroid and the TinyNDC step: operation-for-operation ports of
 * tinycl_nodes/core/cwr.py, clustering.py and tinyndc.py (float32 where numpy uses float32,
 * double where numpy promotes to float64). Compile with -ffp-contract=off: no fused multiply-add,
 * so every float operation rounds as numpy's does. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "tinycl.h"
#include "tinycl_util.h"

#define F TINYCL_N_FEATURES

static float dot(const float *a, const float *b) {
    float s = 0.0f;
    for (int i = 0; i < F; i++) s += a[i] * b[i];
    return s;
}

static int find_class(const int32_t *classes, uint32_t n, int32_t y) {
    for (uint32_t i = 0; i < n; i++)
        if (classes[i] == y) return (int)i;
    return -1;
}

static uint32_t argmax(const float *z, uint32_t n) {
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (z[i] > z[best]) best = i;
    return best;
}

/* ------------------------------------------------------------------------------------ CWR* */
void tinycl_model_sha256_bytes(uint8_t out[32]) {
    const char *hex = TINYCL_MODEL_SHA256;
    for (int i = 0; i < 32; i++) {
        uint8_t v = 0;
        for (int j = 0; j < 2; j++) {
            char ch = hex[2 * i + j];
            v = (uint8_t)(v << 4 | (ch <= '9' ? ch - '0' : ch - 'a' + 10));
        }
        out[i] = v;
    }
}

int tinycl_cwr_set_extractor(tinycl_cwr_t *h, const uint8_t sha256[32]) {
    if (!h || !sha256) return TINYCL_EINVAL;
    memcpy(h->extractor_sha256, sha256, 32);
    return TINYCL_OK;
}

int tinycl_cwr_init(tinycl_cwr_t *h, float lr, uint32_t batch_size) {
    if (!h || !(lr > 0.0f) || lr > FLT_MAX || batch_size == 0) return TINYCL_EINVAL;
    memset(h, 0, sizeof *h);
    h->lr = lr;
    h->batch_size = batch_size;
    tinycl_model_sha256_bytes(h->extractor_sha256);
    return TINYCL_OK;
}

static void cwr_consolidate(tinycl_cwr_t *h) {
    /* new_w = tw_c − mean(tw[present]) (one scalar), w = sqrt(past/cur), cw = (cw·w + new_w)/(w+1) */
    double sum = 0.0;
    uint32_t n_present = 0;
    for (uint32_t r = 0; r < h->n_classes; r++) {
        if (!h->cur[r]) continue;
        n_present++;
        for (int f = 0; f < F; f++) sum += (double)h->tw[r][f];
    }
    if (!n_present) return;
    const double mean = sum / ((double)n_present * F);
    for (uint32_t r = 0; r < h->n_classes; r++) {
        if (!h->cur[r]) continue;
        const double w = sqrt((double)h->past[r] / (double)h->cur[r]);
        for (int f = 0; f < F; f++)
            h->cw[r][f] = (float)(((double)h->cw[r][f] * w + ((double)h->tw[r][f] - mean)) / (w + 1.0));
        h->past[r] = tinycl_sat_add(h->past[r], h->cur[r]);
    }
}

void tinycl_cwr_flush(tinycl_cwr_t *h) {
    if (!h || !h->n_batch) return;
    cwr_consolidate(h);
    memset(h->tw, 0, sizeof h->tw);
    memset(h->cur, 0, sizeof h->cur);
    h->n_batch = 0;
}

int tinycl_cwr_learn(tinycl_cwr_t *h, const float *x, int32_t y) {
    if (!h || y < 0 || !tinycl_finite_vec(x)) return TINYCL_EINVAL;
    int idx = find_class(h->classes, h->n_classes, y);
    if (idx < 0) {
        if (h->n_classes >= TINYCL_MAX_CLASSES) return TINYCL_EFULL;
        idx = (int)h->n_classes++;
        h->classes[idx] = y;
        memset(h->cw[idx], 0, sizeof h->cw[idx]);
        memset(h->tw[idx], 0, sizeof h->tw[idx]);
        h->past[idx] = h->cur[idx] = 0;
    }
    if (h->cur[idx] == 0)
        for (int f = 0; f < F; f++) h->tw[idx][f] += h->cw[idx][f];
    h->cur[idx]++;
    h->n_batch++;
    /* one SGD step of softmax cross-entropy on tw: tw −= lr·(softmax − onehot) ⊗ x */
    float z[TINYCL_MAX_CLASSES];
    const uint32_t n = h->n_classes;
    for (uint32_t r = 0; r < n; r++) z[r] = dot(h->tw[r], x);
    const float zmax = z[argmax(z, n)];
    float s = 0.0f;
    for (uint32_t r = 0; r < n; r++) {
        z[r] = expf(z[r] - zmax);
        s += z[r];
    }
    const float k = h->lr / s;
    for (uint32_t r = 0; r < n; r++) z[r] *= k;
    z[idx] -= h->lr;
    for (uint32_t r = 0; r < n; r++) {
        const float g = z[r];
        float *w = h->tw[r];
        for (int f = 0; f < F; f++) w[f] -= g * x[f];
    }
    h->n_seen = tinycl_sat_inc(h->n_seen);
    if (h->n_batch >= h->batch_size) tinycl_cwr_flush(h);
    return TINYCL_OK;
}

int tinycl_cwr_load_linear(tinycl_cwr_t *h, uint32_t n, const int32_t *ids, const uint32_t *counts,
                           const float *weights, const uint8_t sha256[32]) {
    if (!h || !ids || !counts || !weights || !sha256) return TINYCL_EINVAL;
    if (n > TINYCL_MAX_CLASSES) return TINYCL_EFULL;
    if (memcmp(sha256, h->extractor_sha256, 32) != 0) return TINYCL_EINVAL;
    for (uint32_t r = 0; r < n; r++) {
        if (ids[r] < 0 || find_class(ids, r, ids[r]) >= 0) return TINYCL_EINVAL;
        if (!tinycl_finite_vec(weights + (size_t)r * F)) return TINYCL_EINVAL;
    }
    tinycl_cwr_flush(h);
    memset(h->cw, 0, sizeof h->cw);
    for (uint32_t r = 0; r < n; r++) {
        h->classes[r] = ids[r];
        h->past[r] = counts[r];
        memcpy(h->cw[r], weights + (size_t)r * F, sizeof h->cw[r]);
    }
    h->n_classes = n;
    return TINYCL_OK;
}

int tinycl_cwr_scores(const tinycl_cwr_t *h, const float *x, float *scores) {
    if (!h || !scores || !tinycl_finite_vec(x)) return TINYCL_EINVAL;
    if (!h->n_classes) return TINYCL_EEMPTY;
    for (uint32_t r = 0; r < h->n_classes; r++) scores[r] = dot(h->cw[r], x);
    return TINYCL_OK;
}

int tinycl_cwr_predict(const tinycl_cwr_t *h, const float *x, int32_t *y) {
    float z[TINYCL_MAX_CLASSES];
    if (!y) return TINYCL_EINVAL;
    int rc = tinycl_cwr_scores(h, x, z);
    if (rc) return rc;
    *y = h->classes[argmax(z, h->n_classes)];
    return TINYCL_OK;
}

/* ---------------------------------------------------------------------------- NearestCentroid */
int tinycl_ncm_init(tinycl_ncm_t *c, uint32_t max_count) {
    if (!c) return TINYCL_EINVAL;
    memset(c, 0, sizeof *c);
    c->max_count = max_count;
    return TINYCL_OK;
}

int tinycl_ncm_init_from_labelled(tinycl_ncm_t *c, const float *X, const int32_t *y, uint32_t n) {
    if (!c || !X || !y || n == 0) return TINYCL_EINVAL;
    int32_t cls[TINYCL_MAX_CLASSES];
    uint32_t nc = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (y[i] < 0 || !tinycl_finite_vec(X + (size_t)i * F)) return TINYCL_EINVAL;
        if (find_class(cls, nc, y[i]) >= 0) continue;
        if (nc >= TINYCL_MAX_CLASSES) return TINYCL_EFULL;
        uint32_t j = nc++; /* insertion: classes sorted, as Python's sorted(set(y)) */
        while (j > 0 && cls[j - 1] > y[i]) { cls[j] = cls[j - 1]; j--; }
        cls[j] = y[i];
    }
    memset(c->centroids, 0, sizeof c->centroids);
    for (uint32_t k = 0; k < nc; k++) {
        float acc[F];
        uint32_t cnt = 0;
        memset(acc, 0, sizeof acc);
        for (uint32_t i = 0; i < n; i++) {
            if (y[i] != cls[k]) continue;
            for (int f = 0; f < F; f++) acc[f] += X[(size_t)i * F + f];  /* numpy: rows in order, float32 */
            cnt++;
        }
        for (int f = 0; f < F; f++) c->centroids[k][f] = (float)((double)acc[f] / (double)cnt);
        c->classes[k] = cls[k];
        c->counts[k] = cnt;
    }
    c->n_classes = nc;
    return TINYCL_OK;
}

/* Σ c², as numpy's pairwise sum of a contiguous float32 row (8 interleaved partial sums). */
static float sqnorm(const float *v) {
#if F >= 8
    float r[8];
    for (int j = 0; j < 8; j++) r[j] = v[j] * v[j];
    for (int i = 8; i + 8 <= F; i += 8)
        for (int j = 0; j < 8; j++) r[j] += v[i + j] * v[i + j];
    float s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
#if F % 8
    for (int i = F - F % 8; i < F; i++) s += v[i] * v[i];
#endif
#else
    float s = 0.0f;
    for (int i = 0; i < F; i++) s += v[i] * v[i];
#endif
    return s;
}

int tinycl_ncm_pseudo_label(const tinycl_ncm_t *c, const float *x, int32_t *label, float *conf) {
    if (!c || !label || !tinycl_finite_vec(x)) return TINYCL_EINVAL;
    if (!c->n_classes) return TINYCL_EEMPTY;
    float neg[TINYCL_MAX_CLASSES];
    for (uint32_t k = 0; k < c->n_classes; k++)
        neg[k] = 2.0f * dot(c->centroids[k], x) - sqnorm(c->centroids[k]);
    const uint32_t i = argmax(neg, c->n_classes);
    *label = c->classes[i];
    if (conf) {
        float s = 0.0f;
        for (uint32_t k = 0; k < c->n_classes; k++) s += expf(neg[k] - neg[i]);
        *conf = 1.0f / s;
    }
    return TINYCL_OK;
}

int tinycl_ncm_update(tinycl_ncm_t *c, const float *x, int32_t y) {
    if (!c || y < 0 || !tinycl_finite_vec(x)) return TINYCL_EINVAL;
    int i = find_class(c->classes, c->n_classes, y);
    if (i < 0) {
        if (c->n_classes >= TINYCL_MAX_CLASSES) return TINYCL_EFULL;
        i = (int)c->n_classes++;
        c->classes[i] = y;
        memcpy(c->centroids[i], x, sizeof c->centroids[i]);
        c->counts[i] = 1;
        return TINYCL_OK;
    }
    uint32_t n = tinycl_sat_inc(c->counts[i]); /* a blob's 2^32 − 1 wrapped to 0: centroid ÷ 0 */
    float *m = c->centroids[i];
    if (c->max_count && n > c->max_count) {
        /* Python: min(n, float(max_count)) is a Python float → the division stays float32 */
        n = c->max_count;
        const float fn = (float)n;
        for (int f = 0; f < F; f++) m[f] += (x[f] - m[f]) / fn;
    } else {
        /* Python: counts is float64 → (x − c)/n is float64, added to c in float64 */
        for (int f = 0; f < F; f++) m[f] = (float)((double)m[f] + (double)(x[f] - m[f]) / (double)n);
    }
    c->counts[i] = n;
    return TINYCL_OK;
}

/* ------------------------------------------------------------------------------------ TinyNDC */
int tinycl_ndc_init(tinycl_ndc_t *s, float lr, uint32_t batch_size, uint32_t max_count) {
    if (!s) return TINYCL_EINVAL;
    memset(s, 0, sizeof *s);
    int rc = tinycl_cwr_init(&s->cwr, lr, batch_size);
    return rc ? rc : tinycl_ncm_init(&s->ncm, max_count);
}

int tinycl_ndc_init_from_labelled(tinycl_ndc_t *s, const float *X, const int32_t *y, uint32_t n) {
    if (!s) return TINYCL_EINVAL;
    int rc = tinycl_ncm_init_from_labelled(&s->ncm, X, y, n);
    if (rc) return rc;
    for (uint32_t i = 0; i < n; i++) {
        rc = tinycl_cwr_learn(&s->cwr, X + (size_t)i * F, y[i]);
        if (rc) return rc;
    }
    s->n_labels += n;
    return TINYCL_OK;
}

int tinycl_ndc_stage_cluster(const tinycl_ndc_t *s, const float *x, tinycl_step_t *out) {
    return tinycl_ncm_pseudo_label(&s->ncm, x, &out->pseudo_label, &out->confidence);
}

int tinycl_ndc_stage_predict(const tinycl_ndc_t *s, const float *x, tinycl_step_t *out) {
    int rc = tinycl_cwr_predict(&s->cwr, x, &out->prediction);
    if (rc == TINYCL_EEMPTY) {
        out->prediction = -1;
        return TINYCL_OK;
    }
    return rc;
}

int tinycl_ndc_stage_learn(tinycl_ndc_t *s, const float *x, const tinycl_step_t *st) {
    int rc = tinycl_cwr_learn(&s->cwr, x, st->pseudo_label);
    if (!rc) s->n_pseudo = tinycl_sat_inc(s->n_pseudo);
    return rc;
}

int tinycl_ndc_stage_cluster_update(tinycl_ndc_t *s, const float *x, const tinycl_step_t *st) {
    return st->prediction >= 0 ? tinycl_ncm_update(&s->ncm, x, st->prediction) : TINYCL_OK;
}

/* Whether class y is in the table or a row is free for it. */
static int has_room(const int32_t *classes, uint32_t n, int32_t y) {
    return n < TINYCL_MAX_CLASSES || find_class(classes, n, y) >= 0;
}

int tinycl_ndc_learn_label(tinycl_ndc_t *s, const float *x, int32_t label) {
    if (!s || label < 0 || !tinycl_finite_vec(x)) return TINYCL_EINVAL;
    /* both tables first: the head learned a label the clusterer then had no row for, and the call said it failed
     * (a global head can give the head classes the clusterer lacks) */
    if (!has_room(s->cwr.classes, s->cwr.n_classes, label) || !has_room(s->ncm.classes, s->ncm.n_classes, label))
        return TINYCL_EFULL;
    int rc = tinycl_cwr_learn(&s->cwr, x, label);
    if (!rc) rc = tinycl_ncm_update(&s->ncm, x, label);
    if (!rc) s->n_labels = tinycl_sat_inc(s->n_labels);
    return rc;
}

tinycl_cwr_t *tinycl_ndc_cwr(tinycl_ndc_t *s) { return s ? &s->cwr : 0; }

int tinycl_ndc_step(tinycl_ndc_t *s, const float *x, int32_t label, tinycl_step_t *out) {
    if (!s || !out || !tinycl_finite_vec(x)) return TINYCL_EINVAL;
    tinycl_step_t st;
    int rc = tinycl_ndc_stage_cluster(s, x, &st);
    if (rc) return rc;
    rc = tinycl_ndc_stage_predict(s, x, &st);
    if (rc) return rc;
    if (label >= 0) {
        rc = tinycl_ndc_learn_label(s, x, label);
    } else if (!has_room(s->cwr.classes, s->cwr.n_classes, st.pseudo_label) ||
               (st.prediction >= 0 && !has_room(s->ncm.classes, s->ncm.n_classes, st.prediction))) {
        rc = TINYCL_EFULL; /* no row for the pseudo-label in the head or for the prediction in the clusterer: neither
                            * learns (the head learned, then the clusterer refused) */
    } else {
        rc = tinycl_ndc_stage_learn(s, x, &st);
        if (!rc) rc = tinycl_ndc_stage_cluster_update(s, x, &st);
    }
    *out = st;
    return rc;
}

int32_t tinycl_next_class_id(const int32_t *ids, uint32_t n) {
    if (!ids && n) return -1;
    int64_t top = -1;
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] > top) top = ids[i];
    if (top < INT32_MAX) return (int32_t)(top + 1);
    for (int32_t c = 0;; c++) { /* n + 1 candidates hold a free one */
        uint32_t i = 0;
        while (i < n && ids[i] != c) i++;
        if (i == n) return c;
    }
}

/* ------------------------------------------------------------------------------------- ABI */
uint32_t tinycl_abi_version(void) { return TINYCL_ABI_VERSION; }
uint32_t tinycl_n_features(void) { return TINYCL_N_FEATURES; }
void tinycl_cut_grid(uint32_t *n, float *scale, int32_t *zero_point) {
    *n = TINYCL_CUT_F;
    *scale = TINYCL_CUT_SCALE;
    *zero_point = TINYCL_CUT_ZP;
}
uint32_t tinycl_max_classes(void) { return TINYCL_MAX_CLASSES; }
size_t tinycl_sizeof_cwr(void) { return sizeof(tinycl_cwr_t); }
size_t tinycl_sizeof_ncm(void) { return sizeof(tinycl_ncm_t); }
size_t tinycl_sizeof_ndc(void) { return sizeof(tinycl_ndc_t); }
const char *tinycl_model_sha256(void) { return TINYCL_MODEL_SHA256; }
