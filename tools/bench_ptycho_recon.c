/* bench_ptycho_recon.c - `aptomo bench ptycho-recon`: the wall time of one angle's whole reconstruction
 * (apt_ptycho_reconstruct: every pass over every batch, patterns streamed from host memory) on a chosen backend, the
 * APT paper's figure being about 54 s for 60,000 frames of 128 x 128, 12 modes, 5 slices, 2 iterations. Synthetic
 * data (a disc probe, a weak phase object, patterns around the model's level): the time does not depend on the
 * values. The timed call includes the object's upload and download; the plan (apt_ptycho_new) is timed apart. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/backend.h"
#include "aptomo/gpu.h"
#include "aptomo/ptycho.h"
#include "bench.h"
#include "cli.h"

static uint64_t recon_rng = 0x9FB21C651E98DF25ULL;
static float urand(void)
{
    recon_rng ^= recon_rng << 13, recon_rng ^= recon_rng >> 7, recon_rng ^= recon_rng << 17;
    return (float)((double)(recon_rng >> 11) / 9007199254740992.0);
}

typedef struct recon_case {
    apt_ptycho_geom g;
    size_t J;
    float *probe, *object, *patterns;
    int32_t *pos;
} recon_case;

static void recon_case_free(recon_case *c) { free(c->probe), free(c->object), free(c->patterns), free(c->pos); }

/* A square raster of J positions, step n/8 (87.5 % overlap, as bench ptycho), the object just large enough. */
static int recon_case_new(recon_case *c, int n, int M, int L, size_t J)
{
    int side = (int)ceil(sqrt((double)J)), step = n / 8 > 0 ? n / 8 : 1, N = n + (side - 1) * step;
    c->g = (apt_ptycho_geom){.M = M, .H = n, .W = n, .L = L, .Ny = N, .Nx = N, .wavelength_m = 1e-10,
                             .pixel_size_m = 10e-9, .dz_m = 1e-6};
    c->J = J;
    size_t hw = (size_t)n * n, obj = (size_t)L * N * N;
    c->probe = malloc((size_t)M * hw * 2 * sizeof(float));
    c->object = malloc(obj * 2 * sizeof(float));
    c->patterns = malloc(J * hw * sizeof(float));
    c->pos = malloc(J * 2 * sizeof(int32_t));
    if (!c->probe || !c->object || !c->patterns || !c->pos)
        return -1;
    for (int m = 0; m < M; m++) /* a disc of radius n/4, mode m weaker by 2^-m, random phases */
        for (int y = 0; y < n; y++)
            for (int x = 0; x < n; x++) {
                double dy = y - n / 2.0, dx = x - n / 2.0, a = dy * dy + dx * dx < n * n / 16.0 ? pow(0.5, m) : 0;
                double ph = 6.283185307179586 * urand();
                float *v = c->probe + 2 * ((size_t)m * hw + (size_t)y * n + x);
                v[0] = (float)(a * cos(ph)), v[1] = (float)(a * sin(ph));
            }
    for (size_t i = 0; i < obj; i++) {
        float ph = 0.1f * (urand() - 0.5f);
        c->object[2 * i] = cosf(ph), c->object[2 * i + 1] = sinf(ph);
    }
    double mean = 3.14159 * n * n / 16.0; /* about the disc's mean far-field intensity per pixel (Parseval) */
    for (size_t i = 0; i < J * hw; i++)
        c->patterns[i] = urand() < 0.02 ? -1.0f : (float)(mean * 2 * urand());
    for (size_t j = 0; j < J; j++)
        c->pos[2 * j] = (int32_t)(j / side * step), c->pos[2 * j + 1] = (int32_t)(j % side * step);
    return 0;
}

static const char HELP[] =
    "usage: aptomo bench ptycho-recon [--frames J] [--size N] [--modes M] [--slices L] [--iterations K]\n"
    "                                 [--batches B] [--backend auto|cpu|gpu] [--threads T]\n"
    "Wall time of one angle's reconstruction (apt_ptycho_reconstruct) on a backend, synthetic data; one JSON line:\n"
    "{bench, backend, device, frames, size, modes, slices, iterations, batches, seconds, frames_per_s (frames of\n"
    "the angle per second of reconstruction), ...}. The APT paper: 54 s for 60000 frames (defaults).\n"
    "  --frames J       diffraction patterns (positions), 1..1000000 (default 60000)\n"
    "  --size N         probe window N x N, 8..1024 (default 128)\n"
    "  --modes M        probe modes, 1..64 (default 12)\n"
    "  --slices L       object slices, 1..64 (default 5)\n"
    "  --iterations K   passes over all frames, 1..100 (default 2)\n"
    "  --batches B      mini-batches per pass, 1..4096 (default 16)\n"
    "  --backend B      auto, cpu or gpu (default auto)\n"
    "  --threads T      CPU threads, 0 = all cores (default 0)\n";

int bench_ptycho_recon(int argc, char **argv)
{
    enum { O_FRAMES = 256, O_SIZE, O_MODES, O_SLICES, O_ITERS, O_BATCHES, O_BACKEND, O_THREADS };
    static const struct option opts[] = {
        {"frames", required_argument, NULL, O_FRAMES},   {"size", required_argument, NULL, O_SIZE},
        {"modes", required_argument, NULL, O_MODES},     {"slices", required_argument, NULL, O_SLICES},
        {"iterations", required_argument, NULL, O_ITERS}, {"batches", required_argument, NULL, O_BATCHES},
        {"backend", required_argument, NULL, O_BACKEND}, {"threads", required_argument, NULL, O_THREADS},
        {0}};
    uint64_t J = 60000, n = 128, M = 12, L = 5, iters = 2, batches = 16, threads = 0;
    apt_backend be = APT_BACKEND_AUTO;
    cli_parser p;
    int oc = 0;
    cli_init(&p, "bench ptycho-recon", HELP, NULL, opts, argc, argv);
    while ((oc = cli_next(&p)) > 0) {
        switch (oc) {
        case O_FRAMES: cli_uint(&p, 1, 1000000, &J); break;
        case O_SIZE: cli_uint(&p, 8, 1024, &n); break;
        case O_MODES: cli_uint(&p, 1, 64, &M); break;
        case O_SLICES: cli_uint(&p, 1, 64, &L); break;
        case O_ITERS: cli_uint(&p, 1, 100, &iters); break;
        case O_BATCHES: cli_uint(&p, 1, 4096, &batches); break;
        case O_BACKEND: cli_backend(&p, &be); break;
        case O_THREADS: cli_uint(&p, 0, 64, &threads); break;
        }
    }
    int cli_rc = cli_done(&p, oc, 0, 0, "");
    if (cli_rc != CLI_GO)
        return cli_rc;
    /* the patterns alone are J n^2 floats: refuse what cannot be held before trying */
    if ((double)J * (double)(n * n) * sizeof(float) > 64e9)
        return cli_fail(&p, "--frames %llu of %llu x %llu need more than 64 GB of patterns", (unsigned long long)J,
                        (unsigned long long)n, (unsigned long long)n);
    recon_case c = {0};
    if (recon_case_new(&c, (int)n, (int)M, (int)L, (size_t)J)) {
        recon_case_free(&c);
        cli_error("out of memory for %llu frames", (unsigned long long)J);
        return CLI_FAIL;
    }
    apt_error err = {0};
    apt_ptycho *pt = NULL;
    double t0 = apt_now();
    int rc = apt_ptycho_new(&c.g, (int)threads, be, &pt, &err);
    double t_plan = apt_now() - t0, t_run = 0;
    apt_recon_opts ro = {.iterations = (int)iters, .batches = (int)batches, .step = 1.0};
    double *loss = calloc(iters, sizeof *loss);
    unsigned long fb0 = apt_backend_fallbacks(NULL, 0);
    if (!rc && !loss)
        rc = apt_err(&err, APT_ENOMEM, "out of memory");
    if (!rc) {
        t0 = apt_now();
        rc = apt_ptycho_reconstruct(pt, c.probe, c.patterns, c.pos, c.J, &ro, c.object, loss, &err);
        t_run = apt_now() - t0;
    }
    if (rc) {
        cli_error("%s", err.msg);
    } else {
        char dev[128] = "cpu", last[256] = "";
        apt_backend ran = apt_ptycho_backend(pt);
        if (ran == APT_BACKEND_GPU)
            apt_gpu_name(dev, sizeof dev, NULL);
        unsigned long fb = apt_backend_fallbacks(last, sizeof last) - fb0;
        printf("{\"bench\":\"ptycho-recon\",\"backend\":\"%s\",\"device\":\"%s\",\"frames\":%zu,\"size\":%d,"
               "\"modes\":%d,\"slices\":%d,\"iterations\":%d,\"batches\":%d,\"seconds\":%.3f,\"frames_per_s\":%.1f,"
               "\"frame_iterations_per_s\":%.1f,\"plan_seconds\":%.3f,\"fallbacks\":%lu,\"last_loss\":%.6g,"
               "\"paper_seconds\":54,\"paper_frames\":60000}\n",
               apt_backend_name(ran), dev, c.J, (int)n, (int)M, (int)L, (int)iters, (int)batches, t_run,
               (double)c.J / t_run, (double)c.J * (double)iters / t_run, t_plan, fb, loss[iters - 1]);
        fflush(stdout);
    }
    free(loss);
    apt_ptycho_destroy(&pt);
    recon_case_free(&c);
    return rc ? (rc == APT_EINVAL || rc == APT_ERANGE ? CLI_USAGE : CLI_FAIL) : CLI_OK; /* no GPU: 1, as nn-forward */
}
