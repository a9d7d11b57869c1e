/* gpu.h - accelerator discovery. The CPU path never needs it; GPU backends and tests ask here first and skip
 * with a visible reason when no device is present. */
#ifndef APTOMO_GPU_H
#define APTOMO_GPU_H

#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

/* Number of usable CUDA devices (0 when built without CUDA or when the driver finds none); describes why in err. */
int apt_gpu_count(apt_error *err);
/* Name of device 0 into buf ("none" without a device). */
int apt_gpu_name(char *buf, size_t len, apt_error *err);
/* 1 if this build contains the CUDA backends. */
int apt_gpu_compiled(void);

/* Host memory for data on its way to a device, 64-byte aligned: page-locked (cudaHostAlloc) when pinned is set and
   a device is present, so host->device copies run at bus speed and overlap compute; plain memory otherwise (and
   when the driver refuses to pin that much). NULL when out of memory. Free with apt_gpu_host_free only. */
void *apt_gpu_host_alloc(size_t bytes, int pinned);
void apt_gpu_host_free(void *p);

APT_API_END

#endif
