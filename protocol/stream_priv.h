/* stream_priv.h - helpers shared by the v1 and v2 stream codecs (not public): the pixel-blob validation both
 * decoders and both encoders apply, so that a message that decodes is one the pixel codecs can be trusted with. */
#ifndef APTOMO_STREAM_PRIV_H
#define APTOMO_STREAM_PRIV_H

#include "aptomo/stream.h"

#define APT_STREAM_MAX_DIM 65536u       /* width and height are in [1, 65536] */
#define APT_STREAM_MAX_JSON (16u << 20) /* largest JSON part / text user_data we parse, bytes */
#define APT_STREAM_MAX_NODES (1u << 20) /* largest v2 message, in CBOR items */
#define APT_STREAM_MAX_JSON_DEPTH 12    /* user_json nesting the v2 encoder accepts (fits the CBOR depth limit) */

/* Check width/height range, elem_size and the blob against its encoding: raw blobs exactly w*h*elem bytes,
   bslz4/h5lz4 headers announce exactly that many bytes, an LZ4 block fits LZ4's bound. Headers only: nothing is
   decompressed. what names the part/field in the message. */
int apt_stream_check_pixels(const apt_pixels *p, const char *what, apt_error *err);
/* "uint8"/"uint16"/"uint32" -> 1/2/4; 0 for anything else. */
uint32_t apt_stream_elem_from_dtype(const char *s, size_t n);
const char *apt_stream_dtype_name(uint32_t elem_size);

#endif
