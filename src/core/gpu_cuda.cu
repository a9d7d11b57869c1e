/* gpu_cuda.cu - device discovery through the CUDA runtime; its CPU twin gpu_nocuda.c answers "no device". */
extern "C" {
#include "aptomo/gpu.h"
}
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

extern "C" int apt_gpu_compiled(void) { return 1; }

extern "C" int apt_gpu_count(apt_error *err)
{
    int n = 0;
    cudaError_t rc = cudaGetDeviceCount(&n);
    if (rc != cudaSuccess) {
        apt_err(err, APT_ENODEV, "CUDA: %s", cudaGetErrorString(rc));
        return 0;
    }
    if (n == 0)
        apt_err(err, APT_ENODEV, "CUDA: no device");
    return n;
}

extern "C" int apt_gpu_name(char *buf, size_t len, apt_error *err)
{
    cudaDeviceProp prop;
    if (apt_gpu_count(err) <= 0) {
        snprintf(buf, len, "none");
        return APT_ENODEV;
    }
    cudaError_t rc = cudaGetDeviceProperties(&prop, 0);
    if (rc != cudaSuccess)
        return apt_err(err, APT_ENODEV, "CUDA: %s", cudaGetErrorString(rc));
    snprintf(buf, len, "%s", prop.name);
    return APT_OK;
}

/* A 64-byte header before the block says how it was allocated (1 = cudaHostAlloc, 0 = aligned_alloc). */
extern "C" void *apt_gpu_host_alloc(size_t bytes, int pinned)
{
    if (bytes > ((size_t)1 << 46))
        return NULL;
    size_t total = 64 + ((bytes + 63) & ~(size_t)63);
    void *b = NULL;
    int n = 0;
    if (pinned && cudaGetDeviceCount(&n) == cudaSuccess && n > 0 &&
        cudaHostAlloc(&b, total, cudaHostAllocPortable) == cudaSuccess) {
        *(int *)b = 1;
        return (char *)b + 64;
    }
    cudaGetLastError(); /* a refused pin is not an error for the next CUDA call */
    if (!(b = aligned_alloc(64, total)))
        return NULL;
    *(int *)b = 0;
    return (char *)b + 64;
}

extern "C" void apt_gpu_host_free(void *p)
{
    if (!p)
        return;
    char *b = (char *)p - 64;
    if (*(int *)b)
        cudaFreeHost(b);
    else
        free(b);
}
