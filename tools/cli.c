/* cli.c - shared helpers of the aptomo subcommands: whole-file I/O with a bound, outputs checked before the work,
 * strict number parsing, and a progress bar with ETA that only draws on a terminal so scripts and logs stay clean.
 * Option parsing is in cli_opt.c. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

uint8_t *cli_read_file(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 65536, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            if (cap >= max) {
                cli_error("%s: larger than %zu bytes", path, max);
                free(buf);
                buf = NULL;
                break;
            }
            cap = cap * 2 > max ? max : cap * 2;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    if (buf)
        *len = n;
    return buf;
}

int cli_check_writable(const char *path)
{
    struct stat st;
    if (!stat(path, &st) && S_ISDIR(st.st_mode)) { /* the probe beside it would succeed, the write would not */
        errno = EISDIR;
        return -1;
    }
    if (!stat(path, &st) && !S_ISREG(st.st_mode)) /* /dev/stdout, a FIFO: written in place, not staged */
        return access(path, W_OK);
    char part[4096];
    if (snprintf(part, sizeof part, "%s.probe-%ld", path, (long)getpid()) >= (int)sizeof part) {
        errno = ENAMETOOLONG;
        return -1;
    }
    FILE *f = fopen(part, "wbx"); /* x: never clobber someone else's file */
    if (!f)
        return -1;
    fclose(f);
    remove(part);
    return 0;
}

int cli_status(int rc, int phase)
{
    if (phase == CLI_SETUP)
        return rc == APT_ENOMEM ? CLI_FAIL : CLI_USAGE;
    return rc == APT_EINVAL || rc == APT_ERANGE ? CLI_USAGE : CLI_FAIL;
}

int cli_report(int rc, const apt_error *err, int phase)
{
    cli_error("%s", err->msg);
    return cli_status(rc, phase);
}

int cli_check_output(const char *opt, const char *path)
{
    if (!path || !cli_check_writable(path))
        return 0;
    cli_error("%s %s: cannot write there: %s", opt, path, strerror(errno));
    return CLI_FAIL;
}

int cli_write_file(const char *path, const void *data, size_t len)
{
    errno = 0;
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(data, 1, len, f) == len;
    if (f && fclose(f) != 0)
        ok = 0;
    if (!ok) {
        cli_error("%s: %s", path, errno ? strerror(errno) : "short write");
        return -1;
    }
    return 0;
}

int cli_parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-')
        return -1;
    unsigned long long v = strtoull(s, &end, 0);
    if (!*s || *end || errno)
        return -1;
    *out = v;
    return 0;
}

void cli_progress_start(cli_progress *p, const char *label, uint64_t total)
{
    p->label = label;
    p->total = total;
    p->done = 0;
    p->t0 = apt_now();
    p->last = 0;
    p->drawn = 0;
    p->tty = isatty(STDERR_FILENO);
}

static void fmt_secs(char *dst, size_t cap, double s)
{
    if (s >= 3600)
        snprintf(dst, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else if (s >= 60)
        snprintf(dst, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(dst, cap, "%.0fs", s);
}

static void draw(cli_progress *p, double t)
{
    uint64_t done = p->done < p->total ? p->done : p->total;
    int width = 30, fill = p->total ? (int)((double)width * (double)done / (double)p->total) : 0;
    double el = t - p->t0;
    char els[32], eta[32];
    fmt_secs(els, sizeof els, el);
    if (done)
        fmt_secs(eta, sizeof eta, el * (double)(p->total - done) / (double)done);
    else
        snprintf(eta, sizeof eta, "?");
    fprintf(stderr, "\r%-12s [%.*s%*s] %llu/%llu  %s  eta %s\033[K", p->label, fill,
            "==============================", width - fill, "", (unsigned long long)done,
            (unsigned long long)p->total, els, eta);
    fflush(stderr);
    p->drawn = 1;
    p->last = t;
}

void cli_progress_update(cli_progress *p, uint64_t done)
{
    p->done = done;
    if (!p->tty)
        return;
    double t = apt_now();
    if (p->drawn && t - p->last < 0.1 && done < p->total)
        return;
    draw(p, t);
}

void cli_progress_clear(cli_progress *p)
{
    if (p->tty && p->drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        p->drawn = 0;
    }
}

void cli_progress_end(cli_progress *p)
{
    if (p->tty) {
        draw(p, apt_now());
        fputc('\n', stderr);
        p->tty = 0; /* ended: later updates and ends draw nothing */
    }
}
