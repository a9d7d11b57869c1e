/* fuzz_h5volume.c - libFuzzer target: the volume reader (volume.h: Data Exchange /exchange/data, a scan file's
 * ground truth, the voxel size beside it or in /exchange) and the volume_shape attribute of a projections file
 * (angle.h), on well-formed HDF5 files with hostile content. As in fuzz_h5scan.c the input is a description
 * (fuzz_h5util.h), not HDF5 bytes: libhdf5's own parser is fuzzed upstream; ours is the validation of dtypes,
 * ranks, extents, sizes against bounds, NaN/inf and inconsistent lengths. The file is written under /dev/shm.
 * Datasets never written may have extents up to 2^32 per axis, except products between 2^20 and the reader's own
 * bound of 2^32 voxels: those are valid and the reader would allocate up to 16 GiB, beyond the fuzzer's memory. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/angle.h"
#include "aptomo/tomo.h"
#include "aptomo/volume.h"
#include "fuzz_h5util.h"

#define VOL_ST (5 * FZ_DS_BYTES + FZ_ATTR_BYTES)

static void expect(int ok, const char *what, const apt_error *err)
{
    if (!ok) {
        fprintf(stderr, "fuzz_h5volume: contract broken: %s (last error: %s)\n", what, err ? err->msg : "");
        abort();
    }
}

static void check_rc(int rc, const apt_error *err, const char *path)
{
    if (rc)
        expect(err->code == rc && strstr(err->msg, path) != NULL, "error message does not name the file", err);
}

static int unwritten_ok(int rank, const hsize_t *dims)
{
    hsize_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] > (hsize_t)1 << 20)
            return 1;
        n *= dims[i];
    }
    return n <= (hsize_t)1 << 20 || n > (hsize_t)APT_VOLUME_MAX_VOXELS;
}

static void build(const char *path, const uint8_t *data, size_t size)
{
    fz_in st = {data, size < VOL_ST ? size : VOL_ST}, val = {data + st.n, size - st.n};
    hid_t f = fz_create(path);
    if (f < 0)
        return;
    const fz_canon vol = {H5T_IEEE_F32LE, 3, {2, 3, 4}, FZ_CONTIGUOUS};
    const fz_canon voxel = {H5T_IEEE_F64LE, 1, {3}, FZ_CONTIGUOUS}, shape = {H5T_STD_I32LE, 1, {3}, 0};
    fz_dataset(f, "/exchange/data", &vol, &st, &val);
    fz_dataset(f, "/exchange/voxel_size_m", &voxel, &st, &val);
    fz_dataset(f, "/entry/sample/ground_truth", &vol, &st, &val);
    fz_dataset(f, "/entry/sample/voxel_size_m", &voxel, &st, &val);
    fz_dataset(f, "/exchange/theta", &voxel, &st, &val);
    fz_attribute(f, "/exchange/data", "volume_shape", &shape, &st, &val);
    H5Fclose(f);
}

static void read_volume(const char *path, const char *dataset)
{
    apt_volume v;
    apt_error err = {0};
    int rc = apt_volume_read(path, dataset, &v, &err);
    check_rc(rc, &err, path);
    if (rc) {
        expect(v.data == NULL, "a failed read left data allocated", &err);
        return;
    }
    expect(v.Z >= 1 && v.Y >= 1 && v.X >= 1 && v.data &&
               (size_t)v.Z * (size_t)v.Y * (size_t)v.X <= APT_VOLUME_MAX_VOXELS,
           "volume extents outside the documented bounds", &err);
    volatile float sink = v.data[(size_t)v.Z * v.Y * v.X - 1]; /* ASan: the whole volume is allocated */
    (void)sink;
    for (int i = 0; i < 3; i++)
        expect(isnan(v.voxel_m[i]) || (isfinite(v.voxel_m[i]) && v.voxel_m[i] > 0),
               "voxel size neither unknown (NaN) nor finite and > 0", &err);
    apt_volume_free(&v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_scratch_path("h5volume");
    fz_unwritten_ok = unwritten_ok;
    build(path, data, size);
    read_volume(path, "/exchange/data");
    read_volume(path, "/entry/sample/ground_truth");
    int shape[3];
    apt_error err = {0};
    int rc = apt_angle_proj_read_shape(path, shape, &err);
    check_rc(rc, &err, path);
    for (int i = 0; !rc && i < 3; i++)
        expect(shape[i] == 0 || (shape[i] >= 1 && shape[i] <= APT_TOMO_MAX_SIDE), "volume_shape out of range",
               &err);
    remove(path);
    return 0;
}
