/* bench_tomo.c - `aptomo bench tomo`: FBP and SART on a 2-D IC-like slice (one y row, 257 x 257) at 29 angles over
 * +-17 deg and 180 angles over [0, 180), timed in-process, next to scikit-image's iradon / iradon_sart on the same
 * sinogram in the same run (through Debian's python3), with both reconstructions' PCC vs the phantom. One SART
 * sweep per call, as one iradon_sart call. Angle convention as tests/test_tomo_ref.py maps it:
 * ours(t) = skimage radon(img[::-1], t). */
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

/* Layers of lines and vias in the x-z plane, as a cross-section of an IC. */
static void phantom(float *img)
{
    memset(img, 0, sizeof(float) * BT_N * BT_N);
    for (int z = 0; z < BT_N; z++)
        for (int x = 0; x < BT_N; x++) {
            double r = hypot(z - BT_N / 2, x - BT_N / 2), sc = BT_N / 129.0;
            if (r > BT_N / 2 - 4)
                continue;
            float v = 0.2f; /* oxide */
            int zz = (int)(z / sc), xx = (int)(x / sc), layer = (zz - 20) / 18;
            if (zz >= 20 && zz < 110 && (zz - 20) % 18 < 6 && ((xx / (4 + 2 * layer)) % 2 == 0))
                v = 1.0f; /* metal lines, pitch growing with the layer */
            if (zz >= 20 && zz < 110 && (zz - 20) % 18 >= 6 && xx % 23 < 3)
                v = 0.8f; /* vias */
            img[z * BT_N + x] = v;
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
    memset(v, 0, sizeof(float) * BT_N * BT_N);
    return apt_sart(p, s, a, v, e);
}

/* scikit-image on the same sinogram: prints "fbp_s fbp_pcc sart_s sart_pcc" (best of reps). */
static int skimage_ref(const char *dir, int n_theta, int reps, double out[4])
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 - 2>/dev/null <<'EOF'\n"
             "import time, numpy as np\n"
             "from skimage.transform import iradon, iradon_sart\n"
             "d = '%s'; N = %d; T = %d\n"
             "img = np.fromfile(d + '/img', 'f4').reshape(N, N)\n"
             "S = np.fromfile(d + '/sino', 'f4').reshape(T, N).T.astype('f8')\n"
             "th = np.fromfile(d + '/theta', 'f8')\n"
             "m = np.hypot(*np.mgrid[0:N, 0:N] - N // 2) < N // 2 - 4\n"
             "pcc = lambda a: np.corrcoef(a[m], img[m])[0, 1]\n"
             "def best(f):\n"
             "    t = 1e30\n"
             "    for _ in range(%d):\n"
             "        t0 = time.perf_counter(); r = f(); t = min(t, time.perf_counter() - t0)\n"
             "    return t, r\n"
             "tf, rf = best(lambda: iradon(S, theta=th, filter_name='ramp', circle=True)[::-1])\n"
             "ts, rs = best(lambda: iradon_sart(S, theta=th)[::-1])\n"
             "print(tf, pcc(rf), ts, pcc(rs))\n"
             "EOF",
             dir, BT_N, n_theta, reps);
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

int bench_tomo(int argc, char **argv)
{
    uint64_t reps = 5;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--reps") && i + 1 < argc && !cli_parse_u64(argv[i + 1], &reps) && reps > 0)
            i++;
        else {
            fprintf(stderr, "usage: aptomo bench tomo [--reps R]\n");
            return CLI_USAGE;
        }
    float *img = malloc(sizeof(float) * BT_N * BT_N), *vol = malloc(sizeof(float) * BT_N * BT_N);
    float *sino = malloc(sizeof(float) * 180 * BT_N);
    unsigned char mask[BT_N * BT_N];
    for (int z = 0; z < BT_N; z++)
        for (int x = 0; x < BT_N; x++)
            mask[z * BT_N + x] = hypot(z - BT_N / 2, x - BT_N / 2) < BT_N / 2 - 4;
    phantom(img);
    char dir[] = "/tmp/aptomo-bench-tomo-XXXXXX";
    if (!mkdtemp(dir) || !img || !vol || !sino)
        return CLI_FAIL;
    int rc = CLI_OK;
    for (int set = 0; set < 2 && rc == CLI_OK; set++) {
        int T = set ? 180 : 29;
        double theta[180];
        for (int t = 0; t < T; t++)
            theta[t] = set ? (double)t : -17.0 + 34.0 * t / (T - 1);
        apt_proj *p = NULL;
        apt_error err = {0};
        if (apt_proj_new(BT_N, 1, BT_N, BT_N, theta, T, 0, 0, &p, &err) || apt_proj_forward(p, img, sino, &err)) {
            fprintf(stderr, "bench tomo: %s\n", err.msg);
            rc = CLI_FAIL;
            break;
        }
        apt_iter_opts so;
        apt_iter_opts_default(&so, "sart");
        so.iters = 1; /* one sweep over the angles, like one iradon_sart call */
        double tf = time_it(run_fbp, p, sino, NULL, vol, (int)reps);
        double pf = apt_metric_pcc(vol, img, (size_t)BT_N * BT_N, mask);
        double ts = time_it(run_sart, p, sino, &so, vol, (int)reps);
        double ps = apt_metric_pcc(vol, img, (size_t)BT_N * BT_N, mask);
        double ref[4] = {NAN, NAN, NAN, NAN};
        write_raw(dir, "img", img, sizeof(float) * BT_N * BT_N);
        write_raw(dir, "sino", sino, sizeof(float) * T * BT_N);
        write_raw(dir, "theta", theta, sizeof(double) * T);
        skimage_ref(dir, T, (int)reps, ref);
        printf("{\"bench\":\"tomo\",\"what\":\"fbp\",\"angles\":%d,\"size\":%d,\"seconds\":%.5f,\"pcc\":%.4f,"
               "\"skimage_seconds\":%.5f,\"skimage_pcc\":%.4f,\"speedup_vs_skimage\":%.2f,\"threads\":%d}\n",
               T, BT_N, tf, pf, ref[0], ref[1], ref[0] / tf, apt_proj_threads(p));
        printf("{\"bench\":\"tomo\",\"what\":\"sart\",\"angles\":%d,\"size\":%d,\"iters\":%d,\"seconds\":%.5f,"
               "\"pcc\":%.4f,\"skimage_seconds\":%.5f,\"skimage_pcc\":%.4f,\"skimage_iters\":1,"
               "\"speedup_vs_skimage\":%.2f}\n",
               T, BT_N, so.iters, ts, ps, ref[2], ref[3], ref[2] / ts);
        fflush(stdout);
        apt_proj_destroy(&p);
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
    return rc;
}
