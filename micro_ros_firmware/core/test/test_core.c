/* Unit tests of the C core (host; run under ASan + UBSan by tests/firmware). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "tinycl.h"

#define F TINYCL_N_FEATURES

static tinycl_cwr_t h, h2;
static tinycl_ncm_t c, c2;
static tinycl_ndc_t ndc;
static uint8_t blob[TINYCL_CWR_STATE_BYTES(TINYCL_MAX_CLASSES)];

static void unit(float *x, int i, float v) {
    memset(x, 0, sizeof(float) * F);
    x[i % F] = v;
}

static void test_cwr_known_values(void) {
    float x[F], s[TINYCL_MAX_CLASSES];
    int32_t y = -7;
    CHECK(tinycl_cwr_init(&h, 0.0f, 2) == TINYCL_EINVAL);
    CHECK(tinycl_cwr_init(&h, 1.0f, 0) == TINYCL_EINVAL);
    CHECK(tinycl_cwr_init(&h, 1.0f, 2) == TINYCL_OK);
    unit(x, 0, 1.0f);
    CHECK(tinycl_cwr_predict(&h, x, &y) == TINYCL_EEMPTY);
    /* step 1: one class, softmax = 1 → no gradient; step 2: class 1 → z = [.5, −.5] */
    CHECK(tinycl_cwr_learn(&h, x, 3) == TINYCL_OK);
    CHECK(h.n_batch == 1 && h.cur[0] == 1 && h.tw[0][0] == 0.0f);
    CHECK(tinycl_cwr_learn(&h, x, 5) == TINYCL_OK);
    /* the batch of 2 was consolidated: past = 0 → cw = tw − mean(tw) = tw (mean 0) */
    CHECK(h.n_batch == 0 && h.cur[0] == 0 && h.cur[1] == 0 && h.past[0] == 1 && h.past[1] == 1);
    CHECK(h.cw[0][0] == -0.5f && h.cw[1][0] == 0.5f && h.tw[0][0] == 0.0f && h.tw[1][0] == 0.0f);
    CHECK(tinycl_cwr_predict(&h, x, &y) == TINYCL_OK && y == 5);
    CHECK(tinycl_cwr_scores(&h, x, s) == TINYCL_OK && s[0] == -0.5f && s[1] == 0.5f);
    /* second batch: class 3 again: tw_3 = cw_3, then a softmax step over both rows */
    CHECK(tinycl_cwr_learn(&h, x, 3) == TINYCL_OK);
    const float e0 = expf(-0.5f - 0.0f), e1 = expf(0.0f), k = 1.0f / (e0 + e1);
    const float tw00 = -0.5f - (e0 * k - 1.0f) * 1.0f;
    CHECK(h.tw[0][0] == tw00 && h.tw[1][0] == -(e1 * k) && h.cur[1] == 0);
    tinycl_cwr_flush(&h);
    /* only class 3 is consolidated: new_w = tw − mean(tw_3 row), w = sqrt(1/1) = 1 */
    const double mean = (double)tw00 / F;
    CHECK(h.cw[0][0] == (float)((-0.5 * 1.0 + ((double)tw00 - mean)) / 2.0));
    CHECK(h.cw[0][1] == (float)((0.0 + (0.0 - mean)) / 2.0));
    CHECK(h.cw[1][0] == 0.5f && h.past[1] == 1);
    CHECK(h.past[0] == 2 && h.n_batch == 0);
}

static void test_cwr_errors_and_capacity(void) {
    float x[F];
    CHECK(tinycl_cwr_init(&h, 0.5f, 4) == TINYCL_OK);
    for (int k = 0; k < TINYCL_MAX_CLASSES; k++) {
        unit(x, k, 1.0f);
        CHECK(tinycl_cwr_learn(&h, x, 100 + k) == TINYCL_OK);
    }
    unit(x, 0, 1.0f);
    tinycl_cwr_t before = h;
    CHECK(tinycl_cwr_learn(&h, x, 999) == TINYCL_EFULL);
    CHECK(tinycl_cwr_learn(&h, x, -1) == TINYCL_EINVAL);
    x[3] = NAN;
    CHECK(tinycl_cwr_learn(&h, x, 100) == TINYCL_EINVAL);
    x[3] = INFINITY;
    CHECK(tinycl_cwr_learn(&h, x, 100) == TINYCL_EINVAL);
    CHECK(memcmp(&before, &h, sizeof h) == 0);
    CHECK(tinycl_cwr_learn(&h, NULL, 100) == TINYCL_EINVAL);
}

static void test_cwr_learns_blobs(void) {
    float x[F];
    int32_t y;
    unsigned seed = 1;
    CHECK(tinycl_cwr_init(&h, 0.2f, 8) == TINYCL_OK);
    for (int i = 0; i < 400; i++) {
        int k = i % 4;
        for (int f = 0; f < F; f++) {
            seed = seed * 1103515245u + 12345u;
            x[f] = 0.1f * ((float)((seed >> 16) & 0x7fff) / 32768.0f - 0.5f);
        }
        x[k] += 1.0f;
        CHECK(tinycl_cwr_learn(&h, x, 10 * k) == TINYCL_OK);
    }
    for (int k = 0; k < 4; k++) {
        unit(x, k, 1.0f);
        CHECK(tinycl_cwr_predict(&h, x, &y) == TINYCL_OK && y == 10 * k);
    }
}

static void test_ncm(void) {
    float X[4 * F], x[F];
    int32_t yl[4] = {7, 2, 7, 2}, lab;
    float conf;
    memset(X, 0, sizeof X);
    X[0 * F] = 1.0f; X[1 * F + 1] = 1.0f; X[2 * F] = 3.0f; X[3 * F + 1] = 3.0f;
    CHECK(tinycl_ncm_init(&c, 0) == TINYCL_OK);
    unit(x, 0, 1.0f);
    CHECK(tinycl_ncm_pseudo_label(&c, x, &lab, &conf) == TINYCL_EEMPTY);
    CHECK(tinycl_ncm_init_from_labelled(&c, X, yl, 4) == TINYCL_OK);
    CHECK(c.n_classes == 2 && c.classes[0] == 2 && c.classes[1] == 7);      /* sorted */
    CHECK(c.centroids[1][0] == 2.0f && c.centroids[0][1] == 2.0f && c.counts[0] == 2);
    CHECK(tinycl_ncm_pseudo_label(&c, x, &lab, &conf) == TINYCL_OK && lab == 7);
    CHECK(fabsf(conf - 1.0f / (1.0f + expf(-4.0f))) < 1e-6f);              /* d² 1+4 vs 1+4+... */
    CHECK(tinycl_ncm_update(&c, x, 7) == TINYCL_OK);                        /* running mean */
    CHECK(c.counts[1] == 3 && c.centroids[1][0] == (float)(2.0 + (1.0 - 2.0) / 3.0));
    CHECK(tinycl_ncm_update(&c, x, 9) == TINYCL_OK && c.n_classes == 3 && c.centroids[2][0] == 1.0f);
    CHECK(tinycl_ncm_update(&c, x, -3) == TINYCL_EINVAL);
    CHECK(tinycl_ncm_init(&c2, 2) == TINYCL_OK && tinycl_ncm_init_from_labelled(&c2, X, yl, 4) == TINYCL_OK);
    CHECK(tinycl_ncm_update(&c2, x, 7) == TINYCL_OK && c2.counts[1] == 2);   /* capped */
    CHECK(c2.centroids[1][0] == 2.0f + (1.0f - 2.0f) / 2.0f);
}

/* the little-endian u32 at byte `at` of the n-byte blob set to v, and its CRC made right again */
static void put_u32_crc(uint8_t *b, size_t n, size_t at, uint32_t v) {
    for (int k = 0; k < 4; k++) b[at + k] = (uint8_t)(v >> (8 * k));
    const uint32_t crc = tinycl_crc32(b, n - 4);
    for (int k = 0; k < 4; k++) b[n - 4 + k] = (uint8_t)(crc >> (8 * k));
}

static void test_state_roundtrip(void) {
    size_t n = 0;
    test_cwr_learns_blobs();
    float x[F];
    unit(x, 1, 1.0f);
    CHECK(tinycl_cwr_learn(&h, x, 10) == TINYCL_OK); /* a partial batch is part of the state */
    CHECK(tinycl_cwr_save(&h, blob, 10, &n) == TINYCL_ESPACE);
    CHECK(tinycl_cwr_save(&h, blob, sizeof blob, &n) == TINYCL_OK);
    CHECK(n == tinycl_cwr_state_size(&h) && n == TINYCL_CWR_STATE_BYTES(4));
    memset(&h2, 0, sizeof h2);
    CHECK(tinycl_cwr_load(&h2, blob, n) == TINYCL_OK);
    CHECK(memcmp(&h, &h2, sizeof h) == 0);
    tinycl_cwr_t before = h2;
    blob[40] ^= 1; /* CRC catches it */
    CHECK(tinycl_cwr_load(&h2, blob, n) == TINYCL_ESTATE);
    blob[40] ^= 1;
    CHECK(tinycl_cwr_load(&h2, blob, n - 1) == TINYCL_ESTATE);
    CHECK(tinycl_ncm_load(&c2, blob, n) == TINYCL_ESTATE); /* wrong kind */
    CHECK(memcmp(&before, &h2, sizeof h2) == 0);
    test_ncm();
    CHECK(tinycl_ncm_save(&c, blob, sizeof blob, &n) == TINYCL_OK && n == TINYCL_NCM_STATE_BYTES(3));
    CHECK(tinycl_ncm_load(&c2, blob, n) == TINYCL_OK && memcmp(&c, &c2, sizeof c) == 0);
    /* class ids (u32 from byte 16, after the 12-byte header and max_count): a repeated or a negative one is refused,
     * with a valid CRC, and nothing is loaded */
    put_u32_crc(blob, n, 20, (uint32_t)c.classes[0]);
    CHECK(tinycl_ncm_load(&c2, blob, n) == TINYCL_ESTATE);
    put_u32_crc(blob, n, 20, (uint32_t)-5);
    CHECK(tinycl_ncm_load(&c2, blob, n) == TINYCL_ESTATE && memcmp(&c, &c2, sizeof c) == 0);
    put_u32_crc(blob, n, 20, (uint32_t)c.classes[1]);
    CHECK(tinycl_ncm_load(&c2, blob, n) == TINYCL_OK && memcmp(&c, &c2, sizeof c) == 0);
    CHECK(tinycl_crc32((const uint8_t *)"123456789", 9) == 0xCBF43926u);
}

static void test_cnn_and_ndc(void) {
    static uint8_t img[TINYCL_IN_H * TINYCL_IN_W];
    int8_t q1[F], q2[F];
    float f[F];
    for (int i = 0; i < TINYCL_IN_H * TINYCL_IN_W; i++) img[i] = (uint8_t)((i * 37) & 0xff);
    tinycl_features_q(img, q1);
    tinycl_features_q(img, q2);
    CHECK(memcmp(q1, q2, sizeof q1) == 0);
    tinycl_dequantize(q1, f);
    for (int i = 0; i < F; i++) CHECK(f[i] == (float)(q1[i] - TINYCL_FEAT_ZP) * TINYCL_FEAT_SCALE);
    CHECK(strlen(tinycl_model_sha256()) == 64);
    /* the loop: unit vectors per class initialise; a stream of the same points keeps them */
    float X[3 * F];
    int32_t yl[3] = {0, 1, 2};
    tinycl_step_t st;
    for (int k = 0; k < 3; k++) unit(X + k * F, k, 4.0f);
    CHECK(tinycl_ndc_init(&ndc, 0.1f, 4, 0) == TINYCL_OK);
    CHECK(tinycl_ndc_init_from_labelled(&ndc, X, yl, 3) == TINYCL_OK && ndc.n_labels == 3);
    for (int i = 0; i < 40; i++) {
        CHECK(tinycl_ndc_step(&ndc, X + (i % 3) * F, -1, &st) == TINYCL_OK);
        CHECK(st.pseudo_label == i % 3);
        if (i >= 6) CHECK(st.prediction == i % 3);
    }
    CHECK(ndc.n_pseudo == 40);
    CHECK(tinycl_ndc_step(&ndc, X, 1, &st) == TINYCL_OK && ndc.n_labels == 4);
}

/* The undo log (tinycl_undo_*): a change replays to exactly the system given the answer so (saved blobs equal);
 * an answer rolled out of the log is gone; a sample off the features' grid is refused. Here under the sanitizers. */
static tinycl_undo_t undo;
static tinycl_ndc_t ndc_ref;
static uint8_t ndc_blob[2][TINYCL_NDC_STATE_MAX_BYTES];

static void grid_x(float *x, int i) { /* sample i of 3 classes, on the grid */
    int8_t q[F];
    for (int f = 0; f < F; f++)
        q[f] = (int8_t)((f % 3 == i % 3 ? 40 : -20) + (i * 7 + f * 13) % 9 + TINYCL_FEAT_ZP / 4);
    tinycl_dequantize(q, x);
}

/* frames 0..n-1 through the undo log (u) or directly (u NULL); after frame `at`, frame at-3 answered as `label` */
static void undo_run(tinycl_ndc_t *s, tinycl_undo_t *u, int n, int at, int32_t label) {
    float X[3 * F], x[F];
    int32_t yl[3] = {0, 1, 2};
    tinycl_step_t st;
    for (int k = 0; k < 3; k++) grid_x(X + k * F, k);
    CHECK(tinycl_ndc_init(s, 0.1f, 4, 0) == TINYCL_OK && tinycl_ndc_init_from_labelled(s, X, yl, 3) == TINYCL_OK);
    if (u) CHECK(tinycl_undo_init(u, s) == TINYCL_OK);
    for (int i = 0; i < n; i++) {
        grid_x(x, i);
        CHECK((u ? tinycl_undo_step(u, s, x, &st) : tinycl_ndc_step(s, x, -1, &st)) == TINYCL_OK);
        if (i != at || label < 0) continue;
        grid_x(x, i - 3);
        CHECK((u ? tinycl_undo_learn_label(u, s, x, label, 7) : tinycl_ndc_learn_label(s, x, label)) == TINYCL_OK);
    }
}

static int same_system(const tinycl_ndc_t *a, const tinycl_ndc_t *b) {
    size_t na = 0, nb = 0;
    CHECK(tinycl_ndc_save(a, ndc_blob[0], sizeof ndc_blob[0], &na) == TINYCL_OK);
    CHECK(tinycl_ndc_save(b, ndc_blob[1], sizeof ndc_blob[1], &nb) == TINYCL_OK);
    return na == nb && memcmp(ndc_blob[0], ndc_blob[1], na) == 0;
}

static void test_undo(void) {
    float x[F];
    tinycl_step_t st;
    undo_run(&ndc, &undo, 100, 40, 1);
    undo_run(&ndc_ref, NULL, 100, 40, 5); /* a new class 5 instead */
    CHECK(!same_system(&ndc, &ndc_ref));
    CHECK(tinycl_undo_relabel(&undo, &ndc, 7, 5) == TINYCL_OK && same_system(&ndc, &ndc_ref));
    undo_run(&ndc_ref, NULL, 100, 40, -1); /* never answered */
    CHECK(tinycl_undo_relabel(&undo, &ndc, 7, -1) == TINYCL_OK && same_system(&ndc, &ndc_ref));
    CHECK(tinycl_undo_relabel(&undo, &ndc, 7, 2) == TINYCL_EGONE && same_system(&ndc, &ndc_ref));
    CHECK(tinycl_undo_relabel(&undo, &ndc, 0, 2) == TINYCL_EINVAL && tinycl_undo_relabel(&undo, &ndc, 7, -2) ==
          TINYCL_EINVAL);
    grid_x(x, 3);
    x[0] += 1e-3f;
    CHECK(tinycl_undo_step(&undo, &ndc, x, &st) == TINYCL_EINVAL && same_system(&ndc, &ndc_ref));
    /* the answer rolled out of the log, its learning kept in the base: gone */
    undo_run(&ndc, &undo, (int)TINYCL_UNDO_MAX + 60, 40, 1);
    undo_run(&ndc_ref, NULL, (int)TINYCL_UNDO_MAX + 60, 40, 1);
    CHECK(same_system(&ndc, &ndc_ref) && tinycl_undo_relabel(&undo, &ndc, 7, 2) == TINYCL_EGONE);
}

static tinycl_rce_t rce, rce2;
static uint8_t rce_blob[TINYCL_RCE_STATE_MAX_BYTES];

/* rce saved into rce_blob (n bytes) loads into a fresh rce2 equal to it; a flipped byte at `at` (CRC)
 * and the blob one byte short are refused */
static void check_rce_blob(size_t n, size_t at) {
    CHECK(tinycl_rce_init(&rce2, 4096, 8.0, 0.0, 0.25, TINYCL_RCE_L1) == TINYCL_OK);
    CHECK(tinycl_rce_load(&rce2, rce_blob, n) == TINYCL_OK && memcmp(&rce, &rce2, sizeof rce) == 0);
    rce_blob[at] ^= 1;
    CHECK(tinycl_rce_load(&rce2, rce_blob, n) == TINYCL_ESTATE);
    rce_blob[at] ^= 1;
    CHECK(tinycl_rce_load(&rce2, rce_blob, n - 1) == TINYCL_ESTATE);
}

/* TinyRCE by hand on points along feature 0 (l2 = |Δ|), as tests/core/test_rce.py does in Python */
static void test_rce(void) {
    float x[F];
    int32_t y = -1;
    tinycl_rce_decision_t d;
    size_t n = 0;
    CHECK(tinycl_rce_init(&rce, 100, 8.0, 0.0, 0.25, TINYCL_RCE_L2) == TINYCL_EINVAL);   /* no prototype fits */
    CHECK(tinycl_rce_init(&rce, tinycl_rce_budget_bytes(TINYCL_RCE_MAX_PROTOTYPES + 1u), 8.0, 0.0, 0.25,
                          TINYCL_RCE_L2) == TINYCL_EINVAL);                               /* more than static */
    CHECK(tinycl_rce_init(&rce, 4096, 8.0, 8.0, 0.25, TINYCL_RCE_L2) == TINYCL_EINVAL);  /* r_min >= r_max */
    CHECK(tinycl_rce_init(&rce, 4096, 8.0, 0.0, 0.25, 7u) == TINYCL_EINVAL);
    CHECK(tinycl_rce_init(&rce, tinycl_rce_budget_bytes(3), 10.0, 0.0, 0.0, TINYCL_RCE_L2) == TINYCL_OK);
    CHECK(tinycl_rce_max_prototypes(&rce) == 3);
    unit(x, 0, 0.0f);
    CHECK(tinycl_rce_decide(&rce, x, &d) == TINYCL_OK && d.reason == TINYCL_RCE_EMPTY && d.label == -1);
    CHECK(tinycl_rce_predict(&rce, x, &y) == TINYCL_EEMPTY);
    CHECK(tinycl_rce_learn(&rce, x, 1) == TINYCL_OK);              /* first prototype: r = r_max */
    CHECK(rce.n_prototypes == 1 && rce.radii[0] == 10.0f && rce.learning_macs == 0);
    unit(x, 0, 4.0f);
    CHECK(tinycl_rce_learn(&rce, x, 2) == TINYCL_OK);              /* class 1 fires at d=4: shrunk to 4 */
    CHECK(rce.n_prototypes == 2 && rce.radii[0] == 4.0f && rce.radii[1] == 4.0f);
    CHECK(rce.counters[TINYCL_RCE_SHRUNK] == 1 && rce.counters[TINYCL_RCE_COMMITTED] == 2);
    CHECK(rce.learning_macs == (uint64_t)F);
    unit(x, 0, -1.0f);
    CHECK(tinycl_rce_decide(&rce, x, &d) == TINYCL_OK && d.reason == TINYCL_RCE_COVERED && d.label == 1);
    CHECK(d.n_candidates == 1 && d.distance == 1.0f && d.novelty == 0.25f);
    unit(x, 0, 2.0f);                                              /* d = 2 from both: ambiguous */
    CHECK(tinycl_rce_decide(&rce, x, &d) == TINYCL_OK && d.reason == TINYCL_RCE_AMBIGUOUS && d.label == 1);
    CHECK(d.n_candidates == 2 && d.candidates[0] == 1 && d.candidates[1] == 2);
    unit(x, 0, -20.0f);
    CHECK(tinycl_rce_decide(&rce, x, &d) == TINYCL_OK && d.reason == TINYCL_RCE_UNKNOWN && d.label == -1);
    CHECK(d.nearest == 1 && tinycl_rce_predict(&rce, x, &y) == TINYCL_OK && y == 1);
    /* budget: 3 prototypes with one class id; with 2 classes (16 B of ids) only 2 fit → eviction */
    CHECK(tinycl_rce_max_prototypes(&rce) == 2);
    CHECK(tinycl_rce_learn(&rce, x, 1) == TINYCL_OK);              /* class 1 has one: no eviction */
    CHECK(rce.n_prototypes == 2 && rce.counters[TINYCL_RCE_DROPPED] == 1);
    /* state round trip, byte for byte, and refusals leave the object unchanged */
    CHECK(tinycl_rce_save(&rce, rce_blob, sizeof rce_blob, &n) == TINYCL_OK && n == tinycl_rce_state_size(&rce));
    CHECK(n == TINYCL_RCE_STATE_BYTES(2u, 2u));
    check_rce_blob(n, 40);
    tinycl_rce_t before = rce2;
    CHECK(tinycl_rce_load(&rce2, rce_blob, 10) == TINYCL_ESTATE);
    uint8_t other[32];
    memset(other, 0xab, sizeof other);
    CHECK(tinycl_rce_set_extractor(&rce, other) == TINYCL_OK);
    CHECK(tinycl_rce_save(&rce, rce_blob, sizeof rce_blob, &n) == TINYCL_OK);
    CHECK(tinycl_rce_load(&rce2, rce_blob, n) == TINYCL_ESTATE);  /* another extractor */
    CHECK(memcmp(&before, &rce2, sizeof rce2) == 0);
    CHECK(tinycl_rce_learn(&rce2, NULL, 1) == TINYCL_EINVAL);
    x[3] = NAN;
    CHECK(tinycl_rce_learn(&rce2, x, 1) == TINYCL_EINVAL && memcmp(&before, &rce2, sizeof rce2) == 0);
    /* l1, pruning: r_min = 1, a wrong prototype shrunk to d <= r_min is removed */
    CHECK(tinycl_rce_init(&rce, 4096, 10.0, 1.0, 0.0, TINYCL_RCE_L1) == TINYCL_OK);
    unit(x, 0, 0.0f);
    x[1] = 0.0f;
    CHECK(tinycl_rce_learn(&rce, x, 1) == TINYCL_OK);
    unit(x, 0, 0.5f);
    x[1] = 0.25f;                                                  /* l1 distance 0.75 */
    CHECK(tinycl_rce_learn(&rce, x, 2) == TINYCL_OK);
    CHECK(rce.counters[TINYCL_RCE_PRUNED] == 1 && rce.counters[TINYCL_RCE_DROPPED] == 1 && rce.n_prototypes == 0);
}

/* int8 centers and the visit cap by hand: int8_range 127 makes the scale exactly 1 (codes = rint(x)) */
static void test_rce_int8_cap(void) {
    float x[F];
    tinycl_rce_decision_t d;
    size_t n = 0;
    const uint32_t mem3 = 3u * TINYCL_RCE_PROTOTYPE_BYTES_INT8 + 24u; /* 3 prototypes next to 3 classes */
    CHECK(tinycl_rce_init_ex(&rce, mem3, 10.0, 0.0, 0.0, TINYCL_RCE_L1, -1.0, 0, 8) == TINYCL_EINVAL);
    CHECK(tinycl_rce_init_ex(&rce, mem3, 10.0, 0.0, 0.0, TINYCL_RCE_L1, NAN, 0, 8) == TINYCL_EINVAL);
    CHECK(tinycl_rce_init_ex(&rce, mem3, 10.0, 0.0, 0.0, TINYCL_RCE_L1, 127.0, 1, F) == TINYCL_EINVAL);
    CHECK(tinycl_rce_init_ex(&rce, mem3, 10.0, 0.0, 0.0, TINYCL_RCE_L1, 127.0, 0, 0) == TINYCL_EINVAL);
    CHECK(tinycl_rce_init_ex(&rce, (TINYCL_RCE_MAX_PROTOTYPES_INT8 + 1u) * TINYCL_RCE_PROTOTYPE_BYTES_INT8 + 8u, 10.0,
                             0.0, 0.0, TINYCL_RCE_L1, 127.0, 0, 8) == TINYCL_EINVAL); /* more than static */
    CHECK(tinycl_rce_init_ex(&rce, mem3, 10.0, 0.0, 0.0, TINYCL_RCE_L1, 127.0, 1, 1) == TINYCL_OK);
    CHECK(tinycl_rce_max_prototypes(&rce) == 3 && rce.scale == 1.0f);
    unit(x, 0, 0.0f);
    CHECK(tinycl_rce_learn(&rce, x, 1) == TINYCL_OK);
    unit(x, 0, 6.4f);                                              /* code 6 */
    CHECK(tinycl_rce_learn(&rce, x, 2) == TINYCL_OK);              /* P0 fires at 6: shrunk; P1 at 6, r 6 */
    CHECK(rce.n_prototypes == 2 && rce.centers.q8[1][0] == 6 && rce.radii[0] == 6.0f && rce.radii[1] == 6.0f);
    CHECK(rce.learning_macs == (uint64_t)F);                       /* one prototype: no cap */
    unit(x, 0, 3.0f);                                              /* coarse 3 and 3: the tie visits P0 only */
    CHECK(tinycl_rce_decide(&rce, x, &d) == TINYCL_OK && d.reason == TINYCL_RCE_COVERED && d.label == 1);
    CHECK(d.n_candidates == 1 && d.distance == 3.0f && tinycl_rce_inference_macs(&rce) == 2u + (F - 1u));
    unit(x, 0, 1.0f);
    x[1] = 9.0f;                                                   /* visits P0 (coarse 1 < 5): d 10, unknown */
    CHECK(tinycl_rce_decide(&rce, x, &d) == TINYCL_OK && d.reason == TINYCL_RCE_UNKNOWN && d.nearest == 1);
    CHECK(d.distance == 10.0f);
    unit(x, 0, 200.0f);                                            /* clipped to code 127: visits P1 */
    CHECK(tinycl_rce_learn(&rce, x, 3) == TINYCL_OK);
    CHECK(rce.n_prototypes == 3 && rce.centers.q8[2][0] == 127 && rce.learning_macs == (uint64_t)F + 2u + (F - 1u));
    CHECK(rce.radii[2] == 10.0f);                                  /* r_max: P1 (d 121) is farther */
    /* state: version 2, int8 centers, byte round trip */
    CHECK(tinycl_rce_save(&rce, rce_blob, sizeof rce_blob, &n) == TINYCL_OK && n == tinycl_rce_state_size(&rce));
    CHECK(n == TINYCL_RCE_STATE_BYTES_EX(3u, 3u, 1) && rce_blob[5] == TINYCL_RCE_STATE_VERSION_EX);
    check_rce_blob(n, 140);
    tinycl_rce_t before = rce2;
    rce_blob[5] = 1;                                               /* read as version 1: wrong size */
    CHECK(tinycl_rce_load(&rce2, rce_blob, n) == TINYCL_ESTATE && memcmp(&before, &rce2, sizeof rce2) == 0);
}

static void test_error_names(void) {
    CHECK(strcmp(tinycl_error_name(TINYCL_OK), "ok") == 0);
    CHECK(strcmp(tinycl_error_name(TINYCL_ESTATE), "state blob malformed (kind, version, sizes or CRC)") == 0);
    CHECK(strcmp(tinycl_error_name(1), "unknown error") == 0 && strcmp(tinycl_error_name(-8), "unknown error") == 0);
    const int codes[] = {TINYCL_EINVAL, TINYCL_EFULL, TINYCL_EEMPTY, TINYCL_ESTATE, TINYCL_ESPACE, TINYCL_EDIVERGED,
                         TINYCL_EGONE};
    for (int i = 0; i < 7; i++) { /* each code its own words */
        CHECK(strcmp(tinycl_error_name(codes[i]), "unknown error") != 0);
        for (int j = 0; j < i; j++) CHECK(strcmp(tinycl_error_name(codes[i]), tinycl_error_name(codes[j])) != 0);
    }
}

int main(void) {
    test_cwr_known_values();
    test_cwr_errors_and_capacity();
    test_cwr_learns_blobs();
    test_ncm();
    test_state_roundtrip();
    test_cnn_and_ndc();
    test_rce();
    test_rce_int8_cap();
    test_error_names();
    test_undo();
    if (failures) {
        fprintf(stderr, "tinycl_test: %d check(s) failed\n", failures);
        return 1;
    }
    printf("tinycl_test: all checks passed (F=%d, MAX_CLASSES=%d, cwr %u B, ncm %u B, rce %u B for %d prototypes)\n", F,
           TINYCL_MAX_CLASSES, (unsigned)sizeof(tinycl_cwr_t), (unsigned)sizeof(tinycl_ncm_t),
           (unsigned)sizeof(tinycl_rce_t), TINYCL_RCE_MAX_PROTOTYPES);
    return 0;
}
