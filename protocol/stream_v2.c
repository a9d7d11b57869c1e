/* stream_v2.c - Eiger stream v2 decoding: one CBOR map per message (start/image/end), walked on the bounded node
 * array of cbor_read.c. Pixel data stays in the input (tag 40 [[h, w], tag 64/69/70 (bytes | tag 56500 [alg, elem,
 * bytes])]); user_data of any CBOR shape becomes JSON text (jansson), so scanmeta sees one format for v1 and v2. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbor_read.h"
#include "stream_priv.h"

#define V2_MAX_KEYS 1024 /* top-level keys (a start message has ~40); bounds the duplicate-key scan */

typedef struct v2 {
    const apt_cbor_doc *d;
    apt_stream_msg *m;
    apt_error *err;
} v2;

static const apt_cbor_node *N(const v2 *s, long i) { return &s->d->node[i]; }

static int get_uint(const v2 *s, size_t map, const char *key, int required, uint64_t *out)
{
    long i = apt_cbor_map_get(s->d, map, key);
    if (i < 0)
        return required ? apt_err(s->err, APT_EPROTO, "v2: missing \"%s\"", key) : APT_OK;
    if (N(s, i)->type != APT_CB_UINT)
        return apt_err(s->err, APT_EPROTO, "v2: \"%s\" is a %s, not an unsigned integer", key,
                       apt_cbor_type_name(N(s, i)));
    *out = N(s, i)->u;
    return APT_OK;
}

static int get_num(const v2 *s, size_t map, const char *key, double *out)
{
    long i = apt_cbor_map_get(s->d, map, key);
    if (i < 0)
        return APT_OK;
    const apt_cbor_node *nd = N(s, i);
    if (nd->type == APT_CB_FLOAT)
        *out = nd->d;
    else if (nd->type == APT_CB_UINT)
        *out = (double)nd->u;
    else if (nd->type == APT_CB_NEGINT)
        *out = -1.0 - (double)nd->u;
    else
        return apt_err(s->err, APT_EPROTO, "v2: \"%s\" is a %s, not a number", key, apt_cbor_type_name(nd));
    return APT_OK;
}

/* Copy text node i into a name buffer (NUL-free, shorter than APT_NAME_LEN). */
static int copy_name(const v2 *s, long i, char *dst, const char *what)
{
    const apt_cbor_node *nd = N(s, i);
    if (nd->type != APT_CB_TEXT)
        return apt_err(s->err, APT_EPROTO, "v2: %s is a %s, not text", what, apt_cbor_type_name(nd));
    if (nd->u >= APT_NAME_LEN || memchr(nd->ptr, 0, nd->u))
        return apt_err(s->err, APT_ERANGE, "v2: %s is longer than %d bytes or holds NUL", what, APT_NAME_LEN - 1);
    json_t *utf8 = json_stringn((const char *)nd->ptr, (size_t)nd->u); /* jansson validates UTF-8 */
    if (!utf8)
        return apt_err(s->err, APT_EPROTO, "v2: %s is not valid UTF-8", what);
    json_decref(utf8);
    memcpy(dst, nd->ptr, nd->u);
    dst[nd->u] = '\0';
    return APT_OK;
}

/* ---- pixels: tag 40 [[height, width], typed array] ---- */

static int parse_typed(const v2 *s, long i, apt_pixels *px, const char *what)
{
    const apt_cbor_node *t = N(s, i);
    if (t->type != APT_CB_TAG)
        return apt_err(s->err, APT_EPROTO, "%s: pixel data is a %s, not a typed array (tag 64/69/70)", what,
                       apt_cbor_type_name(t));
    if (t->u == 64)
        px->elem_size = 1;
    else if (t->u == 69)
        px->elem_size = 2;
    else if (t->u == 70)
        px->elem_size = 4;
    else
        return apt_err(s->err, APT_ENOTSUP, "%s: typed-array tag %llu not supported (uint8 64, uint16 LE 69, "
                       "uint32 LE 70)", what, (unsigned long long)t->u);
    long b = i + 1;
    if (N(s, b)->type == APT_CB_BYTES) {
        px->enc = APT_ENC_NONE;
    } else if (N(s, b)->type == APT_CB_TAG && N(s, b)->u == 56500) {
        long a = apt_cbor_child(s->d, b, 0);
        if (N(s, a)->type != APT_CB_ARRAY || N(s, a)->u != 3)
            return apt_err(s->err, APT_EPROTO, "%s: tag 56500 content is not [algorithm, elem_size, bytes]", what);
        long alg = apt_cbor_child(s->d, a, 0), mod = apt_cbor_child(s->d, a, 1);
        b = apt_cbor_child(s->d, a, 2);
        if (N(s, alg)->type != APT_CB_TEXT || N(s, mod)->type != APT_CB_UINT || N(s, b)->type != APT_CB_BYTES)
            return apt_err(s->err, APT_EPROTO, "%s: tag 56500 content is not [text, uint, bytes]", what);
        if (apt_cbor_text_is(s->d, alg, "bslz4")) {
            px->enc = APT_ENC_BSLZ4;
            if (N(s, mod)->u != px->elem_size)
                return apt_err(s->err, APT_EPROTO, "%s: bslz4 element size %llu but typed array of %u-byte elements",
                               what, (unsigned long long)N(s, mod)->u, px->elem_size);
        } else if (apt_cbor_text_is(s->d, alg, "lz4")) {
            px->enc = APT_ENC_H5LZ4;
        } else {
            int n = N(s, alg)->u > 32 ? 32 : (int)N(s, alg)->u;
            return apt_err(s->err, APT_ENOTSUP, "%s: compression \"%.*s\" not supported (bslz4, lz4)", what, n,
                           (const char *)N(s, alg)->ptr);
        }
    } else {
        return apt_err(s->err, APT_EPROTO, "%s: typed array holds a %s%s, not bytes or tag 56500", what,
                       apt_cbor_type_name(N(s, b)), N(s, b)->type == APT_CB_TAG ? " (other number)" : "");
    }
    px->blob = N(s, b)->ptr;
    px->blob_len = (size_t)N(s, b)->u;
    return APT_OK;
}

static int parse_multidim(const v2 *s, long i, apt_pixels *px, const char *what)
{
    const apt_cbor_node *t = N(s, i);
    if (t->type != APT_CB_TAG || t->u != 40) {
        if (t->type == APT_CB_TAG)
            return apt_err(s->err, APT_EPROTO, "%s: tag %llu, expected tag 40 (multi-dimensional array)", what,
                           (unsigned long long)t->u);
        return apt_err(s->err, APT_EPROTO, "%s: a %s, expected tag 40 (multi-dimensional array)", what,
                       apt_cbor_type_name(t));
    }
    long a = i + 1;
    if (N(s, a)->type != APT_CB_ARRAY || N(s, a)->u != 2)
        return apt_err(s->err, APT_EPROTO, "%s: tag 40 content is not [dimensions, typed array]", what);
    long dims = apt_cbor_child(s->d, a, 0), arr = apt_cbor_child(s->d, a, 1);
    if (N(s, dims)->type != APT_CB_ARRAY || N(s, dims)->u != 2 || N(s, dims + 1)->type != APT_CB_UINT ||
        N(s, dims + 2)->type != APT_CB_UINT)
        return apt_err(s->err, APT_EPROTO, "%s: dimensions are not [height, width] unsigned integers", what);
    uint64_t h = N(s, dims + 1)->u, w = N(s, dims + 2)->u;
    if (h < 1 || h > APT_STREAM_MAX_DIM || w < 1 || w > APT_STREAM_MAX_DIM)
        return apt_err(s->err, APT_ERANGE, "%s: dimensions [%llu, %llu] outside [1, %u]", what,
                       (unsigned long long)h, (unsigned long long)w, APT_STREAM_MAX_DIM);
    px->height = (uint32_t)h;
    px->width = (uint32_t)w;
    int rc = parse_typed(s, arr, px, what);
    return rc ? rc : apt_stream_check_pixels(px, what, s->err);
}

/* Which of n names: want if given (-1 when absent), else "threshold_1", else the first. */
static int pick_channel(char names[][APT_NAME_LEN], int n, const char *want)
{
    for (int k = 0; k < n; k++)
        if (!strcmp(names[k], want ? want : "threshold_1"))
            return k;
    return want || n == 0 ? -1 : 0;
}

/* A map channel -> multidim (image "data", start "pixel_mask"): every entry parsed and checked. */
static int parse_channel_map(const v2 *s, long map, const char *key, apt_pixels *out, int *n_out)
{
    char what[APT_NAME_LEN + 32];
    if (N(s, map)->type != APT_CB_MAP)
        return apt_err(s->err, APT_EPROTO, "v2: \"%s\" is a %s, not a map of channels", key,
                       apt_cbor_type_name(N(s, map)));
    if (N(s, map)->u > APT_MAX_CHANNELS)
        return apt_err(s->err, APT_ERANGE, "v2: \"%s\" has %llu channels, at most %d supported", key,
                       (unsigned long long)N(s, map)->u, APT_MAX_CHANNELS);
    int n = (int)N(s, map)->u;
    for (int k = 0; k < n; k++) {
        snprintf(what, sizeof what, "%s key %d", key, k + 1);
        int rc = copy_name(s, apt_cbor_child(s->d, map, 2 * (size_t)k), out[k].channel, what);
        if (rc)
            return rc;
        for (int j = 0; j < k; j++)
            if (!strcmp(out[j].channel, out[k].channel))
                return apt_err(s->err, APT_EPROTO, "v2: \"%s\": duplicate channel \"%s\"", key, out[k].channel);
        snprintf(what, sizeof what, "v2: %s.%s", key, out[k].channel);
        if ((rc = parse_multidim(s, apt_cbor_child(s->d, map, 2 * (size_t)k + 1), &out[k], what)))
            return rc;
    }
    *n_out = n;
    return APT_OK;
}

/* ---- user_data -> JSON ---- */

static json_t *to_json(const v2 *s, long i)
{
    const apt_cbor_node *nd = N(s, i);
    switch (nd->type) {
    case APT_CB_UINT:
        if (nd->u > (uint64_t)INT64_MAX)
            break;
        return json_integer((json_int_t)nd->u);
    case APT_CB_NEGINT:
        if (nd->u > (uint64_t)INT64_MAX)
            break;
        return json_integer(-1 - (json_int_t)nd->u);
    case APT_CB_FLOAT: return isfinite(nd->d) ? json_real(nd->d) : NULL;
    case APT_CB_TEXT: return json_stringn((const char *)nd->ptr, (size_t)nd->u);
    case APT_CB_BOOL: return json_boolean(nd->u);
    case APT_CB_NULL:
    case APT_CB_UNDEF: return json_null();
    case APT_CB_TAG: return to_json(s, i + 1); /* tags (e.g. 0 date/time) keep only their content */
    case APT_CB_ARRAY: {
        json_t *a = json_array();
        long c = i + 1;
        for (uint64_t k = 0; a && k < nd->u; k++, c = N(s, c)->next) {
            json_t *v = to_json(s, c);
            if (!v || json_array_append_new(a, v)) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    case APT_CB_MAP: {
        json_t *o = json_object();
        long c = i + 1;
        for (uint64_t k = 0; o && k < nd->u; k++) {
            long v = N(s, c)->next;
            const apt_cbor_node *key = N(s, c);
            json_t *jv = key->type == APT_CB_TEXT &&
                                 !json_object_getn(o, (const char *)key->ptr, (size_t)key->u)
                             ? to_json(s, v)
                             : NULL;
            if (!jv || json_object_setn_new(o, (const char *)key->ptr, (size_t)key->u, jv)) {
                json_decref(o);
                return NULL;
            }
            c = N(s, v)->next;
        }
        return o;
    }
    default: break;
    }
    return NULL;
}

static int parse_user_data(const v2 *s, size_t root)
{
    long i = apt_cbor_map_get(s->d, root, "user_data");
    if (i < 0)
        return APT_OK;
    apt_stream_msg *m = s->m;
    const apt_cbor_node *nd = N(s, i);
    if (nd->type == APT_CB_TEXT) { /* JSON sent as text passes through untouched (borrowed) */
        if (nd->u > APT_STREAM_MAX_JSON)
            return apt_err(s->err, APT_ERANGE, "v2: \"user_data\" text of %llu bytes exceeds %u",
                           (unsigned long long)nd->u, APT_STREAM_MAX_JSON);
        json_t *j = json_loadb((const char *)nd->ptr, (size_t)nd->u, JSON_DECODE_ANY, NULL);
        if (j) {
            json_decref(j);
            m->user_json = (const char *)nd->ptr;
            m->user_json_len = (size_t)nd->u;
            return APT_OK;
        }
    }
    json_t *j = to_json(s, i);
    if (!j)
        return apt_err(s->err, APT_EPROTO, "v2: \"user_data\" has no JSON form (byte strings, non-finite or "
                       "64-bit-unsigned numbers, non-text or duplicate map keys, invalid UTF-8)");
    m->owned_json = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    if (!m->owned_json)
        return apt_err(s->err, APT_ENOMEM, "v2: \"user_data\": JSON serialisation failed");
    m->user_json = m->owned_json;
    m->user_json_len = strlen(m->owned_json);
    return APT_OK;
}

/* ---- messages ---- */

static int decode_start(const v2 *s, size_t root, const char *want)
{
    apt_stream_msg *m = s->m;
    apt_detector_config *c = &m->config;
    uint64_t w = 0, h = 0;
    int rc;
    c->present = 1;
    if ((rc = get_num(s, root, "beam_center_x", &c->beam_center_x)) ||
        (rc = get_num(s, root, "beam_center_y", &c->beam_center_y)) ||
        (rc = get_uint(s, root, "image_size_x", 0, &w)) || (rc = get_uint(s, root, "image_size_y", 0, &h)) ||
        (rc = get_uint(s, root, "number_of_images", 0, &c->n_images)) ||
        (rc = get_num(s, root, "incident_energy", &c->energy_eV)) ||
        (rc = get_num(s, root, "detector_distance", &c->distance_m)) ||
        (rc = get_num(s, root, "pixel_size_x", &c->pixel_x_m)) ||
        (rc = get_num(s, root, "pixel_size_y", &c->pixel_y_m)) ||
        (rc = get_num(s, root, "count_time", &c->count_time_s)) ||
        (rc = get_num(s, root, "frame_time", &c->frame_time_s)) ||
        (rc = get_uint(s, root, "saturation_value", 0, &c->saturation)))
        return rc;
    if ((apt_cbor_map_get(s->d, root, "image_size_x") >= 0 && (w < 1 || w > APT_STREAM_MAX_DIM)) ||
        (apt_cbor_map_get(s->d, root, "image_size_y") >= 0 && (h < 1 || h > APT_STREAM_MAX_DIM)))
        return apt_err(s->err, APT_ERANGE, "v2: image_size_x/y %llu x %llu outside [1, %u]", (unsigned long long)w,
                       (unsigned long long)h, APT_STREAM_MAX_DIM);
    c->width = (uint32_t)w;
    c->height = (uint32_t)h;
    long i = apt_cbor_map_get(s->d, root, "image_dtype");
    if (i >= 0) {
        if (N(s, i)->type != APT_CB_TEXT)
            return apt_err(s->err, APT_EPROTO, "v2: \"image_dtype\" is a %s, not text", apt_cbor_type_name(N(s, i)));
        c->elem_size = apt_stream_elem_from_dtype((const char *)N(s, i)->ptr, (size_t)N(s, i)->u);
        if (!c->elem_size)
            return apt_err(s->err, APT_ENOTSUP, "v2: \"image_dtype\" \"%.*s\" not supported (uint8/16/32)",
                           N(s, i)->u > 32 ? 32 : (int)N(s, i)->u, (const char *)N(s, i)->ptr);
    }
    if ((i = apt_cbor_map_get(s->d, root, "channels")) >= 0) {
        if (N(s, i)->type != APT_CB_ARRAY)
            return apt_err(s->err, APT_EPROTO, "v2: \"channels\" is a %s, not an array", apt_cbor_type_name(N(s, i)));
        if (N(s, i)->u > APT_MAX_CHANNELS)
            return apt_err(s->err, APT_ERANGE, "v2: \"channels\" lists %llu, at most %d supported",
                           (unsigned long long)N(s, i)->u, APT_MAX_CHANNELS);
        m->n_channels = (int)N(s, i)->u;
        for (int k = 0; k < m->n_channels; k++)
            if ((rc = copy_name(s, apt_cbor_child(s->d, i, (size_t)k), m->channels[k], "channels entry")))
                return rc;
        if (want && m->n_channels && pick_channel(m->channels, m->n_channels, want) < 0)
            return apt_err(s->err, APT_EPROTO, "v2: channel \"%s\" is not in \"channels\"", want);
    }
    if ((i = apt_cbor_map_get(s->d, root, "pixel_mask")) >= 0) {
        apt_pixels masks[APT_MAX_CHANNELS];
        char names[APT_MAX_CHANNELS][APT_NAME_LEN];
        int n = 0;
        memset(masks, 0, sizeof masks);
        if ((rc = parse_channel_map(s, i, "pixel_mask", masks, &n)))
            return rc;
        for (int k = 0; k < n; k++) {
            memcpy(names[k], masks[k].channel, APT_NAME_LEN);
            if (masks[k].elem_size != 4)
                return apt_err(s->err, APT_EPROTO, "v2: pixel_mask.%s: a mask is uint32 (tag 70)", names[k]);
            if (c->width && (masks[k].width != c->width || masks[k].height != c->height))
                return apt_err(s->err, APT_EPROTO, "v2: pixel_mask.%s: %ux%u is not the image size %ux%u", names[k],
                               masks[k].width, masks[k].height, c->width, c->height);
        }
        int k = pick_channel(names, n, want);
        if (k >= 0)
            m->mask = masks[k];
    }
    return parse_user_data(s, root);
}

static int decode_image(const v2 *s, size_t root, const char *want)
{
    apt_stream_msg *m = s->m;
    int rc = get_uint(s, root, "image_id", 1, &m->image_id);
    if (rc)
        return rc;
    long i = apt_cbor_map_get(s->d, root, "data");
    if (i < 0)
        return apt_err(s->err, APT_EPROTO, "v2: image without \"data\"");
    if ((rc = parse_channel_map(s, i, "data", m->chan, &m->n_chan)))
        return rc;
    if (m->n_chan == 0)
        return apt_err(s->err, APT_EPROTO, "v2: \"data\" holds no channel");
    char names[APT_MAX_CHANNELS][APT_NAME_LEN];
    for (int k = 0; k < m->n_chan; k++)
        memcpy(names[k], m->chan[k].channel, APT_NAME_LEN);
    int k = pick_channel(names, m->n_chan, want);
    if (k < 0)
        return apt_err(s->err, APT_EPROTO, "v2: \"data\" has no channel \"%s\" (first is \"%s\")", want, names[0]);
    m->pixels = m->chan[k];
    return parse_user_data(s, root);
}

static int decode_root(const v2 *s, const char *want)
{
    const apt_cbor_doc *d = s->d;
    apt_stream_msg *m = s->m;
    size_t root = 0;
    if (d->node[0].type == APT_CB_TAG) {
        if (d->node[0].u != 55799)
            return apt_err(s->err, APT_EPROTO, "v2: message starts with tag %llu, expected a map or tag 55799",
                           (unsigned long long)d->node[0].u);
        root = 1;
    }
    if (d->node[root].type != APT_CB_MAP)
        return apt_err(s->err, APT_EPROTO, "v2: message is a %s, not a CBOR map", apt_cbor_type_name(&d->node[root]));
    uint64_t npairs = d->node[root].u;
    if (npairs > V2_MAX_KEYS)
        return apt_err(s->err, APT_ERANGE, "v2: %llu keys, at most %d", (unsigned long long)npairs, V2_MAX_KEYS);
    for (uint64_t a = 0; a < npairs; a++) { /* text keys only, no duplicates: a lookup must be unambiguous */
        long ka = apt_cbor_child(d, root, 2 * a);
        if (d->node[ka].type != APT_CB_TEXT)
            return apt_err(s->err, APT_EPROTO, "v2: key %llu is a %s, not text", (unsigned long long)a + 1,
                           apt_cbor_type_name(&d->node[ka]));
        for (long kb = d->node[d->node[ka].next].next; (size_t)kb < d->node[root].next;
             kb = d->node[d->node[kb].next].next)
            if (d->node[kb].type == APT_CB_TEXT && d->node[kb].u == d->node[ka].u &&
                !memcmp(d->node[kb].ptr, d->node[ka].ptr, (size_t)d->node[ka].u))
                return apt_err(s->err, APT_EPROTO, "v2: duplicate key \"%.*s\"",
                               d->node[ka].u > 32 ? 32 : (int)d->node[ka].u, (const char *)d->node[ka].ptr);
    }
    long t = apt_cbor_map_get(d, root, "type");
    if (t < 0)
        return apt_err(s->err, APT_EPROTO, "v2: missing \"type\"");
    int rc = get_uint(s, root, "series_id", 1, &m->series_id);
    if (rc)
        return rc;
    long u = apt_cbor_map_get(d, root, "series_unique_id");
    if (u >= 0 && (rc = copy_name(s, u, m->series_unique_id, "\"series_unique_id\"")))
        return rc;
    if (apt_cbor_text_is(d, t, "start")) {
        m->type = APT_MSG_START;
        return decode_start(s, root, want);
    }
    if (apt_cbor_text_is(d, t, "image")) {
        m->type = APT_MSG_IMAGE;
        return decode_image(s, root, want);
    }
    if (apt_cbor_text_is(d, t, "end")) {
        m->type = APT_MSG_END;
        return APT_OK;
    }
    if (d->node[t].type != APT_CB_TEXT)
        return apt_err(s->err, APT_EPROTO, "v2: \"type\" is a %s, not text", apt_cbor_type_name(&d->node[t]));
    return apt_err(s->err, APT_EPROTO, "v2: \"type\" \"%.*s\" is not start, image or end",
                   d->node[t].u > 32 ? 32 : (int)d->node[t].u, (const char *)d->node[t].ptr);
}

int apt_v2_decode(const void *data, size_t len, const char *channel, apt_stream_msg *m, apt_error *err)
{
    apt_stream_msg_clear(m);
    m->version = 2;
    apt_cbor_doc doc = {0};
    int rc = apt_cbor_parse(data, len, APT_STREAM_MAX_NODES, &doc, err);
    if (!rc) {
        v2 s = {.d = &doc, .m = m, .err = err};
        rc = decode_root(&s, channel);
    }
    apt_cbor_doc_free(&doc);
    if (rc) {
        apt_stream_msg_clear(m);
        m->version = 2;
    }
    return rc;
}
