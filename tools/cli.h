/* cli.h - small helpers shared by the aptomo subcommands: option parsing glue, file reading, progress bars. */
#ifndef APTOMO_TOOLS_CLI_H
#define APTOMO_TOOLS_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "aptomo/clock.h"

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* Read a whole file (bounded by max bytes); returns malloc'd buffer or NULL with a message on stderr. */
uint8_t *cli_read_file(const char *path, size_t max, size_t *len);
int cli_write_file(const char *path, const void *data, size_t len);
/* Fails early (before hours of work) when PATH cannot be written: creates and removes a probe file beside it (the
   result writers stage next to PATH and rename). 0 ok, else -1 with errno set. */
int cli_check_writable(const char *path);
/* Parse numbers strictly (whole string); return 0 on success. */
int cli_parse_double(const char *s, double *out);
int cli_parse_u64(const char *s, uint64_t *out);

/* Progress bar on stderr when it is a TTY (silent otherwise): label, done of total. */
typedef struct cli_progress {
    const char *label;
    uint64_t total;
    double t0, last;
    int tty;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *label, uint64_t total);
void cli_progress_update(cli_progress *p, uint64_t done);
void cli_progress_end(cli_progress *p);

#endif
