/* State blobs of CWR*, NearestCentroid and TinyRCE (format in tinycl.h and micro_ros_firmware/README.md),
 * written and parsed with the byte writer/reader of tinycl_bytes.h; the CRC-32 they end with; the error codes in words. */
#include <float.h>
#include <string.h>

#include "tinycl.h"
#include "tinycl_bytes.h"

#define F TINYCL_N_FEATURES
#if TINYCL_N_FEATURES > 65535
#error "the blob header's feature count is u16"
#endif

uint32_t tinycl_crc32_update(uint32_t crc, const uint8_t *data, size_t len) {
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc ^= data[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

uint32_t tinycl_crc32(const uint8_t *data, size_t len) { return tinycl_crc32_update(0u, data, len); }

const char *tinycl_error_name(int rc) {
    switch (rc) {
    case TINYCL_OK: return "ok";
    case TINYCL_EINVAL: return "bad argument";
    case TINYCL_EFULL: return "no room for another class";
    case TINYCL_EEMPTY: return "no class known yet";
    case TINYCL_ESTATE: return "state blob malformed (kind, version, sizes or CRC)";
    case TINYCL_ESPACE: return "buffer or storage too small";
    case TINYCL_EDIVERGED: return "training diverged (NaN/inf): the batch is dropped, lower lr";
    case TINYCL_EGONE: return "no longer kept";
    default: return "unknown error";
    }
}

static int finite_f32(float f) { return f == f && f <= FLT_MAX && f >= -FLT_MAX; }

/* The class ids of a blob (u32 each): TINYCL_ESTATE unless every one is ≥ 0 and none repeats. */
static int get_class_ids(rd_t *r, int32_t *ids, int n) {
    for (int i = 0; i < n; i++) {
        ids[i] = (int32_t)get_u32(r);
        if (ids[i] < 0) return TINYCL_ESTATE;
        for (int j = 0; j < i; j++)
            if (ids[j] == ids[i]) return TINYCL_ESTATE;
    }
    return TINYCL_OK;
}

/* Checks magic, kind, version, feature count, class count, size and CRC; returns n_classes or <0. */
static int check_header(rd_t *r, size_t len, uint8_t kind) {
    if (!r->p || len < 16) return TINYCL_ESTATE;
    const uint8_t *start = r->p;
    uint8_t version = TINYCL_STATE_VERSION;
    const int n = kind == TINYCL_KIND_RCE ? get_header_v(r, kind, TINYCL_RCE_STATE_VERSION_EX, TINYCL_N_FEATURES, &version)
                                          : get_header(r, kind, TINYCL_N_FEATURES);
    if (n < 0) return n;
    const uint32_t c = (uint32_t)n;
    size_t want = kind == TINYCL_KIND_CWR ? TINYCL_CWR_STATE_BYTES(c) : TINYCL_NCM_STATE_BYTES(c);
    if (kind == TINYCL_KIND_RCE) { /* the prototype count P sits at byte 112 of the blob, int8_range at 116 (v2) */
        const int ex = version == TINYCL_RCE_STATE_VERSION_EX;
        if (len < (ex ? TINYCL_RCE_STATE_BYTES_EX(0u, 0u, 0) : TINYCL_RCE_STATE_BYTES(0u, 0u))) return TINYCL_ESTATE;
        rd_t pr = RD_MEM(start + 112);
        const uint32_t P = get_u32(&pr);
        const int int8 = ex && get_f64(&pr) != 0.0;
        if (P > (int8 ? TINYCL_RCE_MAX_PROTOTYPES_INT8 : TINYCL_RCE_MAX_PROTOTYPES)) return TINYCL_ESTATE;
        want = ex ? TINYCL_RCE_STATE_BYTES_EX(c, P, int8) : TINYCL_RCE_STATE_BYTES(c, P);
    }
    if (len != want || !crc_ok(start, len)) return TINYCL_ESTATE;
    return n;
}

static int is_zero(const uint8_t sha[32]) {
    int z = 1;
    for (int i = 0; i < 32; i++) z &= sha[i] == 0;
    return z;
}

/* A blob trained on another frozen extractor is refused. The reference is the object's own hash
 * (set by *_init to the model's, or by *_set_extractor), the model's when the object has none;
 * an all-zero hash in the blob means unknown and is accepted. */
static int same_extractor(const uint8_t blob[32], const uint8_t own[32]) {
    uint8_t model[32];
    if (is_zero(blob)) return 1;
    if (is_zero(own)) {
        tinycl_model_sha256_bytes(model);
        own = model;
    }
    return memcmp(blob, own, 32) == 0;
}

size_t tinycl_cwr_state_size(const tinycl_cwr_t *h) { return h ? TINYCL_CWR_STATE_BYTES(h->n_classes) : 0; }
size_t tinycl_ncm_state_size(const tinycl_ncm_t *c) { return c ? TINYCL_NCM_STATE_BYTES(c->n_classes) : 0; }

int tinycl_cwr_save(const tinycl_cwr_t *h, uint8_t *buf, size_t cap, size_t *written) {
    if (!h || !buf) return TINYCL_EINVAL;
    const uint32_t C = h->n_classes;
    if (cap < TINYCL_CWR_STATE_BYTES(C)) return TINYCL_ESPACE;
    wr_t w = WR_MEM(buf);
    put_header(&w, TINYCL_KIND_CWR, TINYCL_N_FEATURES, C);
    put_f32(&w, h->lr);
    put_u32(&w, h->batch_size);
    put_u32(&w, h->n_seen);
    put_u32(&w, h->n_batch);
    put_bytes(&w, h->extractor_sha256, 32);
    for (uint32_t r = 0; r < C; r++) put_u32(&w, (uint32_t)h->classes[r]);
    for (uint32_t r = 0; r < C; r++) put_u32(&w, h->past[r]);
    for (uint32_t r = 0; r < C; r++) put_u32(&w, h->cur[r]);
    for (uint32_t r = 0; r < C; r++) for (int f = 0; f < F; f++) put_f32(&w, h->cw[r][f]);
    for (uint32_t r = 0; r < C; r++) for (int f = 0; f < F; f++) put_f32(&w, h->tw[r][f]);
    put_crc(&w, buf);
    if (written) *written = (size_t)(w.p - buf);
    return TINYCL_OK;
}

int tinycl_cwr_load(tinycl_cwr_t *h, const uint8_t *buf, size_t len) {
    static tinycl_cwr_t tmp; /* parsed completely before h is touched */
    if (!h) return TINYCL_EINVAL;
    rd_t r = RD_MEM(buf);
    int c = check_header(&r, len, TINYCL_KIND_CWR);
    if (c < 0) return c;
    memset(&tmp, 0, sizeof tmp);
    tmp.n_classes = (uint32_t)c;
    tmp.lr = get_f32(&r);
    tmp.batch_size = get_u32(&r);
    tmp.n_seen = get_u32(&r);
    tmp.n_batch = get_u32(&r);
    get_bytes(&r, tmp.extractor_sha256, 32);
    if (!(tmp.lr > 0.0f) || !finite_f32(tmp.lr) || tmp.batch_size == 0 || tmp.n_batch >= tmp.batch_size)
        return TINYCL_ESTATE;
    uint64_t cur_sum = 0;
    if (get_class_ids(&r, tmp.classes, c)) return TINYCL_ESTATE;
    for (int i = 0; i < c; i++) tmp.past[i] = get_u32(&r);
    for (int i = 0; i < c; i++) cur_sum += (tmp.cur[i] = get_u32(&r));
    if (cur_sum != tmp.n_batch) return TINYCL_ESTATE;
    for (int i = 0; i < c; i++) for (int f = 0; f < F; f++) if (!finite_f32(tmp.cw[i][f] = get_f32(&r))) return TINYCL_ESTATE;
    for (int i = 0; i < c; i++) for (int f = 0; f < F; f++) if (!finite_f32(tmp.tw[i][f] = get_f32(&r))) return TINYCL_ESTATE;
    if (!same_extractor(tmp.extractor_sha256, h->extractor_sha256)) return TINYCL_ESTATE;
    *h = tmp;
    return TINYCL_OK;
}

int tinycl_ncm_save(const tinycl_ncm_t *c, uint8_t *buf, size_t cap, size_t *written) {
    if (!c || !buf) return TINYCL_EINVAL;
    const uint32_t C = c->n_classes;
    if (cap < TINYCL_NCM_STATE_BYTES(C)) return TINYCL_ESPACE;
    wr_t w = WR_MEM(buf);
    put_header(&w, TINYCL_KIND_NCM, TINYCL_N_FEATURES, C);
    put_u32(&w, c->max_count);
    for (uint32_t r = 0; r < C; r++) put_u32(&w, (uint32_t)c->classes[r]);
    for (uint32_t r = 0; r < C; r++) put_u32(&w, c->counts[r]);
    for (uint32_t r = 0; r < C; r++) for (int f = 0; f < F; f++) put_f32(&w, c->centroids[r][f]);
    put_crc(&w, buf);
    if (written) *written = (size_t)(w.p - buf);
    return TINYCL_OK;
}

int tinycl_ncm_load(tinycl_ncm_t *c, const uint8_t *buf, size_t len) {
    static tinycl_ncm_t tmp;
    if (!c) return TINYCL_EINVAL;
    rd_t r = RD_MEM(buf);
    int n = check_header(&r, len, TINYCL_KIND_NCM);
    if (n < 0) return n;
    memset(&tmp, 0, sizeof tmp);
    tmp.n_classes = (uint32_t)n;
    tmp.max_count = get_u32(&r);
    if (get_class_ids(&r, tmp.classes, n)) return TINYCL_ESTATE;
    for (int i = 0; i < n; i++) if ((tmp.counts[i] = get_u32(&r)) == 0) return TINYCL_ESTATE;
    for (int i = 0; i < n; i++) for (int f = 0; f < F; f++) if (!finite_f32(tmp.centroids[i][f] = get_f32(&r))) return TINYCL_ESTATE;
    *c = tmp;
    return TINYCL_OK;
}

/* ------------------------------------------------------------------------------------- TinyNDC */
size_t tinycl_ndc_state_size(const tinycl_ndc_t *s) {
    return s ? tinycl_ncm_state_size(&s->ncm) + tinycl_cwr_state_size(&s->cwr) : 0;
}

int tinycl_ndc_save(const tinycl_ndc_t *s, uint8_t *buf, size_t cap, size_t *written) {
    if (!s || !buf) return TINYCL_EINVAL;
    size_t a = 0, b = 0;
    int rc = tinycl_ncm_save(&s->ncm, buf, cap, &a);
    if (!rc) rc = tinycl_cwr_save(&s->cwr, buf + a, cap - a, &b);
    if (!rc && written) *written = a + b;
    return rc;
}

/* the class count in a blob's header (u16 at byte 8) */
static uint32_t header_classes(const uint8_t *blob) {
    rd_t r = RD_MEM(blob + 8);
    return get_u16(&r);
}

int tinycl_ndc_load(tinycl_ndc_t *s, const uint8_t *buf, size_t len) {
    static tinycl_ndc_t tmp; /* both blobs accepted before s is touched */
    if (!s || !buf) return TINYCL_EINVAL;
    if (len < 12) return TINYCL_ESTATE;
    /* the clusterer's class count says where the head's blob starts */
    const size_t n_ncm = TINYCL_NCM_STATE_BYTES(header_classes(buf));
    if (n_ncm >= len) return TINYCL_ESTATE;
    tmp = *s;
    int rc = tinycl_ncm_load(&tmp.ncm, buf, n_ncm);
    if (!rc) rc = tinycl_cwr_load(&tmp.cwr, buf + n_ncm, len - n_ncm);
    if (rc) return rc;
    *s = tmp;
    return TINYCL_OK;
}

/* ------------------------------------------------------------------------------------- TinyRCE */
/* the plain form (fp32, no cap) keeps version 1; the cheaper distances need version 2 */
static int rce_ex(const tinycl_rce_t *r) { return r->int8_range != 0.0 || r->max_visit != 0; }

size_t tinycl_rce_state_size(const tinycl_rce_t *r) {
    if (!r) return 0;
    return rce_ex(r) ? TINYCL_RCE_STATE_BYTES_EX(r->n_classes, r->n_prototypes, r->int8_range != 0.0)
                     : TINYCL_RCE_STATE_BYTES(r->n_classes, r->n_prototypes);
}

int tinycl_rce_save(const tinycl_rce_t *r, uint8_t *buf, size_t cap, size_t *written) {
    if (!r || !buf) return TINYCL_EINVAL;
    const uint32_t C = r->n_classes, P = r->n_prototypes;
    if (cap < tinycl_rce_state_size(r)) return TINYCL_ESPACE;
    const int ex = rce_ex(r), int8 = r->int8_range != 0.0;
    wr_t w = WR_MEM(buf);
    put_header_v(&w, TINYCL_KIND_RCE, ex ? TINYCL_RCE_STATE_VERSION_EX : TINYCL_STATE_VERSION, TINYCL_N_FEATURES, C);
    put_u32(&w, r->memory_bytes);
    put_f64(&w, r->r_max);
    put_f64(&w, r->r_min);
    put_f64(&w, r->grow_margin);
    put_u32(&w, r->metric);
    put_u32(&w, r->n_seen);
    put_u64(&w, r->learning_macs);
    for (int k = 0; k < TINYCL_RCE_N_COUNTERS; k++) put_u32(&w, r->counters[k]);
    put_bytes(&w, r->extractor_sha256, 32);
    put_u32(&w, P);
    if (ex) {
        put_f64(&w, r->int8_range);
        put_u32(&w, r->max_visit);
        put_u32(&w, r->prefix_features);
    }
    for (uint32_t c = 0; c < C; c++) put_u32(&w, (uint32_t)r->classes[c]);
    for (uint32_t c = 0; c < C; c++) put_u32(&w, r->class_seen[c]);
    if (int8)
        for (uint32_t j = 0; j < P; j++) put_bytes(&w, r->centers.q8[j], F);
    else
        for (uint32_t j = 0; j < P; j++) for (int f = 0; f < F; f++) put_f32(&w, r->centers.f32[j][f]);
    for (uint32_t j = 0; j < P; j++) put_f32(&w, r->radii[j]);
    for (uint32_t j = 0; j < P; j++) put_u16(&w, r->rows[j]);
    for (uint32_t j = 0; j < P; j++) put_u32(&w, r->hits[j]);
    for (uint32_t j = 0; j < P; j++) put_u32(&w, r->last_used[j]);
    put_crc(&w, buf);
    if (written) *written = (size_t)(w.p - buf);
    return TINYCL_OK;
}

int tinycl_rce_load(tinycl_rce_t *r, const uint8_t *buf, size_t len) {
    static tinycl_rce_t tmp; /* parsed completely before r is touched */
    if (!r) return TINYCL_EINVAL;
    rd_t rd = RD_MEM(buf);
    int c = check_header(&rd, len, TINYCL_KIND_RCE);
    if (c < 0) return c;
    memset(&tmp, 0, sizeof tmp);
    tmp.n_classes = (uint32_t)c;
    tmp.memory_bytes = get_u32(&rd);
    tmp.r_max = get_f64(&rd);
    tmp.r_min = get_f64(&rd);
    tmp.grow_margin = get_f64(&rd);
    tmp.metric = get_u32(&rd);
    tmp.n_seen = get_u32(&rd);
    tmp.learning_macs = get_u64(&rd);
    for (int k = 0; k < TINYCL_RCE_N_COUNTERS; k++) tmp.counters[k] = get_u32(&rd);
    get_bytes(&rd, tmp.extractor_sha256, 32);
    const uint32_t P = get_u32(&rd);
    tmp.n_prototypes = P;
    tmp.prefix_features = 8; /* rce.py's default; version 1 is the plain form */
    if (buf[5] == TINYCL_RCE_STATE_VERSION_EX) {
        tmp.int8_range = get_f64(&rd);
        tmp.max_visit = get_u32(&rd);
        tmp.prefix_features = get_u32(&rd);
        if (tmp.int8_range == 0.0 && tmp.max_visit == 0) return TINYCL_ESTATE; /* the plain form is version 1 */
    }
    if (!tinycl_rce_params_ok_ex(tmp.memory_bytes, tmp.r_max, tmp.r_min, tmp.grow_margin, tmp.metric, tmp.int8_range,
                                 tmp.max_visit, tmp.prefix_features))
        return TINYCL_ESTATE;
    tmp.scale = tmp.int8_range != 0.0 ? (float)(tmp.int8_range / 127.0) : 1.0f;
    if ((int64_t)P > (int64_t)tinycl_rce_max_prototypes(&tmp)) return TINYCL_ESTATE;
    if (get_class_ids(&rd, tmp.classes, c)) return TINYCL_ESTATE;
    for (int i = 0; i < c; i++) tmp.class_seen[i] = get_u32(&rd);
    if (tmp.int8_range != 0.0) {
        for (uint32_t j = 0; j < P; j++) {
            get_bytes(&rd, tmp.centers.q8[j], F);
            for (int f = 0; f < F; f++) if (tmp.centers.q8[j][f] == -128) return TINYCL_ESTATE; /* codes are ±127 */
        }
    } else {
        for (uint32_t j = 0; j < P; j++)
            for (int f = 0; f < F; f++) if (!finite_f32(tmp.centers.f32[j][f] = get_f32(&rd))) return TINYCL_ESTATE;
    }
    const float r_hi = (float)(tmp.r_max * (1.0 + 1e-3));
    for (uint32_t j = 0; j < P; j++) {
        tmp.radii[j] = get_f32(&rd);
        if (!(tmp.radii[j] >= 0.0f) || tmp.radii[j] > r_hi) return TINYCL_ESTATE;
    }
    for (uint32_t j = 0; j < P; j++) if ((tmp.rows[j] = get_u16(&rd)) >= (uint32_t)c) return TINYCL_ESTATE;
    for (uint32_t j = 0; j < P; j++) tmp.hits[j] = get_u32(&rd);
    for (uint32_t j = 0; j < P; j++) tmp.last_used[j] = get_u32(&rd);
    if (!same_extractor(tmp.extractor_sha256, r->extractor_sha256)) return TINYCL_ESTATE;
    *r = tmp;
    return TINYCL_OK;
}
