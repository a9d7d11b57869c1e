/* test_backend_ops.c - the other modules with a device twin, GPU against CPU on the same inputs (ggml's
 * test-backend-ops; the ptychography model has its own file, test_ptycho_backends.c): the FFT (cuFFT vs FFTW: forward,
 * inverse, unscaled inverse, odd and power-of-two sizes, batches), the tomography projector (CUDA vs CPU Joseph
 * projector, forward and adjoint, full, limited and odd angle sets, and the ordered-subset variants) and the network
 * forward (cuDNN/cuBLAS vs oneDNN on a small random-weight model with every layer kind). Each result must match in
 * relative L2 and max abs error, the GPU object must still run on the GPU afterwards (no silent fallback), and two GPU
 * runs must give the same bits. Without a GPU each module prints "SKIP gpu: <reason>" and checks the backend rule
 * instead: gpu refused with APT_ENODEV, auto on the CPU.
 *
 * Tolerances (relative L2 / max abs over the largest reference magnitude): FFT 1e-5 (both libraries are accurate to
 * a few 1e-7 times log2 of the size in float32); projector 1e-5 (the same Joseph weights in double on both sides,
 * sums of a few hundred float terms in another order); network 1e-4 (float32 throughout - cuDNN is set to FMA math,
 * no TF32 - but a dozen layers of convolution and attention sums in other orders). A wrong index or transpose gives
 * O(1) errors. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apt_test.h"
#include "backend_cmp.h"
#include "aptomo/backend.h"
#include "aptomo/fft.h"
#include "aptomo/gpu.h"
#include "aptomo/nn.h"
#include "aptomo/safetensors.h"
#include "aptomo/tomo.h"

static uint64_t rs = 0x2545F4914F6CDD1DULL;
static double urand(void)
{
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (double)(rs >> 11) / 9007199254740992.0;
}
static void fill(float *p, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(lo + (hi - lo) * urand());
}

static void compare(const char *what, const float *got, const float *ref, size_t n, double tol)
{
    double mx, mrel, rel = cmp_errors(got, ref, n, &mx, &mrel);
    printf("  %-40s rel L2 %.2e  max abs %.2e (%.2e of max)\n", what, rel, mx, mrel);
    CHECK_MSG(rel <= tol && mrel <= 10 * tol, "%s: rel L2 %g, max abs %g of max (tol %g)", what, rel, mrel, tol);
}

static void no_gpu_rule(const char *module, int rc, const apt_error *err, int made)
{
    CHECK_MSG(rc == APT_ENODEV && !made, "%s: backend gpu without a device: rc %d", module, rc);
    char want[64];
    snprintf(want, sizeof want, "%s: backend gpu requested but", module);
    CHECK_MSG(strstr(err->msg, want) != NULL, "%s: message %s", module, err->msg);
}

/* ---- FFT ---- */

static void fft_case(int batch, int h, int w)
{
    size_t n = (size_t)batch * h * w;
    apt_fft_plan *pc = NULL, *pg = NULL;
    apt_error err = {0};
    CHECK_OK(apt_fft_plan_new(batch, h, w, 0, APT_BACKEND_CPU, &pc, &err), &err);
    CHECK_OK(apt_fft_plan_new(batch, h, w, 0, APT_BACKEND_GPU, &pg, &err), &err);
    if (!pc || !pg) {
        apt_fft_plan_destroy(&pc), apt_fft_plan_destroy(&pg);
        return;
    }
    CHECK(!strcmp(apt_fft_plan_impl(pg), "cufft") && apt_fft_plan_backend(pg) == APT_BACKEND_GPU);
    float *in = apt_fft_alloc(n), *a = apt_fft_alloc(n), *b = apt_fft_alloc(n), *b2 = apt_fft_alloc(n);
    fill(in, 2 * n, -1, 1);
    char what[96];
    for (int op = 0; op < 3; op++) {
        memcpy(a, in, 2 * n * sizeof(float)), memcpy(b, in, 2 * n * sizeof(float));
        memcpy(b2, in, 2 * n * sizeof(float));
        int (*fn)(const apt_fft_plan *, float *, apt_error *) =
            op == 0 ? apt_fft_forward : op == 1 ? apt_fft_inverse : apt_fft_inverse_unscaled;
        CHECK_OK(fn(pc, a, &err), &err);
        CHECK_OK(fn(pg, b, &err), &err);
        CHECK_OK(fn(pg, b2, &err), &err);
        snprintf(what, sizeof what, "fft %s %d x %d x %d", op == 0 ? "forward" : op == 1 ? "inverse" : "unscaled",
                 batch, h, w);
        compare(what, b, a, 2 * n, 1e-5);
        CHECK_MSG(!memcmp(b, b2, 2 * n * sizeof(float)), "%s: two cuFFT runs differ", what);
    }
    apt_fft_free(in), apt_fft_free(a), apt_fft_free(b), apt_fft_free(b2);
    apt_fft_plan_destroy(&pc), apt_fft_plan_destroy(&pg);
}

static void check_fft(int gpu, const char *why)
{
    if (!gpu) {
        printf("SKIP gpu: fft: %s\n", why);
        apt_fft_plan *p = NULL;
        apt_error err = {0};
        int rc = apt_fft_plan_new(2, 8, 8, 0, APT_BACKEND_GPU, &p, &err);
        no_gpu_rule("fft", rc, &err, p != NULL);
        apt_fft_plan_destroy(&p);
        CHECK_OK(apt_fft_plan_new(2, 8, 8, 0, APT_BACKEND_AUTO, &p, &err), &err);
        CHECK(p && apt_fft_plan_backend(p) == APT_BACKEND_CPU);
        apt_fft_plan_destroy(&p);
        return;
    }
    fft_case(1, 9, 7);
    fft_case(3, 16, 16);
    fft_case(12, 128, 128);
    fft_case(2, 100, 60);
    fft_case(4, 3, 33);
}

/* ---- projector ---- */

static void proj_case(int Z, int Y, int X, int U, const double *th, int n, const char *name)
{
    apt_proj *pc = NULL, *pg = NULL;
    apt_error err = {0};
    CHECK_OK(apt_proj_new(Z, Y, X, U, th, n, 2, APT_BACKEND_CPU, &pc, &err), &err);
    CHECK_OK(apt_proj_new(Z, Y, X, U, th, n, 2, APT_BACKEND_GPU, &pg, &err), &err);
    if (!pc || !pg) {
        apt_proj_destroy(&pc), apt_proj_destroy(&pg);
        return;
    }
    size_t nv = (size_t)Z * Y * X, ns = (size_t)n * Y * U;
    float *vol = malloc(nv * sizeof(float)), *sin = malloc(ns * sizeof(float));
    float *sc = malloc(ns * sizeof(float)), *sg = malloc(ns * sizeof(float)), *sg2 = malloc(ns * sizeof(float));
    float *vc = malloc(nv * sizeof(float)), *vg = malloc(nv * sizeof(float));
    fill(vol, nv, 0, 1), fill(sin, ns, -1, 1);
    unsigned long fb0 = apt_backend_fallbacks(NULL, 0);
    char what[96];
    CHECK_OK(apt_proj_forward(pc, vol, sc, &err), &err);
    CHECK_OK(apt_proj_forward(pg, vol, sg, &err), &err);
    CHECK_OK(apt_proj_forward(pg, vol, sg2, &err), &err);
    snprintf(what, sizeof what, "projector forward %s", name);
    compare(what, sg, sc, ns, 1e-5);
    CHECK_MSG(!memcmp(sg, sg2, ns * sizeof(float)), "%s: two GPU runs differ", what);
    CHECK_OK(apt_proj_back(pc, sin, vc, &err), &err);
    CHECK_OK(apt_proj_back(pg, sin, vg, &err), &err);
    snprintf(what, sizeof what, "projector adjoint %s", name);
    compare(what, vg, vc, nv, 1e-5);
    /* ordered subsets: every other angle, backwards */
    int idx[64], k = 0;
    for (int i = n - 1; i >= 0 && k < 64; i -= 2)
        idx[k++] = i;
    CHECK_OK(apt_proj_forward_sub(pc, vol, idx, k, sc, &err), &err);
    CHECK_OK(apt_proj_forward_sub(pg, vol, idx, k, sg, &err), &err);
    snprintf(what, sizeof what, "projector forward subset %s", name);
    compare(what, sg, sc, (size_t)k * Y * U, 1e-5);
    CHECK_OK(apt_proj_back_sub(pc, sin, idx, k, vc, &err), &err);
    CHECK_OK(apt_proj_back_sub(pg, sin, idx, k, vg, &err), &err);
    snprintf(what, sizeof what, "projector adjoint subset %s", name);
    compare(what, vg, vc, nv, 1e-5);
    char last[256] = "";
    CHECK_MSG(apt_proj_backend(pg) == APT_BACKEND_GPU && apt_backend_fallbacks(last, sizeof last) == fb0,
              "projector %s fell back to the CPU (%s)", name, last);
    free(vol), free(sin), free(sc), free(sg), free(sg2), free(vc), free(vg);
    apt_proj_destroy(&pc), apt_proj_destroy(&pg);
}

static void check_projector(int gpu, const char *why)
{
    double th[90];
    if (!gpu) {
        printf("SKIP gpu: tomo projector: %s\n", why);
        apt_proj *p = NULL;
        apt_error err = {0};
        th[0] = 0, th[1] = 45;
        int rc = apt_proj_new(8, 2, 8, 8, th, 2, 1, APT_BACKEND_GPU, &p, &err);
        no_gpu_rule("projector", rc, &err, p != NULL);
        apt_proj_destroy(&p);
        CHECK_OK(apt_proj_new(8, 2, 8, 8, th, 2, 1, APT_BACKEND_AUTO, &p, &err), &err);
        CHECK(p && apt_proj_backend(p) == APT_BACKEND_CPU);
        apt_proj_destroy(&p);
        return;
    }
    for (int i = 0; i < 90; i++)
        th[i] = i * 2.0;
    proj_case(17, 3, 23, 29, th, 90, "full 90");
    for (int i = 0; i < 29; i++)
        th[i] = -17 + 34.0 * i / 28;
    proj_case(24, 2, 24, 24, th, 29, "limited 29");
    double odd[7] = {-70.4, -33, 0.5, 12, 45, 89.9, 135};
    proj_case(20, 1, 31, 40, odd, 7, "non-uniform 7");
}

/* ---- network ---- */

typedef struct wctx {
    apt_st_writer *w;
    void *bufs[512];
    int n;
} wctx;

static int add_tensor(const char *name, apt_nn_kind kind, int rank, const long long *shape, void *user)
{
    wctx *c = user;
    size_t count = 1;
    int64_t sh[8];
    for (int i = 0; i < rank; i++)
        count *= (size_t)shape[i], sh[i] = shape[i];
    float *b = calloc(count, 8);
    if (!b || c->n >= 512)
        return APT_ENOMEM;
    c->bufs[c->n++] = b;
    if (kind == APT_NN_BN_VAR || kind == APT_NN_BN_WEIGHT)
        fill(b, count, 0.5, 1.5);
    else if (kind != APT_NN_BN_COUNT)
        fill(b, count, -0.3, 0.3);
    return apt_st_writer_add(c->w, name, kind == APT_NN_BN_COUNT ? APT_ST_I64 : APT_ST_F32, rank, sh, b, NULL);
}

/* A small arch with every layer kind (stem stride, residual stages, strides 2, axial attention, decoder). */
static int write_model(const char *path, apt_error *err)
{
    const char *arch = "{\"stem\":2,\"stem_stride\":[1,1,2],\"stages\":[{\"f0\":2,\"f1\":3,\"blocks\":2,"
                       "\"stride\":1},{\"f0\":2,\"f1\":4,\"blocks\":1,\"stride\":2},{\"f0\":3,\"f1\":5,\"blocks\":1,"
                       "\"stride\":2}],\"axial\":{\"planes\":4,\"heads\":2,\"out\":6,\"size\":[2,3,1]},"
                       "\"decoder\":[4,3,2]}";
    wctx c = {0};
    int rc = apt_st_writer_new(&c.w, err);
    if (!rc)
        rc = apt_nn_arch_tensors(arch, add_tensor, &c, err);
    if (!rc)
        rc = apt_st_writer_meta(c.w, "aptomo.arch", arch, err);
    if (!rc)
        rc = apt_st_writer_save(c.w, path, err);
    apt_st_writer_destroy(&c.w);
    for (int i = 0; i < c.n; i++)
        free(c.bufs[i]);
    return rc;
}

static void check_nn(int gpu, const char *why)
{
    char path[64];
    snprintf(path, sizeof path, "test_backend_ops_%d.safetensors", (int)getpid());
    apt_error err = {0};
    CHECK_OK(write_model(path, &err), &err);
    apt_nn_model *mc = NULL, *mg = NULL;
    if (!gpu) {
        printf("SKIP gpu: nn: %s\n", why);
        int rc = apt_nn_load_backend(path, 1, APT_BACKEND_GPU, &mg, &err);
        no_gpu_rule("nn", rc, &err, mg != NULL);
        apt_nn_destroy(&mg);
        CHECK_OK(apt_nn_load_backend(path, 1, APT_BACKEND_AUTO, &mc, &err), &err);
        CHECK(mc && apt_nn_backend(mc) == APT_BACKEND_CPU);
        apt_nn_destroy(&mc);
        unlink(path);
        return;
    }
    CHECK_OK(apt_nn_load_backend(path, 2, APT_BACKEND_CPU, &mc, &err), &err);
    CHECK_OK(apt_nn_load_backend(path, 2, APT_BACKEND_GPU, &mg, &err), &err);
    if (mc && mg) {
        CHECK(!strcmp(apt_nn_backend_name(mg), "cudnn") && apt_nn_backend(mg) == APT_BACKEND_GPU);
        int B = 2, Z = 8, Y = 12, X = 8, oz = 0, oy = 0, ox = 0;
        CHECK_OK(apt_nn_output_shape(mc, Z, Y, X, &oz, &oy, &ox, &err), &err);
        size_t nin = (size_t)B * Z * Y * X, nout = (size_t)B * oz * oy * ox;
        float *x = malloc(nin * sizeof(float)), *yc = calloc(nout, sizeof(float)), *yg = calloc(nout, sizeof(float));
        float *yg2 = calloc(nout, sizeof(float));
        fill(x, nin, -1, 1);
        unsigned long fb0 = apt_backend_fallbacks(NULL, 0);
        CHECK_OK(apt_nn_forward(mc, x, B, Z, Y, X, yc, &err), &err);
        CHECK_OK(apt_nn_forward(mg, x, B, Z, Y, X, yg, &err), &err);
        CHECK_OK(apt_nn_forward(mg, x, B, Z, Y, X, yg2, &err), &err);
        compare("nn forward 2 x 8 x 12 x 8 (cuDNN vs oneDNN)", yg, yc, nout, 1e-4);
        CHECK_MSG(!memcmp(yg, yg2, nout * sizeof(float)), "nn: two GPU runs differ");
        CHECK_MSG(apt_nn_backend(mg) == APT_BACKEND_GPU && apt_backend_fallbacks(NULL, 0) == fb0,
                  "nn: the GPU fell back to the CPU");
        free(x), free(yc), free(yg), free(yg2);
    }
    apt_nn_destroy(&mc), apt_nn_destroy(&mg);
    unlink(path);
}

int main(void)
{
    apt_error gerr = {0};
    int gpu = apt_gpu_count(&gerr) > 0;
    if (gpu) {
        char name[256] = "";
        apt_gpu_name(name, sizeof name, &gerr);
        printf("gpu: %s\n", name);
    }
    check_fft(gpu, gerr.msg);
    check_projector(gpu, gerr.msg);
    check_nn(gpu, gerr.msg);
    APT_TEST_DONE();
}
