/* nn_dnnl.c - the CPU network backend, activations channels-last (NDHWC): oneDNN primitives for convolution
 * (bias, residual add and ReLU fused as post-ops, weights reordered once into the layout oneDNN prefers), batch-norm,
 * ReLU, max-pool, nearest upsampling and add; OpenBLAS GEMMs inside the axial attention core, whose lines are split
 * over threads. Each op instance keeps its primitive and memory objects in its cache slot; executing only swaps
 * handles. */
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/parallel.h"
#include "nn/nn_backend.h"
#include "nn/nn_dnnl.h"

#define MAXM 6
#define MAX_THREADS NN_DNNL_MAX_THREADS

typedef nn_dnnl_ctx cpu_ctx;

struct apt_nn_prim {
    int key[24];
    dnnl_primitive_t p;
    dnnl_memory_t m[MAXM];
    int arg[MAXM];
    int nm;
    dnnl_memory_t wmem; /* conv: reordered weights, owned */
    float *scratch;     /* axial: per-thread scratch */
    apt_nn_prim *sub;   /* upsample: the in-place skip add */
    size_t scratch_per;
};

#define CK NN_DNNL_CK

int nn_dnnl_ctx_new(void **ctxp, int threads, apt_error *err)
{
    nn_dnnl_ctx *c = calloc(1, sizeof(*c));
    *ctxp = c;
    if (!c)
        return apt_err(err, APT_ENOMEM, "out of memory");
    c->threads = apt_par_threads(threads);
    if (c->threads > NN_DNNL_MAX_THREADS)
        c->threads = NN_DNNL_MAX_THREADS;
    CK(dnnl_engine_create(&c->eng, dnnl_cpu, 0), "engine");
    CK(dnnl_stream_create(&c->st, c->eng, dnnl_stream_default_flags), "stream");
    return APT_OK;
}

void nn_dnnl_ctx_free(void *ctx)
{
    nn_dnnl_ctx *c = ctx;
    if (!c)
        return;
    if (c->st)
        dnnl_stream_destroy(c->st);
    if (c->eng)
        dnnl_engine_destroy(c->eng);
    free(c);
}

static void *cpu_alloc(void *ctx, size_t bytes)
{
    (void)ctx;
    void *p = NULL;
    return posix_memalign(&p, 64, bytes ? (bytes + 63) & ~(size_t)63 : 64) ? NULL : p;
}

static void cpu_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

static int cpu_copy(void *ctx, void *dst, const void *src, size_t bytes, apt_error *err)
{
    (void)ctx;
    (void)err;
    memcpy(dst, src, bytes);
    return APT_OK;
}

static void cpu_prim_free(void *ctx, apt_nn_prim *p);
static int cpu_add(void *ctx, apt_nn_prim **c, const apt_nn_tensor *a, const apt_nn_tensor *b, apt_nn_tensor *y,
                   apt_error *err);

static void cpu_prim_free(void *ctx, apt_nn_prim *p)
{
    (void)ctx;
    if (!p)
        return;
    if (p->p)
        dnnl_primitive_destroy(p->p);
    for (int i = 0; i < p->nm; i++)
        if (p->m[i])
            dnnl_memory_destroy(p->m[i]);
    if (p->wmem)
        dnnl_memory_destroy(p->wmem);
    cpu_prim_free(ctx, p->sub);
    free(p->scratch);
    free(p);
}

static void md_of(dnnl_memory_desc_t *md, const apt_nn_tensor *t)
{
    dnnl_dims_t d = {t->n, t->c, t->d, t->h, t->w};
    dnnl_memory_desc_init_by_tag(md, 5, d, dnnl_f32, dnnl_ndhwc);
}

static void key_tensor(int *k, const apt_nn_tensor *t)
{
    k[0] = t ? t->n : -1, k[1] = t ? t->c : -1, k[2] = t ? t->d : -1, k[3] = t ? t->h : -1, k[4] = t ? t->w : -1;
}

/* Returns the cached prim if its key matches, else frees it and returns NULL (caller builds a new one). */
static apt_nn_prim *cached(void *ctx, apt_nn_prim **c, const int *key)
{
    if (*c && !memcmp((*c)->key, key, sizeof((*c)->key)))
        return *c;
    cpu_prim_free(ctx, *c);
    *c = NULL;
    return NULL;
}

/* Builds primitive + plain memory objects (handles set at execution) for the given args. */
static int build(cpu_ctx *cx, apt_nn_prim **c, const int *key, const void *op_desc, dnnl_primitive_attr_t attr,
                 int n, const int *args, const dnnl_memory_desc_t *const *mds, apt_error *err)
{
    apt_nn_prim *p = calloc(1, sizeof(*p));
    if (!p)
        return apt_err(err, APT_ENOMEM, "out of memory");
    memcpy(p->key, key, sizeof(p->key));
    *c = p;
    dnnl_primitive_desc_t pd;
    CK(dnnl_primitive_desc_create(&pd, op_desc, attr, cx->eng, NULL), "primitive descriptor");
    dnnl_status_t s = dnnl_primitive_create(&p->p, pd);
    dnnl_primitive_desc_destroy(pd);
    CK(s, "primitive");
    for (int i = 0; i < n; i++) {
        CK(dnnl_memory_create(&p->m[i], mds[i], cx->eng, DNNL_MEMORY_NONE), "memory");
        p->arg[i] = args[i];
        p->nm = i + 1;
    }
    return APT_OK;
}

static int run(cpu_ctx *cx, apt_nn_prim *p, void *const *handles, apt_error *err)
{
    dnnl_exec_arg_t a[MAXM + 1];
    int n = 0;
    for (int i = 0; i < p->nm; i++) {
        CK(dnnl_memory_set_data_handle(p->m[i], handles[i]), "set handle");
        a[n++] = (dnnl_exec_arg_t){p->arg[i], p->m[i]};
    }
    if (p->wmem)
        a[n++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, p->wmem};
    CK(dnnl_primitive_execute(p->p, cx->st, n, a), "execute");
    CK(dnnl_stream_wait(cx->st), "wait");
    return APT_OK;
}

static int cpu_conv3d(void *ctx, apt_nn_prim **c, const apt_nn_tensor *x, const float *w, const float *bias, int k,
                      const int stride[3], const apt_nn_tensor *res, int relu, apt_nn_tensor *y, apt_error *err)
{
    cpu_ctx *cx = ctx;
    int key[24] = {1, k, stride[0], stride[1], stride[2], relu, bias != NULL};
    key_tensor(key + 7, x), key_tensor(key + 12, y), key_tensor(key + 17, res);
    apt_nn_prim *p = cached(ctx, c, key);
    if (!p) {
        dnnl_memory_desc_t src, dst, wmd, wany, bmd, rmd;
        md_of(&src, x), md_of(&dst, y);
        dnnl_dims_t wd = {y->c, x->c, k, k, k}, bd = {y->c};
        dnnl_memory_desc_init_by_tag(&wmd, 5, wd, dnnl_f32, dnnl_oidhw);
        dnnl_memory_desc_init_by_tag(&wany, 5, wd, dnnl_f32, dnnl_format_tag_any);
        dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_a);
        int pad = k / 2, in[3] = {x->d, x->h, x->w}, out[3] = {y->d, y->h, y->w};
        dnnl_dims_t st = {stride[0], stride[1], stride[2]}, pl = {pad, pad, pad}, pr;
        for (int i = 0; i < 3; i++)
            pr[i] = (out[i] - 1) * stride[i] + k - in[i] - pad;
        dnnl_convolution_desc_t cd;
        CK(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &src, &wany,
                                              bias ? &bmd : NULL, &dst, st, pl, pr),
           "convolution descriptor");
        dnnl_primitive_attr_t attr;
        dnnl_post_ops_t po;
        CK(dnnl_primitive_attr_create(&attr), "attr");
        CK(dnnl_post_ops_create(&po), "post-ops");
        if (res)
            md_of(&rmd, res), dnnl_post_ops_append_binary(po, dnnl_binary_add, &rmd);
        if (relu)
            dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
        dnnl_primitive_attr_set_post_ops(attr, po);
        dnnl_post_ops_destroy(po);
        /* memory slots: src, dst, then bias and residual only when present */
        int args[4] = {DNNL_ARG_SRC, DNNL_ARG_DST};
        const dnnl_memory_desc_t *mds[4] = {&src, &dst};
        int n = 2;
        if (bias)
            args[n] = DNNL_ARG_BIAS, mds[n++] = &bmd;
        if (res)
            args[n] = DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, mds[n++] = &rmd;
        dnnl_primitive_desc_t pd;
        dnnl_status_t s = dnnl_primitive_desc_create(&pd, &cd, attr, cx->eng, NULL);
        int rc = s == dnnl_success ? build(cx, c, key, &cd, attr, n, args, mds, err)
                                   : apt_err(err, APT_EINVAL, "oneDNN convolution: %s", dnnl_status2str(s));
        dnnl_primitive_attr_destroy(attr);
        if (rc) {
            if (s == dnnl_success)
                dnnl_primitive_desc_destroy(pd);
            return rc;
        }
        p = *c;
        /* weights: one reorder into the primitive's preferred layout, kept for every later call */
        const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        dnnl_memory_t plain;
        dnnl_status_t s2 = dnnl_memory_create(&p->wmem, want, cx->eng, DNNL_MEMORY_ALLOCATE);
        if (s2 == dnnl_success && (s2 = dnnl_memory_create(&plain, &wmd, cx->eng, (void *)w)) == dnnl_success) {
            dnnl_primitive_desc_t rpd;
            dnnl_primitive_t rp;
            if ((s2 = dnnl_reorder_primitive_desc_create(&rpd, &wmd, cx->eng, want, cx->eng, NULL)) == dnnl_success) {
                if ((s2 = dnnl_primitive_create(&rp, rpd)) == dnnl_success) {
                    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, plain}, {DNNL_ARG_TO, p->wmem}};
                    s2 = dnnl_primitive_execute(rp, cx->st, 2, a);
                    if (s2 == dnnl_success)
                        s2 = dnnl_stream_wait(cx->st);
                    dnnl_primitive_destroy(rp);
                }
                dnnl_primitive_desc_destroy(rpd);
            }
            dnnl_memory_destroy(plain);
        }
        dnnl_primitive_desc_destroy(pd);
        CK(s2, "weights reorder");
    }
    void *h[4] = {x->data, y->data};
    int n = 2;
    if (bias)
        h[n++] = (void *)bias;
    if (res)
        h[n++] = res->data;
    return run(cx, p, h, err);
}

static int cpu_batchnorm(void *ctx, apt_nn_prim **c, const apt_nn_tensor *x, const float *gamma, const float *beta,
                         const float *mean, const float *var, float eps, int relu, apt_nn_tensor *y, apt_error *err)
{
    int key[24] = {2, relu};
    key_tensor(key + 2, x);
    apt_nn_prim *p = cached(ctx, c, key);
    if (!p) {
        dnnl_memory_desc_t d, cm;
        md_of(&d, x);
        dnnl_dims_t cd = {x->c};
        dnnl_memory_desc_init_by_tag(&cm, 1, cd, dnnl_f32, dnnl_a);
        dnnl_batch_normalization_desc_t bd;
        unsigned fl = dnnl_use_global_stats | dnnl_use_scale | dnnl_use_shift | (relu ? dnnl_fuse_norm_relu : 0);
        CK(dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_inference, &d, eps, fl), "batch-norm");
        int args[6] = {DNNL_ARG_SRC, DNNL_ARG_DST, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE, DNNL_ARG_SCALE, DNNL_ARG_SHIFT};
        const dnnl_memory_desc_t *mds[6] = {&d, &d, &cm, &cm, &cm, &cm};
        int rc = build(ctx, c, key, &bd, NULL, 6, args, mds, err);
        if (rc)
            return rc;
        p = *c;
    }
    void *h[6] = {x->data, y->data, (void *)mean, (void *)var, (void *)gamma, (void *)beta};
    return run(ctx, p, h, err);
}

static int cpu_relu(void *ctx, apt_nn_prim **c, const apt_nn_tensor *x, apt_nn_tensor *y, apt_error *err)
{
    int key[24] = {3};
    key_tensor(key + 1, x);
    apt_nn_prim *p = cached(ctx, c, key);
    if (!p) {
        dnnl_memory_desc_t d;
        md_of(&d, x);
        dnnl_eltwise_desc_t ed;
        CK(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, dnnl_eltwise_relu, &d, 0.0f, 0.0f), "relu");
        int args[2] = {DNNL_ARG_SRC, DNNL_ARG_DST};
        const dnnl_memory_desc_t *mds[2] = {&d, &d};
        int rc = build(ctx, c, key, &ed, NULL, 2, args, mds, err);
        if (rc)
            return rc;
        p = *c;
    }
    void *h[2] = {x->data, y->data};
    return run(ctx, p, h, err);
}

static int cpu_maxpool3d(void *ctx, apt_nn_prim **c, const apt_nn_tensor *x, int k, apt_nn_tensor *y, apt_error *err)
{
    int key[24] = {4, k};
    key_tensor(key + 2, x);
    apt_nn_prim *p = cached(ctx, c, key);
    if (!p) {
        dnnl_memory_desc_t s, d;
        md_of(&s, x), md_of(&d, y);
        dnnl_dims_t st = {1, 1, 1}, kk = {k, k, k}, pad = {k / 2, k / 2, k / 2};
        dnnl_pooling_desc_t pdsc;
        CK(dnnl_pooling_forward_desc_init(&pdsc, dnnl_forward_inference, dnnl_pooling_max, &s, &d, st, kk, pad, pad),
           "max-pool");
        int args[2] = {DNNL_ARG_SRC, DNNL_ARG_DST};
        const dnnl_memory_desc_t *mds[2] = {&s, &d};
        int rc = build(ctx, c, key, &pdsc, NULL, 2, args, mds, err);
        if (rc)
            return rc;
        p = *c;
    }
    void *h[2] = {x->data, y->data};
    return run(ctx, p, h, err);
}

/* Nearest x2, then the skip added in place by a binary primitive (oneDNN 2.6's reference resampling gets a binary
 * post-op wrong on channels-last data, so it is not fused). */
static int cpu_upsample2(void *ctx, apt_nn_prim **c, const apt_nn_tensor *x, const apt_nn_tensor *skip,
                         apt_nn_tensor *y, apt_error *err)
{
    int key[24] = {5};
    key_tensor(key + 1, x);
    apt_nn_prim *p = cached(ctx, c, key);
    if (!p) {
        dnnl_memory_desc_t s, d;
        md_of(&s, x), md_of(&d, y);
        dnnl_resampling_desc_t rd;
        CK(dnnl_resampling_forward_desc_init(&rd, dnnl_forward_inference, dnnl_resampling_nearest, NULL, &s, &d),
           "upsample");
        int args[2] = {DNNL_ARG_SRC, DNNL_ARG_DST};
        const dnnl_memory_desc_t *mds[2] = {&s, &d};
        int rc = build(ctx, c, key, &rd, NULL, 2, args, mds, err);
        if (rc)
            return rc;
        p = *c;
    }
    void *h[2] = {x->data, y->data};
    int rc = run(ctx, p, h, err);
    return rc || !skip ? rc : cpu_add(ctx, &p->sub, y, skip, y, err);
}

static int cpu_add(void *ctx, apt_nn_prim **c, const apt_nn_tensor *a, const apt_nn_tensor *b, apt_nn_tensor *y,
                   apt_error *err)
{
    int key[24] = {6};
    key_tensor(key + 1, a);
    apt_nn_prim *p = cached(ctx, c, key);
    if (!p) {
        dnnl_memory_desc_t d;
        md_of(&d, a);
        dnnl_binary_desc_t bd;
        CK(dnnl_binary_desc_init(&bd, dnnl_binary_add, &d, &d, &d), "add");
        int args[3] = {DNNL_ARG_SRC_0, DNNL_ARG_SRC_1, DNNL_ARG_DST};
        const dnnl_memory_desc_t *mds[3] = {&d, &d, &d};
        int rc = build(ctx, c, key, &bd, NULL, 3, args, mds, err);
        if (rc)
            return rc;
        p = *c;
    }
    void *h[3] = {a->data, b->data, y->data};
    return run(ctx, p, h, err);
}

static int cpu_gemm(void *ctx, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc, apt_error *err)
{
    (void)ctx;
    CK(dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc), "sgemm");
    return APT_OK;
}

typedef struct axial_job {
    const apt_nn_axial_params *p;
    const apt_nn_tensor *qkv;
    apt_nn_tensor *y;
    int relu;
    float *scratch;   /* nt slots of scratch_per floats: task t owns slot t */
    size_t scratch_per, lines;
    int nt;
} axial_job;

/* Task t: its contiguous share of the attention lines, in its own scratch slot. */
static void axial_task(void *arg, int t)
{
    axial_job *j = arg;
    apt_nn_axial_cpu_range(j->p, j->qkv, j->relu, j->y, j->scratch + (size_t)t * j->scratch_per,
                           j->lines * (size_t)t / j->nt, j->lines * (size_t)(t + 1) / j->nt, 1);
}

_Static_assert(MAX_THREADS <= APT_PAR_MAX_THREADS, "apt_par_tasks must run every attention task");

static int cpu_axial(void *ctx, apt_nn_prim **c, const apt_nn_tensor *qkv, const apt_nn_axial_params *ap, int relu,
                     apt_nn_tensor *y, apt_error *err)
{
    cpu_ctx *cx = ctx;
    int K = ap->axis == 0 ? qkv->d : ap->axis == 1 ? qkv->h : qkv->w;
    if (K != ap->K || qkv->c != 2 * ap->planes || y->c != ap->planes)
        return apt_err(err, APT_EINVAL, "axial attention: tensor shape does not match the layer (K %d vs %d)", K,
                       ap->K);
    int key[24] = {7, ap->axis, relu};
    key_tensor(key + 3, qkv);
    apt_nn_prim *p = cached(ctx, c, key);
    if (!p) {
        if (!(p = calloc(1, sizeof(*p))))
            return apt_err(err, APT_ENOMEM, "out of memory");
        memcpy(p->key, key, sizeof(key));
        *c = p;
        p->scratch_per = (apt_nn_axial_scratch(ap) + 15) & ~(size_t)15;
        if (!(p->scratch = malloc(p->scratch_per * (size_t)cx->threads * sizeof(float))))
            return apt_err(err, APT_ENOMEM, "out of memory for attention scratch");
    }
    size_t lines = (size_t)qkv->n * qkv->d * qkv->h * qkv->w / (size_t)K;
    int nt = (size_t)cx->threads < lines ? cx->threads : (int)lines;
    if (nt > 0) {
        axial_job job = {ap, qkv, y, relu, p->scratch, p->scratch_per, lines, nt};
        apt_par_tasks(axial_task, &job, nt);
    }
    return APT_OK;
}

const struct apt_nn_ops apt_nn_dnnl_ops = {
    .name = "onednn",
    .init = nn_dnnl_ctx_new,
    .fini = nn_dnnl_ctx_free,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .prim_free = cpu_prim_free,
    .conv3d = cpu_conv3d,
    .batchnorm = cpu_batchnorm,
    .relu = cpu_relu,
    .maxpool3d = cpu_maxpool3d,
    .upsample2 = cpu_upsample2,
    .add = cpu_add,
    .gemm = cpu_gemm,
    .axial = cpu_axial,
};
