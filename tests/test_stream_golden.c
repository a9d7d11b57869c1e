/* test_stream_golden.c - decodes the captured-style messages in tests/data/stream_* (written by
 * tests/make_stream_golden.py with cbor2, json, the bitshuffle package and python lz4, never with our encoders) and
 * checks every field against tests/data/stream_expected.json. Blobs are also decompressed with our codecs and their
 * raw bytes compared by CRC-32 and pixel sum, so the decoder hands on exactly the bytes the detector sent. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "apt_test.h"
#include "aptomo/codec.h"
#include "aptomo/stream.h"

static char dir[4096];

static uint8_t *slurp(const char *name, size_t *len)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

static size_t split_v1(const uint8_t *d, size_t len, apt_buf *parts)
{
    uint32_t n = le32(d);
    size_t at = 4;
    for (uint32_t i = 0; i < n && i < APT_MAX_PARTS; i++) {
        uint32_t k = le32(d + at);
        parts[i] = (apt_buf){d + at + 4, k};
        at += 4 + (size_t)k;
    }
    CHECK(at == len && n <= APT_MAX_PARTS);
    return n;
}

static uint32_t crc(const void *p, size_t n) { return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n); }

static json_int_t jint(json_t *o, const char *k) { return json_integer_value(json_object_get(o, k)); }

static int num_is(json_t *want, double got)
{
    return json_is_null(want) ? isnan(got) : json_is_number(want) && json_number_value(want) == got;
}

static void check_pixels(const char *file, json_t *w, const apt_pixels *p, int decode)
{
    const char *enc = json_string_value(json_object_get(w, "encoding"));
    CHECK_MSG(!strcmp(p->channel, json_string_value(json_object_get(w, "channel"))), "%s: channel %s", file,
              p->channel);
    CHECK_MSG(p->width == jint(w, "width") && p->height == jint(w, "height") && p->elem_size == jint(w, "elem_size"),
              "%s: %ux%u x%u", file, p->width, p->height, p->elem_size);
    CHECK_MSG(!strcmp(apt_encoding_name(p->enc), enc), "%s: encoding %s want %s", file, apt_encoding_name(p->enc),
              enc);
    CHECK_MSG(p->blob_len == (size_t)jint(w, "blob_len") && crc(p->blob, p->blob_len) == jint(w, "blob_crc32"),
              "%s: blob of %zu bytes differs", file, p->blob_len);
    if (!decode)
        return;
    size_t n = (size_t)p->width * p->height, bytes = n * p->elem_size, got = 0;
    uint8_t *raw = malloc(bytes);
    apt_error err = {0};
    int rc = APT_OK;
    if (p->enc == APT_ENC_BSLZ4)
        rc = apt_bslz4_decode(p->blob, p->blob_len, p->elem_size, raw, bytes, &err);
    else if (p->enc == APT_ENC_H5LZ4)
        rc = apt_h5lz4_decode(p->blob, p->blob_len, raw, bytes, &got, &err);
    else if (p->enc == APT_ENC_LZ4)
        rc = apt_lz4_decode_raw(p->blob, p->blob_len, raw, bytes, &err);
    else
        memcpy(raw, p->blob, bytes);
    CHECK_MSG(rc == APT_OK, "%s: decode: %s", file, err.msg);
    CHECK(p->enc != APT_ENC_H5LZ4 || got == bytes);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = 0;
        memcpy(&v, raw + i * p->elem_size, p->elem_size);
        sum += v;
    }
    CHECK_MSG(crc(raw, bytes) == jint(w, "raw_crc32") && sum == (uint64_t)jint(w, "sum"), "%s: pixels differ",
              file);
    free(raw);
}

static void check_user(const char *file, json_t *f, const apt_stream_msg *m)
{
    json_t *text = json_object_get(f, "user_json"), *data = json_object_get(f, "user_data");
    if (json_is_null(data)) {
        CHECK_MSG(m->user_json == NULL, "%s: unexpected user data", file);
        return;
    }
    CHECK_MSG(m->user_json != NULL, "%s: user data missing", file);
    if (!m->user_json)
        return;
    if (json_is_string(text)) /* v1 appendix: the very bytes sent */
        CHECK_MSG(m->user_json_len == json_string_length(text) &&
                      !memcmp(m->user_json, json_string_value(text), m->user_json_len), "%s: appendix differs", file);
    json_t *got = json_loadb(m->user_json, m->user_json_len, JSON_DECODE_ANY, NULL);
    CHECK_MSG(got && json_equal(got, data), "%s: user data %.*s", file, (int)m->user_json_len, m->user_json);
    json_decref(got);
}

static void check_config(const char *file, json_t *w, const apt_detector_config *c)
{
    CHECK_MSG(c->present == json_is_true(json_object_get(w, "present")), "%s: present", file);
    CHECK_MSG(num_is(json_object_get(w, "beam_center_x"), c->beam_center_x) &&
                  num_is(json_object_get(w, "beam_center_y"), c->beam_center_y), "%s: beam centre", file);
    CHECK_MSG(c->width == jint(w, "width") && c->height == jint(w, "height"), "%s: size", file);
    CHECK_MSG(c->n_images == (uint64_t)jint(w, "n_images"), "%s: n_images %llu", file,
              (unsigned long long)c->n_images);
    CHECK_MSG(c->elem_size == jint(w, "elem_size"), "%s: elem_size", file);
    CHECK_MSG(num_is(json_object_get(w, "energy_eV"), c->energy_eV) &&
                  num_is(json_object_get(w, "distance_m"), c->distance_m) &&
                  num_is(json_object_get(w, "pixel_x_m"), c->pixel_x_m) &&
                  num_is(json_object_get(w, "pixel_y_m"), c->pixel_y_m) &&
                  num_is(json_object_get(w, "count_time_s"), c->count_time_s) &&
                  num_is(json_object_get(w, "frame_time_s"), c->frame_time_s), "%s: physics fields", file);
    CHECK_MSG(c->saturation == (uint64_t)jint(w, "saturation"), "%s: saturation", file);
}

static void check_file(json_t *f)
{
    const char *file = json_string_value(json_object_get(f, "file")), *type = json_string_value(
                                                                          json_object_get(f, "type"));
    size_t len = 0;
    uint8_t *data = slurp(file, &len);
    CHECK_MSG(data != NULL, "%s/%s missing", dir, file);
    if (!data)
        return;
    apt_stream_msg m;
    apt_stream_msg_init(&m);
    apt_error err = {0};
    int version = (int)jint(f, "version"), rc;
    if (version == 1) {
        apt_buf parts[APT_MAX_PARTS];
        size_t n = split_v1(data, len, parts);
        CHECK(apt_stream_sniff(parts[0].ptr, parts[0].len) == 1);
        rc = apt_v1_decode(parts, n, &m, &err);
    } else {
        CHECK(apt_stream_sniff(data, len) == 2);
        rc = apt_v2_decode(data, len, NULL, &m, &err);
    }
    CHECK_MSG(rc == APT_OK, "%s: %s", file, err.msg);
    static const char *types[] = {"none", "start", "image", "end"};
    CHECK_MSG(m.version == version && !strcmp(types[m.type], type), "%s: type %s", file, types[m.type]);
    CHECK_MSG(m.series_id == (uint64_t)jint(f, "series_id"), "%s: series", file);
    CHECK_MSG(!strcmp(m.series_unique_id, json_string_value(json_object_get(f, "series_unique_id"))), "%s: uid",
              file);
    if (m.type == APT_MSG_START) {
        if (version == 1) {
            static const char *details[] = {"none", "basic", "all"};
            CHECK(!strcmp(details[m.header_detail], json_string_value(json_object_get(f, "header_detail"))));
        }
        check_config(file, json_object_get(f, "config"), &m.config);
        json_t *ch = json_object_get(f, "channels");
        CHECK_MSG(m.n_channels == (int)json_array_size(ch), "%s: %d channels", file, m.n_channels);
        for (int k = 0; k < m.n_channels && k < (int)json_array_size(ch); k++)
            CHECK(!strcmp(m.channels[k], json_string_value(json_array_get(ch, (size_t)k))));
        json_t *mask = json_object_get(f, "mask");
        if (json_is_null(mask))
            CHECK_MSG(m.mask.blob == NULL, "%s: unexpected mask", file);
        else
            check_pixels(file, mask, &m.mask, 0);
        json_t *m2 = json_object_get(f, "mask_threshold_2_crc32");
        if (m2) { /* the other channel's mask when asked for */
            apt_stream_msg o;
            apt_stream_msg_init(&o);
            CHECK_OK(apt_v2_decode(data, len, "threshold_2", &o, &err), &err);
            CHECK(!strcmp(o.mask.channel, "threshold_2") && crc(o.mask.blob, o.mask.blob_len) == json_integer_value(m2));
            apt_stream_msg_clear(&o);
        }
    }
    if (m.type == APT_MSG_IMAGE) {
        CHECK_MSG(m.image_id == (uint64_t)jint(f, "image_id"), "%s: image_id", file);
        json_t *px = json_object_get(f, "pixels");
        CHECK_MSG(m.n_chan == (int)json_array_size(px), "%s: %d channels", file, m.n_chan);
        for (int k = 0; k < m.n_chan && k < (int)json_array_size(px); k++)
            check_pixels(file, json_array_get(px, (size_t)k), &m.chan[k], 1);
        check_pixels(file, json_array_get(px, 0), &m.pixels, 0); /* default selection: threshold_1 / the only one */
        if (m.n_chan > 1) {
            apt_stream_msg o;
            apt_stream_msg_init(&o);
            CHECK_OK(apt_v2_decode(data, len, "threshold_2", &o, &err), &err);
            check_pixels(file, json_array_get(px, 1), &o.pixels, 0);
            apt_stream_msg_clear(&o);
        }
    }
    check_user(file, f, &m);
    apt_stream_msg_clear(&m);
    free(data);
}

int main(void)
{
    const char *src = getenv("APTOMO_SRC");
    snprintf(dir, sizeof dir, "%s/tests/data", src ? src : "..");
    char path[4200];
    snprintf(path, sizeof path, "%s/stream_expected.json", dir);
    json_error_t je;
    json_t *exp = json_load_file(path, 0, &je);
    CHECK_MSG(exp != NULL, "%s: %s", path, je.text);
    if (!exp)
        APT_TEST_DONE();
    json_t *files = json_object_get(exp, "files");
    CHECK(json_array_size(files) >= 20);
    size_t i;
    json_t *f;
    json_array_foreach(files, i, f) check_file(f);
    json_decref(exp);
    APT_TEST_DONE();
}
