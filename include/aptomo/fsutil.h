/* fsutil.h - small filesystem helpers shared by the daemon and the CLI. */
#ifndef APTOMO_FSUTIL_H
#define APTOMO_FSUTIL_H

#include <sys/types.h>

#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

/* mkdir -p: create path and its missing parents with mode; an existing directory is fine. */
int apt_mkdir_p(const char *path, mode_t mode, apt_error *err);

APT_API_END

#endif
