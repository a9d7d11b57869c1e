/* fuzz_h5util.h - turns fuzz bytes into a small, well-formed HDF5 file for the HDF5 reader harnesses.
 * libhdf5's own format parser is not ours to fuzz (it is fuzzed upstream); what is ours is the validation of what a
 * well-formed file contains. So each harness reads its input as a description: per dataset path a mode byte
 * (canonical, absent, a group in its place, a dangling link, another dtype, another shape, both, another layout
 * with or without another shape), a layout byte (contiguous,
 * compact, chunked, bitshuffle+LZ4, deflate, raw chunks from the input, never written) and values, and writes the
 * file with the HDF5 API. Byte 0 everywhere means "canonical", so an empty input describes a valid file and the
 * fuzzer starts deep inside the readers. */
#ifndef FUZZ_H5UTIL_H
#define FUZZ_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fz_in {
    const uint8_t *p;
    size_t n;
} fz_in;

/* The next byte, 0 once the input is used up. */
uint8_t fz_u8(fz_in *in);
/* A value: byte 0 is 1.0 (valid for every positive quantity), small bytes pick NaN, +-inf, 0, -0, huge, tiny...,
 * 255 takes the next 8 bytes as a raw double, others give (b - 16) / 4. */
double fz_value(fz_in *in);

enum fz_layout { FZ_CONTIGUOUS, FZ_COMPACT, FZ_CHUNKED, FZ_BSLZ4, FZ_DEFLATE, FZ_RAW_CHUNKS, FZ_UNWRITTEN, FZ_N_LAYOUT };

/* The dataset a reader expects at a path: its file type (an H5T_* id, not closed), rank, extents, layout. */
typedef struct fz_canon {
    hid_t type;
    int rank;
    hsize_t dims[4];
    int layout;
} fz_canon;

/* Limits of what a description may make: elements actually written, and the product of the extents of a dataset
 * that is never written (chunked, so it costs no file space, only what a reader allocates from the extents). */
#define FZ_MAX_WRITTEN 4096u
#define FZ_MAX_UNWRITTEN ((hsize_t)1 << 20)

/* The unique scratch path of this process (under /dev/shm when it exists, else $TMPDIR or /tmp). */
const char *fz_scratch_path(const char *stem);
/* Create (truncate) path with HDF5 errors silenced; -1 on failure. */
hid_t fz_create(const char *path);
/* Extents a harness accepts for a dataset that is never written (default: all); others become 1s. */
extern int (*fz_unwritten_ok)(int rank, const hsize_t *dims);
/* Make the dataset (or not, or a group, or a dangling link) at path: FZ_DS_BYTES structure bytes from st, the
 * element values from val (a separate stream, so values never shift the structure of later datasets). */
#define FZ_DS_BYTES 9
void fz_dataset(hid_t file, const char *path, const fz_canon *canon, fz_in *st, fz_in *val);
/* Same for an attribute on the object at obj_path (no layout: FZ_ATTR_BYTES structure bytes). */
#define FZ_ATTR_BYTES 7
void fz_attribute(hid_t file, const char *obj_path, const char *name, const fz_canon *canon, fz_in *st, fz_in *val);

#endif
