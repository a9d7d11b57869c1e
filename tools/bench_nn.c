/* bench_nn.c - `aptomo bench nn`: eval-mode forward throughput (output voxels/s) of the network on one patch, for
 * the demo arch and the full-size arch of docs/NETWORK.md, next to PyTorch CPU running the same weights on the
 * same input in the same run (tests/nn_torch.py, the test suite's reference implementation, through Debian's
 * python3). Random weights (`kernel nn-init`): speed does not depend on their values. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aptomo/nn.h"
#include "aptomo/tile.h"
#include "bench.h"
#include "cli.h"
#include "kernel.h"

static const char *ARCH_DEMO =
    "{\"stem\":8,\"stem_stride\":[2,1,1],\"stages\":[{\"f0\":8,\"f1\":16,\"blocks\":1,\"stride\":1},"
    "{\"f0\":16,\"f1\":32,\"blocks\":1,\"stride\":2},{\"f0\":32,\"f1\":64,\"blocks\":1,\"stride\":2}],"
    "\"axial\":{\"planes\":64,\"heads\":4,\"out\":64,\"size\":[4,6,6]},\"decoder\":[32,16,8]}";
static const char *ARCH_FULL =
    "{\"stem\":32,\"stem_stride\":[2,1,1],\"stages\":[{\"f0\":32,\"f1\":128,\"blocks\":3,\"stride\":1},"
    "{\"f0\":64,\"f1\":256,\"blocks\":4,\"stride\":2},{\"f0\":128,\"f1\":512,\"blocks\":6,\"stride\":2}],"
    "\"axial\":{\"planes\":1024,\"heads\":8,\"out\":2048,\"size\":[35,16,16]},\"decoder\":[256,128,64]}";

double bench_python_seconds(const char *cmd)
{
    FILE *f = popen(cmd, "r");
    double s = NAN;
    if (f) {
        if (fscanf(f, "%lf", &s) != 1)
            s = NAN;
        pclose(f);
    }
    return s;
}

const char *bench_source_dir(void)
{
    const char *s = getenv("APTOMO_SRC");
    return s && *s ? s : APTOMO_SOURCE_DIR;
}

/* PyTorch on the same weights and input: prints the best forward time in seconds. */
static double torch_seconds(const char *arch_path, const char *weights, const char *input, int p[3], int reps)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 - 2>/dev/null <<'EOF'\n"
             "import json, sys, time, numpy as np, torch\n"
             "sys.path.insert(0, '%s/tests')\n"
             "import nn_torch\n"
             "torch.set_num_threads(%ld)\n"
             "arch = json.load(open('%s'))\n"
             "m = nn_torch.APTNet(arch); sd, meta = nn_torch.st_load('%s'); m.load_state_dict(sd, strict=False)\n"
             "m.eval()\n"
             "x = torch.from_numpy(np.fromfile('%s', 'f4').reshape(1, 1, %d, %d, %d))\n"
             "best = 1e30\n"
             "with torch.no_grad():\n"
             "    m(x)\n"
             "    for _ in range(%d):\n"
             "        t = time.perf_counter(); m(x); best = min(best, time.perf_counter() - t)\n"
             "print(best)\n"
             "EOF",
             bench_source_dir(), sysconf(_SC_NPROCESSORS_ONLN), arch_path, weights, input, p[0], p[1], p[2], reps);
    return bench_python_seconds(cmd);
}

static int bench_arch(const char *name, const char *arch, int reps, int torch, const char *dir)
{
    char arch_path[512], w[512], in[512];
    snprintf(arch_path, sizeof arch_path, "%s/%s.json", dir, name);
    snprintf(w, sizeof w, "%s/%s.safetensors", dir, name);
    snprintf(in, sizeof in, "%s/%s.x", dir, name);
    if (cli_write_file(arch_path, arch, strlen(arch)))
        return CLI_FAIL;
    char *init_argv[] = {"nn-init", "--arch", arch_path, "--seed", "1", w, NULL};
    if (kernel_nn_init(6, init_argv) != 0)
        return CLI_FAIL;
    apt_nn_model *m = NULL;
    apt_error err = {0};
    int p[3], sc[3];
    if (apt_nn_load(w, 0, &m, &err) || apt_nn_patch_shape(m, p, sc, &err)) {
        fprintf(stderr, "aptomo bench nn: %s\n", err.msg);
        apt_nn_destroy(&m);
        return CLI_FAIL;
    }
    size_t nin = (size_t)p[0] * p[1] * p[2], nout = nin * sc[0] * sc[1] * sc[2];
    float *x = malloc(nin * sizeof *x), *y = malloc(nout * sizeof *y);
    for (size_t i = 0; i < nin; i++)
        x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    cli_write_file(in, x, nin * sizeof *x);
    double best = 1e30, t0 = apt_now();
    int rc = apt_nn_forward(m, x, 1, p[0], p[1], p[2], y, &err); /* plans the primitives */
    double first = apt_now() - t0;
    for (int r = 0; !rc && r < reps; r++) {
        t0 = apt_now();
        rc = apt_nn_forward(m, x, 1, p[0], p[1], p[2], y, &err);
        double t = apt_now() - t0;
        best = t < best ? t : best;
    }
    if (rc) {
        fprintf(stderr, "aptomo bench nn: %s\n", err.msg);
    } else {
        char ref[160] = "";
        double ts = torch ? torch_seconds(arch_path, w, in, p, reps) : NAN;
        if (isfinite(ts))
            snprintf(ref, sizeof ref, ",\"torch_seconds\":%.4f,\"torch_voxels_per_s\":%.4g,\"speedup_vs_torch\":%.2f", ts,
                     (double)nout / ts, ts / best);
        printf("{\"bench\":\"nn\",\"arch\":\"%s\",\"backend\":\"%s\",\"patch\":[%d,%d,%d],\"output_voxels\":%zu,"
               "\"seconds\":%.4f,\"first_call_seconds\":%.4f,\"voxels_per_s\":%.4g%s,\"paper_voxels_per_s\":1.3e7}\n",
               name, apt_nn_backend_name(m), p[0], p[1], p[2], nout, best, first, (double)nout / best, ref);
        fflush(stdout);
    }
    unlink(arch_path);
    unlink(w);
    unlink(in);
    free(x);
    free(y);
    apt_nn_destroy(&m);
    return rc ? CLI_FAIL : CLI_OK;
}

/* --volume: the demo arch over whole volumes, tiled as `aptomo infer` tiles them (50 % overlap, batch 1). */
typedef struct vol_ctx {
    apt_nn_model *m;
    int p[3];
} vol_ctx;

static int vol_forward(void *ctx, const float *x, int B, float *y, apt_error *err)
{
    vol_ctx *c = ctx;
    return apt_nn_forward(c->m, x, B, c->p[0], c->p[1], c->p[2], y, err);
}

#define NN_MAX_VOLUMES 16
#define NN_MAX_VOLUME_VOXELS ((size_t)1 << 27) /* input; the output is 4 x that */

static int bench_volumes(int (*vols)[3], int nv, const char *dir)
{
    char arch_path[512], w[512];
    snprintf(arch_path, sizeof arch_path, "%s/demo.json", dir);
    snprintf(w, sizeof w, "%s/demo.safetensors", dir);
    if (cli_write_file(arch_path, ARCH_DEMO, strlen(ARCH_DEMO)))
        return CLI_FAIL;
    char *init_argv[] = {"nn-init", "--arch", arch_path, "--seed", "1", w, NULL};
    if (kernel_nn_init(6, init_argv) != 0)
        return CLI_FAIL;
    vol_ctx c = {0};
    int sc[3], rc = CLI_OK;
    apt_error err = {0};
    if (apt_nn_load(w, 0, &c.m, &err) || apt_nn_patch_shape(c.m, c.p, sc, &err)) {
        fprintf(stderr, "aptomo bench nn: %s\n", err.msg);
        rc = CLI_FAIL;
    }
    if (rc == CLI_OK) { /* plan the primitives (the patch shape never changes) before any timing */
        size_t np = (size_t)c.p[0] * c.p[1] * c.p[2];
        float *x = calloc(np, sizeof *x), *y = malloc(np * sc[0] * sc[1] * sc[2] * sizeof *y);
        if (!x || !y || apt_nn_forward(c.m, x, 1, c.p[0], c.p[1], c.p[2], y, &err)) {
            fprintf(stderr, "aptomo bench nn: %s\n", x && y ? err.msg : "out of memory");
            rc = CLI_FAIL;
        }
        free(x);
        free(y);
    }
    for (int v = 0; rc == CLI_OK && v < nv; v++) {
        int Z = vols[v][0], Y = vols[v][1], X = vols[v][2];
        size_t nin = (size_t)Z * Y * X, nout = nin * sc[0] * sc[1] * sc[2];
        float *x = malloc(nin * sizeof *x), *y = malloc(nout * sizeof *y);
        if (!x || !y) {
            fprintf(stderr, "aptomo bench nn: out of memory for a %dx%dx%d volume\n", Z, Y, X);
            rc = CLI_FAIL;
        }
        for (size_t i = 0; rc == CLI_OK && i < nin; i++)
            x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
        apt_tile_spec sp = {c.p[0], c.p[1], c.p[2], sc[0], sc[1], sc[2], 1, 0, 1};
        size_t patches = 1;
        int starts[4096], k;
        for (int a = 0; a < 3; a++)
            if (apt_tile_starts(vols[v][a], c.p[a], starts, 4096, &k) == APT_OK)
                patches *= (size_t)k;
        double t0 = apt_now();
        if (rc == CLI_OK && apt_tile_run(x, Z, Y, X, &sp, vol_forward, &c, NULL, NULL, y, &err)) {
            fprintf(stderr, "aptomo bench nn: %s\n", err.msg);
            rc = CLI_FAIL;
        }
        double t = apt_now() - t0;
        if (rc == CLI_OK) {
            printf("{\"bench\":\"nn\",\"what\":\"volume\",\"arch\":\"demo\",\"backend\":\"%s\",\"volume\":[%d,%d,%d],"
                   "\"patch\":[%d,%d,%d],\"patches\":%zu,\"output_voxels\":%zu,\"seconds\":%.4f,"
                   "\"voxels_per_s\":%.4g}\n",
                   apt_nn_backend_name(c.m), Z, Y, X, c.p[0], c.p[1], c.p[2], patches, nout, t, (double)nout / t);
            fflush(stdout);
        }
        free(x);
        free(y);
    }
    unlink(arch_path);
    unlink(w);
    apt_nn_destroy(&c.m);
    return rc;
}

/* "ZxYxX", each 1..4096, at most NN_MAX_VOLUME_VOXELS voxels. */
static int parse_volume(cli_parser *p, int v[3])
{
    char tail;
    if (sscanf(p->arg, "%dx%dx%d%c", &v[0], &v[1], &v[2], &tail) != 3 || v[0] < 1 || v[1] < 1 || v[2] < 1 ||
        v[0] > 4096 || v[1] > 4096 || v[2] > 4096 || (size_t)v[0] * v[1] * v[2] > NN_MAX_VOLUME_VOXELS)
        return cli_fail(p, "--volume %s: want ZxYxX, each 1..4096, at most %zu voxels", p->arg,
                        NN_MAX_VOLUME_VOXELS);
    return 0;
}

static const char HELP[] =
    "usage: aptomo bench nn [--reps R] [--no-full] [--no-torch] [--volume ZxYxX]...\n"
    "Eval-mode forward throughput (output voxels/s) of the network on one patch, for the demo arch and the\n"
    "full-size arch of docs/NETWORK.md, next to PyTorch CPU on the same random weights and input in the same run.\n"
    "  --reps R         repetitions, the best one counts (>= 1, default 3; the full arch runs once)\n"
    "  --no-full        the demo arch only\n"
    "  --no-torch       no PyTorch reference (its fields are left out)\n"
    "  --volume ZxYxX   instead: the demo arch over a whole Z x Y x X volume, tiled as `aptomo infer` tiles it\n"
    "                   (50% overlap, batch 1), one line per volume (repeatable, up to 16)\n";

int bench_nn(int argc, char **argv)
{
    static const struct option opts[] = {{"reps", required_argument, NULL, 'r'},
                                         {"no-full", no_argument, NULL, 'n'},
                                         {"no-torch", no_argument, NULL, 'T'},
                                         {"volume", required_argument, NULL, 'v'}, {0}};
    uint64_t reps = 3;
    int full = 1, torch = 1, nv = 0, vols[NN_MAX_VOLUMES][3];
    cli_parser p;
    int c = 0;
    cli_init(&p, "bench nn", HELP, NULL, opts, argc, argv);
    while ((c = cli_next(&p)) > 0) {
        if (c == 'n')
            full = 0;
        else if (c == 'T')
            torch = 0;
        else if (c == 'v' && nv == NN_MAX_VOLUMES)
            cli_fail(&p, "--volume: at most %d volumes", NN_MAX_VOLUMES);
        else if (c == 'v')
            parse_volume(&p, vols[nv++]);
        else
            cli_uint(&p, 1, 1000, &reps);
    }
    int cli_rc = cli_done(&p, c, 0, 0, "");
    if (cli_rc != CLI_GO)
        return cli_rc;
    char dir[] = "/tmp/aptomo-bench-nn-XXXXXX";
    if (!mkdtemp(dir))
        return CLI_FAIL;
    int rc;
    if (nv) {
        rc = bench_volumes(vols, nv, dir);
        rmdir(dir);
        return rc;
    }
    rc = bench_arch("demo", ARCH_DEMO, (int)reps, torch, dir);
    if (rc == CLI_OK && full)
        rc = bench_arch("full", ARCH_FULL, reps > 1 ? 1 : (int)reps, torch, dir);
    rmdir(dir);
    return rc;
}
