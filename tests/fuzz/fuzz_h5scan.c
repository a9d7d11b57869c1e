/* fuzz_h5scan.c - libFuzzer target: the scan file reader (scanfile.h) on well-formed HDF5 files with hostile
 * content. The input is not an HDF5 file: libhdf5's format parser is fuzzed upstream and not ours to fix. It is a
 * description (fuzz_h5util.h): the first SCAN_ST bytes say, per dataset of the layout in docs/FILES.md, whether it
 * is there, as what dtype, rank, extents and storage (bslz4 chunks written by our filter, raw chunks from the input,
 * never-written chunked datasets with extents up to 2^32, ...); the rest are the values (NaN, inf, 0, negative...).
 * The harness writes that file under /dev/shm with the HDF5 API and runs every reader entry point on it, checking
 * the readers' contracts: an error names the file, what is returned is within the documented bounds. The harness
 * itself reads at most 1 MiB per call (a frame count, probe or volume within the readers' bounds may be larger). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/scanfile.h"
#include "fuzz_h5util.h"

#define N_ANG 3
#define SCAN_ST (6 + (9 + 2 * N_ANG) * FZ_DS_BYTES)
#define READ_CAP ((size_t)1 << 20)

static void expect(int ok, const char *what, const apt_error *err)
{
    if (!ok) {
        fprintf(stderr, "fuzz_h5scan: contract broken: %s (last error: %s)\n", what, err ? err->msg : "");
        abort();
    }
}

/* Every failure must name the file it is about. */
static void check_rc(int rc, const apt_error *err, const char *path)
{
    if (rc)
        expect(err->code == rc && strstr(err->msg, path) != NULL, "error message does not name the file", err);
}

static void build(const char *path, const uint8_t *data, size_t size)
{
    fz_in st = {data, size < SCAN_ST ? size : SCAN_ST}, val = {data + st.n, size - st.n};
    hsize_t n_ang = 1 + fz_u8(&st) % N_ANG, J = 1 + fz_u8(&st) % 3, H = 4 + fz_u8(&st) % 5, W = 4 + fz_u8(&st) % 5;
    uint8_t pb = fz_u8(&st) % 3;
    hsize_t M = 1 + fz_u8(&st) % 2;
    hid_t f = fz_create(path);
    if (f < 0)
        return;
    hid_t pt = pb == 0 ? H5T_STD_U16LE : pb == 1 ? H5T_STD_U8LE : H5T_STD_U32LE;
    hid_t cplx = H5Tcreate(H5T_COMPOUND, 8);
    H5Tinsert(cplx, "r", 0, H5T_IEEE_F32LE);
    H5Tinsert(cplx, "i", 4, H5T_IEEE_F32LE);
    const fz_canon scalar = {H5T_IEEE_F64LE, 0, {0}, FZ_CONTIGUOUS}, beam = {H5T_IEEE_F64LE, 1, {2}, FZ_CONTIGUOUS};
    const fz_canon angles = {H5T_IEEE_F64LE, 1, {n_ang}, FZ_CONTIGUOUS};
    const fz_canon probe = {cplx, 3, {M, H, W}, FZ_CONTIGUOUS};
    const fz_canon truth = {H5T_IEEE_F32LE, 3, {2, 3, 2}, FZ_CONTIGUOUS}, voxel = {H5T_IEEE_F64LE, 1, {3}, FZ_CONTIGUOUS};
    const fz_canon frames = {pt, 3, {J, H, W}, FZ_BSLZ4}, pos = {H5T_IEEE_F64LE, 2, {J, 2}, FZ_CONTIGUOUS};
    fz_dataset(f, "/entry/instrument/energy_keV", &scalar, &st, &val);
    fz_dataset(f, "/entry/instrument/detector_distance_m", &scalar, &st, &val);
    fz_dataset(f, "/entry/instrument/pixel_size_m", &scalar, &st, &val);
    fz_dataset(f, "/entry/instrument/beam_center_px", &beam, &st, &val);
    fz_dataset(f, "/entry/scan/angles_deg", &angles, &st, &val);
    fz_dataset(f, "/entry/probe/modes", &probe, &st, &val);
    fz_dataset(f, "/entry/probe/pixel_size_m", &scalar, &st, &val);
    fz_dataset(f, "/entry/sample/ground_truth", &truth, &st, &val);
    fz_dataset(f, "/entry/sample/voxel_size_m", &voxel, &st, &val);
    for (int k = 0; k < N_ANG; k++) {
        char p[64];
        snprintf(p, sizeof p, "/entry/scan/%04d/data", k);
        fz_dataset(f, p, &frames, &st, &val);
        snprintf(p, sizeof p, "/entry/scan/%04d/positions_m", k);
        fz_dataset(f, p, &pos, &st, &val);
    }
    H5Tclose(cplx);
    H5Fclose(f);
}

static int positive(double v) { return isfinite(v) && v > 0; }

static void read_angle(apt_scanfile *sf, const char *path, uint32_t idx)
{
    apt_error err = {0};
    uint32_t J, H, W, e;
    int rc = apt_scanfile_angle_dims(sf, idx, &J, &H, &W, &e, &err);
    check_rc(rc, &err, path);
    if (rc)
        return;
    expect(J >= 1 && J <= APT_SCAN_MAX_FRAMES && H >= 1 && H <= APT_SCAN_MAX_SIDE && W >= 1 &&
               W <= APT_SCAN_MAX_SIDE && (e == 1 || e == 2 || e == 4) &&
               (uint64_t)H * W * e <= APT_SCAN_MAX_FRAME_BYTES,
           "angle dims outside the documented bounds", &err);
    if ((size_t)J * 2 * sizeof(double) <= READ_CAP) {
        double *pos = malloc((size_t)J * 2 * sizeof *pos);
        rc = pos ? apt_scanfile_read_positions(sf, idx, pos, &err) : 0;
        check_rc(rc, &err, path);
        free(pos);
    }
    size_t frame = (size_t)H * W * e;
    if (frame <= READ_CAP) {
        uint32_t count = (uint32_t)(READ_CAP / frame < J ? READ_CAP / frame : J);
        void *buf = malloc(count * frame);
        rc = buf ? apt_scanfile_read_frames(sf, idx, 0, count, buf, &err) : 0;
        check_rc(rc, &err, path);
        rc = buf ? apt_scanfile_read_frames(sf, idx, J, 1, buf, &err) : APT_ERANGE;
        expect(rc == APT_ERANGE, "reading past the last frame did not fail with APT_ERANGE", &err);
        free(buf);
    }
    apt_bytes blob = {0};
    for (uint32_t j = 0; j < 2; j++) {
        uint32_t mask = 0;
        rc = apt_scanfile_read_chunk(sf, idx, j ? J - 1 : 0, &blob, &mask, &err);
        check_rc(rc, &err, path);
    }
    apt_bytes_free(&blob);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_scratch_path("h5scan");
    build(path, data, size);
    apt_scanfile *sf = NULL;
    apt_error err = {0};
    int rc = apt_scanfile_open(path, &sf, &err);
    check_rc(rc, &err, path);
    if (rc) {
        remove(path);
        return 0;
    }
    const apt_scan_header *h = apt_scanfile_header(sf);
    expect(positive(h->energy_keV) && positive(h->detector_distance_m) && positive(h->pixel_size_m) &&
               h->n_angles >= 1 && h->n_angles <= APT_SCAN_MAX_ANGLES && h->angles_deg,
           "header outside the documented bounds", &err);
    uint32_t M, H, W;
    rc = apt_scanfile_probe_dims(sf, &M, &H, &W, &err);
    check_rc(rc, &err, path);
    if (!rc && (size_t)M * H * W * 2 * sizeof(float) <= READ_CAP) {
        float *modes = malloc((size_t)M * H * W * 2 * sizeof *modes);
        double px;
        rc = modes ? apt_scanfile_read_probe(sf, modes, &px, &err) : 0;
        check_rc(rc, &err, path);
        free(modes);
    }
    for (uint32_t i = 0; i < h->n_angles && i < N_ANG + 1; i++)
        read_angle(sf, path, i);
    rc = apt_scanfile_read_frames(sf, h->n_angles, 0, 1, NULL, &err);
    expect(rc == APT_ERANGE, "an angle index past the table did not fail with APT_ERANGE", &err);
    if (apt_scanfile_has_ground_truth(sf)) {
        uint32_t Z, Y, X;
        rc = apt_scanfile_ground_truth_dims(sf, &Z, &Y, &X, &err);
        check_rc(rc, &err, path);
        if (!rc && (size_t)Z * Y * X * sizeof(float) <= READ_CAP) {
            float *vol = malloc((size_t)Z * Y * X * sizeof *vol);
            double vs[3];
            rc = vol ? apt_scanfile_read_ground_truth(sf, vol, vs, &err) : 0;
            check_rc(rc, &err, path);
            free(vol);
        }
    }
    rc = apt_scanfile_close(&sf, &err);
    check_rc(rc, &err, path);
    remove(path);
    return 0;
}
