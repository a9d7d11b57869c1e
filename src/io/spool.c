/* spool.c - bit-exact frame spool: wire blobs become HDF5 chunks with H5Dwrite_chunk, never decoded on the way
 * (a bslz4 blob is a 32008 chunk, an HDF5-LZ4 blob a 32004 chunk, a raw LZ4 block needs only a 16-byte prefix).
 * Only the blob header's sizes are checked, so a stored chunk always decodes to exactly one frame. Image ids in
 * arrival order are buffered and appended in batches to keep per-frame HDF5 calls to one chunk write. */
#include "aptomo/spool.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "aptomo/bytes.h"
#include "aptomo/codec.h"
#include "aptomo/h5filter.h"
#include "aptomo/h5io.h"

#define IDS_BATCH 1024
/* Room kept under a file size limit for what closing writes (image ids, positions, attributes, chunk index):
   HDF5 1.10 cannot close a file whose metadata no longer fits, and crashes at exit on a file it failed to close. */
#define CLOSE_RESERVE_BYTES(frames) (65536 + 64 * (uint64_t)(frames))
#define P_GROUP "/entry/data"
#define P_DATA "/entry/data/data"
#define P_IDS "/entry/data/image_id"
#define P_POS "/entry/data/positions_m"

struct apt_spool {
    hid_t file, grp, data, ids, pos;
    char path[PATH_MAX];
    uint32_t W, H, elem;
    size_t frame_bytes;
    apt_h5pipe pipe;          /* APT_H5PIPE_NONE until the first frame */
    uint64_t extent, pos_extent, n_written, reencoded, ids_stored;
    uint64_t idbuf[IDS_BATCH];
    size_t nid;
    apt_bytes chunk, raw;     /* scratch: outgoing chunk, decoded frame (conversions only) */
};

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void sanitise(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (; in && in[n] && n + 1 < cap; n++) {
        char c = in[n];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                 c == '_' || c == '-';
        out[n] = ok ? c : '_';
    }
    out[n] = '\0';
}

/* Extensible 1-D/2-D dataset with chunk rows; fill value fill (double) or 0. */
static hid_t create_ext(hid_t loc, const char *path, hid_t ftype, int rank, hsize_t cols, hsize_t chunk_rows,
                        const double *fill)
{
    const hsize_t dims[2] = {0, cols}, maxd[2] = {H5S_UNLIMITED, cols}, ch[2] = {chunk_rows, cols};
    hid_t sp = H5Screate_simple(rank, dims, maxd), dcpl = H5Pcreate(H5P_DATASET_CREATE), d = -1;
    if (sp >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, rank, ch) >= 0 &&
        (!fill || H5Pset_fill_value(dcpl, H5T_NATIVE_DOUBLE, fill) >= 0))
        d = H5Dcreate2(loc, path, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (sp >= 0)
        H5Sclose(sp);
    return d;
}

static int create_file(apt_spool *sp, const char *dir, uint64_t series_id, const char *unique_id, apt_error *err)
{
    char uid[65], base[PATH_MAX - 16];
    sanitise(unique_id, uid, sizeof uid);
    int n = uid[0] ? snprintf(base, sizeof base, "%s/series_%llu_%s", dir, (unsigned long long)series_id, uid)
                   : snprintf(base, sizeof base, "%s/series_%llu", dir, (unsigned long long)series_id);
    if (n < 0 || (size_t)n + 8 >= sizeof base)
        return apt_err(err, APT_EINVAL, "spool directory name too long: %s", dir);
    for (int k = 0; k < 1000; k++) {
        if (k == 0)
            snprintf(sp->path, sizeof sp->path, "%s.h5", base);
        else
            snprintf(sp->path, sizeof sp->path, "%s-%d.h5", base, k);
        if (access(sp->path, F_OK) == 0)
            continue;
        sp->file = H5Fcreate(sp->path, H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
        if (sp->file < 0)
            return apt_h5io_fail(err, APT_EIO, "%s: cannot create spool file", sp->path);
        return APT_OK;
    }
    return apt_err(err, APT_EIO, "%s.h5: 1000 spool files of this series exist already", base);
}

int apt_spool_open(const char *dir, uint64_t series_id, const char *unique_id, uint32_t width, uint32_t height,
                   uint32_t elem_size, apt_spool **out, apt_error *err)
{
    *out = NULL;
    if (width < 1 || width > APT_SPOOL_MAX_SIDE || height < 1 || height > APT_SPOOL_MAX_SIDE)
        return apt_err(err, APT_ERANGE, "spool: frame %ux%u outside [1, %u]", width, height, APT_SPOOL_MAX_SIDE);
    if (elem_size != 1 && elem_size != 2 && elem_size != 4)
        return apt_err(err, APT_EINVAL, "spool: elem_size %u is not 1, 2 or 4", elem_size);
    if ((uint64_t)width * height * elem_size > APT_SPOOL_MAX_FRAME_BYTES)
        return apt_err(err, APT_ERANGE, "spool: frame larger than %u bytes", APT_SPOOL_MAX_FRAME_BYTES);
    int rc = apt_h5filter_register(err);
    if (rc)
        return rc;
    apt_h5io_quiet();
    apt_spool *sp = calloc(1, sizeof *sp);
    if (!sp)
        return apt_err(err, APT_ENOMEM, "spool: out of memory");
    sp->file = sp->grp = sp->data = sp->ids = sp->pos = -1;
    sp->W = width;
    sp->H = height;
    sp->elem = elem_size;
    sp->frame_bytes = (size_t)width * height * elem_size;
    rc = create_file(sp, dir, series_id, unique_id, err);
    if (!rc) {
        hid_t l = apt_h5io_lcpl();
        sp->grp = l < 0 ? -1 : H5Gcreate2(sp->file, P_GROUP, l, H5P_DEFAULT, H5P_DEFAULT);
        if (l >= 0)
            H5Pclose(l);
        if (sp->grp < 0 || (sp->ids = create_ext(sp->file, P_IDS, H5T_STD_U64LE, 1, 1, 4096, NULL)) < 0)
            rc = apt_h5io_fail(err, APT_EIO, "%s: cannot create %s", sp->path, P_GROUP);
    }
    if (!rc)
        rc = apt_h5io_attr_u64(sp->grp, "series_id", series_id, err);
    if (!rc)
        rc = apt_h5io_attr_str(sp->grp, "series_unique_id", unique_id ? unique_id : "", err);
    if (rc) {
        apt_spool_close(&sp, NULL);
        return rc;
    }
    *out = sp;
    return APT_OK;
}

/* Frame dataset, created at the first frame because its filter follows that frame's encoding. */
static int create_data(apt_spool *sp, apt_encoding enc, apt_error *err)
{
    apt_h5pipe pipe = (enc == APT_ENC_LZ4 || enc == APT_ENC_H5LZ4) ? APT_H5PIPE_LZ4 : APT_H5PIPE_BSLZ4;
    const hsize_t dims[3] = {0, sp->H, sp->W}, maxd[3] = {H5S_UNLIMITED, sp->H, sp->W}, ch[3] = {1, sp->H, sp->W};
    hid_t t = sp->elem == 1 ? H5T_STD_U8LE : sp->elem == 2 ? H5T_STD_U16LE : H5T_STD_U32LE;
    hid_t s = H5Screate_simple(3, dims, maxd), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    int rc = APT_OK;
    if (s < 0 || dcpl < 0 || dapl < 0 || H5Pset_chunk(dcpl, 3, ch) < 0 || H5Pset_chunk_cache(dapl, 0, 0, 1.0) < 0)
        rc = apt_h5io_fail(err, APT_EIO, "%s: %s: property lists", sp->path, P_DATA);
    if (!rc)
        rc = pipe == APT_H5PIPE_LZ4 ? apt_h5filter_set_lz4(dcpl, err) : apt_h5filter_set_bslz4(dcpl, err);
    if (!rc && (sp->data = H5Dcreate2(sp->file, P_DATA, t, s, H5P_DEFAULT, dcpl, dapl)) < 0)
        rc = apt_h5io_fail(err, APT_EIO, "%s: %s: cannot create", sp->path, P_DATA);
    if (dapl >= 0)
        H5Pclose(dapl);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (s >= 0)
        H5Sclose(s);
    if (!rc)
        rc = apt_h5io_attr_str(sp->grp, "encoding", apt_encoding_name(enc), err);
    if (!rc)
        rc = apt_h5io_attr_u64(sp->grp, "filter_id", pipe == APT_H5PIPE_LZ4 ? APT_H5Z_LZ4 : APT_H5Z_BITSHUFFLE, err);
    if (!rc)
        sp->pipe = pipe;
    return rc;
}

/* Decode any encoding into sp->raw (only for frames that must change family). */
static int decode_frame(apt_spool *sp, apt_encoding enc, const void *blob, size_t len, apt_error *err)
{
    int rc = apt_bytes_reserve(&sp->raw, sp->frame_bytes, err);
    size_t got = sp->frame_bytes;
    if (rc)
        return rc;
    switch (enc) {
    case APT_ENC_NONE:
        memcpy(sp->raw.data, blob, sp->frame_bytes);
        break;
    case APT_ENC_BSLZ4:
        rc = apt_bslz4_decode(blob, len, sp->elem, sp->raw.data, sp->frame_bytes, err);
        break;
    case APT_ENC_LZ4:
        rc = apt_lz4_decode_raw(blob, len, sp->raw.data, sp->frame_bytes, err);
        break;
    case APT_ENC_H5LZ4:
        rc = apt_h5lz4_decode(blob, len, sp->raw.data, sp->frame_bytes, &got, err);
        if (!rc && got != sp->frame_bytes)
            rc = apt_err(err, APT_EPROTO, "lz4 blob holds %zu bytes, frame is %zu", got, sp->frame_bytes);
        break;
    }
    return rc;
}

/* Check the blob against the frame size and produce the chunk bytes: *out points at blob or at sp->chunk. */
static int make_chunk(apt_spool *sp, apt_encoding enc, const uint8_t *blob, size_t len, const uint8_t **out,
                      size_t *out_len, apt_error *err)
{
    const size_t fb = sp->frame_bytes;
    int rc;
    if (enc == APT_ENC_NONE && len != fb)
        return apt_err(err, APT_EPROTO, "raw frame of %zu bytes, expected %zu", len, fb);
    if (enc == APT_ENC_BSLZ4) {
        uint64_t raw;
        uint32_t blk;
        if ((rc = apt_bslz4_header(blob, len, sp->elem, &raw, &blk, err)))
            return rc;
        if (raw != fb)
            return apt_err(err, APT_EPROTO, "bslz4 header: %llu uncompressed bytes, frame is %zu",
                           (unsigned long long)raw, fb);
    }
    if (enc == APT_ENC_H5LZ4) {
        if (len < 16)
            return apt_err(err, APT_EPROTO, "lz4 blob of %zu bytes is shorter than its header", len);
        if (get_be(blob, 8) != fb || get_be(blob + 8, 4) == 0)
            return apt_err(err, APT_EPROTO, "lz4 header: %llu uncompressed bytes in blocks of %llu, frame is %zu",
                           (unsigned long long)get_be(blob, 8), (unsigned long long)get_be(blob + 8, 4), fb);
    }
    if (enc == APT_ENC_LZ4 && (len == 0 || len > apt_lz4_bound(fb)))
        return apt_err(err, APT_EPROTO, "lz4 block of %zu bytes cannot hold a %zu-byte frame", len, fb);

    int same = sp->pipe == APT_H5PIPE_BSLZ4 ? enc == APT_ENC_BSLZ4 : enc == APT_ENC_H5LZ4;
    if (same) {
        *out = blob;
        *out_len = len;
        return APT_OK;
    }
    if (sp->pipe == APT_H5PIPE_LZ4 && enc == APT_ENC_LZ4 && len != fb) {
        /* One block as large as the frame. A block as long as its raw size reads as stored-raw: hence len != fb. */
        if ((rc = apt_bytes_reserve(&sp->chunk, len + 16, err)))
            return rc;
        put_be(sp->chunk.data, fb, 8);
        put_be(sp->chunk.data + 8, fb, 4);
        put_be(sp->chunk.data + 12, len, 4);
        memcpy(sp->chunk.data + 16, blob, len);
        *out = sp->chunk.data;
        *out_len = len + 16;
        return APT_OK;
    }
    /* Re-encode: decode unless raw already, then encode for the dataset's filter. */
    const uint8_t *pix = blob;
    if (enc != APT_ENC_NONE) {
        if ((rc = decode_frame(sp, enc, blob, len, err)))
            return rc;
        pix = sp->raw.data;
    }
    size_t n = fb / sp->elem;
    size_t cap = sp->pipe == APT_H5PIPE_BSLZ4 ? apt_bslz4_bound(n, sp->elem) : apt_h5lz4_bound(fb, 0);
    if ((rc = apt_bytes_reserve(&sp->chunk, cap, err)))
        return rc;
    rc = sp->pipe == APT_H5PIPE_BSLZ4 ? apt_bslz4_encode(pix, n, sp->elem, sp->chunk.data, cap, out_len, err)
                                      : apt_h5lz4_encode(pix, fb, 0, sp->chunk.data, cap, out_len, err);
    if (rc)
        return rc;
    *out = sp->chunk.data;
    sp->reencoded++;
    return APT_OK;
}

static int flush_ids(apt_spool *sp, apt_error *err)
{
    if (!sp->nid)
        return APT_OK;
    const hsize_t start = sp->ids_stored, cnt = sp->nid, ext = sp->ids_stored + sp->nid;
    int rc = APT_OK;
    hid_t fs = -1, ms = H5Screate_simple(1, &cnt, NULL);
    if (ms < 0 || H5Dset_extent(sp->ids, &ext) < 0 || (fs = H5Dget_space(sp->ids)) < 0 ||
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &cnt, NULL) < 0 ||
        H5Dwrite(sp->ids, H5T_NATIVE_UINT64, ms, fs, H5P_DEFAULT, sp->idbuf) < 0)
        rc = apt_h5io_fail(err, APT_EIO, "%s: %s: append failed", sp->path, P_IDS);
    if (fs >= 0)
        H5Sclose(fs);
    if (ms >= 0)
        H5Sclose(ms);
    if (!rc) {
        sp->ids_stored = ext;
        sp->nid = 0;
    }
    return rc;
}

int apt_spool_write(apt_spool *sp, uint64_t image_id, apt_encoding enc, const void *blob, size_t len,
                    apt_error *err)
{
    apt_h5io_quiet();
    if (image_id > APT_SPOOL_MAX_IMAGE_ID)
        return apt_err(err, APT_ERANGE, "%s: image_id %llu exceeds the spool bound %llu", sp->path,
                       (unsigned long long)image_id, (unsigned long long)APT_SPOOL_MAX_IMAGE_ID);
    if (enc != APT_ENC_NONE && enc != APT_ENC_BSLZ4 && enc != APT_ENC_LZ4 && enc != APT_ENC_H5LZ4)
        return apt_err(err, APT_ENOTSUP, "%s: image %llu: unknown encoding %d", sp->path,
                       (unsigned long long)image_id, (int)enc);
    if (!blob || !len)
        return apt_err(err, APT_EINVAL, "%s: image %llu: empty blob", sp->path, (unsigned long long)image_id);
    int rc = APT_OK;
    if (sp->pipe == APT_H5PIPE_NONE && (rc = create_data(sp, enc, err)))
        return rc;
    const hsize_t off[3] = {image_id, 0, 0};
    if (image_id < sp->extent) {
        unsigned mask = 0;
        haddr_t addr = 0;
        hsize_t size = 0;
        if (H5Dget_chunk_info_by_coord(sp->data, off, &mask, &addr, &size) < 0)
            return apt_h5io_fail(err, APT_EIO, "%s: image %llu: chunk lookup failed", sp->path,
                                 (unsigned long long)image_id);
        if (size > 0)
            return apt_err(err, APT_ESTATE, "%s: image %llu already spooled; duplicate dropped", sp->path,
                           (unsigned long long)image_id);
    }
    const uint8_t *chunk = NULL;
    size_t clen = 0;
    if ((rc = make_chunk(sp, enc, blob, len, &chunk, &clen, err)))
        return apt_err_prefix(err, rc, "%s: image %llu (%s): ", sp->path, (unsigned long long)image_id,
                              apt_encoding_name(enc));
    struct rlimit rl;
    hsize_t fsize = 0;
    uint64_t frames = image_id >= sp->extent ? image_id + 1 : sp->extent;
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && H5Fget_filesize(sp->file, &fsize) >= 0 &&
        (uint64_t)fsize + clen + CLOSE_RESERVE_BYTES(frames) > (uint64_t)rl.rlim_cur) {
        apt_err(err, APT_EIO, "%s: image %llu: would pass the file size limit (RLIMIT_FSIZE %llu bytes)", sp->path,
                (unsigned long long)image_id, (unsigned long long)rl.rlim_cur);
        errno = EFBIG;
        return APT_EIO;
    }
    if (image_id >= sp->extent) {
        const hsize_t ext[3] = {image_id + 1, sp->H, sp->W};
        if (H5Dset_extent(sp->data, ext) < 0)
            return apt_h5io_fail(err, APT_EIO, "%s: %s: extend to %llu frames failed", sp->path, P_DATA,
                                 (unsigned long long)image_id + 1);
        sp->extent = image_id + 1;
    }
    if (H5Dwrite_chunk(sp->data, H5P_DEFAULT, 0, off, clen, chunk) < 0)
        return apt_h5io_fail(err, APT_EIO, "%s: %s: chunk write of image %llu failed", sp->path, P_DATA,
                             (unsigned long long)image_id);
    sp->n_written++;
    sp->idbuf[sp->nid++] = image_id;
    return sp->nid == IDS_BATCH ? flush_ids(sp, err) : APT_OK;
}

int apt_spool_set_positions(apt_spool *sp, uint64_t first, size_t n, const double *pos_m, apt_error *err)
{
    apt_h5io_quiet();
    if (n == 0)
        return APT_OK;
    if (first > APT_SPOOL_MAX_IMAGE_ID || n > APT_SPOOL_MAX_IMAGE_ID + 1 - first)
        return apt_err(err, APT_ERANGE, "%s: %s: rows [%llu, +%zu) exceed the spool bound", sp->path, P_POS,
                       (unsigned long long)first, n);
    const double nan = NAN;
    if (sp->pos < 0 && (sp->pos = create_ext(sp->file, P_POS, H5T_IEEE_F64LE, 2, 2, 1024, &nan)) < 0)
        return apt_h5io_fail(err, APT_EIO, "%s: %s: cannot create", sp->path, P_POS);
    const hsize_t start[2] = {first, 0}, cnt[2] = {n, 2}, ext[2] = {first + n, 2};
    int rc = APT_OK;
    if (first + n > sp->pos_extent) {
        if (H5Dset_extent(sp->pos, ext) < 0)
            return apt_h5io_fail(err, APT_EIO, "%s: %s: extend failed", sp->path, P_POS);
        sp->pos_extent = first + n;
    }
    hid_t fs = H5Dget_space(sp->pos), ms = H5Screate_simple(2, cnt, NULL);
    if (fs < 0 || ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) < 0 ||
        H5Dwrite(sp->pos, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, pos_m) < 0)
        rc = apt_h5io_fail(err, APT_EIO, "%s: %s: write failed", sp->path, P_POS);
    if (ms >= 0)
        H5Sclose(ms);
    if (fs >= 0)
        H5Sclose(fs);
    return rc;
}

int apt_spool_set_angle(apt_spool *sp, double angle_deg, apt_error *err)
{
    apt_h5io_quiet();
    if (!isfinite(angle_deg))
        return apt_err(err, APT_EINVAL, "%s: angle_deg is not finite", sp->path);
    int rc = apt_h5io_attr_f64(sp->grp, "angle_deg", angle_deg, err);
    return rc ? apt_err_prefix(err, rc, "%s: ", sp->path) : APT_OK;
}

int apt_spool_flush(apt_spool *sp, apt_error *err)
{
    apt_h5io_quiet();
    int rc = flush_ids(sp, err);
    if (!rc)
        rc = apt_h5io_attr_u64(sp->grp, "frames", sp->n_written, err);
    if (!rc)
        rc = apt_h5io_attr_u64(sp->grp, "reencoded_frames", sp->reencoded, err);
    if (rc)
        return apt_err_prefix(err, rc, "%s: ", sp->path);
    if (H5Fflush(sp->file, H5F_SCOPE_LOCAL) < 0)
        return apt_h5io_fail(err, APT_EIO, "%s: flush failed", sp->path);
    return APT_OK;
}

const char *apt_spool_path(const apt_spool *sp) { return sp->path; }
uint64_t apt_spool_frames(const apt_spool *sp) { return sp->n_written; }

int apt_spool_close(apt_spool **psp, apt_error *err)
{
    apt_spool *sp = psp ? *psp : NULL;
    if (!sp)
        return APT_OK;
    int rc = sp->file >= 0 && sp->grp >= 0 && sp->ids >= 0 ? apt_spool_flush(sp, err) : APT_OK;
    hid_t *ids[] = {&sp->pos, &sp->ids, &sp->data};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (*ids[i] >= 0)
            H5Dclose(*ids[i]);
    if (sp->grp >= 0)
        H5Gclose(sp->grp);
    if (sp->file >= 0 && H5Fclose(sp->file) < 0 && !rc)
        rc = apt_h5io_fail(err, APT_EIO, "%s: close failed", sp->path);
    apt_bytes_free(&sp->chunk);
    apt_bytes_free(&sp->raw);
    free(sp);
    *psp = NULL;
    return rc;
}
