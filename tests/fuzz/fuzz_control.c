/* fuzz_control.c - libFuzzer target: the daemon's control request decoder (aptd_control_parse, daemon/control.c)
 * and, for a decoded `set`, the live settings change (aptd_settings_set_live) on default settings. Checked: a
 * decoded request is complete and NUL-terminated within its buffers; a refused `set` leaves every setting as it was;
 * an accepted one changes only its own key's field, to a value in that key's range. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptd_int.h"
#include "aptomo/log.h"

static void expect(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_control: contract broken: %s\n", what);
        abort();
    }
}

/* The field a live key names (by name or alias), with the default restored: the rest must be untouched. */
static int only_field_changed(const aptd_settings *s0, const aptd_settings *s, const char *key)
{
    aptd_settings t = *s;
    if (!strcmp(key, "tomo.n_star") || !strcmp(key, "n_star")) {
        expect(s->n_star >= 1 && s->n_star <= 100000, "n_star out of range");
        t.n_star = s0->n_star;
    } else if (!strcmp(key, "tomo.publish_every") || !strcmp(key, "publish_every")) {
        expect(s->publish_every >= 1 && s->publish_every <= 100000, "publish_every out of range");
        t.publish_every = s0->publish_every;
    } else if (!strcmp(key, "detector.series_timeout_s")) {
        expect(s->series_timeout_s >= 0.1 && s->series_timeout_s <= 86400, "series_timeout_s out of range");
        t.series_timeout_s = s0->series_timeout_s;
    } else if (!strcmp(key, "log.level")) {
        expect(s->log_level >= APT_LOG_DEBUG && s->log_level <= APT_LOG_ERROR, "log_level out of range");
        t.log_level = s0->log_level;
    } else {
        return 0;
    }
    return !memcmp(&t, s0, sizeof t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    aptd_request rq;
    const char *why = NULL;
    if (aptd_control_parse(data, size, &rq, &why)) {
        expect(why && why[0] && rq.value == NULL, "a refused request without a reason, or holding a value");
        return 0;
    }
    expect(rq.cmd >= APTD_CMD_STATUS && rq.cmd <= APTD_CMD_SHUTDOWN, "cmd out of range");
    expect(memchr(rq.topic, 0, sizeof rq.topic) && memchr(rq.key, 0, sizeof rq.key), "unterminated topic/key");
    if (rq.cmd == APTD_CMD_SET) {
        expect(rq.value != NULL, "set without a value");
        aptd_settings s0, s;
        aptd_settings_default(&s0);
        s = s0;
        why = NULL;
        if (aptd_settings_set_live(&s, rq.key, rq.value, &why))
            expect(why && why[0] && !memcmp(&s, &s0, sizeof s), "a refused set changed settings or gave no reason");
        else
            expect(only_field_changed(&s0, &s, rq.key), "an accepted set changed another setting");
        apt_log_set_level(APT_LOG_ERROR); /* set log.level changes the process's level: keep the fuzzer quiet */
    }
    aptd_request_clear(&rq);
    return 0;
}
