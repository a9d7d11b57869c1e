/* fft.h - batched 2-D single-precision complex FFTs behind one small interface (FFTW on the CPU, cuFFT on a GPU).
 * FFTW's rule, "plan once, execute many": a plan fixes batch x h x w and its backend; executing it is cheap,
 * allocation-free and thread-safe on distinct arrays. Conventions are numpy's: forward unnormalised, inverse
 * scaled by 1/(h w). Data are interleaved (re, im) floats, batch contiguous h x w row-major transforms, in place. */
#ifndef APTOMO_FFT_H
#define APTOMO_FFT_H

#include <stddef.h>

#include "aptomo/backend.h"
#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

typedef struct apt_fft_plan apt_fft_plan;

/* Plan flags. */
#define APT_FFT_MEASURE 1u  /* time candidate algorithms while planning (FFTW_MEASURE): slower plan, faster runs */

/* Bounds checked before anything is allocated. */
#define APT_FFT_MAX_DIM 16384
#define APT_FFT_MAX_ELEMS ((size_t)1 << 30)  /* batch * h * w */

/* backend: include/aptomo/backend.h (cpu = FFTW, gpu = cuFFT). */
int apt_fft_plan_new(int batch, int h, int w, unsigned flags, apt_backend backend, apt_fft_plan **out,
                     apt_error *err);
void apt_fft_plan_destroy(apt_fft_plan **p);
apt_backend apt_fft_plan_backend(const apt_fft_plan *p);
/* The implementation: "fftw" or "cufft". */
const char *apt_fft_plan_impl(const apt_fft_plan *p);

/* In-place transforms of batch * h * w complex values at data (host memory, aligned as apt_fft_alloc aligns:
   misaligned data is refused with APT_EINVAL). err may be NULL. */
int apt_fft_forward(const apt_fft_plan *p, float *data, apt_error *err);
int apt_fft_inverse(const apt_fft_plan *p, float *data, apt_error *err);
/* Inverse without the 1/(h w) factor (= h w F^-1 = the adjoint of the forward transform): hot loops fold the
   scale into a multiplication they do anyway. */
int apt_fft_inverse_unscaled(const apt_fft_plan *p, float *data, apt_error *err);

/* Host buffer of n complex values (2 n floats), 64-byte aligned, zeroed; NULL when out of memory. */
float *apt_fft_alloc(size_t n);
void apt_fft_free(float *buf);

/* FFTW wisdom (optional): reuse plans measured by an earlier run. Missing file on load is not an error. */
int apt_fft_wisdom_load(const char *path, apt_error *err);
int apt_fft_wisdom_save(const char *path, apt_error *err);

APT_API_END

#endif
