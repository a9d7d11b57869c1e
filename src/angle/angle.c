/* angle.c - the per-angle driver: stack geometry for this tilt, probe windows from the scan positions, 2 passes of
 * multislice mixed-state ptychography from a flat object, and the coverage weight (normalised probe illumination)
 * that keeps unscanned voxels from diluting the Approximant. */
#include "aptomo/angle.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/clock.h"
#include "aptomo/gpu.h"
#include "aptomo/ptycho.h"

#define COVERAGE_FLOOR 0.05 /* illumination below 5% of its maximum counts as not covered */

struct apt_angle_ctx {
    apt_angle_cfg cfg;
    float *probe;
    double wavelength, pixel;
};

int apt_angle_ctx_new(const apt_angle_cfg *cfg, const float *probe, apt_angle_ctx **out, apt_error *err)
{
    *out = NULL;
    if (cfg->crop < 8 || cfg->L < 1 || cfg->M < 1 || cfg->iterations < 1 || cfg->iterations > APT_ANGLE_MAX_ITERS ||
        cfg->batches < 1 || !(cfg->energy_keV > 0) || !(cfg->distance_m > 0) || !(cfg->det_pixel_m > 0))
        return apt_err(err, APT_EINVAL, "angle reconstruction: bad settings (crop %d, L %d, M %d, iterations %d, "
                                        "batches %d)", cfg->crop, cfg->L, cfg->M, cfg->iterations, cfg->batches);
    apt_angle_ctx *c = calloc(1, sizeof *c);
    size_t n = (size_t)cfg->M * cfg->crop * cfg->crop * 2;
    if (!c || !(c->probe = malloc(n * sizeof *c->probe))) {
        free(c);
        return apt_err(err, APT_ENOMEM, "out of memory for the probe");
    }
    memcpy(c->probe, probe, n * sizeof *c->probe);
    c->cfg = *cfg;
    if (c->cfg.pad_px < 0)
        c->cfg.pad_px = cfg->crop / 2;
    c->wavelength = 12.398419843320026e-10 / cfg->energy_keV; /* hc = 12.3984 keV A */
    c->pixel = c->wavelength * cfg->distance_m / ((double)cfg->crop * cfg->det_pixel_m);
    *out = c;
    return APT_OK;
}

void apt_angle_ctx_destroy(apt_angle_ctx **cp)
{
    if (!*cp)
        return;
    free((*cp)->probe);
    free(*cp);
    *cp = NULL;
}

double apt_angle_wavelength(const apt_angle_ctx *c) { return c->wavelength; }
double apt_angle_pixel(const apt_angle_ctx *c) { return c->pixel; }

void apt_angle_result_free(apt_angle_result *r)
{
    free(r->object);
    free(r->weight);
    memset(r, 0, sizeof *r);
}

int apt_angle_reconstruct(apt_angle_ctx *c, double angle_deg, const float *const *patterns, const double *pos_m,
                          size_t J, apt_angle_result *r, apt_error *err)
{
    memset(r, 0, sizeof *r);
    double t0 = apt_now();
    const apt_angle_cfg *cfg = &c->cfg;
    int N = cfg->crop, rc;
    /* the stack covers the grid plus a margin; widen the margin until every probe window of this scan fits
       (a raster overshoots the sample edge by up to a step plus jitter), bounded by four windows */
    int pad = cfg->pad_px;
    for (int tries = 0;; tries++) {
        if ((rc = apt_stack_geom_for(&cfg->grid, angle_deg, cfg->L, c->pixel, pad, &r->sg, err)))
            return rc;
        int over = 0;
        for (size_t j = 0; j < J; j++) {
            int row, col;
            apt_stack_window(&r->sg, N, N, pos_m[2 * j], pos_m[2 * j + 1], &row, &col);
            int o = -row > -col ? -row : -col;
            o = row + N - r->sg.Ny > o ? row + N - r->sg.Ny : o;
            o = col + N - r->sg.Nx > o ? col + N - r->sg.Nx : o;
            over = o > over ? o : over;
        }
        if (over <= 0 || tries == 1 || pad + over > 4 * N)
            break;
        pad += over;
    }
    const apt_stack_geom *sg = &r->sg;
    size_t npx = (size_t)N * N, nobj = (size_t)sg->Ny * sg->Nx;
    int32_t *pos = malloc((J ? J : 1) * 2 * sizeof *pos);
    /* the patterns are the one big array a GPU model reads: page-locked for it, so its copies overlap compute */
    float *meas = apt_gpu_host_alloc((J ? J : 1) * npx * sizeof *meas, cfg->backend != APT_BACKEND_CPU);
    r->object = malloc((size_t)sg->L * nobj * 2 * sizeof *r->object);
    r->weight = calloc(nobj, sizeof *r->weight);
    apt_ptycho *p = NULL;
    if (!pos || !meas || !r->object || !r->weight) {
        rc = apt_err(err, APT_ENOMEM, "angle %.3f deg: out of memory (%zu frames, stack %dx%dx%d)", angle_deg, J,
                     sg->L, sg->Ny, sg->Nx);
        goto out;
    }
    /* windows inside the stack only; the others cannot be modelled and are counted */
    size_t k = 0;
    for (size_t j = 0; j < J; j++) {
        int row, col;
        apt_stack_window(sg, N, N, pos_m[2 * j], pos_m[2 * j + 1], &row, &col);
        if (row < 0 || col < 0 || row + N > sg->Ny || col + N > sg->Nx) {
            r->frames_outside++;
            continue;
        }
        pos[2 * k] = row;
        pos[2 * k + 1] = col;
        memcpy(meas + k * npx, patterns[j], npx * sizeof *meas);
        k++;
    }
    r->frames_used = k;
    for (size_t i = 0; i < (size_t)sg->L * nobj; i++) {
        r->object[2 * i] = 1.0f;
        r->object[2 * i + 1] = 0.0f;
    }
    if (k == 0) {
        rc = APT_OK; /* nothing measured inside: a flat (zero-phase) stack with zero weight */
        goto out;
    }
    /* The probe's photon scale must match the data's: rescale it so that a transparent object would give the
       mean measured counts per frame (robust for weakly absorbing ICs; a probe from a file changes little). */
    size_t nprobe = (size_t)cfg->M * npx * 2;
    float *probe = malloc(nprobe * sizeof *probe);
    if (!probe) {
        rc = apt_err(err, APT_ENOMEM, "out of memory");
        goto out;
    }
    double counts = 0, power = 0;
    for (size_t q = 0; q < k * npx; q++)
        counts += meas[q] > 0 ? meas[q] : 0;
    for (size_t q = 0; q < nprobe; q++)
        power += (double)c->probe[q] * c->probe[q];
    power *= (double)npx; /* unnormalised F: detector photons = H W sum |P|^2 */
    float s = power > 0 && counts > 0 ? (float)sqrt(counts / (double)k / power) : 1.0f;
    for (size_t q = 0; q < nprobe; q++)
        probe[q] = c->probe[q] * s;
    r->probe_scale = s;
    apt_ptycho_geom g = {cfg->M, N, N, sg->L, sg->Ny, sg->Nx, c->wavelength, c->pixel, sg->dz_m};
    apt_recon_opts opts = {cfg->iterations, cfg->batches, 1.0};
    if (!(rc = apt_ptycho_new(&g, cfg->threads, cfg->backend, &p, err)))
        rc = apt_ptycho_reconstruct(p, probe, meas, pos, k, &opts, r->object, r->loss, err);
    if (p)
        r->backend = apt_ptycho_backend(p);
    free(probe);
    if (rc)
        goto out;
    r->n_loss = cfg->iterations;
    /* coverage: sum over windows and modes of |P|^2, normalised to its maximum, floored */
    double *illum = calloc(nobj, sizeof *illum), mx = 0;
    if (!illum) {
        rc = apt_err(err, APT_ENOMEM, "out of memory");
        goto out;
    }
    float *pint = calloc(npx, sizeof *pint);
    for (int m = 0; pint && m < cfg->M; m++)
        for (size_t q = 0; q < npx; q++) {
            const float *pp = c->probe + 2 * ((size_t)m * npx + q);
            pint[q] += pp[0] * pp[0] + pp[1] * pp[1];
        }
    for (size_t j = 0; pint && j < k; j++)
        for (int y = 0; y < N; y++)
            for (int x = 0; x < N; x++)
                illum[(size_t)(pos[2 * j] + y) * sg->Nx + pos[2 * j + 1] + x] += pint[(size_t)y * N + x];
    for (size_t i = 0; i < nobj; i++)
        mx = illum[i] > mx ? illum[i] : mx;
    for (size_t i = 0; i < nobj && mx > 0; i++) {
        double w = illum[i] / mx;
        r->weight[i] = w >= COVERAGE_FLOOR ? (float)w : 0.0f;
    }
    free(pint);
    free(illum);
out:
    apt_ptycho_destroy(&p);
    free(pos);
    apt_gpu_host_free(meas);
    r->seconds = apt_now() - t0;
    if (rc) {
        free(r->object);
        free(r->weight);
        r->object = NULL;
        r->weight = NULL;
    }
    return rc;
}
