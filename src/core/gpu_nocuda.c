/* gpu_nocuda.c - CPU-only twin of gpu_cuda.cu: this build has no CUDA backends, so there is never a device. */
#include "aptomo/gpu.h"

#include <stdio.h>

int apt_gpu_compiled(void) { return 0; }

int apt_gpu_count(apt_error *err)
{
    apt_err(err, APT_ENODEV, "built without CUDA (APTOMO_CUDA=OFF or no nvcc)");
    return 0;
}

int apt_gpu_name(char *buf, size_t len, apt_error *err)
{
    snprintf(buf, len, "none");
    return apt_err(err, APT_ENODEV, "built without CUDA");
}
