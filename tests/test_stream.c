/* test_stream.c - Eiger stream v1/v2 codecs: encode -> decode round trips for every message kind, header_detail
 * (with and without appendix), encoding, element size and channel layout, with channel selection; user_data
 * CBOR -> JSON against jansson's own normalisation of the input. Error paths live in test_stream_errors.c. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream_util.h"

static const apt_encoding ENCS[] = {APT_ENC_NONE, APT_ENC_BSLZ4, APT_ENC_LZ4, APT_ENC_H5LZ4};

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
    test_reuse();
    APT_TEST_DONE();
}
