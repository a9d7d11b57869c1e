/* kernel_step.c - `aptomo kernel nn-step`: K training steps of the network (BatchNorm in training mode, NPCC, Adam
 * at a constant learning rate) on one batch, through the same trainer as `aptomo train`; the PyTorch reference in
 * tests/ runs the same steps and compares every tensor. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/nn_train.h"
#include "cli.h"
#include "aptomo/h5io.h"
#include "kernel.h"

#define STEP_MAX_ELEMS ((hsize_t)1 << 30)

/* A float dataset [B,1,Z,Y,X] read whole; want (if non-NULL) fixes the shape. */
static int read_5d(hid_t f, const char *fname, const char *path, const hsize_t *want, float **out, hsize_t d[5],
                   apt_error *err)
{
    hid_t ds = apt_h5io_open(f, fname, path, err);
    int rc = ds < 0 ? (int)ds : apt_h5io_shape(ds, fname, path, 5, want, d, err);
    if (!rc)
        rc = apt_h5io_need_float(ds, fname, path, err);
    hsize_t n = 1;
    for (int i = 0; !rc && i < 5; i++) {
        if (d[i] == 0 || d[i] > 65536)
            rc = apt_err(err, APT_ERANGE, "%s: %s: dimension %d = %llu out of [1, 65536]", fname, path, i,
                         (unsigned long long)d[i]);
        n *= d[i];
    }
    if (!rc && d[1] != 1)
        rc = apt_err(err, APT_EINVAL, "%s: %s: expected [B, 1, Z, Y, X], channel extent is %llu", fname, path,
                     (unsigned long long)d[1]);
    if (!rc && n > STEP_MAX_ELEMS)
        rc = apt_err(err, APT_ERANGE, "%s: %s: more than %llu values", fname, path,
                     (unsigned long long)STEP_MAX_ELEMS);
    if (!rc && !(*out = malloc(n * sizeof(float))))
        rc = apt_err(err, APT_ENOMEM, "%s: out of memory for %s", fname, path);
    if (!rc && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0)
        rc = apt_h5io_fail(err, APT_EINVAL, "%s: %s: read failed", fname, path);
    for (hsize_t i = 0; !rc && i < n; i++)
        if (!isfinite((*out)[i]))
            rc = apt_err(err, APT_EINVAL, "%s: %s: non-finite value at element %llu", fname, path,
                         (unsigned long long)i);
    if (ds >= 0)
        H5Dclose(ds);
    return rc;
}

static const char STEP_HELP[] =
    "usage: aptomo kernel nn-step [--lr LR] [--steps K] [--threads N] W.safetensors IN.h5 OUT.safetensors\n"
    "K training steps on one batch: /x float [B,1,Z,Y,X] (already normalised), targets /y [B,1,Z',Y',X'] (the\n"
    "network's output shape); BatchNorm in training mode, NPCC loss, Adam (state from zero), constant learning\n"
    "rate. OUT: every state_dict tensor after the steps, W's metadata, and aptomo.loss (the loss before each step).\n"
    "The same bytes for any thread count.\n"
    "  --lr LR        learning rate (default 2e-4)\n"
    "  --steps K      steps, 1..100000 (default 1)\n"
    "  --threads N    threads, 0 = one per core, at most 64 (default 0)\n";

int kernel_nn_step(int argc, char **argv)
{
    static const struct option opts[] = {{"lr", required_argument, NULL, 'l'},
                                         {"steps", required_argument, NULL, 's'},
                                         {"threads", required_argument, NULL, 't'}, {0}};
    int threads = 0, steps = 1, oc = 0;
    double lr = 2e-4;
    cli_parser cp;
    cli_init(&cp, "kernel nn-step", STEP_HELP, NULL, opts, argc, argv);
    while ((oc = cli_next(&cp)) > 0) {
        if (oc == 't')
            cli_int(&cp, 0, 64, &threads);
        else if (oc == 's')
            cli_int(&cp, 1, 100000, &steps);
        else
            cli_real(&cp, 0, 1, 0, &lr);
    }
    int cli_rc = cli_done(&cp, oc, 3, 3, "W.safetensors IN.h5 OUT.safetensors");
    if (cli_rc != CLI_GO)
        return cli_rc;
    const char *wpath = cp.args[0], *in = cp.args[1], *out = cp.args[2];
    if ((oc = cli_check_output("OUT.safetensors", out)))
        return oc;
    apt_h5io_quiet();
    apt_error err = {0};
    apt_nn_train *t = NULL;
    float *x = NULL, *y = NULL;
    double *losses = NULL;
    char *json = NULL;
    int bad = 1;
    int rc = apt_nn_train_load(wpath, threads, &t, &err);
    hid_t f = -1;
    hsize_t dx[5], dy[5];
    if (!rc && (f = H5Fopen(in, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0)
        rc = apt_h5io_fail(&err, APT_EINVAL, "%s: cannot open as HDF5", in);
    if (!rc)
        rc = read_5d(f, in, "/x", NULL, &x, dx, &err);
    int oz = 0, oy = 0, ox = 0; /* set before use: /y is read only when /x gave its output shape */
    if (!rc && (rc = apt_nn_train_output_shape(t, (int)dx[2], (int)dx[3], (int)dx[4], &oz, &oy, &ox, &err)))
        apt_err_prefix(&err, rc, "%s: /x: ", in);
    hsize_t want[5] = {dx[0], 1, (hsize_t)oz, (hsize_t)oy, (hsize_t)ox};
    if (!rc)
        rc = read_5d(f, in, "/y", want, &y, dy, &err);
    if (f >= 0)
        H5Fclose(f);
    if (!rc && (!(losses = malloc((size_t)steps * sizeof(double))) || !(json = malloc((size_t)steps * 32 + 8))))
        rc = apt_err(&err, APT_ENOMEM, "out of memory");
    if (!rc)
        bad = 0;
    cli_progress bar;
    if (!rc)
        cli_progress_start(&bar, "nn-step", (uint64_t)steps);
    for (int s = 0; !rc && s < steps; s++) {
        rc = apt_nn_train_step(t, x, y, (int)dx[0], (int)dx[2], (int)dx[3], (int)dx[4], lr, &losses[s], &err);
        cli_progress_update(&bar, (uint64_t)s + 1);
    }
    if (!bad)
        cli_progress_end(&bar);
    if (!rc) {
        size_t n = 0;
        json[n++] = '[';
        for (int s = 0; s < steps; s++)
            n += (size_t)snprintf(json + n, 32, "%s%.9g", s ? ", " : "", losses[s]);
        json[n++] = ']', json[n] = 0;
        const char *meta[] = {"aptomo.loss", json, NULL};
        rc = apt_nn_train_save(t, out, 0, meta, &err);
    }
    if (rc)
        fprintf(stderr, "aptomo kernel nn-step: %s\n", err.msg);
    apt_nn_train_destroy(&t);
    free(x), free(y), free(losses), free(json);
    return rc ? (bad && rc != APT_ENOMEM && rc != APT_EIO ? CLI_USAGE : CLI_FAIL) : CLI_OK;
}
