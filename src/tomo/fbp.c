/* fbp.c - filtered back-projection for the tilt geometry: each detector row is convolved with the ramp filter
 * (built in the spatial domain like Kak & Slaney / scikit-image, so the DC term is right) times an optional
 * Shepp-Logan or Hann window, through FFTW real transforms zero-padded to a power of two >= 2U; the filtered rows
 * are then back-projected pixel-driven with linear interpolation, each angle weighted by its share of the angular
 * range (apt_fbp_weights), which keeps non-uniform and limited angle sets quantitatively right. */
#include "aptomo/tomo.h"

#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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
    fftwf_plan pl = h && F ? fftwf_plan_dft_r2c_1d(P, h, F, FFTW_ESTIMATE) : NULL;
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
    fftwf_destroy_plan(pl);
    fftwf_free(h);
    fftwf_free(F);
    return APT_OK;
}

typedef struct bp_job {
    const float *q;          /* filtered sinogram [n, Y, U] */
    const double *w, *c, *s; /* per angle: weight, cos, sin */
    int n, Z, Y, X, U;
    float *vol;
    size_t t0, t1;
} bp_job;

static void *bp_run(void *arg)
{
    bp_job *b = arg;
    double cx = (b->X - 1) / 2.0, cz = (b->Z - 1) / 2.0, cu = (b->U - 1) / 2.0;
    for (size_t t = b->t0; t < b->t1; t++) {
        int k = (int)(t / (size_t)b->Y), j = (int)(t % (size_t)b->Y);
        float *out = b->vol + t * (size_t)b->X;
        for (int i = 0; i < b->X; i++)
            out[i] = 0;
        for (int a = 0; a < b->n; a++) {
            const float *row = b->q + ((size_t)a * b->Y + j) * b->U;
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
            int umax = b->U - 2;
            for (int i = lo; i <= hi; i++) {
                float uf = bf + (float)i * cf;
                int u0 = (int)uf;
                u0 = u0 < 0 ? 0 : u0 > umax ? umax : u0;
                float f = uf - (float)u0;
                out[i] += wa * (row[u0] + f * (row[u0 + 1] - row[u0]));
            }
        }
    }
    return NULL;
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
    size_t rows = (size_t)n * Y;
    float *q = malloc(rows * U * sizeof *q), *H = malloc(((size_t)P / 2 + 1) * sizeof *H);
    double *w = malloc((size_t)n * 3 * sizeof *w);
    float *buf = fftwf_alloc_real((size_t)P);
    fftwf_complex *F = fftwf_alloc_complex((size_t)P / 2 + 1);
    fftwf_plan fw = NULL, bw = NULL;
    int rc = APT_OK;
    if (!q || !H || !w || !buf || !F || make_filter(P, filter, H)) {
        rc = apt_err(err, APT_ENOMEM, "fbp: out of memory");
        goto out;
    }
    fw = fftwf_plan_dft_r2c_1d(P, buf, F, FFTW_ESTIMATE);
    bw = fftwf_plan_dft_c2r_1d(P, F, buf, FFTW_ESTIMATE);
    if (!fw || !bw) {
        rc = apt_err(err, APT_ENOMEM, "fbp: FFTW could not plan %d points", P);
        goto out;
    }
    for (size_t r = 0; r < rows; r++) {
        memcpy(buf, sino + r * U, (size_t)U * sizeof *buf);
        memset(buf + U, 0, (size_t)(P - U) * sizeof *buf);
        fftwf_execute(fw);
        for (int k = 0; k <= P / 2; k++)
            F[k][0] *= H[k], F[k][1] *= H[k];
        fftwf_execute(bw);
        memcpy(q + r * U, buf, (size_t)U * sizeof *buf);
    }
    if ((rc = apt_fbp_weights(apt_proj_theta(p), n, w, err)))
        goto out;
    const double *th = apt_proj_theta(p);
    for (int a = 0; a < n; a++) {
        w[n + a] = cos(th[a] * M_PI / 180.0);
        w[2 * n + a] = sin(th[a] * M_PI / 180.0);
    }
    size_t tasks = (size_t)Z * Y;
    int T = apt_proj_threads(p);
    if ((size_t)T > tasks)
        T = (int)tasks;
    if (T > 64)
        T = 64;
    bp_job jobs[64];
    pthread_t th_id[64];
    int live[64] = {0};
    for (int t = 0; t < T; t++) {
        jobs[t] = (bp_job){q, w, w + n, w + 2 * n, n, Z, Y, X, U, vol, tasks * t / T, tasks * (t + 1) / T};
        if (t > 0)
            live[t] = pthread_create(&th_id[t], NULL, bp_run, &jobs[t]) == 0;
    }
    bp_run(&jobs[0]);
    for (int t = 1; t < T; t++) {
        if (live[t])
            pthread_join(th_id[t], NULL);
        else
            bp_run(&jobs[t]);
    }
out:
    if (fw)
        fftwf_destroy_plan(fw);
    if (bw)
        fftwf_destroy_plan(bw);
    fftwf_free(buf);
    fftwf_free(F);
    free(q);
    free(H);
    free(w);
    return rc;
}
