/* sim.h - the IC scan simulator behind `aptomo simulate` (docs/PHYSICS.md "Simulator"): refractive indices of the IC
 * materials, a seeded integrated-circuit phantom (or any given delta/beta volume), a partially coherent zone-plate
 * probe, fly-scan positions, and the per-angle diffraction frames computed with the SAME multislice model the
 * reconstruction inverts (apt_ptycho_forward). Every random choice derives from one seed: same config, same file.
 * The probe builder is shared with the daemon, which computes physics.probe's modes from the same inline model. */
#ifndef APTOMO_SIM_H
#define APTOMO_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "aptomo/config.h"
#include "aptomo/error.h"
#include "aptomo/export.h"
#include "aptomo/geometry.h"

APT_API_BEGIN

/* ---- seeded PRNG (xoshiro256**) and the samplers the simulator needs ---- */
typedef struct apt_sim_rng {
    uint64_t s[4];
} apt_sim_rng;

/* Streams with distinct (seed, stream) are independent; the same pair always gives the same numbers. */
void apt_sim_rng_seed(apt_sim_rng *r, uint64_t seed, uint64_t stream);
uint64_t apt_sim_rng_next(apt_sim_rng *r);
double apt_sim_rng_uniform(apt_sim_rng *r);          /* [0, 1) */
double apt_sim_rng_normal(apt_sim_rng *r);           /* N(0, 1) */
uint64_t apt_sim_rng_poisson(apt_sim_rng *r, double mean); /* exact: inversion below 10, PTRS above */

/* ---- materials.c: complex refractive index n = 1 - delta + i beta ---- */
typedef enum apt_material {
    APT_MAT_VACUUM = 0,
    APT_MAT_SIO2,
    APT_MAT_SI,
    APT_MAT_CU,
    APT_MAT_W,
    APT_MAT_COUNT
} apt_material;

const char *apt_sim_material_name(apt_material m);
/* lambda = h c / E. */
double apt_sim_wavelength_m(double energy_keV);
/* Free-electron refractive decrement delta = r_e lambda^2 n_e / (2 pi), n_e = rho N_A (Z/A) (rho in g/cm^3):
   exact away from absorption edges. */
double apt_sim_delta_electron(double rho_g_cm3, double z_over_a, double wavelength_m);
/* delta and beta from atomic scattering factors f1, f2 (Henke values tabulated at 8.8 keV, scaled elsewhere;
   docs/PHYSICS.md "Materials"). energy_keV in [1, 100]. */
int apt_sim_material_index(apt_material m, double energy_keV, double *delta, double *beta, apt_error *err);

/* ---- phantom.c: integrated-circuit phantom on a sample grid ---- */
#define APT_SIM_MAX_LAYERS 16

typedef struct apt_sim_ic_opts {
    int layers;          /* metal layers, 1..APT_SIM_MAX_LAYERS */
    int substrate;       /* nonzero: a Si substrate slab at the high-z side (with W contacts to the first layer) */
    uint64_t seed;
    double energy_keV;   /* refractive indices */
    double pitch_scale;  /* lateral feature size: every pitch of the table x this (rounded, >= 2 voxels); 1 = the
                            table, bit for bit; in [0.25, 4] */
} apt_sim_ic_opts;

/* What was built, for tests and the docs: z ranges are voxel indices [z0, z1), layer 0 nearest the substrate. */
typedef struct apt_sim_ic_info {
    int n_layers;
    int line_z0[APT_SIM_MAX_LAYERS], line_z1[APT_SIM_MAX_LAYERS]; /* metal lines of layer k */
    int via_z0[APT_SIM_MAX_LAYERS], via_z1[APT_SIM_MAX_LAYERS];   /* vias below layer k (to k-1 or contacts) */
    int along_x[APT_SIM_MAX_LAYERS];  /* 1: lines run along x (vary in y); 0: along y */
    int pitch_vox[APT_SIM_MAX_LAYERS];
    int substrate_z0;    /* first substrate voxel; Z when there is none */
    size_t vias;         /* vias placed between metal layers (contacts not counted) */
} apt_sim_ic_info;

/* Fill delta and beta [Z,Y,X] (beta and labels may be NULL; labels gets apt_material per voxel). SiO2 matrix,
   stacked layers of Manhattan Cu lines alternating x/y, several pitches and widths, random cuts, Cu vias at line
   crossings, optional Si substrate with W contacts. Deterministic in (grid, opts). info may be NULL. */
int apt_sim_phantom_ic(const apt_grid3 *g, const apt_sim_ic_opts *o, float *delta, float *beta, uint8_t *labels,
                       apt_sim_ic_info *info, apt_error *err);

/* Resample a centred volume src (grid gs) onto grid gd (trilinear, 0 outside); dst [gd.Z,gd.Y,gd.X]. */
int apt_sim_resample(const apt_grid3 *gs, const float *src, const apt_grid3 *gd, float *dst, apt_error *err);

/* Read a phantom file (/exchange/data delta, optional /exchange/beta, /exchange/voxel_size_m) and resample it to
   g (when its voxel size or shape differs; a file without voxel_size_m must match g's shape). beta_out gets NULL
   when the file has none. Outputs malloc'd. */
int apt_sim_phantom_load(const char *path, const apt_grid3 *g, float **delta_out, float **beta_out,
                         apt_error *err);

/* ---- probe.c: partially coherent probe modes ---- */
typedef enum { APT_SIM_PROBE_ZONEPLATE = 0, APT_SIM_PROBE_GAUSSIAN = 1 } apt_sim_probe_model;

typedef struct apt_sim_probe_opts {
    apt_sim_probe_model model;
    double energy_keV;
    double zp_diameter_m, outer_zone_m; /* focal length f = D dr / lambda, NA = D / (2 f) = lambda / (2 dr) */
    double central_stop;                /* fraction of D */
    double defocus_m;                   /* sample distance from focus, + downstream */
    double coherence;                   /* (0, 1]: fraction of the power in mode 0 (Gaussian-Schell source) */
    double photons;                     /* total photons per frame, summed over the modes */
} apt_sim_probe_opts;

/* M orthonormal-then-scaled modes [M,H,W] (interleaved complex) on an object pixel pixel_m, centred on
   [H/2, W/2]: sum over pixels of |P_m|^2 = occupancy[m] / (H W), so a transparent object gives occupancy[m]
   photons of mode m on the detector (F unnormalised). occupancy (may be NULL) is non-increasing and sums to
   photons. Errors name the physics.probe key at fault (e.g. a defocused probe that does not fit the window). */
int apt_sim_probe(const apt_sim_probe_opts *o, int M, int H, int W, double pixel_m, float *modes, double *occupancy,
                  apt_error *err);

/* Object pixel of an N-pixel crop: lambda z / (N p). */
double apt_sim_object_pixel_m(double energy_keV, double distance_m, double pixel_size_m, int N);

/* Probe from a configuration: physics.probe as a path (HDF5 /entry/probe/modes [M,H,W], checked against
   physics.modes and detector.crop) or the inline model (physics.probe.*). photons > 0 rescales the total to that
   many photons per frame (required for the inline model); <= 0 keeps a file's scale. *modes malloc'd [M,H,W]
   complex, M = physics.modes, H = W = detector.crop; pixel_m = apt_sim_object_pixel_m. */
int apt_sim_probe_from_config(const apt_config *cfg, double photons, float **modes, int *M, int *H, int *W,
                              double *pixel_m, apt_error *err);

/* ---- scan.c: positions and the whole simulated scan ---- */
/* Fly-scan raster (serpentine rows along x', stepped in y) covering the grid's extent across the beam at theta:
   y over Y vy, x' over |X vx cos| + |Z vz sin|, at step_m, each point jittered uniformly by +-jitter_m (encoder
   readback: the recorded positions are the true ones). *pos malloc'd [J,2] (y, x') metres. */
int apt_sim_positions(const apt_grid3 *g, double theta_deg, double step_m, double jitter_m, uint64_t seed,
                      double **pos, size_t *J, apt_error *err);

typedef struct apt_sim_opts {
    apt_grid3 grid;             /* sim.grid, sim.voxel_size_m */
    int angles;                 /* sim.angles */
    double range_deg;           /* sim.range_deg: angles evenly over [-range, +range] */
    double step_m, jitter_m;    /* sim.step_m, sim.jitter_m */
    double photons;             /* sim.photons_per_frame */
    int elem_size;              /* sim.dtype: 2 (uint16) or 4 (uint32) */
    uint64_t seed;              /* sim.seed */
    int layers, substrate;      /* sim.layers, sim.substrate */
    double pitch_scale;         /* sim.pitch_scale */
    int slices;                 /* physics.slices */
    double energy_keV, distance_m, pixel_size_m; /* physics.* */
    int threads;                /* forward-model threads, 0 = one per core */
} apt_sim_opts;

/* Read sim.* and physics.* (errors name the key). */
int apt_sim_opts_from_config(const apt_config *cfg, apt_sim_opts *o, apt_error *err);

/* Called after each angle is written (done of total). */
typedef void (*apt_sim_progress_fn)(void *ctx, int done, int total);

/* The whole scan file (docs/FILES.md "Scan file"): instrument, probe modes [M,H,W], per angle the Poisson frames
   (saturated at the type's max - 1) and positions, ground truth delta [Z,Y,X]. delta/beta = NULL: the IC phantom
   from o; else that volume on o->grid (beta may be NULL). */
int apt_sim_write_scan(const apt_sim_opts *o, const float *probe, int M, int H, int W, const float *delta,
                       const float *beta, const char *out_path, apt_sim_progress_fn progress, void *ctx,
                       apt_error *err);

APT_API_END

#endif
