/* angle.h - one tomographic angle, end to end: cropped patterns + scan positions -> the angle's slice stack
 * (multislice ptychography from a flat object) + its coverage weight, ready for the Approximant. The daemon's
 * reconstruction worker and `aptomo approximant` both call this, so offline and live results are the same. */
#ifndef APTOMO_ANGLE_H
#define APTOMO_ANGLE_H

#include <stddef.h>
#include <stdint.h>

#include "aptomo/backend.h"
#include "aptomo/error.h"
#include "aptomo/export.h"
#include "aptomo/geometry.h"

APT_API_BEGIN

#define APT_ANGLE_MAX_ITERS 16

typedef struct apt_angle_cfg {
    double energy_keV;       /* -> wavelength */
    double distance_m;       /* detector distance */
    double det_pixel_m;      /* detector pixel */
    int crop;                /* pattern size N (probe window N x N) */
    int L, M;                /* slices, probe modes */
    int iterations, batches; /* per-angle reconstruction */
    int threads;             /* 0 = one per core */
    apt_backend backend;     /* of the multislice model (compute.backend) */
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
    apt_backend backend;     /* where the model ran (cpu after a logged GPU fallback) */
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
/* apt_angle_load + apt_angle_reconstruct of angle idx (its patterns freed again); *J = the frames it used. */
int apt_angle_reconstruct_scan(apt_angle_ctx *ctx, struct apt_scanfile *sf, uint32_t idx, int crop,
                               apt_angle_result *res, uint32_t *J, apt_error *err);
/* Offline set-up from a scan file, shared by `aptomo approximant` and `aptomo tomo`: cfg's physics
   (apt_angle_cfg_from_config), the instrument (energy, distance, pixel) and crop from the file, the modes capped at
   the file's probe's, the grid of the file's ground truth when it has one (else tomo.grid). *probe: the file's probe
   [M, crop, crop] complex (free()). truth (may be NULL): the ground truth [Z,Y,X] (free()), NULL when there is none.
   Errors: the scan file's (APT_EIO for a failed read), APT_EINVAL for a non-square probe, APT_ENOMEM. */
int apt_angle_cfg_from_scan(struct apt_scanfile *sf, const struct apt_config *cfg, apt_angle_cfg *ac, float **probe,
                            float **truth, apt_error *err);

/* --- projections for the classical baselines (src/angle/angle_proj.c, docs/TOMO.md "Scan-file input") ---- */

/* Detector width for a centred [Z, X] slab (voxel units, rotation axis y) seen at the n angles: the smallest
   U >= X with U = X (mod 2) such that every voxel centre's x' = x cos + z sin plus one voxel of interpolation
   reach lands in [0, U-1]: U >= 2 max_a((X-1)/2 |cos| + (Z-1)/2 |sin| + 1) + 1. Returns U, APT_EINVAL for a bad
   argument (a side < 1, n < 0, an angle not finite), APT_ERANGE when U would exceed APT_TOMO_MAX_SIDE. */
int apt_angle_proj_width(int Z, int X, const double *theta_deg, int n);

/* Integrated phase of one reconstructed stack, sum over slices of -arg(O_l) / k, referenced to air (minus its
   illumination-weighted mean over stack columns more than one voxel outside the footprint of the sample grid g,
   since diffraction data do not fix a constant phase), divided by g->vx (delta x voxels, the projector's unit)
   and resampled bilinearly onto proj [g->Y, U]: column u at x' = (u - (U-1)/2) g->vx, row j at
   y = (j - (Y-1)/2) g->vy; pixels with illumination weight < 1e-3 are 0. k = 2 pi / wavelength. */
int apt_angle_projection(const apt_angle_result *res, double k, const apt_grid3 *g, int U, float *proj,
                         apt_error *err);

#define APT_ANGLE_PROJ_MAX_BYTES ((size_t)4 << 30)

/* A projection set [n, Y, U] filled angle by angle in processing order. grid is the sample grid (rows, voxel
   size, the footprint for the air reference); the volume to reconstruct is [vol_Z, grid.Y, vol_X] (written as
   volume_shape); U = apt_angle_proj_width(max(vol_Z, grid.Z), max(vol_X, grid.X), theta, n). */
typedef struct apt_angle_projs {
    apt_grid3 grid;
    int vol_Z, vol_X;
    int n, U;
    int count;               /* angles added so far */
    float *data;             /* [n, grid.Y, U], owned */
    double *theta_deg;       /* [n], owned */
} apt_angle_projs;

/* vol_Z, vol_X: 0 = the grid's. Allocates n * Y * U floats, refused with APT_ENOMEM above
   APT_ANGLE_PROJ_MAX_BYTES. theta_deg is copied. */
int apt_angle_projs_init(apt_angle_projs *ps, const apt_grid3 *g, int vol_Z, int vol_X, const double *theta_deg,
                         int n, apt_error *err);
/* Next row from one angle's reconstruction (apt_angle_projection); APT_ESTATE once all n are in. */
int apt_angle_projs_add(apt_angle_projs *ps, const apt_angle_result *res, double k, apt_error *err);
void apt_angle_projs_free(apt_angle_projs *ps);
/* Data Exchange through apt_result_write (/exchange/data float32 [n, Y, U], /exchange/theta degrees,
   /exchange/voxel_size_m (z, y, x), config_yaml may be NULL) plus the attribute volume_shape int32 [Z, Y, X] on
   /exchange/data; written to PATH.part and renamed. All n angles must be added. */
int apt_angle_projs_write(const apt_angle_projs *ps, const char *path, const char *config_yaml, apt_error *err);
/* volume_shape of a projections file: shape = [Z, Y, X], or {0, 0, 0} (APT_OK) when /exchange/data has none. */
int apt_angle_proj_read_shape(const char *path, int shape[3], apt_error *err);

APT_API_END

#endif
