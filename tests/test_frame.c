/* test_frame.c - crop decoding from every wire encoding equals the crop of the raw frame (gap pixels and masked
 * pixels become -1), crop placement rules, error paths; and the daemon's queue and pattern pool. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "apt_test.h"
#include "aptomo/codec.h"
#include "aptomo/frame.h"
#include "pool.h"
#include "queue.h"

static uint64_t rng = 88172645463325252ULL;
static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static void encode(apt_encoding enc, const void *raw, size_t n, uint32_t elem, apt_bytes *out, apt_error *err)
{
    size_t cap = enc == APT_ENC_BSLZ4 ? apt_bslz4_bound(n, elem)
               : enc == APT_ENC_LZ4 ? apt_lz4_bound(n * elem)
               : enc == APT_ENC_H5LZ4 ? apt_h5lz4_bound(n * elem, 0) : n * elem;
    apt_bytes_reserve(out, cap, err);
    size_t len = n * elem;
    if (enc == APT_ENC_BSLZ4)
        CHECK_OK(apt_bslz4_encode(raw, n, elem, out->data, cap, &len, err), err);
    else if (enc == APT_ENC_LZ4)
        CHECK_OK(apt_lz4_encode_raw(raw, n * elem, out->data, cap, &len, err), err);
    else if (enc == APT_ENC_H5LZ4)
        CHECK_OK(apt_h5lz4_encode(raw, n * elem, 0, out->data, cap, &len, err), err);
    else
        memcpy(out->data, raw, len);
    out->len = len;
}

static double pixel(const void *raw, uint32_t elem, size_t i)
{
    return elem == 1 ? ((const uint8_t *)raw)[i] : elem == 2 ? ((const uint16_t *)raw)[i]
                                                             : ((const uint32_t *)raw)[i];
}

static void test_crop_all_encodings(void)
{
    const uint32_t sizes[][2] = {{1030, 514}, {97, 61}, {64, 64}, {300, 40}};
    const uint32_t elems[] = {1, 2, 4};
    const apt_encoding encs[] = {APT_ENC_NONE, APT_ENC_BSLZ4, APT_ENC_LZ4, APT_ENC_H5LZ4};
    apt_error err = {0};
    apt_bytes blob = {0}, scratch = {0};
    for (size_t si = 0; si < 4; si++)
        for (size_t ei = 0; ei < 3; ei++) {
            uint32_t w = sizes[si][0], h = sizes[si][1], elem = elems[ei];
            size_t n = (size_t)w * h;
            uint8_t *raw = malloc(n * elem);
            uint32_t *mask = calloc(n, sizeof *mask);
            for (size_t i = 0; i < n; i++) {
                uint32_t v = next_u32() % 7 == 0 ? next_u32() % 300 : 0;
                if (i % 997 == 5)
                    v = 0xFFFFFFFFu; /* gap pixel: the type's maximum */
                if (elem == 1)
                    raw[i] = (uint8_t)(v > 0xFF ? 0xFF : v);
                else if (elem == 2)
                    ((uint16_t *)raw)[i] = (uint16_t)(v > 0xFFFF ? 0xFFFF : v);
                else
                    ((uint32_t *)raw)[i] = v;
                mask[i] = i % 1301 == 7;
            }
            for (size_t k = 0; k < 4; k++) {
                encode(encs[k], raw, n, elem, &blob, &err);
                apt_pixels px = {"", w, h, elem, encs[k], blob.data, blob.len};
                for (int trial = 0; trial < 6; trial++) {
                    uint32_t cn = 8 + next_u32() % ((w < h ? w : h) - 8 + 1);
                    apt_crop c = {next_u32() % (h - cn + 1), next_u32() % (w - cn + 1), cn};
                    float *out = malloc((size_t)cn * cn * sizeof *out);
                    const uint32_t *m = trial % 2 ? mask : NULL;
                    CHECK_OK(apt_frame_decode_crop(&px, &c, m, out, &scratch, &err), &err);
                    size_t bad = 0;
                    double maxv = elem == 1 ? 0xFF : elem == 2 ? 0xFFFF : 0xFFFFFFFFu;
                    for (uint32_t r = 0; r < cn; r++)
                        for (uint32_t q = 0; q < cn; q++) {
                            size_t at = (size_t)(c.r0 + r) * w + c.c0 + q;
                            double v = pixel(raw, elem, at);
                            double want = (v == maxv || (m && m[at])) ? -1.0 : v;
                            bad += out[(size_t)r * cn + q] != (float)want;
                        }
                    CHECK_MSG(bad == 0, "%ux%u elem %u enc %d crop %u at (%u,%u): %zu pixels differ", w, h, elem,
                              encs[k], cn, c.r0, c.c0, bad);
                    free(out);
                }
                /* whole-frame decode round trip */
                uint8_t *back = malloc(n * elem);
                CHECK_OK(apt_frame_decode(&px, back, n * elem, &err), &err);
                CHECK(memcmp(back, raw, n * elem) == 0);
                free(back);
            }
            free(raw);
            free(mask);
        }
    apt_bytes_free(&blob);
    apt_bytes_free(&scratch);
}

static void test_crop_errors(void)
{
    apt_error err = {0};
    apt_crop c;
    CHECK_OK(apt_crop_place(1030, 514, NAN, NAN, 128, &c, &err), &err);
    CHECK(c.r0 == 257 - 64 && c.c0 == 515 - 64 && c.n == 128);
    CHECK_OK(apt_crop_place(1030, 514, 100.4, 600.6, 64, &c, &err), &err);
    CHECK(c.r0 == 100 - 32 && c.c0 == 601 - 32);
    CHECK(apt_crop_place(1030, 514, 10, 500, 64, &c, &err) == APT_ERANGE);
    CHECK(strstr(err.msg, "leaves") != NULL);
    CHECK(apt_crop_place(100, 50, NAN, NAN, 64, &c, &err) == APT_ERANGE);
    uint16_t raw[64 * 64] = {0};
    apt_pixels px = {"", 64, 64, 2, APT_ENC_NONE, (const uint8_t *)raw, sizeof raw - 2};
    apt_crop cc = {0, 0, 32};
    float out[32 * 32];
    apt_bytes scratch = {0};
    CHECK(apt_frame_decode_crop(&px, &cc, NULL, out, &scratch, &err) == APT_EPROTO);
    px.blob_len = sizeof raw;
    cc.r0 = 40;
    CHECK(apt_frame_decode_crop(&px, &cc, NULL, out, &scratch, &err) == APT_ERANGE);
    cc.r0 = 0;
    px.elem_size = 3;
    CHECK(apt_frame_decode_crop(&px, &cc, NULL, out, &scratch, &err) == APT_ENOTSUP);
    /* a corrupt bslz4 blob is an error, never a crash */
    apt_bytes blob = {0};
    encode(APT_ENC_BSLZ4, raw, 64 * 64, 2, &blob, &err);
    for (size_t i = 12; i < blob.len; i++)
        blob.data[i] ^= 0xA5;
    apt_pixels bad = {"", 64, 64, 2, APT_ENC_BSLZ4, blob.data, blob.len};
    CHECK(apt_frame_decode_crop(&bad, &cc, NULL, out, &scratch, &err) != APT_OK);
    apt_bytes_free(&blob);
    apt_bytes_free(&scratch);
}

static void test_queue_pool(void)
{
    aptd_queue *q = aptd_queue_new(4);
    int items[6];
    for (int i = 0; i < 4; i++)
        CHECK(aptd_queue_try_push(q, &items[i]) == 0);
    CHECK(aptd_queue_try_push(q, &items[4]) == -1); /* bounded */
    CHECK(aptd_queue_depth(q) == 4);
    for (int i = 0; i < 4; i++) {
        CHECK(aptd_queue_pop(q, 0) == &items[i]); /* FIFO */
        aptd_queue_done(q);
    }
    CHECK(aptd_queue_pop(q, 10) == NULL); /* timeout */
    aptd_queue_wait_idle(q);
    aptd_queue_push(q, &items[5]);
    aptd_queue_close(q);
    CHECK(aptd_queue_push(q, &items[0]) == -1);
    CHECK(aptd_queue_pop(q, -1) == &items[5]); /* drains after close */
    aptd_queue_done(q);
    CHECK(aptd_queue_pop(q, -1) == NULL);
    aptd_queue_destroy(&q);
    CHECK(q == NULL);

    aptd_pool *p = aptd_pool_new(4096, 3 * 4096);
    void *a = aptd_pool_get(p), *b = aptd_pool_get(p), *c = aptd_pool_get(p), *d = aptd_pool_get(p);
    CHECK(a && b && c && d);
    aptd_pool_put(p, a);
    aptd_pool_put(p, b);
    aptd_pool_put(p, c);
    aptd_pool_put(p, d); /* over the cache bound: freed */
    aptd_pool_put(p, NULL);
    CHECK(aptd_pool_cached(p) == 3);
    void *e = aptd_pool_get(p);
    CHECK(e == c); /* last in, first out: warm memory */
    aptd_pool_put(p, e);
    aptd_pool_destroy(&p);
    CHECK(p == NULL);
}

int main(void)
{
    test_crop_all_encodings();
    test_crop_errors();
    test_queue_pool();
    APT_TEST_DONE();
}
