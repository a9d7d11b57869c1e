/* aptomo.c - the CLI entry point: looks the subcommand up in commands.def and hands it argc/argv. Thin by design:
 * every subcommand parses its own arguments (cli_opt.c) and calls libaptomo. `aptomo help CMD [SUB]` is `aptomo CMD
 * [SUB] --help`, so the two can never differ. Exit 0 ok, 2 bad usage/input, 1 runtime failure. */
#include <stdio.h>
#include <string.h>

#include "aptomo/gpu.h"
#include "cli.h"

#define APT_CMD(name, fn, help) int fn(int argc, char **argv);
#include "commands.def"
#undef APT_CMD

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
#define APT_CMD(name, fn, help) {name, fn, help},
#include "commands.def"
#undef APT_CMD
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: aptomo COMMAND [ARGS...]   (aptomo help COMMAND, or aptomo COMMAND --help, for its options)\n"
               "       aptomo --version\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "  %-14s %s\n", "help", "help of a command: aptomo help COMMAND [SUBCOMMAND]");
    fprintf(f, "\nOptions take --opt VALUE or --opt=VALUE, before or after the other arguments; -- ends them.\n"
               "Exit status: 0 success, 2 bad usage or input (the message names it), 1 runtime failure.\n");
}

static int find(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(name, commands[i].name))
            return (int)i;
    return -1;
}

static const char VERSION_HELP[] =
    "usage: aptomo version\n"
    "Prints one JSON line: {version, cuda_compiled, gpus, gpu}. Same as aptomo --version.\n";

int cmd_version(int argc, char **argv)
{
    cli_parser p;
    cli_init(&p, "version", VERSION_HELP, NULL, NULL, argc, argv);
    int c;
    while ((c = cli_next(&p)) > 0)
        ;
    int cli_rc = cli_done(&p, c, 0, 0, "");
    if (cli_rc != CLI_GO)
        return cli_rc;
    char name[256];
    apt_error err = {0};
    int n = apt_gpu_count(&err);
    apt_gpu_name(name, sizeof name, NULL);
    printf("{\"version\":\"%s\",\"cuda_compiled\":%s,\"gpus\":%d,\"gpu\":\"%s\"}\n", APTOMO_VERSION,
           apt_gpu_compiled() ? "true" : "false", n, name);
    return 0;
}

/* aptomo help [CMD [SUB]]: CMD's own --help, so both print the same text. */
static int cmd_help(int argc, char **argv)
{
    if (argc < 2) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(argv[1], "help")) {
        printf("usage: aptomo help [COMMAND [SUBCOMMAND]]\nPrints the help of COMMAND (the same as aptomo "
               "COMMAND [SUBCOMMAND] --help), or the list of commands.\n");
        return CLI_OK;
    }
    int k = find(argv[1]);
    if (k < 0 || argc > 3) {
        if (k < 0)
            fprintf(stderr, "aptomo help: unknown command '%s'\n", argv[1]);
        else
            fprintf(stderr, "aptomo help: unexpected argument '%s'\n", argv[3]);
        fprintf(stderr, "Try 'aptomo help' for the list of commands.\n");
        return CLI_USAGE;
    }
    char *sub[4] = {argv[1], argc == 3 ? argv[2] : "--help", argc == 3 ? "--help" : NULL, NULL};
    return commands[k].fn(argc == 3 ? 3 : 2, sub);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(argv[1], "--version"))
        return cmd_version(1, (char *[]){"version", NULL});
    if (!strcmp(argv[1], "help"))
        return cmd_help(argc - 1, argv + 1);
    int k = find(argv[1]);
    if (k >= 0)
        return commands[k].fn(argc - 1, argv + 1);
    fprintf(stderr, "aptomo: unknown command '%s'\nTry 'aptomo help' for the list of commands.\n", argv[1]);
    return CLI_USAGE;
}
