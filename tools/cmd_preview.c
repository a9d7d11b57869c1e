/* cmd_preview.c - `aptomo preview VOL.h5 [REF.h5 ...] -o out.png`: orthogonal central slices of each volume, one
 * row per file, colour bar and scale bar; `--dataset` picks e.g. /exchange/approximant for every file that does not
 * name its own as FILE.h5:/path (wherever it stands on the line, like every option). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/preview.h"
#include "cli.h"

static const char HELP[] =
    "usage: aptomo preview VOL.h5 [MORE.h5 ...] -o out.png [--dataset /exchange/data] [--title TEXT]\n"
    "One row per volume (at most 8): central XY, XZ, YZ slices, colour bar (1st..99th percentile), scale bar.\n"
    "  -o out.png        the PNG to write (required)\n"
    "  --dataset PATH    the dataset of every file that does not name its own (default /exchange/data,\n"
    "                    e.g. /exchange/approximant); FILE.h5:/path names one file's dataset\n"
    "  --title TEXT      title above the rows\n";

int cmd_preview(int argc, char **argv)
{
    static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                         {"title", required_argument, NULL, 't'},
                                         {"dataset", required_argument, NULL, 'd'}, {0}};
    const char *out = NULL, *title = NULL, *files[8];
    const char *dataset = "/exchange/data";
    cli_parser p;
    int c;
    cli_init(&p, "preview", HELP, "o:", opts, argc, argv);
    while ((c = cli_next(&p)) > 0)
        if (c == 'o')
            out = p.arg;
        else if (c == 't')
            title = p.arg;
        else
            dataset = p.arg;
    int cli_rc = cli_done(&p, c, 1, 8, "VOL.h5");
    if (cli_rc != CLI_GO)
        return cli_rc;
    if (!out)
        return cli_fail(&p, "-o out.png is required");
    int n = p.nargs;
    for (int i = 0; i < n; i++)
        files[i] = p.args[i];
    if ((c = cli_check_output("-o", out)))
        return c;
    apt_volume vols[8];
    const apt_volume *ptrs[8];
    const char *labels[8];
    char names[8][1100];
    apt_error err = {0};
    int rc = CLI_OK, loaded = 0;
    for (int i = 0; i < n; i++) {
        if (apt_volume_read_spec(files[i], dataset, &vols[i], &err)) {
            fprintf(stderr, "aptomo preview: %s\n", err.msg);
            rc = CLI_USAGE;
            break;
        }
        loaded++;
        ptrs[i] = &vols[i];
        const char *colon = strstr(files[i], ".h5:/");
        snprintf(names[i], sizeof names[i], "%.*s:%s", colon ? (int)(colon + 3 - files[i]) : 1023, files[i],
                 colon ? colon + 4 : dataset);
        labels[i] = names[i];
    }
    if (rc == CLI_OK && apt_preview_write(out, ptrs, labels, n, title, &err)) {
        fprintf(stderr, "aptomo preview: %s\n", err.msg);
        rc = CLI_FAIL;
    }
    for (int i = 0; i < loaded; i++)
        apt_volume_free(&vols[i]);
    if (rc == CLI_OK)
        printf("{\"preview\":\"%s\",\"volumes\":%d}\n", out, n);
    return rc;
}
