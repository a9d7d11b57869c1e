/* nn_int.h - private pieces shared by model.c and axial.c: the weight loader (every tensor looked up by its
 * state_dict name, dtype and shape checked, BatchNorms folded to a*x+b) and the layer types it fills. */
#ifndef APTOMO_NN_INT_H
#define APTOMO_NN_INT_H

#include "aptomo/safetensors.h"
#include "nn/nn_backend.h"

#define APT_NN_BN_EPS 1e-5

typedef struct nn_loader {
    apt_st_file *st;
    unsigned char *used; /* per tensor of st: consumed by the arch */
    const struct apt_nn_ops *ops;
    void *ctx;
    void **owned; /* backend allocations, freed with the model */
    size_t nowned, capowned;
} nn_loader;

/* F32 tensor `name` with exactly this shape (error names the tensor otherwise); marks it used. */
int nn_need(nn_loader *L, const char *name, int rank, const int64_t *shape, const float **out, apt_error *err);
/* BatchNorm `prefix`.{weight,bias,running_mean,running_var[,num_batches_tracked]} of C channels -> a*x + b (host). */
int nn_bn_fold(nn_loader *L, const char *prefix, int C, float *a, float *b, apt_error *err);
/* Copy n floats to backend memory owned by the loader's model. */
int nn_upload(nn_loader *L, const float *host, size_t n, float **dev, apt_error *err);

/* One conv (no bias in the file) with its BatchNorm folded in: weights scaled per output channel, bias = shift. */
typedef struct nn_conv {
    int cin, cout, k, stride[3];
    float *w, *b; /* backend memory */
    apt_nn_prim *prim;
} nn_conv;
int nn_conv_load(nn_loader *L, const char *wname, const char *bnname, int cout, int cin, int k, int rank,
                 const int *stride, nn_conv *c, apt_error *err);

/* One axial attention layer attn_{z,y,x}: qkv conv (qkv_bn folded; loaded by the caller from the layer table),
   relative embeddings, sim_bn and out_bn. */
typedef struct nn_attn {
    nn_conv qkv;
    apt_nn_axial_params p; /* pointers into backend memory */
    apt_nn_prim *prim;
} nn_attn;
int nn_attn_load(nn_loader *L, const char *prefix, int planes, int heads, int K, int axis, nn_attn *a,
                 apt_error *err);

#endif
