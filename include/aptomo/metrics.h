/* metrics.h - image-quality metrics on volumes (DESIGN.md "Metrics"). Pearson correlation for now; MS-SSIM, DSC,
 * BER and FSC join it with the tomography baselines. */
#ifndef APTOMO_METRICS_H
#define APTOMO_METRICS_H

#include <stddef.h>

/* Pearson correlation over n voxels (double accumulation); NaN if either input is constant. mask (may be NULL)
   restricts the sum to voxels with mask[i] != 0. */
double apt_metric_pcc(const float *a, const float *b, size_t n, const unsigned char *mask);

#endif
