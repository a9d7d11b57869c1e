/* model.c - the APT network of docs/NETWORK.md built from __metadata__["aptomo.arch"]: the arch is parsed and its
 * constraints checked, every state_dict tensor is looked up by name with its exact shape (file tensors the arch does
 * not name are refused too, as load_state_dict(strict=True) would), BatchNorms are folded into the preceding conv.
 * A forward is planned once per input shape (one arena, primitives cached per op), re-executed without allocation. */
#include "aptomo/nn.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/backend.h"
#include "aptomo/gpu.h"
#include "nn/arch.h"
#include "nn/nn_int.h"


typedef struct nn_block {
    nn_conv c1, c2, c3, proj;
} nn_block;

/* Activations of one planned input shape (all in one arena). */
typedef struct nn_plan {
    int B, Z, Y, X;
    void *mem;
    apt_nn_tensor xin, stem, pool, a[3], b[3], proj[3], o[3][2], ain, qkv, t1, t2, sc, aout, d[3], u[3], y;
} nn_plan;

struct apt_nn_model {
    const struct apt_nn_ops *ops;
    void *ctx;
    nn_loader L;
    nn_arch a;
    nn_conv stem_conv, ax_in, ax_out, ax_sc, dec_conv[3], head;
    nn_block *blk[3];
    nn_attn attn[3];
    apt_nn_prim *pool_prim, *up_prim[3];
    char *arch_json;
    char id[17];
    double mean, std, out_scale, out_offset;
    nn_plan plan;
};

/* ---- loader helpers (nn_int.h) ---- */

int nn_need(nn_loader *L, const char *name, int rank, const int64_t *shape, const float **out, apt_error *err)
{
    const apt_st_tensor *t = apt_st_find(L->st, name);
    if (!t)
        return apt_err(err, APT_EINVAL, "tensor %s: missing", name);
    L->used[t - apt_st_at(L->st, 0)] = 1;
    if (t->dtype != APT_ST_F32)
        return apt_err(err, APT_EINVAL, "tensor %s: dtype I64, expected F32", name);
    int ok = t->rank == rank;
    for (int i = 0; ok && i < rank; i++)
        ok = t->shape[i] == shape[i];
    if (!ok) {
        char got[160] = "", want[160] = "";
        for (int i = 0; i < t->rank; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        for (int i = 0; i < rank; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? ", " : "", (long long)shape[i]);
        return apt_err(err, APT_EINVAL, "tensor %s: shape [%s], the arch needs [%s]", name, got, want);
    }
    if ((uintptr_t)t->data % sizeof(float))
        return apt_err(err, APT_EINVAL, "tensor %s: data not 4-byte aligned in the file", name);
    *out = t->data;
    return APT_OK;
}

int nn_bn_fold(nn_loader *L, const char *prefix, int C, float *a, float *b, apt_error *err)
{
    static const char *const part[4] = {"weight", "bias", "running_mean", "running_var"};
    const float *p[4];
    char name[256];
    int64_t shape[1] = {C};
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.%s", prefix, part[i]);
        int rc = nn_need(L, name, 1, shape, &p[i], err);
        if (rc)
            return rc;
    }
    snprintf(name, sizeof name, "%s.num_batches_tracked", prefix); /* optional, unused in eval mode */
    const apt_st_tensor *nb = apt_st_find(L->st, name);
    if (nb) {
        L->used[nb - apt_st_at(L->st, 0)] = 1;
        if (nb->dtype != APT_ST_I64 || nb->count != 1)
            return apt_err(err, APT_EINVAL, "tensor %s: expected one I64", name);
    }
    for (int c = 0; c < C; c++) {
        double v = (double)p[3][c] + APT_NN_BN_EPS;
        if (!(v > 0) || !isfinite(p[0][c]) || !isfinite(p[1][c]) || !isfinite(p[2][c]))
            return apt_err(err, APT_EINVAL, "tensor %s.running_var (or its weight/bias/mean): channel %d invalid",
                           prefix, c);
        double s = (double)p[0][c] / sqrt(v);
        a[c] = (float)s;
        b[c] = (float)((double)p[1][c] - (double)p[2][c] * s);
    }
    return APT_OK;
}

int nn_upload(nn_loader *L, const float *host, size_t n, float **dev, apt_error *err)
{
    if (L->nowned == L->capowned) {
        size_t nc = L->capowned ? 2 * L->capowned : 64;
        void **no = realloc(L->owned, nc * sizeof(*no));
        if (!no)
            return apt_err(err, APT_ENOMEM, "out of memory");
        L->owned = no, L->capowned = nc;
    }
    void *p = L->ops->alloc(L->ctx, n * sizeof(float));
    if (!p)
        return apt_err(err, APT_ENOMEM, "out of backend memory for %zu weights", n);
    L->owned[L->nowned++] = p;
    *dev = p;
    return L->ops->upload(L->ctx, p, host, n * sizeof(float), err);
}

int nn_conv_load(nn_loader *L, const char *wname, const char *bnname, int cout, int cin, int k, int rank,
                 const int *stride, nn_conv *c, apt_error *err)
{
    int64_t shape[5] = {cout, cin, k, k, k};
    const float *w;
    int rc = nn_need(L, wname, rank, shape, &w, err);
    size_t per = (size_t)cin * k * k * k;
    float *h = rc ? NULL : malloc(sizeof(float) * ((size_t)cout * per + 2 * (size_t)cout));
    if (!rc && !h)
        rc = apt_err(err, APT_ENOMEM, "out of memory");
    float *a = h ? h + (size_t)cout * per : NULL, *b = a ? a + cout : NULL;
    if (!rc)
        rc = nn_bn_fold(L, bnname, cout, a, b, err);
    for (int o = 0; !rc && o < cout; o++)
        for (size_t i = 0; i < per; i++)
            h[(size_t)o * per + i] = w[(size_t)o * per + i] * a[o];
    if (!rc)
        rc = nn_upload(L, h, (size_t)cout * per, &c->w, err);
    if (!rc)
        rc = nn_upload(L, b, (size_t)cout, &c->b, err);
    free(h);
    c->cin = cin, c->cout = cout, c->k = k;
    for (int i = 0; i < 3; i++)
        c->stride[i] = stride[i];
    return rc;
}

static int parse_input(apt_nn_model *m, const char *text, apt_error *err)
{
    m->mean = 0, m->std = 1;
    if (!text)
        return APT_OK;
    json_error_t je;
    json_t *a = json_loads(text, 0, &je), *mu = json_object_get(a, "mean"), *sd = json_object_get(a, "std");
    int rc = APT_OK;
    if (!json_is_object(a) || (mu && !json_is_number(mu)) || (sd && !json_is_number(sd)))
        rc = apt_err(err, APT_EINVAL, "__metadata__[\"aptomo.input\"]: expected {\"mean\": number, \"std\": number}");
    else {
        m->mean = mu ? json_number_value(mu) : 0;
        m->std = sd ? json_number_value(sd) : 1;
        if (!isfinite(m->mean) || !(m->std > 0) || !isfinite(m->std))
            rc = apt_err(err, APT_EINVAL, "__metadata__[\"aptomo.input\"]: mean must be finite and std > 0");
    }
    json_decref(a);
    return rc;
}

/* __metadata__["aptomo.output"] = {"scale": s, "offset": o}: identity when absent. */
static int parse_output(apt_nn_model *m, const char *text, apt_error *err)
{
    m->out_scale = 1, m->out_offset = 0;
    if (!text)
        return APT_OK;
    json_error_t je;
    json_t *a = json_loads(text, 0, &je), *sc = json_object_get(a, "scale"), *of = json_object_get(a, "offset");
    int rc = APT_OK;
    if (!json_is_object(a) || !json_is_number(sc) || !json_is_number(of) || !isfinite(json_number_value(sc)) ||
        !isfinite(json_number_value(of)) || json_number_value(sc) == 0)
        rc = apt_err(err, APT_EINVAL,
                     "__metadata__[\"aptomo.output\"]: expected {\"scale\": finite non-zero, \"offset\": finite}");
    else
        m->out_scale = json_number_value(sc), m->out_offset = json_number_value(of);
    json_decref(a);
    return rc;
}

/* The units of arch.c's table, consumed in forward order. */
typedef struct unit_cursor {
    const nn_unit *u;
    int i, n;
} unit_cursor;

static int load_conv(apt_nn_model *m, unit_cursor *c, nn_conv *conv, apt_error *err)
{
    const nn_unit *u = c->i < c->n ? &c->u[c->i++] : NULL;
    if (!u || u->kind != NN_UNIT_CONV)
        return apt_err(err, APT_EINVAL, "internal: the layer table and the model disagree");
    return nn_conv_load(&m->L, u->name, u->bn, u->cout, u->cin, u->k, u->rank, u->stride, conv, err);
}

static int load_weights(apt_nn_model *m, apt_error *err)
{
    nn_loader *L = &m->L;
    unit_cursor c = {0};
    nn_unit *units = NULL;
    int rc = nn_arch_units(&m->a, &units, &c.n, err);
    c.u = units;
    if (!rc)
        rc = load_conv(m, &c, &m->stem_conv, err);
    for (int s = 0; !rc && s < 3; s++) {
        if (!(m->blk[s] = calloc((size_t)m->a.st[s].blocks, sizeof(nn_block))))
            rc = apt_err(err, APT_ENOMEM, "out of memory");
        for (int k = 0; !rc && k < m->a.st[s].blocks; k++) {
            nn_block *bl = &m->blk[s][k];
            rc = load_conv(m, &c, &bl->c1, err);
            if (!rc)
                rc = load_conv(m, &c, &bl->c2, err);
            if (!rc)
                rc = load_conv(m, &c, &bl->c3, err);
            if (!rc && k == 0)
                rc = load_conv(m, &c, &bl->proj, err);
        }
    }
    if (!rc)
        rc = load_conv(m, &c, &m->ax_in, err);
    for (int a = 0; !rc && a < 3; a++) {
        rc = load_conv(m, &c, &m->attn[a].qkv, err);
        const nn_unit *u = &units[c.i++];
        if (!rc)
            rc = nn_attn_load(L, u->name, m->a.planes, m->a.heads, u->K, u->axis, &m->attn[a], err);
    }
    if (!rc)
        rc = load_conv(m, &c, &m->ax_out, err);
    if (!rc)
        rc = load_conv(m, &c, &m->ax_sc, err);
    for (int i = 0; !rc && i < 3; i++)
        rc = load_conv(m, &c, &m->dec_conv[i], err);
    if (!rc)
        rc = load_conv(m, &c, &m->head, err);
    free(units);
    for (size_t i = 0; !rc && i < apt_st_count(L->st); i++)
        if (!L->used[i])
            rc = apt_err(err, APT_EINVAL, "tensor %s: not part of the arch (unexpected key)",
                         apt_st_at(L->st, i)->name);
    return rc;
}

/* ---- lifetime ---- */

static uint64_t fnv1a64(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

static void conv_free(apt_nn_model *m, nn_conv *c)
{
    if (m->ops && c->prim)
        m->ops->prim_free(m->ctx, c->prim);
    c->prim = NULL;
}

static void plan_free(apt_nn_model *m)
{
    if (m->plan.mem)
        m->ops->free(m->ctx, m->plan.mem);
    memset(&m->plan, 0, sizeof(m->plan));
}

void apt_nn_destroy(apt_nn_model **mp)
{
    if (!mp || !*mp)
        return;
    apt_nn_model *m = *mp;
    if (m->ops) {
        plan_free(m);
        conv_free(m, &m->stem_conv), conv_free(m, &m->ax_in), conv_free(m, &m->ax_out), conv_free(m, &m->ax_sc);
        conv_free(m, &m->head);
        for (int i = 0; i < 3; i++) {
            conv_free(m, &m->dec_conv[i]), conv_free(m, &m->attn[i].qkv);
            m->ops->prim_free(m->ctx, m->attn[i].prim);
            m->ops->prim_free(m->ctx, m->up_prim[i]);
            for (int k = 0; m->blk[i] && k < m->a.st[i].blocks; k++) {
                nn_block *b = &m->blk[i][k];
                conv_free(m, &b->c1), conv_free(m, &b->c2), conv_free(m, &b->c3), conv_free(m, &b->proj);
            }
        }
        m->ops->prim_free(m->ctx, m->pool_prim);
        for (size_t i = 0; i < m->L.nowned; i++)
            m->ops->free(m->ctx, m->L.owned[i]);
        m->ops->fini(m->ctx);
    }
    for (int i = 0; i < 3; i++)
        free(m->blk[i]);
    free(m->L.owned);
    free(m->L.used);
    apt_st_close(&m->L.st);
    free(m->arch_json);
    free(m);
    *mp = NULL;
}

int apt_nn_load_backend(const char *path, int threads, apt_backend backend, apt_nn_model **out, apt_error *err)
{
    *out = NULL;
    apt_nn_model *m = calloc(1, sizeof(*m));
    if (!m)
        return apt_err(err, APT_ENOMEM, "out of memory");
    int rc = apt_st_open(path, &m->L.st, err);
    const char *arch = rc ? NULL : apt_st_meta(m->L.st, "aptomo.arch");
    if (!rc && !arch)
        rc = apt_err(err, APT_EINVAL, "__metadata__[\"aptomo.arch\"] missing");
    if (!rc && !(m->arch_json = strdup(arch)))
        rc = apt_err(err, APT_ENOMEM, "out of memory");
    if (!rc)
        rc = nn_arch_parse(arch, &m->a, err);
    if (!rc)
        rc = parse_input(m, apt_st_meta(m->L.st, "aptomo.input"), err);
    if (!rc)
        rc = parse_output(m, apt_st_meta(m->L.st, "aptomo.output"), err);
    if (!rc) {
        size_t n;
        const uint8_t *bytes = apt_st_bytes(m->L.st, &n);
        snprintf(m->id, sizeof m->id, "%016llx", (unsigned long long)fnv1a64(bytes, n));
        if (!(m->L.used = calloc(apt_st_count(m->L.st) + 1, 1)))
            rc = apt_err(err, APT_ENOMEM, "out of memory");
    }
    if (!rc) {
        const struct apt_nn_ops *gpu = apt_nn_cudnn_ops();
        apt_backend got;
        if (!(rc = apt_backend_resolve(backend, "nn", gpu != NULL, &got, err)))
            m->ops = got == APT_BACKEND_GPU ? gpu : &apt_nn_dnnl_ops;
    }
    if (!rc) {
        apt_error e = {0};
        if ((rc = m->ops->init(&m->ctx, threads, &e)) && m->ops != &apt_nn_dnnl_ops &&
            backend == APT_BACKEND_AUTO) { /* cuDNN/cuBLAS would not start: oneDNN will */
            m->ops->fini(m->ctx), m->ctx = NULL;
            apt_backend_fallback("nn", e.msg);
            m->ops = &apt_nn_dnnl_ops;
            rc = m->ops->init(&m->ctx, threads, &e);
        }
        if (rc) {
            m->ops->fini(m->ctx), m->ops = NULL;
            apt_err(err, rc, "%s", e.msg);
        }
    }
    m->L.ops = m->ops, m->L.ctx = m->ctx;
    if (!rc)
        rc = load_weights(m, err);
    if (rc) {
        if (m->L.st)
            apt_err_prefix(err, rc, "%s: ", path);
        apt_nn_destroy(&m);
        return rc;
    }
    *out = m;
    return APT_OK;
}

int apt_nn_load(const char *path, int threads, apt_nn_model **out, apt_error *err)
{
    return apt_nn_load_backend(path, threads, APT_BACKEND_AUTO, out, err);
}

int apt_nn_input_norm(const apt_nn_model *m, double *mean, double *std)
{
    *mean = m->mean, *std = m->std;
    return APT_OK;
}

void apt_nn_output_apply(const apt_nn_model *m, float *v, size_t n)
{
    if (m->out_scale == 1 && m->out_offset == 0)
        return;
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(m->out_scale * v[i] + m->out_offset);
}

const char *apt_nn_weights_id(const apt_nn_model *m) { return m->id; }
const char *apt_nn_arch_json(const apt_nn_model *m) { return m->arch_json; }
const char *apt_nn_backend_name(const apt_nn_model *m) { return m->ops->name; }

apt_backend apt_nn_backend(const apt_nn_model *m)
{
    return m->ops == &apt_nn_dnnl_ops ? APT_BACKEND_CPU : APT_BACKEND_GPU;
}

/* ---- shapes and plan ---- */

int apt_nn_output_shape(const apt_nn_model *m, int Z, int Y, int X, int *oz, int *oy, int *ox, apt_error *err)
{
    int S[4][3];
    int rc = nn_arch_shapes(&m->a, Z, Y, X, S, err);
    if (rc)
        return rc;
    *oz = 2 * S[1][0], *oy = 2 * S[1][1], *ox = 2 * S[1][2];
    return APT_OK;
}

static void plan_layout(apt_nn_model *m, apt_nn_arena *A, int B, int Z, int Y, int X, int S[4][3])
{
    nn_plan *p = &m->plan;
#define T(t, c, s) apt_nn_arena_tensor(A, &(t), B, (c), (s)[0], (s)[1], (s)[2])
    int in[3] = {Z, Y, X};
    T(p->xin, 1, in);
    T(p->stem, m->a.stem, S[0]);
    T(p->pool, m->a.stem, S[0]);
    for (int s = 0; s < 3; s++) {
        T(p->a[s], m->a.st[s].f0, S[s + 1]);
        T(p->b[s], m->a.st[s].f0, S[s + 1]);
        T(p->proj[s], m->a.st[s].f1, S[s + 1]);
        T(p->o[s][0], m->a.st[s].f1, S[s + 1]);
        T(p->o[s][1], m->a.st[s].f1, S[s + 1]);
    }
    T(p->ain, m->a.planes, S[3]);
    T(p->qkv, 2 * m->a.planes, S[3]);
    T(p->t1, m->a.planes, S[3]);
    T(p->t2, m->a.planes, S[3]);
    T(p->sc, m->a.aout, S[3]);
    T(p->aout, m->a.aout, S[3]);
    int up[3] = {2 * S[1][0], 2 * S[1][1], 2 * S[1][2]};
    for (int i = 0; i < 3; i++) {
        T(p->d[i], m->a.dec[i], S[3 - i]);
        T(p->u[i], m->a.dec[i], i < 2 ? S[2 - i] : up);
    }
    T(p->y, 1, up);
#undef T
}

static int plan(apt_nn_model *m, int B, int Z, int Y, int X, apt_error *err)
{
    int S[4][3];
    int rc = nn_arch_shapes(&m->a, Z, Y, X, S, err);
    if (rc)
        return rc;
    if (m->plan.mem && m->plan.B == B && m->plan.Z == Z && m->plan.Y == Y && m->plan.X == X)
        return APT_OK;
    plan_free(m);
    apt_nn_arena A = {0};
    plan_layout(m, &A, B, Z, Y, X, S); /* counting pass */
    if (!(A.base = m->ops->alloc(m->ctx, A.used)))
        return apt_err(err, APT_ENOMEM, "out of memory: %zu bytes of activations for %d x %dx%dx%d", A.used, B, Z,
                       Y, X);
    A.size = A.used, A.used = 0;
    plan_layout(m, &A, B, Z, Y, X, S);
    m->plan.mem = A.base;
    m->plan.B = B, m->plan.Z = Z, m->plan.Y = Y, m->plan.X = X;
    return APT_OK;
}

static int conv(apt_nn_model *m, nn_conv *c, const apt_nn_tensor *x, const apt_nn_tensor *res, int relu,
                apt_nn_tensor *y, apt_error *err)
{
    return m->ops->conv3d(m->ctx, &c->prim, x, c->w, c->b, c->k, c->stride, res, relu, y, err);
}

int apt_nn_forward(apt_nn_model *m, const float *x, int B, int Z, int Y, int X, float *y, apt_error *err)
{
    if (B < 1 || B > 65536)
        return apt_err(err, APT_EINVAL, "batch %d: must be in [1, 65536]", B);
    int rc = plan(m, B, Z, Y, X, err);
    if (rc)
        return rc;
    nn_plan *p = &m->plan;
    const struct apt_nn_ops *o = m->ops;
    rc = o->upload(m->ctx, p->xin.data, x, apt_nn_numel(&p->xin) * sizeof(float), err);
    if (!rc)
        rc = conv(m, &m->stem_conv, &p->xin, NULL, 1, &p->stem, err);
    if (!rc)
        rc = o->maxpool3d(m->ctx, &m->pool_prim, &p->stem, 3, &p->pool, err);
    const apt_nn_tensor *cur = &p->pool;
    for (int s = 0; !rc && s < 3; s++)
        for (int k = 0; !rc && k < m->a.st[s].blocks; k++) {
            nn_block *bl = &m->blk[s][k];
            apt_nn_tensor *dst = &p->o[s][k & 1];
            rc = conv(m, &bl->c1, cur, NULL, 1, &p->a[s], err);
            if (!rc)
                rc = conv(m, &bl->c2, &p->a[s], NULL, 1, &p->b[s], err);
            if (!rc && k == 0)
                rc = conv(m, &bl->proj, cur, NULL, 0, &p->proj[s], err);
            if (!rc)
                rc = conv(m, &bl->c3, &p->b[s], k == 0 ? &p->proj[s] : cur, 1, dst, err);
            cur = dst;
        }
    const apt_nn_tensor *enc_out = cur;
    if (!rc)
        rc = conv(m, &m->ax_in, enc_out, NULL, 1, &p->ain, err);
    apt_nn_tensor *ain[3] = {&p->ain, &p->t1, &p->t2}, *aout[3] = {&p->t1, &p->t2, &p->t1};
    for (int a = 0; !rc && a < 3; a++) {
        rc = conv(m, &m->attn[a].qkv, ain[a], NULL, 0, &p->qkv, err);
        if (!rc)
            rc = o->axial(m->ctx, &m->attn[a].prim, &p->qkv, &m->attn[a].p, a == 2, aout[a], err);
    }
    if (!rc)
        rc = conv(m, &m->ax_sc, enc_out, NULL, 0, &p->sc, err);
    if (!rc)
        rc = conv(m, &m->ax_out, &p->t1, &p->sc, 1, &p->aout, err);
    const apt_nn_tensor *skip[3] = {&p->o[1][(m->a.st[1].blocks - 1) & 1], &p->o[0][(m->a.st[0].blocks - 1) & 1], NULL};
    cur = &p->aout;
    for (int i = 0; !rc && i < 3; i++) {
        rc = conv(m, &m->dec_conv[i], cur, NULL, 1, &p->d[i], err);
        if (!rc)
            rc = o->upsample2(m->ctx, &m->up_prim[i], &p->d[i], skip[i], &p->u[i], err);
        cur = &p->u[i];
    }
    if (!rc)
        rc = conv(m, &m->head, cur, NULL, 1, &p->y, err);
    if (!rc)
        rc = o->download(m->ctx, y, p->y.data, apt_nn_numel(&p->y) * sizeof(float), err);
    return rc;
}
