/* test_metrics.c - the metrics of docs/METRICS.md on cases computed by hand: identities on identical volumes,
 * MS-SSIM of constant volumes (only the luminance term survives) and of an inverted copy (clamped to 0), the
 * two-Gaussian EM on a synthetic bimodal sample (means, weights, equal weighted posteriors at the threshold),
 * DSC/BER with a known number of flipped voxels, FSC shells of plane waves (Hermitian weighting, non-cubic
 * shells), thread-count independence, and the error paths. The numpy cross-check is tests/test_metrics_ref.py. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "apt_test.h"
#include "aptomo/metrics.h"

#define PI 3.14159265358979323846

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static double uniform(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return ((rng_state >> 11) + 0.5) / 9007199254740992.0;
}

static double normal(void)
{
    return sqrt(-2 * log(uniform())) * cos(2 * PI * uniform());
}

/* Layers of lines with a little noise: an IC-like volume. */
static float *ic(int Z, int Y, int X, double noise)
{
    float *v = malloc((size_t)Z * Y * X * sizeof *v);
    for (int z = 0; z < Z; z++)
        for (int y = 0; y < Y; y++)
            for (int x = 0; x < X; x++) {
                int metal = (z / 3) % 2 == 0 && ((z / 6) % 2 ? y % 5 < 2 : x % 4 < 2);
                v[((size_t)z * Y + y) * X + x] = (float)((metal ? 1.0 : 0.1) + noise * normal());
            }
    return v;
}

static void test_pcc(void)
{
    float a[3] = {1, 2, 3}, b[3] = {2, 4, 6}, c[3] = {3, 2, 1}, k[3] = {5, 5, 5};
    CHECK(fabs(apt_metric_pcc(a, b, 3, NULL) - 1) < 1e-12);
    CHECK(fabs(apt_metric_pcc(a, c, 3, NULL) + 1) < 1e-12);
    CHECK(isnan(apt_metric_pcc(a, k, 3, NULL)));
}

static void test_identity(void)
{
    int Z = 20, Y = 24, X = 18;
    float *v = ic(Z, Y, X, 0.05);
    apt_metrics m;
    apt_error err = {0};
    CHECK_OK(apt_metrics_compute(v, v, Z, Y, X, 2, &m, &err), &err);
    CHECK_MSG(fabs(m.pcc - 1) < 1e-12, "pcc %g", m.pcc);
    CHECK_MSG(fabs(m.ms_ssim - 1) < 1e-12, "ms_ssim %.15g", m.ms_ssim);
    CHECK_MSG(m.dsc == 1 && m.ber == 0, "dsc %g ber %g", m.dsc, m.ber);
    CHECK(m.n_fsc == apt_metric_fsc_shells(Z, Y, X) && m.n_fsc == 10);
    int ones = 1;
    for (int s = 0; s < m.n_fsc; s++)
        ones &= fabs(m.fsc[s] - 1) < 1e-9;
    CHECK_MSG(ones && m.fsc_threshold_px == 2.0, "fsc of a volume with itself: 1 everywhere, resolved to Nyquist");
    apt_metrics_free(&m);
    CHECK(m.fsc == NULL);
    free(v);
}

static void test_ms_ssim_known(void)
{
    /* Constants c1 (test), c2 (ref): every variance is 0, so cs = C2/C2 = 1 at all scales; ref has no range, so
       L = 1 and C1 = 1e-4; ms_ssim = l^0.1333 with l = (2 c1 c2 + C1) / (c1^2 + c2^2 + C1). */
    int n = 16, N = n * n * n;
    float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    for (int i = 0; i < N; i++)
        a[i] = 0.5f, b[i] = 1.0f;
    double out, cs[APT_MSSSIM_SCALES];
    apt_error err = {0};
    CHECK_OK(apt_metric_ms_ssim(a, b, n, n, n, 1, &out, cs, &err), &err);
    double l = (2 * 0.5 + 1e-4) / (0.25 + 1 + 1e-4);
    CHECK_MSG(fabs(out - pow(l, 0.1333)) < 1e-12, "constant volumes: %.15g vs %.15g", out, pow(l, 0.1333));
    CHECK(fabs(cs[0] - 1) < 1e-12 && fabs(cs[3] - 1) < 1e-12 && fabs(cs[4] - l) < 1e-12);
    free(a);
    free(b);

    /* An inverted copy anti-correlates: cs < 0 at scale 1, clamped to 0, so the product is 0. */
    int Z = 18, Y = 20, X = 22;
    float *v = ic(Z, Y, X, 0.02), *w = malloc((size_t)Z * Y * X * sizeof *w);
    for (int i = 0; i < Z * Y * X; i++)
        w[i] = 1.1f - v[i];
    CHECK_OK(apt_metric_ms_ssim(w, v, Z, Y, X, 2, &out, cs, &err), &err);
    CHECK_MSG(cs[0] < 0 && out == 0, "inverted: cs1 %g ms_ssim %g", cs[0], out);

    /* Thread count does not change the result (per-thread partial sums, fixed order). */
    double o1, o3;
    float *nz = ic(Z, Y, X, 0.2);
    CHECK_OK(apt_metric_ms_ssim(nz, v, Z, Y, X, 1, &o1, NULL, &err), &err);
    CHECK_OK(apt_metric_ms_ssim(nz, v, Z, Y, X, 3, &o3, NULL, &err), &err);
    CHECK_MSG(fabs(o1 - o3) < 1e-12 && o1 > 0 && o1 < 1, "threads: %.15g vs %.15g", o1, o3);

    /* Too small for five scales: refused, axis sizes named. */
    int rc = apt_metric_ms_ssim(v, v, 15, 20, 20, 1, &out, NULL, &err);
    CHECK(rc == APT_EINVAL && strstr(err.msg, "too small"));
    free(v);
    free(w);
    free(nz);
}

static void test_gmm(void)
{
    /* 30% N(-2, 0.5^2) + 70% N(3, 1): EM recovers the mixture; the threshold equalises the weighted densities. */
    size_t n = 200000;
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(i % 10 < 3 ? -2 + 0.5 * normal() : 3 + normal());
    apt_gmm2 g;
    apt_error err = {0};
    CHECK_OK(apt_metric_gmm2(v, n, 2, &g, &err), &err);
    CHECK_MSG(fabs(g.mu[0] + 2) < 0.02 && fabs(g.mu[1] - 3) < 0.02, "means %g %g", g.mu[0], g.mu[1]);
    CHECK_MSG(fabs(g.w[0] - 0.3) < 0.01 && fabs(g.w[1] - 0.7) < 0.01, "weights %g %g", g.w[0], g.w[1]);
    CHECK_MSG(fabs(g.var[0] - 0.25) < 0.01 && fabs(g.var[1] - 1) < 0.03, "variances %g %g", g.var[0], g.var[1]);
    CHECK(g.iterations > 1 && g.iterations <= APT_GMM_MAX_ITER);
    double t = g.threshold;
    double p0 = g.w[0] / sqrt(2 * PI * g.var[0]) * exp(-(t - g.mu[0]) * (t - g.mu[0]) / (2 * g.var[0]));
    double p1 = g.w[1] / sqrt(2 * PI * g.var[1]) * exp(-(t - g.mu[1]) * (t - g.mu[1]) / (2 * g.var[1]));
    CHECK_MSG(t > g.mu[0] && t < g.mu[1] && fabs(p0 - p1) < 1e-9 * p0, "threshold %g: %g vs %g", t, p0, p1);
    /* same answer on one thread */
    apt_gmm2 g1;
    CHECK_OK(apt_metric_gmm2(v, n, 1, &g1, &err), &err);
    CHECK(fabs(g1.threshold - g.threshold) < 1e-9 && g1.iterations == g.iterations);
    free(v);

    float one[1] = {1}, nan3[3] = {0, NAN, 1};
    CHECK(apt_metric_gmm2(one, 1, 1, &g, &err) == APT_EINVAL);
    CHECK(apt_metric_gmm2(nan3, 3, 1, &g, &err) == APT_EINVAL && strstr(err.msg, "index 1"));
}

static void test_dsc_ber(void)
{
    /* Ref: 500 voxels near 0, 500 near 10. Test: the same with 10 of the high voxels moved low and 4 low ones high:
       |A| = 494, |B| = 500, |A&B| = 490 -> dsc = 980/994, ber = 14/1000. */
    size_t n = 1000;
    float *r = malloc(n * sizeof *r), *t = malloc(n * sizeof *t);
    for (size_t i = 0; i < n; i++) {
        r[i] = (float)((i % 2 ? 10 : 0) + 0.3 * normal());
        t[i] = r[i];
    }
    for (size_t i = 1, k = 0; k < 10; i += 2, k++)
        t[i] = (float)(0.3 * normal());
    for (size_t i = 100, k = 0; k < 4; i += 2, k++)
        t[i] = (float)(10 + 0.3 * normal());
    double dsc, ber;
    apt_gmm2 gt, gr;
    apt_error err = {0};
    CHECK_OK(apt_metric_dsc_ber(t, r, n, 2, &dsc, &ber, &gt, &gr, &err), &err);
    CHECK_MSG(fabs(dsc - 980.0 / 994.0) < 1e-12 && fabs(ber - 0.014) < 1e-12, "dsc %g ber %g", dsc, ber);
    CHECK(gr.threshold > 1 && gr.threshold < 9 && gt.threshold > 1 && gt.threshold < 9);

    /* Constant volumes: nothing above the threshold on either side -> dsc 1, ber 0. */
    for (size_t i = 0; i < n; i++)
        t[i] = r[i] = 3.0f;
    CHECK_OK(apt_metric_dsc_ber(t, r, n, 1, &dsc, &ber, NULL, NULL, &err), &err);
    CHECK(dsc == 1 && ber == 0);
    free(r);
    free(t);
}

/* a = cos(kx) + cos(ky), b = cos(kx) - cos(ky), both waves in shell s: equal power from the half-spectrum axis (x)
   and a full axis (y) only if the r2c Hermitian weighting is right, and then FSC(s) = 0 exactly. */
static void plane_waves(int Z, int Y, int X, int kx, int ky, int shell)
{
    size_t N = (size_t)Z * Y * X;
    float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b), *c = malloc(N * sizeof *c);
    for (int z = 0; z < Z; z++)
        for (int y = 0; y < Y; y++)
            for (int x = 0; x < X; x++) {
                double u = cos(2 * PI * kx * x / X), w = cos(2 * PI * ky * y / Y);
                size_t i = ((size_t)z * Y + y) * X + x;
                a[i] = (float)(u + w);
                b[i] = (float)(u - w);
                c[i] = (float)(u + 0.5 * w + 7); /* same directions, other mix, an offset */
            }
    int ns = apt_metric_fsc_shells(Z, Y, X);
    double *curve = malloc(ns * sizeof *curve), res;
    apt_error err = {0};
    CHECK_OK(apt_metric_fsc(a, b, Z, Y, X, curve, &res, &err), &err);
    CHECK_MSG(fabs(curve[shell]) < 1e-6, "[%d,%d,%d] shell %d: %g", Z, Y, X, shell, curve[shell]);
    /* <u+w, u+w/2> / sqrt(|u+w|^2 |u+w/2|^2) with |u|^2 = |w|^2: 1.5 / sqrt(2 * 1.25) */
    CHECK_OK(apt_metric_fsc(a, c, Z, Y, X, curve, &res, &err), &err);
    CHECK_MSG(fabs(curve[shell] - 1.5 / sqrt(2.5)) < 1e-6, "shell %d: %g", shell, curve[shell]);
    free(a);
    free(b);
    free(c);
    free(curve);
}

static void test_fsc(void)
{
    plane_waves(16, 16, 16, 4, 4, 4);
    plane_waves(16, 16, 32, 8, 4, 4); /* non-cubic: kx = 8/32 = 0.25 cycles/voxel = shell 4 of M = 16 */
    plane_waves(16, 20, 16, 4, 5, 4); /* y: 5/20 = 0.25 cycles/voxel -> shell 4 as well */

    /* Anti-correlated volumes: -1 in every shell, so the curve is below 0.143 at radius 1: resolution M/1. */
    int Z = 16, Y = 18, X = 20;
    float *v = ic(Z, Y, X, 0.1), *w = malloc((size_t)Z * Y * X * sizeof *w);
    for (int i = 0; i < Z * Y * X; i++)
        w[i] = -v[i];
    int ns = apt_metric_fsc_shells(Z, Y, X);
    double *curve = malloc(ns * sizeof *curve), res;
    apt_error err = {0};
    CHECK_OK(apt_metric_fsc(v, w, Z, Y, X, curve, &res, &err), &err);
    CHECK_MSG(fabs(curve[3] + 1) < 1e-6 && res == 16.0, "anti-correlated: %g, res %g", curve[3], res);

    /* Two independent noise volumes: the curve stays near 0 past radius 1. */
    for (int i = 0; i < Z * Y * X; i++)
        v[i] = (float)normal(), w[i] = (float)normal();
    CHECK_OK(apt_metric_fsc(v, w, Z, Y, X, curve, &res, &err), &err);
    int small = 1;
    for (int s = 2; s < ns; s++)
        small &= fabs(curve[s]) < 0.25;
    CHECK_MSG(small && res > 2.0, "independent noise: res %g", res);
    free(v);
    free(w);
    free(curve);
}

static void test_errors(void)
{
    apt_metrics m;
    apt_error err = {0};
    int Z = 16, Y = 16, X = 16;
    float *v = ic(Z, Y, X, 0), *w = ic(Z, Y, X, 0);
    w[100] = INFINITY;
    int rc = apt_metrics_compute(v, w, Z, Y, X, 1, &m, &err);
    CHECK_MSG(rc == APT_EINVAL && strstr(err.msg, "non-finite voxel 100") && strstr(err.msg, "reference"), "%s",
              err.msg);
    CHECK(m.fsc == NULL);
    CHECK(apt_metrics_compute(v, NULL, Z, Y, X, 1, &m, &err) == APT_EINVAL);
    CHECK(apt_metrics_compute(v, v, 0, Y, X, 1, &m, &err) == APT_EINVAL);
    double c[9], res;
    CHECK(apt_metric_fsc(v, v, 0, 1, 1, c, &res, &err) == APT_EINVAL);
    free(v);
    free(w);
}

int main(void)
{
    test_pcc();
    test_identity();
    test_ms_ssim_known();
    test_gmm();
    test_dsc_ber();
    test_fsc();
    test_errors();
    APT_TEST_DONE();
}
