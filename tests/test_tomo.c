/* test_tomo.c - the tomography baselines: the projector pair is an exact adjoint (<Ax, y> = <x, A^T y> on random
 * data, full, limited and non-uniform angle sets, non-square grids, subsets), FBP/SIRT/SART/TV reconstruct a
 * phantom (PCC above measured thresholds), FBP weights are right for uniform, limited and non-uniform sets, TV
 * beats SIRT on a noisy piecewise-constant phantom, and bad arguments are refused with a message. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apt_test.h"
#include "aptomo/metrics.h"
#include "aptomo/tomo.h"
#include "tomo/fbp_int.h"

static uint64_t rng = 88172645463325252ull;
static double urand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static double nrand(void)
{
    double u = urand() + 1e-300, v = urand();
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

static void linspace(double a, double b, int n, double *t)
{
    for (int i = 0; i < n; i++)
        t[i] = n > 1 ? a + (b - a) * i / (n - 1) : a;
}

static void check_adjoint(int Z, int Y, int X, int U, const double *th, int n, const char *what)
{
    apt_error err = {0};
    apt_proj *p = NULL;
    CHECK_OK(apt_proj_new(Z, Y, X, U, th, n, 2, APT_BACKEND_CPU, &p, &err), &err);
    if (!p)
        return;
    size_t nv = (size_t)Z * Y * X, ns = (size_t)n * Y * U;
    float *x = malloc(nv * 4), *y = malloc(ns * 4), *Ax = malloc(ns * 4), *Aty = malloc(nv * 4);
    for (size_t i = 0; i < nv; i++)
        x[i] = (float)nrand();
    for (size_t i = 0; i < ns; i++)
        y[i] = (float)nrand();
    CHECK_OK(apt_proj_forward(p, x, Ax, &err), &err);
    CHECK_OK(apt_proj_back(p, y, Aty, &err), &err);
    double l = 0, r = 0, sl = 0;
    for (size_t i = 0; i < ns; i++)
        l += (double)Ax[i] * y[i], sl += fabs((double)Ax[i] * y[i]);
    for (size_t i = 0; i < nv; i++)
        r += (double)x[i] * Aty[i];
    CHECK_MSG(fabs(l - r) <= 1e-5 * sl, "%s: <Ax,y> %.8g vs <x,A^T y> %.8g", what, l, r);
    /* subsets: the rows of a subset equal the full operator's rows, and their adjoint is matched too */
    int idx[3] = {n - 1, 0, n / 2};
    int m = n >= 3 ? 3 : 1;
    float *ys = malloc((size_t)m * Y * U * 4);
    CHECK_OK(apt_proj_forward_sub(p, x, idx, m, ys, &err), &err);
    double dmax = 0;
    for (int s = 0; s < m; s++)
        for (size_t e = 0; e < (size_t)Y * U; e++)
            dmax = fmax(dmax, fabs(ys[(size_t)s * Y * U + e] - Ax[(size_t)idx[s] * Y * U + e]));
    CHECK_MSG(dmax == 0, "%s: subset rows differ by %g", what, dmax);
    CHECK_OK(apt_proj_back_sub(p, y, idx, m, Aty, &err), &err);
    l = r = sl = 0;
    for (int s = 0; s < m; s++)
        for (size_t e = 0; e < (size_t)Y * U; e++) {
            double t = (double)ys[(size_t)s * Y * U + e] * y[(size_t)s * Y * U + e];
            l += t, sl += fabs(t);
        }
    for (size_t i = 0; i < nv; i++)
        r += (double)x[i] * Aty[i];
    CHECK_MSG(fabs(l - r) <= 1e-5 * sl, "%s subset: %.8g vs %.8g", what, l, r);
    free(ys);
    free(x);
    free(y);
    free(Ax);
    free(Aty);
    apt_proj_destroy(&p);
    CHECK(p == NULL);
}

/* Ellipses inside the inscribed circle: piecewise constant, asymmetric, the same in every y row (scaled). */
static void phantom(int Z, int Y, int X, float *v)
{
    const double e[][6] = {/* z0, x0, az, ax, angle, value (fractions of the half side) */
                           {0, 0, 0.72, 0.55, 0.3, 1.0},  {0.2, -0.15, 0.2, 0.3, -0.5, 0.5},
                           {-0.3, 0.2, 0.15, 0.1, 0, 1.5}, {0.05, 0.3, 0.08, 0.08, 0, -0.6}};
    double cz = (Z - 1) / 2.0, cx = (X - 1) / 2.0, h = (X < Z ? X : Z) / 2.0;
    for (int k = 0; k < Z; k++)
        for (int j = 0; j < Y; j++)
            for (int i = 0; i < X; i++) {
                double z = (k - cz) / h, x = (i - cx) / h, a = 0;
                for (int q = 0; q < 4; q++) {
                    double c = cos(e[q][4]), s = sin(e[q][4]), dz = z - e[q][0], dx = x - e[q][1];
                    double u = (dz * c + dx * s) / e[q][2], w = (-dz * s + dx * c) / e[q][3];
                    if (u * u + w * w <= 1)
                        a += e[q][5];
                }
                v[((size_t)k * Y + j) * X + i] = (float)(a * (1 + 0.1 * j));
            }
}

typedef struct recon_pcc {
    double fbp, sirt, sart, tv;
} recon_pcc;

static recon_pcc run_all(int N, int Y, const double *th, int n, double noise, int tv_iters, double lambda)
{
    recon_pcc out = {NAN, NAN, NAN, NAN};
    apt_error err = {0};
    apt_proj *p = NULL;
    CHECK_OK(apt_proj_new(N, Y, N, N, th, n, 0, APT_BACKEND_CPU, &p, &err), &err);
    if (!p)
        return out;
    size_t nv = (size_t)N * Y * N, ns = (size_t)n * Y * N;
    float *truth = malloc(nv * 4), *b = malloc(ns * 4), *x = calloc(nv, 4);
    phantom(N, Y, N, truth);
    CHECK_OK(apt_proj_forward(p, truth, b, &err), &err);
    double bmax = 0;
    for (size_t i = 0; i < ns; i++)
        bmax = fmax(bmax, b[i]);
    for (size_t i = 0; i < ns; i++)
        b[i] += (float)(noise * bmax * nrand());
    CHECK_OK(apt_fbp(p, b, APT_FBP_RAMP, x, &err), &err);
    out.fbp = apt_metric_pcc(x, truth, nv, NULL);
    apt_iter_opts o;
    apt_iter_opts_default(&o, "sirt");
    for (size_t i = 0; i < nv; i++)
        x[i] = 0;
    CHECK_OK(apt_sirt(p, b, &o, x, &err), &err);
    out.sirt = apt_metric_pcc(x, truth, nv, NULL);
    apt_iter_opts_default(&o, "sart");
    for (size_t i = 0; i < nv; i++)
        x[i] = 0;
    CHECK_OK(apt_sart(p, b, &o, x, &err), &err);
    out.sart = apt_metric_pcc(x, truth, nv, NULL);
    apt_iter_opts_default(&o, "tv");
    o.iters = tv_iters;
    o.lambda = lambda;
    for (size_t i = 0; i < nv; i++)
        x[i] = 0;
    CHECK_OK(apt_tv_fista(p, b, &o, x, &err), &err);
    out.tv = apt_metric_pcc(x, truth, nv, NULL);
    free(truth);
    free(b);
    free(x);
    apt_proj_destroy(&p);
    return out;
}

static void test_weights(void)
{
    apt_error err = {0};
    double th[180], w[180], s = 0;
    linspace(0, 179, 180, th);
    CHECK_OK(apt_fbp_weights(th, 180, w, &err), &err);
    for (int i = 0; i < 180; i++)
        CHECK_MSG(fabs(w[i] - M_PI / 180) < 1e-12, "uniform weight %d = %g", i, w[i]);
    /* limited +-17 deg, 29 angles: interior gaps, ends get their one neighbour's gap (no wedge borrowing) */
    linspace(-17, 17, 29, th);
    CHECK_OK(apt_fbp_weights(th, 29, w, &err), &err);
    for (int i = 0; i < 29; i++)
        s += w[i];
    CHECK_MSG(fabs(s - (34.0 + 34.0 / 28) * M_PI / 180) < 1e-9, "limited set weights sum %g", s);
    CHECK(fabs(w[0] - w[14]) < 1e-12);
    /* non-uniform: dense half and sparse half, given out of order; each weight = half its two gaps */
    double t2[6] = {30, 0, 10, 20, 90, 150}, w2[6];
    CHECK_OK(apt_fbp_weights(t2, 6, w2, &err), &err);
    CHECK(fabs(w2[1] - 0.5 * (30 + 10) * M_PI / 180) < 1e-12); /* 0: wraps to 150 (gap 30) and 10 */
    CHECK(fabs(w2[3] - 10 * M_PI / 180) < 1e-12);
    CHECK(fabs(w2[4] - 60 * M_PI / 180) < 1e-12);
    double tot = 0;
    for (int i = 0; i < 6; i++)
        tot += w2[i];
    CHECK(fabs(tot - M_PI) < 1e-12);
    /* 360-degree set: scaled to pi */
    double t3[360], w3[360];
    linspace(0, 359, 360, t3);
    CHECK_OK(apt_fbp_weights(t3, 360, w3, &err), &err);
    tot = 0;
    for (int i = 0; i < 360; i++)
        tot += w3[i];
    CHECK_MSG(fabs(tot - M_PI) < 1e-9, "360 set sums to %g", tot);
}

/* The result may not depend on the thread count: SIRT/SART hand whole slices to threads, the operators split rows
   and columns, TV's prox splits z-planes; every element is summed in the same order either way. */
static void test_threads(void)
{
    apt_error err = {0};
    double th[40];
    linspace(-70, 70, 40, th);
    int Z = 9, Y = 24, X = 21, U = 27; /* above TV's threading threshold */
    size_t nv = (size_t)Z * Y * X, ns = (size_t)40 * Y * U;
    float *truth = malloc(nv * 4), *b = malloc(ns * 4), *b2 = malloc(ns * 4), *x1 = calloc(nv, 4),
          *x2 = calloc(nv, 4);
    for (size_t i = 0; i < nv; i++)
        truth[i] = (float)(urand() > 0.6);
    const char *meth[6] = {"sirt", "sart", "fbp", "tv", "sart", "sart"};
    for (int m = 0; m < 6; m++) {
        float *out[2] = {x1, x2};
        for (int t = 0; t < 2; t++) {
            apt_proj *p = NULL;
            CHECK_OK(apt_proj_new(Z, Y, X, U, th, 40, t ? 3 : 1, APT_BACKEND_CPU, &p, &err), &err);
            if (!p)
                return;
            CHECK_OK(apt_proj_forward(p, truth, t ? b2 : b, &err), &err);
            apt_iter_opts o;
            apt_iter_opts_default(&o, meth[m]);
            o.iters = m == 3 ? 30 : 3;
            o.ray_window = m >= 4;           /* 4: one angle per update, 5: subsets of several angles */
            o.subsets = m == 5 ? 7 : 0;
            for (size_t i = 0; i < nv; i++)
                out[t][i] = 0;
            if (m == 0)
                CHECK_OK(apt_sirt(p, b, &o, out[t], &err), &err);
            else if (m == 1 || m >= 4)
                CHECK_OK(apt_sart(p, b, &o, out[t], &err), &err);
            else if (m == 2)
                CHECK_OK(apt_fbp(p, b, APT_FBP_HANN, out[t], &err), &err);
            else
                CHECK_OK(apt_tv_fista(p, b, &o, out[t], &err), &err);
            apt_proj_destroy(&p);
        }
        CHECK_MSG(memcmp(b, b2, ns * 4) == 0, "forward projection depends on the thread count");
        CHECK_MSG(memcmp(x1, x2, nv * 4) == 0, "%s (variant %d) depends on the thread count", meth[m], m);
        /* the ray window is a prior towards the middle of the rays, which a random phantom does not follow */
        CHECK_MSG(apt_metric_pcc(x1, truth, nv, NULL) > (m >= 4 ? 0.4 : 0.5), "%s (variant %d) pcc %.3f", meth[m], m,
                  apt_metric_pcc(x1, truth, nv, NULL));
    }
    free(truth);
    free(b);
    free(b2);
    free(x1);
    free(x2);
}

/* FBP's back-projection kernels (scalar, AVX2 and AVX-512 permutes) give the same bits, on angles of every
   quadrant (negative cosines, exact 0 and 90 degrees), detectors wider and narrower than the slice, row lengths
   that leave SIMD tails. Kernels this CPU lacks are skipped (reported). */
static void test_fbp_isa(void)
{
    apt_error err = {0};
    double th[13] = {-89.9, -60, -17, -3.3, 0, 0.7, 17, 45, 60, 90, 91, 135.5, 179};
    const int dims[3][3] = {{33, 3, 45}, {20, 2, 61}, {7, 1, 130}};
    for (int d = 0; d < 3; d++) {
        int Z = dims[d][0], Y = dims[d][1], X = dims[d][2], U = d == 0 ? 47 : d == 1 ? 40 : 131;
        size_t nv = (size_t)Z * Y * X, ns = (size_t)13 * Y * U;
        float *b = malloc(ns * 4), *ref = malloc(nv * 4), *x = malloc(nv * 4);
        for (size_t i = 0; i < ns; i++)
            b[i] = (float)nrand();
        apt_proj *p = NULL;
        CHECK_OK(apt_proj_new(Z, Y, X, U, th, 13, 1, 0, &p, &err), &err);
        CHECK(apt_fbp_set_isa(FBP_ISA_SCALAR) == APT_OK);
        CHECK_OK(apt_fbp(p, b, APT_FBP_RAMP, ref, &err), &err);
        for (int isa = FBP_ISA_AVX2; isa <= FBP_ISA_AVX512; isa++) {
            if (apt_fbp_set_isa(isa) != APT_OK) {
                printf("fbp kernel %d: not on this CPU, skipped\n", isa);
                continue;
            }
            CHECK_OK(apt_fbp(p, b, APT_FBP_RAMP, x, &err), &err);
            CHECK_MSG(memcmp(x, ref, nv * 4) == 0, "fbp kernel %d differs from the scalar loop (%dx%dx%d, U %d)", isa,
                      Z, Y, X, U);
        }
        apt_proj_destroy(&p);
        free(b);
        free(ref);
        free(x);
    }
    if (apt_fbp_set_isa(FBP_ISA_AVX512) != APT_OK && apt_fbp_set_isa(FBP_ISA_AVX2) != APT_OK)
        apt_fbp_set_isa(FBP_ISA_SCALAR); /* the rest of the tests run the kernel production picks */
}

/* The ray window's meaning: one SART step (relax 1) from 0 on a flat sinogram at theta = 0 (rays along z, every
   voxel seen) puts (1/N) times the Hamming window of its depth in every voxel: (1-b) - b cos(2 pi k/(N-1)),
   b = 0.46164 (scikit-image's), 0.08 at the ends of the ray, 1 in its middle; without the window, 1/N everywhere. */
static void test_ray_window(void)
{
    apt_error err = {0};
    enum { N = 33 };
    double th = 0;
    apt_proj *p = NULL;
    CHECK_OK(apt_proj_new(N, 1, N, N, &th, 1, 1, 0, &p, &err), &err);
    if (!p)
        return;
    float b[N], x[N * N];
    for (int u = 0; u < N; u++)
        b[u] = 1;
    for (int win = 0; win < 2; win++) {
        apt_iter_opts o;
        apt_iter_opts_default(&o, "sart");
        o.iters = 1, o.relax = 1, o.nonneg = 0, o.ray_window = win;
        memset(x, 0, sizeof x);
        CHECK_OK(apt_sart(p, b, &o, x, &err), &err);
        double worst = 0;
        for (int k = 0; k < N; k++)
            for (int i = 0; i < N; i++) {
                double h = win ? 0.53836 - 0.46164 * cos(2 * M_PI * k / (N - 1)) : 1;
                worst = fmax(worst, fabs(x[k * N + i] - h / N));
            }
        CHECK_MSG(worst < 1e-6, "ray window %d: one SART step off the expected profile by %.2e", win, worst);
    }
    apt_proj_destroy(&p);
}

/* Support = the voxels every view sees: a square slice with the detector as wide as the slice and a half-circle
   of angles keeps the inscribed disc (0 outside it); a slab whose projections hold it at every tilt keeps the
   whole box, so structure at the slab's lateral edges survives (an inscribed cylinder would cut it). */
static void test_support(void)
{
    apt_error err = {0};
    double th[60];
    /* square, full half circle, U = X: outside the disc of radius N/2 stays 0 */
    int N = 31;
    linspace(0, 177, 60, th);
    apt_proj *p = NULL;
    CHECK_OK(apt_proj_new(N, 1, N, N, th, 60, 0, APT_BACKEND_CPU, &p, &err), &err);
    float *v = malloc((size_t)N * N * 4), *b = malloc((size_t)60 * N * 4), *x = calloc((size_t)N * N, 4);
    for (int i = 0; i < N * N; i++)
        v[i] = 1;
    CHECK_OK(apt_proj_forward(p, v, b, &err), &err);
    apt_iter_opts o;
    apt_iter_opts_default(&o, "sart");
    o.iters = 2;
    CHECK_OK(apt_sart(p, b, &o, x, &err), &err);
    int outside_nonzero = 0, inside_zero = 0;
    double c = (N - 1) / 2.0;
    for (int k = 0; k < N; k++)
        for (int i = 0; i < N; i++) {
            double r = hypot(k - c, i - c);
            outside_nonzero += r > N / 2.0 + 0.01 && x[k * N + i] != 0;
            inside_zero += r < N / 2.0 - 1.5 && x[k * N + i] == 0;
        }
    CHECK_MSG(outside_nonzero == 0 && inside_zero == 0, "disc support: %d outside set, %d inside zero",
              outside_nonzero, inside_zero);
    apt_proj_destroy(&p);
    free(v), free(b), free(x);
    /* slab 9 x 41 at +-70 deg, detector wide enough for the slab at every tilt: lines at both x edges */
    int Z = 9, X = 41, U = 49, n = 40;
    linspace(-70, 70, n, th);
    CHECK_OK(apt_proj_new(Z, 1, X, U, th, n, 0, APT_BACKEND_CPU, &p, &err), &err);
    v = calloc((size_t)Z * X, 4), b = malloc((size_t)n * U * 4), x = calloc((size_t)Z * X, 4);
    for (int k = 2; k < 7; k++)
        for (int i = 0; i < X; i++)
            v[k * X + i] = (i < 4 || i >= X - 4 || (i / 5) % 2) ? 1.0f : 0.2f;
    CHECK_OK(apt_proj_forward(p, v, b, &err), &err);
    apt_iter_opts_default(&o, "sart");
    o.iters = 20;
    CHECK_OK(apt_sart(p, b, &o, x, &err), &err);
    double edge = 0;
    for (int k = 2; k < 7; k++)
        edge += x[k * X + 0] + x[k * X + X - 1];
    double pcc = apt_metric_pcc(x, v, (size_t)Z * X, NULL);
    CHECK_MSG(edge / 10 > 0.5 && pcc > 0.9, "slab edges %.3f (want ~1), pcc %.4f", edge / 10, pcc);
    apt_proj_destroy(&p);
    free(v), free(b), free(x);
}

static void test_errors(void)
{
    apt_error err = {0};
    apt_proj *p = NULL;
    double th[2] = {0, NAN};
    CHECK(apt_proj_new(0, 4, 4, 4, th, 1, 0, APT_BACKEND_CPU, &p, &err) == APT_ERANGE && p == NULL);
    CHECK(apt_proj_new(4, 4, 4, 100000, th, 1, 0, APT_BACKEND_CPU, &p, &err) == APT_ERANGE);
    CHECK(apt_proj_new(4, 4, 4, 4, th, 0, 0, APT_BACKEND_CPU, &p, &err) == APT_ERANGE);
    CHECK(apt_proj_new(4, 4, 4, 4, th, 2, 0, APT_BACKEND_CPU, &p, &err) == APT_EINVAL && strstr(err.msg, "theta[1]"));
    CHECK(apt_proj_new(8192, 8192, 8192, 4, th, 1, 0, APT_BACKEND_CPU, &p, &err) == APT_ERANGE);
    CHECK_OK(apt_proj_new(4, 1, 4, 4, th, 1, 1, APT_BACKEND_CPU, &p, &err), &err);
    float v[16] = {0}, s[4];
    int bad[1] = {3};
    CHECK(apt_proj_forward_sub(p, v, bad, 1, s, &err) == APT_EINVAL);
    apt_iter_opts o;
    apt_iter_opts_default(&o, "sart");
    o.relax = 2.5;
    CHECK(apt_sart(p, s, &o, v, &err) == APT_EINVAL && strstr(err.msg, "relax"));
    apt_iter_opts_default(&o, "sart");
    o.subsets = 5;
    CHECK(apt_sart(p, s, &o, v, &err) == APT_EINVAL && strstr(err.msg, "subsets"));
    apt_fbp_filter f;
    CHECK(apt_fbp_filter_parse("hamming", &f, &err) == APT_EINVAL && strstr(err.msg, "hamming"));
    CHECK(apt_fbp_filter_parse("shepp-logan", &f, &err) == APT_OK && f == APT_FBP_SHEPP);
    CHECK(apt_proj_backend(p) == APT_BACKEND_CPU);
    apt_proj_destroy(&p);
}

int main(void)
{
    double th[180];
    linspace(0, 179, 90, th);
    check_adjoint(17, 3, 23, 29, th, 90, "full 90");
    linspace(-17, 17, 29, th);
    check_adjoint(24, 2, 24, 24, th, 29, "limited 29");
    double odd[7] = {-70.4, -33, 0.5, 12, 45, 89.9, 135};
    check_adjoint(20, 1, 31, 40, odd, 7, "non-uniform 7");
    check_adjoint(33, 1, 33, 16, odd, 7, "narrow detector");
    test_weights();
    test_threads();
    test_fbp_isa();
    test_ray_window();
    test_support();
    test_errors();

    /* noise-free phantom, 90 angles over 180 deg */
    int N = 65, Y = 2;
    linspace(0, 178, 90, th);
    recon_pcc a = run_all(N, Y, th, 90, 0, 60, 0.002);
    printf("{\"case\":\"full90\",\"fbp\":%.4f,\"sirt\":%.4f,\"sart\":%.4f,\"tv\":%.4f}\n", a.fbp, a.sirt, a.sart,
           a.tv);
    CHECK_MSG(a.fbp > 0.98, "fbp pcc %.4f", a.fbp);
    CHECK_MSG(a.sirt > 0.98, "sirt pcc %.4f", a.sirt);
    CHECK_MSG(a.sart > 0.99, "sart pcc %.4f", a.sart);
    CHECK_MSG(a.tv > 0.99, "tv pcc %.4f", a.tv);
    /* limited angle (+-17 deg, 29 angles): every method degrades; iterative ones with positivity less */
    linspace(-17, 17, 29, th);
    recon_pcc b = run_all(N, 1, th, 29, 0, 60, 0.002);
    printf("{\"case\":\"limited29\",\"fbp\":%.4f,\"sirt\":%.4f,\"sart\":%.4f,\"tv\":%.4f}\n", b.fbp, b.sirt, b.sart,
           b.tv);
    CHECK_MSG(b.fbp > 0.55 && b.fbp < a.fbp, "limited fbp pcc %.4f", b.fbp);
    CHECK_MSG(b.sart > 0.75 && b.tv > 0.85, "limited sart %.4f tv %.4f", b.sart, b.tv);
    /* noisy, 45 angles: TV must beat SIRT */
    linspace(0, 176, 45, th);
    recon_pcc c = run_all(N, 1, th, 45, 0.05, 60, 0.02);
    printf("{\"case\":\"noisy45\",\"fbp\":%.4f,\"sirt\":%.4f,\"sart\":%.4f,\"tv\":%.4f}\n", c.fbp, c.sirt, c.sart,
           c.tv);
    CHECK_MSG(c.tv > c.sirt + 0.02, "tv %.4f vs sirt %.4f on noisy data", c.tv, c.sirt);
    CHECK_MSG(c.tv > c.fbp, "tv %.4f vs fbp %.4f on noisy data", c.tv, c.fbp);
    APT_TEST_DONE();
}
