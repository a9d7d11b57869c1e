/* error.c - the apt_error buffer: a code plus a message with context, filled where the fault is found. */
#include "aptomo/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int apt_err(apt_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int apt_err_prefix(apt_error *err, int code, const char *fmt, ...)
{
    if (!err)
        return code;
    char prefix[256], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t n = strlen(prefix);
    if (n >= sizeof err->msg)
        n = sizeof err->msg - 1;
    memcpy(err->msg, prefix, n);
    size_t room = sizeof err->msg - 1 - n, m = strnlen(old, sizeof old);
    if (m > room)
        m = room;
    memcpy(err->msg + n, old, m);
    err->msg[n + m] = '\0';
    if (err->code == APT_OK)
        err->code = code;
    return err->code;
}

void apt_err_clear(apt_error *err)
{
    if (err) {
        err->code = APT_OK;
        err->msg[0] = '\0';
    }
}

const char *apt_strerror(int code)
{
    switch (code) {
    case APT_OK: return "ok";
    case APT_EINVAL: return "invalid input";
    case APT_ENOMEM: return "out of memory or over a bound";
    case APT_EPROTO: return "malformed message";
    case APT_EIO: return "I/O error";
    case APT_ERANGE: return "size out of range";
    case APT_EAGAIN: return "try again";
    case APT_ESTATE: return "invalid state";
    case APT_ENOTSUP: return "unsupported";
    case APT_ENODEV: return "no device";
    case APT_ECORRUPT: return "corrupt data";
    default: return "unknown error";
    }
}
