/* fft_fftw.c - the CPU FFT backend on libfftw3f: one fftwf_plan_many_dft per direction, planned in place on a
 * scratch array, executed on the caller's arrays with the new-array interface (thread-safe). FFTW's planner (and
 * plan destruction, and wisdom) is not thread-safe, so all of it runs under one process-wide mutex. */
#include <fftw3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "fft/fft_backend.h"
#include "fft/fftw_lock.h"

static pthread_mutex_t planner_lock = PTHREAD_MUTEX_INITIALIZER;

void apt_fftw_lock(void) { pthread_mutex_lock(&planner_lock); }
void apt_fftw_unlock(void) { pthread_mutex_unlock(&planner_lock); }

typedef struct cpu_impl {
    fftwf_plan fwd, inv;
} cpu_impl;

static int cpu_plan(apt_fft_plan *p, apt_error *err)
{
    size_t n = (size_t)p->batch * p->h * p->w;
    cpu_impl *im = calloc(1, sizeof *im);
    float *scratch = apt_fft_alloc(n);
    if (!im || !scratch) {
        free(im);
        apt_fft_free(scratch);
        return apt_err(err, APT_ENOMEM, "fftw: out of memory planning %d x %d x %d", p->batch, p->h, p->w);
    }
    int dims[2] = {p->h, p->w}, dist = p->h * p->w;
    unsigned fl = p->flags & APT_FFT_MEASURE ? FFTW_MEASURE : FFTW_ESTIMATE;
    fftwf_complex *a = (fftwf_complex *)scratch;
    pthread_mutex_lock(&planner_lock);
    im->fwd = fftwf_plan_many_dft(2, dims, p->batch, a, NULL, 1, dist, a, NULL, 1, dist, FFTW_FORWARD, fl);
    im->inv = fftwf_plan_many_dft(2, dims, p->batch, a, NULL, 1, dist, a, NULL, 1, dist, FFTW_BACKWARD, fl);
    pthread_mutex_unlock(&planner_lock);
    apt_fft_free(scratch);
    if (!im->fwd || !im->inv) {
        p->impl = im;
        p->ops->destroy(p);
        p->impl = NULL;
        return apt_err(err, APT_ENOTSUP, "fftw: cannot plan %d x %d x %d", p->batch, p->h, p->w);
    }
    p->impl = im;
    return APT_OK;
}

static int cpu_forward(const apt_fft_plan *p, float *data, apt_error *err)
{
    (void)err;
    const cpu_impl *im = p->impl;
    fftwf_execute_dft(im->fwd, (fftwf_complex *)data, (fftwf_complex *)data);
    return APT_OK;
}

static int cpu_inverse(const apt_fft_plan *p, float *data, int scale, apt_error *err)
{
    (void)err;
    const cpu_impl *im = p->impl;
    fftwf_execute_dft(im->inv, (fftwf_complex *)data, (fftwf_complex *)data);
    if (scale) {
        size_t n = 2 * (size_t)p->batch * p->h * p->w;
        float s = 1.0f / ((float)p->h * (float)p->w);
        for (size_t i = 0; i < n; i++)
            data[i] *= s;
    }
    return APT_OK;
}

static void cpu_destroy(apt_fft_plan *p)
{
    cpu_impl *im = p->impl;
    if (!im)
        return;
    pthread_mutex_lock(&planner_lock);
    if (im->fwd)
        fftwf_destroy_plan(im->fwd);
    if (im->inv)
        fftwf_destroy_plan(im->inv);
    pthread_mutex_unlock(&planner_lock);
    free(im);
    p->impl = NULL;
}

const struct apt_fft_ops apt_fft_fftw_ops = {
    .name = "fftw",
    .plan = cpu_plan,
    .forward = cpu_forward,
    .inverse = cpu_inverse,
    .destroy = cpu_destroy,
};

int apt_fft_wisdom_load(const char *path, apt_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return APT_OK; /* no wisdom yet: plans are simply measured again */
    pthread_mutex_lock(&planner_lock);
    int ok = fftwf_import_wisdom_from_file(f);
    pthread_mutex_unlock(&planner_lock);
    fclose(f);
    return ok ? APT_OK : apt_err(err, APT_EINVAL, "%s: not FFTW single-precision wisdom", path);
}

int apt_fft_wisdom_save(const char *path, apt_error *err)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return apt_err(err, APT_EIO, "%s: cannot write FFTW wisdom", path);
    pthread_mutex_lock(&planner_lock);
    fftwf_export_wisdom_to_file(f);
    pthread_mutex_unlock(&planner_lock);
    return fclose(f) == 0 ? APT_OK : apt_err(err, APT_EIO, "%s: write failed", path);
}
