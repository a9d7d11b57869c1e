/* multislice.c - the multislice, mixed-state ptychography model (docs/PHYSICS.md) and the exact gradient of the
 * amplitude loss by reverse mode through the multislice chain. All M modes of one position go through the FFT as
 * one batch (one plan); threads take contiguous runs of positions with private workspaces and gradient accumulators
 * that are summed in thread order, so results do not depend on scheduling. Nothing is allocated per position. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ptycho/ptycho_int.h"

/* Geometry bounds, checked before any allocation. */
#define PT_MAX_MODES 64
#define PT_MAX_SLICES 512
#define PT_MAX_WIN 4096
#define PT_MAX_OBJ 32768
#define PT_MAX_THREADS 64
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

int apt_ptycho_cpu_new(const apt_ptycho_geom *g, int threads, int measure, apt_ptycho **out, apt_error *err)
{
    *out = NULL;
    int rc = check_geom(g, err);
    if (rc)
        return rc;
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    if (threads > PT_MAX_THREADS)
        threads = PT_MAX_THREADS;
    size_t hw = (size_t)g->H * g->W, mhw = (size_t)g->M * hw, obj = (size_t)g->L * g->Ny * g->Nx;
    size_t pad = (mhw + 7) & ~(size_t)7; /* wavefield slots start 64-byte aligned, as the FFT plan needs */
    /* per thread: L wavefields of M modes + gradient accumulators (object, probe), complex float */
    size_t per = ((size_t)g->L * mhw + obj + mhw) * 2 * sizeof(float);
    if (per > PT_MAX_BYTES / (size_t)threads)
        return apt_err(err, APT_ERANGE, "ptycho: %d threads x %zu MiB of workspace exceed %zu GiB", threads,
                       per >> 20, PT_MAX_BYTES >> 30);

    apt_ptycho *p = calloc(1, sizeof *p);
    if (!p)
        return apt_err(err, APT_ENOMEM, "ptycho: out of memory");
    p->g = *g;
    p->threads = threads;
    p->ops = &apt_ptycho_cpu_ops;
    /* FFTW_MEASURE pays off for the large windows of real runs; small ones (tests, kernels) plan instantly. */
    unsigned flags = measure && hw >= 64 * 64 ? APT_FFT_MEASURE : 0;
    rc = apt_fft_plan_new(g->M, g->H, g->W, flags, APT_BACKEND_CPU, &p->plan, err);
    p->prop = apt_fft_alloc(hw);
    p->ws = calloc((size_t)threads, sizeof *p->ws);
    if (!rc && (!p->prop || !p->ws))
        rc = apt_err(err, APT_ENOMEM, "ptycho: out of memory");
    for (int t = 0; !rc && t < threads; t++) {
        ptycho_ws *w = &p->ws[t];
        w->psi = g->L > 1 ? apt_fft_alloc((size_t)(g->L - 1) * pad) : NULL;
        w->work = apt_fft_alloc(mhw);
        w->gprobe = apt_fft_alloc(mhw);
        if ((g->L > 1 && !w->psi) || !w->work || !w->gprobe)
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
    }
    free(p->ws);
    apt_fft_free(p->prop);
    apt_fft_plan_destroy(&p->plan);
    free(p->rgrad);
    free(p->rillum);
    free(p);
}

/* ---- the per-position engine ---- */

typedef struct job {
    apt_ptycho *p;
    const float *probe, *object, *meas;
    const int32_t *pos;
    const size_t *idx;
    size_t k0, k1;
    int want_gobj, want_gprobe;
    float *intensity;
    ptycho_ws *ws;
} job;

/* dst[m] = src[m] * window of slice (complex, all modes). */
static void mul_window(float *dst, const float *src, const float *o, int M, int H, int W, int Nx)
{
    size_t hw = (size_t)H * W;
    for (int m = 0; m < M; m++)
        for (int y = 0; y < H; y++) {
            const float *a = src + 2 * (m * hw + (size_t)y * W), *b = o + 2 * (size_t)y * Nx;
            float *d = dst + 2 * (m * hw + (size_t)y * W);
            for (int x = 0; x < W; x++) {
                float ar = a[2 * x], ai = a[2 * x + 1], br = b[2 * x], bi = b[2 * x + 1];
                d[2 * x] = ar * br - ai * bi;
                d[2 * x + 1] = ar * bi + ai * br;
            }
        }
}

/* d[m] *= k (conj(k) when cj), for every mode. */
static void mul_kernel(float *d, const float *k, int M, size_t hw, int cj)
{
    float sg = cj ? -1.0f : 1.0f;
    for (int m = 0; m < M; m++) {
        float *v = d + 2 * m * hw;
        for (size_t i = 0; i < hw; i++) {
            float vr = v[2 * i], vi = v[2 * i + 1], kr = k[2 * i], ki = sg * k[2 * i + 1];
            v[2 * i] = vr * kr - vi * ki;
            v[2 * i + 1] = vr * ki + vi * kr;
        }
    }
}

/* Backward through "phi = psi * o": gobj(window) += sum_m conj(psi_m) g_m (if gw), then g_m = conj(o) g_m. */
static void back_window(float *g, const float *psi, const float *o, float *gw, int M, int H, int W, int Nx)
{
    size_t hw = (size_t)H * W;
    for (int m = 0; m < M; m++)
        for (int y = 0; y < H; y++) {
            float *a = g + 2 * (m * hw + (size_t)y * W);
            const float *s = psi + 2 * (m * hw + (size_t)y * W), *b = o + 2 * (size_t)y * Nx;
            float *acc = gw ? gw + 2 * (size_t)y * Nx : NULL;
            for (int x = 0; x < W; x++) {
                float gr = a[2 * x], gi = a[2 * x + 1];
                if (acc) {
                    float sr = s[2 * x], si = s[2 * x + 1];
                    acc[2 * x] += sr * gr + si * gi;
                    acc[2 * x + 1] += sr * gi - si * gr;
                }
                float br = b[2 * x], bi = b[2 * x + 1];
                a[2 * x] = br * gr + bi * gi;
                a[2 * x + 1] = br * gi - bi * gr;
            }
        }
}

/* Far field in w (unshifted): loss against the centred measurement and w <- dL/dconj(Psi) * 2 (or, without meas,
   the model intensity into out). Pixel k of the unshifted transform is pixel (k + n/2) mod n of the centred one. */
static double farfield(float *w, const float *meas, float *out, int M, int H, int W)
{
    size_t hw = (size_t)H * W;
    double loss = 0;
    for (int y = 0; y < H; y++) {
        int ys = (y + H / 2) % H;
        for (int x = 0; x < W; x++) {
            size_t k = (size_t)y * W + x, ks = (size_t)ys * W + (x + W / 2) % W;
            double I = 0;
            for (int m = 0; m < M; m++) {
                float re = w[2 * (m * hw + k)], im = w[2 * (m * hw + k) + 1];
                I += (double)re * re + (double)im * im;
            }
            if (out) {
                out[ks] = (float)I;
                continue;
            }
            double mv = meas[ks], f = 0;
            if (mv >= 0) {
                double a = sqrt(I), d = a - sqrt(mv);
                loss += d * d;
                f = 2 * d / (a + APT_PTYCHO_EPS);
            }
            for (int m = 0; m < M; m++) {
                w[2 * (m * hw + k)] *= (float)f;
                w[2 * (m * hw + k) + 1] *= (float)f;
            }
        }
    }
    return loss;
}

static void *run_job(void *arg)
{
    job *jb = arg;
    apt_ptycho *p = jb->p;
    const apt_ptycho_geom *g = &p->g;
    ptycho_ws *ws = jb->ws;
    int M = g->M, H = g->H, W = g->W, L = g->L, Ny = g->Ny, Nx = g->Nx;
    size_t hw = (size_t)H * W, mhw = (size_t)M * hw, slice = (size_t)Ny * Nx, pad = (mhw + 7) & ~(size_t)7;
    int backward = jb->meas && (jb->want_gobj || jb->want_gprobe);
    apt_error *err = &ws->err;
    ws->loss = 0;
    ws->rc = APT_OK;
    for (size_t k = jb->k0; k < jb->k1 && !ws->rc; k++) {
        size_t j = jb->idx ? jb->idx[k] : k;
        int r = jb->pos[2 * j], c = jb->pos[2 * j + 1];
        const float *o0 = jb->object + 2 * ((size_t)r * Nx + c);
#define SLOT(l) ((l) == 0 ? jb->probe : ws->psi + 2 * (size_t)((l) - 1) * pad)
        /* forward: psi_{l+1} = F^-1[F[psi_l o_l] H], stored for the backward pass */
        for (int l = 0; l + 1 < L && !ws->rc; l++) {
            float *dst = ws->psi + 2 * (size_t)l * pad;
            mul_window(dst, SLOT(l), o0 + 2 * l * slice, M, H, W, Nx);
            ws->rc = apt_fft_forward(p->plan, dst, err);
            mul_kernel(dst, p->prop, M, hw, 0);
            if (!ws->rc)
                ws->rc = apt_fft_inverse_unscaled(p->plan, dst, err);
        }
        mul_window(ws->work, SLOT(L - 1), o0 + 2 * (size_t)(L - 1) * slice, M, H, W, Nx);
        if (!ws->rc)
            ws->rc = apt_fft_forward(p->plan, ws->work, err);
        if (ws->rc)
            break;
        const float *mj = jb->meas ? jb->meas + j * hw : NULL;
        ws->loss += farfield(ws->work, mj, mj ? NULL : jb->intensity + k * hw, M, H, W);
        if (!backward)
            continue;
        /* backward: g_exit = F^H g_Psi = (H W) F^-1 g_Psi; through each slice and (adjoint) propagator */
        if (r < ws->r0)
            ws->r0 = r;
        if (r + H > ws->r1)
            ws->r1 = r + H;
        if (c < ws->c0)
            ws->c0 = c;
        if (c + W > ws->c1)
            ws->c1 = c + W;
        ws->rc = apt_fft_inverse_unscaled(p->plan, ws->work, err);
        for (int l = L - 1; l >= 0 && !ws->rc; l--) {
            size_t off = 2 * ((size_t)l * slice + (size_t)r * Nx + c);
            back_window(ws->work, SLOT(l), o0 + 2 * (size_t)l * slice, jb->want_gobj ? ws->gobj + off : NULL, M, H,
                        W, Nx);
            if (l == 0)
                break;
            /* adjoint of F^-1 diag(H) F is F^-1 diag(conj H) F */
            ws->rc = apt_fft_forward(p->plan, ws->work, err);
            mul_kernel(ws->work, p->prop, M, hw, 1);
            if (!ws->rc)
                ws->rc = apt_fft_inverse_unscaled(p->plan, ws->work, err);
        }
        if (jb->want_gprobe)
            for (size_t i = 0; i < 2 * mhw; i++)
                ws->gprobe[i] += ws->work[i];
#undef SLOT
    }
    return NULL;
}

static int cpu_run(apt_ptycho *p, const float *probe, const float *object, const int32_t *pos, const float *meas,
                   const size_t *idx, size_t n, double *loss, float *gobj, float *gprobe, float *intensity,
                   apt_error *err)
{
    const apt_ptycho_geom *g = &p->g;
    int want_gobj = meas && gobj, want_gprobe = meas && gprobe;
    size_t slice = (size_t)g->Ny * g->Nx, obj = (size_t)g->L * slice, mhw = (size_t)g->M * g->H * g->W;
    int T = n < (size_t)p->threads ? (int)(n ? n : 1) : p->threads;
    job jobs[PT_MAX_THREADS];
    for (int t = 0; t < T; t++) {
        ptycho_ws *ws = &p->ws[t];
        if (want_gobj && !ws->gobj && !(ws->gobj = apt_fft_alloc(obj)))
            return apt_err(err, APT_ENOMEM, "ptycho: out of memory for gradient accumulators");
        ws->r0 = g->Ny, ws->r1 = 0, ws->c0 = g->Nx, ws->c1 = 0;
        jobs[t] = (job){.p = p, .probe = probe, .object = object, .meas = meas, .pos = pos, .idx = idx,
                        .k0 = n * t / T, .k1 = n * (t + 1) / T, .want_gobj = want_gobj,
                        .want_gprobe = want_gprobe, .intensity = intensity, .ws = ws};
    }
    pthread_t th[PT_MAX_THREADS];
    int started = 0;
    for (int t = 1; t < T; t++, started++)
        if (pthread_create(&th[t], NULL, run_job, &jobs[t]) != 0)
            break;
    for (int t = started + 1; t < T; t++) /* threads that could not start: run here */
        run_job(&jobs[t]);
    run_job(&jobs[0]);
    for (int t = 1; t <= started; t++)
        pthread_join(th[t], NULL);

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
