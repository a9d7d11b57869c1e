/* scan.c - the simulated ptycho-tomography scan: per angle a jittered fly-scan raster over the volume's extent
 * across the beam, the phantom projected into that angle's slice stack (apt_stack_project), model intensities from
 * the SAME multislice model the reconstruction inverts (apt_ptycho_forward), Poisson counts, and the scan file.
 * Decision: every random draw has its own (seed, stream) - positions per angle, counts per frame - so the file does
 * not depend on thread counts or chunking, and frames are produced and written in bounded chunks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/ptycho.h"
#include "aptomo/scanfile.h"
#include "aptomo/sim.h"

#define FRAME_CHUNK 64          /* frames modelled and written per batch: bounds memory at any scan size */
#define MAX_POSITIONS (1u << 20)

int apt_sim_positions(const apt_grid3 *g, double theta_deg, double step_m, double jitter_m, uint64_t seed,
                      double **pos, size_t *J, apt_error *err)
{
    *pos = NULL;
    *J = 0;
    if (!(step_m > 0) || !isfinite(step_m))
        return apt_err(err, APT_EINVAL, "sim.step_m: %g must be positive", step_m);
    if (!(jitter_m >= 0) || !isfinite(jitter_m) || jitter_m >= step_m)
        return apt_err(err, APT_EINVAL, "sim.jitter_m: %g must be in [0, sim.step_m)", jitter_m);
    double th = theta_deg * M_PI / 180.0;
    double ey = g->Y * g->vy, ex = fabs(g->X * g->vx * cos(th)) + fabs(g->Z * g->vz * sin(th));
    double ny_d = ceil(ey / step_m) + 1, nx_d = ceil(ex / step_m) + 1;
    if (!(ny_d * nx_d <= MAX_POSITIONS))
        return apt_err(err, APT_ERANGE, "sim.step_m: %g m gives %.0f x %.0f positions (at most %u)", step_m, ny_d,
                       nx_d, MAX_POSITIONS);
    int ny = (int)ny_d, nx = (int)nx_d;
    double *p = malloc((size_t)ny * nx * 2 * sizeof *p);
    if (!p)
        return apt_err(err, APT_ENOMEM, "positions: out of memory");
    apt_sim_rng r;
    apt_sim_rng_seed(&r, seed, 0x905);
    size_t j = 0;
    for (int a = 0; a < ny; a++)
        for (int b = 0; b < nx; b++) {
            int bb = (a & 1) ? nx - 1 - b : b; /* serpentine: the fast axis reverses every row */
            double y = (a - (ny - 1) / 2.0) * step_m, x = (bb - (nx - 1) / 2.0) * step_m;
            p[2 * j] = y + jitter_m * (2 * apt_sim_rng_uniform(&r) - 1);
            p[2 * j + 1] = x + jitter_m * (2 * apt_sim_rng_uniform(&r) - 1);
            j++;
        }
    *pos = p;
    *J = j;
    return APT_OK;
}

static int grid_from_list(const apt_config *cfg, const char *key, double *v, int integral, apt_error *err)
{
    if (apt_config_list_len(cfg, key, err) != 3)
        return apt_err(err, APT_EINVAL, "%s: expected 3 values [z, y, x]", key);
    for (int i = 0; i < 3; i++) {
        v[i] = apt_config_list_float(cfg, key, (size_t)i, err);
        if (!(v[i] > 0) || !isfinite(v[i]) || (integral && (v[i] != floor(v[i]) || v[i] > 16384)))
            return apt_err(err, APT_EINVAL, "%s: entry %d (%g) must be a positive %s", key, i, v[i],
                           integral ? "integer <= 16384" : "number");
    }
    return APT_OK;
}

int apt_sim_opts_from_config(const apt_config *cfg, apt_sim_opts *o, apt_error *err)
{
    memset(o, 0, sizeof *o);
    double n[3], v[3];
    apt_error e = {0}; /* accessors leave err untouched on success: collect their faults here */
    int rc;
    if ((rc = grid_from_list(cfg, "sim.grid", n, 1, err)) || (rc = grid_from_list(cfg, "sim.voxel_size_m", v, 0, err)))
        return rc;
    o->grid = (apt_grid3){(int)n[0], (int)n[1], (int)n[2], v[0], v[1], v[2]};
    o->angles = (int)apt_config_int(cfg, "sim.angles", &e);
    o->range_deg = apt_config_float(cfg, "sim.range_deg", &e);
    o->step_m = apt_config_float(cfg, "sim.step_m", &e);
    o->jitter_m = apt_config_float(cfg, "sim.jitter_m", &e);
    o->photons = apt_config_float(cfg, "sim.photons_per_frame", &e);
    o->elem_size = apt_config_enum(cfg, "sim.dtype", err) == 1 ? 4 : 2;
    o->seed = (uint64_t)apt_config_int(cfg, "sim.seed", &e);
    o->layers = (int)apt_config_int(cfg, "sim.layers", &e);
    o->substrate = apt_config_bool(cfg, "sim.substrate", &e);
    o->pitch_scale = apt_config_float(cfg, "sim.pitch_scale", &e);
    o->slices = (int)apt_config_int(cfg, "physics.slices", &e);
    o->energy_keV = apt_config_float(cfg, "physics.energy_keV", &e);
    o->distance_m = apt_config_float(cfg, "physics.detector_distance_m", &e);
    o->pixel_size_m = apt_config_float(cfg, "physics.pixel_size_m", &e);
    if (e.code) {
        if (err)
            *err = e;
        return e.code;
    }
    if (o->jitter_m >= o->step_m)
        return apt_err(err, APT_EINVAL, "sim.jitter_m: %g must be below sim.step_m (%g)", o->jitter_m, o->step_m);
    return APT_OK;
}

/* Poisson counts of one frame, saturated one below the type's maximum (the Eiger marks defective pixels with the
   maximum itself). */
static void count_frame(const float *I, size_t n, int elem, uint64_t seed, uint64_t stream, void *dst)
{
    apt_sim_rng r;
    apt_sim_rng_seed(&r, seed, stream);
    uint64_t top = elem == 2 ? 0xFFFEu : 0xFFFFFFFEu;
    for (size_t i = 0; i < n; i++) {
        uint64_t k = apt_sim_rng_poisson(&r, I[i] > 0 ? I[i] : 0);
        k = k > top ? top : k;
        if (elem == 2)
            ((uint16_t *)dst)[i] = (uint16_t)k;
        else
            ((uint32_t *)dst)[i] = (uint32_t)k;
    }
}

typedef struct angle_ctx {
    const apt_sim_opts *o;
    const float *probe, *delta, *beta;
    int M, H, W;
    double lam, px;
    apt_scanfile *sf;
} angle_ctx;

static int simulate_angle(const angle_ctx *c, uint32_t a, double theta, apt_error *err)
{
    const apt_sim_opts *o = c->o;
    double *pos_m = NULL;
    size_t J = 0;
    float *object = NULL, *I = NULL;
    int32_t *win = NULL;
    void *frames = NULL;
    apt_ptycho *pt = NULL;
    int rc = apt_sim_positions(&o->grid, theta, o->step_m, o->jitter_m, o->seed ^ ((uint64_t)a << 40), &pos_m, &J,
                               err);
    if (rc)
        return rc;
    /* pad: half a window plus the raster's overshoot and jitter, so every window lies inside the stack */
    int pad = (c->H > c->W ? c->H : c->W) / 2 + (int)ceil((o->step_m / 2 + o->jitter_m) / c->px) + 2;
    apt_stack_geom sg;
    if ((rc = apt_stack_geom_for(&o->grid, theta, o->slices, c->px, pad, &sg, err)))
        goto out;
    size_t obj_n = (size_t)sg.L * sg.Ny * sg.Nx, hw = (size_t)c->H * c->W;
    object = malloc(obj_n * 2 * sizeof *object);
    I = malloc(FRAME_CHUNK * hw * sizeof *I);
    win = malloc(J * 2 * sizeof *win);
    frames = malloc(FRAME_CHUNK * hw * (size_t)o->elem_size);
    if (!object || !I || !win || !frames) {
        rc = apt_err(err, APT_ENOMEM, "angle %u: out of memory (stack %dx%dx%d, %zu positions)", a, sg.L, sg.Ny,
                     sg.Nx, J);
        goto out;
    }
    if ((rc = apt_stack_project(&o->grid, c->delta, c->beta, &sg, c->lam, object, err)))
        goto out;
    for (size_t j = 0; j < J; j++) {
        int r, col;
        apt_stack_window(&sg, c->H, c->W, pos_m[2 * j], pos_m[2 * j + 1], &r, &col);
        if (r < 0 || col < 0 || r + c->H > sg.Ny || col + c->W > sg.Nx) {
            rc = apt_err(err, APT_ERANGE, "angle %u: window %zu at (%d, %d) outside the %dx%d stack", a, j, r, col,
                         sg.Ny, sg.Nx);
            goto out;
        }
        win[2 * j] = r;
        win[2 * j + 1] = col;
    }
    apt_ptycho_geom pg = {c->M, c->H, c->W, sg.L, sg.Ny, sg.Nx, c->lam, c->px, sg.dz_m};
    if ((rc = apt_ptycho_new_reproducible(&pg, o->threads, &pt, err))) /* a seed fixes the frames, under any load */
        goto out;
    if ((rc = apt_scanfile_write_angle(c->sf, a, theta, (uint32_t)J, (uint32_t)c->H, (uint32_t)c->W,
                                       (uint32_t)o->elem_size, NULL, pos_m, err)))
        goto out;
    for (size_t j0 = 0; j0 < J; j0 += FRAME_CHUNK) {
        size_t cnt = J - j0 < FRAME_CHUNK ? J - j0 : FRAME_CHUNK;
        if ((rc = apt_ptycho_forward(pt, c->probe, object, win + 2 * j0, cnt, I, err)))
            goto out;
        for (size_t k = 0; k < cnt; k++)
            count_frame(I + k * hw, hw, o->elem_size, o->seed, ((uint64_t)a << 32) | (j0 + k),
                        (char *)frames + k * hw * (size_t)o->elem_size);
        if ((rc = apt_scanfile_write_frames(c->sf, a, (uint32_t)j0, (uint32_t)cnt, frames, err)))
            goto out;
    }
out:
    apt_ptycho_destroy(&pt);
    free(pos_m);
    free(object);
    free(I);
    free(win);
    free(frames);
    return rc;
}

int apt_sim_write_scan(const apt_sim_opts *o, const float *probe, int M, int H, int W, const float *delta,
                       const float *beta, const char *out_path, apt_sim_progress_fn progress, void *ctx,
                       apt_error *err)
{
    if (o->angles < 1 || o->angles > (int)APT_SCAN_MAX_ANGLES)
        return apt_err(err, APT_EINVAL, "sim.angles: %d out of range 1..%u", o->angles, APT_SCAN_MAX_ANGLES);
    if (!(o->range_deg >= 0 && o->range_deg < 90))
        return apt_err(err, APT_EINVAL, "sim.range_deg: %g outside [0, 90)", o->range_deg);
    if (H != W)
        return apt_err(err, APT_EINVAL, "probe: %dx%d window: the simulator needs a square crop", H, W);
    if (o->elem_size != 2 && o->elem_size != 4)
        return apt_err(err, APT_EINVAL, "sim.dtype: element size %d (uint16 or uint32)", o->elem_size);
    angle_ctx c = {.o = o, .probe = probe, .M = M, .H = H, .W = W, .delta = delta, .beta = beta};
    c.lam = apt_sim_wavelength_m(o->energy_keV);
    c.px = apt_sim_object_pixel_m(o->energy_keV, o->distance_m, o->pixel_size_m, H);
    const apt_grid3 *g = &o->grid;
    size_t nvox = (size_t)g->Z * g->Y * g->X;
    float *own_d = NULL, *own_b = NULL;
    double *angles = malloc((size_t)o->angles * sizeof *angles);
    apt_scanfile *sf = NULL;
    int rc = APT_OK;
    if (!angles) {
        rc = apt_err(err, APT_ENOMEM, "simulate: out of memory");
        goto out;
    }
    for (int a = 0; a < o->angles; a++)
        angles[a] = o->angles == 1 ? 0.0 : -o->range_deg + 2.0 * o->range_deg * a / (o->angles - 1);
    if (!delta) {
        apt_sim_ic_opts io = {o->layers, o->substrate, o->seed, o->energy_keV, o->pitch_scale};
        own_d = malloc(nvox * sizeof *own_d);
        own_b = malloc(nvox * sizeof *own_b);
        if (!own_d || !own_b) {
            rc = apt_err(err, APT_ENOMEM, "simulate: out of memory for the %dx%dx%d phantom", g->Z, g->Y, g->X);
            goto out;
        }
        if ((rc = apt_sim_phantom_ic(g, &io, own_d, own_b, NULL, NULL, err)))
            goto out;
        c.delta = own_d;
        c.beta = own_b;
    }
    apt_scan_header h = {.energy_keV = o->energy_keV, .detector_distance_m = o->distance_m,
                         .pixel_size_m = o->pixel_size_m, .beam_center_px = {H / 2, W / 2},
                         .n_angles = (uint32_t)o->angles, .angles_deg = angles};
    if ((rc = apt_scanfile_create(out_path, &h, &sf, err)) ||
        (rc = apt_scanfile_write_probe(sf, (uint32_t)M, (uint32_t)H, (uint32_t)W, probe, c.px, err)))
        goto out;
    c.sf = sf;
    for (int a = 0; a < o->angles; a++) {
        if ((rc = simulate_angle(&c, (uint32_t)a, angles[a], err))) {
            apt_err_prefix(err, rc, "%s: angle %d (%.3f deg)", out_path, a, angles[a]);
            goto out;
        }
        if (progress)
            progress(ctx, a + 1, o->angles);
    }
    double vs[3] = {g->vz, g->vy, g->vx};
    rc = apt_scanfile_write_ground_truth(sf, (uint32_t)g->Z, (uint32_t)g->Y, (uint32_t)g->X, c.delta, vs, err);
out:
    if (sf) {
        apt_error e2 = {0};
        int rc2 = apt_scanfile_close(&sf, &e2);
        if (!rc && rc2) {
            rc = rc2;
            if (err)
                *err = e2;
        }
    }
    free(angles);
    free(own_d);
    free(own_b);
    return rc;
}
