/* arch.c - __metadata__["aptomo.arch"] parsed and checked, and the one table of layers and state_dict names
 * (arch.h) that loading, inference, training and writing share. */
#include "nn/arch.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NN_MAX_CH 16384
#define NN_MAX_DIM 65536


static int arch_int(json_t *o, const char *key, const char *where, int lo, int hi, int *out, apt_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return apt_err(err, APT_EINVAL, "aptomo.arch: %s%s must be an integer in [%d, %d]", where, key, lo, hi);
    *out = (int)json_integer_value(v);
    return APT_OK;
}

static int arch_ints(json_t *o, const char *key, int n, int lo, int hi, int *out, apt_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_array(v) || (int)json_array_size(v) != n)
        return apt_err(err, APT_EINVAL, "aptomo.arch: %s must be a list of %d integers", key, n);
    for (int i = 0; i < n; i++) {
        json_t *e = json_array_get(v, (size_t)i);
        if (!json_is_integer(e) || json_integer_value(e) < lo || json_integer_value(e) > hi)
            return apt_err(err, APT_EINVAL, "aptomo.arch: %s[%d] must be an integer in [%d, %d]", key, i, lo, hi);
        out[i] = (int)json_integer_value(e);
    }
    return APT_OK;
}

int nn_arch_parse(const char *text, nn_arch *m, apt_error *err)
{
    json_error_t je;
    json_t *a = json_loads(text, 0, &je);
    if (!json_is_object(a)) {
        json_decref(a);
        return apt_err(err, APT_EINVAL, "__metadata__[\"aptomo.arch\"]: not a JSON object (%s)", je.text);
    }
    int rc = arch_int(a, "stem", "", 1, NN_MAX_CH, &m->stem, err);
    if (!rc)
        rc = arch_ints(a, "stem_stride", 3, 1, 8, m->stem_stride, err);
    json_t *st = json_object_get(a, "stages"), *ax = json_object_get(a, "axial");
    if (!rc && (!json_is_array(st) || json_array_size(st) != 3))
        rc = apt_err(err, APT_EINVAL, "aptomo.arch: stages must be a list of 3 objects");
    for (int s = 0; !rc && s < 3; s++) {
        json_t *o = json_array_get(st, (size_t)s);
        char where[32];
        snprintf(where, sizeof where, "stages[%d].", s);
        if (!json_is_object(o))
            rc = apt_err(err, APT_EINVAL, "aptomo.arch: stages[%d] is not an object", s);
        if (!rc)
            rc = arch_int(o, "f0", where, 1, NN_MAX_CH, &m->st[s].f0, err);
        if (!rc)
            rc = arch_int(o, "f1", where, 1, NN_MAX_CH, &m->st[s].f1, err);
        if (!rc)
            rc = arch_int(o, "blocks", where, 1, 256, &m->st[s].blocks, err);
        if (!rc)
            rc = arch_int(o, "stride", where, 1, 8, &m->st[s].stride, err);
    }
    if (!rc && !json_is_object(ax))
        rc = apt_err(err, APT_EINVAL, "aptomo.arch: axial must be an object");
    if (!rc)
        rc = arch_int(ax, "planes", "axial.", 2, NN_MAX_CH, &m->planes, err);
    if (!rc)
        rc = arch_int(ax, "heads", "axial.", 1, NN_MAX_CH, &m->heads, err);
    if (!rc)
        rc = arch_int(ax, "out", "axial.", 1, NN_MAX_CH, &m->aout, err);
    if (!rc)
        rc = arch_ints(ax, "size", 3, 1, 4096, m->size, err);
    if (!rc)
        rc = arch_ints(a, "decoder", 3, 1, NN_MAX_CH, m->dec, err);
    if (!rc && m->dec[0] != m->st[1].f1)
        rc = apt_err(err, APT_EINVAL, "aptomo.arch: decoder[0] (%d) must equal stages[1].f1 (%d): it adds that skip",
                     m->dec[0], m->st[1].f1);
    if (!rc && m->dec[1] != m->st[0].f1)
        rc = apt_err(err, APT_EINVAL, "aptomo.arch: decoder[1] (%d) must equal stages[0].f1 (%d): it adds that skip",
                     m->dec[1], m->st[0].f1);
    if (!rc && m->planes % (2 * m->heads))
        rc = apt_err(err, APT_EINVAL, "aptomo.arch: axial.planes (%d) must be a multiple of 2*heads (%d)", m->planes,
                     2 * m->heads);
    for (int s = 1; !rc && s < 3; s++)
        if (m->st[s].stride != 2)
            rc = apt_err(err, APT_EINVAL,
                         "aptomo.arch: stages[%d].stride must be 2: the decoder upsamples by 2 onto that skip", s);
    json_decref(a);
    return rc;
}

/* ---- the table ---- */

typedef struct unit_list {
    nn_unit *u;
    int n, cap;
} unit_list;

static nn_unit *unit_add(unit_list *l, nn_unit_kind kind)
{
    if (l->n == l->cap) {
        int nc = l->cap ? 2 * l->cap : 64;
        nn_unit *nu = realloc(l->u, (size_t)nc * sizeof(*nu));
        if (!nu)
            return NULL;
        l->u = nu, l->cap = nc;
    }
    nn_unit *u = &l->u[l->n++];
    memset(u, 0, sizeof(*u));
    u->kind = kind;
    u->stride[0] = u->stride[1] = u->stride[2] = 1;
    u->k = 1, u->rank = 5;
    return u;
}

static nn_unit *conv_add(unit_list *l, const char *w, const char *bn, int cout, int cin, int k, int stride)
{
    nn_unit *u = unit_add(l, NN_UNIT_CONV);
    if (u) {
        snprintf(u->name, sizeof u->name, "%s", w);
        snprintf(u->bn, sizeof u->bn, "%s", bn);
        u->cout = cout, u->cin = cin, u->k = k;
        u->stride[0] = u->stride[1] = u->stride[2] = stride;
    }
    return u;
}

int nn_arch_units(const nn_arch *a, nn_unit **units, int *n, apt_error *err)
{
    unit_list l = {0};
    char w[48], b[48];
    int ok = 1, in = a->stem;
    nn_unit *u = conv_add(&l, "stem.conv.weight", "stem.bn", a->stem, 1, 7, 1);
    if ((ok = u != NULL))
        memcpy(u->stride, a->stem_stride, sizeof u->stride);
    for (int s = 0; ok && s < 3; s++) {
        const nn_stage_arch *st = &a->st[s];
        for (int k = 0; ok && k < st->blocks; k++) {
            static const char *const cn[4] = {"conv1", "conv2", "conv3", "proj"},
                              *const bn[4] = {"bn1", "bn2", "bn3", "proj_bn"};
            int cin = k ? st->f1 : in;
            int co[4] = {st->f0, st->f0, st->f1, st->f1}, ci[4] = {cin, st->f0, st->f0, cin};
            int sd[4] = {k ? 1 : st->stride, 1, 1, st->stride};
            for (int c = 0; ok && c < (k ? 3 : 4); c++) {
                snprintf(w, sizeof w, "enc%d.%d.%s.weight", s, k, cn[c]);
                snprintf(b, sizeof b, "enc%d.%d.%s", s, k, bn[c]);
                ok = conv_add(&l, w, b, co[c], ci[c], 3, sd[c]) != NULL;
            }
        }
        in = st->f1;
    }
    ok = ok && conv_add(&l, "axial.conv_in.weight", "axial.bn_in", a->planes, in, 1, 1);
    static const char ax[3] = {'z', 'y', 'x'};
    for (int i = 0; ok && i < 3; i++) {
        snprintf(w, sizeof w, "axial.attn_%c.qkv.weight", ax[i]);
        snprintf(b, sizeof b, "axial.attn_%c.qkv_bn", ax[i]);
        if ((ok = (u = conv_add(&l, w, b, 2 * a->planes, a->planes, 1, 1)) != NULL))
            u->rank = 3;
        if (ok && (ok = (u = unit_add(&l, NN_UNIT_ATTN)) != NULL)) {
            snprintf(u->name, sizeof u->name, "axial.attn_%c", ax[i]);
            u->cout = u->cin = a->planes;
            u->axis = i, u->K = a->size[i];
        }
    }
    ok = ok && conv_add(&l, "axial.conv_out.weight", "axial.bn_out", a->aout, a->planes, 1, 1);
    ok = ok && conv_add(&l, "axial.shortcut.weight", "axial.shortcut_bn", a->aout, in, 1, 1);
    in = a->aout;
    for (int i = 0; ok && i < 3; i++) {
        snprintf(w, sizeof w, "dec%d.conv.weight", i);
        snprintf(b, sizeof b, "dec%d.bn", i);
        ok = conv_add(&l, w, b, a->dec[i], in, 3, 1) != NULL;
        in = a->dec[i];
    }
    ok = ok && conv_add(&l, "head.conv.weight", "head.bn", 1, in, 3, 1);
    if (!ok) {
        free(l.u);
        return apt_err(err, APT_ENOMEM, "out of memory");
    }
    *units = l.u, *n = l.n;
    return APT_OK;
}

static int emit_bn(const char *prefix, long long C, apt_nn_tensor_cb cb, void *user)
{
    static const char *const part[5] = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"};
    char name[256];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "%s.%s", prefix, part[i]);
        int rc = cb(name, (apt_nn_kind)(APT_NN_BN_WEIGHT + i), i < 4 ? 1 : 0, &C, user);
        if (rc)
            return rc;
    }
    return APT_OK;
}

const char *const nn_attn_part[3] = {"relative", "sim_bn", "out_bn"};

int nn_unit_tensors(const nn_unit *u, const nn_arch *a, apt_nn_tensor_cb cb, void *user)
{
    char name[128];
    int rc;
    if (u->kind == NN_UNIT_CONV) {
        long long shape[5] = {u->cout, u->cin, u->k, u->k, u->k};
        if ((rc = cb(u->name, APT_NN_CONV, u->rank, shape, user)))
            return rc;
        return emit_bn(u->bn, u->cout, cb, user);
    }
    long long gp = a->planes / a->heads, rs[2] = {2 * gp, 2 * (long long)u->K - 1};
    snprintf(name, sizeof name, "%s.%s", u->name, nn_attn_part[0]);
    if ((rc = cb(name, APT_NN_RELATIVE, 2, rs, user)))
        return rc;
    snprintf(name, sizeof name, "%s.%s", u->name, nn_attn_part[1]);
    if ((rc = emit_bn(name, 3 * (long long)a->heads, cb, user)))
        return rc;
    snprintf(name, sizeof name, "%s.%s", u->name, nn_attn_part[2]);
    return emit_bn(name, 2 * (long long)a->planes, cb, user);
}

int apt_nn_arch_tensors(const char *arch_json, apt_nn_tensor_cb cb, void *user, apt_error *err)
{
    nn_arch a;
    nn_unit *u = NULL;
    int n = 0;
    int rc = nn_arch_parse(arch_json, &a, err);
    if (!rc)
        rc = nn_arch_units(&a, &u, &n, err);
    for (int i = 0; !rc && i < n; i++)
        rc = nn_unit_tensors(&u[i], &a, cb, user);
    free(u);
    return rc;
}

/* Spatial size after the stem (S[0]) and after each stage (S[1..3]); checks every stride divides. */
int nn_arch_shapes(const nn_arch *m, int Z, int Y, int X, int S[4][3], apt_error *err)
{
    static const char ax[3] = {'Z', 'Y', 'X'};
    int in[3] = {Z, Y, X};
    for (int i = 0; i < 3; i++) {
        if (in[i] < 1 || in[i] > NN_MAX_DIM)
            return apt_err(err, APT_EINVAL, "patch %c = %d: must be in [1, %d]", ax[i], in[i], NN_MAX_DIM);
        if (in[i] % m->stem_stride[i])
            return apt_err(err, APT_EINVAL, "patch %c = %d does not divide by the stem stride %d", ax[i], in[i],
                           m->stem_stride[i]);
        S[0][i] = in[i] / m->stem_stride[i];
        for (int s = 0; s < 3; s++) {
            int prev = S[s][i], str = m->st[s].stride;
            if (prev % str) {
                int need = m->stem_stride[i];
                for (int t = 0; t < 3; t++)
                    need *= m->st[t].stride;
                return apt_err(err, APT_EINVAL,
                               "patch %c = %d does not divide through the strides (stage %d: %d not divisible by %d); "
                               "%c must be a multiple of %d so decoder outputs and skips line up",
                               ax[i], in[i], s, prev, str, ax[i], need);
            }
            S[s + 1][i] = prev / str;
        }
    }
    if (S[3][0] != m->size[0] || S[3][1] != m->size[1] || S[3][2] != m->size[2])
        return apt_err(err, APT_EINVAL,
                       "patch %dx%dx%d reaches the axial block as %dx%dx%d but axial.size is [%d, %d, %d] (the "
                       "relative embeddings are that long): use a patch of %dx%dx%d",
                       Z, Y, X, S[3][0], S[3][1], S[3][2], m->size[0], m->size[1], m->size[2],
                       Z / S[3][0] * m->size[0], Y / S[3][1] * m->size[1], X / S[3][2] * m->size[2]);
    return APT_OK;
}
