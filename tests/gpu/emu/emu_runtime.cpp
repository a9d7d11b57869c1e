/* emu_runtime.cpp - the serial CPU emulation of cuda_runtime.h and cufft.h here. */
#include <fftw3.h>
#include <stdio.h>

#include "cufft.h"

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
size_t emu_free_bytes = (size_t)1 << 30;
long emu_fail_after = -1, emu_launches;
static cudaError_t last_error;

int emu_fault(void) { return emu_fail_after >= 0 && emu_fail_after-- == 0; }

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

void emu_launch(dim3 grid, dim3 block, const std::function<void()> &thread)
{
    if (emu_fault()) {
        last_error = cudaErrorLaunchFailure;
        return;
    }
    /* the limits a real launch would refuse */
    if (block.x * block.y * block.z > 1024 || grid.y > 65535 || grid.z > 65535 || !grid.x || !grid.y) {
        fprintf(stderr, "emulation: invalid launch grid (%u, %u, %u) block (%u, %u, %u)\n", grid.x, grid.y, grid.z,
                block.x, block.y, block.z);
        abort();
    }
    emu_launches++;
    gridDim = grid, blockDim = block;
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++)
                for (unsigned t = 0; t < block.x * block.y * block.z; t++) {
                    blockIdx = uint3{bx, by, bz};
                    threadIdx = uint3{t % block.x, t / block.x % block.y, t / (block.x * block.y)};
                    thread();
                }
}

enum { EMU_PLANS = 4096 };
static struct {
    int n0, n1, batch, state; /* state: 1 created, 2 planned */
} plans[EMU_PLANS];
static int nplans;

cufftResult cufftCreate(cufftHandle *h)
{
    if (nplans >= EMU_PLANS || emu_fault())
        return CUFFT_ALLOC_FAILED;
    *h = nplans++;
    plans[*h].state = 1;
    return CUFFT_SUCCESS;
}

static int live(cufftHandle h, int state) { return h >= 0 && h < nplans && plans[h].state == state; }

cufftResult cufftSetAutoAllocation(cufftHandle h, int) { return live(h, 1) ? CUFFT_SUCCESS : CUFFT_INVALID_VALUE; }

cufftResult cufftMakePlanMany(cufftHandle h, int rank, int *n, int *, int, int, int *, int, int, int type, int batch,
                              size_t *work)
{
    if (!live(h, 1) || rank != 2 || type != CUFFT_C2C || batch < 1 || n[0] < 1 || n[1] < 1)
        return CUFFT_INVALID_VALUE;
    plans[h].n0 = n[0], plans[h].n1 = n[1], plans[h].batch = batch, plans[h].state = 2;
    *work = (size_t)batch * n[0] * n[1] * 8;
    return CUFFT_SUCCESS;
}

cufftResult cufftSetStream(cufftHandle h, cudaStream_t) { return live(h, 2) ? CUFFT_SUCCESS : CUFFT_INVALID_VALUE; }
cufftResult cufftSetWorkArea(cufftHandle h, void *w) { return live(h, 2) && w ? CUFFT_SUCCESS : CUFFT_INVALID_VALUE; }

cufftResult cufftDestroy(cufftHandle h)
{
    if (!live(h, 1) && !live(h, 2)) {
        fprintf(stderr, "emulation: cufftDestroy of a plan that is not alive\n");
        abort();
    }
    plans[h].state = 0;
    return CUFFT_SUCCESS;
}

cufftResult cufftExecC2C(cufftHandle h, float2 *in, float2 *out, int dir)
{
    if (!live(h, 2))
        return CUFFT_INVALID_VALUE;
    if (emu_fault())
        return CUFFT_EXEC_FAILED;
    int n[2] = {plans[h].n0, plans[h].n1}, d = n[0] * n[1];
    fftwf_plan p = fftwf_plan_many_dft(2, n, plans[h].batch, (fftwf_complex *)in, NULL, 1, d, (fftwf_complex *)out,
                                       NULL, 1, d, dir, FFTW_ESTIMATE | FFTW_UNALIGNED);
    if (!p)
        return CUFFT_EXEC_FAILED;
    fftwf_execute(p);
    fftwf_destroy_plan(p);
    return CUFFT_SUCCESS;
}
