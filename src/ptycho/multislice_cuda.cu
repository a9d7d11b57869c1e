/* multislice_cuda.cu - CUDA twin of the multislice model (ptycho_int.h's apt_ptycho_ops), the same math as
 * multislice.c (forward chain, far-field loss, reverse-mode gradient) and recon.c (illumination-normalised descent),
 * on device batches of positions: one batched cuFFT plan runs all M modes of every position of a batch, and simple
 * element-wise kernels do the rest, one thread per element (grid-stride loops, no shared memory, no atomics).
 * Deterministic: the loss is reduced in a fixed order (per-pixel terms -> fixed lanes -> per position -> per batch,
 * in double), and windows are added into the object (gradient, illumination) one colour class at a time
 * (ptycho_colour.h: no two windows of a class overlap), so every sum has one order, run after run.
 * Measured patterns stream from host memory through two pinned staging buffers on a copy stream while the compute
 * stream works on the previous batch (events order the two). Host outputs are written only after every device
 * step has succeeded, so a failed call leaves them untouched and the CPU can redo it (ptycho.c). docs/GPU.md. */
extern "C" {
#include "ptycho/ptycho_colour.h"
#include "ptycho/ptycho_int.h"
}
#include <cuda_runtime.h>
#include <cufft.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TPB 256              /* threads per block */
#define CU_MAX_BATCH 512     /* positions per device batch, at most */
#define CU_PLANS 4           /* cached cuFFT plans (batch sizes): a pass needs at most three */
#define CU_LANES 256         /* loss reduction: lanes per position */
#define CU_MAX_LANES 65536   /* illumination max: first-level lanes */
#define CU_MAX_PASSES 10001  /* loss accumulators: apt_ptycho_reconstruct allows 10000 iterations */
#define CU_PINNED_MAX ((size_t)1 << 30) /* pinned staging, both buffers together */
#define CU_BATCH_BYTES ((size_t)8 << 30) /* per-position buffers of a batch: beyond this, more positions per batch
                                            gain little and would crowd out the network on the same device */

typedef struct cu_geo {
    int M, H, W, Nx;
    size_t hw, mhw;
} cu_geo;

typedef struct cu_plan {
    int count; /* positions; 0 = empty slot */
    cufftHandle h;
    unsigned long used;
} cu_plan;

typedef struct cu_state {
    cu_geo g;
    int L, Ny;
    size_t slice, obj;
    size_t cap; /* positions per device batch */
    cudaStream_t compute, copy;
    cudaEvent_t copied[2], used[2];
    int flip;
    float2 *probe, *object, *gobj, *gprobe, *prop;
    float *pint, *illum, *maxp, *smax;
    float2 *psi;   /* (L-1) slots of cap x M x H x W: the incident waves at slices 1..L-1 */
    float2 *work;  /* cap x M x H x W: exit wave, far field, back-propagated gradient */
    float *meas[2];
    int2 *pos[2];
    float *inten;  /* cap x H x W: model intensities (forward) */
    double *lpix, *llane, *lpos, *lacc;
    float *h_meas[2]; /* pinned staging */
    int2 *h_pos[2];
    void *fftwork;
    size_t fftwork_bytes;
    cu_plan plans[CU_PLANS];
    unsigned long tick;
    /* host scratch of one batch: positions, colouring */
    int32_t *rc;
    size_t *perm, *cstart, *col, *mark;
} cu_state;

/* ---- kernels ---- */

/* Kernel launches go through LAUNCH so that a serial CPU emulation of the CUDA runtime (tests/gpu/emu/, used by
   tests/test_ptycho_cuda_emu.py where there is no GPU) can run this file's host and kernel code unchanged. */
#ifndef APT_CUDA_EMULATION
#define LAUNCH(kernel, grid, block, stream, ...) kernel<<<(grid), (block), 0, (stream)>>>(__VA_ARGS__)
#endif

#define GRID_STRIDE(i, n)                                                                                            \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)blockDim.x * gridDim.x)

__device__ static inline float2 cmul(float2 a, float2 b)
{
    return make_float2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

/* conj(a) b */
__device__ static inline float2 cmulc(float2 a, float2 b)
{
    return make_float2(a.x * b.x + a.y * b.y, a.x * b.y - a.y * b.x);
}

/* Element-wise kernels run on a 2-D grid: x over the H x W pixels of a transform, y over its rows of transforms
   (position x mode) or positions, so each thread finds its pixel with 32-bit arithmetic only. */
static dim3 grid2(size_t hw, size_t rows) { return dim3((unsigned)((hw + TPB - 1) / TPB), (unsigned)rows); }

/* dst[k][m] = src[k][m] (src[m] when bcast: the probe) x the window of slice o at pos[k]; row = k M + m */
__global__ static void k_window(float2 *dst, const float2 *src, int bcast, const float2 *o, const int2 *pos, cu_geo g)
{
    unsigned q = blockIdx.x * blockDim.x + threadIdx.x, row = blockIdx.y;
    if (q >= g.hw)
        return;
    unsigned k = row / (unsigned)g.M, y = q / (unsigned)g.W, x = q % (unsigned)g.W;
    size_t e = (size_t)row * g.hw + q;
    int2 rc = pos[k];
    float2 ov = o[(size_t)(rc.x + (int)y) * g.Nx + rc.y + (int)x];
    dst[e] = cmul(bcast ? src[(size_t)(row % (unsigned)g.M) * g.hw + q] : src[e], ov);
}

/* w[row][q] *= prop[q] (its conjugate when sg = -1): the Fresnel kernel and its adjoint */
__global__ static void k_prop(float2 *w, const float2 *prop, cu_geo g, float sg)
{
    unsigned q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= g.hw)
        return;
    size_t e = (size_t)blockIdx.y * g.hw + q;
    float2 kv = prop[q];
    kv.y *= sg;
    w[e] = cmul(w[e], kv);
}

/* The far field of slot k = blockIdx.y, pixel q (unshifted): I = sum_m |w|^2 in double. Forward: I into inten at
   the centred pixel. Loss: lpix = (sqrt I - sqrt meas)^2 and, when scale, w *= 2 (sqrt I - sqrt meas) / (sqrt I +
   eps); unmeasured pixels (meas < 0) add nothing and get no gradient. Exactly multislice.c's farfield(). */
__global__ static void k_farfield(float2 *w, const float *meas, float *inten, double *lpix, cu_geo g, int scale)
{
    unsigned q = blockIdx.x * blockDim.x + threadIdx.x, k = blockIdx.y;
    if (q >= g.hw)
        return;
    unsigned y = q / (unsigned)g.W, x = q % (unsigned)g.W;
    size_t ks = (size_t)k * g.hw + ((y + (unsigned)g.H / 2) % (unsigned)g.H) * (unsigned)g.W +
                (x + (unsigned)g.W / 2) % (unsigned)g.W;
    float2 *v = w + (size_t)k * g.mhw + q;
    double I = 0;
    for (int m = 0; m < g.M; m++) {
        float2 a = v[(size_t)m * g.hw];
        I += (double)a.x * a.x + (double)a.y * a.y;
    }
    if (inten) {
        inten[ks] = (float)I;
        return;
    }
    double mv = meas[ks], f = 0, l = 0;
    if (mv >= 0) {
        double a = sqrt(I), d = a - sqrt(mv);
        l = d * d;
        f = 2 * d / (a + APT_PTYCHO_EPS);
    }
    lpix[(size_t)k * g.hw + q] = l;
    if (scale)
        for (int m = 0; m < g.M; m++) {
            float2 a = v[(size_t)m * g.hw];
            v[(size_t)m * g.hw] = make_float2(a.x * (float)f, a.y * (float)f);
        }
}

/* Loss, stage 1 (block = CU_LANES threads, blockIdx.y = k): llane[k][t] = the sum of lpix[k][q] over q = t,
   t + CU_LANES, ... in that order */
__global__ static void k_loss_lanes(const double *lpix, size_t hw, double *llane)
{
    size_t k = blockIdx.y, t = threadIdx.x;
    double s = 0;
    for (size_t q = t; q < hw; q += CU_LANES)
        s += lpix[k * hw + q];
    llane[k * CU_LANES + t] = s;
}

/* Loss, stage 2: lpos[k] = the lanes of position k in order */
__global__ static void k_loss_pos(const double *llane, size_t nb, double *lpos)
{
    GRID_STRIDE(k, nb) {
        double s = 0;
        for (int t = 0; t < CU_LANES; t++)
            s += llane[k * CU_LANES + t];
        lpos[k] = s;
    }
}

/* Loss, stage 3 (one thread): *acc += the positions in slot order */
__global__ static void k_loss_add(const double *lpos, size_t nb, double *acc)
{
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        double s = *acc;
        for (size_t k = 0; k < nb; k++)
            s += lpos[k];
        *acc = s;
    }
}

/* Backward through "phi = psi o" for slots k = k0 + blockIdx.y (windows that do not overlap when gobj or illum is
   given): gobj(window) += sum_m conj(psi_m) g_m (modes in order, as multislice.c's back_window), then
   g_m = conj(o) g_m; illum(window) += pint. */
__global__ static void k_back_window(float2 *gw, const float2 *psi, int bcast, const float2 *o, const int2 *pos,
                                     size_t k0, cu_geo g, float2 *gobj, float *illum, const float *pint)
{
    unsigned q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= g.hw)
        return;
    size_t k = k0 + blockIdx.y;
    unsigned y = q / (unsigned)g.W, x = q % (unsigned)g.W;
    int2 rc = pos[k];
    size_t op = (size_t)(rc.x + (int)y) * g.Nx + rc.y + (int)x;
    float2 ov = o[op], acc = gobj ? gobj[op] : make_float2(0.0f, 0.0f);
    for (int m = 0; m < g.M; m++) {
        size_t e = k * g.mhw + (size_t)m * g.hw + q;
        float2 gv = gw[e];
        if (gobj) {
            float2 c = cmulc(bcast ? psi[(size_t)m * g.hw + q] : psi[e], gv);
            acc.x += c.x;
            acc.y += c.y;
        }
        gw[e] = cmulc(ov, gv);
    }
    if (gobj)
        gobj[op] = acc;
    if (illum)
        illum[op] += pint[q];
}

/* gprobe[i] += gw[k][i] for the slots in order */
__global__ static void k_probe_add(const float2 *gw, size_t nb, size_t mhw, float2 *gp)
{
    GRID_STRIDE(i, mhw) {
        float2 a = gp[i];
        for (size_t k = 0; k < nb; k++) {
            float2 v = gw[k * mhw + i];
            a.x += v.x;
            a.y += v.y;
        }
        gp[i] = a;
    }
}

/* out[t] = max(0, in[t], in[t + lanes], ...): recon.c's smax (NaN never wins), exact in any order */
__global__ static void k_max_lanes(const float *in, size_t n, size_t lanes, float *out)
{
    GRID_STRIDE(t, lanes) {
        float m = 0;
        for (size_t i = t; i < n; i += lanes)
            m = in[i] > m ? in[i] : m;
        out[t] = m;
    }
}

/* recon.c's update: object -= step / (base (S + alpha smax)) G where S > 0; nothing when smax <= 0. */
__global__ static void k_update(float2 *obj, const float2 *gobj, const float *illum, const float *smax, size_t slice,
                                int L, double step, double base)
{
    float sm = *smax;
    if (!(sm > 0))
        return;
    float reg = (float)(RECON_ALPHA * sm);
    GRID_STRIDE(i, slice) {
        float S = illum[i];
        if (S <= 0)
            continue;
        float s = (float)(step / (base * (double)(S + reg)));
        for (int l = 0; l < L; l++) {
            size_t e = (size_t)l * slice + i;
            float2 o = obj[e], gv = gobj[e];
            obj[e] = make_float2(__fsub_rn(o.x, __fmul_rn(s, gv.x)), __fsub_rn(o.y, __fmul_rn(s, gv.y)));
        }
    }
}

/* ---- host side ---- */

static unsigned grid_for(size_t n)
{
    size_t b = (n + TPB - 1) / TPB;
    return (unsigned)(b < 1 ? 1 : b > ((size_t)1 << 20) ? ((size_t)1 << 20) : b);
}

static int cu_fail(cudaError_t e, const char *what, apt_error *err)
{
    return apt_err(err, e == cudaErrorMemoryAllocation ? APT_ENOMEM : APT_ENODEV, "ptycho (CUDA): %s: %s", what,
                   cudaGetErrorString(e));
}

#define CU_CK(call, what)                                                                                            \
    do {                                                                                                             \
        cudaError_t e_ = (call);                                                                                     \
        if (e_ != cudaSuccess)                                                                                       \
            return cu_fail(e_, what, err);                                                                           \
    } while (0)
#define FFT_CK(call, what)                                                                                           \
    do {                                                                                                             \
        cufftResult r_ = (call);                                                                                     \
        if (r_ != CUFFT_SUCCESS)                                                                                     \
            return apt_err(err, r_ == CUFFT_ALLOC_FAILED ? APT_ENOMEM : APT_ENODEV,                                  \
                           "ptycho (CUDA): cuFFT %s failed (cufftResult %d)", what, (int)r_);                        \
    } while (0)

/* The shared cuFFT work area holds at least need bytes (every cached plan pointed at it). */
static int work_area(cu_state *st, size_t need, apt_error *err)
{
    if (need <= st->fftwork_bytes)
        return APT_OK;
    CU_CK(cudaStreamSynchronize(st->compute), "synchronise before growing the FFT work area");
    cudaFree(st->fftwork);
    st->fftwork = NULL;
    st->fftwork_bytes = 0;
    CU_CK(cudaMalloc(&st->fftwork, need), "FFT work area");
    st->fftwork_bytes = need;
    for (int i = 0; i < CU_PLANS; i++)
        if (st->plans[i].count)
            FFT_CK(cufftSetWorkArea(st->plans[i].h, st->fftwork), "set work area");
    return APT_OK;
}

/* The batched plan for nb positions (nb x M transforms of H x W), from the cache or made now (least recently used
   one replaced, after the stream has finished with it). */
static int plan_for(cu_state *st, size_t nb, cufftHandle *out, apt_error *err)
{
    cu_plan *slot = NULL;
    for (int i = 0; i < CU_PLANS; i++)
        if (st->plans[i].count == (int)nb) {
            st->plans[i].used = ++st->tick;
            *out = st->plans[i].h;
            return APT_OK;
        }
    for (int i = 0; i < CU_PLANS && !slot; i++) /* an empty slot, else the least recently used plan */
        if (st->plans[i].count == 0)
            slot = &st->plans[i];
    for (int i = 0; i < CU_PLANS && !slot; i++)
        if (!slot || st->plans[i].used < slot->used)
            slot = &st->plans[i];
    if (slot->count) {
        CU_CK(cudaStreamSynchronize(st->compute), "synchronise before replacing an FFT plan");
        cufftDestroy(slot->h);
        slot->count = 0;
    }
    int dims[2] = {st->g.H, st->g.W};
    size_t ws = 0;
    FFT_CK(cufftCreate(&slot->h), "create");
    cufftResult r = cufftSetAutoAllocation(slot->h, 0);
    if (r == CUFFT_SUCCESS)
        r = cufftMakePlanMany(slot->h, 2, dims, NULL, 1, (int)st->g.hw, NULL, 1, (int)st->g.hw, CUFFT_C2C,
                              (int)nb * st->g.M, &ws);
    if (r == CUFFT_SUCCESS)
        r = cufftSetStream(slot->h, st->compute);
    if (r != CUFFT_SUCCESS) {
        cufftDestroy(slot->h);
        return apt_err(err, r == CUFFT_ALLOC_FAILED ? APT_ENOMEM : APT_ENODEV,
                       "ptycho (CUDA): cuFFT cannot plan %zu x %d transforms of %d x %d (cufftResult %d)", nb,
                       st->g.M, st->g.H, st->g.W, (int)r);
    }
    int rc = work_area(st, ws > 256 ? ws : 256, err);
    if (!rc && cufftSetWorkArea(slot->h, st->fftwork) != CUFFT_SUCCESS)
        rc = apt_err(err, APT_ENODEV, "ptycho (CUDA): cuFFT set work area failed");
    if (rc) { /* never cache a plan without its work area */
        cufftDestroy(slot->h);
        return rc;
    }
    slot->count = (int)nb;
    slot->used = ++st->tick;
    *out = slot->h;
    return APT_OK;
}

static void cu_fini(apt_ptycho *p)
{
    cu_state *st = (cu_state *)p->dev;
    if (!st)
        return;
    /* the context may be broken after a failure: errors are ignored here */
    if (st->compute)
        cudaStreamSynchronize(st->compute);
    if (st->copy)
        cudaStreamSynchronize(st->copy);
    for (int i = 0; i < CU_PLANS; i++)
        if (st->plans[i].count)
            cufftDestroy(st->plans[i].h);
    void *dev[] = {st->probe, st->object, st->gobj, st->gprobe, st->prop, st->pint, st->illum, st->maxp, st->smax,
                   st->psi, st->work, st->meas[0], st->meas[1], st->pos[0], st->pos[1], st->inten, st->lpix,
                   st->llane, st->lpos, st->lacc, st->fftwork};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        cudaFree(dev[i]);
    for (int b = 0; b < 2; b++) {
        cudaFreeHost(st->h_meas[b]);
        cudaFreeHost(st->h_pos[b]);
        if (st->copied[b])
            cudaEventDestroy(st->copied[b]);
        if (st->used[b])
            cudaEventDestroy(st->used[b]);
    }
    if (st->compute)
        cudaStreamDestroy(st->compute);
    if (st->copy)
        cudaStreamDestroy(st->copy);
    free(st->rc), free(st->perm), free(st->cstart), free(st->col), free(st->mark);
    free(st);
    p->dev = NULL;
}

/* Device memory: fixed arrays + cap positions of wavefields, patterns and loss terms (docs/GPU.md's formula). */
static int cu_alloc(cu_state *st, const float *prop, apt_error *err)
{
    const cu_geo *g = &st->g;
    size_t c2 = sizeof(float2), cap = st->cap;
    CU_CK(cudaStreamCreateWithFlags(&st->compute, cudaStreamNonBlocking), "compute stream");
    CU_CK(cudaStreamCreateWithFlags(&st->copy, cudaStreamNonBlocking), "copy stream");
    for (int b = 0; b < 2; b++) {
        CU_CK(cudaEventCreateWithFlags(&st->copied[b], cudaEventDisableTiming), "event");
        CU_CK(cudaEventCreateWithFlags(&st->used[b], cudaEventDisableTiming), "event");
        CU_CK(cudaMalloc(&st->meas[b], cap * g->hw * sizeof(float)), "pattern buffer");
        CU_CK(cudaMalloc(&st->pos[b], cap * sizeof(int2)), "position buffer");
        CU_CK(cudaHostAlloc(&st->h_meas[b], cap * g->hw * sizeof(float), cudaHostAllocDefault), "pinned patterns");
        CU_CK(cudaHostAlloc(&st->h_pos[b], cap * sizeof(int2), cudaHostAllocDefault), "pinned positions");
    }
    CU_CK(cudaMalloc(&st->probe, g->mhw * c2), "probe");
    CU_CK(cudaMalloc(&st->gprobe, g->mhw * c2), "probe gradient");
    CU_CK(cudaMalloc(&st->prop, g->hw * c2), "propagator");
    CU_CK(cudaMalloc(&st->pint, g->hw * sizeof(float)), "probe intensity");
    CU_CK(cudaMalloc(&st->object, st->obj * c2), "object");
    CU_CK(cudaMalloc(&st->gobj, st->obj * c2), "object gradient");
    CU_CK(cudaMalloc(&st->illum, st->slice * sizeof(float)), "illumination");
    CU_CK(cudaMalloc(&st->maxp, (CU_MAX_LANES + TPB) * sizeof(float)), "maximum lanes");
    CU_CK(cudaMalloc(&st->smax, sizeof(float)), "maximum");
    if (st->L > 1)
        CU_CK(cudaMalloc(&st->psi, (size_t)(st->L - 1) * cap * g->mhw * c2), "wavefields");
    CU_CK(cudaMalloc(&st->work, cap * g->mhw * c2), "wavefield");
    CU_CK(cudaMalloc(&st->inten, cap * g->hw * sizeof(float)), "intensities");
    CU_CK(cudaMalloc(&st->lpix, cap * g->hw * sizeof(double)), "loss terms");
    CU_CK(cudaMalloc(&st->llane, cap * CU_LANES * sizeof(double)), "loss lanes");
    CU_CK(cudaMalloc(&st->lpos, cap * sizeof(double)), "loss per position");
    CU_CK(cudaMalloc(&st->lacc, CU_MAX_PASSES * sizeof(double)), "loss sums");
    CU_CK(cudaMemcpyAsync(st->prop, prop, g->hw * c2, cudaMemcpyHostToDevice, st->compute), "upload propagator");
    st->rc = (int32_t *)malloc(2 * cap * sizeof(int32_t));
    st->perm = (size_t *)malloc(cap * sizeof(size_t));
    st->cstart = (size_t *)malloc((cap + 1) * sizeof(size_t));
    st->col = (size_t *)malloc(cap * sizeof(size_t));
    st->mark = (size_t *)malloc((cap + 1) * sizeof(size_t));
    if (!st->rc || !st->perm || !st->cstart || !st->col || !st->mark)
        return apt_err(err, APT_ENOMEM, "ptycho (CUDA): out of host memory");
    cufftHandle h;
    int rc = plan_for(st, cap, &h, err); /* the full batch's plan, and its work area, now */
    if (!rc)
        CU_CK(cudaStreamSynchronize(st->compute), "initialise");
    return rc;
}

static int cu_init(apt_ptycho *p, apt_error *err)
{
    const apt_ptycho_geom *pg = &p->g;
    cu_state *st = (cu_state *)calloc(1, sizeof *st);
    if (!st)
        return apt_err(err, APT_ENOMEM, "ptycho (CUDA): out of memory");
    p->dev = st;
    st->g = (cu_geo){pg->M, pg->H, pg->W, pg->Nx, (size_t)pg->H * pg->W, (size_t)pg->M * pg->H * pg->W};
    st->L = pg->L, st->Ny = pg->Ny;
    st->slice = (size_t)pg->Ny * pg->Nx, st->obj = (size_t)pg->L * st->slice;
    size_t fr = 0, total = 0;
    cudaError_t e = cudaMemGetInfo(&fr, &total);
    if (e != cudaSuccess) {
        cu_fini(p);
        return cu_fail(e, "device memory", err);
    }
    const cu_geo *g = &st->g;
    size_t fixed = (2 * st->obj + 2 * g->mhw + g->hw) * sizeof(float2) + (g->hw + st->slice) * sizeof(float) +
                   CU_MAX_PASSES * sizeof(double) + ((size_t)64 << 20);
    /* per position: L wavefields, two pattern buffers, intensities, loss terms, lanes; and about one wavefield of
       cuFFT work area */
    size_t per = ((size_t)pg->L + 1) * g->mhw * sizeof(float2) + 3 * g->hw * sizeof(float) +
                 g->hw * sizeof(double) + (CU_LANES + 1) * sizeof(double) + 2 * sizeof(int2);
    size_t budget = fr / 10 * 8 > fixed ? fr / 10 * 8 - fixed : 0, cap = budget / per;
    if (cap > CU_MAX_BATCH)
        cap = CU_MAX_BATCH;
    if (cap > 1 && cap * per > CU_BATCH_BYTES)
        cap = CU_BATCH_BYTES / per > 1 ? CU_BATCH_BYTES / per : 1;
    if (cap > CU_PINNED_MAX / (2 * g->hw * sizeof(float)))
        cap = CU_PINNED_MAX / (2 * g->hw * sizeof(float));
    if (cap * (size_t)g->M > INT_MAX)
        cap = INT_MAX / (size_t)g->M;
    if (cap < 1) {
        cu_fini(p);
        return apt_err(err, APT_ENOMEM,
                       "ptycho (CUDA): %zu MiB of device memory free, need %zu MiB for the object and one position",
                       fr >> 20, (fixed + per) >> 20);
    }
    st->cap = cap;
    int rc = cu_alloc(st, p->prop, err);
    if (rc)
        cu_fini(p);
    return rc;
}

typedef struct cu_job {
    const int32_t *pos;
    const float *meas;  /* NULL: forward intensities into inten (host, [n, H, W] by k) */
    const size_t *idx;  /* NULL: k */
    size_t n;
    int want_gobj, want_gprobe, want_illum;
    double *acc;        /* device loss accumulator */
    float *inten;
} cu_job;

/* Positions k0 .. k0 + nb of the job as one device batch: stage positions (and patterns) through pinned buffer
   `buf`, upload on the copy stream, then forward, far field, loss and backward on the compute stream. */
static int run_batch(cu_state *st, const cu_job *jb, size_t k0, size_t nb, apt_error *err)
{
    const cu_geo g = st->g;
    int buf = st->flip;
    st->flip ^= 1;
    /* the previous upload from this staging buffer is done before the host refills it */
    CU_CK(cudaEventSynchronize(st->copied[buf]), "wait for the staging buffer");
    for (size_t s = 0; s < nb; s++) {
        size_t j = jb->idx ? jb->idx[k0 + s] : k0 + s;
        st->rc[2 * s] = jb->pos[2 * j], st->rc[2 * s + 1] = jb->pos[2 * j + 1];
    }
    int windows = jb->want_gobj || jb->want_illum;
    size_t ncol = 1;
    if (windows) {
        ncol = apt_ptycho_colour(st->rc, nb, g.H, g.W, st->perm, st->cstart, st->col, st->mark);
    } else {
        for (size_t s = 0; s < nb; s++)
            st->perm[s] = s;
        st->cstart[0] = 0, st->cstart[1] = nb;
    }
    /* slot s holds position k0 + perm[s]: classes are runs of slots */
    for (size_t s = 0; s < nb; s++) {
        size_t t = st->perm[s], j = jb->idx ? jb->idx[k0 + t] : k0 + t;
        st->h_pos[buf][s] = make_int2(st->rc[2 * t], st->rc[2 * t + 1]);
        if (jb->meas)
            memcpy(st->h_meas[buf] + s * g.hw, jb->meas + j * g.hw, g.hw * sizeof(float));
    }
    CU_CK(cudaStreamWaitEvent(st->copy, st->used[buf], 0), "order the upload");
    CU_CK(cudaMemcpyAsync(st->pos[buf], st->h_pos[buf], nb * sizeof(int2), cudaMemcpyHostToDevice, st->copy),
          "upload positions");
    if (jb->meas)
        CU_CK(cudaMemcpyAsync(st->meas[buf], st->h_meas[buf], nb * g.hw * sizeof(float), cudaMemcpyHostToDevice,
                              st->copy),
              "upload patterns");
    CU_CK(cudaEventRecord(st->copied[buf], st->copy), "record the upload");
    CU_CK(cudaStreamWaitEvent(st->compute, st->copied[buf], 0), "wait for the upload");

    cufftHandle plan;
    int rc = plan_for(st, nb, &plan, err);
    if (rc)
        return rc;
    cudaStream_t cs = st->compute;
    const int2 *pos = st->pos[buf];
    size_t rows = nb * (size_t)g.M, cap = st->cap;
    int L = st->L;
#define SLOT(l) ((l) == 0 ? st->probe : st->psi + (size_t)((l) - 1) * cap * g.mhw)
    /* forward: psi_{l+1} = F^-1[F[psi_l o_l] prop], kept for the backward pass; the exit wave's F into work */
    for (int l = 0; l < L; l++) {
        float2 *dst = l + 1 < L ? SLOT(l + 1) : st->work;
        LAUNCH(k_window, grid2(g.hw, rows), TPB, cs, dst, SLOT(l), l == 0, st->object + l * st->slice, pos, g);
        FFT_CK(cufftExecC2C(plan, dst, dst, CUFFT_FORWARD), "forward transform");
        if (l + 1 < L) {
            LAUNCH(k_prop, grid2(g.hw, rows), TPB, cs, dst, st->prop, g, 1.0f);
            FFT_CK(cufftExecC2C(plan, dst, dst, CUFFT_INVERSE), "inverse transform");
        }
    }
    int backward = jb->meas && (jb->want_gobj || jb->want_gprobe);
    LAUNCH(k_farfield, grid2(g.hw, nb), TPB, cs, st->work, st->meas[buf], jb->meas ? NULL : st->inten, st->lpix, g,
           backward);
    if (jb->meas) {
        LAUNCH(k_loss_lanes, dim3(1, (unsigned)nb), CU_LANES, cs, st->lpix, g.hw, st->llane);
        LAUNCH(k_loss_pos, grid_for(nb), TPB, cs, st->llane, nb, st->lpos);
        LAUNCH(k_loss_add, 1, 1, cs, st->lpos, nb, jb->acc);
    }
    if (backward) {
        /* g_exit = (H W) F^-1 g_Psi, then through each slice and the adjoint propagator */
        FFT_CK(cufftExecC2C(plan, st->work, st->work, CUFFT_INVERSE), "inverse transform");
        for (int l = L - 1; l >= 0; l--) {
            float2 *go = jb->want_gobj ? st->gobj + l * st->slice : NULL;
            float *il = jb->want_illum && l == 0 ? st->illum : NULL;
            if (go || il) {
                for (size_t c = 0; c < ncol; c++)
                    LAUNCH(k_back_window, grid2(g.hw, st->cstart[c + 1] - st->cstart[c]), TPB, cs, st->work, SLOT(l),
                           l == 0, st->object + l * st->slice, pos, st->cstart[c], g, go, il, st->pint);
            } else {
                LAUNCH(k_back_window, grid2(g.hw, nb), TPB, cs, st->work, SLOT(l), l == 0, st->object + l * st->slice,
                       pos, 0, g, NULL, NULL, st->pint);
            }
            if (l == 0)
                break;
            FFT_CK(cufftExecC2C(plan, st->work, st->work, CUFFT_FORWARD), "forward transform");
            LAUNCH(k_prop, grid2(g.hw, rows), TPB, cs, st->work, st->prop, g, -1.0f);
            FFT_CK(cufftExecC2C(plan, st->work, st->work, CUFFT_INVERSE), "inverse transform");
        }
        if (jb->want_gprobe)
            LAUNCH(k_probe_add, grid_for(g.mhw), TPB, cs, st->work, nb, g.mhw, st->gprobe);
    }
#undef SLOT
    CU_CK(cudaGetLastError(), "kernel launch");
    CU_CK(cudaEventRecord(st->used[buf], cs), "record the batch");
    if (jb->inten) /* slots are in k order here (no colouring without gradients) */
        CU_CK(cudaMemcpyAsync(jb->inten + k0 * g.hw, st->inten, nb * g.hw * sizeof(float), cudaMemcpyDeviceToHost,
                              cs),
              "download intensities");
    return APT_OK;
}

/* All n positions of a job, in device batches of at most cap (sizes differing by at most one). */
static int run_job(cu_state *st, const cu_job *jb, apt_error *err)
{
    size_t parts = (jb->n + st->cap - 1) / st->cap;
    for (size_t b = 0; b < parts; b++) {
        size_t k0 = jb->n * b / parts, k1 = jb->n * (b + 1) / parts;
        int rc = run_batch(st, jb, k0, k1 - k0, err);
        if (rc)
            return rc;
    }
    return APT_OK;
}

/* Wait for both streams; the first failure is the call's. */
static int drain(cu_state *st, int rc, apt_error *err)
{
    cudaError_t a = cudaStreamSynchronize(st->copy), b = cudaStreamSynchronize(st->compute);
    if (rc)
        return rc;
    if (a != cudaSuccess)
        return cu_fail(a, "copy stream", err);
    if (b != cudaSuccess)
        return cu_fail(b, "compute stream", err);
    return APT_OK;
}

static int upload_model(cu_state *st, const float *probe, const float *object, apt_error *err)
{
    CU_CK(cudaMemcpyAsync(st->probe, probe, st->g.mhw * sizeof(float2), cudaMemcpyHostToDevice, st->compute),
          "upload probe");
    CU_CK(cudaMemcpyAsync(st->object, object, st->obj * sizeof(float2), cudaMemcpyHostToDevice, st->compute),
          "upload object");
    return APT_OK;
}

/* cu_run's device part: upload, clear, every batch, download into the host staging (the caller drains). */
static int run_device(cu_state *st, const cu_job *jb, const float *probe, const float *object, double *l,
                      float *t_go, float *t_gp, apt_error *err)
{
    cudaStream_t cs = st->compute;
    size_t go = st->obj * sizeof(float2), gp = st->g.mhw * sizeof(float2);
    int rc = upload_model(st, probe, object, err);
    if (rc)
        return rc;
    CU_CK(cudaMemsetAsync(st->lacc, 0, sizeof(double), cs), "clear the loss");
    if (t_go)
        CU_CK(cudaMemsetAsync(st->gobj, 0, go, cs), "clear the object gradient");
    if (t_gp)
        CU_CK(cudaMemsetAsync(st->gprobe, 0, gp, cs), "clear the probe gradient");
    if ((rc = run_job(st, jb, err)))
        return rc;
    if (jb->meas)
        CU_CK(cudaMemcpyAsync(l, st->lacc, sizeof(double), cudaMemcpyDeviceToHost, cs), "download the loss");
    if (t_go)
        CU_CK(cudaMemcpyAsync(t_go, st->gobj, go, cudaMemcpyDeviceToHost, cs), "download the object gradient");
    if (t_gp)
        CU_CK(cudaMemcpyAsync(t_gp, st->gprobe, gp, cudaMemcpyDeviceToHost, cs), "download the probe gradient");
    return APT_OK;
}

static int cu_run(apt_ptycho *p, const float *probe, const float *object, const int32_t *pos, const float *meas,
                  const size_t *idx, size_t n, double *loss, float *gobj, float *gprobe, float *intensity,
                  apt_error *err)
{
    cu_state *st = (cu_state *)p->dev;
    const cu_geo *g = &st->g;
    cu_job jb = {pos, meas, idx, n, meas && gobj, meas && gprobe, 0, st->lacc, NULL};
    if (n == 0) {
        if (loss)
            *loss = 0;
        return APT_OK;
    }
    /* host staging of the outputs: written to the caller's arrays only once everything has succeeded */
    float *t_int = meas ? NULL : (float *)malloc(n * g->hw * sizeof(float));
    float *t_go = jb.want_gobj ? (float *)malloc(st->obj * sizeof(float2)) : NULL;
    float *t_gp = jb.want_gprobe ? (float *)malloc(g->mhw * sizeof(float2)) : NULL;
    double l = 0;
    int rc = APT_OK;
    if ((!meas && !t_int) || (jb.want_gobj && !t_go) || (jb.want_gprobe && !t_gp))
        rc = apt_err(err, APT_ENOMEM, "ptycho (CUDA): out of host memory for the outputs");
    jb.inten = t_int;
    if (!rc)
        rc = run_device(st, &jb, probe, object, &l, t_go, t_gp, err);
    rc = drain(st, rc, err);
    if (!rc) {
        if (loss)
            *loss = l;
        for (size_t i = 0; t_go && i < 2 * st->obj; i++)
            gobj[i] += t_go[i];
        for (size_t i = 0; t_gp && i < 2 * g->mhw; i++)
            gprobe[i] += t_gp[i];
        if (t_int)
            memcpy(intensity, t_int, n * g->hw * sizeof(float));
    }
    free(t_int), free(t_go), free(t_gp);
    return rc;
}

/* The descent of ptycho_int.h, resident on the device: per batch the gradient and illumination (accumulated over
   its device batches), the maximum, the update; the object and the pass losses come back at the end into the host
   staging t_obj, t_loss (the caller drains). */
static int descend_device(cu_state *st, const float *probe, const float *object, const float *patterns,
                          const int32_t *pos, const size_t *order, const size_t *start, size_t B, const float *pint,
                          const apt_recon_opts *opts, float *t_obj, double *t_loss, apt_error *err)
{
    cudaStream_t cs = st->compute;
    double base = 2.0 * (double)st->g.hw * st->L;
    size_t its = (size_t)opts->iterations, lanes = st->slice < CU_MAX_LANES ? st->slice : CU_MAX_LANES;
    int rc = upload_model(st, probe, object, err);
    if (rc)
        return rc;
    CU_CK(cudaMemcpyAsync(st->pint, pint, st->g.hw * sizeof(float), cudaMemcpyHostToDevice, cs),
          "upload the probe intensity");
    if (its)
        CU_CK(cudaMemsetAsync(st->lacc, 0, its * sizeof(double), cs), "clear the loss sums");
    for (size_t it = 0; it < its; it++)
        for (size_t b = 0; b < B; b++) {
            cu_job jb = {pos, patterns, order + start[b], start[b + 1] - start[b], 1, 0, 1, st->lacc + it, NULL};
            CU_CK(cudaMemsetAsync(st->gobj, 0, st->obj * sizeof(float2), cs), "clear the gradient");
            CU_CK(cudaMemsetAsync(st->illum, 0, st->slice * sizeof(float), cs), "clear the illumination");
            if ((rc = run_job(st, &jb, err)))
                return rc;
            /* smax in three fixed levels (65536 lanes, 256, 1), then the update, which reads it on the device */
            LAUNCH(k_max_lanes, grid_for(lanes), TPB, cs, st->illum, st->slice, lanes, st->maxp);
            LAUNCH(k_max_lanes, grid_for(TPB), TPB, cs, st->maxp, lanes, TPB, st->maxp + CU_MAX_LANES);
            LAUNCH(k_max_lanes, 1, 1, cs, st->maxp + CU_MAX_LANES, TPB, 1, st->smax);
            LAUNCH(k_update, grid_for(st->slice), TPB, cs, st->object, st->gobj, st->illum, st->smax, st->slice, st->L,
                   opts->step, base);
            CU_CK(cudaGetLastError(), "kernel launch");
        }
    if (its)
        CU_CK(cudaMemcpyAsync(t_loss, st->lacc, its * sizeof(double), cudaMemcpyDeviceToHost, cs),
              "download the losses");
    CU_CK(cudaMemcpyAsync(t_obj, st->object, st->obj * sizeof(float2), cudaMemcpyDeviceToHost, cs),
          "download the object");
    return APT_OK;
}

static int cu_descend(apt_ptycho *p, const float *probe, const float *patterns, const int32_t *pos, size_t J,
                      const size_t *order, const size_t *start, size_t B, const float *pint,
                      const apt_recon_opts *opts, float *object, double *loss_per_iter, apt_error *err)
{
    (void)J;
    cu_state *st = (cu_state *)p->dev;
    if (opts->iterations < 0 || opts->iterations >= CU_MAX_PASSES)
        return apt_err(err, APT_EINVAL, "ptycho (CUDA): %d iterations out of range", opts->iterations);
    int its = opts->iterations;
    float *t_obj = (float *)malloc(st->obj * sizeof(float2));
    double *t_loss = (double *)malloc((size_t)(its > 0 ? its : 1) * sizeof(double));
    int rc = t_obj && t_loss ? APT_OK : apt_err(err, APT_ENOMEM, "ptycho (CUDA): out of host memory");
    if (!rc)
        rc = descend_device(st, probe, object, patterns, pos, order, start, B, pint, opts, t_obj, t_loss, err);
    rc = drain(st, rc, err);
    if (!rc) {
        memcpy(object, t_obj, st->obj * sizeof(float2));
        for (int it = 0; loss_per_iter && it < its; it++)
            loss_per_iter[it] = t_loss[it];
    }
    free(t_obj), free(t_loss);
    return rc;
}

static const struct apt_ptycho_ops cuda_ops = {"cuda", cu_init, cu_fini, cu_run, cu_descend};

extern "C" const struct apt_ptycho_ops *apt_ptycho_cuda_ops(void) { return &cuda_ops; }
