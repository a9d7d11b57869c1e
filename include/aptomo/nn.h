/* nn.h - the APT network (docs/NETWORK.md: 3D residual U-net with axial self-attention) in eval mode. Weights come
 * from a safetensors file whose __metadata__["aptomo.arch"] fixes the structure; names/shapes are PyTorch's
 * state_dict. Planned once per input shape (FFTW style), executed with no allocation on repeat calls; the backend
 * (oneDNN on CPU, cuDNN/cuBLAS on GPU) is chosen at load time and never visible to callers. docs/NN.md has details. */
#ifndef APTOMO_NN_H
#define APTOMO_NN_H

#include <stddef.h>

#include "aptomo/backend.h"
#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

typedef struct apt_nn_model apt_nn_model;

/* Load weights (mmap, header bounds-checked, every tensor's dtype/shape validated against the arch in
   __metadata__["aptomo.arch"]; clear error naming the tensor at fault). threads 0 = one per core. */
int apt_nn_load(const char *safetensors_path, int threads, apt_nn_model **out, apt_error *err);
/* As apt_nn_load (which is backend auto) on a chosen backend: include/aptomo/backend.h. */
int apt_nn_load_backend(const char *safetensors_path, int threads, apt_backend backend, apt_nn_model **out,
                        apt_error *err);
void apt_nn_destroy(apt_nn_model **m);
/* Refuse patch shapes that do not divide through every stride (message says why); output shape otherwise. */
int apt_nn_output_shape(const apt_nn_model *m, int Z, int Y, int X, int *oz, int *oy, int *ox, apt_error *err);
/* Eval-mode forward: x [B,1,Z,Y,X] float32 -> y [B,1,oz,oy,ox]. Planned once per input shape (oneDNN primitives
   cached), executed with no allocation on repeat calls of the same shape. The input is NOT normalised here: callers
   apply apt_nn_input_norm's (x - mean) / std first (aptomo infer does). */
int apt_nn_forward(apt_nn_model *m, const float *x, int B, int Z, int Y, int X, float *y, apt_error *err);
/* __metadata__["aptomo.input"] = {"mean": m, "std": s} (JSON numbers; std > 0); mean 0, std 1 when absent. */
int apt_nn_input_norm(const apt_nn_model *m, double *mean, double *std);
/* __metadata__["aptomo.output"] = {"scale": s, "offset": o}, fitted by aptomo train (NPCC leaves the output's scale
   free): v <- s v + o over n values, so the refined volume is in the target's units; identity when absent. */
void apt_nn_output_apply(const apt_nn_model *m, float *v, size_t n);
/* 16 lowercase hex digits: FNV-1a 64 of the whole weights file. */
const char *apt_nn_weights_id(const apt_nn_model *m);
/* The arch as JSON text (what the file says), for result files. */
const char *apt_nn_arch_json(const apt_nn_model *m);
/* The network's input patch: axial.size scaled back through the stem and stage strides (the full-size arch:
   280 x 64 x 64); scale gets output/input per axis (1, 2, 2). Used by the volume tiler (include/aptomo/tile.h). */
int apt_nn_patch_shape(const apt_nn_model *m, int patch[3], int scale[3], apt_error *err);
/* Every state_dict tensor an arch needs, in PyTorch's order: cb(name, kind, rank, shape, user) per tensor
   (num_batches_tracked included, rank 0). Returns the arch's validation error, or cb's first non-zero status. */
typedef enum apt_nn_kind {
    APT_NN_CONV, APT_NN_BN_WEIGHT, APT_NN_BN_BIAS, APT_NN_BN_MEAN, APT_NN_BN_VAR, APT_NN_BN_COUNT, APT_NN_RELATIVE
} apt_nn_kind;
typedef int (*apt_nn_tensor_cb)(const char *name, apt_nn_kind kind, int rank, const long long *shape, void *user);
int apt_nn_arch_tensors(const char *arch_json, apt_nn_tensor_cb cb, void *user, apt_error *err);
/* Where the network runs (cpu or gpu), and the implementation: "onednn" or "cudnn". */
apt_backend apt_nn_backend(const apt_nn_model *m);
const char *apt_nn_backend_name(const apt_nn_model *m);

APT_API_END

#endif
