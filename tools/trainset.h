/* trainset.h - the data side of `aptomo train` (docs/TRAINING.md "Training data"): pairs of volumes (Approximant,
 * target), the patch grid cut from them (50 % lateral overlap, Z without overlap, reflection padding), the test split
 * (whole pairs, or a lateral band of a lone pair) with its no-overlap check, the input statistics, and patch
 * extraction with flips. Everything is deterministic in its inputs and the seed. */
#ifndef APTOMO_TOOLS_TRAINSET_H
#define APTOMO_TOOLS_TRAINSET_H

#include <stddef.h>
#include <stdint.h>

#include "aptomo/error.h"

#define NN_TS_MAX_PAIRS 100000
#define NN_TS_MAX_PATCHES ((size_t)1 << 24)
#define NN_TS_MAX_VOXELS ((size_t)1 << 33) /* floats held over all pairs (32 GiB) */

typedef struct nn_ts_pair {
    char *approx_path, *truth_path; /* as given (messages, the checkpoint) */
    float *a, *t;                   /* Approximant [Z,Y,X]; target [Z*sz, Y*sy, X*sx] */
    int Z, Y, X;
    int source; /* index of the first pair with the same Approximant voxels (itself when none): one source volume */
} nn_ts_pair;

/* A patch is cut from a region [lo, lo + n) of a pair's Approximant (per axis z, y, x): it reads region voxels
   start .. start + patch - 1, reflected back into the region where that runs past its end. */
typedef struct nn_ts_patch {
    int pair;
    int lo[3], n[3], start[3];
} nn_ts_patch;

typedef struct nn_trainset {
    int patch[3], scale[3]; /* network input patch and output/input scale per axis */
    nn_ts_pair *pairs;
    int npairs, cap;
    size_t voxels;          /* floats held */
    nn_ts_patch *train, *test;
    size_t ntrain, ntest;
    size_t dropped;         /* patches left out: their target is constant (NPCC undefined) */
    int *test_pairs, ntest_pairs; /* whole-pair split: the test pairs (ascending); band: none */
    int band_x0;                  /* lone pair: the test band is X >= band_x0; -1 for a whole-pair split */
} nn_trainset;

void nn_ts_init(nn_trainset *s, const int patch[3], const int scale[3]);
void nn_ts_free(nn_trainset *s);

/* Read a pair (/exchange/data of both) and check the target has the network's output shape for the Approximant. */
int nn_ts_add_pair(nn_trainset *s, const char *approx, const char *truth, apt_error *err);
/* Every pair of an `aptomo dataset` manifest ({"pairs": [{"approximant": rel, "truth": rel}, ...]}, paths relative
   to the manifest's folder); path may name the folder that holds dataset.json. */
int nn_ts_add_manifest(nn_trainset *s, const char *path, apt_error *err);

/* Split and cut the patch grids: with >= 2 pairs, test_pairs (or, when 0, round(test_fraction * pairs), at least 1)
   whole pairs picked by a PRNG seeded from seed; with one pair, the band X >= X - round(test_fraction * X).
   Patches whose target is constant are left out (s->dropped). Then nn_ts_check_disjoint. */
int nn_ts_split(nn_trainset *s, int test_pairs, double test_fraction, uint64_t seed, apt_error *err);

/* Patch starts along an axis of length n for patch p: overlap 1 -> every p/2 with the last ending at n (the
   inference tiler's grid); 0 -> every p, plus one ending at n when p does not divide n. n <= p: one patch at 0. */
int nn_ts_starts(int n, int p, int overlap, int *starts, int cap, int *count);

/* numpy "reflect" of index i into [0, n) (the edge voxel is not repeated); *flipped (may be NULL) gets the parity
   of the mirrorings, so a scale-f target can follow: sub-voxel s of a flipped voxel becomes f - 1 - s. */
int nn_ts_reflect(int i, int n, int *flipped);

/* The source voxels a patch reads: [b0, b1) per axis in the pair's Approximant. */
void nn_ts_box(const nn_ts_patch *p, const int patch[3], int b0[3], int b1[3]);

/* Refuse (APT_EINVAL, naming both patches) when a test patch's box intersects a training patch's box of the same
   source volume. */
int nn_ts_check_disjoint(const nn_ts_pair *pairs, const nn_ts_patch *train, size_t ntrain, const nn_ts_patch *test,
                         size_t ntest, const int patch[3], apt_error *err);

/* Mean and standard deviation of the Approximant over every voxel of every training patch (padding included). */
int nn_ts_input_stats(const nn_trainset *s, double *mean, double *std, apt_error *err);

/* Cut patch p: x [pz,py,px] = (Approximant - mean) / std, y [pz*sz, py*sy, px*sx] = target, both flipped along Y
   and/or X when asked (the same flip for both). x or y may be NULL. APT_ENOMEM (no message) or APT_OK. */
int nn_ts_extract(const nn_trainset *s, const nn_ts_patch *p, int flip_y, int flip_x, double mean, double std,
                  float *x, float *y);

/* Pooled moments of (network output y, target t), added chunk by chunk (two passes within a chunk, then Chan's
   merge), so the PCC and the least-squares fit t ~ scale * y + offset stay accurate over billions of voxels. */
typedef struct nn_ts_moments {
    double n, my, mt, syy, stt, syt; /* count, means, centred sums of squares and cross products */
} nn_ts_moments;
void nn_ts_moments_add(nn_ts_moments *m, const float *y, const float *t, size_t n);
/* Pearson correlation; NaN when either side is constant (or empty). */
double nn_ts_moments_pcc(const nn_ts_moments *m);
/* Least squares t ~ scale * y + offset; a constant y gives scale 0 and offset = mean t. */
void nn_ts_moments_fit(const nn_ts_moments *m, double *scale, double *offset);

#endif
