/* log.c - the process-wide logger: level filter, one fprintf per line (atomic for short lines), syslog priority
 * prefixes when stderr goes to the journal so systemd keeps severities. */
#include "aptomo/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Atomic int log_level = APT_LOG_INFO; /* read by every thread, set by control */
static int log_journal = -1;

void apt_log_set_level(int level) { log_level = level; }
int apt_log_get_level(void) { return log_level; }

int apt_log_parse_level(const char *name)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, names[i]))
            return i;
    return -1;
}

void apt_log(int level, const char *fmt, ...)
{
    if (level < log_level)
        return;
    if (log_journal < 0)
        log_journal = getenv("JOURNAL_STREAM") != NULL;
    static const char *tag[] = {"debug", "info", "warn", "error"};
    static const int prio[] = {7, 6, 4, 3};
    char line[2048];
    int n;
    if (log_journal) {
        n = snprintf(line, sizeof line, "<%d>", prio[level]);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L, tag[level]);
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    /* Messages quote what peers sent: escape control and non-ASCII bytes so a log line stays one clean line. */
    char out[sizeof line * 4 + 2];
    size_t len = 0;
    for (const unsigned char *p = (const unsigned char *)line; *p; p++) {
        if (*p >= 0x20 && *p < 0x7f) {
            out[len++] = (char)*p;
        } else {
            static const char hex[] = "0123456789abcdef";
            out[len++] = '\\';
            out[len++] = 'x';
            out[len++] = hex[*p >> 4];
            out[len++] = hex[*p & 15];
        }
    }
    out[len++] = '\n';
    fwrite(out, 1, len, stderr);
}
