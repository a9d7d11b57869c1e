/* cli.h - small helpers shared by the aptomo subcommands: option parsing glue, file reading, progress bars. */
#ifndef APTOMO_TOOLS_CLI_H
#define APTOMO_TOOLS_CLI_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>

#include "aptomo/backend.h"
#include "aptomo/clock.h"
#include "aptomo/error.h"

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* ---- option parsing (cli_opt.c): one getopt_long loop for every subcommand ----
 * GNU conventions: --opt=value and --opt value, options before or after positional arguments, `--` ends options,
 * -h/--help prints the command's help on stdout (exit 0). Faults print one line naming them, prefixed
 * "aptomo CMD:", then "Try 'aptomo help CMD' for usage." on stderr (exit 2). Typical use:
 *
 *     cli_parser p;
 *     cli_init(&p, "replay", HELP, "o:", longopts, argc, argv);   // argv[0] is the command word
 *     int c;
 *     while ((c = cli_next(&p)) > 0)     // a value refused below ends the loop (cli_next returns CLI_STOP)
 *         switch (c) { case 'o': out = p.arg; break; case OPT_RATE: cli_real(&p, 0, INFINITY, 0, &r); break; }
 *     int cli_rc = cli_done(&p, c, 1, 1, "SCAN.h5");
 *     if (cli_rc != CLI_GO) return cli_rc;      // help printed (0) or a fault reported (2)
 *
 * longopts: getopt_long's {name, has_arg, NULL, val} terminated by {0}; val is what cli_next returns (the short
 * option's letter when there is one, else a value >= 256 so it never collides). */
#define CLI_MAX_ARGS 128
#define CLI_MAX_OPTS 48
enum { CLI_END = -1, CLI_STOP = -2 };

typedef struct cli_parser {
    const char *cmd;   /* "replay", "bench ingest": message prefix and the name for `aptomo help` */
    const char *help;  /* the whole --help text */
    const char *opt;   /* the option cli_next just returned, as its user knows it ("--rate", "-o") */
    const char *arg;   /* its value, NULL for a flag */
    int status;        /* after CLI_STOP: CLI_OK (help printed) or CLI_USAGE (fault reported) */
    int nargs;         /* positional arguments in order (after cli_next returned CLI_END) */
    char *args[CLI_MAX_ARGS];
    int argc;
    char **argv;
    char optname[64];
    char shortopts[2 * CLI_MAX_OPTS + 8];
    struct option longopts[CLI_MAX_OPTS + 2];
} cli_parser;

void cli_init(cli_parser *p, const char *cmd, const char *help, const char *shortopts,
              const struct option *longopts, int argc, char **argv);
/* The next option's val; CLI_END when all are read (positionals in p->args); CLI_STOP after help or a fault. */
int cli_next(cli_parser *p);

/* Value checks of p->arg for the current option. 0, or -1 after the one-line message (p->status = CLI_USAGE).
   cli_real: finite, within [lo, hi] (hi INFINITY: no bound); flags make an end exclusive. */
enum { CLI_OPEN_LO = 1, CLI_OPEN_HI = 2 };
int cli_uint(cli_parser *p, uint64_t lo, uint64_t hi, uint64_t *out);
int cli_int(cli_parser *p, int lo, int hi, int *out);
int cli_real(cli_parser *p, double lo, double hi, int flags, double *out);
/* A range "LO:HI" or one value "V" (= V:V): lo <= LO <= HI <= hi, whole numbers when integral; out = {LO, HI}. */
int cli_range(cli_parser *p, double lo, double hi, int integral, double out[2]);
/* choices: NULL-terminated; *idx = the index of p->arg among them. */
int cli_choice(cli_parser *p, const char *const *choices, int *idx);
/* --backend auto|cpu|gpu (include/aptomo/backend.h). */
int cli_backend(cli_parser *p, apt_backend *out);
/* A comma-separated list of indices into *list (malloc'd, replaces an earlier one). */
int cli_index_list(cli_parser *p, uint32_t **list, size_t *n);
/* A ZeroMQ endpoint (apt_endpoint_check, mode APT_EP_BIND or APT_EP_CONNECT). */
int cli_endpoint(cli_parser *p, int mode);

/* Positional arguments: between min and max of them (max < 0: no limit); names are the slots' names separated by
   spaces ("IN OUT"), the last one repeating, for "missing OUT". 0 or -1 after the message. */
int cli_args(cli_parser *p, int min, int max, const char *names);
/* The end of the option loop (c: cli_next's last return, or an option's refused value that ended it): CLI_GO to go
   on, with between min and max positionals in p->args; else the exit status to return now (CLI_OK after --help,
   CLI_USAGE after a reported fault). */
enum { CLI_GO = -3 };
int cli_done(cli_parser *p, int c, int min, int max, const char *names);
/* A usage fault found after parsing ("-o OUT.h5 is required"): message + hint; returns CLI_USAGE. */
int cli_fail(cli_parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A subcommand with sub-subcommands (bench ingest, kernel nn-forward, stream dump): argv[1] picks one and gets
   argc - 1, argv + 1. Handles --help (stdout, 0), a missing or unknown word (2). */
typedef struct cli_sub {
    const char *name;
    int (*fn)(int argc, char **argv);
} cli_sub;
int cli_dispatch(const char *cmd, const char *help, const cli_sub *subs, int argc, char **argv);

/* "aptomo CMD: message" on stderr, CMD the command being parsed last (cli_init). For runtime and input faults. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- library errors -> exit status (cli.c): the one rule of every subcommand ---- */

/* The exit status of a failed library call (rc < 0). CLI_RUN, once work is under way: input faults (APT_EINVAL,
   APT_ERANGE: a value, file or shape the user gave) are usage errors, CLI_USAGE (2), the rest runtime failures,
   CLI_FAIL (1). CLI_SETUP, while only reading what the user gave: every fault is the input's (an unreadable file
   included) but running out of memory (APT_ENOMEM). */
enum { CLI_RUN = 0, CLI_SETUP = 1 };
int cli_status(int rc, int phase);
/* cli_error("%s", err->msg), then cli_status(rc, phase): a failed call's message and the status to return. */
int cli_report(int rc, const apt_error *err, int phase);

/* ---- files, numbers, progress (cli.c) ---- */

/* Read a whole file (bounded by max bytes); returns malloc'd buffer or NULL with a message on stderr. */
uint8_t *cli_read_file(const char *path, size_t max, size_t *len);
int cli_write_file(const char *path, const void *data, size_t len);
/* Fails early (before hours of work) when PATH cannot be written: creates and removes a probe file beside it (the
   result writers stage next to PATH and rename). 0 ok, else -1 with errno set. */
int cli_check_writable(const char *path);
/* The same for an output named by option opt ("-o", "--png") of the current command: 0, or the message naming
   option, path and reason and the exit status to return (CLI_FAIL, as any write failure). path NULL: 0. */
int cli_check_output(const char *opt, const char *path);
/* Parse numbers strictly (whole string); return 0 on success. */
int cli_parse_double(const char *s, double *out);
int cli_parse_u64(const char *s, uint64_t *out);

/* Progress bar with ETA on stderr when it is a TTY (silent otherwise, so logs and pipes stay clean). */
typedef struct cli_progress {
    const char *label;
    uint64_t total, done;
    double t0, last;
    int tty, drawn;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *label, uint64_t total);
void cli_progress_update(cli_progress *p, uint64_t done);
/* Erase the bar before printing a line on stdout (same terminal); the next update draws it again. */
void cli_progress_clear(cli_progress *p);
void cli_progress_end(cli_progress *p);

#endif
