/* The bytes of the "TCLS" state blobs (formats in tinycl.h and tinycl_latent.h; Python side:
 * tinycl_nodes/export/c_state.py), the one writer and reader of tinycl_state.c and tinycl_latent.c.
 * Written and parsed byte by byte, little-endian, so a blob does not depend on the target.
 * Internal to the core (not part of the public API). */
#ifndef TINYCL_BYTES_H
#define TINYCL_BYTES_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tinycl.h"

/* "TCLS", u8 kind, u8 version, u16 feature count, u16 class count, u16 0 */
#define TINYCL_HEADER_BYTES 12u

/* A memory blob: p only (the other fields 0). A stream (large blobs, e.g. the latent head's ~0.6 MB to a board's
 * storage): a writer's bytes go through buf..end and out by sink, the CRC kept running; a reader refills buf
 * (cap bytes) from source at the stream offset next. */
typedef struct {
    uint8_t *p, *buf, *end;
    tinycl_sink_fn sink;
    void *ctx;
    uint32_t crc;
    int err;
} wr_t;
typedef struct {
    const uint8_t *p, *end;
    uint8_t *buf;
    size_t cap, next;
    tinycl_source_fn source;
    void *ctx;
    int err;
} rd_t;

#define WR_MEM(ptr) {(ptr), NULL, NULL, NULL, NULL, 0u, 0}
#define RD_MEM(ptr) {(ptr), NULL, NULL, 0u, 0u, NULL, NULL, 0}

static inline void wr_flush(wr_t *w) {
    const size_t n = (size_t)(w->p - w->buf);
    w->crc = tinycl_crc32_update(w->crc, w->buf, n);
    if (n && w->sink(w->ctx, w->buf, n) != 0) w->err = 1;
    w->p = w->buf;
}

static inline void rd_fill(rd_t *r) {
    const size_t got = r->source(r->ctx, r->next, r->buf, r->cap);
    if (got < r->cap) memset(r->buf + got, 0, r->cap - got); /* past the end: zeros (lengths are checked first) */
    r->next += r->cap;
    r->p = r->buf;
    r->end = r->buf + r->cap;
}

static inline void put_u8(wr_t *w, uint8_t v) {
    if (w->sink && w->p == w->end) wr_flush(w);
    *w->p++ = v;
}
static inline void put_u16(wr_t *w, uint16_t v) { put_u8(w, (uint8_t)v); put_u8(w, (uint8_t)(v >> 8)); }
static inline void put_u32(wr_t *w, uint32_t v) { put_u16(w, (uint16_t)v); put_u16(w, (uint16_t)(v >> 16)); }
static inline void put_u64(wr_t *w, uint64_t v) { put_u32(w, (uint32_t)v); put_u32(w, (uint32_t)(v >> 32)); }
static inline void put_f32(wr_t *w, float f) { uint32_t v; memcpy(&v, &f, 4); put_u32(w, v); }
static inline void put_f64(wr_t *w, double d) { uint64_t v; memcpy(&v, &d, 8); put_u64(w, v); }
static inline void put_bytes(wr_t *w, const void *src, size_t n) {
    const uint8_t *s = (const uint8_t *)src;
    while (n) {
        if (w->sink && w->p == w->end) wr_flush(w);
        const size_t k = w->sink && (size_t)(w->end - w->p) < n ? (size_t)(w->end - w->p) : n;
        memcpy(w->p, s, k);
        w->p += k, s += k, n -= k;
    }
}

static inline uint8_t get_u8(rd_t *r) {
    if (r->source && r->p == r->end) rd_fill(r);
    return *r->p++;
}
static inline uint16_t get_u16(rd_t *r) { uint16_t lo = get_u8(r); return (uint16_t)(lo | (uint16_t)get_u8(r) << 8); }
static inline uint32_t get_u32(rd_t *r) { uint32_t lo = get_u16(r); return lo | (uint32_t)get_u16(r) << 16; }
static inline uint64_t get_u64(rd_t *r) { uint64_t lo = get_u32(r); return lo | (uint64_t)get_u32(r) << 32; }
static inline float get_f32(rd_t *r) { uint32_t v = get_u32(r); float f; memcpy(&f, &v, 4); return f; }
static inline double get_f64(rd_t *r) { uint64_t v = get_u64(r); double d; memcpy(&d, &v, 8); return d; }
static inline void get_bytes(rd_t *r, void *dst, size_t n) {
    uint8_t *d = (uint8_t *)dst;
    while (n) {
        if (r->source && r->p == r->end) rd_fill(r);
        const size_t k = r->source && (size_t)(r->end - r->p) < n ? (size_t)(r->end - r->p) : n;
        if (d) memcpy(d, r->p, k), d += k; /* dst NULL: skip */
        r->p += k, n -= k;
    }
}

static inline void put_header_v(wr_t *w, uint8_t kind, uint8_t version, uint16_t n_features, uint32_t n_classes) {
    put_bytes(w, "TCLS", 4);
    put_u8(w, kind);
    put_u8(w, version);
    put_u16(w, n_features);
    put_u16(w, (uint16_t)n_classes);
    put_u16(w, 0);
}

static inline void put_header(wr_t *w, uint8_t kind, uint16_t n_features, uint32_t n_classes) {
    put_header_v(w, kind, TINYCL_STATE_VERSION, n_features, n_classes);
}

/* Reads the header put_header_v wrote (the caller has checked the blob holds TINYCL_HEADER_BYTES):
 * the class count, or TINYCL_ESTATE for another magic, kind or feature count, a version outside
 * 1..max_version, a nonzero reserved field or more than TINYCL_MAX_CLASSES classes. The version goes to *version. */
static inline int get_header_v(rd_t *r, uint8_t kind, uint8_t max_version, uint16_t n_features, uint8_t *version) {
    uint8_t magic[4];
    get_bytes(r, magic, 4);
    if (memcmp(magic, "TCLS", 4) != 0) return TINYCL_ESTATE;
    if (get_u8(r) != kind) return TINYCL_ESTATE;
    *version = get_u8(r);
    if (*version < 1 || *version > max_version) return TINYCL_ESTATE;
    if (get_u16(r) != n_features) return TINYCL_ESTATE;
    const uint32_t c = get_u16(r);
    if (get_u16(r) != 0 || c > TINYCL_MAX_CLASSES) return TINYCL_ESTATE;
    return (int)c;
}

/* get_header_v for the kinds that have only TINYCL_STATE_VERSION */
static inline int get_header(rd_t *r, uint8_t kind, uint16_t n_features) {
    uint8_t version;
    return get_header_v(r, kind, TINYCL_STATE_VERSION, n_features, &version);
}

/* The CRC-32 of everything written since start (a stream: since its first byte), as the blob's last 4 bytes. */
static inline void put_crc(wr_t *w, const uint8_t *start) {
    if (!w->sink) {
        put_u32(w, tinycl_crc32(start, (size_t)(w->p - start)));
        return;
    }
    wr_flush(w);
    put_u32(w, w->crc);
    wr_flush(w);
}

/* 1 when the last 4 bytes of the len-byte blob (len >= 4) are the CRC-32 of the bytes before them. */
static inline int crc_ok(const uint8_t *blob, size_t len) {
    rd_t t = RD_MEM(blob + len - 4);
    return get_u32(&t) == tinycl_crc32(blob, len - 4);
}
#endif
