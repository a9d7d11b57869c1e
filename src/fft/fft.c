/* fft.c - the backend-neutral face of the FFT module: bounds, the backend choice of include/aptomo/backend.h (cuFFT
 * or FFTW) and aligned host buffers. The transforms themselves live in fft_fftw.c and
 * fft_cufft.cu. */
#include "fft/fft_backend.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/backend.h"

int apt_fft_plan_new(int batch, int h, int w, unsigned flags, apt_backend backend, apt_fft_plan **out,
                     apt_error *err)
{
    *out = NULL;
    if (batch < 1 || h < 1 || w < 1 || h > APT_FFT_MAX_DIM || w > APT_FFT_MAX_DIM)
        return apt_err(err, APT_ERANGE, "fft plan: batch %d of %d x %d out of range (1..%d per side)", batch, h, w,
                       APT_FFT_MAX_DIM);
    if ((size_t)batch > APT_FFT_MAX_ELEMS / ((size_t)h * (size_t)w))
        return apt_err(err, APT_ERANGE, "fft plan: batch %d of %d x %d exceeds %zu elements", batch, h, w,
                       APT_FFT_MAX_ELEMS);
    const struct apt_fft_ops *gpu = apt_fft_cufft_ops(), *ops = &apt_fft_fftw_ops;
    apt_backend got;
    int rc = apt_backend_resolve(backend, "fft", gpu != NULL, &got, err);
    if (rc)
        return rc;
    if (got == APT_BACKEND_GPU)
        ops = gpu;
    apt_fft_plan *p = calloc(1, sizeof *p);
    if (!p)
        return apt_err(err, APT_ENOMEM, "fft plan: out of memory");
    *p = (apt_fft_plan){.ops = ops, .batch = batch, .h = h, .w = w, .flags = flags};
    apt_error e = {0};
    if ((rc = ops->plan(p, &e)) && ops == gpu && backend == APT_BACKEND_AUTO) {
        apt_backend_fallback("fft", e.msg); /* cuFFT could not plan (device memory): FFTW can */
        p->ops = ops = &apt_fft_fftw_ops;
        rc = ops->plan(p, &e);
    }
    if (rc) {
        free(p);
        return apt_err(err, rc, "%s", e.msg);
    }
    *out = p;
    return APT_OK;
}

void apt_fft_plan_destroy(apt_fft_plan **pp)
{
    if (!pp || !*pp)
        return;
    (*pp)->ops->destroy(*pp);
    free(*pp);
    *pp = NULL;
}

apt_backend apt_fft_plan_backend(const apt_fft_plan *p)
{
    return p->ops == &apt_fft_fftw_ops ? APT_BACKEND_CPU : APT_BACKEND_GPU;
}

const char *apt_fft_plan_impl(const apt_fft_plan *p) { return p->ops->name; }

/* Plans were made on 64-byte aligned arrays; SIMD codelets need the same alignment at execution. */
static int aligned(const float *data, apt_error *err)
{
    if (!data || ((uintptr_t)data & 63) != 0)
        return apt_err(err, APT_EINVAL, "fft: data must be 64-byte aligned (use apt_fft_alloc)");
    return APT_OK;
}

int apt_fft_forward(const apt_fft_plan *p, float *data, apt_error *err)
{
    int rc = aligned(data, err);
    return rc ? rc : p->ops->forward(p, data, err);
}

int apt_fft_inverse(const apt_fft_plan *p, float *data, apt_error *err)
{
    int rc = aligned(data, err);
    return rc ? rc : p->ops->inverse(p, data, 1, err);
}

int apt_fft_inverse_unscaled(const apt_fft_plan *p, float *data, apt_error *err)
{
    int rc = aligned(data, err);
    return rc ? rc : p->ops->inverse(p, data, 0, err);
}

float *apt_fft_alloc(size_t n)
{
    if (n == 0 || n > ((size_t)1 << 40))
        return NULL;
    size_t bytes = (n * 2 * sizeof(float) + 63) & ~(size_t)63;
    float *b = aligned_alloc(64, bytes);
    if (b)
        memset(b, 0, bytes);
    return b;
}

void apt_fft_free(float *buf) { free(buf); }
