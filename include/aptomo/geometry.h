/* geometry.h - the tomographic geometry (docs/PHYSICS.md): the sample voxel grid, the per-angle slice stack that
 * ptychography reconstructs, the projection of a delta/beta volume into that stack (simulation), and back.
 * Sample frame (z, y, x), rotation axis y through the volume centre; at angle theta the beam coordinate across is
 * x' = x cos(theta) + z sin(theta) and along the beam z' = -x sin(theta) + z cos(theta). Everything is centred:
 * voxel (k, j, i) sits at ((k-(Z-1)/2) vz, (j-(Y-1)/2) vy, (i-(X-1)/2) vx). */
#ifndef APTOMO_GEOMETRY_H
#define APTOMO_GEOMETRY_H

#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

typedef struct apt_grid3 {
    int Z, Y, X;             /* voxels */
    double vz, vy, vx;       /* voxel size, metres */
} apt_grid3;

/* One angle's slice stack: object [L, Ny, Nx]; pixel (r, c) of slice l sits at y = (r-(Ny-1)/2) delta,
   x' = (c-(Nx-1)/2) delta, z' = (l-(L-1)/2) dz. */
typedef struct apt_stack_geom {
    double theta_deg;
    int L, Ny, Nx;
    double delta_m;          /* lateral pixel (the ptychographic object pixel) */
    double dz_m;             /* slice spacing along the beam */
} apt_stack_geom;

/* Bounds checked before any allocation (added by geom): grid sides in [1, 16384], at most 2^30 voxels, voxel
   sizes finite > 0; stack L in [1, 1024], Ny, Nx in [1, 32768], at most 2^28 object pixels, delta_m, dz_m
   finite > 0, theta finite. Both name the field at fault. */
int apt_grid3_check(const apt_grid3 *g, apt_error *err);
int apt_stack_geom_check(const apt_stack_geom *sg, apt_error *err);

/* The stack that holds the whole grid at theta: depth = extent of the rotated volume along z' (so the long beam
   path of a tilted slab is inside), dz = depth / L; Ny, Nx cover the volume's extent across the beam plus pad_px
   pixels on every side (room for the probe window at the scan's edge). */
int apt_stack_geom_for(const apt_grid3 *g, double theta_deg, int L, double delta_m, int pad_px,
                       apt_stack_geom *out, apt_error *err);

/* Top-left (row, col) in the stack's object array of the H x W probe window whose centre pixel [H/2, W/2] sits at
   scan position (y, x') metres (nearest pixel; the rounding error, at most delta/2, is documented). */
void apt_stack_window(const apt_stack_geom *sg, int H, int W, double y_m, double x_m, int *row, int *col);

/* The air beside the sample in one stack plane [Ny, Nx]: the weight-weighted mean (weight NULL = uniform) over the
   columns more than one voxel beyond the footprint of grid g at the stack's angle, |x'| <= (X vx |cos| + Z vz |sin|)
   / 2. Far-field data cannot fix a constant phase, so phases are referenced to this. 0 when no air is weighted. */
double apt_stack_air_mean(const apt_stack_geom *sg, const apt_grid3 *g, const float *weight, const float *plane);

/* Simulation: complex transmission of each slice, O_l = exp(-k (beta + i delta) t) integrated along the beam
   within the slice (k = 2 pi / lambda). delta, beta [Z,Y,X] (beta may be NULL = 0); object [L,Ny,Nx] complex
   (interleaved floats). */
int apt_stack_project(const apt_grid3 *g, const float *delta, const float *beta, const apt_stack_geom *sg,
                      double wavelength_m, float *object, apt_error *err);

APT_API_END

#endif
