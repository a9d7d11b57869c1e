/* kernel_nn.c - `aptomo kernel nn-forward` (eval-mode forward of /x [B,1,Z,Y,X] -> /y, the exact library path that
 * aptomo infer and the daemon run) and `aptomo kernel nn-init` (random weights for an arch, written by our
 * safetensors writer: the PyTorch reference in tests/ must load them with strict=True). */
#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/nn.h"
#include "cli.h"
#include "aptomo/h5io.h"
#include "kernel.h"
#include "nn_init.h"

#define NN_MAX_IN_ELEMS ((hsize_t)1 << 30)

static int read_x(const char *fname, float **x, hsize_t d[5], apt_error *err)
{
    hid_t f = H5Fopen(fname, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return apt_h5io_fail(err, APT_EINVAL, "%s: cannot open as HDF5", fname);
    hid_t ds = apt_h5io_open(f, fname, "/x", err);
    int rc = ds < 0 ? (int)ds : apt_h5io_shape(ds, fname, "/x", 5, NULL, d, err);
    if (!rc)
        rc = apt_h5io_need_float(ds, fname, "/x", err);
    if (!rc && d[1] != 1)
        rc = apt_err(err, APT_EINVAL, "%s: /x: expected [B, 1, Z, Y, X], channel extent is %llu", fname,
                     (unsigned long long)d[1]);
    hsize_t n = 1;
    for (int i = 0; !rc && i < 5; i++) {
        if (d[i] == 0 || d[i] > 65536)
            rc = apt_err(err, APT_ERANGE, "%s: /x: dimension %d = %llu out of [1, 65536]", fname, i,
                         (unsigned long long)d[i]);
        n *= d[i];
    }
    if (!rc && n > NN_MAX_IN_ELEMS)
        rc = apt_err(err, APT_ERANGE, "%s: /x: more than %llu values", fname, (unsigned long long)NN_MAX_IN_ELEMS);
    if (!rc && !(*x = malloc(n * sizeof(float))))
        rc = apt_err(err, APT_ENOMEM, "%s: out of memory for /x", fname);
    if (!rc && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *x) < 0)
        rc = apt_h5io_fail(err, APT_EINVAL, "%s: /x: read failed", fname);
    for (hsize_t i = 0; !rc && i < n; i++)
        if (!isfinite((*x)[i]))
            rc = apt_err(err, APT_EINVAL, "%s: /x: non-finite value at element %llu", fname, (unsigned long long)i);
    if (ds >= 0)
        H5Dclose(ds);
    H5Fclose(f);
    return rc;
}

static const char FORWARD_HELP[] =
    "usage: aptomo kernel nn-forward [--threads N] [--backend cpu|gpu|auto] W.safetensors IN.h5 OUT.h5\n"
    "Eval-mode forward of the network of docs/NETWORK.md, the exact library path of aptomo infer and the daemon.\n"
    "  IN: /x float [B,1,Z,Y,X] (already normalised).  OUT: /y float32 [B,1,Z',Y',X'] and weights_id.\n"
    "  --threads N    threads, 0 = one per core, at most 64 (default 0)\n"
    "  --backend B    cpu, gpu or auto (default: auto)\n";

int kernel_nn_forward(int argc, char **argv)
{
    static const struct option opts[] = {{"threads", required_argument, NULL, 't'},
                                         {"backend", required_argument, NULL, 'b'}, {0}};
    int threads = 0, oc = 0;
    apt_backend backend = APT_BACKEND_AUTO;
    cli_parser cp;
    cli_init(&cp, "kernel nn-forward", FORWARD_HELP, NULL, opts, argc, argv);
    while ((oc = cli_next(&cp)) > 0) {
        if (oc == 't')
            cli_int(&cp, 0, 64, &threads);
        else
            cli_backend(&cp, &backend);
    }
    int cli_rc = cli_done(&cp, oc, 3, 3, "W.safetensors IN.h5 OUT.h5");
    if (cli_rc != CLI_GO)
        return cli_rc;
    const char *paths[3] = {cp.args[0], cp.args[1], cp.args[2]};
    if ((oc = cli_check_output("OUT.h5", paths[2])))
        return oc;
    apt_h5io_quiet();
    apt_error err = {0};
    apt_nn_model *m = NULL;
    int rc = apt_nn_load_backend(paths[0], threads, backend, &m, &err);
    if (rc) {
        fprintf(stderr, "aptomo kernel nn-forward: %s\n", err.msg);
        return rc == APT_ENOMEM || rc == APT_EIO || rc == APT_ENODEV ? CLI_FAIL : CLI_USAGE;
    }
    float *x = NULL, *y = NULL;
    hsize_t d[5];
    int oz, oy, ox, bad = 1;
    rc = read_x(paths[1], &x, d, &err);
    if (!rc && (rc = apt_nn_output_shape(m, (int)d[2], (int)d[3], (int)d[4], &oz, &oy, &ox, &err)) != APT_OK)
        apt_err_prefix(&err, rc, "%s: /x: ", paths[1]);
    if (!rc) {
        bad = 0;
        size_t ny = (size_t)d[0] * oz * oy * ox;
        if (!(y = malloc(ny * sizeof(float))))
            rc = apt_err(&err, APT_ENOMEM, "out of memory for /y");
    }
    if (!rc)
        rc = apt_nn_forward(m, x, (int)d[0], (int)d[2], (int)d[3], (int)d[4], y, &err);
    if (!rc) {
        hid_t f = H5Fcreate(paths[2], H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        hsize_t yd[5] = {d[0], 1, (hsize_t)oz, (hsize_t)oy, (hsize_t)ox};
        if (f < 0)
            rc = apt_h5io_fail(&err, APT_EIO, "%s: cannot create", paths[2]);
        if (!rc)
            rc = apt_h5io_write(f, "/y", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 5, yd, y, &err);
        if (!rc)
            rc = apt_h5io_attr_str(f, "weights_id", apt_nn_weights_id(m), &err);
        if (f >= 0 && H5Fclose(f) < 0 && !rc)
            rc = apt_h5io_fail(&err, APT_EIO, "%s: close failed", paths[2]);
    }
    if (rc)
        fprintf(stderr, "aptomo kernel nn-forward: %s\n", err.msg);
    free(x);
    free(y);
    apt_nn_destroy(&m);
    return rc ? (bad && rc != APT_ENOMEM ? CLI_USAGE : CLI_FAIL) : CLI_OK;
}

/* ---- nn-init (the initialisation itself is nn_init.c, shared with aptomo train) ---- */

static const char INIT_HELP[] =
    "usage: aptomo kernel nn-init --arch ARCH.json [--seed S] [--input '{\"mean\":M,\"std\":S}'] OUT.safetensors\n"
    "Random weights for an arch (Kaiming-normal convs, BN weight 1 bias 0, running stats near 0/1, random\n"
    "relative embeddings), written by aptomo's safetensors writer with the arch in the metadata.\n"
    "  --arch ARCH.json  the architecture (docs/NETWORK.md), required\n"
    "  --seed S          PRNG seed (default 0)\n"
    "  --input JSON      input normalisation stored with the weights\n";

int kernel_nn_init(int argc, char **argv)
{
    static const struct option opts[] = {{"arch", required_argument, NULL, 'a'},
                                         {"seed", required_argument, NULL, 's'},
                                         {"input", required_argument, NULL, 'i'}, {0}};
    const char *arch_path = NULL, *out = NULL, *input = NULL;
    uint64_t seed = 0;
    int oc = 0;
    cli_parser cp;
    cli_init(&cp, "kernel nn-init", INIT_HELP, NULL, opts, argc, argv);
    while ((oc = cli_next(&cp)) > 0) {
        if (oc == 'a')
            arch_path = cp.arg;
        else if (oc == 'i')
            input = cp.arg;
        else
            cli_uint(&cp, 0, UINT64_MAX, &seed);
    }
    int cli_rc = cli_done(&cp, oc, 1, 1, "OUT.safetensors");
    if (cli_rc != CLI_GO)
        return cli_rc;
    out = cp.args[0];
    if (!arch_path)
        return cli_fail(&cp, "--arch ARCH.json is required");
    json_error_t je;
    json_t *arch = json_load_file(arch_path, 0, &je);
    if (!arch) {
        fprintf(stderr, "aptomo kernel nn-init: %s: line %d: %s\n", arch_path, je.line, je.text);
        return CLI_USAGE;
    }
    char *text = json_dumps(arch, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(arch);
    apt_error err = {0};
    int bad = 0, rc = text ? APT_OK : apt_err(&err, APT_ENOMEM, "out of memory");
    if (!rc && input) {
        json_t *in = json_loads(input, 0, &je);
        if (!json_is_object(in) || (json_object_get(in, "mean") && !json_is_number(json_object_get(in, "mean"))) ||
            (json_object_get(in, "std") && !(json_number_value(json_object_get(in, "std")) > 0)))
            rc = apt_err(&err, APT_EINVAL, "--input: expected {\"mean\": number, \"std\": number > 0}"), bad = 1;
        json_decref(in);
    }
    if (!rc)
        rc = nn_init_write(text, seed, input, out, &bad, &err);
    if (rc)
        fprintf(stderr, "aptomo kernel nn-init: %s: %s\n", bad ? arch_path : out, err.msg);
    free(text);
    return rc ? (bad ? CLI_USAGE : CLI_FAIL) : CLI_OK;
}
