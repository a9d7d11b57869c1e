/* h5io.c - checked HDF5 access for the scan file and the spool: each failure names the file and the dataset path,
 * and carries HDF5's own innermost reason. Existence is tested link by link first, so a missing group is reported
 * as missing instead of as an HDF5 stack dump. */
#include "aptomo/h5io.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void apt_h5io_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static herr_t innermost(unsigned n, const H5E_error2_t *e, void *data)
{
    char *out = data;
    if (n == 0 && e && e->desc && e->desc[0])
        snprintf(out, 200, "%s", e->desc);
    return 0;
}

int apt_h5io_fail(apt_error *err, int code, const char *fmt, ...)
{
    char why[200] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, why);
    H5Eclear2(H5E_DEFAULT);
    if (!err)
        return code;
    char msg[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (why[0])
        return apt_err(err, code, "%.300s: %s", msg, why);
    return apt_err(err, code, "%s", msg);
}

int apt_h5io_exists(hid_t loc, const char *path)
{
    char buf[512];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return 0;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        htri_t ok = H5Lexists(loc, buf, H5P_DEFAULT);
        buf[i] = c;
        if (ok <= 0) {
            H5Eclear2(H5E_DEFAULT);
            return 0;
        }
    }
    return 1;
}

hid_t apt_h5io_open(hid_t loc, const char *fname, const char *path, apt_error *err)
{
    if (!apt_h5io_exists(loc, path))
        return apt_err(err, APT_EINVAL, "%s: %s: missing", fname, path);
    hid_t d = H5Dopen2(loc, path, H5P_DEFAULT);
    if (d < 0)
        return apt_h5io_fail(err, APT_EINVAL, "%s: %s: not a readable dataset", fname, path);
    return d;
}

int apt_h5io_shape(hid_t dset, const char *fname, const char *path, int rank, const hsize_t *want, hsize_t *dims,
                   apt_error *err)
{
    hsize_t d[H5S_MAX_RANK];
    hid_t sp = H5Dget_space(dset);
    if (sp < 0)
        return apt_h5io_fail(err, APT_EIO, "%s: %s: no dataspace", fname, path);
    int r = H5Sget_simple_extent_ndims(sp);
    if (r >= 0 && r <= H5S_MAX_RANK)
        r = H5Sget_simple_extent_dims(sp, d, NULL) < 0 ? -1 : r;
    H5Sclose(sp);
    if (r < 0)
        return apt_h5io_fail(err, APT_EIO, "%s: %s: unreadable dataspace", fname, path);
    if (r != rank)
        return apt_err(err, APT_EINVAL, "%s: %s: expected rank %d, found rank %d", fname, path, rank, r);
    for (int i = 0; i < rank; i++) {
        if (want && want[i] && d[i] != want[i])
            return apt_err(err, APT_EINVAL, "%s: %s: dimension %d is %llu, expected %llu", fname, path, i,
                           (unsigned long long)d[i], (unsigned long long)want[i]);
        if (dims)
            dims[i] = d[i];
    }
    return APT_OK;
}

int apt_h5io_need_float(hid_t dset, const char *fname, const char *path, apt_error *err)
{
    hid_t t = H5Dget_type(dset);
    H5T_class_t c = t < 0 ? H5T_NO_CLASS : H5Tget_class(t);
    if (t >= 0)
        H5Tclose(t);
    if (c != H5T_FLOAT)
        return apt_err(err, APT_EINVAL, "%s: %s: expected a floating-point dataset", fname, path);
    return APT_OK;
}

int apt_h5io_read_scalar(hid_t loc, const char *fname, const char *path, double *out, apt_error *err)
{
    hid_t d = apt_h5io_open(loc, fname, path, err);
    if (d < 0)
        return (int)d;
    int rc = apt_h5io_need_float(d, fname, path, err);
    if (!rc) {
        hid_t sp = H5Dget_space(d);
        hssize_t n = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
        if (sp >= 0)
            H5Sclose(sp);
        if (n != 1)
            rc = apt_err(err, APT_EINVAL, "%s: %s: expected a scalar, found %lld elements", fname, path,
                         (long long)n);
    }
    if (!rc && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
        rc = apt_h5io_fail(err, APT_EIO, "%s: %s: read failed", fname, path);
    H5Dclose(d);
    return rc;
}

int apt_h5io_read_f64(hid_t loc, const char *fname, const char *path, int rank, const hsize_t *want, double *dst,
                      size_t cap, hsize_t *dims, apt_error *err)
{
    hsize_t d[H5S_MAX_RANK];
    hid_t ds = apt_h5io_open(loc, fname, path, err);
    if (ds < 0)
        return (int)ds;
    int rc = apt_h5io_need_float(ds, fname, path, err);
    if (!rc)
        rc = apt_h5io_shape(ds, fname, path, rank, want, d, err);
    if (!rc) {
        size_t n = 1;
        for (int i = 0; i < rank; i++)
            n = d[i] && n > cap / d[i] ? cap + 1 : n * d[i];
        if (n > cap)
            rc = apt_err(err, APT_ERANGE, "%s: %s: more than %zu elements", fname, path, cap);
        else if (n && H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
            rc = apt_h5io_fail(err, APT_EIO, "%s: %s: read failed", fname, path);
        if (!rc && dims)
            memcpy(dims, d, (size_t)rank * sizeof *d);
    }
    H5Dclose(ds);
    return rc;
}

hid_t apt_h5io_lcpl(void)
{
    hid_t l = H5Pcreate(H5P_LINK_CREATE);
    if (l >= 0)
        H5Pset_create_intermediate_group(l, 1);
    return l;
}

int apt_h5io_write(hid_t loc, const char *path, hid_t ftype, hid_t mtype, int rank, const hsize_t *dims,
                   const void *data, apt_error *err)
{
    hid_t sp = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t l = apt_h5io_lcpl();
    hid_t d = sp < 0 || l < 0 ? -1 : H5Dcreate2(loc, path, ftype, sp, l, H5P_DEFAULT, H5P_DEFAULT);
    int rc = APT_OK;
    if (d < 0)
        rc = apt_h5io_fail(err, APT_EIO, "%s: cannot create dataset", path);
    else if (H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        rc = apt_h5io_fail(err, APT_EIO, "%s: write failed", path);
    if (d >= 0)
        H5Dclose(d);
    if (l >= 0)
        H5Pclose(l);
    if (sp >= 0)
        H5Sclose(sp);
    return rc;
}

int apt_h5io_write_scalar(hid_t loc, const char *path, double v, apt_error *err)
{
    return apt_h5io_write(loc, path, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, NULL, &v, err);
}

static int attr_write(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v, apt_error *err)
{
    if (H5Aexists(obj, name) > 0)
        H5Adelete(obj, name);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = sp < 0 ? -1 : H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = APT_OK;
    if (a < 0 || H5Awrite(a, mtype, v) < 0)
        rc = apt_h5io_fail(err, APT_EIO, "attribute %s: write failed", name);
    if (a >= 0)
        H5Aclose(a);
    if (sp >= 0)
        H5Sclose(sp);
    return rc;
}

int apt_h5io_attr_str(hid_t obj, const char *name, const char *s, apt_error *err)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0)
        return apt_h5io_fail(err, APT_EIO, "attribute %s: no string type", name);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    int rc = attr_write(obj, name, t, t, &s, err);
    H5Tclose(t);
    return rc;
}

int apt_h5io_attr_u64(hid_t obj, const char *name, uint64_t v, apt_error *err)
{
    return attr_write(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v, err);
}

int apt_h5io_attr_f64(hid_t obj, const char *name, double v, apt_error *err)
{
    return attr_write(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, err);
}

hid_t apt_h5io_complex64(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, 2 * sizeof(float));
    if (t < 0)
        return t;
    if (H5Tinsert(t, "r", 0, H5T_NATIVE_FLOAT) < 0 || H5Tinsert(t, "i", sizeof(float), H5T_NATIVE_FLOAT) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}
