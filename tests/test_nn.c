/* test_nn.c - the network's C pieces: safetensors writer/reader round trip and mutation fuzzing (every truncation
 * and random byte flips of a valid file must parse or fail cleanly, never read out of bounds), the tensor arena,
 * each oneDNN backend op against a naive loop, patch-shape refusals and plan reuse. The network against PyTorch is
 * tests/test_nn_ref.py. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apt_test.h"
#include "aptomo/nn.h"
#include "aptomo/safetensors.h"
#include "nn/nn_backend.h"

static uint64_t rs = 88172645463325252ULL;
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

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len ? *len : 1);
    if (b && fread(b, 1, *len, f) != *len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

static void test_safetensors(const char *path)
{
    apt_error err = {0};
    apt_st_writer *w = NULL;
    float a[6] = {1, 2, 3, 4, 5, 6};
    int64_t cnt = 42, sa[2] = {2, 3};
    CHECK_OK(apt_st_writer_new(&w, &err), &err);
    CHECK_OK(apt_st_writer_meta(w, "k", "v\"x", &err), &err);
    CHECK_OK(apt_st_writer_add(w, "a.weight", APT_ST_F32, 2, sa, a, &err), &err);
    CHECK_OK(apt_st_writer_add(w, "a.count", APT_ST_I64, 0, NULL, &cnt, &err), &err);
    CHECK_OK(apt_st_writer_save(w, path, &err), &err);
    apt_st_writer_destroy(&w);
    CHECK(w == NULL);
    apt_st_file *f = NULL;
    CHECK_OK(apt_st_open(path, &f, &err), &err);
    if (f) {
        CHECK(apt_st_count(f) == 2);
        const apt_st_tensor *t = apt_st_find(f, "a.weight");
        CHECK(t && t->rank == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->count == 6);
        CHECK(t && !memcmp(t->data, a, sizeof a));
        CHECK(t && (uintptr_t)t->data % 8 == 0); /* writer pads the header: data section aligned */
        t = apt_st_find(f, "a.count");
        CHECK(t && t->dtype == APT_ST_I64 && t->rank == 0 && !memcmp(t->data, &cnt, 8));
        CHECK(apt_st_meta(f, "k") && !strcmp(apt_st_meta(f, "k"), "v\"x"));
        CHECK(apt_st_meta(f, "nope") == NULL && apt_st_find(f, "nope") == NULL);
        apt_st_close(&f);
    }
    CHECK(apt_st_open("/nonexistent/x.safetensors", &f, &err) == APT_EINVAL && strstr(err.msg, "x.safetensors"));

    /* mutations of a valid file: every prefix, then random flips; must never crash (ASan watches) */
    size_t len = 0;
    uint8_t *raw = slurp(path, &len), *buf = malloc(len ? len : 1);
    CHECK(raw && buf);
    int ok = 0, bad = 0;
    for (size_t n = 0; raw && n < len; n++) {
        int rc = apt_st_open_mem(raw, n, &f, &err);
        rc ? bad++ : ok++;
        apt_st_close(&f);
    }
    CHECK_MSG(bad > 0 && ok == 0, "every truncation refused (ok %d)", ok);
    for (int it = 0; raw && it < 3000; it++) {
        memcpy(buf, raw, len);
        int flips = 1 + (int)(urand() * 4);
        for (int k = 0; k < flips; k++)
            buf[(size_t)(urand() * (double)len)] ^= (uint8_t)(1u << (int)(urand() * 8));
        if (apt_st_open_mem(buf, len, &f, &err) == APT_OK) {
            for (size_t i = 0; i < apt_st_count(f); i++) { /* every tensor must lie inside the buffer */
                const apt_st_tensor *t = apt_st_at(f, i);
                CHECK((const uint8_t *)t->data >= buf && (const uint8_t *)t->data + t->nbytes <= buf + len);
            }
            apt_st_close(&f);
        } else {
            CHECK(err.msg[0] != 0);
        }
    }
    /* hand-made headers */
    static const struct {
        const char *hdr, *want;
    } cases[] = {
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", "span"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "outside"},
        {"{\"t\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]}}", "BF16"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", "shape[0]"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,4]}}", "t"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", "data_offsets"},
        {"{\"__metadata__\":{\"a\":1}}", "__metadata__"},
        {"[1,2]", "not an object"},
        {"{\"t\":", "JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t hl = strlen(cases[i].hdr);
        uint8_t *m = calloc(8 + hl + 4, 1);
        m[0] = (uint8_t)hl;
        memcpy(m + 8, cases[i].hdr, hl);
        int rc = apt_st_open_mem(m, 8 + hl + 4, &f, &err);
        CHECK_MSG(rc != APT_OK && strstr(err.msg, cases[i].want), "case %zu: rc %d msg %s", i, rc, err.msg);
        apt_st_close(&f);
        free(m);
    }
    free(raw);
    free(buf);
}

static void test_arena(void)
{
    apt_nn_arena a = {0};
    apt_nn_tensor t1, t2;
    apt_nn_arena_tensor(&a, &t1, 2, 3, 4, 5, 6);
    apt_nn_arena_tensor(&a, &t2, 1, 1, 1, 1, 1);
    CHECK(t1.data == NULL && t2.data == NULL && a.used == 720 * 4 + 64 && apt_nn_numel(&t1) == 720);
    size_t need = a.used;
    char *mem = aligned_alloc(64, need);
    a = (apt_nn_arena){.base = mem, .size = need};
    apt_nn_arena_tensor(&a, &t1, 2, 3, 4, 5, 6);
    apt_nn_arena_tensor(&a, &t2, 1, 1, 1, 1, 1);
    CHECK((char *)t1.data == mem && (char *)t2.data == mem + 2880 && (uintptr_t)t2.data % 64 == 0);
    apt_nn_arena_tensor(&a, &t2, 1, 1, 1, 1, 1); /* over the size: no storage */
    CHECK(t2.data == NULL);
    CHECK(apt_nn_tensor_same_shape(&t1, &t1) && !apt_nn_tensor_same_shape(&t1, &t2));
    free(mem);
}

/* naive references; the CPU backend's memory order is channels-last [N, D, H, W, C] */
static size_t ix(int C, int D, int H, int W, int n, int c, int z, int y, int x)
{
    return ((((size_t)n * D + z) * H + y) * W + x) * C + c;
}
static float at(const apt_nn_tensor *t, int n, int c, int z, int y, int x)
{
    if (z < 0 || y < 0 || x < 0 || z >= t->d || y >= t->h || x >= t->w)
        return 0;
    return t->data[ix(t->c, t->d, t->h, t->w, n, c, z, y, x)];
}

static double maxdiff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static void test_ops(void)
{
    const struct apt_nn_ops *o = &apt_nn_dnnl_ops;
    apt_error err = {0};
    void *ctx = NULL;
    CHECK_OK(o->init(&ctx, 2, &err), &err);
    const int N = 2, C = 3, D = 5, H = 6, W = 7, OC = 4, k = 3, s[3] = {1, 2, 1};
    const int OD = D, OH = H / 2, OW = W;
    float *xd = malloc(sizeof(float) * N * C * D * H * W), *wd = malloc(sizeof(float) * OC * C * 27),
          *bd = malloc(sizeof(float) * OC), *rd = malloc(sizeof(float) * N * OC * OD * OH * OW),
          *yd = malloc(sizeof(float) * N * OC * OD * OH * OW), *ref = malloc(sizeof(float) * N * OC * OD * OH * OW);
    fill(xd, (size_t)N * C * D * H * W, -1, 1), fill(wd, (size_t)OC * C * 27, -1, 1), fill(bd, OC, -1, 1);
    fill(rd, (size_t)N * OC * OD * OH * OW, -1, 1);
    apt_nn_tensor x = {xd, N, C, D, H, W}, y = {yd, N, OC, OD, OH, OW}, r = {rd, N, OC, OD, OH, OW};
    apt_nn_prim *pc = NULL;
    size_t ny = apt_nn_numel(&y);
    for (int rep = 0; rep < 2; rep++) { /* second run re-uses the cached primitive */
        CHECK_OK(o->conv3d(ctx, &pc, &x, wd, bd, k, s, &r, 1, &y, &err), &err);
        for (int n = 0; n < N; n++)
            for (int oc = 0; oc < OC; oc++)
                for (int z = 0; z < OD; z++)
                    for (int yy = 0; yy < OH; yy++)
                        for (int xx = 0; xx < OW; xx++) {
                            double acc = bd[oc];
                            for (int c = 0; c < C; c++)
                                for (int a = 0; a < 27; a++)
                                    acc += (double)wd[(oc * C + c) * 27 + a] *
                                           at(&x, n, c, z * s[0] - 1 + a / 9, yy * s[1] - 1 + a / 3 % 3,
                                              xx * s[2] - 1 + a % 3);
                            size_t i = ix(OC, OD, OH, OW, n, oc, z, yy, xx);
                            acc += rd[i];
                            ref[i] = (float)(acc > 0 ? acc : 0);
                        }
        CHECK_MSG(maxdiff(yd, ref, ny) < 1e-4, "conv3d stride (1,2,1) + bias + residual + relu: %g",
                  maxdiff(yd, ref, ny));
    }
    o->prim_free(ctx, pc);

    /* batch-norm (+relu), relu, add on x */
    size_t nx = apt_nn_numel(&x);
    float g[3], b[3], mu[3], var[3], *y2 = malloc(sizeof(float) * nx), *r2 = malloc(sizeof(float) * nx);
    fill(g, 3, 0.5, 1.5), fill(b, 3, -1, 1), fill(mu, 3, -0.3, 0.3), fill(var, 3, 0.5, 2);
    apt_nn_tensor x2 = x;
    x2.data = y2;
    apt_nn_prim *pb = NULL, *pr = NULL, *pa = NULL, *pp = NULL, *pu = NULL;
    CHECK_OK(o->batchnorm(ctx, &pb, &x, g, b, mu, var, 1e-5f, 1, &x2, &err), &err);
    for (size_t i = 0; i < nx; i++) {
        int c = (int)(i % C);
        double v = (xd[i] - mu[c]) / sqrt(var[c] + 1e-5) * g[c] + b[c];
        r2[i] = (float)(v > 0 ? v : 0);
    }
    CHECK_MSG(maxdiff(y2, r2, nx) < 1e-5, "batchnorm + relu: %g", maxdiff(y2, r2, nx));
    CHECK_OK(o->relu(ctx, &pr, &x, &x2, &err), &err);
    for (size_t i = 0; i < nx; i++)
        r2[i] = xd[i] > 0 ? xd[i] : 0;
    CHECK(maxdiff(y2, r2, nx) == 0);
    CHECK_OK(o->add(ctx, &pa, &x, &x, &x2, &err), &err);
    for (size_t i = 0; i < nx; i++)
        r2[i] = 2 * xd[i];
    CHECK(maxdiff(y2, r2, nx) == 0);
    CHECK_OK(o->maxpool3d(ctx, &pp, &x, 3, &x2, &err), &err);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (int z = 0; z < D; z++)
                for (int yy = 0; yy < H; yy++)
                    for (int xx = 0; xx < W; xx++) {
                        float m = -INFINITY;
                        for (int a = 0; a < 27; a++) {
                            int zz = z - 1 + a / 9, y3 = yy - 1 + a / 3 % 3, x3 = xx - 1 + a % 3;
                            if (zz >= 0 && y3 >= 0 && x3 >= 0 && zz < D && y3 < H && x3 < W)
                                m = fmaxf(m, at(&x, n, c, zz, y3, x3));
                        }
                        r2[ix(C, D, H, W, n, c, z, yy, xx)] = m;
                    }
    CHECK(maxdiff(y2, r2, nx) == 0);
    /* upsample x2 + skip */
    size_t nu = nx * 8;
    float *ud = malloc(sizeof(float) * nu), *sd = malloc(sizeof(float) * nu), *ur = malloc(sizeof(float) * nu);
    fill(sd, nu, -1, 1);
    apt_nn_tensor u = {ud, N, C, 2 * D, 2 * H, 2 * W}, sk = {sd, N, C, 2 * D, 2 * H, 2 * W};
    CHECK_OK(o->upsample2(ctx, &pu, &x, &sk, &u, &err), &err);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (int z = 0; z < 2 * D; z++)
                for (int yy = 0; yy < 2 * H; yy++)
                    for (int xx = 0; xx < 2 * W; xx++) {
                        size_t i = ix(C, 2 * D, 2 * H, 2 * W, n, c, z, yy, xx);
                        ur[i] = at(&x, n, c, z / 2, yy / 2, xx / 2) + sd[i];
                    }
    CHECK_MSG(maxdiff(ud, ur, nu) == 0, "upsample2 + skip: %g", maxdiff(ud, ur, nu));
    /* gemm: row-major C = A^T B */
    float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {1, 0, 2, 1, 0, 1}, Cm[9];
    CHECK_OK(o->gemm(ctx, 1, 0, 3, 3, 2, 1.0f, A, 3, B, 3, 0.0f, Cm, 3, &err), &err);
    float Cr[9] = {5, 0, 6, 7, 0, 9, 9, 0, 12}; /* A^T = [[1,4],[2,5],[3,6]] */
    CHECK(maxdiff(Cm, Cr, 9) == 0);
    o->prim_free(ctx, pb), o->prim_free(ctx, pr), o->prim_free(ctx, pa), o->prim_free(ctx, pp);
    o->prim_free(ctx, pu);
    o->fini(ctx);
    free(xd), free(wd), free(bd), free(rd), free(yd), free(ref), free(y2), free(r2), free(ud), free(sd), free(ur);
}

/* A tiny arch written through apt_nn_arch_tensors + our writer, then loaded. */
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
    c->bufs[c->n++] = b;
    if (kind == APT_NN_BN_VAR || kind == APT_NN_BN_WEIGHT)
        fill(b, count, 0.5, 1.5);
    else if (kind != APT_NN_BN_COUNT)
        fill(b, count, -0.3, 0.3);
    return apt_st_writer_add(c->w, name, kind == APT_NN_BN_COUNT ? APT_ST_I64 : APT_ST_F32, rank, sh, b, NULL);
}

static void test_model(const char *path)
{
    const char *arch = "{\"stem\":2,\"stem_stride\":[1,1,2],\"stages\":[{\"f0\":2,\"f1\":3,\"blocks\":2,"
                       "\"stride\":1},{\"f0\":2,\"f1\":4,\"blocks\":1,\"stride\":2},{\"f0\":3,\"f1\":5,\"blocks\":1,"
                       "\"stride\":2}],\"axial\":{\"planes\":4,\"heads\":2,\"out\":6,\"size\":[2,3,1]},"
                       "\"decoder\":[4,3,2]}";
    apt_error err = {0};
    wctx c = {0};
    CHECK_OK(apt_st_writer_new(&c.w, &err), &err);
    CHECK_OK(apt_nn_arch_tensors(arch, add_tensor, &c, &err), &err);
    CHECK_OK(apt_st_writer_meta(c.w, "aptomo.arch", arch, &err), &err);
    CHECK_OK(apt_st_writer_save(c.w, path, &err), &err);
    apt_st_writer_destroy(&c.w);
    for (int i = 0; i < c.n; i++)
        free(c.bufs[i]);
    apt_nn_model *m = NULL;
    CHECK_OK(apt_nn_load_backend(path, 2, APT_BACKEND_CPU, &m, &err), &err);
    if (!m)
        return;
    CHECK(!strcmp(apt_nn_backend_name(m), "onednn") && !strcmp(apt_nn_arch_json(m), arch));
    CHECK(strlen(apt_nn_weights_id(m)) == 16);
    double mean, sd;
    apt_nn_input_norm(m, &mean, &sd);
    CHECK(mean == 0 && sd == 1);
    int oz, oy, ox;
    CHECK_OK(apt_nn_output_shape(m, 8, 12, 8, &oz, &oy, &ox, &err), &err);
    CHECK(oz == 16 && oy == 24 && ox == 8);
    CHECK(apt_nn_output_shape(m, 8, 12, 7, &oz, &oy, &ox, &err) == APT_EINVAL && strstr(err.msg, "stem stride"));
    CHECK(apt_nn_output_shape(m, 8, 10, 8, &oz, &oy, &ox, &err) == APT_EINVAL && strstr(err.msg, "multiple of 4"));
    CHECK(apt_nn_output_shape(m, 16, 12, 8, &oz, &oy, &ox, &err) == APT_EINVAL && strstr(err.msg, "axial.size"));
    CHECK(apt_nn_output_shape(m, 0, 12, 8, &oz, &oy, &ox, &err) == APT_EINVAL);
    float x[2 * 8 * 12 * 8], y1[2 * 16 * 24 * 8], y2[2 * 16 * 24 * 8];
    fill(x, sizeof x / sizeof x[0], -1, 1);
    CHECK_OK(apt_nn_forward(m, x, 2, 8, 12, 8, y1, &err), &err);
    CHECK_OK(apt_nn_forward(m, x, 1, 8, 12, 8, y2, &err), &err); /* replan for batch 1, then back */
    CHECK(maxdiff(y1, y2, 16 * 24 * 8) < 1e-6);
    CHECK_OK(apt_nn_forward(m, x, 2, 8, 12, 8, y2, &err), &err);
    CHECK(maxdiff(y1, y2, 2 * 16 * 24 * 8) == 0);
    CHECK(apt_nn_forward(m, x, 0, 8, 12, 8, y2, &err) == APT_EINVAL);
    apt_nn_destroy(&m);
    CHECK(m == NULL);
    CHECK(apt_nn_load_backend(path, 1, (apt_backend)7, &m, &err) == APT_EINVAL && strstr(err.msg, "backend 7"));
    CHECK(apt_nn_arch_tensors("{\"stem\":2}", add_tensor, &c, &err) == APT_EINVAL && strstr(err.msg, "stem_stride"));
}

int main(void)
{
    char path[64];
    snprintf(path, sizeof path, "test_nn_%d.safetensors", (int)getpid());
    test_safetensors(path);
    test_arena();
    test_ops();
    test_model(path);
    unlink(path);
    APT_TEST_DONE();
}
