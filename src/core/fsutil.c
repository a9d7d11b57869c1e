/* fsutil.c - mkdir -p for storage.dir and output folders: created on start so configs name no folder that must
 * exist beforehand. */
#include "aptomo/fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int apt_mkdir_p(const char *path, mode_t mode, apt_error *err)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return apt_err(err, APT_EINVAL, "directory path '%s' empty or too long", path);
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return apt_err(err, APT_EIO, "mkdir %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, mode) != 0 && errno != EEXIST)
        return apt_err(err, APT_EIO, "mkdir %s: %s", buf, strerror(errno));
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
        return apt_err(err, APT_EIO, "%s exists and is not a directory", buf);
    return APT_OK;
}
