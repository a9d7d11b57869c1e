/* nn_backend.h - the network backend interface (ggml-backend style) and the NCDHW tensor + arena it works on.
 * A backend fills struct apt_nn_ops in its own file (nn_dnnl.c: oneDNN + OpenBLAS on CPU; nn_cudnn.cu: cuDNN +
 * cuBLAS). Each op instance owns a cache slot (apt_nn_prim *): the primitive is built on first use for a shape and
 * re-used after, so a planned forward runs with no allocation. All pointers are backend (device) memory. */
#ifndef APTOMO_NN_BACKEND_H
#define APTOMO_NN_BACKEND_H

#include <stddef.h>

#include "aptomo/error.h"

/* float32, contiguous; n, c, d, h, w are the logical (PyTorch NCDHW) extents. The memory order is the backend's:
 * channels-last [N, D, H, W, C] on the CPU (oneDNN's fast direct/brgemm convolutions want it), NCDHW on the GPU.
 * The network's input and output have C = 1, where both orders are the same bytes. */
typedef struct apt_nn_tensor {
    float *data;
    int n, c, d, h, w;
} apt_nn_tensor;

static inline size_t apt_nn_numel(const apt_nn_tensor *t)
{
    return (size_t)t->n * t->c * t->d * t->h * t->w;
}

/* Bump arena: a counting pass (base NULL) sizes it, one allocation backs it, a second pass hands out tensors. */
typedef struct apt_nn_arena {
    char *base;
    size_t used, size;
} apt_nn_arena;
/* Shape t and give it arena storage (data NULL in the counting pass). */
void apt_nn_arena_tensor(apt_nn_arena *a, apt_nn_tensor *t, int n, int c, int d, int h, int w);
int apt_nn_tensor_same_shape(const apt_nn_tensor *a, const apt_nn_tensor *b);

typedef struct apt_nn_prim apt_nn_prim; /* backend-private cached plan of one op instance */

/* Axial attention core (docs/NETWORK.md) on a folded-qkv tensor [B, 2*planes, Z, Y, X] -> [B, planes, Z, Y, X]. */
typedef struct apt_nn_axial_params {
    int planes, heads, K, axis; /* axis 0 = Z, 1 = Y, 2 = X */
    const float *rel;           /* [2*gp, 2K-1] */
    const float *sim_a, *sim_b; /* sim_bn folded to a*x+b, [3*heads] */
    const float *out_a, *out_b; /* out_bn folded, [2*planes] */
} apt_nn_axial_params;

struct apt_nn_ops {
    const char *name;
    int (*init)(void **ctx, int threads, apt_error *err);
    void (*fini)(void *ctx);
    void *(*alloc)(void *ctx, size_t bytes); /* NULL on failure */
    void (*free)(void *ctx, void *p);
    int (*upload)(void *ctx, void *dst, const void *src, size_t bytes, apt_error *err);
    int (*download)(void *ctx, void *dst, const void *src, size_t bytes, apt_error *err);
    void (*prim_free)(void *ctx, apt_nn_prim *p);
    /* y = relu?(conv(x, w[oc, ic, k, k, k], stride, zero pad k/2) + bias + residual?) */
    int (*conv3d)(void *ctx, apt_nn_prim **c, const apt_nn_tensor *x, const float *w, const float *bias, int k,
                  const int stride[3], const apt_nn_tensor *residual, int relu, apt_nn_tensor *y, apt_error *err);
    /* y = relu?((x - mean) / sqrt(var + eps) * gamma + beta), per channel */
    int (*batchnorm)(void *ctx, apt_nn_prim **c, const apt_nn_tensor *x, const float *gamma, const float *beta,
                     const float *mean, const float *var, float eps, int relu, apt_nn_tensor *y, apt_error *err);
    int (*relu)(void *ctx, apt_nn_prim **c, const apt_nn_tensor *x, apt_nn_tensor *y, apt_error *err);
    /* max pool, kernel k, stride 1, padding k/2 (padding never wins, as in PyTorch) */
    int (*maxpool3d)(void *ctx, apt_nn_prim **c, const apt_nn_tensor *x, int k, apt_nn_tensor *y, apt_error *err);
    /* y = upsample_nearest_x2(x) + skip? */
    int (*upsample2)(void *ctx, apt_nn_prim **c, const apt_nn_tensor *x, const apt_nn_tensor *skip, apt_nn_tensor *y,
                     apt_error *err);
    int (*add)(void *ctx, apt_nn_prim **c, const apt_nn_tensor *a, const apt_nn_tensor *b, apt_nn_tensor *y,
               apt_error *err);
    /* row-major C = alpha op(A) op(B) + beta C */
    int (*gemm)(void *ctx, int transa, int transb, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc, apt_error *err);
    int (*axial)(void *ctx, apt_nn_prim **c, const apt_nn_tensor *qkv, const apt_nn_axial_params *p, int relu,
                 apt_nn_tensor *y, apt_error *err);
};

extern const struct apt_nn_ops apt_nn_dnnl_ops;
/* The cuDNN backend, or NULL in a build without CUDA (nn_cudnn_nocuda.c). */
const struct apt_nn_ops *apt_nn_cudnn_ops(void);

/* CPU reference of the axial core on host memory (axial.c); scratch holds apt_nn_axial_scratch(p) floats. */
size_t apt_nn_axial_scratch(const apt_nn_axial_params *p);
/* One line: col [2P][K] -> out [P][K] (scratch: K*K + gp*K floats). */
void apt_nn_axial_line(const apt_nn_axial_params *p, const float *col, float *out, int relu, float *scratch);
/* Lines [l0, l1) of the tensor (line = one position of the two folded axes of one batch item). */
int apt_nn_axial_cpu_range(const apt_nn_axial_params *p, const apt_nn_tensor *qkv, int relu, apt_nn_tensor *y,
                           float *scratch, size_t l0, size_t l1, int channels_last);
int apt_nn_axial_cpu(const apt_nn_axial_params *p, const apt_nn_tensor *qkv, int relu, apt_nn_tensor *y,
                     float *scratch, int channels_last);

#endif
