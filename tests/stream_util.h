/* stream_util.h - shared by the stream tests: a deterministic test frame in every encoding, made with aptomo's own
 * codecs (the golden and python tests cover independent encoders). */
#ifndef APT_STREAM_UTIL_H
#define APT_STREAM_UTIL_H

#include <stdio.h>
#include <string.h>

#include "apt_test.h"
#include "aptomo/codec.h"
#include "aptomo/stream.h"

enum { W = 40, H = 24 };

static inline void pattern(uint8_t *raw, uint32_t elem, int seed)
{
    for (size_t i = 0; i < (size_t)W * H; i++) {
        uint32_t v = (uint32_t)(i * 2654435761u + (uint32_t)seed * 40503u) >> (elem == 1 ? 13 : elem == 2 ? 9 : 0);
        memcpy(raw + i * elem, &v, elem); /* little-endian host */
    }
}

/* Encoded pixels of one test frame in b. */
static inline apt_pixels make_pixels(apt_bytes *b, apt_encoding enc, uint32_t elem, int seed, const char *channel)
{
    uint8_t raw[W * H * 4];
    size_t n = (size_t)W * H, bytes = n * elem, got = 0;
    apt_error err = {0};
    pattern(raw, elem, seed);
    size_t cap = enc == APT_ENC_BSLZ4 ? apt_bslz4_bound(n, elem) : enc == APT_ENC_H5LZ4 ? apt_h5lz4_bound(bytes, 0)
                 : enc == APT_ENC_LZ4 ? apt_lz4_bound(bytes) : bytes;
    CHECK_OK(apt_bytes_reserve(b, cap, &err), &err);
    int rc = APT_OK;
    if (enc == APT_ENC_BSLZ4)
        rc = apt_bslz4_encode(raw, n, elem, b->data, cap, &got, &err);
    else if (enc == APT_ENC_H5LZ4)
        rc = apt_h5lz4_encode(raw, bytes, 0, b->data, cap, &got, &err);
    else if (enc == APT_ENC_LZ4)
        rc = apt_lz4_encode_raw(raw, bytes, b->data, cap, &got, &err);
    else
        memcpy(b->data, raw, got = bytes);
    CHECK_OK(rc, &err);
    b->len = got;
    apt_pixels px = {"", W, H, elem, enc, b->data, b->len};
    snprintf(px.channel, sizeof px.channel, "%s", channel);
    return px;
}

#endif
