/* stream_common.c - what the v1 and v2 stream codecs share: message init/clear, protocol sniffing, encoding names
 * and the pixel-blob checks. The checks read headers only (bslz4/h5lz4 announce their raw size in the first bytes),
 * so a malformed frame is refused at ingest without paying for decompression. */
#include <jansson.h>
#include <lz4.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/codec.h"
#include "stream_priv.h"

void apt_stream_msg_init(apt_stream_msg *m)
{
    memset(m, 0, sizeof *m);
    apt_detector_config *c = &m->config;
    c->beam_center_x = c->beam_center_y = NAN;
    c->energy_eV = c->distance_m = c->pixel_x_m = c->pixel_y_m = c->count_time_s = c->frame_time_s = NAN;
}

void apt_stream_msg_clear(apt_stream_msg *m)
{
    free(m->owned_json);
    apt_stream_msg_init(m);
}

int apt_stream_sniff(const void *data, size_t len)
{
    const uint8_t *p = data;
    if (!p || len == 0)
        return 0;
    /* CBOR: self-describe tag 55799 (d9 d9 f7), any other tag (major type 6) or a map (major type 5). '{' is a CBOR
       text-string head, so JSON never looks like either. */
    if ((p[0] >= 0xa0 && p[0] <= 0xbf) || (p[0] >= 0xc0 && p[0] <= 0xdb))
        return 2;
    size_t i = 0;
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    if (i == len || p[i] != '{' || len > APT_STREAM_MAX_JSON)
        return 0;
    json_t *j = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, NULL);
    int v = j && json_is_string(json_object_get(j, "htype")) ? 1 : 0;
    json_decref(j);
    return v;
}

const char *apt_encoding_name_v1(apt_encoding enc, uint32_t elem_size)
{
    switch (enc) {
    case APT_ENC_NONE: return "<";
    case APT_ENC_LZ4: return "lz4<";
    case APT_ENC_BSLZ4:
        return elem_size == 1 ? "bs8-lz4<" : elem_size == 2 ? "bs16-lz4<" : elem_size == 4 ? "bs32-lz4<" : NULL;
    default: return NULL; /* h5lz4 framing has no v1 name */
    }
}

const char *apt_encoding_name(apt_encoding enc)
{
    switch (enc) {
    case APT_ENC_NONE: return "none";
    case APT_ENC_BSLZ4: return "bslz4";
    case APT_ENC_LZ4: return "lz4";
    case APT_ENC_H5LZ4: return "h5lz4";
    default: return "unknown";
    }
}

uint32_t apt_stream_elem_from_dtype(const char *s, size_t n)
{
    if (n == 5 && !memcmp(s, "uint8", 5))
        return 1;
    if (n == 6 && !memcmp(s, "uint16", 6))
        return 2;
    if (n == 6 && !memcmp(s, "uint32", 6))
        return 4;
    return 0;
}

const char *apt_stream_dtype_name(uint32_t elem_size)
{
    return elem_size == 1 ? "uint8" : elem_size == 2 ? "uint16" : elem_size == 4 ? "uint32" : NULL;
}

int apt_stream_check_pixels(const apt_pixels *p, const char *what, apt_error *err)
{
    if (p->width < 1 || p->width > APT_STREAM_MAX_DIM || p->height < 1 || p->height > APT_STREAM_MAX_DIM)
        return apt_err(err, APT_ERANGE, "%s: shape %ux%u (width x height) outside [1, %u]", what, p->width,
                       p->height, APT_STREAM_MAX_DIM);
    if (p->elem_size != 1 && p->elem_size != 2 && p->elem_size != 4)
        return apt_err(err, APT_EPROTO, "%s: element size %u is not 1, 2 or 4", what, p->elem_size);
    if (!p->blob && p->blob_len)
        return apt_err(err, APT_EINVAL, "%s: no blob", what);
    uint64_t raw = (uint64_t)p->width * p->height * p->elem_size;
    switch (p->enc) {
    case APT_ENC_NONE:
        if (p->blob_len != raw)
            return apt_err(err, APT_EPROTO, "%s: raw blob has %zu bytes, %ux%u x %u bytes needs %llu", what,
                           p->blob_len, p->width, p->height, p->elem_size, (unsigned long long)raw);
        return APT_OK;
    case APT_ENC_BSLZ4: {
        uint64_t got = 0;
        uint32_t block = 0;
        int rc = apt_bslz4_header(p->blob, p->blob_len, p->elem_size, &got, &block, err);
        if (rc)
            return apt_err_prefix(err, rc, "%s: bslz4 header: ", what);
        if (got != raw)
            return apt_err(err, APT_EPROTO, "%s: bslz4 header announces %llu bytes, %ux%u x %u bytes is %llu", what,
                           (unsigned long long)got, p->width, p->height, p->elem_size, (unsigned long long)raw);
        return APT_OK;
    }
    case APT_ENC_H5LZ4: {
        uint64_t got = 0;
        uint32_t block = 0;
        int rc = apt_h5lz4_header(p->blob, p->blob_len, &got, &block, err);
        if (rc)
            return apt_err_prefix(err, rc, "%s: lz4 (HDF5 framing) header: ", what);
        if (got != raw)
            return apt_err(err, APT_EPROTO, "%s: lz4 header announces %llu bytes, %ux%u x %u bytes is %llu", what,
                           (unsigned long long)got, p->width, p->height, p->elem_size, (unsigned long long)raw);
        return APT_OK;
    }
    case APT_ENC_LZ4:
        if (raw > LZ4_MAX_INPUT_SIZE)
            return apt_err(err, APT_ERANGE, "%s: %llu bytes do not fit one LZ4 block", what, (unsigned long long)raw);
        if (p->blob_len == 0 || p->blob_len > (size_t)LZ4_compressBound((int)raw))
            return apt_err(err, APT_EPROTO, "%s: LZ4 block of %zu bytes cannot hold %llu bytes (bound %d)", what,
                           p->blob_len, (unsigned long long)raw, LZ4_compressBound((int)raw));
        return APT_OK;
    default:
        return apt_err(err, APT_ENOTSUP, "%s: unknown encoding %d", what, (int)p->enc);
    }
}
