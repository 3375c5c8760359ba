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

typedef struct { uint8_t *p; } wr_t;
typedef struct { const uint8_t *p; } rd_t;

static inline void put_u8(wr_t *w, uint8_t v) { *w->p++ = v; }
static inline void put_u16(wr_t *w, uint16_t v) { put_u8(w, (uint8_t)v); put_u8(w, (uint8_t)(v >> 8)); }
static inline void put_u32(wr_t *w, uint32_t v) { put_u16(w, (uint16_t)v); put_u16(w, (uint16_t)(v >> 16)); }
static inline void put_u64(wr_t *w, uint64_t v) { put_u32(w, (uint32_t)v); put_u32(w, (uint32_t)(v >> 32)); }
static inline void put_f32(wr_t *w, float f) { uint32_t v; memcpy(&v, &f, 4); put_u32(w, v); }
static inline void put_f64(wr_t *w, double d) { uint64_t v; memcpy(&v, &d, 8); put_u64(w, v); }
static inline void put_bytes(wr_t *w, const void *src, size_t n) { memcpy(w->p, src, n); w->p += n; }

static inline uint8_t get_u8(rd_t *r) { return *r->p++; }
static inline uint16_t get_u16(rd_t *r) { uint16_t lo = get_u8(r); return (uint16_t)(lo | (uint16_t)get_u8(r) << 8); }
static inline uint32_t get_u32(rd_t *r) { uint32_t lo = get_u16(r); return lo | (uint32_t)get_u16(r) << 16; }
static inline uint64_t get_u64(rd_t *r) { uint64_t lo = get_u32(r); return lo | (uint64_t)get_u32(r) << 32; }
static inline float get_f32(rd_t *r) { uint32_t v = get_u32(r); float f; memcpy(&f, &v, 4); return f; }
static inline double get_f64(rd_t *r) { uint64_t v = get_u64(r); double d; memcpy(&d, &v, 8); return d; }
static inline void get_bytes(rd_t *r, void *dst, size_t n) { memcpy(dst, r->p, n); r->p += n; }

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
    if (memcmp(r->p, "TCLS", 4) != 0) return TINYCL_ESTATE;
    r->p += 4;
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

/* The CRC-32 of everything written since start, as the blob's last 4 bytes. */
static inline void put_crc(wr_t *w, const uint8_t *start) {
    put_u32(w, tinycl_crc32(start, (size_t)(w->p - start)));
}

/* 1 when the last 4 bytes of the len-byte blob (len >= 4) are the CRC-32 of the bytes before them. */
static inline int crc_ok(const uint8_t *blob, size_t len) {
    rd_t t = {blob + len - 4};
    return get_u32(&t) == tinycl_crc32(blob, len - 4);
}
#endif
