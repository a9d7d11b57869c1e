/* h5io.h - HDF5 helpers shared by the scan file, the spool and the CLI's HDF5 commands: checked dataset opening
 * (every missing link and every wrong rank/dims/dtype becomes an apt_error naming "file: /path"), small typed
 * readers/writers, and the innermost HDF5 error message appended to ours. HDF5's own stack printing is turned off on
 * the calling thread. Implemented in src/io/h5io.c. */
#ifndef APTOMO_H5IO_H
#define APTOMO_H5IO_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

/* Silence HDF5's automatic error printing on this thread: we report through apt_error instead. */
void apt_h5io_quiet(void);
/* apt_err with ": <innermost HDF5 message>" appended when HDF5 has one; clears the HDF5 error stack. */
int apt_h5io_fail(apt_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* 1 if every link along path exists, 0 if not (no error pushed). */
int apt_h5io_exists(hid_t loc, const char *path);
/* Open path as a dataset; APT_EINVAL "fname: path: missing" when absent. Returns the id or a negative status. */
hid_t apt_h5io_open(hid_t loc, const char *fname, const char *path, apt_error *err);
/* Check rank (and, for the entries of want != 0, the extents) of an open dataset; dims (may be NULL) gets the
 * extents. */
int apt_h5io_shape(hid_t dset, const char *fname, const char *path, int rank, const hsize_t *want, hsize_t *dims,
                   apt_error *err);
/* Dataset's type must be a float (APT_EINVAL naming path otherwise). */
int apt_h5io_need_float(hid_t dset, const char *fname, const char *path, apt_error *err);

/* Scalar (rank 0 or one element) float. */
int apt_h5io_read_scalar(hid_t loc, const char *fname, const char *path, double *out, apt_error *err);
/* Whole float dataset of given rank into dst (converted to double); every extent must match want (0 = any) and
 * the element count must be <= cap. dims (may be NULL) gets the extents. */
int apt_h5io_read_f64(hid_t loc, const char *fname, const char *path, int rank, const hsize_t *want, double *dst,
                      size_t cap, hsize_t *dims, apt_error *err);

/* Create a dataset (intermediate groups created), write data, close. dcpl may be H5P_DEFAULT. */
int apt_h5io_write(hid_t loc, const char *path, hid_t ftype, hid_t mtype, int rank, const hsize_t *dims,
                   const void *data, apt_error *err);
int apt_h5io_write_scalar(hid_t loc, const char *path, double v, apt_error *err);

/* Attributes on an object (replaced if present). */
int apt_h5io_attr_str(hid_t obj, const char *name, const char *s, apt_error *err);
int apt_h5io_attr_u64(hid_t obj, const char *name, uint64_t v, apt_error *err);
int apt_h5io_attr_f64(hid_t obj, const char *name, double v, apt_error *err);

/* Compound {r, i} of float32 (h5py's complex64); caller closes. */
hid_t apt_h5io_complex64(void);
/* Link creation property list that creates intermediate groups; caller closes. */
hid_t apt_h5io_lcpl(void);

APT_API_END

#endif
