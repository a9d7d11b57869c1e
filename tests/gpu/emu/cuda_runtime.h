/* cuda_runtime.h (emulation) - the subset of the CUDA runtime that src/ptycho/multislice_cuda.cu uses, run serially
 * on the CPU so its host code and kernels can be tested without a GPU (tests/test_ptycho_cuda_emu.py). Compiled as
 * C++ with -DAPT_CUDA_EMULATION and this folder first on the include path. Device memory is host memory filled with
 * NaN bytes (a kernel that reads what nothing wrote poisons its results); streams and events are immediate (every
 * call completes before it returns, which is one valid order of a real run); a launch runs every thread of every
 * block one after another, so only kernels without inter-thread communication (the model's) are emulated right.
 * emu_fail_after makes the n-th next runtime call, launch or FFT fail, for fault-injection tests. */
#ifndef APT_EMU_CUDA_RUNTIME_H
#define APT_EMU_CUDA_RUNTIME_H

#include <functional>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct float2 {
    float x, y;
};
struct int2 {
    int x, y;
};
static inline float2 make_float2(float a, float b) { return float2{a, b}; }
static inline int2 make_int2(int a, int b) { return int2{a, b}; }

extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __fsub_rn(a, b) ((a) - (b))
#define __fmul_rn(a, b) ((a) * (b))

typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorMemoryAllocation = 2, cudaErrorLaunchFailure = 719, cudaErrorUnknown = 999 };
typedef struct emu_stream *cudaStream_t;
typedef struct emu_event *cudaEvent_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2 };
#define cudaStreamNonBlocking 1
#define cudaEventDisableTiming 2
#define cudaHostAllocDefault 0

/* emulation controls */
extern size_t emu_free_bytes;  /* what cudaMemGetInfo reports */
extern long emu_fail_after;    /* calls left before one fails (< 0: never) */
extern long emu_launches;      /* kernels launched so far */
int emu_fault(void);           /* 1 when this call is the one to fail */

static inline const char *cudaGetErrorString(cudaError_t e) { return e ? "emulated failure" : "no error"; }
static inline cudaError_t emu_malloc(void **p, size_t n)
{
    if (emu_fault())
        return cudaErrorMemoryAllocation;
    *p = malloc(n ? n : 1);
    if (!*p)
        return cudaErrorMemoryAllocation;
    memset(*p, 0xFF, n); /* NaN as float and as double */
    return cudaSuccess;
}
template <class T> cudaError_t cudaMalloc(T **p, size_t n) { return emu_malloc((void **)p, n); }
template <class T> cudaError_t cudaHostAlloc(T **p, size_t n, int) { return emu_malloc((void **)p, n); }
static inline cudaError_t cudaFree(void *p) { return free(p), cudaSuccess; }
static inline cudaError_t cudaFreeHost(void *p) { return free(p), cudaSuccess; }
static inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t)
{
    return emu_fault() ? cudaErrorUnknown : (memcpy(d, s, n), cudaSuccess);
}
static inline cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t)
{
    return emu_fault() ? cudaErrorUnknown : (memset(d, v, n), cudaSuccess);
}
static inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, int)
{
    *s = (cudaStream_t)malloc(1);
    return cudaSuccess;
}
static inline cudaError_t cudaStreamDestroy(cudaStream_t s) { return free(s), cudaSuccess; }
static inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return emu_fault() ? cudaErrorUnknown : cudaSuccess; }
static inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, int)
{
    *e = (cudaEvent_t)malloc(1);
    return cudaSuccess;
}
static inline cudaError_t cudaEventDestroy(cudaEvent_t e) { return free(e), cudaSuccess; }
static inline cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return emu_fault() ? cudaErrorUnknown : 0; }
static inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return emu_fault() ? cudaErrorUnknown : 0; }
static inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, int) { return emu_fault() ? 999 : 0; }
static inline cudaError_t cudaMemGetInfo(size_t *f, size_t *t)
{
    *f = *t = emu_free_bytes;
    return cudaSuccess;
}
#define cudaGetLastError emu_cudaGetLastError /* not the real runtime's symbol (cufft.h says why) */
cudaError_t cudaGetLastError(void);
void emu_launch(dim3 grid, dim3 block, const std::function<void()> &thread);
#define LAUNCH(kernel, grid, block, stream, ...) emu_launch(dim3(grid), dim3(block), [&]() { kernel(__VA_ARGS__); })

#endif
