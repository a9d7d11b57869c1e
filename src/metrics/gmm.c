/* gmm.c - DSC and BER: each volume is binarised at its own threshold from a two-Gaussian mixture fitted by EM to
 * its voxel values (docs/METRICS.md). EM runs on a 65536-bin histogram between min and max (exact EM over every
 * voxel took 10 s for 128^3). Init: split at the mean, each half's mean/variance/fraction. Stop when the mean
 * log-likelihood gains < APT_GMM_TOL or after APT_GMM_MAX_ITER steps; variances are floored at 1e-6 of the total
 * variance so a component on a constant background cannot collapse to a spike. Details: docs/METRICS.md. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/metrics.h"
#include "metrics/metrics_int.h"

#define APT_PI 3.14159265358979323846

typedef struct hist_job {
    const float *v;
    size_t n;
    double lo, hi;
    double *counts[APT_METRICS_MAX_THREADS];
} hist_job;

static int bin_of(double x, double lo, double hi)
{
    int b = (int)floor((x - lo) / (hi - lo) * APT_GMM_BINS);
    return b < 0 ? 0 : b >= APT_GMM_BINS ? APT_GMM_BINS - 1 : b;
}

static void hist_worker(void *ctx, int t, int nt)
{
    hist_job *j = ctx;
    size_t i0 = j->n * (size_t)t / (size_t)nt, i1 = j->n * (size_t)(t + 1) / (size_t)nt;
    double *c = j->counts[t];
    for (size_t i = i0; i < i1; i++)
        c[bin_of(j->v[i], j->lo, j->hi)] += 1;
}

static double log_wpdf(double x, double w, double mu, double var)
{
    double d = x - mu;
    return log(w) - 0.5 * log(2 * APT_PI * var) - d * d / (2 * var);
}

/* Root of log(w1 p1) = log(w0 p0) between the means by bisection; the nearer mean when there is no sign change. */
static double gmm_threshold(const apt_gmm2 *g)
{
    double lo = g->mu[0], hi = g->mu[1];
    double flo = log_wpdf(lo, g->w[1], g->mu[1], g->var[1]) - log_wpdf(lo, g->w[0], g->mu[0], g->var[0]);
    double fhi = log_wpdf(hi, g->w[1], g->mu[1], g->var[1]) - log_wpdf(hi, g->w[0], g->mu[0], g->var[0]);
    if (flo >= 0)
        return lo;
    if (fhi <= 0)
        return hi;
    for (int it = 0; it < 200; it++) {
        double mid = 0.5 * (lo + hi);
        if (mid <= lo || mid >= hi)
            break;
        double f = log_wpdf(mid, g->w[1], g->mu[1], g->var[1]) - log_wpdf(mid, g->w[0], g->mu[0], g->var[0]);
        if (f < 0)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* EM on the histogram: x[b] bin centres, c[b] counts (zero bins skipped), n samples in all. */
static void em_fit(const double *x, const double *c, int nb, double n, apt_gmm2 *g)
{
    double mean = 0, tv = 0, cnt[2] = {0}, sum[2] = {0}, sq[2] = {0};
    for (int b = 0; b < nb; b++)
        mean += c[b] * x[b];
    mean /= n;
    for (int b = 0; b < nb; b++) {
        int k = x[b] > mean;
        tv += c[b] * (x[b] - mean) * (x[b] - mean);
        cnt[k] += c[b], sum[k] += c[b] * x[b];
    }
    tv /= n;
    double vfloor = 1e-6 * tv + DBL_MIN;
    for (int k = 0; k < 2; k++)
        g->mu[k] = sum[k] / cnt[k]; /* both halves are non-empty: the histogram spans two or more bins */
    for (int b = 0; b < nb; b++) {
        int k = x[b] > mean;
        sq[k] += c[b] * (x[b] - g->mu[k]) * (x[b] - g->mu[k]);
    }
    for (int k = 0; k < 2; k++) {
        g->w[k] = cnt[k] / n;
        g->var[k] = sq[k] / cnt[k] > vfloor ? sq[k] / cnt[k] : vfloor;
    }
    double prev = -INFINITY;
    for (g->iterations = 1; g->iterations <= APT_GMM_MAX_ITER; g->iterations++) {
        double s[7] = {0}; /* N0 N1 S0 S1 Q0 Q1 (Q about the old means) loglik */
        double c0 = log(g->w[0]) - 0.5 * log(2 * APT_PI * g->var[0]);
        double c1 = log(g->w[1]) - 0.5 * log(2 * APT_PI * g->var[1]);
        for (int b = 0; b < nb; b++) {
            double d0 = x[b] - g->mu[0], d1 = x[b] - g->mu[1];
            double l0 = c0 - d0 * d0 / (2 * g->var[0]), l1 = c1 - d1 * d1 / (2 * g->var[1]);
            double m = l0 > l1 ? l0 : l1, e0 = exp(l0 - m), e1 = exp(l1 - m), z = e0 + e1;
            double r0 = c[b] * e0 / z, r1 = c[b] * e1 / z;
            s[0] += r0, s[1] += r1;
            s[2] += r0 * x[b], s[3] += r1 * x[b];
            s[4] += r0 * d0 * d0, s[5] += r1 * d1 * d1;
            s[6] += c[b] * (m + log(z));
        }
        double ll = s[6] / n;
        g->loglik = ll;
        if (s[0] < 1e-9 * n || s[1] < 1e-9 * n)
            break; /* a component emptied: keep the last parameters */
        for (int k = 0; k < 2; k++) {
            double mu = s[2 + k] / s[k], dm = mu - g->mu[k];
            double var = s[4 + k] / s[k] - dm * dm; /* sum r (x-old)^2 / N - (new-old)^2 */
            g->w[k] = s[k] / n;
            g->mu[k] = mu;
            g->var[k] = var > vfloor ? var : vfloor;
        }
        if (ll - prev < APT_GMM_TOL)
            break;
        prev = ll;
    }
    if (g->iterations > APT_GMM_MAX_ITER)
        g->iterations = APT_GMM_MAX_ITER;
}

int apt_metric_gmm2(const float *v, size_t n, int threads, apt_gmm2 *g, apt_error *err)
{
    memset(g, 0, sizeof *g);
    if (!v || n < 2)
        return apt_err(err, APT_EINVAL, "gmm: need at least 2 values, got %zu", n);
    double lo = v[0], hi = v[0];
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            return apt_err(err, APT_EINVAL, "gmm: non-finite value at index %zu", i);
        lo = v[i] < lo ? v[i] : lo;
        hi = v[i] > hi ? v[i] : hi;
    }
    if (!(hi > lo)) { /* constant: one class, nothing above the threshold */
        g->w[0] = 1, g->mu[0] = g->mu[1] = lo, g->threshold = lo;
        return APT_OK;
    }
    hist_job *j = calloc(1, sizeof *j);
    int nt = apt_metrics_nthreads(threads, (long)(n / 262144 + 1)), rc = APT_OK;
    double *x = malloc(APT_GMM_BINS * sizeof *x), *c = calloc(APT_GMM_BINS, sizeof *c);
    if (!j || !x || !c) {
        rc = apt_err(err, APT_ENOMEM, "gmm: out of memory");
        goto out;
    }
    *j = (hist_job){.v = v, .n = n, .lo = lo, .hi = hi};
    for (int t = 0; t < nt; t++)
        if (!(j->counts[t] = calloc(APT_GMM_BINS, sizeof *c))) {
            rc = apt_err(err, APT_ENOMEM, "gmm: out of memory for the histogram");
            goto out;
        }
    apt_metrics_parallel(nt, hist_worker, j);
    int nb = 0; /* compact to the occupied bins: EM cost follows the data, not the bin count */
    for (int b = 0; b < APT_GMM_BINS; b++) {
        double cb = 0;
        for (int t = 0; t < nt; t++)
            cb += j->counts[t][b];
        if (cb > 0) {
            x[nb] = lo + (b + 0.5) * ((hi - lo) / APT_GMM_BINS);
            c[nb++] = cb;
        }
    }
    em_fit(x, c, nb, (double)n, g);
    if (g->mu[0] > g->mu[1]) {
        double t;
        t = g->w[0], g->w[0] = g->w[1], g->w[1] = t;
        t = g->mu[0], g->mu[0] = g->mu[1], g->mu[1] = t;
        t = g->var[0], g->var[0] = g->var[1], g->var[1] = t;
    }
    g->threshold = gmm_threshold(g);
out:
    for (int t = 0; j && t < nt; t++)
        free(j->counts[t]);
    free(j);
    free(x);
    free(c);
    return rc;
}

int apt_metric_dsc_ber(const float *test, const float *ref, size_t n, int threads, double *dsc, double *ber,
                       apt_gmm2 *gmm_test, apt_gmm2 *gmm_ref, apt_error *err)
{
    apt_gmm2 gt, gr;
    int rc = apt_metric_gmm2(test, n, threads, &gt, err);
    if (rc)
        return apt_err_prefix(err, rc, "dsc/ber: test volume: ");
    if ((rc = apt_metric_gmm2(ref, n, threads, &gr, err)))
        return apt_err_prefix(err, rc, "dsc/ber: reference volume: ");
    size_t na = 0, nb = 0, both = 0, diff = 0;
    for (size_t i = 0; i < n; i++) {
        int a = test[i] > gt.threshold, b = ref[i] > gr.threshold;
        na += a, nb += b, both += a & b, diff += a ^ b;
    }
    *dsc = na + nb ? 2.0 * (double)both / (double)(na + nb) : 1.0;
    *ber = (double)diff / (double)n;
    if (gmm_test)
        *gmm_test = gt;
    if (gmm_ref)
        *gmm_ref = gr;
    return APT_OK;
}
