/* frame.c - wire frame -> cropped float pattern. For bslz4 only the blocks under the crop window are decompressed
 * and only its bit-groups unshuffled (a 128x128 crop of a 514x1030 frame touches about a quarter of the blocks);
 * the other encodings are decoded whole into scratch. Invalid pixels are -1 so the loss can skip them. */
#include "aptomo/frame.h"

#include <math.h>
#include <string.h>

#include "aptomo/codec.h"

int apt_crop_place(uint32_t w, uint32_t h, double cy, double cx, uint32_t n, apt_crop *out, apt_error *err)
{
    if (n == 0 || n > w || n > h)
        return apt_err(err, APT_ERANGE, "crop %u does not fit a %ux%u frame", n, w, h);
    if (!isfinite(cy))
        cy = (double)(h / 2);
    if (!isfinite(cx))
        cx = (double)(w / 2);
    double r0 = floor(cy + 0.5) - (double)(n / 2), c0 = floor(cx + 0.5) - (double)(n / 2);
    if (r0 < 0 || c0 < 0 || r0 + n > h || c0 + n > w)
        return apt_err(err, APT_ERANGE,
                       "crop %u around beam centre (y=%.1f, x=%.1f) leaves the %ux%u frame", n, cy, cx, w, h);
    out->r0 = (uint32_t)r0;
    out->c0 = (uint32_t)c0;
    out->n = n;
    return APT_OK;
}

static size_t elem_count(const apt_pixels *px) { return (size_t)px->width * px->height; }

int apt_frame_decode(const apt_pixels *px, void *dst, size_t cap, apt_error *err)
{
    size_t raw = elem_count(px) * px->elem_size;
    if (cap < raw)
        return apt_err(err, APT_ERANGE, "frame of %zu bytes exceeds buffer of %zu", raw, cap);
    switch (px->enc) {
    case APT_ENC_NONE:
        if (px->blob_len != raw)
            return apt_err(err, APT_EPROTO, "raw frame has %zu bytes, expected %zu", px->blob_len, raw);
        memcpy(dst, px->blob, raw);
        return APT_OK;
    case APT_ENC_BSLZ4:
        return apt_bslz4_decode(px->blob, px->blob_len, px->elem_size, dst, raw, err);
    case APT_ENC_LZ4:
        return apt_lz4_decode_raw(px->blob, px->blob_len, dst, raw, err);
    case APT_ENC_H5LZ4: {
        size_t got = 0;
        int rc = apt_h5lz4_decode(px->blob, px->blob_len, dst, raw, &got, err);
        if (rc == APT_OK && got != raw)
            return apt_err(err, APT_EPROTO, "lz4 frame decodes to %zu bytes, expected %zu", got, raw);
        return rc;
    }
    }
    return apt_err(err, APT_ENOTSUP, "unknown encoding %d", (int)px->enc);
}

/* Convert the crop to float: rows of `src` are `stride` elements apart, starting at frame element `base`. */
#define CROP_LOOP(T, maxv)                                                                                    \
    do {                                                                                                      \
        const T *s = (const T *)src;                                                                          \
        for (uint32_t r = 0; r < c->n; r++) {                                                                 \
            size_t at = (size_t)(c->r0 + r) * px->width + c->c0;                                              \
            const T *row = s + (stride ? (size_t)r * stride : at - base);                                     \
            const uint32_t *mrow = mask ? mask + at : NULL;                                                   \
            float *d = dst + (size_t)r * c->n;                                                                \
            for (uint32_t k = 0; k < c->n; k++)                                                               \
                d[k] = (row[k] == (T)(maxv) || (mrow && mrow[k])) ? -1.0f : (float)row[k];                    \
        }                                                                                                     \
    } while (0)

int apt_frame_decode_crop(const apt_pixels *px, const apt_crop *c, const uint32_t *mask, float *dst,
                          apt_bytes *scratch, apt_error *err)
{
    if (px->elem_size != 1 && px->elem_size != 2 && px->elem_size != 4)
        return apt_err(err, APT_ENOTSUP, "pixel size %u bytes", px->elem_size);
    if (c->n == 0 || c->r0 + c->n > px->height || c->c0 + c->n > px->width)
        return apt_err(err, APT_ERANGE, "crop (%u,%u)+%u outside %ux%u frame", c->r0, c->c0, c->n, px->width,
                       px->height);
    size_t base = 0, stride = 0; /* stride 0: src is the frame itself, indexed from element base */
    const uint8_t *src;
    int rc;
    if (px->enc == APT_ENC_NONE) {
        if (px->blob_len != elem_count(px) * px->elem_size)
            return apt_err(err, APT_EPROTO, "raw frame has %zu bytes, expected %zu", px->blob_len,
                           elem_count(px) * px->elem_size);
        src = px->blob;
    } else if (px->enc == APT_ENC_BSLZ4) {
        /* only the blocks under the window are decompressed, only its 8-element groups unshuffled */
        if ((rc = apt_bytes_reserve(scratch, (size_t)c->n * c->n * px->elem_size, err)))
            return rc;
        if ((rc = apt_bslz4_decode_crop(px->blob, px->blob_len, px->elem_size, px->width, c->c0, c->r0, c->n, c->n,
                                        scratch->data, err)))
            return rc;
        src = scratch->data;
        stride = c->n;
    } else {
        size_t raw = elem_count(px) * px->elem_size;
        if ((rc = apt_bytes_reserve(scratch, raw, err)))
            return rc;
        if ((rc = apt_frame_decode(px, scratch->data, raw, err)))
            return rc;
        src = scratch->data;
    }
    if (px->elem_size == 1)
        CROP_LOOP(uint8_t, 0xFFu);
    else if (px->elem_size == 2)
        CROP_LOOP(uint16_t, 0xFFFFu);
    else
        CROP_LOOP(uint32_t, 0xFFFFFFFFu);
    return APT_OK;
}
