/* preview.h - PNG pictures of volumes for people: the three central orthogonal slices of each volume in a row
 * (XY at mid Z, XZ at mid Y, YZ at mid X), a colour bar with the value range and a scale bar, drawn with cairo. */
#ifndef APTOMO_PREVIEW_H
#define APTOMO_PREVIEW_H

#include <stddef.h>

#include "aptomo/error.h"
#include "aptomo/export.h"
#include "aptomo/volume.h"

APT_API_BEGIN

/* One row per volume (labels[i] above it; NULL for none). Each row is scaled to its own 1st..99th percentile.
   Volumes may differ in shape. */
int apt_preview_write(const char *png_path, const apt_volume *const *vols, const char *const *labels, int n,
                      const char *title, apt_error *err);

/* The robust display range of n values (1st and 99th percentile of a subsample of at most ~200000, non-finite
   values skipped); hi > lo always. The previews and aptomod's dashboard colour scales use it. */
void apt_preview_range(const float *v, size_t n, double *lo, double *hi);

APT_API_END

#endif
