/* cmd_metrics.c - `aptomo metrics TEST.h5 REF.h5`: the five image-quality metrics (docs/METRICS.md) as one JSON object;
 * `aptomo metrics --plot out.png A.h5 B.h5 ... --ref REF.h5`: metric vs number of angles (length of
 * /exchange/theta in each file) as a PNG (checked writable before any metric), plus the numbers as JSON. Bad files
 * and shape mismatch exit 2. */
#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/metrics.h"
#include "aptomo/volume.h"
#include "cli.h"
#include "aptomo/h5io.h"

#define MAX_PLOT_FILES 64

static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null(); /* JSON has no NaN */
}

static json_t *metrics_json(const apt_metrics *m, int with_curve)
{
    json_t *o = json_object();
    json_object_set_new(o, "pcc", num(m->pcc));
    json_object_set_new(o, "ms_ssim", num(m->ms_ssim));
    json_object_set_new(o, "dsc", num(m->dsc));
    json_object_set_new(o, "ber", num(m->ber));
    json_object_set_new(o, "fsc_threshold_px", num(m->fsc_threshold_px));
    if (with_curve) {
        json_t *c = json_array();
        for (int i = 0; i < m->n_fsc; i++)
            json_array_append_new(c, num(m->fsc[i]));
        json_object_set_new(o, "fsc", c);
    }
    return o;
}

static int print_json(json_t *o)
{
    char *s = json_dumps(o, JSON_REAL_PRECISION(12));
    json_decref(o);
    if (!s)
        return CLI_FAIL;
    printf("%s\n", s);
    free(s);
    return CLI_OK;
}

/* Number of angles of a result file: the length of /exchange/theta. */
static int theta_count(const char *path, int *n, apt_error *err)
{
    apt_h5io_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return apt_h5io_fail(err, APT_EIO, "%s: cannot open as HDF5", path);
    hsize_t dims[1] = {0};
    int rc = APT_OK;
    hid_t d = apt_h5io_open(f, path, "/exchange/theta", err);
    if (d < 0)
        rc = APT_EINVAL;
    else {
        rc = apt_h5io_shape(d, path, "/exchange/theta", 1, NULL, dims, err);
        H5Dclose(d);
    }
    H5Fclose(f);
    if (!rc && (dims[0] < 1 || dims[0] > 1000000))
        rc = apt_err(err, APT_ERANGE, "%s: /exchange/theta: %llu angles out of range", path,
                     (unsigned long long)dims[0]);
    *n = (int)dims[0];
    return rc;
}

/* Metrics of test against ref; prints the message and maps the status to an exit code. */
static int compare(const apt_volume *t, const char *tname, const apt_volume *r, const char *rname, int threads,
                   apt_metrics *m)
{
    if (t->Z != r->Z || t->Y != r->Y || t->X != r->X) {
        fprintf(stderr, "aptomo metrics: shape mismatch: %s is [%d,%d,%d] but %s is [%d,%d,%d]\n", tname, t->Z,
                t->Y, t->X, rname, r->Z, r->Y, r->X);
        return CLI_USAGE;
    }
    apt_error err = {0};
    int rc = apt_metrics_compute(t->data, r->data, t->Z, t->Y, t->X, threads, m, &err);
    if (rc) {
        fprintf(stderr, "aptomo metrics: %s vs %s: %s\n", tname, rname, err.msg);
        return cli_status(rc, CLI_RUN);
    }
    return CLI_OK;
}

static const char HELP[] =
    "usage: aptomo metrics TEST.h5 REF.h5 [--dataset /exchange/data] [--ref-dataset /exchange/data]\n"
    "                      [--threads N]\n"
    "       aptomo metrics --plot out.png A.h5 B.h5 ... [--ref] REF.h5 [--title TEXT] [same options]\n"
    "Prints {pcc, ms_ssim, dsc, ber, fsc_threshold_px, fsc:[...]} (docs/METRICS.md); --plot draws each\n"
    "metric against the number of angles (length of /exchange/theta) of each file.\n"
    "  --dataset PATH      the volume in TEST.h5 / the result files (default /exchange/data)\n"
    "  --ref-dataset PATH  the volume in REF.h5 (default: --dataset)\n"
    "  --ref REF.h5        the reference (default: the last file)\n"
    "  --plot out.png      metric vs number of angles of A.h5 B.h5 ... (at most 64)\n"
    "  --title TEXT        plot title\n"
    "  --threads N         threads, 1..64 (default one per core)\n";

int cmd_metrics(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dataset", required_argument, NULL, 'd'}, {"ref-dataset", required_argument, NULL, 'D'},
        {"plot", required_argument, NULL, 'p'},    {"ref", required_argument, NULL, 'r'},
        {"title", required_argument, NULL, 't'},   {"threads", required_argument, NULL, 'j'},
        {0}};
    const char *dataset = "/exchange/data", *ref_dataset = NULL, *plot = NULL, *ref = NULL, *title = NULL;
    const char *files[MAX_PLOT_FILES];
    int nf = 0, threads = 0, c = 0;
    cli_parser p;
    cli_init(&p, "metrics", HELP, NULL, opts, argc, argv);
    while ((c = cli_next(&p)) > 0) {
        switch (c) {
        case 'd': dataset = p.arg; break;
        case 'D': ref_dataset = p.arg; break;
        case 'p': plot = p.arg; break;
        case 'r': ref = p.arg; break;
        case 't': title = p.arg; break;
        case 'j': cli_int(&p, 1, 64, &threads); break;
        }
    }
    if (c == CLI_STOP)
        return p.status;
    if (!ref_dataset)
        ref_dataset = dataset;
    if (!plot) {
        if (cli_args(&p, ref ? 1 : 2, ref ? 1 : 2, "TEST.h5 REF.h5"))
            return CLI_USAGE;
        files[nf++] = p.args[0];
        ref = ref ? ref : p.args[1];
    } else {
        if (cli_args(&p, ref ? 1 : 2, MAX_PLOT_FILES + !ref, ref ? "A.h5" : "A.h5 REF.h5"))
            return CLI_USAGE;
        if (!ref) /* as in the two-file form: the last file is the reference */
            ref = p.args[--p.nargs];
        for (int i = 0; i < p.nargs; i++)
            files[nf++] = p.args[i];
        if ((c = cli_check_output("--plot", plot)))
            return c;
    }
    apt_error err = {0};
    apt_volume rv;
    if (apt_volume_read(ref, ref_dataset, &rv, &err)) {
        fprintf(stderr, "aptomo metrics: %s\n", err.msg);
        return CLI_USAGE;
    }
    int rc = CLI_OK;
    if (!plot) {
        apt_volume tv;
        if (apt_volume_read(files[0], dataset, &tv, &err)) {
            fprintf(stderr, "aptomo metrics: %s\n", err.msg);
            apt_volume_free(&rv);
            return CLI_USAGE;
        }
        apt_metrics m;
        rc = compare(&tv, files[0], &rv, ref, threads, &m);
        if (!rc) {
            rc = print_json(metrics_json(&m, 1));
            apt_metrics_free(&m);
        }
        apt_volume_free(&tv);
        apt_volume_free(&rv);
        return rc;
    }
    apt_metrics *ms = calloc((size_t)nf, sizeof *ms);
    int *nang = calloc((size_t)nf, sizeof *nang), done = 0;
    json_t *list = json_array();
    if (!ms || !nang) {
        fprintf(stderr, "aptomo metrics: out of memory\n");
        rc = CLI_FAIL;
    }
    for (int i = 0; !rc && i < nf; i++, done++) {
        apt_volume tv;
        if (theta_count(files[i], &nang[i], &err) || apt_volume_read(files[i], dataset, &tv, &err)) {
            fprintf(stderr, "aptomo metrics: %s\n", err.msg);
            rc = CLI_USAGE;
            break;
        }
        rc = compare(&tv, files[i], &rv, ref, threads, &ms[i]);
        apt_volume_free(&tv);
        if (rc)
            break;
        json_t *o = metrics_json(&ms[i], 0);
        json_object_set_new(o, "file", json_string(files[i]));
        json_object_set_new(o, "n_angles", json_integer(nang[i]));
        json_array_append_new(list, o);
    }
    if (!rc && apt_metrics_plot(plot, nang, ms, nf, title, &err)) {
        fprintf(stderr, "aptomo metrics: %s\n", err.msg);
        rc = CLI_FAIL;
    }
    if (!rc) {
        json_t *o = json_object();
        json_object_set_new(o, "plot", json_string(plot));
        json_object_set_new(o, "results", list);
        list = NULL;
        rc = print_json(o);
    }
    json_decref(list);
    for (int i = 0; ms && i < done; i++)
        apt_metrics_free(&ms[i]);
    free(ms);
    free(nang);
    apt_volume_free(&rv);
    return rc;
}
