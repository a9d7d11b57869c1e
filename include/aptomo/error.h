/* error.h - status codes and the caller-owned error buffer used by every libaptomo function.
 * Functions return APT_OK (0) or a negative APT_E* code and, when given a non-NULL apt_error, write a message
 * that names the file/key/field at fault. Nothing below tools/ and daemon/main.c exits the process. */
#ifndef APTOMO_ERROR_H
#define APTOMO_ERROR_H

#include <stddef.h>

#include "aptomo/export.h"

APT_API_BEGIN

enum {
    APT_OK = 0,
    APT_EINVAL = -1,   /* bad argument or bad input value */
    APT_ENOMEM = -2,   /* allocation failed or a bound was exceeded */
    APT_EPROTO = -3,   /* malformed wire message */
    APT_EIO = -4,      /* file or socket I/O */
    APT_ERANGE = -5,   /* size field out of its allowed range */
    APT_EAGAIN = -6,   /* try again (queue full, nothing yet) */
    APT_ESTATE = -7,   /* call not valid in the current state */
    APT_ENOTSUP = -8,  /* valid but unsupported (e.g. an unknown encoding) */
    APT_ENODEV = -9,   /* no accelerator device */
    APT_ECORRUPT = -10 /* stored data fails its checksum or is truncated */
};

typedef struct apt_error {
    int code;
    char msg[512];
} apt_error;

/* Records code and a printf-style message in err (if non-NULL); returns code so callers can `return apt_err(...)`. */
int apt_err(apt_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prefixes an existing message with context ("file.h5: " + old message); returns err->code (or code if err NULL). */
int apt_err_prefix(apt_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void apt_err_clear(apt_error *err);
const char *apt_strerror(int code);

APT_API_END

#endif
