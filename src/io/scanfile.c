/* scanfile.c - reader/writer of the scan file (layout in docs/FILES.md). Frames go through HDF5's filter pipeline
 * with our bitshuffle filter, one frame per chunk, so every stored chunk is exactly apt_bslz4_encode(frame) and
 * replay can ship it untouched. The last opened angle's datasets stay open: replay reads frame after frame. */
#include "aptomo/scanfile.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/codec.h"
#include "aptomo/h5filter.h"
#include "aptomo/h5io.h"

#define P_ENERGY "/entry/instrument/energy_keV"
#define P_DIST "/entry/instrument/detector_distance_m"
#define P_PIXEL "/entry/instrument/pixel_size_m"
#define P_BEAM "/entry/instrument/beam_center_px"
#define P_PROBE "/entry/probe/modes"
#define P_PROBE_PX "/entry/probe/pixel_size_m"
#define P_ANGLES "/entry/scan/angles_deg"
#define P_TRUTH "/entry/sample/ground_truth"
#define P_VOXEL "/entry/sample/voxel_size_m"

struct apt_scanfile {
    hid_t file;
    int writable;
    char path[256];
    apt_scan_header h;
    double *angles;
    /* the angle whose datasets are open */
    int64_t cur;
    hid_t cur_data;
    uint32_t J, H, W, elem;
    apt_h5pipe pipe;
    int chunk_is_frame;
    char data_path[64];
};

static void angle_close(apt_scanfile *sf)
{
    if (sf->cur_data >= 0)
        H5Dclose(sf->cur_data);
    sf->cur_data = -1;
    sf->cur = -1;
}

static hid_t native_uint(uint32_t elem)
{
    return elem == 1 ? H5T_NATIVE_UINT8 : elem == 2 ? H5T_NATIVE_UINT16 : H5T_NATIVE_UINT32;
}

static hid_t file_uint(uint32_t elem)
{
    return elem == 1 ? H5T_STD_U8LE : elem == 2 ? H5T_STD_U16LE : H5T_STD_U32LE;
}

static int positive(double v) { return isfinite(v) && v > 0; }

static apt_scanfile *sf_new(const char *path, apt_error *err)
{
    apt_scanfile *sf = calloc(1, sizeof *sf);
    if (!sf) {
        apt_err(err, APT_ENOMEM, "%s: out of memory", path);
        return NULL;
    }
    snprintf(sf->path, sizeof sf->path, "%s", path);
    sf->file = -1;
    sf->cur_data = -1;
    sf->cur = -1;
    return sf;
}

int apt_scanfile_create(const char *path, const apt_scan_header *h, apt_scanfile **out, apt_error *err)
{
    *out = NULL;
    if (!positive(h->energy_keV))
        return apt_err(err, APT_EINVAL, "%s: energy_keV must be finite and > 0", path);
    if (!positive(h->detector_distance_m))
        return apt_err(err, APT_EINVAL, "%s: detector_distance_m must be finite and > 0", path);
    if (!positive(h->pixel_size_m))
        return apt_err(err, APT_EINVAL, "%s: pixel_size_m must be finite and > 0", path);
    if (h->n_angles < 1 || h->n_angles > APT_SCAN_MAX_ANGLES)
        return apt_err(err, APT_ERANGE, "%s: n_angles %u outside [1, %u]", path, h->n_angles, APT_SCAN_MAX_ANGLES);
    int rc = apt_h5filter_register(err);
    if (rc)
        return rc;
    apt_h5io_quiet();
    apt_scanfile *sf = sf_new(path, err);
    if (!sf)
        return APT_ENOMEM;
    sf->writable = 1;
    sf->h = *h;
    sf->angles = malloc(h->n_angles * sizeof *sf->angles);
    if (!sf->angles) {
        free(sf);
        return apt_err(err, APT_ENOMEM, "%s: out of memory", path);
    }
    for (uint32_t i = 0; i < h->n_angles; i++)
        sf->angles[i] = h->angles_deg ? h->angles_deg[i] : NAN;
    sf->h.angles_deg = sf->angles;
    sf->file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (sf->file < 0)
        rc = apt_h5io_fail(err, APT_EIO, "%s: cannot create", path);
    if (!rc)
        rc = apt_h5io_write_scalar(sf->file, P_ENERGY, h->energy_keV, err);
    if (!rc)
        rc = apt_h5io_write_scalar(sf->file, P_DIST, h->detector_distance_m, err);
    if (!rc)
        rc = apt_h5io_write_scalar(sf->file, P_PIXEL, h->pixel_size_m, err);
    if (!rc && isfinite(h->beam_center_px[0]) && isfinite(h->beam_center_px[1])) {
        hsize_t two = 2;
        rc = apt_h5io_write(sf->file, P_BEAM, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &two, h->beam_center_px, err);
    }
    if (!rc) {
        hsize_t n = h->n_angles;
        rc = apt_h5io_write(sf->file, P_ANGLES, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &n, sf->angles, err);
    }
    if (rc) {
        if (sf->file >= 0)
            apt_err_prefix(err, rc, "%s: ", path);
        apt_scanfile_close(&sf, NULL);
        return rc;
    }
    *out = sf;
    return APT_OK;
}

/* Frame centre of angle 0 for files without beam_center_px. */
static void default_beam_center(apt_scanfile *sf)
{
    uint32_t J, H, W, e;
    apt_error ignore = {0};
    sf->h.beam_center_px[0] = sf->h.beam_center_px[1] = NAN;
    if (apt_scanfile_angle_dims(sf, 0, &J, &H, &W, &e, &ignore) == APT_OK) {
        sf->h.beam_center_px[0] = (double)(H / 2);
        sf->h.beam_center_px[1] = (double)(W / 2);
    }
}

int apt_scanfile_open(const char *path, apt_scanfile **out, apt_error *err)
{
    *out = NULL;
    int rc = apt_h5filter_register(err);
    if (rc)
        return rc;
    apt_h5io_quiet();
    apt_scanfile *sf = sf_new(path, err);
    if (!sf)
        return APT_ENOMEM;
    sf->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (sf->file < 0)
        rc = apt_h5io_fail(err, APT_EIO, "%s: cannot open as HDF5", path);
    if (!rc)
        rc = apt_h5io_read_scalar(sf->file, path, P_ENERGY, &sf->h.energy_keV, err);
    if (!rc)
        rc = apt_h5io_read_scalar(sf->file, path, P_DIST, &sf->h.detector_distance_m, err);
    if (!rc)
        rc = apt_h5io_read_scalar(sf->file, path, P_PIXEL, &sf->h.pixel_size_m, err);
    if (!rc && !positive(sf->h.energy_keV))
        rc = apt_err(err, APT_EINVAL, "%s: %s: must be finite and > 0", path, P_ENERGY);
    if (!rc && !positive(sf->h.detector_distance_m))
        rc = apt_err(err, APT_EINVAL, "%s: %s: must be finite and > 0", path, P_DIST);
    if (!rc && !positive(sf->h.pixel_size_m))
        rc = apt_err(err, APT_EINVAL, "%s: %s: must be finite and > 0", path, P_PIXEL);
    if (!rc) {
        /* Size the angle table from its extent, bounded, before allocating. */
        hsize_t n = 0;
        hid_t d = apt_h5io_open(sf->file, path, P_ANGLES, err);
        rc = d < 0 ? (int)d : apt_h5io_shape(d, path, P_ANGLES, 1, NULL, &n, err);
        if (d >= 0)
            H5Dclose(d);
        if (!rc && (n < 1 || n > APT_SCAN_MAX_ANGLES))
            rc = apt_err(err, APT_ERANGE, "%s: %s: %llu angles outside [1, %u]", path, P_ANGLES,
                         (unsigned long long)n, APT_SCAN_MAX_ANGLES);
        if (!rc && !(sf->angles = malloc((size_t)n * sizeof *sf->angles)))
            rc = apt_err(err, APT_ENOMEM, "%s: out of memory", path);
        if (!rc)
            rc = apt_h5io_read_f64(sf->file, path, P_ANGLES, 1, &n, sf->angles, (size_t)n, NULL, err);
        sf->h.n_angles = (uint32_t)n;
        sf->h.angles_deg = sf->angles;
    }
    if (!rc) {
        if (apt_h5io_exists(sf->file, P_BEAM)) {
            const hsize_t two = 2;
            rc = apt_h5io_read_f64(sf->file, path, P_BEAM, 1, &two, sf->h.beam_center_px, 2, NULL, err);
        } else {
            default_beam_center(sf);
        }
    }
    if (rc) {
        apt_scanfile_close(&sf, NULL);
        return rc;
    }
    *out = sf;
    return APT_OK;
}

int apt_scanfile_close(apt_scanfile **psf, apt_error *err)
{
    apt_scanfile *sf = psf ? *psf : NULL;
    if (!sf)
        return APT_OK;
    int rc = APT_OK;
    angle_close(sf);
    if (sf->file >= 0) {
        if (sf->writable && H5Fflush(sf->file, H5F_SCOPE_LOCAL) < 0)
            rc = apt_h5io_fail(err, APT_EIO, "%s: flush failed", sf->path);
        if (H5Fclose(sf->file) < 0 && !rc)
            rc = apt_h5io_fail(err, APT_EIO, "%s: close failed", sf->path);
    }
    free(sf->angles);
    free(sf);
    *psf = NULL;
    return rc;
}

const apt_scan_header *apt_scanfile_header(const apt_scanfile *sf) { return &sf->h; }
const char *apt_scanfile_path(const apt_scanfile *sf) { return sf->path; }

/* ---- probe ---------------------------------------------------------------------------------------------------- */

static int need_complex(hid_t d, const char *fname, const char *path, apt_error *err)
{
    hid_t t = H5Dget_type(d);
    int ok = t >= 0 && H5Tget_class(t) == H5T_COMPOUND && H5Tget_nmembers(t) == 2;
    for (int k = 0; ok && k < 2; k++) {
        int m = H5Tget_member_index(t, k ? "i" : "r");
        ok = m >= 0 && H5Tget_member_class(t, (unsigned)m) == H5T_FLOAT;
    }
    if (t >= 0)
        H5Tclose(t);
    H5Eclear2(H5E_DEFAULT);
    return ok ? APT_OK : apt_err(err, APT_EINVAL, "%s: %s: expected complex {r, i} floats", fname, path);
}

int apt_scanfile_write_probe(apt_scanfile *sf, uint32_t M, uint32_t H, uint32_t W, const float *modes,
                             double pixel_size_m, apt_error *err)
{
    apt_h5io_quiet();
    if (!sf->writable)
        return apt_err(err, APT_ESTATE, "%s: opened read-only", sf->path);
    if (M < 1 || M > APT_SCAN_MAX_MODES || H < 1 || H > APT_SCAN_MAX_SIDE || W < 1 || W > APT_SCAN_MAX_SIDE)
        return apt_err(err, APT_ERANGE, "%s: %s: shape [%u,%u,%u] out of range", sf->path, P_PROBE, M, H, W);
    if (!positive(pixel_size_m))
        return apt_err(err, APT_EINVAL, "%s: %s: must be finite and > 0", sf->path, P_PROBE_PX);
    if (apt_h5io_exists(sf->file, P_PROBE))
        return apt_err(err, APT_ESTATE, "%s: %s: already written", sf->path, P_PROBE);
    hid_t ft = H5Tcreate(H5T_COMPOUND, 8), mt = apt_h5io_complex64();
    int rc = ft < 0 || mt < 0 || H5Tinsert(ft, "r", 0, H5T_IEEE_F32LE) < 0 || H5Tinsert(ft, "i", 4, H5T_IEEE_F32LE) < 0
                 ? apt_h5io_fail(err, APT_EIO, "%s: complex type", sf->path)
                 : APT_OK;
    const hsize_t dims[3] = {M, H, W};
    if (!rc)
        rc = apt_h5io_write(sf->file, P_PROBE, ft, mt, 3, dims, modes, err);
    if (!rc)
        rc = apt_h5io_write_scalar(sf->file, P_PROBE_PX, pixel_size_m, err);
    if (ft >= 0)
        H5Tclose(ft);
    if (mt >= 0)
        H5Tclose(mt);
    return rc ? apt_err_prefix(err, rc, "%s: ", sf->path) : APT_OK;
}

int apt_scanfile_probe_dims(apt_scanfile *sf, uint32_t *M, uint32_t *H, uint32_t *W, apt_error *err)
{
    apt_h5io_quiet();
    hsize_t d[3];
    hid_t ds = apt_h5io_open(sf->file, sf->path, P_PROBE, err);
    if (ds < 0)
        return (int)ds;
    int rc = need_complex(ds, sf->path, P_PROBE, err);
    if (!rc)
        rc = apt_h5io_shape(ds, sf->path, P_PROBE, 3, NULL, d, err);
    H5Dclose(ds);
    if (!rc && (d[0] < 1 || d[0] > APT_SCAN_MAX_MODES || d[1] < 1 || d[1] > APT_SCAN_MAX_SIDE || d[2] < 1 ||
                d[2] > APT_SCAN_MAX_SIDE))
        rc = apt_err(err, APT_ERANGE, "%s: %s: shape [%llu,%llu,%llu] out of range", sf->path, P_PROBE,
                     (unsigned long long)d[0], (unsigned long long)d[1], (unsigned long long)d[2]);
    if (!rc) {
        *M = (uint32_t)d[0];
        *H = (uint32_t)d[1];
        *W = (uint32_t)d[2];
    }
    return rc;
}

int apt_scanfile_read_probe(apt_scanfile *sf, float *dst, double *pixel_size_m, apt_error *err)
{
    uint32_t M, H, W;
    int rc = apt_scanfile_probe_dims(sf, &M, &H, &W, err);
    if (rc)
        return rc;
    hid_t ds = apt_h5io_open(sf->file, sf->path, P_PROBE, err), mt = apt_h5io_complex64();
    if (ds < 0)
        rc = (int)ds;
    else if (mt < 0 || H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
        rc = apt_h5io_fail(err, APT_EIO, "%s: %s: read failed", sf->path, P_PROBE);
    if (ds >= 0)
        H5Dclose(ds);
    if (mt >= 0)
        H5Tclose(mt);
    if (!rc && pixel_size_m)
        rc = apt_h5io_read_scalar(sf->file, sf->path, P_PROBE_PX, pixel_size_m, err);
    return rc;
}

/* ---- angles --------------------------------------------------------------------------------------------------- */

static void angle_paths(uint32_t idx, char *data, char *pos)
{
    snprintf(data, 64, "/entry/scan/%04u/data", idx);
    snprintf(pos, 64, "/entry/scan/%04u/positions_m", idx);
}

static int check_idx(apt_scanfile *sf, uint32_t idx, apt_error *err)
{
    if (idx >= sf->h.n_angles)
        return apt_err(err, APT_ERANGE, "%s: angle index %u out of range (%u angles in %s)", sf->path, idx,
                       sf->h.n_angles, P_ANGLES);
    return APT_OK;
}

/* Open and validate angle idx's frames and positions, keeping the frames open for the next call. */
static int angle_open(apt_scanfile *sf, uint32_t idx, apt_error *err)
{
    apt_h5io_quiet();
    if (sf->cur == (int64_t)idx)
        return APT_OK;
    int rc = check_idx(sf, idx, err);
    if (rc)
        return rc;
    angle_close(sf);
    char dp[64], pp[64];
    angle_paths(idx, dp, pp);
    hsize_t d[3], pd[2];
    hid_t ds = apt_h5io_open(sf->file, sf->path, dp, err);
    if (ds < 0)
        return (int)ds;
    rc = apt_h5io_shape(ds, sf->path, dp, 3, NULL, d, err);
    if (!rc && (d[0] < 1 || d[0] > APT_SCAN_MAX_FRAMES || d[1] < 1 || d[1] > APT_SCAN_MAX_SIDE || d[2] < 1 ||
                d[2] > APT_SCAN_MAX_SIDE))
        rc = apt_err(err, APT_ERANGE, "%s: %s: shape [%llu,%llu,%llu] out of range", sf->path, dp,
                     (unsigned long long)d[0], (unsigned long long)d[1], (unsigned long long)d[2]);
    size_t elem = 0;
    if (!rc) {
        hid_t t = H5Dget_type(ds);
        int ok = t >= 0 && H5Tget_class(t) == H5T_INTEGER && H5Tget_sign(t) == H5T_SGN_NONE;
        elem = ok ? H5Tget_size(t) : 0;
        if (t >= 0)
            H5Tclose(t);
        if (elem != 1 && elem != 2 && elem != 4)
            rc = apt_err(err, APT_EINVAL, "%s: %s: expected uint8, uint16 or uint32 pixels", sf->path, dp);
    }
    if (!rc && d[1] * d[2] * elem > APT_SCAN_MAX_FRAME_BYTES)
        rc = apt_err(err, APT_ERANGE, "%s: %s: frame larger than %u bytes", sf->path, dp, APT_SCAN_MAX_FRAME_BYTES);
    if (!rc) {
        const hsize_t want[2] = {d[0], 2};
        hid_t ps = apt_h5io_open(sf->file, sf->path, pp, err);
        rc = ps < 0 ? (int)ps : apt_h5io_need_float(ps, sf->path, pp, err);
        if (!rc)
            rc = apt_h5io_shape(ps, sf->path, pp, 2, want, pd, err);
        if (ps >= 0)
            H5Dclose(ps);
    }
    if (rc) {
        H5Dclose(ds);
        return rc;
    }
    hid_t dcpl = H5Dget_create_plist(ds);
    hsize_t ch[3] = {0, 0, 0};
    sf->pipe = dcpl < 0 ? APT_H5PIPE_OTHER : apt_h5filter_classify(dcpl);
    sf->chunk_is_frame = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, 3, ch) == 3 &&
                         ch[0] == 1 && ch[1] == d[1] && ch[2] == d[2];
    if (dcpl >= 0)
        H5Pclose(dcpl);
    H5Eclear2(H5E_DEFAULT);
    sf->cur = idx;
    sf->cur_data = ds;
    sf->J = (uint32_t)d[0];
    sf->H = (uint32_t)d[1];
    sf->W = (uint32_t)d[2];
    sf->elem = (uint32_t)elem;
    memcpy(sf->data_path, dp, sizeof dp);
    return APT_OK;
}

static int frames_io(apt_scanfile *sf, uint32_t j0, uint32_t count, void *buf, int write, apt_error *err)
{
    if (count == 0)
        return APT_OK;
    if (j0 > sf->J || count > sf->J - j0)
        return apt_err(err, APT_ERANGE, "%s: %s: frames [%u, %u) outside [0, %u)", sf->path, sf->data_path, j0,
                       j0 + count, sf->J);
    const hsize_t start[3] = {j0, 0, 0}, cnt[3] = {count, sf->H, sf->W};
    hid_t fs = H5Dget_space(sf->cur_data), ms = H5Screate_simple(3, cnt, NULL);
    int rc = APT_OK;
    if (fs < 0 || ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) < 0)
        rc = apt_h5io_fail(err, APT_EIO, "%s: %s: selection failed", sf->path, sf->data_path);
    else if (write ? H5Dwrite(sf->cur_data, native_uint(sf->elem), ms, fs, H5P_DEFAULT, buf) < 0
                   : H5Dread(sf->cur_data, native_uint(sf->elem), ms, fs, H5P_DEFAULT, buf) < 0)
        rc = apt_h5io_fail(err, APT_EIO, "%s: %s: %s of frames [%u, %u) failed", sf->path, sf->data_path,
                           write ? "write" : "read", j0, j0 + count);
    if (ms >= 0)
        H5Sclose(ms);
    if (fs >= 0)
        H5Sclose(fs);
    return rc;
}

int apt_scanfile_write_angle(apt_scanfile *sf, uint32_t idx, double angle_deg, uint32_t J, uint32_t H, uint32_t W,
                             uint32_t elem_size, const void *frames, const double *pos_m, apt_error *err)
{
    apt_h5io_quiet();
    if (!sf->writable)
        return apt_err(err, APT_ESTATE, "%s: opened read-only", sf->path);
    int rc = check_idx(sf, idx, err);
    if (rc)
        return rc;
    char dp[64], pp[64];
    angle_paths(idx, dp, pp);
    if (!isfinite(angle_deg))
        return apt_err(err, APT_EINVAL, "%s: %s: angle %u is not finite", sf->path, P_ANGLES, idx);
    if (J < 1 || J > APT_SCAN_MAX_FRAMES || H < 1 || H > APT_SCAN_MAX_SIDE || W < 1 || W > APT_SCAN_MAX_SIDE)
        return apt_err(err, APT_ERANGE, "%s: %s: shape [%u,%u,%u] out of range", sf->path, dp, J, H, W);
    if (elem_size != 1 && elem_size != 2 && elem_size != 4)
        return apt_err(err, APT_EINVAL, "%s: %s: elem_size %u is not 1, 2 or 4", sf->path, dp, elem_size);
    if ((uint64_t)H * W * elem_size > APT_SCAN_MAX_FRAME_BYTES)
        return apt_err(err, APT_ERANGE, "%s: %s: frame larger than %u bytes", sf->path, dp, APT_SCAN_MAX_FRAME_BYTES);
    if (!pos_m)
        return apt_err(err, APT_EINVAL, "%s: %s: positions are required", sf->path, pp);
    if (apt_h5io_exists(sf->file, dp))
        return apt_err(err, APT_ESTATE, "%s: %s: already written", sf->path, dp);
    angle_close(sf);

    const hsize_t dims[3] = {J, H, W}, chunk[3] = {1, H, W}, pdims[2] = {J, 2};
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), sp = H5Screate_simple(3, dims, NULL), l = apt_h5io_lcpl();
    hid_t ds = -1;
    if (dcpl < 0 || sp < 0 || l < 0 || H5Pset_chunk(dcpl, 3, chunk) < 0)
        rc = apt_h5io_fail(err, APT_EIO, "%s: %s: property lists", sf->path, dp);
    if (!rc)
        rc = apt_h5filter_set_bslz4(dcpl, err);
    if (!rc && (ds = H5Dcreate2(sf->file, dp, file_uint(elem_size), sp, l, dcpl, H5P_DEFAULT)) < 0)
        rc = apt_h5io_fail(err, APT_EIO, "%s: %s: cannot create", sf->path, dp);
    if (ds >= 0)
        H5Dclose(ds);
    if (l >= 0)
        H5Pclose(l);
    if (sp >= 0)
        H5Sclose(sp);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (!rc)
        rc = apt_h5io_write(sf->file, pp, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, pdims, pos_m, err);
    if (!rc) {
        /* one element of the angle table */
        hid_t a = H5Dopen2(sf->file, P_ANGLES, H5P_DEFAULT);
        hid_t fs = a < 0 ? -1 : H5Dget_space(a);
        const hsize_t at = idx, one = 1;
        hid_t ms = H5Screate_simple(1, &one, NULL);
        if (a < 0 || fs < 0 || ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, &at, NULL, &one, NULL) < 0 ||
            H5Dwrite(a, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, &angle_deg) < 0)
            rc = apt_h5io_fail(err, APT_EIO, "%s: %s: write failed", sf->path, P_ANGLES);
        if (ms >= 0)
            H5Sclose(ms);
        if (fs >= 0)
            H5Sclose(fs);
        if (a >= 0)
            H5Dclose(a);
        sf->angles[idx] = angle_deg;
    }
    if (!rc && frames)
        rc = apt_scanfile_write_frames(sf, idx, 0, J, frames, err);
    return rc;
}

int apt_scanfile_write_frames(apt_scanfile *sf, uint32_t idx, uint32_t j0, uint32_t count, const void *frames,
                              apt_error *err)
{
    if (!sf->writable)
        return apt_err(err, APT_ESTATE, "%s: opened read-only", sf->path);
    int rc = angle_open(sf, idx, err);
    return rc ? rc : frames_io(sf, j0, count, (void *)frames, 1, err);
}

int apt_scanfile_angle_dims(apt_scanfile *sf, uint32_t idx, uint32_t *J, uint32_t *H, uint32_t *W,
                            uint32_t *elem_size, apt_error *err)
{
    int rc = angle_open(sf, idx, err);
    if (rc)
        return rc;
    *J = sf->J;
    *H = sf->H;
    *W = sf->W;
    *elem_size = sf->elem;
    return APT_OK;
}

int apt_scanfile_read_frames(apt_scanfile *sf, uint32_t idx, uint32_t j0, uint32_t count, void *dst,
                             apt_error *err)
{
    int rc = angle_open(sf, idx, err);
    return rc ? rc : frames_io(sf, j0, count, dst, 0, err);
}

int apt_scanfile_read_positions(apt_scanfile *sf, uint32_t idx, double *pos, apt_error *err)
{
    int rc = angle_open(sf, idx, err);
    if (rc)
        return rc;
    char dp[64], pp[64];
    angle_paths(idx, dp, pp);
    const hsize_t want[2] = {sf->J, 2};
    return apt_h5io_read_f64(sf->file, sf->path, pp, 2, want, pos, (size_t)sf->J * 2, NULL, err);
}

int apt_scanfile_read_chunk(apt_scanfile *sf, uint32_t idx, uint32_t j, apt_bytes *blob, uint32_t *filter_mask,
                            apt_error *err)
{
    int rc = angle_open(sf, idx, err);
    if (rc)
        return rc;
    apt_bytes_reset(blob);
    if (sf->pipe != APT_H5PIPE_BSLZ4 || !sf->chunk_is_frame)
        return apt_err(err, APT_ENOTSUP, "%s: %s: raw chunks need one frame per chunk and the bitshuffle+LZ4 filter",
                       sf->path, sf->data_path);
    if (j >= sf->J)
        return apt_err(err, APT_ERANGE, "%s: %s: frame %u outside [0, %u)", sf->path, sf->data_path, j, sf->J);
    const hsize_t off[3] = {j, 0, 0};
    hsize_t nbytes = 0;
    if (H5Dget_chunk_storage_size(sf->cur_data, off, &nbytes) < 0)
        return apt_h5io_fail(err, APT_EIO, "%s: %s: frame %u: chunk size unknown", sf->path, sf->data_path, j);
    size_t n = (size_t)sf->H * sf->W, raw = n * sf->elem, bound = apt_bslz4_bound(n, sf->elem);
    if (nbytes == 0)
        return apt_err(err, APT_EINVAL, "%s: %s: frame %u was never written", sf->path, sf->data_path, j);
    if (nbytes > (bound > raw ? bound : raw))
        return apt_err(err, APT_ERANGE, "%s: %s: frame %u: stored chunk of %llu bytes exceeds the bslz4 bound",
                       sf->path, sf->data_path, j, (unsigned long long)nbytes);
    rc = apt_bytes_reserve(blob, (size_t)nbytes, err);
    if (rc)
        return rc;
    uint32_t mask = 0;
    if (H5Dread_chunk(sf->cur_data, H5P_DEFAULT, off, &mask, blob->data) < 0)
        return apt_h5io_fail(err, APT_EIO, "%s: %s: frame %u: raw chunk read failed", sf->path, sf->data_path, j);
    blob->len = (size_t)nbytes;
    *filter_mask = mask;
    return APT_OK;
}

/* ---- ground truth --------------------------------------------------------------------------------------------- */

int apt_scanfile_write_ground_truth(apt_scanfile *sf, uint32_t Z, uint32_t Y, uint32_t X, const float *vol,
                                    const double voxel_size_m[3], apt_error *err)
{
    apt_h5io_quiet();
    if (!sf->writable)
        return apt_err(err, APT_ESTATE, "%s: opened read-only", sf->path);
    if (!Z || !Y || !X || (uint64_t)Z * Y * X > APT_SCAN_MAX_VOXELS)
        return apt_err(err, APT_ERANGE, "%s: %s: shape [%u,%u,%u] out of range", sf->path, P_TRUTH, Z, Y, X);
    for (int i = 0; i < 3; i++)
        if (!positive(voxel_size_m[i]))
            return apt_err(err, APT_EINVAL, "%s: %s[%d] must be finite and > 0", sf->path, P_VOXEL, i);
    if (apt_h5io_exists(sf->file, P_TRUTH))
        return apt_err(err, APT_ESTATE, "%s: %s: already written", sf->path, P_TRUTH);
    const hsize_t d[3] = {Z, Y, X}, three = 3;
    int rc = apt_h5io_write(sf->file, P_TRUTH, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, d, vol, err);
    if (!rc)
        rc = apt_h5io_write(sf->file, P_VOXEL, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &three, voxel_size_m, err);
    return rc ? apt_err_prefix(err, rc, "%s: ", sf->path) : APT_OK;
}

int apt_scanfile_has_ground_truth(apt_scanfile *sf)
{
    apt_h5io_quiet();
    return apt_h5io_exists(sf->file, P_TRUTH);
}

int apt_scanfile_ground_truth_dims(apt_scanfile *sf, uint32_t *Z, uint32_t *Y, uint32_t *X, apt_error *err)
{
    apt_h5io_quiet();
    hsize_t d[3];
    hid_t ds = apt_h5io_open(sf->file, sf->path, P_TRUTH, err);
    if (ds < 0)
        return (int)ds;
    int rc = apt_h5io_need_float(ds, sf->path, P_TRUTH, err);
    if (!rc)
        rc = apt_h5io_shape(ds, sf->path, P_TRUTH, 3, NULL, d, err);
    H5Dclose(ds);
    if (!rc && (!d[0] || !d[1] || !d[2] || d[0] > APT_SCAN_MAX_VOXELS / d[1] / d[2]))
        rc = apt_err(err, APT_ERANGE, "%s: %s: shape [%llu,%llu,%llu] out of range", sf->path, P_TRUTH,
                     (unsigned long long)d[0], (unsigned long long)d[1], (unsigned long long)d[2]);
    if (!rc) {
        *Z = (uint32_t)d[0];
        *Y = (uint32_t)d[1];
        *X = (uint32_t)d[2];
    }
    return rc;
}

int apt_scanfile_read_ground_truth(apt_scanfile *sf, float *dst, double voxel_size_m[3], apt_error *err)
{
    uint32_t Z, Y, X;
    int rc = apt_scanfile_ground_truth_dims(sf, &Z, &Y, &X, err);
    if (rc)
        return rc;
    hid_t ds = apt_h5io_open(sf->file, sf->path, P_TRUTH, err);
    if (ds < 0)
        return (int)ds;
    if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
        rc = apt_h5io_fail(err, APT_EIO, "%s: %s: read failed", sf->path, P_TRUTH);
    H5Dclose(ds);
    if (!rc && voxel_size_m) {
        const hsize_t three = 3;
        rc = apt_h5io_read_f64(sf->file, sf->path, P_VOXEL, 1, &three, voxel_size_m, 3, NULL, err);
    }
    return rc;
}
