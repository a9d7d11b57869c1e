/* metrics.c - the five metrics of docs/METRICS.md in one call (what `aptomo metrics` and result files report),
 * plus the fork-join helper the metric kernels share. Inputs are validated here once (shape, finiteness) so the
 * kernels can assume clean data. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aptomo/metrics.h"
#include "metrics/metrics_int.h"

int apt_metrics_nthreads(int threads, long max_useful)
{
    long nt = threads > 0 ? threads : sysconf(_SC_NPROCESSORS_ONLN);
    if (nt > APT_METRICS_MAX_THREADS)
        nt = APT_METRICS_MAX_THREADS;
    if (nt > max_useful)
        nt = max_useful;
    return nt < 1 ? 1 : (int)nt;
}

typedef struct par_job {
    void (*fn)(void *, int, int);
    void *ctx;
    int t, nt;
} par_job;

static void *par_main(void *arg)
{
    par_job *j = arg;
    j->fn(j->ctx, j->t, j->nt);
    return NULL;
}

int apt_metrics_parallel(int nt, void (*fn)(void *ctx, int t, int nt), void *ctx)
{
    if (nt <= 1) {
        fn(ctx, 0, 1);
        return APT_OK;
    }
    pthread_t th[APT_METRICS_MAX_THREADS];
    par_job job[APT_METRICS_MAX_THREADS];
    int started[APT_METRICS_MAX_THREADS] = {0};
    for (int t = 1; t < nt; t++) {
        job[t] = (par_job){fn, ctx, t, nt};
        started[t] = pthread_create(&th[t], NULL, par_main, &job[t]) == 0;
    }
    fn(ctx, 0, nt);
    for (int t = 1; t < nt; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            fn(ctx, t, nt); /* no thread: same slice of work, on the caller */
    }
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
