/* nn_cudnn.cu - the GPU network backend, twin of nn_dnnl.c: cuDNN convolution (algorithm and workspace chosen once
 * per op instance) followed by one fused epilogue kernel (bias + residual + ReLU), cuDNN max-pool and batch-norm,
 * cuBLAS GEMM, small kernels for nearest upsampling (+ skip), add, ReLU and the axial attention core (one thread per
 * (line, head, position): similarity row, softmax, value and relative-value sums, exactly as axial.c). Activations
 * and weights stay on the device; only the input and output cross the bus. */
extern "C" {
#include "nn/nn_backend.h"
}
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct gpu_ctx {
    cudnnHandle_t dnn;
    cublasHandle_t blas;
} gpu_ctx;

struct apt_nn_prim {
    int key[24];
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    cudnnPoolingDescriptor_t pd;
    cudnnTensorDescriptor_t bnd;
    cudnnConvolutionFwdAlgo_t algo;
    void *ws;
    size_t ws_size;
    float *scratch;
};

#define CUDNN_CK(call, what)                                                                                         \
    do {                                                                                                             \
        cudnnStatus_t s_ = (call);                                                                                   \
        if (s_ != CUDNN_STATUS_SUCCESS)                                                                              \
            return apt_err(err, APT_EINVAL, "cuDNN %s: %s", what, cudnnGetErrorString(s_));                         \
    } while (0)
#define CUDA_CK(call, what)                                                                                          \
    do {                                                                                                             \
        cudaError_t e_ = (call);                                                                                     \
        if (e_ != cudaSuccess)                                                                                       \
            return apt_err(err, e_ == cudaErrorMemoryAllocation ? APT_ENOMEM : APT_ENODEV, "CUDA %s: %s", what,     \
                           cudaGetErrorString(e_));                                                                  \
    } while (0)

static int gpu_init(void **ctxp, int threads, apt_error *err)
{
    (void)threads;
    gpu_ctx *c = (gpu_ctx *)calloc(1, sizeof(*c));
    if (!c)
        return apt_err(err, APT_ENOMEM, "out of memory");
    *ctxp = c;
    CUDNN_CK(cudnnCreate(&c->dnn), "create");
    if (cublasCreate(&c->blas) != CUBLAS_STATUS_SUCCESS)
        return apt_err(err, APT_ENODEV, "cuBLAS: create failed");
    return APT_OK;
}

static void gpu_fini(void *ctx)
{
    gpu_ctx *c = (gpu_ctx *)ctx;
    if (!c)
        return;
    if (c->dnn)
        cudnnDestroy(c->dnn);
    if (c->blas)
        cublasDestroy(c->blas);
    free(c);
}

static void *gpu_alloc(void *ctx, size_t bytes)
{
    (void)ctx;
    void *p = NULL;
    return cudaMalloc(&p, bytes ? bytes : 64) == cudaSuccess ? p : NULL;
}

static void gpu_free(void *ctx, void *p)
{
    (void)ctx;
    cudaFree(p);
}

static int gpu_upload(void *ctx, void *dst, const void *src, size_t bytes, apt_error *err)
{
    (void)ctx;
    CUDA_CK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "upload");
    return APT_OK;
}

static int gpu_download(void *ctx, void *dst, const void *src, size_t bytes, apt_error *err)
{
    (void)ctx;
    CUDA_CK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "download");
    return APT_OK;
}

static void gpu_prim_free(void *ctx, apt_nn_prim *p)
{
    (void)ctx;
    if (!p)
        return;
    if (p->xd)
        cudnnDestroyTensorDescriptor(p->xd);
    if (p->yd)
        cudnnDestroyTensorDescriptor(p->yd);
    if (p->bnd)
        cudnnDestroyTensorDescriptor(p->bnd);
    if (p->wd)
        cudnnDestroyFilterDescriptor(p->wd);
    if (p->cd)
        cudnnDestroyConvolutionDescriptor(p->cd);
    if (p->pd)
        cudnnDestroyPoolingDescriptor(p->pd);
    cudaFree(p->ws);
    cudaFree(p->scratch);
    free(p);
}

static void key_tensor(int *k, const apt_nn_tensor *t)
{
    k[0] = t ? t->n : -1, k[1] = t ? t->c : -1, k[2] = t ? t->d : -1, k[3] = t ? t->h : -1, k[4] = t ? t->w : -1;
}

static apt_nn_prim *cached(void *ctx, apt_nn_prim **c, const int *key, int *fresh)
{
    *fresh = 0;
    if (*c && !memcmp((*c)->key, key, sizeof((*c)->key)))
        return *c;
    gpu_prim_free(ctx, *c);
    *c = (apt_nn_prim *)calloc(1, sizeof(apt_nn_prim));
    if (*c)
        memcpy((*c)->key, key, sizeof((*c)->key)), *fresh = 1;
    return *c;
}

static cudnnStatus_t tdesc(cudnnTensorDescriptor_t *d, const apt_nn_tensor *t)
{
    cudnnStatus_t s = cudnnCreateTensorDescriptor(d);
    int dims[5] = {t->n, t->c, t->d, t->h, t->w};
    int str[5] = {t->c * t->d * t->h * t->w, t->d * t->h * t->w, t->h * t->w, t->w, 1};
    return s == CUDNN_STATUS_SUCCESS ? cudnnSetTensorNdDescriptor(*d, CUDNN_DATA_FLOAT, 5, dims, str) : s;
}

static unsigned blocks(size_t n) { return (unsigned)((n + 255) / 256); }

__global__ static void epilogue_kernel(float *y, const float *bias, const float *res, size_t n, size_t sp, int C,
                                       int relu)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    float v = y[i] + (bias ? bias[(i / sp) % C] : 0.0f) + (res ? res[i] : 0.0f);
    y[i] = relu && v < 0 ? 0.0f : v;
}

static int gpu_conv3d(void *ctx, apt_nn_prim **c, const apt_nn_tensor *x, const float *w, const float *bias, int k,
                      const int stride[3], const apt_nn_tensor *res, int relu, apt_nn_tensor *y, apt_error *err)
{
    gpu_ctx *g = (gpu_ctx *)ctx;
    int key[24] = {1, k, stride[0], stride[1], stride[2]}, fresh;
    key_tensor(key + 5, x), key_tensor(key + 10, y);
    apt_nn_prim *p = cached(ctx, c, key, &fresh);
    if (!p)
        return apt_err(err, APT_ENOMEM, "out of memory");
    if (fresh) {
        int wdim[5] = {y->c, x->c, k, k, k}, pad[3] = {k / 2, k / 2, k / 2}, dil[3] = {1, 1, 1};
        CUDNN_CK(tdesc(&p->xd, x), "tensor");
        CUDNN_CK(tdesc(&p->yd, y), "tensor");
        CUDNN_CK(cudnnCreateFilterDescriptor(&p->wd), "filter");
        CUDNN_CK(cudnnSetFilterNdDescriptor(p->wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 5, wdim), "filter");
        CUDNN_CK(cudnnCreateConvolutionDescriptor(&p->cd), "convolution");
        CUDNN_CK(cudnnSetConvolutionNdDescriptor(p->cd, 3, pad, stride, dil, CUDNN_CROSS_CORRELATION,
                                                 CUDNN_DATA_FLOAT),
                 "convolution");
        cudnnSetConvolutionMathType(p->cd, CUDNN_FMA_MATH); /* no TF32: stay within float32 accuracy */
        cudnnConvolutionFwdAlgoPerf_t perf[8];
        int got = 0;
        CUDNN_CK(cudnnGetConvolutionForwardAlgorithm_v7(g->dnn, p->xd, p->wd, p->cd, p->yd, 8, &got, perf),
                 "algorithm");
        p->algo = got > 0 ? perf[0].algo : CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
        CUDNN_CK(cudnnGetConvolutionForwardWorkspaceSize(g->dnn, p->xd, p->wd, p->cd, p->yd, p->algo, &p->ws_size),
                 "workspace");
        if (p->ws_size)
            CUDA_CK(cudaMalloc(&p->ws, p->ws_size), "workspace");
    }
    const float one = 1.0f, zero = 0.0f;
    CUDNN_CK(cudnnConvolutionForward(g->dnn, &one, p->xd, x->data, p->wd, w, p->cd, p->algo, p->ws, p->ws_size, &zero,
                                     p->yd, y->data),
             "convolution");
    size_t n = apt_nn_numel(y), sp = (size_t)y->d * y->h * y->w;
    if (bias || res || relu)
        epilogue_kernel<<<blocks(n), 256>>>(y->data, bias, res ? res->data : NULL, n, sp, y->c, relu);
    CUDA_CK(cudaGetLastError(), "epilogue");
    return APT_OK;
}

static int gpu_batchnorm(void *ctx, apt_nn_prim **c, const apt_nn_tensor *x, const float *gamma, const float *beta,
                         const float *mean, const float *var, float eps, int relu, apt_nn_tensor *y, apt_error *err)
{
    gpu_ctx *g = (gpu_ctx *)ctx;
    int key[24] = {2}, fresh;
    key_tensor(key + 1, x);
    apt_nn_prim *p = cached(ctx, c, key, &fresh);
    if (!p)
        return apt_err(err, APT_ENOMEM, "out of memory");
    if (fresh) {
        CUDNN_CK(tdesc(&p->xd, x), "tensor");
        CUDNN_CK(cudnnCreateTensorDescriptor(&p->bnd), "tensor");
        CUDNN_CK(cudnnDeriveBNTensorDescriptor(p->bnd, p->xd, CUDNN_BATCHNORM_SPATIAL), "batch-norm descriptor");
    }
    const float one = 1.0f, zero = 0.0f;
    CUDNN_CK(cudnnBatchNormalizationForwardInference(g->dnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, p->xd, x->data,
                                                     p->xd, y->data, p->bnd, gamma, beta, mean, var, eps),
             "batch-norm");
    size_t n = apt_nn_numel(y);
    if (relu)
        epilogue_kernel<<<blocks(n), 256>>>(y->data, NULL, NULL, n, 1, 1, 1);
    CUDA_CK(cudaGetLastError(), "relu");
    return APT_OK;
}

static int gpu_relu(void *ctx, apt_nn_prim **c, const apt_nn_tensor *x, apt_nn_tensor *y, apt_error *err)
{
    (void)ctx, (void)c;
    size_t n = apt_nn_numel(x);
    if (y->data != x->data)
        CUDA_CK(cudaMemcpy(y->data, x->data, n * sizeof(float), cudaMemcpyDeviceToDevice), "copy");
    epilogue_kernel<<<blocks(n), 256>>>(y->data, NULL, NULL, n, 1, 1, 1);
    CUDA_CK(cudaGetLastError(), "relu");
    return APT_OK;
}

static int gpu_maxpool3d(void *ctx, apt_nn_prim **c, const apt_nn_tensor *x, int k, apt_nn_tensor *y, apt_error *err)
{
    gpu_ctx *g = (gpu_ctx *)ctx;
    int key[24] = {4, k}, fresh;
    key_tensor(key + 2, x);
    apt_nn_prim *p = cached(ctx, c, key, &fresh);
    if (!p)
        return apt_err(err, APT_ENOMEM, "out of memory");
    if (fresh) {
        int win[3] = {k, k, k}, pad[3] = {k / 2, k / 2, k / 2}, st[3] = {1, 1, 1};
        CUDNN_CK(tdesc(&p->xd, x), "tensor");
        CUDNN_CK(tdesc(&p->yd, y), "tensor");
        CUDNN_CK(cudnnCreatePoolingDescriptor(&p->pd), "pooling");
        CUDNN_CK(cudnnSetPoolingNdDescriptor(p->pd, CUDNN_POOLING_MAX, CUDNN_NOT_PROPAGATE_NAN, 3, win, pad, st),
                 "pooling");
    }
    const float one = 1.0f, zero = 0.0f;
    CUDNN_CK(cudnnPoolingForward(g->dnn, p->pd, &one, p->xd, x->data, &zero, p->yd, y->data), "max-pool");
    return APT_OK;
}

__global__ static void upsample_kernel(const float *x, const float *skip, float *y, int NC, int D, int H, int W)
{
    size_t n = (size_t)NC * 8 * D * H * W, i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    size_t ox = i % (2 * W), oy = i / (2 * W) % (2 * H), oz = i / (4 * (size_t)W * H) % (2 * D),
           nc = i / (8 * (size_t)W * H * D);
    float v = x[((nc * D + oz / 2) * H + oy / 2) * W + ox / 2];
    y[i] = skip ? v + skip[i] : v;
}

static int gpu_upsample2(void *ctx, apt_nn_prim **c, const apt_nn_tensor *x, const apt_nn_tensor *skip,
                         apt_nn_tensor *y, apt_error *err)
{
    (void)ctx, (void)c;
    upsample_kernel<<<blocks(apt_nn_numel(y)), 256>>>(x->data, skip ? skip->data : NULL, y->data, x->n * x->c, x->d,
                                                      x->h, x->w);
    CUDA_CK(cudaGetLastError(), "upsample");
    return APT_OK;
}

__global__ static void add_kernel(const float *a, const float *b, float *y, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] = a[i] + b[i];
}

static int gpu_add(void *ctx, apt_nn_prim **c, const apt_nn_tensor *a, const apt_nn_tensor *b, apt_nn_tensor *y,
                   apt_error *err)
{
    (void)ctx, (void)c;
    size_t n = apt_nn_numel(a);
    add_kernel<<<blocks(n), 256>>>(a->data, b->data, y->data, n);
    CUDA_CK(cudaGetLastError(), "add");
    return APT_OK;
}

/* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap operands. */
static int gpu_gemm(void *ctx, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc, apt_error *err)
{
    gpu_ctx *g = (gpu_ctx *)ctx;
    if (cublasSgemm(g->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, ldb,
                    A, lda, &beta, C, ldc) != CUBLAS_STATUS_SUCCESS)
        return apt_err(err, APT_EINVAL, "cuBLAS sgemm failed");
    return APT_OK;
}

/* One thread per (line, head, i); S row in scratch [lines, G, K, K]. Same maths and order of terms as axial.c. */
__global__ static void axial_kernel(apt_nn_axial_params p, const float *qkv, float *y, float *S, int Bn, int D, int H,
                                    int W, int relu)
{
    const int K = p.K, G = p.heads, P = p.planes, gp = P / G, c2 = gp / 2, L = 2 * K - 1;
    const size_t sp = (size_t)D * H * W;
    const size_t ps = p.axis == 0 ? (size_t)H * W : p.axis == 1 ? (size_t)W : 1;
    const size_t n1 = p.axis == 0 ? H : D, n2 = p.axis == 2 ? H : W;
    const size_t s1 = p.axis == 0 ? (size_t)W : (size_t)H * W, s2 = p.axis == 2 ? (size_t)W : 1;
    size_t lines = (size_t)Bn * n1 * n2, t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= lines * G * K)
        return;
    int i = (int)(t % K), g = (int)(t / K % G);
    size_t l = t / ((size_t)K * G), b = l / (n1 * n2), r = l % (n1 * n2), off = (r / n2) * s1 + (r % n2) * s2;
    const float *q = qkv + b * 2 * P * sp + off + (size_t)g * 2 * gp * sp, *k = q + (size_t)c2 * sp,
                *v = k + (size_t)c2 * sp;
    float *Si = S + ((l * G + g) * K + i) * (size_t)K;
    float a0 = p.sim_a[g], a1 = p.sim_a[G + g], a2 = p.sim_a[2 * G + g];
    float bs = p.sim_b[g] + p.sim_b[G + g] + p.sim_b[2 * G + g], mx = -INFINITY;
    for (int j = 0; j < K; j++) {
        float qk = 0, qr = 0, kr = 0;
        for (int c = 0; c < c2; c++) {
            float qc = q[c * sp + i * ps], kc = k[c * sp + j * ps];
            qk += qc * kc;
            qr += qc * p.rel[(size_t)c * L + i - j + K - 1];
            kr += kc * p.rel[(size_t)(c2 + c) * L + j - i + K - 1];
        }
        Si[j] = a0 * qk + a1 * qr + a2 * kr + bs;
        mx = fmaxf(mx, Si[j]);
    }
    float sum = 0;
    for (int j = 0; j < K; j++)
        sum += Si[j] = expf(Si[j] - mx);
    for (int j = 0; j < K; j++)
        Si[j] /= sum;
    float *yo = y + b * P * sp + off + (size_t)i * ps;
    for (int c = 0; c < gp; c++) {
        float sv = 0, sve = 0;
        const float *rv = p.rel + (size_t)(gp + c) * L + i + K - 1;
        for (int j = 0; j < K; j++) {
            sv += Si[j] * v[c * sp + j * ps];
            sve += Si[j] * rv[-j];
        }
        int n = g * gp + c;
        float val = p.out_a[2 * n] * sv + p.out_a[2 * n + 1] * sve + p.out_b[2 * n] + p.out_b[2 * n + 1];
        yo[(size_t)n * sp] = relu && val < 0 ? 0.0f : val;
    }
}

static int gpu_axial(void *ctx, apt_nn_prim **c, const apt_nn_tensor *qkv, const apt_nn_axial_params *ap, int relu,
                     apt_nn_tensor *y, apt_error *err)
{
    int K = ap->axis == 0 ? qkv->d : ap->axis == 1 ? qkv->h : qkv->w, fresh;
    if (K != ap->K || qkv->c != 2 * ap->planes || y->c != ap->planes)
        return apt_err(err, APT_EINVAL, "axial attention: tensor shape does not match the layer");
    int key[24] = {7, ap->axis};
    key_tensor(key + 2, qkv);
    apt_nn_prim *p = cached(ctx, c, key, &fresh);
    if (!p)
        return apt_err(err, APT_ENOMEM, "out of memory");
    size_t lines = apt_nn_numel(qkv) / (size_t)qkv->c / (size_t)K, threads = lines * ap->heads * K;
    if (fresh)
        CUDA_CK(cudaMalloc((void **)&p->scratch, threads * (size_t)K * sizeof(float)), "attention scratch");
    axial_kernel<<<blocks(threads), 256>>>(*ap, qkv->data, y->data, p->scratch, qkv->n, qkv->d, qkv->h, qkv->w,
                                           relu);
    CUDA_CK(cudaGetLastError(), "axial attention");
    return APT_OK;
}

static const struct apt_nn_ops cudnn_ops = {
    "cudnn",   gpu_init,      gpu_fini, gpu_alloc,     gpu_free,      gpu_upload, gpu_download, gpu_prim_free,
    gpu_conv3d, gpu_batchnorm, gpu_relu, gpu_maxpool3d, gpu_upsample2, gpu_add,    gpu_gemm,     gpu_axial,
};

extern "C" const struct apt_nn_ops *apt_nn_cudnn_ops(void) { return &cudnn_ops; }
