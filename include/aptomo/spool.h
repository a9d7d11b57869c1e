/* spool.h - per-series spool file: every received frame written bit-exact to HDF5 (storage.spool_frames), without
 * decoding. bslz4 blobs are already bitshuffle-filter (32008) chunks and HDF5-LZ4 blobs already LZ4-filter (32004)
 * chunks, so H5Dwrite_chunk stores them as received; a v1 raw "lz4<" block gets the 16-byte LZ4-filter framing
 * prepended; raw frames are bslz4-encoded. Layout in docs/FILES.md. Single-threaded by design: the daemon runs one
 * spool thread, and a handle must never be shared between threads (HDF5 serialises the library, not our state). */
#ifndef APTOMO_SPOOL_H
#define APTOMO_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "aptomo/error.h"
#include "aptomo/export.h"
#include "aptomo/stream.h"

APT_API_BEGIN

#define APT_SPOOL_MAX_IMAGE_ID ((uint64_t)INT32_MAX)  /* frame index = image_id, bounded before extending */
#define APT_SPOOL_MAX_SIDE 65536u
#define APT_SPOOL_MAX_FRAME_BYTES (1u << 30)

typedef struct apt_spool apt_spool;

/* Create dir/series_<id>_<unique>.h5 (unique_id sanitised to [A-Za-z0-9._-], at most 64 characters; empty or NULL
 * gives series_<id>.h5). An existing file is never overwritten: "-1", "-2", ... is appended instead. */
int apt_spool_open(const char *dir, uint64_t series_id, const char *unique_id, uint32_t width, uint32_t height,
                   uint32_t elem_size, apt_spool **out, apt_error *err);
/* Store frame image_id. The first frame fixes the dataset's filter: bslz4/none -> 32008, lz4/h5lz4 -> 32004; a
 * later frame of the other family is re-encoded (pixels preserved) and counted in reencoded_frames. Sizes in the
 * blob's header are checked against width*height*elem_size. A second frame with the same image_id is refused
 * (APT_ESTATE), the first one kept. A frame that would leave less than the room closing needs under the process's
 * file size limit (RLIMIT_FSIZE) is refused with APT_EIO and errno EFBIG, so the file still closes cleanly. */
int apt_spool_write(apt_spool *sp, uint64_t image_id, apt_encoding enc, const void *blob, size_t len,
                    apt_error *err);
/* Positions (y, x) metres of frames [first, first + n) into /entry/data/positions_m (rows never given read NaN). */
int apt_spool_set_positions(apt_spool *sp, uint64_t first, size_t n, const double *pos_m, apt_error *err);
int apt_spool_set_angle(apt_spool *sp, double angle_deg, apt_error *err);
/* Write buffered image ids and counters, flush the file to disk. */
int apt_spool_flush(apt_spool *sp, apt_error *err);
const char *apt_spool_path(const apt_spool *sp);
uint64_t apt_spool_frames(const apt_spool *sp);   /* frames stored so far */
/* Flush, close, free, set *sp to NULL (also on error). */
int apt_spool_close(apt_spool **sp, apt_error *err);

APT_API_END

#endif
