/* fbp.c - filtered back-projection for the tilt geometry: each detector row is convolved with the ramp filter
 * (built in the spatial domain like Kak & Slaney / scikit-image, so the DC term is right) times an optional
 * Shepp-Logan or Hann window, through FFTW real transforms zero-padded to a power of two >= 2U; the filtered rows
 * are then back-projected pixel-driven with linear interpolation, each angle weighted by its share of the angular
 * range (apt_fbp_weights), which keeps non-uniform and limited angle sets quantitatively right. */
#include "aptomo/tomo.h"

#include <fftw3.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/parallel.h"
#include "fft/fftw_lock.h"
#include "tomo/fbp_int.h"

int apt_fbp_filter_parse(const char *s, apt_fbp_filter *f, apt_error *err)
{
    if (!s)
        return apt_err(err, APT_EINVAL, "filter: missing");
    if (!strcmp(s, "ramp"))
        *f = APT_FBP_RAMP;
    else if (!strcmp(s, "shepp") || !strcmp(s, "shepp-logan"))
        *f = APT_FBP_SHEPP;
    else if (!strcmp(s, "hann"))
        *f = APT_FBP_HANN;
    else
        return apt_err(err, APT_EINVAL, "filter: '%s' is not one of ramp, shepp, hann", s);
    return APT_OK;
}

typedef struct ang_key {
    double t;
    int i;
} ang_key;

static int cmp_key(const void *a, const void *b)
{
    double x = ((const ang_key *)a)->t, y = ((const ang_key *)b)->t;
    return x < y ? -1 : x > y;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int apt_fbp_weights(const double *theta_deg, int n, double *w, apt_error *err)
{
    if (n < 1 || n > APT_TOMO_MAX_ANGLES)
        return apt_err(err, APT_ERANGE, "fbp: %d angles out of range", n);
    if (n == 1) {
        w[0] = M_PI;
        return APT_OK;
    }
    ang_key *k = malloc((size_t)n * sizeof *k);
    double *gap = malloc((size_t)n * sizeof *gap);
    if (!k || !gap) {
        free(k);
        free(gap);
        return apt_err(err, APT_ENOMEM, "fbp: out of memory");
    }
    for (int a = 0; a < n; a++)
        k[a] = (ang_key){theta_deg[a] * M_PI / 180.0, a};
    qsort(k, (size_t)n, sizeof *k, cmp_key);
    for (int a = 0; a + 1 < n; a++)
        gap[a] = k[a + 1].t - k[a].t;
    /* median interior gap: the set's typical step */
    double *g2 = malloc((size_t)(n - 1) * sizeof *g2);
    double med = gap[0];
    if (g2) {
        memcpy(g2, gap, (size_t)(n - 1) * sizeof *g2);
        qsort(g2, (size_t)(n - 1), sizeof *g2, cmp_dbl);
        med = g2[(n - 1) / 2];
        free(g2);
    }
    double span = k[n - 1].t - k[0].t, wrap = k[0].t + M_PI - k[n - 1].t;
    double gmax = 0;
    for (int a = 0; a + 1 < n; a++)
        gmax = gap[a] > gmax ? gap[a] : gmax;
    /* covers the half circle when the wrap-around gap is just another gap: no wider than two typical steps or
       than the widest interior one */
    int full = span < M_PI && wrap <= fmax(2 * med, gmax) + 1e-12;
    double lo_end = full ? wrap : gap[0], hi_end = full ? wrap : gap[n - 2];
    for (int a = 0; a < n; a++) {
        double left = a > 0 ? gap[a - 1] : lo_end, right = a + 1 < n ? gap[a] : hi_end;
        w[k[a].i] = 0.5 * (left + right);
    }
    double sum = 0;
    for (int a = 0; a < n; a++)
        sum += w[a];
    if (span >= M_PI && sum > 0) /* e.g. 360-degree scans: every line is measured twice */
        for (int a = 0; a < n; a++)
            w[a] *= M_PI / sum;
    free(k);
    free(gap);
    return APT_OK;
}

/* Real frequency response (length P/2+1) of the spatial ramp kernel h[0] = 1/4, h[odd n] = -1/(pi n)^2, times
   the window. */
static int make_filter(int P, apt_fbp_filter filter, float *H)
{
    float *h = fftwf_alloc_real((size_t)P);
    fftwf_complex *F = fftwf_alloc_complex((size_t)P / 2 + 1);
    apt_fftw_lock();
    fftwf_plan pl = h && F ? fftwf_plan_dft_r2c_1d(P, h, F, FFTW_ESTIMATE) : NULL;
    apt_fftw_unlock();
    if (!pl) {
        fftwf_free(h);
        fftwf_free(F);
        return APT_ENOMEM;
    }
    for (int m = 0; m < P; m++) {
        int d = m <= P / 2 ? m : P - m;
        h[m] = m == 0 ? 0.25f : (d & 1) ? (float)(-1.0 / (M_PI * M_PI * (double)d * d)) : 0.0f;
    }
    fftwf_execute(pl);
    for (int q = 0; q <= P / 2; q++) {
        double f = (double)q / P, win = 1;
        if (filter == APT_FBP_SHEPP && q > 0)
            win = sin(M_PI * f) / (M_PI * f);
        else if (filter == APT_FBP_HANN)
            win = 0.5 * (1 + cos(2 * M_PI * f));
        H[q] = (float)(F[q][0] * win / P); /* 1/P: FFTW's c2r is unnormalised */
    }
    apt_fftw_lock();
    fftwf_destroy_plan(pl);
    apt_fftw_unlock();
    fftwf_free(h);
    fftwf_free(F);
    return APT_OK;
}

/* Rows [r0, r1) of the sinogram through the filter: plans shared, buffers per thread (new-array execution). */
typedef struct filt_job {
    const float *sino, *H;
    float *q;
    int U, P, Us;
    fftwf_plan fw, bw;
    atomic_int failed;
} filt_job;

static void filt_run(void *arg, long r0, long r1)
{
    filt_job *f = arg;
    float *buf = fftwf_alloc_real((size_t)f->P);
    fftwf_complex *F = fftwf_alloc_complex((size_t)f->P / 2 + 1);
    if (!buf || !F) {
        atomic_store(&f->failed, 1);
        goto out;
    }
    for (long r = r0; r < r1; r++) {
        memcpy(buf, f->sino + (size_t)r * f->U, (size_t)f->U * sizeof *buf);
        memset(buf + f->U, 0, (size_t)(f->P - f->U) * sizeof *buf);
        fftwf_execute_dft_r2c(f->fw, buf, F);
        for (int k = 0; k <= f->P / 2; k++)
            F[k][0] *= f->H[k], F[k][1] *= f->H[k];
        fftwf_execute_dft_c2r(f->bw, F, buf);
        memcpy(f->q + (size_t)r * f->Us, buf, (size_t)f->U * sizeof *buf);
    }
out:
    fftwf_free(buf);
    fftwf_free(F);
}

/* out[i] += wa * row(bf + i cf) for i in [lo, hi], linear interpolation, u0 clamped to [0, umax]: the whole cost of
   FBP. The AVX2 twin does eight pixels per step (gathers) with the same float operations in the same order. */
static void bp_line_scalar(float *restrict out, const float *restrict row, int lo, int hi, float bf, float cf,
                           float wa, int umax)
{
    for (int i = lo; i <= hi; i++) {
        float uf = bf + (float)i * cf;
        int u0 = (int)uf;
        u0 = u0 < 0 ? 0 : u0 > umax ? umax : u0;
        float f = uf - (float)u0;
        out[i] += wa * (row[u0] + f * (row[u0 + 1] - row[u0]));
    }
}

/* The SIMD twins read no gathers: the pixel step is cf = cos(theta), |cf| <= 1, so a vector of V consecutive pixels
   reads detector cells base .. base + V + 1 only (base = the lowest left neighbour); they come from two V-float loads
   of the row (rows carry FBP_ROW_PAD zeros beyond U) and in-register permutes. The same float operations in the same
   order as the scalar loop, so every path gives the same bits (tests/test_tomo.c). */
#define FBP_ROW_PAD 32

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
__attribute__((target("avx2"))) static void bp_line_avx2(float *restrict out, const float *restrict row, int lo,
                                                         int hi, float bf, float cf, float wa, int umax)
{
    const __m256 vb = _mm256_set1_ps(bf), vc = _mm256_set1_ps(cf), vw = _mm256_set1_ps(wa);
    const __m256i zero = _mm256_setzero_si256(), vmax = _mm256_set1_epi32(umax), step = _mm256_set1_epi32(8);
    const __m256i one = _mm256_set1_epi32(1), seven = _mm256_set1_epi32(7);
    __m256i vi = _mm256_add_epi32(_mm256_set1_epi32(lo), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    int i = lo;
    for (; i + 7 <= hi; i += 8, vi = _mm256_add_epi32(vi, step)) {
        __m256 uf = _mm256_add_ps(vb, _mm256_mul_ps(_mm256_cvtepi32_ps(vi), vc));
        __m256i u0 = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvttps_epi32(uf), zero), vmax);
        __m256 f = _mm256_sub_ps(uf, _mm256_cvtepi32_ps(u0));
        int b0 = _mm256_cvtsi256_si32(u0), b7 = _mm256_extract_epi32(u0, 7), base = b0 < b7 ? b0 : b7;
        __m256i k0 = _mm256_sub_epi32(u0, _mm256_set1_epi32(base)), k1 = _mm256_add_epi32(k0, one);
        __m256 w0 = _mm256_loadu_ps(row + base), w1 = _mm256_loadu_ps(row + base + 8);
        __m256 r0 = _mm256_blendv_ps(_mm256_permutevar8x32_ps(w0, k0), _mm256_permutevar8x32_ps(w1, k0),
                                     _mm256_castsi256_ps(_mm256_cmpgt_epi32(k0, seven)));
        __m256 r1 = _mm256_blendv_ps(_mm256_permutevar8x32_ps(w0, k1), _mm256_permutevar8x32_ps(w1, k1),
                                     _mm256_castsi256_ps(_mm256_cmpgt_epi32(k1, seven)));
        __m256 v = _mm256_mul_ps(vw, _mm256_add_ps(r0, _mm256_mul_ps(f, _mm256_sub_ps(r1, r0))));
        _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_loadu_ps(out + i), v));
    }
    bp_line_scalar(out, row, i, hi, bf, cf, wa, umax);
}

/* 16 pixels read at most cells base .. base + 17: one two-table permute over 32 floats picks them. */
__attribute__((target("avx512f"))) static void bp_line_avx512(float *restrict out, const float *restrict row,
                                                              int lo, int hi, float bf, float cf, float wa, int umax)
{
    const __m512 vb = _mm512_set1_ps(bf), vc = _mm512_set1_ps(cf), vw = _mm512_set1_ps(wa);
    const __m512i zero = _mm512_setzero_si512(), vmax = _mm512_set1_epi32(umax), step = _mm512_set1_epi32(16);
    const __m512i one = _mm512_set1_epi32(1);
    __m512i vi = _mm512_add_epi32(_mm512_set1_epi32(lo),
                                  _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    int i = lo;
    for (; i + 15 <= hi; i += 16, vi = _mm512_add_epi32(vi, step)) {
        __m512 uf = _mm512_add_ps(vb, _mm512_mul_ps(_mm512_cvtepi32_ps(vi), vc));
        __m512i u0 = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvttps_epi32(uf), zero), vmax);
        __m512 f = _mm512_sub_ps(uf, _mm512_cvtepi32_ps(u0));
        int b0 = _mm_cvtsi128_si32(_mm512_castsi512_si128(u0));
        int b15 = _mm_cvtsi128_si32(_mm_shuffle_epi32(_mm512_extracti32x4_epi32(u0, 3), 3));
        int base = b0 < b15 ? b0 : b15;
        __m512i k0 = _mm512_sub_epi32(u0, _mm512_set1_epi32(base)), k1 = _mm512_add_epi32(k0, one);
        __m512 w0 = _mm512_loadu_ps(row + base), w1 = _mm512_loadu_ps(row + base + 16);
        __m512 r0 = _mm512_permutex2var_ps(w0, k0, w1), r1 = _mm512_permutex2var_ps(w0, k1, w1);
        __m512 v = _mm512_mul_ps(vw, _mm512_add_ps(r0, _mm512_mul_ps(f, _mm512_sub_ps(r1, r0))));
        _mm512_storeu_ps(out + i, _mm512_add_ps(_mm512_loadu_ps(out + i), v));
    }
    bp_line_scalar(out, row, i, hi, bf, cf, wa, umax);
}

static atomic_int bp_isa = -1; /* FBP_ISA_*, resolved on first use */

static int bp_isa_get(void)
{
    int isa = atomic_load_explicit(&bp_isa, memory_order_relaxed);
    if (isa < 0) {
        __builtin_cpu_init();
        isa = __builtin_cpu_supports("avx512f") ? FBP_ISA_AVX512 : __builtin_cpu_supports("avx2") ? FBP_ISA_AVX2 : 0;
        atomic_store_explicit(&bp_isa, isa, memory_order_relaxed);
    }
    return isa;
}

int apt_fbp_set_isa(int isa)
{
    bp_isa_get();
    if (isa == FBP_ISA_AVX512 && !__builtin_cpu_supports("avx512f"))
        return APT_ENOTSUP;
    if (isa == FBP_ISA_AVX2 && !__builtin_cpu_supports("avx2"))
        return APT_ENOTSUP;
    atomic_store_explicit(&bp_isa, isa, memory_order_relaxed);
    return APT_OK;
}

static void bp_line(float *out, const float *row, int lo, int hi, float bf, float cf, float wa, int umax)
{
    int isa = fabsf(cf) <= 1.0f ? bp_isa_get() : 0; /* the permutes assume the pixel step of a cosine */
    if (isa == FBP_ISA_AVX512)
        bp_line_avx512(out, row, lo, hi, bf, cf, wa, umax);
    else if (isa == FBP_ISA_AVX2)
        bp_line_avx2(out, row, lo, hi, bf, cf, wa, umax);
    else
        bp_line_scalar(out, row, lo, hi, bf, cf, wa, umax);
}
#else
int apt_fbp_set_isa(int isa) { return isa ? APT_ENOTSUP : APT_OK; }
#define bp_line bp_line_scalar
#endif

typedef struct bp_job {
    const float *q;          /* filtered sinogram [n, Y, Us]: rows of U values, then FBP_ROW_PAD zeros */
    const double *w, *c, *s; /* per angle: weight, cos, sin */
    int n, Z, Y, X, U, Us;
    float *vol;
} bp_job;

static void bp_run(void *arg, long t0, long t1)
{
    bp_job *b = arg;
    double cx = (b->X - 1) / 2.0, cz = (b->Z - 1) / 2.0, cu = (b->U - 1) / 2.0;
    for (size_t t = (size_t)t0; t < (size_t)t1; t++) {
        int k = (int)(t / (size_t)b->Y), j = (int)(t % (size_t)b->Y);
        float *out = b->vol + t * (size_t)b->X;
        for (int i = 0; i < b->X; i++)
            out[i] = 0;
        for (int a = 0; a < b->n; a++) {
            const float *row = b->q + ((size_t)a * b->Y + j) * b->Us;
            double base = -cx * b->c[a] + (k - cz) * b->s[a] + cu, c = b->c[a];
            /* the voxels whose detector coordinate base + i c falls in [0, U-1): solved once per row, so the inner
               loop is branch-free single precision (and vectorises) */
            int lo = 0, hi = b->X - 1;
            if (fabs(c) > 1e-12) {
                double i0 = (0 - base) / c, i1 = (b->U - 1 - base) / c;
                if (i0 > i1) {
                    double t = i0;
                    i0 = i1, i1 = t;
                }
                lo = i0 > 0 ? (int)ceil(i0) : 0;
                hi = i1 < b->X - 1 ? (int)floor(i1) : b->X - 1;
            } else if (base < 0 || base >= b->U - 1) {
                continue;
            }
            float bf = (float)base, cf = (float)c, wa = (float)b->w[a];
            if (b->U < 2) { /* a one-pixel detector: only rays through its centre */
                for (int i = lo; i <= hi; i++)
                    out[i] += wa * row[0];
                continue;
            }
            bp_line(out, row, lo, hi, bf, cf, wa, b->U - 2);
        }
    }
}

int apt_fbp(const apt_proj *p, const float *sino, apt_fbp_filter filter, float *vol, apt_error *err)
{
    int Z, Y, X, U, n = apt_proj_angles(p);
    apt_proj_dims(p, &Z, &Y, &X, &U);
    if (filter != APT_FBP_RAMP && filter != APT_FBP_SHEPP && filter != APT_FBP_HANN)
        return apt_err(err, APT_EINVAL, "fbp: unknown filter %d", (int)filter);
    int P = 64;
    while (P < 2 * U)
        P *= 2;
    size_t rows = (size_t)n * Y, Us = (size_t)U + FBP_ROW_PAD;
    float *q = calloc(rows * Us, sizeof *q), *H = malloc(((size_t)P / 2 + 1) * sizeof *H);
    double *w = malloc((size_t)n * 3 * sizeof *w);
    float *buf = fftwf_alloc_real((size_t)P);
    fftwf_complex *F = fftwf_alloc_complex((size_t)P / 2 + 1);
    fftwf_plan fw = NULL, bw = NULL;
    int rc = APT_OK;
    if (!q || !H || !w || !buf || !F || make_filter(P, filter, H)) {
        rc = apt_err(err, APT_ENOMEM, "fbp: out of memory");
        goto out;
    }
    apt_fftw_lock();
    fw = fftwf_plan_dft_r2c_1d(P, buf, F, FFTW_ESTIMATE);
    bw = fftwf_plan_dft_c2r_1d(P, F, buf, FFTW_ESTIMATE);
    apt_fftw_unlock();
    if (!fw || !bw) {
        rc = apt_err(err, APT_ENOMEM, "fbp: FFTW could not plan %d points", P);
        goto out;
    }
    int T = apt_proj_threads(p);
    filt_job fj = {sino, H, q, U, P, (int)Us, fw, bw, 0};
    atomic_init(&fj.failed, 0);
    apt_par_for(filt_run, &fj, (long)rows, rows * U < 4096 ? 1 : T);
    if (atomic_load(&fj.failed)) {
        rc = apt_err(err, APT_ENOMEM, "fbp: out of memory for filter buffers");
        goto out;
    }
    if ((rc = apt_fbp_weights(apt_proj_theta(p), n, w, err)))
        goto out;
    const double *th = apt_proj_theta(p);
    for (int a = 0; a < n; a++) {
        w[n + a] = cos(th[a] * M_PI / 180.0);
        w[2 * n + a] = sin(th[a] * M_PI / 180.0);
    }
    bp_job bj = {q, w, w + n, w + 2 * n, n, Z, Y, X, U, (int)Us, vol};
    apt_par_for(bp_run, &bj, (long)Z * Y, T);
out:
    apt_fftw_lock();
    if (fw)
        fftwf_destroy_plan(fw);
    if (bw)
        fftwf_destroy_plan(bw);
    apt_fftw_unlock();
    fftwf_free(buf);
    fftwf_free(F);
    free(q);
    free(H);
    free(w);
    return rc;
}
