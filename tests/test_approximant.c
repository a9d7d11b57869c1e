/* test_approximant.c - the tomographic geometry (src/tomo/stack.c) and the Approximant (src/tomo/approximant.c):
 * shuffled angle order, a point feature found where it is, a uniform slab recovered, coverage, the projected phase
 * of a cube against its thickness, probe-window centring, refusals. Also a helper mode for test_geometry_ref.py:
 *   test_approximant --project IN OUT   IN: raw float32 delta [Z,Y,X] + IN.json {grid, theta_deg, L, delta_m,
 *   pad_px, wavelength_m, optional Nx}; OUT: raw float32 complex [L,Ny,Nx] + OUT.json {theta_deg, L, Ny, Nx,
 *   delta_m, dz_m}.
 *   test_approximant --bench            times apt_approx_add and apt_stack_project on the daemon's grid size
 *   (printed, never asserted). */
#include "aptomo/approximant.h"
#include "aptomo/geometry.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <time.h>

#include "apt_test.h"

static const double LAMBDA = 1e-10, VOX = 10e-9;

static size_t nvox(const apt_grid3 *g)
{
    return (size_t)g->Z * g->Y * g->X;
}

static size_t idx(const apt_grid3 *g, int k, int j, int i)
{
    return ((size_t)k * g->Y + j) * g->X + i;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double rnd(void)   /* xorshift64*, uniform [0, 1) */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

/* Project delta at theta into a fresh stack and add it to a (weight: NULL or a callback-filled map). */
static int project_add(apt_approx *a, const apt_grid3 *g, const float *delta, double theta, int L, int pad,
                       const float *weight_or_null, apt_stack_geom *sg_out)
{
    apt_error err = {0};
    apt_stack_geom sg;
    CHECK_OK(apt_stack_geom_for(g, theta, L, VOX, pad, &sg, &err), &err);
    float *obj = malloc((size_t)2 * sg.L * sg.Ny * sg.Nx * sizeof *obj);
    CHECK_OK(apt_stack_project(g, delta, NULL, &sg, LAMBDA, obj, &err), &err);
    CHECK_OK(apt_approx_add(a, &sg, LAMBDA, obj, weight_or_null, &err), &err);
    free(obj);
    if (sg_out)
        *sg_out = sg;
    return 0;
}

/* (a) The same angles in two orders give the same volume (sums in double); a weight map is used too. */
static void test_order(void)
{
    apt_error err = {0};
    apt_grid3 g = {20, 16, 24, 12e-9, 10e-9, 8e-9};
    float *delta = malloc(nvox(&g) * sizeof *delta);
    for (size_t q = 0; q < nvox(&g); q++)
        delta[q] = (float)(1e-5 * rnd());
    double angles[9] = {-70, -52.5, -31, -10, 0, 12.5, 33, 61, 80};
    int perm[9] = {5, 0, 8, 3, 1, 7, 4, 2, 6};
    apt_approx *a = NULL, *b = NULL;
    CHECK_OK(apt_approx_new(&g, &a, &err), &err);
    CHECK_OK(apt_approx_new(&g, &b, &err), &err);
    for (int pass = 0; pass < 2; pass++)
        for (int n = 0; n < 9; n++) {
            double th = angles[pass ? perm[n] : n];
            apt_stack_geom sg;
            CHECK_OK(apt_stack_geom_for(&g, th, 4, VOX, 3, &sg, &err), &err);
            float *obj = malloc((size_t)2 * sg.L * sg.Ny * sg.Nx * sizeof *obj);
            float *w = malloc((size_t)sg.Ny * sg.Nx * sizeof *w);
            for (int r = 0; r < sg.Ny; r++)   /* a Gaussian "illumination", 0 on the outer pixels */
                for (int c = 0; c < sg.Nx; c++) {
                    double dy = (r - 0.5 * (sg.Ny - 1)) / (0.3 * sg.Ny), dx = (c - 0.5 * (sg.Nx - 1)) / (0.3 * sg.Nx);
                    int edge = r == 0 || c == 0 || r == sg.Ny - 1 || c == sg.Nx - 1;
                    w[(size_t)r * sg.Nx + c] = edge ? 0.0f : (float)exp(-dx * dx - dy * dy);
                }
            CHECK_OK(apt_stack_project(&g, delta, NULL, &sg, LAMBDA, obj, &err), &err);
            CHECK_OK(apt_approx_add(pass ? b : a, &sg, LAMBDA, obj, w, &err), &err);
            free(obj);
            free(w);
        }
    CHECK(apt_approx_angles(a) == 9 && apt_approx_angles(b) == 9);
    CHECK(apt_approx_grid(a)->X == 24 && apt_approx_grid(a)->vz == 12e-9);
    float *va = malloc(nvox(&g) * sizeof *va), *vb = malloc(nvox(&g) * sizeof *vb);
    CHECK_OK(apt_approx_get(a, va, &err), &err);
    CHECK_OK(apt_approx_get(b, vb, &err), &err);
    double amax = 0, dmax = 0;
    size_t nonzero = 0;
    for (size_t q = 0; q < nvox(&g); q++) {
        amax = fmax(amax, fabs(va[q]));
        dmax = fmax(dmax, fabs(va[q] - vb[q]));
        nonzero += va[q] != 0;
    }
    CHECK_MSG(amax > 1e-6 && nonzero > nvox(&g) / 2, "amax %g nonzero %zu", amax, nonzero);
    printf("order: max |a - b| %.3g of max %.3g\n", dmax, amax);
    CHECK_MSG(dmax <= 1e-6 * amax, "order changed the volume: max diff %g of %g", dmax, amax);
    apt_approx_reset(a);
    CHECK_OK(apt_approx_get(a, va, &err), &err);
    double after = 0;
    for (size_t q = 0; q < nvox(&g); q++)
        after = fmax(after, fabs(va[q]));
    CHECK(apt_approx_angles(a) == 0 && after == 0.0);
    apt_approx_destroy(&a);
    apt_approx_destroy(&b);
    CHECK(a == NULL && b == NULL);
    apt_approx_destroy(&a);   /* idempotent */
    free(va);
    free(vb);
    free(delta);
}

/* (a2) Air reference: a constant phase added to every slice (what a reconstruction started flat drifts by; the
   far-field data cannot see it) leaves the Approximant unchanged, since each slice is referenced to the air beside
   the grid. */
static void test_air(void)
{
    apt_error err = {0};
    apt_grid3 g = {12, 10, 16, 10e-9, 10e-9, 10e-9};
    float *delta = malloc(nvox(&g) * sizeof *delta);
    for (size_t q = 0; q < nvox(&g); q++)
        delta[q] = (float)(1e-5 * rnd());
    apt_approx *a = NULL, *b = NULL;
    CHECK_OK(apt_approx_new(&g, &a, &err), &err);
    CHECK_OK(apt_approx_new(&g, &b, &err), &err);
    double angles[5] = {-60, -20, 0, 25, 70};
    for (int n = 0; n < 5; n++) {
        apt_stack_geom sg;
        CHECK_OK(apt_stack_geom_for(&g, angles[n], 3, VOX, 6, &sg, &err), &err);
        size_t plane = (size_t)sg.Ny * sg.Nx;
        float *obj = malloc((size_t)2 * sg.L * plane * sizeof *obj);
        CHECK_OK(apt_stack_project(&g, delta, NULL, &sg, LAMBDA, obj, &err), &err);
        CHECK_OK(apt_approx_add(a, &sg, LAMBDA, obj, NULL, &err), &err);
        for (int l = 0; l < sg.L; l++) { /* a different drift per slice and angle */
            double ph = 0.05 + 0.1 * l + 0.02 * n, c = cos(ph), sn = sin(ph);
            for (size_t q = 0; q < plane; q++) {
                float *o = obj + 2 * ((size_t)l * plane + q), re = o[0], im = o[1];
                o[0] = (float)(re * c - im * sn), o[1] = (float)(re * sn + im * c);
            }
        }
        CHECK_OK(apt_approx_add(b, &sg, LAMBDA, obj, NULL, &err), &err);
        free(obj);
    }
    float *va = malloc(nvox(&g) * sizeof *va), *vb = malloc(nvox(&g) * sizeof *vb);
    CHECK_OK(apt_approx_get(a, va, &err), &err);
    CHECK_OK(apt_approx_get(b, vb, &err), &err);
    double amax = 0, dmax = 0;
    for (size_t q = 0; q < nvox(&g); q++)
        amax = fmax(amax, fabs(va[q])), dmax = fmax(dmax, fabs(va[q] - vb[q]));
    printf("air: a phase drift changes the Approximant by %.3g of max %.3g\n", dmax, amax);
    CHECK_MSG(amax > 1e-6 && dmax <= 1e-3 * amax, "phase drift leaks into the Approximant: %g of %g", dmax, amax);
    apt_approx_destroy(&a);
    apt_approx_destroy(&b);
    free(va);
    free(vb);
    free(delta);
}

/* (b) A 3x3x3 cube of high delta off-centre in a weak background, 15 angles over +-60 deg, L = 5: the argmax of
   the Approximant is within 1 voxel across (y, x) and within one 0-deg slice thickness along z. */
static void test_point(void)
{
    apt_error err = {0};
    apt_grid3 g = {32, 32, 32, VOX, VOX, VOX};
    const int K = 22, J = 10, I = 12, L = 5;
    float *delta = malloc(nvox(&g) * sizeof *delta);
    for (size_t q = 0; q < nvox(&g); q++)
        delta[q] = 1e-8f;
    for (int k = K - 1; k <= K + 1; k++)
        for (int j = J - 1; j <= J + 1; j++)
            for (int i = I - 1; i <= I + 1; i++)
                delta[idx(&g, k, j, i)] = 1e-5f;
    apt_approx *a = NULL;
    CHECK_OK(apt_approx_new(&g, &a, &err), &err);
    for (int n = 0; n < 15; n++)
        project_add(a, &g, delta, -60.0 + 120.0 * n / 14, L, 2, NULL, NULL);
    apt_stack_geom sg0;
    CHECK_OK(apt_stack_geom_for(&g, 0.0, L, VOX, 2, &sg0, &err), &err);
    float *vol = malloc(nvox(&g) * sizeof *vol);
    CHECK_OK(apt_approx_get(a, vol, &err), &err);
    size_t best = 0;
    for (size_t q = 1; q < nvox(&g); q++)
        if (vol[q] > vol[best])
            best = q;
    int bk = (int)(best / ((size_t)g.Y * g.X)), bj = (int)(best / g.X % g.Y), bi = (int)(best % g.X);
    double zslack = sg0.dz_m / g.vz;
    CHECK_MSG(abs(bj - J) <= 1 && abs(bi - I) <= 1 && abs(bk - K) <= zslack,
              "argmax (%d,%d,%d), feature at (%d,%d,%d), z slack %.2f voxels", bk, bj, bi, K, J, I, zslack);
    printf("point: argmax (%d,%d,%d), feature (%d,%d,%d), z slack %.2f voxels, peak %.3g\n", bk, bj, bi, K, J, I,
           zslack, (double)vol[best]);
    CHECK_MSG(vol[best] > 0 && vol[best] < 1e-5f, "peak %g: a mean of estimates cannot exceed the true delta",
              (double)vol[best]);
    apt_approx_destroy(&a);
    free(vol);
    free(delta);
}

/* Does the beam segment (x', z' - h .. z' + h) at angle th stay inside |x|, |z| <= lim (voxel units)? */
static int segment_inside(double xp, double zp, double h, double th, double lim)
{
    double cs = cos(th), sn = sin(th);
    for (int e = -1; e <= 1; e += 2) {
        double z2 = zp + e * h, x = xp * cs - z2 * sn, z = xp * sn + z2 * cs;
        if (fabs(x) > lim || fabs(z) > lim)
            return 0;
    }
    return 1;
}

/* (c) A slab normal to the rotation axis (uniform in x, z): wherever a voxel's two neighbouring slices lie wholly
   in the volume at every angle, the Approximant equals delta; outside the slab it is 0. */
static void test_slab(void)
{
    apt_error err = {0};
    apt_grid3 g = {32, 32, 32, VOX, VOX, VOX};
    const float d0 = 2e-6f;
    const int L = 5, NA = 15;
    float *delta = calloc(nvox(&g), sizeof *delta);
    for (int k = 0; k < g.Z; k++)
        for (int j = 8; j <= 23; j++)
            for (int i = 0; i < g.X; i++)
                delta[idx(&g, k, j, i)] = d0;
    apt_approx *a = NULL;
    CHECK_OK(apt_approx_new(&g, &a, &err), &err);
    double th[NA], dz[NA];
    for (int n = 0; n < NA; n++) {
        apt_stack_geom sg;
        th[n] = -60.0 + 120.0 * n / (NA - 1);
        project_add(a, &g, delta, th[n], L, 2, NULL, &sg);
        dz[n] = sg.dz_m / VOX;
    }
    float *vol = malloc(nvox(&g) * sizeof *vol);
    CHECK_OK(apt_approx_get(a, vol, &err), &err);
    int inner = 0, bad = 0, outside_bad = 0;
    double worst = 0;
    for (int k = 0; k < g.Z; k++)
        for (int i = 0; i < g.X; i++) {
            double z = k - 15.5, x = i - 15.5;
            int ok = 1;
            for (int n = 0; n < NA && ok; n++) {
                double t = th[n] * M_PI / 180;
                double xp = x * cos(t) + z * sin(t), zp = -x * sin(t) + z * cos(t);
                ok = segment_inside(xp, zp, 1.5 * dz[n], t, 15.0);
            }
            for (int j = 0; j < g.Y; j++) {
                float v = vol[idx(&g, k, j, i)];
                if (j <= 5 || j >= 26)
                    outside_bad += fabsf(v) > 1e-3f * d0;
                if (!ok || j < 10 || j > 21)
                    continue;
                inner++;
                double rel = fabs(v - d0) / d0;
                worst = fmax(worst, rel);
                bad += rel > 0.01;
            }
        }
    printf("slab: %d inner voxels, worst relative error %.3g\n", inner, worst);
    CHECK_MSG(inner >= 500, "only %d inner voxels checked", inner);
    CHECK_MSG(bad == 0, "%d of %d inner voxels off by > 1%% (worst %.3g)", bad, inner, worst);
    CHECK_MSG(outside_bad == 0, "%d voxels outside the slab are not 0", outside_bad);
    apt_approx_destroy(&a);
    free(vol);
    free(delta);
}

/* (c') Coverage: a uniform stack with a weight window |y| <= 5, |x'| <= 4 pixels over 5 angles in +-20 deg. A
   voxel clearly inside the window at some angle gets exactly delta, one clearly outside at all angles stays 0. */
static void test_coverage(void)
{
    apt_error err = {0};
    apt_grid3 g = {24, 20, 24, VOX, VOX, VOX};
    const double d0 = 3e-6, ylim = 5, xlim = 4, k = 2 * M_PI / LAMBDA;
    apt_approx *a = NULL;
    CHECK_OK(apt_approx_new(&g, &a, &err), &err);
    double th[5] = {-20, -10, 0, 10, 20};
    for (int n = 0; n < 5; n++) {
        apt_stack_geom sg;
        CHECK_OK(apt_stack_geom_for(&g, th[n], 3, VOX, 1, &sg, &err), &err);
        size_t plane = (size_t)sg.Ny * sg.Nx;
        float *obj = malloc(2 * plane * sg.L * sizeof *obj), *w = malloc(plane * sizeof *w);
        for (size_t q = 0; q < plane * sg.L; q++) {
            obj[2 * q] = (float)cos(k * d0 * sg.dz_m);
            obj[2 * q + 1] = (float)-sin(k * d0 * sg.dz_m);
        }
        for (int r = 0; r < sg.Ny; r++)
            for (int c = 0; c < sg.Nx; c++) {
                double y = r - 0.5 * (sg.Ny - 1), xp = c - 0.5 * (sg.Nx - 1);
                w[(size_t)r * sg.Nx + c] = fabs(y) <= ylim && fabs(xp) <= xlim ? 0.5f : 0.0f;
            }
        CHECK_OK(apt_approx_add(a, &sg, LAMBDA, obj, w, &err), &err);
        free(obj);
        free(w);
    }
    float *vol = malloc(nvox(&g) * sizeof *vol);
    CHECK_OK(apt_approx_get(a, vol, &err), &err);
    int in = 0, out = 0, bad_in = 0, bad_out = 0, bad_val = 0;
    for (int kk = 0; kk < g.Z; kk++)
        for (int j = 0; j < g.Y; j++)
            for (int i = 0; i < g.X; i++) {
                double z = kk - 0.5 * (g.Z - 1), y = j - 0.5 * (g.Y - 1), x = i - 0.5 * (g.X - 1), mx = 1e9;
                for (int n = 0; n < 5; n++) {
                    double t = th[n] * M_PI / 180;
                    mx = fmin(mx, fabs(x * cos(t) + z * sin(t)));
                }
                float v = vol[idx(&g, kk, j, i)];
                if (v != 0.0f)   /* anything covered, even at a weight-window edge, is delta */
                    bad_val += fabs(v - d0) > 1e-5 * d0;
                if (fabs(y) <= ylim - 1.5 && mx <= xlim - 1.5) {
                    in++;
                    bad_in += v == 0.0f;
                } else if (fabs(y) >= ylim + 1.5 || mx >= xlim + 1.5) {
                    out++;
                    bad_out += v != 0.0f;
                }
            }
    printf("coverage: %d voxels clearly covered, %d clearly not\n", in, out);
    CHECK_MSG(in > 500 && out > 2000, "in %d out %d", in, out);
    CHECK_MSG(bad_in == 0 && bad_out == 0 && bad_val == 0, "uncovered inside %d, covered outside %d, wrong %d",
              bad_in, bad_out, bad_val);
    apt_approx_destroy(&a);
    free(vol);
}

/* Total phase and log-amplitude of pixel (r, c) over all slices. */
static void ray_total(const apt_stack_geom *sg, const float *obj, int r, int c, double *phase, double *logamp)
{
    *phase = *logamp = 0;
    for (int l = 0; l < sg->L; l++) {
        const float *o = obj + 2 * (((size_t)l * sg->Ny + r) * sg->Nx + c);
        *phase += atan2(o[1], o[0]);
        *logamp += 0.5 * log((double)o[0] * o[0] + (double)o[1] * o[1]);
    }
}

/* (d) A uniform 12-voxel cube: the ray through its centre has phase -k delta s / cos(theta) (s the side) and
   log-amplitude -k beta s / cos(theta); rays beside it see nothing; the phase summed over the stack is the same
   -k integral(delta) dV / delta^2 at every angle. */
static void test_cube(void)
{
    apt_error err = {0};
    apt_grid3 g = {24, 24, 24, VOX, VOX, VOX};
    const double d0 = 1e-6, b0 = 1e-8, k = 2 * M_PI / LAMBDA, s = 12 * VOX;
    float *delta = calloc(nvox(&g), sizeof *delta), *beta = calloc(nvox(&g), sizeof *beta);
    for (int kk = 6; kk <= 17; kk++)
        for (int j = 6; j <= 17; j++)
            for (int i = 6; i <= 17; i++) {
                delta[idx(&g, kk, j, i)] = (float)d0;
                beta[idx(&g, kk, j, i)] = (float)b0;
            }
    const double angles[4] = {0, 30, -37, 90};
    for (int n = 0; n < 4; n++) {
        apt_stack_geom sg;
        CHECK_OK(apt_stack_geom_for(&g, angles[n], 4, VOX, 0, &sg, &err), &err);
        if (n == 0)
            CHECK_MSG(sg.Ny == 24 && sg.Nx == 24 && fabs(sg.dz_m * sg.L - 24 * VOX) < 1e-3 * VOX,
                      "0-deg stack %d x %d, depth %g", sg.Ny, sg.Nx, sg.dz_m * sg.L);
        float *obj = malloc((size_t)2 * sg.L * sg.Ny * sg.Nx * sizeof *obj);
        CHECK_OK(apt_stack_project(&g, delta, beta, &sg, LAMBDA, obj, &err), &err);
        double ph, la, cth = cos(angles[n] * M_PI / 180);
        if (fabs(cth) > 0.7) {   /* exits through the z faces: path s / cos(theta) */
            /* Ny, Nx are even when the rotated extent is: average the four centre pixels' rays (each passes within
               half a pixel of the centre, so all see the full path). */
            int r = sg.Ny / 2, c = sg.Nx / 2;
            ray_total(&sg, obj, r, c, &ph, &la);
            double want = -k * d0 * s / fabs(cth);
            printf("cube: theta %g, centre ray phase %.6g, want %.6g\n", angles[n], ph, want);
            CHECK_MSG(fabs(ph - want) <= 0.01 * fabs(want), "theta %g: phase %g want %g", angles[n], ph, want);
            CHECK_MSG(fabs(la + k * b0 * s / fabs(cth)) <= 0.01 * k * b0 * s / fabs(cth),
                      "theta %g: log amplitude %g", angles[n], la);
        }
        if (angles[n] == 90) {   /* exits through the x faces */
            ray_total(&sg, obj, sg.Ny / 2, sg.Nx / 2, &ph, &la);
            CHECK_MSG(fabs(ph + k * d0 * s) <= 0.01 * k * d0 * s, "theta 90: phase %g", ph);
        }
        ray_total(&sg, obj, sg.Ny / 2, 1, &ph, &la);   /* beside the cube's shadow */
        CHECK_MSG(ph == 0.0 && la == 0.0, "theta %g: phase %g beside the cube", angles[n], ph);
        ray_total(&sg, obj, 2, sg.Nx / 2, &ph, &la);
        CHECK_MSG(ph == 0.0, "theta %g: phase %g above the cube", angles[n], ph);
        double total = 0;
        for (int r = 0; r < sg.Ny; r++)
            for (int c = 0; c < sg.Nx; c++) {
                ray_total(&sg, obj, r, c, &ph, &la);
                total += ph;
            }
        double want = -k * d0 * s * s * s / (VOX * VOX);
        printf("cube: theta %g, total phase %.6g, want %.6g\n", angles[n], total, want);
        CHECK_MSG(fabs(total - want) <= 0.01 * fabs(want), "theta %g: total phase %g want %g", angles[n], total,
                  want);
        free(obj);
    }
    free(delta);
    free(beta);
}

/* (e) The window of a probe centred at (0, 0) has its [H/2, W/2] pixel on the array position of (y=0, x'=0):
   (N-1)/2 for odd N, N/2 for even N (the tie goes up); any position lands within delta/2 of its pixel. */
static void test_window(void)
{
    const int sizes[2] = {7, 8}, wins[3] = {4, 5, 6};
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++)
            for (int h = 0; h < 3; h++) {
                apt_stack_geom sg = {0, 2, sizes[a], sizes[b] + 40, VOX, VOX};
                int H = wins[h], W = wins[2 - h], row, col;
                apt_stack_window(&sg, H, W, 0.0, 0.0, &row, &col);
                int wr = sg.Ny % 2 ? (sg.Ny - 1) / 2 : sg.Ny / 2, wc = sg.Nx % 2 ? (sg.Nx - 1) / 2 : sg.Nx / 2;
                CHECK_MSG(row + H / 2 == wr && col + W / 2 == wc, "N %dx%d win %dx%d: centre (%d,%d) want (%d,%d)",
                          sg.Ny, sg.Nx, H, W, row + H / 2, col + W / 2, wr, wc);
                for (int n = 0; n < 50; n++) {
                    double y = (rnd() - 0.5) * sg.Ny * VOX, x = (rnd() - 0.5) * sg.Nx * VOX;
                    apt_stack_window(&sg, H, W, y, x, &row, &col);
                    double yc = (row + H / 2 - 0.5 * (sg.Ny - 1)) * VOX, xc = (col + W / 2 - 0.5 * (sg.Nx - 1)) * VOX;
                    CHECK_MSG(fabs(yc - y) <= 0.5 * VOX * (1 + 1e-9) && fabs(xc - x) <= 0.5 * VOX * (1 + 1e-9),
                              "position (%g, %g) -> pixel centre (%g, %g)", y, x, yc, xc);
                }
            }
    apt_stack_geom sg = {0, 1, 9, 9, VOX, VOX};
    int row, col;
    apt_stack_window(&sg, 4, 4, NAN, 1e300, &row, &col);   /* wild input: clamped, no overflow */
    CHECK(row < -1000000 && col > 1000000);
}

#define CHECK_ERR(expr, code, word)                                                                          \
    do {                                                                                                     \
        apt_error e_ = {0};                                                                                  \
        int r_ = (expr);                                                                                     \
        CHECK_MSG(r_ == (code) && strstr(e_.msg, (word)) != NULL, "rc %d (want %d), msg '%s' (want '%s')",   \
                  r_, (code), e_.msg, (word));                                                               \
    } while (0)

/* (f) Refusals name the field; a refused angle leaves the Approximant untouched. */
static void test_errors(void)
{
    apt_grid3 g = {8, 8, 8, VOX, VOX, VOX}, bad;
    apt_stack_geom sg;
    CHECK_ERR(apt_stack_geom_for(&g, 0, 0, VOX, 0, &sg, &e_), APT_ERANGE, "L = 0");
    CHECK_ERR(apt_stack_geom_for(&g, 0, 5000, VOX, 0, &sg, &e_), APT_ERANGE, "L = 5000");
    CHECK_ERR(apt_stack_geom_for(&g, 0, 2, 0.0, 0, &sg, &e_), APT_EINVAL, "delta_m");
    CHECK_ERR(apt_stack_geom_for(&g, 0, 2, NAN, 0, &sg, &e_), APT_EINVAL, "delta_m");
    CHECK_ERR(apt_stack_geom_for(&g, 0, 2, 1e-15, 0, &sg, &e_), APT_ERANGE, "delta_m");
    CHECK_ERR(apt_stack_geom_for(&g, INFINITY, 2, VOX, 0, &sg, &e_), APT_EINVAL, "theta_deg");
    CHECK_ERR(apt_stack_geom_for(&g, 0, 2, VOX, -1, &sg, &e_), APT_ERANGE, "pad_px");
    bad = g;
    bad.Z = 0;
    CHECK_ERR(apt_stack_geom_for(&bad, 0, 2, VOX, 0, &sg, &e_), APT_ERANGE, "Z = 0");
    bad = g;
    bad.vx = -1e-9;
    CHECK_ERR(apt_stack_geom_for(&bad, 0, 2, VOX, 0, &sg, &e_), APT_EINVAL, "vx");
    bad = (apt_grid3){16384, 16384, 16384, VOX, VOX, VOX};
    apt_approx *a = NULL;
    CHECK_ERR(apt_approx_new(&bad, &a, &e_), APT_ERANGE, "voxels");
    CHECK(a == NULL);
    bad = (apt_grid3){8, 20000, 8, VOX, VOX, VOX};
    CHECK_ERR(apt_approx_new(&bad, &a, &e_), APT_ERANGE, "Y = 20000");

    apt_error err = {0};
    CHECK_OK(apt_stack_geom_for(&g, 15, 2, VOX, 1, &sg, &err), &err);
    size_t plane = (size_t)sg.Ny * sg.Nx;
    float *delta = calloc(nvox(&g), sizeof *delta), *obj = calloc(2 * plane * sg.L, sizeof *obj);
    float *w = calloc(plane, sizeof *w), *vol = malloc(nvox(&g) * sizeof *vol);
    CHECK_ERR(apt_stack_project(&g, delta, NULL, &sg, 0.0, obj, &e_), APT_EINVAL, "wavelength_m");
    CHECK_ERR(apt_stack_project(&g, NULL, NULL, &sg, LAMBDA, obj, &e_), APT_EINVAL, "delta");
    apt_stack_geom sb = sg;
    sb.dz_m = sg.dz_m * 1e7;
    CHECK_ERR(apt_stack_project(&g, delta, NULL, &sb, LAMBDA, obj, &e_), APT_ERANGE, "dz_m");
    CHECK_OK(apt_stack_project(&g, delta, NULL, &sg, LAMBDA, obj, &err), &err);

    CHECK_OK(apt_approx_new(&g, &a, &err), &err);
    sb = sg;
    sb.Nx = 0;
    CHECK_ERR(apt_approx_add(a, &sb, LAMBDA, obj, NULL, &e_), APT_ERANGE, "Nx = 0");
    sb = sg;
    sb.L = 1025;
    CHECK_ERR(apt_approx_add(a, &sb, LAMBDA, obj, NULL, &e_), APT_ERANGE, "L = 1025");
    sb = sg;
    sb.Ny = sb.Nx = 30000;
    CHECK_ERR(apt_approx_add(a, &sb, LAMBDA, obj, NULL, &e_), APT_ERANGE, "pixels");
    sb = sg;
    sb.dz_m = -1;
    CHECK_ERR(apt_approx_add(a, &sb, LAMBDA, obj, NULL, &e_), APT_EINVAL, "dz_m");
    CHECK_ERR(apt_approx_add(a, &sg, -1.0, obj, NULL, &e_), APT_EINVAL, "wavelength_m");
    CHECK_ERR(apt_approx_add(a, &sg, LAMBDA, NULL, NULL, &e_), APT_EINVAL, "object");
    for (size_t q = 0; q < plane; q++)
        w[q] = 1.0f;
    w[sg.Nx + 2] = -0.5f;
    CHECK_ERR(apt_approx_add(a, &sg, LAMBDA, obj, w, &e_), APT_EINVAL, "weight[1, 2]");
    w[sg.Nx + 2] = 1.0f;
    for (size_t q = 0; q < plane * sg.L; q++) {   /* a valid angle of phase -0.1 ... */
        obj[2 * q] = (float)cos(0.1);
        obj[2 * q + 1] = (float)-sin(0.1);
    }
    obj[2 * (plane + 3) + 1] = NAN;   /* ... but one NaN in slice 1 */
    CHECK_ERR(apt_approx_add(a, &sg, LAMBDA, obj, w, &e_), APT_EINVAL, "object[1, 0, 3]");
    CHECK(apt_approx_angles(a) == 0);
    CHECK_OK(apt_approx_get(a, vol, &err), &err);
    int nz = 0;
    for (size_t q = 0; q < nvox(&g); q++)
        nz += vol[q] != 0.0f;
    CHECK_MSG(nz == 0, "%d voxels changed by refused angles", nz);
    CHECK_ERR(apt_approx_get(a, NULL, &e_), APT_EINVAL, "output");
    apt_approx_destroy(&a);
    free(delta);
    free(obj);
    free(w);
    free(vol);
}

/* ---- helper modes */

static int json_num(json_t *o, const char *key, double *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_number(v)) {
        fprintf(stderr, "sidecar: \"%s\" missing or not a number\n", key);
        return -1;
    }
    *out = json_number_value(v);
    return 0;
}

static int mode_project(const char *in, const char *out)
{
    char path[4096];
    json_error_t je;
    snprintf(path, sizeof path, "%s.json", in);
    json_t *js = json_load_file(path, 0, &je);
    if (!js) {
        fprintf(stderr, "%s:%d: %s\n", path, je.line, je.text);
        return 2;
    }
    json_t *jg = json_object_get(js, "grid");
    double Z, Y, X, th, L, dm, pad, lam;
    apt_grid3 g;
    if (!json_is_object(jg) || json_num(jg, "Z", &Z) || json_num(jg, "Y", &Y) || json_num(jg, "X", &X) ||
        json_num(jg, "vz", &g.vz) || json_num(jg, "vy", &g.vy) || json_num(jg, "vx", &g.vx) ||
        json_num(js, "theta_deg", &th) || json_num(js, "L", &L) || json_num(js, "delta_m", &dm) ||
        json_num(js, "pad_px", &pad) || json_num(js, "wavelength_m", &lam)) {
        json_decref(js);
        return 2;
    }
    /* Only what the int casts need; the library's checks name the field at fault. */
    if (!(fabs(Z) < 1e9 && fabs(Y) < 1e9 && fabs(X) < 1e9 && fabs(L) < 1e9 && fabs(pad) < 1e9)) {
        fprintf(stderr, "%s: Z, Y, X, L or pad_px is not a size\n", path);
        json_decref(js);
        return 2;
    }
    g.Z = (int)Z, g.Y = (int)Y, g.X = (int)X;
    apt_error err = {0};
    apt_stack_geom sg;
    if (apt_stack_geom_for(&g, th, (int)L, dm, (int)pad, &sg, &err)) {
        fprintf(stderr, "%s: %s\n", path, err.msg);
        json_decref(js);
        return 2;
    }
    json_t *jnx = json_object_get(js, "Nx");   /* optional: a stack width other than geom_for's */
    if (json_is_integer(jnx)) {
        sg.Nx = (int)json_integer_value(jnx);
        if (apt_stack_geom_check(&sg, &err)) {
            fprintf(stderr, "%s: %s\n", path, err.msg);
            json_decref(js);
            return 2;
        }
    }
    json_decref(js);
    FILE *f = fopen(in, "rb");
    if (!f) {
        perror(in);
        return 2;
    }
    size_t n = nvox(&g);
    float *delta = malloc(n * sizeof *delta), *obj = malloc((size_t)2 * sg.L * sg.Ny * sg.Nx * sizeof *obj);
    size_t got = delta ? fread(delta, sizeof *delta, n, f) : 0;
    int extra = fgetc(f) != EOF;
    fclose(f);
    int rc = 0;
    if (!obj || got != n || extra) {
        fprintf(stderr, "%s: want exactly %zu float32 values\n", in, n);
        rc = 2;
    } else if (apt_stack_project(&g, delta, NULL, &sg, lam, obj, &err)) {
        fprintf(stderr, "project: %s\n", err.msg);
        rc = 1;
    } else {
        f = fopen(out, "wb");
        size_t m = (size_t)2 * sg.L * sg.Ny * sg.Nx;
        if (!f || fwrite(obj, sizeof *obj, m, f) != m || fclose(f)) {
            perror(out);
            rc = 1;
        }
        snprintf(path, sizeof path, "%s.json", out);
        json_t *o = json_pack("{s:f, s:i, s:i, s:i, s:f, s:f}", "theta_deg", sg.theta_deg, "L", sg.L, "Ny", sg.Ny,
                              "Nx", sg.Nx, "delta_m", sg.delta_m, "dz_m", sg.dz_m);
        if (!o || json_dump_file(o, path, JSON_REAL_PRECISION(17))) {
            fprintf(stderr, "%s: cannot write\n", path);
            rc = 1;
        }
        json_decref(o);
    }
    free(delta);
    free(obj);
    return rc;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int mode_bench(void)
{
    apt_error err = {0};
    apt_grid3 g = {280, 128, 128, VOX, VOX, VOX};
    apt_approx *a = NULL;
    if (apt_approx_new(&g, &a, &err))
        return fprintf(stderr, "%s\n", err.msg), 1;
    apt_stack_geom sg = {0, 5, 200, 200, 1.4 * VOX, 0};
    sg.dz_m = 300 * VOX / 5;
    float *obj = malloc((size_t)2 * 5 * 200 * 200 * sizeof *obj);
    for (size_t q = 0; q < (size_t)5 * 200 * 200; q++)
        obj[2 * q] = (float)cos(0.01 * (q % 97)), obj[2 * q + 1] = (float)sin(-0.01 * (q % 97));
    for (int n = 0; n < 5; n++) {
        sg.theta_deg = -60 + 30 * n;
        double t0 = now_s();
        if (apt_approx_add(a, &sg, LAMBDA, obj, NULL, &err))
            return fprintf(stderr, "%s\n", err.msg), 1;
        printf("{\"bench\":\"approx_add\",\"grid\":\"280x128x128\",\"stack\":\"5x200x200\",\"theta\":%g,\"s\":%.4f}\n",
               sg.theta_deg, now_s() - t0);
    }
    apt_approx_destroy(&a);
    float *delta = malloc(nvox(&g) * sizeof *delta);
    for (size_t q = 0; q < nvox(&g); q++)
        delta[q] = (float)(1e-6 * rnd());
    for (int n = 0; n < 2; n++) {
        apt_stack_geom sp;
        if (apt_stack_geom_for(&g, 45.0 * n, 5, VOX, 8, &sp, &err))
            return fprintf(stderr, "%s\n", err.msg), 1;
        float *o = malloc((size_t)2 * sp.L * sp.Ny * sp.Nx * sizeof *o);
        double t0 = now_s();
        if (apt_stack_project(&g, delta, NULL, &sp, LAMBDA, o, &err))
            return fprintf(stderr, "%s\n", err.msg), 1;
        printf("{\"bench\":\"stack_project\",\"grid\":\"280x128x128\",\"stack\":\"%dx%dx%d\",\"theta\":%g,"
               "\"s\":%.4f}\n", sp.L, sp.Ny, sp.Nx, sp.theta_deg, now_s() - t0);
        free(o);
    }
    free(delta);
    free(obj);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--project") == 0)
        return mode_project(argv[2], argv[3]);
    if (argc == 2 && strcmp(argv[1], "--bench") == 0)
        return mode_bench();
    if (argc != 1) {
        fprintf(stderr, "usage: %s [--project IN OUT | --bench]\n", argv[0]);
        return 2;
    }
    test_order();
    test_air();
    test_point();
    test_slab();
    test_coverage();
    test_cube();
    test_window();
    test_errors();
    APT_TEST_DONE();
}
