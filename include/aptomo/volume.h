/* volume.h - volumes on disk (APS Data Exchange style, docs/FILES.md): read /exchange/data [Z,Y,X] float32
 * (+ voxel size), write result files with the refined volume, the Approximant, angles, voxel size, metrics and the
 * configuration used. Sizes are checked before allocation; messages name file and dataset. */
#ifndef APTOMO_VOLUME_H
#define APTOMO_VOLUME_H

#include <stddef.h>

#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

#define APT_VOLUME_MAX_VOXELS ((size_t)1 << 32)

typedef struct apt_volume {
    int Z, Y, X;
    double voxel_m[3];   /* (z, y, x); NaN when the file does not say */
    float *data;         /* owned, Z*Y*X */
} apt_volume;

/* Read `dataset` (e.g. "/exchange/data") as float32 [Z,Y,X]; voxel size from a voxel_size_m beside the dataset
   (e.g. /entry/sample/voxel_size_m for a scan file's ground truth), else /exchange/voxel_size_m, else NaN; each
   component must be finite and > 0, or NaN (unknown). */
int apt_volume_read(const char *path, const char *dataset, apt_volume *v, apt_error *err);
/* As apt_volume_read, from "FILE" (dataset `dataset`) or "FILE.h5:/DATASET" (that dataset): the one way commands
   and the daemon's tomo.reference name a volume inside a file. */
int apt_volume_read_spec(const char *spec, const char *dataset, apt_volume *v, apt_error *err);
void apt_volume_free(apt_volume *v);

typedef struct apt_result {
    const apt_volume *data;         /* refined volume -> /exchange/data (may be NULL: then the Approximant is) */
    const apt_volume *approximant;  /* -> /exchange/approximant */
    const double *theta_deg;        /* -> /exchange/theta */
    size_t n_theta;
    const char *config_yaml;        /* -> attribute "config" on / */
    const char *const *metric_names; /* -> /process/metrics/<name> scalars */
    const double *metric_values;
    size_t n_metrics;
} apt_result;

/* Write a result file (truncates). Written to PATH.tmp then renamed, so readers never see half a file. */
int apt_result_write(const char *path, const apt_result *r, apt_error *err);

APT_API_END

#endif
