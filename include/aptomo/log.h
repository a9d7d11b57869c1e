/* log.h - one line per event on stderr, journald-friendly: under systemd (JOURNAL_STREAM set) lines carry the
 * <N> syslog priority prefix so journalctl -p works; on a terminal they carry a timestamp instead. */
#ifndef APTOMO_LOG_H
#define APTOMO_LOG_H

#include "aptomo/export.h"

APT_API_BEGIN

enum { APT_LOG_DEBUG = 0, APT_LOG_INFO = 1, APT_LOG_WARN = 2, APT_LOG_ERROR = 3 };

void apt_log_set_level(int level);
int apt_log_get_level(void);
int apt_log_parse_level(const char *name); /* -1 if unknown */
void apt_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define apt_debug(...) apt_log(APT_LOG_DEBUG, __VA_ARGS__)
#define apt_info(...) apt_log(APT_LOG_INFO, __VA_ARGS__)
#define apt_warn(...) apt_log(APT_LOG_WARN, __VA_ARGS__)
#define apt_error_log(...) apt_log(APT_LOG_ERROR, __VA_ARGS__)

APT_API_END

#endif
