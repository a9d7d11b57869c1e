/* safetensors.h - reader (mmap, every header field bounds-checked before use) and writer of the safetensors format:
 * u64 LE header length, JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, raw bytes.
 * Only F32 and I64 (BatchNorm's num_batches_tracked) are accepted; the network's weights are float32. */
#ifndef APTOMO_SAFETENSORS_H
#define APTOMO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

#define APT_ST_MAX_RANK 8
#define APT_ST_MAX_HEADER ((uint64_t)64 << 20) /* 64 MiB of JSON is far beyond any real header */

typedef enum apt_st_dtype { APT_ST_F32 = 0, APT_ST_I64 = 1 } apt_st_dtype;

typedef struct apt_st_tensor {
    const char *name;
    apt_st_dtype dtype;
    int rank;
    int64_t shape[APT_ST_MAX_RANK];
    size_t count;      /* elements */
    const void *data;  /* into the mapping; F32/I64 little-endian, maybe unaligned for I64 */
    size_t nbytes;
} apt_st_tensor;

typedef struct apt_st_file apt_st_file;

/* Map and parse a file; every error names the file and the tensor/field at fault (APT_EINVAL/ERANGE = bad file). */
int apt_st_open(const char *path, apt_st_file **out, apt_error *err);
/* Parse a buffer held by the caller (borrowed: must outlive the handle). */
int apt_st_open_mem(const void *buf, size_t len, apt_st_file **out, apt_error *err);
void apt_st_close(apt_st_file **f);

size_t apt_st_count(const apt_st_file *f);
const apt_st_tensor *apt_st_at(const apt_st_file *f, size_t i);
const apt_st_tensor *apt_st_find(const apt_st_file *f, const char *name);
/* __metadata__[key] or NULL. */
const char *apt_st_meta(const apt_st_file *f, const char *key);
/* The whole file as mapped (for hashing). */
const uint8_t *apt_st_bytes(const apt_st_file *f, size_t *len);

/* Writer: collects borrowed tensors (data must stay valid until apt_st_writer_save) and metadata strings (copied). */
typedef struct apt_st_writer apt_st_writer;
int apt_st_writer_new(apt_st_writer **out, apt_error *err);
int apt_st_writer_meta(apt_st_writer *w, const char *key, const char *value, apt_error *err);
int apt_st_writer_add(apt_st_writer *w, const char *name, apt_st_dtype dtype, int rank, const int64_t *shape,
                      const void *data, apt_error *err);
/* Write atomically (temp file + rename). */
int apt_st_writer_save(apt_st_writer *w, const char *path, apt_error *err);
void apt_st_writer_destroy(apt_st_writer **w);

APT_API_END

#endif
