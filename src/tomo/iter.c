/* iter.c - iterative baselines on the matched projector pair: SIRT (all angles per update), SART with ordered
 * subsets and relaxation (subsets interleave the sorted angles and are visited in bit-reversed order so successive
 * updates see far-apart views), and TV-FISTA: min 0.5|Ax-b|^2 + lambda TV(x), isotropic 3-D TV, step 1/L with
 * L = |A|^2 from power iteration, the TV prox solved by Beck & Teboulle's FGP on the dual (warm-started across
 * outer iterations). Row/column sums use the projector itself, so the weights match the operator exactly.
 * Optional ray window (Andersen & Kak 1984, as scikit-image's iradon_sart does): each angle's back-projected
 * correction is weighted by a Hamming window along the ray over the support, so a ray corrects the middle of its path
 * more than its ends. With few or limited angles that is a prior (mass pulled towards the middle of the rays, away
 * from the missing wedge's smear) - docs/TOMO.md has the measurement; off by default. */
#include "aptomo/tomo.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/parallel.h"
#include "tomo/project_int.h"

void apt_iter_opts_default(apt_iter_opts *o, const char *method)
{
    memset(o, 0, sizeof *o);
    int sart = method && !strcmp(method, "sart");
    o->iters = sart ? 10 : 100;
    o->subsets = 0;
    o->relax = sart ? 0.5 : 1.0;
    o->lambda = 0.005; /* tuned on simulated ICs' ptychographic projections: docs/TOMO.md */
    o->nonneg = 1;
    o->cylinder = 1;
    o->tv_inner = 10;
    o->ray_window = 0;
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

/* Support in the x-z plane: the voxels every view sees, i.e. whose centre projects onto the detector (within half
   a pixel) at every angle. For a square slice and angles around the half circle that is the inscribed cylinder
   (scikit-image's circle, ASTRA's mask); for a slab with projections wide enough to hold it at every tilt it is
   the whole box. Outside it the data leave the volume unconstrained, so it is held at 0. */
typedef struct mask_job {
    const double *cs; /* [n][2]: cos, sin */
    int n, Z, X, U;
    unsigned char *m;
} mask_job;

static void mask_rows(void *ctx, long k0, long k1)
{
    const mask_job *j = ctx;
    double cz = (j->Z - 1) / 2.0, cx = (j->X - 1) / 2.0, half = (j->U - 1) / 2.0 + 0.5 + 1e-9;
    for (long k = k0; k < k1; k++)
        for (int a = 0; a < j->n; a++) {
            double c = j->cs[2 * a], s = j->cs[2 * a + 1];
            unsigned char *row = j->m + (size_t)k * j->X;
            for (int i = 0; i < j->X; i++)
                if (fabs((i - cx) * c + (k - cz) * s) > half)
                    row[i] = 0;
        }
}

static unsigned char *support_mask(const apt_proj *p, int use)
{
    int Z, X, U, n = apt_proj_angles(p);
    apt_proj_dims(p, &Z, NULL, &X, &U);
    unsigned char *m = malloc((size_t)Z * X);
    double *cs = use ? malloc((size_t)n * 2 * sizeof *cs) : NULL;
    if (!m || (use && !cs)) {
        free(m);
        return NULL;
    }
    memset(m, 1, (size_t)Z * X);
    if (!use)
        return m;
    const double *th = apt_proj_theta(p);
    for (int a = 0; a < n; a++)
        cs[2 * a] = cos(th[a] * M_PI / 180.0), cs[2 * a + 1] = sin(th[a] * M_PI / 180.0);
    mask_job j = {cs, n, Z, X, U, m};
    /* rows are independent: threads take z-rows (small planes run inline) */
    apt_par_for(mask_rows, &j, Z, (size_t)n * Z * X < ((size_t)1 << 18) ? 1 : apt_proj_threads(p));
    free(cs);
    return m;
}

/* Whole-volume constraint (TV works on the volume at once). */
static void constrain(const apt_proj *p, const apt_iter_opts *o, const unsigned char *mask, float *x)
{
    int Z, Y, X;
    apt_proj_dims(p, &Z, &Y, &X, NULL);
    clip(x, (size_t)Z * Y * X, o->nonneg);
    for (int k = 0; k < Z; k++)
        for (int i = 0; i < X; i++)
            if (!mask[(size_t)k * X + i])
                for (int j = 0; j < Y; j++)
                    x[((size_t)k * Y + j) * X + i] = 0;
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

/* --- SIRT and SART, slice by slice ------------------------------------------------------------------------
 * Every y-slice is an independent 2-D problem (the projector, the weights and the support are the same for all
 * of them), so each thread takes whole slices through a full pass: no synchronisation inside a pass, and the
 * weights (R: one detector row per angle, C: one Z x X plane per subset) are computed once, not per slice.
 * SIRT is SART with one subset holding every angle. */

typedef struct os_plan {
    const apt_proj *p;
    const apt_iter_opts *o;
    const float *b;
    int Z, Y, X, U, n, S, per;
    int *members;            /* [S][per]: angle indices of subset s, -1 padded */
    int *count;              /* [S] */
    int *order;              /* visiting order of the subsets */
    float *R;                /* [n][U]: 1 / row sums */
    float *C;                /* [S][Z*X] (or one plane, recomputed per visit when the cache would not fit) */
    int cache;
    unsigned char *mask;     /* [Z*X] support */
    float *win;              /* [n][Z*X] ray window per angle (Hamming along the ray), NULL when off */
    float *x;
    atomic_int failed;
} os_plan;

static void os_free(os_plan *q)
{
    free(q->members);
    free(q->count);
    free(q->order);
    free(q->R);
    free(q->C);
    free(q->mask);
    free(q->win);
}

#define HAMMING_BETA 0.46164 /* scikit-image's equiripple Hamming window (sart_projection_update) */

/* Window of angle theta on the support: voxels are grouped by the detector pixel their centre projects to (the
   ray through it); along that ray, at coordinate s' = -x sin + z cos, the weight is (1-b) - b cos(2 pi p) with
   p = 0 .. 1 from the first support voxel of the ray to its last: 0.08 at the ends, 1 in the middle. */
static int window_plane(const os_plan *q, double theta_deg, float *w)
{
    int Z = q->Z, X = q->X, U = q->U;
    double c = cos(theta_deg * M_PI / 180.0), sn = sin(theta_deg * M_PI / 180.0);
    double cx = (X - 1) / 2.0, cz = (Z - 1) / 2.0, cu = (U - 1) / 2.0;
    double *lo = malloc((size_t)U * 2 * sizeof *lo);
    if (!lo)
        return APT_ENOMEM;
    double *hi = lo + U;
    for (int u = 0; u < U; u++)
        lo[u] = INFINITY, hi[u] = -INFINITY;
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < Z; k++)
            for (int i = 0; i < X; i++) {
                size_t v = (size_t)k * X + i;
                double t = (i - cx) * c + (k - cz) * sn, sp = -(i - cx) * sn + (k - cz) * c;
                double uf = floor(t + cu + 0.5);
                int u = uf < 0 ? -1 : uf >= U ? U : (int)uf;
                int in = q->mask[v] && u >= 0 && u < U;
                if (pass == 0) {
                    if (in)
                        lo[u] = sp < lo[u] ? sp : lo[u], hi[u] = sp > hi[u] ? sp : hi[u];
                    continue;
                }
                double h = 1;
                if (in && hi[u] > lo[u])
                    h = (1 - HAMMING_BETA) - HAMMING_BETA * cos(2 * M_PI * (sp - lo[u]) / (hi[u] - lo[u]));
                w[v] = (float)h;
            }
    free(lo);
    return APT_OK;
}

/* C_s = 1 / (A_s^T 1) on one plane. */
static void os_colsum(const os_plan *q, int s, const float *ones_rows, float *plane, float *P)
{
    apt_proj_slice_back(q->p, q->members + (size_t)s * q->per, q->count[s], ones_rows, (size_t)q->U, plane,
                        (size_t)q->X, P);
    invert(plane, (size_t)q->Z * q->X);
}

/* The weights, angle by angle and subset by subset, spread over threads: tasks [0, n) are the row sums of one
   angle (R, inverted afterwards against the global maximum), [n, n + S) the column sums of one subset (C, cached
   planes only), [n + S, 2n + S) the ray window of one angle. Each task writes its own rows, so the result does not
   depend on the thread count. */
typedef struct setup_job {
    os_plan *q;
    const float *ones;
    int nC, nW;
    atomic_int failed;
} setup_job;

static void setup_run(void *ctx, long t0, long t1)
{
    setup_job *j = ctx;
    os_plan *q = j->q;
    size_t plane = (size_t)q->Z * q->X;
    float *P = malloc(apt_proj_scratch_floats(q->p) * sizeof *P);
    if (!P) {
        atomic_store(&j->failed, 1);
        return;
    }
    for (long t = t0; t < t1; t++) {
        if (t < q->n) {
            int a = (int)t;
            apt_proj_slice_forward(q->p, &a, 1, j->ones, (size_t)q->X, q->R + (size_t)a * q->U, (size_t)q->U, P);
        } else if (t < q->n + j->nC) {
            int s = (int)(t - q->n);
            os_colsum(q, s, j->ones, q->C + (size_t)s * plane, P);
        } else {
            int a = (int)(t - q->n - j->nC);
            if (window_plane(q, apt_proj_theta(q->p)[a], q->win + (size_t)a * plane))
                atomic_store(&j->failed, 1);
        }
    }
    free(P);
}

static int os_new(os_plan *q, const apt_proj *p, const apt_iter_opts *o, const float *b, float *x, int S,
                  apt_error *err)
{
    memset(q, 0, sizeof *q);
    q->p = p, q->o = o, q->b = b, q->x = x, q->S = S;
    apt_proj_dims(p, &q->Z, &q->Y, &q->X, &q->U);
    q->n = apt_proj_angles(p);
    q->per = (q->n + S - 1) / S;
    size_t plane = (size_t)q->Z * q->X, nU = (size_t)q->n * q->U, big = plane > nU ? plane : nU;
    q->cache = (double)S * plane * sizeof(float) <= (double)(1u << 30);
    q->members = malloc((size_t)S * q->per * sizeof *q->members);
    q->count = calloc((size_t)S, sizeof *q->count);
    q->order = malloc((size_t)S * sizeof *q->order);
    q->R = malloc(nU * sizeof *q->R);
    q->C = malloc((q->cache ? (size_t)S : 1) * plane * sizeof *q->C);
    q->mask = support_mask(p, o->cylinder);
    int *sorted = malloc((size_t)q->n * sizeof *sorted);
    float *ones = malloc(big * sizeof *ones);
    int rc = APT_OK;
    if (!q->members || !q->count || !q->order || !q->R || !q->C || !q->mask || !sorted || !ones) {
        rc = apt_err(err, APT_ENOMEM, "sart: out of memory");
        goto out;
    }
    for (int a = 0; a < q->n; a++)
        sorted[a] = a;
    sort_by_theta(sorted, q->n, apt_proj_theta(p));
    subset_order(S, q->order);
    for (int s = 0; s < S; s++)
        for (int a = s; a < q->n; a += S)
            q->members[(size_t)s * q->per + q->count[s]++] = sorted[a];
    for (size_t i = 0; i < big; i++)
        ones[i] = 1;
    if (o->ray_window) {
        if ((double)q->n * plane * sizeof(float) > (double)(1u << 30)) {
            rc = apt_err(err, APT_ERANGE, "sart: ray window tables for %d angles x %d x %d exceed 1 GiB", q->n, q->Z,
                         q->X);
            goto out;
        }
        if (!(q->win = malloc((size_t)q->n * plane * sizeof *q->win))) {
            rc = apt_err(err, APT_ENOMEM, "sart: out of memory for the ray window");
            goto out;
        }
    }
    setup_job sj = {q, ones, q->cache ? S : 0, q->win ? q->n : 0, 0};
    atomic_init(&sj.failed, 0);
    long tasks = q->n + sj.nC + sj.nW;
    apt_par_for(setup_run, &sj, tasks, (size_t)tasks * plane < ((size_t)1 << 16) ? 1 : apt_proj_threads(p));
    if (atomic_load(&sj.failed)) {
        rc = apt_err(err, APT_ENOMEM, "sart: out of memory for the weights");
        goto out;
    }
    invert(q->R, nU);
    /* A ray that only clips a corner of the box (path below one voxel) would divide its residual - noise, for real
       projections - by that tiny length and drive the corner voxels to outliers; a path is counted as at least one
       voxel long, so such rays only nudge. */
    for (size_t i = 0; i < nU; i++)
        q->R[i] = q->R[i] > 1.0f ? 1.0f : q->R[i];
out:
    free(sorted);
    free(ones);
    if (rc)
        os_free(q);
    return rc;
}

/* One pass over all subsets for slices [j0, j1). */
static void os_pass(void *ctx, long j0, long j1)
{
    os_plan *q = ctx;
    int Y = q->Y, X = q->X, U = q->U;
    size_t plane = (size_t)q->Z * X, rs = (size_t)Y * X;
    float *r = malloc((size_t)q->per * U * sizeof *r), *g = malloc(plane * sizeof *g),
          *P = malloc(apt_proj_scratch_floats(q->p) * sizeof *P), *Cp = NULL, *ones = NULL;
    float *g1 = q->win && q->per > 1 ? malloc(plane * sizeof *g1) : NULL;
    if (!q->cache) {
        Cp = malloc(plane * sizeof *Cp);
        ones = malloc((size_t)q->per * U * sizeof *ones);
        for (size_t i = 0; ones && i < (size_t)q->per * U; i++)
            ones[i] = 1;
    }
    if (!r || !g || !P || (!q->cache && (!Cp || !ones)) || (q->win && q->per > 1 && !g1)) {
        atomic_store(&q->failed, 1);
        goto out;
    }
    float relax = (float)q->o->relax;
    for (long j = j0; j < j1; j++) {
        float *xs = q->x + (size_t)j * X;
        for (int v = 0; v < q->S; v++) {
            int s = q->order[v], m = q->count[s];
            const int *idx = q->members + (size_t)s * q->per;
            const float *Cs = q->cache ? q->C + (size_t)s * plane : Cp;
            if (!q->cache)
                os_colsum(q, s, ones, Cp, P);
            apt_proj_slice_forward(q->p, idx, m, xs, rs, r, (size_t)U, P);
            for (int t = 0; t < m; t++) {
                const float *bt = q->b + ((size_t)idx[t] * Y + j) * U, *Rt = q->R + (size_t)idx[t] * U;
                float *rt = r + (size_t)t * U;
                for (int u = 0; u < U; u++)
                    rt[u] = (bt[u] - rt[u]) * Rt[u];
            }
            if (!q->win) {
                apt_proj_slice_back(q->p, idx, m, r, (size_t)U, g, (size_t)X, P);
            } else { /* the window differs per angle: back-project the subset's angles one by one */
                for (int t = 0; t < m; t++) {
                    const float *wt = q->win + (size_t)idx[t] * plane;
                    float *dst = t ? g1 : g;
                    apt_proj_slice_back(q->p, idx + t, 1, r + (size_t)t * U, (size_t)U, dst, (size_t)X, P);
                    for (size_t v = 0; v < plane; v++)
                        g[v] = t ? g[v] + wt[v] * dst[v] : wt[v] * dst[v];
                }
            }
            int nonneg = q->o->nonneg;
            for (int k = 0; k < q->Z; k++) {
                float *xr = xs + (size_t)k * rs;
                const float *gr = g + (size_t)k * X, *cr = Cs + (size_t)k * X;
                const unsigned char *mr = q->mask + (size_t)k * X;
                for (int i = 0; i < X; i++) {
                    float val = xr[i] + relax * cr[i] * gr[i];
                    val = nonneg && val < 0 ? 0 : val;
                    xr[i] = mr[i] ? val : 0;
                }
            }
        }
    }
out:
    free(r);
    free(g);
    free(g1);
    free(P);
    free(Cp);
    free(ones);
}

static int os_run(const apt_proj *p, const float *b, const apt_iter_opts *o, float *x, int S, apt_error *err)
{
    os_plan q;
    int rc = os_new(&q, p, o, b, x, S, err);
    if (rc)
        return rc;
    for (int it = 0; it < o->iters && !rc; it++) {
        atomic_init(&q.failed, 0);
        apt_par_for(os_pass, &q, q.Y, apt_proj_threads(p));
        if (atomic_load(&q.failed))
            rc = apt_err(err, APT_ENOMEM, "sart: out of memory for a slice's buffers");
        else if (o->progress && o->progress(o->user, it + 1, o->iters))
            break;
    }
    os_free(&q);
    return rc;
}

int apt_sirt(const apt_proj *p, const float *b, const apt_iter_opts *o, float *x, apt_error *err)
{
    int rc = check_opts(o, err);
    return rc ? rc : os_run(p, b, o, x, 1, err);
}

int apt_sart(const apt_proj *p, const float *b, const apt_iter_opts *o, float *x, apt_error *err)
{
    int rc = check_opts(o, err);
    if (rc)
        return rc;
    int n = apt_proj_angles(p), S = o->subsets ? o->subsets : n;
    if (S < 1 || S > n)
        return apt_err(err, APT_EINVAL, "subsets: %d out of range (1..%d angles)", S, n);
    return os_run(p, b, o, x, S, err);
}

/* --- TV ------------------------------------------------------------------------------------------------ */

typedef struct tvbuf {
    int Z, Y, X, threads;
    float *p[3], *r[3], *xin; /* dual field, its FISTA extrapolation, inner primal */
} tvbuf;

/* One FGP phase over z-planes [k0, k1): every phase writes only its own voxels and reads neighbours of arrays it
   does not write, so planes can go to different threads and the result does not depend on how many. */
typedef struct tv_phase {
    tvbuf *t;
    int kind;          /* 0: xin = clip(z - w D^T q), 1: dual step + FISTA extrapolation */
    float *const *q;   /* kind 0: the dual field to use */
    const float *z;
    float *out;        /* kind 0: where the primal goes */
    float w, step, beta;
    int nonneg;
} tv_phase;

static void tv_run(void *ctx, long k0, long k1)
{
    const tv_phase *ph = ctx;
    tvbuf *t = ph->t;
    int Z = t->Z, Y = t->Y, X = t->X;
    size_t sy = (size_t)X, sz = (size_t)Y * X;
    for (long k = k0; k < k1; k++)
        for (int j = 0; j < Y; j++) {
            size_t v = ((size_t)k * Y + j) * X;
            for (int i = 0; i < X; i++, v++) {
                if (ph->kind == 0) { /* D^T q: q on the forward-difference grid, Neumann boundary */
                    float *const *q = ph->q, a = 0;
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
                    float val = ph->z[v] - ph->w * a;
                    ph->out[v] = ph->nonneg && val < 0 ? 0 : val;
                    continue;
                }
                float xv = t->xin[v];
                float g0 = k < Z - 1 ? t->xin[v + sz] - xv : 0, g1 = j < Y - 1 ? t->xin[v + sy] - xv : 0,
                      g2 = i < X - 1 ? t->xin[v + 1] - xv : 0;
                float q0 = t->r[0][v] + ph->step * g0, q1 = t->r[1][v] + ph->step * g1,
                      q2 = t->r[2][v] + ph->step * g2;
                float nrm = sqrtf(q0 * q0 + q1 * q1 + q2 * q2);
                if (nrm > 1)
                    q0 /= nrm, q1 /= nrm, q2 /= nrm;
                t->r[0][v] = q0 + ph->beta * (q0 - t->p[0][v]);
                t->r[1][v] = q1 + ph->beta * (q1 - t->p[1][v]);
                t->r[2][v] = q2 + ph->beta * (q2 - t->p[2][v]);
                t->p[0][v] = q0, t->p[1][v] = q1, t->p[2][v] = q2;
            }
        }
}

/* x = argmin 0.5|x - z|^2 + w TV(x) (x >= 0 when nonneg), FGP with `inner` steps, dual warm-started in t->p. */
static void tv_prox(tvbuf *t, const float *z, double w, int inner, int nonneg, float *x)
{
    int Z = t->Z, Y = t->Y, X = t->X;
    size_t nv = (size_t)Z * Y * X;
    int nd = (Z > 1) + (Y > 1) + (X > 1);
    double step = 1.0 / (4.0 * (nd ? nd : 1) * w), tk = 1;
    if (w <= 0) {
        memcpy(x, z, nv * sizeof *x);
        clip(x, nv, nonneg);
        return;
    }
    int T = nv < 4096 ? 1 : t->threads; /* thread start-up would dominate */
    for (int a = 0; a < 3; a++)
        memcpy(t->r[a], t->p[a], nv * sizeof(float));
    tv_phase primal = {.t = t, .kind = 0, .q = t->r, .z = z, .out = t->xin, .w = (float)w, .nonneg = nonneg};
    tv_phase dual = {.t = t, .kind = 1, .step = (float)step};
    for (int it = 0; it < inner; it++) {
        apt_par_for(tv_run, &primal, Z, T);
        double tk1 = (1 + sqrt(1 + 4 * tk * tk)) / 2;
        dual.beta = (float)((tk - 1) / tk1);
        apt_par_for(tv_run, &dual, Z, T);
        tk = tk1;
    }
    primal.q = t->p, primal.out = x;
    apt_par_for(tv_run, &primal, Z, T);
}

typedef struct dims {
    size_t nv, ns; /* voxels, projection elements */
} dims;

static dims get_dims(const apt_proj *p)
{
    int Z, Y, X, U;
    apt_proj_dims(p, &Z, &Y, &X, &U);
    return (dims){(size_t)Z * Y * X, (size_t)apt_proj_angles(p) * Y * U};
}

int apt_tv_fista(const apt_proj *p, const float *b, const apt_iter_opts *o, float *x, apt_error *err)
{
    int rc = check_opts(o, err);
    if (rc)
        return rc;
    dims d = get_dims(p);
    tvbuf t = {0};
    apt_proj_dims(p, &t.Z, &t.Y, &t.X, NULL);
    t.threads = apt_proj_threads(p);
    float *y = malloc(d.nv * sizeof *y), *gz = malloc(d.nv * sizeof *gz), *xn = malloc(d.nv * sizeof *xn),
          *r = malloc(d.ns * sizeof *r);
    unsigned char *mask = support_mask(p, o->cylinder);
    int ok = y && gz && xn && r && mask && (t.xin = malloc(d.nv * sizeof(float)));
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
        constrain(p, o, mask, xn);
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
    free(mask);
    for (int a = 0; a < 3; a++) {
        free(t.p[a]);
        free(t.r[a]);
    }
    return rc;
}
