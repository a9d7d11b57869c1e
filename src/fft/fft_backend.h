/* fft_backend.h - the FFT backend interface (ggml-backend style): each backend fills a struct of function pointers
 * in its own file; fft.c picks one per plan and callers never see which. */
#ifndef APTOMO_FFT_BACKEND_H
#define APTOMO_FFT_BACKEND_H

#include "aptomo/fft.h"

struct apt_fft_ops {
    const char *name;
    int (*plan)(apt_fft_plan *p, apt_error *err);                  /* fills p->impl */
    int (*forward)(const apt_fft_plan *p, float *data, apt_error *err);
    int (*inverse)(const apt_fft_plan *p, float *data, int scale, apt_error *err);
    void (*destroy)(apt_fft_plan *p);                              /* frees p->impl */
};

struct apt_fft_plan {
    const struct apt_fft_ops *ops;
    int batch, h, w;
    unsigned flags;
    void *impl;
};

extern const struct apt_fft_ops apt_fft_fftw_ops;
/* The cuFFT backend, or NULL in a build without CUDA (fft_cufft_nocuda.c). */
const struct apt_fft_ops *apt_fft_cufft_ops(void);

#endif
