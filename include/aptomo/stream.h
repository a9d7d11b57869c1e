/* stream.h - Dectris Eiger stream interface, v1 (JSON multipart, "htype") and v2 (one CBOR message per event),
 * decoded into one apt_stream_msg. Pure functions on bytes: no sockets, no threads. Decoders never allocate more
 * than the message's own size warrants, borrow pixel blobs from the input (valid while the input is), and return
 * APT_EPROTO/APT_ERANGE/APT_ENOTSUP with a reason naming the part/field at fault. Encoders exist for replay/tests. */
#ifndef APTOMO_STREAM_H
#define APTOMO_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "aptomo/bytes.h"
#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

typedef enum { APT_MSG_NONE = 0, APT_MSG_START = 1, APT_MSG_IMAGE = 2, APT_MSG_END = 3 } apt_msg_type;

typedef enum {
    APT_ENC_NONE = 0, /* raw little-endian pixels (v1 "<", v2 plain typed array) */
    APT_ENC_BSLZ4 = 1, /* bitshuffle + LZ4, HDF5-filter framing (v1 "bs16-lz4<"/"bs32-lz4<", v2 "bslz4") */
    APT_ENC_LZ4 = 2,   /* one raw LZ4 block (v1 "lz4<") */
    APT_ENC_H5LZ4 = 3  /* HDF5 LZ4-filter framing (v2 "lz4") */
} apt_encoding;

typedef enum { APT_DETAIL_NONE = 0, APT_DETAIL_BASIC = 1, APT_DETAIL_ALL = 2 } apt_header_detail;

#define APT_MAX_CHANNELS 4
#define APT_NAME_LEN 64

/* One 2-D pixel array as carried on the wire (possibly compressed). */
typedef struct apt_pixels {
    char channel[APT_NAME_LEN]; /* v2 channel name; v1: "" */
    uint32_t width, height;     /* pixels per row, rows */
    uint32_t elem_size;         /* 1, 2 or 4 (unsigned integers, little-endian) */
    apt_encoding enc;
    const uint8_t *blob;        /* borrowed from the decoder's input */
    size_t blob_len;
} apt_pixels;

/* Detector configuration found in a start message (v1 "basic"/"all" config part, v2 start fields). */
typedef struct apt_detector_config {
    int present;                /* 0: nothing was sent (v1 header_detail none) */
    double beam_center_x, beam_center_y; /* pixels; NaN when absent */
    uint32_t width, height;     /* x_pixels_in_detector / image_size_x, ... ; 0 when absent */
    uint64_t n_images;          /* nimages * ntrigger (v1) / number_of_images (v2); 0 when absent */
    uint32_t elem_size;         /* from bit_depth_image / image_dtype; 0 when absent */
    double energy_eV, distance_m, pixel_x_m, pixel_y_m, count_time_s, frame_time_s; /* NaN when absent */
    uint64_t saturation;        /* countrate_correction_count_cutoff / saturation_value; 0 when absent */
} apt_detector_config;

typedef struct apt_stream_msg {
    apt_msg_type type;
    int version;                           /* 1 or 2 */
    uint64_t series_id;
    char series_unique_id[APT_NAME_LEN];   /* v2; v1: "" */
    /* start */
    apt_header_detail header_detail;       /* v1 only */
    apt_detector_config config;
    char channels[APT_MAX_CHANNELS][APT_NAME_LEN]; /* v2 start "channels" */
    int n_channels;
    apt_pixels mask;                       /* pixel mask if sent (v1 dpixelmask-1.0 / v2 pixel_mask of the channel);
                                              blob NULL when absent */
    /* image */
    uint64_t image_id;                     /* v1 "frame", v2 image_id */
    apt_pixels pixels;                     /* the selected channel */
    apt_pixels chan[APT_MAX_CHANNELS];     /* v2: every channel of the image (decoder fills, encoder reads) */
    int n_chan;
    /* start and image: user data / appendix as JSON text (v1: appendix bytes borrowed; v2: user_data converted
       from CBOR to JSON, owned); NULL when absent */
    const char *user_json;
    size_t user_json_len;
    char *owned_json;
} apt_stream_msg;

void apt_stream_msg_init(apt_stream_msg *m);   /* zero + NaN for absent doubles */
void apt_stream_msg_clear(apt_stream_msg *m);  /* frees owned_json and re-inits */

/* v1: one ZeroMQ multipart message (parts in order). Appendix parts are recognised by position per header_detail
 * (dheader) or as the part after dconfig-1.0 (image). */
int apt_v1_decode(const apt_buf *parts, size_t nparts, apt_stream_msg *m, apt_error *err);
/* v2: one CBOR message (tag 55799 optional). channel selects the image channel (NULL: "threshold_1" if present,
   else the first one); every channel is listed in m->chan. */
int apt_v2_decode(const void *data, size_t len, const char *channel, apt_stream_msg *m, apt_error *err);
/* Peek the protocol of a first frame: 1 (JSON object with "htype"), 2 (CBOR map/tag), or 0 if neither. */
int apt_stream_sniff(const void *data, size_t len);

/* Encoders (replay, tests): start uses type/series/config/header_detail/mask/user_json; image uses
   series/image_id/pixels (or chan[] for several v2 channels)/user_json; end uses series. */
int apt_v1_encode(const apt_stream_msg *m, apt_parts *out, apt_error *err);
int apt_v2_encode(const apt_stream_msg *m, apt_bytes *out, apt_error *err);

const char *apt_encoding_name_v1(apt_encoding enc, uint32_t elem_size); /* "bs16-lz4<", "lz4<", "<", ... */
const char *apt_encoding_name(apt_encoding enc);                        /* "bslz4", "lz4", "h5lz4", "none" */

APT_API_END

#endif
