/* h5filter.c - the bitshuffle HDF5 filter (32008) on top of libaptomo's codecs. Same cd_values layout and chunk
 * format as kiyo-masui/bitshuffle's bshuf_h5filter.c, so files round-trip with h5py + the bitshuffle plugin; decoding
 * trusts nothing in the chunk: the header's sizes are validated by the codec and bounded before allocation. */
#include "aptomo/h5filter.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/codec.h"

/* HDF5 chunks are below 4 GiB, so no decoded chunk can be larger. */
#define H5F_MAX_CHUNK ((uint64_t)UINT32_MAX)

static size_t bshuf_fail(const char *func, const char *msg, void *out)
{
    free(out);
    H5Epush2(H5E_DEFAULT, __FILE__, func, __LINE__, H5E_ERR_CLS, H5E_PLINE, H5E_CALLBACK, "bitshuffle filter: %s",
             msg);
    return 0;
}

static size_t bshuf_reverse(size_t elem, size_t block, int lz4, size_t nbytes, size_t *buf_size, void **buf)
{
    apt_error e = {0};
    void *out = NULL;
    size_t out_bytes = nbytes;
    if (lz4) {
        uint64_t raw;
        uint32_t blk;
        if (apt_bslz4_header(*buf, nbytes, elem, &raw, &blk, &e))
            return bshuf_fail(__func__, e.msg, NULL);
        if (raw > H5F_MAX_CHUNK || raw % elem)
            return bshuf_fail(__func__, "header's uncompressed size is not a chunk of whole elements", NULL);
        out_bytes = (size_t)raw;
        if (!(out = malloc(out_bytes ? out_bytes : 1)))
            return bshuf_fail(__func__, "out of memory", NULL);
        if (apt_bslz4_decode(*buf, nbytes, elem, out, out_bytes, &e))
            return bshuf_fail(__func__, e.msg, out);
    } else {
        if (nbytes % elem)
            return bshuf_fail(__func__, "chunk is not a whole number of elements", NULL);
        if (!(out = malloc(nbytes ? nbytes : 1)))
            return bshuf_fail(__func__, "out of memory", NULL);
        if (apt_bitunshuffle(*buf, out, nbytes / elem, elem, block, &e))
            return bshuf_fail(__func__, e.msg, out);
    }
    free(*buf);
    *buf = out;
    *buf_size = out_bytes ? out_bytes : 1;
    return out_bytes;
}

static size_t bshuf_forward(size_t elem, size_t block, int lz4, size_t nbytes, size_t *buf_size, void **buf)
{
    apt_error e = {0};
    if (nbytes % elem)
        return bshuf_fail(__func__, "chunk is not a whole number of elements", NULL);
    size_t n = nbytes / elem, cap = lz4 ? apt_bslz4_bound(n, elem) : nbytes, len = nbytes;
    /* apt_bslz4_encode writes bitshuffle's default block only; a custom block is still readable (header-driven). */
    if (lz4 && block != apt_bshuf_default_block(elem))
        return bshuf_fail(__func__, "writing bslz4 supports only the default block size (cd_values[3] = 0)", NULL);
    void *out = malloc(cap ? cap : 1);
    if (!out)
        return bshuf_fail(__func__, "out of memory", NULL);
    int rc = lz4 ? apt_bslz4_encode(*buf, n, elem, out, cap, &len, &e)
                 : apt_bitshuffle(*buf, out, n, elem, block, &e);
    if (rc)
        return bshuf_fail(__func__, e.msg, out);
    free(*buf);
    *buf = out;
    *buf_size = cap ? cap : 1;
    return len;
}

static size_t bshuf_filter(unsigned int flags, size_t cd_nelmts, const unsigned int cd_values[], size_t nbytes,
                           size_t *buf_size, void **buf)
{
    if (cd_nelmts < 3)
        return bshuf_fail(__func__, "cd_values lack elem_size (need at least 3)", NULL);
    size_t elem = cd_values[2];
    if (elem == 0 || elem > 64)
        return bshuf_fail(__func__, "cd_values[2] (elem_size) out of range", NULL);
    size_t block = cd_nelmts > 3 ? cd_values[3] : 0;
    if (block == 0)
        block = apt_bshuf_default_block(elem);
    if (block % 8)
        return bshuf_fail(__func__, "cd_values[3] (block_size) is not a multiple of 8", NULL);
    int lz4 = cd_nelmts > 4 && cd_values[4] == APT_H5Z_BSHUF_LZ4;
    if (flags & H5Z_FLAG_REVERSE)
        return bshuf_reverse(elem, block, lz4, nbytes, buf_size, buf);
    return bshuf_forward(elem, block, lz4, nbytes, buf_size, buf);
}

/* At dataset creation: the user's {block_size, compression} move to slots 3 and 4; slots 0-2 get the format
 * version and the element size, exactly as bitshuffle's own set_local does. */
static herr_t bshuf_set_local(hid_t dcpl, hid_t type, hid_t space)
{
    (void)space;
    unsigned flags = 0, user[8] = {0}, v[11] = {0};
    size_t n = 8;
    if (H5Pget_filter_by_id2(dcpl, APT_H5Z_BITSHUFFLE, &flags, &n, user, 0, NULL, NULL) < 0)
        return -1;
    if (n > 8)
        n = 8;
    for (size_t i = 0; i < n; i++)
        v[i + 3] = user[i];
    size_t elem = H5Tget_size(type);
    if (elem == 0 || elem > 64) {
        bshuf_fail(__func__, "unsupported element size", NULL);
        return -1;
    }
    v[0] = APT_H5Z_BSHUF_MAJOR;
    v[1] = APT_H5Z_BSHUF_MINOR;
    v[2] = (unsigned)elem;
    if (n > 0 && v[3] % 8) {
        bshuf_fail(__func__, "block_size must be a multiple of 8 elements", NULL);
        return -1;
    }
    if (n > 1 && v[4] != 0 && v[4] != APT_H5Z_BSHUF_LZ4) {
        bshuf_fail(__func__, "compression must be 0 (none) or 2 (LZ4)", NULL);
        return -1;
    }
    return H5Pmodify_filter(dcpl, APT_H5Z_BITSHUFFLE, flags, n + 3, v) < 0 ? -1 : 1;
}

static const H5Z_class2_t bshuf_class = {
    H5Z_CLASS_T_VERS,
    (H5Z_filter_t)APT_H5Z_BITSHUFFLE,
    1,
    1,
    "bitshuffle; see https://github.com/kiyo-masui/bitshuffle",
    NULL,
    bshuf_set_local,
    bshuf_filter,
};

static pthread_once_t reg_once = PTHREAD_ONCE_INIT;
static int reg_rc = APT_OK;

static void register_once(void)
{
    if (H5Zregister(&bshuf_class) < 0)
        reg_rc = APT_EIO;
}

int apt_h5filter_register(apt_error *err)
{
    pthread_once(&reg_once, register_once);
    if (reg_rc)
        return apt_err(err, reg_rc, "H5Zregister of the bitshuffle filter (%d) failed", APT_H5Z_BITSHUFFLE);
    return APT_OK;
}

int apt_h5filter_set_bslz4(hid_t dcpl, apt_error *err)
{
    int rc = apt_h5filter_register(err);
    if (rc)
        return rc;
    const unsigned cd[2] = {0, APT_H5Z_BSHUF_LZ4};
    if (H5Pset_filter(dcpl, APT_H5Z_BITSHUFFLE, H5Z_FLAG_MANDATORY, 2, cd) < 0)
        return apt_err(err, APT_EIO, "H5Pset_filter(bitshuffle %d) failed", APT_H5Z_BITSHUFFLE);
    return APT_OK;
}

int apt_h5filter_set_lz4(hid_t dcpl, apt_error *err)
{
    if (H5Pset_filter(dcpl, APT_H5Z_LZ4, H5Z_FLAG_OPTIONAL, 0, NULL) < 0)
        return apt_err(err, APT_EIO, "H5Pset_filter(lz4 %d) failed", APT_H5Z_LZ4);
    return APT_OK;
}

apt_h5pipe apt_h5filter_classify(hid_t dcpl)
{
    int nf = H5Pget_nfilters(dcpl);
    if (nf == 0)
        return APT_H5PIPE_NONE;
    if (nf != 1)
        return APT_H5PIPE_OTHER;
    unsigned flags = 0, cd[16] = {0}, config = 0;
    size_t n = 16;
    char name[64];
    H5Z_filter_t id = H5Pget_filter2(dcpl, 0, &flags, &n, cd, sizeof name, name, &config);
    if (id == APT_H5Z_BITSHUFFLE && n >= 5 && cd[4] == APT_H5Z_BSHUF_LZ4)
        return APT_H5PIPE_BSLZ4;
    if (id == APT_H5Z_LZ4)
        return APT_H5PIPE_LZ4;
    return APT_H5PIPE_OTHER;
}
