/* axial_train.h - the axial attention core of docs/NETWORK.md in training mode, on host memory in NCDHW order:
 * from qkv (after qkv_bn) to the layer output, with sim_bn and out_bn using batch statistics (over every line of the
 * batch) and updating their running statistics, and the exact backward. Reductions run over a fixed partition of
 * the lines, summed in a fixed order, so results are the same bytes for any thread count. */
#ifndef APTOMO_AXIAL_TRAIN_H
#define APTOMO_AXIAL_TRAIN_H

#include <stddef.h>

#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

typedef struct apt_nn_axial_train {
    int planes, heads, K, axis; /* axis 0 = Z (NCDHW dim 2), 1 = Y, 2 = X; K = that extent */
    const float *rel;           /* relative [2*gp, 2K-1], gp = planes / heads */
    const float *sim_w, *sim_b; /* sim_bn affine [3*heads] */
    const float *out_w, *out_b; /* out_bn affine [2*planes] */
    float *sim_rm, *sim_rv;     /* sim_bn running mean / var [3*heads], updated by the forward */
    float *out_rm, *out_rv;     /* out_bn running mean / var [2*planes] */
} apt_nn_axial_train;

/* Floats the forward keeps for the backward, for an input [B, 2*planes, D, H, W]. Both sizes are 0 for shapes fwd
   would refuse (planes / heads not even, extent along axis not K) or that overflow size_t. */
size_t apt_nn_axial_train_saved(const apt_nn_axial_train *a, int B, int D, int H, int W);
/* Floats of scratch fwd and bwd need with `threads` workers (threads >= 1). */
size_t apt_nn_axial_train_scratch(const apt_nn_axial_train *a, int B, int D, int H, int W, int threads);

/* qkv [B,2P,D,H,W] -> y [B,P,D,H,W] (no ReLU). BatchNorm momentum 0.1, eps 1e-5, running_var from the unbiased batch
   variance. Returns APT_EINVAL if the extent along axis is not K. */
int apt_nn_axial_train_fwd(const apt_nn_axial_train *a, const float *qkv, int B, int D, int H, int W, float *y,
                           float *saved, float *scratch, int threads, apt_error *err);

/* dy [B,P,D,H,W] -> dqkv [B,2P,D,H,W] (overwritten); parameter gradients are ADDED to drel [2gp, 2K-1],
   dsim_w, dsim_b [3*heads], dout_w, dout_b [2*planes]. qkv and saved as given to / left by the forward. */
int apt_nn_axial_train_bwd(const apt_nn_axial_train *a, const float *qkv, int B, int D, int H, int W,
                           const float *saved, const float *dy, float *dqkv, float *drel, float *dsim_w, float *dsim_b,
                           float *dout_w, float *dout_b, float *scratch, int threads, apt_error *err);

APT_API_END

#endif
