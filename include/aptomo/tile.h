/* tile.h - running a patch network over a whole volume: cut into patches with 50 % overlap (every axis longer than
 * a patch), reflection-pad axes shorter than a patch, batch, and stitch the outputs with a separable window so seams
 * are invisible. The network is a callback, so the tiler is tested with exact mock networks and serves any model. */
#ifndef APTOMO_TILE_H
#define APTOMO_TILE_H

#include <stddef.h>

#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

/* Forward B patches x [B, pz, py, px] -> y [B, pz*fz, py*fy, px*fx]. Returns APT_OK or an error. */
typedef int (*apt_tile_fn)(void *ctx, const float *x, int B, float *y, apt_error *err);

typedef struct apt_tile_spec {
    int pz, py, px;          /* patch (network input) shape */
    int fz, fy, fx;          /* output/input scale per axis (1 or 2 for the APT net: Z kept, Y and X doubled) */
    int batch;               /* patches per call (memory bound) */
    double in_mean, in_std;  /* input normalisation: (x - mean) / std before the network */
} apt_tile_spec;

/* Progress callback: done of total patches. */
typedef void (*apt_tile_progress)(void *ctx, size_t done, size_t total);

/* vol [Z,Y,X] -> out [Z*fz, Y*fy, X*fx]. */
int apt_tile_run(const float *vol, int Z, int Y, int X, const apt_tile_spec *spec, apt_tile_fn fn, void *fn_ctx,
                 apt_tile_progress progress, void *progress_ctx, float *out, apt_error *err);

/* Patch start offsets along an axis of length n for patch p (50 % overlap; the last patch ends at n); n_out gets
   the count. Exposed for tests. */
int apt_tile_starts(int n, int p, int *starts, int cap, int *n_out);

APT_API_END

#endif
