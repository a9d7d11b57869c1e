/* approximant.h - the Approximant (docs/PHYSICS.md): the running mean over angles of each reconstructed slice
 * stack's delta estimate, rotated back onto the sample grid (geometry.h). Implemented in src/tomo/approximant.c. */
#ifndef APTOMO_APPROXIMANT_H
#define APTOMO_APPROXIMANT_H

#include <stddef.h>

#include "aptomo/error.h"
#include "aptomo/export.h"
#include "aptomo/geometry.h"

APT_API_BEGIN

/* Approximant: running, order-independent mean over angles of each slice's delta estimate
   -arg(O_l) / (k dz), rotated back to the sample grid. Voxels outside an angle's coverage (weight 0) do not
   dilute the mean. */
typedef struct apt_approx apt_approx;

int apt_approx_new(const apt_grid3 *g, apt_approx **out, apt_error *err);
void apt_approx_destroy(apt_approx **a);
void apt_approx_reset(apt_approx *a);
/* Add one angle: object [L,Ny,Nx] complex as reconstructed, weight [Ny,Nx] >= 0 (e.g. normalised illumination;
   NULL = 1 everywhere). */
int apt_approx_add(apt_approx *a, const apt_stack_geom *sg, double wavelength_m, const float *object,
                   const float *weight, apt_error *err);
int apt_approx_angles(const apt_approx *a);
const apt_grid3 *apt_approx_grid(const apt_approx *a);
/* The current mean [Z,Y,X] (delta units); never-covered voxels are 0. */
int apt_approx_get(const apt_approx *a, float *vol, apt_error *err);
/* The running sums behind the Approximant (crash-safe state, daemon/state.c): per voxel the sum of weights and of
   weight x delta estimate, n = Z*Y*X each, and the number of angles added. Import replaces them. */
void apt_approx_sums(const apt_approx *a, const double **sw, const double **swv, size_t *n);
int apt_approx_import(apt_approx *a, const double *sw, const double *swv, size_t n, int angles, apt_error *err);

APT_API_END

#endif
