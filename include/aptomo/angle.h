/* angle.h - one tomographic angle, end to end: cropped patterns + scan positions -> the angle's slice stack
 * (multislice ptychography from a flat object) + its coverage weight, ready for the Approximant. The daemon's
 * reconstruction worker and `aptomo approximant` both call this, so offline and live results are the same. */
#ifndef APTOMO_ANGLE_H
#define APTOMO_ANGLE_H

#include <stddef.h>
#include <stdint.h>

#include "aptomo/error.h"
#include "aptomo/geometry.h"

#define APT_ANGLE_MAX_ITERS 16

typedef struct apt_angle_cfg {
    double energy_keV;       /* -> wavelength */
    double distance_m;       /* detector distance */
    double det_pixel_m;      /* detector pixel */
    int crop;                /* pattern size N (probe window N x N) */
    int L, M;                /* slices, probe modes */
    int iterations, batches; /* per-angle reconstruction */
    int threads;             /* 0 = one per core */
    apt_grid3 grid;          /* sample grid of the Approximant */
    int pad_px;              /* stack margin around the grid's extent (<0: crop / 2) */
} apt_angle_cfg;

typedef struct apt_angle_ctx apt_angle_ctx;

/* probe: [M, crop, crop] complex (interleaved floats), copied. */
int apt_angle_ctx_new(const apt_angle_cfg *cfg, const float *probe, apt_angle_ctx **out, apt_error *err);
void apt_angle_ctx_destroy(apt_angle_ctx **ctx);
double apt_angle_wavelength(const apt_angle_ctx *ctx);
double apt_angle_pixel(const apt_angle_ctx *ctx); /* object pixel = lambda z / (N p) */

typedef struct apt_angle_result {
    apt_stack_geom sg;
    float *object;           /* [L, Ny, Nx] complex, owned */
    float *weight;           /* [Ny, Nx] coverage (normalised illumination), owned */
    double loss[APT_ANGLE_MAX_ITERS];
    int n_loss;
    size_t frames_used, frames_outside; /* outside: window would leave the stack; not used */
    float probe_scale;       /* amplitude factor matching the probe to the data's mean counts */
    double seconds;
} apt_angle_result;

/* patterns: J pointers to crop*crop floats (negative = not measured); pos_m [J][2] = (y, x') of the probe centre
   relative to the rotation axis, metres. */
int apt_angle_reconstruct(apt_angle_ctx *ctx, double angle_deg, const float *const *patterns, const double *pos_m,
                          size_t J, apt_angle_result *res, apt_error *err);
void apt_angle_result_free(apt_angle_result *res);

struct apt_config;
/* physics.* (energy, distance, pixel, slices, modes, iterations, batches), detector.crop and the Approximant grid
   (tomo.grid, tomo.voxel_size_m) of a configuration. Offline commands then take the instrument from the scan file. */
int apt_angle_cfg_from_config(const struct apt_config *cfg, apt_angle_cfg *out, apt_error *err);

struct apt_scanfile;
/* Offline input: the frames of angle idx of a scan file as crop x crop float patterns cropped around the beam
   centre exactly as the daemon crops them (gap pixels -1), and their positions [J][2]. *pats holds *J pointers;
   free with apt_angle_patterns_free (also after an error). */
int apt_angle_load(struct apt_scanfile *sf, uint32_t idx, int crop, float ***pats, double **pos, uint32_t *J,
                   apt_error *err);
void apt_angle_patterns_free(float **pats, uint32_t J);

#endif
