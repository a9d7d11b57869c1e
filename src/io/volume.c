/* volume.c - Data Exchange volume files: the reader every command shares and the result writer of the daemon and
 * the CLI. Results are written to a temporary name and renamed so a dashboard polling the file never reads a
 * half-written volume. */
#include "aptomo/volume.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/h5io.h"

int apt_volume_read(const char *path, const char *dataset, apt_volume *v, apt_error *err)
{
    memset(v, 0, sizeof *v);
    v->voxel_m[0] = v->voxel_m[1] = v->voxel_m[2] = NAN;
    apt_h5io_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return apt_h5io_fail(err, APT_EIO, "%s: cannot open as HDF5", path);
    int rc = APT_OK;
    hsize_t dims[3];
    hid_t d = apt_h5io_open(f, path, dataset, err);
    if (d < 0) {
        rc = APT_EINVAL;
        goto out;
    }
    if ((rc = apt_h5io_shape(d, path, dataset, 3, NULL, dims, err)) || (rc = apt_h5io_need_float(d, path, dataset, err)))
        goto close_d;
    size_t n = (size_t)dims[0] * dims[1] * dims[2];
    if (!n || n > APT_VOLUME_MAX_VOXELS || dims[0] > 1u << 20 || dims[1] > 1u << 20 || dims[2] > 1u << 20) {
        rc = apt_err(err, APT_ERANGE, "%s: %s: %llux%llux%llu voxels out of range", path, dataset,
                     (unsigned long long)dims[0], (unsigned long long)dims[1], (unsigned long long)dims[2]);
        goto close_d;
    }
    v->data = malloc(n * sizeof *v->data);
    if (!v->data) {
        rc = apt_err(err, APT_ENOMEM, "%s: %s: out of memory for %zu voxels", path, dataset, n);
        goto close_d;
    }
    if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v->data) < 0) {
        rc = apt_h5io_fail(err, APT_EIO, "%s: %s: read failed", path, dataset);
        goto close_d;
    }
    v->Z = (int)dims[0];
    v->Y = (int)dims[1];
    v->X = (int)dims[2];
    /* voxel size beside the dataset (e.g. /entry/sample/voxel_size_m of a scan file), else Data Exchange's */
    char vpath[512];
    const char *slash = strrchr(dataset, '/');
    snprintf(vpath, sizeof vpath, "%.*s/voxel_size_m", slash ? (int)(slash - dataset) : 0, dataset);
    const char *vs_path = apt_h5io_exists(f, vpath) ? vpath : "/exchange/voxel_size_m";
    if (apt_h5io_exists(f, vs_path)) {
        hsize_t want[1] = {3};
        double vs[3];
        if ((rc = apt_h5io_read_f64(f, path, vs_path, 1, want, vs, 3, NULL, err)))
            goto close_d;
        /* NaN = unknown (what a result of a volume without voxel size stores); else a length */
        for (int i = 0; i < 3; i++)
            if (!isnan(vs[i]) && !(isfinite(vs[i]) && vs[i] > 0)) {
                rc = apt_err(err, APT_EINVAL, "%s: %s[%d] = %g: must be finite and > 0 (or NaN: unknown)", path,
                             vs_path, i, vs[i]);
                goto close_d;
            }
        memcpy(v->voxel_m, vs, sizeof vs);
    }
close_d:
    H5Dclose(d);
out:
    H5Fclose(f);
    if (rc)
        apt_volume_free(v);
    return rc;
}

int apt_volume_read_spec(const char *spec, const char *dataset, apt_volume *v, apt_error *err)
{
    char path[4096];
    if (strlen(spec) >= sizeof path) {
        memset(v, 0, sizeof *v);
        return apt_err(err, APT_EINVAL, "volume file name longer than %zu characters", sizeof path - 1);
    }
    memcpy(path, spec, strlen(spec) + 1);
    char *colon = strstr(path, ".h5:/"); /* "FILE.h5:/DATASET": a dataset name always starts with '/' */
    if (colon) {
        colon[3] = '\0';
        dataset = colon + 4;
    }
    return apt_volume_read(path, dataset, v, err);
}

void apt_volume_free(apt_volume *v)
{
    free(v->data);
    v->data = NULL;
}

static int write_vol(hid_t f, const char *path, const apt_volume *v, apt_error *err)
{
    hsize_t dims[3] = {(hsize_t)v->Z, (hsize_t)v->Y, (hsize_t)v->X};
    return apt_h5io_write(f, path, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, dims, v->data, err);
}

int apt_result_write(const char *path, const apt_result *r, apt_error *err)
{
    const apt_volume *main = r->data ? r->data : r->approximant;
    if (!main)
        return apt_err(err, APT_EINVAL, "%s: nothing to write", path);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    apt_h5io_quiet();
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        return apt_h5io_fail(err, APT_EIO, "%s: cannot create", tmp);
    int rc = write_vol(f, "/exchange/data", main, err);
    if (!rc && r->approximant)
        rc = write_vol(f, "/exchange/approximant", r->approximant, err);
    if (!rc) {
        hsize_t n[1] = {3};
        rc = apt_h5io_write(f, "/exchange/voxel_size_m", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, n, main->voxel_m,
                            err);
    }
    if (!rc && r->n_theta) {
        hsize_t n[1] = {r->n_theta};
        rc = apt_h5io_write(f, "/exchange/theta", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, n, r->theta_deg, err);
    }
    for (size_t i = 0; !rc && i < r->n_metrics; i++) {
        char p[256];
        snprintf(p, sizeof p, "/process/metrics/%s", r->metric_names[i]);
        rc = apt_h5io_write_scalar(f, p, r->metric_values[i], err);
    }
    if (!rc && r->config_yaml) {
        hid_t root = H5Gopen2(f, "/", H5P_DEFAULT);
        rc = apt_h5io_attr_str(root, "config", r->config_yaml, err);
        if (!rc)
            rc = apt_h5io_attr_str(root, "creator", "aptomo " APTOMO_VERSION, err);
        H5Gclose(root);
    }
    if (H5Fclose(f) < 0 && !rc)
        rc = apt_h5io_fail(err, APT_EIO, "%s: close failed", tmp);
    if (!rc && rename(tmp, path) != 0)
        rc = apt_err(err, APT_EIO, "rename %s -> %s failed", tmp, path);
    if (rc)
        remove(tmp);
    return rc;
}
