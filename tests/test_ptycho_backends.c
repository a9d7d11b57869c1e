/* test_ptycho_backends.c - every ptychography operation on every backend this machine has, compared against the
 * CPU (ggml's test-backend-ops): forward intensities, loss, object and probe gradients (added into non-zero arrays),
 * and a reconstruction of two passes over three batches, on geometries chosen for their traps: odd 9 x 7 windows,
 * M = 1 and 3 modes, L = 1 and 3 slices, windows on the object's edges and corners, repeated positions, unmeasured
 * pixels, and more positions than one device batch holds. The GPU must also be bitwise deterministic (two runs, same
 * bits), keep running on the GPU (no silent fallback: the fallback counter must not move), and leave the caller's
 * arrays untouched when it refuses an argument. Without a GPU the comparisons print "SKIP gpu: <reason>" and the
 * backend rule is checked instead: gpu is refused with APT_ENODEV, auto runs on the CPU with the CPU's bits.
 * Always: the window colouring the CUDA backend's deterministic sums rest on (src/ptycho/ptycho_colour.h).
 *
 * Tolerances. Both backends evaluate the same float32 expressions; they differ in FFT algorithms (FFTW vs cuFFT,
 * each accurate to a few 1e-7 relative in L2 for these sizes), summation order and fused multiply-adds, so each
 * result differs by a few float ulps times the depth of the chain (4L - 2 transforms). Relative L2 1e-4 leaves
 * two orders of magnitude over that (the CPU engine run through a CPU emulation of the CUDA kernels agreed to
 * 6e-7), while an indexing error (wrong pixel, mode, slice, shift, conjugate) gives O(1). The loss is summed in
 * double on both sides: 1e-5 relative. Max abs error: 1e-3 of the reference's largest magnitude (one pixel's
 * rounding can not go further, a misplaced window can). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apt_test.h"
#include "backend_cmp.h"
#include "aptomo/backend.h"
#include "aptomo/gpu.h"
#include "aptomo/ptycho.h"
#include "ptycho/ptycho_colour.h"

#define TOL_REL 1e-4
#define TOL_LOSS 1e-5
#define TOL_MAX 1e-3

static uint64_t rng = 0x853C49E6748FEA9BULL;
static double urand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* relative L2 error and max abs error (relative to the reference's largest magnitude) of got against ref */
static void compare(const char *geo, const char *what, const float *got, const float *ref, size_t n, double tol)
{
    double mx, mrel, rel = cmp_errors(got, ref, n, &mx, &mrel);
    printf("  %-9s %-22s rel L2 %.2e  max abs %.2e (%.2e of max)\n", geo, what, rel, mx, mrel);
    CHECK_MSG(rel <= tol && mrel <= TOL_MAX, "%s %s: rel L2 %g (tol %g), max abs %g = %g of max", geo, what, rel,
              tol, mx, mrel);
}

static void compare_loss(const char *geo, const char *what, double got, double ref)
{
    double rel = fabs(got - ref) / (fabs(ref) > 0 ? fabs(ref) : 1);
    printf("  %-9s %-22s %.9g vs %.9g (rel %.2e)\n", geo, what, got, ref, rel);
    CHECK_MSG(rel <= TOL_LOSS, "%s %s: %.17g vs cpu %.17g (rel %g)", geo, what, got, ref, rel);
}

/* ---- the colouring ---- */

static void check_colouring(void)
{
    enum { N = 300 };
    int32_t rc[2 * N];
    size_t perm[N], cstart[N + 1], col[N], mark[N + 1];
    for (int t = 0; t < 4; t++) {
        int H = 9 + 7 * t, W = 7 + 5 * t, span = 40 + 60 * t;
        size_t n = t == 3 ? 1 : N;
        for (size_t i = 0; i < n; i++) {
            rc[2 * i] = (int32_t)(urand() * span), rc[2 * i + 1] = (int32_t)(urand() * span);
            if (i % 17 == 5) /* repeated positions */
                rc[2 * i] = rc[0], rc[2 * i + 1] = rc[1];
        }
        size_t ncol = apt_ptycho_colour(rc, n, H, W, perm, cstart, col, mark);
        int seen[N] = {0}, ok = ncol >= 1 && cstart[0] == 0 && cstart[ncol] == n;
        for (size_t c = 0; ok && c < ncol; c++) {
            ok = cstart[c + 1] > cstart[c]; /* no empty class */
            for (size_t a = cstart[c]; ok && a < cstart[c + 1]; a++) {
                size_t i = perm[a];
                ok = i < n && !seen[i]++ && col[i] == c && (a == cstart[c] || perm[a - 1] < i);
                for (size_t b = cstart[c]; ok && b < a; b++) { /* no overlap inside a class */
                    size_t j = perm[b];
                    ok = abs(rc[2 * i] - rc[2 * j]) >= H || abs(rc[2 * i + 1] - rc[2 * j + 1]) >= W;
                }
            }
        }
        /* first fit: every window of class c > 0 overlaps one of each earlier class */
        for (size_t i = 0; ok && i < n; i++)
            for (size_t c = 0; ok && c < col[i]; c++) {
                int hit = 0;
                for (size_t j = 0; j < i && !hit; j++)
                    hit = col[j] == c && abs(rc[2 * i] - rc[2 * j]) < H && abs(rc[2 * i + 1] - rc[2 * j + 1]) < W;
                ok = hit;
            }
        CHECK_MSG(ok, "colouring %d: %zu windows of %dx%d in %zu classes is not a valid first-fit partition", t, n,
                  H, W, ncol);
    }
    CHECK(apt_ptycho_colour(rc, 0, 9, 7, perm, cstart, col, mark) == 0 && cstart[0] == 0);
}

/* ---- a case: geometry, probe, object, positions, measurements ---- */

typedef struct pcase {
    const char *name;
    apt_ptycho_geom g;
    size_t J;
    float *probe, *object, *meas, *clean, *flat;
    int32_t *pos;
} pcase;

static void case_free(pcase *c)
{
    free(c->probe), free(c->object), free(c->meas), free(c->clean), free(c->flat), free(c->pos);
}

/* Positions: the four corners first, then one repeated, the rest random inside. Measurements: the model's own
   intensities with 10 % of the pixels unmeasured (-1): clean for the reconstruction (which then converges, from a
   flat start), and scaled by 0.5..1.5 for the gradients (so they are not zero at the object). */
static int case_new(pcase *c, const char *name, int M, int L, int H, int W, int Ny, int Nx, size_t J)
{
    *c = (pcase){.name = name, .J = J};
    c->g = (apt_ptycho_geom){.M = M, .H = H, .W = W, .L = L, .Ny = Ny, .Nx = Nx, .wavelength_m = 1e-10,
                             .pixel_size_m = 10e-9, .dz_m = 0.8e-6};
    size_t hw = (size_t)H * W, obj = (size_t)L * Ny * Nx;
    c->probe = malloc((size_t)M * hw * 2 * sizeof(float));
    c->object = malloc(obj * 2 * sizeof(float));
    c->flat = malloc(obj * 2 * sizeof(float));
    c->meas = malloc(J * hw * sizeof(float));
    c->clean = malloc(J * hw * sizeof(float));
    c->pos = malloc(J * 2 * sizeof(int32_t));
    if (!c->probe || !c->object || !c->flat || !c->meas || !c->clean || !c->pos)
        return -1;
    for (size_t i = 0; i < (size_t)M * hw * 2; i++)
        c->probe[i] = (float)(urand() - 0.5);
    for (size_t i = 0; i < obj; i++) {
        double ph = 0.6 * (urand() - 0.5), a = 0.85 + 0.15 * urand();
        c->object[2 * i] = (float)(a * cos(ph)), c->object[2 * i + 1] = (float)(a * sin(ph));
        c->flat[2 * i] = 1, c->flat[2 * i + 1] = 0;
    }
    int corner[4][2] = {{0, 0}, {Ny - H, Nx - W}, {0, Nx - W}, {Ny - H, 0}};
    for (size_t j = 0; j < J; j++) {
        int r = (int)(urand() * (Ny - H + 1)), col = (int)(urand() * (Nx - W + 1));
        if (j < 4)
            r = corner[j][0], col = corner[j][1];
        else if (j == 4)
            r = c->pos[2], col = c->pos[3];
        c->pos[2 * j] = r, c->pos[2 * j + 1] = col;
    }
    apt_ptycho *p = NULL;
    apt_error err = {0};
    int rc = apt_ptycho_new(&c->g, 2, APT_BACKEND_CPU, &p, &err);
    if (!rc)
        rc = apt_ptycho_forward(p, c->probe, c->object, c->pos, J, c->meas, &err);
    apt_ptycho_destroy(&p);
    CHECK_OK(rc, &err);
    for (size_t i = 0; i < J * hw; i++) {
        c->clean[i] = urand() < 0.1 ? -1.0f : c->meas[i];
        c->meas[i] = c->clean[i] < 0 ? -1.0f : c->meas[i] * (float)(0.5 + urand());
    }
    return rc;
}

/* Everything one backend computes on a case. */
typedef struct outputs {
    float *inten, *gobj, *gprobe, *recon;
    double loss, loss_only, recon_loss[2];
    int rc;
} outputs;

static void outputs_free(outputs *o) { free(o->inten), free(o->gobj), free(o->gprobe), free(o->recon); }

static void run_all(const pcase *c, apt_backend be, outputs *o)
{
    const apt_ptycho_geom *g = &c->g;
    size_t hw = (size_t)g->H * g->W, obj = (size_t)g->L * g->Ny * g->Nx, mhw = (size_t)g->M * hw;
    *o = (outputs){0};
    o->inten = malloc(c->J * hw * sizeof(float));
    o->gobj = malloc(obj * 2 * sizeof(float));
    o->gprobe = malloc(mhw * 2 * sizeof(float));
    o->recon = malloc(obj * 2 * sizeof(float));
    for (size_t i = 0; i < 2 * obj; i++) /* gradients are added: start from a known non-zero value */
        o->gobj[i] = 0.25f;
    for (size_t i = 0; i < 2 * mhw; i++)
        o->gprobe[i] = -0.5f;
    memcpy(o->recon, c->flat, obj * 2 * sizeof(float));
    apt_ptycho *p = NULL;
    apt_error err = {0};
    unsigned long fb0 = apt_backend_fallbacks(NULL, 0);
    o->rc = apt_ptycho_new(g, 2, be, &p, &err);
    apt_recon_opts ro = {.iterations = 2, .batches = 3, .step = 1.0};
    if (!o->rc)
        o->rc = apt_ptycho_forward(p, c->probe, c->object, c->pos, c->J, o->inten, &err);
    if (!o->rc)
        o->rc = apt_ptycho_loss_grad(p, c->probe, c->object, c->pos, c->meas, c->J, &o->loss, o->gobj, o->gprobe,
                                     &err);
    if (!o->rc)
        o->rc = apt_ptycho_loss_grad(p, c->probe, c->object, c->pos, c->meas, c->J, &o->loss_only, NULL, NULL, &err);
    if (!o->rc)
        o->rc = apt_ptycho_reconstruct(p, c->probe, c->clean, c->pos, c->J, &ro, o->recon, o->recon_loss, &err);
    CHECK_MSG(o->rc == 0, "%s on %s: %s", c->name, apt_backend_name(be), err.msg);
    if (p && be == APT_BACKEND_GPU) {
        char why[256];
        unsigned long fb = apt_backend_fallbacks(why, sizeof why);
        CHECK_MSG(apt_ptycho_backend(p) == APT_BACKEND_GPU && fb == fb0, "%s: the GPU fell back to the CPU (%s)",
                  c->name, why);
    }
    apt_ptycho_destroy(&p);
}

static int same_bits(const outputs *a, const outputs *b, const pcase *c)
{
    const apt_ptycho_geom *g = &c->g;
    size_t hw = (size_t)g->H * g->W, obj = (size_t)g->L * g->Ny * g->Nx, mhw = (size_t)g->M * hw;
    return !memcmp(a->inten, b->inten, c->J * hw * sizeof(float)) &&
           !memcmp(a->gobj, b->gobj, obj * 2 * sizeof(float)) &&
           !memcmp(a->gprobe, b->gprobe, mhw * 2 * sizeof(float)) &&
           !memcmp(a->recon, b->recon, obj * 2 * sizeof(float)) && !memcmp(&a->loss, &b->loss, sizeof(double)) &&
           !memcmp(a->recon_loss, b->recon_loss, sizeof a->recon_loss);
}

static void compare_case(const pcase *c, int gpu)
{
    const apt_ptycho_geom *g = &c->g;
    size_t hw = (size_t)g->H * g->W, obj = (size_t)g->L * g->Ny * g->Nx, mhw = (size_t)g->M * hw;
    outputs cpu, other, again;
    run_all(c, APT_BACKEND_CPU, &cpu);
    if (!gpu) {
        /* auto runs on the CPU here, with the CPU's bits */
        run_all(c, APT_BACKEND_AUTO, &other);
        CHECK_MSG(!cpu.rc && !other.rc && same_bits(&cpu, &other, c), "%s: auto differs from cpu without a GPU",
                  c->name);
        outputs_free(&cpu), outputs_free(&other);
        return;
    }
    printf("%s: M=%d L=%d %dx%d object %dx%d, %zu positions\n", c->name, g->M, g->L, g->H, g->W, g->Ny, g->Nx, c->J);
    run_all(c, APT_BACKEND_GPU, &other);
    if (!cpu.rc && !other.rc) {
        compare(c->name, "forward intensities", other.inten, cpu.inten, c->J * hw, TOL_REL);
        compare_loss(c->name, "loss", other.loss, cpu.loss);
        compare_loss(c->name, "loss (no gradients)", other.loss_only, cpu.loss);
        /* the added 0.25 / -0.5 cancel in the differences, not in the comparison: subtract them first */
        for (size_t i = 0; i < 2 * obj; i++)
            cpu.gobj[i] -= 0.25f, other.gobj[i] -= 0.25f;
        for (size_t i = 0; i < 2 * mhw; i++)
            cpu.gprobe[i] += 0.5f, other.gprobe[i] += 0.5f;
        compare(c->name, "object gradient", other.gobj, cpu.gobj, 2 * obj, TOL_REL);
        compare(c->name, "probe gradient", other.gprobe, cpu.gprobe, 2 * mhw, TOL_REL);
        compare(c->name, "reconstruction", other.recon, cpu.recon, 2 * obj, TOL_REL);
        for (size_t i = 0; i < 2 * obj; i++) /* the change from the flat start, which the object itself hides */
            cpu.recon[i] -= c->flat[i], other.recon[i] -= c->flat[i];
        compare(c->name, "reconstruction step", other.recon, cpu.recon, 2 * obj, 10 * TOL_REL);
        compare_loss(c->name, "pass 1 loss", other.recon_loss[0], cpu.recon_loss[0]);
        compare_loss(c->name, "pass 2 loss", other.recon_loss[1], cpu.recon_loss[1]);
        run_all(c, APT_BACKEND_GPU, &again);
        run_all(c, APT_BACKEND_GPU, &other);
        CHECK_MSG(!again.rc && !other.rc && same_bits(&again, &other, c), "%s: two GPU runs differ in their bits",
                  c->name);
        outputs_free(&again);
    }
    outputs_free(&cpu), outputs_free(&other);
}

/* Refused arguments come back as the caller's mistake from the GPU too (no fallback), outputs untouched. */
static void check_refusals(const pcase *c, int gpu)
{
    apt_ptycho *p = NULL;
    apt_error err = {0};
    CHECK_OK(apt_ptycho_new(&c->g, 1, gpu ? APT_BACKEND_GPU : APT_BACKEND_AUTO, &p, &err), &err);
    if (!p)
        return;
    unsigned long fb0 = apt_backend_fallbacks(NULL, 0);
    int32_t bad[2] = {c->g.Ny - c->g.H + 1, 0};
    float keep[4] = {1, 2, 3, 4}, out[4] = {1, 2, 3, 4};
    double loss = -1;
    CHECK(apt_ptycho_loss_grad(p, c->probe, c->object, bad, c->meas, 1, &loss, out, NULL, &err) == APT_ERANGE);
    CHECK(loss == -1 && !memcmp(out, keep, sizeof keep) && strstr(err.msg, "position 0"));
    apt_recon_opts ro = {.iterations = -1, .batches = 1, .step = 1};
    CHECK(apt_ptycho_reconstruct(p, c->probe, c->meas, c->pos, c->J, &ro, c->flat, NULL, &err) == APT_EINVAL);
    CHECK(apt_backend_fallbacks(NULL, 0) == fb0);
    CHECK(apt_ptycho_backend(p) == (gpu ? APT_BACKEND_GPU : APT_BACKEND_CPU));
    apt_ptycho_destroy(&p);
}

int main(void)
{
    check_colouring();
    apt_error gerr = {0};
    int gpu = apt_gpu_count(&gerr) > 0;
    if (!gpu) {
        printf("SKIP gpu: %s (checking the backend rule instead: gpu refused, auto on the cpu)\n", gerr.msg);
        apt_ptycho_geom g = {.M = 1, .H = 8, .W = 8, .L = 1, .Ny = 8, .Nx = 8, .wavelength_m = 1e-10,
                             .pixel_size_m = 1e-8, .dz_m = 1e-6};
        apt_ptycho *p = NULL;
        apt_error err = {0};
        CHECK(apt_ptycho_new(&g, 1, APT_BACKEND_GPU, &p, &err) == APT_ENODEV && p == NULL);
        CHECK_MSG(strstr(err.msg, "ptycho: backend gpu requested but"), "message: %s", err.msg);
        unsigned long fb0 = apt_backend_fallbacks(NULL, 0);
        CHECK_OK(apt_ptycho_new(&g, 1, APT_BACKEND_AUTO, &p, &err), &err);
        CHECK(p && apt_ptycho_backend(p) == APT_BACKEND_CPU);
        CHECK(apt_backend_fallbacks(NULL, 0) == fb0); /* choosing the CPU is not a fallback */
        apt_ptycho_destroy(&p);
    } else {
        char name[256] = "";
        apt_gpu_name(name, sizeof name, &gerr);
        printf("gpu: %s\n", name);
    }
    static const struct {
        const char *name;
        int M, L, H, W, Ny, Nx;
        size_t J;
    } geos[] = {
        {"odd-1x1", 1, 1, 9, 7, 23, 19, 14},     /* odd window, one mode, one slice */
        {"odd-3x3", 3, 3, 9, 7, 20, 26, 17},     /* modes and slices */
        {"rect-1x3", 1, 3, 16, 12, 40, 36, 23},  /* even, non-square */
        {"tight-3x1", 3, 1, 15, 15, 15, 15, 6},  /* the window is the object: every position at 0,0 */
        {"many-2x2", 2, 2, 32, 32, 96, 100, 1100}, /* more positions than one device batch (512) */
    };
    for (size_t i = 0; i < sizeof geos / sizeof geos[0]; i++) {
        pcase c;
        if (case_new(&c, geos[i].name, geos[i].M, geos[i].L, geos[i].H, geos[i].W, geos[i].Ny, geos[i].Nx,
                     geos[i].J) == 0) {
            compare_case(&c, gpu);
            if (i == 1)
                check_refusals(&c, gpu);
        }
        case_free(&c);
    }
    APT_TEST_DONE();
}
