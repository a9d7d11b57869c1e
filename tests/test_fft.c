/* test_fft.c - the FFT backend against a naive double-precision DFT (numpy conventions: forward unnormalised,
 * inverse 1/(h w)), round trips, independence of the transforms in a batch, thread-safe execution on distinct arrays
 * from several threads, and the refusals (bounds, misaligned data). */
#include <complex.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "apt_test.h"
#include "aptomo/fft.h"
#include "aptomo/gpu.h"

static double frand(uint64_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return (double)(*s >> 11) / 9007199254740992.0 * 2 - 1;
}

/* out = sum_{y,x} in[y,x] exp(sign 2 pi i (ky y / h + kx x / w)) */
static void naive_dft(const float *in, double complex *out, int h, int w, int sign)
{
    for (int ky = 0; ky < h; ky++)
        for (int kx = 0; kx < w; kx++) {
            double complex acc = 0;
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    double ph = sign * 2 * M_PI * ((double)ky * y / h + (double)kx * x / w);
                    acc += (in[2 * (y * w + x)] + I * in[2 * (y * w + x) + 1]) * cexp(I * ph);
                }
            out[ky * w + kx] = acc;
        }
}

static double rel_err(const float *got, const double complex *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double complex d = (got[2 * i] + I * got[2 * i + 1]) - ref[i];
        num += creal(d * conj(d));
        den += creal(ref[i] * conj(ref[i]));
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static void check_size(int batch, int h, int w, unsigned flags, apt_backend be)
{
    apt_error err = {0};
    apt_fft_plan *p = NULL;
    CHECK_OK(apt_fft_plan_new(batch, h, w, flags, be, &p, &err), &err);
    if (!p)
        return;
    const char *want = be != APT_BACKEND_CPU && apt_gpu_count(NULL) > 0 ? "cufft" : "fftw";
    CHECK_MSG(!strcmp(apt_fft_plan_impl(p), want), "backend %s, expected %s", apt_fft_plan_impl(p), want);
    CHECK(apt_fft_plan_backend(p) == (want[0] == 'c' ? APT_BACKEND_GPU : APT_BACKEND_CPU));
    size_t n = (size_t)batch * h * w;
    float *a = apt_fft_alloc(n), *orig = apt_fft_alloc(n);
    double complex *ref = malloc(n * sizeof *ref);
    uint64_t s = 0x1234567ULL + (uint64_t)(h * 131 + w);
    for (size_t i = 0; i < 2 * n; i++)
        orig[i] = a[i] = (float)frand(&s);
    /* forward vs naive DFT, every transform of the batch separately (batch independence) */
    CHECK_OK(apt_fft_forward(p, a, &err), &err);
    for (int b = 0; b < batch; b++)
        naive_dft(orig + 2 * (size_t)b * h * w, ref + (size_t)b * h * w, h, w, -1);
    double e = rel_err(a, ref, n);
    CHECK_MSG(e < 1e-5, "forward %dx%dx%d rel err %g", batch, h, w, e);
    /* inverse of the original vs naive (with 1/(h w)) */
    memcpy(a, orig, n * 2 * sizeof(float));
    CHECK_OK(apt_fft_inverse(p, a, &err), &err);
    for (int b = 0; b < batch; b++)
        naive_dft(orig + 2 * (size_t)b * h * w, ref + (size_t)b * h * w, h, w, +1);
    for (size_t i = 0; i < n; i++)
        ref[i] /= (double)h * w;
    e = rel_err(a, ref, n);
    CHECK_MSG(e < 1e-5, "inverse %dx%dx%d rel err %g", batch, h, w, e);
    /* unscaled inverse = h w * inverse */
    memcpy(a, orig, n * 2 * sizeof(float));
    CHECK_OK(apt_fft_inverse_unscaled(p, a, &err), &err);
    for (size_t i = 0; i < n; i++)
        ref[i] *= (double)h * w;
    e = rel_err(a, ref, n);
    CHECK_MSG(e < 1e-5, "unscaled inverse %dx%dx%d rel err %g", batch, h, w, e);
    /* round trip */
    memcpy(a, orig, n * 2 * sizeof(float));
    CHECK_OK(apt_fft_forward(p, a, &err), &err);
    CHECK_OK(apt_fft_inverse(p, a, &err), &err);
    for (size_t i = 0; i < n; i++)
        ref[i] = orig[2 * i] + I * orig[2 * i + 1];
    e = rel_err(a, ref, n);
    CHECK_MSG(e < 1e-6, "round trip %dx%dx%d rel err %g", batch, h, w, e);
    /* batch independence: a delta in transform 0 leaves the others' outputs exactly zero */
    if (batch > 1) {
        memset(a, 0, n * 2 * sizeof(float));
        a[2 * 3 % (2 * (size_t)h * w)] = 1;
        CHECK_OK(apt_fft_forward(p, a, &err), &err);
        int clean = 1;
        for (size_t i = 2 * (size_t)h * w; i < 2 * n; i++)
            clean &= a[i] == 0;
        CHECK_MSG(clean, "batch %d: transform 0 leaked into the others", batch);
    }
    free(ref);
    apt_fft_free(a);
    apt_fft_free(orig);
    apt_fft_plan_destroy(&p);
    CHECK(p == NULL);
}

typedef struct worker {
    const apt_fft_plan *p;
    float *data;
    const float *expect;
    size_t n;
    int ok;
} worker;

static void *work(void *arg)
{
    worker *wk = arg;
    wk->ok = 1;
    for (int rep = 0; rep < 50; rep++) {
        apt_fft_forward(wk->p, wk->data, NULL);
        apt_fft_inverse(wk->p, wk->data, NULL);
    }
    for (size_t i = 0; i < 2 * wk->n; i++)
        wk->ok &= fabsf(wk->data[i] - wk->expect[i]) < 1e-4f;
    return NULL;
}

int main(void)
{
    check_size(1, 1, 1, 0, APT_BACKEND_CPU);
    check_size(1, 8, 8, 0, APT_BACKEND_CPU);
    check_size(3, 6, 10, 0, APT_BACKEND_CPU);
    check_size(2, 7, 5, APT_FFT_MEASURE, APT_BACKEND_CPU); /* odd sizes */
    check_size(4, 16, 12, APT_FFT_MEASURE, APT_BACKEND_CPU);
    /* GPU: cuFFT against the same naive DFT when a device exists; otherwise auto runs FFTW and gpu is refused */
    apt_error gerr = {0};
    if (apt_gpu_count(&gerr) <= 0) {
        printf("SKIP cuFFT backend checks: %s (auto runs FFTW, gpu is refused)\n", gerr.msg);
        apt_fft_plan *q = NULL;
        CHECK(apt_fft_plan_new(2, 8, 8, 0, APT_BACKEND_GPU, &q, &gerr) == APT_ENODEV && !q);
        CHECK_MSG(strstr(gerr.msg, "fft: backend gpu requested but"), "message: %s", gerr.msg);
    } else
        check_size(2, 9, 16, 0, APT_BACKEND_GPU);
    check_size(2, 9, 16, 0, APT_BACKEND_AUTO);
    check_size(3, 64, 48, 0, APT_BACKEND_AUTO);

    /* thread-safe execution of one plan on distinct arrays */
    apt_error err = {0};
    apt_fft_plan *p = NULL;
    CHECK_OK(apt_fft_plan_new(2, 32, 32, 0, APT_BACKEND_CPU, &p, &err), &err);
    enum { T = 4 };
    worker wk[T];
    pthread_t th[T];
    size_t n = 2 * 32 * 32;
    uint64_t s = 99;
    for (int t = 0; t < T; t++) {
        wk[t] = (worker){.p = p, .data = apt_fft_alloc(n), .n = n};
        float *e = malloc(2 * n * sizeof(float));
        for (size_t i = 0; i < 2 * n; i++)
            e[i] = wk[t].data[i] = (float)frand(&s);
        wk[t].expect = e;
    }
    for (int t = 0; t < T; t++)
        pthread_create(&th[t], NULL, work, &wk[t]);
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
        CHECK_MSG(wk[t].ok, "thread %d: round trips drifted", t);
        apt_fft_free(wk[t].data);
        free((void *)wk[t].expect);
    }
    /* misaligned data is refused, not transformed */
    float *buf = apt_fft_alloc(n + 1);
    CHECK(apt_fft_forward(p, buf + 2, &err) == APT_EINVAL);
    CHECK(strstr(err.msg, "aligned") != NULL);
    apt_fft_free(buf);
    apt_fft_plan_destroy(&p);
    apt_fft_plan_destroy(&p); /* idempotent */

    /* bounds before allocation */
    CHECK(apt_fft_plan_new(0, 8, 8, 0, APT_BACKEND_CPU, &p, &err) == APT_ERANGE && p == NULL);
    CHECK(apt_fft_plan_new(1, APT_FFT_MAX_DIM + 1, 8, 0, APT_BACKEND_CPU, &p, &err) == APT_ERANGE);
    CHECK(apt_fft_plan_new(1 << 20, 4096, 4096, 0, APT_BACKEND_CPU, &p, &err) == APT_ERANGE);
    CHECK(strstr(err.msg, "exceeds") != NULL);

    /* wisdom round trip */
    char path[] = "/tmp/aptomo-wisdom-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK_OK(apt_fft_wisdom_save(path, &err), &err);
        CHECK_OK(apt_fft_wisdom_load(path, &err), &err);
        FILE *f = fopen(path, "w");
        fputs("garbage", f);
        fclose(f);
        CHECK(apt_fft_wisdom_load(path, &err) == APT_EINVAL);
        unlink(path);
        close(fd);
    }
    CHECK_OK(apt_fft_wisdom_load("/nonexistent/wisdom", &err), &err);
    APT_TEST_DONE();
}
