/* stream_v2_encode.c - Eiger stream v2 encoding for replay and tests, on libcbor's low-level cbor_encode_* calls
 * writing straight into an apt_bytes (no cbor_item_t tree). Definite-length maps need their size first, so each map
 * body is written by a function that runs twice: a dry pass that only counts keys, then the real one. */
#include <cbor.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "stream_priv.h"

typedef struct enc {
    apt_bytes *b;
    apt_error *err;
    int rc;
    int dry;     /* counting pass: nothing is written, e_key counts */
    size_t keys;
} enc;

/* Room for n more bytes; NULL in the dry pass or after an error. */
static unsigned char *room(enc *e, size_t n)
{
    if (e->rc || e->dry)
        return NULL;
    int rc = apt_bytes_reserve(e->b, e->b->len + n, e->err);
    if (rc) {
        e->rc = rc;
        return NULL;
    }
    return e->b->data + e->b->len;
}

static void wrote(enc *e, size_t k)
{
    if (k == 0 && !e->rc)
        e->rc = apt_err(e->err, APT_ENOMEM, "v2 encode: CBOR head did not fit");
    e->b->len += k;
}

static void e_uint(enc *e, uint64_t v)
{
    unsigned char *p = room(e, 9);
    if (p)
        wrote(e, cbor_encode_uint(v, p, e->b->cap - e->b->len));
}
static void e_negint(enc *e, uint64_t n) /* value -1 - n */
{
    unsigned char *p = room(e, 9);
    if (p)
        wrote(e, cbor_encode_negint(n, p, e->b->cap - e->b->len));
}
static void e_tag(enc *e, uint64_t t)
{
    unsigned char *p = room(e, 9);
    if (p)
        wrote(e, cbor_encode_tag(t, p, e->b->cap - e->b->len));
}
static void e_map(enc *e, size_t n)
{
    unsigned char *p = room(e, 9);
    if (p)
        wrote(e, cbor_encode_map_start(n, p, e->b->cap - e->b->len));
}
static void e_array(enc *e, size_t n)
{
    unsigned char *p = room(e, 9);
    if (p)
        wrote(e, cbor_encode_array_start(n, p, e->b->cap - e->b->len));
}
static void e_double(enc *e, double v)
{
    unsigned char *p = room(e, 9);
    if (p)
        wrote(e, cbor_encode_double(v, p, e->b->cap - e->b->len));
}
static void e_bool(enc *e, int v)
{
    unsigned char *p = room(e, 1);
    if (p)
        wrote(e, cbor_encode_bool(v != 0, p, e->b->cap - e->b->len));
}
static void e_null(enc *e)
{
    unsigned char *p = room(e, 1);
    if (p)
        wrote(e, cbor_encode_null(p, e->b->cap - e->b->len));
}

static void e_str(enc *e, int text, const void *s, size_t n)
{
    if (n > SIZE_MAX - 9 && !e->rc) {
        e->rc = apt_err(e->err, APT_ENOMEM, "v2 encode: string too long");
        return;
    }
    unsigned char *p = room(e, 9 + n);
    if (!p)
        return;
    size_t cap = e->b->cap - e->b->len;
    size_t k = text ? cbor_encode_string_start(n, p, cap) : cbor_encode_bytestring_start(n, p, cap);
    if (k && n)
        memcpy(p + k, s, n);
    wrote(e, k ? k + n : 0);
}

static void e_text(enc *e, const char *s) { e_str(e, 1, s, strlen(s)); }

/* A top-level key: counted in the dry pass, written in the real one. */
static void e_key(enc *e, const char *k)
{
    if (e->dry)
        e->keys++;
    else
        e_text(e, k);
}

static void kv_uint(enc *e, const char *k, uint64_t v)
{
    e_key(e, k);
    e_uint(e, v);
}

static void kv_num(enc *e, const char *k, double v)
{
    if (isfinite(v)) {
        e_key(e, k);
        e_double(e, v);
    }
}

/* JSON -> CBOR for user_data: objects become maps with text keys, numbers stay integer or float. */
static void e_json(enc *e, json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        e_map(e, json_object_size(j));
        json_object_foreach(j, k, v) {
            e_text(e, k);
            e_json(e, v);
        }
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *v;
        e_array(e, json_array_size(j));
        json_array_foreach(j, i, v) e_json(e, v);
        break;
    }
    case JSON_INTEGER: {
        json_int_t v = json_integer_value(j);
        if (v >= 0)
            e_uint(e, (uint64_t)v);
        else
            e_negint(e, (uint64_t)(-(v + 1)));
        break;
    }
    case JSON_REAL: e_double(e, json_real_value(j)); break;
    case JSON_STRING: e_str(e, 1, json_string_value(j), json_string_length(j)); break;
    case JSON_TRUE: e_bool(e, 1); break;
    case JSON_FALSE: e_bool(e, 0); break;
    default: e_null(e); break;
    }
}

static int json_depth(json_t *j)
{
    int d = 0, dv;
    size_t i;
    const char *k;
    json_t *v;
    if (json_is_object(j)) {
        json_object_foreach(j, k, v) {
            if ((dv = json_depth(v)) > d)
                d = dv;
        }
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v) {
            if ((dv = json_depth(v)) > d)
                d = dv;
        }
    } else {
        return 0;
    }
    return d + 1;
}

/* tag 40 [[height, width], tag 64/69/70 (bytes | tag 56500 [alg, elem, bytes])] */
static void e_pixels(enc *e, const apt_pixels *px)
{
    e_tag(e, 40);
    e_array(e, 2);
    e_array(e, 2);
    e_uint(e, px->height);
    e_uint(e, px->width);
    e_tag(e, px->elem_size == 1 ? 64 : px->elem_size == 2 ? 69 : 70);
    if (px->enc != APT_ENC_NONE) {
        e_tag(e, 56500);
        e_array(e, 3);
        e_text(e, px->enc == APT_ENC_BSLZ4 ? "bslz4" : "lz4");
        e_uint(e, px->enc == APT_ENC_BSLZ4 ? px->elem_size : 0);
    }
    e_str(e, 0, px->blob, px->blob_len);
}

typedef struct chan_ref {
    const apt_pixels *px[APT_MAX_CHANNELS];
    char name[APT_MAX_CHANNELS][APT_NAME_LEN];
    int n;
} chan_ref;

static void body(enc *e, const apt_stream_msg *m, const chan_ref *ch, json_t *user)
{
    static const char *types[] = {"", "start", "image", "end"};
    e_key(e, "type");
    e_text(e, types[m->type]);
    kv_uint(e, "series_id", m->series_id);
    e_key(e, "series_unique_id");
    e_text(e, m->series_unique_id);
    if (m->type == APT_MSG_START) {
        const apt_detector_config *c = &m->config;
        kv_num(e, "beam_center_x", c->beam_center_x);
        kv_num(e, "beam_center_y", c->beam_center_y);
        if (c->width)
            kv_uint(e, "image_size_x", c->width);
        if (c->height)
            kv_uint(e, "image_size_y", c->height);
        if (c->n_images)
            kv_uint(e, "number_of_images", c->n_images);
        if (c->elem_size) {
            e_key(e, "image_dtype");
            e_text(e, apt_stream_dtype_name(c->elem_size));
        }
        kv_num(e, "incident_energy", c->energy_eV);
        kv_num(e, "detector_distance", c->distance_m);
        kv_num(e, "pixel_size_x", c->pixel_x_m);
        kv_num(e, "pixel_size_y", c->pixel_y_m);
        kv_num(e, "count_time", c->count_time_s);
        kv_num(e, "frame_time", c->frame_time_s);
        if (c->saturation)
            kv_uint(e, "saturation_value", c->saturation);
        if (m->n_channels > 0) {
            e_key(e, "channels");
            e_array(e, (size_t)m->n_channels);
            for (int k = 0; k < m->n_channels; k++)
                e_text(e, m->channels[k]);
        }
    }
    if (ch->n > 0) {
        e_key(e, m->type == APT_MSG_START ? "pixel_mask" : "data");
        e_map(e, (size_t)ch->n);
        for (int k = 0; k < ch->n; k++) {
            e_text(e, ch->name[k]);
            e_pixels(e, ch->px[k]);
        }
    }
    if (m->type == APT_MSG_IMAGE)
        kv_uint(e, "image_id", m->image_id);
    if (user) {
        e_key(e, "user_data");
        e_json(e, user);
    }
}

/* The pixel arrays a message carries: image data channels, or the start message's mask. */
static int collect(const apt_stream_msg *m, chan_ref *ch, apt_error *err)
{
    ch->n = 0;
    if (m->type == APT_MSG_START && m->mask.blob) {
        ch->px[0] = &m->mask;
        const char *nm = m->mask.channel[0] ? m->mask.channel : m->n_channels ? m->channels[0] : "threshold_1";
        snprintf(ch->name[0], APT_NAME_LEN, "%s", nm);
        ch->n = 1;
    } else if (m->type == APT_MSG_IMAGE) {
        if (m->n_chan < 0 || m->n_chan > APT_MAX_CHANNELS)
            return apt_err(err, APT_EINVAL, "v2 encode: n_chan %d outside [0, %d]", m->n_chan, APT_MAX_CHANNELS);
        ch->n = m->n_chan ? m->n_chan : 1;
        for (int k = 0; k < ch->n; k++) {
            ch->px[k] = m->n_chan ? &m->chan[k] : &m->pixels;
            if (ch->px[k]->channel[0])
                snprintf(ch->name[k], APT_NAME_LEN, "%s", ch->px[k]->channel);
            else
                snprintf(ch->name[k], APT_NAME_LEN, "threshold_%d", k + 1);
            for (int j = 0; j < k; j++)
                if (!strcmp(ch->name[j], ch->name[k]))
                    return apt_err(err, APT_EINVAL, "v2 encode: duplicate channel \"%s\"", ch->name[k]);
        }
    }
    for (int k = 0; k < ch->n; k++) {
        char what[APT_NAME_LEN + 32];
        snprintf(what, sizeof what, "v2 encode: %s", ch->name[k]);
        int rc = apt_stream_check_pixels(ch->px[k], what, err);
        if (rc)
            return rc;
        if (ch->px[k]->enc == APT_ENC_LZ4)
            return apt_err(err, APT_ENOTSUP, "%s: a raw LZ4 block has no v2 form (use h5lz4)", what);
        if (m->type == APT_MSG_START && ch->px[k]->elem_size != 4)
            return apt_err(err, APT_EINVAL, "%s: the pixel mask must be uint32", what);
    }
    return APT_OK;
}

int apt_v2_encode(const apt_stream_msg *m, apt_bytes *out, apt_error *err)
{
    out->len = 0;
    if (m->type != APT_MSG_START && m->type != APT_MSG_IMAGE && m->type != APT_MSG_END)
        return apt_err(err, APT_EINVAL, "v2 encode: message type %d is not start, image or end", (int)m->type);
    if (m->n_channels < 0 || m->n_channels > APT_MAX_CHANNELS)
        return apt_err(err, APT_EINVAL, "v2 encode: n_channels %d outside [0, %d]", m->n_channels, APT_MAX_CHANNELS);
    chan_ref ch;
    int rc = collect(m, &ch, err);
    if (rc)
        return rc;
    json_t *user = NULL;
    if (m->user_json && m->type != APT_MSG_END) {
        json_error_t je;
        user = json_loadb(m->user_json, m->user_json_len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
        if (!user)
            return apt_err(err, APT_EINVAL, "v2 encode: user_json: invalid JSON at column %d: %s", je.column,
                           je.text);
        if (json_depth(user) > APT_STREAM_MAX_JSON_DEPTH) {
            json_decref(user);
            return apt_err(err, APT_ERANGE, "v2 encode: user_json nests deeper than %d", APT_STREAM_MAX_JSON_DEPTH);
        }
    }
    enc e = {.b = out, .err = err, .dry = 1};
    body(&e, m, &ch, user);
    e.dry = 0;
    e_tag(&e, 55799); /* self-describe, as the detector sends it */
    e_map(&e, e.keys);
    body(&e, m, &ch, user);
    json_decref(user);
    if (e.rc)
        out->len = 0;
    return e.rc;
}
