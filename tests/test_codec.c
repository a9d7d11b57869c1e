/* test_codec.c - pixel codecs against independent references: a bit-by-bit bitshuffle written from the layout's
 * definition, a test-side bslz4/h5lz4 parser over liblz4 directly, round trips over awkward sizes for every kernel
 * set, partial decodes (range, crop) against slices of a full decode, every error path, and a mutation fuzz loop. */
#include <lz4.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/codec.h"
#include "apt_test.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) /* splitmix64: deterministic, no libc rand state */
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static size_t rndn(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

static int levels[3], nlevels;

/* ---- reference bitshuffle, from the definition: bit k of byte j of element i -> row j*8+k, bit i of the row ---- */
static void ref_shuffle_block(const uint8_t *in, uint8_t *out, size_t n, size_t s)
{
    size_t nb = n / 8;
    memset(out, 0, n * s);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < s; j++)
            for (size_t k = 0; k < 8; k++)
                if (in[i * s + j] >> k & 1)
                    out[(j * 8 + k) * nb + i / 8] |= (uint8_t)(1u << (i % 8));
}

static void ref_bitshuffle(const uint8_t *in, uint8_t *out, size_t n, size_t s, size_t block)
{
    size_t done = 0;
    if (!block)
        block = apt_bshuf_default_block(s);
    while (n - done >= 8) {
        size_t be = n - done >= block ? block : (n - done) / 8 * 8;
        ref_shuffle_block(in + done * s, out + done * s, be, s);
        done += be;
    }
    memcpy(out + done * s, in + done * s, (n - done) * s);
}

/* Photon-count-like pixels: mostly 0/1, some small counts, a few hot pixels and all-ones gap pixels. */
static void fill_frame(uint8_t *p, size_t n, size_t s, int random_bits)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t v, r = rnd() % 1000;
        if (random_bits)
            v = rnd();
        else
            v = r < 700 ? 0 : r < 900 ? 1 : r < 990 ? rnd() % 6 : r < 998 ? rnd() % 5000 : UINT64_MAX;
        for (size_t j = 0; j < s; j++)
            p[i * s + j] = (uint8_t)(v >> (8 * (j % 8)));
    }
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t be64(const uint8_t *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }

static const size_t sizes[] = {0, 1, 7, 8, 9, 15, 16, 127, 128, 129, 1000, 4095, 4096, 4097, 8191, 8192, 8200, 12345,
                               514 * 1030};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static void test_default_block(void)
{
    CHECK(apt_bshuf_default_block(1) == 8192);
    CHECK(apt_bshuf_default_block(2) == 4096);
    CHECK(apt_bshuf_default_block(3) == 2728);
    CHECK(apt_bshuf_default_block(4) == 2048);
    CHECK(apt_bshuf_default_block(8) == 1024);
    CHECK(apt_bshuf_default_block(64) == 128);
    CHECK(apt_bshuf_default_block(100) == 128);
}

/* Every kernel set vs the reference, for awkward sizes and block sizes; unshuffle inverts it. */
static void test_bitshuffle_vs_reference(void)
{
    static const size_t elems[] = {1, 2, 3, 4, 8};
    static const size_t blocks[] = {0, 8, 64, 136};
    apt_error err = {0};
    for (size_t ei = 0; ei < sizeof elems / sizeof elems[0]; ei++)
        for (size_t si = 0; si < NSIZES; si++)
            for (size_t bi = 0; bi < 4; bi++) {
                size_t s = elems[ei], n = sizes[si], block = blocks[bi], bytes = n * s + 1;
                if (n > 20000 && (bi || s != 2)) /* the full Eiger frame: uint16, default block only */
                    continue;
                uint8_t *in = malloc(bytes), *ref = malloc(bytes), *out = malloc(bytes), *back = malloc(bytes);
                fill_frame(in, n, s, si % 2);
                ref_bitshuffle(in, ref, n, s, block);
                for (int l = 0; l < nlevels; l++) {
                    apt_bshuf_set_isa(levels[l]);
                    memset(out, 0xA5, bytes);
                    CHECK_OK(apt_bitshuffle(in, out, n, s, block, &err), &err);
                    CHECK_MSG(!memcmp(out, ref, n * s), "shuffle s=%zu n=%zu block=%zu isa=%d", s, n, block,
                              levels[l]);
                    CHECK(out[n * s] == 0xA5);
                    memset(back, 0x5A, bytes);
                    CHECK_OK(apt_bitunshuffle(ref, back, n, s, block, &err), &err);
                    CHECK_MSG(!memcmp(back, in, n * s), "unshuffle s=%zu n=%zu block=%zu isa=%d", s, n, block,
                              levels[l]);
                    CHECK(back[n * s] == 0x5A);
                }
                free(in), free(ref), free(out), free(back);
            }
    apt_bshuf_set_isa(-1);
    /* argument errors */
    uint8_t a[64], b[64];
    CHECK(apt_bitshuffle(a, b, 8, 0, 0, &err) == APT_EINVAL);
    CHECK(apt_bitshuffle(a, b, 8, APT_BSHUF_MAX_ELEM + 1, 0, &err) == APT_EINVAL);
    CHECK(apt_bitshuffle(a, b, 8, 1, 12, &err) == APT_EINVAL);
    CHECK(apt_bitshuffle(a, a + 4, 16, 1, 0, &err) == APT_EINVAL); /* overlap */
    CHECK(apt_bitshuffle(a, b, SIZE_MAX / 2, 4, 0, &err) == APT_ERANGE);
    CHECK(apt_bitunshuffle(NULL, b, 8, 1, 0, &err) == APT_EINVAL);
}

/* Unshuffling a group range writes exactly those elements, equal to the full unshuffle, from any start. */
static void test_untrans_groups(void)
{
    static const size_t elems[] = {1, 2, 4, 3};
    apt_error err = {0};
    for (size_t ei = 0; ei < 4; ei++) {
        size_t s = elems[ei], n = 4096 + 8 * 37, bytes = n * s;
        uint8_t *in = malloc(bytes), *sh = malloc(bytes), *full = malloc(bytes), *part = malloc(bytes);
        fill_frame(in, n, s, 1);
        ref_shuffle_block(in, sh, n, s);
        for (int l = 0; l < nlevels; l++) {
            apt_bshuf_set_isa(levels[l]);
            CHECK_OK(apt_bshuf_untrans_groups(sh, full, n, s, 0, n / 8, &err), &err);
            CHECK(!memcmp(full, in, bytes));
            for (int t = 0; t < 60; t++) {
                size_t g0 = rndn(n / 8 + 1), g1 = g0 + rndn(n / 8 - g0 + 1);
                memset(part, 0xC3, bytes);
                CHECK_OK(apt_bshuf_untrans_groups(sh, part, n, s, g0, g1, &err), &err);
                int ok = !memcmp(part + 8 * g0 * s, in + 8 * g0 * s, 8 * (g1 - g0) * s);
                for (size_t i = 0; i < 8 * g0 * s && ok; i++)
                    ok = part[i] == 0xC3;
                for (size_t i = 8 * g1 * s; i < bytes && ok; i++)
                    ok = part[i] == 0xC3;
                CHECK_MSG(ok, "groups [%zu,%zu) s=%zu isa=%d", g0, g1, s, levels[l]);
            }
        }
        CHECK(apt_bshuf_untrans_groups(sh, part, n, s, 5, 4, &err) == APT_ERANGE);
        CHECK(apt_bshuf_untrans_groups(sh, part, n, s, 0, n / 8 + 1, &err) == APT_ERANGE);
        CHECK(apt_bshuf_untrans_groups(sh, part, n + 4, s, 0, 1, &err) == APT_EINVAL);
        free(in), free(sh), free(full), free(part);
    }
    apt_bshuf_set_isa(-1);
}

/* Walk a bslz4 blob with liblz4 and the reference shuffle only: header, every block, the raw tail, nothing more. */
static int check_bslz4_structure(const uint8_t *blob, size_t len, const uint8_t *src, size_t n, size_t s)
{
    size_t block = apt_bshuf_default_block(s), pos = 12, done = 0;
    if (len < 12 || be64(blob) != (uint64_t)n * s || be32(blob + 8) != block * s)
        return 0;
    uint8_t *ref = malloc(block * s), *got = malloc(block * s);
    int ok = 1;
    while (ok && n - done >= 8) {
        size_t be = n - done >= block ? block : (n - done) / 8 * 8;
        ok = pos + 4 <= len;
        uint32_t c = ok ? be32(blob + pos) : 0;
        ok = ok && pos + 4 + c <= len &&
             LZ4_decompress_safe((const char *)blob + pos + 4, (char *)got, (int)c, (int)(be * s)) == (int)(be * s);
        ref_shuffle_block(src + done * s, ref, be, s);
        ok = ok && !memcmp(got, ref, be * s);
        pos += 4 + c, done += be;
    }
    ok = ok && len - pos == (n - done) * s && !memcmp(blob + pos, src + done * s, (n - done) * s);
    free(ref), free(got);
    return ok;
}

static uint8_t *make_bslz4(const uint8_t *src, size_t n, size_t s, size_t *len)
{
    size_t cap = apt_bslz4_bound(n, s);
    uint8_t *blob = malloc(cap);
    apt_error err = {0};
    CHECK_OK(apt_bslz4_encode(src, n, s, blob, cap, len, &err), &err);
    return blob;
}

static void test_bslz4_roundtrip(void)
{
    static const size_t elems[] = {1, 2, 4};
    apt_error err = {0};
    for (size_t ei = 0; ei < 3; ei++)
        for (size_t si = 0; si < NSIZES; si++) {
            size_t s = elems[ei], n = sizes[si], len = 0, len2 = 0;
            uint8_t *src = malloc(n * s + 1), *dst = malloc(n * s + 16);
            fill_frame(src, n, s, si % 3 == 0);
            apt_bshuf_set_isa(APT_BSHUF_SCALAR);
            uint8_t *ref_blob = make_bslz4(src, n, s, &len2);
            CHECK_MSG(check_bslz4_structure(ref_blob, len2, src, n, s), "structure s=%zu n=%zu", s, n);
            for (int l = 0; l < nlevels; l++) {
                apt_bshuf_set_isa(levels[l]);
                uint8_t *blob = make_bslz4(src, n, s, &len);
                CHECK_MSG(len == len2 && !memcmp(blob, ref_blob, len), "blob bytes differ s=%zu n=%zu isa=%d", s, n,
                          levels[l]);
                memset(dst, 0xEE, n * s + 16);
                CHECK_OK(apt_bslz4_decode(blob, len, s, dst, n * s + 16, &err), &err);
                CHECK_MSG(!memcmp(dst, src, n * s) && dst[n * s] == 0xEE, "decode s=%zu n=%zu isa=%d", s, n,
                          levels[l]);
                uint64_t raw;
                uint32_t bb;
                CHECK_OK(apt_bslz4_header(blob, len, s, &raw, &bb, &err), &err);
                CHECK(raw == n * s && bb == apt_bshuf_default_block(s) * s);
                free(blob);
            }
            free(ref_blob), free(src), free(dst);
        }
    apt_bshuf_set_isa(-1);
    /* element sizes without a SIMD kernel go through the scalar one; 200-byte elements make 25.6 KB default
     * blocks, past the stack scratch, so encoder and decoder take their heap path */
    static const size_t odd[] = {3, 8, 200};
    size_t n = 1003, len;
    uint8_t *src = malloc(n * 200), *dst = malloc(n * 200);
    for (size_t k = 0; k < 3; k++) {
        size_t s = odd[k];
        fill_frame(src, n, s, 1);
        uint8_t *blob = make_bslz4(src, n, s, &len);
        CHECK(check_bslz4_structure(blob, len, src, n, s));
        CHECK_OK(apt_bslz4_decode(blob, len, s, dst, n * s, &err), &err);
        CHECK_MSG(!memcmp(src, dst, n * s), "s=%zu", s);
        CHECK_OK(apt_bslz4_decode_range(blob, len, s, 130, 700, dst, &err), &err);
        CHECK(!memcmp(src + 130 * s, dst, 700 * s));
        free(blob);
    }
    /* a destination too small for the encoder fails cleanly */
    fill_frame(src, 1000, 2, 1);
    uint8_t small[600];
    CHECK(apt_bslz4_encode(src, 1000, 2, small, sizeof small, &len, &err) == APT_ERANGE);
    CHECK(apt_bslz4_encode(src, 1000, 2, small, 11, &len, &err) == APT_ERANGE);
    free(src), free(dst);
}

/* decode_range and decode_crop equal slices of the full decode, for ranges across blocks and into the raw tail. */
static void test_partial_decodes(void)
{
    apt_error err = {0};
    static const size_t shapes[][3] = {{1030, 514, 2}, {257, 33, 4}, {1001, 19, 1}, {13, 5, 2}, {4096, 3, 2}};
    for (size_t si = 0; si < 5; si++) {
        size_t width = shapes[si][0], height = shapes[si][1], s = shapes[si][2], n = width * height, len;
        size_t block = apt_bshuf_default_block(s);
        uint8_t *src = malloc(n * s), *out = malloc(n * s + 8);
        fill_frame(src, n, s, si == 1);
        uint8_t *blob = make_bslz4(src, n, s, &len);
        for (int l = 0; l < nlevels; l++) {
            apt_bshuf_set_isa(levels[l]);
            for (int t = 0; t < 120; t++) {
                size_t first, count;
                switch (t % 4) {
                case 0: first = rndn(n), count = rndn(n - first + 1); break;
                case 1: /* straddle a block boundary */
                    first = n > block ? rndn(n / block) * block + block - rndn(9) : rndn(n);
                    first = first >= n ? n - 1 : first, count = 1 + rndn(n - first < 20 ? n - first : 20); break;
                case 2: first = n - rndn(n < 12 ? n : 12) - 1, count = n - first; break; /* the raw tail */
                default: first = rndn(n), count = rndn(n - first < 9 ? n - first + 1 : 9); break;
                }
                memset(out, 0x77, count * s + 8);
                CHECK_OK(apt_bslz4_decode_range(blob, len, s, first, count, out, &err), &err);
                CHECK_MSG(!memcmp(out, src + first * s, count * s) && out[count * s] == 0x77,
                          "range [%zu,+%zu) of %zu s=%zu isa=%d", first, count, n, s, levels[l]);
            }
            for (int t = 0; t < 60; t++) {
                size_t x0 = rndn(width), y0 = rndn(height), w = rndn(width - x0 + 1), h = rndn(height - y0 + 1);
                if (t == 0)
                    x0 = 0, y0 = 0, w = width, h = height;
                memset(out, 0x77, w * h * s + 8);
                CHECK_OK(apt_bslz4_decode_crop(blob, len, s, width, x0, y0, w, h, out, &err), &err);
                int ok = out[w * h * s] == 0x77;
                for (size_t r = 0; r < h && ok; r++)
                    ok = !memcmp(out + r * w * s, src + ((y0 + r) * width + x0) * s, w * s);
                CHECK_MSG(ok, "crop %zux%zu at %zu,%zu of %zux%zu s=%zu isa=%d", w, h, x0, y0, width, height, s,
                          levels[l]);
            }
        }
        CHECK(apt_bslz4_decode_range(blob, len, s, n, 1, out, &err) == APT_ERANGE);
        CHECK(apt_bslz4_decode_range(blob, len, s, 1, SIZE_MAX, out, &err) == APT_ERANGE);
        CHECK(apt_bslz4_decode_range(blob, len, s, n, 0, out, &err) == APT_OK);
        CHECK(apt_bslz4_decode_crop(blob, len, s, width + 1, 0, 0, 1, 1, out, &err) == APT_EINVAL);
        CHECK(apt_bslz4_decode_crop(blob, len, s, width, 1, 0, width, 1, out, &err) == APT_ERANGE);
        CHECK(apt_bslz4_decode_crop(blob, len, s, width, 0, height, 1, 1, out, &err) == APT_ERANGE);
        CHECK(apt_bslz4_decode_crop(blob, len, s, width, 0, 1, 1, SIZE_MAX, out, &err) == APT_ERANGE);
        free(blob), free(src), free(out);
    }
    apt_bshuf_set_isa(-1);
}

static void test_bslz4_errors(void)
{
    apt_error err = {0};
    size_t n = 2 * 4096 + 203, s = 2, len;
    uint8_t *src = malloc(n * s), *dst = malloc(n * s);
    fill_frame(src, n, s, 0);
    uint8_t *blob = make_bslz4(src, n, s, &len);
    uint8_t *b = malloc(len + 16);

    /* every truncation fails, through an exact-size heap copy so ASan sees any over-read */
    int all_fail = 1;
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *t = malloc(cut ? cut : 1);
        memcpy(t, blob, cut);
        int rc = apt_bslz4_decode(t, cut, s, dst, n * s, &err);
        all_fail &= rc == APT_EPROTO || rc == APT_ERANGE;
        rc = apt_bslz4_decode_range(t, cut, s, n - 1, 1, dst, &err); /* needs the tail: must walk to the end */
        all_fail &= rc == APT_EPROTO || rc == APT_ERANGE;
        free(t);
    }
    CHECK_MSG(all_fail, "a truncated blob decoded");
    memcpy(b, blob, len);
    b[len] = 0;
    CHECK(apt_bslz4_decode(b, len + 1, s, dst, n * s, &err) == APT_EPROTO); /* trailing byte */
    CHECK(strstr(err.msg, "after the last block") != NULL);
    CHECK(apt_bslz4_decode_range(blob, len, s, 0, 10, dst, &err) == APT_OK); /* a prefix never needs the end */

    /* corrupted length fields */
    uint32_t c0 = be32(blob + 12);
    uint32_t bad_lens[] = {0, 1, c0 - 1, c0 + 1, 0x7fffffff, 0xffffffff};
    for (size_t i = 0; i < 6; i++) {
        memcpy(b, blob, len);
        b[12] = (uint8_t)(bad_lens[i] >> 24), b[13] = (uint8_t)(bad_lens[i] >> 16);
        b[14] = (uint8_t)(bad_lens[i] >> 8), b[15] = (uint8_t)bad_lens[i];
        CHECK_MSG(apt_bslz4_decode(b, len, s, dst, n * s, &err) == APT_EPROTO, "len %u: %s", bad_lens[i], err.msg);
    }
    /* destination too small for the header's raw size */
    CHECK(apt_bslz4_decode(blob, len, s, dst, n * s - 1, &err) == APT_ERANGE);
    CHECK(strstr(err.msg, "destination") != NULL);
    /* block sizes: not 8 elements, zero, too big; raw size not whole elements */
    static const uint32_t bad_blocks[] = {8190, 0, 2, 12, 4104 * 2 + 2};
    for (size_t i = 0; i < 5; i++) {
        memcpy(b, blob, len);
        b[8] = (uint8_t)(bad_blocks[i] >> 24), b[9] = (uint8_t)(bad_blocks[i] >> 16);
        b[10] = (uint8_t)(bad_blocks[i] >> 8), b[11] = (uint8_t)bad_blocks[i];
        CHECK_MSG(apt_bslz4_decode(b, len, s, dst, n * s, &err) == APT_EPROTO, "block %u", bad_blocks[i]);
    }
    memcpy(b, blob, len);
    b[9] = 0x20; /* 2 MiB blocks */
    CHECK(apt_bslz4_header(b, len, s, NULL, NULL, &err) == APT_ERANGE);
    memcpy(b, blob, len);
    b[7] ^= 1; /* odd raw size for 2-byte elements */
    CHECK(apt_bslz4_decode(b, len, s, dst, n * s, &err) == APT_EPROTO);
    /* huge raw sizes fail on the header alone, before any allocation or write */
    memcpy(b, blob, len);
    b[0] = 0x10; /* 2^60 + ... bytes */
    CHECK(apt_bslz4_header(b, len, s, NULL, NULL, &err) == APT_ERANGE);
    CHECK(apt_bslz4_decode(b, len, s, dst, SIZE_MAX, &err) == APT_ERANGE);
    CHECK(apt_bslz4_decode_range(b, len, s, 0, 1, dst, &err) == APT_ERANGE);
    memset(b, 0xff, 12);
    CHECK(apt_bslz4_header(b, 12, 4, NULL, NULL, &err) < 0);
    /* empty blob: header only; element size checks */
    uint8_t empty[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0};
    CHECK_OK(apt_bslz4_decode(empty, 12, 2, NULL, 0, &err), &err);
    CHECK(apt_bslz4_decode(empty, 11, 2, dst, 0, &err) == APT_EPROTO);
    CHECK(apt_bslz4_decode(blob, len, 0, dst, n * s, &err) == APT_EINVAL);
    CHECK(apt_bslz4_bound(10, 0) == 0 && apt_bslz4_bound(SIZE_MAX / 2, 4) == 0);
    free(src), free(dst), free(blob), free(b);
}

static void test_h5lz4(void)
{
    apt_error err = {0};
    /* golden: "hello" stored raw (incompressible) in one 5-byte block */
    static const uint8_t golden[] = {0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 5, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'};
    uint8_t out[64];
    size_t olen = 0;
    CHECK_OK(apt_h5lz4_decode(golden, sizeof golden, out, sizeof out, &olen, &err), &err);
    CHECK(olen == 5 && !memcmp(out, "hello", 5));
    size_t len;
    CHECK_OK(apt_h5lz4_encode("hello", 5, 0, out, sizeof out, &len, &err), &err);
    CHECK(len == sizeof golden && !memcmp(out, golden, len));

    static const size_t raws[] = {0, 1, 100, 4096, 10000, 300000};
    static const size_t blocks[] = {0, 7, 1000, 4096, 65536};
    for (size_t ri = 0; ri < 6; ri++)
        for (size_t bi = 0; bi < 5; bi++)
            for (int kind = 0; kind < 2; kind++) {
                size_t raw = raws[ri], cap = apt_h5lz4_bound(raw, blocks[bi]);
                uint8_t *src = malloc(raw + 1), *blob = malloc(cap), *dst = malloc(raw + 1);
                fill_frame(src, raw, 1, kind); /* kind 1: random bytes, blocks get stored raw */
                CHECK_OK(apt_h5lz4_encode(src, raw, blocks[bi], blob, cap, &len, &err), &err);
                /* structure: header as the plugin writes it, blocks that decode or are stored raw */
                size_t b = blocks[bi] ? blocks[bi] : (size_t)1 << 30, pos = 12, done = 0;
                b = b > raw ? raw : b;
                int ok = be64(blob) == raw && be32(blob + 8) == b;
                while (ok && done < raw) {
                    size_t bs = raw - done < b ? raw - done : b;
                    uint32_t c = be32(blob + pos);
                    if (c == bs)
                        ok = !memcmp(blob + pos + 4, src + done, bs);
                    else
                        ok = LZ4_decompress_safe((const char *)blob + pos + 4, (char *)dst, (int)c, (int)bs) ==
                                 (int)bs && !memcmp(dst, src + done, bs);
                    pos += 4 + c, done += bs;
                }
                CHECK_MSG(ok && pos == len, "h5lz4 structure raw=%zu block=%zu", raw, blocks[bi]);
                memset(dst, 0x11, raw + 1);
                CHECK_OK(apt_h5lz4_decode(blob, len, dst, raw, &olen, &err), &err);
                CHECK(olen == raw && !memcmp(dst, src, raw) && dst[raw] == 0x11);
                if (raw) {
                    CHECK(apt_h5lz4_decode(blob, len, dst, raw - 1, &olen, &err) == APT_ERANGE);
                    uint8_t *t = malloc(len + 1);
                    memcpy(t, blob, len);
                    t[len] = 0;
                    CHECK(apt_h5lz4_decode(t, len + 1, dst, raw, &olen, &err) == APT_EPROTO);
                    int all_fail = 1; /* every cut of small blobs, 40 random ones of big ones */
                    for (size_t c = 0; c < (len <= 3000 ? len : 40); c++) {
                        size_t cut = len <= 3000 ? c : rndn(len);
                        uint8_t *tc = malloc(cut ? cut : 1);
                        memcpy(tc, blob, cut);
                        all_fail &= apt_h5lz4_decode(tc, cut, dst, raw, &olen, &err) < 0;
                        free(tc);
                    }
                    CHECK_MSG(all_fail, "truncated h5lz4 decoded raw=%zu", raw);
                    free(t);
                }
                free(src), free(blob), free(dst);
            }
    uint8_t hdr[16] = {0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}; /* 256 raw bytes, block 0 */
    CHECK(apt_h5lz4_decode(hdr, 16, out, sizeof out, &olen, &err) == APT_EPROTO);
    hdr[0] = 0x40, hdr[11] = 1; /* 2^62 bytes in 1-byte blocks */
    CHECK(apt_h5lz4_header(hdr, 16, NULL, NULL, &err) == APT_ERANGE);
    CHECK(apt_h5lz4_decode(hdr, 16, out, SIZE_MAX, &olen, &err) == APT_ERANGE);
    CHECK(apt_h5lz4_decode(hdr, 3, out, sizeof out, &olen, &err) == APT_EPROTO);
    CHECK(apt_h5lz4_encode(out, 10, (size_t)1 << 33, out, sizeof out, &len, &err) == APT_EINVAL);
}

static void test_lz4_raw(void)
{
    apt_error err = {0};
    size_t raw = 20000, len;
    uint8_t *src = malloc(raw), *blob = malloc(apt_lz4_bound(raw)), *dst = malloc(raw + 1);
    fill_frame(src, raw / 2, 2, 0);
    CHECK_OK(apt_lz4_encode_raw(src, raw, blob, apt_lz4_bound(raw), &len, &err), &err);
    CHECK(LZ4_decompress_safe((const char *)blob, (char *)dst, (int)len, (int)raw) == (int)raw);
    memset(dst, 0, raw + 1);
    CHECK_OK(apt_lz4_decode_raw(blob, len, dst, raw, &err), &err);
    CHECK(!memcmp(dst, src, raw));
    CHECK(apt_lz4_decode_raw(blob, len, dst, raw - 1, &err) == APT_EPROTO); /* would need a bigger dst */
    CHECK(apt_lz4_decode_raw(blob, len, dst, raw + 1, &err) == APT_EPROTO); /* comes out short */
    CHECK(apt_lz4_decode_raw(blob, len - 1, dst, raw, &err) == APT_EPROTO);
    CHECK(apt_lz4_decode_raw(blob, 0, dst, raw, &err) == APT_EPROTO);
    CHECK(apt_lz4_decode_raw(blob, len, dst, (size_t)1 << 40, &err) == APT_ERANGE);
    CHECK(apt_lz4_encode_raw(src, raw, blob, 10, &len, &err) == APT_ERANGE);
    CHECK_OK(apt_lz4_encode_raw(NULL, 0, blob, 16, &len, &err), &err);
    CHECK(len == 1);
    CHECK_OK(apt_lz4_decode_raw(blob, len, NULL, 0, &err), &err);
    free(src), free(blob), free(dst);
}

/* Random bit flips, byte stores and truncations of valid blobs: every decoder returns an error or stays in bounds. */
static void test_fuzz(void)
{
    apt_error err = {0};
    const size_t width = 100, height = 90, n = width * height;
    enum { NB = 5 };
    uint8_t *blobs[NB];
    size_t lens[NB], elem[NB] = {2, 1, 4, 0, 0}, raws[NB];
    uint8_t *src = malloc(n * 4);
    for (int k = 0; k < 3; k++) {
        fill_frame(src, n, elem[k], k == 2);
        blobs[k] = make_bslz4(src, n, elem[k], &lens[k]);
        raws[k] = n * elem[k];
    }
    fill_frame(src, n, 2, 0);
    raws[3] = n * 2, blobs[3] = malloc(apt_h5lz4_bound(raws[3], 3000));
    CHECK_OK(apt_h5lz4_encode(src, raws[3], 3000, blobs[3], apt_h5lz4_bound(raws[3], 3000), &lens[3], &err), &err);
    raws[4] = n * 2, blobs[4] = malloc(apt_lz4_bound(raws[4]));
    CHECK_OK(apt_lz4_encode_raw(src, raws[4], blobs[4], apt_lz4_bound(raws[4]), &lens[4], &err), &err);
    const size_t guard = 64, cap = n * 4;
    uint8_t *dst = malloc(cap + guard);
    int bad = 0, rejected = 0, iters = 3000;
    for (int it = 0; it < iters; it++) {
        int k = it % NB;
        size_t len = lens[k];
        uint8_t *m = malloc(len);
        memcpy(m, blobs[k], len);
        int nmut = 1 + (int)rndn(4);
        for (int j = 0; j < nmut; j++) {
            size_t at = rnd() % 3 == 0 ? rndn(len < 24 ? len : 24) : rndn(len); /* headers get extra attention */
            if (rnd() % 2)
                m[at] ^= (uint8_t)(1u << rndn(8));
            else
                m[at] = (uint8_t)rnd();
        }
        if (rnd() % 4 == 0)
            len = rndn(len + 1);
        size_t s = elem[k] ? elem[k] : 1, olen;
        uint8_t *d = dst + cap - raws[k]; /* output ends where the guard starts */
        int rc;
        memset(dst + cap, 0xAB, guard);
        if (k < 3) {
            rc = apt_bslz4_decode(m, len, s, d, raws[k], &err);
            size_t first = rndn(n), count = rndn(n - first + 1);
            int rc2 = apt_bslz4_decode_range(m, len, s, first, count, d, &err);
            size_t x0 = rndn(width), y0 = rndn(height);
            int rc3 = apt_bslz4_decode_crop(m, len, s, width, x0, y0, rndn(width - x0 + 1), rndn(height - y0 + 1), d,
                                            &err);
            bad += rc > 0 || rc2 > 0 || rc3 > 0;
        } else if (k == 3) {
            rc = apt_h5lz4_decode(m, len, d, raws[k], &olen, &err);
            bad += rc == APT_OK && olen > raws[k];
        } else {
            rc = apt_lz4_decode_raw(m, len, d, raws[k], &err);
        }
        rejected += rc != APT_OK;
        for (size_t i = 0; i < guard; i++)
            bad += dst[cap + i] != 0xAB;
        free(m);
    }
    CHECK_MSG(bad == 0, "%d fuzz cases went out of bounds", bad);
    CHECK_MSG(rejected > iters / 2, "only %d of %d mutations rejected", rejected, iters);
    for (int k = 0; k < NB; k++)
        free(blobs[k]);
    free(src), free(dst);
}

int main(void)
{
    for (int l = APT_BSHUF_SCALAR; l <= APT_BSHUF_AVX2; l++)
        if (apt_bshuf_set_isa(l) == l)
            levels[nlevels++] = l;
    apt_bshuf_set_isa(-1);
    printf("bit-transpose kernel sets on this CPU: %d (best %d)\n", nlevels, apt_bshuf_isa());
    CHECK(nlevels >= 1 && levels[0] == APT_BSHUF_SCALAR);
    test_default_block();
    test_bitshuffle_vs_reference();
    test_untrans_groups();
    test_bslz4_roundtrip();
    test_partial_decodes();
    test_bslz4_errors();
    test_h5lz4();
    test_lz4_raw();
    test_fuzz();
    APT_TEST_DONE();
}
