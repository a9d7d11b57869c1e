/* cmd_approximant.c - `aptomo approximant scan.h5 -o out.h5`: the offline Approximant through the same per-angle
 * code as the daemon (apt_angle_reconstruct + apt_approx_add). Frames are cropped around the beam centre like the
 * daemon does; settings come from the scan file (instrument) and the config (physics.*, tomo.*). Prints a JSON
 * line per angle (PCC vs ground truth as angles accumulate when the scan has one) and writes a result file.
 * --projections also keeps each angle's integrated phase (apt_angle_projs, as `aptomo tomo` makes them), so the
 * one expensive ptychography pass feeds the classical baselines too. */
#include <errno.h>
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
#include "cli.h"

typedef struct approx_opts {
    const char *scan, *out, *config, *png, *proj, *sets[64];
    int n_sets;
    uint32_t *angles;
    size_t n_angles;
} approx_opts;

static int parse(int argc, char **argv, approx_opts *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: aptomo approximant SCAN.h5 -o OUT.h5 [--config FILE] [--set key=VALUE]...\n"
                   "                          [--angles I,J,...] [--png PREVIEW.png] [--projections P.h5]\n"
                   "Per angle: multislice ptychography (physics.slices, physics.modes, physics.iterations) and the\n"
                   "running Approximant on the sample grid (the scan's ground-truth grid, else tomo.grid). One JSON\n"
                   "line per angle; PCC vs ground truth when the scan carries it.\n"
                   "--projections: also write the angles' integrated-phase projections (Data Exchange [n,Y,U],\n"
                   "theta in processing order, volume_shape) from the same reconstructions, the input of\n"
                   "`aptomo tomo {fbp,sirt,sart,tv} P.h5` (docs/TOMO.md).\n");
            exit(0);
        } else if (a[0] != '-') {
            if (o->scan)
                return -1;
            o->scan = a;
        } else if (!v) {
            return -1;
        } else if (!strcmp(a, "-o")) {
            o->out = v, i++;
        } else if (!strcmp(a, "--config")) {
            o->config = v, i++;
        } else if (!strcmp(a, "--png")) {
            o->png = v, i++;
        } else if (!strcmp(a, "--projections")) {
            o->proj = v, i++;
        } else if (!strcmp(a, "--set") && o->n_sets < 64) {
            o->sets[o->n_sets++] = v, i++;
        } else if (!strcmp(a, "--angles")) {
            size_t n = 1;
            for (const char *p = v; *p; p++)
                n += *p == ',';
            free(o->angles);
            o->angles = calloc(n, sizeof *o->angles);
            o->n_angles = 0;
            char *copy = strdup(v), *save = NULL;
            if (!o->angles || !copy) {
                free(copy);
                return -1;
            }
            for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                uint64_t u;
                if (cli_parse_u64(t, &u) || u > 0xFFFFFFFFu) {
                    free(copy);
                    return -1;
                }
                o->angles[o->n_angles++] = (uint32_t)u;
            }
            free(copy);
            i++;
        } else {
            return -1;
        }
    }
    return o->scan && o->out ? 0 : -1;
}

int cmd_approximant(int argc, char **argv)
{
    approx_opts o;
    if (parse(argc, argv, &o)) {
        fprintf(stderr, "approximant: usage: aptomo approximant SCAN.h5 -o OUT.h5 [--config FILE] [--set k=v] "
                        "[--angles I,J] [--png P.png] [--projections P.h5]\n");
        free(o.angles);
        return CLI_USAGE;
    }
    apt_error err = {0};
    apt_config *cfg = NULL;
    apt_scanfile *sf = NULL;
    apt_angle_ctx *ctx = NULL;
    apt_approx *ap = NULL;
    apt_angle_projs ps = {0};
    float *probe = NULL, *truth = NULL, *vol = NULL;
    double *theta = NULL;
    int rc = CLI_USAGE;
    if (apt_config_load(o.config, &cfg, &err)) {
        fprintf(stderr, "approximant: %s\n", err.msg);
        goto out;
    }
    for (int i = 0; i < o.n_sets; i++)
        if (apt_config_set(cfg, o.sets[i], &err)) {
            fprintf(stderr, "approximant: %s\n", err.msg);
            goto out;
        }
    if (apt_scanfile_open(o.scan, &sf, &err)) {
        fprintf(stderr, "approximant: %s\n", err.msg);
        goto out;
    }
    const apt_scan_header *h = apt_scanfile_header(sf);
    apt_angle_cfg ac;
    if ((rc = apt_angle_cfg_from_scan(sf, cfg, &ac, &probe, &truth, &err))) {
        fprintf(stderr, "approximant: %s\n", err.msg);
        rc = rc == APT_ENOMEM || rc == APT_EIO ? CLI_FAIL : CLI_USAGE;
        goto out;
    }
    rc = CLI_USAGE;
    if (apt_angle_ctx_new(&ac, probe, &ctx, &err) || apt_approx_new(&ac.grid, &ap, &err)) {
        fprintf(stderr, "approximant: %s\n", err.msg);
        goto out;
    }
    if (!o.n_angles) {
        o.angles = calloc(h->n_angles ? h->n_angles : 1, sizeof *o.angles);
        for (uint32_t i = 0; o.angles && i < h->n_angles; i++)
            o.angles[o.n_angles++] = i;
    }
    size_t nvox = (size_t)ac.grid.Z * ac.grid.Y * ac.grid.X;
    vol = malloc(nvox * sizeof *vol);
    theta = malloc((o.n_angles ? o.n_angles : 1) * sizeof *theta);
    if (!vol || !theta) {
        fprintf(stderr, "approximant: out of memory\n");
        rc = CLI_FAIL;
        goto out;
    }
    for (size_t i = 0; i < o.n_angles; i++) { /* every index first: the projections' width needs all angles */
        if (o.angles[i] >= h->n_angles) {
            fprintf(stderr, "approximant: --angles: no angle %u in %s\n", o.angles[i], o.scan);
            goto out;
        }
        theta[i] = h->angles_deg[o.angles[i]];
    }
    if (o.proj && apt_angle_projs_init(&ps, &ac.grid, 0, 0, theta, (int)o.n_angles, &err)) {
        fprintf(stderr, "approximant: --projections %s: %s\n", o.proj, err.msg);
        rc = err.code == APT_ENOMEM ? CLI_FAIL : CLI_USAGE;
        goto out;
    }
    const char *outs[2] = {o.out, o.proj};
    for (int f = 0; f < 2; f++)
        if (outs[f] && cli_check_writable(outs[f])) { /* before the ptychography, not after it */
            fprintf(stderr, "approximant: %s: cannot write: %s\n", outs[f], strerror(errno));
            rc = CLI_FAIL;
            goto out;
        }
    rc = CLI_OK;
    double pcc = NAN;
    for (size_t i = 0; i < o.n_angles && rc == CLI_OK; i++) {
        uint32_t idx = o.angles[i], J = 0;
        apt_angle_result res;
        if (apt_angle_reconstruct_scan(ctx, sf, idx, ac.crop, &res, &J, &err)) {
            fprintf(stderr, "approximant: angle %u: %s\n", idx, err.msg);
            rc = CLI_FAIL;
            break;
        }
        int arc = apt_approx_add(ap, &res.sg, apt_angle_wavelength(ctx), res.object, res.weight, &err);
        if (!arc && o.proj)
            arc = apt_angle_projs_add(&ps, &res, 2 * M_PI / apt_angle_wavelength(ctx), &err);
        if (!arc && truth && !apt_approx_get(ap, vol, &err))
            pcc = apt_metric_pcc(vol, truth, nvox, NULL);
        printf("{\"angle\":%u,\"angle_deg\":%.4f,\"frames_used\":%zu,\"frames_outside\":%zu,\"loss\":[", idx,
               h->angles_deg[idx], res.frames_used, res.frames_outside);
        for (int k = 0; k < res.n_loss; k++)
            printf("%s%.6g", k ? "," : "", res.loss[k]);
        /* live budget: the angle must be done before the next one is acquired (500 Hz in APT) */
        printf("],\"seconds\":%.3f,\"latency_vs_acquisition_500hz\":%.3f,\"angles\":%zu,\"pcc_vs_truth\":%.4f}\n",
               res.seconds, J ? res.seconds / (J / 500.0) : 0.0, i + 1, pcc);
        fflush(stdout);
        apt_angle_result_free(&res);
        if (arc) {
            fprintf(stderr, "approximant: %s\n", err.msg);
            rc = CLI_FAIL;
        }
    }
    if (rc == CLI_OK && !apt_approx_get(ap, vol, &err)) {
        apt_volume v = {ac.grid.Z, ac.grid.Y, ac.grid.X, {ac.grid.vz, ac.grid.vy, ac.grid.vx}, vol};
        const char *names[] = {"pcc_vs_truth"};
        char *yaml = apt_config_dump_yaml(cfg);
        apt_result res = {NULL, &v, theta, o.n_angles, yaml, names, &pcc, truth ? 1 : 0};
        if (apt_result_write(o.out, &res, &err)) {
            fprintf(stderr, "approximant: %s\n", err.msg);
            rc = CLI_FAIL;
        }
        if (rc == CLI_OK && o.proj && apt_angle_projs_write(&ps, o.proj, yaml, &err)) {
            fprintf(stderr, "approximant: --projections: %s\n", err.msg);
            rc = CLI_FAIL;
        }
        free(yaml);
        if (rc == CLI_OK && o.png) {
            apt_volume t = {ac.grid.Z, ac.grid.Y, ac.grid.X, {ac.grid.vz, ac.grid.vy, ac.grid.vx}, truth};
            const apt_volume *vols[2] = {&v, &t};
            const char *labels[2] = {"Approximant", "ground truth (delta)"};
            char title[128];
            snprintf(title, sizeof title, "aptomo Approximant, %zu angles, PCC %.3f", o.n_angles, pcc);
            if (apt_preview_write(o.png, vols, labels, truth ? 2 : 1, title, &err)) {
                fprintf(stderr, "approximant: %s\n", err.msg);
                rc = CLI_FAIL;
            }
        }
    }
out:
    apt_angle_projs_free(&ps);
    apt_approx_destroy(&ap);
    apt_angle_ctx_destroy(&ctx);
    if (sf)
        apt_scanfile_close(&sf, NULL);
    apt_config_destroy(&cfg);
    free(probe);
    free(truth);
    free(vol);
    free(theta);
    free(o.angles);
    return rc;
}
