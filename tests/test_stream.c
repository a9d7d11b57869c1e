/* test_stream.c - Eiger stream v1/v2 codecs: encode -> decode round trips for every message kind, header_detail,
 * encoding, element size and channel layout; user_data CBOR -> JSON against jansson's own normalisation; and the
 * error paths (each checked for its code and for a message that names the fault). Hand-built CBOR comes from
 * libcbor's encoder so the malformed messages are exactly the bytes intended. */
#include <cbor.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apt_test.h"
#include "aptomo/codec.h"
#include "aptomo/stream.h"

enum { W = 40, H = 24 };

static const apt_encoding ENCS[] = {APT_ENC_NONE, APT_ENC_BSLZ4, APT_ENC_LZ4, APT_ENC_H5LZ4};

static void pattern(uint8_t *raw, uint32_t elem, int seed)
{
    for (size_t i = 0; i < (size_t)W * H; i++) {
        uint32_t v = (uint32_t)(i * 2654435761u + (uint32_t)seed * 40503u) >> (elem == 1 ? 13 : elem == 2 ? 9 : 0);
        memcpy(raw + i * elem, &v, elem); /* little-endian host */
    }
}

/* Encoded pixels of one test frame in b. */
static apt_pixels make_pixels(apt_bytes *b, apt_encoding enc, uint32_t elem, int seed, const char *channel)
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

static void to_bufs(const apt_parts *p, apt_buf *bufs)
{
    for (size_t i = 0; i < p->n; i++)
        bufs[i] = (apt_buf){p->part[i].data, p->part[i].len};
}

static int same_pixels(const apt_pixels *a, const apt_pixels *b)
{
    return a->width == b->width && a->height == b->height && a->elem_size == b->elem_size && a->enc == b->enc &&
           a->blob_len == b->blob_len && !memcmp(a->blob, b->blob, a->blob_len);
}

static int same_num(double a, double b) { return (isnan(a) && isnan(b)) || a == b; }

static void fill_config(apt_stream_msg *m)
{
    apt_detector_config *c = &m->config;
    c->present = 1;
    c->beam_center_x = 19.75;
    c->beam_center_y = 11.5;
    c->width = W;
    c->height = H;
    c->n_images = 123456;
    c->elem_size = 2;
    c->energy_eV = 8048.123;
    c->distance_m = 1.234567;
    c->pixel_x_m = 75e-6;
    c->pixel_y_m = 7.5e-5;
    c->count_time_s = 1e-3;
    c->frame_time_s = 1.1e-3;
    c->saturation = 65535;
}

static void check_config(const apt_detector_config *a, const apt_detector_config *b)
{
    CHECK(a->present == b->present);
    CHECK(same_num(a->beam_center_x, b->beam_center_x) && same_num(a->beam_center_y, b->beam_center_y));
    CHECK(a->width == b->width && a->height == b->height);
    CHECK(a->n_images == b->n_images);
    CHECK(a->elem_size == b->elem_size);
    CHECK(same_num(a->energy_eV, b->energy_eV) && same_num(a->distance_m, b->distance_m));
    CHECK(same_num(a->pixel_x_m, b->pixel_x_m) && same_num(a->pixel_y_m, b->pixel_y_m));
    CHECK(same_num(a->count_time_s, b->count_time_s) && same_num(a->frame_time_s, b->frame_time_s));
    CHECK(a->saturation == b->saturation);
}

static const char *USER = "{\"angle_deg\":12.5,\"positions_m\":[[1e-06,-2e-06],[3.5e-06,4e-06]]}";

static void test_v1_start(void)
{
    apt_bytes mb = {0};
    apt_pixels mask = make_pixels(&mb, APT_ENC_NONE, 4, 7, "");
    for (int d = 0; d < 3; d++)
        for (int app = 0; app < 2; app++) {
            apt_stream_msg m, r;
            apt_stream_msg_init(&m);
            apt_stream_msg_init(&r);
            m.type = APT_MSG_START;
            m.series_id = 42 + (uint64_t)d;
            m.header_detail = (apt_header_detail)d;
            fill_config(&m);
            m.mask = mask;
            if (app) {
                m.user_json = USER;
                m.user_json_len = strlen(USER);
            }
            apt_parts parts = {0};
            apt_buf bufs[APT_MAX_PARTS];
            apt_error err = {0};
            CHECK_OK(apt_v1_encode(&m, &parts, &err), &err);
            size_t want = (d == 0 ? 1 : d == 1 ? 2 : 8) + (size_t)app;
            CHECK_MSG(parts.n == want, "detail %d app %d: %zu parts", d, app, parts.n);
            to_bufs(&parts, bufs);
            CHECK_OK(apt_v1_decode(bufs, parts.n, &r, &err), &err);
            CHECK(r.version == 1 && r.type == APT_MSG_START && r.series_id == m.series_id);
            CHECK(r.header_detail == (apt_header_detail)d);
            if (d == 0) {
                apt_stream_msg e;
                apt_stream_msg_init(&e);
                check_config(&r.config, &e.config); /* nothing sent, everything absent */
            } else {
                check_config(&r.config, &m.config);
            }
            if (d == 2)
                CHECK(same_pixels(&r.mask, &mask) && r.mask.blob == bufs[5].ptr);
            else
                CHECK(r.mask.blob == NULL);
            if (app)
                CHECK(r.user_json_len == strlen(USER) && !memcmp(r.user_json, USER, r.user_json_len) &&
                      r.user_json == (const char *)bufs[want - 1].ptr);
            else
                CHECK(r.user_json == NULL);
            apt_stream_msg_clear(&r);
            apt_parts_free(&parts);
        }
    apt_bytes_free(&mb);
}

static void test_v1_image(void)
{
    static const uint32_t elems[] = {1, 2, 4};
    for (size_t e = 0; e < 4; e++)
        for (size_t k = 0; k < 3; k++)
            for (int app = 0; app < 2; app++) {
                apt_bytes b = {0};
                apt_stream_msg m, r;
                apt_stream_msg_init(&m);
                apt_stream_msg_init(&r);
                m.type = APT_MSG_IMAGE;
                m.series_id = 9;
                m.image_id = 1000 + e * 10 + k;
                m.pixels = make_pixels(&b, ENCS[e], elems[k], (int)(e + k), "");
                if (app) {
                    m.user_json = "{\"pos_m\":[1e-06,2e-06]}";
                    m.user_json_len = strlen(m.user_json);
                }
                apt_parts parts = {0};
                apt_buf bufs[APT_MAX_PARTS];
                apt_error err = {0};
                int rc = apt_v1_encode(&m, &parts, &err);
                if (ENCS[e] == APT_ENC_H5LZ4) { /* no v1 name for HDF5-framed LZ4 */
                    CHECK_MSG(rc == APT_ENOTSUP && strstr(err.msg, "h5lz4"), "rc=%d %s", rc, err.msg);
                    apt_bytes_free(&b);
                    apt_parts_free(&parts);
                    continue;
                }
                CHECK_OK(rc, &err);
                CHECK(parts.n == 4 + (size_t)app);
                to_bufs(&parts, bufs);
                CHECK_OK(apt_v1_decode(bufs, parts.n, &r, &err), &err);
                CHECK(r.type == APT_MSG_IMAGE && r.series_id == 9 && r.image_id == m.image_id);
                CHECK_MSG(same_pixels(&r.pixels, &m.pixels), "enc %d elem %u", (int)ENCS[e], elems[k]);
                CHECK(r.pixels.blob == bufs[2].ptr); /* borrowed, not copied */
                CHECK(r.n_chan == 1 && same_pixels(&r.chan[0], &m.pixels));
                CHECK(app ? r.user_json_len == m.user_json_len && !memcmp(r.user_json, m.user_json, m.user_json_len)
                          : r.user_json == NULL);
                /* the dimage_d part names the encoding the way the detector does */
                char want[64];
                snprintf(want, sizeof want, "\"encoding\":\"%s\"", apt_encoding_name_v1(ENCS[e], elems[k]));
                CHECK(memmem(bufs[1].ptr, bufs[1].len, want, strlen(want)) != NULL);
                apt_stream_msg_clear(&r);
                apt_parts_free(&parts);
                apt_bytes_free(&b);
            }
}

static void test_end(void)
{
    apt_stream_msg m, r;
    apt_stream_msg_init(&m);
    apt_stream_msg_init(&r);
    m.type = APT_MSG_END;
    m.series_id = 77;
    snprintf(m.series_unique_id, sizeof m.series_unique_id, "uid-77");
    apt_parts parts = {0};
    apt_buf bufs[APT_MAX_PARTS];
    apt_bytes out = {0};
    apt_error err = {0};
    CHECK_OK(apt_v1_encode(&m, &parts, &err), &err);
    CHECK(parts.n == 1);
    to_bufs(&parts, bufs);
    CHECK_OK(apt_v1_decode(bufs, 1, &r, &err), &err);
    CHECK(r.type == APT_MSG_END && r.series_id == 77 && r.version == 1);
    CHECK_OK(apt_v2_encode(&m, &out, &err), &err);
    CHECK(out.len > 3 && out.data[0] == 0xd9 && out.data[1] == 0xd9 && out.data[2] == 0xf7);
    CHECK(apt_stream_sniff(out.data, out.len) == 2 && apt_stream_sniff(bufs[0].ptr, bufs[0].len) == 1);
    CHECK_OK(apt_v2_decode(out.data, out.len, NULL, &r, &err), &err);
    CHECK(r.type == APT_MSG_END && r.series_id == 77 && r.version == 2 && !strcmp(r.series_unique_id, "uid-77"));
    CHECK(apt_stream_sniff("hello", 5) == 0 && apt_stream_sniff("{\"a\":1}", 7) == 0);
    apt_stream_msg_clear(&r);
    apt_parts_free(&parts);
    apt_bytes_free(&out);
}

static void test_v2_start(void)
{
    apt_bytes mb = {0}, out = {0};
    apt_stream_msg m, r;
    apt_error err = {0};
    apt_stream_msg_init(&m);
    apt_stream_msg_init(&r);
    m.type = APT_MSG_START;
    m.series_id = 5;
    snprintf(m.series_unique_id, sizeof m.series_unique_id, "0123456789abcdef");
    fill_config(&m);
    snprintf(m.channels[0], APT_NAME_LEN, "threshold_1");
    snprintf(m.channels[1], APT_NAME_LEN, "threshold_2");
    m.n_channels = 2;
    m.mask = make_pixels(&mb, APT_ENC_NONE, 4, 3, "threshold_2");
    m.user_json = USER;
    m.user_json_len = strlen(USER);
    CHECK_OK(apt_v2_encode(&m, &out, &err), &err);
    CHECK_OK(apt_v2_decode(out.data, out.len, NULL, &r, &err), &err);
    CHECK(r.version == 2 && r.type == APT_MSG_START && r.series_id == 5);
    CHECK(!strcmp(r.series_unique_id, m.series_unique_id));
    check_config(&r.config, &m.config);
    CHECK(r.n_channels == 2 && !strcmp(r.channels[0], "threshold_1") && !strcmp(r.channels[1], "threshold_2"));
    CHECK(same_pixels(&r.mask, &m.mask) && !strcmp(r.mask.channel, "threshold_2"));
    CHECK(r.mask.blob > out.data && r.mask.blob + r.mask.blob_len <= out.data + out.len);
    CHECK(r.owned_json && r.user_json == r.owned_json && r.user_json_len == strlen(r.owned_json));
    json_t *ju = json_loads(USER, 0, NULL), *jr = json_loads(r.owned_json, 0, NULL);
    CHECK(ju && jr && json_equal(ju, jr)); /* same numbers, bit for bit */
    json_decref(ju);
    json_decref(jr);
    /* an explicit channel that the start message does not list is an error naming it */
    int rc = apt_v2_decode(out.data, out.len, "difference", &r, &err);
    CHECK_MSG(rc == APT_EPROTO && strstr(err.msg, "difference"), "%d %s", rc, err.msg);
    CHECK(r.owned_json == NULL && r.type == APT_MSG_NONE); /* cleared on error */
    apt_stream_msg_clear(&r);
    apt_bytes_free(&mb);
    apt_bytes_free(&out);
}

static void test_v2_image(void)
{
    static const uint32_t elems[] = {1, 2, 4};
    static const char *names[] = {"threshold_1", "threshold_2", "difference", "threshold_4"};
    for (size_t e = 0; e < 4; e++)
        for (size_t k = 0; k < 3; k++)
            for (int nch = 1; nch <= APT_MAX_CHANNELS; nch++) {
                apt_bytes b[APT_MAX_CHANNELS] = {{0}}, out = {0};
                apt_stream_msg m, r;
                apt_error err = {0};
                apt_stream_msg_init(&m);
                apt_stream_msg_init(&r);
                m.type = APT_MSG_IMAGE;
                m.series_id = 3;
                m.image_id = 17 + (uint64_t)nch;
                /* with one channel, use a non-threshold name: the default is then the first channel */
                for (int c = 0; c < nch; c++)
                    m.chan[c] = make_pixels(&b[c], ENCS[e], elems[k], c * 5 + (int)k,
                                            nch == 1 ? "sum" : names[(c + 1) % nch]);
                m.n_chan = nch;
                int rc = apt_v2_encode(&m, &out, &err);
                if (ENCS[e] == APT_ENC_LZ4) { /* a raw LZ4 block has no v2 form */
                    CHECK_MSG(rc == APT_ENOTSUP, "rc=%d %s", rc, err.msg);
                } else {
                    CHECK_OK(rc, &err);
                    CHECK_OK(apt_v2_decode(out.data, out.len, NULL, &r, &err), &err);
                    CHECK(r.type == APT_MSG_IMAGE && r.image_id == m.image_id && r.n_chan == nch);
                    for (int c = 0; c < nch; c++)
                        CHECK(same_pixels(&r.chan[c], &m.chan[c]) && !strcmp(r.chan[c].channel, m.chan[c].channel));
                    /* NULL selects threshold_1 when present, else the first channel */
                    const char *want = nch == 1 ? "sum" : "threshold_1";
                    CHECK_MSG(!strcmp(r.pixels.channel, want), "got %s", r.pixels.channel);
                    for (int c = 0; c < nch; c++) {
                        CHECK_OK(apt_v2_decode(out.data, out.len, m.chan[c].channel, &r, &err), &err);
                        CHECK(same_pixels(&r.pixels, &m.chan[c]) && !strcmp(r.pixels.channel, m.chan[c].channel));
                    }
                    rc = apt_v2_decode(out.data, out.len, "nope", &r, &err);
                    CHECK_MSG(rc == APT_EPROTO && strstr(err.msg, "nope"), "%s", err.msg);
                }
                apt_stream_msg_clear(&r);
                for (int c = 0; c < nch; c++)
                    apt_bytes_free(&b[c]);
                apt_bytes_free(&out);
            }
}

/* user_data: the JSON we give, as CBOR on the wire, comes back as jansson's compact form of that JSON. */
static void test_user_data(void)
{
    static const char *cases[] = {
        "{\"angle_deg\": 37.5, \"positions_m\": [[1.5e-6, -2.25e-6], [0.0, 1e300]]}",
        "{\"a\": {\"b\": {\"c\": [1, -2, -9223372036854775808, 9223372036854775807]}}, \"t\": true, \"f\": false, "
        "\"n\": null}",
        "{\"unicode\": \"\\u00e9t\\u00e9 \\u4e2d \\ud83d\\ude00\", \"empty\": {}, \"list\": [], \"s\": \"\"}",
        "[1, 2.5, \"x\"]", "42", "\"just text\"", "-0.0", "{\"deep\": [[[[[[[[[[1]]]]]]]]]]}",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int type = APT_MSG_START; type <= APT_MSG_IMAGE; type++) {
            apt_bytes b = {0}, out = {0};
            apt_stream_msg m, r;
            apt_error err = {0};
            apt_stream_msg_init(&m);
            apt_stream_msg_init(&r);
            m.type = (apt_msg_type)type;
            m.series_id = 1;
            if (type == APT_MSG_IMAGE) {
                m.chan[0] = make_pixels(&b, APT_ENC_NONE, 2, 1, "threshold_1");
                m.n_chan = 1;
            }
            m.user_json = cases[i];
            m.user_json_len = strlen(cases[i]);
            CHECK_OK(apt_v2_encode(&m, &out, &err), &err);
            CHECK_OK(apt_v2_decode(out.data, out.len, NULL, &r, &err), &err);
            json_t *j = json_loads(cases[i], JSON_DECODE_ANY, NULL);
            char *want = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
            CHECK_MSG(r.user_json && r.user_json_len == strlen(want) && !memcmp(r.user_json, want, r.user_json_len),
                      "case %zu: got %.*s want %s", i, (int)r.user_json_len, r.user_json ? r.user_json : "", want);
            free(want);
            json_decref(j);
            apt_stream_msg_clear(&r);
            apt_bytes_free(&b);
            apt_bytes_free(&out);
        }
    }
    /* invalid JSON and too-deep JSON are refused by the encoder, naming user_json */
    apt_stream_msg m;
    apt_bytes out = {0};
    apt_error err = {0};
    apt_stream_msg_init(&m);
    m.type = APT_MSG_START;
    m.user_json = "{\"a\": }";
    m.user_json_len = strlen(m.user_json);
    CHECK(apt_v2_encode(&m, &out, &err) == APT_EINVAL && strstr(err.msg, "user_json"));
    char deep[64] = {0};
    memset(deep, '[', 20);
    deep[20] = '1';
    memset(deep + 21, ']', 20);
    m.user_json = deep;
    m.user_json_len = strlen(deep);
    CHECK(apt_v2_encode(&m, &out, &err) == APT_ERANGE && strstr(err.msg, "user_json"));
    apt_bytes_free(&out);
}

/* ---- hand-built CBOR ---- */

typedef struct cb {
    uint8_t d[8192];
    size_t n;
} cb;

static void c_raw(cb *c, const void *p, size_t n)
{
    memcpy(c->d + c->n, p, n);
    c->n += n;
}
static void c_map(cb *c, size_t n) { c->n += cbor_encode_map_start(n, c->d + c->n, sizeof c->d - c->n); }
static void c_arr(cb *c, size_t n) { c->n += cbor_encode_array_start(n, c->d + c->n, sizeof c->d - c->n); }
static void c_uint(cb *c, uint64_t v) { c->n += cbor_encode_uint(v, c->d + c->n, sizeof c->d - c->n); }
static void c_tag(cb *c, uint64_t v) { c->n += cbor_encode_tag(v, c->d + c->n, sizeof c->d - c->n); }
static void c_text(cb *c, const char *s)
{
    c->n += cbor_encode_string_start(strlen(s), c->d + c->n, sizeof c->d - c->n);
    c_raw(c, s, strlen(s));
}
static void c_bytes(cb *c, const void *p, size_t n)
{
    c->n += cbor_encode_bytestring_start(n, c->d + c->n, sizeof c->d - c->n);
    c_raw(c, p, n);
}

/* An image message with one channel whose pixel item the caller writes (after the call). */
static void image_head(cb *c, size_t extra_keys)
{
    c->n = 0;
    c_tag(c, 55799);
    c_map(c, 4 + extra_keys);
    c_text(c, "type");
    c_text(c, "image");
    c_text(c, "series_id");
    c_uint(c, 1);
    c_text(c, "image_id");
    c_uint(c, 0);
    c_text(c, "data");
    c_map(c, 1);
    c_text(c, "threshold_1");
}

static void v2_fails(const cb *c, int code, const char *needle, int line)
{
    apt_stream_msg r;
    apt_error err = {0};
    apt_stream_msg_init(&r);
    int rc = apt_v2_decode(c->d, c->n, NULL, &r, &err);
    CHECK_MSG(rc == code && strstr(err.msg, needle), "line %d: rc=%d (want %d) msg '%s' (want '%s')", line, rc,
              code, err.msg, needle);
    CHECK(r.owned_json == NULL && r.type == APT_MSG_NONE);
    apt_stream_msg_clear(&r);
}
#define V2_FAILS(c, code, needle) v2_fails(c, code, needle, __LINE__)

static void test_v2_errors(void)
{
    static cb c;
    uint8_t raw[W * H * 4] = {0};
    c.n = 0; /* not a map */
    c_arr(&c, 2);
    c_uint(&c, 1);
    c_uint(&c, 2);
    V2_FAILS(&c, APT_EPROTO, "not a CBOR map");
    c.n = 0; /* a root tag other than 55799 */
    c_tag(&c, 1);
    c_map(&c, 0);
    V2_FAILS(&c, APT_EPROTO, "tag 1");
    c.n = 0;
    c_map(&c, 1);
    c_text(&c, "series_id");
    c_uint(&c, 1);
    V2_FAILS(&c, APT_EPROTO, "\"type\"");
    c.n = 0;
    c_map(&c, 2);
    c_text(&c, "type");
    c_text(&c, "bogus");
    c_text(&c, "series_id");
    c_uint(&c, 1);
    V2_FAILS(&c, APT_EPROTO, "bogus");
    c.n = 0;
    c_map(&c, 3);
    c_text(&c, "type");
    c_text(&c, "end");
    c_text(&c, "series_id");
    c_uint(&c, 1);
    c_text(&c, "type");
    c_text(&c, "end");
    V2_FAILS(&c, APT_EPROTO, "duplicate key");
    c.n = 0;
    c_map(&c, 2);
    c_text(&c, "type");
    c_text(&c, "end");
    c_text(&c, "series_id");
    c_text(&c, "1");
    V2_FAILS(&c, APT_EPROTO, "series_id");
    c.n = 0;
    c_map(&c, 3);
    c_text(&c, "type");
    c_text(&c, "end");
    c_text(&c, "series_id");
    c_uint(&c, 1);
    c_text(&c, "series_unique_id");
    c_text(&c, "0123456789012345678901234567890123456789012345678901234567890123456789");
    V2_FAILS(&c, APT_ERANGE, "series_unique_id");
    c.n = 0;
    c_map(&c, 3);
    c_text(&c, "type");
    c_text(&c, "start");
    c_text(&c, "series_id");
    c_uint(&c, 1);
    c_text(&c, "image_dtype");
    c_text(&c, "float32");
    V2_FAILS(&c, APT_ENOTSUP, "float32");

    /* pixel items */
    image_head(&c, 0); /* tag 41 instead of 40 */
    c_tag(&c, 41);
    V2_FAILS(&c, APT_EPROTO, "truncated"); /* (the tag's content is missing) */
    image_head(&c, 0);
    c_tag(&c, 41);
    c_arr(&c, 2);
    c_arr(&c, 2);
    c_uint(&c, H);
    c_uint(&c, W);
    c_tag(&c, 69);
    c_bytes(&c, raw, (size_t)W * H * 2);
    V2_FAILS(&c, APT_EPROTO, "tag 41");
    image_head(&c, 0); /* big-endian typed array */
    c_tag(&c, 40);
    c_arr(&c, 2);
    c_arr(&c, 2);
    c_uint(&c, H);
    c_uint(&c, W);
    c_tag(&c, 65);
    c_bytes(&c, raw, (size_t)W * H * 2);
    V2_FAILS(&c, APT_ENOTSUP, "65");
    image_head(&c, 0); /* raw blob one byte short */
    c_tag(&c, 40);
    c_arr(&c, 2);
    c_arr(&c, 2);
    c_uint(&c, H);
    c_uint(&c, W);
    c_tag(&c, 69);
    c_bytes(&c, raw, (size_t)W * H * 2 - 1);
    V2_FAILS(&c, APT_EPROTO, "data.threshold_1");
    image_head(&c, 0); /* zero height */
    c_tag(&c, 40);
    c_arr(&c, 2);
    c_arr(&c, 2);
    c_uint(&c, 0);
    c_uint(&c, W);
    c_tag(&c, 69);
    c_bytes(&c, raw, 0);
    V2_FAILS(&c, APT_ERANGE, "dimensions");
    image_head(&c, 0); /* width past 65536 */
    c_tag(&c, 40);
    c_arr(&c, 2);
    c_arr(&c, 2);
    c_uint(&c, 1);
    c_uint(&c, 65537);
    c_tag(&c, 64);
    c_bytes(&c, raw, 16);
    V2_FAILS(&c, APT_ERANGE, "65537");
    image_head(&c, 0); /* unknown compression */
    c_tag(&c, 40);
    c_arr(&c, 2);
    c_arr(&c, 2);
    c_uint(&c, H);
    c_uint(&c, W);
    c_tag(&c, 69);
    c_tag(&c, 56500);
    c_arr(&c, 3);
    c_text(&c, "zstd");
    c_uint(&c, 2);
    c_bytes(&c, raw, 64);
    V2_FAILS(&c, APT_ENOTSUP, "zstd");
    apt_bytes b = {0};
    apt_pixels px = make_pixels(&b, APT_ENC_BSLZ4, 2, 1, "");
    image_head(&c, 0); /* bslz4 element size disagreeing with the typed array */
    c_tag(&c, 40);
    c_arr(&c, 2);
    c_arr(&c, 2);
    c_uint(&c, H);
    c_uint(&c, W);
    c_tag(&c, 70);
    c_tag(&c, 56500);
    c_arr(&c, 3);
    c_text(&c, "bslz4");
    c_uint(&c, 4);
    c_bytes(&c, px.blob, px.blob_len);
    V2_FAILS(&c, APT_EPROTO, "bslz4 header announces");
    image_head(&c, 0);
    c_tag(&c, 40);
    c_arr(&c, 2);
    c_arr(&c, 2);
    c_uint(&c, H);
    c_uint(&c, W);
    c_tag(&c, 69);
    c_tag(&c, 56500);
    c_arr(&c, 3);
    c_text(&c, "bslz4");
    c_uint(&c, 4);
    c_bytes(&c, px.blob, px.blob_len);
    V2_FAILS(&c, APT_EPROTO, "element size 4");
    image_head(&c, 0); /* bslz4 announcing another frame size */
    c_tag(&c, 40);
    c_arr(&c, 2);
    c_arr(&c, 2);
    c_uint(&c, H - 1);
    c_uint(&c, W);
    c_tag(&c, 69);
    c_tag(&c, 56500);
    c_arr(&c, 3);
    c_text(&c, "bslz4");
    c_uint(&c, 2);
    c_bytes(&c, px.blob, px.blob_len);
    V2_FAILS(&c, APT_EPROTO, "announces");
    apt_bytes_free(&b);
    image_head(&c, 1); /* user_data holding a byte string has no JSON form */
    c_tag(&c, 40);
    c_arr(&c, 2);
    c_arr(&c, 2);
    c_uint(&c, 1);
    c_uint(&c, 4);
    c_tag(&c, 64);
    c_bytes(&c, raw, 4);
    c_text(&c, "user_data");
    c_map(&c, 1);
    c_text(&c, "k");
    c_bytes(&c, raw, 3);
    V2_FAILS(&c, APT_EPROTO, "user_data");

    /* structure: truncation, trailing bytes, indefinite length, depth bombs, absurd declared sizes */
    c.n = 0;
    c_map(&c, 2);
    c_text(&c, "type");
    V2_FAILS(&c, APT_EPROTO, "truncated");
    c.n = 0;
    c_map(&c, 0);
    c_uint(&c, 0);
    V2_FAILS(&c, APT_EPROTO, "trailing");
    c.n = 0;
    c_raw(&c, "\xbf\x64type\x63" "end\xff", 11);
    V2_FAILS(&c, APT_ENOTSUP, "indefinite");
    c.n = 0;
    for (int i = 0; i < 1000; i++)
        c_raw(&c, "\x81", 1);
    c_raw(&c, "\x00", 1);
    V2_FAILS(&c, APT_ERANGE, "nesting");
    c.n = 0;
    for (int i = 0; i < 1000; i++)
        c_tag(&c, 55799);
    c_map(&c, 0);
    V2_FAILS(&c, APT_ERANGE, "nesting");
    c.n = 0; /* 2^40 elements declared in a 20-byte message: refused before any allocation */
    c_raw(&c, "\x9b\x00\x00\x01\x00\x00\x00\x00\x00", 9);
    c_raw(&c, "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 11);
    CHECK(c.n == 20);
    V2_FAILS(&c, APT_EPROTO, "exceeds");
    c.n = 0;
    c_raw(&c, "\xbb\xff\xff\xff\xff\xff\xff\xff\xff", 9);
    c_raw(&c, "\x00\x00\x00", 3);
    V2_FAILS(&c, APT_EPROTO, "map");
    c.n = 0; /* a byte string claiming 2^62 bytes */
    c_raw(&c, "\x5b\x40\x00\x00\x00\x00\x00\x00\x00\x01\x02", 11);
    V2_FAILS(&c, APT_EPROTO, "truncated");
    V2_FAILS(&(cb){.n = 0}, APT_EPROTO, "empty");
}

/* ---- v1 errors ---- */

typedef struct v1msg {
    const char *part[APT_MAX_PARTS];
    size_t len[APT_MAX_PARTS];
    size_t n;
} v1msg;

static void v1_fails(const v1msg *v, int code, const char *needle, int line)
{
    apt_buf bufs[APT_MAX_PARTS];
    for (size_t i = 0; i < v->n; i++)
        bufs[i] = (apt_buf){(const uint8_t *)v->part[i], v->len[i] ? v->len[i] : strlen(v->part[i])};
    apt_stream_msg r;
    apt_error err = {0};
    apt_stream_msg_init(&r);
    int rc = apt_v1_decode(bufs, v->n, &r, &err);
    CHECK_MSG(rc == code && strstr(err.msg, needle), "line %d: rc=%d (want %d) msg '%s' (want '%s')", line, rc,
              code, err.msg, needle);
    CHECK(r.type == APT_MSG_NONE);
    apt_stream_msg_clear(&r);
}
#define V1_FAILS(code, needle, ...)                                                                        \
    do {                                                                                                   \
        v1msg v_ = {.part = {__VA_ARGS__}};                                                                \
        while (v_.n < APT_MAX_PARTS && v_.part[v_.n])                                                      \
            v_.n++;                                                                                        \
        v1_fails(&v_, code, needle, __LINE__);                                                             \
    } while (0)

static void test_v1_errors(void)
{
    static char raw16[W * H * 2 + 1];
    memset(raw16, 'x', sizeof raw16 - 1);
    const char *img = "{\"htype\":\"dimage-1.0\",\"series\":1,\"frame\":2,\"hash\":\"\"}";
    const char *cfg = "{\"htype\":\"dconfig-1.0\",\"start_time\":0,\"stop_time\":1,\"real_time\":1}";
    char d[256];
    V1_FAILS(APT_EPROTO, "dfoo-1.0", "{\"htype\":\"dfoo-1.0\"}");
    V1_FAILS(APT_EPROTO, "htype", "{\"series\":1}");
    V1_FAILS(APT_EPROTO, "invalid JSON", "{\"htype\":\"dheader-1.0\",");
    V1_FAILS(APT_EPROTO, "duplicate", "{\"htype\":\"dseries_end-1.0\",\"series\":1,\"series\":2}");
    V1_FAILS(APT_EPROTO, "not an object", "[1,2]");
    V1_FAILS(APT_EPROTO, "\"series\"", "{\"htype\":\"dseries_end-1.0\",\"series\":-1}");
    V1_FAILS(APT_EPROTO, "expected 1 part", "{\"htype\":\"dseries_end-1.0\",\"series\":1}", "{}");
    V1_FAILS(APT_EPROTO, "2 or 3 parts", "{\"htype\":\"dheader-1.0\",\"series\":1,\"header_detail\":\"basic\"}");
    V1_FAILS(APT_EPROTO, "8 or 9 parts", "{\"htype\":\"dheader-1.0\",\"series\":1,\"header_detail\":\"all\"}",
             "{}", "{}");
    V1_FAILS(APT_EPROTO, "header_detail", "{\"htype\":\"dheader-1.0\",\"series\":1,\"header_detail\":\"most\"}");
    V1_FAILS(APT_EPROTO, "photon_energy", "{\"htype\":\"dheader-1.0\",\"series\":1,\"header_detail\":\"basic\"}",
             "{\"photon_energy\":\"8 keV\"}");
    V1_FAILS(APT_ERANGE, "x_pixels_in_detector",
             "{\"htype\":\"dheader-1.0\",\"series\":1,\"header_detail\":\"basic\"}", "{\"x_pixels_in_detector\":0}");
    V1_FAILS(APT_ENOTSUP, "bit_depth_image", "{\"htype\":\"dheader-1.0\",\"series\":1,\"header_detail\":\"basic\"}",
             "{\"bit_depth_image\":12}");
    /* header_detail all: the mask blob must be exactly w*h*4 bytes */
    {
        const char *h = "{\"htype\":\"dheader-1.0\",\"series\":1,\"header_detail\":\"all\"}";
        const char *c = "{\"x_pixels_in_detector\":4,\"y_pixels_in_detector\":2}";
        const char *ff = "{\"htype\":\"dflatfield-1.0\",\"shape\":[4,2],\"type\":\"float32\"}";
        const char *mk = "{\"htype\":\"dpixelmask-1.0\",\"shape\":[4,2],\"type\":\"uint32\"}";
        const char *mk3 = "{\"htype\":\"dpixelmask-1.0\",\"shape\":[4,3],\"type\":\"uint32\"}";
        const char *ct = "{\"htype\":\"dcountrate_table-1.0\",\"shape\":[2,2],\"type\":\"float32\"}";
        static const char b32[33] = "0123456789abcdef0123456789abcdef", b16[17] = "0123456789abcdef";
        v1msg v = {{h, c, ff, b32, mk, b32, ct, b16}, {0, 0, 0, 32, 0, 31, 0, 16}, 8};
        v1_fails(&v, APT_EPROTO, "dpixelmask-1.0 (part 5): blob has 31 bytes", __LINE__);
        v.part[4] = mk3;
        v.len[5] = 32;
        v1_fails(&v, APT_EPROTO, "dpixelmask-1.0 (part 5): blob has 32 bytes", __LINE__);
        v.part[4] = mk;
        v.part[2] = mk;
        v1_fails(&v, APT_EPROTO, "dflatfield-1.0", __LINE__);
        v.part[2] = ff;
        v.part[6] = ff;
        v1_fails(&v, APT_EPROTO, "dcountrate_table-1.0", __LINE__);
        v.part[6] = ct;
        apt_buf bufs[8];
        for (int i = 0; i < 8; i++)
            bufs[i] = (apt_buf){(const uint8_t *)v.part[i], v.len[i] ? v.len[i] : strlen(v.part[i])};
        apt_stream_msg r;
        apt_error err = {0};
        apt_stream_msg_init(&r);
        CHECK_OK(apt_v1_decode(bufs, 8, &r, &err), &err); /* and the fixed message passes */
        CHECK(r.mask.width == 4 && r.mask.height == 2 && r.mask.blob == (const uint8_t *)b32);
        apt_stream_msg_clear(&r);
    }
    /* images */
#define DIMG(shape, type, enc, extra)                                                                         \
    (snprintf(d, sizeof d, "{\"htype\":\"dimage_d-1.0\",\"shape\":%s,\"type\":\"%s\",\"encoding\":\"%s\"%s}",  \
              shape, type, enc, extra), d)
    v1msg v = {{img, DIMG("[40,24]", "uint16", "<", ""), raw16, cfg}, {0, 0, W * H * 2, 0}, 4};
    {
        apt_buf bufs[4];
        for (int i = 0; i < 4; i++)
            bufs[i] = (apt_buf){(const uint8_t *)v.part[i], v.len[i] ? v.len[i] : strlen(v.part[i])};
        apt_stream_msg r;
        apt_error err = {0};
        apt_stream_msg_init(&r);
        CHECK_OK(apt_v1_decode(bufs, 4, &r, &err), &err);
        CHECK(r.pixels.width == 40 && r.pixels.height == 24 && r.image_id == 2);
        apt_stream_msg_clear(&r);
    }
    v.len[2] = W * H * 2 - 1;
    v1_fails(&v, APT_EPROTO, "raw blob has 1919 bytes", __LINE__);
    v.len[2] = W * H * 2;
    v.n = 3;
    v1_fails(&v, APT_EPROTO, "4 or 5 parts", __LINE__);
    v.n = 4;
    v.part[1] = DIMG("[0,24]", "uint16", "<", "");
    v1_fails(&v, APT_ERANGE, "shape", __LINE__);
    v.part[1] = DIMG("[40,70000]", "uint16", "<", "");
    v1_fails(&v, APT_ERANGE, "70000", __LINE__);
    v.part[1] = DIMG("[40]", "uint16", "<", "");
    v1_fails(&v, APT_EPROTO, "shape", __LINE__);
    v.part[1] = DIMG("[40,24]", "uint32", "bs16-lz4<", "");
    v1_fails(&v, APT_EPROTO, "does not match", __LINE__);
    v.part[1] = DIMG("[40,24]", "uint16", "zstd<", "");
    v1_fails(&v, APT_ENOTSUP, "zstd<", __LINE__);
    v.part[1] = DIMG("[40,24]", "float32", "<", "");
    v1_fails(&v, APT_ENOTSUP, "float32", __LINE__);
    v.part[1] = DIMG("[40,24]", "uint16", "<", ",\"size\":5");
    v1_fails(&v, APT_EPROTO, "\"size\" 5", __LINE__);
    v.part[1] = DIMG("[40,24]", "uint16", "<", "");
    v.part[3] = img;
    v1_fails(&v, APT_EPROTO, "dconfig-1.0", __LINE__);
    v.part[3] = cfg;
    /* bslz4 blob whose header announces another frame size */
    apt_bytes b = {0};
    apt_pixels px = make_pixels(&b, APT_ENC_BSLZ4, 2, 4, "");
    v.part[2] = (const char *)px.blob;
    v.len[2] = px.blob_len;
    v.part[1] = DIMG("[40,23]", "uint16", "bs16-lz4<", "");
    v1_fails(&v, APT_EPROTO, "announces", __LINE__);
    v.part[1] = DIMG("[40,24]", "uint16", "lz4<", ""); /* an LZ4 block too small to hold the frame is fine (no */
    v.len[2] = 0;                                      /* decompression here) but an empty one is not */
    v1_fails(&v, APT_EPROTO, "LZ4", __LINE__);
    apt_bytes_free(&b);
    apt_stream_msg r;
    apt_error err = {0};
    apt_stream_msg_init(&r);
    CHECK(apt_v1_decode(NULL, 0, &r, &err) == APT_EPROTO && strstr(err.msg, "empty"));
#undef DIMG
}

/* Decoding into the same message repeatedly must not leak (ASan) nor keep stale fields. */
static void test_reuse(void)
{
    apt_bytes out = {0};
    apt_stream_msg m, r;
    apt_error err = {0};
    apt_stream_msg_init(&m);
    apt_stream_msg_init(&r);
    m.type = APT_MSG_START;
    m.series_id = 8;
    m.user_json = "{\"angle_deg\":1}";
    m.user_json_len = strlen(m.user_json);
    CHECK_OK(apt_v2_encode(&m, &out, &err), &err);
    for (int i = 0; i < 3; i++)
        CHECK_OK(apt_v2_decode(out.data, out.len, NULL, &r, &err), &err);
    CHECK(r.owned_json != NULL);
    m.type = APT_MSG_END;
    CHECK_OK(apt_v2_encode(&m, &out, &err), &err);
    CHECK_OK(apt_v2_decode(out.data, out.len, NULL, &r, &err), &err);
    CHECK(r.owned_json == NULL && r.user_json == NULL && r.type == APT_MSG_END && !r.config.present);
    apt_stream_msg_clear(&r);
    apt_bytes_free(&out);
    CHECK(!strcmp(apt_encoding_name(APT_ENC_BSLZ4), "bslz4") && !strcmp(apt_encoding_name_v1(APT_ENC_BSLZ4, 4),
                                                                        "bs32-lz4<"));
    CHECK(apt_encoding_name_v1(APT_ENC_H5LZ4, 2) == NULL);
}

int main(void)
{
    test_v1_start();
    test_v1_image();
    test_end();
    test_v2_start();
    test_v2_image();
    test_user_data();
    test_v2_errors();
    test_v1_errors();
    test_reuse();
    APT_TEST_DONE();
}
