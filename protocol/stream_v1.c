/* stream_v1.c - Eiger stream v1 (SIMPLON "legacy" format): JSON multipart messages told apart by "htype".
 * dheader-1.0 carries 1/2/8 parts by header_detail (+ optional appendix), dimage-1.0 four (+ appendix), dseries_end-1.0
 * one. JSON parts are parsed with jansson (duplicate keys refused, size bounded); blobs are borrowed, never copied. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stream_priv.h"

/* ---- decoding helpers ---- */

static json_t *load_part(const apt_buf *part, const char *what, apt_error *err)
{
    if (part->len > APT_STREAM_MAX_JSON) {
        apt_err(err, APT_ERANGE, "%s: JSON part of %zu bytes exceeds %u", what, part->len, APT_STREAM_MAX_JSON);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb((const char *)part->ptr, part->len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        apt_err(err, APT_EPROTO, "%s: invalid JSON at column %d: %s", what, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        apt_err(err, APT_EPROTO, "%s: JSON is not an object", what);
        return NULL;
    }
    return j;
}

/* Non-negative integer field; required fields must be there, optional ones leave *out alone. */
static int get_u64(json_t *o, const char *key, int required, uint64_t *out, const char *what, apt_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return required ? apt_err(err, APT_EPROTO, "%s: missing \"%s\"", what, key) : APT_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return apt_err(err, APT_EPROTO, "%s: \"%s\" is not a non-negative integer", what, key);
    *out = (uint64_t)json_integer_value(v);
    return APT_OK;
}

static int get_num(json_t *o, const char *key, double *out, const char *what, apt_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return APT_OK;
    if (!json_is_number(v))
        return apt_err(err, APT_EPROTO, "%s: \"%s\" is not a number", what, key);
    *out = json_number_value(v);
    return APT_OK;
}

static int get_str(json_t *o, const char *key, const char **out, const char *what, apt_error *err)
{
    *out = NULL; /* set on every path: callers test the return code, compilers cannot see apt_err's is non-zero */
    json_t *v = json_object_get(o, key);
    if (!v)
        return apt_err(err, APT_EPROTO, "%s: missing \"%s\"", what, key);
    if (!json_is_string(v))
        return apt_err(err, APT_EPROTO, "%s: \"%s\" is not a string", what, key);
    *out = json_string_value(v);
    return APT_OK;
}

static int check_htype(json_t *o, const char *want, const char *what, apt_error *err)
{
    const char *h;
    int rc = get_str(o, "htype", &h, what, err);
    if (rc)
        return rc;
    if (strcmp(h, want))
        return apt_err(err, APT_EPROTO, "%s: htype \"%.64s\", expected \"%s\"", what, h, want);
    return APT_OK;
}

/* "shape": [x, y] = [width, height], each in [1, 65536]. */
static int get_shape(json_t *o, uint32_t *w, uint32_t *h, const char *what, apt_error *err)
{
    json_t *s = json_object_get(o, "shape");
    if (!s)
        return apt_err(err, APT_EPROTO, "%s: missing \"shape\"", what);
    if (!json_is_array(s) || json_array_size(s) != 2 || !json_is_integer(json_array_get(s, 0)) ||
        !json_is_integer(json_array_get(s, 1)))
        return apt_err(err, APT_EPROTO, "%s: \"shape\" is not [x, y] integers", what);
    json_int_t x = json_integer_value(json_array_get(s, 0)), y = json_integer_value(json_array_get(s, 1));
    if (x < 1 || x > APT_STREAM_MAX_DIM || y < 1 || y > APT_STREAM_MAX_DIM)
        return apt_err(err, APT_ERANGE, "%s: \"shape\" [%lld, %lld] outside [1, %u]", what, (long long)x,
                       (long long)y, APT_STREAM_MAX_DIM);
    *w = (uint32_t)x;
    *h = (uint32_t)y;
    return APT_OK;
}

static int parse_config(json_t *o, apt_detector_config *c, apt_error *err)
{
    const char *w = "dheader config (part 2)";
    uint64_t x = 0, y = 0, nimages = 0, ntrigger = 1, depth = 0;
    int rc;
    if ((rc = get_num(o, "beam_center_x", &c->beam_center_x, w, err)) ||
        (rc = get_num(o, "beam_center_y", &c->beam_center_y, w, err)) ||
        (rc = get_u64(o, "x_pixels_in_detector", 0, &x, w, err)) ||
        (rc = get_u64(o, "y_pixels_in_detector", 0, &y, w, err)) ||
        (rc = get_u64(o, "nimages", 0, &nimages, w, err)) || (rc = get_u64(o, "ntrigger", 0, &ntrigger, w, err)) ||
        (rc = get_u64(o, "bit_depth_image", 0, &depth, w, err)) ||
        (rc = get_num(o, "photon_energy", &c->energy_eV, w, err)) ||
        (rc = get_num(o, "detector_distance", &c->distance_m, w, err)) ||
        (rc = get_num(o, "x_pixel_size", &c->pixel_x_m, w, err)) ||
        (rc = get_num(o, "y_pixel_size", &c->pixel_y_m, w, err)) ||
        (rc = get_num(o, "count_time", &c->count_time_s, w, err)) ||
        (rc = get_num(o, "frame_time", &c->frame_time_s, w, err)) ||
        (rc = get_u64(o, "countrate_correction_count_cutoff", 0, &c->saturation, w, err)))
        return rc;
    if (json_object_get(o, "x_pixels_in_detector") && (x < 1 || x > APT_STREAM_MAX_DIM))
        return apt_err(err, APT_ERANGE, "%s: \"x_pixels_in_detector\" %llu outside [1, %u]", w,
                       (unsigned long long)x, APT_STREAM_MAX_DIM);
    if (json_object_get(o, "y_pixels_in_detector") && (y < 1 || y > APT_STREAM_MAX_DIM))
        return apt_err(err, APT_ERANGE, "%s: \"y_pixels_in_detector\" %llu outside [1, %u]", w,
                       (unsigned long long)y, APT_STREAM_MAX_DIM);
    if (ntrigger && nimages > UINT64_MAX / ntrigger)
        return apt_err(err, APT_ERANGE, "%s: nimages x ntrigger overflows", w);
    if (json_object_get(o, "bit_depth_image") && depth != 8 && depth != 16 && depth != 32)
        return apt_err(err, APT_ENOTSUP, "%s: \"bit_depth_image\" %llu is not 8, 16 or 32", w,
                       (unsigned long long)depth);
    c->present = 1;
    c->width = (uint32_t)x;
    c->height = (uint32_t)y;
    c->n_images = nimages * ntrigger;
    c->elem_size = (uint32_t)(depth / 8);
    return APT_OK;
}

/* A dflatfield/dpixelmask/dcountrate_table header + blob pair: 4-byte elements of the given types. */
static int parse_table(const apt_buf *hdr, const apt_buf *blob, const char *htype, const char *type1,
                       const char *type2, const char *what, apt_pixels *out, apt_error *err)
{
    json_t *o = load_part(hdr, what, err);
    if (!o)
        return err ? err->code : APT_EPROTO;
    const char *t = NULL;
    int rc = check_htype(o, htype, what, err);
    if (!rc)
        rc = get_shape(o, &out->width, &out->height, what, err);
    if (!rc)
        rc = get_str(o, "type", &t, what, err);
    if (!rc && strcmp(t, type1) && (!type2 || strcmp(t, type2)))
        rc = apt_err(err, APT_EPROTO, "%s: \"type\" \"%.32s\", expected \"%s\"", what, t, type1);
    json_decref(o);
    if (rc)
        return rc;
    uint64_t need = (uint64_t)out->width * out->height * 4;
    if (blob->len != need)
        return apt_err(err, APT_EPROTO, "%s: blob has %zu bytes, shape [%u, %u] needs %llu", what, blob->len,
                       out->width, out->height, (unsigned long long)need);
    out->elem_size = 4;
    out->enc = APT_ENC_NONE;
    out->blob = blob->ptr;
    out->blob_len = blob->len;
    return APT_OK;
}

static int decode_header(json_t *h, const apt_buf *parts, size_t nparts, apt_stream_msg *m, apt_error *err)
{
    const char *w = "dheader-1.0 (part 1)", *detail;
    int rc = get_u64(h, "series", 1, &m->series_id, w, err);
    if (!rc)
        rc = get_str(h, "header_detail", &detail, w, err);
    if (rc)
        return rc;
    size_t base;
    if (!strcmp(detail, "none"))
        m->header_detail = APT_DETAIL_NONE, base = 1;
    else if (!strcmp(detail, "basic"))
        m->header_detail = APT_DETAIL_BASIC, base = 2;
    else if (!strcmp(detail, "all"))
        m->header_detail = APT_DETAIL_ALL, base = 8;
    else
        return apt_err(err, APT_EPROTO, "%s: header_detail \"%.32s\" is not all, basic or none", w, detail);
    if (nparts != base && nparts != base + 1)
        return apt_err(err, APT_EPROTO, "%s: header_detail \"%s\" means %zu or %zu parts, got %zu", w, detail, base,
                       base + 1, nparts);
    m->type = APT_MSG_START;
    if (base >= 2) {
        json_t *c = load_part(&parts[1], "dheader config (part 2)", err);
        if (!c)
            return err ? err->code : APT_EPROTO;
        rc = parse_config(c, &m->config, err);
        json_decref(c);
        if (rc)
            return rc;
    }
    if (base == 8) {
        apt_pixels flat = {0}, table = {0};
        if ((rc = parse_table(&parts[2], &parts[3], "dflatfield-1.0", "float32", NULL, "dflatfield-1.0 (part 3)",
                              &flat, err)) ||
            (rc = parse_table(&parts[4], &parts[5], "dpixelmask-1.0", "uint32", NULL, "dpixelmask-1.0 (part 5)",
                              &m->mask, err)) ||
            (rc = parse_table(&parts[6], &parts[7], "dcountrate_table-1.0", "float32", "uint32",
                              "dcountrate_table-1.0 (part 7)", &table, err)))
            return rc;
        const apt_detector_config *c = &m->config;
        if (c->width && (flat.width != c->width || flat.height != c->height))
            return apt_err(err, APT_EPROTO, "dflatfield-1.0 (part 3): shape [%u, %u] is not the detector's [%u, %u]",
                           flat.width, flat.height, c->width, c->height);
        if (c->width && (m->mask.width != c->width || m->mask.height != c->height))
            return apt_err(err, APT_EPROTO, "dpixelmask-1.0 (part 5): shape [%u, %u] is not the detector's [%u, %u]",
                           m->mask.width, m->mask.height, c->width, c->height);
    }
    if (nparts == base + 1) {
        m->user_json = (const char *)parts[base].ptr;
        m->user_json_len = parts[base].len;
    }
    return APT_OK;
}

static int parse_encoding(const char *e, uint32_t type_elem, apt_pixels *px, const char *what, apt_error *err)
{
    uint32_t bs = 0;
    if (!strcmp(e, "<"))
        px->enc = APT_ENC_NONE;
    else if (!strcmp(e, "lz4<"))
        px->enc = APT_ENC_LZ4;
    else if (!strcmp(e, "bs8-lz4<"))
        px->enc = APT_ENC_BSLZ4, bs = 1;
    else if (!strcmp(e, "bs16-lz4<"))
        px->enc = APT_ENC_BSLZ4, bs = 2;
    else if (!strcmp(e, "bs32-lz4<"))
        px->enc = APT_ENC_BSLZ4, bs = 4;
    else
        return apt_err(err, APT_ENOTSUP, "%s: encoding \"%.32s\" not supported", what, e);
    if (bs && bs != type_elem)
        return apt_err(err, APT_EPROTO, "%s: encoding \"%s\" does not match type \"%s\"", what, e,
                       apt_stream_dtype_name(type_elem));
    px->elem_size = type_elem;
    return APT_OK;
}

static int decode_image(json_t *h, const apt_buf *parts, size_t nparts, apt_stream_msg *m, apt_error *err)
{
    const char *w = "dimage-1.0 (part 1)", *wd = "dimage_d-1.0 (part 2)";
    int rc = get_u64(h, "series", 1, &m->series_id, w, err);
    if (!rc)
        rc = get_u64(h, "frame", 1, &m->image_id, w, err);
    if (rc)
        return rc;
    if (nparts != 4 && nparts != 5)
        return apt_err(err, APT_EPROTO, "%s: an image is 4 or 5 parts, got %zu", w, nparts);
    m->type = APT_MSG_IMAGE;
    json_t *d = load_part(&parts[1], wd, err);
    if (!d)
        return err ? err->code : APT_EPROTO;
    apt_pixels *px = &m->pixels;
    const char *type = NULL, *enc = NULL;
    uint64_t size = 0;
    rc = check_htype(d, "dimage_d-1.0", wd, err);
    if (!rc)
        rc = get_shape(d, &px->width, &px->height, wd, err);
    if (!rc)
        rc = get_str(d, "type", &type, wd, err);
    if (!rc)
        rc = get_str(d, "encoding", &enc, wd, err);
    if (!rc)
        rc = get_u64(d, "size", 0, &size, wd, err);
    if (!rc && !apt_stream_elem_from_dtype(type, strlen(type)))
        rc = apt_err(err, APT_ENOTSUP, "%s: \"type\" \"%.32s\" is not uint8, uint16 or uint32", wd, type);
    if (!rc)
        rc = parse_encoding(enc, apt_stream_elem_from_dtype(type, strlen(type)), px, wd, err);
    if (!rc && json_object_get(d, "size") && size != parts[2].len)
        rc = apt_err(err, APT_EPROTO, "%s: \"size\" %llu but the blob (part 3) has %zu bytes", wd,
                     (unsigned long long)size, parts[2].len);
    json_decref(d);
    if (rc)
        return rc;
    px->blob = parts[2].ptr;
    px->blob_len = parts[2].len;
    if ((rc = apt_stream_check_pixels(px, "dimage blob (part 3)", err)))
        return rc;
    json_t *c = load_part(&parts[3], "dconfig-1.0 (part 4)", err);
    if (!c)
        return err ? err->code : APT_EPROTO;
    rc = check_htype(c, "dconfig-1.0", "dconfig-1.0 (part 4)", err);
    json_decref(c);
    if (rc)
        return rc;
    m->chan[0] = *px;
    m->n_chan = 1;
    if (nparts == 5) {
        m->user_json = (const char *)parts[4].ptr;
        m->user_json_len = parts[4].len;
    }
    return APT_OK;
}

int apt_v1_decode(const apt_buf *parts, size_t nparts, apt_stream_msg *m, apt_error *err)
{
    apt_stream_msg_clear(m);
    m->version = 1;
    if (!parts || nparts == 0)
        return apt_err(err, APT_EPROTO, "v1: empty multipart message");
    for (size_t i = 0; i < nparts; i++)
        if (!parts[i].ptr && parts[i].len)
            return apt_err(err, APT_EINVAL, "v1: part %zu has no data", i + 1);
    json_t *h = load_part(&parts[0], "v1 part 1", err);
    if (!h) {
        apt_stream_msg_clear(m);
        return err ? err->code : APT_EPROTO;
    }
    const char *htype;
    int rc = get_str(h, "htype", &htype, "v1 part 1", err);
    if (!rc) {
        if (!strcmp(htype, "dheader-1.0"))
            rc = decode_header(h, parts, nparts, m, err);
        else if (!strcmp(htype, "dimage-1.0"))
            rc = decode_image(h, parts, nparts, m, err);
        else if (!strcmp(htype, "dseries_end-1.0")) {
            rc = get_u64(h, "series", 1, &m->series_id, "dseries_end-1.0 (part 1)", err);
            if (!rc && nparts != 1)
                rc = apt_err(err, APT_EPROTO, "dseries_end-1.0 (part 1): expected 1 part, got %zu", nparts);
            m->type = APT_MSG_END;
        } else
            rc = apt_err(err, APT_EPROTO, "v1 part 1: unknown htype \"%.64s\"", htype);
    }
    json_decref(h);
    if (rc) {
        apt_stream_msg_clear(m);
        m->version = 1;
    }
    return rc;
}

/* ---- encoding ---- */

static int put_json(apt_parts *out, json_t *j, apt_error *err)
{
    if (!j)
        return apt_err(err, APT_EINVAL, "v1 encode: a value does not fit JSON (non-finite number or integer "
                       "above 2^63)");
    if (out->n >= APT_MAX_PARTS) {
        json_decref(j);
        return apt_err(err, APT_ERANGE, "v1 encode: more than %d parts", APT_MAX_PARTS);
    }
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s)
        return apt_err(err, APT_ENOMEM, "v1 encode: JSON serialisation failed");
    apt_bytes *b = &out->part[out->n];
    b->len = 0;
    int rc = apt_bytes_append(b, s, strlen(s), err);
    free(s);
    if (!rc)
        out->n++;
    return rc;
}

static int put_blob(apt_parts *out, const void *p, size_t n, apt_error *err)
{
    if (out->n >= APT_MAX_PARTS)
        return apt_err(err, APT_ERANGE, "v1 encode: more than %d parts", APT_MAX_PARTS);
    apt_bytes *b = &out->part[out->n];
    b->len = 0;
    int rc = apt_bytes_reserve(b, n ? n : 1, err);
    if (rc)
        return rc;
    if (n && p)
        memcpy(b->data, p, n);
    else if (n)
        memset(b->data, 0, n);
    b->len = n;
    out->n++;
    return APT_OK;
}

/* json_integer for a uint64 that must fit JSON's signed range (NULL otherwise, caught by put_json). */
static json_t *jint(uint64_t v) { return v > (uint64_t)INT64_MAX ? NULL : json_integer((json_int_t)v); }

static int set_num(json_t *o, const char *key, double v)
{
    return isfinite(v) ? json_object_set_new(o, key, json_real(v)) : 0;
}

static json_t *config_json(const apt_detector_config *c)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = set_num(o, "beam_center_x", c->beam_center_x) | set_num(o, "beam_center_y", c->beam_center_y);
    if (c->width)
        bad |= json_object_set_new(o, "x_pixels_in_detector", json_integer(c->width));
    if (c->height)
        bad |= json_object_set_new(o, "y_pixels_in_detector", json_integer(c->height));
    if (c->n_images) {
        json_t *n = jint(c->n_images);
        bad |= !n || json_object_set_new(o, "nimages", n) || json_object_set_new(o, "ntrigger", json_integer(1));
    }
    if (c->elem_size)
        bad |= json_object_set_new(o, "bit_depth_image", json_integer(8 * (json_int_t)c->elem_size));
    bad |= set_num(o, "photon_energy", c->energy_eV) | set_num(o, "detector_distance", c->distance_m) |
           set_num(o, "x_pixel_size", c->pixel_x_m) | set_num(o, "y_pixel_size", c->pixel_y_m) |
           set_num(o, "count_time", c->count_time_s) | set_num(o, "frame_time", c->frame_time_s);
    if (c->saturation) {
        json_t *n = jint(c->saturation);
        bad |= !n || json_object_set_new(o, "countrate_correction_count_cutoff", n);
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int encode_tables(const apt_stream_msg *m, apt_parts *out, apt_error *err)
{
    uint32_t w = m->config.width ? m->config.width : m->mask.width;
    uint32_t h = m->config.height ? m->config.height : m->mask.height;
    if (!w || !h || w > APT_STREAM_MAX_DIM || h > APT_STREAM_MAX_DIM)
        return apt_err(err, APT_EINVAL, "v1 encode: header_detail all needs the detector size (config or mask)");
    size_t n = (size_t)w * h;
    if (m->mask.blob && (m->mask.width != w || m->mask.height != h || m->mask.elem_size != 4 ||
                         m->mask.enc != APT_ENC_NONE || m->mask.blob_len != n * 4))
        return apt_err(err, APT_EINVAL, "v1 encode: mask must be %ux%u raw uint32 (%zu bytes)", w, h, n * 4);
    int rc = put_json(out, json_pack("{s:s, s:[i,i], s:s}", "htype", "dflatfield-1.0", "shape", (int)w, (int)h,
                                     "type", "float32"), err);
    if (!rc)
        rc = put_blob(out, NULL, n * 4, err);
    if (!rc) {
        float *ff = (float *)out->part[out->n - 1].data;
        for (size_t i = 0; i < n; i++)
            ff[i] = 1.0f; /* a neutral flatfield */
    }
    if (!rc)
        rc = put_json(out, json_pack("{s:s, s:[i,i], s:s}", "htype", "dpixelmask-1.0", "shape", (int)w, (int)h,
                                     "type", "uint32"), err);
    if (!rc)
        rc = put_blob(out, m->mask.blob, n * 4, err);
    if (!rc)
        rc = put_json(out, json_pack("{s:s, s:[i,i], s:s}", "htype", "dcountrate_table-1.0", "shape", 2, 4, "type",
                                     "float32"), err);
    if (!rc)
        rc = put_blob(out, NULL, 2 * 4 * 4, err);
    return rc;
}

static int encode_image(const apt_stream_msg *m, apt_parts *out, apt_error *err)
{
    const apt_pixels *px = m->pixels.blob || !m->n_chan ? &m->pixels : &m->chan[0];
    int rc = apt_stream_check_pixels(px, "v1 encode: pixels", err);
    if (rc)
        return rc;
    const char *enc = apt_encoding_name_v1(px->enc, px->elem_size);
    if (!enc)
        return apt_err(err, APT_ENOTSUP, "v1 encode: encoding %s has no v1 form", apt_encoding_name(px->enc));
    json_t *id = jint(m->image_id), *series = jint(m->series_id);
    rc = put_json(out, id && series ? json_pack("{s:s, s:o, s:o, s:s}", "htype", "dimage-1.0", "series", series,
                                                "frame", id, "hash", "")
                                    : (json_decref(id), json_decref(series), NULL), err);
    if (!rc)
        rc = put_json(out, json_pack("{s:s, s:[i,i], s:s, s:s, s:I}", "htype", "dimage_d-1.0", "shape",
                                     (int)px->width, (int)px->height, "type",
                                     apt_stream_dtype_name(px->elem_size), "encoding", enc, "size",
                                     (json_int_t)px->blob_len), err);
    if (!rc)
        rc = put_blob(out, px->blob, px->blob_len, err);
    if (!rc)
        rc = put_json(out, json_pack("{s:s, s:i, s:i, s:i}", "htype", "dconfig-1.0", "start_time", 0, "stop_time", 0,
                                     "real_time", 0), err);
    return rc;
}

int apt_v1_encode(const apt_stream_msg *m, apt_parts *out, apt_error *err)
{
    apt_parts_reset(out);
    int rc;
    json_t *series = jint(m->series_id);
    switch (m->type) {
    case APT_MSG_START: {
        const char *detail = m->header_detail == APT_DETAIL_ALL     ? "all"
                             : m->header_detail == APT_DETAIL_BASIC ? "basic"
                                                                    : "none";
        rc = put_json(out, series ? json_pack("{s:s, s:o, s:s}", "htype", "dheader-1.0", "series", series,
                                              "header_detail", detail)
                                  : NULL, err);
        if (!rc && m->header_detail != APT_DETAIL_NONE)
            rc = put_json(out, config_json(&m->config), err);
        if (!rc && m->header_detail == APT_DETAIL_ALL)
            rc = encode_tables(m, out, err);
        break;
    }
    case APT_MSG_IMAGE:
        json_decref(series);
        rc = encode_image(m, out, err);
        break;
    case APT_MSG_END:
        rc = put_json(out, series ? json_pack("{s:s, s:o}", "htype", "dseries_end-1.0", "series", series) : NULL,
                      err);
        break;
    default:
        json_decref(series);
        rc = apt_err(err, APT_EINVAL, "v1 encode: message type %d is not start, image or end", (int)m->type);
    }
    if (!rc && m->user_json && (m->type == APT_MSG_START || m->type == APT_MSG_IMAGE))
        rc = put_blob(out, m->user_json, m->user_json_len, err);
    if (rc)
        apt_parts_reset(out);
    return rc;
}
