/* parallel.h - a minimal parallel-for over [0, n): contiguous chunks, one per core, pthreads; a thread that cannot
 * start runs its chunk inline. For loops whose iterations are independent (rows, slices, voxels). */
#ifndef APTOMO_PARALLEL_H
#define APTOMO_PARALLEL_H

#define APT_PAR_MAX_THREADS 64

typedef void (*apt_par_fn)(void *ctx, long lo, long hi);

/* threads <= 0: one per online core. */
void apt_par_for(apt_par_fn fn, void *ctx, long n, int threads);

#endif
