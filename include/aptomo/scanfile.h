/* scanfile.h - the scan file (docs/FILES.md): instrument scalars, probe modes, angles, and per angle the detector
 * frames [J,H,W] (uint8/16/32, one frame per chunk, bitshuffle+LZ4) with their positions. Frames are stored as bslz4
 * chunks so replay can send a stored chunk as-is (apt_scanfile_read_chunk) while analysis reads decoded frames.
 * Every read checks rank, extents and dtype first and names the file and dataset path at fault. One handle is used
 * by one thread at a time (HDF5 serialises the library anyway). */
#ifndef APTOMO_SCANFILE_H
#define APTOMO_SCANFILE_H

#include <stddef.h>
#include <stdint.h>

#include "aptomo/bytes.h"
#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

/* Bounds checked before any allocation or dataset creation. */
#define APT_SCAN_MAX_ANGLES 100000u
#define APT_SCAN_MAX_FRAMES (1u << 24)   /* frames per angle */
#define APT_SCAN_MAX_SIDE 65536u         /* frame / probe height and width */
#define APT_SCAN_MAX_FRAME_BYTES (1u << 30)
#define APT_SCAN_MAX_MODES 64u
#define APT_SCAN_MAX_VOXELS (1ull << 32)

typedef struct apt_scanfile apt_scanfile;

typedef struct apt_scan_header {
    double energy_keV;
    double detector_distance_m;
    double pixel_size_m;            /* detector pixel */
    double beam_center_px[2];       /* (y, x) in the frame; NaN on create = not written (readers use the centre) */
    uint32_t n_angles;
    const double *angles_deg;       /* create: n_angles values or NULL (NaN until apt_scanfile_write_angle);
                                       open: owned by the handle */
} apt_scan_header;

/* Create (truncate) path and write the header. The angle table is sized n_angles (>= 1). */
int apt_scanfile_create(const char *path, const apt_scan_header *h, apt_scanfile **out, apt_error *err);
/* Open read-only; reads and validates the instrument scalars and the angle table. */
int apt_scanfile_open(const char *path, apt_scanfile **out, apt_error *err);
/* Close (flushes a created file) and set *sf to NULL; returns APT_EIO if HDF5 failed to close the file. */
int apt_scanfile_close(apt_scanfile **sf, apt_error *err);

/* Header as read or written. On open, an absent beam_center_px becomes the frame centre (H/2, W/2) of angle 0 (the
   zero-frequency pixel of a centred frame), or NaN when no angle is stored yet. */
const apt_scan_header *apt_scanfile_header(const apt_scanfile *sf);
const char *apt_scanfile_path(const apt_scanfile *sf);

/* Probe modes [M,H,W] complex: interleaved (re, im) float32, M*H*W pairs. Written as complex64 {r, i}. */
int apt_scanfile_write_probe(apt_scanfile *sf, uint32_t M, uint32_t H, uint32_t W, const float *modes,
                             double pixel_size_m, apt_error *err);
int apt_scanfile_probe_dims(apt_scanfile *sf, uint32_t *M, uint32_t *H, uint32_t *W, apt_error *err);
/* dst holds M*H*W (re, im) pairs; complex128 files are converted. pixel_size_m may be NULL. */
int apt_scanfile_read_probe(apt_scanfile *sf, float *dst, double *pixel_size_m, apt_error *err);

/* Angle idx: store angle_deg in the table, create data [J,H,W] (elem_size 1, 2 or 4 -> uint8/16/32) and
 * positions_m [J,2] (y, x). frames (J*H*W elements) may be NULL: fill later with apt_scanfile_write_frames.
 * pos_m (J*2 doubles) must be given. */
int apt_scanfile_write_angle(apt_scanfile *sf, uint32_t idx, double angle_deg, uint32_t J, uint32_t H, uint32_t W,
                             uint32_t elem_size, const void *frames, const double *pos_m, apt_error *err);
int apt_scanfile_write_frames(apt_scanfile *sf, uint32_t idx, uint32_t j0, uint32_t count, const void *frames,
                              apt_error *err);
/* Validated shape of angle idx (data rank 3, unsigned 1/2/4-byte pixels, positions [J,2] float). */
int apt_scanfile_angle_dims(apt_scanfile *sf, uint32_t idx, uint32_t *J, uint32_t *H, uint32_t *W,
                            uint32_t *elem_size, apt_error *err);
/* Decoded frames [j0, j0+count) into dst (count*H*W*elem_size bytes, native little-endian integers). */
int apt_scanfile_read_frames(apt_scanfile *sf, uint32_t idx, uint32_t j0, uint32_t count, void *dst,
                             apt_error *err);
/* Positions [J,2] (y, x) metres into pos (J*2 doubles). */
int apt_scanfile_read_positions(apt_scanfile *sf, uint32_t idx, double *pos, apt_error *err);
/* Raw stored chunk of frame j (H5Dread_chunk): a bslz4 blob when *filter_mask == 0. The dataset must be chunked
 * [1,H,W] with the bitshuffle+LZ4 filter (APT_ENOTSUP otherwise). blob is reset and filled. */
int apt_scanfile_read_chunk(apt_scanfile *sf, uint32_t idx, uint32_t j, apt_bytes *blob, uint32_t *filter_mask,
                            apt_error *err);

/* Ground truth (simulator): float32 [Z,Y,X] + voxel_size_m (z, y, x). */
int apt_scanfile_write_ground_truth(apt_scanfile *sf, uint32_t Z, uint32_t Y, uint32_t X, const float *vol,
                                    const double voxel_size_m[3], apt_error *err);
int apt_scanfile_has_ground_truth(apt_scanfile *sf);
int apt_scanfile_ground_truth_dims(apt_scanfile *sf, uint32_t *Z, uint32_t *Y, uint32_t *X, apt_error *err);
int apt_scanfile_read_ground_truth(apt_scanfile *sf, float *dst, double voxel_size_m[3], apt_error *err);

APT_API_END

#endif
