/* test_ptycho.c - the multislice model and its gradient from the inside: central finite differences of the loss
 * against the analytic object and probe gradients, zero gradient at the truth on noise-free data, Parseval for phase
 * objects, thread-count independence, refusals; then the per-angle reconstruction on a simulated case with a
 * structured probe (pupil + defocus) and fly-scan jitter: spread mini-batches must beat full-batch steps by far. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "apt_test.h"
#include "aptomo/fft.h"
#include "aptomo/ptycho.h"

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static double urand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2 * log(urand() + 1e-300)) * cos(2 * M_PI * urand()); }

typedef struct sim {
    apt_ptycho_geom g;
    size_t J;
    float *probe, *truth, *meas, *obj;
    int32_t *pos;
} sim;

static void sim_free(sim *s)
{
    free(s->probe), free(s->truth), free(s->meas), free(s->obj), free(s->pos);
}

/* Structured probe: M modes, each a disc pupil with defocus and a mode-dependent astigmatism, back in real space;
   mode powers fall off as 1, 0.5, 0.25. Scaled to `photons` per frame. */
static void make_probe(const apt_ptycho_geom *g, float *probe, double photons)
{
    int H = g->H, W = g->W;
    size_t hw = (size_t)H * W;
    apt_fft_plan *pl = NULL;
    apt_error err = {0};
    float *buf = apt_fft_alloc(hw);
    CHECK_OK(apt_fft_plan_new(1, H, W, 0, APT_BACKEND_CPU, &pl, &err), &err);
    double total = 0;
    for (int m = 0; m < g->M; m++) {
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                double fy = (y <= (H - 1) / 2 ? y : y - H) / (double)H, fx = (x <= (W - 1) / 2 ? x : x - W) / (double)W;
                double r2 = (fy * fy + fx * fx) / (0.22 * 0.22);
                double ph = 7.0 * r2 + 2.0 * m * (fy * fy - fx * fx) / (0.22 * 0.22) + 1.5 * m * fy / 0.22;
                double a = r2 < 1 ? 1 : 0;
                buf[2 * ((size_t)y * W + x)] = (float)(a * cos(ph));
                buf[2 * ((size_t)y * W + x) + 1] = (float)(a * sin(ph));
            }
        apt_fft_inverse(pl, buf, NULL);
        double w = pow(0.5, m), n2 = 0;
        for (size_t i = 0; i < 2 * hw; i++)
            n2 += (double)buf[i] * buf[i];
        for (size_t i = 0; i < 2 * hw; i++)
            probe[2 * m * hw + i] = (float)(buf[i] * sqrt(w / n2));
        total += w;
    }
    /* far-field photons = H W sum |P|^2 for a transparent object */
    double s = sqrt(photons / (total * hw));
    for (size_t i = 0; i < 2 * (size_t)g->M * hw; i++)
        probe[i] *= (float)s;
    apt_fft_free(buf);
    apt_fft_plan_destroy(&pl);
}

/* IC-like truth: per slice a few horizontal/vertical "wires" and "vias" of phase -0.6..-0.2 rad and weak absorption. */
static void make_object(const apt_ptycho_geom *g, float *obj)
{
    size_t slice = (size_t)g->Ny * g->Nx;
    for (int l = 0; l < g->L; l++) {
        float *ph = calloc(slice, sizeof *ph);
        for (int k = 0; k < 7; k++) {
            int horiz = urand() < 0.5, r0 = (int)(urand() * g->Ny), c0 = (int)(urand() * g->Nx);
            int len = 10 + (int)(urand() * g->Nx / 2), wid = 2 + (int)(urand() * 4);
            double v = -0.2 - 0.4 * urand();
            for (int a = 0; a < len; a++)
                for (int b = 0; b < wid; b++) {
                    int r = horiz ? r0 + b : r0 + a, c = horiz ? c0 + a : c0 + b;
                    if (r < g->Ny && c < g->Nx)
                        ph[(size_t)r * g->Nx + c] = (float)v;
                }
        }
        for (size_t i = 0; i < slice; i++) {
            double amp = exp(0.1 * ph[i]); /* beta/delta = 0.1 */
            obj[2 * (l * slice + i)] = (float)(amp * cos(ph[i]));
            obj[2 * (l * slice + i) + 1] = (float)(amp * sin(ph[i]));
        }
        free(ph);
    }
}

/* grid n x n with `step` pixels and +-jitter, inside the object */
static void make_positions(sim *s, int n, int step, int margin, double jitter)
{
    s->J = (size_t)n * n;
    s->pos = malloc(s->J * 2 * sizeof(int32_t));
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++) {
            int r = margin + a * step + (int)lround(jitter * (2 * urand() - 1));
            int c = margin + b * step + (int)lround(jitter * (2 * urand() - 1));
            r = r < 0 ? 0 : r > s->g.Ny - s->g.H ? s->g.Ny - s->g.H : r;
            c = c < 0 ? 0 : c > s->g.Nx - s->g.W ? s->g.Nx - s->g.W : c;
            s->pos[2 * (a * n + b)] = r;
            s->pos[2 * (a * n + b) + 1] = c;
        }
}

static void sim_new(sim *s, int M, int L, int H, int n, int step, double photons)
{
    int margin = 3, N = H + (n - 1) * step + 2 * margin;
    s->g = (apt_ptycho_geom){.M = M, .H = H, .W = H, .L = L, .Ny = N, .Nx = N, .wavelength_m = 1.0e-10,
                             .pixel_size_m = 10e-9, .dz_m = 1.0e-6};
    size_t hw = (size_t)H * H, obj = (size_t)L * N * N;
    s->probe = malloc((size_t)M * hw * 2 * sizeof(float));
    s->truth = malloc(obj * 2 * sizeof(float));
    s->obj = malloc(obj * 2 * sizeof(float));
    make_probe(&s->g, s->probe, photons);
    make_object(&s->g, s->truth);
    make_positions(s, n, step, margin, step * 0.3);
    s->meas = malloc(s->J * hw * sizeof(float));
    apt_ptycho *p = NULL;
    apt_error err = {0};
    CHECK_OK(apt_ptycho_new(&s->g, 0, APT_BACKEND_CPU, &p, &err), &err);
    CHECK_OK(apt_ptycho_forward(p, s->probe, s->truth, s->pos, s->J, s->meas, &err), &err);
    apt_ptycho_destroy(&p);
}

static double loss_at(apt_ptycho *p, const sim *s, const float *obj, const float *probe)
{
    double l = 0;
    apt_error err = {0};
    CHECK_OK(apt_ptycho_loss_grad(p, probe, obj, s->pos, s->meas, s->J, &l, NULL, NULL, &err), &err);
    return l;
}

/* Central differences in float need a step big enough to beat rounding: h = 1e-2 on entries of size ~1. */
static void check_finite_differences(void)
{
    sim s = {0};
    sim_new(&s, 2, 3, 16, 3, 5, 1e4);
    size_t hw = (size_t)16 * 16, slice = (size_t)s.g.Ny * s.g.Nx, obj = s.g.L * slice;
    /* measurements: the truth's, perturbed and with masked pixels, so the gradient at the start object is not 0 */
    for (size_t i = 0; i < s.J * hw; i++)
        s.meas[i] = urand() < 0.05 ? -1.0f : s.meas[i] * (float)(0.5 + urand());
    for (size_t i = 0; i < 2 * obj; i++)
        s.obj[i] = s.truth[i] + (float)(0.05 * nrand());
    apt_ptycho *p = NULL;
    apt_error err = {0};
    CHECK_OK(apt_ptycho_new(&s.g, 2, APT_BACKEND_CPU, &p, &err), &err);
    float *go = calloc(2 * obj, sizeof(float)), *gp = calloc(2 * s.g.M * hw, sizeof(float));
    double l0 = 0;
    CHECK_OK(apt_ptycho_loss_grad(p, s.probe, s.obj, s.pos, s.meas, s.J, &l0, go, gp, &err), &err);
    CHECK(l0 > 0);
    double h = 1e-2;
    int bad = 0;
    for (int t = 0; t < 12; t++) {
        /* an object entry under the scanned region: row/col near the middle of a window */
        int l = t % s.g.L, r = s.pos[2 * (t % s.J)] + 4 + t % 8, c = s.pos[2 * (t % s.J) + 1] + 8 - t % 5;
        size_t i = 2 * (l * slice + (size_t)r * s.g.Nx + c) + (t & 1);
        float keep = s.obj[i];
        s.obj[i] = keep + (float)h;
        double lp = loss_at(p, &s, s.obj, s.probe);
        s.obj[i] = keep - (float)h;
        double lm = loss_at(p, &s, s.obj, s.probe);
        s.obj[i] = keep;
        double fd = (lp - lm) / (2 * h), an = go[i];
        if (fabs(fd - an) > 2e-2 * fabs(an) + 1e-3 * l0 / 100) {
            bad++;
            fprintf(stderr, "object entry %zu: finite difference %g vs gradient %g\n", i, fd, an);
        }
    }
    CHECK_MSG(bad == 0, "%d object entries off", bad);
    bad = 0;
    for (int t = 0; t < 6; t++) {
        size_t i = 2 * ((size_t)(t % s.g.M) * hw + 7 * 16 + 6 + t) + (t & 1);
        float keep = s.probe[i], hp = (float)(1e-2 * fabs(keep) + 1e-3);
        s.probe[i] = keep + hp;
        double lp = loss_at(p, &s, s.obj, s.probe);
        s.probe[i] = keep - hp;
        double lm = loss_at(p, &s, s.obj, s.probe);
        s.probe[i] = keep;
        double fd = (lp - lm) / (2 * (double)hp), an = gp[i];
        if (fabs(fd - an) > 2e-2 * fabs(an) + 1e-5 * l0) {
            bad++;
            fprintf(stderr, "probe entry %zu: finite difference %g vs gradient %g\n", i, fd, an);
        }
    }
    CHECK_MSG(bad == 0, "%d probe entries off", bad);

    /* thread count does not change results beyond float summation order; same count = bitwise identical */
    apt_ptycho *p1 = NULL;
    CHECK_OK(apt_ptycho_new(&s.g, 1, APT_BACKEND_CPU, &p1, &err), &err);
    float *g1 = calloc(2 * obj, sizeof(float)), *g2 = calloc(2 * obj, sizeof(float));
    double l1 = 0, l2 = 0;
    CHECK_OK(apt_ptycho_loss_grad(p1, s.probe, s.obj, s.pos, s.meas, s.J, &l1, g1, NULL, &err), &err);
    CHECK_OK(apt_ptycho_loss_grad(p, s.probe, s.obj, s.pos, s.meas, s.J, &l2, g2, NULL, &err), &err);
    double num = 0, den = 0;
    for (size_t i = 0; i < 2 * obj; i++)
        num += (g1[i] - g2[i]) * (double)(g1[i] - g2[i]), den += (double)g1[i] * g1[i];
    CHECK_MSG(sqrt(num / den) < 1e-5 && fabs(l1 - l2) < 1e-6 * l1, "1 vs 2 threads: %g", sqrt(num / den));
    memset(g1, 0, 2 * obj * sizeof(float));
    CHECK_OK(apt_ptycho_loss_grad(p, s.probe, s.obj, s.pos, s.meas, s.J, &l1, g1, NULL, &err), &err);
    CHECK(l1 == l2 && !memcmp(g1, g2, 2 * obj * sizeof(float)));
    /* gradients are ADDED */
    CHECK_OK(apt_ptycho_loss_grad(p, s.probe, s.obj, s.pos, s.meas, s.J, &l1, g1, NULL, &err), &err);
    int added = 1;
    for (size_t i = 0; i < 2 * obj; i++)
        added &= fabsf(g1[i] - 2 * g2[i]) <= 1e-5f * fabsf(g2[i]) + 1e-12f;
    CHECK(added);

    /* refusals */
    int32_t badpos[2] = {s.g.Ny - 15, 0};
    CHECK(apt_ptycho_loss_grad(p, s.probe, s.obj, badpos, s.meas, 1, &l1, g1, NULL, &err) == APT_ERANGE);
    CHECK(strstr(err.msg, "position 0") != NULL);
    badpos[0] = -1;
    CHECK(apt_ptycho_forward(p, s.probe, s.obj, badpos, 1, s.meas, &err) == APT_ERANGE);
    CHECK(apt_ptycho_loss_grad(p, s.probe, s.obj, s.pos, NULL, s.J, &l1, g1, NULL, &err) == APT_EINVAL);
    apt_ptycho_geom bg = s.g;
    apt_ptycho *q = NULL;
    bg.M = 0;
    CHECK(apt_ptycho_new(&bg, 1, APT_BACKEND_CPU, &q, &err) == APT_ERANGE && q == NULL && strstr(err.msg, "modes"));
    bg = s.g, bg.Ny = bg.H - 1;
    CHECK(apt_ptycho_new(&bg, 1, APT_BACKEND_CPU, &q, &err) == APT_ERANGE && strstr(err.msg, "object"));
    bg = s.g, bg.wavelength_m = NAN;
    CHECK(apt_ptycho_new(&bg, 1, APT_BACKEND_CPU, &q, &err) == APT_EINVAL && strstr(err.msg, "wavelength_m"));
    bg = s.g, bg.Nx = 30000, bg.Ny = 30000, bg.L = 500;
    CHECK(apt_ptycho_new(&bg, 64, APT_BACKEND_CPU, &q, &err) == APT_ERANGE && strstr(err.msg, "workspace"));
    CHECK(apt_ptycho_geometry(p)->L == s.g.L);

    free(g1), free(g2), free(go), free(gp);
    apt_ptycho_destroy(&p1);
    apt_ptycho_destroy(&p);
    CHECK(p == NULL);
    sim_free(&s);
}

/* Noise-free data: zero gradient at the truth; Parseval for a pure phase object. */
static void check_truth_and_parseval(void)
{
    sim s = {0};
    sim_new(&s, 3, 2, 16, 3, 6, 1e5);
    size_t hw = 256, obj = (size_t)s.g.L * s.g.Ny * s.g.Nx;
    apt_ptycho *p = NULL;
    apt_error err = {0};
    CHECK_OK(apt_ptycho_new(&s.g, 2, APT_BACKEND_CPU, &p, &err), &err);
    float *g0 = calloc(2 * obj, sizeof(float)), *g1 = calloc(2 * obj, sizeof(float));
    double l0 = 0, l1 = 0;
    CHECK_OK(apt_ptycho_loss_grad(p, s.probe, s.truth, s.pos, s.meas, s.J, &l0, g0, NULL, &err), &err);
    for (size_t i = 0; i < 2 * obj; i++)
        s.obj[i] = s.truth[i] + (float)(0.01 * nrand());
    CHECK_OK(apt_ptycho_loss_grad(p, s.probe, s.obj, s.pos, s.meas, s.J, &l1, g1, NULL, &err), &err);
    double n0 = 0, n1 = 0;
    for (size_t i = 0; i < 2 * obj; i++)
        n0 += (double)g0[i] * g0[i], n1 += (double)g1[i] * g1[i];
    CHECK_MSG(l0 < 1e-6 * l1 && sqrt(n0) < 1e-3 * sqrt(n1), "at truth: loss %g (vs %g), |grad| %g (vs %g)", l0, l1,
              sqrt(n0), sqrt(n1));
    /* phase-only object: every frame carries H W sum |P|^2 photons (propagation and phase screens are unitary) */
    for (size_t i = 0; i < obj; i++) {
        double ph = atan2(s.truth[2 * i + 1], s.truth[2 * i]);
        s.obj[2 * i] = (float)cos(ph), s.obj[2 * i + 1] = (float)sin(ph);
    }
    float *I = malloc(s.J * hw * sizeof(float));
    CHECK_OK(apt_ptycho_forward(p, s.probe, s.obj, s.pos, s.J, I, &err), &err);
    double pw = 0;
    for (size_t i = 0; i < 2 * (size_t)s.g.M * hw; i++)
        pw += (double)s.probe[i] * s.probe[i];
    int ok = 1;
    for (size_t j = 0; j < s.J; j++) {
        double sum = 0;
        for (size_t q = 0; q < hw; q++)
            sum += I[j * hw + q];
        ok &= fabs(sum - hw * pw) < 1e-4 * hw * pw;
    }
    CHECK_MSG(ok, "Parseval: frame photons != H W sum |P|^2");
    free(I), free(g0), free(g1);
    apt_ptycho_destroy(&p);
    sim_free(&s);
}

/* Pearson correlation of the projected phase sum_l arg(O_l) with the truth's, over well-lit pixels. */
static double phase_pcc(const sim *s, const float *obj)
{
    size_t slice = (size_t)s->g.Ny * s->g.Nx;
    int H = s->g.H;
    double *lit = calloc(slice, sizeof *lit), mx = 0;
    for (size_t j = 0; j < s->J; j++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < H; x++) {
                size_t hw = (size_t)H * H;
                double v = 0;
                for (int m = 0; m < s->g.M; m++) {
                    const float *q = s->probe + 2 * (m * hw + (size_t)y * H + x);
                    v += (double)q[0] * q[0] + (double)q[1] * q[1];
                }
                lit[(size_t)(s->pos[2 * j] + y) * s->g.Nx + s->pos[2 * j + 1] + x] += v;
            }
    for (size_t i = 0; i < slice; i++)
        mx = lit[i] > mx ? lit[i] : mx;
    double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0, n = 0;
    for (size_t i = 0; i < slice; i++) {
        if (lit[i] < 0.3 * mx)
            continue;
        double a = 0, b = 0;
        for (int l = 0; l < s->g.L; l++) {
            a += atan2(obj[2 * (l * slice + i) + 1], obj[2 * (l * slice + i)]);
            b += atan2(s->truth[2 * (l * slice + i) + 1], s->truth[2 * (l * slice + i)]);
        }
        sa += a, sb += b, saa += a * a, sbb += b * b, sab += a * b, n++;
    }
    free(lit);
    double va = saa - sa * sa / n, vb = sbb - sb * sb / n;
    return va > 0 && vb > 0 ? (sab - sa * sb / n) / sqrt(va * vb) : 0;
}

static void check_reconstruct(void)
{
    sim s = {0};
    sim_new(&s, 3, 3, 32, 8, 5, 1e6);
    size_t obj = (size_t)s.g.L * s.g.Ny * s.g.Nx;
    apt_ptycho *p = NULL;
    apt_error err = {0};
    CHECK_OK(apt_ptycho_new(&s.g, 0, APT_BACKEND_CPU, &p, &err), &err);
    double pcc[2], first[2], final[2];
    int nb[2] = {16, 1};
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < obj; i++)
            s.obj[2 * i] = 1, s.obj[2 * i + 1] = 0;
        first[k] = loss_at(p, &s, s.obj, s.probe);
        apt_recon_opts o = {.iterations = 2, .batches = nb[k], .step = 1.0};
        double lpi[2] = {0};
        CHECK_OK(apt_ptycho_reconstruct(p, s.probe, s.meas, s.pos, s.J, &o, s.obj, lpi, &err), &err);
        final[k] = loss_at(p, &s, s.obj, s.probe);
        pcc[k] = phase_pcc(&s, s.obj);
        printf("batches %2d: loss %.4g -> pass losses %.4g, %.4g -> %.4g; projected-phase PCC %.3f\n", nb[k],
               first[k], lpi[0], lpi[1], final[k], pcc[k]);
        if (nb[k] == 1) /* full batch: pass losses are the losses before each step */
            CHECK_MSG(lpi[1] < lpi[0] && final[k] < lpi[1] && fabs(lpi[0] - first[k]) < 1e-6 * first[k],
                      "full batch: pass losses must fall, the first being the start loss");
        CHECK_MSG(final[k] < first[k], "batches %d: loss did not decrease", nb[k]);
    }
    CHECK_MSG(pcc[0] > 0.8, "16 mini-batches, 2 iterations: PCC %.3f", pcc[0]);
    CHECK_MSG(pcc[0] > pcc[1] + 0.1, "mini-batches (%.3f) must beat full-batch steps (%.3f)", pcc[0], pcc[1]);

    apt_recon_opts bad = {.iterations = 2, .batches = 0, .step = 1};
    CHECK(apt_ptycho_reconstruct(p, s.probe, s.meas, s.pos, s.J, &bad, s.obj, NULL, &err) == APT_EINVAL);
    apt_ptycho_destroy(&p);
    sim_free(&s);
}

/* Windows large enough that the CPU engine runs the modes through the FFT in several groups (128 x 128 x 4 modes:
   two groups of two): the far field still sums all modes, and every mode's probe gradient and the object gradient
   match central differences. The brightest probe entry of each mode is probed, where the loss responds most. */
static void check_mode_groups(void)
{
    sim s = {0};
    sim_new(&s, 4, 2, 128, 2, 24, 1e6);
    size_t hw = (size_t)128 * 128, slice = (size_t)s.g.Ny * s.g.Nx, obj = s.g.L * slice;
    for (size_t i = 0; i < s.J * hw; i++)
        s.meas[i] = urand() < 0.05 ? -1.0f : s.meas[i] * (float)(0.5 + urand());
    for (size_t i = 0; i < 2 * obj; i++)
        s.obj[i] = s.truth[i] + (float)(0.05 * nrand());
    apt_ptycho *p = NULL;
    apt_error err = {0};
    CHECK_OK(apt_ptycho_new(&s.g, 1, APT_BACKEND_CPU, &p, &err), &err);
    float *go = calloc(2 * obj, sizeof(float)), *gp = calloc(2 * s.g.M * hw, sizeof(float));
    double l0 = 0;
    CHECK_OK(apt_ptycho_loss_grad(p, s.probe, s.obj, s.pos, s.meas, s.J, &l0, go, gp, &err), &err);
    CHECK(l0 > 0);
    int bad = 0;
    for (int m = 0; m < s.g.M; m++) {
        size_t best = 0;
        for (size_t k = 0; k < hw; k++)
            if (hypotf(s.probe[2 * (m * hw + k)], s.probe[2 * (m * hw + k) + 1]) >
                hypotf(s.probe[2 * (m * hw + best)], s.probe[2 * (m * hw + best) + 1]))
                best = k;
        for (int part = 0; part < 2; part++) {
            size_t i = 2 * (m * hw + best) + part;
            float keep = s.probe[i], hp = (float)(1e-2 * fabs(keep) + 1e-3);
            s.probe[i] = keep + hp;
            double lp = loss_at(p, &s, s.obj, s.probe);
            s.probe[i] = keep - hp;
            double lm = loss_at(p, &s, s.obj, s.probe);
            s.probe[i] = keep;
            double fd = (lp - lm) / (2 * (double)hp), an = gp[i];
            if (fabs(fd - an) > 2e-2 * fabs(an) + 1e-6 * l0) {
                bad++;
                fprintf(stderr, "mode %d probe entry %zu: finite difference %g vs gradient %g\n", m, i, fd, an);
            }
        }
    }
    CHECK_MSG(bad == 0, "%d probe entries off", bad);
    bad = 0;
    for (int t = 0; t < 4; t++) {
        int l = t % s.g.L, r = s.pos[2 * (t % s.J)] + 60 + t, c = s.pos[2 * (t % s.J) + 1] + 62 - t;
        size_t i = 2 * (l * slice + (size_t)r * s.g.Nx + c) + (t & 1);
        float keep = s.obj[i];
        double h = 1e-2;
        s.obj[i] = keep + (float)h;
        double lp = loss_at(p, &s, s.obj, s.probe);
        s.obj[i] = keep - (float)h;
        double lm = loss_at(p, &s, s.obj, s.probe);
        s.obj[i] = keep;
        double fd = (lp - lm) / (2 * h), an = go[i];
        if (fabs(fd - an) > 2e-2 * fabs(an) + 1e-6 * l0) {
            bad++;
            fprintf(stderr, "object entry %zu: finite difference %g vs gradient %g\n", i, fd, an);
        }
    }
    CHECK_MSG(bad == 0, "%d object entries off", bad);
    free(go), free(gp);
    apt_ptycho_destroy(&p);
    sim_free(&s);
}

int main(void)
{
    check_finite_differences();
    check_mode_groups();
    check_truth_and_parseval();
    check_reconstruct();
    APT_TEST_DONE();
}
