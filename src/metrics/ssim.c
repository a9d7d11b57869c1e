/* ssim.c - 3-D multi-scale SSIM (docs/METRICS.md). Local moments come from a separable Gaussian filter with
 * valid borders; each worker owns a slab of output z and keeps a ring of the last `wz` XY-filtered planes, so memory
 * stays a few planes per thread whatever the volume size and no filtered volume is ever stored. Everything is in
 * double: E[x^2] - E[x]^2 in float loses the variance when a volume has a large offset. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/metrics.h"
#include "metrics/metrics_int.h"

static const double ms_weights[APT_MSSSIM_SCALES] = {0.0448, 0.2856, 0.3001, 0.2363, 0.1333};
enum { NQ = 5, WMAX = 11 }; /* moments: x, y, xx, yy, xy */

/* Gaussian window of size min(11, dim), sigma 1.5, centred at (w-1)/2, normalised to sum 1. */
static int window(int dim, double g[WMAX])
{
    int w = dim < WMAX ? dim : WMAX;
    double s = 0;
    for (int k = 0; k < w; k++) {
        double u = k - (w - 1) / 2.0;
        g[k] = exp(-u * u / (2 * 1.5 * 1.5));
        s += g[k];
    }
    for (int k = 0; k < w; k++)
        g[k] /= s;
    return w;
}

typedef struct scale_job {
    const double *a, *b;
    int Z, Y, X, wz, wy, wx, Zo, Yo, Xo;
    double gz[WMAX], gy[WMAX], gx[WMAX];
    double C1, C2;
    double sum_cs[APT_METRICS_MAX_THREADS], sum_ssim[APT_METRICS_MAX_THREADS];
    int failed[APT_METRICS_MAX_THREADS];
} scale_job;

/* X then Y pass of plane z of the five moment images into out[q * Yo*Xo + i]. */
static void filter_plane(const scale_job *j, int z, double *tmp, double *out)
{
    size_t P = (size_t)j->Yo * j->Xo, T = (size_t)j->Y * j->Xo;
    for (int y = 0; y < j->Y; y++) {
        const double *ra = j->a + ((size_t)z * j->Y + y) * j->X, *rb = j->b + ((size_t)z * j->Y + y) * j->X;
        size_t o = (size_t)y * j->Xo;
        for (int xo = 0; xo < j->Xo; xo++) {
            double s[NQ] = {0};
            for (int k = 0; k < j->wx; k++) {
                double g = j->gx[k], va = ra[xo + k], vb = rb[xo + k];
                s[0] += g * va;
                s[1] += g * vb;
                s[2] += g * va * va;
                s[3] += g * vb * vb;
                s[4] += g * va * vb;
            }
            for (int q = 0; q < NQ; q++)
                tmp[q * T + o + xo] = s[q];
        }
    }
    memset(out, 0, NQ * P * sizeof *out);
    for (int q = 0; q < NQ; q++)
        for (int yo = 0; yo < j->Yo; yo++) {
            double *dst = out + q * P + (size_t)yo * j->Xo;
            for (int k = 0; k < j->wy; k++) {
                const double *src = tmp + q * T + (size_t)(yo + k) * j->Xo;
                double g = j->gy[k];
                for (int xo = 0; xo < j->Xo; xo++)
                    dst[xo] += g * src[xo];
            }
        }
}

static void scale_worker(void *ctx, int t, int nt)
{
    scale_job *j = ctx;
    int z0 = (int)((long)j->Zo * t / nt), z1 = (int)((long)j->Zo * (t + 1) / nt);
    j->sum_cs[t] = j->sum_ssim[t] = 0;
    j->failed[t] = 0;
    if (z0 >= z1)
        return;
    size_t P = (size_t)j->Yo * j->Xo;
    double *tmp = malloc((size_t)NQ * j->Y * j->Xo * sizeof *tmp);
    double *ring = malloc((size_t)j->wz * NQ * P * sizeof *ring);
    double *acc = malloc(NQ * P * sizeof *acc);
    if (!tmp || !ring || !acc) {
        j->failed[t] = 1;
        goto out;
    }
    for (int z = z0; z < z0 + j->wz - 1; z++)
        filter_plane(j, z, tmp, ring + (size_t)(z % j->wz) * NQ * P);
    double scs = 0, sss = 0;
    for (int zo = z0; zo < z1; zo++) {
        int znew = zo + j->wz - 1;
        filter_plane(j, znew, tmp, ring + (size_t)(znew % j->wz) * NQ * P);
        memset(acc, 0, NQ * P * sizeof *acc);
        for (int k = 0; k < j->wz; k++) {
            const double *pl = ring + (size_t)((zo + k) % j->wz) * NQ * P;
            double g = j->gz[k];
            for (size_t i = 0; i < NQ * P; i++)
                acc[i] += g * pl[i];
        }
        for (size_t i = 0; i < P; i++) {
            double mx = acc[i], my = acc[P + i];
            double sxx = acc[2 * P + i] - mx * mx, syy = acc[3 * P + i] - my * my, sxy = acc[4 * P + i] - mx * my;
            double cs = (2 * sxy + j->C2) / (sxx + syy + j->C2);
            double l = (2 * mx * my + j->C1) / (mx * mx + my * my + j->C1);
            scs += cs;
            sss += l * cs;
        }
    }
    j->sum_cs[t] = scs;
    j->sum_ssim[t] = sss;
out:
    free(tmp);
    free(ring);
    free(acc);
}

/* 2x2x2 average pooling; odd trailing planes/rows/columns are dropped. */
static void pool(const double *src, int Z, int Y, int X, double *dst)
{
    int Z2 = Z / 2, Y2 = Y / 2, X2 = X / 2;
    for (int z = 0; z < Z2; z++)
        for (int y = 0; y < Y2; y++)
            for (int x = 0; x < X2; x++) {
                double s = 0;
                for (int dz = 0; dz < 2; dz++)
                    for (int dy = 0; dy < 2; dy++) {
                        const double *r = src + ((size_t)(2 * z + dz) * Y + (2 * y + dy)) * X + 2 * x;
                        s += r[0] + r[1];
                    }
                dst[((size_t)z * Y2 + y) * X2 + x] = s / 8;
            }
}

int apt_metric_ms_ssim(const float *test, const float *ref, int Z, int Y, int X, int threads, double *out,
                       double cs_out[APT_MSSSIM_SCALES], apt_error *err)
{
    if (!test || !ref || !out)
        return apt_err(err, APT_EINVAL, "ms_ssim: NULL volume");
    if (Z < APT_MSSSIM_MIN_DIM || Y < APT_MSSSIM_MIN_DIM || X < APT_MSSSIM_MIN_DIM)
        return apt_err(err, APT_EINVAL, "ms_ssim: volume [%d,%d,%d] too small: every axis needs >= %d voxels for %d "
                       "scales", Z, Y, X, APT_MSSSIM_MIN_DIM, APT_MSSSIM_SCALES);
    size_t n = (size_t)Z * Y * X;
    double *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    double *a2 = malloc((n / 8 + 1) * sizeof *a2), *b2 = malloc((n / 8 + 1) * sizeof *b2);
    scale_job *j = calloc(1, sizeof *j);
    int rc = APT_OK;
    if (!a || !b || !a2 || !b2 || !j) {
        rc = apt_err(err, APT_ENOMEM, "ms_ssim: out of memory for %zu voxels", n);
        goto out;
    }
    double lo = ref[0], hi = ref[0];
    for (size_t i = 0; i < n; i++) {
        a[i] = test[i];
        b[i] = ref[i];
        lo = ref[i] < lo ? ref[i] : lo;
        hi = ref[i] > hi ? ref[i] : hi;
    }
    double L = hi > lo ? hi - lo : 1.0; /* constant reference: unit range (docs/METRICS.md) */
    double prod = 1;
    for (int s = 0; s < APT_MSSSIM_SCALES; s++) {
        j->a = a, j->b = b, j->Z = Z, j->Y = Y, j->X = X;
        j->wz = window(Z, j->gz), j->wy = window(Y, j->gy), j->wx = window(X, j->gx);
        j->Zo = Z - j->wz + 1, j->Yo = Y - j->wy + 1, j->Xo = X - j->wx + 1;
        j->C1 = (0.01 * L) * (0.01 * L), j->C2 = (0.03 * L) * (0.03 * L);
        int nt = apt_metrics_nthreads(threads, j->Zo);
        apt_metrics_parallel(nt, scale_worker, j);
        double scs = 0, sss = 0;
        for (int t = 0; t < nt; t++) {
            if (j->failed[t]) {
                rc = apt_err(err, APT_ENOMEM, "ms_ssim: out of memory for the filter planes");
                goto out;
            }
            scs += j->sum_cs[t];
            sss += j->sum_ssim[t];
        }
        double cnt = (double)j->Zo * j->Yo * j->Xo;
        double v = s < APT_MSSSIM_SCALES - 1 ? scs / cnt : sss / cnt;
        if (cs_out)
            cs_out[s] = v;
        prod *= pow(v > 0 ? v : 0, ms_weights[s]);
        if (s < APT_MSSSIM_SCALES - 1) {
            pool(a, Z, Y, X, a2);
            pool(b, Z, Y, X, b2);
            double *ta = a, *tb = b;
            a = a2, b = b2, a2 = ta, b2 = tb; /* old full-size buffers are big enough for every later scale */
            Z /= 2, Y /= 2, X /= 2;
        }
    }
    *out = prod;
out:
    free(a);
    free(b);
    free(a2);
    free(b2);
    free(j);
    return rc;
}
