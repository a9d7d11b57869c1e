/* lz4codec.c - LZ4 as the detector sends it without bit-shuffle: the HDF5 LZ4 filter's chunk framing (filter id
 * 32004, Eiger stream v2 `lz4`: BE u64 raw size, BE u32 block size, blocks of BE u32 length + LZ4 block, a block
 * whose length equals its raw size stored raw) and one bare LZ4 block (Eiger stream v1 `lz4<`). The encoder mirrors
 * the HDF5 plugin (block = min(requested, raw), incompressible blocks stored raw); the decoder is strict. */
#include "aptomo/codec.h"

#include <limits.h>
#include <lz4.h>
#include <string.h>

#include "be.h"

#define H5LZ4_DEFAULT_BLOCK (1u << 30) /* the plugin's default: one block per chunk in practice */

/* The block size the plugin would use (and write in the header) for raw bytes; 0 when it cannot be framed. */
static size_t h5lz4_block(size_t raw, size_t block_bytes)
{
    size_t b = block_bytes ? block_bytes : H5LZ4_DEFAULT_BLOCK;
    if (b > raw)
        b = raw;
    return b > LZ4_MAX_INPUT_SIZE ? 0 : b;
}

size_t apt_h5lz4_bound(size_t raw_bytes, size_t block_bytes)
{
    size_t b = h5lz4_block(raw_bytes, block_bytes), total;
    if (raw_bytes == 0)
        return APT_BSLZ4_HEADER;
    if (b == 0)
        return 0;
    size_t full = raw_bytes / b, last = raw_bytes % b;
    if (__builtin_mul_overflow(full, 4 + (size_t)LZ4_compressBound((int)b), &total) ||
        __builtin_add_overflow(total, APT_BSLZ4_HEADER + (last ? 4 + (size_t)LZ4_compressBound((int)last) : 0),
                               &total))
        return 0;
    return total;
}

int apt_h5lz4_encode(const void *src, size_t raw_bytes, size_t block_bytes, void *dst, size_t dst_cap,
                     size_t *out_len, apt_error *err)
{
    if (block_bytes > UINT32_MAX)
        return apt_err(err, APT_EINVAL, "h5lz4: block size %zu does not fit the u32 header field", block_bytes);
    size_t b = h5lz4_block(raw_bytes, block_bytes);
    if (raw_bytes && b == 0)
        return apt_err(err, APT_ERANGE, "h5lz4: block of %zu bytes exceeds LZ4's %d-byte limit",
                       block_bytes ? block_bytes : raw_bytes, LZ4_MAX_INPUT_SIZE);
    if (!dst || (raw_bytes && !src))
        return apt_err(err, APT_EINVAL, "h5lz4: NULL buffer");
    if (dst_cap < APT_BSLZ4_HEADER)
        return apt_err(err, APT_ERANGE, "h5lz4: destination of %zu bytes cannot hold the 12-byte header", dst_cap);
    const uint8_t *in = src;
    uint8_t *out = dst;
    wr_be64(out, (uint64_t)raw_bytes);
    wr_be32(out + 8, (uint32_t)b);
    size_t pos = APT_BSLZ4_HEADER;
    for (size_t done = 0; done < raw_bytes;) {
        size_t bs = raw_bytes - done < b ? raw_bytes - done : b;
        size_t room = dst_cap - pos < 4 ? 0 : dst_cap - pos - 4;
        int cap = room < (size_t)LZ4_compressBound((int)bs) ? (int)room : LZ4_compressBound((int)bs);
        int c = room ? LZ4_compress_default((const char *)in + done, (char *)out + pos + 4, (int)bs, cap) : 0;
        if (c <= 0 || (size_t)c >= bs) { /* incompressible (or no room to try): store raw, as the plugin does */
            if (room < bs)
                return apt_err(err, APT_ERANGE, "h5lz4: destination of %zu bytes too small (block at byte %zu)",
                               dst_cap, done);
            memcpy(out + pos + 4, in + done, bs);
            c = (int)bs;
        }
        wr_be32(out + pos, (uint32_t)c);
        pos += 4 + (size_t)c;
        done += bs;
    }
    *out_len = pos;
    return APT_OK;
}

int apt_h5lz4_header(const void *blob, size_t len, uint64_t *raw_bytes, uint32_t *block_bytes, apt_error *err)
{
    const uint8_t *p = blob;
    if (!p && len)
        return apt_err(err, APT_EINVAL, "h5lz4: NULL blob");
    if (len < APT_BSLZ4_HEADER)
        return apt_err(err, APT_EPROTO, "h5lz4: blob of %zu bytes is shorter than its 12-byte header", len);
    uint64_t raw = rd_be64(p);
    uint32_t b = rd_be32(p + 8);
    if (raw && b == 0)
        return apt_err(err, APT_EPROTO, "h5lz4: header block size 0 for %llu raw bytes", (unsigned long long)raw);
    if (b > raw) /* the plugin clamps the same way */
        b = (uint32_t)raw;
    if (b > LZ4_MAX_INPUT_SIZE)
        return apt_err(err, APT_ERANGE, "h5lz4: header block size %u exceeds LZ4's %d-byte limit", b,
                       LZ4_MAX_INPUT_SIZE);
    uint64_t nblocks = raw ? (raw - 1) / b + 1 : 0;
    if (nblocks > (len - APT_BSLZ4_HEADER) / 4)
        return apt_err(err, APT_ERANGE, "h5lz4: header raw size %llu bytes (%llu blocks) cannot fit in a blob of "
                       "%zu bytes", (unsigned long long)raw, (unsigned long long)nblocks, len);
    if (raw_bytes)
        *raw_bytes = raw;
    if (block_bytes)
        *block_bytes = b;
    return APT_OK;
}

int apt_h5lz4_decode(const void *blob, size_t len, void *dst, size_t dst_cap, size_t *out_len, apt_error *err)
{
    uint64_t raw;
    uint32_t b;
    int rc = apt_h5lz4_header(blob, len, &raw, &b, err);
    if (rc)
        return rc;
    if (raw > dst_cap)
        return apt_err(err, APT_ERANGE, "h5lz4: header raw size %llu bytes exceeds the %zu-byte destination",
                       (unsigned long long)raw, dst_cap);
    if (raw && !dst)
        return apt_err(err, APT_EINVAL, "h5lz4: NULL destination");
    const uint8_t *p = (const uint8_t *)blob + APT_BSLZ4_HEADER, *end = (const uint8_t *)blob + len;
    uint8_t *out = dst;
    size_t bi = 0;
    for (size_t done = 0; done < raw; bi++) {
        size_t bs = raw - done < b ? (size_t)(raw - done) : b;
        if ((size_t)(end - p) < 4)
            return apt_err(err, APT_EPROTO, "h5lz4: blob truncated at the length of block %zu (offset %zu)", bi,
                           (size_t)(p - (const uint8_t *)blob));
        uint32_t clen = rd_be32(p);
        p += 4;
        if (clen > (size_t)(end - p))
            return apt_err(err, APT_EPROTO, "h5lz4: blob truncated or corrupt: block %zu length %u exceeds the %zu "
                           "bytes left", bi, clen, (size_t)(end - p));
        if (clen == bs) {
            memcpy(out + done, p, bs);
        } else {
            int got = clen > INT_MAX ? -1
                                     : LZ4_decompress_safe((const char *)p, (char *)out + done, (int)clen, (int)bs);
            if (got < 0 || (size_t)got != bs)
                return apt_err(err, APT_EPROTO, "h5lz4: block %zu (%u bytes at offset %zu) does not decompress to "
                               "%zu bytes", bi, clen, (size_t)(p - 4 - (const uint8_t *)blob), bs);
        }
        p += clen;
        done += bs;
    }
    if (p != end)
        return apt_err(err, APT_EPROTO, "h5lz4: %zu bytes after the last block", (size_t)(end - p));
    if (out_len)
        *out_len = (size_t)raw;
    return APT_OK;
}

size_t apt_lz4_bound(size_t raw_bytes)
{
    return raw_bytes > LZ4_MAX_INPUT_SIZE ? 0 : (size_t)LZ4_compressBound((int)raw_bytes);
}

int apt_lz4_encode_raw(const void *src, size_t raw_bytes, void *dst, size_t dst_cap, size_t *out_len,
                       apt_error *err)
{
    if (raw_bytes > LZ4_MAX_INPUT_SIZE)
        return apt_err(err, APT_ERANGE, "lz4: %zu bytes exceed LZ4's %d-byte limit", raw_bytes, LZ4_MAX_INPUT_SIZE);
    if (!dst || (raw_bytes && !src))
        return apt_err(err, APT_EINVAL, "lz4: NULL buffer");
    int cap = dst_cap > INT_MAX ? INT_MAX : (int)dst_cap;
    int c = LZ4_compress_default(src ? src : "", dst, (int)raw_bytes, cap);
    if (c <= 0)
        return apt_err(err, APT_ERANGE, "lz4: destination of %zu bytes too small for %zu raw bytes", dst_cap,
                       raw_bytes);
    *out_len = (size_t)c;
    return APT_OK;
}

int apt_lz4_decode_raw(const void *blob, size_t len, void *dst, size_t raw_bytes, apt_error *err)
{
    if (raw_bytes > LZ4_MAX_INPUT_SIZE)
        return apt_err(err, APT_ERANGE, "lz4: %zu raw bytes exceed LZ4's %d-byte limit", raw_bytes,
                       LZ4_MAX_INPUT_SIZE);
    if (len > INT_MAX)
        return apt_err(err, APT_ERANGE, "lz4: block of %zu bytes exceeds LZ4's input limit", len);
    if (!blob || len == 0)
        return apt_err(err, APT_EPROTO, "lz4: empty block (even an empty input compresses to one byte)");
    if (raw_bytes && !dst)
        return apt_err(err, APT_EINVAL, "lz4: NULL destination");
    char dummy;
    int got = LZ4_decompress_safe(blob, raw_bytes ? dst : &dummy, (int)len, (int)raw_bytes);
    if (got < 0 || (size_t)got != raw_bytes)
        return apt_err(err, APT_EPROTO, "lz4: block of %zu bytes does not decompress to exactly %zu bytes%s", len,
                       raw_bytes, got < 0 ? " (malformed or larger)" : "");
    return APT_OK;
}
