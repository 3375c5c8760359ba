/*
 * tinycl — the learning core in C99 (TinyNDC on a frozen int8 CNN, and TinyRCE), for Cortex-M7
 * and the host.
 *
 * Same semantics as the Python core (tinycl_nodes/core): the frozen extractor reproduces
 * onnxruntime's int8 inference of the QDQ model the Python side uses, NearestCentroid and CWR*
 * follow clustering.py / cwr.py operation by operation, and the TinyNDC step follows tinyndc.py
 * (paper configuration: learn every pseudo-label, centroids follow the head's prediction).
 *
 * Memory: no malloc. Every object is a plain struct whose size is fixed at compile time by
 * TINYCL_MAX_CLASSES, TINYCL_RCE_MAX_PROTOTYPES and TINYCL_N_FEATURES (the last comes from the
 * generated model header);
 * the caller places it (static, stack or a buffer). Only libm is used (sqrt, exp).
 *
 * Errors: functions returning int return TINYCL_OK (0) or a negative TINYCL_E* code; on error
 * nothing in the object is changed.
 *
 * Thread safety: none needed: objects are independent; tinycl_features() uses static scratch
 * buffers and must not run concurrently with itself.
 */
#ifndef TINYCL_H
#define TINYCL_H

#include <stddef.h>
#include <stdint.h>

#include "tinycl_model.h" /* generated from the ONNX model by tinycl_nodes.export.c_model */

#ifdef __cplusplus
extern "C" {
#endif

#ifndef TINYCL_MAX_CLASSES
#define TINYCL_MAX_CLASSES 10 /**< most classes a head / clusterer can hold (static arrays) */
#endif

#define TINYCL_ABI_VERSION 9 /**< 2: TinyRCE, *_set_extractor; 3: cwr_load_linear, ndc_learn_label, ndc_cwr;
                                  4: features_cut_q; 5: TinyRCE int8 centers + visit cap (rce_init_ex, state version 2);
                                  6: ndc_save / ndc_load / ndc_state_size; 7: TINYCL_EDIVERGED, latent_flush → int;
                                  8: next_class_id; 9: undo_* (TINYCL_EGONE) */

/* error codes */
#define TINYCL_OK 0
#define TINYCL_EINVAL (-1)   /**< bad argument (NULL, NaN/inf feature, negative class id, ...) */
#define TINYCL_EFULL (-2)    /**< a new class would exceed TINYCL_MAX_CLASSES */
#define TINYCL_EEMPTY (-3)   /**< no class known yet (predict / pseudo-label) */
#define TINYCL_ESTATE (-4)   /**< state blob malformed, wrong kind/version/sizes or bad CRC */
#define TINYCL_ESPACE (-5)   /**< output buffer too small */
#define TINYCL_EDIVERGED (-6) /**< training diverged (NaN/inf): the batch was dropped, the weights kept finite */
#define TINYCL_EGONE (-7)     /**< undo: nothing learned under this tag is kept any more */

/** The error code in words for a log line ("bad argument", "state blob malformed, …"; "ok" for TINYCL_OK,
 *  "unknown error" for any other value); a static string. */
const char *tinycl_error_name(int rc);

/* ---------------------------------------------------------------------------------------------
 * Frozen extractor (int8 CNN generated from the ONNX model)
 * ------------------------------------------------------------------------------------------- */

/** Pixels (row-major TINYCL_IN_H × TINYCL_IN_W, 0..255) → int8 features (TINYCL_N_FEATURES). */
void tinycl_features_q(const uint8_t *pixels, int8_t *features_q);

/** The same forward pass, and the last conv block's pooled int8 output (TINYCL_CUT_F values, NCHW, grid
 *  TINYCL_CUT_SCALE / TINYCL_CUT_ZP): the latent replay head's input on the board. */
void tinycl_features_cut_q(const uint8_t *pixels, int8_t *features_q, int8_t *cut_q);

/** int8 features → float, exactly as onnxruntime's DequantizeLinear: (q − zp) · scale. */
void tinycl_dequantize(const int8_t *features_q, float *features);

/* The stages of tinycl_features_q, for measuring them separately. Scratch is static. */
void tinycl_cnn_block(int block);          /**< runs conv block 0..TINYCL_N_BLOCKS-1 */
void tinycl_cnn_input(const uint8_t *pixels); /**< quantises the image into the scratch */
void tinycl_cnn_head(int8_t *features_q);  /**< Gemm + BatchNorm + quantisation */

/* ---------------------------------------------------------------------------------------------
 * CWR* head (cwr.py, epochs = 1): cw = consolidated weights (predict), tw = training weights.
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float cw[TINYCL_MAX_CLASSES][TINYCL_N_FEATURES];
    float tw[TINYCL_MAX_CLASSES][TINYCL_N_FEATURES];
    int32_t classes[TINYCL_MAX_CLASSES]; /**< class id of each row, in order of appearance */
    uint32_t past[TINYCL_MAX_CLASSES];   /**< samples consolidated per class */
    uint32_t cur[TINYCL_MAX_CLASSES];    /**< samples of each class in the current batch */
    uint32_t n_classes;
    uint32_t n_batch;    /**< samples in the current batch */
    uint32_t batch_size; /**< consolidate every batch_size samples */
    uint32_t n_seen;     /**< samples learned in total */
    float lr;
    uint8_t extractor_sha256[32]; /**< frozen model the head was trained on (all 0 = unknown) */
} tinycl_cwr_t;

/** Empty head. lr > 0, batch_size ≥ 1. Copies the model's sha256 into extractor_sha256. */
int tinycl_cwr_init(tinycl_cwr_t *h, float lr, uint32_t batch_size);
/** One SGD step on tw (a new class id adds a row); consolidates when the batch is full. */
int tinycl_cwr_learn(tinycl_cwr_t *h, const float *x, int32_t y);
/** argmax of cw·x (first maximum). TINYCL_EEMPTY before any class. */
int tinycl_cwr_predict(const tinycl_cwr_t *h, const float *x, int32_t *y);
/** Scores cw·x per row (n_classes values) into scores. */
int tinycl_cwr_scores(const tinycl_cwr_t *h, const float *x, float *scores);
/** Consolidate the partial batch now (before exporting). */
void tinycl_cwr_flush(tinycl_cwr_t *h);
/** Mark the head as trained on another frozen extractor (features computed elsewhere, e.g. by the
 *  fp32 model on a host); save/load then check blobs against this hash instead of the model's. */
int tinycl_cwr_set_extractor(tinycl_cwr_t *h, const uint8_t sha256[32]);
/** Replace the consolidated head by a linear one (a fleet's global head: class ids, per-class sample
 *  counts, row-major weights n × TINYCL_N_FEATURES; CWR* has no bias). The partial batch is consolidated
 *  first. Refused (TINYCL_EINVAL / TINYCL_EFULL, head unchanged) on NULL, a negative or repeated id,
 *  NaN/inf weights, n > TINYCL_MAX_CLASSES, or a sha256 other than the head's own. */
int tinycl_cwr_load_linear(tinycl_cwr_t *h, uint32_t n, const int32_t *ids, const uint32_t *counts,
                           const float *weights, const uint8_t sha256[32]);
/** The sha256 of the generated model (TINYCL_MODEL_SHA256) as 32 bytes. */
void tinycl_model_sha256_bytes(uint8_t out[32]);

/* ---------------------------------------------------------------------------------------------
 * NearestCentroid clustering (clustering.py; the TinyNDC paper's L2 centroids)
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float centroids[TINYCL_MAX_CLASSES][TINYCL_N_FEATURES];
    int32_t classes[TINYCL_MAX_CLASSES];
    uint32_t counts[TINYCL_MAX_CLASSES]; /**< weight of the past of each centroid */
    uint32_t n_classes;
    uint32_t max_count; /**< cap on counts (0 = none: pure running mean, as the paper) */
} tinycl_ncm_t;

int tinycl_ncm_init(tinycl_ncm_t *c, uint32_t max_count);
/** Centroids = per-class means of n labelled samples X (n × TINYCL_N_FEATURES); classes sorted. */
int tinycl_ncm_init_from_labelled(tinycl_ncm_t *c, const float *X, const int32_t *y, uint32_t n);
/** Nearest centroid's class id and its softmax(−d²) confidence (conf may be NULL). */
int tinycl_ncm_pseudo_label(const tinycl_ncm_t *c, const float *x, int32_t *label, float *conf);
/** Move centroid of y towards x (running mean); an unknown y gets a new centroid at x. */
int tinycl_ncm_update(tinycl_ncm_t *c, const float *x, int32_t y);

/* ---------------------------------------------------------------------------------------------
 * TinyNDC loop (tinyndc.py, paper configuration: min_confidence 0, cluster_update "head")
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    tinycl_ncm_t ncm;
    tinycl_cwr_t cwr;
    uint32_t n_pseudo; /**< pseudo-labels learned */
    uint32_t n_labels; /**< true labels learned (init + given) */
} tinycl_ndc_t;

typedef struct {
    int32_t prediction;   /**< the system's prediction, made before learning (−1: none) */
    int32_t pseudo_label; /**< the clusterer's pseudo-label */
    float confidence;     /**< its confidence */
} tinycl_step_t;

int tinycl_ndc_init(tinycl_ndc_t *s, float lr, uint32_t batch_size, uint32_t max_count);
/** Centroids from the labelled samples, and the head learns them in order. */
int tinycl_ndc_init_from_labelled(tinycl_ndc_t *s, const float *X, const int32_t *y, uint32_t n);
/** Predict x, then learn from label (if label ≥ 0) or from the clusterer's pseudo-label. TINYCL_EFULL when a full
 *  table has no row for what would be learned: out holds the step's prediction and pseudo-label, nothing learned. */
int tinycl_ndc_step(tinycl_ndc_t *s, const float *x, int32_t label, tinycl_step_t *out);
/* The stages of tinycl_ndc_step (unlabelled), as measured by the benchmark. */
/** Learn a true label for a sample seen earlier (a person's answer): CWR* and its centroid, no prediction.
 *  A new class id adds a row and a centroid; TINYCL_EFULL, nothing changed, when either table has no row for it. */
int tinycl_ndc_learn_label(tinycl_ndc_t *s, const float *x, int32_t label);
/** The system's CWR* head (ABI helper for ctypes: the struct's layout stays private to C). */
tinycl_cwr_t *tinycl_ndc_cwr(tinycl_ndc_t *s);
int tinycl_ndc_stage_cluster(const tinycl_ndc_t *s, const float *x, tinycl_step_t *out);
int tinycl_ndc_stage_predict(const tinycl_ndc_t *s, const float *x, tinycl_step_t *out);
int tinycl_ndc_stage_learn(tinycl_ndc_t *s, const float *x, const tinycl_step_t *st);
int tinycl_ndc_stage_cluster_update(tinycl_ndc_t *s, const float *x, const tinycl_step_t *st);

/* ---------------------------------------------------------------------------------------------
 * Undo of a person's answers (core/undo.py's ReplayUndo, for TinyNDC): the system as it was before the oldest sample
 * kept, and the last TINYCL_UNDO_MAX samples (frames and answers, as int8 codes). Changing or withdrawing an answer
 * replays them (frames pseudo-labelled anew), so the system is exactly what it would be had the answer been given so.
 * Learn through it (undo_step / undo_learn_label instead of ndc_step / ndc_learn_label); anything else that changes
 * the system (a global head, a restored state) starts it again with undo_init.
 * ------------------------------------------------------------------------------------------- */
#ifndef TINYCL_UNDO_MAX
#define TINYCL_UNDO_MAX 600u /**< samples kept: an answer can be changed until this many more came (60 s at 10/s) */
#endif
typedef struct {
    tinycl_ndc_t base;                       /**< the system before the oldest sample kept */
    tinycl_ndc_t work;                       /**< a replay's scratch: the system is replaced only if it succeeds */
    int8_t q[TINYCL_UNDO_MAX][TINYCL_N_FEATURES]; /**< each sample's features, as the extractor's int8 codes */
    int32_t label[TINYCL_UNDO_MAX];          /**< an answer's class; -1: a frame; -2: an answer withdrawn */
    uint32_t tag[TINYCL_UNDO_MAX];           /**< an answer's tag (e.g. its sample id); 0: a frame */
    uint32_t first, n;                       /**< the ring: oldest sample, samples kept */
} tinycl_undo_t;

/** Start from the system as it is now (nothing kept). */
int tinycl_undo_init(tinycl_undo_t *u, const tinycl_ndc_t *s);
/** tinycl_ndc_step(s, x, -1, out), the frame kept. x must lie on the features' grid (tinycl_dequantize's output),
 *  else TINYCL_EINVAL and nothing changes. */
int tinycl_undo_step(tinycl_undo_t *u, tinycl_ndc_t *s, const float *x, tinycl_step_t *out);
/** tinycl_ndc_learn_label(s, x, label), the answer kept under tag (≥ 1). */
int tinycl_undo_learn_label(tinycl_undo_t *u, tinycl_ndc_t *s, const float *x, int32_t label, uint32_t tag);
/** The answer kept under tag learned as label instead (-1: withdrawn, not learned): s replayed. TINYCL_EGONE when
 *  nothing under tag is kept (too old, withdrawn, or never); TINYCL_EFULL when the replay finds no row for a class;
 *  on any error nothing changes. */
int tinycl_undo_relabel(tinycl_undo_t *u, tinycl_ndc_t *s, uint32_t tag, int32_t label);

/* ---------------------------------------------------------------------------------------------
 * TinyRCE (rce.py): Restricted Coulomb Energy classifier — prototypes (center, radius, class);
 * a prototype fires on x when d(x, center) < radius. Learning a labelled x shrinks the wrong-class
 * prototypes that fire (r = d), grows a right-class one that nearly covers x (d/r < 1 +
 * grow_margin, below r_max and another class's center), or commits a new prototype at x with
 * r = min(distance to the nearest other-class prototype, r_max); prototypes with r <= r_min are
 * pruned; when the memory budget is full the least recently useful prototype of a class that
 * keeps another is evicted. decide() says covered / ambiguous (closest firing wins) / unknown.
 * Memory budget as in Python: a prototype costs TINYCL_RCE_PROTOTYPE_BYTES (4F + 14; F + 14 with
 * int8 centers) and a known class TINYCL_RCE_CLASS_BYTES (8); max prototypes = (memory_bytes −
 * 8·max(C, 1)) // prototype bytes, which must not exceed the static TINYCL_RCE_MAX_PROTOTYPES
 * (default 152: the paper's 40 KiB budget at 64 features holds 151), or
 * TINYCL_RCE_MAX_PROTOTYPES_INT8 with int8 centers (default 4×: the same center bytes; 40 KiB holds 524).
 *
 * Cheaper distances (tinycl_rce_init_ex; rce.py's int8_range, max_visit, prefix_features):
 *   int8_range > 0: x is clipped to ±int8_range and coded int8 (rint(x / s), s = int8_range / 127 in
 *     float32); centers are stored as those codes, every distance is an int32 sum (|a−b| or (a−b)²)
 *     times s (radii stay in feature units);
 *   max_visit > 0: past max_visit prototypes, a coarse pass sums every prototype's first
 *     prefix_features features, and the max_visit smallest sums (ties: the lower index) get their full
 *     distance (the int8 partial sum reused); the others do not fire.
 * ------------------------------------------------------------------------------------------- */
#ifndef TINYCL_RCE_MAX_PROTOTYPES
#define TINYCL_RCE_MAX_PROTOTYPES 152
#endif
#ifndef TINYCL_RCE_MAX_PROTOTYPES_INT8
#define TINYCL_RCE_MAX_PROTOTYPES_INT8 (4 * TINYCL_RCE_MAX_PROTOTYPES) /**< int8 centers in the fp32 centers' bytes */
#endif
/** per-prototype slots: the larger of the two capacities */
#define TINYCL_RCE_SLOTS (TINYCL_RCE_MAX_PROTOTYPES_INT8 > TINYCL_RCE_MAX_PROTOTYPES ? TINYCL_RCE_MAX_PROTOTYPES_INT8 \
                                                                                    : TINYCL_RCE_MAX_PROTOTYPES)
#define TINYCL_RCE_PROTOTYPE_BYTES (4u * TINYCL_N_FEATURES + 14u)
#define TINYCL_RCE_PROTOTYPE_BYTES_INT8 (TINYCL_N_FEATURES + 14u)
#define TINYCL_RCE_CLASS_BYTES 8u
#define TINYCL_RCE_L2 0u /**< Euclidean distance */
#define TINYCL_RCE_L1 1u /**< Manhattan distance */
/* decision reasons */
#define TINYCL_RCE_EMPTY 0     /**< nothing learned yet */
#define TINYCL_RCE_UNKNOWN 1   /**< no prototype fires: ask for a label */
#define TINYCL_RCE_AMBIGUOUS 2 /**< prototypes of several classes fire (the closest wins) */
#define TINYCL_RCE_COVERED 3   /**< prototypes of one class fire */
/* counters */
enum { TINYCL_RCE_COMMITTED, TINYCL_RCE_GROWN, TINYCL_RCE_SHRUNK, TINYCL_RCE_PRUNED, TINYCL_RCE_EVICTED,
       TINYCL_RCE_DROPPED, TINYCL_RCE_N_COUNTERS };

typedef struct {
    union {
        float f32[TINYCL_RCE_MAX_PROTOTYPES][TINYCL_N_FEATURES];       /**< int8_range == 0 */
        int8_t q8[TINYCL_RCE_MAX_PROTOTYPES_INT8][TINYCL_N_FEATURES];  /**< int8_range > 0: codes */
    } centers;
    float radii[TINYCL_RCE_SLOTS];
    uint32_t hits[TINYCL_RCE_SLOTS];      /**< times it covered / grew to a sample */
    uint32_t last_used[TINYCL_RCE_SLOTS]; /**< step (n_seen + 1) of its last use */
    uint16_t rows[TINYCL_RCE_SLOTS];      /**< class row of each prototype */
    int32_t classes[TINYCL_MAX_CLASSES];  /**< class id of each row, in order of appearance */
    uint32_t class_seen[TINYCL_MAX_CLASSES]; /**< samples learned per class */
    uint32_t n_classes;
    uint32_t n_prototypes;
    uint32_t memory_bytes;
    uint32_t metric;      /**< TINYCL_RCE_L2 or TINYCL_RCE_L1 */
    double r_max, r_min, grow_margin;
    double int8_range;        /**< 0: fp32 centers; > 0: int8 centers, inputs clipped to ±int8_range */
    float scale;              /**< (float)(int8_range / 127) (1 when fp32) */
    uint32_t max_visit;       /**< 0: every prototype gets a full distance */
    uint32_t prefix_features; /**< features of the coarse pass (used when max_visit > 0) */
    uint32_t n_seen;
    uint32_t counters[TINYCL_RCE_N_COUNTERS];
    uint64_t learning_macs; /**< multiply-accumulates of learning (one per feature per distance) */
    uint8_t extractor_sha256[32];
} tinycl_rce_t;

typedef struct {
    int32_t label;     /**< class of the closest firing prototype, −1 when nothing fires */
    int32_t nearest;   /**< class of the prototype with the smallest d/r (−1 when empty) */
    int32_t reason;    /**< TINYCL_RCE_EMPTY / UNKNOWN / AMBIGUOUS / COVERED */
    float novelty;     /**< smallest d/r (< 1: covered), inf when empty */
    float distance;    /**< d of the closest firing prototype, or of the nearest when unknown */
    uint32_t n_candidates;
    int32_t candidates[TINYCL_MAX_CLASSES]; /**< classes that fire, closest first */
} tinycl_rce_decision_t;

/** 1 if the hyper-parameters are valid for this build (as TinyRCE.__init__ checks, and the budget
 *  holds 1..TINYCL_RCE_MAX_PROTOTYPES prototypes), else 0. */
int tinycl_rce_params_ok(uint32_t memory_bytes, double r_max, double r_min, double grow_margin, uint32_t metric);
/** The same with the cheaper distances: int8_range >= 0 finite, prefix_features >= 1 and, when
 *  max_visit > 0, < TINYCL_N_FEATURES; the budget holds 1..TINYCL_RCE_MAX_PROTOTYPES_INT8 int8 prototypes. */
int tinycl_rce_params_ok_ex(uint32_t memory_bytes, double r_max, double r_min, double grow_margin, uint32_t metric,
                            double int8_range, uint32_t max_visit, uint32_t prefix_features);
/** Empty classifier; TINYCL_EINVAL if tinycl_rce_params_ok() says no. Copies the model's sha256. */
int tinycl_rce_init(tinycl_rce_t *r, uint32_t memory_bytes, double r_max, double r_min, double grow_margin,
                    uint32_t metric);
/** Empty classifier with the cheaper distances (int8_range 0, max_visit 0: tinycl_rce_init). */
int tinycl_rce_init_ex(tinycl_rce_t *r, uint32_t memory_bytes, double r_max, double r_min, double grow_margin,
                       uint32_t metric, double int8_range, uint32_t max_visit, uint32_t prefix_features);
/** Learn one labelled sample (a new class id adds a class: TINYCL_EFULL beyond TINYCL_MAX_CLASSES). */
int tinycl_rce_learn(tinycl_rce_t *r, const float *x, int32_t y);
/** Known or unknown, and why (TinyRCE.decide). */
int tinycl_rce_decide(const tinycl_rce_t *r, const float *x, tinycl_rce_decision_t *dec);
/** Closest firing prototype's class, or the best guess (smallest d/r); TINYCL_EEMPTY before learning. */
int tinycl_rce_predict(const tinycl_rce_t *r, const float *x, int32_t *y);
/** Prototypes the budget allows next to the classes known now (may be ≤ 0 when classes fill it). */
int32_t tinycl_rce_max_prototypes(const tinycl_rce_t *r);
/** memory_bytes that holds exactly n prototypes with one class (n·(4F + 14) + 8). */
uint32_t tinycl_rce_budget_bytes(uint32_t n_prototypes);
/** Distance multiply-accumulates (one per feature per distance) of one decide() now: P·F, or
 *  P·K + max_visit·(F − K) when the visit cap applies (as TinyRCE.inference_macs). */
uint64_t tinycl_rce_inference_macs(const tinycl_rce_t *r);
int tinycl_rce_set_extractor(tinycl_rce_t *r, const uint8_t sha256[32]);

/* ---------------------------------------------------------------------------------------------
 * State blobs (format documented in micro_ros_firmware/README.md; Python: tinycl_nodes/export/c_state.py)
 *   header: "TCLS" | u8 kind (1 CWRStar, 2 NearestCentroid, 3 TinyRCE) | u8 version (1) | u16 n_features
 *           | u16 n_classes | u16 reserved 0   — then the kind's body — then u32 CRC-32 (IEEE)
 *   of everything before it. All little-endian.
 * ------------------------------------------------------------------------------------------- */
#define TINYCL_KIND_CWR 1
#define TINYCL_KIND_NCM 2
#define TINYCL_KIND_RCE 3
#define TINYCL_STATE_VERSION 1
#define TINYCL_CWR_STATE_BYTES(C) (12u + 4u + 4u + 4u + 4u + 32u + (C) * (4u + 4u + 4u) + 2u * (C) * TINYCL_N_FEATURES * 4u + 4u)
#define TINYCL_NCM_STATE_BYTES(C) (12u + 4u + (C) * (4u + 4u) + (C) * TINYCL_N_FEATURES * 4u + 4u)
/* TinyRCE body: u32 memory_bytes | f64 r_max | f64 r_min | f64 grow_margin | u32 metric | u32 n_seen
 *   | u64 learning_macs | u32 counters[6] | 32 B sha256 | u32 P | i32 classes[C] | u32 class_seen[C]
 *   | f32 centers[P][F] | f32 radii[P] | u16 rows[P] | u32 hits[P] | u32 last_used[P]
 * (every prototype costs exactly TINYCL_RCE_PROTOTYPE_BYTES and every class 8 bytes, as the budget counts).
 * Version 2 (TINYCL_RCE_STATE_VERSION_EX; written only for int8_range > 0 or max_visit > 0, so the plain
 * form stays version 1 byte for byte): after P, f64 int8_range | u32 max_visit | u32 prefix_features, and
 * the centers are i8 codes [P][F] when int8_range > 0. */
#define TINYCL_RCE_STATE_VERSION_EX 2
#define TINYCL_RCE_STATE_BYTES(C, P) (12u + 104u + (C) * TINYCL_RCE_CLASS_BYTES + (P) * TINYCL_RCE_PROTOTYPE_BYTES + 4u)
#define TINYCL_RCE_STATE_BYTES_EX(C, P, INT8) \
    (12u + 120u + (C) * TINYCL_RCE_CLASS_BYTES + (P) * ((INT8) ? TINYCL_RCE_PROTOTYPE_BYTES_INT8 : TINYCL_RCE_PROTOTYPE_BYTES) + 4u)
/** the largest TinyRCE blob of this build */
#define TINYCL_RCE_STATE_MAX_BYTES                                                                         \
    (TINYCL_RCE_STATE_BYTES_EX(TINYCL_MAX_CLASSES, TINYCL_RCE_MAX_PROTOTYPES, 0) >                         \
             TINYCL_RCE_STATE_BYTES_EX(TINYCL_MAX_CLASSES, TINYCL_RCE_MAX_PROTOTYPES_INT8, 1)              \
         ? TINYCL_RCE_STATE_BYTES_EX(TINYCL_MAX_CLASSES, TINYCL_RCE_MAX_PROTOTYPES, 0)                     \
         : TINYCL_RCE_STATE_BYTES_EX(TINYCL_MAX_CLASSES, TINYCL_RCE_MAX_PROTOTYPES_INT8, 1))

size_t tinycl_cwr_state_size(const tinycl_cwr_t *h);
int tinycl_cwr_save(const tinycl_cwr_t *h, uint8_t *buf, size_t cap, size_t *written);
int tinycl_cwr_load(tinycl_cwr_t *h, const uint8_t *buf, size_t len);
size_t tinycl_ncm_state_size(const tinycl_ncm_t *c);
int tinycl_ncm_save(const tinycl_ncm_t *c, uint8_t *buf, size_t cap, size_t *written);
int tinycl_ncm_load(tinycl_ncm_t *c, const uint8_t *buf, size_t len);
/** The TinyNDC loop's learned state: the clusterer's blob followed by the head's (kinds 2 and 1, each whole with
 *  its CRC; n_pseudo / n_labels are counters, not state). load refuses (system unchanged) unless both blobs are
 *  accepted and fill len exactly. */
size_t tinycl_ndc_state_size(const tinycl_ndc_t *s);
int tinycl_ndc_save(const tinycl_ndc_t *s, uint8_t *buf, size_t cap, size_t *written);
int tinycl_ndc_load(tinycl_ndc_t *s, const uint8_t *buf, size_t len);
#define TINYCL_NDC_STATE_MAX_BYTES (TINYCL_NCM_STATE_BYTES(TINYCL_MAX_CLASSES) + TINYCL_CWR_STATE_BYTES(TINYCL_MAX_CLASSES))
size_t tinycl_rce_state_size(const tinycl_rce_t *r);
int tinycl_rce_save(const tinycl_rce_t *r, uint8_t *buf, size_t cap, size_t *written);
/** Refuses (object unchanged) a blob with bad CRC/size/kind/version, invalid hyper-parameters, more
 *  prototypes than its budget or this build holds, radii outside [0, r_max·(1 + 1e-3)], NaN, bad
 *  class rows, duplicate classes, or another extractor's hash. */
int tinycl_rce_load(tinycl_rce_t *r, const uint8_t *buf, size_t len);
uint32_t tinycl_crc32(const uint8_t *data, size_t len);
/** The CRC-32 continued over more bytes (tinycl_crc32(d, n) = tinycl_crc32_update(0, d, n), as zlib's crc32). */
uint32_t tinycl_crc32_update(uint32_t crc, const uint8_t *data, size_t len);
/** Streams of large state blobs: a sink takes the next n bytes (0 = written); a source copies up to n bytes at
 *  offset into dst and returns how many it copied. */
typedef int (*tinycl_sink_fn)(void *ctx, const uint8_t *data, size_t n);
typedef size_t (*tinycl_source_fn)(void *ctx, size_t offset, uint8_t *dst, size_t n);

/* ---------------------------------------------------------------------------------------------
 * ABI helpers for FFI callers (ctypes): sizes of the structs and build constants.
 * ------------------------------------------------------------------------------------------- */
/** The id a person's new class gets: one past the highest of ids[0..n), or the lowest free one once that would
 *  pass INT32_MAX (tinycl_nodes/nodes/label_requests.py next_class_id); -1 for ids NULL with n > 0. */
int32_t tinycl_next_class_id(const int32_t *ids, uint32_t n);

uint32_t tinycl_abi_version(void);
uint32_t tinycl_n_features(void);
void tinycl_cut_grid(uint32_t *n, float *scale, int32_t *zero_point); /**< TINYCL_CUT_F, _SCALE, _ZP */
uint32_t tinycl_max_classes(void);
size_t tinycl_sizeof_cwr(void);
size_t tinycl_sizeof_ncm(void);
size_t tinycl_sizeof_ndc(void);
size_t tinycl_sizeof_undo(void);
size_t tinycl_sizeof_rce(void);
uint32_t tinycl_rce_capacity(void); /**< TINYCL_RCE_MAX_PROTOTYPES of this build */
uint32_t tinycl_rce_capacity_int8(void); /**< TINYCL_RCE_MAX_PROTOTYPES_INT8 of this build */
const char *tinycl_model_sha256(void);

#ifdef __cplusplus
}
#endif
#endif /* TINYCL_H */
