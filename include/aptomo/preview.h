/* preview.h - PNG pictures of volumes for people: the three central orthogonal slices of each volume in a row
 * (XY at mid Z, XZ at mid Y, YZ at mid X), a colour bar with the value range and a scale bar, drawn with cairo. */
#ifndef APTOMO_PREVIEW_H
#define APTOMO_PREVIEW_H

#include "aptomo/error.h"
#include "aptomo/export.h"
#include "aptomo/volume.h"

APT_API_BEGIN

/* One row per volume (labels[i] above it; NULL for none). Each row is scaled to its own 1st..99th percentile.
   Volumes may differ in shape. */
int apt_preview_write(const char *png_path, const apt_volume *const *vols, const char *const *labels, int n,
                      const char *title, apt_error *err);

APT_API_END

#endif
