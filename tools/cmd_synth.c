/* cmd_synth.c - `aptomo synth-scan`: a SYNTHETIC scan file for ingest tests, demos and benchmarks. The frames only
 * look like detector data (Airy-like disc, speckle halo, Poisson counts, Eiger-style gap rows/columns, zeros far
 * out) so that compression, cropping and replay behave realistically; there is no physics (see `aptomo simulate`).
 * Everything derives from --seed: the same arguments give a byte-identical file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/scanfile.h"
#include "cli.h"

#define SYNTH_MAX_SIDE 8192u
#define SYNTH_BATCH 8u
#define SYNTH_ENERGY_KEV 6.2
#define SYNTH_DISTANCE_M 5.0
#define SYNTH_PIXEL_M 75e-6
#define SYNTH_STEP_M 100e-9

typedef struct { uint64_t s[4]; } rng;

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng *r) /* xoshiro256** */
{
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

static double rng_unif(rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

static double rng_normal(rng *r)
{
    double u = rng_unif(r), v = rng_unif(r);
    return sqrt(-2.0 * log(u > 0 ? u : 0x1.0p-53)) * cos(2.0 * M_PI * v);
}

/* Poisson counts: product of uniforms for small means, rounded normal beyond (synthetic data, not statistics). */
static uint64_t rng_poisson(rng *r, double lam)
{
    if (lam <= 0)
        return 0;
    if (lam < 30) {
        double l = exp(-lam), p = 1.0;
        uint64_t k = 0;
        while ((p *= rng_unif(r)) > l)
            k++;
        return k;
    }
    double x = floor(lam + sqrt(lam) * rng_normal(r) + 0.5);
    return x < 0 ? 0 : (uint64_t)x;
}

typedef struct synth {
    uint32_t N, J, W, H, elem;
    uint64_t seed;
    double range_deg, flux, cy, cx;
    float *disc, *halo; /* mean counts per pixel: deterministic disc, halo envelope to multiply by speckle */
} synth;

static int is_gap(const synth *s, uint32_t y, uint32_t x)
{
    if (s->H >= 16 && (y == s->H / 2 - 1 || y == s->H / 2))
        return 1;
    if (s->W >= 16)
        for (uint32_t q = 1; q < 4; q++)
            if (x == q * s->W / 4 - 1 || x == q * s->W / 4)
                return 1;
    return 0;
}

/* Mean pattern: Airy-like disc (2 J1(x)/x)^2 plus an exponentially decaying halo, zero beyond rmax, normalised to
 * flux counts per frame on the active (non-gap) pixels (the speckle multiplier has mean 1). */
static int synth_plan(synth *s)
{
    size_t n = (size_t)s->H * s->W;
    s->disc = malloc(n * sizeof *s->disc);
    s->halo = malloc(n * sizeof *s->halo);
    if (!s->disc || !s->halo)
        return -1;
    double side = s->H < s->W ? s->H : s->W;
    double r0 = side / 40 > 3 ? side / 40 : 3, rh = side / 10, rmax = 0.45 * side, sum = 0;
    s->cy = floor(0.55 * s->H); /* off the gap rows/columns, on a pixel like a real direct beam */
    s->cx = floor(0.45 * s->W);
    for (uint32_t y = 0; y < s->H; y++)
        for (uint32_t x = 0; x < s->W; x++) {
            double dy = y - s->cy, dx = x - s->cx, r = sqrt(dy * dy + dx * dx), a = 3.8317 * r / r0;
            double airy = a < 1e-9 ? 1.0 : 2.0 * j1(a) / a, d = airy * airy, h = 0.02 * exp(-r / rh);
            if (r > rmax)
                d = h = 0;
            s->disc[(size_t)y * s->W + x] = (float)d;
            s->halo[(size_t)y * s->W + x] = (float)h;
            if (!is_gap(s, y, x)) /* flux = counts on active pixels */
                sum += d + h;
        }
    double k = sum > 0 ? s->flux / sum : 0;
    for (size_t i = 0; i < n; i++) {
        s->disc[i] = (float)(s->disc[i] * k);
        s->halo[i] = (float)(s->halo[i] * k);
    }
    return 0;
}

static void synth_frame(const synth *s, uint32_t angle, uint32_t j, void *dst)
{
    rng r;
    rng_seed(&r, s->seed * 0x100000001B3ull ^ ((uint64_t)angle << 32 | j));
    uint64_t gap = s->elem == 2 ? 0xFFFFu : 0xFFFFFFFFu, top = gap - 1;
    for (uint32_t y = 0; y < s->H; y++)
        for (uint32_t x = 0; x < s->W; x++) {
            size_t i = (size_t)y * s->W + x;
            uint64_t v;
            if (is_gap(s, y, x)) {
                v = gap;
            } else {
                double lam = s->disc[i];
                if (s->halo[i] > 0) /* fully developed speckle: exponential intensity, mean 1 */
                    lam += s->halo[i] * -log(1.0 - rng_unif(&r));
                v = rng_poisson(&r, lam);
                v = v > top ? top : v;
            }
            if (s->elem == 2)
                ((uint16_t *)dst)[i] = (uint16_t)v;
            else
                ((uint32_t *)dst)[i] = (uint32_t)v;
        }
}

/* Jittered raster, 100 nm step, centred on the scan centre; (y, x) metres. */
static void synth_positions(const synth *s, uint32_t angle, double *pos)
{
    rng r;
    rng_seed(&r, ~s->seed ^ ((uint64_t)angle << 40));
    uint32_t cols = (uint32_t)ceil(sqrt((double)s->J)), rows = (s->J + cols - 1) / cols;
    for (uint32_t j = 0; j < s->J; j++) {
        double ry = (double)(j / cols) - 0.5 * (rows - 1), rx = (double)(j % cols) - 0.5 * (cols - 1);
        pos[2 * j] = (ry + 0.3 * (rng_unif(&r) - 0.5)) * SYNTH_STEP_M;
        pos[2 * j + 1] = (rx + 0.3 * (rng_unif(&r) - 0.5)) * SYNTH_STEP_M;
    }
}

/* Placeholder probe [1,H,W]: Gaussian amplitude with a weak quadratic phase, sum |P|^2 = flux. */
static float *synth_probe(const synth *s)
{
    size_t n = (size_t)s->H * s->W;
    float *p = malloc(2 * n * sizeof *p);
    if (!p)
        return NULL;
    double sy = s->H / 8.0, sx = s->W / 8.0, sum = 0;
    for (uint32_t y = 0; y < s->H; y++)
        for (uint32_t x = 0; x < s->W; x++) {
            double dy = (y - 0.5 * s->H) / sy, dx = (x - 0.5 * s->W) / sx, q = dy * dy + dx * dx;
            double a = exp(-0.5 * q), ph = 0.5 * q;
            p[2 * ((size_t)y * s->W + x)] = (float)(a * cos(ph));
            p[2 * ((size_t)y * s->W + x) + 1] = (float)(a * sin(ph));
            sum += a * a;
        }
    double k = sqrt(s->flux / sum);
    for (size_t i = 0; i < 2 * n; i++)
        p[i] = (float)(p[i] * k);
    return p;
}

static const char HELP[] =
    "usage: aptomo synth-scan -o SCAN.h5 [--angles N] [--frames J] [--width W] [--height H]\n"
    "                         [--dtype uint16|uint32] [--seed S] [--range-deg D] [--flux F]\n"
    "Writes SYNTHETIC detector data for ingest tests, demos and benchmarks - no physics (use `aptomo\n"
    "simulate` for that). Each frame: Airy-like disc + speckle halo around the beam centre, Poisson counts,\n"
    "Eiger-style gap rows/columns at the maximum value, zeros far out. Positions: jittered raster, 100 nm\n"
    "step. Angles evenly over [-D, +D]. Probe: Gaussian placeholder [1,H,W]. Same seed, same file.\n"
    "  -o FILE          output scan file (required)\n"
    "  --angles N       tomographic angles (default 4)\n"
    "  --frames J       frames per angle (default 64)\n"
    "  --width W        frame width in pixels (default 1030, at most 8192)\n"
    "  --height H       frame height in pixels (default 514, at most 8192)\n"
    "  --dtype T        uint16 (default) or uint32\n"
    "  --seed S         PRNG seed (default 1)\n"
    "  --range-deg D    half angular range in degrees, 0..90 (default 17)\n"
    "  --flux F         mean counts per frame, 0 < F <= 1e15 (default 1e6)\n";

static int opt_u32(cli_parser *p, uint32_t lo, uint32_t hi, uint32_t *out)
{
    uint64_t v;
    if (cli_uint(p, lo, hi, &v))
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* 0 parsed, 1 stop with CLI_OK (help), else the exit status. */
static int parse_args(int argc, char **argv, synth *s, const char **out)
{
    enum { O_ANGLES = 256, O_FRAMES, O_WIDTH, O_HEIGHT, O_DTYPE, O_SEED, O_RANGE, O_FLUX };
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},     {"angles", required_argument, NULL, O_ANGLES},
        {"frames", required_argument, NULL, O_FRAMES}, {"width", required_argument, NULL, O_WIDTH},
        {"height", required_argument, NULL, O_HEIGHT}, {"dtype", required_argument, NULL, O_DTYPE},
        {"seed", required_argument, NULL, O_SEED},     {"range-deg", required_argument, NULL, O_RANGE},
        {"flux", required_argument, NULL, O_FLUX},     {0}};
    static const char *const dtypes[] = {"uint16", "uint32", NULL};
    cli_parser p;
    int c = 0, k;
    cli_init(&p, "synth-scan", HELP, "o:", opts, argc, argv);
    while ((c = cli_next(&p)) > 0) {
        switch (c) {
        case 'o': *out = p.arg; break;
        case O_ANGLES: opt_u32(&p, 1, APT_SCAN_MAX_ANGLES, &s->N); break;
        case O_FRAMES: opt_u32(&p, 1, APT_SCAN_MAX_FRAMES, &s->J); break;
        case O_WIDTH: opt_u32(&p, 1, SYNTH_MAX_SIDE, &s->W); break;
        case O_HEIGHT: opt_u32(&p, 1, SYNTH_MAX_SIDE, &s->H); break;
        case O_DTYPE:
            if (!cli_choice(&p, dtypes, &k))
                s->elem = k ? 4 : 2;
            break;
        case O_SEED: cli_uint(&p, 0, UINT64_MAX, &s->seed); break;
        case O_RANGE: cli_real(&p, 0, 90, 0, &s->range_deg); break;
        case O_FLUX: cli_real(&p, 0, 1e15, CLI_OPEN_LO, &s->flux); break;
        }
    }
    int cli_rc = cli_done(&p, c, 0, 0, "");
    if (cli_rc != CLI_GO)
        return cli_rc == CLI_OK ? 1 : cli_rc;
    if (!*out)
        return cli_fail(&p, "-o SCAN.h5 is required");
    return 0;
}

static int synth_write(synth *s, const char *out)
{
    apt_error err = {0};
    double *angles = malloc(s->N * sizeof *angles), *pos = malloc((size_t)s->J * 2 * sizeof *pos);
    size_t fbytes = (size_t)s->H * s->W * s->elem;
    void *buf = malloc(SYNTH_BATCH * fbytes);
    float *probe = NULL;
    apt_scanfile *sf = NULL;
    int rc = -1;
    if (!angles || !pos || !buf || synth_plan(s) || !(probe = synth_probe(s))) {
        fprintf(stderr, "aptomo synth-scan: out of memory\n");
        goto done;
    }
    for (uint32_t a = 0; a < s->N; a++)
        angles[a] = s->N == 1 ? 0.0 : -s->range_deg + 2.0 * s->range_deg * a / (s->N - 1);
    apt_scan_header h = {SYNTH_ENERGY_KEV, SYNTH_DISTANCE_M, SYNTH_PIXEL_M, {s->cy, s->cx}, s->N, angles};
    double lambda = 1.2398419843320026e-9 / SYNTH_ENERGY_KEV;
    if (apt_scanfile_create(out, &h, &sf, &err) ||
        apt_scanfile_write_probe(sf, 1, s->H, s->W, probe, lambda * SYNTH_DISTANCE_M / (s->W * SYNTH_PIXEL_M), &err))
        goto fail;
    cli_progress bar;
    cli_progress_start(&bar, "synth-scan", (uint64_t)s->N * s->J);
    for (uint32_t a = 0; a < s->N; a++) {
        synth_positions(s, a, pos);
        if (apt_scanfile_write_angle(sf, a, angles[a], s->J, s->H, s->W, s->elem, NULL, pos, &err))
            goto fail;
        for (uint32_t j0 = 0; j0 < s->J; j0 += SYNTH_BATCH) {
            uint32_t cnt = s->J - j0 < SYNTH_BATCH ? s->J - j0 : SYNTH_BATCH;
            for (uint32_t k = 0; k < cnt; k++)
                synth_frame(s, a, j0 + k, (uint8_t *)buf + k * fbytes);
            if (apt_scanfile_write_frames(sf, a, j0, cnt, buf, &err))
                goto fail;
            cli_progress_update(&bar, (uint64_t)a * s->J + j0 + cnt);
        }
    }
    cli_progress_end(&bar);
    if (apt_scanfile_close(&sf, &err))
        goto fail;
    printf("{\"file\":\"%s\",\"synthetic\":true,\"angles\":%u,\"frames_per_angle\":%u,\"height\":%u,\"width\":%u,"
           "\"dtype\":\"%s\",\"seed\":%llu}\n",
           out, s->N, s->J, s->H, s->W, s->elem == 2 ? "uint16" : "uint32", (unsigned long long)s->seed);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "aptomo synth-scan: %s\n", err.msg);
    apt_scanfile_close(&sf, NULL);
done:
    free(angles);
    free(pos);
    free(buf);
    free(probe);
    free(s->disc);
    free(s->halo);
    return rc;
}

int cmd_synth_scan(int argc, char **argv)
{
    synth s = {.N = 4, .J = 64, .W = 1030, .H = 514, .elem = 2, .seed = 1, .range_deg = 17, .flux = 1e6};
    const char *out = NULL;
    int p = parse_args(argc, argv, &s, &out);
    if (p)
        return p == 1 ? CLI_OK : p;
    if ((p = cli_check_output("-o", out)))
        return p;
    return synth_write(&s, out) ? CLI_FAIL : CLI_OK;
}
