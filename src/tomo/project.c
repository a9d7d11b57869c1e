/* project.c - the matched parallel-beam projector pair (Joseph's method) for the tilt geometry: every ray marches
 * along the volume axis closest to the beam (z or x) and interpolates linearly along the other one. The adjoint is
 * written in gather form - each voxel collects the few detector pixels whose hat weight reaches it - so forward
 * (tasks = angle x row) and back (tasks = z-plane x row) both parallelise without atomics and stay exact adjoints:
 * both evaluate the same interpolation coordinate with the same arithmetic (project_int.h). */
#include "aptomo/tomo.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "tomo/project_int.h"

struct apt_proj {
    apt_proj_shape sh;
    int n_theta, threads, gpu;
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

int apt_proj_new(int Z, int Y, int X, int U, const double *theta_deg, int n_theta, int threads, unsigned flags,
                 apt_proj **out, apt_error *err)
{
    *out = NULL;
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
    p->gpu = (flags & APT_PROJ_GPU) && apt_proj_cuda_usable();
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
const char *apt_proj_backend(const apt_proj *p) { return p->gpu ? "cuda" : "cpu"; }

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

/* One detector row: sino row [U] of angle a at volume row j. */
static void forward_row(const apt_proj_shape *sh, const apt_proj_angle *a, const float *vol, int j, float *row)
{
    int Z = sh->Z, Y = sh->Y, X = sh->X, U = sh->U;
    int M = a->zmajor ? Z : X, N = a->zmajor ? X : Z; /* marching count, interpolated count */
    for (int u = 0; u < U; u++) {
        double acc = 0;
        for (int m = 0; m < M; m++) {
            double f = u * a->ia + (a->b0 + m * a->db);
            if (f <= -1.0 || f >= N)
                continue;
            double fl = floor(f), w1 = f - fl;
            int i0 = (int)fl;
            float v0, v1;
            if (a->zmajor) {
                const float *r = vol + ((size_t)m * Y + j) * X;
                v0 = i0 >= 0 ? r[i0] : 0.0f;
                v1 = i0 + 1 < N ? r[i0 + 1] : 0.0f;
            } else {
                v0 = i0 >= 0 ? vol[((size_t)i0 * Y + j) * X + m] : 0.0f;
                v1 = i0 + 1 < N ? vol[((size_t)(i0 + 1) * Y + j) * X + m] : 0.0f;
            }
            acc += (1.0 - w1) * v0 + w1 * v1;
        }
        row[u] = (float)(acc * a->len);
    }
}

/* Hat-weighted sum over detector pixels u of one sino row at interpolation index q (the voxel's index along the
   interpolated axis) and marching index m: the exact transpose of forward_row's weights. */
static inline double gather(const apt_proj_angle *a, const float *row, int U, int m, int q)
{
    double b = a->b0 + m * a->db;
    double lo = (q - 1 - b) * (1.0 / a->ia), hi = (q + 1 - b) * (1.0 / a->ia);
    if (lo > hi) {
        double t = lo;
        lo = hi, hi = t;
    }
    int u0 = (int)ceil(lo) - 1, u1 = (int)floor(hi) + 1; /* one extra each side: rounding of 1/ia */
    if (u0 < 0)
        u0 = 0;
    if (u1 > U - 1)
        u1 = U - 1;
    double acc = 0;
    for (int u = u0; u <= u1; u++) {
        double f = u * a->ia + b;
        double fl = floor(f), w1 = f - fl;
        int i0 = (int)fl;
        if (i0 == q)
            acc += (1.0 - w1) * row[u];
        else if (i0 + 1 == q)
            acc += w1 * row[u];
    }
    return acc * a->len;
}

/* One volume row (k, j, all i) from angles idx[n]. */
static void back_row(const apt_proj_shape *sh, const apt_proj_angle *ang, const int *idx, int n, const float *sino,
                     int k, int j, float *out)
{
    int Y = sh->Y, X = sh->X, U = sh->U;
    for (int i = 0; i < X; i++)
        out[i] = 0;
    for (int s = 0; s < n; s++) {
        const apt_proj_angle *a = &ang[idx[s]];
        const float *row = sino + ((size_t)s * Y + j) * U;
        for (int i = 0; i < X; i++)
            out[i] += (float)(a->zmajor ? gather(a, row, U, k, i) : gather(a, row, U, i, k));
    }
}

/* --- threads ------------------------------------------------------------------------------------------- */

typedef struct job {
    const apt_proj *p;
    const int *idx;
    int n, back;
    const float *in;
    float *out;
    size_t t0, t1; /* task range */
} job;

static void *run_job(void *arg)
{
    job *jb = arg;
    const apt_proj_shape *sh = &jb->p->sh;
    for (size_t t = jb->t0; t < jb->t1; t++) {
        if (jb->back) { /* task = (k, j) */
            int k = (int)(t / (size_t)sh->Y), j = (int)(t % (size_t)sh->Y);
            back_row(sh, jb->p->ang, jb->idx, jb->n, jb->in, k, j, jb->out + ((size_t)k * sh->Y + j) * sh->X);
        } else {        /* task = (s, j) */
            int s = (int)(t / (size_t)sh->Y), j = (int)(t % (size_t)sh->Y);
            forward_row(sh, &jb->p->ang[jb->idx[s]], jb->in, j, jb->out + ((size_t)s * sh->Y + j) * sh->U);
        }
    }
    return NULL;
}

/* Contiguous task ranges, one per thread; small jobs run inline (thread start-up would dominate). */
static int run_parallel(const apt_proj *p, job proto, size_t tasks, size_t work, apt_error *err)
{
    int T = p->threads;
    if ((size_t)T > tasks)
        T = (int)tasks;
    if (work < ((size_t)1 << 16))
        T = 1;
    if (T <= 1) {
        proto.t0 = 0, proto.t1 = tasks;
        run_job(&proto);
        return APT_OK;
    }
    pthread_t th[256];
    job jobs[256];
    int live[256] = {0};
    for (int t = 0; t < T; t++) {
        jobs[t] = proto;
        jobs[t].t0 = tasks * t / T;
        jobs[t].t1 = tasks * (t + 1) / T;
        if (t > 0)
            live[t] = pthread_create(&th[t], NULL, run_job, &jobs[t]) == 0;
    }
    run_job(&jobs[0]);
    for (int t = 1; t < T; t++) {
        if (live[t])
            pthread_join(th[t], NULL);
        else
            run_job(&jobs[t]); /* could not start a thread: do its share here */
    }
    (void)err;
    return APT_OK;
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
    if (p->gpu && apt_proj_cuda_forward(&p->sh, p->ang, idx, n, vol, sino_sub, NULL) == APT_OK)
        return APT_OK;
    size_t M = (size_t)(p->sh.Z > p->sh.X ? p->sh.Z : p->sh.X);
    job jb = {p, idx, n, 0, vol, sino_sub, 0, 0};
    return run_parallel(p, jb, (size_t)n * p->sh.Y, (size_t)n * p->sh.Y * p->sh.U * M, err);
}

int apt_proj_back_sub(const apt_proj *p, const float *sino_sub, const int *idx, int n, float *vol, apt_error *err)
{
    int rc = check_idx(p, idx, n, err);
    if (rc)
        return rc;
    if (p->gpu && apt_proj_cuda_back(&p->sh, p->ang, idx, n, sino_sub, vol, NULL) == APT_OK)
        return APT_OK;
    job jb = {p, idx, n, 1, sino_sub, vol, 0, 0};
    return run_parallel(p, jb, (size_t)p->sh.Z * p->sh.Y, (size_t)n * p->sh.Z * p->sh.Y * p->sh.X * 3, err);
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
