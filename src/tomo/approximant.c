/* approximant.c - the Approximant (docs/PHYSICS.md, "Geometry"): each angle's slices, turned into delta estimates
 * -arg(O)/(k dz), rotated back onto the sample grid and accumulated as weighted sums in double. Sums (not a running
 * mean) make the result independent of the order of angles up to rounding, and let weight-0 voxels stay out of
 * the mean. One add walks every voxel once (linear in z', bilinear in y, x'), z-y rows spread over pthreads. */
#include "aptomo/approximant.h"
#include "aptomo/geometry.h"
#include "aptomo/parallel.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


struct apt_approx {
    apt_grid3 g;
    size_t n;            /* voxels */
    double *sw, *swv;    /* sum of weights, sum of weight * delta estimate */
    int angles;
    float *est;          /* scratch: per-pixel delta estimates [L,Ny,Nx], grown as needed */
    size_t est_cap;
};

int apt_approx_new(const apt_grid3 *g, apt_approx **out, apt_error *err)
{
    int rc = apt_grid3_check(g, err);
    if (rc)
        return rc;
    if (!out)
        return apt_err(err, APT_EINVAL, "approximant: NULL output");
    *out = NULL;
    apt_approx *a = calloc(1, sizeof *a);
    if (!a)
        return apt_err(err, APT_ENOMEM, "approximant: out of memory");
    a->g = *g;
    a->n = (size_t)g->Z * g->Y * g->X;
    a->sw = calloc(a->n, sizeof *a->sw);
    a->swv = calloc(a->n, sizeof *a->swv);
    if (!a->sw || !a->swv) {
        apt_approx_destroy(&a);
        return apt_err(err, APT_ENOMEM, "approximant: cannot allocate 2 x %zu doubles for a %d x %d x %d grid",
                       (size_t)g->Z * g->Y * g->X, g->Z, g->Y, g->X);
    }
    *out = a;
    return APT_OK;
}

void apt_approx_destroy(apt_approx **pa)
{
    if (!pa || !*pa)
        return;
    apt_approx *a = *pa;
    free(a->sw);
    free(a->swv);
    free(a->est);
    free(a);
    *pa = NULL;
}

void apt_approx_reset(apt_approx *a)
{
    memset(a->sw, 0, a->n * sizeof *a->sw);
    memset(a->swv, 0, a->n * sizeof *a->swv);
    a->angles = 0;
}

int apt_approx_angles(const apt_approx *a)
{
    return a->angles;
}

const apt_grid3 *apt_approx_grid(const apt_approx *a)
{
    return &a->g;
}

void apt_approx_sums(const apt_approx *a, const double **sw, const double **swv, size_t *n)
{
    *sw = a->sw;
    *swv = a->swv;
    *n = a->n;
}

int apt_approx_import(apt_approx *a, const double *sw, const double *swv, size_t n, int angles, apt_error *err)
{
    if (n != a->n || angles < 0)
        return apt_err(err, APT_EINVAL, "approximant: %zu voxels and %d angles do not fit a %d x %d x %d grid", n,
                       angles, a->g.Z, a->g.Y, a->g.X);
    memcpy(a->sw, sw, n * sizeof *sw);
    memcpy(a->swv, swv, n * sizeof *swv);
    a->angles = angles;
    return APT_OK;
}


/* ---- add one angle */

typedef struct add_ctx {
    apt_approx *a;
    const apt_stack_geom *sg;
    const float *weight;   /* [Ny,Nx] or NULL */
    double cs, sn;
} add_ctx;

/* Continuous index -> (lower index, upper weight) for linear interpolation on [0, n-1]; f must be inside. */
static inline int lerp_at(double f, int n, double *w1)
{
    int i0 = (int)f;   /* f >= 0 */
    if (i0 >= n - 1) {
        i0 = n > 1 ? n - 2 : 0;
        *w1 = n > 1 ? 1.0 : 0.0;
    } else {
        *w1 = f - i0;
    }
    return i0;
}

static void add_rows(void *vctx, long lo, long hi)
{
    const add_ctx *p = vctx;
    apt_approx *a = p->a;
    const apt_grid3 *g = &a->g;
    const apt_stack_geom *sg = p->sg;
    const float *est = a->est;
    size_t plane = (size_t)sg->Ny * sg->Nx;
    double inv_d = 1.0 / sg->delta_m, inv_dz = 1.0 / sg->dz_m;
    double cr = 0.5 * (sg->Ny - 1), cc = 0.5 * (sg->Nx - 1), cl = 0.5 * (sg->L - 1);
    double umax = sg->L - 0.5;   /* stack depth in slice-index units is [-0.5, L-0.5] */
    for (long zy = lo; zy < hi; zy++) {
        int k = (int)(zy / g->Y), j = (int)(zy % g->Y);
        double z = (k - 0.5 * (g->Z - 1)) * g->vz, y = (j - 0.5 * (g->Y - 1)) * g->vy;
        double fr = y * inv_d + cr;
        if (!(fr >= 0.0 && fr <= sg->Ny - 1))
            continue;   /* this row of the sample is outside the stack's field */
        double wr1;
        int r0 = lerp_at(fr, sg->Ny, &wr1);
        int r1 = sg->Ny > 1 ? r0 + 1 : r0;
        double wr0 = 1.0 - wr1;
        size_t base = (size_t)zy * g->X;
        for (int i = 0; i < g->X; i++) {
            double x = (i - 0.5 * (g->X - 1)) * g->vx;
            double xp = x * p->cs + z * p->sn, zp = -x * p->sn + z * p->cs;
            double fc = xp * inv_d + cc, u = zp * inv_dz + cl;
            if (!(fc >= 0.0 && fc <= sg->Nx - 1) || !(u >= -0.5 && u <= umax))
                continue;
            double wc1;
            int c0 = lerp_at(fc, sg->Nx, &wc1);
            int c1 = sg->Nx > 1 ? c0 + 1 : c0;
            double wc0 = 1.0 - wc1;
            size_t p00 = (size_t)r0 * sg->Nx + c0, p01 = (size_t)r0 * sg->Nx + c1;
            size_t p10 = (size_t)r1 * sg->Nx + c0, p11 = (size_t)r1 * sg->Nx + c1;
            double w = 1.0;
            if (p->weight) {
                const float *wm = p->weight;
                w = wr0 * (wc0 * wm[p00] + wc1 * wm[p01]) + wr1 * (wc0 * wm[p10] + wc1 * wm[p11]);
                if (!(w > 0.0))
                    continue;
            }
            /* Within the stack depth, the outer half slices take the outer slice's value (clamp). */
            double uc = u < 0.0 ? 0.0 : (u > sg->L - 1 ? sg->L - 1 : u);
            double wl1;
            int l0 = lerp_at(uc, sg->L, &wl1);
            int l1 = sg->L > 1 ? l0 + 1 : l0;
            const float *e0 = est + (size_t)l0 * plane, *e1 = est + (size_t)l1 * plane;
            double v0 = wr0 * (wc0 * e0[p00] + wc1 * e0[p01]) + wr1 * (wc0 * e0[p10] + wc1 * e0[p11]);
            double v1 = wr0 * (wc0 * e1[p00] + wc1 * e1[p01]) + wr1 * (wc0 * e1[p10] + wc1 * e1[p11]);
            double v = (1.0 - wl1) * v0 + wl1 * v1;
            a->sw[base + i] += w;
            a->swv[base + i] += w * v;
        }
    }
}

int apt_approx_add(apt_approx *a, const apt_stack_geom *sg, double wavelength_m, const float *object,
                   const float *weight, apt_error *err)
{
    if (!a)
        return apt_err(err, APT_EINVAL, "approximant: NULL");
    int rc = apt_stack_geom_check(sg, err);
    if (rc)
        return rc;
    if (!object)
        return apt_err(err, APT_EINVAL, "approximant: NULL object");
    if (!isfinite(wavelength_m) || wavelength_m <= 0)
        return apt_err(err, APT_EINVAL, "approximant: wavelength_m = %g must be finite and > 0", wavelength_m);
    size_t plane = (size_t)sg->Ny * sg->Nx, np = (size_t)sg->L * plane;
    /* Validate everything before touching the sums, so a refused angle leaves the Approximant as it was. */
    if (weight)
        for (size_t q = 0; q < plane; q++)
            if (!(weight[q] >= 0.0f) || !isfinite(weight[q]))
                return apt_err(err, APT_EINVAL, "approximant: weight[%zu, %zu] = %g must be finite and >= 0",
                               q / sg->Nx, q % sg->Nx, (double)weight[q]);
    if (np > a->est_cap) {
        float *e = realloc(a->est, np * sizeof *e);
        if (!e)
            return apt_err(err, APT_ENOMEM, "approximant: cannot allocate %zu floats of slice estimates", np);
        a->est = e;
        a->est_cap = np;
    }
    /* Delta estimate per pixel: -arg(O)/(k dz), valid while |k delta dz| < pi (no phase unwrapping). */
    double scale = -wavelength_m / (2.0 * M_PI * sg->dz_m);
    for (size_t q = 0; q < np; q++) {
        float re = object[2 * q], im = object[2 * q + 1];
        if (!isfinite(re) || !isfinite(im))
            return apt_err(err, APT_EINVAL, "approximant: object[%zu, %zu, %zu] is not finite", q / plane,
                           (q % plane) / sg->Nx, q % sg->Nx);
        a->est[q] = (float)(scale * atan2((double)im, (double)re));
    }
    double t = sg->theta_deg * (M_PI / 180.0);
    /* each slice referenced to its own air (apt_stack_air_mean): a reconstruction started flat drifts by a constant
       phase the far-field data cannot see */
    for (int l = 0; l < sg->L; l++) {
        float *e = a->est + (size_t)l * plane;
        float air = (float)apt_stack_air_mean(sg, &a->g, weight, e);
        for (size_t q = 0; q < plane; q++)
            e[q] -= air;
    }
    add_ctx p = {.a = a, .sg = sg, .weight = weight, .cs = cos(t), .sn = sin(t)};
    apt_par_for(add_rows, &p, (long)a->g.Z * a->g.Y, 0);
    a->angles++;
    return APT_OK;
}

int apt_approx_get(const apt_approx *a, float *vol, apt_error *err)
{
    if (!a || !vol)
        return apt_err(err, APT_EINVAL, "approximant: NULL %s", a ? "output volume" : "approximant");
    for (size_t q = 0; q < a->n; q++)
        vol[q] = a->sw[q] > 0.0 ? (float)(a->swv[q] / a->sw[q]) : 0.0f;
    return APT_OK;
}
