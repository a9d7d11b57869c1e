/* stack.c - the per-angle slice stack (docs/PHYSICS.md, "Geometry"): its size for a sample grid, the probe window
 * at a scan position, and the simulation projector (delta/beta volume -> complex slices). The projector samples
 * each beam ray in its slice at <= half the smallest voxel with trilinear interpolation (0 outside the volume), so a
 * tilted volume needs no resampling pass; rows of the stack are spread over pthreads. */
#include "aptomo/geometry.h"
#include "aptomo/parallel.h"

#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <unistd.h>

enum {
    GRID_MAX_SIDE = 16384,
    STACK_MAX_L = 1024,
    STACK_MAX_SIDE = 32768,
    STACK_MAX_PAD = 4096,
    PROJ_MAX_SAMPLES = 1 << 20    /* per ray and slice: a dz of more than 2^19 voxels is a caller bug */
};
#define GRID_MAX_VOXELS (1ull << 30)
#define STACK_MAX_PIXELS (1ull << 28)

int apt_grid3_check(const apt_grid3 *g, apt_error *err)
{
    if (!g)
        return apt_err(err, APT_EINVAL, "grid: NULL");
    const int n[3] = {g->Z, g->Y, g->X};
    const double v[3] = {g->vz, g->vy, g->vx};
    static const char *nn[3] = {"Z", "Y", "X"}, *vn[3] = {"vz", "vy", "vx"};
    for (int a = 0; a < 3; a++) {
        if (n[a] < 1 || n[a] > GRID_MAX_SIDE)
            return apt_err(err, APT_ERANGE, "grid: %s = %d is outside [1, %d]", nn[a], n[a], GRID_MAX_SIDE);
        if (!isfinite(v[a]) || v[a] <= 0)
            return apt_err(err, APT_EINVAL, "grid: voxel size %s = %g m must be finite and > 0", vn[a], v[a]);
    }
    unsigned long long nv = (unsigned long long)g->Z * (unsigned long long)g->Y * (unsigned long long)g->X;
    if (nv > GRID_MAX_VOXELS)
        return apt_err(err, APT_ERANGE, "grid: %d x %d x %d = %llu voxels is over the bound %llu", g->Z, g->Y,
                       g->X, nv, GRID_MAX_VOXELS);
    return APT_OK;
}

int apt_stack_geom_check(const apt_stack_geom *sg, apt_error *err)
{
    if (!sg)
        return apt_err(err, APT_EINVAL, "stack: NULL");
    if (!isfinite(sg->theta_deg))
        return apt_err(err, APT_EINVAL, "stack: theta_deg is not finite");
    if (sg->L < 1 || sg->L > STACK_MAX_L)
        return apt_err(err, APT_ERANGE, "stack: L = %d slices is outside [1, %d]", sg->L, STACK_MAX_L);
    if (sg->Ny < 1 || sg->Ny > STACK_MAX_SIDE)
        return apt_err(err, APT_ERANGE, "stack: Ny = %d is outside [1, %d]", sg->Ny, STACK_MAX_SIDE);
    if (sg->Nx < 1 || sg->Nx > STACK_MAX_SIDE)
        return apt_err(err, APT_ERANGE, "stack: Nx = %d is outside [1, %d]", sg->Nx, STACK_MAX_SIDE);
    unsigned long long np = (unsigned long long)sg->L * (unsigned long long)sg->Ny * (unsigned long long)sg->Nx;
    if (np > STACK_MAX_PIXELS)
        return apt_err(err, APT_ERANGE, "stack: %d x %d x %d = %llu pixels is over the bound %llu", sg->L, sg->Ny,
                       sg->Nx, np, STACK_MAX_PIXELS);
    if (!isfinite(sg->delta_m) || sg->delta_m <= 0)
        return apt_err(err, APT_EINVAL, "stack: delta_m = %g must be finite and > 0", sg->delta_m);
    if (!isfinite(sg->dz_m) || sg->dz_m <= 0)
        return apt_err(err, APT_EINVAL, "stack: dz_m = %g must be finite and > 0", sg->dz_m);
    return APT_OK;
}

/* Pixels needed to cover `extent` metres: ceil, forgiving the last ulps of an exact fit (32.0000001 -> 32). */
static double pixels_for(double extent, double delta)
{
    return ceil(extent / delta * (1.0 - 1e-12));
}

int apt_stack_geom_for(const apt_grid3 *g, double theta_deg, int L, double delta_m, int pad_px,
                       apt_stack_geom *out, apt_error *err)
{
    int rc = apt_grid3_check(g, err);
    if (rc)
        return rc;
    if (!out)
        return apt_err(err, APT_EINVAL, "stack: NULL output");
    if (!isfinite(theta_deg))
        return apt_err(err, APT_EINVAL, "stack: theta_deg is not finite");
    if (L < 1 || L > STACK_MAX_L)
        return apt_err(err, APT_ERANGE, "stack: L = %d slices is outside [1, %d]", L, STACK_MAX_L);
    if (!isfinite(delta_m) || delta_m <= 0)
        return apt_err(err, APT_EINVAL, "stack: delta_m = %g must be finite and > 0", delta_m);
    if (pad_px < 0 || pad_px > STACK_MAX_PAD)
        return apt_err(err, APT_ERANGE, "stack: pad_px = %d is outside [0, %d]", pad_px, STACK_MAX_PAD);
    double t = theta_deg * (M_PI / 180.0), c = fabs(cos(t)), s = fabs(sin(t));
    double hx = 0.5 * g->X * g->vx, hz = 0.5 * g->Z * g->vz, hy = 0.5 * g->Y * g->vy;
    /* The rotated box's extents: across the beam (x') and along it (z'). */
    double width = 2.0 * (hx * c + hz * s), depth = 2.0 * (hx * s + hz * c);
    double nx = pixels_for(width, delta_m) + 2.0 * pad_px, ny = pixels_for(2.0 * hy, delta_m) + 2.0 * pad_px;
    if (nx > STACK_MAX_SIDE || ny > STACK_MAX_SIDE)
        return apt_err(err, APT_ERANGE,
                       "stack: delta_m = %g m gives %.0f x %.0f pixels, over the bound %d per side", delta_m, ny, nx,
                       STACK_MAX_SIDE);
    apt_stack_geom sg = {.theta_deg = theta_deg, .L = L, .Ny = (int)ny, .Nx = (int)nx, .delta_m = delta_m,
                         .dz_m = depth / L};
    rc = apt_stack_geom_check(&sg, err);
    if (rc)
        return rc;
    *out = sg;
    return APT_OK;
}

/* Nearest pixel to a coordinate; ties (an even-sized array's centre) go up, to N/2, the fftshift centre. Clamped
   before the cast so a wild coordinate cannot overflow an int. */
static int nearest_pixel(double coord_m, double delta_m, int n)
{
    double f = floor(coord_m / delta_m + 0.5 * (n - 1) + 0.5);
    if (!(f > -1e9))
        f = -1e9;
    if (f > 1e9)
        f = 1e9;
    return (int)f;
}

void apt_stack_window(const apt_stack_geom *sg, int H, int W, double y_m, double x_m, int *row, int *col)
{
    *row = nearest_pixel(y_m, sg->delta_m, sg->Ny) - H / 2;
    *col = nearest_pixel(x_m, sg->delta_m, sg->Nx) - W / 2;
}

double apt_stack_air_mean(const apt_stack_geom *sg, const apt_grid3 *g, const float *weight, const float *plane)
{
    double t = sg->theta_deg * (M_PI / 180.0);
    double foot = 0.5 * (g->X * g->vx * fabs(cos(t)) + g->Z * g->vz * fabs(sin(t))) + g->vx;
    double sw = 0, swv = 0;
    for (int c = 0; c < sg->Nx; c++) {
        if (fabs((c - (sg->Nx - 1) / 2.0) * sg->delta_m) <= foot)
            continue;
        for (int r = 0; r < sg->Ny; r++) {
            size_t q = (size_t)r * sg->Nx + c;
            double w = weight ? weight[q] : 1.0;
            sw += w;
            swv += w * plane[q];
        }
    }
    return sw > 0 ? swv / sw : 0;
}

/* ---- projector */

typedef struct proj_ctx {
    const apt_grid3 *g;
    const float *delta, *beta;
    const apt_stack_geom *sg;
    double k, cs, sn, h;   /* wavenumber, cos/sin theta, sample step along z' */
    int ns;                /* samples per ray and slice */
    float *object;
} proj_ctx;

/* Trilinear sample of delta (and beta) at continuous voxel indices (fk, fi) on a row whose y corners are given;
   corners outside the grid count as 0. */
static void sample3(const proj_ctx *p, const int jj[2], const double wy[2], double fk, double fi, double *d,
                    double *b)
{
    const apt_grid3 *g = p->g;
    int k0 = (int)floor(fk), i0 = (int)floor(fi);
    double wk1 = fk - k0, wi1 = fi - i0;
    double wk[2] = {1.0 - wk1, wk1}, wi[2] = {1.0 - wi1, wi1};
    for (int a = 0; a < 2; a++) {
        int k = k0 + a;
        if (k < 0 || k >= g->Z)
            continue;
        for (int bj = 0; bj < 2; bj++) {
            int j = jj[bj];
            if (j < 0 || j >= g->Y || wy[bj] == 0.0)
                continue;
            size_t rowoff = ((size_t)k * g->Y + (size_t)j) * g->X;
            for (int c = 0; c < 2; c++) {
                int i = i0 + c;
                if (i < 0 || i >= g->X)
                    continue;
                double w = wk[a] * wy[bj] * wi[c];
                *d += w * p->delta[rowoff + i];
                if (p->beta)
                    *b += w * p->beta[rowoff + i];
            }
        }
    }
}

static void project_rows(void *vctx, long lo, long hi)
{
    const proj_ctx *p = vctx;
    const apt_grid3 *g = p->g;
    const apt_stack_geom *sg = p->sg;
    double oz = 0.5 * (g->Z - 1), oy = 0.5 * (g->Y - 1), ox = 0.5 * (g->X - 1);
    size_t plane = (size_t)sg->Ny * sg->Nx;
    for (long r = lo; r < hi; r++) {
        double y = (r - 0.5 * (sg->Ny - 1)) * sg->delta_m, fj = y / g->vy + oy;
        int j0 = (int)floor(fj);
        int jj[2] = {j0, j0 + 1};
        double wy[2] = {1.0 - (fj - j0), fj - j0};
        int row_in = fj > -1.0 && fj < g->Y;   /* else the whole ray misses the volume: O = 1 */
        for (int c = 0; c < sg->Nx; c++) {
            double xp = (c - 0.5 * (sg->Nx - 1)) * sg->delta_m;
            for (int l = 0; l < sg->L; l++) {
                double z0 = (l - 0.5 * (sg->L - 1)) * sg->dz_m - 0.5 * sg->dz_m;
                double sd = 0.0, sb = 0.0;
                for (int s = 0; row_in && s < p->ns; s++) {
                    double zp = z0 + (s + 0.5) * p->h;
                    double x = xp * p->cs - zp * p->sn, z = xp * p->sn + zp * p->cs;
                    double fi = x / g->vx + ox, fk = z / g->vz + oz;
                    if (fi <= -1.0 || fi >= g->X || fk <= -1.0 || fk >= g->Z)
                        continue;
                    sample3(p, jj, wy, fk, fi, &sd, &sb);
                }
                /* O = exp(-k (beta_int + i delta_int)) with the integrals sd*h, sb*h in metres. */
                double amp = exp(-p->k * sb * p->h), ph = p->k * sd * p->h;
                float *o = p->object + 2 * ((size_t)l * plane + (size_t)r * sg->Nx + c);
                o[0] = (float)(amp * cos(ph));
                o[1] = (float)(-amp * sin(ph));
            }
        }
    }
}

int apt_stack_project(const apt_grid3 *g, const float *delta, const float *beta, const apt_stack_geom *sg,
                      double wavelength_m, float *object, apt_error *err)
{
    int rc = apt_grid3_check(g, err);
    if (rc || (rc = apt_stack_geom_check(sg, err)))
        return rc;
    if (!delta || !object)
        return apt_err(err, APT_EINVAL, "project: NULL %s", delta ? "object" : "delta");
    if (!isfinite(wavelength_m) || wavelength_m <= 0)
        return apt_err(err, APT_EINVAL, "project: wavelength_m = %g must be finite and > 0", wavelength_m);
    double vmin = fmin(g->vz, fmin(g->vy, g->vx));
    double ns = ceil(sg->dz_m / (0.5 * vmin) * (1.0 - 1e-12));
    if (ns > PROJ_MAX_SAMPLES)
        return apt_err(err, APT_ERANGE, "project: dz_m = %g m is %.0f half-voxel samples, over the bound %d",
                       sg->dz_m, ns, PROJ_MAX_SAMPLES);
    if (ns < 1)
        ns = 1;
    double t = sg->theta_deg * (M_PI / 180.0);
    proj_ctx p = {.g = g, .delta = delta, .beta = beta, .sg = sg, .k = 2.0 * M_PI / wavelength_m,
                  .cs = cos(t), .sn = sin(t), .h = sg->dz_m / ns, .ns = (int)ns, .object = object};
    apt_par_for(project_rows, &p, sg->Ny, 0);
    return APT_OK;
}
