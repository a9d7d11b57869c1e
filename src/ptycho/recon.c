/* recon.c - per-angle ptychographic reconstruction: a few passes of mini-batch gradient descent on the object, as
 * LSQML (PtychoShelves) groups positions: sorted along a Z-order curve and dealt round-robin into spatially spread
 * batches, so every batch covers the whole field and no two of its windows overlap much. Each batch's step is
 * normalised by that batch's own illumination (docs/PHYSICS.md), which makes the step size need no tuning. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ptycho/ptycho_int.h"

/* Illumination regulariser: step = grad / (2 H W L (S + alpha max S)), S = sum over the batch's windows and modes of
   |P|^2. alpha keeps barely lit pixels from taking huge steps (rPIE's alpha). */
#define RECON_ALPHA 0.05

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

static int ensure_scratch(apt_ptycho *p, size_t J, apt_error *err)
{
    const apt_ptycho_geom *g = &p->g;
    size_t slice = (size_t)g->Ny * g->Nx;
    if (!p->rgrad)
        p->rgrad = malloc((size_t)g->L * slice * 2 * sizeof(float));
    if (!p->rillum)
        p->rillum = malloc(slice * sizeof(float));
    if (J > p->rcap) {
        free(p->rorder);
        p->rorder = malloc(J * sizeof *p->rorder);
        p->rcap = p->rorder ? J : 0;
    }
    if (!p->rgrad || !p->rillum || !p->rorder)
        return apt_err(err, APT_ENOMEM, "ptycho recon: out of memory for %zu positions", J);
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
    int rc = ensure_scratch(p, J, err);
    if (rc)
        return rc;
    int H = g->H, W = g->W, Nx = g->Nx;
    size_t hw = (size_t)H * W, slice = (size_t)g->Ny * Nx;

    /* batch b = positions b, b+B, b+2B, ... of the Z-order: spread over the whole field */
    keyed *ks = malloc(J * sizeof *ks);
    float *pint = malloc(hw * sizeof *pint);
    if (!ks || !pint) {
        free(ks);
        free(pint);
        return apt_err(err, APT_ENOMEM, "ptycho recon: out of memory");
    }
    for (size_t j = 0; j < J; j++) {
        int r = pos[2 * j], c = pos[2 * j + 1];
        if (r < 0 || c < 0 || r > g->Ny - H || c > Nx - W) {
            free(ks);
            free(pint);
            return apt_err(err, APT_ERANGE, "ptycho recon: position %zu (row %d, col %d) leaves the object", j, r, c);
        }
        ks[j] = (keyed){morton((uint32_t)r, (uint32_t)c), j};
    }
    qsort(ks, J, sizeof *ks, cmp_keyed);
    size_t B = (size_t)opts->batches < J ? (size_t)opts->batches : J;
    size_t *start = malloc((B + 1) * sizeof *start);
    if (!start) {
        free(ks);
        free(pint);
        return apt_err(err, APT_ENOMEM, "ptycho recon: out of memory");
    }
    size_t n = 0;
    for (size_t b = 0; b < B; b++) {
        start[b] = n;
        for (size_t i = b; i < J; i += B)
            p->rorder[n++] = ks[i].j;
    }
    start[B] = n;
    free(ks);

    /* probe intensity summed over modes */
    for (size_t i = 0; i < hw; i++) {
        double s = 0;
        for (int m = 0; m < g->M; m++) {
            const float *v = probe + 2 * ((size_t)m * hw + i);
            s += (double)v[0] * v[0] + (double)v[1] * v[1];
        }
        pint[i] = (float)s;
    }

    for (int it = 0; it < opts->iterations && !rc; it++) {
        double pass_loss = 0;
        for (size_t b = 0; b < B && !rc; b++) {
            const size_t *idx = p->rorder + start[b];
            size_t nb = start[b + 1] - start[b];
            memset(p->rgrad, 0, (size_t)g->L * slice * 2 * sizeof(float));
            double loss = 0;
            rc = apt_ptycho_run(p, probe, object, pos, patterns, idx, nb, &loss, p->rgrad, NULL, NULL, err);
            if (rc)
                break;
            pass_loss += loss;
            /* this batch's illumination */
            memset(p->rillum, 0, slice * sizeof(float));
            for (size_t k = 0; k < nb; k++) {
                int r = pos[2 * idx[k]], c = pos[2 * idx[k] + 1];
                for (int y = 0; y < H; y++) {
                    float *d = p->rillum + (size_t)(r + y) * Nx + c;
                    const float *s = pint + (size_t)y * W;
                    for (int x = 0; x < W; x++)
                        d[x] += s[x];
                }
            }
            float smax = 0;
            for (size_t i = 0; i < slice; i++)
                smax = p->rillum[i] > smax ? p->rillum[i] : smax;
            if (!(smax > 0))
                continue; /* a dark probe: nothing to learn */
            double base = 2.0 * (double)hw * g->L;
            float reg = (float)(RECON_ALPHA * smax);
            for (size_t i = 0; i < slice; i++) {
                if (p->rillum[i] <= 0)
                    continue;
                float s = (float)(opts->step / (base * (p->rillum[i] + reg)));
                for (int l = 0; l < g->L; l++) {
                    size_t o = 2 * ((size_t)l * slice + i);
                    object[o] -= s * p->rgrad[o];
                    object[o + 1] -= s * p->rgrad[o + 1];
                }
            }
        }
        if (loss_per_iter)
            loss_per_iter[it] = pass_loss;
    }
    free(start);
    free(pint);
    return rc;
}
