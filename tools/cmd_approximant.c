/* cmd_approximant.c - `aptomo approximant scan.h5 -o out.h5`: the offline Approximant through the same per-angle
 * code as the daemon (apt_angle_reconstruct + apt_approx_add, in approx_scan.c, which `aptomo dataset` shares).
 * Frames are cropped around the beam centre like the daemon does; settings come from the scan file (instrument)
 * and the config (physics.*, tomo.*). Prints a JSON line per angle (PCC vs ground truth as angles accumulate when
 * the scan has one) and writes a result file. --projections also keeps each angle's integrated phase
 * (apt_angle_projs, as `aptomo tomo` makes them), so the one expensive ptychography pass feeds the classical
 * baselines too. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/angle.h"
#include "aptomo/config.h"
#include "aptomo/frame.h"
#include "aptomo/metrics.h"
#include "aptomo/preview.h"
#include "aptomo/scanfile.h"
#include "aptomo/volume.h"
#include "approx_scan.h"
#include "cli.h"

typedef struct approx_opts {
    const char *scan, *out, *config, *png, *proj, *sets[64];
    int n_sets;
    uint32_t *angles;
    size_t n_angles;
} approx_opts;

static const char HELP[] =
    "usage: aptomo approximant SCAN.h5 -o OUT.h5 [--config FILE] [--set key=VALUE]...\n"
    "                          [--angles I,J,...] [--png PREVIEW.png] [--projections P.h5]\n"
    "Per angle: multislice ptychography (physics.slices, physics.modes, physics.iterations) and the\n"
    "running Approximant on the sample grid (the scan's ground-truth grid, else tomo.grid). One JSON\n"
    "line per angle on stdout; PCC vs ground truth when the scan carries it; a progress bar with ETA on\n"
    "stderr when it is a terminal. Every output is checked writable before the first angle.\n"
    "  -o OUT.h5            result file (Data Exchange, docs/FILES.md), required\n"
    "  --config FILE        aptomod configuration (physics.*, tomo.*); default the built-in defaults\n"
    "  --set key=VALUE      override a configuration key, repeatable\n"
    "  --angles I,J,...     angle indices to use, in this order (default all)\n"
    "  --png PREVIEW.png    central slices of the result (and the ground truth)\n"
    "  --projections P.h5   also write the angles' integrated-phase projections (Data Exchange [n,Y,U],\n"
    "                       theta in processing order, volume_shape) from the same reconstructions, the\n"
    "                       input of `aptomo tomo {fbp,sirt,sart,tv} P.h5` (docs/TOMO.md).\n";

/* CLI_OK, or the exit status to return (-1: help printed, exit 0). */
static int parse(int argc, char **argv, approx_opts *o)
{
    enum { O_CONFIG = 256, O_PNG, O_PROJ, O_SET, O_ANGLES };
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},      {"config", required_argument, NULL, O_CONFIG},
        {"png", required_argument, NULL, O_PNG},       {"projections", required_argument, NULL, O_PROJ},
        {"set", required_argument, NULL, O_SET},       {"angles", required_argument, NULL, O_ANGLES},
        {0}};
    memset(o, 0, sizeof *o);
    cli_parser p;
    int c = 0;
    cli_init(&p, "approximant", HELP, "o:", opts, argc, argv);
    while ((c = cli_next(&p)) > 0) {
        switch (c) {
        case 'o': o->out = p.arg; break;
        case O_CONFIG: o->config = p.arg; break;
        case O_PNG: o->png = p.arg; break;
        case O_PROJ: o->proj = p.arg; break;
        case O_SET:
            if (o->n_sets == 64)
                return cli_fail(&p, "at most 64 --set");
            o->sets[o->n_sets++] = p.arg;
            break;
        case O_ANGLES: cli_index_list(&p, &o->angles, &o->n_angles); break;
        }
    }
    int cli_rc = cli_done(&p, c, 1, 1, "SCAN.h5");
    if (cli_rc != CLI_GO)
        return cli_rc == CLI_OK ? -1 : cli_rc;
    o->scan = p.args[0];
    if (!o->out)
        return cli_fail(&p, "-o OUT.h5 is required");
    return CLI_OK;
}

int cmd_approximant(int argc, char **argv)
{
    approx_opts o;
    int prc = parse(argc, argv, &o);
    if (prc) {
        free(o.angles);
        return prc < 0 ? CLI_OK : prc;
    }
    /* outputs first: hours of ptychography must not end in "cannot write" */
    const char *outs[3][2] = {{"-o", o.out}, {"--projections", o.proj}, {"--png", o.png}};
    for (int f = 0; f < 3; f++)
        if ((prc = cli_check_output(outs[f][0], outs[f][1]))) {
            free(o.angles);
            return prc;
        }
    apt_error err = {0};
    apt_config *cfg = NULL;
    apt_scanfile *sf = NULL;
    approx_scan as;
    memset(&as, 0, sizeof as);
    apt_angle_projs ps = {0};
    double *theta = NULL;
    int rc = CLI_USAGE;
    if (apt_config_load(o.config, &cfg, &err)) {
        fprintf(stderr, "aptomo approximant: %s\n", err.msg);
        goto out;
    }
    for (int i = 0; i < o.n_sets; i++)
        if (apt_config_set(cfg, o.sets[i], &err)) {
            fprintf(stderr, "aptomo approximant: %s\n", err.msg);
            goto out;
        }
    if (apt_scanfile_open(o.scan, &sf, &err)) {
        fprintf(stderr, "aptomo approximant: %s\n", err.msg);
        goto out;
    }
    const apt_scan_header *h = apt_scanfile_header(sf);
    if ((rc = approx_scan_open(&as, sf, cfg, 0, &err))) {
        fprintf(stderr, "aptomo approximant: %s\n", err.msg);
        rc = rc == APT_ENOMEM || rc == APT_EIO ? CLI_FAIL : CLI_USAGE;
        goto out;
    }
    rc = CLI_USAGE;
    if (!o.n_angles) {
        o.angles = calloc(h->n_angles ? h->n_angles : 1, sizeof *o.angles);
        for (uint32_t i = 0; o.angles && i < h->n_angles; i++)
            o.angles[o.n_angles++] = i;
    }
    theta = malloc((o.n_angles ? o.n_angles : 1) * sizeof *theta);
    if (!o.angles || !theta) {
        fprintf(stderr, "aptomo approximant: out of memory\n");
        rc = CLI_FAIL;
        goto out;
    }
    for (size_t i = 0; i < o.n_angles; i++) { /* every index first: the projections' width needs all angles */
        if (o.angles[i] >= h->n_angles) {
            fprintf(stderr, "aptomo approximant: --angles: no angle %u in %s\n", o.angles[i], o.scan);
            goto out;
        }
        theta[i] = h->angles_deg[o.angles[i]];
    }
    if (o.proj && apt_angle_projs_init(&ps, &as.ac.grid, 0, 0, theta, (int)o.n_angles, &err)) {
        fprintf(stderr, "aptomo approximant: --projections %s: %s\n", o.proj, err.msg);
        rc = err.code == APT_ENOMEM ? CLI_FAIL : CLI_USAGE;
        goto out;
    }
    rc = CLI_OK;
    cli_progress bar;
    cli_progress_start(&bar, "approximant", o.n_angles);
    cli_progress_update(&bar, 0);
    for (size_t i = 0; i < o.n_angles && rc == CLI_OK; i++) {
        uint32_t idx = o.angles[i], J = 0;
        apt_angle_result res;
        int arc = approx_scan_add(&as, sf, idx, &res, &J, &err);
        if (arc && !res.object) { /* the reconstruction itself failed: nothing to report */
            cli_progress_clear(&bar);
            fprintf(stderr, "aptomo approximant: %s\n", err.msg);
            apt_angle_result_free(&res);
            rc = CLI_FAIL;
            break;
        }
        if (!arc && o.proj)
            arc = apt_angle_projs_add(&ps, &res, 2 * M_PI / apt_angle_wavelength(as.ctx), &err);
        cli_progress_clear(&bar); /* the JSON line must not land inside the bar on a shared terminal */
        printf("{\"angle\":%u,\"angle_deg\":%.4f,\"frames_used\":%zu,\"frames_outside\":%zu,\"loss\":[", idx,
               h->angles_deg[idx], res.frames_used, res.frames_outside);
        for (int k = 0; k < res.n_loss; k++)
            printf("%s%.6g", k ? "," : "", res.loss[k]);
        /* live budget: the angle must be done before the next one is acquired (500 Hz in APT) */
        printf("],\"seconds\":%.3f,\"latency_vs_acquisition_500hz\":%.3f,\"angles\":%zu,\"pcc_vs_truth\":%.4f}\n",
               res.seconds, J ? res.seconds / (J / 500.0) : 0.0, i + 1, as.pcc);
        fflush(stdout);
        apt_angle_result_free(&res);
        if (arc) {
            fprintf(stderr, "aptomo approximant: %s\n", err.msg);
            rc = CLI_FAIL;
        } else {
            cli_progress_update(&bar, i + 1);
        }
    }
    if (rc == CLI_OK)
        cli_progress_end(&bar);
    if (rc == CLI_OK && approx_scan_write(&as, o.out, theta, o.n_angles, cfg, &err)) {
        fprintf(stderr, "aptomo approximant: %s\n", err.msg);
        rc = CLI_FAIL;
    }
    if (rc == CLI_OK && o.proj) {
        char *yaml = apt_config_dump_yaml(cfg);
        if (apt_angle_projs_write(&ps, o.proj, yaml, &err)) {
            fprintf(stderr, "aptomo approximant: --projections: %s\n", err.msg);
            rc = CLI_FAIL;
        }
        free(yaml);
    }
    if (rc == CLI_OK && o.png) {
        const apt_grid3 *g = &as.ac.grid;
        apt_volume v = {g->Z, g->Y, g->X, {g->vz, g->vy, g->vx}, as.vol};
        apt_volume t = {g->Z, g->Y, g->X, {g->vz, g->vy, g->vx}, as.truth};
        const apt_volume *vols[2] = {&v, &t};
        const char *labels[2] = {"Approximant", "ground truth (delta)"};
        char title[128];
        snprintf(title, sizeof title, "aptomo Approximant, %zu angles, PCC %.3f", o.n_angles, as.pcc);
        if (apt_preview_write(o.png, vols, labels, as.truth ? 2 : 1, title, &err)) {
            fprintf(stderr, "aptomo approximant: %s\n", err.msg);
            rc = CLI_FAIL;
        }
    }
out:
    apt_angle_projs_free(&ps);
    approx_scan_close(&as);
    if (sf)
        apt_scanfile_close(&sf, NULL);
    apt_config_destroy(&cfg);
    free(theta);
    free(o.angles);
    return rc;
}
