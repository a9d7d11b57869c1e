/* test_axial_train.c - the contract of include/aptomo/axial_train.h that the PyTorch cross-check
 * (test_axial_train_ref.py, through `aptomo kernel nn-axial-grad`, which always starts from zero gradients) does not
 * see: parameter gradients are ADDED to what the caller holds, dqkv is overwritten whatever it held, the running
 * statistics move once per forward, results (saved included) are the same bytes for 1, 3 and 64 threads in the library
 * itself (scratch sized per call), and refused shapes: the size functions return 0, fwd/bwd return APT_EINVAL with a
 * message. */
#include <math.h>

#include "apt_test.h"
#include "aptomo/axial_train.h"

enum { B = 2, P = 8, G = 2, D = 5, H = 7, W = 6, AX = 1, K = H, GP = P / G, L = 2 * K - 1 };
#define NY ((size_t)B * P * D * H * W)

static unsigned long long rng = 88172645463325252ull;
static float urand(void) /* xorshift64, uniform in [-1, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 4503599627370496.0 - 1.0);
}

typedef struct grads {
    float drel[2 * GP * L], dsim_w[3 * G], dsim_b[3 * G], dout_w[2 * P], dout_b[2 * P];
} grads;

static float qkv[2 * NY], dy[NY], rel[2 * GP * L], sim_w[3 * G], sim_b[3 * G], out_w[2 * P], out_b[2 * P];

static apt_nn_axial_train layer(float *stats) /* stats: sim_rm, sim_rv, out_rm, out_rv */
{
    return (apt_nn_axial_train){.planes = P, .heads = G, .K = K, .axis = AX, .rel = rel, .sim_w = sim_w,
                            .sim_b = sim_b, .out_w = out_w, .out_b = out_b, .sim_rm = stats,
                            .sim_rv = stats + 3 * G, .out_rm = stats + 6 * G, .out_rv = stats + 6 * G + 2 * P};
}

static float *saved_last; /* what the last step's forward saved */
static size_t saved_n;

/* One fwd + bwd with `threads`; gradients added to *gr, dqkv and y overwritten. */
static int step(int threads, float *stats, float *y, float *dqkv, grads *gr, apt_error *err)
{
    apt_nn_axial_train a = layer(stats);
    size_t ns = apt_nn_axial_train_saved(&a, B, D, H, W), nw = apt_nn_axial_train_scratch(&a, B, D, H, W, threads);
    float *saved = malloc(ns * sizeof(float)), *scratch = malloc(nw * sizeof(float));
    int rc = saved && scratch ? APT_OK : APT_ENOMEM;
    free(saved_last);
    saved_last = saved, saved_n = ns;
    if (!rc)
        rc = apt_nn_axial_train_fwd(&a, qkv, B, D, H, W, y, saved, scratch, threads, err);
    if (!rc)
        rc = apt_nn_axial_train_bwd(&a, qkv, B, D, H, W, saved, dy, dqkv, gr->drel, gr->dsim_w, gr->dsim_b, gr->dout_w,
                                    gr->dout_b, scratch, threads, err);
    free(scratch);
    return rc;
}

static void init_stats(float *s)
{
    for (int i = 0; i < 6 * G + 4 * P; i++)
        s[i] = (i / (3 * G) == 1 || i >= 6 * G + 2 * P) ? 1.0f : 0.0f; /* means 0, variances 1 */
}

int main(void)
{
    for (size_t i = 0; i < 2 * NY; i++)
        qkv[i] = urand();
    for (size_t i = 0; i < NY; i++)
        dy[i] = urand();
    for (int i = 0; i < 2 * GP * L; i++)
        rel[i] = 0.5f * urand();
    for (int i = 0; i < 3 * G; i++)
        sim_w[i] = 1 + 0.3f * urand(), sim_b[i] = 0.2f * urand();
    for (int i = 0; i < 2 * P; i++)
        out_w[i] = 1 + 0.3f * urand(), out_b[i] = 0.2f * urand();
    apt_error err = {0};
    static float y1[NY], y2[NY], dq1[2 * NY], dq2[2 * NY], st1[6 * G + 4 * P], st2[6 * G + 4 * P];
    static grads g1, g2, g0;

    /* the same bytes for 1, 3 and 64 threads, dqkv overwritten (pre-filled with NaN the second time) */
    init_stats(st1);
    CHECK_OK(step(1, st1, y1, dq1, &g1, &err), &err);
    float *saved1 = saved_last;
    saved_last = NULL;
    for (int t = 3; t <= 64; t += 61) {
        init_stats(st2);
        memset(&g2, 0, sizeof g2);
        for (size_t i = 0; i < 2 * NY; i++)
            dq2[i] = NAN;
        CHECK_OK(step(t, st2, y2, dq2, &g2, &err), &err);
        CHECK_MSG(!memcmp(y1, y2, sizeof y1) && !memcmp(dq1, dq2, sizeof dq1) && !memcmp(&g1, &g2, sizeof g1) &&
                      !memcmp(st1, st2, sizeof st1) && saved1 && !memcmp(saved1, saved_last, saved_n * sizeof(float)),
                  "threads %d: results differ from threads 1", t);
    }
    free(saved1);

    /* gradients are added: start from g0 != 0, expect g0 + g1 (one rounding of the sum apart) */
    float *f0 = (float *)&g0, *f1 = (float *)&g1, *f2 = (float *)&g2;
    size_t ng = sizeof(grads) / sizeof(float);
    for (size_t i = 0; i < ng; i++)
        f0[i] = f2[i] = 10 * urand();
    init_stats(st2);
    CHECK_OK(step(2, st2, y2, dq2, &g2, &err), &err);
    int added = 1;
    double gmax = 0;
    for (size_t i = 0; i < ng; i++) {
        added &= fabsf(f2[i] - (f0[i] + f1[i])) <= 1e-6f * (fabsf(f0[i]) + fabsf(f1[i]));
        gmax = fmax(gmax, fabsf(f1[i]));
    }
    CHECK_MSG(added && gmax > 1e-3, "parameter gradients not added to the caller's (max |g| %g)", gmax);

    /* the running statistics move once per forward: from (0, 1) twice, rm = 0.19 mean, rv = 0.81 + 0.19 var_u */
    CHECK_OK(step(2, st2, y2, dq2, &g2, &err), &err);
    int moved = 1;
    for (int i = 0; i < 6 * G + 4 * P; i++) {
        int var = i / (3 * G) == 1 || i >= 6 * G + 2 * P;
        float once = st1[i], expect = var ? 0.81f + 1.9f * (once - 0.9f) : 1.9f * once;
        moved &= fabsf(st2[i] - expect) <= 1e-5f * (1 + fabsf(expect));
    }
    CHECK_MSG(moved, "running statistics after two forwards are not 0.9 old + 0.1 batch twice");

    /* refused shapes */
    apt_nn_axial_train a = layer(st2);
    CHECK(apt_nn_axial_train_saved(&a, B, D, H + 1, W) == 0);   /* extent along the axis is not K */
    CHECK(apt_nn_axial_train_scratch(&a, 0, D, H, W, 1) == 0);  /* no batch */
    a.heads = 3;
    CHECK(apt_nn_axial_train_saved(&a, B, D, H, W) == 0);       /* heads do not divide planes */
    a.heads = 4;
    CHECK(apt_nn_axial_train_saved(&a, B, D, H, W) > 0);        /* gp = 2 is fine */
    a.heads = 8;
    CHECK(apt_nn_axial_train_saved(&a, B, D, H, W) == 0);       /* gp = 1: q and k cannot take half each */
    a = layer(st2);
    apt_error e2 = {0};
    CHECK(apt_nn_axial_train_fwd(&a, qkv, B, D, H + 1, W, y2, NULL, NULL, 1, &e2) == APT_EINVAL && e2.msg[0]);
    a.K = 1;
    e2 = (apt_error){0};
    CHECK(apt_nn_axial_train_fwd(&a, qkv, 1, 1, 1, 1, y2, NULL, NULL, 1, &e2) == APT_EINVAL &&
          strstr(e2.msg, "more than one value"));
    free(saved_last);
    APT_TEST_DONE();
}
