/* cmd_tomo.c - `aptomo tomo {fbp,sirt,sart,tv} IN.h5 -o OUT.h5`: the classical baselines on Data Exchange
 * projections (/exchange/data [Ntheta,Y,U], /exchange/theta degrees, volume_shape when aptomo wrote them) or on a
 * scan file (/entry/scan): then each angle goes through the daemon's per-angle ptychography and becomes an
 * integrated-phase projection (apt_angle_projs, src/angle/angle_proj.c) on a detector wide enough for the tilted
 * slab; --save-projections keeps them so the other methods need no second ptychography pass. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/angle.h"
#include "aptomo/clock.h"
#include "aptomo/config.h"
#include "aptomo/frame.h"
#include "aptomo/log.h"
#include "aptomo/scanfile.h"
#include "aptomo/tomo.h"
#include "aptomo/volume.h"
#include "cli.h"

typedef struct tomo_opts {
    const char *method, *in, *out, *config, *filter, *save, *sets[64];
    int n_sets, nz, nx, threads;
    apt_iter_opts it;
} tomo_opts;

static const char HELP[] =
    "usage: aptomo tomo {fbp,sirt,sart,tv} IN.h5 -o OUT.h5 [--iters K] [--nz NZ] [--nx NX]\n"
    "       [--filter ramp|shepp|hann] [--lambda L] [--subsets S] [--relax R] [--allow-negative]\n"
    "       [--no-cylinder] [--ray-window none|hamming] [--save-projections P.h5]\n"
    "       [--threads T] [--config FILE] [--set key=VALUE]...\n"
    "IN: Data Exchange projections (/exchange/data [Ntheta,Y,U], /exchange/theta in degrees; e.g. from\n"
    "`aptomo approximant --projections` or --save-projections) or a scan file (/entry/scan: per-angle\n"
    "ptychography, integrated phase on U columns wide enough for the tilted sample, docs/TOMO.md).\n"
    "OUT: /exchange/data [NZ,Y,NX]. Defaults: scan file: the ground-truth grid (else tomo.grid);\n"
    "projections: their volume_shape attribute, else NZ = NX = U. --nx <= U, centred.\n"
    "--save-projections (scan input): write the projections (with volume_shape) for later runs.\n"
    "Defaults: fbp ramp; sirt 100 iters relax 1; sart 10 iters, one angle per subset, relax 0.5;\n"
    "tv 100 iters lambda 0.005 (relative to max|A^T b|); iterative volumes non-negative and\n"
    "zero outside the cylinder every view sees. --ray-window hamming (sirt, sart): weight each ray's\n"
    "correction by a Hamming window along the ray, as scikit-image's iradon_sart (a prior towards the\n"
    "middle of the rays; docs/TOMO.md). Outputs are checked writable before the work; a\n"
    "progress bar with ETA (ptychography angles, iterations) goes to stderr when it is a terminal.\n";

/* CLI_OK, or the exit status to return (-1: help printed, exit 0). */
static int parse(int argc, char **argv, tomo_opts *o)
{
    enum { O_CONFIG = 256, O_SET, O_FILTER, O_ITERS, O_NZ, O_NX, O_SAVE, O_SUBSETS, O_THREADS, O_LAMBDA, O_RELAX,
           O_ALLOWNEG, O_NOCYL, O_WINDOW };
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},          {"config", required_argument, NULL, O_CONFIG},
        {"set", required_argument, NULL, O_SET},           {"filter", required_argument, NULL, O_FILTER},
        {"iters", required_argument, NULL, O_ITERS},       {"nz", required_argument, NULL, O_NZ},
        {"nx", required_argument, NULL, O_NX},             {"save-projections", required_argument, NULL, O_SAVE},
        {"subsets", required_argument, NULL, O_SUBSETS},   {"threads", required_argument, NULL, O_THREADS},
        {"lambda", required_argument, NULL, O_LAMBDA},     {"relax", required_argument, NULL, O_RELAX},
        {"allow-negative", no_argument, NULL, O_ALLOWNEG}, {"no-cylinder", no_argument, NULL, O_NOCYL},
        {"ray-window", required_argument, NULL, O_WINDOW}, {0}};
    memset(o, 0, sizeof *o);
    o->filter = "ramp";
    int iters = -1, subsets = -1, nonneg = 1, cylinder = 1, window = 0, c = 0;
    double lambda = NAN, relax = NAN;
    cli_parser p;
    cli_init(&p, "tomo", HELP, "o:", opts, argc, argv);
    while ((c = cli_next(&p)) > 0) {
        switch (c) {
        case 'o': o->out = p.arg; break;
        case O_CONFIG: o->config = p.arg; break;
        case O_SET:
            if (o->n_sets == 64)
                return cli_fail(&p, "at most 64 --set");
            o->sets[o->n_sets++] = p.arg;
            break;
        case O_FILTER: o->filter = p.arg; break;
        case O_ITERS: cli_int(&p, 0, 100000, &iters); break;
        case O_NZ: cli_int(&p, 1, APT_TOMO_MAX_SIDE, &o->nz); break;
        case O_NX: cli_int(&p, 1, APT_TOMO_MAX_SIDE, &o->nx); break;
        case O_SAVE: o->save = p.arg; break;
        case O_SUBSETS: cli_int(&p, 1, APT_TOMO_MAX_ANGLES, &subsets); break;
        case O_THREADS: cli_int(&p, 0, 256, &o->threads); break;
        case O_LAMBDA: cli_real(&p, 0, INFINITY, 0, &lambda); break;
        case O_RELAX: cli_real(&p, 0, 2, CLI_OPEN_LO | CLI_OPEN_HI, &relax); break;
        case O_ALLOWNEG: nonneg = 0; break;
        case O_NOCYL: cylinder = 0; break;
        case O_WINDOW:
            if (strcmp(p.arg, "none") && strcmp(p.arg, "hamming"))
                return cli_fail(&p, "--ray-window: '%s' is not one of none, hamming", p.arg);
            window = !strcmp(p.arg, "hamming");
            break;
        }
    }
    int cli_rc = cli_done(&p, c, 2, 2, "fbp|sirt|sart|tv IN.h5");
    if (cli_rc != CLI_GO)
        return cli_rc == CLI_OK ? -1 : cli_rc;
    o->method = p.args[0];
    o->in = p.args[1];
    if (strcmp(o->method, "fbp") && strcmp(o->method, "sirt") && strcmp(o->method, "sart") &&
        strcmp(o->method, "tv"))
        return cli_fail(&p, "method '%s' is not one of fbp, sirt, sart, tv", o->method);
    if (!o->out)
        return cli_fail(&p, "-o OUT.h5 is required");
    apt_iter_opts_default(&o->it, o->method); /* the method's defaults, then what was given */
    o->it.iters = iters >= 0 ? iters : o->it.iters;
    o->it.subsets = subsets >= 0 ? subsets : o->it.subsets;
    o->it.lambda = isnan(lambda) ? o->it.lambda : lambda;
    o->it.relax = isnan(relax) ? o->it.relax : relax;
    o->it.nonneg = nonneg ? o->it.nonneg : 0;
    o->it.cylinder = cylinder ? o->it.cylinder : 0;
    o->it.ray_window = window;
    if (window && strcmp(o->method, "sirt") && strcmp(o->method, "sart"))
        return cli_fail(&p, "--ray-window is for sirt and sart, not %s", o->method);
    return CLI_OK;
}

/* --- Data Exchange input ------------------------------------------------------------------------------- */

static int read_theta(const char *path, size_t n, double *theta)
{
    apt_error err = {0};
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return fprintf(stderr, "aptomo tomo: %s: cannot open\n", path), CLI_USAGE;
    int rc = CLI_USAGE;
    hid_t d = H5Lexists(f, "/exchange/theta", H5P_DEFAULT) > 0 ? H5Dopen2(f, "/exchange/theta", H5P_DEFAULT) : -1;
    hid_t s = d >= 0 ? H5Dget_space(d) : -1;
    hsize_t dims[2] = {0, 0};
    int rank = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    if (d < 0)
        fprintf(stderr, "aptomo tomo: %s: /exchange/theta: missing\n", path);
    else if (rank != 1 || H5Sget_simple_extent_dims(s, dims, NULL) < 0 || dims[0] != n)
        fprintf(stderr,
                "aptomo tomo: %s: /exchange/theta: want %zu angles (first axis of /exchange/data), have %s%llu\n",
                path, n, rank == 1 ? "" : "rank ", rank == 1 ? (unsigned long long)dims[0] : (unsigned long long)rank);
    else if (H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, theta) < 0)
        fprintf(stderr, "aptomo tomo: %s: /exchange/theta: read failed\n", path);
    else
        rc = CLI_OK;
    for (size_t i = 0; rc == CLI_OK && i < n; i++)
        if (!isfinite(theta[i])) {
            fprintf(stderr, "aptomo tomo: %s: /exchange/theta[%zu] is not finite\n", path, i);
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

/* Projections from a scan file: the per-angle ptychography into ps (src/angle/angle_proj.c) on a detector wide
   enough for the tilted slab. The volume is the scan's ground-truth grid (else tomo.grid), --nz/--nx override. */
static int scan_projections(const tomo_opts *o, apt_angle_projs *ps, char **yaml)
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
    apt_angle_cfg ac;
    if ((rc = apt_angle_cfg_from_scan(sf, cfg, &ac, &probe, NULL, &err))) {
        rc = rc == APT_ENOMEM || rc == APT_EIO ? CLI_FAIL : CLI_USAGE;
        goto fail;
    }
    rc = CLI_USAGE;
    if (apt_angle_ctx_new(&ac, probe, &ctx, &err))
        goto fail;
    if ((rc = apt_angle_projs_init(ps, &ac.grid, o->nz, o->nx, h->angles_deg, (int)h->n_angles, &err))) {
        rc = rc == APT_ENOMEM ? CLI_FAIL : CLI_USAGE;
        goto fail;
    }
    rc = CLI_FAIL;
    double k = 2 * M_PI / apt_angle_wavelength(ctx);
    cli_progress pr;
    cli_progress_start(&pr, "ptychography", h->n_angles);
    for (uint32_t a = 0; a < h->n_angles; a++) {
        uint32_t J = 0;
        apt_angle_result res;
        if (apt_angle_reconstruct_scan(ctx, sf, a, ac.crop, &res, &J, &err)) {
            apt_err_prefix(&err, APT_EINVAL, "angle %u: ", a);
            cli_progress_clear(&pr);
            goto fail;
        }
        int prc = apt_angle_projs_add(ps, &res, k, &err);
        apt_angle_result_free(&res);
        if (prc) {
            cli_progress_clear(&pr);
            goto fail;
        }
        cli_progress_update(&pr, a + 1);
    }
    cli_progress_end(&pr);
    *yaml = apt_config_dump_yaml(cfg);
    if (o->save && apt_angle_projs_write(ps, o->save, *yaml, &err))
        goto fail;
    rc = CLI_OK;
fail:
    if (rc != CLI_OK)
        fprintf(stderr, "aptomo tomo: %s\n", err.msg[0] ? err.msg : "out of memory");
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

/* Data Exchange input: sino [n, Y, U] and theta; the volume from volume_shape when present, else [U, Y, U]. */
static int dx_projections(const tomo_opts *o, apt_volume *in, double **theta, int *U, apt_grid3 *g)
{
    apt_error err = {0};
    int shape[3];
    if (apt_volume_read(o->in, "/exchange/data", in, &err) || apt_angle_proj_read_shape(o->in, shape, &err)) {
        fprintf(stderr, "aptomo tomo: %s\n", err.msg);
        return err.code == APT_ENOMEM ? CLI_FAIL : CLI_USAGE;
    }
    int n = in->Z;
    *U = in->X;
    *theta = malloc((size_t)(n ? n : 1) * sizeof **theta);
    if (!*theta)
        return fprintf(stderr, "aptomo tomo: out of memory\n"), CLI_FAIL;
    int rc = read_theta(o->in, (size_t)n, *theta);
    if (rc)
        return rc;
    for (size_t i = 0; i < (size_t)n * in->Y * in->X; i++)
        if (!isfinite(in->data[i])) {
            fprintf(stderr, "aptomo tomo: %s: /exchange/data has a non-finite value at element %zu\n", o->in, i);
            return CLI_USAGE;
        }
    double vx = in->voxel_m[2], vy = in->voxel_m[1];
    if (shape[0]) {
        if (shape[1] != in->Y || shape[2] > *U) {
            fprintf(stderr, "aptomo tomo: %s: /exchange/data: volume_shape [%d, %d, %d] does not fit projections "
                    "[%d, %d, %d] (Y must match, X <= U)\n", o->in, shape[0], shape[1], shape[2], n, in->Y, *U);
            return CLI_USAGE;
        }
        *g = (apt_grid3){shape[0], in->Y, shape[2], in->voxel_m[0], vy, vx};
    } else {
        *g = (apt_grid3){*U, in->Y, *U, vx, vy, vx};
    }
    g->Z = o->nz ? o->nz : g->Z;
    g->X = o->nx ? o->nx : g->X;
    if (g->X > *U) {
        fprintf(stderr, "aptomo tomo: --nx %d is wider than the %d detector columns of %s\n", g->X, *U, o->in);
        return CLI_USAGE;
    }
    return CLI_OK;
}

static int progress_cb(void *user, int iter, int iters)
{
    (void)iters;
    cli_progress_update(user, (uint64_t)iter);
    return 0;
}

int cmd_tomo(int argc, char **argv)
{
    /* APTOMO_LOG=debug: phase timings and the FFTW wisdom cache's decisions on stderr */
    const char *lv = getenv("APTOMO_LOG");
    if (lv && apt_log_parse_level(lv) >= 0)
        apt_log_set_level(apt_log_parse_level(lv));
    double t_start = apt_now(), t_read = 0, t_recon = 0;
    tomo_opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    apt_error err = {0};
    apt_fbp_filter filter;
    if (apt_fbp_filter_parse(o.filter, &filter, &err)) {
        fprintf(stderr, "aptomo tomo: --%s\nTry 'aptomo help tomo' for usage.\n", err.msg);
        return CLI_USAGE;
    }
    /* outputs first: the ptychography of a scan file takes hours */
    if ((rc = cli_check_output("-o", o.out)) || (rc = cli_check_output("--save-projections", o.save)))
        return rc;
    apt_angle_projs ps = {0};
    apt_volume in = {0};
    float *sino = NULL, *vol = NULL;
    double *theta = NULL, *dx_theta = NULL;
    char *yaml = NULL;
    int n = 0, U = 0;
    apt_grid3 g = {0};
    apt_proj *p = NULL;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (is_scan(o.in)) {
        if ((rc = scan_projections(&o, &ps, &yaml)))
            goto out;
        sino = ps.data, theta = ps.theta_deg, n = ps.n, U = ps.U, g = ps.grid;
        g.Z = ps.vol_Z, g.X = ps.vol_X;
    } else {
        if (o.save) {
            fprintf(stderr, "aptomo tomo: --save-projections: %s already holds projections (it needs a scan file)\n",
                    o.in);
            rc = CLI_USAGE;
            goto out;
        }
        if ((rc = dx_projections(&o, &in, &dx_theta, &U, &g)))
            goto out;
        sino = in.data, theta = dx_theta, n = in.Z;
    }
    t_read = apt_now();
    /* Only TV runs the projector's whole-volume operators (the ones with a CUDA twin); FBP back-projects itself and
       SIRT/SART work slice by slice on the CPU kernels, so asking them for the GPU would only make every run pay
       the CUDA runtime's start-up (device discovery) for nothing. */
    apt_backend proj_backend = !strcmp(o.method, "tv") ? APT_BACKEND_AUTO : APT_BACKEND_CPU;
    if (apt_proj_new(g.Z, g.Y, g.X, U, theta, n, o.threads, proj_backend, &p, &err)) {
        fprintf(stderr, "aptomo tomo: %s: %s\n", o.in, err.msg);
        rc = CLI_USAGE;
        goto out;
    }
    vol = calloc((size_t)g.Z * g.Y * g.X, sizeof *vol);
    if (!vol) {
        fprintf(stderr, "aptomo tomo: out of memory for the volume\n");
        rc = CLI_FAIL;
        goto out;
    }
    cli_progress pr; /* per iteration; fbp is one pass */
    o.it.progress = progress_cb;
    o.it.user = &pr;
    cli_progress_start(&pr, o.method, (uint64_t)o.it.iters);
    if (!strcmp(o.method, "fbp"))
        pr.tty = 0;
    cli_progress_update(&pr, 0);
    if (!strcmp(o.method, "fbp"))
        rc = apt_fbp(p, sino, filter, vol, &err);
    else if (!strcmp(o.method, "sirt"))
        rc = apt_sirt(p, sino, &o.it, vol, &err);
    else if (!strcmp(o.method, "sart"))
        rc = apt_sart(p, sino, &o.it, vol, &err);
    else
        rc = apt_tv_fista(p, sino, &o.it, vol, &err);
    t_recon = apt_now();
    if (rc)
        cli_progress_clear(&pr);
    else
        cli_progress_end(&pr);
    if (rc) {
        fprintf(stderr, "aptomo tomo: %s: %s\n", o.method, err.msg);
        rc = rc == APT_EINVAL ? CLI_USAGE : CLI_FAIL;
        goto out;
    }
    apt_volume v = {g.Z, g.Y, g.X, {g.vz, g.vy, g.vx}, vol};
    apt_result res = {&v, NULL, theta, (size_t)n, yaml, NULL, NULL, 0};
    if (apt_result_write(o.out, &res, &err)) {
        fprintf(stderr, "aptomo tomo: %s\n", err.msg);
        rc = CLI_FAIL;
    }
    apt_debug("tomo %s: %d x %d x %d from %d angles on %s, %d threads: input %.4f s, %s %.4f s, output %.4f s",
              o.method, g.Z, g.Y, g.X, n, apt_backend_name(apt_proj_backend(p)), apt_proj_threads(p), t_read - t_start, o.method,
              t_recon - t_read, apt_now() - t_recon);
out:
    apt_proj_destroy(&p);
    apt_angle_projs_free(&ps);
    apt_volume_free(&in);
    free(dx_theta);
    free(vol);
    free(yaml);
    return rc;
}
