/* cmd_metrics.c - `aptomo metrics TEST.h5 REF.h5`: the five image-quality metrics of DESIGN.md as one JSON object;
 * `aptomo metrics --plot out.png A.h5 B.h5 ... --ref REF.h5`: metric vs number of angles (length of
 * /exchange/theta in each file) as a PNG, plus the numbers as JSON. Bad files and shape mismatch exit 2. */
#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/metrics.h"
#include "aptomo/volume.h"
#include "cli.h"
#include "io/h5io.h"

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
        fprintf(stderr, "metrics: shape mismatch: %s is [%d,%d,%d] but %s is [%d,%d,%d]\n", tname, t->Z, t->Y, t->X,
                rname, r->Z, r->Y, r->X);
        return CLI_USAGE;
    }
    apt_error err = {0};
    int rc = apt_metrics_compute(t->data, r->data, t->Z, t->Y, t->X, threads, m, &err);
    if (rc) {
        fprintf(stderr, "metrics: %s vs %s: %s\n", tname, rname, err.msg);
        return rc == APT_EINVAL || rc == APT_ERANGE ? CLI_USAGE : CLI_FAIL;
    }
    return CLI_OK;
}

static int usage(FILE *to)
{
    fprintf(to, "usage: aptomo metrics TEST.h5 REF.h5 [--dataset /exchange/data] [--ref-dataset /exchange/data]\n"
                "                      [--threads N]\n"
                "       aptomo metrics --plot out.png A.h5 B.h5 ... --ref REF.h5 [--title TEXT] [same options]\n"
                "Prints {pcc, ms_ssim, dsc, ber, fsc_threshold_px, fsc:[...]} (docs/METRICS.md); --plot draws each\n"
                "metric against the number of angles (length of /exchange/theta) of each file.\n");
    return to == stdout ? CLI_OK : CLI_USAGE;
}

int cmd_metrics(int argc, char **argv)
{
    const char *dataset = "/exchange/data", *ref_dataset = NULL, *plot = NULL, *ref = NULL, *title = NULL;
    const char *files[MAX_PLOT_FILES];
    int nf = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            return usage(stdout);
        else if (!strcmp(a, "--dataset") && has)
            dataset = argv[++i];
        else if (!strcmp(a, "--ref-dataset") && has)
            ref_dataset = argv[++i];
        else if (!strcmp(a, "--plot") && has)
            plot = argv[++i];
        else if (!strcmp(a, "--ref") && has)
            ref = argv[++i];
        else if (!strcmp(a, "--title") && has)
            title = argv[++i];
        else if (!strcmp(a, "--threads") && has) {
            uint64_t v;
            if (cli_parse_u64(argv[++i], &v) || v < 1 || v > 64) {
                fprintf(stderr, "metrics: --threads: '%s' is not an integer in 1..64\n", argv[i]);
                return CLI_USAGE;
            }
            threads = (int)v;
        } else if (a[0] != '-' && nf < MAX_PLOT_FILES)
            files[nf++] = a;
        else {
            fprintf(stderr, "metrics: bad argument '%s' (at most %d files)\n", a, MAX_PLOT_FILES);
            return usage(stderr);
        }
    }
    if (!ref_dataset)
        ref_dataset = dataset;
    if (!plot) {
        if (ref && nf == 1)
            files[nf++] = ref;
        if (nf != 2) {
            fprintf(stderr, "metrics: need TEST.h5 and REF.h5\n");
            return usage(stderr);
        }
        ref = files[1];
        nf = 1;
    } else if (!ref || nf < 1) {
        fprintf(stderr, "metrics: --plot needs result files and --ref REF.h5\n");
        return usage(stderr);
    }
    apt_error err = {0};
    apt_volume rv;
    if (apt_volume_read(ref, ref_dataset, &rv, &err)) {
        fprintf(stderr, "metrics: %s\n", err.msg);
        return CLI_USAGE;
    }
    int rc = CLI_OK;
    if (!plot) {
        apt_volume tv;
        if (apt_volume_read(files[0], dataset, &tv, &err)) {
            fprintf(stderr, "metrics: %s\n", err.msg);
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
        fprintf(stderr, "metrics: out of memory\n");
        rc = CLI_FAIL;
    }
    for (int i = 0; !rc && i < nf; i++, done++) {
        apt_volume tv;
        if (theta_count(files[i], &nang[i], &err) || apt_volume_read(files[i], dataset, &tv, &err)) {
            fprintf(stderr, "metrics: %s\n", err.msg);
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
        fprintf(stderr, "metrics: %s\n", err.msg);
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
