/* cmd_preview.c - `aptomo preview VOL.h5 [REF.h5 ...] -o out.png`: orthogonal central slices of each volume, one
 * row per file, colour bar and scale bar; `--dataset` picks e.g. /exchange/approximant. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/preview.h"
#include "cli.h"

int cmd_preview(int argc, char **argv)
{
    const char *out = NULL, *title = NULL, *files[8], *dsets[8];
    const char *dataset = "/exchange/data";
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-o") && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(argv[i], "--title") && i + 1 < argc)
            title = argv[++i];
        else if (!strcmp(argv[i], "--dataset") && i + 1 < argc)
            dataset = argv[++i]; /* applies to the files after it */
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: aptomo preview VOL.h5 [--dataset /exchange/approximant] [MORE.h5 ...] -o out.png\n"
                   "                      [--title TEXT]\n"
                   "One row per volume: central XY, XZ, YZ slices, colour bar (1st..99th percentile), scale bar.\n"
                   "DATASET may be given as FILE.h5:/path too.\n");
            return CLI_OK;
        } else if (argv[i][0] != '-' && n < 8) {
            files[n] = argv[i];
            dsets[n++] = dataset;
        } else {
            fprintf(stderr, "preview: bad argument '%s'\n", argv[i]);
            return CLI_USAGE;
        }
    }
    if (!n || !out) {
        fprintf(stderr, "preview: need at least one volume file and -o out.png\n");
        return CLI_USAGE;
    }
    apt_volume vols[8];
    const apt_volume *ptrs[8];
    const char *labels[8];
    char names[8][1100];
    apt_error err = {0};
    int rc = CLI_OK, loaded = 0;
    for (int i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s", files[i]);
        const char *ds = dsets[i];
        char *colon = strstr(path, ".h5:");
        if (colon) {
            colon[3] = '\0';
            ds = colon + 4;
        }
        if (apt_volume_read(path, ds, &vols[i], &err)) {
            fprintf(stderr, "preview: %s\n", err.msg);
            rc = CLI_USAGE;
            break;
        }
        loaded++;
        ptrs[i] = &vols[i];
        snprintf(names[i], sizeof names[i], "%s:%s", path, ds);
        labels[i] = names[i];
    }
    if (rc == CLI_OK && apt_preview_write(out, ptrs, labels, n, title, &err)) {
        fprintf(stderr, "preview: %s\n", err.msg);
        rc = CLI_FAIL;
    }
    for (int i = 0; i < loaded; i++)
        apt_volume_free(&vols[i]);
    if (rc == CLI_OK)
        printf("{\"preview\":\"%s\",\"volumes\":%d}\n", out, n);
    return rc;
}
