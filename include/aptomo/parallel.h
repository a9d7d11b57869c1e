/* parallel.h - the one parallel-for of the library: contiguous chunks, one per core, pthreads; a thread that cannot
 * start runs its work inline, so results never depend on how many threads really ran. For loops whose iterations
 * are independent (rows, slices, voxels) and for workers that own a per-thread workspace. */
#ifndef APTOMO_PARALLEL_H
#define APTOMO_PARALLEL_H

#include "aptomo/export.h"

APT_API_BEGIN

#define APT_PAR_MAX_THREADS 64

typedef void (*apt_par_fn)(void *ctx, long lo, long hi);
typedef void (*apt_par_task_fn)(void *ctx, int task);

/* threads <= 0: one per online core (at most APT_PAR_MAX_THREADS). */
int apt_par_threads(int threads);
/* fn(ctx, lo, hi) over [0, n) in min(n, threads) contiguous chunks; the caller runs the first. */
void apt_par_for(apt_par_fn fn, void *ctx, long n, int threads);
/* fn(ctx, t) for every t in [0, tasks), each on its own thread (the caller runs task 0): for workers that index a
   per-thread workspace by t and are reduced by the caller in task order (deterministic). tasks is capped at
   APT_PAR_MAX_THREADS. */
void apt_par_tasks(apt_par_task_fn fn, void *ctx, int tasks);

APT_API_END

#endif
