/* arch.h - the network's structure from __metadata__["aptomo.arch"] (docs/NETWORK.md) and its ONE table of layers:
 * every conv (with its BatchNorm) and every attention layer's own tensors, in forward order, with their state_dict
 * names. Inference (model.c), training (train.c) and writers (apt_nn_arch_tensors) all walk this table, so the
 * names are spelled here only. */
#ifndef APTOMO_NN_ARCH_H
#define APTOMO_NN_ARCH_H

#include "aptomo/nn.h"

typedef struct nn_stage_arch {
    int f0, f1, blocks, stride;
} nn_stage_arch;

typedef struct nn_arch {
    int stem, stem_stride[3];
    nn_stage_arch st[3];
    int planes, heads, aout, size[3], dec[3];
} nn_arch;

/* Parse and check every constraint (messages name the key at fault). */
int nn_arch_parse(const char *json_text, nn_arch *a, apt_error *err);

/* Spatial size after the stem (S[0]) and after each stage (S[1..3]); refuses patches that do not divide through
   every stride or do not reach the axial block at axial.size (the message says which patch would). */
int nn_arch_shapes(const nn_arch *a, int Z, int Y, int X, int S[4][3], apt_error *err);

typedef enum nn_unit_kind {
    NN_UNIT_CONV, /* weight `name` [cout, cin, k, k, k] (rank 5) or [cout, cin, 1] (rank 3), BatchNorm `bn` */
    NN_UNIT_ATTN  /* `name`.relative [2gp, 2K-1], `name`.sim_bn [3 heads], `name`.out_bn [2 planes] */
} nn_unit_kind;

typedef struct nn_unit {
    nn_unit_kind kind;
    char name[48], bn[48];
    int cout, cin, k, rank, stride[3];
    int axis, K; /* attention: axis 0/1/2 = Z/Y/X and its length */
} nn_unit;

/* The table in forward order: stem; per stage and block conv1, conv2, conv3 (+ proj on block 0); axial conv_in,
   for z, y, x the qkv conv then the attention unit; conv_out, shortcut; dec0..2; head. *units is malloc'ed. */
int nn_arch_units(const nn_arch *a, nn_unit **units, int *n, apt_error *err);

/* The attention unit's own tensors: `name`.relative, `name`.sim_bn, `name`.out_bn. */
extern const char *const nn_attn_part[3];

/* Every state_dict tensor of one unit, in the table's order (conv: weight, bn.{weight, bias, running_mean,
   running_var, num_batches_tracked}; attention: relative, sim_bn.*, out_bn.*). */
int nn_unit_tensors(const nn_unit *u, const nn_arch *a, apt_nn_tensor_cb cb, void *user);

#endif
