/* fsc.c - Fourier shell correlation of two volumes with FFTW (3-D r2c in single precision, shell sums in double).
 * Shells are integer radii in units of 1/M cycles per voxel, M = min(Z,Y,X), so non-cubic volumes get spherical
 * shells in physical frequency and the curve runs to the Nyquist frequency of the shortest axis. The half spectrum
 * of r2c counts every column 0 < kx < X/2 twice (its Hermitian twin), which makes the sums equal the full ones. */
#include <fftw3.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/metrics.h"
#include "fft/fftw_lock.h"


int apt_metric_fsc_shells(int Z, int Y, int X)
{
    int m = Z < Y ? Z : Y;
    m = X < m ? X : m;
    return m / 2 + 1;
}

static double freq(int i, int n)
{
    return (double)(2 * i < n ? i : i - n) / (double)n; /* numpy fftfreq; the Nyquist bin's sign does not matter */
}

int apt_metric_fsc(const float *a, const float *b, int Z, int Y, int X, double *curve, double *threshold_px,
                   apt_error *err)
{
    if (!a || !b || !curve || !threshold_px || Z < 1 || Y < 1 || X < 1)
        return apt_err(err, APT_EINVAL, "fsc: empty volume [%d,%d,%d]", Z, Y, X);
    size_t n = (size_t)Z * Y * X, Xh = (size_t)X / 2 + 1, nc = (size_t)Z * Y * Xh;
    int M = Z < Y ? Z : Y;
    M = X < M ? X : M;
    int ns = apt_metric_fsc_shells(Z, Y, X);
    float *in = fftwf_malloc(n * sizeof *in);
    fftwf_complex *fa = fftwf_malloc(nc * sizeof *fa), *fb = fftwf_malloc(nc * sizeof *fb);
    double *acc = calloc((size_t)ns * 3, sizeof *acc);
    int rc = APT_OK;
    fftwf_plan p = NULL;
    if (!in || !fa || !fb || !acc) {
        rc = apt_err(err, APT_ENOMEM, "fsc: out of memory for %zu voxels", n);
        goto out;
    }
    apt_fftw_lock();
    p = fftwf_plan_dft_r2c_3d(Z, Y, X, in, fa, FFTW_ESTIMATE);
    apt_fftw_unlock();
    if (!p) {
        rc = apt_err(err, APT_ENOTSUP, "fsc: FFTW cannot plan %d x %d x %d", Z, Y, X);
        goto out;
    }
    /* Transform the mean-free volumes and put the DC terms back in double: a large offset (a phase volume far from
       zero) would otherwise leak float32 rounding of the DC term into every shell. */
    double ma = 0, mb = 0;
    for (size_t i = 0; i < n; i++)
        ma += a[i], mb += b[i];
    ma /= (double)n, mb /= (double)n;
    for (size_t i = 0; i < n; i++)
        in[i] = (float)(a[i] - ma);
    fftwf_execute_dft_r2c(p, in, fa);
    for (size_t i = 0; i < n; i++)
        in[i] = (float)(b[i] - mb);
    fftwf_execute_dft_r2c(p, in, fb);
    for (int z = 0; z < Z; z++) {
        double fz = freq(z, Z);
        for (int y = 0; y < Y; y++) {
            double fy = freq(y, Y), fzy = fz * fz + fy * fy;
            const fftwf_complex *ra = fa + ((size_t)z * Y + y) * Xh, *rb = fb + ((size_t)z * Y + y) * Xh;
            for (size_t x = 0; x < Xh; x++) {
                double fx = (double)x / (double)X;
                double r = floor(sqrt(fzy + fx * fx) * M + 0.5);
                if (r >= ns)
                    continue;
                int s = (int)r;
                double w = x > 0 && 2 * x != (size_t)X ? 2.0 : 1.0;
                double ar = ra[x][0], ai = ra[x][1], br = rb[x][0], bi = rb[x][1];
                if (!z && !y && !x)
                    ar = ma * (double)n, ai = 0, br = mb * (double)n, bi = 0;
                acc[3 * s] += w * (ar * br + ai * bi);
                acc[3 * s + 1] += w * (ar * ar + ai * ai);
                acc[3 * s + 2] += w * (br * br + bi * bi);
            }
        }
    }
    for (int s = 0; s < ns; s++) {
        double d = acc[3 * s + 1] * acc[3 * s + 2];
        curve[s] = d > 0 ? acc[3 * s] / sqrt(d) : NAN;
    }
    *threshold_px = 2.0; /* never below the threshold: resolved to Nyquist */
    for (int s = 1; s < ns; s++)
        if (curve[s] < APT_FSC_THRESHOLD) {
            double sx = s, prev = curve[s - 1];
            if (isfinite(prev) && prev >= APT_FSC_THRESHOLD && prev > curve[s])
                sx = (s - 1) + (prev - APT_FSC_THRESHOLD) / (prev - curve[s]);
            if (!(sx > 0))
                sx = s;
            *threshold_px = M / sx;
            break;
        }
out:
    if (p) {
        apt_fftw_lock();
        fftwf_destroy_plan(p);
        apt_fftw_unlock();
    }
    fftwf_free(in);
    fftwf_free(fa);
    fftwf_free(fb);
    free(acc);
    return rc;
}
