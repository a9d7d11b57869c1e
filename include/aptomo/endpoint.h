/* endpoint.h - syntax check of ZeroMQ endpoints before a socket sees them: libzmq accepts some bad ones at connect
 * (a port above 65535 only fails later, silently) and says only "Invalid argument" for others, so the config check,
 * the daemon and the CLI refuse them first with a message that says what is wrong. */
#ifndef APTOMO_ENDPOINT_H
#define APTOMO_ENDPOINT_H

#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

enum { APT_EP_CONNECT = 0, APT_EP_BIND = 1 };

/* tcp://HOST:PORT (HOST a name, IPv4, [IPv6] or, to bind, * or an interface; PORT 1-65535, or * / 0 to bind),
   ipc://PATH, inproc://NAME. APT_OK, or APT_EINVAL with a message naming the fault (no key prefix). */
int apt_endpoint_check(const char *endpoint, int mode, apt_error *err);

APT_API_END

#endif
