/* Undo of a person's answers on the board (tinycl.h, "Undo"): core/undo.py's ReplayUndo in C, for TinyNDC.
 *
 * CWR* and the clusterer cannot take one sample back (consolidation, capped running means, and every later frame's
 * pseudo-label depends on what came before), so the only exact way back is to replay: the system as it was before
 * the oldest sample kept, then every sample kept learned again — frames pseudo-labelled anew, answers with their
 * labels, the changed answer with its new one or not at all. Samples are kept as the extractor's int8 codes (64 B
 * each, not 256): every input is checked to lie on the features' grid. */
#include <string.h>

#include "tinycl.h"

#define F TINYCL_N_FEATURES
#define FRAME (-1)     /* a frame: pseudo-labelled when replayed */
#define WITHDRAWN (-2) /* an answer taken back: skipped when replayed */

/* x's int8 codes, if x is on the features' grid (what tinycl_dequantize makes), else TINYCL_EINVAL. */
static int codes_of(const float *x, int8_t *q) {
    for (int f = 0; f < F; f++) {
        const float c = x[f] / TINYCL_FEAT_SCALE + (float)TINYCL_FEAT_ZP;
        if (!(c > -128.5f && c < 127.5f)) return TINYCL_EINVAL; /* NaN too */
        q[f] = (int8_t)(c < 0 ? c - 0.5f : c + 0.5f);
        if ((float)(q[f] - TINYCL_FEAT_ZP) * TINYCL_FEAT_SCALE != x[f]) return TINYCL_EINVAL;
    }
    return TINYCL_OK;
}

/* Learn kept sample k into s, as it was learned (or as relabelled: label). */
static int apply(tinycl_ndc_t *s, const int8_t *q, int32_t label) {
    float x[F];
    tinycl_dequantize(q, x);
    if (label >= 0) return tinycl_ndc_learn_label(s, x, label);
    tinycl_step_t st;
    const int rc = tinycl_ndc_step(s, x, -1, &st);
    return rc == TINYCL_EFULL ? TINYCL_OK : rc; /* a frame no row was free for: predicted, not learned, as before */
}

static uint32_t slot(const tinycl_undo_t *u, uint32_t k) { return (u->first + k) % TINYCL_UNDO_MAX; }

/* Keep one more sample; a full log rolls its oldest into the base (learned there for good). */
static void keep(tinycl_undo_t *u, const int8_t *q, int32_t label, uint32_t tag) {
    if (u->n == TINYCL_UNDO_MAX) {
        const uint32_t k = u->first;
        if (u->label[k] != WITHDRAWN) (void)apply(&u->base, u->q[k], u->label[k]); /* learned once: learns again */
        u->first = (u->first + 1u) % TINYCL_UNDO_MAX;
        u->n--;
    }
    const uint32_t k = slot(u, u->n++);
    memcpy(u->q[k], q, F);
    u->label[k] = label;
    u->tag[k] = tag;
}

int tinycl_undo_init(tinycl_undo_t *u, const tinycl_ndc_t *s) {
    if (!u || !s) return TINYCL_EINVAL;
    memset(u, 0, sizeof *u);
    u->base = *s;
    return TINYCL_OK;
}

int tinycl_undo_step(tinycl_undo_t *u, tinycl_ndc_t *s, const float *x, tinycl_step_t *out) {
    int8_t q[F];
    if (!u || !s || !x || !out || codes_of(x, q)) return TINYCL_EINVAL;
    const int rc = tinycl_ndc_step(s, x, -1, out);
    if (rc == TINYCL_OK || rc == TINYCL_EFULL) keep(u, q, FRAME, 0);
    return rc;
}

int tinycl_undo_learn_label(tinycl_undo_t *u, tinycl_ndc_t *s, const float *x, int32_t label, uint32_t tag) {
    int8_t q[F];
    if (!u || !s || !x || label < 0 || tag == 0 || codes_of(x, q)) return TINYCL_EINVAL;
    const int rc = tinycl_ndc_learn_label(s, x, label);
    if (rc == TINYCL_OK) keep(u, q, label, tag);
    return rc;
}

int tinycl_undo_relabel(tinycl_undo_t *u, tinycl_ndc_t *s, uint32_t tag, int32_t label) {
    if (!u || !s || tag == 0 || label < -1) return TINYCL_EINVAL;
    uint32_t found = 0;
    for (uint32_t k = 0; k < u->n; k++) found += u->tag[slot(u, k)] == tag && u->label[slot(u, k)] != WITHDRAWN;
    if (!found) return TINYCL_EGONE;
    u->work = u->base;
    for (uint32_t k = 0; k < u->n; k++) {
        const uint32_t i = slot(u, k);
        const int32_t y = u->tag[i] == tag && u->label[i] != WITHDRAWN ? (label < 0 ? WITHDRAWN : label) : u->label[i];
        if (y == WITHDRAWN) continue;
        const int rc = apply(&u->work, u->q[i], y);
        if (rc) return rc; /* e.g. TINYCL_EFULL: the new class has no row; nothing changed */
    }
    for (uint32_t k = 0; k < u->n; k++) {
        const uint32_t i = slot(u, k);
        if (u->tag[i] == tag && u->label[i] != WITHDRAWN) u->label[i] = label < 0 ? WITHDRAWN : label;
    }
    *s = u->work;
    return TINYCL_OK;
}

size_t tinycl_sizeof_undo(void) { return sizeof(tinycl_undo_t); }
