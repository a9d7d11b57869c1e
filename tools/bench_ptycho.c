/* bench_ptycho.c - `aptomo bench ptycho`: how many diffraction patterns per second the multislice model runs
 * forward + gradient (all modes and slices of one frame = one pattern-iteration), and the same count of FFTs alone on
 * the same plans (FFTW wisdom of this process makes the planner return the plans the model uses). The ratio
 * fft_bound_fraction = FFT-only time / full time says how close the element-wise code is to free (target >= 0.8).
 * Timings are the best of alternating repetitions: a shared machine only ever adds time. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aptomo/fft.h"
#include "aptomo/parallel.h"
#include "aptomo/ptycho.h"
#include "bench.h"
#include "cli.h"

typedef struct bench_case {
    apt_ptycho_geom g;
    size_t J;
    float *probe, *object, *meas, *grad;
    int32_t *pos;
} bench_case;

static uint64_t bench_rng = 0x2545F4914F6CDD1DULL;
static float frand(void)
{
    bench_rng ^= bench_rng << 13, bench_rng ^= bench_rng >> 7, bench_rng ^= bench_rng << 17;
    return (float)((double)(bench_rng >> 11) / 9007199254740992.0);
}

static int case_new(bench_case *c, int n, int M, int L, size_t J)
{
    int side = (int)ceil(sqrt((double)J)), step = n / 8, N = n + (side - 1) * step;
    c->g = (apt_ptycho_geom){.M = M, .H = n, .W = n, .L = L, .Ny = N, .Nx = N, .wavelength_m = 1e-10,
                             .pixel_size_m = 10e-9, .dz_m = 1e-6};
    c->J = J;
    size_t hw = (size_t)n * n, obj = (size_t)L * N * N;
    c->probe = malloc((size_t)M * hw * 2 * sizeof(float));
    c->object = malloc(obj * 2 * sizeof(float));
    c->grad = calloc(obj * 2, sizeof(float));
    c->meas = malloc(J * hw * sizeof(float));
    c->pos = malloc(J * 2 * sizeof(int32_t));
    if (!c->probe || !c->object || !c->grad || !c->meas || !c->pos)
        return -1;
    for (size_t i = 0; i < (size_t)M * hw * 2; i++)
        c->probe[i] = frand() - 0.5f;
    for (size_t i = 0; i < obj; i++) {
        float ph = 0.3f * frand();
        c->object[2 * i] = cosf(ph), c->object[2 * i + 1] = sinf(ph);
    }
    for (size_t i = 0; i < J * hw; i++)
        c->meas[i] = 100.0f * frand();
    for (size_t j = 0; j < J; j++)
        c->pos[2 * j] = (int32_t)(j / side * step), c->pos[2 * j + 1] = (int32_t)(j % side * step);
    return 0;
}

static void case_free(bench_case *c)
{
    free(c->probe), free(c->object), free(c->grad), free(c->meas), free(c->pos);
}

/* The clock of a measurement: wall time, or for a 1-thread one the calling thread's CPU time, which time slices
   given to other processes on a shared machine do not inflate. */
static int bench_cpu_clock;
static double bench_now(void)
{
    struct timespec ts;
    if (!bench_cpu_clock || clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts))
        return apt_now();
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Seconds per pattern of one forward + gradient call over the J positions. */
static double model_rep(apt_ptycho *p, bench_case *c, apt_error *err)
{
    double loss, t0 = bench_now();
    if (apt_ptycho_loss_grad(p, c->probe, c->object, c->pos, c->meas, c->J, &loss, c->grad, NULL, err))
        return -1;
    return (bench_now() - t0) / (double)c->J;
}

/* The model's FFTs alone, on the model's own plan shape (modes in groups of G = apt_ptycho_fft_batch per batched transform) and
   in its order: per group the forward chain (L - 1 pairs) and the far field, then per group the far field back and
   L - 1 pairs: 4L - 2 transforms of M modes per pattern, on as many wavefield buffers as the model keeps. */
typedef struct fft_case {
    apt_fft_plan *pl;
    float *buf;
    int G;
} fft_case;

static int fft_case_new(fft_case *f, const apt_ptycho *p, apt_error *err)
{
    const apt_ptycho_geom *g = apt_ptycho_geometry(p);
    size_t hw = (size_t)g->H * g->W, mhw = (size_t)g->M * hw;
    unsigned flags = hw >= 64 * 64 ? APT_FFT_MEASURE : 0; /* as apt_ptycho_new plans */
    f->G = apt_ptycho_fft_batch(p);
    if (apt_fft_plan_new(f->G, g->H, g->W, flags, APT_BACKEND_CPU, &f->pl, err))
        return -1;
    if (!(f->buf = apt_fft_alloc(mhw * (size_t)g->L))) {
        apt_err(err, APT_ENOMEM, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < 2 * mhw * g->L; i++)
        f->buf[i] = frand() - 0.5f;
    return 0;
}

static void scale(float *b, size_t n, float s)
{
    for (size_t i = 0; i < n; i++)
        b[i] *= s;
}

/* Seconds per pattern of the FFTs of J patterns. Each unscaled round trip multiplies the data by H W: the buffers are
   scaled back between the timed stretches (not counted), so the transforms never see inf or NaN. */
static double fft_rep(const fft_case *f, const apt_ptycho_geom *g, size_t J)
{
    size_t hw = (size_t)g->H * g->W, ghw = (size_t)f->G * hw;
    int Q = g->M / f->G, L = g->L;
    float s = 1.0f / (float)hw;
    double t = 0, t0;
#define BUF(q, l) (f->buf + 2 * ghw * ((size_t)(q) * L + (l)))
    for (size_t j = 0; j < J; j++) {
        for (int q = 0; q < Q; q++) { /* forward chain and far field */
            t0 = bench_now();
            for (int l = 0; l + 1 < L; l++) {
                apt_fft_forward(f->pl, BUF(q, l), NULL);
                apt_fft_inverse_unscaled(f->pl, BUF(q, l), NULL);
            }
            apt_fft_forward(f->pl, BUF(q, L - 1), NULL);
            t += bench_now() - t0;
            for (int l = 0; l + 1 < L; l++)
                scale(BUF(q, l), 2 * ghw, s);
        }
        for (int q = 0; q < Q; q++) /* backward chain: all on the far-field buffer, as in the model */
            for (int l = L - 1; l >= 0; l--) {
                t0 = bench_now();
                if (l < L - 1)
                    apt_fft_forward(f->pl, BUF(q, L - 1), NULL);
                apt_fft_inverse_unscaled(f->pl, BUF(q, L - 1), NULL);
                t += bench_now() - t0;
                scale(BUF(q, L - 1), 2 * ghw, s);
            }
    }
#undef BUF
    return t / (double)J;
}

/* Best (least) seconds per pattern over repetitions for about min_s: other processes only ever add time, so the
   minimum is the machine's own speed. With ff, model and FFT-only repetitions alternate so that both see the same
   machine state; *tf gets the FFT-only best. At least 3 repetitions of each. */
static double time_best(apt_ptycho *p, bench_case *c, const fft_case *ff, double min_s, double *tf, apt_error *err)
{
    double bm = INFINITY, bf = INFINITY, t0 = apt_now();
    if (model_rep(p, c, err) < 0) /* warm */
        return -1;
    for (int rep = 0; rep < 3 || apt_now() - t0 < min_s; rep++) {
        double t = model_rep(p, c, err);
        if (t < 0)
            return -1;
        bm = t < bm ? t : bm;
        if (ff) {
            t = fft_rep(ff, &c->g, c->J);
            bf = t < bf ? t : bf;
        }
    }
    if (tf)
        *tf = bf;
    return bm;
}

static const char HELP[] =
    "usage: aptomo bench ptycho [--size N] [--modes M] [--slices L] [--positions J] [--threads T] [--seconds S]\n"
    "                           [--wisdom FILE]\n"
    "Diffraction patterns per second of the multislice model (forward + gradient) on 1 thread and on T, and the\n"
    "same FFTs alone (fft_bound_fraction = FFT-only time / full time). Each figure is the best of repeated\n"
    "calls (model and FFT-only alternating); the 1-thread pair counts the thread's CPU time, so other load on\n"
    "the machine does not count; speedup_vs_1_thread compares wall times.\n"
    "  --size N       probe window N x N, 8..1024 (default 128)\n"
    "  --modes M      probe modes, 1..64 (default 12)\n"
    "  --slices L     object slices, 1..64 (default 5)\n"
    "  --positions J  scan positions per call, 1..4096 (default 16)\n"
    "  --threads T    threads, 0 = all cores (default 0); 1: the 1-thread line only\n"
    "  --seconds S    time per measurement (the 1-thread pair gets 2 S), 0 < S <= 600 (default 3)\n"
    "  --wisdom FILE  FFTW wisdom: loaded before planning (if the file exists) and saved after, so that repeated\n"
    "                 runs time the same plans instead of re-measuring them on a busy machine\n";

int bench_ptycho(int argc, char **argv)
{
    enum { O_SIZE = 256, O_MODES, O_SLICES, O_POSITIONS, O_THREADS, O_SECONDS, O_WISDOM };
    static const struct option opts[] = {
        {"size", required_argument, NULL, O_SIZE},           {"modes", required_argument, NULL, O_MODES},
        {"slices", required_argument, NULL, O_SLICES},       {"positions", required_argument, NULL, O_POSITIONS},
        {"threads", required_argument, NULL, O_THREADS},     {"seconds", required_argument, NULL, O_SECONDS},
        {"wisdom", required_argument, NULL, O_WISDOM},       {0}};
    uint64_t n = 128, M = 12, L = 5, J = 16, threads = 0;
    double seconds = 3;
    const char *wisdom = NULL;
    cli_parser p;
    int oc = 0;
    cli_init(&p, "bench ptycho", HELP, NULL, opts, argc, argv);
    while ((oc = cli_next(&p)) > 0) {
        switch (oc) {
        case O_SIZE: cli_uint(&p, 8, 1024, &n); break;
        case O_MODES: cli_uint(&p, 1, 64, &M); break;
        case O_SLICES: cli_uint(&p, 1, 64, &L); break;
        case O_POSITIONS: cli_uint(&p, 1, 4096, &J); break;
        case O_THREADS: cli_uint(&p, 0, 64, &threads); break;
        case O_SECONDS: cli_real(&p, 0, 600, CLI_OPEN_LO, &seconds); break;
        case O_WISDOM: wisdom = p.arg; break;
        }
    }
    int cli_rc = cli_done(&p, oc, 0, 0, "");
    if (cli_rc != CLI_GO)
        return cli_rc;
    bench_case c = {0};
    if (case_new(&c, (int)n, (int)M, (int)L, (size_t)J)) {
        case_free(&c);
        fprintf(stderr, "aptomo bench ptycho: out of memory\n");
        return CLI_FAIL;
    }
    apt_error err = {0};
    apt_ptycho *p1 = NULL, *pt = NULL;
    fft_case ff = {0};
    if (wisdom && apt_fft_wisdom_load(wisdom, &err)) {
        fprintf(stderr, "aptomo bench ptycho: %s\n", err.msg);
        case_free(&c);
        return CLI_USAGE;
    }
    int rc = apt_ptycho_new(&c.g, 1, APT_BACKEND_CPU, &p1, &err);
    if (!rc)
        rc = apt_ptycho_new(&c.g, (int)threads, APT_BACKEND_CPU, &pt, &err);
    if (!rc)
        rc = fft_case_new(&ff, p1, &err);
    if (!rc && wisdom)
        rc = apt_fft_wisdom_save(wisdom, &err);
    bench_cpu_clock = 1;
    double tf = -1, t1 = rc ? -1 : time_best(p1, &c, &ff, 2 * seconds, &tf, &err);
    bench_cpu_clock = 0; /* T threads: wall time, compared with the 1-thread wall time */
    int nth = apt_par_threads((int)threads);
    double t1w = t1 < 0 || nth == 1 ? t1 : time_best(p1, &c, NULL, seconds / 2, NULL, &err);
    double tt = t1w < 0 || nth == 1 ? t1w : time_best(pt, &c, NULL, seconds, NULL, &err);
    if (t1 < 0 || t1w < 0 || tt < 0) {
        fprintf(stderr, "aptomo bench ptycho: %s\n", err.msg);
        rc = CLI_FAIL;
    } else {
        const char *fmt = "{\"bench\":\"ptycho\",\"what\":\"%s\",\"size\":%d,\"modes\":%d,\"slices\":%d,"
                          "\"positions\":%d,\"threads\":%d,\"patterns_per_s\":%.2f,\"ffts_per_pattern\":%d%s}\n";
        char extra[160];
        int ffts = (int)((4 * L - 2) * M);
        snprintf(extra, sizeof extra, ",\"fft_only_patterns_per_s\":%.2f,\"fft_bound_fraction\":%.3f", 1 / tf,
                 tf / t1);
        printf(fmt, "forward+gradient", (int)n, (int)M, (int)L, (int)J, 1, 1 / t1, ffts, extra);
        snprintf(extra, sizeof extra, ",\"speedup_vs_1_thread\":%.2f", t1w / tt);
        if (nth > 1) /* one thread: the line above says it all */
            printf(fmt, "forward+gradient", (int)n, (int)M, (int)L, (int)J, nth, 1 / tt, ffts, extra);
        fflush(stdout);
        rc = CLI_OK;
    }
    apt_fft_free(ff.buf);
    apt_fft_plan_destroy(&ff.pl);
    apt_ptycho_destroy(&p1);
    apt_ptycho_destroy(&pt);
    case_free(&c);
    return rc;
}
