/* tile.c - the volume tiler. Windows: along an axis, a patch's weight is a Hann window (sin^2, which sums to a
 * constant at 50 % overlap), except that the outer half of the first and last patch is flat at 1, so voxels at the
 * volume edge are not divided by a near-zero weight. The output is sum(w*y)/sum(w): exact for any network that maps
 * a constant to a constant, seam-free otherwise. Axes shorter than a patch are reflection-padded (numpy "reflect":
 * the edge voxel is not repeated). */
#include "aptomo/tile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TILE_MAX_STARTS 4096

int apt_tile_starts(int n, int p, int *starts, int cap, int *n_out)
{
    int k = 0;
    if (n <= p) {
        starts[k++] = 0;
    } else {
        int stride = p / 2 > 0 ? p / 2 : 1;
        for (int s = 0; s + p < n && k < cap; s += stride)
            starts[k++] = s;
        if (k < cap)
            starts[k++] = n - p;
    }
    *n_out = k;
    return k < cap || n <= p ? APT_OK : APT_ERANGE;
}

/* Reflect index i into [0, n). */
static int reflect(int i, int n)
{
    if (n == 1)
        return 0;
    int period = 2 * (n - 1);
    i %= period;
    if (i < 0)
        i += period;
    return i < n ? i : period - i;
}

/* 1-D weight of output sample t of a patch of output length q; first/last: is this patch at the volume's edge. */
static double window(int t, int q, int first, int last)
{
    double h = sin(M_PI * (t + 0.5) / q);
    h *= h;
    if ((first && t < q / 2) || (last && t >= q / 2))
        return 1.0;
    return h > 1e-6 ? h : 1e-6;
}

int apt_tile_run(const float *vol, int Z, int Y, int X, const apt_tile_spec *sp, apt_tile_fn fn, void *fn_ctx,
                 apt_tile_progress progress, void *progress_ctx, float *out, apt_error *err)
{
    if (Z < 1 || Y < 1 || X < 1 || sp->pz < 1 || sp->py < 1 || sp->px < 1 || sp->fz < 1 || sp->fy < 1 ||
        sp->fx < 1 || sp->batch < 1)
        return apt_err(err, APT_EINVAL, "tile: bad volume %dx%dx%d or patch %dx%dx%d", Z, Y, X, sp->pz, sp->py,
                       sp->px);
    double std = sp->in_std > 0 ? sp->in_std : 1.0;
    int sz[TILE_MAX_STARTS], sy[TILE_MAX_STARTS], sx[TILE_MAX_STARTS], nz, ny, nx;
    int dz = Z > sp->pz ? Z : sp->pz, dy = Y > sp->py ? Y : sp->py, dx = X > sp->px ? X : sp->px; /* padded */
    if (apt_tile_starts(dz, sp->pz, sz, TILE_MAX_STARTS, &nz) || apt_tile_starts(dy, sp->py, sy, TILE_MAX_STARTS, &ny) ||
        apt_tile_starts(dx, sp->px, sx, TILE_MAX_STARTS, &nx))
        return apt_err(err, APT_ERANGE, "tile: too many patches");
    int qz = sp->pz * sp->fz, qy = sp->py * sp->fy, qx = sp->px * sp->fx;
    int OZ = Z * sp->fz, OY = Y * sp->fy, OX = X * sp->fx, PZ = dz * sp->fz, PY = dy * sp->fy, PX = dx * sp->fx;
    size_t pin = (size_t)sp->pz * sp->py * sp->px, pout = (size_t)qz * qy * qx;
    size_t nacc = (size_t)PZ * PY * PX, total = (size_t)nz * ny * nx;
    float *xb = malloc((size_t)sp->batch * pin * sizeof *xb), *yb = malloc((size_t)sp->batch * pout * sizeof *yb);
    double *acc = calloc(nacc, sizeof *acc), *wsum = calloc(nacc, sizeof *wsum);
    double *wz = malloc((size_t)qz * sizeof *wz), *wy = malloc((size_t)qy * sizeof *wy),
           *wx = malloc((size_t)qx * sizeof *wx);
    int *origin = malloc((size_t)sp->batch * 3 * sizeof *origin);
    int rc = APT_OK;
    if (!xb || !yb || !acc || !wsum || !wz || !wy || !wx || !origin) {
        rc = apt_err(err, APT_ENOMEM, "tile: out of memory (%zu output voxels, batch %d)", nacc, sp->batch);
        goto out;
    }
    size_t done = 0;
    int nb = 0;
    for (size_t t = 0; t <= total && rc == APT_OK; t++) {
        if (t < total) { /* gather patch t (z-major) into the batch */
            int iz = (int)(t / ((size_t)ny * nx)), iy = (int)(t / nx % ny), ix = (int)(t % nx);
            int z0 = sz[iz], y0 = sy[iy], x0 = sx[ix];
            float *dst = xb + (size_t)nb * pin;
            for (int z = 0; z < sp->pz; z++)
                for (int y = 0; y < sp->py; y++)
                    for (int x = 0; x < sp->px; x++) {
                        size_t src = ((size_t)reflect(z0 + z, Z) * Y + reflect(y0 + y, Y)) * X + reflect(x0 + x, X);
                        dst[((size_t)z * sp->py + y) * sp->px + x] = (float)((vol[src] - sp->in_mean) / std);
                    }
            origin[3 * nb] = iz, origin[3 * nb + 1] = iy, origin[3 * nb + 2] = ix;
            nb++;
        }
        if (nb == sp->batch || (t == total && nb > 0)) {
            if ((rc = fn(fn_ctx, xb, nb, yb, err)))
                break;
            for (int b = 0; b < nb; b++) { /* scatter with the separable window */
                int iz = origin[3 * b], iy = origin[3 * b + 1], ix = origin[3 * b + 2];
                for (int k = 0; k < qz; k++)
                    wz[k] = window(k, qz, iz == 0, iz == nz - 1);
                for (int k = 0; k < qy; k++)
                    wy[k] = window(k, qy, iy == 0, iy == ny - 1);
                for (int k = 0; k < qx; k++)
                    wx[k] = window(k, qx, ix == 0, ix == nx - 1);
                size_t oz = (size_t)sz[iz] * sp->fz, oy = (size_t)sy[iy] * sp->fy, ox = (size_t)sx[ix] * sp->fx;
                const float *src = yb + (size_t)b * pout;
                for (int z = 0; z < qz; z++)
                    for (int y = 0; y < qy; y++) {
                        size_t row = ((oz + z) * PY + oy + y) * PX + ox;
                        const float *s = src + ((size_t)z * qy + y) * qx;
                        double wzy = wz[z] * wy[y];
                        for (int x = 0; x < qx; x++) {
                            double w = wzy * wx[x];
                            acc[row + x] += w * s[x];
                            wsum[row + x] += w;
                        }
                    }
            }
            done += (size_t)nb;
            nb = 0;
            if (progress)
                progress(progress_ctx, done, total);
        }
    }
    if (rc == APT_OK) /* the padded tail is cut off: output keeps the input's extent times the scale */
        for (int z = 0; z < OZ; z++)
            for (int y = 0; y < OY; y++)
                for (int x = 0; x < OX; x++) {
                    size_t i = ((size_t)z * PY + y) * PX + x;
                    out[((size_t)z * OY + y) * OX + x] = wsum[i] > 0 ? (float)(acc[i] / wsum[i]) : 0.0f;
                }
out:
    free(xb);
    free(yb);
    free(acc);
    free(wsum);
    free(wz);
    free(wy);
    free(wx);
    free(origin);
    return rc;
}
