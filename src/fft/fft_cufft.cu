/* fft_cufft.cu - the GPU FFT backend on cuFFT, twin of fft_fftw.c. The plan owns one device buffer of its batch;
 * execution stages host data through it (upload, transform, scale, download), serialised per plan by a mutex since
 * the buffer is shared. Device-resident callers (a GPU multislice) would reuse the same cufftHandle on their own
 * arrays; this backend keeps the host-memory contract of include/aptomo/fft.h. */
extern "C" {
#include "fft/fft_backend.h"
}
#include <cuda_runtime.h>
#include <cufft.h>
#include <pthread.h>
#include <stdlib.h>

typedef struct cufft_impl {
    cufftHandle plan;
    cufftComplex *dev;
    size_t n;
    pthread_mutex_t lock;
} cufft_impl;

__global__ static void scale_kernel(cufftComplex *d, size_t n, float s)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        d[i].x *= s;
        d[i].y *= s;
    }
}

static int cufft_plan(apt_fft_plan *p, apt_error *err)
{
    cufft_impl *im = (cufft_impl *)calloc(1, sizeof *im);
    if (!im)
        return apt_err(err, APT_ENOMEM, "cufft: out of memory");
    im->n = (size_t)p->batch * p->h * p->w;
    int dims[2] = {p->h, p->w}, dist = p->h * p->w;
    cudaError_t ce = cudaMalloc((void **)&im->dev, im->n * sizeof(cufftComplex));
    if (ce != cudaSuccess) {
        free(im);
        return apt_err(err, APT_ENODEV, "cufft: device buffer of %zu values: %s", im->n, cudaGetErrorString(ce));
    }
    cufftResult r = cufftPlanMany(&im->plan, 2, dims, NULL, 1, dist, NULL, 1, dist, CUFFT_C2C, p->batch);
    if (r != CUFFT_SUCCESS) {
        cudaFree(im->dev);
        free(im);
        return apt_err(err, APT_ENODEV, "cufft: cannot plan %d x %d x %d (cufftResult %d)", p->batch, p->h, p->w,
                       (int)r);
    }
    pthread_mutex_init(&im->lock, NULL);
    p->impl = im;
    return APT_OK;
}

static int cufft_run(const apt_fft_plan *p, float *data, int dir, int scale, apt_error *err)
{
    cufft_impl *im = (cufft_impl *)p->impl;
    size_t bytes = im->n * sizeof(cufftComplex);
    int rc = APT_OK;
    pthread_mutex_lock(&im->lock);
    cudaError_t ce = cudaMemcpy(im->dev, data, bytes, cudaMemcpyHostToDevice);
    cufftResult r = ce == cudaSuccess ? cufftExecC2C(im->plan, im->dev, im->dev, dir) : CUFFT_EXEC_FAILED;
    if (r == CUFFT_SUCCESS && scale) {
        unsigned blocks = (unsigned)((im->n + 255) / 256);
        scale_kernel<<<blocks, 256>>>(im->dev, im->n, 1.0f / ((float)p->h * (float)p->w));
        ce = cudaGetLastError();
    }
    if (r == CUFFT_SUCCESS && ce == cudaSuccess)
        ce = cudaMemcpy(data, im->dev, bytes, cudaMemcpyDeviceToHost);
    if (ce != cudaSuccess)
        rc = apt_err(err, APT_ENODEV, "cufft: %s", cudaGetErrorString(ce));
    else if (r != CUFFT_SUCCESS)
        rc = apt_err(err, APT_ENODEV, "cufft: execution failed (cufftResult %d)", (int)r);
    pthread_mutex_unlock(&im->lock);
    return rc;
}

static int cufft_forward(const apt_fft_plan *p, float *data, apt_error *err)
{
    return cufft_run(p, data, CUFFT_FORWARD, 0, err);
}

static int cufft_inverse(const apt_fft_plan *p, float *data, int scale, apt_error *err)
{
    return cufft_run(p, data, CUFFT_INVERSE, scale, err);
}

static void cufft_destroy(apt_fft_plan *p)
{
    cufft_impl *im = (cufft_impl *)p->impl;
    if (!im)
        return;
    cufftDestroy(im->plan);
    cudaFree(im->dev);
    pthread_mutex_destroy(&im->lock);
    free(im);
    p->impl = NULL;
}

static const struct apt_fft_ops cufft_ops = {
    "cufft", cufft_plan, cufft_forward, cufft_inverse, cufft_destroy,
};

extern "C" const struct apt_fft_ops *apt_fft_cufft_ops(void) { return &cufft_ops; }
