/* ptycho_int.h - private state of the ptychography module and its backend interface (ggml-backend style, like the
 * FFT's and the network's): ptycho.c is the backend-neutral face (checks, batch order, backend choice and logged
 * fallback); each backend fills struct apt_ptycho_ops in its own file: the CPU in multislice.c (the engine that runs
 * any subset of the positions) + recon.c (the batched descent), the GPU in multislice_cuda.cu. */
#ifndef APTOMO_PTYCHO_INT_H
#define APTOMO_PTYCHO_INT_H

#include "aptomo/backend.h"
#include "aptomo/fft.h"
#include "aptomo/ptycho.h"

/* sqrt(I_model) floor in the amplitude gradient 2 (sqrt(I) - sqrt(I_meas)) / (sqrt(I) + eps): keeps pixels with
   no model intensity finite (their gradient is 0 anyway, since Psi = 0 there). */
#define APT_PTYCHO_EPS 1e-12

/* Per-thread workspace: wavefields and private gradient accumulators (summed in thread order = deterministic). */
typedef struct ptycho_ws {
    float *psi;      /* M/G groups x (L-1) slots of G x H x W (each padded to 64 bytes): the incident wave at
                        slices 2..L */
    float *work;     /* M/G slots of G x H x W: exit wave, far field, back-propagated gradient */
    float *gobj;     /* L x Ny x Nx accumulator, allocated on the first gradient call; zero outside use */
    float *gprobe;   /* M x H x W accumulator */
    double *farI;    /* H x W: far-field intensity summed over modes */
    float *farf;     /* H x W: its amplitude-gradient factor */
    double loss;
    int r0, r1, c0, c1; /* rows [r0, r1) and cols [c0, c1) of the object touched by this thread's windows */
    int rc;
    apt_error err;
} ptycho_ws;

/* A backend. run and descend leave their outputs untouched when they fail, so the CPU can redo the call. */
struct apt_ptycho_ops {
    const char *name; /* "cpu" or "cuda" */
    /* device state of p (p->dev); called once by apt_ptycho_new after the CPU plan exists */
    int (*init)(apt_ptycho *p, apt_error *err);
    void (*fini)(apt_ptycho *p);
    /* The engine: positions pos[idx[k]] (idx NULL = k) for k < n. With meas (indexed like pos): loss and, for
       non-NULL gobj/gprobe, gradients ADDED there. Without meas: model intensities into intensity[k] (centred). */
    int (*run)(apt_ptycho *p, const float *probe, const float *object, const int32_t *pos, const float *meas,
               const size_t *idx, size_t n, double *loss, float *gobj, float *gprobe, float *intensity,
               apt_error *err);
    /* opts->iterations passes over batches b < B, batch b = positions order[start[b] .. start[b+1]). Per batch:
       loss and object gradient G of the batch at the current object; the batch's illumination S(r) = sum over its
       windows of pint (the probe intensity summed over modes, [H,W]); smax = max S; skip the update if smax <= 0;
       else at every pixel with S > 0 and every slice: object -= step / (2 H W L (S + RECON_ALPHA smax)) * G.
       loss_per_iter[it] (may be NULL) = sum of the pass's batch losses. */
    int (*descend)(apt_ptycho *p, const float *probe, const float *patterns, const int32_t *pos, size_t J,
                   const size_t *order, const size_t *start, size_t B, const float *pint,
                   const apt_recon_opts *opts, float *object, double *loss_per_iter, apt_error *err);
};

/* Illumination regulariser of the step (rPIE's alpha): keeps barely lit pixels from taking huge steps. */
#define RECON_ALPHA 0.05

struct apt_ptycho {
    apt_ptycho_geom g;
    int threads;
    const struct apt_ptycho_ops *ops; /* where calls run: the CPU, or the GPU until a GPU call fails */
    void *dev;                        /* the GPU backend's state */
    int group;           /* CPU: modes per FFT batch, G, a divisor of M (multislice.c) */
    apt_fft_plan *plan;  /* CPU: batch G, H x W */
    float *prop;         /* H x W complex: exp(-i pi lambda dz |q|^2) / (H W), unshifted frequency order */
    ptycho_ws *ws;       /* threads of them */
    /* reconstruction scratch (recon.c), allocated on first use */
    float *rgrad;        /* L x Ny x Nx complex */
    float *rillum;       /* Ny x Nx real */
};

/* The CPU plan: geometry checked, FFT plan (timed when measure), propagator, workspaces; and its release. */
int apt_ptycho_cpu_new(const apt_ptycho_geom *g, int threads, int measure, apt_ptycho **out, apt_error *err);
void apt_ptycho_cpu_free(apt_ptycho *p);

/* The CPU backend's descent (recon.c). */
int apt_ptycho_cpu_descend(apt_ptycho *p, const float *probe, const float *patterns, const int32_t *pos, size_t J,
                           const size_t *order, const size_t *start, size_t B, const float *pint,
                           const apt_recon_opts *opts, float *object, double *loss_per_iter, apt_error *err);

extern const struct apt_ptycho_ops apt_ptycho_cpu_ops;
/* The CUDA backend, or NULL in a build without CUDA (multislice_cuda_nocuda.c). */
const struct apt_ptycho_ops *apt_ptycho_cuda_ops(void);

#endif
