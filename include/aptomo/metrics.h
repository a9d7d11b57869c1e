/* metrics.h - image-quality metrics on volumes (definitions: docs/METRICS.md): Pearson correlation, 3-D
 * MS-SSIM, DSC and BER after a 2-Gaussian-mixture binarisation, and the Fourier shell correlation. Volumes are
 * float32 [Z,Y,X]; everything accumulates in double so a C and a numpy implementation agree to ~1e-10. */
#ifndef APTOMO_METRICS_H
#define APTOMO_METRICS_H

#include <stddef.h>

#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

/* Pearson correlation over n voxels (double accumulation); NaN if either input is constant. mask (may be NULL)
   restricts the sum to voxels with mask[i] != 0. */
double apt_metric_pcc(const float *a, const float *b, size_t n, const unsigned char *mask);

/* MS-SSIM constants (docs/METRICS.md): 5 scales, 2x2x2 average pooling, Gaussian sigma 1.5, window min(11, dim). */
#define APT_MSSSIM_SCALES 5
#define APT_MSSSIM_MIN_DIM 16 /* 2^(scales-1): every axis must survive four poolings */

/* 3-D MS-SSIM of test against ref, both [Z,Y,X] (Z*Y*X floats). threads <= 0: one per online CPU (max 16).
   cs (may be NULL) gets the per-scale values that enter the product (cs at scales 1-4, l*cs at scale 5, before
   clamping). APT_EINVAL if an axis is shorter than APT_MSSSIM_MIN_DIM. */
int apt_metric_ms_ssim(const float *test, const float *ref, int Z, int Y, int X, int threads, double *out,
                       double cs[APT_MSSSIM_SCALES], apt_error *err);

/* Two-component 1-D Gaussian mixture fitted by EM to the values binned into APT_GMM_BINS equal bins between min
   and max (init and stopping in docs/METRICS.md). Component 0 has the lower mean. threshold: where
   w0 N(t; mu0, var0) = w1 N(t; mu1, var1), between the means. threads: for the histogram. */
typedef struct apt_gmm2 {
    double w[2], mu[2], var[2];
    double threshold;
    double loglik;   /* mean log-likelihood per sample at the end */
    int iterations;
} apt_gmm2;

#define APT_GMM_BINS 65536
#define APT_GMM_MAX_ITER 500
#define APT_GMM_TOL 1e-10 /* stop when the mean log-likelihood gains less than this */

int apt_metric_gmm2(const float *v, size_t n, int threads, apt_gmm2 *out, apt_error *err);

/* Binarise each volume at its own GMM threshold (voxel > threshold -> 1) and compare: dsc = 2|A&B|/(|A|+|B|)
   (1 when both are empty), ber = |A^B|/n. gmm_test / gmm_ref (may be NULL) get the fitted mixtures. */
int apt_metric_dsc_ber(const float *test, const float *ref, size_t n, int threads, double *dsc, double *ber,
                       apt_gmm2 *gmm_test, apt_gmm2 *gmm_ref, apt_error *err);

#define APT_FSC_THRESHOLD 0.143

/* Number of FSC shells for a [Z,Y,X] volume: min(Z,Y,X)/2 + 1 (radius 0 .. Nyquist of the shortest axis). */
int apt_metric_fsc_shells(int Z, int Y, int X);
/* Fourier shell correlation (FFTW r2c). Shell of a frequency (kz/Z, ky/Y, kx/X) cycles/voxel with modulus f:
   floor(f*M + 0.5), M = min(Z,Y,X). curve gets apt_metric_fsc_shells() values (NaN for an empty or all-zero
   shell). threshold_px: M / s*, s* the first radius >= 1 where the curve drops below 0.143 (linear interpolation
   from the shell before); 2.0 (Nyquist) when it never does. */
int apt_metric_fsc(const float *a, const float *b, int Z, int Y, int X, double *curve, double *threshold_px,
                   apt_error *err);

/* All five metrics of test against ref (docs/METRICS.md). fsc is owned (apt_metrics_free). */
typedef struct apt_metrics {
    double pcc, ms_ssim, dsc, ber, fsc_threshold_px;
    double *fsc;
    int n_fsc;
} apt_metrics;

/* Shapes must match (APT_EINVAL naming both shapes); non-finite voxels are refused (APT_EINVAL, index named). */
int apt_metrics_compute(const float *test, const float *ref, int Z, int Y, int X, int threads, apt_metrics *m,
                        apt_error *err);
void apt_metrics_free(apt_metrics *m);

/* PNG (cairo) of metric vs number of angles: one line per metric (PCC, MS-SSIM, DSC, BER on the left axis,
   FSC resolution in voxels on the right axis). Points are drawn in order of n_angles. */
int apt_metrics_plot(const char *png_path, const int *n_angles, const apt_metrics *m, int n, const char *title,
                     apt_error *err);

APT_API_END

#endif
