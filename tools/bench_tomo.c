/* bench_tomo.c - `aptomo bench tomo`: FBP and SART throughput on a stack of IC-like cross-sections (8 y-slices of
 * 257 x 257, each a different layout) at 29 angles over +-17 deg and 180 angles over [0, 180), timed in-process,
 * next to scikit-image's iradon / iradon_sart on the same sinograms, slice after slice, in the same run (through
 * Debian's python3), with both reconstructions' PCC vs the phantom. One SART sweep per call, as one iradon_sart
 * call per slice. Also reported: one slice on one thread against scikit-image's time per slice (the kernels alone,
 * no threading). Angle convention as tests/test_tomo_ref.py maps it: ours(t) = skimage radon(img[::-1], t). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aptomo/metrics.h"
#include "aptomo/tomo.h"
#include "bench.h"
#include "cli.h"

#define BT_N 257
#define BT_Y 8

/* Layers of lines and vias in the x-z plane, as a cross-section of an IC; slice j shifts the layout. Writes the
   [Z, Y, X] element (z, j, x) for every z, x. */
static void phantom(float *vol, int j)
{
    for (int z = 0; z < BT_N; z++)
        for (int x = 0; x < BT_N; x++) {
            double r = hypot(z - BT_N / 2, x - BT_N / 2), sc = BT_N / 129.0;
            float *dst = &vol[((size_t)z * BT_Y + j) * BT_N + x];
            *dst = 0;
            if (r > BT_N / 2 - 4)
                continue;
            float v = 0.2f; /* oxide */
            int zz = (int)(z / sc), xx = (int)(x / sc) + 5 * j, layer = (zz - 20) / 18;
            if (zz >= 20 && zz < 110 && (zz - 20) % 18 < 6 && ((xx / (4 + 2 * layer)) % 2 == 0))
                v = 1.0f; /* metal lines, pitch growing with the layer */
            if (zz >= 20 && zz < 110 && (zz - 20) % 18 >= 6 && xx % 23 < 3)
                v = 0.8f; /* vias */
            *dst = v;
        }
}

static double time_it(int (*fn)(const apt_proj *, const float *, const void *, float *, apt_error *),
                      const apt_proj *p, const float *sino, const void *arg, float *vol, int reps)
{
    apt_error err = {0};
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = apt_now();
        if (fn(p, sino, arg, vol, &err))
            return -1;
        double t = apt_now() - t0;
        best = t < best ? t : best;
    }
    return best;
}

static int run_fbp(const apt_proj *p, const float *s, const void *a, float *v, apt_error *e)
{
    (void)a;
    return apt_fbp(p, s, APT_FBP_RAMP, v, e);
}

static int run_sart(const apt_proj *p, const float *s, const void *a, float *v, apt_error *e)
{
    int Y;
    apt_proj_dims(p, NULL, &Y, NULL, NULL);
    memset(v, 0, sizeof(float) * BT_N * BT_N * (size_t)Y);
    return apt_sart(p, s, a, v, e);
}

/* scikit-image on the same sinograms, one slice after the other: prints "fbp_s fbp_pcc sart_s sart_pcc" (best of
   reps, all slices). */
static int skimage_ref(const char *dir, int n_theta, int reps, double out[4])
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 - 2>/dev/null <<'EOF'\n"
             "import time, numpy as np\n"
             "from skimage.transform import iradon, iradon_sart\n"
             "d = '%s'; N = %d; Y = %d; T = %d\n"
             "img = np.fromfile(d + '/img', 'f4').reshape(N, Y, N)\n"
             "S = np.fromfile(d + '/sino', 'f4').reshape(T, Y, N).astype('f8')\n"
             "th = np.fromfile(d + '/theta', 'f8')\n"
             "m = np.hypot(*np.mgrid[0:N, 0:N] - N // 2) < N // 2 - 4\n"
             "pcc = lambda a: np.corrcoef(a.transpose(1, 0, 2)[:, m].ravel(), img.transpose(1, 0, 2)[:, m].ravel())[0, 1]\n"
             "def best(f):\n"
             "    t = 1e30\n"
             "    for _ in range(%d):\n"
             "        t0 = time.perf_counter(); r = f(); t = min(t, time.perf_counter() - t0)\n"
             "    return t, r\n"
             "stack = lambda f: np.stack([f(S[:, j, :].T)[::-1] for j in range(Y)], axis=1)\n"
             "tf, rf = best(lambda: stack(lambda s: iradon(s, theta=th, filter_name='ramp', circle=True)))\n"
             "ts, rs = best(lambda: stack(lambda s: iradon_sart(s, theta=th)))\n"
             "print(tf, pcc(rf), ts, pcc(rs))\n"
             "EOF",
             dir, BT_N, BT_Y, n_theta, reps);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    int n = fscanf(p, "%lf %lf %lf %lf", &out[0], &out[1], &out[2], &out[3]);
    pclose(p);
    return n == 4 ? 0 : -1;
}

static int write_raw(const char *dir, const char *name, const void *data, size_t bytes)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return cli_write_file(path, data, bytes);
}

/* Slice j of a [Z, BT_Y, X] volume / [T, BT_Y, U] sinogram as a one-slice array. */
static void take_slice(const float *in, int rows, int j, float *out)
{
    for (int r = 0; r < rows; r++)
        memcpy(out + (size_t)r * BT_N, in + ((size_t)r * BT_Y + j) * BT_N, sizeof(float) * BT_N);
}

static const char HELP[] =
    "usage: aptomo bench tomo [--reps R]\n"
    "FBP and SART throughput on 8 IC-like 257 x 257 cross-sections at 29 angles (+-17 deg) and 180 angles\n"
    "([0, 180)), next to scikit-image's iradon / iradon_sart on the same sinograms in the same run, with both\n"
    "reconstructions' PCC vs the phantom.\n"
    "  --reps R   repetitions, the best one counts (>= 1, default 3)\n";

int bench_tomo(int argc, char **argv)
{
    static const struct option opts[] = {{"reps", required_argument, NULL, 'r'}, {0}};
    uint64_t reps = 3;
    cli_parser p;
    int c = 0;
    cli_init(&p, "bench tomo", HELP, NULL, opts, argc, argv);
    while ((c = cli_next(&p)) > 0)
        cli_uint(&p, 1, 1000, &reps);
    int cli_rc = cli_done(&p, c, 0, 0, "");
    if (cli_rc != CLI_GO)
        return cli_rc;
    size_t nv = (size_t)BT_N * BT_Y * BT_N;
    float *img = malloc(sizeof(float) * nv), *vol = malloc(sizeof(float) * nv);
    float *sino = malloc(sizeof(float) * 180 * BT_Y * BT_N), *img1 = malloc(sizeof(float) * BT_N * BT_N),
          *sino1 = malloc(sizeof(float) * 180 * BT_N);
    unsigned char *mask = malloc(nv), mask1[BT_N * BT_N];
    char dir[] = "/tmp/aptomo-bench-tomo-XXXXXX";
    if (!img || !vol || !sino || !img1 || !sino1 || !mask || !mkdtemp(dir)) {
        fprintf(stderr, "aptomo bench tomo: out of memory or no temporary directory\n");
        free(img), free(vol), free(sino), free(img1), free(sino1), free(mask);
        return CLI_FAIL;
    }
    for (int z = 0; z < BT_N; z++)
        for (int x = 0; x < BT_N; x++) {
            mask1[z * BT_N + x] = hypot(z - BT_N / 2, x - BT_N / 2) < BT_N / 2 - 4;
            for (int j = 0; j < BT_Y; j++)
                mask[((size_t)z * BT_Y + j) * BT_N + x] = mask1[z * BT_N + x];
        }
    for (int j = 0; j < BT_Y; j++)
        phantom(img, j);
    take_slice(img, BT_N, 0, img1);
    int rc = CLI_OK;
    for (int set = 0; set < 2 && rc == CLI_OK; set++) {
        int T = set ? 180 : 29;
        double theta[180];
        for (int t = 0; t < T; t++)
            theta[t] = set ? (double)t : -17.0 + 34.0 * t / (T - 1);
        apt_proj *p = NULL, *p1 = NULL;
        apt_error err = {0};
        if (apt_proj_new(BT_N, BT_Y, BT_N, BT_N, theta, T, 0, APT_BACKEND_CPU, &p, &err) ||
            apt_proj_new(BT_N, 1, BT_N, BT_N, theta, T, 1, APT_BACKEND_CPU, &p1, &err) || apt_proj_forward(p, img, sino, &err)) {
            fprintf(stderr, "aptomo bench tomo: %s\n", err.msg);
            apt_proj_destroy(&p);
            rc = CLI_FAIL;
            break;
        }
        take_slice(sino, T, 0, sino1);
        apt_iter_opts so;
        apt_iter_opts_default(&so, "sart");
        so.iters = 1; /* one sweep over the angles, like one iradon_sart call */
        double tf = time_it(run_fbp, p, sino, NULL, vol, (int)reps);
        double pf = apt_metric_pcc(vol, img, nv, mask);
        double ts = time_it(run_sart, p, sino, &so, vol, (int)reps);
        double ps = apt_metric_pcc(vol, img, nv, mask);
        double tf1 = time_it(run_fbp, p1, sino1, NULL, vol, (int)reps);
        double ts1 = time_it(run_sart, p1, sino1, &so, vol, (int)reps);
        double ref[4] = {NAN, NAN, NAN, NAN};
        write_raw(dir, "img", img, sizeof(float) * nv);
        write_raw(dir, "sino", sino, sizeof(float) * T * BT_Y * BT_N);
        write_raw(dir, "theta", theta, sizeof(double) * T);
        skimage_ref(dir, T, (int)reps, ref);
        const char *what[2] = {"fbp", "sart"};
        double t[2] = {tf, ts}, pc[2] = {pf, ps}, t1[2] = {tf1, ts1};
        for (int w = 0; w < 2; w++)
            printf("{\"bench\":\"tomo\",\"what\":\"%s\",\"angles\":%d,\"size\":%d,\"slices\":%d,\"seconds\":%.5f,"
                   "\"pcc\":%.4f,\"skimage_seconds\":%.5f,\"skimage_pcc\":%.4f,\"speedup_vs_skimage\":%.2f,"
                   "\"threads\":%d,\"one_slice_one_thread_seconds\":%.5f,\"one_slice_one_thread_speedup\":%.2f}\n",
                   what[w], T, BT_N, BT_Y, t[w], pc[w], ref[2 * w], ref[2 * w + 1], ref[2 * w] / t[w],
                   apt_proj_threads(p), t1[w], ref[2 * w] / BT_Y / t1[w]);
        fflush(stdout);
        apt_proj_destroy(&p);
        apt_proj_destroy(&p1);
    }
    for (const char *f = "img\0sino\0theta\0"; *f; f += strlen(f) + 1) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, f);
        unlink(path);
    }
    rmdir(dir);
    free(img);
    free(vol);
    free(sino);
    free(img1);
    free(sino1);
    free(mask);
    return rc;
}
