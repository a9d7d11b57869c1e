/* test_angle_proj.c - projections for the baselines (src/angle/angle_proj.c): the detector-width rule (edge
 * angles, parity, range errors), and apt_angle_projection on a stack made by the forward model from a known
 * volume: its projection equals the projector's line integrals of that volume (same geometry, independent code),
 * a constant phase on the stack (what the data cannot fix) changes nothing, and unilluminated pixels are 0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apt_test.h"
#include "aptomo/angle.h"
#include "aptomo/geometry.h"
#include "aptomo/tomo.h"

static const double LAMBDA = 1e-10;

static void test_width(void)
{
    double t0 = 0, t90 = 90, tm = -70.4, set[3] = {-17, 0, 17}, nan = NAN;
    CHECK(apt_angle_proj_width(12, 40, &t0, 1) == 42);           /* X + 2 (one voxel of reach each side) */
    CHECK(apt_angle_proj_width(12, 40, &t90, 1) == 40);          /* 12 + 2 = 14 < X: X itself */
    CHECK(apt_angle_proj_width(60, 40, &t90, 1) == 62);          /* Z + 2, same parity as X */
    CHECK(apt_angle_proj_width(60, 41, &t90, 1) == 63);
    int u = apt_angle_proj_width(32, 48, &tm, 1);                /* 47 cos + 31 sin + 2 -> 49.0 + ... */
    double need = 2 * (23.5 * cos(70.4 * M_PI / 180) + 15.5 * sin(70.4 * M_PI / 180) + 1) + 1;
    CHECK_MSG(u >= need && u - need < 2 && (u - 48) % 2 == 0, "width %d for need %.3f", u, need);
    CHECK(apt_angle_proj_width(32, 48, set, 3) >= apt_angle_proj_width(32, 48, &set[2], 1));
    CHECK(apt_angle_proj_width(32, 48, NULL, 0) == 48);
    CHECK(apt_angle_proj_width(0, 48, &t0, 1) == APT_EINVAL);
    CHECK(apt_angle_proj_width(32, 48, &nan, 1) == APT_EINVAL);
    double t45 = 45;
    CHECK(apt_angle_proj_width(APT_TOMO_MAX_SIDE, APT_TOMO_MAX_SIDE, &t45, 1) == APT_ERANGE);
}

static void test_projection(void)
{
    apt_error err = {0};
    apt_grid3 g = {10, 6, 16, 10e-9, 10e-9, 10e-9};
    size_t nv = (size_t)g.Z * g.Y * g.X;
    float *delta = malloc(nv * sizeof *delta);
    for (size_t q = 0; q < nv; q++)
        delta[q] = (float)(1e-6 * (1 + (q * 7919 % 13)));
    double th = 30;
    apt_stack_geom sg;
    CHECK_OK(apt_stack_geom_for(&g, th, 4, 10e-9, 6, &sg, &err), &err);
    size_t plane = (size_t)sg.Ny * sg.Nx;
    apt_angle_result res;
    memset(&res, 0, sizeof res);
    res.sg = sg;
    res.object = malloc(2 * sg.L * plane * sizeof *res.object);
    res.weight = malloc(plane * sizeof *res.weight);
    for (size_t q = 0; q < plane; q++) /* illuminated except two rows */
        res.weight[q] = (q / sg.Nx == 0 || q / sg.Nx == (size_t)sg.Ny - 1) ? 0.0f : 1.0f;
    CHECK_OK(apt_stack_project(&g, delta, NULL, &sg, LAMBDA, res.object, &err), &err);
    int U = apt_angle_proj_width(g.Z, g.X, &th, 1);
    float *p1 = malloc((size_t)g.Y * U * sizeof *p1), *p2 = malloc((size_t)g.Y * U * sizeof *p2),
          *ref = malloc((size_t)g.Y * U * sizeof *ref);
    double k = 2 * M_PI / LAMBDA;
    CHECK_OK(apt_angle_projection(&res, k, &g, U, p1, &err), &err);
    /* the projector's line integrals of the same volume, in delta x voxels */
    apt_proj *p = NULL;
    CHECK_OK(apt_proj_new(g.Z, g.Y, g.X, U, &th, 1, 1, APT_BACKEND_CPU, &p, &err), &err);
    CHECK_OK(apt_proj_forward(p, delta, ref, &err), &err);
    apt_proj_destroy(&p);
    double num = 0, den = 0, sum1 = 0, sumr = 0;
    for (int j = 1; j < g.Y - 1; j++) /* rows inside the stack's illuminated field */
        for (int u = 0; u < U; u++) {
            double a = p1[(size_t)j * U + u], b = ref[(size_t)j * U + u];
            num += (a - b) * (a - b), den += b * b, sum1 += a, sumr += b;
        }
    double rel = sqrt(num / den);
    printf("projection vs projector: rel. rms %.4f, mass %.5g vs %.5g\n", rel, sum1, sumr);
    CHECK_MSG(rel < 0.1 && fabs(sum1 / sumr - 1) < 0.03, "projection rel rms %.4f, mass ratio %.4f", rel,
              sum1 / sumr);
    /* a constant phase on every slice (exp(i c_l)) leaves the projection unchanged: air is referenced */
    for (int l = 0; l < sg.L; l++) {
        double c = cos(0.1 + 0.2 * l), s = sin(0.1 + 0.2 * l);
        for (size_t q = 0; q < plane; q++) {
            float *o = res.object + 2 * ((size_t)l * plane + q), re = o[0], im = o[1];
            o[0] = (float)(re * c - im * s), o[1] = (float)(re * s + im * c);
        }
    }
    CHECK_OK(apt_angle_projection(&res, k, &g, U, p2, &err), &err);
    double dmax = 0, amax = 0;
    for (size_t q = 0; q < (size_t)g.Y * U; q++)
        dmax = fmax(dmax, fabs(p2[q] - p1[q])), amax = fmax(amax, fabs(p1[q]));
    CHECK_MSG(dmax < 1e-3 * amax, "a constant phase changed the projection by %g of %g", dmax, amax);
    /* errors */
    CHECK(apt_angle_projection(&res, -1, &g, U, p2, &err) == APT_EINVAL && strstr(err.msg, "wave number"));
    CHECK(apt_angle_projection(&res, k, &g, 0, p2, &err) == APT_ERANGE);
    free(res.object);
    free(res.weight);
    free(p1);
    free(p2);
    free(ref);
    free(delta);
}

int main(void)
{
    test_width();
    test_projection();
    APT_TEST_DONE();
}
