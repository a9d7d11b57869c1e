/* angle_proj.c - one angle's slice stack -> one tomographic projection (integrated phase, delta x voxels) on a
 * detector wide enough for the whole tilted sample, and the projection set that `aptomo approximant --projections`
 * and `aptomo tomo --save-projections` both fill and write, so one ptychography pass serves the Approximant and
 * every classical baseline. Far-field intensities are blind to a constant phase, so each angle's phase is
 * referenced to the air beside the sample. Files: Data Exchange by apt_result_write plus volume_shape. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/angle.h"
#include "aptomo/tomo.h"
#include "aptomo/volume.h"
#include "aptomo/h5io.h"

int apt_angle_proj_width(int Z, int X, const double *theta_deg, int n)
{
    if (Z < 1 || X < 1 || Z > APT_TOMO_MAX_SIDE || X > APT_TOMO_MAX_SIDE || n < 0 || (n && !theta_deg))
        return APT_EINVAL;
    double need = X; /* no angle: the grid itself */
    for (int a = 0; a < n; a++) {
        if (!isfinite(theta_deg[a]))
            return APT_EINVAL;
        double t = theta_deg[a] * (M_PI / 180.0);
        double half = (X - 1) / 2.0 * fabs(cos(t)) + (Z - 1) / 2.0 * fabs(sin(t)) + 1; /* +1: interpolation reach */
        /* the tolerance keeps cos(90 deg) = 6e-17 from adding a column */
        double u = ceil(2 * half + 1 - 1e-9);
        if (u > need)
            need = u;
    }
    if (need > APT_TOMO_MAX_SIDE)
        return APT_ERANGE;
    int U = (int)need;
    if ((U - X) % 2) /* same parity: detector and voxel centres coincide at theta = 0 */
        U++;
    return U > APT_TOMO_MAX_SIDE ? APT_ERANGE : U;
}

int apt_angle_projection(const apt_angle_result *res, double k, const apt_grid3 *g, int U, float *proj,
                         apt_error *err)
{
    const apt_stack_geom *sg = &res->sg;
    if (!(k > 0) || !isfinite(k))
        return apt_err(err, APT_EINVAL, "projection: wave number %g is not finite > 0", k);
    if (U < 1 || U > APT_TOMO_MAX_SIDE)
        return apt_err(err, APT_ERANGE, "projection: detector width %d out of range (1..%d)", U, APT_TOMO_MAX_SIDE);
    int rc = apt_grid3_check(g, err);
    if (rc || (rc = apt_stack_geom_check(sg, err)))
        return apt_err_prefix(err, rc, "projection: ");
    if (!res->object || !res->weight)
        return apt_err(err, APT_EINVAL, "projection: the angle result has no object or weight");
    size_t px = (size_t)sg->Ny * sg->Nx;
    float *phi = calloc(px, sizeof *phi);
    if (!phi)
        return apt_err(err, APT_ENOMEM, "projection: out of memory for %dx%d phase pixels", sg->Ny, sg->Nx);
    for (int l = 0; l < sg->L; l++)
        for (size_t q = 0; q < px; q++) {
            const float *o = res->object + 2 * ((size_t)l * px + q);
            phi[q] += -atan2f(o[1], o[0]);
        }
    /* referenced to air: the reconstruction starts flat and the data do not fix the constant (without this, the
       demo's projections kept 11-29 % of the sample's mass) */
    double air = apt_stack_air_mean(sg, g, res->weight, phi);
    for (size_t q = 0; q < px; q++)
        phi[q] -= (float)air;
    for (int j = 0; j < g->Y; j++)
        for (int u = 0; u < U; u++) {
            double r = (j - (g->Y - 1) / 2.0) * g->vy / sg->delta_m + (sg->Ny - 1) / 2.0;
            double c = (u - (U - 1) / 2.0) * g->vx / sg->delta_m + (sg->Nx - 1) / 2.0;
            float *dst = proj + (size_t)j * U + u;
            *dst = 0;
            if (r < 0 || c < 0 || r > sg->Ny - 1 || c > sg->Nx - 1)
                continue; /* outside the stack: the sample is not there */
            int r0 = (int)r, c0 = (int)c, r1 = r0 + 1 < sg->Ny ? r0 + 1 : r0, c1 = c0 + 1 < sg->Nx ? c0 + 1 : c0;
            double fr = r - r0, fc = c - c0;
#define AT(a, rr, cc) ((double)(a)[(size_t)(rr)*sg->Nx + (cc)])
            double w = (1 - fr) * ((1 - fc) * AT(res->weight, r0, c0) + fc * AT(res->weight, r0, c1)) +
                       fr * ((1 - fc) * AT(res->weight, r1, c0) + fc * AT(res->weight, r1, c1));
            double v = (1 - fr) * ((1 - fc) * AT(phi, r0, c0) + fc * AT(phi, r0, c1)) +
                       fr * ((1 - fc) * AT(phi, r1, c0) + fc * AT(phi, r1, c1));
#undef AT
            if (w > 1e-3) /* not illuminated: no phase to integrate */
                *dst = (float)(v / k / g->vx);
        }
    free(phi);
    return APT_OK;
}

/* --- the projection set ---------------------------------------------------------------------------------- */

int apt_angle_projs_init(apt_angle_projs *ps, const apt_grid3 *g, int vol_Z, int vol_X, const double *theta_deg,
                         int n, apt_error *err)
{
    memset(ps, 0, sizeof *ps);
    int rc = apt_grid3_check(g, err);
    if (rc)
        return apt_err_prefix(err, rc, "projections: ");
    if (n < 1 || n > APT_TOMO_MAX_ANGLES)
        return apt_err(err, APT_ERANGE, "projections: %d angles out of range (1..%d)", n, APT_TOMO_MAX_ANGLES);
    vol_Z = vol_Z ? vol_Z : g->Z;
    vol_X = vol_X ? vol_X : g->X;
    if (vol_Z < 1 || vol_X < 1 || vol_Z > APT_TOMO_MAX_SIDE || vol_X > APT_TOMO_MAX_SIDE)
        return apt_err(err, APT_ERANGE, "projections: volume %dx%d out of range (1..%d)", vol_Z, vol_X,
                       APT_TOMO_MAX_SIDE);
    /* wide enough for the sample and for the volume asked for */
    int wz = vol_Z > g->Z ? vol_Z : g->Z, wx = vol_X > g->X ? vol_X : g->X;
    int U = apt_angle_proj_width(wz, wx, theta_deg, n);
    if (U == APT_ERANGE)
        return apt_err(err, APT_ERANGE, "projections: a %dx%d slab needs more than %d detector columns", wz, wx,
                       APT_TOMO_MAX_SIDE);
    if (U < 0)
        return apt_err(err, APT_EINVAL, "projections: an angle is not finite");
    size_t bytes = (size_t)n * g->Y * U * sizeof(float);
    if (bytes > APT_ANGLE_PROJ_MAX_BYTES)
        return apt_err(err, APT_ENOMEM, "projections: %d angles x %d rows x %d columns = %.2f GiB of float32, over "
                       "the %.0f GiB bound", n, g->Y, U, bytes / 1073741824.0, APT_ANGLE_PROJ_MAX_BYTES / 1073741824.0);
    ps->data = malloc(bytes);
    ps->theta_deg = malloc((size_t)n * sizeof *ps->theta_deg);
    if (!ps->data || !ps->theta_deg) {
        apt_angle_projs_free(ps);
        return apt_err(err, APT_ENOMEM, "projections: out of memory for %.2f GiB", bytes / 1073741824.0);
    }
    memcpy(ps->theta_deg, theta_deg, (size_t)n * sizeof *theta_deg);
    ps->grid = *g;
    ps->vol_Z = vol_Z;
    ps->vol_X = vol_X;
    ps->n = n;
    ps->U = U;
    return APT_OK;
}

int apt_angle_projs_add(apt_angle_projs *ps, const apt_angle_result *res, double k, apt_error *err)
{
    if (!ps->data || ps->count >= ps->n)
        return apt_err(err, APT_ESTATE, "projections: all %d angles are already added", ps->n);
    size_t row = (size_t)ps->grid.Y * ps->U;
    int rc = apt_angle_projection(res, k, &ps->grid, ps->U, ps->data + (size_t)ps->count * row, err);
    if (rc)
        return apt_err_prefix(err, rc, "angle %d (%.3f deg): ", ps->count, ps->theta_deg[ps->count]);
    ps->count++;
    return APT_OK;
}

void apt_angle_projs_free(apt_angle_projs *ps)
{
    free(ps->data);
    free(ps->theta_deg);
    memset(ps, 0, sizeof *ps);
}

/* volume_shape as int32 [3] on /exchange/data of an open file. */
static int shape_attr_write(hid_t f, const char *fname, const apt_angle_projs *ps, apt_error *err)
{
    int shape[3] = {ps->vol_Z, ps->grid.Y, ps->vol_X};
    hsize_t three = 3;
    hid_t d = H5Dopen2(f, "/exchange/data", H5P_DEFAULT);
    hid_t sp = H5Screate_simple(1, &three, NULL);
    hid_t a = d < 0 || sp < 0 ? -1 : H5Acreate2(d, "volume_shape", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, H5T_NATIVE_INT, shape) < 0
                 ? apt_h5io_fail(err, APT_EIO, "%s: /exchange/data: cannot write attribute volume_shape", fname)
                 : APT_OK;
    if (a >= 0)
        H5Aclose(a);
    if (sp >= 0)
        H5Sclose(sp);
    if (d >= 0)
        H5Dclose(d);
    return rc;
}

int apt_angle_projs_write(const apt_angle_projs *ps, const char *path, const char *config_yaml, apt_error *err)
{
    if (!ps->data || ps->count != ps->n)
        return apt_err(err, APT_ESTATE, "%s: only %d of %d projections are filled", path, ps->count, ps->n);
    /* the result writer (voxel size, theta, config) to PATH.part, the attribute, then one rename: readers never
       see a projections file without its volume_shape */
    char part[4200];
    if (snprintf(part, sizeof part, "%s.part", path) >= (int)sizeof part)
        return apt_err(err, APT_EINVAL, "%.200s...: path too long", path);
    const apt_grid3 *g = &ps->grid;
    apt_volume pv = {ps->n, g->Y, ps->U, {g->vz, g->vy, g->vx}, ps->data};
    apt_result r = {&pv, NULL, ps->theta_deg, (size_t)ps->n, config_yaml, NULL, NULL, 0};
    int rc = apt_result_write(part, &r, err);
    if (rc)
        return apt_err_prefix(err, rc, "%s: ", path);
    apt_h5io_quiet();
    hid_t f = H5Fopen(part, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0)
        rc = apt_h5io_fail(err, APT_EIO, "%s: cannot reopen to add volume_shape", part);
    else {
        rc = shape_attr_write(f, part, ps, err);
        if (H5Fclose(f) < 0 && !rc)
            rc = apt_h5io_fail(err, APT_EIO, "%s: close failed", part);
    }
    if (!rc && rename(part, path) != 0)
        rc = apt_err(err, APT_EIO, "rename %s -> %s failed", part, path);
    if (rc)
        remove(part);
    return rc;
}

int apt_angle_proj_read_shape(const char *path, int shape[3], apt_error *err)
{
    shape[0] = shape[1] = shape[2] = 0;
    apt_h5io_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return apt_h5io_fail(err, APT_EIO, "%s: cannot open as HDF5", path);
    int rc = APT_OK;
    hid_t d = apt_h5io_exists(f, "/exchange/data") ? H5Dopen2(f, "/exchange/data", H5P_DEFAULT) : -1;
    if (d < 0 || H5Aexists(d, "volume_shape") <= 0)
        goto out; /* plain Data Exchange: no shape to take */
    hid_t a = H5Aopen(d, "volume_shape", H5P_DEFAULT);
    hid_t sp = a < 0 ? -1 : H5Aget_space(a), t = a < 0 ? -1 : H5Aget_type(a);
    hsize_t dims[1] = {0};
    int v[3];
    if (a < 0 || sp < 0 || t < 0)
        rc = apt_h5io_fail(err, APT_EIO, "%s: /exchange/data: attribute volume_shape unreadable", path);
    else if (H5Tget_class(t) != H5T_INTEGER || H5Sget_simple_extent_ndims(sp) != 1 ||
             H5Sget_simple_extent_dims(sp, dims, NULL) < 0 || dims[0] != 3)
        rc = apt_err(err, APT_EINVAL, "%s: /exchange/data: attribute volume_shape must be 3 integers [Z, Y, X]",
                     path);
    else if (H5Aread(a, H5T_NATIVE_INT, v) < 0)
        rc = apt_h5io_fail(err, APT_EIO, "%s: /exchange/data: attribute volume_shape: read failed", path);
    for (int i = 0; !rc && i < 3; i++)
        if (v[i] < 1 || v[i] > APT_TOMO_MAX_SIDE)
            rc = apt_err(err, APT_ERANGE, "%s: /exchange/data: volume_shape[%d] = %d out of range (1..%d)", path, i,
                         v[i], APT_TOMO_MAX_SIDE);
    if (!rc)
        memcpy(shape, v, sizeof v);
    if (t >= 0)
        H5Tclose(t);
    if (sp >= 0)
        H5Sclose(sp);
    if (a >= 0)
        H5Aclose(a);
out:
    if (d >= 0)
        H5Dclose(d);
    H5Fclose(f);
    return rc;
}
