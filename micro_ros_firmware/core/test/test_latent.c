/* Unit test of the latent replay head (tinycl_latent.c) on synthetic latents; run under ASan + UBSan
 * by tests/firmware/test_latent_c.py. Parity with the numpy head is tested through ctypes there. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "tinycl_latent.h"

#define F TINYCL_LATENT_F

static tinycl_latent_t h, h2;
static uint8_t blob[2u * 1024u * 1024u + 256u * 1024u];
static tinycl_pcg32_t noise;
static uint8_t streamed[2u * 1024u * 1024u + 256u * 1024u];

/* a storage for the streamed blob: a sink appending to `streamed`, a source reading it back */
typedef struct { size_t len, cap; } store_t;
static int sink(void *ctx, const uint8_t *data, size_t n) {
    store_t *st = (store_t *)ctx;
    if (st->len + n > st->cap) return 1;
    memcpy(streamed + st->len, data, n);
    st->len += n;
    return 0;
}
static size_t source(void *ctx, size_t offset, uint8_t *dst, size_t n) {
    const store_t *st = (const store_t *)ctx;
    if (offset >= st->len) return 0;
    if (n > st->len - offset) n = st->len - offset;
    memcpy(dst, streamed + offset, n);
    return n;
}

/* class c: a bump on features [c·F/4, c·F/4 + F/8) over non-negative noise (post-ReLU latents) */
static void sample(float *x, int c) {
    for (uint32_t f = 0; f < F; f++) x[f] = (float)(tinycl_pcg32_next(&noise) >> 8) / 16777216.0f * 0.5f;
    for (uint32_t f = (uint32_t)c * F / 4; f < (uint32_t)c * F / 4 + F / 8; f++) x[f] += 2.0f;
}

int main(void) {
    static float x[F];
    tinycl_latent_params_t p;
    uint16_t pick[16];
    tinycl_pcg32_seed(&noise, 3, 0);
    tinycl_pcg32_choice(&noise, 100, 16, pick);
    for (int i = 1; i < 16; i++) CHECK(pick[i] > pick[i - 1] && pick[15] < 100);

    tinycl_latent_default_params(&p);
    p.memory_size = TINYCL_LATENT_MEMORY + 1;
    CHECK(tinycl_latent_init(&h, &p) == TINYCL_EINVAL);
    tinycl_latent_default_params(&p);
    p.minibatch = 0;
    CHECK(tinycl_latent_init(&h, &p) == TINYCL_EINVAL);
    tinycl_latent_default_params(&p);
    p.quantization = 0;
    CHECK(tinycl_latent_init(&h, &p) == TINYCL_EINVAL);
    tinycl_latent_default_params(&p);
    p.lr = NAN;
    CHECK(tinycl_latent_init(&h, &p) == TINYCL_EINVAL);

    tinycl_latent_default_params(&p);
    p.memory_size = 40;
    p.batch_size = 8;
    p.epochs = 2;
    p.replay = 12;
    p.minibatch = 3; /* ragged last mini-batch */
    p.quantization = TINYCL_LATENT_QUANT_CHANNEL;
    p.lr = 0.05;
    CHECK(tinycl_latent_init(&h, &p) == TINYCL_OK);
    int32_t y = -7;
    sample(x, 0);
    CHECK(tinycl_latent_predict(&h, x, &y) == TINYCL_EEMPTY && y == -7);
    for (int i = 0; i < 120; i++) {
        sample(x, i % 3);
        CHECK(tinycl_latent_learn(&h, x, 10 + i % 3) == TINYCL_OK);
    }
    CHECK(h.n_seen == 120 && h.n_classes == 3 && h.n_batches == 15 && h.mem_size == 40 && h.n_pending == 0);
    CHECK(h.n_grids == TINYCL_LATENT_CH && h.q_scale[0] > 0.0f);
    int correct = 0;
    for (int i = 0; i < 60; i++) {
        sample(x, i % 3);
        CHECK(tinycl_latent_predict(&h, x, &y) == TINYCL_OK);
        correct += y == 10 + i % 3;
    }
    CHECK(correct >= 57);
    /* bad input: nothing learned */
    x[7] = NAN;
    CHECK(tinycl_latent_learn(&h, x, 10) == TINYCL_EINVAL);
    sample(x, 1);
    CHECK(tinycl_latent_learn(&h, x, -1) == TINYCL_EINVAL);
    CHECK(h.n_seen == 120 && h.n_pending == 0);
    /* a partial batch, then flush; then classes up to the limit */
    CHECK(tinycl_latent_learn(&h, x, 11) == TINYCL_OK && h.n_pending == 1);
    CHECK(tinycl_latent_flush(&h) == TINYCL_OK);
    CHECK(h.n_pending == 0 && h.n_batches == 16);
    for (int c = 3; c < TINYCL_MAX_CLASSES; c++) CHECK(tinycl_latent_learn(&h, x, 100 + c) == TINYCL_OK);
    CHECK(tinycl_latent_learn(&h, x, 999) == TINYCL_EFULL && h.n_classes == TINYCL_MAX_CLASSES);
    /* state blob: round trip, and a corrupt or truncated blob leaves the head unchanged */
    size_t n = 0;
    CHECK(h.n_pending == TINYCL_MAX_CLASSES - 3); /* the new classes' samples wait for their batch */
    CHECK(tinycl_latent_state_size(&h) <= sizeof blob);
    CHECK(tinycl_latent_save(&h, blob, 10, &n) == TINYCL_ESPACE);
    CHECK(tinycl_latent_save(&h, blob, sizeof blob, &n) == TINYCL_OK && n == tinycl_latent_state_size(&h));
    CHECK(tinycl_latent_load(&h2, blob, n) == TINYCL_OK);
    CHECK(h2.n_seen == h.n_seen && h2.mem_size == h.mem_size && h2.n_pending == h.n_pending &&
          memcmp(h2.fc_w, h.fc_w, sizeof h.fc_w) == 0 && memcmp(h2.mem_x, h.mem_x, sizeof h.mem_x) == 0);
    const uint32_t seen = h2.n_seen;
    blob[100] ^= 1u;
    CHECK(tinycl_latent_load(&h2, blob, n) == TINYCL_ESTATE);
    blob[100] ^= 1u;
    CHECK(tinycl_latent_load(&h2, blob, n - 1) == TINYCL_ESTATE && h2.n_seen == seen);
    /* the same blob as a stream through small scratch buffers (odd sizes: chunks split every field) */
    uint8_t scratch[37];
    store_t st = {0, sizeof streamed};
    CHECK(tinycl_latent_save_to(&h, sink, &st, scratch, sizeof scratch) == TINYCL_OK && st.len == n &&
          memcmp(streamed, blob, n) == 0);
    store_t tiny = {0, 1000};
    CHECK(tinycl_latent_save_to(&h, sink, &tiny, scratch, sizeof scratch) == TINYCL_ESPACE);
    memset(&h2, 0, sizeof h2);
    CHECK(tinycl_latent_load_from(&h2, source, &st, st.len, scratch, 29) == TINYCL_OK);
    size_t n2 = 0;
    CHECK(tinycl_latent_save(&h2, blob, sizeof blob, &n2) == TINYCL_OK && n2 == n && memcmp(blob, streamed, n) == 0);
    streamed[n / 2] ^= 4u; /* a corrupt stream: refused, the head unchanged */
    CHECK(tinycl_latent_load_from(&h2, source, &st, st.len, scratch, 29) == TINYCL_ESTATE && h2.n_seen == seen);
    streamed[n / 2] ^= 4u;
    CHECK(tinycl_latent_load_from(&h2, source, &st, st.len - 3, scratch, 29) == TINYCL_ESTATE && h2.n_seen == seen);
    float s[TINYCL_MAX_CLASSES];
    CHECK(tinycl_latent_scores(&h, x, s) == TINYCL_OK && isfinite(s[TINYCL_MAX_CLASSES - 1]));
    /* a learning rate far too high: a batch is refused (TINYCL_EDIVERGED), dropped, and no weight is NaN/inf */
    tinycl_latent_default_params(&p);
    p.memory_size = 40;
    p.batch_size = 8;
    p.replay = 12;
    p.minibatch = 4;
    p.quantization = TINYCL_LATENT_QUANT_CHANNEL;
    p.lr = 1e4;
    p.upper_lr_scale = 10.0;
    CHECK(tinycl_latent_init(&h, &p) == TINYCL_OK);
    int diverged = 0;
    for (int i = 0; i < 200 && !diverged; i++) {
        sample(x, i % 3);
        for (uint32_t f = 0; f < F; f++) x[f] *= 30.0f;
        const uint32_t seen = h.n_seen, batches = h.n_batches, mem = h.mem_size;
        const int rc = tinycl_latent_learn(&h, x, i % 3);
        CHECK(rc == TINYCL_OK || rc == TINYCL_EDIVERGED);
        if (rc == TINYCL_EDIVERGED) {
            diverged = 1;
            CHECK(h.n_seen == seen && h.n_batches == batches && h.mem_size == mem && h.n_pending == 0);
        }
    }
    CHECK(diverged);
    int finite = 1;
    for (uint32_t i = 0; i < TINYCL_LATENT_FC_WEIGHTS; i++) finite &= isfinite(h.fc_w[i]) != 0;
    for (uint32_t c = 0; c < h.n_classes; c++)
        for (uint32_t e = 0; e < TINYCL_LATENT_EMBED; e++) finite &= isfinite(h.cls_w[c][e]) != 0;
    CHECK(finite);
    CHECK(tinycl_latent_save(&h, blob, sizeof blob, &n) == TINYCL_OK && tinycl_latent_load(&h2, blob, n) == TINYCL_OK);
    if (failures) {
        fprintf(stderr, "%d latent check(s) failed\n", failures);
        return 1;
    }
    printf("latent: all checks passed\n");
    return 0;
}
