/* train.c - training the network of docs/NETWORK.md (nn_train.h). The weights are held unfolded, one flat array of
 * parameters (with its gradient and Adam moments) and one of running statistics, laid out by the layer table of
 * arch.c. A step records the forward as a tape of nodes (conv, BatchNorm with optional residual and ReLU, max-pool,
 * upsample + skip, ReLU, attention core) over activations planned once per input shape, then walks it backwards;
 * every activation has its gradient buffer, and a node adds into its inputs' gradients, so a tensor read twice (an
 * encoder output feeding both the next stage and a decoder skip) sums both contributions. */
#include "aptomo/nn_train.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aptomo/parallel.h"
#include "aptomo/safetensors.h"
#include "nn/arch.h"
#include "aptomo/axial_train.h"
#include "nn/train_backend.h"
#include "nn/train_int.h"

static const char *const carried_meta[] = {"aptomo.arch", "aptomo.input", "aptomo.output", "aptomo.train", NULL};

/* ---- the spec table: every state_dict tensor with its place in P, S or C ---- */

static int spec_cb(const char *name, apt_nn_kind kind, int rank, const long long *shape, void *user)
{
    apt_nn_train *t = user;
    if (t->nspec == t->capspec) {
        int nc = t->capspec ? 2 * t->capspec : 256;
        ttensor_spec *ns = realloc(t->spec, (size_t)nc * sizeof(*ns));
        if (!ns)
            return APT_ENOMEM;
        t->spec = ns, t->capspec = nc;
    }
    ttensor_spec *s = &t->spec[t->nspec++];
    memset(s, 0, sizeof(*s));
    snprintf(s->name, sizeof s->name, "%s", name);
    s->kind = kind, s->rank = rank, s->count = 1;
    for (int i = 0; i < rank; i++)
        s->shape[i] = shape[i], s->count *= (size_t)shape[i];
    s->space = kind == APT_NN_BN_MEAN || kind == APT_NN_BN_VAR ? SP_STAT : kind == APT_NN_BN_COUNT ? SP_COUNT : SP_PARAM;
    size_t *n = s->space == SP_PARAM ? &t->np : s->space == SP_STAT ? &t->ns : &t->nc;
    s->off = *n;
    *n += s->space == SP_COUNT ? 1 : s->count;
    return APT_OK;
}

static int build_table(apt_nn_train *t, apt_error *err)
{
    nn_unit *u = NULL;
    int rc = nn_arch_units(&t->a, &u, &t->nunits, err);
    if (!rc && !(t->units = calloc((size_t)t->nunits, sizeof(*t->units))))
        rc = apt_err(err, APT_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < t->nunits; i++) {
        t->units[i].u = u[i];
        t->units[i].t0 = t->nspec;
        if (nn_unit_tensors(&u[i], &t->a, spec_cb, t))
            rc = apt_err(err, APT_ENOMEM, "out of memory");
    }
    free(u);
    if (rc)
        return rc;
    t->P = calloc(t->np, sizeof(float)), t->G = calloc(t->np, sizeof(float));
    t->M = calloc(t->np, sizeof(float)), t->V = calloc(t->np, sizeof(float));
    t->S = calloc(t->ns ? t->ns : 1, sizeof(float)), t->C = calloc(t->nc ? t->nc : 1, sizeof(int64_t));
    if (!t->P || !t->G || !t->M || !t->V || !t->S || !t->C)
        return apt_err(err, APT_ENOMEM, "out of memory for %zu parameters", t->np);
    return APT_OK;
}

/* ---- load ---- */

static int copy_f32(nn_loader *L, const char *name, const ttensor_spec *s, float *dst, apt_error *err)
{
    const float *src;
    int rc = nn_need(L, name, s->rank, s->shape, &src, err);
    if (!rc)
        memcpy(dst, src, s->count * sizeof(float));
    return rc;
}

static int load_tensors(apt_nn_train *t, apt_st_file *st, apt_error *err)
{
    nn_loader L = {.st = st};
    if (!(L.used = calloc(apt_st_count(st) + 1, 1)))
        return apt_err(err, APT_ENOMEM, "out of memory");
    const char *step = apt_st_meta(st, "aptomo.adam_step");
    int rc = APT_OK, ckpt = step != NULL;
    if (ckpt) {
        char *end;
        long long v = strtoll(step, &end, 10);
        if (*end || v < 0)
            rc = apt_err(err, APT_EINVAL, "__metadata__[\"aptomo.adam_step\"]: not a step count");
        t->step = v;
    }
    int counts = 0, nbn = 0;
    for (int i = 0; !rc && i < t->nspec; i++) {
        const ttensor_spec *s = &t->spec[i];
        char name[160];
        if (s->space == SP_COUNT) {
            const apt_st_tensor *c = apt_st_find(st, s->name);
            nbn++;
            if (c) {
                L.used[c - apt_st_at(st, 0)] = 1, counts++;
                if (c->dtype != APT_ST_I64 || c->count != 1)
                    rc = apt_err(err, APT_EINVAL, "tensor %s: expected one I64", s->name);
                else
                    memcpy(&t->C[s->off], c->data, sizeof(int64_t));
            }
            continue;
        }
        rc = copy_f32(&L, s->name, s, (s->space == SP_PARAM ? t->P : t->S) + s->off, err);
        if (!rc && ckpt && s->space == SP_PARAM) {
            snprintf(name, sizeof name, "adam.m.%s", s->name);
            rc = copy_f32(&L, name, s, t->M + s->off, err);
            snprintf(name, sizeof name, "adam.v.%s", s->name);
            if (!rc)
                rc = copy_f32(&L, name, s, t->V + s->off, err);
        }
    }
    if (!rc && counts && counts != nbn)
        rc = apt_err(err, APT_EINVAL, "num_batches_tracked present for %d of %d BatchNorms", counts, nbn);
    t->had_count = counts > 0;
    for (size_t i = 0; !rc && i < apt_st_count(st); i++)
        if (!L.used[i])
            rc = apt_err(err, APT_EINVAL, "tensor %s: not part of the arch (unexpected key)", apt_st_at(st, i)->name);
    free(L.used);
    return rc;
}

void nn_train_plan_free(apt_nn_train *t)
{
    for (int i = 0; i < t->nn; i++) {
        tnode *n = &t->nodes[i];
        for (int k = 0; k < 3; k++)
            t->ops->prim_free(t->ctx, n->c[k]);
        free(n->mean);
        free(n->invstd);
        free(n->saved);
    }
    t->nn = 0;
    for (int i = 0; i < t->nact; i++)
        free(t->act[i].t.data), free(t->act[i].g);
    free(t->act);
    t->act = NULL, t->nact = t->capact = 0;
    free(t->tmp), free(t->scratch);
    t->tmp = t->scratch = NULL;
    t->B = 0;
}

void apt_nn_train_destroy(apt_nn_train **tp)
{
    if (!tp || !*tp)
        return;
    apt_nn_train *t = *tp;
    if (t->ops) {
        nn_train_plan_free(t);
        t->ops->fini(t->ctx);
    }
    free(t->units), free(t->spec);
    free(t->P), free(t->G), free(t->M), free(t->V), free(t->S), free(t->C);
    for (int i = 0; i < 8; i++)
        free(t->meta[i][0]), free(t->meta[i][1]);
    free(t);
    *tp = NULL;
}

static int meta_set(apt_nn_train *t, const char *key, const char *val)
{
    int i = 0;
    while (i < 8 && t->meta[i][0] && strcmp(t->meta[i][0], key))
        i++;
    if (i == 8)
        return APT_ENOMEM;
    char *v = strdup(val), *k = t->meta[i][0] ? t->meta[i][0] : strdup(key);
    if (!v || !k) {
        free(v);
        if (k != t->meta[i][0])
            free(k);
        return APT_ENOMEM;
    }
    free(t->meta[i][1]);
    t->meta[i][0] = k, t->meta[i][1] = v;
    return APT_OK;
}

int apt_nn_train_load(const char *path, int threads, apt_nn_train **out, apt_error *err)
{
    *out = NULL;
    apt_nn_train *t = calloc(1, sizeof(*t));
    if (!t)
        return apt_err(err, APT_ENOMEM, "out of memory");
    t->adam = APT_NN_ADAM_DEFAULT;
    apt_st_file *st = NULL;
    int rc = apt_st_open(path, &st, err);
    const char *arch = rc ? NULL : apt_st_meta(st, "aptomo.arch");
    if (!rc && !arch)
        rc = apt_err(err, APT_EINVAL, "__metadata__[\"aptomo.arch\"] missing");
    if (!rc)
        rc = nn_arch_parse(arch, &t->a, err);
    for (int i = 0; !rc && carried_meta[i]; i++) {
        const char *v = apt_st_meta(st, carried_meta[i]);
        if (v && meta_set(t, carried_meta[i], v))
            rc = apt_err(err, APT_ENOMEM, "out of memory");
    }
    if (!rc)
        rc = build_table(t, err);
    if (!rc)
        rc = load_tensors(t, st, err);
    if (rc && st)
        apt_err_prefix(err, rc, "%s: ", path);
    apt_st_close(&st);
    if (!rc) {
        t->ops = &apt_nn_train_dnnl_ops;
        if ((rc = t->ops->init(&t->ctx, threads, err)) != APT_OK) {
            t->ops->fini(t->ctx);
            t->ops = NULL;
        }
    }
    if (!rc) {
        long nc = threads > 0 ? threads : sysconf(_SC_NPROCESSORS_ONLN);
        t->threads = nc < 1 ? 1 : nc > APT_PAR_MAX_THREADS ? APT_PAR_MAX_THREADS : (int)nc;
    }
    if (rc) {
        apt_nn_train_destroy(&t);
        return rc;
    }
    *out = t;
    return APT_OK;
}

void apt_nn_train_set_adam(apt_nn_train *t, const apt_nn_adam *adam) { t->adam = *adam; }
long long apt_nn_train_steps(const apt_nn_train *t) { return t->step; }

const char *apt_nn_train_meta(const apt_nn_train *t, const char *key)
{
    for (int i = 0; i < 8 && t->meta[i][0]; i++)
        if (!strcmp(t->meta[i][0], key))
            return t->meta[i][1];
    return NULL;
}

int apt_nn_train_output_shape(const apt_nn_train *t, int Z, int Y, int X, int *oz, int *oy, int *ox, apt_error *err)
{
    int S[4][3];
    int rc = nn_arch_shapes(&t->a, Z, Y, X, S, err);
    if (!rc)
        *oz = 2 * S[1][0], *oy = 2 * S[1][1], *ox = 2 * S[1][2];
    return rc;
}


/* ---- save ---- */

int apt_nn_train_save(const apt_nn_train *t, const char *path, int with_optimizer, const char *const *meta,
                      apt_error *err)
{
    apt_st_writer *w = NULL;
    int rc = apt_st_writer_new(&w, err);
    char *names = NULL;
    if (!rc && with_optimizer && !(names = malloc((size_t)t->nspec * 2 * 160)))
        rc = apt_err(err, APT_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < t->nspec; i++) {
        const ttensor_spec *s = &t->spec[i];
        if (s->space == SP_COUNT) {
            if (t->had_count)
                rc = apt_st_writer_add(w, s->name, APT_ST_I64, 0, s->shape, &t->C[s->off], err);
            continue;
        }
        rc = apt_st_writer_add(w, s->name, APT_ST_F32, s->rank, s->shape, (s->space == SP_PARAM ? t->P : t->S) + s->off,
                               err);
        if (!rc && with_optimizer && s->space == SP_PARAM) {
            char *nm = names + (size_t)i * 2 * 160, *nv = nm + 160;
            snprintf(nm, 160, "adam.m.%s", s->name);
            snprintf(nv, 160, "adam.v.%s", s->name);
            rc = apt_st_writer_add(w, nm, APT_ST_F32, s->rank, s->shape, t->M + s->off, err);
            if (!rc)
                rc = apt_st_writer_add(w, nv, APT_ST_F32, s->rank, s->shape, t->V + s->off, err);
        }
    }
    for (int i = 0; !rc && i < 8 && t->meta[i][0]; i++) {
        int replaced = 0;
        for (int k = 0; meta && meta[k]; k += 2)
            replaced |= !strcmp(meta[k], t->meta[i][0]);
        if (!replaced)
            rc = apt_st_writer_meta(w, t->meta[i][0], t->meta[i][1], err);
    }
    for (int k = 0; !rc && meta && meta[k]; k += 2)
        if (meta[k + 1])
            rc = apt_st_writer_meta(w, meta[k], meta[k + 1], err);
    char step[32];
    snprintf(step, sizeof step, "%lld", t->step);
    if (!rc && with_optimizer)
        rc = apt_st_writer_meta(w, "aptomo.adam_step", step, err);
    if (!rc)
        rc = apt_st_writer_save(w, path, err);
    apt_st_writer_destroy(&w);
    free(names);
    return rc;
}
