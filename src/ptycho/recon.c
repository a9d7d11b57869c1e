/* recon.c - the CPU backend's per-angle descent (the contract is apt_ptycho_ops.descend in ptycho_int.h): for each
 * spatially spread batch, the object gradient from the engine, the batch's illumination, and the step normalised
 * by it (docs/PHYSICS.md), which makes the step size need no tuning. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ptycho/ptycho_int.h"

static int ensure_scratch(apt_ptycho *p, apt_error *err)
{
    const apt_ptycho_geom *g = &p->g;
    size_t slice = (size_t)g->Ny * g->Nx;
    if (!p->rgrad)
        p->rgrad = malloc((size_t)g->L * slice * 2 * sizeof(float));
    if (!p->rillum)
        p->rillum = malloc(slice * sizeof(float));
    if (!p->rgrad || !p->rillum)
        return apt_err(err, APT_ENOMEM, "ptycho recon: out of memory for the %d x %d x %d gradient", g->L, g->Ny,
                       g->Nx);
    return APT_OK;
}

int apt_ptycho_cpu_descend(apt_ptycho *p, const float *probe, const float *patterns, const int32_t *pos, size_t J,
                           const size_t *order, const size_t *start, size_t B, const float *pint,
                           const apt_recon_opts *opts, float *object, double *loss_per_iter, apt_error *err)
{
    (void)J;
    const apt_ptycho_geom *g = &p->g;
    int rc = ensure_scratch(p, err);
    int H = g->H, W = g->W, Nx = g->Nx;
    size_t hw = (size_t)H * W, slice = (size_t)g->Ny * Nx;
    for (int it = 0; it < opts->iterations && !rc; it++) {
        double pass_loss = 0;
        for (size_t b = 0; b < B && !rc; b++) {
            const size_t *idx = order + start[b];
            size_t nb = start[b + 1] - start[b];
            memset(p->rgrad, 0, (size_t)g->L * slice * 2 * sizeof(float));
            double loss = 0;
            rc = apt_ptycho_cpu_ops.run(p, probe, object, pos, patterns, idx, nb, &loss, p->rgrad, NULL, NULL, err);
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
        if (loss_per_iter && !rc)
            loss_per_iter[it] = pass_loss;
    }
    return rc;
}
