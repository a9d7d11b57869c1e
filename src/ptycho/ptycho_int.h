/* ptycho_int.h - private state of the ptychography module, shared by the model/gradient (multislice.c) and the
 * per-angle reconstruction (recon.c): the plan (FFT plan for a batch of M modes, propagator, per-thread
 * workspaces) and the one engine both use, which runs any subset of the positions. */
#ifndef APTOMO_PTYCHO_INT_H
#define APTOMO_PTYCHO_INT_H

#include "aptomo/fft.h"
#include "aptomo/ptycho.h"

/* sqrt(I_model) floor in the amplitude gradient 2 (sqrt(I) - sqrt(I_meas)) / (sqrt(I) + eps): keeps pixels with
   no model intensity finite (their gradient is 0 anyway, since Psi = 0 there). */
#define APT_PTYCHO_EPS 1e-12

/* Per-thread workspace: wavefields and private gradient accumulators (summed in thread order = deterministic). */
typedef struct ptycho_ws {
    float *psi;      /* (L-1) slots of M x H x W (padded to 64 bytes): the incident wave at slices 2..L */
    float *work;     /* M x H x W: exit wave, far field, back-propagated gradient */
    float *gobj;     /* L x Ny x Nx accumulator, allocated on the first gradient call; zero outside use */
    float *gprobe;   /* M x H x W accumulator */
    double loss;
    int r0, r1, c0, c1; /* rows [r0, r1) and cols [c0, c1) of the object touched by this thread's windows */
    int rc;
    apt_error err;
} ptycho_ws;

struct apt_ptycho {
    apt_ptycho_geom g;
    int threads;
    apt_fft_plan *plan;  /* batch M, H x W */
    float *prop;         /* H x W complex: exp(-i pi lambda dz |q|^2) / (H W), unshifted frequency order */
    ptycho_ws *ws;       /* threads of them */
    /* reconstruction scratch (recon.c), allocated on first use */
    float *rgrad;        /* L x Ny x Nx complex */
    float *rillum;       /* Ny x Nx real */
    size_t *rorder;      /* J */
    size_t rcap;
};

/* Runs positions pos[idx[k]] (idx NULL = k) for k < n. With meas (indexed like pos): loss and, for non-NULL
   gobj/gprobe, gradients ADDED there. Without meas: model intensities into intensity[k] (shifted, centred). */
int apt_ptycho_run(apt_ptycho *p, const float *probe, const float *object, const int32_t *pos, const float *meas,
                   const size_t *idx, size_t n, double *loss, float *gobj, float *gprobe, float *intensity,
                   apt_error *err);

#endif
