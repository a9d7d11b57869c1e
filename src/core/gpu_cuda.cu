/* gpu_cuda.cu - device discovery through the CUDA runtime; its CPU twin gpu_nocuda.c answers "no device". */
extern "C" {
#include "aptomo/gpu.h"
}
#include <cuda_runtime.h>
#include <stdio.h>

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
