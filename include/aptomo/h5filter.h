/* h5filter.h - libaptomo's own HDF5 bitshuffle filter (id 32008), built on the codecs of codec.h, so our tools read
 * and write Eiger-style bslz4 datasets without a plugin, and h5py + the bitshuffle plugin read ours. Same cd_values
 * as the bitshuffle library: {major, minor, elem_size, block_size (elements, 0 = default), compression (2 = LZ4)}.
 * The HDF5 LZ4 filter (32004) is only named here: we write its chunks pre-framed, readers use Debian's plugin. */
#ifndef APTOMO_H5FILTER_H
#define APTOMO_H5FILTER_H

#include <hdf5.h>

#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

#define APT_H5Z_BITSHUFFLE 32008      /* bitshuffle (+ LZ4), kiyo-masui/bitshuffle */
#define APT_H5Z_LZ4 32004             /* HDF5 LZ4 filter framing */
#define APT_H5Z_BSHUF_LZ4 2u          /* cd_values[4]: LZ4 after bitshuffle */
#define APT_H5Z_BSHUF_MAJOR 0u        /* format of bitshuffle >= 0.3: 12-byte big-endian header */
#define APT_H5Z_BSHUF_MINOR 3u

/* Register filter 32008 with HDF5 once per process (pthread_once); later calls return the first result.
 * A registered filter takes precedence over a dynamically loaded plugin of the same id. */
int apt_h5filter_register(apt_error *err);

/* Add the bitshuffle + LZ4 filter (mandatory) to a dataset creation property list; registers it first. */
int apt_h5filter_set_bslz4(hid_t dcpl, apt_error *err);
/* Add the HDF5 LZ4 filter as optional: creation never needs the plugin, since we only write pre-framed chunks
 * with H5Dwrite_chunk; reading needs the plugin (Debian hdf5-filter-plugin). */
int apt_h5filter_set_lz4(hid_t dcpl, apt_error *err);

typedef enum {
    APT_H5PIPE_NONE = 0,   /* no filter */
    APT_H5PIPE_BSLZ4 = 1,  /* exactly one filter: 32008 with LZ4 */
    APT_H5PIPE_LZ4 = 2,    /* exactly one filter: 32004 */
    APT_H5PIPE_OTHER = 3   /* anything else (deflate, bitshuffle without LZ4, several filters) */
} apt_h5pipe;

/* Classify a dataset creation property list's filter pipeline (raw chunk access needs to know the framing). */
apt_h5pipe apt_h5filter_classify(hid_t dcpl);

APT_API_END

#endif
