/* train_int.h - host-side training pieces shared by train.c (train_ops.c implements them). */
#ifndef APTOMO_NN_TRAIN_INT_H
#define APTOMO_NN_TRAIN_INT_H

#include <stddef.h>

#include "aptomo/nn_train.h"
#include "nn/nn_backend.h"
#include "nn/arch.h"
#include "nn/nn_int.h"
#include "nn/train_backend.h"

/* BatchNorm, training mode, NCDHW: y = relu?(gamma (x - mean) invstd + beta + res?); mean/invstd of the batch are
   returned for the backward; rm/rv updated (momentum 0.1, unbiased variance). */
void nn_bn_train_fwd(const apt_nn_tensor *x, const float *gamma, const float *beta, float *rm, float *rv,
                     const float *res, int relu, apt_nn_tensor *y, float *mean, float *invstd, int threads);
/* dy: gradient at the BN's output (ReLU mask applied). dx += dL/dx, dgamma/dbeta += theirs. */
void nn_bn_train_bwd(const apt_nn_tensor *x, const float *gamma, const float *mean, const float *invstd,
                     const float *dy, apt_nn_tensor *dx, float *dgamma, float *dbeta, int threads);
/* g[i] = 0 where y[i] <= 0 (the ReLU's backward, from its output). */
void nn_relu_mask(const float *y, float *g, size_t n);
void nn_add(float *dst, const float *src, size_t n);
/* Mean NPCC over B samples of per voxels; dx = its gradient. */
double nn_npcc(const float *x, const float *y, int B, size_t per, float *dx);
/* One Adam update (step counts from 1). */
void nn_adam(float *p, const float *g, float *m, float *v, size_t n, long long step, double lr, const apt_nn_adam *a);


/* ---- the trainer's state (train.c: table, load, save; train_step.c: plan, forward, backward, Adam) ---- */

enum { SP_PARAM, SP_STAT, SP_COUNT };

typedef struct ttensor_spec {
    char name[128];
    apt_nn_kind kind;
    int rank, space;
    int64_t shape[5];
    size_t count, off;
} ttensor_spec;

typedef struct tunit {
    nn_unit u;
    int t0; /* first tensor in the spec table */
} tunit;

enum { N_CONV, N_BN, N_POOL, N_UP, N_RELU, N_ATTN };

typedef struct tnode {
    int op, unit, in, out, res, relu;
    float *mean, *invstd, *saved;
    apt_nn_tprim *c[3];
} tnode;

typedef struct tact {
    apt_nn_tensor t;
    float *g;
} tact;

#define T_MAX_NODES 1024

struct apt_nn_train {
    const struct apt_nn_train_ops *ops;
    void *ctx;
    int threads;
    nn_arch a;
    tunit *units;
    int nunits;
    ttensor_spec *spec;
    int nspec, capspec;
    size_t np, ns, nc;
    float *P, *G, *M, *V, *S;
    int64_t *C;
    int had_count;
    long long step;
    apt_nn_adam adam;
    char *meta[8][2];
    /* plan */
    int B, Z, Y, X;
    tnode nodes[T_MAX_NODES];
    int nn;
    tact *act;
    int nact, capact;
    float *tmp, *scratch;
};

/* Offsets of a unit's k-th tensor in its space. */
static inline size_t nn_uoff(const apt_nn_train *t, int unit, int k) { return t->spec[t->units[unit].t0 + k].off; }
void nn_train_plan_free(apt_nn_train *t);

#endif
