/* metrics.c - the five metrics of docs/METRICS.md in one call (what `aptomo metrics` and result files report),
 * plus the fork-join helper the metric kernels share (on apt_par_tasks). Inputs are validated here once (shape,
 * finiteness) so the kernels can assume clean data. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/metrics.h"
#include "aptomo/parallel.h"
#include "metrics/metrics_int.h"

int apt_metrics_nthreads(int threads, long max_useful)
{
    long nt = apt_par_threads(threads);
    if (nt > APT_METRICS_MAX_THREADS)
        nt = APT_METRICS_MAX_THREADS;
    if (nt > max_useful)
        nt = max_useful;
    return nt < 1 ? 1 : (int)nt;
}

/* The kernels' workers take (t, nt); apt_par_tasks gives t, so nt rides along in the context. */
typedef struct par_job {
    void (*fn)(void *, int, int);
    void *ctx;
    int nt;
} par_job;

static void par_task(void *arg, int t)
{
    par_job *j = arg;
    j->fn(j->ctx, t, j->nt);
}

_Static_assert(APT_METRICS_MAX_THREADS <= APT_PAR_MAX_THREADS, "apt_par_tasks must run every metrics worker");

int apt_metrics_parallel(int nt, void (*fn)(void *ctx, int t, int nt), void *ctx)
{
    if (nt <= 1) {
        fn(ctx, 0, 1);
        return APT_OK;
    }
    par_job job = {fn, ctx, nt};
    apt_par_tasks(par_task, &job, nt);
    return APT_OK;
}

int apt_metrics_compute(const float *test, const float *ref, int Z, int Y, int X, int threads, apt_metrics *m,
                        apt_error *err)
{
    memset(m, 0, sizeof *m);
    if (!test || !ref || Z < 1 || Y < 1 || X < 1)
        return apt_err(err, APT_EINVAL, "metrics: empty volume [%d,%d,%d]", Z, Y, X);
    size_t n = (size_t)Z * Y * X;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(test[i]) || !isfinite(ref[i]))
            return apt_err(err, APT_EINVAL, "metrics: non-finite voxel %zu (z=%zu) in the %s volume", i,
                           i / ((size_t)Y * X), isfinite(test[i]) ? "reference" : "test");
    m->pcc = apt_metric_pcc(test, ref, n, NULL);
    int rc = apt_metric_ms_ssim(test, ref, Z, Y, X, threads, &m->ms_ssim, NULL, err);
    if (!rc)
        rc = apt_metric_dsc_ber(test, ref, n, threads, &m->dsc, &m->ber, NULL, NULL, err);
    if (!rc) {
        m->n_fsc = apt_metric_fsc_shells(Z, Y, X);
        m->fsc = malloc((size_t)m->n_fsc * sizeof *m->fsc);
        if (!m->fsc)
            rc = apt_err(err, APT_ENOMEM, "metrics: out of memory for the FSC curve");
        else
            rc = apt_metric_fsc(test, ref, Z, Y, X, m->fsc, &m->fsc_threshold_px, err);
    }
    if (rc)
        apt_metrics_free(m);
    return rc;
}

void apt_metrics_free(apt_metrics *m)
{
    if (!m)
        return;
    free(m->fsc);
    m->fsc = NULL;
    m->n_fsc = 0;
}
