/* tomo.h - classical tomography baselines on the parallel-beam tilt geometry of docs/PHYSICS.md: a matched
 * projector pair (Joseph's method, forward and exact adjoint, both line by line so every output element is owned
 * by one thread), FBP, SIRT, SART with ordered subsets, and TV-FISTA. Units are voxels: volume
 * [Z,Y,X] centred, rotation axis y, at angle theta the detector coordinate is x' = x cos(theta) + z sin(theta),
 * projections [Ntheta, Y, U] (U detector columns, centred, spacing one voxel). SIRT and SART hand whole y-slices
 * to threads (each slice is an independent 2-D problem); results never depend on the thread count. docs/TOMO.md
 * has the details. */
#ifndef APTOMO_TOMO_H
#define APTOMO_TOMO_H

#include <stddef.h>

#include "aptomo/backend.h"
#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

#define APT_TOMO_MAX_SIDE 8192
#define APT_TOMO_MAX_ANGLES 100000
#define APT_TOMO_MAX_VOXELS ((size_t)1 << 31)

/* Projector: "plan once, execute many". Geometry and angles are copied; threads 0 = one per core; backend:
   include/aptomo/backend.h (a failed GPU call is redone on the CPU, logged and counted there). */
typedef struct apt_proj apt_proj;

int apt_proj_new(int Z, int Y, int X, int U, const double *theta_deg, int n_theta, int threads, apt_backend backend,
                 apt_proj **out, apt_error *err);
void apt_proj_destroy(apt_proj **p);
int apt_proj_angles(const apt_proj *p);
const double *apt_proj_theta(const apt_proj *p);     /* degrees, as given */
void apt_proj_dims(const apt_proj *p, int *Z, int *Y, int *X, int *U);
int apt_proj_threads(const apt_proj *p);
apt_backend apt_proj_backend(const apt_proj *p);    /* where calls run now: cpu or gpu */

/* A x: vol [Z,Y,X] -> sino [n_theta,Y,U] (overwritten). */
int apt_proj_forward(const apt_proj *p, const float *vol, float *sino, apt_error *err);
/* A^T y: sino [n_theta,Y,U] -> vol [Z,Y,X] (overwritten). */
int apt_proj_back(const apt_proj *p, const float *sino, float *vol, apt_error *err);
/* The same restricted to angles idx[0..n) (ordered subsets): sino_sub is [n,Y,U], row i is angle idx[i]. */
int apt_proj_forward_sub(const apt_proj *p, const float *vol, const int *idx, int n, float *sino_sub,
                         apt_error *err);
int apt_proj_back_sub(const apt_proj *p, const float *sino_sub, const int *idx, int n, float *vol, apt_error *err);

/* FBP. Filters are the ramp built in the spatial domain (no DC bias, Kak & Slaney) times a window. */
typedef enum apt_fbp_filter { APT_FBP_RAMP = 0, APT_FBP_SHEPP = 1, APT_FBP_HANN = 2 } apt_fbp_filter;

/* "ramp" | "shepp" | "shepp-logan" | "hann" -> filter; APT_EINVAL naming the value otherwise. */
int apt_fbp_filter_parse(const char *s, apt_fbp_filter *f, apt_error *err);
/* Angular quadrature weights (radians) for the angle set: half the gap to each neighbour; the ends use the
   wrap-around gap when the set covers the half circle (wrap gap <= max(2 x median gap, widest gap)), else the gap
   to their one neighbour (no weight is borrowed across a missing wedge); sets spanning more than 180 degrees are
   scaled to sum to pi. */
int apt_fbp_weights(const double *theta_deg, int n, double *w, apt_error *err);
/* Filtered back-projection (pixel-driven, linear interpolation) of sino [n_theta,Y,U] into vol [Z,Y,X]. */
int apt_fbp(const apt_proj *p, const float *sino, apt_fbp_filter filter, float *vol, apt_error *err);

/* Iterative methods. Progress callback (may be NULL): called after each iteration; returning non-zero stops. */
typedef int (*apt_tomo_progress)(void *user, int iter, int iters);

typedef struct apt_iter_opts {
    int iters;          /* iterations (full passes over all angles) */
    int subsets;        /* SART: ordered subsets (1..n_theta); 0 = n_theta (classic SART, one angle at a time) */
    double relax;       /* SIRT/SART relaxation (0, 2) */
    double lambda;      /* TV: weight relative to max|A^T b| (see docs/TOMO.md) */
    int nonneg;         /* clip to >= 0 after each update (delta is non-negative) */
    int cylinder;       /* hold at 0 the voxels some view does not see (centre projects off the detector): the
                           inscribed cylinder for a square slice over the half circle, the whole box for a slab
                           whose projections hold it at every tilt */
    int tv_inner;       /* TV: inner iterations of the TV proximal step (FGP) */
    int ray_window;     /* SIRT/SART: 1 = Hamming window along each ray over the support (Andersen & Kak's SART,
                           scikit-image's iradon_sart), a prior towards the middle of the rays; 0 = none */
    apt_tomo_progress progress;
    void *user;
} apt_iter_opts;

/* Defaults: iters 100 (SIRT) / 10 (SART) / 100 (TV), subsets 0, relax 1 (SIRT) / 0.5 (SART), lambda 0.005,
   nonneg 1, cylinder 1, tv_inner 10, ray_window 0. method: "sirt" | "sart" | "tv". */
void apt_iter_opts_default(apt_iter_opts *o, const char *method);

/* vol is the start value and the result (zero it for a cold start). */
int apt_sirt(const apt_proj *p, const float *sino, const apt_iter_opts *o, float *vol, apt_error *err);
int apt_sart(const apt_proj *p, const float *sino, const apt_iter_opts *o, float *vol, apt_error *err);
/* min 0.5 |A x - b|^2 + lambda_abs TV(x) (isotropic 3-D, forward differences), FISTA with step 1/L, L = |A|^2
   by power iteration, the TV prox by Beck & Teboulle's fast gradient projection on the dual. */
int apt_tv_fista(const apt_proj *p, const float *sino, const apt_iter_opts *o, float *vol, apt_error *err);
/* |A|^2 = largest eigenvalue of A^T A, by power iteration (iters steps, deterministic start). */
int apt_proj_norm2(const apt_proj *p, int iters, double *L, apt_error *err);

APT_API_END

#endif
