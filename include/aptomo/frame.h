/* frame.h - from a wire frame to the cropped float pattern the reconstruction uses. The crop is decoded straight
 * from the compressed blob (bslz4: only the blocks covering the crop rows), so full frames are never expanded. */
#ifndef APTOMO_FRAME_H
#define APTOMO_FRAME_H

#include <stdint.h>

#include "aptomo/bytes.h"
#include "aptomo/error.h"
#include "aptomo/export.h"
#include "aptomo/stream.h"

APT_API_BEGIN

typedef struct apt_crop {
    uint32_t r0, c0; /* top-left corner in the detector frame */
    uint32_t n;      /* crop is n x n */
} apt_crop;

/* Place an n x n window so that the beam centre (cy, cx) (pixels; NaN = frame centre) lands on crop pixel
   [n/2, n/2], where the model's zero frequency sits. APT_ERANGE with a message when it does not fit. */
int apt_crop_place(uint32_t frame_w, uint32_t frame_h, double cy, double cx, uint32_t n, apt_crop *out,
                   apt_error *err);

/* Decode the crop of px into dst[n*n] (row-major). Pixels at the type's maximum value (module gaps, dead pixels
   as Eiger marks them) or with a non-zero value in mask (full-frame uint32 pixel mask, may be NULL) become -1,
   i.e. "not measured". scratch is a caller-owned buffer, grown as needed and reused across calls. */
int apt_frame_decode_crop(const apt_pixels *px, const apt_crop *c, const uint32_t *mask, float *dst,
                          apt_bytes *scratch, apt_error *err);

/* Decode a whole frame into dst (width*height*elem_size bytes, native element type). */
int apt_frame_decode(const apt_pixels *px, void *dst, size_t dst_cap, apt_error *err);

APT_API_END

#endif
