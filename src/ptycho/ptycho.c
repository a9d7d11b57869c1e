/* ptycho.c - the backend-neutral face of the ptychography module: argument checks, the backend choice of
 * include/aptomo/backend.h, the LSQML-style batch order of a reconstruction, and the fallback rule: a GPU call that
 * fails is logged, counted and redone on the CPU, and the model stays on the CPU from then on. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/backend.h"
#include "ptycho/ptycho_int.h"

static int ptycho_new(const apt_ptycho_geom *g, int threads, int measure, apt_backend be, apt_ptycho **out,
                      apt_error *err)
{
    *out = NULL;
    const struct apt_ptycho_ops *gpu = apt_ptycho_cuda_ops();
    apt_backend got;
    int rc = apt_backend_resolve(be, "ptycho", gpu != NULL, &got, err);
    if (rc)
        return rc;
    /* the CPU plan always exists: it is where a failed GPU call is redone */
    if ((rc = apt_ptycho_cpu_new(g, threads, measure, out, err)))
        return rc;
    if (got != APT_BACKEND_GPU)
        return APT_OK;
    apt_error e = {0};
    (*out)->ops = gpu;
    if ((rc = gpu->init(*out, &e))) {
        (*out)->ops = &apt_ptycho_cpu_ops;
        if (be == APT_BACKEND_GPU) {
            apt_ptycho_destroy(out);
            return apt_err(err, rc, "%s", e.msg);
        }
        apt_backend_fallback("ptycho", e.msg);
    }
    return APT_OK;
}

int apt_ptycho_new(const apt_ptycho_geom *g, int threads, apt_backend be, apt_ptycho **out, apt_error *err)
{
    return ptycho_new(g, threads, 1, be, out, err);
}

int apt_ptycho_new_reproducible(const apt_ptycho_geom *g, int threads, apt_ptycho **out, apt_error *err)
{
    return ptycho_new(g, threads, 0, APT_BACKEND_CPU, out, err);
}

void apt_ptycho_destroy(apt_ptycho **pp)
{
    if (!pp || !*pp)
        return;
    const struct apt_ptycho_ops *gpu = apt_ptycho_cuda_ops();
    if (gpu && (*pp)->dev)
        gpu->fini(*pp);
    apt_ptycho_cpu_free(*pp);
    *pp = NULL;
}

const apt_ptycho_geom *apt_ptycho_geometry(const apt_ptycho *p) { return &p->g; }

apt_backend apt_ptycho_backend(const apt_ptycho *p)
{
    return p->ops == &apt_ptycho_cpu_ops ? APT_BACKEND_CPU : APT_BACKEND_GPU;
}

int apt_ptycho_fft_batch(const apt_ptycho *p) { return p->group; }

/* A GPU call failed (its outputs untouched): count it, log it, and run on the CPU from now on. */
static int fall_back(apt_ptycho *p, int rc, const apt_error *e, apt_error *err)
{
    if (p->ops == &apt_ptycho_cpu_ops || rc == APT_EINVAL || rc == APT_ERANGE) {
        if (err && e != err)
            *err = *e;
        return rc; /* the caller's mistake, not the device's */
    }
    apt_backend_fallback("ptycho", e->msg);
    p->ops = &apt_ptycho_cpu_ops;
    return APT_OK;
}

static int check_positions(const apt_ptycho *p, const int32_t *pos, size_t J, apt_error *err)
{
    const apt_ptycho_geom *g = &p->g;
    for (size_t j = 0; j < J; j++) {
        int r = pos[2 * j], c = pos[2 * j + 1];
        if (r < 0 || c < 0 || r > g->Ny - g->H || c > g->Nx - g->W)
            return apt_err(err, APT_ERANGE,
                           "ptycho: position %zu (row %d, col %d): the %d x %d window leaves the %d x %d object", j,
                           r, c, g->H, g->W, g->Ny, g->Nx);
    }
    return APT_OK;
}

static int run(apt_ptycho *p, const float *probe, const float *object, const int32_t *pos, const float *meas,
               size_t n, double *loss, float *gobj, float *gprobe, float *intensity, apt_error *err)
{
    if (!probe || !object || (n && !pos) || (!meas && n && !intensity))
        return apt_err(err, APT_EINVAL, "ptycho: NULL array argument");
    int rc = check_positions(p, pos, n, err);
    if (rc)
        return rc;
    apt_error e = {0};
    if (p->ops != &apt_ptycho_cpu_ops) {
        rc = p->ops->run(p, probe, object, pos, meas, NULL, n, loss, gobj, gprobe, intensity, &e);
        if (!rc || (rc = fall_back(p, rc, &e, err)))
            return rc;
    }
    return apt_ptycho_cpu_ops.run(p, probe, object, pos, meas, NULL, n, loss, gobj, gprobe, intensity, err);
}

int apt_ptycho_forward(apt_ptycho *p, const float *probe, const float *object, const int32_t *pos, size_t J,
                       float *intensity, apt_error *err)
{
    return run(p, probe, object, pos, NULL, J, NULL, NULL, NULL, intensity, err);
}

int apt_ptycho_loss_grad(apt_ptycho *p, const float *probe, const float *object, const int32_t *pos,
                         const float *meas, size_t J, double *loss, float *grad_object, float *grad_probe,
                         apt_error *err)
{
    if (!meas)
        return apt_err(err, APT_EINVAL, "ptycho: loss_grad needs measured intensities");
    return run(p, probe, object, pos, meas, J, loss, grad_object, grad_probe, NULL, err);
}

/* ---- reconstruction: the batch order, then the backend's descent ---- */

/* Interleave the bits of (row, col): Z-order (Morton) key, neighbours in space stay near in the order. */
static uint64_t morton(uint32_t r, uint32_t c)
{
    uint64_t k = 0;
    for (int b = 0; b < 32; b++)
        k |= (uint64_t)((r >> b) & 1) << (2 * b + 1) | (uint64_t)((c >> b) & 1) << (2 * b);
    return k;
}

typedef struct keyed {
    uint64_t key;
    size_t j;
} keyed;

static int cmp_keyed(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->j < y->j ? -1 : x->j > y->j; /* stable: ties by index */
}

/* LSQML (PtychoShelves) grouping: positions sorted along a Z-order curve and dealt round-robin into B batches
   (batch b = positions b, b+B, b+2B, ... of the order), so every batch covers the whole field and no two of its
   windows overlap much. order [J], start [B+1]. */
static int batch_order(const int32_t *pos, size_t J, size_t B, size_t *order, size_t *start, apt_error *err)
{
    keyed *ks = malloc(J * sizeof *ks);
    if (!ks)
        return apt_err(err, APT_ENOMEM, "ptycho recon: out of memory for %zu positions", J);
    for (size_t j = 0; j < J; j++)
        ks[j] = (keyed){morton((uint32_t)pos[2 * j], (uint32_t)pos[2 * j + 1]), j};
    qsort(ks, J, sizeof *ks, cmp_keyed);
    size_t n = 0;
    for (size_t b = 0; b < B; b++) {
        start[b] = n;
        for (size_t i = b; i < J; i += B)
            order[n++] = ks[i].j;
    }
    start[B] = n;
    free(ks);
    return APT_OK;
}

int apt_ptycho_reconstruct(apt_ptycho *p, const float *probe, const float *patterns, const int32_t *pos, size_t J,
                           const apt_recon_opts *opts, float *object, double *loss_per_iter, apt_error *err)
{
    const apt_ptycho_geom *g = &p->g;
    if (!opts || opts->iterations < 0 || opts->iterations > 10000 || opts->batches < 1 || !(opts->step > 0) ||
        !isfinite(opts->step))
        return apt_err(err, APT_EINVAL, "ptycho recon: need iterations in 0..10000, batches >= 1, step > 0");
    if (J == 0)
        return apt_err(err, APT_EINVAL, "ptycho recon: no positions");
    if (J > ((size_t)1 << 32))
        return apt_err(err, APT_ERANGE, "ptycho recon: %zu positions is too many", J);
    if (!probe || !patterns || !pos || !object)
        return apt_err(err, APT_EINVAL, "ptycho recon: NULL array argument");
    int rc = check_positions(p, pos, J, err);
    if (rc)
        return rc;
    size_t hw = (size_t)g->H * g->W, B = (size_t)opts->batches < J ? (size_t)opts->batches : J;
    size_t *order = malloc(J * sizeof *order), *start = malloc((B + 1) * sizeof *start);
    float *pint = malloc(hw * sizeof *pint);
    if (!order || !start || !pint)
        rc = apt_err(err, APT_ENOMEM, "ptycho recon: out of memory for %zu positions", J);
    if (!rc)
        rc = batch_order(pos, J, B, order, start, err);
    if (!rc) {
        /* probe intensity summed over modes */
        for (size_t i = 0; i < hw; i++) {
            double s = 0;
            for (int m = 0; m < g->M; m++) {
                const float *v = probe + 2 * ((size_t)m * hw + i);
                s += (double)v[0] * v[0] + (double)v[1] * v[1];
            }
            pint[i] = (float)s;
        }
        apt_error e = {0};
        int done = 0;
        if (p->ops != &apt_ptycho_cpu_ops) {
            rc = p->ops->descend(p, probe, patterns, pos, J, order, start, B, pint, opts, object, loss_per_iter, &e);
            done = !rc;
            if (rc)
                rc = fall_back(p, rc, &e, err);
        }
        if (!rc && !done)
            rc = apt_ptycho_cpu_descend(p, probe, patterns, pos, J, order, start, B, pint, opts, object,
                                        loss_per_iter, err);
    }
    free(order);
    free(start);
    free(pint);
    return rc;
}
