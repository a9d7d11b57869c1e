/* gpu_nocuda.c - CPU-only twin of gpu_cuda.cu: this build has no CUDA backends, so there is never a device. */
#include "aptomo/gpu.h"

#include <stdio.h>
#include <stdlib.h>

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

/* One 64-byte header before the block, as in gpu_cuda.cu (which also records whether the block is pinned). */
void *apt_gpu_host_alloc(size_t bytes, int pinned)
{
    (void)pinned;
    if (bytes > ((size_t)1 << 46))
        return NULL;
    char *b = aligned_alloc(64, 64 + ((bytes + 63) & ~(size_t)63));
    return b ? b + 64 : NULL;
}

void apt_gpu_host_free(void *p)
{
    if (p)
        free((char *)p - 64);
}
