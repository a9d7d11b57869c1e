/* test_fuzz_stream.c - mutation fuzzing of apt_v1_decode, apt_v2_decode and apt_scanmeta_parse with a fixed seed:
 * valid encodings of every message kind are bit-flipped, byte-set, truncated, spliced, extended with garbage and (v1)
 * given random part lists. Every outcome must be either APT_OK with fields inside their bounds and blobs inside the
 * input, or a negative code with a non-empty message. Under ASan this also proves no overread and no leak. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apt_test.h"
#include "aptomo/codec.h"
#include "aptomo/scanmeta.h"
#include "aptomo/stream.h"

#define ITERS 10000

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}
static size_t rndn(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

typedef struct seed {
    uint8_t *d[APT_MAX_PARTS];
    size_t len[APT_MAX_PARTS], n;
} seed;

static seed v1_seeds[16], v2_seeds[16];
static int n_v1, n_v2;

static uint8_t *dup_bytes(const void *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    if (n)
        memcpy(d, p, n);
    return d;
}

static void add_seed(const apt_stream_msg *m)
{
    apt_parts parts = {0};
    apt_bytes out = {0};
    apt_error err = {0};
    if (apt_v1_encode(m, &parts, &err) == APT_OK) {
        seed *s = &v1_seeds[n_v1++];
        for (size_t i = 0; i < parts.n; i++) {
            s->d[i] = dup_bytes(parts.part[i].data, parts.part[i].len);
            s->len[i] = parts.part[i].len;
        }
        s->n = parts.n;
    }
    if (apt_v2_encode(m, &out, &err) == APT_OK) {
        seed *s = &v2_seeds[n_v2++];
        s->d[0] = dup_bytes(out.data, out.len);
        s->len[0] = out.len;
        s->n = 1;
    }
    apt_parts_free(&parts);
    apt_bytes_free(&out);
}

static void make_seeds(void)
{
    enum { W = 20, H = 12 };
    static uint8_t raw[W * H * 4], blob[4][4096];
    for (size_t i = 0; i < sizeof raw; i++)
        raw[i] = (uint8_t)(i * 7 / 5);
    apt_error err = {0};
    size_t lens[4] = {W * H * 2, 0, 0, 0};
    memcpy(blob[0], raw, W * H * 2);
    CHECK_OK(apt_bslz4_encode(raw, W * H, 2, blob[1], sizeof blob[1], &lens[1], &err), &err);
    CHECK_OK(apt_lz4_encode_raw(raw, W * H * 2, blob[2], sizeof blob[2], &lens[2], &err), &err);
    CHECK_OK(apt_h5lz4_encode(raw, W * H * 4, 0, blob[3], sizeof blob[3], &lens[3], &err), &err);
    apt_stream_msg m;
    for (int d = 0; d < 3; d++) {
        apt_stream_msg_init(&m);
        m.type = APT_MSG_START;
        m.series_id = 4;
        m.header_detail = (apt_header_detail)d;
        m.config = (apt_detector_config){1, 10.5, 6.25, W, H, 100, 2, 8000, 1.5, 75e-6, 75e-6, 1e-3, 1e-3, 60000};
        snprintf(m.series_unique_id, APT_NAME_LEN, "fz");
        snprintf(m.channels[0], APT_NAME_LEN, "threshold_1");
        snprintf(m.channels[1], APT_NAME_LEN, "threshold_2");
        m.n_channels = 2;
        m.mask = (apt_pixels){"threshold_1", W, H, 4, APT_ENC_NONE, raw, W * H * 4};
        m.user_json = "{\"angle_deg\":3.5,\"positions_m\":[[1e-6,2e-6],[3e-6,4e-6]],\"x\":[true,null,\"s\",-4]}";
        m.user_json_len = strlen(m.user_json);
        add_seed(&m);
    }
    for (int e = 0; e < 4; e++) {
        apt_stream_msg_init(&m);
        m.type = APT_MSG_IMAGE;
        m.series_id = 4;
        m.image_id = (uint64_t)e;
        uint32_t elem = e == 3 ? 4 : 2;
        apt_encoding enc = e == 0 ? APT_ENC_NONE : e == 1 ? APT_ENC_BSLZ4 : e == 2 ? APT_ENC_LZ4 : APT_ENC_H5LZ4;
        m.pixels = (apt_pixels){"threshold_1", W, H, elem, enc, blob[e], lens[e]};
        m.chan[0] = m.pixels;
        m.chan[1] = m.pixels;
        snprintf(m.chan[1].channel, APT_NAME_LEN, "threshold_2");
        m.n_chan = e == 2 ? 0 : 2;
        m.user_json = "{\"pos_m\":[1e-6,-2e-6]}";
        m.user_json_len = strlen(m.user_json);
        add_seed(&m);
    }
    apt_stream_msg_init(&m);
    m.type = APT_MSG_END;
    m.series_id = 4;
    add_seed(&m);
    CHECK(n_v1 >= 7 && n_v2 >= 6);
}

/* Mutate b (len *n, capacity cap) in place. */
static void mutate(uint8_t *b, size_t *n, size_t cap, const seed *other)
{
    int k = 1 + (int)rndn(4);
    while (k--) {
        switch (rndn(7)) {
        case 0: /* flip a bit */
            if (*n)
                b[rndn(*n)] ^= (uint8_t)(1u << rndn(8));
            break;
        case 1: { /* set an interesting byte */
            static const uint8_t vals[] = {0x00, 0xff, 0x7f, 0x80, 0x9b, 0xbb, 0x5b, 0x7b, 0xd9, 0xc0, 0xbf, '"',
                                           '{', '}', '[', ']', ',', ':', '0', '9', '-'};
            if (*n)
                b[rndn(*n)] = vals[rndn(sizeof vals)];
            break;
        }
        case 2: /* truncate */
            *n = rndn(*n + 1);
            break;
        case 3: { /* splice in a chunk of another seed */
            size_t ol = other->len[0];
            if (!ol)
                break;
            size_t from = rndn(ol), take = rndn(ol - from + 1), at = rndn(*n + 1);
            if (at + take > cap)
                take = cap - at;
            memcpy(b + at, other->d[0] + from, take);
            if (at + take > *n)
                *n = at + take;
            break;
        }
        case 4: /* append garbage */
            for (size_t g = rndn(16); g && *n < cap; g--)
                b[(*n)++] = (uint8_t)rnd();
            break;
        case 5: /* duplicate a range */
            if (*n) {
                size_t at = rndn(*n), len = rndn(*n - at + 1);
                if (*n + len <= cap) {
                    memmove(b + at + len, b + at, *n - at);
                    *n += len;
                }
            }
            break;
        default: /* overwrite 4 random bytes (lengths, counts) */
            for (int j = 0; j < 4 && *n; j++)
                b[rndn(*n)] = (uint8_t)rnd();
        }
    }
}

static int inside(const void *p, size_t len, const void *base, size_t blen)
{
    const uint8_t *a = p, *b = base;
    return a >= b && len <= blen && (size_t)(a - b) <= blen - len;
}

static int pixels_ok(const apt_pixels *p)
{
    return p->width >= 1 && p->width <= 65536 && p->height >= 1 && p->height <= 65536 &&
           (p->elem_size == 1 || p->elem_size == 2 || p->elem_size == 4) && p->enc <= APT_ENC_H5LZ4;
}

static int fail_ok(int rc, const apt_error *err) { return rc < 0 && err->msg[0] != '\0'; }

static void feed_scanmeta(const char *s, size_t n)
{
    apt_scanmeta meta;
    apt_error err = {0};
    int rc = apt_scanmeta_parse(s, n, 64, &meta, &err);
    CHECK_MSG(rc == APT_OK ? meta.n_positions <= 64 && (meta.n_positions == 0) == (meta.positions_m == NULL)
                           : fail_ok(rc, &err), "scanmeta rc=%d", rc);
    apt_scanmeta_clear(&meta);
}

static void fuzz_v2(void)
{
    static uint8_t buf[65536];
    int ok = 0;
    for (int it = 0; it < ITERS; it++) {
        const seed *s = &v2_seeds[rndn((size_t)n_v2)];
        size_t n = s->len[0] < sizeof buf ? s->len[0] : sizeof buf;
        memcpy(buf, s->d[0], n);
        if (it % 10 == 9) /* pure noise now and then */
            for (size_t i = 0, m = n = rndn(64); i < m; i++)
                buf[i] = (uint8_t)rnd();
        else
            mutate(buf, &n, sizeof buf, &v2_seeds[rndn((size_t)n_v2)]);
        uint8_t *exact = dup_bytes(buf, n); /* exact-size copy: ASan sees any overread */
        apt_stream_msg m;
        apt_error err = {0};
        apt_stream_msg_init(&m);
        int rc = apt_v2_decode(exact, n, it % 3 ? NULL : "threshold_2", &m, &err);
        if (rc == APT_OK) {
            ok++;
            int good = m.type >= APT_MSG_START && m.type <= APT_MSG_END && m.n_chan >= 0 &&
                       m.n_chan <= APT_MAX_CHANNELS && m.n_channels >= 0 && m.n_channels <= APT_MAX_CHANNELS;
            for (int c = 0; c < m.n_chan; c++)
                good &= pixels_ok(&m.chan[c]) && inside(m.chan[c].blob, m.chan[c].blob_len, exact, n);
            if (m.type == APT_MSG_IMAGE)
                good &= m.n_chan >= 1 && pixels_ok(&m.pixels);
            if (m.mask.blob)
                good &= pixels_ok(&m.mask) && inside(m.mask.blob, m.mask.blob_len, exact, n);
            if (m.user_json) {
                good &= m.user_json == m.owned_json ? strlen(m.owned_json) == m.user_json_len
                                                    : inside(m.user_json, m.user_json_len, exact, n);
                feed_scanmeta(m.user_json, m.user_json_len);
            }
            CHECK_MSG(good, "iteration %d: decoded fields out of bounds", it);
        } else {
            CHECK_MSG(fail_ok(rc, &err), "iteration %d: rc=%d without a message", it, rc);
        }
        apt_stream_msg_clear(&m);
        free(exact);
    }
    printf("v2: %d of %d mutated messages decoded\n", ok, ITERS);
}

static void fuzz_v1(void)
{
    static uint8_t store[APT_MAX_PARTS][8192];
    int ok = 0;
    for (int it = 0; it < ITERS; it++) {
        const seed *s = &v1_seeds[rndn((size_t)n_v1)];
        apt_buf bufs[APT_MAX_PARTS];
        uint8_t *exact[APT_MAX_PARTS] = {0};
        size_t np = s->n;
        if (it % 4 == 0) /* a random part list: parts of any seed, in any order */
            np = 1 + rndn(APT_MAX_PARTS);
        for (size_t i = 0; i < np; i++) {
            const seed *from = it % 4 == 0 ? &v1_seeds[rndn((size_t)n_v1)] : s;
            size_t pi = it % 4 == 0 ? rndn(from->n) : i;
            size_t n = from->len[pi] < sizeof store[i] ? from->len[pi] : sizeof store[i];
            memcpy(store[i], from->d[pi], n);
            if (rndn(3) == 0 || np == 1) {
                seed one = {.d = {from->d[pi]}, .len = {from->len[pi]}, .n = 1};
                mutate(store[i], &n, sizeof store[i], &one);
            }
            exact[i] = dup_bytes(store[i], n);
            bufs[i] = (apt_buf){exact[i], n};
        }
        apt_stream_msg m;
        apt_error err = {0};
        apt_stream_msg_init(&m);
        int rc = apt_v1_decode(bufs, np, &m, &err);
        if (rc == APT_OK) {
            ok++;
            int good = m.type >= APT_MSG_START && m.type <= APT_MSG_END && m.version == 1;
            if (m.type == APT_MSG_IMAGE)
                good &= pixels_ok(&m.pixels) && inside(m.pixels.blob, m.pixels.blob_len, bufs[2].ptr, bufs[2].len);
            if (m.mask.blob)
                good &= pixels_ok(&m.mask) && inside(m.mask.blob, m.mask.blob_len, bufs[5].ptr, bufs[5].len);
            if (m.user_json) {
                good &= inside(m.user_json, m.user_json_len, bufs[np - 1].ptr, bufs[np - 1].len);
                feed_scanmeta(m.user_json, m.user_json_len);
            }
            CHECK_MSG(good, "iteration %d: decoded fields out of bounds", it);
        } else {
            CHECK_MSG(fail_ok(rc, &err), "iteration %d: rc=%d without a message", it, rc);
        }
        apt_stream_msg_clear(&m);
        for (size_t i = 0; i < np; i++)
            free(exact[i]);
    }
    printf("v1: %d of %d mutated messages decoded\n", ok, ITERS);
}

static void fuzz_scanmeta(void)
{
    static const char *seeds[] = {
        "{\"angle_deg\":12.5,\"positions_m\":[[1e-06,-2e-06],[3.5e-06,4e-06]]}",
        "{\"pos_m\":[1e-06,2e-06]}",
        "{\"htype\":\"aptomo-scan-1.0\",\"series\":3,\"angle_deg\":1,\"n_frames\":4,\"positions_m\":[[1,2],[3,4]]}",
        "{\"htype\":\"aptomo-pos-1.0\",\"series\":3,\"frame0\":2,\"positions_m\":[[5,6],[7,8]]}",
    };
    static uint8_t buf[1024];
    for (int it = 0; it < ITERS; it++) {
        const char *s = seeds[rndn(4)];
        size_t n = strlen(s);
        memcpy(buf, s, n);
        seed other = {.d = {(uint8_t *)seeds[rndn(4)]}, .len = {strlen(seeds[0])}, .n = 1};
        other.len[0] = strlen((const char *)other.d[0]);
        mutate(buf, &n, sizeof buf, &other);
        char *exact = (char *)dup_bytes(buf, n);
        feed_scanmeta(exact, n);
        free(exact);
    }
}

int main(void)
{
    make_seeds();
    fuzz_v2();
    fuzz_v1();
    fuzz_scanmeta();
    for (int i = 0; i < n_v1; i++)
        for (size_t p = 0; p < v1_seeds[i].n; p++)
            free(v1_seeds[i].d[p]);
    for (int i = 0; i < n_v2; i++)
        free(v2_seeds[i].d[0]);
    APT_TEST_DONE();
}
