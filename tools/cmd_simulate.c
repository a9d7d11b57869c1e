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

static const char HELP[] =
    "usage: aptomo simulate --config FILE [--phantom VOL.h5] [--set dotted.key=VALUE]... -o scan.h5\n"
    "A physically modelled IC ptycho-tomography scan: phantom, probe modes, per-angle Poisson frames from the\n"
    "multislice model, ground truth. Progress bar with ETA on stderr when it is a terminal.\n"
    "  --config FILE     aptomod configuration (physics.*, detector.crop, sim.*), required\n"
    "  --phantom VOL.h5  delta volume /exchange/data [Z,Y,X] (+ /exchange/beta, /exchange/voxel_size_m)\n"
    "                    instead of the IC phantom; resampled to sim.grid / sim.voxel_size_m\n"
    "  --set k=v         override a configuration key (YAML flow value), repeatable\n"
    "  -o scan.h5        output scan file (docs/FILES.md), with /entry/sample/ground_truth, required\n";

static void on_angle(void *ctx, int done, int total)
{
    (void)total;
    cli_progress_update(ctx, (uint64_t)done);
}

int cmd_simulate(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"phantom", required_argument, NULL, 'p'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"set", required_argument, NULL, 's'}, {0}};
    const char *config = NULL, *phantom = NULL, *out = NULL;
    const char *sets[MAX_SETS];
    int nsets = 0, c;
    cli_parser p;
    cli_init(&p, "simulate", HELP, "o:", opts, argc, argv);
    while ((c = cli_next(&p)) > 0) {
        if (c == 'c')
            config = p.arg;
        else if (c == 'p')
            phantom = p.arg;
        else if (c == 'o')
            out = p.arg;
        else if (nsets == MAX_SETS)
            return cli_fail(&p, "at most %d --set", MAX_SETS);
        else
            sets[nsets++] = p.arg;
    }
    int cli_rc = cli_done(&p, c, 0, 0, "");
    if (cli_rc != CLI_GO)
        return cli_rc;
    if (!config || !out)
        return cli_fail(&p, "%s is required", !config ? "--config FILE" : "-o scan.h5");
    if ((c = cli_check_output("-o", out)))
        return c;

    apt_error err = {0};
    apt_config *cfg = NULL;
    float *probe = NULL, *delta = NULL, *beta = NULL;
    int status = CLI_OK, rc;
    if ((rc = apt_config_load(config, &cfg, &err))) {
        fprintf(stderr, "aptomo simulate: %s\n", err.msg);
        return CLI_USAGE;
    }
    for (int i = 0; i < nsets; i++)
        if ((rc = apt_config_set(cfg, sets[i], &err))) {
            fprintf(stderr, "aptomo simulate: %s\n", err.msg);
            status = CLI_USAGE;
            goto done;
        }
    apt_sim_opts o;
    int M, H, W;
    double px;
    if ((rc = apt_sim_opts_from_config(cfg, &o, &err)) ||
        (rc = apt_sim_probe_from_config(cfg, o.photons, &probe, &M, &H, &W, &px, &err))) {
        fprintf(stderr, "aptomo simulate: %s: %s\n", config, err.msg);
        status = cli_status(rc, CLI_RUN);
        goto done;
    }
    if (phantom && (rc = apt_sim_phantom_load(phantom, &o.grid, &delta, &beta, &err))) {
        fprintf(stderr, "aptomo simulate: %s\n", err.msg);
        status = cli_status(rc, CLI_RUN);
        goto done;
    }
    cli_progress bar;
    cli_progress_start(&bar, "simulate", (uint64_t)o.angles);
    rc = apt_sim_write_scan(&o, probe, M, H, W, delta, beta, out, on_angle, &bar, &err);
    if (rc)
        cli_progress_clear(&bar);
    else
        cli_progress_end(&bar);
    if (rc) {
        fprintf(stderr, "aptomo simulate: %s\n", err.msg);
        status = cli_status(rc, CLI_RUN);
        unlink(out); /* never leave a half-written scan behind */
        goto done;
    }
    fprintf(stderr, "aptomo simulate: wrote %s: %d angles, %d modes of %dx%d, object pixel %.4g m, grid %dx%dx%d\n",
            out, o.angles, M, H, W, px, o.grid.Z, o.grid.Y, o.grid.X);
done:
    free(probe);
    free(delta);
    free(beta);
    apt_config_destroy(&cfg);
    return status;
}
