/* ptycho.h - multislice, mixed-state ptychography (docs/PHYSICS.md): the forward model, the amplitude loss and its
 * exact gradient, and the per-angle reconstruction (a few gradient iterations from a flat object). Planned once per
 * geometry (FFT plans, buffers), executed per angle with no allocation; multi-threaded over positions.
 * Complex arrays are interleaved float pairs (re, im), row-major, matching C99 `float complex`. */
#ifndef APTOMO_PTYCHO_H
#define APTOMO_PTYCHO_H

#include <stddef.h>
#include <stdint.h>

#include "aptomo/backend.h"
#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

typedef struct apt_ptycho_geom {
    int M, H, W;          /* probe modes, probe window rows, cols (= detector crop) */
    int L;                /* object slices along the beam */
    int Ny, Nx;           /* object array rows, cols */
    double wavelength_m;  /* lambda */
    double pixel_size_m;  /* object pixel Delta (= lambda z / (N p) for an N-pixel crop) */
    double dz_m;          /* slice spacing */
} apt_ptycho_geom;

typedef struct apt_ptycho apt_ptycho;

/* Plan for a geometry on a backend (include/aptomo/backend.h); threads 0 = one per core (the CPU's, also where a
   failed GPU call is redone). Large windows get FFT plans chosen by timing (FFTW_MEASURE), which can differ from run
   to run with the machine's load, and so can the last bits of every result. */
int apt_ptycho_new(const apt_ptycho_geom *g, int threads, apt_backend backend, apt_ptycho **out, apt_error *err);
/* As apt_ptycho_new on the CPU, with plans chosen without timing (FFTW_ESTIMATE): the same inputs give the same bits
   in every process. For the simulator, whose frames a seed must fix. */
int apt_ptycho_new_reproducible(const apt_ptycho_geom *g, int threads, apt_ptycho **out, apt_error *err);
void apt_ptycho_destroy(apt_ptycho **p);
const apt_ptycho_geom *apt_ptycho_geometry(const apt_ptycho *p);
/* Where calls run now: APT_BACKEND_CPU or APT_BACKEND_GPU (CPU after a GPU failure, see backend.h). */
apt_backend apt_ptycho_backend(const apt_ptycho *p);
/* Modes per batched FFT of the CPU engine: the divisor G of M whose wavefields stay in cache (a bench times the
   FFTs alone on this shape to say how much of the model's time they are). */
int apt_ptycho_fft_batch(const apt_ptycho *p);

/* Model intensities I[j] = sum_m |fftshift(F[exit_jm])|^2 for J positions (row, col) = top-left of the window in
   the object array (integers, inside the object). probe [M,H,W] complex, object [L,Ny,Nx] complex, out [J,H,W]. */
int apt_ptycho_forward(apt_ptycho *p, const float *probe, const float *object, const int32_t *pos, size_t J,
                       float *intensity, apt_error *err);

/* Loss = sum_j sum_q (sqrt(I_model) - sqrt(I_meas))^2 over measured pixels (I_meas < 0 = not measured, skipped),
   and gradients dL/dRe + i dL/dIm, ADDED into grad_object [L,Ny,Nx] (and grad_probe [M,H,W]); either may be NULL.
   loss in double. */
int apt_ptycho_loss_grad(apt_ptycho *p, const float *probe, const float *object, const int32_t *pos,
                         const float *meas, size_t J, double *loss, float *grad_object, float *grad_probe,
                         apt_error *err);

typedef struct apt_recon_opts {
    int iterations;       /* passes over all positions (APT: 2) */
    int batches;          /* spatially spread mini-batches per pass (16) */
    double step;          /* step scale (1.0 = the documented illumination-normalised rule) */
} apt_recon_opts;

/* Per-angle reconstruction: object (in: start, usually 1+0i; out: estimate) from patterns [J,H,W] at integer
   positions. loss_per_iter (iterations values, may be NULL) gets each pass's loss, summed over its batches as
   they are visited (before each batch's update). */
int apt_ptycho_reconstruct(apt_ptycho *p, const float *probe, const float *patterns, const int32_t *pos, size_t J,
                           const apt_recon_opts *opts, float *object, double *loss_per_iter, apt_error *err);

APT_API_END

#endif
