/* train_step.c - one training step: the tape of the forward (planned once per input shape, its activations and
 * gradients allocated then), the backward in reverse order, NPCC, Adam and the BatchNorm step counts. */
#include <stdlib.h>
#include <string.h>

#include "aptomo/axial_train.h"
#include "nn/train_int.h"

/* ---- plan ---- */

/* oneDNN's kernels store with aligned (non-temporal) writes: every buffer it sees is 64-byte aligned. */
static float *falloc(size_t n)
{
    void *p = NULL;
    return posix_memalign(&p, 64, (n ? n : 1) * sizeof(float)) ? NULL : p;
}

typedef struct tbuild {
    apt_nn_train *t;
    int B, ok, unit; /* unit: the next entry of the layer table */
} tbuild;

static int act_new(tbuild *b, int c, const int *s)
{
    apt_nn_train *t = b->t;
    if (!b->ok)
        return 0;
    if (t->nact == t->capact) {
        int nc = t->capact ? 2 * t->capact : 128;
        tact *na = realloc(t->act, (size_t)nc * sizeof(*na));
        if (!na)
            return b->ok = 0;
        t->act = na, t->capact = nc;
    }
    tact *a = &t->act[t->nact];
    a->t = (apt_nn_tensor){NULL, b->B, c, s[0], s[1], s[2]};
    size_t n = apt_nn_numel(&a->t);
    a->t.data = falloc(n);
    a->g = falloc(n);
    if (!a->t.data || !a->g) {
        free(a->t.data), free(a->g);
        return b->ok = 0;
    }
    return t->nact++;
}

static tnode *node_add(tbuild *b, int op, int unit, int in, int out)
{
    apt_nn_train *t = b->t;
    if (!b->ok || t->nn == T_MAX_NODES) {
        b->ok = 0;
        return NULL;
    }
    tnode *n = &t->nodes[t->nn++];
    memset(n, 0, sizeof(*n));
    n->op = op, n->unit = unit, n->in = in, n->out = out, n->res = -1;
    return n;
}

static void act_dims(const apt_nn_train *t, int i, int *s)
{
    s[0] = t->act[i].t.d, s[1] = t->act[i].t.h, s[2] = t->act[i].t.w;
}

/* conv unit -> BN(+res)(+relu); returns the BN output. */
static int convbn(tbuild *b, int in, int res, int relu)
{
    apt_nn_train *t = b->t;
    if (!b->ok)
        return 0;
    int u = b->unit++;
    const nn_unit *nu = &t->units[u].u;
    int s[3];
    act_dims(t, in, s);
    for (int i = 0; i < 3; i++)
        s[i] /= nu->stride[i];
    int c = act_new(b, nu->cout, s);
    node_add(b, N_CONV, u, in, c);
    int o = act_new(b, nu->cout, s);
    tnode *n = node_add(b, N_BN, u, c, o);
    if (n) {
        n->res = res, n->relu = relu;
        n->mean = malloc((size_t)nu->cout * sizeof(float));
        n->invstd = malloc((size_t)nu->cout * sizeof(float));
        if (!n->mean || !n->invstd)
            b->ok = 0;
    }
    return o;
}

static int simple(tbuild *b, int op, int in, int c, const int *s, int res)
{
    int o = act_new(b, c, s);
    tnode *n = node_add(b, op, -1, in, o);
    if (n)
        n->res = res;
    return o;
}

static int plan(apt_nn_train *t, int B, int Z, int Y, int X, apt_error *err)
{
    int S[4][3];
    int rc = nn_arch_shapes(&t->a, Z, Y, X, S, err);
    if (rc)
        return rc;
    if (t->B == B && t->Z == Z && t->Y == Y && t->X == X)
        return APT_OK;
    nn_train_plan_free(t);
    tbuild b = {t, B, 1, 0};
    const nn_arch *a = &t->a;
    int in[3] = {Z, Y, X};
    int x = act_new(&b, 1, in);
    int cur = simple(&b, N_POOL, convbn(&b, x, -1, 1), a->stem, S[0], -1);
    int skip[3] = {0};
    for (int s = 0; s < 3; s++) {
        for (int k = 0; k < a->st[s].blocks; k++) {
            int blk_in = cur;
            int h = convbn(&b, convbn(&b, blk_in, -1, 1), -1, 1);
            /* conv3's unit comes before proj's in the table, but its BN adds proj's output: plan proj first */
            int u3 = b.unit;
            int res = blk_in;
            if (k == 0) {
                b.unit = u3 + 1;
                res = convbn(&b, blk_in, -1, 0);
                b.unit = u3;
            }
            cur = convbn(&b, h, res, 1);
            if (k == 0)
                b.unit = u3 + 2;
        }
        skip[s] = cur;
    }
    int enc = cur;
    cur = convbn(&b, enc, -1, 1);
    for (int i = 0; i < 3; i++) {
        int q = convbn(&b, cur, -1, 0);
        int u = b.unit++;
        int o = act_new(&b, a->planes, S[3]);
        tnode *n = node_add(&b, N_ATTN, u, q, o);
        if (n) {
            apt_nn_axial_train at = {.planes = a->planes, .heads = a->heads, .K = a->size[i], .axis = i};
            size_t ns = apt_nn_axial_train_saved(&at, B, S[3][0], S[3][1], S[3][2]);
            if (!(n->saved = malloc((ns ? ns : 1) * sizeof(float))))
                b.ok = 0;
        }
        cur = o;
    }
    cur = simple(&b, N_RELU, cur, a->planes, S[3], -1);
    int uo = b.unit; /* conv_out, then shortcut: the shortcut's BN output is conv_out's residual */
    b.unit = uo + 1;
    int sc = convbn(&b, enc, -1, 0);
    b.unit = uo;
    cur = convbn(&b, cur, sc, 1);
    b.unit = uo + 2;
    for (int i = 0; i < 3; i++) {
        int d = convbn(&b, cur, -1, 1), s2[3];
        act_dims(t, d, s2);
        for (int k = 0; k < 3; k++)
            s2[k] *= 2;
        cur = simple(&b, N_UP, d, a->dec[i], s2, i < 2 ? skip[1 - i] : -1);
    }
    convbn(&b, cur, -1, 1);
    if (b.ok && b.unit != t->nunits)
        return apt_err(err, APT_EINVAL, "internal: the training plan used %d of %d layers", b.unit, t->nunits);
    size_t big = 0, sc_need = 0;
    for (int i = 0; i < t->nact; i++)
        if (apt_nn_numel(&t->act[i].t) > big)
            big = apt_nn_numel(&t->act[i].t);
    for (int i = 0; i < 3; i++) {
        apt_nn_axial_train at = {.planes = a->planes, .heads = a->heads, .K = a->size[i], .axis = i};
        size_t n = apt_nn_axial_train_scratch(&at, B, S[3][0], S[3][1], S[3][2], t->threads);
        if (n > sc_need)
            sc_need = n;
    }
    if (b.ok) {
        t->tmp = falloc(big);
        t->scratch = malloc((sc_need ? sc_need : 1) * sizeof(float));
    }
    if (!b.ok || !t->tmp || !t->scratch) {
        nn_train_plan_free(t);
        return apt_err(err, APT_ENOMEM, "out of memory planning a training step for %d x %dx%dx%d", B, Z, Y, X);
    }
    t->B = B, t->Z = Z, t->Y = Y, t->X = X;
    return APT_OK;
}

/* ---- forward and backward ---- */

static apt_nn_axial_train attn_of(apt_nn_train *t, int u)
{
    const nn_unit *nu = &t->units[u].u;
    return (apt_nn_axial_train){.planes = t->a.planes, .heads = t->a.heads, .K = nu->K, .axis = nu->axis,
                            .rel = t->P + nn_uoff(t, u, 0), .sim_w = t->P + nn_uoff(t, u, 1),
                            .sim_b = t->P + nn_uoff(t, u, 2), .sim_rm = t->S + nn_uoff(t, u, 3),
                            .sim_rv = t->S + nn_uoff(t, u, 4), .out_w = t->P + nn_uoff(t, u, 6),
                            .out_b = t->P + nn_uoff(t, u, 7), .out_rm = t->S + nn_uoff(t, u, 8),
                            .out_rv = t->S + nn_uoff(t, u, 9)};
}

static int forward(apt_nn_train *t, apt_error *err)
{
    const struct apt_nn_train_ops *o = t->ops;
    int rc = APT_OK;
    for (int i = 0; !rc && i < t->nn; i++) {
        tnode *n = &t->nodes[i];
        apt_nn_tensor *x = &t->act[n->in].t, *y = &t->act[n->out].t;
        const nn_unit *u = n->unit >= 0 ? &t->units[n->unit].u : NULL;
        switch (n->op) {
        case N_CONV:
            rc = o->conv_fwd(t->ctx, &n->c[0], x, t->P + nn_uoff(t, n->unit, 0), u->k, u->stride, y, err);
            break;
        case N_BN:
            nn_bn_train_fwd(x, t->P + nn_uoff(t, n->unit, 1), t->P + nn_uoff(t, n->unit, 2),
                            t->S + nn_uoff(t, n->unit, 3), t->S + nn_uoff(t, n->unit, 4),
                            n->res >= 0 ? t->act[n->res].t.data : NULL, n->relu, y, n->mean, n->invstd, t->threads);
            break;
        case N_POOL: rc = o->maxpool_fwd(t->ctx, &n->c[0], x, 3, y, err); break;
        case N_UP:
            rc = o->up_fwd(t->ctx, &n->c[0], x, y, err);
            if (!rc && n->res >= 0)
                nn_add(y->data, t->act[n->res].t.data, apt_nn_numel(y));
            break;
        case N_RELU:
            for (size_t k = 0, m = apt_nn_numel(x); k < m; k++)
                y->data[k] = x->data[k] > 0 ? x->data[k] : 0.0f;
            break;
        case N_ATTN: {
            apt_nn_axial_train at = attn_of(t, n->unit);
            rc = apt_nn_axial_train_fwd(&at, x->data, x->n, x->d, x->h, x->w, y->data, n->saved, t->scratch, t->threads,
                                        err);
            break;
        }
        }
    }
    return rc;
}

/* dst gradient += tmp, where tmp holds a freshly computed (overwritten) gradient of the same tensor. */
static void acc_tmp(apt_nn_train *t, int a)
{
    nn_add(t->act[a].g, t->tmp, apt_nn_numel(&t->act[a].t));
}

static int backward(apt_nn_train *t, apt_error *err)
{
    const struct apt_nn_train_ops *o = t->ops;
    int rc = APT_OK;
    for (int i = t->nn - 1; !rc && i >= 0; i--) {
        tnode *n = &t->nodes[i];
        apt_nn_tensor *x = &t->act[n->in].t, *y = &t->act[n->out].t;
        float *gy = t->act[n->out].g;
        apt_nn_tensor gyt = *y, tmp = *x;
        gyt.data = gy, tmp.data = t->tmp;
        const nn_unit *u = n->unit >= 0 ? &t->units[n->unit].u : NULL;
        int need_dx = n->in != 0; /* the network input has no gradient */
        switch (n->op) {
        case N_CONV:
            rc = o->conv_bwd_weights(t->ctx, &n->c[2], x, &gyt, u->k, u->stride, t->G + nn_uoff(t, n->unit, 0), err);
            if (!rc && need_dx)
                rc = o->conv_bwd_data(t->ctx, &n->c[1], &gyt, t->P + nn_uoff(t, n->unit, 0), u->k, u->stride, &tmp,
                                      err);
            if (!rc && need_dx)
                acc_tmp(t, n->in);
            break;
        case N_BN: {
            if (n->relu)
                nn_relu_mask(y->data, gy, apt_nn_numel(y));
            if (n->res >= 0)
                nn_add(t->act[n->res].g, gy, apt_nn_numel(y));
            apt_nn_tensor gx = *x;
            gx.data = t->act[n->in].g;
            nn_bn_train_bwd(x, t->P + nn_uoff(t, n->unit, 1), n->mean, n->invstd, gy, &gx,
                            t->G + nn_uoff(t, n->unit, 1), t->G + nn_uoff(t, n->unit, 2), t->threads);
            break;
        }
        case N_POOL:
            rc = o->maxpool_bwd(t->ctx, &n->c[1], &n->c[0], &gyt, 3, &tmp, err);
            if (!rc)
                acc_tmp(t, n->in);
            break;
        case N_UP:
            if (n->res >= 0)
                nn_add(t->act[n->res].g, gy, apt_nn_numel(y));
            rc = o->up_bwd(t->ctx, &n->c[1], &gyt, &tmp, err);
            if (!rc)
                acc_tmp(t, n->in);
            break;
        case N_RELU:
            nn_relu_mask(y->data, gy, apt_nn_numel(y));
            nn_add(t->act[n->in].g, gy, apt_nn_numel(y));
            break;
        case N_ATTN: {
            apt_nn_axial_train at = attn_of(t, n->unit);
            rc = apt_nn_axial_train_bwd(&at, x->data, x->n, x->d, x->h, x->w, n->saved, gy, t->tmp,
                                        t->G + nn_uoff(t, n->unit, 0), t->G + nn_uoff(t, n->unit, 1),
                                        t->G + nn_uoff(t, n->unit, 2), t->G + nn_uoff(t, n->unit, 6),
                                        t->G + nn_uoff(t, n->unit, 7), t->scratch, t->threads, err);
            if (!rc)
                acc_tmp(t, n->in);
            break;
        }
        }
    }
    return rc;
}

int apt_nn_train_step(apt_nn_train *t, const float *x, const float *y, int B, int Z, int Y, int X, double lr,
                      double *loss, apt_error *err)
{
    if (B < 1 || B > 4096)
        return apt_err(err, APT_EINVAL, "batch %d: must be in [1, 4096]", B);
    if (!(lr >= 0) || lr > 1)
        return apt_err(err, APT_EINVAL, "learning rate %g: must be in [0, 1]", lr);
    int rc = plan(t, B, Z, Y, X, err);
    if (rc)
        return rc;
    memcpy(t->act[0].t.data, x, apt_nn_numel(&t->act[0].t) * sizeof(float));
    if ((rc = forward(t, err)))
        return rc;
    for (int i = 0; i < t->nact; i++)
        memset(t->act[i].g, 0, apt_nn_numel(&t->act[i].t) * sizeof(float));
    memset(t->G, 0, t->np * sizeof(float));
    tact *out = &t->act[t->nact - 1];
    size_t per = apt_nn_numel(&out->t) / (size_t)B;
    *loss = nn_npcc(out->t.data, y, B, per, out->g);
    if ((rc = backward(t, err)))
        return rc;
    t->step++;
    nn_adam(t->P, t->G, t->M, t->V, t->np, t->step, lr, &t->adam);
    for (size_t i = 0; i < t->nc; i++)
        t->C[i]++;
    return APT_OK;
}
