/* train_dnnl.c - the CPU training backend (train_backend.h): oneDNN convolution forward / backward-data /
 * backward-weights, max-pool forward-training / backward and nearest resampling forward / backward, on NCDHW
 * tensors. Forward and backward-data give every output element to one thread, so their bytes do not depend on the
 * thread count. oneDNN's backward-weights splits its batch reduction by thread count, so here each sample's weight
 * gradient is computed on its own (one OpenMP thread per worker, user scratchpads) and the samples are added in
 * order: the same bytes for any --threads. */
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aptomo/parallel.h"
#include "nn/nn_dnnl.h"
#include "nn/train_backend.h"

/* GNU OpenMP, which Debian's oneDNN runs on (linked directly; no -fopenmp, no omp.h needed). */
extern void omp_set_num_threads(int n);

#define TMAXM 4
#define TMAX_WORKERS NN_DNNL_MAX_THREADS
_Static_assert(TMAX_WORKERS <= APT_PAR_MAX_THREADS, "apt_par_tasks must run every backward-weights worker");

typedef nn_dnnl_ctx tctx;

/* One argument of a convolution: the caller's plain NCDHW / OIDHW memory and, when oneDNN's chosen layout differs
 * (blocked formats are what its fast kernels take), an owned buffer in that layout with the reorder between them. */
typedef struct targ {
    dnnl_memory_t user, inner; /* inner == user when no reorder is needed */
    dnnl_primitive_t rp;
    void *buf;
    int out;
} targ;

/* One worker of the per-sample backward-weights: own stream, arguments, scratchpad and partial sum. */
typedef struct tworker {
    dnnl_stream_t st;
    targ a[3];
    dnnl_memory_t sp;
    void *scratch;
    float *part;
} tworker;

struct apt_nn_tprim {
    int key[16];
    dnnl_primitive_t p;
    dnnl_memory_t m[TMAXM];
    int arg[TMAXM];
    int nm;
    targ a[3];  /* convolutions: their arguments */
    dnnl_memory_t ws; /* max-pool workspace (owned), used by the matching backward */
    tworker *w;       /* backward-weights workers */
    int nw;
    size_t wcount;    /* floats of one weight gradient */
};

#define TCK NN_DNNL_CK

static int t_init(void **ctxp, int threads, apt_error *err)
{
    int rc = nn_dnnl_ctx_new(ctxp, threads, err);
    if (!rc) /* oneDNN's OpenMP team for this (the calling) thread */
        omp_set_num_threads(((tctx *)*ctxp)->threads);
    return rc;
}

static void targ_free(targ *a)
{
    if (a->rp)
        dnnl_primitive_destroy(a->rp);
    if (a->inner && a->inner != a->user)
        dnnl_memory_destroy(a->inner);
    if (a->user)
        dnnl_memory_destroy(a->user);
    free(a->buf);
    memset(a, 0, sizeof(*a));
}

static void t_prim_free(void *ctx, apt_nn_tprim *p)
{
    (void)ctx;
    if (!p)
        return;
    if (p->p)
        dnnl_primitive_destroy(p->p);
    for (int i = 0; i < p->nm; i++)
        if (p->m[i])
            dnnl_memory_destroy(p->m[i]);
    if (p->ws)
        dnnl_memory_destroy(p->ws);
    for (int i = 0; i < 3; i++)
        targ_free(&p->a[i]);
    for (int i = 0; p->w && i < p->nw; i++) {
        tworker *w = &p->w[i];
        for (int j = 0; j < 3; j++)
            targ_free(&w->a[j]);
        if (w->sp)
            dnnl_memory_destroy(w->sp);
        if (w->st)
            dnnl_stream_destroy(w->st);
        free(w->scratch);
        free(w->part);
    }
    free(p->w);
    free(p);
}

static void md_ncdhw(dnnl_memory_desc_t *md, const apt_nn_tensor *t, int n)
{
    dnnl_dims_t d = {n, t->c, t->d, t->h, t->w};
    dnnl_memory_desc_init_by_tag(md, 5, d, dnnl_f32, dnnl_ncdhw);
}

static void key_of(int *key, int op, int k, const int *stride, const apt_nn_tensor *a, const apt_nn_tensor *b)
{
    int v[16] = {op, k, stride ? stride[0] : 0, stride ? stride[1] : 0, stride ? stride[2] : 0,
                 a->n, a->c, a->d, a->h, a->w, b->n, b->c, b->d, b->h, b->w, 0};
    memcpy(key, v, sizeof v);
}

static apt_nn_tprim *cached(void *ctx, apt_nn_tprim **c, const int *key)
{
    if (*c && !memcmp((*c)->key, key, sizeof((*c)->key)))
        return *c;
    t_prim_free(ctx, *c);
    *c = NULL;
    return NULL;
}

/* A new cache slot holding the primitive of pd and unbound memory objects for args. */
static int slot_new(apt_nn_tprim **c, const int *key, dnnl_primitive_desc_t pd, int n, const int *args,
                    const dnnl_memory_desc_t *const *mds, dnnl_engine_t eng, apt_error *err)
{
    apt_nn_tprim *p = calloc(1, sizeof(*p));
    if (!p)
        return apt_err(err, APT_ENOMEM, "out of memory");
    memcpy(p->key, key, sizeof(p->key));
    *c = p;
    TCK(dnnl_primitive_create(&p->p, pd), "primitive");
    for (int i = 0; i < n; i++) {
        TCK(dnnl_memory_create(&p->m[i], mds[i], eng, DNNL_MEMORY_NONE), "memory");
        p->arg[i] = args[i];
        p->nm = i + 1;
    }
    return APT_OK;
}

static int slot_run(dnnl_stream_t st, apt_nn_tprim *p, dnnl_memory_t *m, void *const *h, apt_error *err)
{
    dnnl_exec_arg_t a[TMAXM + 1];
    int n = 0;
    for (int i = 0; i < p->nm; i++) {
        TCK(dnnl_memory_set_data_handle(m[i], h[i]), "set handle");
        a[n++] = (dnnl_exec_arg_t){p->arg[i], m[i]};
    }
    if (p->ws)
        a[n++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, p->ws};
    TCK(dnnl_primitive_execute(p->p, st, n, a), "execute");
    TCK(dnnl_stream_wait(st), "wait");
    return APT_OK;
}

/* Convolution descriptors of one layer: plain src/dst for a batch of n and oidhw weights (what the caller holds),
 * the same with format "any" (what the primitive is created from), and PyTorch's padding. */
typedef struct conv_desc {
    dnnl_memory_desc_t src, dst, w, src_any, dst_any, w_any;
    dnnl_dims_t st, pl, pr;
} conv_desc;

static void conv_desc_of(conv_desc *d, const apt_nn_tensor *x, const apt_nn_tensor *y, int k, const int *stride,
                         int n)
{
    md_ncdhw(&d->src, x, n), md_ncdhw(&d->dst, y, n);
    dnnl_dims_t sd = {n, x->c, x->d, x->h, x->w}, dd = {n, y->c, y->d, y->h, y->w}, wd = {y->c, x->c, k, k, k};
    dnnl_memory_desc_init_by_tag(&d->w, 5, wd, dnnl_f32, dnnl_oidhw);
    dnnl_memory_desc_init_by_tag(&d->src_any, 5, sd, dnnl_f32, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&d->dst_any, 5, dd, dnnl_f32, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&d->w_any, 5, wd, dnnl_f32, dnnl_format_tag_any);
    int in[3] = {x->d, x->h, x->w}, out[3] = {y->d, y->h, y->w};
    for (int i = 0; i < 3; i++) {
        d->st[i] = stride[i], d->pl[i] = k / 2;
        d->pr[i] = (out[i] - 1) * stride[i] + k - in[i] - k / 2;
    }
}

static int conv_fwd_pd(tctx *cx, conv_desc *d, dnnl_primitive_desc_t *pd, apt_error *err)
{
    dnnl_convolution_desc_t cd;
    TCK(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct, &d->src_any,
                                           &d->w_any, NULL, &d->dst_any, d->st, d->pl, d->pr),
        "convolution descriptor");
    TCK(dnnl_primitive_desc_create(pd, &cd, NULL, cx->eng, NULL), "convolution");
    return APT_OK;
}

/* User memory for `plain` and, if the primitive chose another layout, a buffer in it with the reorder. */
static int targ_init(targ *a, const dnnl_memory_desc_t *plain, const dnnl_memory_desc_t *chosen, int out,
                     dnnl_engine_t eng, apt_error *err)
{
    a->out = out;
    TCK(dnnl_memory_create(&a->user, plain, eng, DNNL_MEMORY_NONE), "memory");
    if (dnnl_memory_desc_equal(plain, chosen)) {
        a->inner = a->user;
        return APT_OK;
    }
    size_t bytes = dnnl_memory_desc_get_size(chosen);
    if (posix_memalign(&a->buf, 64, bytes ? bytes : 64))
        return apt_err(err, APT_ENOMEM, "out of memory for a reordered tensor (%zu bytes)", bytes);
    TCK(dnnl_memory_create(&a->inner, chosen, eng, a->buf), "memory");
    dnnl_primitive_desc_t rpd;
    TCK(out ? dnnl_reorder_primitive_desc_create(&rpd, chosen, eng, plain, eng, NULL)
            : dnnl_reorder_primitive_desc_create(&rpd, plain, eng, chosen, eng, NULL),
        "reorder");
    dnnl_status_t s = dnnl_primitive_create(&a->rp, rpd);
    dnnl_primitive_desc_destroy(rpd);
    TCK(s, "reorder");
    return APT_OK;
}

static dnnl_status_t targ_reorder(targ *a, dnnl_stream_t st)
{
    dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, a->out ? a->inner : a->user}, {DNNL_ARG_TO, a->out ? a->user : a->inner}};
    return dnnl_primitive_execute(a->rp, st, 2, r);
}

/* Inputs reordered in, the primitive, outputs reordered out (reorders are copies: no effect on the bits). */
static dnnl_status_t conv_exec(dnnl_primitive_t p, dnnl_stream_t st, targ *a, const int *args, void *const *h,
                               dnnl_memory_t scratch)
{
    dnnl_exec_arg_t e[4];
    dnnl_status_t s = dnnl_success;
    for (int i = 0; s == dnnl_success && i < 3; i++) {
        s = dnnl_memory_set_data_handle(a[i].user, h[i]);
        if (s == dnnl_success && a[i].rp && !a[i].out)
            s = targ_reorder(&a[i], st);
        e[i] = (dnnl_exec_arg_t){args[i], a[i].inner};
    }
    e[3] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, scratch};
    if (s == dnnl_success)
        s = dnnl_primitive_execute(p, st, scratch ? 4 : 3, e);
    for (int i = 0; s == dnnl_success && i < 3; i++)
        if (a[i].rp && a[i].out)
            s = targ_reorder(&a[i], st);
    return s == dnnl_success ? dnnl_stream_wait(st) : s;
}

/* A conv slot from its primitive descriptor: args in/out with the layouts pd chose. */
static int conv_slot(tctx *cx, apt_nn_tprim **c, const int *key, dnnl_primitive_desc_t pd, const int *args,
                     const dnnl_memory_desc_t *const *plain, const dnnl_query_t *q, const int *out, apt_error *err)
{
    apt_nn_tprim *p = calloc(1, sizeof(*p));
    if (!p)
        return apt_err(err, APT_ENOMEM, "out of memory");
    memcpy(p->key, key, sizeof(p->key));
    *c = p;
    TCK(dnnl_primitive_create(&p->p, pd), "primitive");
    memcpy(p->arg, args, 3 * sizeof(int));
    for (int i = 0; i < 3; i++) {
        int rc = targ_init(&p->a[i], plain[i], dnnl_primitive_desc_query_md(pd, q[i], 0), out[i], cx->eng, err);
        if (rc)
            return rc;
    }
    return APT_OK;
}

/* Forward (bwd 0: src x -> dst y) or backward-data (bwd 1: dst's gradient -> src's gradient) of one layer; x and y
 * give the shapes either way, in and out the data. */
static int conv_data(tctx *cx, apt_nn_tprim **c, int bwd, const apt_nn_tensor *x, const apt_nn_tensor *y,
                     const float *w, int k, const int *stride, void *in, void *out, apt_error *err)
{
    int key[16];
    key_of(key, 1 + bwd, k, stride, x, y);
    apt_nn_tprim *p = cached(cx, c, key);
    if (!p) {
        conv_desc d;
        conv_desc_of(&d, x, y, k, stride, x->n);
        dnnl_primitive_desc_t fwd, pd;
        int rc = conv_fwd_pd(cx, &d, &fwd, err);
        if (rc)
            return rc;
        if (bwd) { /* the forward is the backward's hint */
            dnnl_convolution_desc_t cd;
            dnnl_status_t s = dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &d.src_any,
                                                                       &d.w_any, &d.dst_any, d.st, d.pl, d.pr);
            if (s == dnnl_success)
                s = dnnl_primitive_desc_create(&pd, &cd, NULL, cx->eng, fwd);
            dnnl_primitive_desc_destroy(fwd);
            TCK(s, "convolution backward data");
        } else {
            pd = fwd;
        }
        int args[2][3] = {{DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
                          {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC}},
            out[3] = {0, 0, 1};
        const dnnl_memory_desc_t *mds[2][3] = {{&d.src, &d.w, &d.dst}, {&d.dst, &d.w, &d.src}};
        dnnl_query_t q[2][3] = {{dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md},
                                {dnnl_query_diff_dst_md, dnnl_query_weights_md, dnnl_query_diff_src_md}};
        rc = conv_slot(cx, c, key, pd, args[bwd], mds[bwd], q[bwd], out, err);
        dnnl_primitive_desc_destroy(pd);
        if (rc)
            return rc;
        p = *c;
    }
    void *h[3] = {in, (void *)w, out};
    TCK(conv_exec(p->p, cx->st, p->a, p->arg, h, NULL), bwd ? "convolution backward data" : "convolution");
    return APT_OK;
}

static int t_conv_fwd(void *ctx, apt_nn_tprim **c, const apt_nn_tensor *x, const float *w, int k, const int stride[3],
                      apt_nn_tensor *y, apt_error *err)
{
    return conv_data(ctx, c, 0, x, y, w, k, stride, x->data, y->data, err);
}

static int t_conv_bwd_data(void *ctx, apt_nn_tprim **c, const apt_nn_tensor *dy, const float *w, int k,
                           const int stride[3], apt_nn_tensor *dx, apt_error *err)
{
    return conv_data(ctx, c, 1, dx, dy, w, k, stride, dy->data, dx->data, err);
}

typedef struct bww_job {
    apt_nn_tprim *p;
    const apt_nn_tensor *x, *dy;
    int w, nw;
    int rc;
    apt_error err;
} bww_job;

/* Worker w: samples w, w + nw, ... of the batch, each into its own partial gradient, on one OpenMP thread. */
static void bww_task(void *arg, int w)
{
    bww_job *j = (bww_job *)arg + w;
    apt_nn_tprim *p = j->p;
    omp_set_num_threads(1);
    size_t xs = (size_t)j->x->c * j->x->d * j->x->h * j->x->w, ys = (size_t)j->dy->c * j->dy->d * j->dy->h * j->dy->w;
    tworker *wk = &p->w[j->w];
    for (int b = j->w; !j->rc && b < j->x->n; b += j->nw) {
        void *h[3] = {j->x->data + (size_t)b * xs, j->dy->data + (size_t)b * ys, p->w[b].part};
        if (conv_exec(p->p, wk->st, wk->a, p->arg, h, wk->sp) != dnnl_success)
            j->rc = apt_err(&j->err, APT_EINVAL, "oneDNN: convolution backward weights failed");
    }
}

static int bww_build(tctx *cx, apt_nn_tprim **c, const int *key, const apt_nn_tensor *x, const apt_nn_tensor *dy,
                     int k, const int *stride, apt_error *err)
{
    conv_desc d;
    conv_desc_of(&d, x, dy, k, stride, 1);
    dnnl_primitive_desc_t hint, pd;
    int rc = conv_fwd_pd(cx, &d, &hint, err);
    if (rc)
        return rc;
    dnnl_convolution_desc_t cd;
    dnnl_primitive_attr_t attr;
    dnnl_status_t s = dnnl_primitive_attr_create(&attr);
    if (s == dnnl_success)
        s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (s == dnnl_success)
        s = dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &d.src_any, &d.w_any, NULL,
                                                        &d.dst_any, d.st, d.pl, d.pr);
    if (s == dnnl_success)
        s = dnnl_primitive_desc_create(&pd, &cd, attr, cx->eng, hint);
    dnnl_primitive_desc_destroy(hint);
    dnnl_primitive_attr_destroy(attr);
    TCK(s, "convolution backward weights");
    apt_nn_tprim *p = calloc(1, sizeof(*p));
    if (!p) {
        dnnl_primitive_desc_destroy(pd);
        return apt_err(err, APT_ENOMEM, "out of memory");
    }
    memcpy(p->key, key, sizeof(p->key));
    *c = p;
    int args[3] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS}, out[3] = {0, 0, 1};
    const dnnl_memory_desc_t *mds[3] = {&d.src, &d.dst, &d.w};
    dnnl_query_t q[3] = {dnnl_query_src_md, dnnl_query_diff_dst_md, dnnl_query_diff_weights_md};
    memcpy(p->arg, args, sizeof args);
    const dnnl_memory_desc_t *spmd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t spbytes = dnnl_memory_desc_get_size(spmd);
    if (dnnl_primitive_create(&p->p, pd) != dnnl_success)
        rc = apt_err(err, APT_EINVAL, "oneDNN: convolution backward weights primitive");
    p->nw = x->n; /* one slot per sample: worker w uses slot w for its objects and slot b for sample b's sum */
    p->wcount = (size_t)dy->c * x->c * k * k * k;
    if (!rc && !(p->w = calloc((size_t)p->nw, sizeof(*p->w))))
        rc = apt_err(err, APT_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < p->nw; i++) {
        tworker *w = &p->w[i];
        /* oneDNN's kernels use aligned loads on their scratchpad: page-align it as the library itself would */
        if (posix_memalign((void **)&w->part, 64, p->wcount * sizeof(float)) ||
            posix_memalign(&w->scratch, 4096, spbytes ? (spbytes + 4095) & ~(size_t)4095 : 4096))
            rc = apt_err(err, APT_ENOMEM, "out of memory for weight-gradient partial sums");
        for (int j = 0; !rc && j < 3; j++)
            rc = targ_init(&w->a[j], mds[j], dnnl_primitive_desc_query_md(pd, q[j], 0), out[j], cx->eng, err);
        if (!rc && (dnnl_memory_create(&w->sp, spmd, cx->eng, w->scratch) != dnnl_success ||
                    dnnl_stream_create(&w->st, cx->eng, dnnl_stream_default_flags) != dnnl_success))
            rc = apt_err(err, APT_ENOMEM, "oneDNN: scratchpad or stream");
    }
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

static int t_conv_bwd_weights(void *ctx, apt_nn_tprim **c, const apt_nn_tensor *x, const apt_nn_tensor *dy, int k,
                              const int stride[3], float *dw, apt_error *err)
{
    tctx *cx = ctx;
    int key[16];
    key_of(key, 3, k, stride, x, dy);
    apt_nn_tprim *p = cached(ctx, c, key);
    if (!p) {
        /* planned for one thread: oneDNN fixes a primitive's team size when it is created */
        omp_set_num_threads(1);
        int rc = bww_build(cx, c, key, x, dy, k, stride, err);
        omp_set_num_threads(cx->threads);
        if (rc)
            return rc;
        p = *c;
    }
    int nw = cx->threads < x->n ? cx->threads : x->n;
    bww_job jobs[TMAX_WORKERS];
    for (int w = 0; w < nw; w++)
        jobs[w] = (bww_job){.p = p, .x = x, .dy = dy, .w = w, .nw = nw};
    /* worker 0 runs on this thread, which keeps its own OpenMP setting: restore it below */
    apt_par_tasks(bww_task, jobs, nw);
    omp_set_num_threads(cx->threads);
    int rc = APT_OK;
    for (int w = 0; !rc && w < nw; w++)
        if (jobs[w].rc)
            rc = jobs[w].rc, *err = jobs[w].err;
    if (rc)
        return rc;
    for (int b = 0; b < x->n; b++) /* in sample order, whatever the thread count */
        for (size_t i = 0; i < p->wcount; i++)
            dw[i] += p->w[b].part[i];
    return APT_OK;
}

static int pool_descs(const apt_nn_tensor *x, const apt_nn_tensor *y, int k, dnnl_pooling_desc_t *fd,
                      dnnl_memory_desc_t *s, dnnl_memory_desc_t *d, apt_error *err)
{
    md_ncdhw(s, x, x->n), md_ncdhw(d, y, y->n);
    dnnl_dims_t st = {1, 1, 1}, kk = {k, k, k}, pad = {k / 2, k / 2, k / 2};
    TCK(dnnl_pooling_forward_desc_init(fd, dnnl_forward_training, dnnl_pooling_max, s, d, st, kk, pad, pad),
        "max-pool");
    return APT_OK;
}

static int t_maxpool_fwd(void *ctx, apt_nn_tprim **c, const apt_nn_tensor *x, int k, apt_nn_tensor *y, apt_error *err)
{
    tctx *cx = ctx;
    int key[16];
    key_of(key, 4, k, NULL, x, y);
    apt_nn_tprim *p = cached(ctx, c, key);
    if (!p) {
        dnnl_pooling_desc_t fd;
        dnnl_memory_desc_t s, d;
        dnnl_primitive_desc_t pd;
        int rc = pool_descs(x, y, k, &fd, &s, &d, err);
        if (rc)
            return rc;
        TCK(dnnl_primitive_desc_create(&pd, &fd, NULL, cx->eng, NULL), "max-pool");
        int args[2] = {DNNL_ARG_SRC, DNNL_ARG_DST};
        const dnnl_memory_desc_t *mds[2] = {&s, &d};
        rc = slot_new(c, key, pd, 2, args, mds, cx->eng, err);
        if (!rc && dnnl_memory_create(&(*c)->ws, dnnl_primitive_desc_query_md(pd, dnnl_query_workspace_md, 0),
                                      cx->eng, DNNL_MEMORY_ALLOCATE) != dnnl_success)
            rc = apt_err(err, APT_ENOMEM, "oneDNN: max-pool workspace");
        dnnl_primitive_desc_destroy(pd);
        if (rc)
            return rc;
        p = *c;
    }
    void *h[2] = {x->data, y->data};
    return slot_run(cx->st, p, p->m, h, err);
}

static int t_maxpool_bwd(void *ctx, apt_nn_tprim **c, apt_nn_tprim **fwd, const apt_nn_tensor *dy, int k,
                         apt_nn_tensor *dx, apt_error *err)
{
    tctx *cx = ctx;
    if (!*fwd || !(*fwd)->ws)
        return apt_err(err, APT_EINVAL, "max-pool backward without its forward");
    int key[16];
    key_of(key, 5, k, NULL, dx, dy);
    apt_nn_tprim *p = cached(ctx, c, key);
    if (!p) {
        dnnl_pooling_desc_t fd, bd;
        dnnl_memory_desc_t s, d;
        dnnl_primitive_desc_t hint, pd;
        int rc = pool_descs(dx, dy, k, &fd, &s, &d, err);
        if (rc)
            return rc;
        TCK(dnnl_primitive_desc_create(&hint, &fd, NULL, cx->eng, NULL), "max-pool");
        dnnl_dims_t st = {1, 1, 1}, kk = {k, k, k}, pad = {k / 2, k / 2, k / 2};
        dnnl_status_t sts = dnnl_pooling_backward_desc_init(&bd, dnnl_pooling_max, &s, &d, st, kk, pad, pad);
        if (sts == dnnl_success)
            sts = dnnl_primitive_desc_create(&pd, &bd, NULL, cx->eng, hint);
        dnnl_primitive_desc_destroy(hint);
        TCK(sts, "max-pool backward");
        int args[2] = {DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC};
        const dnnl_memory_desc_t *mds[2] = {&d, &s};
        rc = slot_new(c, key, pd, 2, args, mds, cx->eng, err);
        dnnl_primitive_desc_destroy(pd);
        if (rc)
            return rc;
        p = *c;
    }
    dnnl_exec_arg_t a[3];
    TCK(dnnl_memory_set_data_handle(p->m[0], dy->data), "set handle");
    TCK(dnnl_memory_set_data_handle(p->m[1], dx->data), "set handle");
    a[0] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, p->m[0]};
    a[1] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SRC, p->m[1]};
    a[2] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, (*fwd)->ws};
    TCK(dnnl_primitive_execute(p->p, cx->st, 3, a), "max-pool backward");
    TCK(dnnl_stream_wait(cx->st), "wait");
    return APT_OK;
}

static int up_fwd_pd(tctx *cx, const apt_nn_tensor *x, const apt_nn_tensor *y, dnnl_memory_desc_t *s,
                     dnnl_memory_desc_t *d, dnnl_primitive_desc_t *pd, apt_error *err)
{
    md_ncdhw(s, x, x->n), md_ncdhw(d, y, y->n);
    dnnl_resampling_desc_t rd;
    TCK(dnnl_resampling_forward_desc_init(&rd, dnnl_forward_training, dnnl_resampling_nearest, NULL, s, d),
        "upsample");
    TCK(dnnl_primitive_desc_create(pd, &rd, NULL, cx->eng, NULL), "upsample");
    return APT_OK;
}

static int t_up_fwd(void *ctx, apt_nn_tprim **c, const apt_nn_tensor *x, apt_nn_tensor *y, apt_error *err)
{
    tctx *cx = ctx;
    int key[16];
    key_of(key, 6, 2, NULL, x, y);
    apt_nn_tprim *p = cached(ctx, c, key);
    if (!p) {
        dnnl_memory_desc_t s, d;
        dnnl_primitive_desc_t pd;
        int rc = up_fwd_pd(cx, x, y, &s, &d, &pd, err);
        if (rc)
            return rc;
        int args[2] = {DNNL_ARG_SRC, DNNL_ARG_DST};
        const dnnl_memory_desc_t *mds[2] = {&s, &d};
        rc = slot_new(c, key, pd, 2, args, mds, cx->eng, err);
        dnnl_primitive_desc_destroy(pd);
        if (rc)
            return rc;
        p = *c;
    }
    void *h[2] = {x->data, y->data};
    return slot_run(cx->st, p, p->m, h, err);
}

static int t_up_bwd(void *ctx, apt_nn_tprim **c, const apt_nn_tensor *dy, apt_nn_tensor *dx, apt_error *err)
{
    tctx *cx = ctx;
    int key[16];
    key_of(key, 7, 2, NULL, dx, dy);
    apt_nn_tprim *p = cached(ctx, c, key);
    if (!p) {
        dnnl_memory_desc_t s, d;
        dnnl_primitive_desc_t hint, pd;
        int rc = up_fwd_pd(cx, dx, dy, &s, &d, &hint, err);
        if (rc)
            return rc;
        dnnl_resampling_desc_t bd;
        dnnl_status_t sts = dnnl_resampling_backward_desc_init(&bd, dnnl_resampling_nearest, NULL, &s, &d);
        if (sts == dnnl_success)
            sts = dnnl_primitive_desc_create(&pd, &bd, NULL, cx->eng, hint);
        dnnl_primitive_desc_destroy(hint);
        TCK(sts, "upsample backward");
        int args[2] = {DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC};
        const dnnl_memory_desc_t *mds[2] = {&d, &s};
        rc = slot_new(c, key, pd, 2, args, mds, cx->eng, err);
        dnnl_primitive_desc_destroy(pd);
        if (rc)
            return rc;
        p = *c;
    }
    void *h[2] = {dy->data, dx->data};
    return slot_run(cx->st, p, p->m, h, err);
}

const struct apt_nn_train_ops apt_nn_train_dnnl_ops = {
    .name = "onednn",
    .init = t_init,
    .fini = nn_dnnl_ctx_free,
    .prim_free = t_prim_free,
    .conv_fwd = t_conv_fwd,
    .conv_bwd_data = t_conv_bwd_data,
    .conv_bwd_weights = t_conv_bwd_weights,
    .maxpool_fwd = t_maxpool_fwd,
    .maxpool_bwd = t_maxpool_bwd,
    .up_fwd = t_up_fwd,
    .up_bwd = t_up_bwd,
};
