/* test_config_blame.c - refusing a configuration value after loading (aptomod's start-up checks): the message
 * names where the value came from exactly as the loader's own errors do (FILE:LINE:COLUMN of the key, --set, or
 * the file it was left at its default in), without repeating a key the refusing code already named; a directory
 * given as the configuration says so. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apt_test.h"
#include "aptomo/config.h"

static void src_path(char *buf, size_t cap, const char *rel)
{
    const char *s = getenv("APTOMO_SRC");
    snprintf(buf, cap, "%s/%s", s && *s ? s : "..", rel);
}

/* A value refused after loading names the key where it was given: FILE:LINE:COLUMN, --set, or the file it was
   left at its default in; a message that already starts with the key (or a key below it) is not prefixed twice. */
static void test_blame(void)
{
    char path[1024];
    src_path(path, sizeof path, "tests/data/config/probe_inline.yaml");
    apt_config *c = NULL;
    apt_error e = {0};
    CHECK_OK(apt_config_load(path, &c, &e), &e);
    if (!c)
        return;
    char want[1400];
    CHECK(apt_config_fail(c, "physics.probe.defocus_m", &e, APT_ERANGE, "too far (%d um)", 15) == APT_ERANGE);
    snprintf(want, sizeof want, "%s:4:5: key 'physics.probe.defocus_m': too far (15 um)", path);
    CHECK_MSG(!strcmp(e.msg, want) && e.code == APT_ERANGE, "%s", e.msg);
    apt_err(&e, APT_EIO, "physics.probe: x.h5: cannot open");
    CHECK(apt_config_blame(c, "physics.probe", &e) == APT_EIO);
    snprintf(want, sizeof want, "%s:2:3: key 'physics.probe': x.h5: cannot open", path);
    CHECK_MSG(!strcmp(e.msg, want), "%s", e.msg);
    apt_err(&e, APT_EINVAL, "physics.probe.defocus_m: beam too wide");
    CHECK(apt_config_blame(c, "physics.probe", &e) == APT_EINVAL);
    snprintf(want, sizeof want, "%s:4:5: key 'physics.probe.defocus_m': beam too wide", path);
    CHECK_MSG(!strcmp(e.msg, want), "%s", e.msg);
    apt_err(&e, APT_EIO, "mkdir /x: denied");
    apt_config_blame(c, "storage.dir", &e);
    snprintf(want, sizeof want, "%s: key 'storage.dir' (not set, default): mkdir /x: denied", path);
    CHECK_MSG(!strcmp(e.msg, want), "%s", e.msg);
    CHECK_OK(apt_config_set(c, "storage.dir=/y", &e), &e);
    apt_config_fail(c, "storage.dir", &e, APT_EIO, "no room");
    CHECK_MSG(!strcmp(e.msg, "--set storage.dir: no room"), "%s", e.msg);
    apt_config *k = NULL; /* a clone keeps the file name for defaults */
    CHECK_OK(apt_config_clone(c, &k, &e), &e);
    if (k) {
        apt_config_fail(k, "tomo.n_star", &e, APT_EINVAL, "bad");
        snprintf(want, sizeof want, "%s: key 'tomo.n_star' (not set, default): bad", path);
        CHECK_MSG(!strcmp(e.msg, want), "%s", e.msg);
    }
    apt_config_destroy(&k);
    apt_config_destroy(&c);
    CHECK_OK(apt_config_load(NULL, &c, &e), &e);
    apt_config_fail(c, "tomo.n_star", &e, APT_EINVAL, "bad");
    CHECK_MSG(!strcmp(e.msg, "key 'tomo.n_star' (default): bad"), "%s", e.msg);
    apt_config_destroy(&c);
    /* a directory is not a config file, and says so */
    src_path(path, sizeof path, "tests/data/config");
    CHECK(apt_config_load(path, &c, &e) == APT_EINVAL && strstr(e.msg, "is a directory") != NULL);
}

int main(void)
{
    test_blame();
    APT_TEST_DONE();
}
