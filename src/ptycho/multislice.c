/* multislice.c - the multislice, mixed-state ptychography model (docs/PHYSICS.md) and the exact gradient of the
 * amplitude loss by reverse mode through the multislice chain. The M modes go through the FFT in groups of G (one
 * batched plan): a group's wavefields are small enough to stay in L2 from one FFT through the element-wise pass to the
 * next, which makes both the FFTs and the passes faster than one M-mode batch streaming from L3 (docs/PERFORMANCE.md).
 * Threads (apt_par_tasks) take contiguous runs of positions with private workspaces and gradient accumulators that
 * are summed in thread order, so results do not depend on scheduling. Nothing is allocated per position. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/parallel.h"
#include "ptycho/ptycho_int.h"

/* Geometry bounds, checked before any allocation. */
#define PT_MAX_MODES 64
#define PT_MAX_SLICES 512
#define PT_MAX_WIN 4096
#define PT_MAX_OBJ 32768
#define PT_MAX_BYTES ((size_t)16 << 30) /* all workspaces together */

static int check_geom(const apt_ptycho_geom *g, apt_error *err)
{
    if (g->M < 1 || g->M > PT_MAX_MODES)
        return apt_err(err, APT_ERANGE, "ptycho: modes M=%d out of range 1..%d", g->M, PT_MAX_MODES);
    if (g->L < 1 || g->L > PT_MAX_SLICES)
        return apt_err(err, APT_ERANGE, "ptycho: slices L=%d out of range 1..%d", g->L, PT_MAX_SLICES);
    if (g->H < 1 || g->W < 1 || g->H > PT_MAX_WIN || g->W > PT_MAX_WIN)
        return apt_err(err, APT_ERANGE, "ptycho: probe window %d x %d out of range 1..%d", g->H, g->W, PT_MAX_WIN);
    if (g->Ny < g->H || g->Nx < g->W || g->Ny > PT_MAX_OBJ || g->Nx > PT_MAX_OBJ)
        return apt_err(err, APT_ERANGE, "ptycho: object %d x %d must hold the %d x %d window and be <= %d", g->Ny,
                       g->Nx, g->H, g->W, PT_MAX_OBJ);
    if (!(g->wavelength_m > 0) || !isfinite(g->wavelength_m))
        return apt_err(err, APT_EINVAL, "ptycho: wavelength_m must be > 0, got %g", g->wavelength_m);
    if (!(g->pixel_size_m > 0) || !isfinite(g->pixel_size_m))
        return apt_err(err, APT_EINVAL, "ptycho: pixel_size_m must be > 0, got %g", g->pixel_size_m);
    if (!(g->dz_m >= 0) || !isfinite(g->dz_m))
        return apt_err(err, APT_EINVAL, "ptycho: dz_m must be >= 0, got %g", g->dz_m);
    return APT_OK;
}

/* numpy.fft.fftfreq(n, d)[k] */
static double fftfreq(int k, int n, double d) { return (k <= (n - 1) / 2 ? k : k - n) / (n * d); }

/* Modes per FFT batch: the largest divisor of M whose G wavefields take at most PT_GROUP_BYTES, a quarter of a
   1 MiB L2, leaving room for the object rows, the gradient window and the propagator. */
#define PT_GROUP_BYTES ((size_t)256 << 10)
static int mode_group(int M, size_t hw)
{
    int G = 1;
    for (int d = 2; d <= M; d++)
        if (M % d == 0 && (size_t)d * hw * 2 * sizeof(float) <= PT_GROUP_BYTES)
            G = d;
    return G;
}

/* complex values per wavefield slot of a group: G H W rounded up so that every slot starts 64-byte aligned, as the
   FFT plan needs */
static size_t group_pad(int G, size_t hw) { return ((size_t)G * hw + 7) & ~(size_t)7; }

int apt_ptycho_cpu_new(const apt_ptycho_geom *g, int threads, int measure, apt_ptycho **out, apt_error *err)
{
    *out = NULL;
    int rc = check_geom(g, err);
    if (rc)
        return rc;
    threads = apt_par_threads(threads);
    size_t hw = (size_t)g->H * g->W, mhw = (size_t)g->M * hw, obj = (size_t)g->L * g->Ny * g->Nx;
    int G = mode_group(g->M, hw), Q = g->M / G;
    size_t gpad = group_pad(G, hw);
    /* per thread: L wavefields of M modes + gradient accumulators (object, probe), complex float; far-field rows */
    size_t per = (((size_t)g->L * Q * gpad + obj + mhw) * 2 + hw * 3) * sizeof(float);
    if (per > PT_MAX_BYTES / (size_t)threads)
        return apt_err(err, APT_ERANGE, "ptycho: %d threads x %zu MiB of workspace exceed %zu GiB", threads,
                       per >> 20, PT_MAX_BYTES >> 30);

    apt_ptycho *p = calloc(1, sizeof *p);
    if (!p)
        return apt_err(err, APT_ENOMEM, "ptycho: out of memory");
    p->g = *g;
    p->threads = threads;
    p->group = G;
    p->ops = &apt_ptycho_cpu_ops;
    /* FFTW_MEASURE pays off for the large windows of real runs; small ones (tests, kernels) plan instantly. */
    unsigned flags = measure && hw >= 64 * 64 ? APT_FFT_MEASURE : 0;
    rc = apt_fft_plan_new(G, g->H, g->W, flags, APT_BACKEND_CPU, &p->plan, err);
    p->prop = apt_fft_alloc(hw);
    p->ws = calloc((size_t)threads, sizeof *p->ws);
    if (!rc && (!p->prop || !p->ws))
        rc = apt_err(err, APT_ENOMEM, "ptycho: out of memory");
    for (int t = 0; !rc && t < threads; t++) {
        ptycho_ws *w = &p->ws[t];
        w->psi = g->L > 1 ? apt_fft_alloc((size_t)(g->L - 1) * Q * gpad) : NULL;
        w->work = apt_fft_alloc((size_t)Q * gpad);
        w->gprobe = apt_fft_alloc(mhw);
        w->farI = malloc(hw * sizeof *w->farI);
        w->farf = malloc(hw * sizeof *w->farf);
        if ((g->L > 1 && !w->psi) || !w->work || !w->gprobe || !w->farI || !w->farf)
            rc = apt_err(err, APT_ENOMEM, "ptycho: out of memory for thread %d's workspace", t);
    }
    if (rc) {
        apt_ptycho_cpu_free(p);
        return rc;
    }
    /* Fresnel propagator over dz, with the inverse FFT's 1/(H W) folded in. */
    double s = 1.0 / (double)hw;
    for (int y = 0; y < g->H; y++) {
        double qy = fftfreq(y, g->H, g->pixel_size_m);
        for (int x = 0; x < g->W; x++) {
            double qx = fftfreq(x, g->W, g->pixel_size_m);
            double ph = -M_PI * g->wavelength_m * g->dz_m * (qy * qy + qx * qx);
            p->prop[2 * ((size_t)y * g->W + x)] = (float)(cos(ph) * s);
            p->prop[2 * ((size_t)y * g->W + x) + 1] = (float)(sin(ph) * s);
        }
    }
    *out = p;
    return APT_OK;
}

void apt_ptycho_cpu_free(apt_ptycho *p)
{
    if (!p)
        return;
    for (int t = 0; p->ws && t < p->threads; t++) {
        apt_fft_free(p->ws[t].psi);
        apt_fft_free(p->ws[t].work);
        apt_fft_free(p->ws[t].gobj);
        apt_fft_free(p->ws[t].gprobe);
        free(p->ws[t].farI);
        free(p->ws[t].farf);
    }
    free(p->ws);
    apt_fft_free(p->prop);
    apt_fft_plan_destroy(&p->plan);
    free(p->rgrad);
    free(p->rillum);
    free(p);
}

/* ---- the per-position engine ----
 * The element-wise passes sit between batched FFTs, so each one streams all M modes once; they are written to touch
 * memory as little as possible: the object row (and its gradient row) is held in L1 while the M mode rows run over
 * it, the far field is reduced and scaled one row at a time, the probe gradient is summed inside the last backward
 * pass, and the inner loops are restrict-qualified straight-line complex arithmetic that gcc vectorises. */

typedef struct job {
    apt_ptycho *p;
    const float *probe, *object, *meas;
    const int32_t *pos;
    const size_t *idx;
    size_t n;
    int T;
    int want_gobj, want_gprobe;
    float *intensity;
} job;

/* The element-wise passes also get an AVX2 twin, chosen when the library loads (function multi-versioning). No FMA
   in either twin (and -std=c11 forbids contraction), so both round identically: results do not depend on the CPU.
   -DPT_SIMD= builds the plain version only. */
#if !defined(PT_SIMD) && defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define PT_SIMD __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef PT_SIMD
#define PT_SIMD
#endif

/* dst[m] = src[m] * window of the slice (complex, G modes); row by row, so the object row is read once for all. */
PT_SIMD static void mul_window(float *restrict dst, const float *restrict src, const float *restrict o, int G, int H,
                               int W, int Nx)
{
    size_t hw = (size_t)H * W;
    for (int y = 0; y < H; y++) {
        const float *restrict b = o + 2 * (size_t)y * Nx;
        for (int m = 0; m < G; m++) {
            const float *restrict a = src + 2 * (m * hw + (size_t)y * W);
            float *restrict d = dst + 2 * (m * hw + (size_t)y * W);
            for (int x = 0; x < W; x++) {
                float ar = a[2 * x], ai = a[2 * x + 1], br = b[2 * x], bi = b[2 * x + 1];
                d[2 * x] = ar * br - ai * bi;
                d[2 * x + 1] = ar * bi + ai * br;
            }
        }
    }
}

/* d[m] *= k (conj(k) when cj), for every mode. */
PT_SIMD static void mul_kernel(float *restrict d, const float *restrict k, int M, size_t hw, int cj)
{
    float sg = cj ? -1.0f : 1.0f;
    for (int m = 0; m < M; m++) {
        float *restrict v = d + 2 * m * hw;
        for (size_t i = 0; i < hw; i++) {
            float vr = v[2 * i], vi = v[2 * i + 1], kr = k[2 * i], ki = sg * k[2 * i + 1];
            v[2 * i] = vr * kr - vi * ki;
            v[2 * i + 1] = vr * ki + vi * kr;
        }
    }
}

/* Backward through "phi = psi * o": gw(window) += sum_m conj(psi_m) g_m (if gw, modes in order), then
   g_m = conj(o) g_m, or with gp, gp_m += conj(o) g_m instead (the probe gradient, at the first slice). One pass. */
PT_SIMD static void back_window(float *restrict g, const float *restrict psi, const float *restrict o,
                                float *restrict gw, float *restrict gp, int M, int H, int W, int Nx)
{
    size_t hw = (size_t)H * W;
    for (int y = 0; y < H; y++)
        for (int m = 0; m < M; m++) {
            size_t off = 2 * (m * hw + (size_t)y * W);
            float *restrict a = g + off;
            const float *restrict s = psi + off, *restrict b = o + 2 * (size_t)y * Nx;
            float *restrict acc = gw ? gw + 2 * (size_t)y * Nx : NULL;
            if (acc && !gp)
                for (int x = 0; x < W; x++) {
                    float gr = a[2 * x], gi = a[2 * x + 1], sr = s[2 * x], si = s[2 * x + 1];
                    float br = b[2 * x], bi = b[2 * x + 1];
                    acc[2 * x] += sr * gr + si * gi;
                    acc[2 * x + 1] += sr * gi - si * gr;
                    a[2 * x] = br * gr + bi * gi;
                    a[2 * x + 1] = br * gi - bi * gr;
                }
            else {
                if (acc)
                    for (int x = 0; x < W; x++) {
                        float gr = a[2 * x], gi = a[2 * x + 1], sr = s[2 * x], si = s[2 * x + 1];
                        acc[2 * x] += sr * gr + si * gi;
                        acc[2 * x + 1] += sr * gi - si * gr;
                    }
                float *restrict d = gp ? gp + off : a;
                if (gp)
                    for (int x = 0; x < W; x++) {
                        float gr = a[2 * x], gi = a[2 * x + 1], br = b[2 * x], bi = b[2 * x + 1];
                        d[2 * x] += br * gr + bi * gi;
                        d[2 * x + 1] += br * gi - bi * gr;
                    }
                else
                    for (int x = 0; x < W; x++) {
                        float gr = a[2 * x], gi = a[2 * x + 1], br = b[2 * x], bi = b[2 * x + 1];
                        d[2 * x] = br * gr + bi * gi;
                        d[2 * x + 1] = br * gi - bi * gr;
                    }
            }
        }
}

/* I (+)= sum over the G modes of |w_m|^2, in mode order (the first group of a position assigns). */
PT_SIMD static void add_intensity(double *restrict I, const float *restrict w, int G, size_t hw, int first)
{
    for (int m = 0; m < G; m++) {
        const float *restrict v = w + 2 * m * hw;
        if (first && m == 0)
            for (size_t i = 0; i < hw; i++)
                I[i] = (double)v[2 * i] * v[2 * i] + (double)v[2 * i + 1] * v[2 * i + 1];
        else
            for (size_t i = 0; i < hw; i++)
                I[i] += (double)v[2 * i] * v[2 * i] + (double)v[2 * i + 1] * v[2 * i + 1];
    }
}

/* One pixel's amplitude loss and factor f, where dL/dconj(Psi_m) * 2 = f Psi_m; unmeasured (< 0) pixels: 0. */
static inline float amp_factor(double I, double mv, double *loss)
{
    if (!(mv >= 0))
        return 0;
    double a = sqrt(I), d = a - sqrt(mv);
    *loss += d * d;
    return (float)(2 * d / (a + APT_PTYCHO_EPS));
}

/* From the mode-summed far-field intensity I (unshifted order): the loss against the centred measurement and the
   factor f of every pixel, or without meas the intensity, centred, into out. Pixel k of the unshifted transform
   is pixel (k + n/2) mod n of the centred one: each row (and column) is two runs, [0, n - n/2) -> + n/2 and
   [n - n/2, n) -> - (n - n/2), so no index needs a modulo. */
static double far_factor(const double *restrict I, const float *restrict meas, float *restrict f,
                         float *restrict out, int H, int W)
{
    int wa = W - W / 2, ha = H - H / 2;
    double loss = 0;
    for (int y = 0; y < H; y++) {
        const double *Iy = I + (size_t)y * W;
        size_t ys = (size_t)(y < ha ? y + H / 2 : y - ha) * W;
        if (out) {
            for (int x = 0; x < wa; x++)
                out[ys + W / 2 + x] = (float)Iy[x];
            for (int x = wa; x < W; x++)
                out[ys + x - wa] = (float)Iy[x];
            continue;
        }
        float *fy = f + (size_t)y * W;
        for (int x = 0; x < wa; x++)
            fy[x] = amp_factor(Iy[x], meas[ys + W / 2 + x], &loss);
        for (int x = wa; x < W; x++)
            fy[x] = amp_factor(Iy[x], meas[ys + x - wa], &loss);
    }
    return loss;
}

/* w[m] *= f, for the G modes. */
PT_SIMD static void mul_factor(float *restrict w, const float *restrict f, int G, size_t hw)
{
    for (int m = 0; m < G; m++) {
        float *restrict v = w + 2 * m * hw;
        for (size_t i = 0; i < hw; i++) {
            v[2 * i] *= f[i];
            v[2 * i + 1] *= f[i];
        }
    }
}

/* Thread t's share of the positions: [n t / T, n (t + 1) / T). Per position, group by group: the forward chain and
   the far field, whose intensity is summed over all modes; then the loss and the factor f; then group by group (in
   the same order, so the object gradient adds the modes in order m = 0..M-1 as ever) the backward chain. */
static void run_task(void *ctx, int t)
{
    job *jb = ctx;
    apt_ptycho *p = jb->p;
    const apt_ptycho_geom *g = &p->g;
    ptycho_ws *ws = &p->ws[t];
    int H = g->H, W = g->W, L = g->L, Nx = g->Nx, G = p->group, Q = g->M / G;
    size_t hw = (size_t)H * W, ghw = (size_t)G * hw, slice = (size_t)g->Ny * Nx, gpad = group_pad(G, hw);
    int backward = jb->meas && (jb->want_gobj || jb->want_gprobe);
    apt_error *err = &ws->err;
    ws->loss = 0;
    ws->rc = APT_OK;
    for (size_t k = jb->n * t / jb->T; k < jb->n * (t + 1) / jb->T && !ws->rc; k++) {
        size_t j = jb->idx ? jb->idx[k] : k;
        int r = jb->pos[2 * j], c = jb->pos[2 * j + 1];
        const float *o0 = jb->object + 2 * ((size_t)r * Nx + c);
        /* the incident wave of group q at slice l: the probe, then the stored slots */
#define PSI(q, l) (ws->psi + 2 * ((size_t)(q) * (L - 1) + (l) - 1) * gpad)
#define SLOT(q, l) ((l) == 0 ? jb->probe + 2 * (size_t)(q) * ghw : PSI(q, l))
        for (int q = 0; q < Q && !ws->rc; q++) {
            /* forward: psi_{l+1} = F^-1[F[psi_l o_l] H], stored for the backward pass */
            for (int l = 0; l + 1 < L && !ws->rc; l++) {
                float *dst = PSI(q, l + 1);
                mul_window(dst, SLOT(q, l), o0 + 2 * l * slice, G, H, W, Nx);
                ws->rc = apt_fft_forward(p->plan, dst, err);
                mul_kernel(dst, p->prop, G, hw, 0);
                if (!ws->rc)
                    ws->rc = apt_fft_inverse_unscaled(p->plan, dst, err);
            }
            float *fw = ws->work + 2 * (size_t)q * gpad;
            mul_window(fw, SLOT(q, L - 1), o0 + 2 * (size_t)(L - 1) * slice, G, H, W, Nx);
            if (!ws->rc)
                ws->rc = apt_fft_forward(p->plan, fw, err);
            add_intensity(ws->farI, fw, G, hw, q == 0);
        }
        if (ws->rc)
            break;
        const float *mj = jb->meas ? jb->meas + j * hw : NULL;
        ws->loss += far_factor(ws->farI, mj, ws->farf, mj ? NULL : jb->intensity + k * hw, H, W);
        if (!backward)
            continue;
        if (r < ws->r0)
            ws->r0 = r;
        if (r + H > ws->r1)
            ws->r1 = r + H;
        if (c < ws->c0)
            ws->c0 = c;
        if (c + W > ws->c1)
            ws->c1 = c + W;
        for (int q = 0; q < Q && !ws->rc; q++) {
            /* backward: g_exit = F^H g_Psi = (H W) F^-1 g_Psi; through each slice and (adjoint) propagator */
            float *fw = ws->work + 2 * (size_t)q * gpad;
            mul_factor(fw, ws->farf, G, hw);
            ws->rc = apt_fft_inverse_unscaled(p->plan, fw, err);
            for (int l = L - 1; l >= 0 && !ws->rc; l--) {
                size_t off = 2 * ((size_t)l * slice + (size_t)r * Nx + c);
                back_window(fw, SLOT(q, l), o0 + 2 * (size_t)l * slice, jb->want_gobj ? ws->gobj + off : NULL,
                            l == 0 && jb->want_gprobe ? ws->gprobe + 2 * (size_t)q * ghw : NULL, G, H, W, Nx);
                if (l == 0)
                    break;
                /* adjoint of F^-1 diag(H) F is F^-1 diag(conj H) F */
                ws->rc = apt_fft_forward(p->plan, fw, err);
                mul_kernel(fw, p->prop, G, hw, 1);
                if (!ws->rc)
                    ws->rc = apt_fft_inverse_unscaled(p->plan, fw, err);
            }
        }
#undef SLOT
#undef PSI
    }
}

static int cpu_run(apt_ptycho *p, const float *probe, const float *object, const int32_t *pos, const float *meas,
                   const size_t *idx, size_t n, double *loss, float *gobj, float *gprobe, float *intensity,
                   apt_error *err)
{
    const apt_ptycho_geom *g = &p->g;
    int want_gobj = meas && gobj, want_gprobe = meas && gprobe;
    size_t slice = (size_t)g->Ny * g->Nx, obj = (size_t)g->L * slice, mhw = (size_t)g->M * g->H * g->W;
    int T = n < (size_t)p->threads ? (int)(n ? n : 1) : p->threads;
    for (int t = 0; t < T; t++) {
        ptycho_ws *ws = &p->ws[t];
        if (want_gobj && !ws->gobj && !(ws->gobj = apt_fft_alloc(obj)))
            return apt_err(err, APT_ENOMEM, "ptycho: out of memory for gradient accumulators");
        ws->r0 = g->Ny, ws->r1 = 0, ws->c0 = g->Nx, ws->c1 = 0;
    }
    job jb = {.p = p, .probe = probe, .object = object, .meas = meas, .pos = pos, .idx = idx, .n = n, .T = T,
              .want_gobj = want_gobj, .want_gprobe = want_gprobe, .intensity = intensity};
    apt_par_tasks(run_task, &jb, T);

    /* reduce in thread order; zero the accumulators again behind us */
    int rc = APT_OK;
    double total = 0;
    for (int t = 0; t < T; t++) {
        ptycho_ws *ws = &p->ws[t];
        if (ws->rc && !rc) {
            rc = ws->rc;
            if (err)
                *err = ws->err;
        }
        total += ws->loss;
        if (want_gobj && ws->r1 > ws->r0) {
            size_t w = 2 * (size_t)(ws->c1 - ws->c0);
            for (int l = 0; l < g->L; l++)
                for (int r = ws->r0; r < ws->r1; r++) {
                    size_t off = 2 * ((size_t)l * slice + (size_t)r * g->Nx + ws->c0);
                    float *a = ws->gobj + off;
                    if (!rc)
                        for (size_t i = 0; i < w; i++)
                            gobj[off + i] += a[i];
                    memset(a, 0, w * sizeof(float));
                }
        }
        if (want_gprobe) {
            if (!rc)
                for (size_t i = 0; i < 2 * mhw; i++)
                    gprobe[i] += ws->gprobe[i];
            memset(ws->gprobe, 0, 2 * mhw * sizeof(float));
        }
    }
    if (loss)
        *loss = total;
    return rc;
}

const struct apt_ptycho_ops apt_ptycho_cpu_ops = {
    .name = "cpu", .init = NULL, .fini = NULL, .run = cpu_run, .descend = apt_ptycho_cpu_descend};
