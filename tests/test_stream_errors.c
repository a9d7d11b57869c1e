/* test_stream_errors.c - the stream decoders' error paths: every malformed v1 part list and v2 CBOR message here is
 * built byte for byte (JSON text, libcbor's encoder) and must fail with the expected code and a message naming the
 * part or field at fault, leaving the message cleared. Includes the depth bomb and the 2^40-element declaration. */
#include <cbor.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream_util.h"

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
    c_text(&c, "end");
    c_text(&c, "series_id");
    c_uint(&c, 1);
    c_text(&c, "series_unique_id");
    c_text(&c, "bad\xff\xfe");
    V2_FAILS(&c, APT_EPROTO, "UTF-8");
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

int main(void)
{
    test_v2_errors();
    test_v1_errors();
    APT_TEST_DONE();
}
