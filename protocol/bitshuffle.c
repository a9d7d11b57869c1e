/* bitshuffle.c - the bit transpose of detector pixel blocks, bit-exact with the bitshuffle library (Masui 2015).
 * A block of n elements (n % 8 == 0) of s bytes becomes 8*s bit-rows of n/8 bytes: row j*8+k holds bit k of byte j
 * of every element, element i at bit i%8 of byte i/8. Kernels work on "groups" (8 consecutive elements = one byte
 * column through all rows) so a partial decode can unshuffle only the columns it needs. One transpose, three kernel
 * sets (scalar 8x8 bit-matrix words, SSE2, AVX2 picked at run time) that must give the same bytes. */
#include "aptomo/codec.h"

#include <stdatomic.h>
#include <string.h>

#if defined(__SSE2__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define BSHUF_SSE2 1
#if defined(__GNUC__)
#define BSHUF_AVX2 1
#define AVX2_FN __attribute__((target("avx2")))
#define AVX2_INLINE __attribute__((target("avx2"), always_inline)) static inline
#endif
#endif

/* ---- scalar: Hacker's Delight 8x8 bit-matrix transpose of a word whose byte r is matrix row r ---- */

static inline uint64_t bit_t8x8(uint64_t x)
{
    uint64_t t;
    t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAull;
    x ^= t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCull;
    x ^= t ^ (t << 14);
    t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ull;
    x ^= t ^ (t << 28);
    return x;
}

/* Rows -> elements for groups [g0, g1); nb = bytes per bit-row. Inlined with constant s for the common sizes. */
static inline __attribute__((always_inline)) void untrans_scalar_k(const uint8_t *in, uint8_t *out, size_t nb,
                                                                   size_t s, size_t g0, size_t g1)
{
    for (size_t j = 0; j < s; j++) {
        const uint8_t *rows = in + j * 8 * nb;
        for (size_t g = g0; g < g1; g++) {
            uint64_t x = 0;
            for (unsigned k = 0; k < 8; k++)
                x |= (uint64_t)rows[k * nb + g] << (8 * k);
            x = bit_t8x8(x);
            uint8_t *o = out + 8 * g * s + j;
            for (unsigned b = 0; b < 8; b++)
                o[b * s] = (uint8_t)(x >> (8 * b));
        }
    }
}

static inline __attribute__((always_inline)) void trans_scalar_k(const uint8_t *in, uint8_t *out, size_t nb,
                                                                 size_t s, size_t g0, size_t g1)
{
    for (size_t j = 0; j < s; j++) {
        uint8_t *rows = out + j * 8 * nb;
        for (size_t g = g0; g < g1; g++) {
            const uint8_t *e = in + 8 * g * s + j;
            uint64_t x = 0;
            for (unsigned b = 0; b < 8; b++)
                x |= (uint64_t)e[b * s] << (8 * b);
            x = bit_t8x8(x);
            for (unsigned k = 0; k < 8; k++)
                rows[k * nb + g] = (uint8_t)(x >> (8 * k));
        }
    }
}

static void untrans_scalar(const uint8_t *in, uint8_t *out, size_t nb, size_t s, size_t g0, size_t g1)
{
    switch (s) {
    case 1: untrans_scalar_k(in, out, nb, 1, g0, g1); break;
    case 2: untrans_scalar_k(in, out, nb, 2, g0, g1); break;
    case 4: untrans_scalar_k(in, out, nb, 4, g0, g1); break;
    default: untrans_scalar_k(in, out, nb, s, g0, g1); break;
    }
}

static void trans_scalar(const uint8_t *in, uint8_t *out, size_t nb, size_t s, size_t g0, size_t g1)
{
    switch (s) {
    case 1: trans_scalar_k(in, out, nb, 1, g0, g1); break;
    case 2: trans_scalar_k(in, out, nb, 2, g0, g1); break;
    case 4: trans_scalar_k(in, out, nb, 4, g0, g1); break;
    default: trans_scalar_k(in, out, nb, s, g0, g1); break;
    }
}

/* The transpose helpers work on arrays of vectors; they must inline or the vectors round-trip through memory. */
#define VEC_INLINE __attribute__((always_inline)) static inline

#ifdef BSHUF_SSE2
/* ---- SSE2: 16 groups per step. Load 8 bit-rows of 16 bytes, transpose the 8x8 bit matrix held in byte g of the
 * 8 vectors (3 masked swap stages, like the scalar word), then interleave bytes into element order. Beats the
 * movemask formulation: ~1 instruction per output byte. ---- */

#define LD128(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define ST128(p, v) _mm_storeu_si128((__m128i *)(void *)(p), v)

/* Swap bit blocks: bits of a at positions p+sh <-> bits of b at positions p, p selected by mask m. */
#define SWAP128(a, b, sh, m)                                                                    \
    do {                                                                                        \
        __m128i t_ = _mm_and_si128(_mm_xor_si128(_mm_srli_epi16(a, sh), b), m);                 \
        b = _mm_xor_si128(b, t_);                                                               \
        a = _mm_xor_si128(a, _mm_slli_epi16(t_, sh));                                           \
    } while (0)

/* v[r] bit c of every byte <-> v[c] bit r: the 8x8 bit transpose, 16 byte lanes at a time. Self-inverse. */
VEC_INLINE void bt8_128(__m128i v[8])
{
    const __m128i m1 = _mm_set1_epi8(0x55), m2 = _mm_set1_epi8(0x33), m4 = _mm_set1_epi8(0x0f);
    SWAP128(v[0], v[1], 1, m1);
    SWAP128(v[2], v[3], 1, m1);
    SWAP128(v[4], v[5], 1, m1);
    SWAP128(v[6], v[7], 1, m1);
    SWAP128(v[0], v[2], 2, m2);
    SWAP128(v[1], v[3], 2, m2);
    SWAP128(v[4], v[6], 2, m2);
    SWAP128(v[5], v[7], 2, m2);
    SWAP128(v[0], v[4], 4, m4);
    SWAP128(v[1], v[5], 4, m4);
    SWAP128(v[2], v[6], 4, m4);
    SWAP128(v[3], v[7], 4, m4);
}

/* 8x8 transpose of 16-bit lanes (x[r] lane c <-> x[c] lane r). Self-inverse. */
VEC_INLINE void tr16_128(__m128i x[8])
{
    __m128i a0 = _mm_unpacklo_epi16(x[0], x[1]), a1 = _mm_unpackhi_epi16(x[0], x[1]);
    __m128i a2 = _mm_unpacklo_epi16(x[2], x[3]), a3 = _mm_unpackhi_epi16(x[2], x[3]);
    __m128i a4 = _mm_unpacklo_epi16(x[4], x[5]), a5 = _mm_unpackhi_epi16(x[4], x[5]);
    __m128i a6 = _mm_unpacklo_epi16(x[6], x[7]), a7 = _mm_unpackhi_epi16(x[6], x[7]);
    __m128i b0 = _mm_unpacklo_epi32(a0, a2), b1 = _mm_unpackhi_epi32(a0, a2);
    __m128i b2 = _mm_unpacklo_epi32(a1, a3), b3 = _mm_unpackhi_epi32(a1, a3);
    __m128i b4 = _mm_unpacklo_epi32(a4, a6), b5 = _mm_unpackhi_epi32(a4, a6);
    __m128i b6 = _mm_unpacklo_epi32(a5, a7), b7 = _mm_unpackhi_epi32(a5, a7);
    x[0] = _mm_unpacklo_epi64(b0, b4), x[1] = _mm_unpackhi_epi64(b0, b4);
    x[2] = _mm_unpacklo_epi64(b1, b5), x[3] = _mm_unpackhi_epi64(b1, b5);
    x[4] = _mm_unpacklo_epi64(b2, b6), x[5] = _mm_unpackhi_epi64(b2, b6);
    x[6] = _mm_unpacklo_epi64(b3, b7), x[7] = _mm_unpackhi_epi64(b3, b7);
}

/* 4x4 transpose of 32-bit lanes. Self-inverse. */
VEC_INLINE void tr32_128(__m128i v[4])
{
    __m128i t0 = _mm_unpacklo_epi32(v[0], v[1]), t1 = _mm_unpackhi_epi32(v[0], v[1]);
    __m128i t2 = _mm_unpacklo_epi32(v[2], v[3]), t3 = _mm_unpackhi_epi32(v[2], v[3]);
    v[0] = _mm_unpacklo_epi64(t0, t2), v[1] = _mm_unpackhi_epi64(t0, t2);
    v[2] = _mm_unpacklo_epi64(t1, t3), v[3] = _mm_unpackhi_epi64(t1, t3);
}

static void untrans1_sse2(const uint8_t *in, uint8_t *out, size_t nb, size_t g0, size_t g1)
{
    size_t g = g0;
    for (; g + 16 <= g1; g += 16) {
        __m128i w[8];
        for (int k = 0; k < 8; k++)
            w[k] = LD128(in + k * nb + g);
        bt8_128(w); /* w[b] byte g' = element 8(g+g')+b */
        __m128i a0 = _mm_unpacklo_epi8(w[0], w[1]), a1 = _mm_unpackhi_epi8(w[0], w[1]);
        __m128i a2 = _mm_unpacklo_epi8(w[2], w[3]), a3 = _mm_unpackhi_epi8(w[2], w[3]);
        __m128i a4 = _mm_unpacklo_epi8(w[4], w[5]), a5 = _mm_unpackhi_epi8(w[4], w[5]);
        __m128i a6 = _mm_unpacklo_epi8(w[6], w[7]), a7 = _mm_unpackhi_epi8(w[6], w[7]);
        __m128i b0 = _mm_unpacklo_epi16(a0, a2), b1 = _mm_unpackhi_epi16(a0, a2);
        __m128i b2 = _mm_unpacklo_epi16(a1, a3), b3 = _mm_unpackhi_epi16(a1, a3);
        __m128i b4 = _mm_unpacklo_epi16(a4, a6), b5 = _mm_unpackhi_epi16(a4, a6);
        __m128i b6 = _mm_unpacklo_epi16(a5, a7), b7 = _mm_unpackhi_epi16(a5, a7);
        uint8_t *o = out + 8 * g;
        ST128(o + 0, _mm_unpacklo_epi32(b0, b4));
        ST128(o + 16, _mm_unpackhi_epi32(b0, b4));
        ST128(o + 32, _mm_unpacklo_epi32(b1, b5));
        ST128(o + 48, _mm_unpackhi_epi32(b1, b5));
        ST128(o + 64, _mm_unpacklo_epi32(b2, b6));
        ST128(o + 80, _mm_unpackhi_epi32(b2, b6));
        ST128(o + 96, _mm_unpacklo_epi32(b3, b7));
        ST128(o + 112, _mm_unpackhi_epi32(b3, b7));
    }
    untrans_scalar_k(in, out, nb, 1, g, g1);
}

static void untrans2_sse2(const uint8_t *in, uint8_t *out, size_t nb, size_t g0, size_t g1)
{
    size_t g = g0;
    for (; g + 16 <= g1; g += 16) {
        __m128i lo[8], hi[8], x[8];
        for (int k = 0; k < 8; k++) {
            lo[k] = LD128(in + k * nb + g);
            hi[k] = LD128(in + (8 + k) * nb + g);
        }
        bt8_128(lo);
        bt8_128(hi);
        /* x[b] 16-bit lane g' = element 8(g+g')+b; transposed, x[g'] = the 8 elements of group g+g' */
        for (int b = 0; b < 8; b++)
            x[b] = _mm_unpacklo_epi8(lo[b], hi[b]);
        tr16_128(x);
        for (int i = 0; i < 8; i++)
            ST128(out + 16 * (g + i), x[i]);
        for (int b = 0; b < 8; b++)
            x[b] = _mm_unpackhi_epi8(lo[b], hi[b]);
        tr16_128(x);
        for (int i = 0; i < 8; i++)
            ST128(out + 16 * (g + 8 + i), x[i]);
    }
    untrans_scalar_k(in, out, nb, 2, g, g1);
}

static void untrans4_sse2(const uint8_t *in, uint8_t *out, size_t nb, size_t g0, size_t g1)
{
    size_t g = g0;
    for (; g + 16 <= g1; g += 16) {
        __m128i w[4][8], el[8][4];
        for (int j = 0; j < 4; j++) {
            for (int k = 0; k < 8; k++)
                w[j][k] = LD128(in + (8 * j + k) * nb + g);
            bt8_128(w[j]);
        }
        for (int b = 0; b < 8; b++) { /* el[b][q] 32-bit lane i = element 8(g+4q+i)+b */
            __m128i plo = _mm_unpacklo_epi8(w[0][b], w[1][b]), phi = _mm_unpackhi_epi8(w[0][b], w[1][b]);
            __m128i qlo = _mm_unpacklo_epi8(w[2][b], w[3][b]), qhi = _mm_unpackhi_epi8(w[2][b], w[3][b]);
            el[b][0] = _mm_unpacklo_epi16(plo, qlo), el[b][1] = _mm_unpackhi_epi16(plo, qlo);
            el[b][2] = _mm_unpacklo_epi16(phi, qhi), el[b][3] = _mm_unpackhi_epi16(phi, qhi);
        }
        for (int q = 0; q < 4; q++)
            for (int h = 0; h < 2; h++) {
                __m128i v[4] = {el[4 * h][q], el[4 * h + 1][q], el[4 * h + 2][q], el[4 * h + 3][q]};
                tr32_128(v);
                for (int i = 0; i < 4; i++)
                    ST128(out + 32 * (g + 4 * q + i) + 16 * h, v[i]);
            }
    }
    untrans_scalar_k(in, out, nb, 4, g, g1);
}

static void trans1_sse2(const uint8_t *in, uint8_t *out, size_t nb, size_t g0, size_t g1)
{
    size_t g = g0;
    for (; g + 16 <= g1; g += 16) {
        const uint8_t *e = in + 8 * g;
        __m128i p[8], ql[4], qh[4], w[8];
        for (int m = 0; m < 8; m++) /* p[m] 16-bit lane b = byte b of groups 2m, 2m+1 */
            p[m] = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)(const void *)(e + 16 * m)),
                                     _mm_loadl_epi64((const __m128i *)(const void *)(e + 16 * m + 8)));
        for (int q = 0; q < 4; q++) { /* 32-bit lane b (b < 4 in ql, b >= 4 in qh) = groups 4q..4q+3 */
            ql[q] = _mm_unpacklo_epi16(p[2 * q], p[2 * q + 1]);
            qh[q] = _mm_unpackhi_epi16(p[2 * q], p[2 * q + 1]);
        }
        for (int half = 0; half < 2; half++) { /* 64-bit lanes: one b, 8 groups */
            __m128i *src = half ? qh : ql;
            __m128i ra = _mm_unpacklo_epi32(src[0], src[1]), rb = _mm_unpackhi_epi32(src[0], src[1]);
            __m128i rc = _mm_unpacklo_epi32(src[2], src[3]), rd = _mm_unpackhi_epi32(src[2], src[3]);
            w[4 * half + 0] = _mm_unpacklo_epi64(ra, rc), w[4 * half + 1] = _mm_unpackhi_epi64(ra, rc);
            w[4 * half + 2] = _mm_unpacklo_epi64(rb, rd), w[4 * half + 3] = _mm_unpackhi_epi64(rb, rd);
        }
        bt8_128(w);
        for (int k = 0; k < 8; k++)
            ST128(out + k * nb + g, w[k]);
    }
    trans_scalar_k(in, out, nb, 1, g, g1);
}

static void trans2_sse2(const uint8_t *in, uint8_t *out, size_t nb, size_t g0, size_t g1)
{
    const __m128i ff = _mm_set1_epi16(0xff);
    size_t g = g0;
    for (; g + 16 <= g1; g += 16) {
        const uint8_t *e = in + 16 * g;
        __m128i x[8], y[8], lo[8], hi[8];
        for (int i = 0; i < 8; i++) {
            x[i] = LD128(e + 16 * i);
            y[i] = LD128(e + 16 * (8 + i));
        }
        tr16_128(x); /* x[b] lane i = element 8(g+i)+b */
        tr16_128(y);
        for (int b = 0; b < 8; b++) {
            lo[b] = _mm_packus_epi16(_mm_and_si128(x[b], ff), _mm_and_si128(y[b], ff));
            hi[b] = _mm_packus_epi16(_mm_srli_epi16(x[b], 8), _mm_srli_epi16(y[b], 8));
        }
        bt8_128(lo);
        bt8_128(hi);
        for (int k = 0; k < 8; k++) {
            ST128(out + k * nb + g, lo[k]);
            ST128(out + (8 + k) * nb + g, hi[k]);
        }
    }
    trans_scalar_k(in, out, nb, 2, g, g1);
}

static void trans4_sse2(const uint8_t *in, uint8_t *out, size_t nb, size_t g0, size_t g1)
{
    const __m128i ff = _mm_set1_epi16(0xff);
    size_t g = g0;
    for (; g + 16 <= g1; g += 16) {
        const uint8_t *e = in + 32 * g;
        __m128i el[8][4], w[4][8];
        for (int q = 0; q < 4; q++)
            for (int h = 0; h < 2; h++) {
                __m128i v[4];
                for (int i = 0; i < 4; i++)
                    v[i] = LD128(e + 32 * (4 * q + i) + 16 * h);
                tr32_128(v); /* v[bb] lane i = element 8(g+4q+i)+4h+bb */
                for (int bb = 0; bb < 4; bb++)
                    el[4 * h + bb][q] = v[bb];
            }
        for (int b = 0; b < 8; b++) { /* split 32-bit lanes into byte planes; packs is exact on sign-extended halves */
            __m128i l01 = _mm_packs_epi32(_mm_srai_epi32(_mm_slli_epi32(el[b][0], 16), 16),
                                          _mm_srai_epi32(_mm_slli_epi32(el[b][1], 16), 16));
            __m128i l23 = _mm_packs_epi32(_mm_srai_epi32(_mm_slli_epi32(el[b][2], 16), 16),
                                          _mm_srai_epi32(_mm_slli_epi32(el[b][3], 16), 16));
            __m128i h01 = _mm_packs_epi32(_mm_srai_epi32(el[b][0], 16), _mm_srai_epi32(el[b][1], 16));
            __m128i h23 = _mm_packs_epi32(_mm_srai_epi32(el[b][2], 16), _mm_srai_epi32(el[b][3], 16));
            w[0][b] = _mm_packus_epi16(_mm_and_si128(l01, ff), _mm_and_si128(l23, ff));
            w[1][b] = _mm_packus_epi16(_mm_srli_epi16(l01, 8), _mm_srli_epi16(l23, 8));
            w[2][b] = _mm_packus_epi16(_mm_and_si128(h01, ff), _mm_and_si128(h23, ff));
            w[3][b] = _mm_packus_epi16(_mm_srli_epi16(h01, 8), _mm_srli_epi16(h23, 8));
        }
        for (int j = 0; j < 4; j++) {
            bt8_128(w[j]);
            for (int k = 0; k < 8; k++)
                ST128(out + (8 * j + k) * nb + g, w[j][k]);
        }
    }
    trans_scalar_k(in, out, nb, 4, g, g1);
}
#endif /* BSHUF_SSE2 */

#ifdef BSHUF_AVX2
/* ---- AVX2 decode: the SSE2 steps on 32 groups, lane-wise (lane 0 = groups g..g+15, lane 1 = g+16..g+31); a pair
 * of results whose lane-0 halves are adjacent in the output is written as two 32-byte stores. ---- */

#define LD256(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))

#define SWAP256(a, b, sh, m)                                                                    \
    do {                                                                                        \
        __m256i t_ = _mm256_and_si256(_mm256_xor_si256(_mm256_srli_epi16(a, sh), b), m);        \
        b = _mm256_xor_si256(b, t_);                                                            \
        a = _mm256_xor_si256(a, _mm256_slli_epi16(t_, sh));                                     \
    } while (0)

AVX2_INLINE void bt8_256(__m256i v[8])
{
    const __m256i m1 = _mm256_set1_epi8(0x55), m2 = _mm256_set1_epi8(0x33), m4 = _mm256_set1_epi8(0x0f);
    SWAP256(v[0], v[1], 1, m1);
    SWAP256(v[2], v[3], 1, m1);
    SWAP256(v[4], v[5], 1, m1);
    SWAP256(v[6], v[7], 1, m1);
    SWAP256(v[0], v[2], 2, m2);
    SWAP256(v[1], v[3], 2, m2);
    SWAP256(v[4], v[6], 2, m2);
    SWAP256(v[5], v[7], 2, m2);
    SWAP256(v[0], v[4], 4, m4);
    SWAP256(v[1], v[5], 4, m4);
    SWAP256(v[2], v[6], 4, m4);
    SWAP256(v[3], v[7], 4, m4);
}

AVX2_INLINE void tr16_256(__m256i x[8])
{
    __m256i a0 = _mm256_unpacklo_epi16(x[0], x[1]), a1 = _mm256_unpackhi_epi16(x[0], x[1]);
    __m256i a2 = _mm256_unpacklo_epi16(x[2], x[3]), a3 = _mm256_unpackhi_epi16(x[2], x[3]);
    __m256i a4 = _mm256_unpacklo_epi16(x[4], x[5]), a5 = _mm256_unpackhi_epi16(x[4], x[5]);
    __m256i a6 = _mm256_unpacklo_epi16(x[6], x[7]), a7 = _mm256_unpackhi_epi16(x[6], x[7]);
    __m256i b0 = _mm256_unpacklo_epi32(a0, a2), b1 = _mm256_unpackhi_epi32(a0, a2);
    __m256i b2 = _mm256_unpacklo_epi32(a1, a3), b3 = _mm256_unpackhi_epi32(a1, a3);
    __m256i b4 = _mm256_unpacklo_epi32(a4, a6), b5 = _mm256_unpackhi_epi32(a4, a6);
    __m256i b6 = _mm256_unpacklo_epi32(a5, a7), b7 = _mm256_unpackhi_epi32(a5, a7);
    x[0] = _mm256_unpacklo_epi64(b0, b4), x[1] = _mm256_unpackhi_epi64(b0, b4);
    x[2] = _mm256_unpacklo_epi64(b1, b5), x[3] = _mm256_unpackhi_epi64(b1, b5);
    x[4] = _mm256_unpacklo_epi64(b2, b6), x[5] = _mm256_unpackhi_epi64(b2, b6);
    x[6] = _mm256_unpacklo_epi64(b3, b7), x[7] = _mm256_unpackhi_epi64(b3, b7);
}

AVX2_INLINE void tr32_256(__m256i v[4])
{
    __m256i t0 = _mm256_unpacklo_epi32(v[0], v[1]), t1 = _mm256_unpackhi_epi32(v[0], v[1]);
    __m256i t2 = _mm256_unpacklo_epi32(v[2], v[3]), t3 = _mm256_unpackhi_epi32(v[2], v[3]);
    v[0] = _mm256_unpacklo_epi64(t0, t2), v[1] = _mm256_unpackhi_epi64(t0, t2);
    v[2] = _mm256_unpacklo_epi64(t1, t3), v[3] = _mm256_unpackhi_epi64(t1, t3);
}

/* a.lane0|b.lane0 -> lo (32 bytes), a.lane1|b.lane1 -> hi. */
AVX2_INLINE void st_pair256(uint8_t *lo, uint8_t *hi, __m256i a, __m256i b)
{
    _mm256_storeu_si256((__m256i *)(void *)lo, _mm256_permute2x128_si256(a, b, 0x20));
    _mm256_storeu_si256((__m256i *)(void *)hi, _mm256_permute2x128_si256(a, b, 0x31));
}

AVX2_FN static void untrans1_avx2(const uint8_t *in, uint8_t *out, size_t nb, size_t g0, size_t g1)
{
    size_t g = g0;
    for (; g + 32 <= g1; g += 32) {
        __m256i w[8], c[8];
        for (int k = 0; k < 8; k++)
            w[k] = LD256(in + k * nb + g);
        bt8_256(w);
        __m256i a0 = _mm256_unpacklo_epi8(w[0], w[1]), a1 = _mm256_unpackhi_epi8(w[0], w[1]);
        __m256i a2 = _mm256_unpacklo_epi8(w[2], w[3]), a3 = _mm256_unpackhi_epi8(w[2], w[3]);
        __m256i a4 = _mm256_unpacklo_epi8(w[4], w[5]), a5 = _mm256_unpackhi_epi8(w[4], w[5]);
        __m256i a6 = _mm256_unpacklo_epi8(w[6], w[7]), a7 = _mm256_unpackhi_epi8(w[6], w[7]);
        __m256i b0 = _mm256_unpacklo_epi16(a0, a2), b1 = _mm256_unpackhi_epi16(a0, a2);
        __m256i b2 = _mm256_unpacklo_epi16(a1, a3), b3 = _mm256_unpackhi_epi16(a1, a3);
        __m256i b4 = _mm256_unpacklo_epi16(a4, a6), b5 = _mm256_unpackhi_epi16(a4, a6);
        __m256i b6 = _mm256_unpacklo_epi16(a5, a7), b7 = _mm256_unpackhi_epi16(a5, a7);
        c[0] = _mm256_unpacklo_epi32(b0, b4), c[1] = _mm256_unpackhi_epi32(b0, b4);
        c[2] = _mm256_unpacklo_epi32(b1, b5), c[3] = _mm256_unpackhi_epi32(b1, b5);
        c[4] = _mm256_unpacklo_epi32(b2, b6), c[5] = _mm256_unpackhi_epi32(b2, b6);
        c[6] = _mm256_unpacklo_epi32(b3, b7), c[7] = _mm256_unpackhi_epi32(b3, b7);
        uint8_t *o = out + 8 * g; /* c[m] lane 0 -> groups g+2m, g+2m+1; lane 1 -> 16 groups (128 bytes) later */
        for (int p = 0; p < 4; p++)
            st_pair256(o + 32 * p, o + 128 + 32 * p, c[2 * p], c[2 * p + 1]);
    }
    _mm256_zeroupper(); /* the SSE2 tail is legacy-encoded: no dirty upper halves across it */
    untrans1_sse2(in, out, nb, g, g1);
}

AVX2_FN static void untrans2_avx2(const uint8_t *in, uint8_t *out, size_t nb, size_t g0, size_t g1)
{
    size_t g = g0;
    for (; g + 32 <= g1; g += 32) {
        __m256i lo[8], hi[8], x[8];
        for (int k = 0; k < 8; k++) {
            lo[k] = LD256(in + k * nb + g);
            hi[k] = LD256(in + (8 + k) * nb + g);
        }
        bt8_256(lo);
        bt8_256(hi);
        for (int half = 0; half < 2; half++) {
            for (int b = 0; b < 8; b++)
                x[b] = half ? _mm256_unpackhi_epi8(lo[b], hi[b]) : _mm256_unpacklo_epi8(lo[b], hi[b]);
            tr16_256(x); /* x[i] lane 0 = group g+8*half+i, lane 1 = group g+16+8*half+i */
            uint8_t *o = out + 16 * (g + 8 * half);
            for (int i = 0; i < 8; i += 2)
                st_pair256(o + 16 * i, o + 256 + 16 * i, x[i], x[i + 1]);
        }
    }
    _mm256_zeroupper(); /* the SSE2 tail is legacy-encoded: no dirty upper halves across it */
    untrans2_sse2(in, out, nb, g, g1);
}

AVX2_FN static void untrans4_avx2(const uint8_t *in, uint8_t *out, size_t nb, size_t g0, size_t g1)
{
    size_t g = g0;
    for (; g + 32 <= g1; g += 32) {
        __m256i w[4][8], el[8][4];
        for (int j = 0; j < 4; j++) {
            for (int k = 0; k < 8; k++)
                w[j][k] = LD256(in + (8 * j + k) * nb + g);
            bt8_256(w[j]);
        }
        for (int b = 0; b < 8; b++) {
            __m256i plo = _mm256_unpacklo_epi8(w[0][b], w[1][b]), phi = _mm256_unpackhi_epi8(w[0][b], w[1][b]);
            __m256i qlo = _mm256_unpacklo_epi8(w[2][b], w[3][b]), qhi = _mm256_unpackhi_epi8(w[2][b], w[3][b]);
            el[b][0] = _mm256_unpacklo_epi16(plo, qlo), el[b][1] = _mm256_unpackhi_epi16(plo, qlo);
            el[b][2] = _mm256_unpacklo_epi16(phi, qhi), el[b][3] = _mm256_unpackhi_epi16(phi, qhi);
        }
        for (int q = 0; q < 4; q++) {
            __m256i v0[4] = {el[0][q], el[1][q], el[2][q], el[3][q]};
            __m256i v1[4] = {el[4][q], el[5][q], el[6][q], el[7][q]};
            tr32_256(v0);
            tr32_256(v1);
            for (int i = 0; i < 4; i++) { /* group g+4q+i: 32 bytes; lane 1 is 16 groups (512 bytes) later */
                uint8_t *o = out + 32 * (g + 4 * q + i);
                st_pair256(o, o + 512, v0[i], v1[i]);
            }
        }
    }
    _mm256_zeroupper(); /* the SSE2 tail is legacy-encoded: no dirty upper halves across it */
    untrans4_sse2(in, out, nb, g, g1);
}
#endif /* BSHUF_AVX2 */

/* ---- dispatch ---- */

static atomic_int bshuf_cap = -1; /* <0: the best the CPU has */

static int cpu_level(void)
{
#ifdef BSHUF_AVX2
    if (__builtin_cpu_supports("avx2"))
        return APT_BSHUF_AVX2;
#endif
#ifdef BSHUF_SSE2
    return APT_BSHUF_SSE2;
#else
    return APT_BSHUF_SCALAR;
#endif
}

int apt_bshuf_isa(void)
{
    int cap = atomic_load_explicit(&bshuf_cap, memory_order_relaxed), hw = cpu_level();
    return cap < 0 || cap > hw ? hw : cap;
}

int apt_bshuf_set_isa(int max_level)
{
    atomic_store_explicit(&bshuf_cap, max_level < 0 ? -1 : max_level, memory_order_relaxed);
    return apt_bshuf_isa();
}

static void untrans_groups(const uint8_t *in, uint8_t *out, size_t nb, size_t s, size_t g0, size_t g1)
{
    int isa = apt_bshuf_isa();
    (void)isa;
#ifdef BSHUF_AVX2
    if (isa >= APT_BSHUF_AVX2 && (s == 1 || s == 2 || s == 4)) {
        if (s == 1)
            untrans1_avx2(in, out, nb, g0, g1);
        else if (s == 2)
            untrans2_avx2(in, out, nb, g0, g1);
        else
            untrans4_avx2(in, out, nb, g0, g1);
        return;
    }
#endif
#ifdef BSHUF_SSE2
    if (isa >= APT_BSHUF_SSE2 && (s == 1 || s == 2 || s == 4)) {
        if (s == 1)
            untrans1_sse2(in, out, nb, g0, g1);
        else if (s == 2)
            untrans2_sse2(in, out, nb, g0, g1);
        else
            untrans4_sse2(in, out, nb, g0, g1);
        return;
    }
#endif
    untrans_scalar(in, out, nb, s, g0, g1);
}

/* The encode direction is not hot (replay, tests): SSE2 is plenty. */
static void trans_groups(const uint8_t *in, uint8_t *out, size_t nb, size_t s, size_t g0, size_t g1)
{
    int isa = apt_bshuf_isa();
    (void)isa;
#ifdef BSHUF_SSE2
    if (isa >= APT_BSHUF_SSE2 && (s == 1 || s == 2 || s == 4)) {
        if (s == 1)
            trans1_sse2(in, out, nb, g0, g1);
        else if (s == 2)
            trans2_sse2(in, out, nb, g0, g1);
        else
            trans4_sse2(in, out, nb, g0, g1);
        return;
    }
#endif
    trans_scalar(in, out, nb, s, g0, g1);
}

/* ---- public: bitshuffle's blocked layout (full blocks, a last block of whole groups, the n % 8 tail raw) ---- */

size_t apt_bshuf_default_block(size_t elem_size)
{
    if (elem_size == 0)
        return 0;
    size_t b = APT_BSLZ4_TARGET_BLOCK / elem_size / 8 * 8;
    return b < 128 ? 128 : b;
}

static int overlaps(const void *a, const void *b, size_t len)
{
    uintptr_t pa = (uintptr_t)a, pb = (uintptr_t)b;
    return len && pa < pb + len && pb < pa + len;
}

static int check_args(const char *what, const void *in, const void *out, size_t n, size_t elem_size,
                      size_t block_elems, apt_error *err)
{
    size_t bytes;
    if (elem_size == 0 || elem_size > APT_BSHUF_MAX_ELEM)
        return apt_err(err, APT_EINVAL, "%s: element size %zu is not in 1..%u", what, elem_size, APT_BSHUF_MAX_ELEM);
    if (block_elems % 8)
        return apt_err(err, APT_EINVAL, "%s: block of %zu elements is not a multiple of 8", what, block_elems);
    if (__builtin_mul_overflow(n, elem_size, &bytes))
        return apt_err(err, APT_ERANGE, "%s: %zu elements of %zu bytes overflow size_t", what, n, elem_size);
    if (bytes && (!in || !out))
        return apt_err(err, APT_EINVAL, "%s: NULL buffer", what);
    if (overlaps(in, out, bytes))
        return apt_err(err, APT_EINVAL, "%s: input and output overlap (no in-place transform)", what);
    return APT_OK;
}

static int blocked(int dir, const void *in, void *out, size_t n, size_t s, size_t block, apt_error *err)
{
    int rc = check_args(dir ? "bitshuffle" : "bitunshuffle", in, out, n, s, block, err);
    if (rc)
        return rc;
    if (!block)
        block = apt_bshuf_default_block(s);
    const uint8_t *src = in;
    uint8_t *dst = out;
    size_t done = 0;
    while (done < n) {
        size_t be = n - done >= block ? block : (n - done) / 8 * 8;
        if (!be)
            break;
        if (dir)
            trans_groups(src + done * s, dst + done * s, be / 8, s, 0, be / 8);
        else
            untrans_groups(src + done * s, dst + done * s, be / 8, s, 0, be / 8);
        done += be;
    }
    if (n > done)
        memcpy(dst + done * s, src + done * s, (n - done) * s);
    return APT_OK;
}

int apt_bitshuffle(const void *in, void *out, size_t n, size_t elem_size, size_t block_elems, apt_error *err)
{
    return blocked(1, in, out, n, elem_size, block_elems, err);
}

int apt_bitunshuffle(const void *in, void *out, size_t n, size_t elem_size, size_t block_elems, apt_error *err)
{
    return blocked(0, in, out, n, elem_size, block_elems, err);
}

int apt_bshuf_untrans_groups(const void *in, void *out, size_t block_elems, size_t elem_size, size_t g0, size_t g1,
                             apt_error *err)
{
    int rc = check_args("bitunshuffle", in, out, block_elems, elem_size, block_elems, err);
    if (rc)
        return rc;
    if (g0 > g1 || g1 > block_elems / 8)
        return apt_err(err, APT_ERANGE, "bitunshuffle: groups [%zu, %zu) outside a block of %zu groups", g0, g1,
                       block_elems / 8);
    if (g0 < g1)
        untrans_groups(in, out, block_elems / 8, elem_size, g0, g1);
    return APT_OK;
}
