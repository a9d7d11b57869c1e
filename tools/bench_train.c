/* bench_train.c - `aptomo bench train`: the time of one training step (forward in training mode, NPCC, backward,
 * Adam) of the demo arch on a batch of patches, next to PyTorch CPU running the same step on the same weights,
 * batch and thread count in the same run (tests/nn_torch.py, the test suite's reference, through Debian's python3).
 * Random weights (`kernel nn-init`): speed does not depend on their values. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aptomo/clock.h"
#include "aptomo/nn.h"
#include "aptomo/nn_train.h"
#include "bench.h"
#include "cli.h"
#include "kernel.h"

/* The arch of models/ (stem stride 2 on every axis: output on the input's grid). */
static const char *ARCH_DEMO =
    "{\"stem\":8,\"stem_stride\":[2,2,2],\"stages\":[{\"f0\":8,\"f1\":16,\"blocks\":1,\"stride\":1},"
    "{\"f0\":16,\"f1\":32,\"blocks\":1,\"stride\":2},{\"f0\":32,\"f1\":64,\"blocks\":1,\"stride\":2}],"
    "\"axial\":{\"planes\":32,\"heads\":4,\"out\":64,\"size\":[4,4,4]},\"decoder\":[32,16,8]}";

/* PyTorch's best step time on the same weights, batch and threads (NaN if python or torch is missing). */
static double torch_step_seconds(const char *weights, const char *xpath, const char *ypath, int B, const int *p,
                                 const int *o, int threads, int reps)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 - 2>/dev/null <<'EOF'\n"
             "import json, sys, time, numpy as np, torch\n"
             "sys.path.insert(0, '%s/tests')\n"
             "import nn_torch\n"
             "torch.set_num_threads(%d)\n"
             "sd, meta = nn_torch.st_load('%s')\n"
             "m = nn_torch.APTNet(json.loads(meta['aptomo.arch'])); m.load_state_dict(sd, strict=False); m.train()\n"
             "x = torch.from_numpy(np.fromfile('%s', 'f4').reshape(%d, 1, %d, %d, %d))\n"
             "y = torch.from_numpy(np.fromfile('%s', 'f4').reshape(%d, 1, %d, %d, %d))\n"
             "opt = torch.optim.Adam(m.parameters(), lr=2e-4)\n"
             "def npcc(a, b):\n"
             "    a = a.reshape(a.shape[0], -1); b = b.reshape(b.shape[0], -1)\n"
             "    a = a - a.mean(1, keepdim=True); b = b - b.mean(1, keepdim=True)\n"
             "    return (-(a * b).sum(1) / torch.sqrt((a * a).sum(1) * (b * b).sum(1))).mean()\n"
             "best = 1e30\n"
             "for r in range(%d + 1):\n"
             "    t = time.perf_counter(); opt.zero_grad(); l = npcc(m(x), y); l.backward(); opt.step()\n"
             "    if r: best = min(best, time.perf_counter() - t)\n"
             "print(best)\n"
             "EOF",
             bench_source_dir(), threads, weights, xpath, B, p[0], p[1], p[2], ypath, B, o[0], o[1], o[2], reps);
    return bench_python_seconds(cmd);
}

static const char HELP[] =
    "usage: aptomo bench train [--arch ARCH.json] [--batch B] [--reps R] [--threads N]\n"
    "One training step (forward in training mode, NPCC, backward, Adam) of the demo arch (models/) on B patches of\n"
    "its input shape (32^3), next to PyTorch CPU on the same weights, batch and thread count in the same run.\n"
    "  --arch FILE   another architecture (docs/NETWORK.md) to time, on its own input patch\n"
    "  --batch B     patches per step (default 4)\n"
    "  --reps R      timed steps after one warm-up, the best counts (default 3)\n"
    "  --threads N   threads for both, 0 = one per core (default 0)\n";

int bench_train(int argc, char **argv)
{
    static const struct option opts[] = {{"arch", required_argument, NULL, 'a'},
                                         {"batch", required_argument, NULL, 'b'},
                                         {"reps", required_argument, NULL, 'r'},
                                         {"threads", required_argument, NULL, 't'}, {0}};
    int B = 4, reps = 3, threads = 0, c = 0;
    const char *arch_file = NULL;
    cli_parser cp;
    cli_init(&cp, "bench train", HELP, NULL, opts, argc, argv);
    while ((c = cli_next(&cp)) > 0) {
        if (c == 'a')
            arch_file = cp.arg;
        else if (c == 'b')
            cli_int(&cp, 1, 64, &B);
        else if (c == 'r')
            cli_int(&cp, 1, 1000, &reps);
        else
            cli_int(&cp, 0, 64, &threads);
    }
    int cli_rc = cli_done(&cp, c, 0, 0, "");
    if (cli_rc != CLI_GO)
        return cli_rc;
    if (threads == 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        threads = nc > 0 && nc <= 64 ? (int)nc : 1;
    }
    char dir[] = "/tmp/aptomo-bench-train-XXXXXX", arch[64], w[64], xp[64], yp[64];
    if (!mkdtemp(dir))
        return CLI_FAIL;
    snprintf(arch, sizeof arch, "%s/arch.json", dir);
    snprintf(w, sizeof w, "%s/w.safetensors", dir);
    snprintf(xp, sizeof xp, "%s/x.f32", dir);
    snprintf(yp, sizeof yp, "%s/y.f32", dir);
    size_t alen = 0;
    char *atext = arch_file ? (char *)cli_read_file(arch_file, 1 << 20, &alen) : strdup(ARCH_DEMO);
    if (!atext) { /* cli_read_file said why */
        rmdir(dir);
        return CLI_USAGE;
    }
    int rc = cli_write_file(arch, atext, arch_file ? alen : strlen(atext)) ? CLI_FAIL : CLI_OK;
    free(atext);
    char *init_argv[] = {"nn-init", "--arch", arch, "--seed", "1", w, NULL};
    if (rc == CLI_OK && kernel_nn_init(6, init_argv) != 0)
        rc = CLI_USAGE; /* nn-init said why */
    /* the arch's own input patch and its output shape */
    apt_nn_model *m = NULL;
    apt_nn_train *t = NULL;
    apt_error err = {0};
    int p[3] = {0}, sc[3], o[3] = {0};
    if (rc == CLI_OK && (apt_nn_load(w, 1, &m, &err) || apt_nn_patch_shape(m, p, sc, &err) ||
                         apt_nn_train_load(w, threads, &t, &err) ||
                         apt_nn_train_output_shape(t, p[0], p[1], p[2], &o[0], &o[1], &o[2], &err)))
        rc = CLI_FAIL;
    apt_nn_destroy(&m);
    size_t nx = (size_t)B * p[0] * p[1] * p[2], ny = (size_t)B * o[0] * o[1] * o[2];
    float *x = rc ? NULL : malloc(nx * sizeof *x), *y = rc ? NULL : malloc(ny * sizeof *y);
    if (rc == CLI_OK && (!x || !y))
        rc = CLI_FAIL;
    for (size_t i = 0; rc == CLI_OK && i < nx; i++)
        x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; rc == CLI_OK && i < ny; i++)
        y[i] = (float)((i * 40503u) % 997) / 997.0f;
    if (rc == CLI_OK && (cli_write_file(xp, x, nx * sizeof *x) || cli_write_file(yp, y, ny * sizeof *y)))
        rc = CLI_FAIL;
    double best = 1e30, first = 0, loss;
    for (int r = 0; rc == CLI_OK && r <= reps; r++) {
        double t0 = apt_now();
        if (apt_nn_train_step(t, x, y, B, p[0], p[1], p[2], 2e-4, &loss, &err))
            rc = CLI_FAIL;
        double s = apt_now() - t0;
        if (r == 0)
            first = s;
        else if (s < best)
            best = s;
    }
    if (rc == CLI_OK) {
        double ts = torch_step_seconds(w, xp, yp, B, p, o, threads, reps);
        printf("{\"bench\":\"train\",\"arch\":\"%s\",\"batch\":%d,\"patch\":[%d,%d,%d],\"threads\":%d,"
               "\"seconds_per_step\":%.4f,\"first_step_seconds\":%.4f,\"torch_seconds_per_step\":%.4f,"
               "\"speedup_vs_torch\":%.2f}\n",
               arch_file ? arch_file : "demo", B, p[0], p[1], p[2], threads, best, first, ts, ts / best);
        fflush(stdout);
    } else if (err.msg[0]) {
        fprintf(stderr, "aptomo bench train: %s\n", err.msg);
    }
    apt_nn_train_destroy(&t);
    unlink(arch), unlink(w), unlink(xp), unlink(yp);
    rmdir(dir);
    free(x), free(y);
    return rc;
}
