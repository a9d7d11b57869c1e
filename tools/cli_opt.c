/* cli_opt.c - the one option parser of the aptomo subcommands: glibc getopt_long in RETURN_IN_ORDER mode, so options
 * and positional arguments mix in any order whatever POSIXLY_CORRECT says and `--` ends options, with our own
 * messages (opterr = 0): one line naming the fault plus a hint, never the whole usage. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/endpoint.h"
#include "cli.h"

static const char *current = "?"; /* the command parsed last, for cli_error */

static void vsay(const char *cmd, const char *fmt, va_list ap)
{
    fprintf(stderr, "aptomo %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(current, fmt, ap);
    va_end(ap);
}

static int vfault(cli_parser *p, const char *fmt, va_list ap)
{
    vsay(p->cmd, fmt, ap);
    fprintf(stderr, "Try 'aptomo help %s' for usage.\n", p->cmd);
    p->status = CLI_USAGE;
    return -1;
}

static int fault(cli_parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fault(cli_parser *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfault(p, fmt, ap);
    va_end(ap);
    return -1;
}

int cli_fail(cli_parser *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfault(p, fmt, ap);
    va_end(ap);
    return CLI_USAGE;
}

void cli_init(cli_parser *p, const char *cmd, const char *help, const char *shortopts,
              const struct option *longopts, int argc, char **argv)
{
    memset(p, 0, sizeof *p);
    p->cmd = current = cmd;
    p->help = help;
    p->argc = argc;
    p->argv = argv;
    /* '-': non-options come back in order as 1 (no permutation to depend on); ':': a missing value is ':' */
    snprintf(p->shortopts, sizeof p->shortopts, "-:h%s", shortopts ? shortopts : "");
    int n = 0;
    for (; longopts && longopts[n].name && n < CLI_MAX_OPTS; n++)
        p->longopts[n] = longopts[n];
    p->longopts[n++] = (struct option){"help", no_argument, NULL, 'h'};
    p->longopts[n] = (struct option){0};
    optind = 0; /* full re-initialisation: a command may parse twice in one process (bench nn runs nn-init) */
    opterr = 0;
}

/* The long option with this val (its canonical name for messages). */
static const char *long_name(const cli_parser *p, int val)
{
    for (const struct option *o = p->longopts; o->name; o++)
        if (o->val == val)
            return o->name;
    return NULL;
}

/* "--name" of an element "--name=value" (the part the user typed). */
static void typed_name(char *dst, size_t cap, const char *elem)
{
    size_t k = strcspn(elem, "=");
    snprintf(dst, cap, "%.*s", (int)(k < cap ? k : cap - 1), elem);
}

static int bad_option(cli_parser *p, int c, const char *elem)
{
    char name[64];
    int is_long = !strncmp(elem, "--", 2);
    if (!is_long) {
        snprintf(name, sizeof name, "-%c", optopt ? optopt : '?');
        if (c == ':')
            return fault(p, "option '%s' needs a value", name);
        return fault(p, "unknown option '%s'", name);
    }
    const char *canon = optopt ? long_name(p, optopt) : NULL;
    if (canon)
        snprintf(name, sizeof name, "--%s", canon);
    else
        typed_name(name, sizeof name, elem);
    if (c == ':')
        return fault(p, "option '%s' needs a value", name);
    if (canon) /* '?' for a known option: it was given a value it does not take */
        return fault(p, "option '%s' takes no value", name);
    char list[256] = "";
    int hits = 0;
    size_t len = strlen(name + 2);
    for (const struct option *o = p->longopts; o->name && len; o++)
        if (!strncmp(o->name, name + 2, len)) {
            size_t at = strlen(list);
            snprintf(list + at, sizeof list - at, "%s--%s", hits++ ? ", " : "", o->name);
        }
    if (hits > 1)
        return fault(p, "option '%s' is ambiguous: %s", name, list);
    return fault(p, "unknown option '%s'", name);
}

int cli_next(cli_parser *p)
{
    if (p->status == CLI_USAGE) /* a value helper refused the last option's value: nothing more to read */
        return CLI_STOP;
    for (;;) {
        int before = optind < 1 ? 1 : optind, idx = -1;
        int c = getopt_long(p->argc, p->argv, p->shortopts, p->longopts, &idx);
        const char *elem = before < p->argc ? p->argv[before] : "";
        if (c == -1) {
            for (int i = optind; i < p->argc; i++) /* after `--` */
                if (p->nargs < CLI_MAX_ARGS)
                    p->args[p->nargs++] = p->argv[i];
                else
                    return fault(p, "too many arguments (at most %d)", CLI_MAX_ARGS), CLI_STOP;
            return CLI_END;
        }
        if (c == 1) {
            if (p->nargs == CLI_MAX_ARGS)
                return fault(p, "too many arguments (at most %d)", CLI_MAX_ARGS), CLI_STOP;
            p->args[p->nargs++] = optarg;
            continue;
        }
        if (c == '?' || c == ':')
            return bad_option(p, c, elem), CLI_STOP;
        if (c == 'h') {
            fputs(p->help, stdout);
            p->status = CLI_OK;
            return CLI_STOP;
        }
        if (!strncmp(elem, "--", 2) && idx >= 0)
            snprintf(p->optname, sizeof p->optname, "--%s", p->longopts[idx].name);
        else
            snprintf(p->optname, sizeof p->optname, "-%c", c);
        p->opt = p->optname;
        p->arg = optarg;
        return c;
    }
}

int cli_uint(cli_parser *p, uint64_t lo, uint64_t hi, uint64_t *out)
{
    uint64_t v;
    if (p->arg && isdigit((unsigned char)p->arg[0]) && !cli_parse_u64(p->arg, &v) && v >= lo && v <= hi) {
        *out = v;
        return 0;
    }
    if (hi == UINT64_MAX && lo == 0)
        return fault(p, "%s: '%s' must be a non-negative integer", p->opt, p->arg ? p->arg : "");
    if (hi == UINT64_MAX)
        return fault(p, "%s: '%s' must be an integer >= %llu", p->opt, p->arg ? p->arg : "", (unsigned long long)lo);
    return fault(p, "%s: '%s' must be an integer in [%llu, %llu]", p->opt, p->arg ? p->arg : "",
                 (unsigned long long)lo, (unsigned long long)hi);
}

int cli_int(cli_parser *p, int lo, int hi, int *out)
{
    uint64_t v = 0; /* cli_uint sets it on success only; -O3 cannot see that fault() never returns 0 */
    if (cli_uint(p, lo < 0 ? 0 : (uint64_t)lo, (uint64_t)(hi < 0 ? 0 : hi), &v))
        return -1;
    *out = (int)v;
    return 0;
}

int cli_real(cli_parser *p, double lo, double hi, int flags, double *out)
{
    double v;
    const char *a = p->arg ? p->arg : "";
    int ok = !cli_parse_double(a, &v) && isfinite(v) && ((flags & CLI_OPEN_LO) ? v > lo : v >= lo) &&
             ((flags & CLI_OPEN_HI) ? v < hi : v <= hi);
    if (ok) {
        *out = v;
        return 0;
    }
    const char *lo_op = flags & CLI_OPEN_LO ? ">" : ">=", *hi_op = flags & CLI_OPEN_HI ? "<" : "<=";
    if (isinf(lo) && isinf(hi))
        return fault(p, "%s: '%s' must be a number", p->opt, a);
    if (isinf(hi))
        return fault(p, "%s: '%s' must be a number %s %g", p->opt, a, lo_op, lo);
    if (isinf(lo))
        return fault(p, "%s: '%s' must be a number %s %g", p->opt, a, hi_op, hi);
    return fault(p, "%s: '%s' must be a number in %c%g, %g%c", p->opt, a, flags & CLI_OPEN_LO ? '(' : '[', lo, hi,
                 flags & CLI_OPEN_HI ? ')' : ']');
}

int cli_range(cli_parser *p, double lo, double hi, int integral, double out[2])
{
    const char *a = p->arg ? p->arg : "";
    char buf[128];
    double v[2];
    int ok = strlen(a) < sizeof buf;
    if (ok) {
        memcpy(buf, a, strlen(a) + 1);
        char *colon = strchr(buf, ':');
        if (colon)
            *colon = '\0';
        ok = !cli_parse_double(buf, &v[0]) && !cli_parse_double(colon ? colon + 1 : buf, &v[1]);
        for (int i = 0; ok && i < 2; i++)
            ok = isfinite(v[i]) && v[i] >= lo && v[i] <= hi && (!integral || v[i] == floor(v[i]));
        ok = ok && v[0] <= v[1];
    }
    if (ok) {
        out[0] = v[0];
        out[1] = v[1];
        return 0;
    }
    return fault(p, "%s: '%s' must be LO:HI (or one value), %s with %g <= LO <= HI <= %g", p->opt, a,
                 integral ? "integers" : "numbers", lo, hi);
}

int cli_choice(cli_parser *p, const char *const *choices, int *idx)
{
    char list[256] = "";
    for (int i = 0; choices[i]; i++) {
        if (p->arg && !strcmp(p->arg, choices[i])) {
            *idx = i;
            return 0;
        }
        size_t at = strlen(list);
        snprintf(list + at, sizeof list - at, "%s%s", i ? ", " : "", choices[i]);
    }
    return fault(p, "%s: '%s' must be one of %s", p->opt, p->arg ? p->arg : "", list);
}

int cli_backend(cli_parser *p, apt_backend *out)
{
    static const char *const names[] = {"auto", "cpu", "gpu", NULL}; /* in apt_backend order */
    int k;
    if (cli_choice(p, names, &k))
        return -1;
    *out = (apt_backend)k;
    return 0;
}

int cli_index_list(cli_parser *p, uint32_t **list, size_t *n)
{
    const char *s = p->arg ? p->arg : "";
    size_t cap = 1;
    for (const char *c = s; *c; c++)
        cap += *c == ',';
    free(*list);
    *n = 0;
    *list = calloc(cap, sizeof **list);
    char *copy = strdup(s), *save = NULL;
    if (!*list || !copy) {
        free(copy);
        return fault(p, "out of memory");
    }
    int bad = 0;
    for (char *t = strtok_r(copy, ",", &save); t && !bad; t = strtok_r(NULL, ",", &save)) {
        uint64_t v;
        bad = !isdigit((unsigned char)t[0]) || cli_parse_u64(t, &v) || v > 0xFFFFFFFFu;
        if (!bad)
            (*list)[(*n)++] = (uint32_t)v;
    }
    free(copy);
    if (bad || !*n)
        return fault(p, "%s: '%s' must be comma-separated indices (e.g. 0,2,5)", p->opt, s);
    return 0;
}

int cli_endpoint(cli_parser *p, int mode)
{
    apt_error err = {0};
    if (apt_endpoint_check(p->arg, mode, &err))
        return fault(p, "%s: %s", p->opt, err.msg);
    return 0;
}

int cli_done(cli_parser *p, int c, int min, int max, const char *names)
{
    if (c == CLI_STOP || p->status == CLI_USAGE)
        return p->status;
    return cli_args(p, min, max, names) ? CLI_USAGE : CLI_GO;
}

int cli_args(cli_parser *p, int min, int max, const char *names)
{
    if (p->nargs >= min && (max < 0 || p->nargs <= max))
        return 0;
    if (p->nargs > max && max >= 0)
        return fault(p, "unexpected argument '%s'", p->args[max]);
    /* the name of slot nargs: the nargs-th word of names, or the last one */
    const char *w = names, *last = names;
    for (int k = 0; k <= p->nargs && *w; k++) {
        last = w;
        w += strcspn(w, " ");
        w += strspn(w, " ");
    }
    return fault(p, "missing %.*s", (int)strcspn(last, " "), last);
}

int cli_dispatch(const char *cmd, const char *help, const cli_sub *subs, int argc, char **argv)
{
    cli_parser p; /* for the messages only */
    cli_init(&p, cmd, help, NULL, NULL, argc, argv);
    char list[256] = "";
    for (int i = 0; subs[i].name; i++) {
        if (argc >= 2 && !strcmp(argv[1], subs[i].name))
            return subs[i].fn(argc - 1, argv + 1);
        size_t at = strlen(list);
        snprintf(list + at, sizeof list - at, "%s%s", i ? ", " : "", subs[i].name);
    }
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        fputs(help, stdout);
        return CLI_OK;
    }
    if (argc < 2)
        return cli_fail(&p, "missing what to run (%s)", list);
    if (argv[1][0] == '-')
        return cli_fail(&p, "unknown option '%.*s' (options follow the subcommand: %s)", (int)strcspn(argv[1], "="),
                        argv[1], list);
    return cli_fail(&p, "unknown subcommand '%s' (%s)", argv[1], list);
}
