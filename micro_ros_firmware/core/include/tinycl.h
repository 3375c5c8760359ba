/*
 * tinycl — the learning core in C99 (TinyNDC on a frozen int8 CNN), for Cortex-M7 and the host.
 *
 * Same semantics as the Python core (tinycl_nodes/core): the frozen extractor reproduces
 * onnxruntime's int8 inference of the QDQ model the Python side uses, NearestCentroid and CWR*
 * follow clustering.py / cwr.py operation by operation, and the TinyNDC step follows tinyndc.py
 * (paper configuration: learn every pseudo-label, centroids follow the head's prediction).
 *
 * Memory: no malloc. Every object is a plain struct whose size is fixed at compile time by
 * TINYCL_MAX_CLASSES and TINYCL_N_FEATURES (the latter comes from the generated model header);
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

#define TINYCL_ABI_VERSION 1

/* error codes */
#define TINYCL_OK 0
#define TINYCL_EINVAL (-1)   /**< bad argument (NULL, NaN/inf feature, negative class id, ...) */
#define TINYCL_EFULL (-2)    /**< a new class would exceed TINYCL_MAX_CLASSES */
#define TINYCL_EEMPTY (-3)   /**< no class known yet (predict / pseudo-label) */
#define TINYCL_ESTATE (-4)   /**< state blob malformed, wrong kind/version/sizes or bad CRC */
#define TINYCL_ESPACE (-5)   /**< output buffer too small */

/* ---------------------------------------------------------------------------------------------
 * Frozen extractor (int8 CNN generated from the ONNX model)
 * ------------------------------------------------------------------------------------------- */

/** Pixels (row-major TINYCL_IN_H × TINYCL_IN_W, 0..255) → int8 features (TINYCL_N_FEATURES). */
void tinycl_features_q(const uint8_t *pixels, int8_t *features_q);

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
/** Predict x, then learn from label (if label ≥ 0) or from the clusterer's pseudo-label. */
int tinycl_ndc_step(tinycl_ndc_t *s, const float *x, int32_t label, tinycl_step_t *out);
/* The stages of tinycl_ndc_step (unlabelled), as measured by the benchmark. */
int tinycl_ndc_stage_cluster(const tinycl_ndc_t *s, const float *x, tinycl_step_t *out);
int tinycl_ndc_stage_predict(const tinycl_ndc_t *s, const float *x, tinycl_step_t *out);
int tinycl_ndc_stage_learn(tinycl_ndc_t *s, const float *x, const tinycl_step_t *st);
int tinycl_ndc_stage_cluster_update(tinycl_ndc_t *s, const float *x, const tinycl_step_t *st);

/* ---------------------------------------------------------------------------------------------
 * State blobs (format documented in micro_ros_firmware/README.md; Python: tinycl_nodes/export/c_state.py)
 *   header: "TCLS" | u8 kind (1 CWRStar, 2 NearestCentroid) | u8 version (1) | u16 n_features
 *           | u16 n_classes | u16 reserved 0   — then the kind's body — then u32 CRC-32 (IEEE)
 *   of everything before it. All little-endian.
 * ------------------------------------------------------------------------------------------- */
#define TINYCL_KIND_CWR 1
#define TINYCL_KIND_NCM 2
#define TINYCL_STATE_VERSION 1
#define TINYCL_CWR_STATE_BYTES(C) (12u + 4u + 4u + 4u + 4u + 32u + (C) * (4u + 4u + 4u) + 2u * (C) * TINYCL_N_FEATURES * 4u + 4u)
#define TINYCL_NCM_STATE_BYTES(C) (12u + 4u + (C) * (4u + 4u) + (C) * TINYCL_N_FEATURES * 4u + 4u)

size_t tinycl_cwr_state_size(const tinycl_cwr_t *h);
int tinycl_cwr_save(const tinycl_cwr_t *h, uint8_t *buf, size_t cap, size_t *written);
int tinycl_cwr_load(tinycl_cwr_t *h, const uint8_t *buf, size_t len);
size_t tinycl_ncm_state_size(const tinycl_ncm_t *c);
int tinycl_ncm_save(const tinycl_ncm_t *c, uint8_t *buf, size_t cap, size_t *written);
int tinycl_ncm_load(tinycl_ncm_t *c, const uint8_t *buf, size_t len);
uint32_t tinycl_crc32(const uint8_t *data, size_t len);

/* ---------------------------------------------------------------------------------------------
 * ABI helpers for FFI callers (ctypes): sizes of the structs and build constants.
 * ------------------------------------------------------------------------------------------- */
uint32_t tinycl_abi_version(void);
uint32_t tinycl_n_features(void);
uint32_t tinycl_max_classes(void);
size_t tinycl_sizeof_cwr(void);
size_t tinycl_sizeof_ncm(void);
size_t tinycl_sizeof_ndc(void);
const char *tinycl_model_sha256(void);

#ifdef __cplusplus
}
#endif
#endif /* TINYCL_H */
