/* aptomo.c - the CLI entry point: looks the subcommand up in commands.def and hands it argc/argv. Thin by design:
 * every subcommand parses its own arguments and calls libaptomo. Exit 0 ok, 2 bad usage/input, 1 runtime failure. */
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

static void usage(FILE *f)
{
    fprintf(f, "usage: aptomo COMMAND [ARGS...]   (aptomo COMMAND --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].help);
}

int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    char name[256];
    apt_error err = {0};
    int n = apt_gpu_count(&err);
    apt_gpu_name(name, sizeof name, NULL);
    printf("{\"version\":\"%s\",\"cuda_compiled\":%s,\"gpus\":%d,\"gpu\":\"%s\"}\n", APTOMO_VERSION,
           apt_gpu_compiled() ? "true" : "false", n, name);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version"))
        return cmd_version(0, NULL);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "aptomo: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
