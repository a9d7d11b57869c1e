/* cmd_tomo.c - `aptomo tomo {fbp,sirt,sart,tv} IN.h5 -o OUT.h5`: the classical baselines on Data Exchange
 * projections (/exchange/data [Ntheta,Y,X'], /exchange/theta degrees) or on a scan file (/entry/scan): then each
 * angle goes through the same per-angle ptychography as the daemon (apt_angle_reconstruct) and its projection is
 * the integrated phase, sum over slices of -arg(O_l) / k = integral of delta along the beam, divided by the voxel
 * size (so projections are in delta x voxels, the projector's unit) and resampled bilinearly onto the [Y, X] grid. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/angle.h"
#include "aptomo/config.h"
#include "aptomo/frame.h"
#include "aptomo/scanfile.h"
#include "aptomo/tomo.h"
#include "aptomo/volume.h"
#include "cli.h"

typedef struct tomo_opts {
    const char *method, *in, *out, *config, *filter, *sets[64];
    int n_sets, nz, threads;
    apt_iter_opts it;
} tomo_opts;

static void usage(FILE *f)
{
    fprintf(f, "usage: aptomo tomo {fbp,sirt,sart,tv} IN.h5 -o OUT.h5 [--iters K] [--nz NZ]\n"
               "       [--filter ramp|shepp|hann] [--lambda L] [--subsets S] [--relax R] [--allow-negative]\n"
               "       [--no-cylinder]\n"
               "       [--threads T] [--config FILE] [--set key=VALUE]...\n"
               "IN: Data Exchange projections (/exchange/data [Ntheta,Y,X'], /exchange/theta in degrees) or a scan\n"
               "file (/entry/scan: per-angle ptychography, integrated phase). OUT: /exchange/data [NZ,Y,X].\n"
               "Defaults: fbp ramp; sirt 100 iters relax 1; sart 10 iters, one angle per subset, relax 0.5;\n"
               "tv 100 iters lambda 0.02 (relative to max|A^T b|); iterative volumes non-negative and\n"
               "zero outside the cylinder every view sees.\n");
}

static int parse_int(const char *v, int lo, int hi, int *out)
{
    uint64_t u;
    if (!v || cli_parse_u64(v, &u) || u < (uint64_t)lo || u > (uint64_t)hi)
        return -1;
    *out = (int)u;
    return 0;
}

static int parse(int argc, char **argv, tomo_opts *o)
{
    memset(o, 0, sizeof *o);
    o->filter = "ramp";
    if (argc < 2)
        return -1;
    o->method = argv[1];
    if (strcmp(o->method, "fbp") && strcmp(o->method, "sirt") && strcmp(o->method, "sart") &&
        strcmp(o->method, "tv")) {
        fprintf(stderr, "tomo: method '%s' is not one of fbp, sirt, sart, tv\n", o->method);
        return -1;
    }
    apt_iter_opts_default(&o->it, o->method);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (a[0] != '-') {
            if (o->in)
                return -1;
            o->in = a;
            continue;
        }
        if (!strcmp(a, "--allow-negative")) {
            o->it.nonneg = 0;
            continue;
        }
        if (!strcmp(a, "--no-cylinder")) {
            o->it.cylinder = 0;
            continue;
        }
        if (!v)
            return -1;
        i++;
        if (!strcmp(a, "-o"))
            o->out = v;
        else if (!strcmp(a, "--config"))
            o->config = v;
        else if (!strcmp(a, "--set") && o->n_sets < 64)
            o->sets[o->n_sets++] = v;
        else if (!strcmp(a, "--filter"))
            o->filter = v;
        else if (!strcmp(a, "--iters"))
            bad = parse_int(v, 0, 100000, &o->it.iters);
        else if (!strcmp(a, "--nz"))
            bad = parse_int(v, 1, APT_TOMO_MAX_SIDE, &o->nz);
        else if (!strcmp(a, "--subsets"))
            bad = parse_int(v, 1, APT_TOMO_MAX_ANGLES, &o->it.subsets);
        else if (!strcmp(a, "--threads"))
            bad = parse_int(v, 0, 256, &o->threads);
        else if (!strcmp(a, "--lambda"))
            bad = cli_parse_double(v, &o->it.lambda) || !(o->it.lambda >= 0) || !isfinite(o->it.lambda);
        else if (!strcmp(a, "--relax"))
            bad = cli_parse_double(v, &o->it.relax) || !(o->it.relax > 0 && o->it.relax < 2);
        else
            return -1;
        if (bad) {
            fprintf(stderr, "tomo: %s: bad value '%s'\n", a, v);
            return -1;
        }
    }
    return o->in && o->out ? 0 : -1;
}

/* --- Data Exchange input ------------------------------------------------------------------------------- */

static int read_theta(const char *path, size_t n, double *theta)
{
    apt_error err = {0};
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return fprintf(stderr, "tomo: %s: cannot open\n", path), CLI_USAGE;
    int rc = CLI_USAGE;
    hid_t d = H5Lexists(f, "/exchange/theta", H5P_DEFAULT) > 0 ? H5Dopen2(f, "/exchange/theta", H5P_DEFAULT) : -1;
    hid_t s = d >= 0 ? H5Dget_space(d) : -1;
    hsize_t dims[2] = {0, 0};
    int rank = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    if (d < 0)
        fprintf(stderr, "tomo: %s: /exchange/theta: missing\n", path);
    else if (rank != 1 || H5Sget_simple_extent_dims(s, dims, NULL) < 0 || dims[0] != n)
        fprintf(stderr, "tomo: %s: /exchange/theta: want %zu angles (first axis of /exchange/data), have %s%llu\n",
                path, n, rank == 1 ? "" : "rank ", rank == 1 ? (unsigned long long)dims[0] : (unsigned long long)rank);
    else if (H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, theta) < 0)
        fprintf(stderr, "tomo: %s: /exchange/theta: read failed\n", path);
    else
        rc = CLI_OK;
    for (size_t i = 0; rc == CLI_OK && i < n; i++)
        if (!isfinite(theta[i])) {
            fprintf(stderr, "tomo: %s: /exchange/theta[%zu] is not finite\n", path, i);
            rc = CLI_USAGE;
        }
    if (s >= 0)
        H5Sclose(s);
    if (d >= 0)
        H5Dclose(d);
    H5Fclose(f);
    (void)err;
    return rc;
}

/* --- scan-file input ----------------------------------------------------------------------------------- */

/* Integrated phase of one reconstructed stack -> projection row block [Y, U] in delta x voxels (x' voxel vx). */
static void stack_to_projection(const apt_angle_result *res, double k, const apt_grid3 *g, float *proj)
{
    const apt_stack_geom *sg = &res->sg;
    size_t px = (size_t)sg->Ny * sg->Nx;
    float *phi = calloc(px, sizeof *phi);
    if (!phi)
        return;
    for (int l = 0; l < sg->L; l++)
        for (size_t q = 0; q < px; q++) {
            const float *o = res->object + 2 * ((size_t)l * px + q);
            phi[q] += -atan2f(o[1], o[0]);
        }
    for (int j = 0; j < g->Y; j++)
        for (int u = 0; u < g->X; u++) {
            double r = (j - (g->Y - 1) / 2.0) * g->vy / sg->delta_m + (sg->Ny - 1) / 2.0;
            double c = (u - (g->X - 1) / 2.0) * g->vx / sg->delta_m + (sg->Nx - 1) / 2.0;
            float *dst = proj + (size_t)j * g->X + u;
            *dst = 0;
            if (r < 0 || c < 0 || r > sg->Ny - 1 || c > sg->Nx - 1)
                continue;
            int r0 = (int)r, c0 = (int)c, r1 = r0 + 1 < sg->Ny ? r0 + 1 : r0, c1 = c0 + 1 < sg->Nx ? c0 + 1 : c0;
            double fr = r - r0, fc = c - c0;
#define AT(a, rr, cc) ((double)(a)[(size_t)(rr)*sg->Nx + (cc)])
            double w = (1 - fr) * ((1 - fc) * AT(res->weight, r0, c0) + fc * AT(res->weight, r0, c1)) +
                       fr * ((1 - fc) * AT(res->weight, r1, c0) + fc * AT(res->weight, r1, c1));
            double v = (1 - fr) * ((1 - fc) * AT(phi, r0, c0) + fc * AT(phi, r0, c1)) +
                       fr * ((1 - fc) * AT(phi, r1, c0) + fc * AT(phi, r1, c1));
#undef AT
            if (w > 1e-3) /* not illuminated: no phase to integrate */
                *dst = (float)(v / k / g->vx);
        }
    free(phi);
}

/* Projections from a scan file: sino [n_angles, Y, X] of the scan's ground-truth grid (else tomo.grid). */
static int scan_projections(const tomo_opts *o, float **sino, double **theta, int *n, apt_grid3 *grid, char **yaml)
{
    apt_error err = {0};
    apt_config *cfg = NULL;
    apt_scanfile *sf = NULL;
    apt_angle_ctx *ctx = NULL;
    float *probe = NULL;
    int rc = CLI_USAGE;
    if (apt_config_load(o->config, &cfg, &err))
        goto fail;
    for (int i = 0; i < o->n_sets; i++)
        if (apt_config_set(cfg, o->sets[i], &err))
            goto fail;
    if (apt_scanfile_open(o->in, &sf, &err))
        goto fail;
    const apt_scan_header *h = apt_scanfile_header(sf);
    uint32_t M, PH, PW, Z, Y, X;
    if (apt_scanfile_probe_dims(sf, &M, &PH, &PW, &err))
        goto fail;
    if (PH != PW) {
        apt_err(&err, APT_EINVAL, "%s: /entry/probe: %ux%u is not square", o->in, PH, PW);
        goto fail;
    }
    probe = malloc((size_t)M * PH * PW * 2 * sizeof *probe);
    if (!probe || apt_scanfile_read_probe(sf, probe, NULL, &err)) {
        rc = CLI_FAIL;
        goto fail;
    }
    apt_angle_cfg ac;
    apt_angle_cfg_from_config(cfg, &ac, NULL);
    ac.energy_keV = h->energy_keV; /* the instrument is the scan file's */
    ac.distance_m = h->detector_distance_m;
    ac.det_pixel_m = h->pixel_size_m;
    ac.crop = (int)PH;
    ac.M = ac.M < (int)M ? ac.M : (int)M;
    double vs[3];
    if (apt_scanfile_has_ground_truth(sf) && !apt_scanfile_ground_truth_dims(sf, &Z, &Y, &X, &err)) {
        float *truth = malloc((size_t)Z * Y * X * sizeof *truth);
        int trc = truth ? apt_scanfile_read_ground_truth(sf, truth, vs, &err) : APT_ENOMEM;
        free(truth);
        if (trc)
            goto fail;
        ac.grid = (apt_grid3){(int)Z, (int)Y, (int)X, vs[0], vs[1], vs[2]}; /* else tomo.grid */
    }
    if (apt_angle_ctx_new(&ac, probe, &ctx, &err))
        goto fail;
    *grid = ac.grid;
    *n = (int)h->n_angles;
    size_t row = (size_t)ac.grid.Y * ac.grid.X;
    *sino = calloc((h->n_angles ? h->n_angles : 1) * row, sizeof **sino);
    *theta = malloc((h->n_angles ? h->n_angles : 1) * sizeof **theta);
    if (!*sino || !*theta) {
        apt_err(&err, APT_ENOMEM, "out of memory for %u projections", h->n_angles);
        rc = CLI_FAIL;
        goto fail;
    }
    double k = 2 * M_PI / apt_angle_wavelength(ctx);
    cli_progress pr;
    cli_progress_start(&pr, "ptychography", h->n_angles);
    for (uint32_t a = 0; a < h->n_angles; a++) {
        float **pats = NULL;
        double *pos = NULL;
        uint32_t J = 0;
        apt_angle_result res;
        if (apt_angle_load(sf, a, ac.crop, &pats, &pos, &J, &err) ||
            apt_angle_reconstruct(ctx, h->angles_deg[a], (const float *const *)pats, pos, J, &res, &err)) {
            apt_angle_patterns_free(pats, J);
            free(pos);
            apt_err_prefix(&err, APT_EINVAL, "angle %u: ", a);
            rc = CLI_FAIL;
            cli_progress_end(&pr);
            goto fail;
        }
        stack_to_projection(&res, k, &ac.grid, *sino + a * row);
        (*theta)[a] = h->angles_deg[a];
        apt_angle_result_free(&res);
        apt_angle_patterns_free(pats, J);
        free(pos);
        cli_progress_update(&pr, a + 1);
    }
    cli_progress_end(&pr);
    *yaml = apt_config_dump_yaml(cfg);
    rc = CLI_OK;
fail:
    if (rc != CLI_OK)
        fprintf(stderr, "tomo: %s\n", err.msg[0] ? err.msg : "out of memory");
    apt_angle_ctx_destroy(&ctx);
    if (sf)
        apt_scanfile_close(&sf, NULL);
    apt_config_destroy(&cfg);
    free(probe);
    return rc;
}

static int is_scan(const char *path)
{
    H5E_auto2_t fn;
    void *data;
    H5Eget_auto2(H5E_DEFAULT, &fn, &data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int scan = f >= 0 && H5Lexists(f, "/entry", H5P_DEFAULT) > 0 && H5Lexists(f, "/entry/scan", H5P_DEFAULT) > 0;
    if (f >= 0)
        H5Fclose(f);
    H5Eset_auto2(H5E_DEFAULT, fn, data);
    return scan;
}

static int progress_cb(void *user, int iter, int iters)
{
    (void)iters;
    cli_progress_update(user, (uint64_t)iter);
    return 0;
}

int cmd_tomo(int argc, char **argv)
{
    tomo_opts o;
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return CLI_OK;
    }
    if (parse(argc, argv, &o)) {
        usage(stderr);
        return CLI_USAGE;
    }
    apt_error err = {0};
    apt_fbp_filter filter;
    if (apt_fbp_filter_parse(o.filter, &filter, &err)) {
        fprintf(stderr, "tomo: --%s\n", err.msg);
        return CLI_USAGE;
    }
    float *sino = NULL, *vol = NULL;
    double *theta = NULL;
    char *yaml = NULL;
    int n = 0, rc;
    apt_grid3 g = {0};
    apt_proj *p = NULL;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (is_scan(o.in)) {
        if ((rc = scan_projections(&o, &sino, &theta, &n, &g, &yaml)))
            goto out;
    } else {
        apt_volume in = {0};
        if (apt_volume_read(o.in, "/exchange/data", &in, &err)) {
            fprintf(stderr, "tomo: %s\n", err.msg);
            rc = err.code == APT_ENOMEM ? CLI_FAIL : CLI_USAGE;
            goto out;
        }
        n = in.Z, sino = in.data;
        g = (apt_grid3){in.X, in.Y, in.X, in.voxel_m[2], in.voxel_m[1], in.voxel_m[2]};
        theta = malloc((size_t)(n ? n : 1) * sizeof *theta);
        if (!theta) {
            rc = CLI_FAIL;
            goto out;
        }
        if ((rc = read_theta(o.in, (size_t)n, theta)))
            goto out;
        for (size_t i = 0; i < (size_t)n * in.Y * in.X; i++)
            if (!isfinite(sino[i])) {
                fprintf(stderr, "tomo: %s: /exchange/data has a non-finite value at element %zu\n", o.in, i);
                rc = CLI_USAGE;
                goto out;
            }
    }
    int Z = o.nz ? o.nz : g.X;
    if (apt_proj_new(Z, g.Y, g.X, g.X, theta, n, o.threads, APT_PROJ_GPU, &p, &err)) {
        fprintf(stderr, "tomo: %s: %s\n", o.in, err.msg);
        rc = CLI_USAGE;
        goto out;
    }
    vol = calloc((size_t)Z * g.Y * g.X, sizeof *vol);
    if (!vol) {
        fprintf(stderr, "tomo: out of memory for the volume\n");
        rc = CLI_FAIL;
        goto out;
    }
    cli_progress pr;
    o.it.progress = progress_cb;
    o.it.user = &pr;
    cli_progress_start(&pr, o.method, (uint64_t)o.it.iters);
    if (!strcmp(o.method, "fbp"))
        rc = apt_fbp(p, sino, filter, vol, &err);
    else if (!strcmp(o.method, "sirt"))
        rc = apt_sirt(p, sino, &o.it, vol, &err);
    else if (!strcmp(o.method, "sart"))
        rc = apt_sart(p, sino, &o.it, vol, &err);
    else
        rc = apt_tv_fista(p, sino, &o.it, vol, &err);
    cli_progress_end(&pr);
    if (rc) {
        fprintf(stderr, "tomo: %s: %s\n", o.method, err.msg);
        rc = rc == APT_EINVAL ? CLI_USAGE : CLI_FAIL;
        goto out;
    }
    apt_volume v = {Z, g.Y, g.X, {g.vz, g.vy, g.vx}, vol};
    apt_result res = {&v, NULL, theta, (size_t)n, yaml, NULL, NULL, 0};
    if (apt_result_write(o.out, &res, &err)) {
        fprintf(stderr, "tomo: %s\n", err.msg);
        rc = CLI_FAIL;
    }
out:
    apt_proj_destroy(&p);
    free(sino);
    free(vol);
    free(theta);
    free(yaml);
    return rc;
}
