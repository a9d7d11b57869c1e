/* metrics_int.h - private helpers of src/metrics: a fork-join parallel-for on apt_par_tasks (each worker gets its
 * index and the worker count, and writes its partial sums to its own slot so reductions are deterministic). */
#ifndef APTOMO_METRICS_INT_H
#define APTOMO_METRICS_INT_H

#include "aptomo/error.h"

#define APT_METRICS_MAX_THREADS 16

/* threads <= 0: one per online CPU; always clamped to [1, APT_METRICS_MAX_THREADS] and to max_useful (>= 1). */
int apt_metrics_nthreads(int threads, long max_useful);
/* Run fn(ctx, t, nt) for t = 0..nt-1 on nt threads (t = 0 on the caller). A worker whose thread cannot start runs
   on the caller, so results are always complete; returns APT_OK. */
int apt_metrics_parallel(int nt, void (*fn)(void *ctx, int t, int nt), void *ctx);

#endif
