/* codec.h - detector pixel codecs: bit-shuffle, bslz4 (bitshuffle HDF5-filter framing, id 32008), the HDF5 LZ4
 * filter framing (id 32004) and raw LZ4 blocks. Pure functions, no allocation unless stated; every size field in
 * a blob is checked against the caller's bounds before anything is written. Bit-exact with the bitshuffle library. */
#ifndef APTOMO_CODEC_H
#define APTOMO_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

#define APT_BSLZ4_HEADER 12u          /* BE u64 raw bytes + BE u32 block bytes */
#define APT_BSLZ4_TARGET_BLOCK 8192u  /* bitshuffle's default block, in bytes */

/* bitshuffle's default block size in elements for elem_size (8192 bytes / elem_size, multiple of 8, >= 128). */
size_t apt_bshuf_default_block(size_t elem_size);

/* Bit-transpose n elements of elem_size bytes as bshuf_bitshuffle(..., block_size=0) does: blocks of the default
 * size, a last partial block of (rem - rem % 8) elements, the final rem % 8 elements copied unchanged. */
int apt_bitshuffle(const void *in, void *out, size_t n, size_t elem_size, size_t block_elems, apt_error *err);
int apt_bitunshuffle(const void *in, void *out, size_t n, size_t elem_size, size_t block_elems, apt_error *err);
/* Bit-unshuffle only the 8-element groups [g0, g1) of one shuffled block of block_elems elements (a multiple of 8):
 * writes elements [8*g0, 8*g1) of out (the block's first element) and nothing else. A partial decode (a crop)
 * unshuffles just the columns it needs. in and out must not overlap. */
int apt_bshuf_untrans_groups(const void *in, void *out, size_t block_elems, size_t elem_size, size_t g0, size_t g1,
                             apt_error *err);

#define APT_BSHUF_MAX_ELEM 256u       /* largest element size the bit transposes accept */

/* Kernel sets of the bit transposes; every set gives identical bytes. By default the best one the CPU has is used;
 * apt_bshuf_set_isa caps it (tests, benchmarks) and returns the level now in effect; a negative cap restores auto. */
enum { APT_BSHUF_SCALAR = 0, APT_BSHUF_SSE2 = 1, APT_BSHUF_AVX2 = 2 };
int apt_bshuf_set_isa(int max_level);
int apt_bshuf_isa(void);

/* Largest blob apt_bslz4_encode can produce for n elements. */
size_t apt_bslz4_bound(size_t n, size_t elem_size);
/* Encode n elements to bslz4 (header + blocks + raw remainder); *out_len gets the blob size. */
int apt_bslz4_encode(const void *src, size_t n, size_t elem_size, void *dst, size_t dst_cap, size_t *out_len,
                     apt_error *err);
/* Read the 12-byte header: uncompressed bytes and block size in bytes. Validated: raw bytes a multiple of
 * elem_size, block a multiple of 8 elements within [8 elements, 1 MiB], and the blob long enough for a length prefix
 * per block plus the raw tail (so an absurd size fails here, with APT_ERANGE, before anyone allocates for it). */
int apt_bslz4_header(const void *blob, size_t len, size_t elem_size, uint64_t *raw_bytes, uint32_t *block_bytes,
                     apt_error *err);
/* Decode a whole bslz4 blob into dst (dst_cap bytes must hold the header's raw size exactly or more). Bytes after
 * the raw tail are an error. Decoders use stack scratch for blocks up to 16 KiB (every default block of elements up
 * to 128 bytes, so every Eiger blob) and allocate one only for larger blocks. */
int apt_bslz4_decode(const void *blob, size_t len, size_t elem_size, void *dst, size_t dst_cap, apt_error *err);
/* Decode only the elements [first, first + count) into dst (count * elem_size bytes): only blocks that overlap the
 * range are decompressed; earlier blocks are skipped by their length prefix. Used to crop frames cheaply. */
int apt_bslz4_decode_range(const void *blob, size_t len, size_t elem_size, size_t first, size_t count, void *dst,
                           apt_error *err);
/* Decode the w x h window at column x0, row y0 of a row-major frame `width` elements wide (the blob's element
 * count must be a multiple of width) into dst (h rows of w elements): only blocks overlapping the window are
 * decompressed and only their 8-element groups under the window are unshuffled. The daemon's detector crop. */
int apt_bslz4_decode_crop(const void *blob, size_t len, size_t elem_size, size_t width, size_t x0, size_t y0,
                          size_t w, size_t h, void *dst, apt_error *err);

/* HDF5 LZ4 filter framing: BE u64 raw size, BE u32 block size, then per block BE u32 length + LZ4 block; a block
 * whose length equals its raw size is stored raw. block_bytes 0 means the filter default (1 GiB, i.e. one block). */
size_t apt_h5lz4_bound(size_t raw_bytes, size_t block_bytes);
int apt_h5lz4_encode(const void *src, size_t raw_bytes, size_t block_bytes, void *dst, size_t dst_cap,
                     size_t *out_len, apt_error *err);
/* Read and check the 12-byte header: raw size, block size (0 only for an empty chunk), enough bytes for the blocks. */
int apt_h5lz4_header(const void *blob, size_t len, uint64_t *raw_bytes, uint32_t *block_bytes, apt_error *err);
int apt_h5lz4_decode(const void *blob, size_t len, void *dst, size_t dst_cap, size_t *out_len, apt_error *err);

/* One raw LZ4 block (Eiger v1 "lz4<"): exactly raw_bytes must come out. */
int apt_lz4_decode_raw(const void *blob, size_t len, void *dst, size_t raw_bytes, apt_error *err);
size_t apt_lz4_bound(size_t raw_bytes);
int apt_lz4_encode_raw(const void *src, size_t raw_bytes, void *dst, size_t dst_cap, size_t *out_len,
                       apt_error *err);

APT_API_END

#endif
