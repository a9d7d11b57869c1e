/* test_spool.c - the frame spool stores what it receives bit-exactly: one series per (encoding, pixel type), frames
 * out of order with a gap, positions in two pieces; read back with HDF5 itself (our filter for 32008, Debian's
 * plugin for 32004) and raw chunks compared with the received blobs. Also mixed encodings, the raw-LZ4 block whose
 * length equals its raw size, name sanitising, no clobbering, and refusals (duplicates, bounds, bad headers).
 * `test_spool DIR` leaves the files in DIR for tests/test_spool_ref.py (h5py + plugins, independent decoders). */
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
#include "aptomo/spool.h"

#define J 6
#define H 37
#define W 123
static const uint64_t ORDER[5] = {3, 0, 5, 1, 4}; /* image 2 never arrives */

/* Same formula as test_scanfile.c and test_spool_ref.py. */
static uint32_t pix(uint32_t s, uint32_t k, uint32_t y, uint32_t x, uint32_t w)
{
    uint32_t h = (y * w + x) * 2654435761u + k * 2246822519u + s * 3266489917u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    if (x % 11 == 5)
        return 0xFFFFFFFFu;
    return (h & 3) ? (h >> 28) : h;
}

static void frame(uint32_t s, uint32_t k, uint32_t e, uint8_t *f)
{
    for (uint32_t y = 0; y < H; y++)
        for (uint32_t x = 0; x < W; x++) {
            uint32_t v = pix(s, k, y, x, W);
            size_t i = (size_t)y * W + x;
            if (e == 1)
                f[i] = (uint8_t)v;
            else if (e == 2)
                ((uint16_t *)f)[i] = (uint16_t)v;
            else
                ((uint32_t *)f)[i] = v;
        }
}

/* Encode a frame as the detector would send it. */
static size_t encode(apt_encoding enc, const uint8_t *f, uint32_t e, uint8_t *out, size_t cap)
{
    apt_error err = {0};
    size_t fb = (size_t)H * W * e, len = 0;
    int rc = APT_OK;
    switch (enc) {
    case APT_ENC_NONE: memcpy(out, f, fb); len = fb; break;
    case APT_ENC_BSLZ4: rc = apt_bslz4_encode(f, (size_t)H * W, e, out, cap, &len, &err); break;
    case APT_ENC_LZ4: rc = apt_lz4_encode_raw(f, fb, out, cap, &len, &err); break;
    case APT_ENC_H5LZ4: rc = apt_h5lz4_encode(f, fb, 0, out, cap, &len, &err); break;
    }
    CHECK_OK(rc, &err);
    return len;
}

static void pos_row(uint32_t s, uint64_t k, double *p)
{
    p[0] = 1e-7 * (double)k + 1e-9 * s;
    p[1] = -5e-8 * (double)k;
}

static const struct { apt_encoding enc; uint32_t e; } SERIES[] = {
    {APT_ENC_BSLZ4, 1}, {APT_ENC_BSLZ4, 2}, {APT_ENC_BSLZ4, 4}, {APT_ENC_H5LZ4, 1}, {APT_ENC_H5LZ4, 2},
    {APT_ENC_H5LZ4, 4}, {APT_ENC_LZ4, 1},   {APT_ENC_LZ4, 2},   {APT_ENC_LZ4, 4},   {APT_ENC_NONE, 1},
    {APT_ENC_NONE, 2},  {APT_ENC_NONE, 4},
};
#define NSERIES (sizeof SERIES / sizeof SERIES[0])

static uint8_t fbuf[H * W * 4], blob[2 * H * W * 4 + 1024], got[J * H * W * 4];
static char paths[NSERIES][512];

static void write_series(const char *dir, size_t si)
{
    apt_error err = {0};
    apt_spool *sp = NULL;
    uint32_t sid = 100 + (uint32_t)si, e = SERIES[si].e;
    char uid[16];
    snprintf(uid, sizeof uid, "u%zu", si);
    CHECK_OK(apt_spool_open(dir, sid, uid, W, H, e, &sp, &err), &err);
    if (!sp)
        return;
    snprintf(paths[si], sizeof paths[si], "%s", apt_spool_path(sp));
    double pos[J * 2];
    for (uint32_t k = 0; k < J; k++)
        pos_row(sid, k, pos + 2 * k);
    CHECK_OK(apt_spool_set_positions(sp, 3, 3, pos + 6, &err), &err);
    for (int i = 0; i < 5; i++) {
        frame(sid, (uint32_t)ORDER[i], e, fbuf);
        size_t len = encode(SERIES[si].enc, fbuf, e, blob, sizeof blob);
        CHECK_OK(apt_spool_write(sp, ORDER[i], SERIES[si].enc, blob, len, &err), &err);
        if (i == 1) { /* a duplicate of image 0 is refused, the first copy kept */
            frame(sid + 1, 0, e, fbuf);
            len = encode(SERIES[si].enc, fbuf, e, blob, sizeof blob);
            CHECK(apt_spool_write(sp, 0, SERIES[si].enc, blob, len, &err) == APT_ESTATE);
            CHECK_MSG(strstr(err.msg, "image 0 already spooled"), "%s", err.msg);
        }
    }
    CHECK_OK(apt_spool_set_positions(sp, 0, 3, pos, &err), &err);
    CHECK_OK(apt_spool_set_angle(sp, (double)si * 1.5 - 7, &err), &err);
    CHECK(apt_spool_frames(sp) == 5);
    CHECK_OK(apt_spool_close(&sp, &err), &err);
    CHECK(sp == NULL);
}

static uint64_t attr_u64(hid_t obj, const char *name)
{
    uint64_t v = UINT64_MAX;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a >= 0) {
        H5Aread(a, H5T_NATIVE_UINT64, &v);
        H5Aclose(a);
    }
    return v;
}

/* Read back with HDF5 (filters from our registration / Debian's plugin) and compare pixels and raw chunks. */
static void verify_series(size_t si)
{
    uint32_t sid = 100 + (uint32_t)si, e = SERIES[si].e;
    size_t fb = (size_t)H * W * e;
    hid_t f = H5Fopen(paths[si], H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK_MSG(f >= 0, "%s", paths[si]);
    if (f < 0)
        return;
    hid_t d = H5Dopen2(f, "/entry/data/data", H5P_DEFAULT), g = H5Gopen2(f, "/entry/data", H5P_DEFAULT);
    hid_t s = H5Dget_space(d);
    hsize_t dims[3] = {0, 0, 0};
    H5Sget_simple_extent_dims(s, dims, NULL);
    CHECK(dims[0] == J && dims[1] == H && dims[2] == W);
    hid_t mt = e == 1 ? H5T_NATIVE_UINT8 : e == 2 ? H5T_NATIVE_UINT16 : H5T_NATIVE_UINT32;
    memset(got, 0xAB, sizeof got);
    CHECK_MSG(H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, got) >= 0, "series %zu read", si);
    for (uint32_t k = 0; k < J; k++) {
        if (k == 2) {
            memset(fbuf, 0, fb);
        } else {
            frame(sid, k, e, fbuf);
        }
        CHECK_MSG(!memcmp(got + k * fb, fbuf, fb), "series %zu (%s, %u bytes) frame %u", si,
                  apt_encoding_name(SERIES[si].enc), e, k);
    }
    /* raw chunks: the received blob itself (or its 16-byte LZ4 framing, or our bslz4 of a raw frame) */
    for (int i = 0; i < 5; i++) {
        hsize_t off[3] = {ORDER[i], 0, 0}, nb = 0;
        uint32_t mask = 7;
        frame(sid, (uint32_t)ORDER[i], e, fbuf);
        apt_encoding enc = SERIES[si].enc == APT_ENC_NONE ? APT_ENC_BSLZ4 : SERIES[si].enc;
        size_t len = encode(enc, fbuf, e, blob, sizeof blob), off0 = enc == APT_ENC_LZ4 ? 16 : 0;
        H5Dget_chunk_storage_size(d, off, &nb);
        CHECK(nb == len + off0);
        uint8_t *raw = malloc(nb + 1);
        CHECK(H5Dread_chunk(d, H5P_DEFAULT, off, &mask, raw) >= 0 && mask == 0);
        CHECK_MSG(!memcmp(raw + off0, blob, len), "series %zu image %llu raw chunk", si,
                  (unsigned long long)ORDER[i]);
        if (off0) {
            uint8_t hdr[16];
            memset(hdr, 0, sizeof hdr);
            for (int b = 0; b < 8; b++)
                hdr[b] = (uint8_t)((uint64_t)fb >> (56 - 8 * b));
            for (int b = 0; b < 4; b++) {
                hdr[8 + b] = (uint8_t)(fb >> (24 - 8 * b));
                hdr[12 + b] = (uint8_t)(len >> (24 - 8 * b));
            }
            CHECK(!memcmp(raw, hdr, 16));
        }
        free(raw);
    }
    hid_t ids = H5Dopen2(f, "/entry/data/image_id", H5P_DEFAULT);
    uint64_t order[8] = {0};
    hid_t is = H5Dget_space(ids);
    CHECK(H5Sget_simple_extent_npoints(is) == 5);
    H5Dread(ids, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, order);
    CHECK(!memcmp(order, ORDER, sizeof ORDER));
    double pos[J * 2], want[2];
    hid_t pd = H5Dopen2(f, "/entry/data/positions_m", H5P_DEFAULT);
    CHECK(H5Dread(pd, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, pos) >= 0);
    for (uint32_t k = 0; k < J; k++) {
        pos_row(sid, k, want);
        CHECK(pos[2 * k] == want[0] && pos[2 * k + 1] == want[1]);
    }
    CHECK(attr_u64(g, "series_id") == sid && attr_u64(g, "frames") == 5);
    CHECK(attr_u64(g, "reencoded_frames") == (SERIES[si].enc == APT_ENC_NONE ? 5 : 0));
    uint64_t fid = attr_u64(g, "filter_id");
    CHECK(fid == (SERIES[si].enc == APT_ENC_LZ4 || SERIES[si].enc == APT_ENC_H5LZ4 ? APT_H5Z_LZ4 : APT_H5Z_BITSHUFFLE));
    H5Dclose(pd);
    H5Sclose(is);
    H5Dclose(ids);
    H5Sclose(s);
    H5Gclose(g);
    H5Dclose(d);
    H5Fclose(f);
}

/* Frames of the other family are re-encoded, pixels unchanged. */
static void test_mixed(const char *dir, uint32_t sid, const apt_encoding *encs, int n, uint64_t reenc)
{
    apt_error err = {0};
    apt_spool *sp = NULL;
    CHECK_OK(apt_spool_open(dir, sid, "mixed/../x y", W, H, 2, &sp, &err), &err);
    if (!sp)
        return;
    char want[512];
    snprintf(want, sizeof want, "%s/series_%u_mixed_.._x_y.h5", dir, sid);
    CHECK_MSG(!strcmp(apt_spool_path(sp), want), "%s", apt_spool_path(sp));
    char path[512];
    snprintf(path, sizeof path, "%s", apt_spool_path(sp));
    for (int k = 0; k < n; k++) {
        frame(sid, (uint32_t)k, 2, fbuf);
        size_t len = encode(encs[k], fbuf, 2, blob, sizeof blob);
        CHECK_OK(apt_spool_write(sp, (uint64_t)k, encs[k], blob, len, &err), &err);
    }
    CHECK_OK(apt_spool_close(&sp, &err), &err);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/entry/data/data", H5P_DEFAULT), g = H5Gopen2(f, "/entry/data", H5P_DEFAULT);
    CHECK(H5Dread(d, H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, got) >= 0);
    for (int k = 0; k < n; k++) {
        frame(sid, (uint32_t)k, 2, fbuf);
        CHECK_MSG(!memcmp(got + (size_t)k * H * W * 2, fbuf, (size_t)H * W * 2), "mixed %u frame %d", sid, k);
    }
    CHECK(attr_u64(g, "reencoded_frames") == reenc);
    H5Gclose(g);
    H5Dclose(d);
    H5Fclose(f);
}

/* A raw LZ4 block exactly as long as its 16 raw bytes would read as "stored raw" under the LZ4-filter framing:
 * the spool must store the raw pixels instead. "abcdabcd" + 8 literals encodes to 16 bytes. */
static void test_lz4_equal_length(const char *dir)
{
    apt_error err = {0};
    apt_spool *sp = NULL;
    const uint8_t raw[16] = {'a', 'b', 'c', 'd', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l'};
    const uint8_t blk[16] = {0x40, 'a', 'b', 'c', 'd', 4, 0, 0x80, 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l'};
    uint8_t chk[16];
    CHECK_OK(apt_lz4_decode_raw(blk, 16, chk, 16, &err), &err);
    CHECK(!memcmp(chk, raw, 16));
    CHECK_OK(apt_spool_open(dir, 300, "eq", 8, 1, 2, &sp, &err), &err);
    if (!sp)
        return;
    char path[512];
    snprintf(path, sizeof path, "%s", apt_spool_path(sp));
    CHECK_OK(apt_spool_write(sp, 0, APT_ENC_LZ4, blk, 16, &err), &err);
    CHECK_OK(apt_spool_close(&sp, &err), &err);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/entry/data/data", H5P_DEFAULT);
    uint8_t out[16] = {0};
    CHECK(H5Dread(d, H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0);
    CHECK(!memcmp(out, raw, 16));
    H5Dclose(d);
    H5Fclose(f);
}

static void test_refusals(const char *dir)
{
    apt_error err = {0};
    apt_spool *sp = NULL, *sp2 = NULL;
    CHECK(apt_spool_open(dir, 1, "", W, H, 3, &sp, &err) == APT_EINVAL);
    CHECK(apt_spool_open(dir, 1, "", 0, H, 2, &sp, &err) == APT_ERANGE);
    CHECK(apt_spool_open(dir, 1, "", 65537, H, 2, &sp, &err) == APT_ERANGE);
    CHECK(apt_spool_open("/nonexistent-dir", 1, "", W, H, 2, &sp, &err) == APT_EIO);
    CHECK_MSG(strstr(err.msg, "/nonexistent-dir/series_1.h5"), "%s", err.msg);
    CHECK(sp == NULL);
    CHECK_OK(apt_spool_open(dir, 7, NULL, W, H, 2, &sp, &err), &err);
    CHECK_OK(apt_spool_open(dir, 7, "", W, H, 2, &sp2, &err), &err);
    if (!sp || !sp2)
        return;
    char want[512];
    snprintf(want, sizeof want, "%s/series_7.h5", dir);
    CHECK_MSG(!strcmp(apt_spool_path(sp), want), "%s", apt_spool_path(sp));
    snprintf(want, sizeof want, "%s/series_7-1.h5", dir);
    CHECK_MSG(!strcmp(apt_spool_path(sp2), want), "%s", apt_spool_path(sp2));

    frame(7, 0, 2, fbuf);
    size_t fb = (size_t)H * W * 2, len;
    CHECK(apt_spool_write(sp, APT_SPOOL_MAX_IMAGE_ID + 1, APT_ENC_NONE, fbuf, fb, &err) == APT_ERANGE);
    CHECK(apt_spool_write(sp, 0, APT_ENC_NONE, fbuf, fb - 2, &err) == APT_EPROTO);
    CHECK_MSG(strstr(err.msg, "image 0 (none)"), "%s", err.msg);
    CHECK(apt_spool_write(sp, 0, (apt_encoding)9, fbuf, fb, &err) == APT_ENOTSUP);
    CHECK(apt_spool_write(sp, 0, APT_ENC_NONE, fbuf, 0, &err) == APT_EINVAL);
    /* a bslz4 blob of a smaller frame: its header's size does not match */
    CHECK_OK(apt_bslz4_encode(fbuf, (size_t)H * W - 8, 2, blob, sizeof blob, &len, &err), &err);
    CHECK(apt_spool_write(sp, 0, APT_ENC_BSLZ4, blob, len, &err) == APT_EPROTO);
    CHECK_MSG(strstr(err.msg, "bslz4 header"), "%s", err.msg);
    CHECK(apt_spool_write(sp, 0, APT_ENC_BSLZ4, blob, 5, &err) != APT_OK);
    CHECK_OK(apt_h5lz4_encode(fbuf, fb - 2, 0, blob, sizeof blob, &len, &err), &err);
    CHECK(apt_spool_write(sp, 0, APT_ENC_H5LZ4, blob, len, &err) == APT_EPROTO);
    CHECK(apt_spool_write(sp, 0, APT_ENC_H5LZ4, blob, 10, &err) == APT_EPROTO);
    CHECK(apt_spool_write(sp, 0, APT_ENC_LZ4, blob, apt_lz4_bound(fb) + 1, &err) == APT_EPROTO);
    CHECK(apt_spool_set_angle(sp, NAN, &err) == APT_EINVAL);
    double p[2] = {0, 0};
    CHECK(apt_spool_set_positions(sp, APT_SPOOL_MAX_IMAGE_ID, 2, p, &err) == APT_ERANGE);
    CHECK(apt_spool_frames(sp) == 0);
    /* a large image id extends the dataset without storing the frames in between */
    CHECK_OK(apt_spool_write(sp, 100000, APT_ENC_NONE, fbuf, fb, &err), &err);
    CHECK_OK(apt_spool_write(sp, 0, APT_ENC_NONE, fbuf, fb, &err), &err);
    CHECK(apt_spool_frames(sp) == 2);
    CHECK_OK(apt_spool_close(&sp, &err), &err);
    CHECK_OK(apt_spool_close(&sp2, &err), &err);
    CHECK_OK(apt_spool_close(&sp2, &err), &err); /* NULL: no-op */
}

int main(int argc, char **argv)
{
    char dir[256];
    int keep = argc > 1;
    if (keep)
        snprintf(dir, sizeof dir, "%s", argv[1]);
    else if (!mkdtemp(strcpy(dir, "/tmp/apt_spool_XXXXXX"))) {
        perror("mkdtemp");
        return 1;
    }
    /* The independent LZ4 reader is Debian's serial plugin. Searching other plugin folders (python3-bitshuffle's
       is built against libhdf5_openmpi) would dlopen a second HDF5 + MPI into this process. */
    setenv("HDF5_PLUGIN_PATH", "/usr/lib/x86_64-linux-gnu/hdf5/serial/plugins", 1);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    for (size_t si = 0; si < NSERIES; si++)
        write_series(dir, si);
    for (size_t si = 0; si < NSERIES; si++)
        verify_series(si);
    const apt_encoding bs_first[4] = {APT_ENC_BSLZ4, APT_ENC_NONE, APT_ENC_H5LZ4, APT_ENC_LZ4};
    const apt_encoding lz_first[4] = {APT_ENC_LZ4, APT_ENC_H5LZ4, APT_ENC_NONE, APT_ENC_BSLZ4};
    test_mixed(dir, 200, bs_first, 4, 3);
    test_mixed(dir, 201, lz_first, 4, 2);
    test_lz4_equal_length(dir);
    test_refusals(dir);
    if (!keep) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
    }
    APT_TEST_DONE();
}
