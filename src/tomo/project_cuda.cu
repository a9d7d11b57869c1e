/* project_cuda.cu - CUDA twin of the Joseph projector in project.c: one thread per detector sample (forward) or per
 * voxel (adjoint, gathered over angles, so no atomics), with the same coefficients and the same interpolation
 * formulas as the CPU kernels (project_int.h), so both backends are exact adjoints of the same operator. Host
 * arrays in and out: device buffers live for one call. The CPU path stays complete without it. */
extern "C" {
#include "tomo/project_int.h"
#include "aptomo/gpu.h"
}
#include <cuda_runtime.h>
#include <math.h>

__global__ static void fwd_kernel(apt_proj_shape sh, const apt_proj_angle *ang, const int *idx, int n,
                                  const float *vol, float *sino)
{
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x, total = (size_t)n * sh.Y * sh.U;
    if (t >= total)
        return;
    int u = (int)(t % sh.U), j = (int)(t / sh.U % sh.Y), s = (int)(t / ((size_t)sh.U * sh.Y));
    const apt_proj_angle a = ang[idx[s]];
    int M = a.zmajor ? sh.Z : sh.X, N = a.zmajor ? sh.X : sh.Z;
    double acc = 0;
    for (int m = 0; m < M; m++) {
        double f = u * a.ia + (a.b0 + m * a.db);
        if (f <= -1.0 || f >= N)
            continue;
        double fl = floor(f), w1 = f - fl;
        int i0 = (int)fl;
        float v0, v1;
        if (a.zmajor) {
            const float *r = vol + ((size_t)m * sh.Y + j) * sh.X;
            v0 = i0 >= 0 ? r[i0] : 0.0f;
            v1 = i0 + 1 < N ? r[i0 + 1] : 0.0f;
        } else {
            v0 = i0 >= 0 ? vol[((size_t)i0 * sh.Y + j) * sh.X + m] : 0.0f;
            v1 = i0 + 1 < N ? vol[((size_t)(i0 + 1) * sh.Y + j) * sh.X + m] : 0.0f;
        }
        acc += (1.0 - w1) * v0 + w1 * v1;
    }
    sino[t] = (float)(acc * a.len);
}

__device__ static double gather(const apt_proj_angle &a, const float *row, int U, int m, int q)
{
    double b = a.b0 + m * a.db;
    double lo = (q - 1 - b) * (1.0 / a.ia), hi = (q + 1 - b) * (1.0 / a.ia);
    if (lo > hi) {
        double t = lo;
        lo = hi, hi = t;
    }
    int u0 = (int)ceil(lo) - 1, u1 = (int)floor(hi) + 1;
    u0 = u0 < 0 ? 0 : u0;
    u1 = u1 > U - 1 ? U - 1 : u1;
    double acc = 0;
    for (int u = u0; u <= u1; u++) {
        double f = u * a.ia + b, fl = floor(f), w1 = f - fl;
        int i0 = (int)fl;
        if (i0 == q)
            acc += (1.0 - w1) * row[u];
        else if (i0 + 1 == q)
            acc += w1 * row[u];
    }
    return acc * a.len;
}

__global__ static void back_kernel(apt_proj_shape sh, const apt_proj_angle *ang, const int *idx, int n,
                                   const float *sino, float *vol)
{
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x, total = (size_t)sh.Z * sh.Y * sh.X;
    if (t >= total)
        return;
    int i = (int)(t % sh.X), j = (int)(t / sh.X % sh.Y), k = (int)(t / ((size_t)sh.X * sh.Y));
    float out = 0;
    for (int s = 0; s < n; s++) {
        const apt_proj_angle a = ang[idx[s]];
        const float *row = sino + ((size_t)s * sh.Y + j) * sh.U;
        out += (float)(a.zmajor ? gather(a, row, sh.U, k, i) : gather(a, row, sh.U, i, k));
    }
    vol[t] = out;
}


/* Copies in, runs one kernel, copies out; every CUDA failure becomes an apt_error and the caller falls back. */
static int run(const apt_proj_shape *sh, const apt_proj_angle *ang, const int *idx, int n, const float *in,
               size_t n_in, float *out, size_t n_out, int back, apt_error *err)
{
    int n_ang = 0;
    for (int s = 0; s < n; s++)
        n_ang = idx[s] + 1 > n_ang ? idx[s] + 1 : n_ang;
    apt_proj_angle *d_ang = NULL;
    int *d_idx = NULL;
    float *d_in = NULL, *d_out = NULL;
    cudaError_t rc = cudaMalloc(&d_ang, (size_t)n_ang * sizeof *d_ang);
    if (rc == cudaSuccess)
        rc = cudaMalloc(&d_idx, (size_t)n * sizeof *d_idx);
    if (rc == cudaSuccess)
        rc = cudaMalloc(&d_in, n_in * sizeof *d_in);
    if (rc == cudaSuccess)
        rc = cudaMalloc(&d_out, n_out * sizeof *d_out);
    if (rc == cudaSuccess)
        rc = cudaMemcpy(d_ang, ang, (size_t)n_ang * sizeof *d_ang, cudaMemcpyHostToDevice);
    if (rc == cudaSuccess)
        rc = cudaMemcpy(d_idx, idx, (size_t)n * sizeof *d_idx, cudaMemcpyHostToDevice);
    if (rc == cudaSuccess)
        rc = cudaMemcpy(d_in, in, n_in * sizeof *d_in, cudaMemcpyHostToDevice);
    if (rc == cudaSuccess) {
        unsigned threads = 256, blocks = (unsigned)((n_out + threads - 1) / threads);
        if (back)
            back_kernel<<<blocks, threads>>>(*sh, d_ang, d_idx, n, d_in, d_out);
        else
            fwd_kernel<<<blocks, threads>>>(*sh, d_ang, d_idx, n, d_in, d_out);
        rc = cudaGetLastError();
    }
    if (rc == cudaSuccess)
        rc = cudaMemcpy(out, d_out, n_out * sizeof *d_out, cudaMemcpyDeviceToHost);
    cudaFree(d_ang);
    cudaFree(d_idx);
    cudaFree(d_in);
    cudaFree(d_out);
    if (rc != cudaSuccess)
        return apt_err(err, APT_ENODEV, "tomo projector (CUDA): %s", cudaGetErrorString(rc));
    return APT_OK;
}

static int cuda_forward(const apt_proj_shape *sh, const apt_proj_angle *ang, const int *idx, int n,
                                     const float *vol, float *sino, apt_error *err)
{
    return run(sh, ang, idx, n, vol, (size_t)sh->Z * sh->Y * sh->X, sino, (size_t)n * sh->Y * sh->U, 0, err);
}

static int cuda_back(const apt_proj_shape *sh, const apt_proj_angle *ang, const int *idx, int n,
                                  const float *sino, float *vol, apt_error *err)
{
    return run(sh, ang, idx, n, sino, (size_t)n * sh->Y * sh->U, vol, (size_t)sh->Z * sh->Y * sh->X, 1, err);
}

static const apt_proj_ops cuda_ops = {"cuda", cuda_forward, cuda_back};

extern "C" const apt_proj_ops *apt_proj_cuda_ops(void) { return &cuda_ops; }
