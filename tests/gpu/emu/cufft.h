/* cufft.h (emulation) - the cuFFT subset multislice_cuda.cu uses, on FFTW (see cuda_runtime.h here). A plan remembers
 * its shape and batch; each execution plans and runs FFTW on the given arrays. Work areas are accepted and unused. */
#ifndef APT_EMU_CUFFT_H
#define APT_EMU_CUFFT_H

#include "cuda_runtime.h"

typedef int cufftHandle;
typedef int cufftResult;
enum { CUFFT_SUCCESS = 0, CUFFT_ALLOC_FAILED = 2, CUFFT_INVALID_VALUE = 4, CUFFT_EXEC_FAILED = 6 };
#define CUFFT_C2C 0x29
#define CUFFT_FORWARD -1
#define CUFFT_INVERSE 1

/* emu_ names: the test executable also links the real libaptomo (a CUDA build links cuFFT), whose calls must not
   land here */
#define cufftCreate emu_cufftCreate
#define cufftSetAutoAllocation emu_cufftSetAutoAllocation
#define cufftMakePlanMany emu_cufftMakePlanMany
#define cufftSetStream emu_cufftSetStream
#define cufftSetWorkArea emu_cufftSetWorkArea
#define cufftDestroy emu_cufftDestroy
#define cufftExecC2C emu_cufftExecC2C

cufftResult cufftCreate(cufftHandle *h);
cufftResult cufftSetAutoAllocation(cufftHandle h, int on);
cufftResult cufftMakePlanMany(cufftHandle h, int rank, int *n, int *inembed, int istride, int idist, int *onembed,
                              int ostride, int odist, int type, int batch, size_t *work);
cufftResult cufftSetStream(cufftHandle h, cudaStream_t s);
cufftResult cufftSetWorkArea(cufftHandle h, void *work);
cufftResult cufftDestroy(cufftHandle h);
cufftResult cufftExecC2C(cufftHandle h, float2 *in, float2 *out, int dir);

#endif
