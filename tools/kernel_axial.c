/* kernel_axial.c - `aptomo kernel nn-axial-grad`: one training-mode forward and backward of the axial attention core
 * (src/nn/axial_train.c) on tensors from an HDF5 file, so tests can hold the library's exact path against PyTorch
 * autograd. Every dataset's shape is checked against /qkv and the heads/axis attributes before anything else is
 * allocated; bad input exits 2 naming the dataset or attribute. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "aptomo/h5io.h"
#include "kernel.h"
#include "aptomo/axial_train.h"

#define AXIAL_MAX_ELEMS ((size_t)1 << 30) /* floats of any one input, and of saved / scratch */

enum { T_QKV, T_REL, T_SIM_W, T_SIM_B, T_SIM_RM, T_SIM_RV, T_OUT_W, T_OUT_B, T_OUT_RM, T_OUT_RV, T_DY, T_N };
static const char *const IN_NAMES[T_N] = {"/qkv",   "/relative", "/sim_w",  "/sim_b",  "/sim_rm", "/sim_rv",
                                          "/out_w", "/out_b",    "/out_rm", "/out_rv", "/dy"};

typedef struct axial_in {
    int heads, axis;
    hsize_t qd[5]; /* /qkv [B, 2P, D, H, W] */
    float *t[T_N];
} axial_in;

static int attr_int(hid_t f, const char *fname, const char *name, int lo, int hi, int *out, apt_error *err)
{
    if (H5Aexists(f, name) <= 0)
        return apt_err(err, APT_EINVAL, "%s: attribute %s: missing", fname, name);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    hid_t sp = a < 0 ? -1 : H5Aget_space(a), t = a < 0 ? -1 : H5Aget_type(a);
    long long v = 0;
    int rc = APT_OK;
    if (sp < 0 || t < 0 || H5Sget_simple_extent_npoints(sp) != 1 || H5Tget_class(t) != H5T_INTEGER ||
        H5Aread(a, H5T_NATIVE_LLONG, &v) < 0)
        rc = apt_h5io_fail(err, APT_EINVAL, "%s: attribute %s: expected one integer", fname, name);
    else if (v < lo || v > hi)
        rc = apt_err(err, APT_EINVAL, "%s: attribute %s = %lld: out of [%d, %d]", fname, name, v, lo, hi);
    *out = (int)v;
    if (t >= 0)
        H5Tclose(t);
    if (sp >= 0)
        H5Sclose(sp);
    if (a >= 0)
        H5Aclose(a);
    return rc;
}

/* Dataset `path`, float, of rank `rank` and (where want[i] != 0) those extents, every extent in [1, 65536], read
   whole into a new buffer; non-finite values refused. dims (may be NULL) gets the extents. */
static int read_t(hid_t f, const char *fname, const char *path, int rank, const hsize_t *want, hsize_t *dims,
                  float **out, apt_error *err)
{
    hsize_t d[5];
    hid_t ds = apt_h5io_open(f, fname, path, err);
    int rc = ds < 0 ? (int)ds : apt_h5io_need_float(ds, fname, path, err);
    if (!rc)
        rc = apt_h5io_shape(ds, fname, path, rank, want, d, err);
    size_t n = 1;
    for (int i = 0; !rc && i < rank; i++) {
        if (d[i] < 1 || d[i] > 65536)
            rc = apt_err(err, APT_ERANGE, "%s: %s: dimension %d = %llu out of [1, 65536]", fname, path, i,
                         (unsigned long long)d[i]);
        n *= (size_t)d[i];
        if (!rc && n > AXIAL_MAX_ELEMS)
            rc = apt_err(err, APT_ERANGE, "%s: %s: more than %zu values", fname, path, AXIAL_MAX_ELEMS);
    }
    if (!rc && !(*out = malloc(n * sizeof(float))))
        rc = apt_err(err, APT_ENOMEM, "%s: out of memory for %s", fname, path);
    if (!rc && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0)
        rc = apt_h5io_fail(err, APT_EINVAL, "%s: %s: read failed", fname, path);
    for (size_t i = 0; !rc && i < n; i++)
        if (!isfinite((*out)[i]))
            rc = apt_err(err, APT_EINVAL, "%s: %s: non-finite value at element %zu", fname, path, i);
    if (!rc && dims)
        memcpy(dims, d, (size_t)rank * sizeof *d);
    if (ds >= 0)
        H5Dclose(ds);
    return rc;
}

static int read_in(const char *fname, axial_in *in, apt_error *err)
{
    hid_t f = H5Fopen(fname, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return apt_h5io_fail(err, APT_EINVAL, "%s: cannot open as HDF5", fname);
    hsize_t *q = in->qd;
    int rc = read_t(f, fname, "/qkv", 5, NULL, q, &in->t[T_QKV], err);
    if (!rc)
        rc = attr_int(f, fname, "heads", 1, 65536, &in->heads, err);
    if (!rc)
        rc = attr_int(f, fname, "axis", 0, 2, &in->axis, err);
    hsize_t P = q[1] / 2, G = in->heads > 0 ? (hsize_t)in->heads : 1, gp = P / G, K = q[2 + in->axis];
    if (!rc && (q[1] % 2 || P % G || gp % 2))
        rc = apt_err(err, APT_EINVAL,
                     "%s: /qkv: %llu channels do not make 2 * planes with planes / heads (heads = %d) even", fname,
                     (unsigned long long)q[1], in->heads);
    const hsize_t rel[2] = {2 * gp, 2 * K - 1}, sim[1] = {3 * G}, out[1] = {2 * P},
                  dy[5] = {q[0], P, q[2], q[3], q[4]};
    const hsize_t *want[T_N] = {NULL, rel, sim, sim, sim, sim, out, out, out, out, dy};
    const int rank[T_N] = {5, 2, 1, 1, 1, 1, 1, 1, 1, 1, 5};
    for (int i = T_REL; !rc && i < T_N; i++)
        rc = read_t(f, fname, IN_NAMES[i], rank[i], want[i], NULL, &in->t[i], err);
    H5Fclose(f);
    return rc;
}

static int write_out(const char *fname, const axial_in *in, float *const *o, apt_error *err)
{
    const hsize_t *q = in->qd, P = q[1] / 2, gp = P / (hsize_t)in->heads, K = q[2 + in->axis];
    const hsize_t yd[5] = {q[0], P, q[2], q[3], q[4]}, rel[2] = {2 * gp, 2 * K - 1}, sim[1] = {3 * (hsize_t)in->heads},
                  out[1] = {2 * P};
    static const char *const names[] = {"/y",     "/dqkv",   "/drel",   "/dsim_w", "/dsim_b", "/dout_w",
                                        "/dout_b", "/sim_rm", "/sim_rv", "/out_rm", "/out_rv"};
    const hsize_t *dims[] = {yd, q, rel, sim, sim, out, out, sim, sim, out, out};
    const int rank[] = {5, 5, 2, 1, 1, 1, 1, 1, 1, 1, 1};
    hid_t f = H5Fcreate(fname, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        return apt_h5io_fail(err, APT_EIO, "%s: cannot create", fname);
    int rc = APT_OK;
    for (int i = 0; !rc && i < 11; i++)
        rc = apt_h5io_write(f, names[i], H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, rank[i], dims[i], o[i], err);
    if (H5Fclose(f) < 0 && !rc)
        rc = apt_h5io_fail(err, APT_EIO, "%s: close failed", fname);
    return rc;
}

static const char AXIAL_HELP[] =
    "usage: aptomo kernel nn-axial-grad [--threads N] IN.h5 OUT.h5\n"
    "One training-mode forward and backward of the axial attention core of docs/NETWORK.md (from qkv after\n"
    "qkv_bn to the layer output; sim_bn and out_bn with batch statistics, momentum 0.1, eps 1e-5).\n"
    "  IN: /qkv float [B,2P,D,H,W], /relative [2gp,2K-1], /sim_w /sim_b /sim_rm /sim_rv [3G],\n"
    "      /out_w /out_b /out_rm /out_rv [2P], /dy [B,P,D,H,W]; attributes heads (G) and axis (0 = D, 1 = H,\n"
    "      2 = W; K = that extent) on /.\n"
    "  OUT: /y [B,P,D,H,W], /dqkv, /drel, /dsim_w, /dsim_b, /dout_w, /dout_b (gradients of sum(y * dy)),\n"
    "      /sim_rm /sim_rv /out_rm /out_rv (running statistics after the step). Same bytes for any N.\n"
    "  --threads N   threads, 0 = one per core, at most 64 (default 0)\n";

int kernel_nn_axial_grad(int argc, char **argv)
{
    static const struct option opts[] = {{"threads", required_argument, NULL, 't'}, {0}};
    int threads = 0, c = 0;
    cli_parser cp;
    cli_init(&cp, "kernel nn-axial-grad", AXIAL_HELP, NULL, opts, argc, argv);
    while ((c = cli_next(&cp)) > 0)
        cli_int(&cp, 0, 64, &threads);
    int cli_rc = cli_done(&cp, c, 2, 2, "IN.h5 OUT.h5");
    if (cli_rc != CLI_GO)
        return cli_rc;
    const char *paths[2] = {cp.args[0], cp.args[1]};
    if ((c = cli_check_output("OUT.h5", paths[1])))
        return c;
    if (threads == 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        threads = nc < 1 ? 1 : nc > 64 ? 64 : (int)nc;
    }
    apt_h5io_quiet();
    apt_error err = {0};
    axial_in in = {0};
    float *o[11] = {0}, *saved = NULL, *scratch = NULL;
    int rc = read_in(paths[0], &in, &err), bad = rc != APT_OK;
    const hsize_t *q = in.qd;
    const int B = (int)q[0], D = (int)q[2], H = (int)q[3], W = (int)q[4], P = (int)q[1] / 2;
    apt_nn_axial_train a = {.planes = P, .heads = in.heads, .K = (int)q[2 + in.axis], .axis = in.axis};
    size_t ns = 0, nw = 0;
    if (!rc) {
        ns = apt_nn_axial_train_saved(&a, B, D, H, W);
        nw = apt_nn_axial_train_scratch(&a, B, D, H, W, threads);
        if (!ns || !nw || ns > AXIAL_MAX_ELEMS || nw > AXIAL_MAX_ELEMS)
            rc = apt_err(&err, APT_ERANGE, "%s: /qkv: the layer's saved tensors or scratch exceed %zu floats",
                         paths[0], AXIAL_MAX_ELEMS), bad = 1;
    }
    const size_t ny = (size_t)B * P * D * H * W, G = (size_t)in.heads, gp = (size_t)P / (G ? G : 1),
                 sizes[11] = {ny, 2 * ny, 2 * gp * (2 * (size_t)a.K - 1), 3 * G, 3 * G, 2 * (size_t)P,
                              2 * (size_t)P, 3 * G, 3 * G, 2 * (size_t)P, 2 * (size_t)P};
    for (int i = 0; !rc && i < 11; i++)
        if (!(o[i] = calloc(sizes[i] ? sizes[i] : 1, sizeof(float))))
            rc = apt_err(&err, APT_ENOMEM, "out of memory");
    if (!rc && (!(saved = malloc(ns * sizeof(float))) || !(scratch = malloc(nw * sizeof(float)))))
        rc = apt_err(&err, APT_ENOMEM, "out of memory for the saved tensors (%zu floats)", ns);
    if (!rc) { /* the forward updates the running statistics in place: start from the file's */
        memcpy(o[7], in.t[T_SIM_RM], 3 * G * sizeof(float));
        memcpy(o[8], in.t[T_SIM_RV], 3 * G * sizeof(float));
        memcpy(o[9], in.t[T_OUT_RM], 2 * (size_t)P * sizeof(float));
        memcpy(o[10], in.t[T_OUT_RV], 2 * (size_t)P * sizeof(float));
        a.rel = in.t[T_REL], a.sim_w = in.t[T_SIM_W], a.sim_b = in.t[T_SIM_B], a.out_w = in.t[T_OUT_W];
        a.out_b = in.t[T_OUT_B], a.sim_rm = o[7], a.sim_rv = o[8], a.out_rm = o[9], a.out_rv = o[10];
        rc = apt_nn_axial_train_fwd(&a, in.t[T_QKV], B, D, H, W, o[0], saved, scratch, threads, &err);
        if (!rc)
            rc = apt_nn_axial_train_bwd(&a, in.t[T_QKV], B, D, H, W, saved, in.t[T_DY], o[1], o[2], o[3], o[4], o[5],
                                        o[6], scratch, threads, &err);
        if (rc == APT_EINVAL)
            apt_err_prefix(&err, rc, "%s: ", paths[0]), bad = 1;
    }
    if (!rc)
        rc = write_out(paths[1], &in, o, &err);
    if (rc)
        fprintf(stderr, "aptomo kernel nn-axial-grad: %s\n", err.msg);
    for (int i = 0; i < T_N; i++)
        free(in.t[i]);
    for (int i = 0; i < 11; i++)
        free(o[i]);
    free(saved);
    free(scratch);
    return rc ? (bad && rc != APT_ENOMEM ? CLI_USAGE : CLI_FAIL) : CLI_OK;
}
