/* iter.c - iterative baselines on the matched projector pair: SIRT (all angles per update), SART with ordered
 * subsets and relaxation (subsets interleave the sorted angles and are visited in bit-reversed order so successive
 * updates see far-apart views), and TV-FISTA: min 0.5|Ax-b|^2 + lambda TV(x), isotropic 3-D TV, step 1/L with
 * L = |A|^2 from power iteration, the TV prox solved by Beck & Teboulle's FGP on the dual (warm-started across
 * outer iterations). Row/column sums use the projector itself, so the weights match the operator exactly. */
#include "aptomo/tomo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void apt_iter_opts_default(apt_iter_opts *o, const char *method)
{
    memset(o, 0, sizeof *o);
    int sart = method && !strcmp(method, "sart");
    o->iters = sart ? 10 : 100;
    o->subsets = 0;
    o->relax = sart ? 0.5 : 1.0;
    o->lambda = 0.02;
    o->nonneg = 1;
    o->cylinder = 1;
    o->tv_inner = 10;
}

static int check_opts(const apt_iter_opts *o, apt_error *err)
{
    if (o->iters < 0 || o->iters > 100000)
        return apt_err(err, APT_EINVAL, "iters: %d out of range (0..100000)", o->iters);
    if (!(o->relax > 0 && o->relax < 2))
        return apt_err(err, APT_EINVAL, "relax: %g out of range (0, 2)", o->relax);
    if (!(o->lambda >= 0) || !isfinite(o->lambda))
        return apt_err(err, APT_EINVAL, "lambda: %g must be finite and >= 0", o->lambda);
    if (o->tv_inner < 1 || o->tv_inner > 1000)
        return apt_err(err, APT_EINVAL, "tv_inner: %d out of range (1..1000)", o->tv_inner);
    return APT_OK;
}

/* 1/x where x is meaningfully positive, else 0 (rays/voxels outside every view take no update). */
static void invert(float *v, size_t n)
{
    float mx = 0;
    for (size_t i = 0; i < n; i++)
        mx = v[i] > mx ? v[i] : mx;
    float eps = mx * 1e-6f;
    for (size_t i = 0; i < n; i++)
        v[i] = v[i] > eps ? 1.0f / v[i] : 0.0f;
}

static void clip(float *x, size_t n, int nonneg)
{
    if (nonneg)
        for (size_t i = 0; i < n; i++)
            x[i] = x[i] < 0 ? 0 : x[i];
}

/* Support: the cylinder about the rotation axis that every view sees whole (radius (min(Z, X) - 1) / 2); outside
   it limited-angle data leave the volume unconstrained, so it is held at 0 (scikit-image's circle, ASTRA's mask). */
static void constrain(const apt_proj *p, const apt_iter_opts *o, float *x)
{
    int Z, Y, X;
    apt_proj_dims(p, &Z, &Y, &X, NULL);
    clip(x, (size_t)Z * Y * X, o->nonneg);
    if (!o->cylinder)
        return;
    double cz = (Z - 1) / 2.0, cx = (X - 1) / 2.0, R = (Z < X ? Z - 1 : X - 1) / 2.0 + 0.5;
    for (int k = 0; k < Z; k++)
        for (int i = 0; i < X; i++)
            if ((k - cz) * (k - cz) + (i - cx) * (i - cx) > R * R)
                for (int j = 0; j < Y; j++)
                    x[((size_t)k * Y + j) * X + i] = 0;
}

typedef struct dims {
    size_t nv, ns, row; /* voxels, projection elements, one angle's Y*U */
} dims;

static dims get_dims(const apt_proj *p)
{
    int Z, Y, X, U;
    apt_proj_dims(p, &Z, &Y, &X, &U);
    return (dims){(size_t)Z * Y * X, (size_t)apt_proj_angles(p) * Y * U, (size_t)Y * U};
}

int apt_sirt(const apt_proj *p, const float *b, const apt_iter_opts *o, float *x, apt_error *err)
{
    int rc = check_opts(o, err);
    if (rc)
        return rc;
    dims d = get_dims(p);
    float *R = malloc(d.ns * sizeof *R), *C = malloc(d.nv * sizeof *C), *r = malloc(d.ns * sizeof *r),
          *g = malloc(d.nv * sizeof *g);
    if (!R || !C || !r || !g) {
        rc = apt_err(err, APT_ENOMEM, "sirt: out of memory");
        goto out;
    }
    for (size_t i = 0; i < d.nv; i++)
        g[i] = 1;
    for (size_t i = 0; i < d.ns; i++)
        r[i] = 1;
    if ((rc = apt_proj_forward(p, g, R, err)) || (rc = apt_proj_back(p, r, C, err)))
        goto out;
    invert(R, d.ns);
    invert(C, d.nv);
    for (int it = 0; it < o->iters; it++) {
        if ((rc = apt_proj_forward(p, x, r, err)))
            goto out;
        for (size_t i = 0; i < d.ns; i++)
            r[i] = (b[i] - r[i]) * R[i];
        if ((rc = apt_proj_back(p, r, g, err)))
            goto out;
        for (size_t i = 0; i < d.nv; i++)
            x[i] += (float)o->relax * C[i] * g[i];
        constrain(p, o, x);
        if (o->progress && o->progress(o->user, it + 1, o->iters))
            break;
    }
out:
    free(R);
    free(C);
    free(r);
    free(g);
    return rc;
}

static int cmp_theta(const void *a, const void *b, const double *th)
{
    double x = th[*(const int *)a], y = th[*(const int *)b];
    return x < y ? -1 : x > y;
}

/* insertion sort of angle indices by theta (qsort has no context argument in C11) */
static void sort_by_theta(int *idx, int n, const double *th)
{
    for (int i = 1; i < n; i++) {
        int v = idx[i], j = i - 1;
        while (j >= 0 && cmp_theta(&idx[j], &v, th) > 0) {
            idx[j + 1] = idx[j];
            j--;
        }
        idx[j + 1] = v;
    }
}

/* Visiting order of S subsets: bit-reversed counter, skipping values >= S. */
static void subset_order(int S, int *order)
{
    int bits = 0;
    while ((1 << bits) < S)
        bits++;
    int n = 0;
    for (int c = 0; c < (1 << bits); c++) {
        int r = 0;
        for (int b = 0; b < bits; b++)
            r |= ((c >> b) & 1) << (bits - 1 - b);
        if (r < S)
            order[n++] = r;
    }
}

int apt_sart(const apt_proj *p, const float *b, const apt_iter_opts *o, float *x, apt_error *err)
{
    int rc = check_opts(o, err);
    if (rc)
        return rc;
    int n = apt_proj_angles(p), S = o->subsets ? o->subsets : n;
    if (S < 1 || S > n)
        return apt_err(err, APT_EINVAL, "subsets: %d out of range (1..%d angles)", S, n);
    dims d = get_dims(p);
    int per = (n + S - 1) / S;
    /* column sums cached per subset when that fits in 1 GiB, else recomputed on each visit */
    int cache = (double)S * d.nv * sizeof(float) <= (double)(1u << 30);
    int *sorted = malloc((size_t)n * sizeof *sorted), *order = malloc((size_t)S * sizeof *order),
        *idx = malloc((size_t)per * sizeof *idx);
    float *R = malloc(d.ns * sizeof *R), *ones = malloc((d.nv > d.row * per ? d.nv : d.row * per) * sizeof *ones),
          *r = malloc(d.row * per * sizeof *r), *g = malloc(d.nv * sizeof *g),
          *C = malloc((cache ? (size_t)S : 1) * d.nv * sizeof *C);
    if (!sorted || !order || !idx || !R || !ones || !r || !g || !C) {
        rc = apt_err(err, APT_ENOMEM, "sart: out of memory");
        goto out;
    }
    for (int a = 0; a < n; a++)
        sorted[a] = a;
    sort_by_theta(sorted, n, apt_proj_theta(p));
    subset_order(S, order);
    for (size_t i = 0; i < (d.nv > d.row * per ? d.nv : d.row * per); i++)
        ones[i] = 1;
    if ((rc = apt_proj_forward(p, ones, R, err)))
        goto out;
    invert(R, d.ns);
    for (int s = 0; cache && s < S; s++) {
        int m = 0;
        for (int a = s; a < n; a += S)
            idx[m++] = sorted[a];
        if ((rc = apt_proj_back_sub(p, ones, idx, m, C + (size_t)s * d.nv, err)))
            goto out;
        invert(C + (size_t)s * d.nv, d.nv);
    }
    for (int it = 0; it < o->iters; it++) {
        for (int v = 0; v < S; v++) {
            int s = order[v], m = 0;
            for (int a = s; a < n; a += S)
                idx[m++] = sorted[a];
            float *Cs = C + (cache ? (size_t)s * d.nv : 0);
            if (!cache) {
                if ((rc = apt_proj_back_sub(p, ones, idx, m, Cs, err)))
                    goto out;
                invert(Cs, d.nv);
            }
            if ((rc = apt_proj_forward_sub(p, x, idx, m, r, err)))
                goto out;
            for (int q = 0; q < m; q++) {
                const float *bq = b + (size_t)idx[q] * d.row, *Rq = R + (size_t)idx[q] * d.row;
                float *rq = r + (size_t)q * d.row;
                for (size_t i = 0; i < d.row; i++)
                    rq[i] = (bq[i] - rq[i]) * Rq[i];
            }
            if ((rc = apt_proj_back_sub(p, r, idx, m, g, err)))
                goto out;
            for (size_t i = 0; i < d.nv; i++)
                x[i] += (float)o->relax * Cs[i] * g[i];
            constrain(p, o, x);
        }
        if (o->progress && o->progress(o->user, it + 1, o->iters))
            break;
    }
out:
    free(sorted);
    free(order);
    free(idx);
    free(R);
    free(ones);
    free(r);
    free(g);
    free(C);
    return rc;
}

/* --- TV ------------------------------------------------------------------------------------------------ */

typedef struct tvbuf {
    int Z, Y, X;
    float *p[3], *r[3], *xin; /* dual field, its FISTA extrapolation, inner primal */
} tvbuf;

/* out = D^T q (q on the forward-difference grid, Neumann boundary) */
static void grad_t(const tvbuf *t, float *const q[3], float *out)
{
    int Z = t->Z, Y = t->Y, X = t->X;
    size_t sy = (size_t)X, sz = (size_t)Y * X, v = 0;
    for (int k = 0; k < Z; k++)
        for (int j = 0; j < Y; j++)
            for (int i = 0; i < X; i++, v++) {
                float a = 0;
                if (k > 0)
                    a += q[0][v - sz];
                if (k < Z - 1)
                    a -= q[0][v];
                if (j > 0)
                    a += q[1][v - sy];
                if (j < Y - 1)
                    a -= q[1][v];
                if (i > 0)
                    a += q[2][v - 1];
                if (i < X - 1)
                    a -= q[2][v];
                out[v] = a;
            }
}

/* x = argmin 0.5|x - z|^2 + w TV(x) (x >= 0 when nonneg), FGP with `inner` steps, dual warm-started in t->p. */
static void tv_prox(tvbuf *t, const float *z, double w, int inner, int nonneg, float *x)
{
    int Z = t->Z, Y = t->Y, X = t->X;
    size_t nv = (size_t)Z * Y * X, sy = (size_t)X, sz = (size_t)Y * X;
    int nd = (Z > 1) + (Y > 1) + (X > 1);
    double step = 1.0 / (4.0 * (nd ? nd : 1) * w), tk = 1;
    if (w <= 0) {
        memcpy(x, z, nv * sizeof *x);
        clip(x, nv, nonneg);
        return;
    }
    for (int a = 0; a < 3; a++)
        memcpy(t->r[a], t->p[a], nv * sizeof(float));
    for (int it = 0; it < inner; it++) {
        grad_t(t, t->r, t->xin);
        for (size_t v = 0; v < nv; v++) {
            float val = z[v] - (float)w * t->xin[v];
            t->xin[v] = nonneg && val < 0 ? 0 : val;
        }
        double tk1 = (1 + sqrt(1 + 4 * tk * tk)) / 2, beta = (tk - 1) / tk1;
        size_t v = 0;
        for (int k = 0; k < Z; k++)
            for (int j = 0; j < Y; j++)
                for (int i = 0; i < X; i++, v++) {
                    float xv = t->xin[v];
                    float g0 = k < Z - 1 ? t->xin[v + sz] - xv : 0, g1 = j < Y - 1 ? t->xin[v + sy] - xv : 0,
                          g2 = i < X - 1 ? t->xin[v + 1] - xv : 0;
                    float q0 = t->r[0][v] + (float)step * g0, q1 = t->r[1][v] + (float)step * g1,
                          q2 = t->r[2][v] + (float)step * g2;
                    float nrm = sqrtf(q0 * q0 + q1 * q1 + q2 * q2);
                    if (nrm > 1)
                        q0 /= nrm, q1 /= nrm, q2 /= nrm;
                    t->r[0][v] = q0 + (float)beta * (q0 - t->p[0][v]);
                    t->r[1][v] = q1 + (float)beta * (q1 - t->p[1][v]);
                    t->r[2][v] = q2 + (float)beta * (q2 - t->p[2][v]);
                    t->p[0][v] = q0, t->p[1][v] = q1, t->p[2][v] = q2;
                }
        tk = tk1;
    }
    grad_t(t, t->p, t->xin);
    for (size_t v = 0; v < nv; v++) {
        float val = z[v] - (float)w * t->xin[v];
        x[v] = nonneg && val < 0 ? 0 : val;
    }
}

int apt_tv_fista(const apt_proj *p, const float *b, const apt_iter_opts *o, float *x, apt_error *err)
{
    int rc = check_opts(o, err);
    if (rc)
        return rc;
    dims d = get_dims(p);
    tvbuf t = {0};
    apt_proj_dims(p, &t.Z, &t.Y, &t.X, NULL);
    float *y = malloc(d.nv * sizeof *y), *gz = malloc(d.nv * sizeof *gz), *xn = malloc(d.nv * sizeof *xn),
          *r = malloc(d.ns * sizeof *r);
    int ok = y && gz && xn && r && (t.xin = malloc(d.nv * sizeof(float)));
    for (int a = 0; ok && a < 3; a++)
        ok = (t.p[a] = calloc(d.nv, sizeof(float))) && (t.r[a] = calloc(d.nv, sizeof(float)));
    if (!ok) {
        rc = apt_err(err, APT_ENOMEM, "tv: out of memory");
        goto out;
    }
    double L;
    if ((rc = apt_proj_norm2(p, 20, &L, err)))
        goto out;
    L *= 1.05; /* power iteration approaches |A|^2 from below: keep the step safe */
    if (!(L > 0)) {
        rc = apt_err(err, APT_EINVAL, "tv: projector norm is zero (no ray crosses the volume)");
        goto out;
    }
    /* lambda is relative to the data term's gradient at 0 so one default serves any scale of b */
    if ((rc = apt_proj_back(p, b, gz, err)))
        goto out;
    double gmax = 0;
    for (size_t i = 0; i < d.nv; i++)
        gmax = fabs(gz[i]) > gmax ? fabs(gz[i]) : gmax;
    double lam = o->lambda * gmax / 1.0, w = lam / L, tk = 1;
    memcpy(y, x, d.nv * sizeof *y);
    for (int it = 0; it < o->iters; it++) {
        if ((rc = apt_proj_forward(p, y, r, err)))
            goto out;
        for (size_t i = 0; i < d.ns; i++)
            r[i] -= b[i];
        if ((rc = apt_proj_back(p, r, gz, err)))
            goto out;
        for (size_t i = 0; i < d.nv; i++)
            gz[i] = y[i] - (float)(gz[i] / L);
        tv_prox(&t, gz, w, o->tv_inner, o->nonneg, xn);
        constrain(p, o, xn);
        double tk1 = (1 + sqrt(1 + 4 * tk * tk)) / 2, beta = (tk - 1) / tk1;
        for (size_t i = 0; i < d.nv; i++) {
            y[i] = xn[i] + (float)beta * (xn[i] - x[i]);
            x[i] = xn[i];
        }
        tk = tk1;
        if (o->progress && o->progress(o->user, it + 1, o->iters))
            break;
    }
out:
    free(y);
    free(gz);
    free(xn);
    free(r);
    free(t.xin);
    for (int a = 0; a < 3; a++) {
        free(t.p[a]);
        free(t.r[a]);
    }
    return rc;
}
