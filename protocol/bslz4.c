/* bslz4.c - bslz4 blobs, the bitshuffle HDF5 filter's chunk format (filter id 32008) that Eiger detectors stream:
 * BE u64 raw bytes, BE u32 block bytes, then per block a BE u32 length + the LZ4 block of the bit-shuffled block,
 * then the n % 8 tail elements raw. Blocks are independent, so a decoder that needs only some rows (the daemon's
 * crop) hops over the others by their length prefixes and decompresses only what it needs. Every size field is
 * bounded before use; bytes after the tail are an error (HDF5 chunks and Eiger blobs end exactly there). */
#include "aptomo/codec.h"

#include <limits.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>

#include "be.h"

#define BSLZ4_MAX_BLOCK (1u << 20) /* largest block accepted from a header, in bytes */
#define BSLZ4_STACK 16384u         /* block scratch on the stack up to this size (default blocks: 8 KiB) */

static int check_elem(size_t elem_size, apt_error *err)
{
    if (elem_size == 0 || elem_size > APT_BSHUF_MAX_ELEM)
        return apt_err(err, APT_EINVAL, "bslz4: element size %zu is not in 1..%u", elem_size, APT_BSHUF_MAX_ELEM);
    return APT_OK;
}

size_t apt_bslz4_bound(size_t n, size_t elem_size)
{
    if (elem_size == 0 || elem_size > APT_BSHUF_MAX_ELEM)
        return 0;
    size_t block = apt_bshuf_default_block(elem_size), full = n / block, last = n % block / 8 * 8;
    size_t per = 4 + (size_t)LZ4_compressBound((int)(block * elem_size)), total, tail;
    if (__builtin_mul_overflow(full, per, &total) || __builtin_add_overflow(total, APT_BSLZ4_HEADER, &total))
        return 0;
    if (last && __builtin_add_overflow(total, 4 + (size_t)LZ4_compressBound((int)(last * elem_size)), &total))
        return 0;
    tail = n % 8 * elem_size;
    if (__builtin_add_overflow(total, tail, &total))
        return 0;
    return total;
}

/* The blob after the argument checks: header, shuffled+compressed blocks, raw tail. */
static int encode_blocks(const uint8_t *in, size_t n, size_t elem_size, size_t block, uint8_t *shuf, uint8_t *comp,
                         uint8_t *out, size_t dst_cap, size_t *out_len, apt_error *err)
{
    const size_t bbytes = block * elem_size;
    int rc;
    wr_be64(out, (uint64_t)n * elem_size);
    wr_be32(out + 8, (uint32_t)bbytes);
    size_t pos = APT_BSLZ4_HEADER, done = 0;
    while (n - done >= 8) {
        size_t be = n - done >= block ? block : (n - done) / 8 * 8, bytes = be * elem_size;
        rc = apt_bitshuffle(in + done * elem_size, shuf, be, elem_size, be, err);
        if (rc)
            return rc;
        size_t room = dst_cap - pos < 4 ? 0 : dst_cap - pos - 4;
        int bound = LZ4_compressBound((int)bytes), c;
        /* Compress straight into dst when it has the worst case free, else via scratch: the bytes must be the
         * unlimited-output ones either way, so they match the bitshuffle library's. */
        if (room >= (size_t)bound) {
            c = LZ4_compress_default((const char *)shuf, (char *)out + pos + 4, (int)bytes, bound);
        } else {
            c = LZ4_compress_default((const char *)shuf, (char *)comp, (int)bytes, bound);
            if (c > 0 && (size_t)c <= room)
                memcpy(out + pos + 4, comp, (size_t)c);
            else if (c > 0)
                return apt_err(err, APT_ERANGE, "bslz4: destination of %zu bytes too small (block at element %zu)",
                               dst_cap, done);
        }
        if (c <= 0)
            return apt_err(err, APT_EINVAL, "bslz4: LZ4 failed on the block at element %zu", done);
        wr_be32(out + pos, (uint32_t)c);
        pos += 4 + (size_t)c;
        done += be;
    }
    size_t tail = (n - done) * elem_size;
    if (dst_cap - pos < tail)
        return apt_err(err, APT_ERANGE, "bslz4: destination of %zu bytes too small for the raw tail", dst_cap);
    if (tail)
        memcpy(out + pos, in + done * elem_size, tail);
    *out_len = pos + tail;
    return APT_OK;
}

int apt_bslz4_encode(const void *src, size_t n, size_t elem_size, void *dst, size_t dst_cap, size_t *out_len,
                     apt_error *err)
{
    size_t raw;
    int rc = check_elem(elem_size, err);
    if (rc)
        return rc;
    if (__builtin_mul_overflow(n, elem_size, &raw))
        return apt_err(err, APT_ERANGE, "bslz4: %zu elements of %zu bytes overflow size_t", n, elem_size);
    if (!dst || (raw && !src))
        return apt_err(err, APT_EINVAL, "bslz4: NULL buffer");
    if (dst_cap < APT_BSLZ4_HEADER)
        return apt_err(err, APT_ERANGE, "bslz4: destination of %zu bytes cannot hold the 12-byte header", dst_cap);
    const size_t block = apt_bshuf_default_block(elem_size), bbytes = block * elem_size; /* <= 32 KiB */
    const size_t comp_cap = (size_t)LZ4_compressBound((int)bbytes);
    _Alignas(64) uint8_t stack[BSLZ4_STACK + BSLZ4_STACK / 255 + 16 + BSLZ4_STACK]; /* block + its LZ4 bound */
    uint8_t *shuf = stack, *comp = stack + BSLZ4_STACK, *heap = NULL;
    if (bbytes > BSLZ4_STACK) { /* elements over 128 bytes only */
        if (!(heap = malloc(bbytes + comp_cap)))
            return apt_err(err, APT_ENOMEM, "bslz4: no memory for a %zu-byte block", bbytes);
        shuf = heap, comp = heap + bbytes;
    }
    rc = encode_blocks(src, n, elem_size, block, shuf, comp, dst, dst_cap, out_len, err);
    free(heap);
    return rc;
}

/* Header fields checked against each other and against the blob length; n and block come back in elements. */
static int parse_header(const uint8_t *p, size_t len, size_t s, size_t *n, size_t *block, apt_error *err)
{
    /* Outputs are set on every path, failures included. Callers read them only when rc is 0, but the compiler
     * cannot see that apt_err() returns a nonzero code, so at -O3 it found n and block possibly read unset. */
    *n = 0;
    *block = 0;
    int rc = check_elem(s, err);
    if (rc)
        return rc;
    if (!p && len)
        return apt_err(err, APT_EINVAL, "bslz4: NULL blob");
    if (len < APT_BSLZ4_HEADER)
        return apt_err(err, APT_EPROTO, "bslz4: blob of %zu bytes is shorter than its 12-byte header", len);
    uint64_t raw = rd_be64(p);
    uint32_t bb = rd_be32(p + 8);
    if (raw % s)
        return apt_err(err, APT_EPROTO, "bslz4: header raw size %llu is not a multiple of the %zu-byte element",
                       (unsigned long long)raw, s);
    if (bb > BSLZ4_MAX_BLOCK)
        return apt_err(err, APT_ERANGE, "bslz4: header block size %u bytes exceeds the %u-byte limit", bb,
                       BSLZ4_MAX_BLOCK);
    if (bb < 8 * s || bb % (8 * s))
        return apt_err(err, APT_EPROTO, "bslz4: header block size %u bytes is not a positive multiple of 8 "
                       "elements of %zu bytes", bb, s);
    /* Each block costs at least its 4-byte prefix, the tail its raw bytes: a bigger claim is not this blob's. */
    uint64_t ne = raw / s, be = bb / s, nblocks = ne / be + (ne % be >= 8);
    uint64_t need = APT_BSLZ4_HEADER + 4 * nblocks + ne % 8 * s;
    if (nblocks > len / 4 || need > len || ne > SIZE_MAX)
        return apt_err(err, APT_ERANGE, "bslz4: header raw size %llu bytes (%llu blocks) cannot fit in a blob of "
                       "%zu bytes", (unsigned long long)raw, (unsigned long long)nblocks, len);
    *n = (size_t)ne;
    *block = (size_t)be;
    return APT_OK;
}

int apt_bslz4_header(const void *blob, size_t len, size_t elem_size, uint64_t *raw_bytes, uint32_t *block_bytes,
                     apt_error *err)
{
    size_t n, block;
    int rc = parse_header(blob, len, elem_size, &n, &block, err);
    if (rc)
        return rc;
    if (raw_bytes)
        *raw_bytes = (uint64_t)n * elem_size;
    if (block_bytes)
        *block_bytes = (uint32_t)(block * elem_size);
    return APT_OK;
}

/* The wanted elements: nspan spans of w elements starting at start + i*stride (stride >= w), written back to
 * back into dst. A decode is one span, a crop one span per row. */
typedef struct spans {
    size_t start, stride, w, nspan;
    uint8_t *dst;
} spans;

static int decode_spans(const uint8_t *blob, size_t len, size_t s, size_t n, size_t block, const spans *sp,
                        apt_error *err)
{
    const size_t lo = sp->start, hi = sp->start + (sp->nspan - 1) * sp->stride + sp->w, nblk = n / 8 * 8;
    const uint8_t *p = blob + APT_BSLZ4_HEADER, *end = blob + len;
    const size_t bbytes = block * s;
    _Alignas(64) uint8_t stack_raw[BSLZ4_STACK], stack_part[BSLZ4_STACK];
    uint8_t *raw = stack_raw, *part = stack_part, *heap = NULL;
    int rc = APT_OK;
    if (bbytes > BSLZ4_STACK) { /* only non-default headers get here; bounded by BSLZ4_MAX_BLOCK */
        heap = malloc(2 * bbytes);
        if (!heap)
            return apt_err(err, APT_ENOMEM, "bslz4: no memory for a %zu-byte block", bbytes);
        raw = heap, part = heap + bbytes;
    }
    size_t b0 = 0, bi = 0;
    while (b0 < nblk && b0 < hi) {
        const size_t be = block < nblk - b0 ? block : nblk - b0, b1 = b0 + be;
        if ((size_t)(end - p) < 4) {
            rc = apt_err(err, APT_EPROTO, "bslz4: blob truncated at the length of block %zu (offset %zu)", bi,
                         (size_t)(p - blob));
            goto out;
        }
        const uint32_t clen = rd_be32(p);
        p += 4;
        if (clen > (size_t)(end - p) || clen > INT_MAX) {
            rc = apt_err(err, APT_EPROTO, "bslz4: blob truncated or corrupt: block %zu length %u exceeds the %zu "
                         "bytes left", bi, clen, (size_t)(end - p));
            goto out;
        }
        /* first span that ends after b0; if it starts at or after b1, no span needs this block */
        size_t i = b0 < lo + sp->w ? 0 : (b0 - lo - sp->w) / sp->stride + 1;
        if (b1 > lo && i < sp->nspan && lo + i * sp->stride < b1) {
            int got = LZ4_decompress_safe((const char *)p, (char *)raw, (int)clen, (int)(be * s));
            if (got < 0 || (size_t)got != be * s) {
                rc = apt_err(err, APT_EPROTO, "bslz4: block %zu (%u bytes at offset %zu) does not decompress to "
                             "%zu bytes", bi, clen, (size_t)(p - 4 - blob), be * s);
                goto out;
            }
            for (; i < sp->nspan && lo + i * sp->stride < b1; i++) {
                size_t s0 = lo + i * sp->stride, e0 = s0 > b0 ? s0 : b0, e1 = s0 + sp->w < b1 ? s0 + sp->w : b1;
                uint8_t *d = sp->dst + i * sp->w * s;
                if (e0 == b0 && e1 == b1) { /* whole block wanted: unshuffle straight into dst */
                    apt_bshuf_untrans_groups(raw, d + (b0 - s0) * s, be, s, 0, be / 8, NULL);
                } else {
                    apt_bshuf_untrans_groups(raw, part, be, s, (e0 - b0) / 8, (e1 - b0 + 7) / 8, NULL);
                    memcpy(d + (e0 - s0) * s, part + (e0 - b0) * s, (e1 - e0) * s);
                }
            }
        }
        p += clen;
        b0 = b1, bi++;
    }
    if (b0 == nblk) { /* walked every block: exactly the raw tail must remain */
        size_t tail = (n - nblk) * s;
        if ((size_t)(end - p) != tail) {
            rc = apt_err(err, APT_EPROTO, "bslz4: %zu bytes after the last block, expected the %zu-byte raw tail",
                         (size_t)(end - p), tail);
            goto out;
        }
        for (size_t i = 0; i < sp->nspan; i++) {
            size_t s0 = lo + i * sp->stride, e0 = s0 > nblk ? s0 : nblk, e1 = s0 + sp->w;
            if (e1 > e0)
                memcpy(sp->dst + (i * sp->w + e0 - s0) * s, p + (e0 - nblk) * s, (e1 - e0) * s);
        }
    }
out:
    free(heap);
    return rc;
}

int apt_bslz4_decode(const void *blob, size_t len, size_t elem_size, void *dst, size_t dst_cap, apt_error *err)
{
    size_t n, block;
    int rc = parse_header(blob, len, elem_size, &n, &block, err);
    if (rc)
        return rc;
    if ((uint64_t)n * elem_size > dst_cap)
        return apt_err(err, APT_ERANGE, "bslz4: header raw size %zu bytes exceeds the %zu-byte destination",
                       n * elem_size, dst_cap);
    if (n == 0) {
        if (len != APT_BSLZ4_HEADER)
            return apt_err(err, APT_EPROTO, "bslz4: %zu bytes after the header of an empty blob",
                           len - APT_BSLZ4_HEADER);
        return APT_OK;
    }
    if (!dst)
        return apt_err(err, APT_EINVAL, "bslz4: NULL destination");
    spans sp = {0, n, n, 1, dst};
    return decode_spans(blob, len, elem_size, n, block, &sp, err);
}

int apt_bslz4_decode_range(const void *blob, size_t len, size_t elem_size, size_t first, size_t count, void *dst,
                           apt_error *err)
{
    size_t n, block;
    int rc = parse_header(blob, len, elem_size, &n, &block, err);
    if (rc)
        return rc;
    if (first > n || count > n - first)
        return apt_err(err, APT_ERANGE, "bslz4: range [%zu, +%zu) outside the blob's %zu elements", first, count,
                       n);
    if (count == 0)
        return APT_OK;
    if (!dst)
        return apt_err(err, APT_EINVAL, "bslz4: NULL destination");
    spans sp = {first, count, count, 1, dst};
    return decode_spans(blob, len, elem_size, n, block, &sp, err);
}

int apt_bslz4_decode_crop(const void *blob, size_t len, size_t elem_size, size_t width, size_t x0, size_t y0,
                          size_t w, size_t h, void *dst, apt_error *err)
{
    size_t n, block, rows_end;
    int rc = parse_header(blob, len, elem_size, &n, &block, err);
    if (rc)
        return rc;
    if (width == 0 || n % width)
        return apt_err(err, APT_EINVAL, "bslz4: %zu elements are not whole rows of width %zu", n, width);
    if (x0 > width || w > width - x0 || __builtin_add_overflow(y0, h, &rows_end) || rows_end > n / width)
        return apt_err(err, APT_ERANGE, "bslz4: crop %zux%zu at (x %zu, y %zu) outside the %zux%zu frame", w, h, x0,
                       y0, width, n / width);
    if (w == 0 || h == 0)
        return APT_OK;
    if (!dst)
        return apt_err(err, APT_EINVAL, "bslz4: NULL destination");
    spans sp = {y0 * width + x0, width, w, h, dst};
    return decode_spans(blob, len, elem_size, n, block, &sp, err);
}
