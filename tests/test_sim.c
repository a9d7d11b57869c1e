/* test_sim.c - the scan simulator: refractive-index formula against a hand-computed value and mu/rho, phantom
 * structure (metal fraction per layer, alternating orientation, vias and contacts connect what they should,
 * determinism by seed), probe modes (orthonormal, occupancies, far field inside the pupil annulus), Poisson
 * statistics, positions covering the field, and an end-to-end scan file read back through apt_scanfile. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apt_test.h"
#include "aptomo/config.h"
#include "aptomo/fft.h"
#include "aptomo/scanfile.h"
#include "aptomo/sim.h"

static void test_materials(void)
{
    apt_error e = {0};
    double lam = apt_sim_wavelength_m(8.8);
    CHECK(fabs(lam / 1.408911e-10 - 1) < 1e-6);
    /* by hand: n_e = 2.2e6 g/m^3 * 6.02214e23 * 30/60.084 = 6.6149e29 m^-3; r_e lam^2 = 5.5937e-35 m^3;
       delta = 3.7001e-5 / (2 pi) = 5.8892e-6 */
    double d = apt_sim_delta_electron(2.2, 30.0 / 60.084, lam);
    CHECK_MSG(fabs(d / 5.8892e-6 - 1) < 2e-4, "delta(SiO2) = %g", d);
    /* far from edges the table reduces to free electrons (up to Henke's small relativistic term) */
    double dt, bt;
    CHECK_OK(apt_sim_material_index(APT_MAT_SIO2, 20.0, &dt, &bt, &e), &e);
    double de = apt_sim_delta_electron(2.2, 30.0 / 60.084, apt_sim_wavelength_m(20.0));
    CHECK_MSG(fabs(dt / de - 1) < 3e-3, "SiO2 at 20 keV: %g vs %g", dt, de);
    /* at 8.8 keV: beta from f2 gives mu/rho = 4 pi beta / (lambda rho) ~ 37.7 cm^2/g for Cu (below its K edge) */
    double dcu, bcu, dw, bw, dsi, bsi, dox, box;
    CHECK_OK(apt_sim_material_index(APT_MAT_CU, 8.8, &dcu, &bcu, &e), &e);
    CHECK_OK(apt_sim_material_index(APT_MAT_W, 8.8, &dw, &bw, &e), &e);
    CHECK_OK(apt_sim_material_index(APT_MAT_SI, 8.8, &dsi, &bsi, &e), &e);
    CHECK_OK(apt_sim_material_index(APT_MAT_SIO2, 8.8, &dox, &box, &e), &e);
    double mu_rho = 4 * M_PI * bcu / lam / 100.0 / 8.96;
    CHECK_MSG(fabs(mu_rho / 37.7 - 1) < 0.05, "Cu mu/rho %g cm^2/g", mu_rho);
    /* Cu just below its K edge: anomalous f' lowers delta under the free-electron value */
    double dcu_free = apt_sim_delta_electron(8.96, 29.0 / 63.546, lam);
    CHECK(dcu < dcu_free && dcu > 0.8 * dcu_free);
    CHECK(dw > dcu && dcu > dsi && dsi > dox && dox > 0);
    CHECK(bw > bcu && bcu > bsi && bsi > box && box > 0);
    /* the Cu K edge raises beta ~8x above 8.979 keV (after the E^-2 trend) */
    double b1, b2;
    CHECK_OK(apt_sim_material_index(APT_MAT_CU, 8.95, NULL, &b1, &e), &e);
    CHECK_OK(apt_sim_material_index(APT_MAT_CU, 9.0, NULL, &b2, &e), &e);
    CHECK(b2 > 5 * b1);
    double vac_d = 1, vac_b = 1;
    CHECK_OK(apt_sim_material_index(APT_MAT_VACUUM, 8.8, &vac_d, &vac_b, &e), &e);
    CHECK(vac_d == 0 && vac_b == 0);
    CHECK(apt_sim_material_index(APT_MAT_CU, 0.5, &dt, &bt, &e) == APT_EINVAL && strstr(e.msg, "energy_keV"));
}

static void test_phantom(void)
{
    apt_error e = {0};
    apt_grid3 g = {40, 48, 56, 14e-9, 14e-9, 14e-9};
    size_t n = (size_t)g.Z * g.Y * g.X, plane = (size_t)g.Y * g.X;
    float *d = malloc(n * sizeof *d), *b = malloc(n * sizeof *b), *d2 = malloc(n * sizeof *d2);
    uint8_t *lab = malloc(n);
    apt_sim_ic_opts o = {3, 1, 7, 8.8, 1.0};
    apt_sim_ic_info in;
    CHECK_OK(apt_sim_phantom_ic(&g, &o, d, b, lab, &in, &e), &e);
    CHECK(in.n_layers == 3 && in.substrate_z0 < g.Z && in.vias > 0);
    for (int k = 0; k < 3; k++) {
        CHECK(in.line_z0[k] < in.line_z1[k] && in.line_z1[k] <= in.via_z0[k] && in.via_z0[k] < in.via_z1[k]);
        if (k)
            CHECK(in.via_z1[k] == in.line_z0[k - 1] && in.along_x[k] != in.along_x[k - 1]);
        /* metal fraction of the line level; lines along x make rows (y) either mostly metal or empty */
        size_t cu = 0;
        double var_rows = 0, var_cols = 0;
        const uint8_t *s = lab + (size_t)in.line_z0[k] * plane;
        for (size_t p = 0; p < plane; p++)
            cu += s[p] == APT_MAT_CU;
        double f = (double)cu / plane;
        CHECK_MSG(f > 0.15 && f < 0.75, "layer %d metal fraction %g", k, f);
        for (int y = 0; y < g.Y; y++) {
            double r = 0;
            for (int x = 0; x < g.X; x++)
                r += s[(size_t)y * g.X + x] == APT_MAT_CU;
            var_rows += (r / g.X - f) * (r / g.X - f) / g.Y;
        }
        for (int x = 0; x < g.X; x++) {
            double c = 0;
            for (int y = 0; y < g.Y; y++)
                c += s[(size_t)y * g.X + x] == APT_MAT_CU;
            var_cols += (c / g.Y - f) * (c / g.Y - f) / g.X;
        }
        CHECK_MSG(in.along_x[k] ? var_rows > 3 * var_cols : var_cols > 3 * var_rows, "layer %d orientation", k);
        /* whole line level has the same footprint through its thickness */
        for (int z = in.line_z0[k] + 1; z < in.line_z1[k]; z++)
            CHECK(!memcmp(lab + (size_t)z * plane, s, plane));
    }
    /* every via voxel sits under metal of its layer and over metal of the layer below; contacts on Si */
    size_t via_vox = 0, bad = 0, contacts = 0;
    for (int k = 0; k < 3; k++)
        for (int z = in.via_z0[k]; z < in.via_z1[k]; z++)
            for (size_t p = 0; p < plane; p++) {
                uint8_t v = lab[(size_t)z * plane + p];
                if (v == APT_MAT_SIO2)
                    continue;
                if (k == 0) {
                    contacts++;
                    bad += v != APT_MAT_W || lab[(size_t)in.line_z0[0] * plane + p] != APT_MAT_CU ||
                           lab[(size_t)in.substrate_z0 * plane + p] != APT_MAT_SI;
                } else {
                    via_vox++;
                    bad += v != APT_MAT_CU || lab[(size_t)in.line_z0[k] * plane + p] != APT_MAT_CU ||
                           lab[(size_t)in.line_z0[k - 1] * plane + p] != APT_MAT_CU;
                }
            }
    CHECK(via_vox > 0 && contacts > 0);
    CHECK_MSG(bad == 0, "%zu unconnected via/contact voxels", bad);
    /* delta follows the labels, the cap is oxide, the substrate Si */
    double dcu;
    CHECK_OK(apt_sim_material_index(APT_MAT_CU, 8.8, &dcu, NULL, &e), &e);
    for (size_t p = 0; p < n; p += 97)
        if (lab[p] == APT_MAT_CU)
            CHECK(fabsf(d[p] - (float)dcu) < 1e-12f);
    CHECK(lab[0] == APT_MAT_SIO2 && lab[n - 1] == APT_MAT_SI);
    /* determinism by seed */
    CHECK_OK(apt_sim_phantom_ic(&g, &o, d2, NULL, NULL, NULL, &e), &e);
    CHECK(!memcmp(d, d2, n * sizeof *d));
    o.seed = 8;
    CHECK_OK(apt_sim_phantom_ic(&g, &o, d2, NULL, NULL, NULL, &e), &e);
    CHECK(memcmp(d, d2, n * sizeof *d) != 0);
    /* errors name the key */
    o.layers = 12; /* 12 layers need 2 voxels each: more than a 20-voxel Z holds */
    apt_grid3 thin = {20, 48, 56, 14e-9, 14e-9, 14e-9};
    CHECK(apt_sim_phantom_ic(&thin, &o, d2, NULL, NULL, NULL, &e) == APT_EINVAL && strstr(e.msg, "sim.layers"));
    o.layers = 17;
    CHECK(apt_sim_phantom_ic(&g, &o, d2, NULL, NULL, NULL, &e) == APT_EINVAL && strstr(e.msg, "sim.layers"));
    /* resampling: a constant block keeps its value inside, 0 outside */
    apt_grid3 gs = {10, 12, 14, 28e-9, 28e-9, 28e-9}, gd = {20, 24, 28, 14e-9, 14e-9, 14e-9};
    float src[10 * 12 * 14], dst[20 * 24 * 28];
    for (size_t i = 0; i < sizeof src / sizeof *src; i++)
        src[i] = 2.5f;
    CHECK_OK(apt_sim_resample(&gs, src, &gd, dst, &e), &e);
    CHECK(fabsf(dst[(10 * 24 + 12) * 28 + 14] - 2.5f) < 1e-6f);
    apt_grid3 big = {10, 40, 40, 28e-9, 28e-9, 28e-9};
    float *bd = malloc(10 * 40 * 40 * sizeof *bd);
    CHECK_OK(apt_sim_resample(&gs, src, &big, bd, &e), &e);
    CHECK(bd[(5 * 40 + 20) * 40 + 0] == 0 && fabsf(bd[(5 * 40 + 20) * 40 + 20] - 2.5f) < 1e-6f);
    free(bd);
    free(d);
    free(b);
    free(d2);
    free(lab);
}

static apt_sim_probe_opts demo_probe(void)
{
    return (apt_sim_probe_opts){APT_SIM_PROBE_ZONEPLATE, 8.8, 160e-6, 50e-9, 0.5, 150e-6, 0.3, 1e6};
}

/* Lines across the layer's normal axis in its line level: runs of rows (lines along x) or columns holding metal.
   Lines are separated by at least 0.35 pitch, so each run is one line: about across / pitch of them. */
static int count_line_runs(const uint8_t *s, int Y, int X, int along_x)
{
    int runs = 0, prev = 0, across = along_x ? Y : X, along = along_x ? X : Y;
    for (int c = 0; c < across; c++) {
        int metal = 0;
        for (int a = 0; a < along && !metal; a++)
            metal = s[along_x ? (size_t)c * X + a : (size_t)a * X + c] == APT_MAT_CU;
        runs += metal && !prev;
        prev = metal;
    }
    return runs;
}

/* sim.pitch_scale: every layer's pitch is a table pitch (index k or k+1) times the scale, and the label volume's
   line count follows the reported pitch, at fine, unit and coarse scales. */
static void test_phantom_pitch_scale(void)
{
    static const int table[] = {6, 8, 10, 12, 16, 20, 24, 32, 40, 48};
    apt_error e = {0};
    apt_grid3 g = {24, 160, 160, 14e-9, 14e-9, 14e-9};
    size_t n = (size_t)g.Z * g.Y * g.X, plane = (size_t)g.Y * g.X;
    float *d = malloc(n * sizeof *d);
    uint8_t *lab = malloc(n);
    const double scales[] = {0.5, 1.0, 1.7, 3.0};
    double mean_pitch[4] = {0};
    for (int si = 0; si < 4; si++) {
        apt_sim_ic_opts o = {3, 0, 11, 8.8, scales[si]};
        apt_sim_ic_info in;
        CHECK_OK(apt_sim_phantom_ic(&g, &o, d, NULL, lab, &in, &e), &e);
        for (int k = 0; k < 3; k++) {
            int p = in.pitch_vox[k], ok = 0;
            for (int i = k; i <= k + 1; i++) {
                int want = (int)lround(table[i] * scales[si]);
                ok |= p == (want < 2 ? 2 : want);
            }
            CHECK_MSG(ok, "scale %g layer %d: pitch %d is no table pitch x scale", scales[si], k, p);
            int runs = count_line_runs(lab + (size_t)in.line_z0[k] * plane, g.Y, g.X, in.along_x[k]);
            double expect = (double)(in.along_x[k] ? g.Y : g.X) / p;
            CHECK_MSG(fabs(runs - expect) <= 1.5, "scale %g layer %d: %d lines, pitch %d wants %.1f", scales[si], k,
                      runs, p, expect);
            mean_pitch[si] += p / 3.0;
        }
    }
    CHECK(mean_pitch[0] < mean_pitch[1] && mean_pitch[1] < mean_pitch[2] && mean_pitch[2] < mean_pitch[3]);
    apt_sim_ic_opts bad = {3, 0, 11, 8.8, 0.1};
    CHECK(apt_sim_phantom_ic(&g, &bad, d, NULL, NULL, NULL, &e) == APT_EINVAL && strstr(e.msg, "sim.pitch_scale"));
    free(d);
    free(lab);
}

static void test_probe(void)
{
    apt_error e = {0};
    int M = 4, N = 64;
    size_t hw = (size_t)N * N;
    double px = apt_sim_object_pixel_m(8.8, 0.96, 75e-6, N), occ[4];
    CHECK(fabs(px / 28.18e-9 - 1) < 1e-3);
    apt_sim_probe_opts o = demo_probe();
    float *P = apt_fft_alloc((size_t)M * hw);
    CHECK_OK(apt_sim_probe(&o, M, N, N, px, P, occ, &e), &e);
    double tot = 0;
    for (int m = 0; m < M; m++) {
        tot += occ[m];
        if (m)
            CHECK(occ[m] <= occ[m - 1] * (1 + 1e-12));
    }
    CHECK(occ[0] > occ[M - 1]);
    CHECK_MSG(fabs(tot / 1e6 - 1) < 1e-9, "occupancies sum %g", tot);
    /* <P_a|P_b> H W / sqrt(occ_a occ_b) = delta_ab */
    double worst = 0;
    for (int a = 0; a < M; a++)
        for (int b = 0; b < M; b++) {
            double re = 0, im = 0;
            const float *pa = P + 2 * a * hw, *pb = P + 2 * b * hw;
            for (size_t i = 0; i < hw; i++) {
                re += (double)pa[2 * i] * pb[2 * i] + (double)pa[2 * i + 1] * pb[2 * i + 1];
                im += (double)pa[2 * i] * pb[2 * i + 1] - (double)pa[2 * i + 1] * pb[2 * i];
            }
            double g = sqrt(re * re + im * im) * (double)hw / sqrt(occ[a] * occ[b]);
            worst = fmax(worst, fabs(g - (a == b)));
        }
    CHECK_MSG(worst < 1e-4, "modes not orthonormal: %g", worst);
    /* the probe is centred on [N/2, N/2] */
    double sy = 0, sx = 0, s = 0;
    for (int r = 0; r < N; r++)
        for (int c = 0; c < N; c++) {
            double i2 = (double)P[2 * (r * N + c)] * P[2 * (r * N + c)] +
                        (double)P[2 * (r * N + c) + 1] * P[2 * (r * N + c) + 1];
            sy += r * i2, sx += c * i2, s += i2;
        }
    CHECK_MSG(fabs(sy / s - N / 2) < 1 && fabs(sx / s - N / 2) < 1, "centre %g %g", sy / s, sx / s);
    /* far field of mode 0 = the zone plate's annulus: central stop .. NA, radius NA z / p = 18 px */
    apt_fft_plan *plan = NULL;
    CHECK_OK(apt_fft_plan_new(1, N, N, 0, APT_BACKEND_CPU, &plan, &e), &e);
    if (plan) {
        CHECK_OK(apt_fft_forward(plan, P, &e), &e);
        double rp = (1.2398e-9 / 8.8) / (2 * 50e-9) * 0.96 / 75e-6, in = 0, all = 0;
        for (int r = 0; r < N; r++)
            for (int c = 0; c < N; c++) {
                int ky = r < N / 2 ? r : r - N, kx = c < N / 2 ? c : c - N;
                double rad = sqrt(ky * ky + kx * kx), i2 = (double)P[2 * (r * N + c)] * P[2 * (r * N + c)] +
                                                           (double)P[2 * (r * N + c) + 1] * P[2 * (r * N + c) + 1];
                all += i2;
                if (rad >= 0.5 * rp - 1 && rad <= rp + 1)
                    in += i2;
            }
        CHECK_MSG(in / all > 0.99, "far field inside the annulus: %g", in / all);
        CHECK_MSG(fabs(all / occ[0] - 1) < 1e-3, "detector photons of mode 0: %g vs %g", all, occ[0]);
        apt_fft_plan_destroy(&plan);
    }
    /* errors name the key */
    o.defocus_m = 5e-3;
    CHECK(apt_sim_probe(&o, M, N, N, px, P, occ, &e) == APT_EINVAL && strstr(e.msg, "defocus_m"));
    o = demo_probe();
    o.outer_zone_m = 5e-9;
    CHECK(apt_sim_probe(&o, M, N, N, px, P, occ, &e) == APT_EINVAL && strstr(e.msg, "outer_zone_m"));
    o = demo_probe();
    o.coherence = 0;
    CHECK(apt_sim_probe(&o, M, N, N, px, P, occ, &e) == APT_EINVAL && strstr(e.msg, "coherence"));
    apt_fft_free(P);
}

static void test_rng(void)
{
    static const double means[] = {0.3, 3, 50, 5000};
    for (int t = 0; t < 4; t++) {
        apt_sim_rng r;
        apt_sim_rng_seed(&r, 11, (uint64_t)t);
        double s = 0, s2 = 0, K = 40000;
        for (int i = 0; i < (int)K; i++) {
            double k = (double)apt_sim_rng_poisson(&r, means[t]);
            s += k, s2 += k * k;
        }
        double mean = s / K, var = s2 / K - mean * mean;
        CHECK_MSG(fabs(mean / means[t] - 1) < 0.03 && fabs(var / means[t] - 1) < 0.05, "Poisson(%g): %g %g",
                  means[t], mean, var);
    }
    apt_sim_rng a, b;
    apt_sim_rng_seed(&a, 1, 2);
    apt_sim_rng_seed(&b, 1, 3);
    CHECK(apt_sim_rng_next(&a) != apt_sim_rng_next(&b));
}

static void test_positions(void)
{
    apt_error e = {0};
    apt_grid3 g = {40, 36, 36, 28e-9, 28e-9, 28e-9};
    double step = 100e-9, jit = 15e-9;
    size_t J0, J60;
    double *p0, *p60;
    CHECK_OK(apt_sim_positions(&g, 0, step, jit, 3, &p0, &J0, &e), &e);
    CHECK_OK(apt_sim_positions(&g, 60, step, jit, 3, &p60, &J60, &e), &e);
    CHECK(J60 > J0); /* x' extent grows with tilt: X cos + Z sin */
    /* every point of the field across the beam has a position within half a diagonal step (+ jitter) */
    double th = 60 * M_PI / 180, ey = g.Y * g.vy, ex = g.X * g.vx * cos(th) + g.Z * g.vz * sin(th);
    double worst = 0, off_raster = 0;
    for (int a = 0; a <= 20; a++)
        for (int b = 0; b <= 20; b++) {
            double y = (a / 20.0 - 0.5) * ey, x = (b / 20.0 - 0.5) * ex, best = 1;
            for (size_t j = 0; j < J60; j++)
                best = fmin(best, hypot(p60[2 * j] - y, p60[2 * j + 1] - x));
            worst = fmax(worst, best);
        }
    CHECK_MSG(worst <= step / sqrt(2) + jit * sqrt(2), "coverage gap %g m", worst);
    /* the jitter moves each point of the exact raster by at most +-jitter (uniform: some by more than half) */
    double *pr;
    size_t Jr;
    CHECK_OK(apt_sim_positions(&g, 0, step, 0, 3, &pr, &Jr, &e), &e);
    CHECK(Jr == J0);
    for (size_t j = 0; j < 2 * J0 && Jr == J0; j++)
        off_raster = fmax(off_raster, fabs(p0[j] - pr[j]));
    CHECK_MSG(off_raster > 0.5 * jit && off_raster <= jit * (1 + 1e-9), "jitter %g", off_raster);
    for (size_t j = 1; j < Jr; j++) /* the exact raster: neighbours one step apart */
        CHECK(fabs(hypot(pr[2 * j] - pr[2 * j - 2], pr[2 * j + 1] - pr[2 * j - 1]) - step) < 1e-12);
    free(pr);
    free(p0);
    free(p60);
    CHECK(apt_sim_positions(&g, 0, step, step, 3, &p0, &J0, &e) == APT_EINVAL && strstr(e.msg, "sim.jitter_m"));
}

static const char *tiny_cfg =
    "detector: {crop: 32}\n"
    "physics: {detector_distance_m: 0.48, modes: 2, slices: 3, probe: {defocus_m: 80e-6}}\n"
    "sim: {grid: [16, 20, 20], voxel_size_m: [28e-9, 28e-9, 28e-9], angles: 3, range_deg: 20, layers: 2,\n"
    "      photons_per_frame: 2e5, step_m: 120e-9, dtype: uint32, seed: 5}\n";

static void test_end_to_end(void)
{
    apt_error e = {0};
    apt_config *cfg = NULL;
    CHECK_OK(apt_config_load_string(tiny_cfg, strlen(tiny_cfg), "tiny.yaml", &cfg, &e), &e);
    if (!cfg)
        return;
    apt_sim_opts o;
    float *probe = NULL;
    int M, H, W;
    double px;
    CHECK_OK(apt_sim_opts_from_config(cfg, &o, &e), &e);
    CHECK_OK(apt_sim_probe_from_config(cfg, o.photons, &probe, &M, &H, &W, &px, &e), &e);
    CHECK(M == 2 && H == 32 && W == 32 && o.elem_size == 4 && o.grid.Z == 16);
    char path[64];
    snprintf(path, sizeof path, "test_sim_%d.h5", (int)getpid());
    CHECK_OK(apt_sim_write_scan(&o, probe, M, H, W, NULL, NULL, path, NULL, NULL, &e), &e);
    apt_scanfile *sf = NULL;
    CHECK_OK(apt_scanfile_open(path, &sf, &e), &e);
    if (sf) {
        const apt_scan_header *h = apt_scanfile_header(sf);
        CHECK(h->n_angles == 3 && h->angles_deg[0] == -20 && h->angles_deg[2] == 20 && h->energy_keV == 8.8);
        CHECK(h->beam_center_px[0] == 16 && h->beam_center_px[1] == 16);
        uint32_t J, fh, fw, es, pm, ph, pw;
        CHECK_OK(apt_scanfile_probe_dims(sf, &pm, &ph, &pw, &e), &e);
        CHECK(pm == 2 && ph == 32 && pw == 32);
        for (uint32_t a = 0; a < 3; a++) {
            CHECK_OK(apt_scanfile_angle_dims(sf, a, &J, &fh, &fw, &es, &e), &e);
            CHECK(fh == 32 && fw == 32 && es == 4 && J > 4);
            uint32_t *fr = malloc((size_t)J * fh * fw * 4);
            double *pos = malloc((size_t)J * 2 * sizeof *pos), *want = NULL;
            size_t Jw = 0;
            CHECK_OK(apt_scanfile_read_frames(sf, a, 0, J, fr, &e), &e);
            CHECK_OK(apt_scanfile_read_positions(sf, a, pos, &e), &e);
            /* total counts = photons x transmission (beta is weak at 8.8 keV: > 90%), Poisson */
            double tot = 0;
            for (size_t i = 0; i < (size_t)J * fh * fw; i++)
                tot += fr[i];
            tot /= J;
            CHECK_MSG(tot < 2e5 * 1.01 && tot > 2e5 * 0.9, "angle %u: mean counts per frame %g", a, tot);
            CHECK_OK(apt_sim_positions(&o.grid, h->angles_deg[a], o.step_m, o.jitter_m,
                                       o.seed ^ ((uint64_t)a << 40), &want, &Jw, &e), &e);
            CHECK(Jw == J && want && !memcmp(want, pos, J * 2 * sizeof *pos));
            free(fr);
            free(pos);
            free(want);
        }
        CHECK(apt_scanfile_has_ground_truth(sf));
        uint32_t Z, Y, X;
        CHECK_OK(apt_scanfile_ground_truth_dims(sf, &Z, &Y, &X, &e), &e);
        CHECK(Z == 16 && Y == 20 && X == 20);
        float *gt = malloc((size_t)Z * Y * X * sizeof *gt), *ph_d = malloc((size_t)Z * Y * X * sizeof *ph_d);
        double vs[3];
        CHECK_OK(apt_scanfile_read_ground_truth(sf, gt, vs, &e), &e);
        apt_sim_ic_opts io = {o.layers, o.substrate, o.seed, o.energy_keV, o.pitch_scale};
        CHECK_OK(apt_sim_phantom_ic(&o.grid, &io, ph_d, NULL, NULL, NULL, &e), &e);
        CHECK(!memcmp(gt, ph_d, (size_t)Z * Y * X * sizeof *gt) && vs[0] == 28e-9);
        free(gt);
        free(ph_d);
        CHECK_OK(apt_scanfile_close(&sf, &e), &e);
    }
    unlink(path);
    /* bad sim keys are refused naming the key */
    CHECK(apt_config_set(cfg, "sim.grid=[16, 20.5, 20]", &e) == APT_OK);
    CHECK(apt_sim_opts_from_config(cfg, &o, &e) == APT_EINVAL && strstr(e.msg, "sim.grid"));
    free(probe);
    apt_config_destroy(&cfg);
}

int main(void)
{
    test_materials();
    test_phantom();
    test_phantom_pitch_scale();
    test_probe();
    test_rng();
    test_positions();
    test_end_to_end();
    APT_TEST_DONE();
}
