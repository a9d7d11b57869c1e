/* test_backend.c - the one backend rule (include/aptomo/backend.h): names, the resolver on this machine (with or
 * without a GPU), every module answering where it runs, and the fallback path: a device backend whose calls fail
 * (injected here through the ptychography ops table) must give the CPU's results, be counted and logged, and leave
 * the model on the CPU. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "apt_test.h"
#include "aptomo/backend.h"
#include "aptomo/fft.h"
#include "aptomo/gpu.h"
#include "aptomo/ptycho.h"
#include "aptomo/tomo.h"
#include "ptycho/ptycho_int.h"

static void test_names(void)
{
    apt_error err = {0};
    apt_backend b = APT_BACKEND_GPU;
    const char *names[] = {"auto", "cpu", "gpu"};
    for (int i = 0; i < 3; i++) {
        CHECK_OK(apt_backend_parse(names[i], &b, &err), &err);
        CHECK(b == (apt_backend)i && !strcmp(apt_backend_name(b), names[i]));
    }
    CHECK(apt_backend_parse("tpu", &b, &err) == APT_EINVAL && strstr(err.msg, "\"tpu\"") && strstr(err.msg, "gpu"));
    CHECK(apt_backend_parse(NULL, &b, &err) == APT_EINVAL);
    CHECK(apt_backend_resolve((apt_backend)9, "x", 1, &b, &err) == APT_EINVAL && strstr(err.msg, "backend 9"));
}

/* What each request gives on this machine: cpu always the CPU; gpu the GPU or APT_ENODEV naming the module and
   why; auto the GPU exactly when gpu would have succeeded. */
static void test_resolve(void)
{
    apt_error gerr = {0};
    int have = apt_gpu_compiled() && apt_gpu_count(&gerr) > 0;
    printf("%s\n", have ? "GPU present: auto resolves to gpu" : "no GPU: auto resolves to cpu, gpu is refused");
    for (int twin = 0; twin < 2; twin++) {
        apt_error err = {0};
        apt_backend got = APT_BACKEND_AUTO;
        CHECK_OK(apt_backend_resolve(APT_BACKEND_CPU, "unit", twin, &got, &err), &err);
        CHECK(got == APT_BACKEND_CPU);
        int rc = apt_backend_resolve(APT_BACKEND_GPU, "unit", twin, &got, &err);
        if (have && twin)
            CHECK(rc == APT_OK && got == APT_BACKEND_GPU);
        else
            CHECK_MSG(rc == APT_ENODEV && strstr(err.msg, "unit: backend gpu requested but"), "rc %d: %s", rc,
                      err.msg);
        CHECK_OK(apt_backend_resolve(APT_BACKEND_AUTO, "unit", twin, &got, &err), &err);
        CHECK(got == (have && twin ? APT_BACKEND_GPU : APT_BACKEND_CPU));
    }
    /* each module's constructor follows the same rule and says where it runs */
    apt_error err = {0};
    apt_fft_plan *f = NULL;
    CHECK_OK(apt_fft_plan_new(1, 8, 8, 0, APT_BACKEND_CPU, &f, &err), &err);
    CHECK(f && apt_fft_plan_backend(f) == APT_BACKEND_CPU && !strcmp(apt_fft_plan_impl(f), "fftw"));
    apt_fft_plan_destroy(&f);
    double th[2] = {0, 45};
    apt_proj *pj = NULL;
    CHECK_OK(apt_proj_new(4, 2, 4, 6, th, 2, 1, APT_BACKEND_AUTO, &pj, &err), &err);
    CHECK(pj && apt_proj_backend(pj) == (have ? APT_BACKEND_GPU : APT_BACKEND_CPU));
    apt_proj_destroy(&pj);
    if (!have) {
        CHECK(apt_proj_new(4, 2, 4, 6, th, 2, 1, APT_BACKEND_GPU, &pj, &err) == APT_ENODEV && !pj &&
              strstr(err.msg, "projector: backend gpu"));
        apt_ptycho_geom g = {1, 8, 8, 1, 12, 12, 1e-10, 1e-8, 1e-6};
        apt_ptycho *p = NULL;
        CHECK(apt_ptycho_new(&g, 1, APT_BACKEND_GPU, &p, &err) == APT_ENODEV && !p &&
              strstr(err.msg, "ptycho: backend gpu"));
    }
}

/* ---- fault injection: a "device" whose every call fails ---- */

static int failing_init(apt_ptycho *p, apt_error *err)
{
    (void)p;
    return apt_err(err, APT_EIO, "injected: device init failed");
}
static void failing_fini(apt_ptycho *p) { (void)p; }
static int failing_run(apt_ptycho *p, const float *probe, const float *object, const int32_t *pos, const float *meas,
                       const size_t *idx, size_t n, double *loss, float *gobj, float *gprobe, float *intensity,
                       apt_error *err)
{
    (void)p, (void)probe, (void)object, (void)pos, (void)meas, (void)idx, (void)n, (void)loss, (void)gobj,
        (void)gprobe, (void)intensity;
    return apt_err(err, APT_EIO, "injected: kernel launch failed");
}
static int failing_descend(apt_ptycho *p, const float *probe, const float *patterns, const int32_t *pos, size_t J,
                           const size_t *order, const size_t *start, size_t B, const float *pint,
                           const apt_recon_opts *opts, float *object, double *loss_per_iter, apt_error *err)
{
    (void)p, (void)probe, (void)patterns, (void)pos, (void)J, (void)order, (void)start, (void)B, (void)pint,
        (void)opts, (void)object, (void)loss_per_iter;
    return apt_err(err, APT_ENOMEM, "injected: out of device memory");
}
static const struct apt_ptycho_ops failing = {"injected", failing_init, failing_fini, failing_run, failing_descend};

static void fill(float *v, size_t n, uint32_t seed, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        v[i] = lo + (hi - lo) * (float)(seed >> 8) / 16777216.0f;
    }
}

static void test_fallback(void)
{
    apt_ptycho_geom g = {2, 8, 8, 2, 16, 16, 1e-10, 1e-8, 1e-6};
    size_t hw = 64, obj = 2 * 16 * 16, J = 4;
    float probe[2 * 64 * 2], object[2 * 512], meas[4 * 64], ga[2 * 512] = {0}, gb[2 * 512] = {0};
    float oa[2 * 512], ob[2 * 512];
    int32_t pos[8] = {0, 0, 0, 8, 8, 0, 8, 8};
    fill(probe, sizeof probe / sizeof *probe, 1, -1, 1);
    for (size_t i = 0; i < obj; i++)
        object[2 * i] = 1, object[2 * i + 1] = 0.1f * (float)(i % 7);
    fill(meas, J * hw, 2, 0, 50);
    apt_error err = {0};
    apt_ptycho *cpu = NULL, *dev = NULL;
    CHECK_OK(apt_ptycho_new(&g, 1, APT_BACKEND_CPU, &cpu, &err), &err);
    CHECK_OK(apt_ptycho_new(&g, 1, APT_BACKEND_CPU, &dev, &err), &err);
    if (!cpu || !dev)
        return;
    dev->ops = &failing; /* as apt_ptycho_new leaves a model whose device init succeeded */
    CHECK(apt_ptycho_backend(dev) == APT_BACKEND_GPU);
    char last[256];
    unsigned long n0 = apt_backend_fallbacks(NULL, 0);
    double la = 0, lb = 0;
    CHECK_OK(apt_ptycho_loss_grad(cpu, probe, object, pos, meas, J, &la, ga, NULL, &err), &err);
    CHECK_OK(apt_ptycho_loss_grad(dev, probe, object, pos, meas, J, &lb, gb, NULL, &err), &err);
    CHECK(la == lb && !memcmp(ga, gb, sizeof ga)); /* redone on the same CPU code: identical bits */
    CHECK(apt_backend_fallbacks(last, sizeof last) == n0 + 1 && strstr(last, "ptycho: injected: kernel launch"));
    CHECK(apt_ptycho_backend(dev) == APT_BACKEND_CPU); /* stays on the CPU */
    /* the descent: a failure there is redone too, from the untouched object */
    apt_recon_opts o = {2, 2, 1.0};
    memcpy(oa, object, sizeof oa), memcpy(ob, object, sizeof ob);
    double pa[2], pb[2];
    dev->ops = &failing;
    CHECK_OK(apt_ptycho_reconstruct(cpu, probe, meas, pos, J, &o, oa, pa, &err), &err);
    CHECK_OK(apt_ptycho_reconstruct(dev, probe, meas, pos, J, &o, ob, pb, &err), &err);
    CHECK(!memcmp(oa, ob, sizeof oa) && pa[0] == pb[0] && pa[1] == pb[1]);
    CHECK(apt_backend_fallbacks(last, sizeof last) == n0 + 2 && strstr(last, "out of device memory"));
    /* a caller's mistake is not a device failure: reported, not redone, not counted */
    dev->ops = &failing;
    int32_t bad[2] = {12, 0};
    CHECK(apt_ptycho_loss_grad(dev, probe, object, bad, meas, 1, &lb, gb, NULL, &err) == APT_ERANGE);
    CHECK(apt_backend_fallbacks(NULL, 0) == n0 + 2);
    apt_ptycho_destroy(&cpu);
    dev->ops = &apt_ptycho_cpu_ops;
    apt_ptycho_destroy(&dev);
}

int main(void)
{
    test_names();
    test_resolve();
    test_fallback();
    APT_TEST_DONE();
}
