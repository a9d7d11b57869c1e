/* cmd_infer.c - `aptomo infer --weights W in.h5 -o out.h5`: the refinement network over a whole volume, tiled into
 * the arch's input patches with 50 % overlap and stitched seam-free (src/nn/tile.c), input normalised as the weights
 * say, progress bar, Data Exchange output carrying the weights' id. The daemon's refinement uses the same pieces. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/nn.h"
#include "aptomo/preview.h"
#include "aptomo/tile.h"
#include "aptomo/volume.h"
#include "cli.h"

typedef struct infer_ctx {
    apt_nn_model *m;
    int p[3];
} infer_ctx;

static int forward(void *ctx, const float *x, int B, float *y, apt_error *err)
{
    infer_ctx *c = ctx;
    return apt_nn_forward(c->m, x, B, c->p[0], c->p[1], c->p[2], y, err);
}

static void progress(void *ctx, size_t done, size_t total)
{
    cli_progress *p = ctx;
    p->total = total;
    cli_progress_update(p, done);
}

static const char HELP[] =
    "usage: aptomo infer --weights W.safetensors IN.h5 -o OUT.h5 [--dataset PATH] [--batch B]\n"
    "                    [--threads T] [--backend B] [--png P.png]\n"
    "Refines a volume (default /exchange/approximant if present, else /exchange/data) with the\n"
    "network: patches of the arch's input size, 50% overlap, reflection padding, seam-free\n"
    "stitching. Progress bar with ETA on stderr when it is a terminal; outputs checked before the work.\n"
    "  --weights W       network weights (safetensors with the arch), required\n"
    "  -o OUT.h5         refined volume (Data Exchange, with the input and the weights' id), required\n"
    "  --dataset PATH    the input volume's dataset\n"
    "  --batch B         patches per network call, 1..256 (bounds memory; default 1)\n"
    "  --threads T       threads, 0 = one per core (default 0)\n"
    "  --backend B       auto, cpu or gpu (default auto: the GPU when present; gpu fails without one)\n"
    "  --png P.png       central slices of the refined volume next to the input\n";

int cmd_infer(int argc, char **argv)
{
    static const struct option opts[] = {
        {"weights", required_argument, NULL, 'w'}, {"output", required_argument, NULL, 'o'},
        {"png", required_argument, NULL, 'p'},     {"dataset", required_argument, NULL, 'd'},
        {"batch", required_argument, NULL, 'b'},   {"threads", required_argument, NULL, 't'},
        {"backend", required_argument, NULL, 'B'}, {0}};
    apt_backend backend = APT_BACKEND_AUTO;
    const char *weights = NULL, *in = NULL, *out = NULL, *png = NULL, *dataset = NULL;
    uint64_t batch = 1, threads = 0;
    int oc = 0;
    cli_parser p;
    cli_init(&p, "infer", HELP, "o:", opts, argc, argv);
    while ((oc = cli_next(&p)) > 0) {
        switch (oc) {
        case 'w': weights = p.arg; break;
        case 'o': out = p.arg; break;
        case 'p': png = p.arg; break;
        case 'd': dataset = p.arg; break;
        case 'b': cli_uint(&p, 1, 256, &batch); break;
        case 't': cli_uint(&p, 0, 256, &threads); break;
        case 'B': cli_backend(&p, &backend); break;
        }
    }
    int cli_rc = cli_done(&p, oc, 1, 1, "IN.h5");
    if (cli_rc != CLI_GO)
        return cli_rc;
    in = p.args[0];
    if (!weights || !out)
        return cli_fail(&p, "%s is required", !weights ? "--weights W.safetensors" : "-o OUT.h5");
    if ((oc = cli_check_output("-o", out)) || (oc = cli_check_output("--png", png)))
        return oc;
    apt_error err = {0};
    infer_ctx c = {0};
    apt_volume vin = {0}, vout = {0};
    int rc = CLI_USAGE;
    int scale[3];
    if (apt_nn_load_backend(weights, (int)threads, backend, &c.m, &err) ||
        apt_nn_patch_shape(c.m, c.p, scale, &err)) {
        fprintf(stderr, "aptomo infer: %s\n", err.msg);
        rc = err.code == APT_ENODEV ? CLI_FAIL : CLI_USAGE;
        goto out;
    }
    if (!dataset) /* a result file carries both; the Approximant is the network's input */
        dataset = apt_volume_read(in, "/exchange/approximant", &vin, NULL) == APT_OK ? NULL : "/exchange/data";
    if (dataset && apt_volume_read(in, dataset, &vin, &err)) {
        fprintf(stderr, "aptomo infer: %s\n", err.msg);
        goto out;
    }
    double mean, std;
    apt_nn_input_norm(c.m, &mean, &std);
    apt_tile_spec sp = {c.p[0], c.p[1], c.p[2], scale[0], scale[1], scale[2], (int)batch, mean, std};
    vout = (apt_volume){vin.Z * sp.fz, vin.Y * sp.fy, vin.X * sp.fx,
                        {vin.voxel_m[0] / sp.fz, vin.voxel_m[1] / sp.fy, vin.voxel_m[2] / sp.fx}, NULL};
    vout.data = malloc((size_t)vout.Z * vout.Y * vout.X * sizeof(float));
    if (!vout.data) {
        fprintf(stderr, "aptomo infer: out of memory for a %dx%dx%d volume\n", vout.Z, vout.Y, vout.X);
        rc = CLI_FAIL;
        goto out;
    }
    cli_progress prog;
    cli_progress_start(&prog, "infer", 1);
    double t0 = apt_now();
    if (apt_tile_run(vin.data, vin.Z, vin.Y, vin.X, &sp, forward, &c, progress, &prog, vout.data, &err)) {
        cli_progress_clear(&prog);
        fprintf(stderr, "aptomo infer: %s\n", err.msg);
        rc = CLI_FAIL;
        goto out;
    }
    cli_progress_end(&prog);
    apt_nn_output_apply(c.m, vout.data, (size_t)vout.Z * vout.Y * vout.X);
    double secs = apt_now() - t0;
    char cfg[512];
    snprintf(cfg, sizeof cfg, "weights: \"%s\"\nweights_id: \"%s\"\ninput: \"%s\"\n", weights,
             apt_nn_weights_id(c.m), in);
    apt_result res = {&vout, &vin, NULL, 0, cfg, NULL, NULL, 0};
    if (apt_result_write(out, &res, &err) ||
        (png && apt_preview_write(png, (const apt_volume *[]){&vout, &vin},
                                  (const char *[]){"refined", "input"}, 2, "aptomo infer", &err))) {
        fprintf(stderr, "aptomo infer: %s\n", err.msg);
        rc = CLI_FAIL;
        goto out;
    }
    printf("{\"output\":\"%s\",\"shape\":[%d,%d,%d],\"patch\":[%d,%d,%d],\"weights_id\":\"%s\",\"seconds\":%.3f,"
           "\"voxels_per_s\":%.4g}\n", out, vout.Z, vout.Y, vout.X, c.p[0], c.p[1], c.p[2], apt_nn_weights_id(c.m),
           secs, (double)vout.Z * vout.Y * vout.X / secs);
    rc = CLI_OK;
out:
    apt_volume_free(&vin);
    apt_volume_free(&vout);
    apt_nn_destroy(&c.m);
    return rc;
}
