/* project.c - the matched parallel-beam projector pair (Joseph's method) for the tilt geometry: every ray marches
 * along the volume axis closest to the beam (z or x) and interpolates linearly along the other one. Both directions
 * work line by line (a z-row or an x-column of one slice against one detector row): the forward pass resamples the
 * zero-padded line, the adjoint scatters the detector row onto it with the same weights from the same arithmetic
 * (line_coord), so they are exact transposes, branch-free inside, and need no atomics: forward tasks own detector
 * rows, adjoint tasks own volume rows (z-major angles) then columns (x-major angles). Slice-level entry points
 * (project_int.h) let SIRT/SART run whole slices per thread. */
#include "aptomo/tomo.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "aptomo/backend.h"
#include "aptomo/parallel.h"
#include "tomo/project_int.h"

struct apt_proj {
    apt_proj_shape sh;
    int n_theta, threads;
    const apt_proj_ops *_Atomic dev; /* the GPU twin, until one of its calls fails (then NULL: the CPU) */
    double *theta;
    apt_proj_angle *ang;
    int *all;          /* 0..n_theta-1 */
};

/* --- geometry ------------------------------------------------------------------------------------------ */

/* Ray of detector pixel u at angle t: points (x, z) = s (cos, sin) + t' (-sin, cos), s = u - cu. Marching over z
   (z-major): x = s / cos - zc tan, so the x index is f = u / cos + b0 + k db. Marching over x: z = s / sin -
   xc cot. Centres: cx = (X-1)/2 etc. */
static void angle_coeffs(double theta_deg, const apt_proj_shape *sh, apt_proj_angle *a)
{
    double t = theta_deg * M_PI / 180.0, c = cos(t), s = sin(t);
    double cx = (sh->X - 1) / 2.0, cz = (sh->Z - 1) / 2.0, cu = (sh->U - 1) / 2.0;
    if (fabs(c) >= fabs(s)) {
        a->zmajor = 1;
        a->ia = 1.0 / c;
        a->b0 = -cu / c + cx + cz * s / c;
        a->db = -s / c;
    } else {
        a->zmajor = 0;
        a->ia = 1.0 / s;
        a->b0 = -cu / s + cz + cx * c / s;
        a->db = -c / s;
    }
    a->len = fabs(a->ia);
}

int apt_proj_new(int Z, int Y, int X, int U, const double *theta_deg, int n_theta, int threads, apt_backend backend,
                 apt_proj **out, apt_error *err)
{
    *out = NULL;
    const apt_proj_ops *cuda = apt_proj_cuda_ops();
    apt_backend got;
    int rc = apt_backend_resolve(backend, "projector", cuda != NULL, &got, err);
    if (rc)
        return rc;
    if (Z < 1 || Z > APT_TOMO_MAX_SIDE || Y < 1 || Y > APT_TOMO_MAX_SIDE || X < 1 || X > APT_TOMO_MAX_SIDE)
        return apt_err(err, APT_ERANGE, "tomo: volume %dx%dx%d out of range (sides 1..%d)", Z, Y, X,
                       APT_TOMO_MAX_SIDE);
    if (U < 1 || U > APT_TOMO_MAX_SIDE)
        return apt_err(err, APT_ERANGE, "tomo: detector width %d out of range (1..%d)", U, APT_TOMO_MAX_SIDE);
    if (n_theta < 1 || n_theta > APT_TOMO_MAX_ANGLES)
        return apt_err(err, APT_ERANGE, "tomo: %d angles out of range (1..%d)", n_theta, APT_TOMO_MAX_ANGLES);
    if ((size_t)Z * Y * X > APT_TOMO_MAX_VOXELS || (size_t)n_theta * Y * U > APT_TOMO_MAX_VOXELS)
        return apt_err(err, APT_ERANGE, "tomo: volume or projections exceed %zu elements", APT_TOMO_MAX_VOXELS);
    if (threads < 0 || threads > 256)
        return apt_err(err, APT_EINVAL, "tomo: threads %d out of range (0..256)", threads);
    for (int a = 0; a < n_theta; a++)
        if (!isfinite(theta_deg[a]))
            return apt_err(err, APT_EINVAL, "tomo: theta[%d] is not finite", a);
    apt_proj *p = calloc(1, sizeof *p);
    if (!p)
        return apt_err(err, APT_ENOMEM, "tomo: out of memory");
    p->sh = (apt_proj_shape){Z, Y, X, U};
    p->n_theta = n_theta;
    p->theta = malloc((size_t)n_theta * sizeof *p->theta);
    p->ang = malloc((size_t)n_theta * sizeof *p->ang);
    p->all = malloc((size_t)n_theta * sizeof *p->all);
    if (!p->theta || !p->ang || !p->all) {
        apt_proj_destroy(&p);
        return apt_err(err, APT_ENOMEM, "tomo: out of memory for %d angles", n_theta);
    }
    for (int a = 0; a < n_theta; a++) {
        p->theta[a] = theta_deg[a];
        angle_coeffs(theta_deg[a], &p->sh, &p->ang[a]);
        p->all[a] = a;
    }
    if (!threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n < 1 ? 1 : n > 64 ? 64 : (int)n;
    }
    p->threads = threads;
    atomic_store(&p->dev, got == APT_BACKEND_GPU ? cuda : NULL);
    *out = p;
    return APT_OK;
}

void apt_proj_destroy(apt_proj **pp)
{
    if (!pp || !*pp)
        return;
    apt_proj *p = *pp;
    free(p->theta);
    free(p->ang);
    free(p->all);
    free(p);
    *pp = NULL;
}

int apt_proj_angles(const apt_proj *p) { return p->n_theta; }
const double *apt_proj_theta(const apt_proj *p) { return p->theta; }
int apt_proj_threads(const apt_proj *p) { return p->threads; }
apt_backend apt_proj_backend(const apt_proj *p)
{
    return atomic_load(&((apt_proj *)p)->dev) ? APT_BACKEND_GPU : APT_BACKEND_CPU;
}

/* The device call failed (outputs untouched): log and count it, and stay on the CPU from now on. */
static void fall_back(const apt_proj *p, const apt_error *e)
{
    atomic_store(&((apt_proj *)p)->dev, NULL);
    apt_backend_fallback("projector", e->msg);
}

void apt_proj_dims(const apt_proj *p, int *Z, int *Y, int *X, int *U)
{
    if (Z)
        *Z = p->sh.Z;
    if (Y)
        *Y = p->sh.Y;
    if (X)
        *X = p->sh.X;
    if (U)
        *U = p->sh.U;
}

/* --- kernels ------------------------------------------------------------------------------------------- */

/* Coordinate of detector pixel u on line m (fb = b0 + m db): f = u ia + fb, as in project_int.h. Returns the
   index into the zero-padded line P[0..N+1] (P[i + 1] = voxel i) of the left neighbour and the right weight; the
   weight is f - floor(f) exactly as the CUDA twin computes it. */
static inline int line_coord(const apt_proj_angle *a, int u, double fb, float *w)
{
    double f = u * a->ia + fb;
    int i0 = f < 0 ? -1 : (int)f; /* floor for f > -1 */
    *w = (float)(f - i0);
    return i0 + 1;
}

static inline int line_valid(const apt_proj_angle *a, int u, double fb, int N)
{
    double f = u * a->ia + fb;
    return f > -1.0 && f < N;
}

/* The detector pixels whose ray meets line m (-1 < f < N): a contiguous range since f is monotone in u even after
   rounding; solved by division, then settled with the exact test so it matches line_valid bit for bit. */
static int line_range(const apt_proj_angle *a, double fb, int N, int U, int *lo, int *hi)
{
    double t1 = (-1.0 - fb) / a->ia, t2 = (N - fb) / a->ia;
    if (t1 > t2) {
        double t = t1;
        t1 = t2, t2 = t;
    }
    if (t2 < -1 || t1 > U)
        return 0;
    int l = t1 < 0 ? 0 : (int)floor(t1), h = t2 > U - 1 ? U - 1 : (int)ceil(t2);
    while (l <= h && !line_valid(a, l, fb, N))
        l++;
    while (h >= l && !line_valid(a, h, fb, N))
        h--;
    *lo = l, *hi = h;
    return l <= h;
}

size_t apt_proj_scratch_floats(const apt_proj *p)
{
    return (size_t)(p->sh.Z > p->sh.X ? p->sh.Z : p->sh.X) + 2;
}

/* Ray sums of one angle through one slice: row[U] = A_a v, v's row k at v + k rs. Line by line (a z-row for
   z-major angles, an x-column otherwise) copied into the zero-padded P, then a branch-free resampling into row. */
static void fwd_slice_row(const apt_proj_shape *sh, const apt_proj_angle *a, const float *v, size_t rs, float *row,
                          float *P)
{
    int U = sh->U, zm = a->zmajor, M = zm ? sh->Z : sh->X, N = zm ? sh->X : sh->Z;
    memset(row, 0, (size_t)U * sizeof *row);
    P[0] = 0, P[N + 1] = 0;
    for (int m = 0; m < M; m++) {
        double fb = a->b0 + m * a->db;
        int lo, hi;
        if (!line_range(a, fb, N, U, &lo, &hi))
            continue;
        if (zm)
            memcpy(P + 1, v + (size_t)m * rs, (size_t)N * sizeof *P);
        else
            for (int k = 0; k < N; k++)
                P[k + 1] = v[(size_t)k * rs + m];
        for (int u = lo; u <= hi; u++) {
            float w;
            int ip = line_coord(a, u, fb, &w);
            row[u] += (1.0f - w) * P[ip] + w * P[ip + 1];
        }
    }
    float len = (float)a->len;
    for (int u = 0; u < U; u++)
        row[u] *= len;
}

/* The transpose on line m: scatter the detector row onto the padded line with the same weights. */
static inline void back_line(const apt_proj_angle *a, const float *row, int m, int N, int U, float *P)
{
    double fb = a->b0 + m * a->db;
    int lo, hi;
    memset(P, 0, (size_t)(N + 2) * sizeof *P);
    if (!line_range(a, fb, N, U, &lo, &hi))
        return;
    for (int u = lo; u <= hi; u++) {
        float w;
        int ip = line_coord(a, u, fb, &w);
        P[ip] += (1.0f - w) * row[u];
        P[ip + 1] += w * row[u];
    }
}

/* Adjoint, first part: rows k in [k0, k1) of one slice are set to the sum over the z-major angles of the subset
   (sino row s at s_in + s ss). */
static void back_slice_rows(const apt_proj_shape *sh, const apt_proj_angle *ang, const int *idx, int n,
                            const float *s_in, size_t ss, float *v, size_t rs, int k0, int k1, float *P)
{
    int X = sh->X, U = sh->U;
    for (int k = k0; k < k1; k++) {
        float *out = v + (size_t)k * rs;
        memset(out, 0, (size_t)X * sizeof *out);
        for (int s = 0; s < n; s++) {
            const apt_proj_angle *a = &ang[idx[s]];
            if (!a->zmajor)
                continue;
            back_line(a, s_in + (size_t)s * ss, k, X, U, P);
            float len = (float)a->len;
            for (int i = 0; i < X; i++)
                out[i] += P[i + 1] * len;
        }
    }
}

/* Adjoint, second part: columns i in [i0, i1) gain the x-major angles' share. */
static void back_slice_cols(const apt_proj_shape *sh, const apt_proj_angle *ang, const int *idx, int n,
                            const float *s_in, size_t ss, float *v, size_t rs, int i0, int i1, float *P)
{
    int Z = sh->Z, U = sh->U;
    for (int i = i0; i < i1; i++)
        for (int s = 0; s < n; s++) {
            const apt_proj_angle *a = &ang[idx[s]];
            if (a->zmajor)
                continue;
            back_line(a, s_in + (size_t)s * ss, i, Z, U, P);
            float len = (float)a->len;
            for (int k = 0; k < Z; k++)
                v[(size_t)k * rs + i] += P[k + 1] * len;
        }
}

void apt_proj_slice_forward(const apt_proj *p, const int *idx, int n, const float *v, size_t rs, float *s_out,
                            size_t ss, float *P)
{
    for (int s = 0; s < n; s++)
        fwd_slice_row(&p->sh, &p->ang[idx[s]], v, rs, s_out + (size_t)s * ss, P);
}

void apt_proj_slice_back(const apt_proj *p, const int *idx, int n, const float *s_in, size_t ss, float *v, size_t rs,
                         float *P)
{
    back_slice_rows(&p->sh, p->ang, idx, n, s_in, ss, v, rs, 0, p->sh.Z, P);
    back_slice_cols(&p->sh, p->ang, idx, n, s_in, ss, v, rs, 0, p->sh.X, P);
}

/* --- threads ------------------------------------------------------------------------------------------- */

/* Whole-volume operators: forward tasks are (slice, angle) rows, slice-major so a thread keeps its slices in
   cache; the adjoint runs as two conflict-free passes, (slice, z-row) tasks for the z-major angles, then
   (slice, x-column) tasks for the x-major ones. Results do not depend on the thread count. */
typedef struct job {
    const apt_proj *p;
    const int *idx;
    int n, pass; /* 0 forward, 1 adjoint rows, 2 adjoint columns */
    const float *in;
    float *out;
    atomic_int failed; /* a thread could not get its scratch line */
} job;

static void run_job(void *arg, long t0, long t1)
{
    job *jb = arg;
    const apt_proj_shape *sh = &jb->p->sh;
    size_t rs = (size_t)sh->Y * sh->X, ss = (size_t)sh->Y * sh->U;
    float *P = malloc(apt_proj_scratch_floats(jb->p) * sizeof *P);
    if (!P) {
        atomic_store(&jb->failed, 1);
        return;
    }
    long per = jb->pass == 0 ? jb->n : jb->pass == 1 ? sh->Z : sh->X;
    for (long t = t0; t < t1; t++) {
        int j = (int)(t / per), q = (int)(t % per);
        if (jb->pass == 0)
            fwd_slice_row(sh, &jb->p->ang[jb->idx[q]], jb->in + (size_t)j * sh->X, rs,
                          jb->out + ((size_t)q * sh->Y + j) * sh->U, P);
        else if (jb->pass == 1)
            back_slice_rows(sh, jb->p->ang, jb->idx, jb->n, jb->in + (size_t)j * sh->U, ss, jb->out + (size_t)j * sh->X,
                            rs, q, q + 1, P);
        else
            back_slice_cols(sh, jb->p->ang, jb->idx, jb->n, jb->in + (size_t)j * sh->U, ss, jb->out + (size_t)j * sh->X,
                            rs, q, q + 1, P);
    }
    free(P);
}

/* Small jobs run inline: thread start-up would dominate. */
static int run_parallel(const apt_proj *p, job *jb, long tasks, size_t work, apt_error *err)
{
    atomic_init(&jb->failed, 0);
    apt_par_for(run_job, jb, tasks, work < ((size_t)1 << 16) ? 1 : p->threads);
    return atomic_load(&jb->failed) ? apt_err(err, APT_ENOMEM, "tomo: out of memory for a scratch line") : APT_OK;
}

static int check_idx(const apt_proj *p, const int *idx, int n, apt_error *err)
{
    if (n < 1 || n > p->n_theta)
        return apt_err(err, APT_EINVAL, "tomo: subset of %d angles (projector has %d)", n, p->n_theta);
    for (int s = 0; s < n; s++)
        if (idx[s] < 0 || idx[s] >= p->n_theta)
            return apt_err(err, APT_EINVAL, "tomo: subset angle index %d out of range", idx[s]);
    return APT_OK;
}

int apt_proj_forward_sub(const apt_proj *p, const float *vol, const int *idx, int n, float *sino_sub,
                         apt_error *err)
{
    int rc = check_idx(p, idx, n, err);
    if (rc)
        return rc;
    const apt_proj_ops *dev = atomic_load(&((apt_proj *)p)->dev);
    apt_error e = {0};
    if (dev && !(rc = dev->forward(&p->sh, p->ang, idx, n, vol, sino_sub, &e)))
        return APT_OK;
    if (dev)
        fall_back(p, &e);
    size_t M = (size_t)(p->sh.Z > p->sh.X ? p->sh.Z : p->sh.X);
    job jb = {.p = p, .idx = idx, .n = n, .pass = 0, .in = vol, .out = sino_sub};
    return run_parallel(p, &jb, (long)n * p->sh.Y, (size_t)n * p->sh.Y * p->sh.U * M, err);
}

int apt_proj_back_sub(const apt_proj *p, const float *sino_sub, const int *idx, int n, float *vol, apt_error *err)
{
    int rc = check_idx(p, idx, n, err);
    if (rc)
        return rc;
    const apt_proj_ops *dev = atomic_load(&((apt_proj *)p)->dev);
    apt_error e = {0};
    if (dev && !(rc = dev->back(&p->sh, p->ang, idx, n, sino_sub, vol, &e)))
        return APT_OK;
    if (dev)
        fall_back(p, &e);
    size_t work = (size_t)n * p->sh.Z * p->sh.Y * p->sh.X * 2;
    job rows = {.p = p, .idx = idx, .n = n, .pass = 1, .in = sino_sub, .out = vol};
    job cols = {.p = p, .idx = idx, .n = n, .pass = 2, .in = sino_sub, .out = vol};
    if ((rc = run_parallel(p, &rows, (long)p->sh.Y * p->sh.Z, work, err)))
        return rc;
    int any_x = 0;
    for (int s = 0; s < n; s++)
        any_x |= !p->ang[idx[s]].zmajor;
    return any_x ? run_parallel(p, &cols, (long)p->sh.Y * p->sh.X, work, err) : APT_OK;
}

int apt_proj_forward(const apt_proj *p, const float *vol, float *sino, apt_error *err)
{
    return apt_proj_forward_sub(p, vol, p->all, p->n_theta, sino, err);
}

int apt_proj_back(const apt_proj *p, const float *sino, float *vol, apt_error *err)
{
    return apt_proj_back_sub(p, sino, p->all, p->n_theta, vol, err);
}

int apt_proj_norm2(const apt_proj *p, int iters, double *L, apt_error *err)
{
    size_t nv = (size_t)p->sh.Z * p->sh.Y * p->sh.X, ns = (size_t)p->n_theta * p->sh.Y * p->sh.U;
    float *x = malloc(nv * sizeof *x), *y = malloc(ns * sizeof *y);
    if (!x || !y) {
        free(x);
        free(y);
        return apt_err(err, APT_ENOMEM, "tomo: out of memory for power iteration");
    }
    /* deterministic, non-negative start: overlaps the dominant (smooth, positive) eigenvector */
    uint64_t r = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < nv; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        x[i] = 0.5f + (float)(r >> 40) / (float)(1u << 24);
    }
    double lam = 0;
    int rc = APT_OK;
    for (int it = 0; it < iters && !rc; it++) {
        double nx = 0;
        for (size_t i = 0; i < nv; i++)
            nx += (double)x[i] * x[i];
        nx = sqrt(nx);
        if (nx == 0)
            break;
        for (size_t i = 0; i < nv; i++)
            x[i] = (float)(x[i] / nx);
        if ((rc = apt_proj_forward(p, x, y, err)) || (rc = apt_proj_back(p, y, x, err)))
            break;
        double n2 = 0;
        for (size_t i = 0; i < nv; i++)
            n2 += (double)x[i] * x[i];
        lam = sqrt(n2); /* |A^T A x| with |x| = 1 */
    }
    free(x);
    free(y);
    *L = lam;
    return rc;
}
