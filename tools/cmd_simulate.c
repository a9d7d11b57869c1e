/* cmd_simulate.c - `aptomo simulate --config FILE [--phantom VOL.h5] [--set k=v]... -o scan.h5`: a physically
 * modelled IC ptycho-tomography scan (libaptomo's src/sim): phantom (or the given delta/beta volume), probe modes
 * from physics.probe, per-angle Poisson frames from the multislice model, ground truth. Thin: parse, call, report. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aptomo/config.h"
#include "aptomo/sim.h"
#include "cli.h"

#define MAX_SETS 256

static void usage(void)
{
    fprintf(stderr,
            "usage: aptomo simulate --config FILE [--phantom VOL.h5] [--set dotted.key=VALUE]... -o scan.h5\n"
            "  --config FILE     aptomod configuration (physics.*, detector.crop, sim.*)\n"
            "  --phantom VOL.h5  delta volume /exchange/data [Z,Y,X] (+ /exchange/beta, /exchange/voxel_size_m)\n"
            "                    instead of the IC phantom; resampled to sim.grid / sim.voxel_size_m\n"
            "  --set k=v         override a configuration key (YAML flow value), repeatable\n"
            "  -o scan.h5        output scan file (docs/FILES.md), with /entry/sample/ground_truth\n");
}

static void on_angle(void *ctx, int done, int total)
{
    (void)total;
    cli_progress_update(ctx, (uint64_t)done);
}

/* Input faults (bad config values, bad phantom file) are usage errors; the rest are runtime failures. */
static int status_of(int rc)
{
    return rc == APT_EINVAL || rc == APT_ERANGE ? CLI_USAGE : CLI_FAIL;
}

int cmd_simulate(int argc, char **argv)
{
    const char *config = NULL, *phantom = NULL, *out = NULL;
    const char *sets[MAX_SETS];
    int nsets = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--config") && more)
            config = argv[++i];
        else if (!strcmp(a, "--phantom") && more)
            phantom = argv[++i];
        else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && more)
            out = argv[++i];
        else if (!strcmp(a, "--set") && more) {
            if (nsets == MAX_SETS) {
                fprintf(stderr, "simulate: at most %d --set\n", MAX_SETS);
                return CLI_USAGE;
            }
            sets[nsets++] = argv[++i];
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return CLI_OK;
        } else {
            fprintf(stderr, "simulate: unknown or incomplete argument '%s'\n", a);
            usage();
            return CLI_USAGE;
        }
    }
    if (!config || !out) {
        fprintf(stderr, "simulate: %s is required\n", !config ? "--config" : "-o");
        usage();
        return CLI_USAGE;
    }

    apt_error err = {0};
    apt_config *cfg = NULL;
    float *probe = NULL, *delta = NULL, *beta = NULL;
    int status = CLI_OK, rc;
    if ((rc = apt_config_load(config, &cfg, &err))) {
        fprintf(stderr, "simulate: %s\n", err.msg);
        return CLI_USAGE;
    }
    for (int i = 0; i < nsets; i++)
        if ((rc = apt_config_set(cfg, sets[i], &err))) {
            fprintf(stderr, "simulate: %s\n", err.msg);
            status = CLI_USAGE;
            goto done;
        }
    apt_sim_opts o;
    int M, H, W;
    double px;
    if ((rc = apt_sim_opts_from_config(cfg, &o, &err)) ||
        (rc = apt_sim_probe_from_config(cfg, o.photons, &probe, &M, &H, &W, &px, &err))) {
        fprintf(stderr, "simulate: %s: %s\n", config, err.msg);
        status = status_of(rc);
        goto done;
    }
    if (phantom && (rc = apt_sim_phantom_load(phantom, &o.grid, &delta, &beta, &err))) {
        fprintf(stderr, "simulate: %s\n", err.msg);
        status = status_of(rc);
        goto done;
    }
    cli_progress bar;
    cli_progress_start(&bar, "simulate", (uint64_t)o.angles);
    rc = apt_sim_write_scan(&o, probe, M, H, W, delta, beta, out, on_angle, &bar, &err);
    cli_progress_end(&bar);
    if (rc) {
        fprintf(stderr, "simulate: %s\n", err.msg);
        status = status_of(rc);
        unlink(out); /* never leave a half-written scan behind */
        goto done;
    }
    fprintf(stderr, "simulate: %s: %d angles, %d modes of %dx%d, object pixel %.4g m, grid %dx%dx%d\n", out,
            o.angles, M, H, W, px, o.grid.Z, o.grid.Y, o.grid.X);
done:
    free(probe);
    free(delta);
    free(beta);
    apt_config_destroy(&cfg);
    return status;
}
