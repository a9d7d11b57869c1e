/* project_int.h - what the CPU projector (project.c) and its CUDA twin (project_cuda.cu) share: the per-angle
 * Joseph coefficients. Both sides evaluate the interpolation coordinate as f = u * ia + (b0 + m * db) (m = the
 * marching index, k for z-major rays, i for x-major ones), so forward and adjoint see bit-identical weights. */
#ifndef APTOMO_TOMO_PROJECT_INT_H
#define APTOMO_TOMO_PROJECT_INT_H

#include <stddef.h>

#include "aptomo/error.h"

typedef struct apt_proj_angle {
    int zmajor;      /* |cos| >= |sin|: march along z, interpolate along x; else march x, interpolate z */
    double ia;       /* 1/cos (z-major) or 1/sin (x-major): slope of f in detector pixels */
    double b0, db;   /* f offset at marching index m: b0 + m db */
    double len;      /* path length per marching step = |ia| */
} apt_proj_angle;

typedef struct apt_proj_shape {
    int Z, Y, X, U;
} apt_proj_shape;

struct apt_proj;
/* One slice (volume rows k at v + k rs, [Z][X]) against the angles idx[n] (detector rows s at s + s ss, [U]),
   single-threaded, with P a scratch line of apt_proj_scratch_floats() floats: what the whole-volume operators do
   per slice, so a caller that owns whole slices (SIRT, SART) gets the same numbers. */
size_t apt_proj_scratch_floats(const struct apt_proj *p);
void apt_proj_slice_forward(const struct apt_proj *p, const int *idx, int n, const float *v, size_t rs,
                            float *s_out, size_t ss, float *P);
void apt_proj_slice_back(const struct apt_proj *p, const int *idx, int n, const float *s_in, size_t ss, float *v,
                         size_t rs, float *P);

/* A device backend of the projector (the CPU path is project.c itself). Host arrays in and out; angles idx[n];
   outputs are untouched when a call fails, so the CPU can redo it. */
typedef struct apt_proj_ops {
    const char *name; /* "cuda" */
    int (*forward)(const apt_proj_shape *sh, const apt_proj_angle *ang, const int *idx, int n, const float *vol,
                   float *sino, apt_error *err);
    int (*back)(const apt_proj_shape *sh, const apt_proj_angle *ang, const int *idx, int n, const float *sino,
                float *vol, apt_error *err);
} apt_proj_ops;
/* The CUDA twin (project_cuda.cu), or NULL in a build without CUDA (project_cuda_nocuda.c). */
const apt_proj_ops *apt_proj_cuda_ops(void);

#endif
