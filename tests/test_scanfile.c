/* test_scanfile.c - scan file round trips (every field), raw chunks equal apt_bslz4_encode of the frame, our
 * bitshuffle filter in both modes, and error paths on files built with raw HDF5 (missing datasets, wrong rank,
 * dtype and shape, corrupt chunks), each message naming the dataset path.
 * `test_scanfile --dump FILE DIR` writes what our reader decodes (test_scanfile_ref.py compares it with h5py). */
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apt_test.h"
#include "aptomo/codec.h"
#include "aptomo/h5filter.h"
#include "aptomo/scanfile.h"

static char dir[64];

static const char *tmp(const char *name)
{
    static char p[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

/* Deterministic pixels with zeros, small counts and saturated values (mirrors tests/test_spool_ref.py). */
static uint32_t pix(uint32_t s, uint32_t k, uint32_t y, uint32_t x, uint32_t W)
{
    uint32_t h = (y * W + x) * 2654435761u + k * 2246822519u + s * 3266489917u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    if (x % 11 == 5)
        return 0xFFFFFFFFu;
    return (h & 3) ? (h >> 28) : h;
}

static void *make_frames(uint32_t s, uint32_t J, uint32_t H, uint32_t W, uint32_t e)
{
    uint8_t *f = malloc((size_t)J * H * W * e);
    for (uint32_t k = 0; k < J; k++)
        for (uint32_t y = 0; y < H; y++)
            for (uint32_t x = 0; x < W; x++) {
                uint32_t v = pix(s, k, y, x, W);
                size_t i = ((size_t)k * H + y) * W + x;
                if (e == 1)
                    f[i] = (uint8_t)v;
                else if (e == 2)
                    ((uint16_t *)f)[i] = (uint16_t)v;
                else
                    ((uint32_t *)f)[i] = v;
            }
    return f;
}

static void make_pos(uint32_t J, double *p)
{
    for (uint32_t j = 0; j < J; j++) {
        p[2 * j] = 1e-7 * j - 3.5e-9;
        p[2 * j + 1] = -2e-7 * j + 1.25e-9;
    }
}

typedef struct { uint32_t J, H, W, e; } shape;
static const shape S[3] = {{5, 17, 23, 2}, {3, 37, 123, 4}, {2, 4, 5, 1}};
static const double ANG[3] = {-17.0, 0.5, 16.25};

static void test_roundtrip(void)
{
    apt_error err = {0};
    apt_scanfile *sf = NULL;
    const char *path = tmp("rt.h5");
    apt_scan_header h = {8.7, 3.25, 75e-6, {11.5, 9.25}, 3, NULL};
    CHECK_OK(apt_scanfile_create(path, &h, &sf, &err), &err);
    if (!sf)
        return;
    float probe[2 * 12 * 10 * 2];
    for (int i = 0; i < 2 * 12 * 10; i++) {
        probe[2 * i] = 0.5f * (float)i - 3.0f;
        probe[2 * i + 1] = -0.25f * (float)i;
    }
    CHECK_OK(apt_scanfile_write_probe(sf, 2, 12, 10, probe, 2.5e-8, &err), &err);
    void *fr[3];
    double pos[3][10];
    for (int a = 0; a < 3; a++) {
        fr[a] = make_frames((uint32_t)a + 1, S[a].J, S[a].H, S[a].W, S[a].e);
        make_pos(S[a].J, pos[a]);
    }
    CHECK_OK(apt_scanfile_write_angle(sf, 0, ANG[0], S[0].J, S[0].H, S[0].W, S[0].e, fr[0], pos[0], &err), &err);
    CHECK_OK(apt_scanfile_write_angle(sf, 1, ANG[1], S[1].J, S[1].H, S[1].W, S[1].e, fr[1], pos[1], &err), &err);
    /* angle 2 frame by frame */
    CHECK_OK(apt_scanfile_write_angle(sf, 2, ANG[2], S[2].J, S[2].H, S[2].W, S[2].e, NULL, pos[2], &err), &err);
    CHECK_OK(apt_scanfile_write_frames(sf, 2, 1, 1, (uint8_t *)fr[2] + 20, &err), &err);
    CHECK_OK(apt_scanfile_write_frames(sf, 2, 0, 1, fr[2], &err), &err);
    CHECK(apt_scanfile_write_frames(sf, 2, 1, 2, fr[2], &err) == APT_ERANGE);
    float gt[3 * 4 * 5];
    for (int i = 0; i < 60; i++)
        gt[i] = (float)i * 0.125f - 1.0f;
    const double vox[3] = {1e-8, 2e-8, 3e-8};
    CHECK_OK(apt_scanfile_write_ground_truth(sf, 3, 4, 5, gt, vox, &err), &err);

    /* write-side refusals */
    CHECK(apt_scanfile_write_angle(sf, 3, 0, 1, 1, 1, 2, fr[0], pos[0], &err) == APT_ERANGE);
    CHECK_MSG(strstr(err.msg, "angle index 3"), "%s", err.msg);
    CHECK(apt_scanfile_write_angle(sf, 0, 0, 1, 1, 1, 2, fr[0], pos[0], &err) == APT_ESTATE);
    CHECK_MSG(strstr(err.msg, "/entry/scan/0000/data"), "%s", err.msg);
    CHECK(apt_scanfile_write_angle(sf, 1, 0, 0, 1, 1, 2, NULL, pos[0], &err) == APT_ERANGE);
    CHECK(apt_scanfile_write_angle(sf, 1, 0, 1, 1, 1, 3, NULL, pos[0], &err) == APT_EINVAL);
    CHECK(apt_scanfile_write_angle(sf, 1, 0, 1, 70000, 1, 2, NULL, pos[0], &err) == APT_ERANGE);
    CHECK(apt_scanfile_write_probe(sf, 1, 2, 2, probe, 1e-8, &err) == APT_ESTATE);
    CHECK_OK(apt_scanfile_close(&sf, &err), &err);
    CHECK(sf == NULL);

    CHECK_OK(apt_scanfile_open(path, &sf, &err), &err);
    if (!sf)
        return;
    const apt_scan_header *g = apt_scanfile_header(sf);
    CHECK(g->energy_keV == 8.7 && g->detector_distance_m == 3.25 && g->pixel_size_m == 75e-6);
    CHECK(g->beam_center_px[0] == 11.5 && g->beam_center_px[1] == 9.25);
    CHECK(g->n_angles == 3);
    for (int a = 0; a < 3; a++)
        CHECK(g->angles_deg[a] == ANG[a]);
    uint32_t M, PH, PW;
    CHECK_OK(apt_scanfile_probe_dims(sf, &M, &PH, &PW, &err), &err);
    CHECK(M == 2 && PH == 12 && PW == 10);
    float probe2[sizeof probe / sizeof probe[0]];
    double ppx = 0;
    CHECK_OK(apt_scanfile_read_probe(sf, probe2, &ppx, &err), &err);
    CHECK(!memcmp(probe, probe2, sizeof probe) && ppx == 2.5e-8);

    apt_bytes blob = {0};
    for (uint32_t a = 0; a < 3; a++) {
        uint32_t J, H, W, e;
        CHECK_OK(apt_scanfile_angle_dims(sf, a, &J, &H, &W, &e, &err), &err);
        CHECK(J == S[a].J && H == S[a].H && W == S[a].W && e == S[a].e);
        size_t fb = (size_t)H * W * e;
        uint8_t *got = malloc(J * fb);
        CHECK_OK(apt_scanfile_read_frames(sf, a, 0, J, got, &err), &err);
        CHECK_MSG(!memcmp(got, fr[a], J * fb), "angle %u frames differ", a);
        memset(got, 0, J * fb);
        CHECK_OK(apt_scanfile_read_frames(sf, a, 1, J - 1, got, &err), &err);
        CHECK(!memcmp(got, (uint8_t *)fr[a] + fb, (J - 1) * fb));
        CHECK(apt_scanfile_read_frames(sf, a, J, 1, got, &err) == APT_ERANGE);
        double p[10];
        CHECK_OK(apt_scanfile_read_positions(sf, a, p, &err), &err);
        CHECK(!memcmp(p, pos[a], J * 2 * sizeof(double)));
        /* the stored chunk is exactly our encoder's blob of that frame */
        uint8_t *enc = malloc(apt_bslz4_bound((size_t)H * W, e));
        for (uint32_t j = 0; j < J; j++) {
            uint32_t mask = 99;
            size_t elen = 0;
            CHECK_OK(apt_scanfile_read_chunk(sf, a, j, &blob, &mask, &err), &err);
            CHECK_OK(apt_bslz4_encode((uint8_t *)fr[a] + j * fb, (size_t)H * W, e, enc,
                                      apt_bslz4_bound((size_t)H * W, e), &elen, &err), &err);
            CHECK_MSG(mask == 0 && blob.len == elen && !memcmp(blob.data, enc, elen), "angle %u frame %u chunk", a,
                      j);
            CHECK_OK(apt_bslz4_decode(blob.data, blob.len, e, got, fb, &err), &err);
            CHECK(!memcmp(got, (uint8_t *)fr[a] + j * fb, fb));
        }
        CHECK(apt_scanfile_read_chunk(sf, a, J, &blob, &(uint32_t){0}, &err) == APT_ERANGE);
        free(enc);
        free(got);
    }
    CHECK(apt_scanfile_has_ground_truth(sf));
    uint32_t Z, Y, X;
    CHECK_OK(apt_scanfile_ground_truth_dims(sf, &Z, &Y, &X, &err), &err);
    CHECK(Z == 3 && Y == 4 && X == 5);
    float gt2[60];
    double vox2[3];
    CHECK_OK(apt_scanfile_read_ground_truth(sf, gt2, vox2, &err), &err);
    CHECK(!memcmp(gt, gt2, sizeof gt) && !memcmp(vox, vox2, sizeof vox));
    CHECK(apt_scanfile_read_frames(sf, 3, 0, 1, gt2, &err) == APT_ERANGE);
    CHECK(apt_scanfile_write_probe(sf, 1, 2, 2, probe, 1e-8, &err) == APT_ESTATE);
    apt_bytes_free(&blob);
    CHECK_OK(apt_scanfile_close(&sf, &err), &err);
    for (int a = 0; a < 3; a++)
        free(fr[a]);
}

/* ---- files built with raw HDF5 for the error paths ------------------------------------------------------------ */

static void put(hid_t f, const char *path, hid_t type, int rank, const hsize_t *dims, const void *data)
{
    hid_t l = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(l, 1);
    hid_t sp = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t d = H5Dcreate2(f, path, type, sp, l, H5P_DEFAULT, H5P_DEFAULT);
    if (data)
        H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    H5Dclose(d);
    H5Sclose(sp);
    H5Pclose(l);
}

enum { NO_ANGLES = 1, INT_ENERGY = 2, RANK2 = 4, FLOAT_DATA = 8, POS_SHAPE = 16, NO_POS = 32, FLOAT_PROBE = 64,
       HUGE_ANGLES = 128 };

/* Header + 2-angle table + angle 0 contiguous uint16 [2,3,4] (no filter), with the given defect. */
static const char *bad_file(const char *name, int defect)
{
    const char *path = tmp(name);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    double one = 1.0;
    int ione = 1;
    if (defect & INT_ENERGY)
        put(f, "/entry/instrument/energy_keV", H5T_NATIVE_INT, 0, NULL, &ione);
    else
        put(f, "/entry/instrument/energy_keV", H5T_NATIVE_DOUBLE, 0, NULL, &one);
    put(f, "/entry/instrument/detector_distance_m", H5T_NATIVE_DOUBLE, 0, NULL, &one);
    put(f, "/entry/instrument/pixel_size_m", H5T_NATIVE_DOUBLE, 0, NULL, &one);
    const double ang[2] = {1, 2};
    hsize_t n = (defect & HUGE_ANGLES) ? 200000 : 2;
    if (!(defect & NO_ANGLES))
        put(f, "/entry/scan/angles_deg", H5T_NATIVE_DOUBLE, 1, &n, n == 2 ? ang : NULL);
    uint16_t px[24];
    for (int i = 0; i < 24; i++)
        px[i] = (uint16_t)(i * 1000);
    const hsize_t d3[3] = {2, 3, 4}, d2[2] = {6, 4}, p2[2] = {2, 2}, p3[2] = {2, 3};
    double pos[6] = {0};
    if (defect & RANK2)
        put(f, "/entry/scan/0000/data", H5T_NATIVE_UINT16, 2, d2, px);
    else if (defect & FLOAT_DATA)
        put(f, "/entry/scan/0000/data", H5T_NATIVE_FLOAT, 3, d3, NULL);
    else
        put(f, "/entry/scan/0000/data", H5T_NATIVE_UINT16, 3, d3, px);
    if (!(defect & NO_POS))
        put(f, "/entry/scan/0000/positions_m", H5T_NATIVE_DOUBLE, 2, (defect & POS_SHAPE) ? p3 : p2, pos);
    const hsize_t pd[3] = {1, 2, 2};
    if (defect & FLOAT_PROBE)
        put(f, "/entry/probe/modes", H5T_NATIVE_FLOAT, 3, pd, NULL);
    H5Fclose(f);
    return path;
}

#define EXPECT_FAIL(call, code, s1, s2)                                                                   \
    do {                                                                                                   \
        apt_err_clear(&err);                                                                               \
        int r_ = (call);                                                                                   \
        CHECK_MSG(r_ == (code) && strstr(err.msg, s1) && strstr(err.msg, s2), "rc=%d msg='%s'", r_, err.msg); \
    } while (0)

static void test_errors(void)
{
    apt_error err = {0};
    apt_scanfile *sf = NULL;
    uint16_t buf[24];
    uint32_t J, H, W, e, M;
    double pos[6];

    EXPECT_FAIL(apt_scanfile_open(tmp("nope.h5"), &sf, &err), APT_EIO, "nope.h5", "cannot open");
    FILE *t = fopen(tmp("text.h5"), "w");
    fputs("not hdf5\n", t);
    fclose(t);
    EXPECT_FAIL(apt_scanfile_open(tmp("text.h5"), &sf, &err), APT_EIO, "text.h5", "cannot open");
    EXPECT_FAIL(apt_scanfile_open(bad_file("a.h5", NO_ANGLES), &sf, &err), APT_EINVAL, "/entry/scan/angles_deg",
                "missing");
    EXPECT_FAIL(apt_scanfile_open(bad_file("b.h5", INT_ENERGY), &sf, &err), APT_EINVAL,
                "/entry/instrument/energy_keV", "floating-point");
    EXPECT_FAIL(apt_scanfile_open(bad_file("c.h5", HUGE_ANGLES), &sf, &err), APT_ERANGE, "/entry/scan/angles_deg",
                "200000");
    CHECK(sf == NULL);

    struct { const char *name; int defect; int code; const char *path, *what; } cases[] = {
        {"d.h5", RANK2, APT_EINVAL, "/entry/scan/0000/data", "rank 3"},
        {"e.h5", FLOAT_DATA, APT_EINVAL, "/entry/scan/0000/data", "uint16"},
        {"f.h5", POS_SHAPE, APT_EINVAL, "/entry/scan/0000/positions_m", "dimension 1 is 3"},
        {"g.h5", NO_POS, APT_EINVAL, "/entry/scan/0000/positions_m", "missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_OK(apt_scanfile_open(bad_file(cases[i].name, cases[i].defect), &sf, &err), &err);
        if (!sf)
            continue;
        EXPECT_FAIL(apt_scanfile_angle_dims(sf, 0, &J, &H, &W, &e, &err), cases[i].code, cases[i].path,
                    cases[i].what);
        EXPECT_FAIL(apt_scanfile_read_frames(sf, 0, 0, 1, buf, &err), cases[i].code, cases[i].path, cases[i].what);
        apt_scanfile_close(&sf, NULL);
    }

    /* a well-formed but unfiltered, contiguous file: frames read, raw chunks refused; angle 1 never written */
    CHECK_OK(apt_scanfile_open(bad_file("h.h5", FLOAT_PROBE), &sf, &err), &err);
    if (sf) {
        const apt_scan_header *g = apt_scanfile_header(sf);
        CHECK(g->beam_center_px[0] == 1.0 && g->beam_center_px[1] == 2.0); /* default: (H/2, W/2) of [2,3,4] */
        CHECK_OK(apt_scanfile_read_frames(sf, 0, 0, 2, buf, &err), &err);
        CHECK(buf[0] == 0 && buf[23] == 23000);
        CHECK_OK(apt_scanfile_read_positions(sf, 0, pos, &err), &err);
        apt_bytes blob = {0};
        uint32_t mask;
        EXPECT_FAIL(apt_scanfile_read_chunk(sf, 0, 0, &blob, &mask, &err), APT_ENOTSUP, "/entry/scan/0000/data",
                    "bitshuffle");
        EXPECT_FAIL(apt_scanfile_read_frames(sf, 1, 0, 1, buf, &err), APT_EINVAL, "/entry/scan/0001/data", "missing");
        EXPECT_FAIL(apt_scanfile_probe_dims(sf, &M, &H, &W, &err), APT_EINVAL, "/entry/probe/modes", "complex");
        EXPECT_FAIL(apt_scanfile_ground_truth_dims(sf, &M, &H, &W, &err), APT_EINVAL, "/entry/sample/ground_truth",
                    "missing");
        CHECK(!apt_scanfile_has_ground_truth(sf));
        EXPECT_FAIL(apt_scanfile_write_angle(sf, 1, 0, 1, 1, 1, 2, buf, pos, &err), APT_ESTATE, "h.h5", "read-only");
        apt_bytes_free(&blob);
        apt_scanfile_close(&sf, NULL);
    }

    apt_scan_header h = {0, 1, 1, {NAN, NAN}, 1, NULL};
    EXPECT_FAIL(apt_scanfile_create(tmp("x.h5"), &h, &sf, &err), APT_EINVAL, "x.h5", "energy_keV");
    h.energy_keV = 1;
    h.n_angles = 0;
    EXPECT_FAIL(apt_scanfile_create(tmp("x.h5"), &h, &sf, &err), APT_ERANGE, "x.h5", "n_angles");
    h.n_angles = 1;
    EXPECT_FAIL(apt_scanfile_create("/nonexistent-dir/x.h5", &h, &sf, &err), APT_EIO, "/nonexistent-dir/x.h5",
                "cannot create");
}

/* Corrupt chunks (fault injection): decoding fails with an error naming the dataset, never a crash. */
static void test_corrupt_chunks(void)
{
    apt_error err = {0};
    apt_scanfile *sf = NULL;
    const char *path = tmp("corrupt.h5");
    apt_scan_header h = {1, 1, 1, {NAN, NAN}, 1, NULL};
    const double pos[8] = {0};
    CHECK_OK(apt_scanfile_create(path, &h, &sf, &err), &err);
    if (!sf)
        return;
    CHECK_OK(apt_scanfile_write_angle(sf, 0, 0, 4, 16, 16, 2, NULL, pos, &err), &err);
    CHECK_OK(apt_scanfile_close(&sf, &err), &err);

    uint16_t frame[256];
    for (int i = 0; i < 256; i++)
        frame[i] = (uint16_t)(i * 7);
    uint8_t good[1024], bad[1024];
    size_t glen = 0;
    CHECK_OK(apt_bslz4_encode(frame, 256, 2, good, sizeof good, &glen, &err), &err);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/entry/scan/0000/data", H5P_DEFAULT);
    hsize_t off[3] = {0, 0, 0};
    H5Dwrite_chunk(d, H5P_DEFAULT, 0, off, glen, good);
    memcpy(bad, good, glen);
    bad[7] = 0xFF; /* header claims 255 more raw bytes than a frame holds */
    off[0] = 1;
    H5Dwrite_chunk(d, H5P_DEFAULT, 0, off, glen, bad);
    off[0] = 2;
    H5Dwrite_chunk(d, H5P_DEFAULT, 0, off, glen / 2, good); /* truncated */
    memcpy(bad, good, glen);
    for (size_t i = 16; i < glen; i++)
        bad[i] ^= 0x5A; /* garbage LZ4 */
    off[0] = 3;
    H5Dwrite_chunk(d, H5P_DEFAULT, 0, off, glen, bad);
    H5Dclose(d);
    H5Fclose(f);

    CHECK_OK(apt_scanfile_open(path, &sf, &err), &err);
    if (!sf)
        return;
    uint16_t got[256];
    CHECK_OK(apt_scanfile_read_frames(sf, 0, 0, 1, got, &err), &err);
    CHECK(!memcmp(got, frame, sizeof got));
    for (uint32_t j = 1; j < 4; j++)
        EXPECT_FAIL(apt_scanfile_read_frames(sf, 0, j, 1, got, &err), APT_EIO, "/entry/scan/0000/data", "frames");
    apt_scanfile_close(&sf, NULL);
}

/* Our filter's bitshuffle-only mode (cd compression 0) and a refused custom block on write. */
static void test_filter_modes(void)
{
    apt_error err = {0};
    CHECK_OK(apt_h5filter_register(&err), &err);
    CHECK_OK(apt_h5filter_register(&err), &err); /* idempotent */
    const char *path = tmp("modes.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const hsize_t dims[1] = {1003}, chunk[1] = {1003};
    uint32_t in[1003], out[1003], shuf[1003];
    for (int i = 0; i < 1003; i++)
        in[i] = (uint32_t)i * 2654435761u >> (i % 29);
    hid_t sp = H5Screate_simple(1, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, chunk);
    const unsigned cd[2] = {0, 0};
    H5Pset_filter(dcpl, APT_H5Z_BITSHUFFLE, H5Z_FLAG_MANDATORY, 2, cd);
    hid_t d = H5Dcreate2(f, "shuffle_only", H5T_NATIVE_UINT32, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    CHECK(d >= 0 && H5Dwrite(d, H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, in) >= 0);
    hid_t pl = H5Dget_create_plist(d);
    unsigned flags, cdv[8];
    size_t ncd = 8;
    H5Pget_filter_by_id2(pl, APT_H5Z_BITSHUFFLE, &flags, &ncd, cdv, 0, NULL, NULL);
    CHECK(ncd == 5 && cdv[0] == APT_H5Z_BSHUF_MAJOR && cdv[1] == APT_H5Z_BSHUF_MINOR && cdv[2] == 4 && cdv[3] == 0 &&
          cdv[4] == 0);
    CHECK(apt_h5filter_classify(pl) == APT_H5PIPE_OTHER);
    H5Pclose(pl);
    const hsize_t off[1] = {0};
    uint32_t mask = 9;
    hsize_t nb = 0;
    H5Dget_chunk_storage_size(d, off, &nb);
    CHECK(nb == sizeof in && H5Dread_chunk(d, H5P_DEFAULT, off, &mask, out) >= 0 && mask == 0);
    CHECK_OK(apt_bitshuffle(in, shuf, 1003, 4, 0, &err), &err);
    CHECK(!memcmp(out, shuf, sizeof out));
    memset(out, 0, sizeof out);
    CHECK(H5Dread(d, H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0);
    CHECK(!memcmp(in, out, sizeof in));
    H5Dclose(d);

    /* bslz4 with a non-default block: set_local accepts it, our encoder refuses to write it */
    const unsigned cd2[2] = {64, APT_H5Z_BSHUF_LZ4};
    hid_t dcpl2 = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl2, 1, chunk);
    H5Pset_filter(dcpl2, APT_H5Z_BITSHUFFLE, H5Z_FLAG_MANDATORY, 2, cd2);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    d = H5Dcreate2(f, "custom_block", H5T_NATIVE_UINT32, sp, H5P_DEFAULT, dcpl2, H5P_DEFAULT);
    CHECK(d >= 0);
    CHECK(H5Dwrite(d, H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, in) < 0 || H5Dflush(d) < 0);
    H5Dclose(d);
    H5Pclose(dcpl2);
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
}

/* --dump FILE DIR: header.txt, probe.bin, per angle frames/positions/chunk 0 as raw native bytes. */
static int dump(const char *file, const char *out)
{
    apt_error err = {0};
    apt_scanfile *sf = NULL;
    char p[512];
    if (apt_scanfile_open(file, &sf, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const apt_scan_header *h = apt_scanfile_header(sf);
    snprintf(p, sizeof p, "%s/header.txt", out);
    FILE *f = fopen(p, "w");
    fprintf(f, "%.17g %.17g %.17g %.17g %.17g %u\n", h->energy_keV, h->detector_distance_m, h->pixel_size_m,
            h->beam_center_px[0], h->beam_center_px[1], h->n_angles);
    for (uint32_t a = 0; a < h->n_angles; a++)
        fprintf(f, "%.17g\n", h->angles_deg[a]);
    fclose(f);
    uint32_t M, H, W, J, e;
    if (!apt_scanfile_probe_dims(sf, &M, &H, &W, &err)) {
        float *pr = malloc((size_t)M * H * W * 8);
        double px;
        if (!apt_scanfile_read_probe(sf, pr, &px, &err)) {
            snprintf(p, sizeof p, "%s/probe.bin", out);
            f = fopen(p, "wb");
            fwrite(pr, 8, (size_t)M * H * W, f);
            fclose(f);
        }
        free(pr);
    }
    int rc = 0;
    apt_bytes blob = {0};
    for (uint32_t a = 0; a < h->n_angles && !rc; a++) {
        if (apt_scanfile_angle_dims(sf, a, &J, &H, &W, &e, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            rc = 1;
            break;
        }
        size_t fb = (size_t)H * W * e;
        uint8_t *fr = malloc(J * fb);
        double *pos = malloc(J * 2 * sizeof *pos);
        if (apt_scanfile_read_frames(sf, a, 0, J, fr, &err) || apt_scanfile_read_positions(sf, a, pos, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            rc = 1;
        } else {
            snprintf(p, sizeof p, "%s/frames_%04u.bin", out, a);
            f = fopen(p, "wb");
            fwrite(fr, fb, J, f);
            fclose(f);
            snprintf(p, sizeof p, "%s/positions_%04u.bin", out, a);
            f = fopen(p, "wb");
            fwrite(pos, sizeof *pos, J * 2, f);
            fclose(f);
            uint32_t mask = 0;
            if (!apt_scanfile_read_chunk(sf, a, 0, &blob, &mask, &err)) {
                snprintf(p, sizeof p, "%s/chunk_%04u.bin", out, a);
                f = fopen(p, "wb");
                fwrite(blob.data, 1, blob.len, f);
                fclose(f);
            }
        }
        free(fr);
        free(pos);
    }
    apt_bytes_free(&blob);
    apt_scanfile_close(&sf, NULL);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--dump"))
        return dump(argv[2], argv[3]);
    snprintf(dir, sizeof dir, "/tmp/apt_scanfile_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_roundtrip();
    test_errors();
    test_corrupt_chunks();
    test_filter_modes();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    APT_TEST_DONE();
}
