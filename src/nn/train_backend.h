/* train_backend.h - the training backend interface: the ops a training step needs beyond what the host code in
 * train_ops.c does, on NCDHW float32 tensors (apt_nn_tensor, here always channels-first). The CPU backend
 * (train_dnnl.c) runs oneDNN's convolution forward / backward-data / backward-weights, max-pool forward (with its
 * workspace) / backward and nearest resampling forward / backward. Each op instance owns a cache slot: the
 * primitive is built on first use for a shape and reused. Every op gives the same bytes for any thread count. */
#ifndef APTOMO_NN_TRAIN_BACKEND_H
#define APTOMO_NN_TRAIN_BACKEND_H

#include "nn/nn_backend.h"

typedef struct apt_nn_tprim apt_nn_tprim; /* backend-private cached primitive */

struct apt_nn_train_ops {
    const char *name;
    int (*init)(void **ctx, int threads, apt_error *err);
    void (*fini)(void *ctx);
    void (*prim_free)(void *ctx, apt_nn_tprim *p);
    /* y = conv(x, w[oc, ic, k, k, k]), stride, zero padding k/2, no bias */
    int (*conv_fwd)(void *ctx, apt_nn_tprim **c, const apt_nn_tensor *x, const float *w, int k, const int stride[3],
                    apt_nn_tensor *y, apt_error *err);
    /* dx = dL/dx given dy (overwrites dx) */
    int (*conv_bwd_data)(void *ctx, apt_nn_tprim **c, const apt_nn_tensor *dy, const float *w, int k,
                         const int stride[3], apt_nn_tensor *dx, apt_error *err);
    /* dw += dL/dw given x and dy: the batch is reduced in sample order, so the sum does not depend on threads */
    int (*conv_bwd_weights)(void *ctx, apt_nn_tprim **c, const apt_nn_tensor *x, const apt_nn_tensor *dy, int k,
                            const int stride[3], float *dw, apt_error *err);
    /* max pool k, stride 1, padding k/2; the forward keeps the arg-max workspace in its cache slot for the backward */
    int (*maxpool_fwd)(void *ctx, apt_nn_tprim **c, const apt_nn_tensor *x, int k, apt_nn_tensor *y, apt_error *err);
    int (*maxpool_bwd)(void *ctx, apt_nn_tprim **c, apt_nn_tprim **fwd, const apt_nn_tensor *dy, int k,
                       apt_nn_tensor *dx, apt_error *err);
    /* nearest x2 upsampling and its backward (each input voxel gets the sum of its 8 outputs' gradients) */
    int (*up_fwd)(void *ctx, apt_nn_tprim **c, const apt_nn_tensor *x, apt_nn_tensor *y, apt_error *err);
    int (*up_bwd)(void *ctx, apt_nn_tprim **c, const apt_nn_tensor *dy, apt_nn_tensor *dx, apt_error *err);
};

extern const struct apt_nn_train_ops apt_nn_train_dnnl_ops;

#endif
