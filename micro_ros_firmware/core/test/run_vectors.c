/* Parity runner (host only): reads the vectors the Python side wrote into DIR, runs the C core,
 * writes its outputs next to them for tests/firmware to compare.
 *   in : params.bin (u32 n_images, u32 n_init, u32 n_stream, f32 lr, u32 batch_size),
 *        images.u8, init_x.f32, init_y.i32, stream_x.f32, [py_cwr.bin, py_ncm.bin]
 *   out: c_features.i8, c_steps.bin (i32 prediction, i32 pseudo-label, f32 confidence per sample),
 *        c_cwr.bin, c_ncm.bin, [c_cwr_roundtrip.bin, c_ncm_roundtrip.bin]
 * With --rce DIR (TinyRCE):
 *   in : rce_params.bin (u32 n, u32 memory_bytes, f64 r_max, f64 r_min, f64 grow_margin, u32 metric,
 *        32 B extractor sha256, f64 int8_range, u32 max_visit, u32 prefix_features), rce_x.f32, rce_y.i32 (a labelled stream), [py_rce.bin]
 *   out: c_rce_decisions.bin (per sample, decided before learning it: i32 label, i32 nearest,
 *        i32 reason, f32 novelty, f32 distance), c_rce.bin, [c_rce_roundtrip.bin] */
#include <stdio.h>
#include <string.h>

#include "tinycl.h"

#define MAX_IMAGES 2048
#define MAX_INIT 1024
#define MAX_STREAM 8192
#define NPIX (TINYCL_IN_H * TINYCL_IN_W)
#define F TINYCL_N_FEATURES

static uint8_t images[MAX_IMAGES * NPIX];
static int8_t feats[MAX_IMAGES * F];
static float init_x[MAX_INIT * F], stream_x[MAX_STREAM * F];
static int32_t init_y[MAX_INIT];
static int32_t steps[MAX_STREAM * 3];
static uint8_t blob[TINYCL_CWR_STATE_BYTES(TINYCL_MAX_CLASSES) + 64];
static tinycl_ndc_t ndc;
static char path[4096];

static const char *at(const char *dir, const char *name) {
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static long read_file(const char *dir, const char *name, void *buf, size_t cap, int optional) {
    FILE *f = fopen(at(dir, name), "rb");
    if (!f) {
        if (!optional) fprintf(stderr, "run_vectors: cannot open %s\n", path);
        return -1;
    }
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return (long)n;
}

static int write_file(const char *dir, const char *name, const void *buf, size_t n) {
    FILE *f = fopen(at(dir, name), "wb");
    if (!f || fwrite(buf, 1, n, f) != n) {
        fprintf(stderr, "run_vectors: cannot write %s\n", path);
        if (f) fclose(f);
        return 1;
    }
    return fclose(f) != 0;
}

static tinycl_rce_t rce, rce_back;
static uint8_t rce_blob[TINYCL_RCE_STATE_MAX_BYTES];
static uint8_t rce_in[sizeof rce_blob];
static int32_t rce_y[MAX_STREAM];
static int32_t rce_out[MAX_STREAM * 5];

static int run_rce(const char *dir) {
    uint8_t p[4 + 4 + 24 + 4 + 32 + 16];
    if (read_file(dir, "rce_params.bin", p, sizeof p, 0) != (long)sizeof p) return 1;
    uint32_t n, mem, metric, max_visit, prefix;
    double r_max, r_min, grow, int8_range;
    uint8_t sha[32];
    memcpy(&n, p, 4);
    memcpy(&mem, p + 4, 4);
    memcpy(&r_max, p + 8, 8);
    memcpy(&r_min, p + 16, 8);
    memcpy(&grow, p + 24, 8);
    memcpy(&metric, p + 32, 4);
    memcpy(sha, p + 36, 32);
    memcpy(&int8_range, p + 68, 8);
    memcpy(&max_visit, p + 76, 4);
    memcpy(&prefix, p + 80, 4);
    if (n > MAX_STREAM) return 1;
    if (read_file(dir, "rce_x.f32", stream_x, sizeof(float) * n * F, 0) != (long)(sizeof(float) * n * F) ||
        read_file(dir, "rce_y.i32", rce_y, sizeof(int32_t) * n, 0) != (long)(sizeof(int32_t) * n))
        return 1;
    int rc = tinycl_rce_init_ex(&rce, mem, r_max, r_min, grow, metric, int8_range, max_visit, prefix);
    if (!rc) rc = tinycl_rce_set_extractor(&rce, sha);
    for (uint32_t i = 0; !rc && i < n; i++) {
        tinycl_rce_decision_t d;
        rc = tinycl_rce_decide(&rce, stream_x + (size_t)i * F, &d);
        rce_out[5 * i] = d.label;
        rce_out[5 * i + 1] = d.nearest;
        rce_out[5 * i + 2] = d.reason;
        memcpy(&rce_out[5 * i + 3], &d.novelty, 4);
        memcpy(&rce_out[5 * i + 4], &d.distance, 4);
        if (!rc) rc = tinycl_rce_learn(&rce, stream_x + (size_t)i * F, rce_y[i]);
    }
    if (rc) {
        fprintf(stderr, "run_vectors: rce error %d\n", rc);
        return 1;
    }
    size_t w;
    if (write_file(dir, "c_rce_decisions.bin", rce_out, sizeof(int32_t) * 5 * n)) return 1;
    if (tinycl_rce_save(&rce, rce_blob, sizeof rce_blob, &w) || write_file(dir, "c_rce.bin", rce_blob, w)) return 1;
    long len = read_file(dir, "py_rce.bin", rce_in, sizeof rce_in, 1);
    if (len >= 0) {
        rce_back = rce; /* same extractor hash */
        if ((rc = tinycl_rce_load(&rce_back, rce_in, (size_t)len)) != 0) {
            fprintf(stderr, "run_vectors: py_rce.bin refused (%d)\n", rc);
            return 1;
        }
        if (tinycl_rce_save(&rce_back, rce_blob, sizeof rce_blob, &w) ||
            write_file(dir, "c_rce_roundtrip.bin", rce_blob, w))
            return 1;
    }
    printf("run_vectors: rce %u samples, %u prototypes\n", n, rce.n_prototypes);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--rce") == 0) return run_rce(argv[2]);
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR | --rce DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    uint32_t p[5];
    if (read_file(dir, "params.bin", p, sizeof p, 0) != (long)sizeof p) return 1;
    uint32_t n_img = p[0], n_init = p[1], n_stream = p[2], batch = p[4];
    float lr;
    memcpy(&lr, &p[3], 4);
    if (n_img > MAX_IMAGES || n_init > MAX_INIT || n_stream > MAX_STREAM) {
        fprintf(stderr, "run_vectors: too many samples\n");
        return 1;
    }
    if (read_file(dir, "images.u8", images, (size_t)n_img * NPIX, 0) != (long)(n_img * NPIX)) return 1;
    for (uint32_t i = 0; i < n_img; i++) tinycl_features_q(images + (size_t)i * NPIX, feats + (size_t)i * F);
    if (write_file(dir, "c_features.i8", feats, (size_t)n_img * F)) return 1;

    if (read_file(dir, "init_x.f32", init_x, sizeof(float) * n_init * F, 0) != (long)(sizeof(float) * n_init * F) ||
        read_file(dir, "init_y.i32", init_y, sizeof(int32_t) * n_init, 0) != (long)(sizeof(int32_t) * n_init) ||
        read_file(dir, "stream_x.f32", stream_x, sizeof(float) * n_stream * F, 0) != (long)(sizeof(float) * n_stream * F))
        return 1;
    int rc = tinycl_ndc_init(&ndc, lr, batch, 0);
    if (!rc) rc = tinycl_ndc_init_from_labelled(&ndc, init_x, init_y, n_init);
    for (uint32_t i = 0; !rc && i < n_stream; i++) {
        tinycl_step_t st;
        rc = tinycl_ndc_step(&ndc, stream_x + (size_t)i * F, -1, &st);
        steps[3 * i] = st.prediction;
        steps[3 * i + 1] = st.pseudo_label;
        memcpy(&steps[3 * i + 2], &st.confidence, 4);
    }
    if (rc) {
        fprintf(stderr, "run_vectors: core error %d\n", rc);
        return 1;
    }
    size_t n;
    if (write_file(dir, "c_steps.bin", steps, sizeof(int32_t) * 3 * n_stream)) return 1;
    if (tinycl_cwr_save(&ndc.cwr, blob, sizeof blob, &n) || write_file(dir, "c_cwr.bin", blob, n)) return 1;
    if (tinycl_ncm_save(&ndc.ncm, blob, sizeof blob, &n) || write_file(dir, "c_ncm.bin", blob, n)) return 1;

    /* states written by Python: load, save again (must be byte-identical) */
    static uint8_t in[sizeof blob];
    long len = read_file(dir, "py_cwr.bin", in, sizeof in, 1);
    if (len >= 0) {
        static tinycl_cwr_t h;
        if ((rc = tinycl_cwr_load(&h, in, (size_t)len)) != 0) {
            fprintf(stderr, "run_vectors: py_cwr.bin refused (%d)\n", rc);
            return 1;
        }
        if (tinycl_cwr_save(&h, blob, sizeof blob, &n) || write_file(dir, "c_cwr_roundtrip.bin", blob, n)) return 1;
    }
    len = read_file(dir, "py_ncm.bin", in, sizeof in, 1);
    if (len >= 0) {
        static tinycl_ncm_t c;
        if ((rc = tinycl_ncm_load(&c, in, (size_t)len)) != 0) {
            fprintf(stderr, "run_vectors: py_ncm.bin refused (%d)\n", rc);
            return 1;
        }
        if (tinycl_ncm_save(&c, blob, sizeof blob, &n) || write_file(dir, "c_ncm_roundtrip.bin", blob, n)) return 1;
    }
    printf("run_vectors: %u images, %u init, %u stream samples\n", n_img, n_init, n_stream);
    return 0;
}
