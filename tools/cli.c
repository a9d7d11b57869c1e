/* cli.c - shared helpers of the aptomo subcommands: whole-file I/O with a bound, strict number parsing, and a
 * progress bar that only draws on a terminal so scripts and logs stay clean. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint8_t *cli_read_file(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 65536, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            if (cap >= max) {
                fprintf(stderr, "%s: larger than %zu bytes\n", path, max);
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

int cli_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
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
    p->t0 = apt_now();
    p->last = 0;
    p->tty = isatty(STDERR_FILENO);
}

void cli_progress_update(cli_progress *p, uint64_t done)
{
    if (!p->tty)
        return;
    double t = apt_now();
    if (t - p->last < 0.1 && done < p->total)
        return;
    p->last = t;
    int width = 30, fill = p->total ? (int)((double)width * (double)done / (double)p->total) : 0;
    if (fill > width)
        fill = width;
    double el = t - p->t0, eta = done ? el * (double)(p->total - done) / (double)done : 0;
    fprintf(stderr, "\r%-12s [%.*s%*s] %llu/%llu  %.1fs  eta %.0fs ", p->label, fill,
            "==============================", width - fill, "", (unsigned long long)done,
            (unsigned long long)p->total, el, eta);
    fflush(stderr);
}

void cli_progress_end(cli_progress *p)
{
    if (p->tty) {
        cli_progress_update(p, p->total);
        fputc('\n', stderr);
    }
}
