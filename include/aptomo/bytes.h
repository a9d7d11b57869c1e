/* bytes.h - growable byte buffers and multipart message holders used by the protocol encoders. */
#ifndef APTOMO_BYTES_H
#define APTOMO_BYTES_H

#include <stddef.h>
#include <stdint.h>

#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

typedef struct apt_bytes {
    uint8_t *data;
    size_t len, cap;
} apt_bytes;

/* A borrowed view of bytes (a ZeroMQ frame, a slice of a message). */
typedef struct apt_buf {
    const uint8_t *ptr;
    size_t len;
} apt_buf;

#define APT_MAX_PARTS 12

typedef struct apt_parts {
    apt_bytes part[APT_MAX_PARTS];
    size_t n;
} apt_parts;

int apt_bytes_reserve(apt_bytes *b, size_t cap, apt_error *err);
int apt_bytes_append(apt_bytes *b, const void *p, size_t n, apt_error *err);
void apt_bytes_reset(apt_bytes *b);          /* len = 0, keeps the allocation */
void apt_bytes_free(apt_bytes *b);
void apt_parts_reset(apt_parts *p);           /* n = 0, every part's len = 0 */
void apt_parts_free(apt_parts *p);

APT_API_END

#endif
