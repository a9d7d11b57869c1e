/* cmd_kernel.c - `aptomo kernel <name> ...`: stable, scriptable entry points to single library kernels, so tests and
 * external cross-checks (PyTorch, numpy) drive exactly the code the daemon runs: ptycho-grad (loss and object
 * gradient of the multislice mixed-state model) here, nn-forward and nn-init in kernel_nn.c. Every shape is read and
 * bounded before anything is allocated; bad input exits 2 naming the dataset or attribute at fault. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/ptycho.h"
#include "cli.h"
#include "aptomo/h5io.h"
#include "kernel.h"

#define KERNEL_MAX_POSITIONS ((hsize_t)1 << 24)
#define KERNEL_MAX_FRAME_ELEMS ((hsize_t)1 << 31) /* J * H * W floats */

/* Shape of a rank-`rank` dataset whose type is of class cls (H5T_COMPOUND: must be h5py's complex {r, i}). */
static int ds_shape(hid_t f, const char *fname, const char *path, int rank, H5T_class_t cls, hsize_t *dims,
                    apt_error *err)
{
    hid_t d = apt_h5io_open(f, fname, path, err);
    if (d < 0)
        return (int)d;
    int rc = apt_h5io_shape(d, fname, path, rank, NULL, dims, err);
    hid_t t = H5Dget_type(d);
    H5T_class_t c = t < 0 ? H5T_NO_CLASS : H5Tget_class(t);
    if (!rc && c != cls)
        rc = apt_err(err, APT_EINVAL, "%s: %s: expected %s data", fname, path,
                     cls == H5T_COMPOUND ? "complex (compound r, i)" : cls == H5T_INTEGER ? "integer" : "float");
    if (!rc && cls == H5T_COMPOUND) {
        int nm = H5Tget_nmembers(t), ir = H5Tget_member_index(t, "r"), ii = H5Tget_member_index(t, "i");
        H5T_class_t cr = ir >= 0 ? H5Tget_member_class(t, (unsigned)ir) : H5T_NO_CLASS;
        H5T_class_t ci = ii >= 0 ? H5Tget_member_class(t, (unsigned)ii) : H5T_NO_CLASS;
        if (nm != 2 || cr != H5T_FLOAT || ci != H5T_FLOAT)
            rc = apt_err(err, APT_EINVAL, "%s: %s: expected complex as h5py writes it (compound of float r, i)",
                         fname, path);
    }
    if (t >= 0)
        H5Tclose(t);
    H5Dclose(d);
    for (int i = 0; !rc && i < rank; i++)
        if (dims[i] == 0)
            rc = apt_err(err, APT_EINVAL, "%s: %s: dimension %d is empty", fname, path, i);
    return rc;
}

static int ds_read(hid_t f, const char *fname, const char *path, hid_t mtype, void *dst, apt_error *err)
{
    hid_t d = apt_h5io_open(f, fname, path, err);
    if (d < 0)
        return (int)d;
    int rc = H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0
                 ? apt_h5io_fail(err, APT_EINVAL, "%s: %s: read failed", fname, path)
                 : APT_OK;
    H5Dclose(d);
    return rc;
}

static int attr_f64(hid_t f, const char *fname, const char *name, double *out, apt_error *err)
{
    if (H5Aexists(f, name) <= 0)
        return apt_err(err, APT_EINVAL, "%s: attribute /%s: missing", fname, name);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    hid_t sp = a < 0 ? -1 : H5Aget_space(a);
    hssize_t n = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    int rc = APT_OK;
    if (n != 1 || H5Aread(a, H5T_NATIVE_DOUBLE, out) < 0)
        rc = apt_h5io_fail(err, APT_EINVAL, "%s: attribute /%s: expected one number", fname, name);
    else if (!isfinite(*out))
        rc = apt_err(err, APT_EINVAL, "%s: attribute /%s: not finite", fname, name);
    if (sp >= 0)
        H5Sclose(sp);
    if (a >= 0)
        H5Aclose(a);
    return rc;
}

typedef struct grad_in {
    apt_ptycho_geom g;
    size_t J;
    float *probe, *object, *meas;
    int32_t *pos;
} grad_in;

static void grad_in_free(grad_in *in)
{
    free(in->probe);
    free(in->object);
    free(in->meas);
    free(in->pos);
}

/* Reads and checks IN.h5; APT_EINVAL/ERANGE = bad input (exit 2). */
static int read_grad_in(const char *fname, grad_in *in, apt_error *err)
{
    hid_t f = H5Fopen(fname, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return apt_h5io_fail(err, APT_EINVAL, "%s: cannot open as HDF5", fname);
    hsize_t pd[3], od[3], xd[2], md[3];
    int rc = ds_shape(f, fname, "/probe", 3, H5T_COMPOUND, pd, err);
    if (!rc)
        rc = ds_shape(f, fname, "/object", 3, H5T_COMPOUND, od, err);
    if (!rc)
        rc = ds_shape(f, fname, "/positions", 2, H5T_INTEGER, xd, err);
    if (!rc)
        rc = ds_shape(f, fname, "/intensities", 3, H5T_FLOAT, md, err);
    if (!rc && xd[1] != 2)
        rc = apt_err(err, APT_EINVAL, "%s: /positions: expected [J, 2] (row, col), found [%llu, %llu]", fname,
                     (unsigned long long)xd[0], (unsigned long long)xd[1]);
    if (!rc && xd[0] > KERNEL_MAX_POSITIONS)
        rc = apt_err(err, APT_ERANGE, "%s: /positions: %llu positions exceed %llu", fname,
                     (unsigned long long)xd[0], (unsigned long long)KERNEL_MAX_POSITIONS);
    if (!rc && (md[0] != xd[0] || md[1] != pd[1] || md[2] != pd[2]))
        rc = apt_err(err, APT_EINVAL, "%s: /intensities: shape [%llu, %llu, %llu] must be [J=%llu, H=%llu, W=%llu]",
                     fname, (unsigned long long)md[0], (unsigned long long)md[1], (unsigned long long)md[2],
                     (unsigned long long)xd[0], (unsigned long long)pd[1], (unsigned long long)pd[2]);
    /* every extent fits the model's bounds (checked again, exactly, by apt_ptycho_new) before the products below */
    for (int i = 0; !rc && i < 3; i++)
        if (pd[i] > 65536 || od[i] > 65536)
            rc = apt_err(err, APT_ERANGE, "%s: /%s: dimension %d is too large", fname,
                         pd[i] > 65536 ? "probe" : "object", i);
    if (!rc && md[0] * md[1] * md[2] > KERNEL_MAX_FRAME_ELEMS)
        rc = apt_err(err, APT_ERANGE, "%s: /intensities: more than %llu values", fname,
                     (unsigned long long)KERNEL_MAX_FRAME_ELEMS);
    in->g = (apt_ptycho_geom){.M = (int)pd[0], .H = (int)pd[1], .W = (int)pd[2], .L = (int)od[0], .Ny = (int)od[1],
                              .Nx = (int)od[2]};
    if (!rc)
        rc = attr_f64(f, fname, "wavelength_m", &in->g.wavelength_m, err);
    if (!rc)
        rc = attr_f64(f, fname, "pixel_size_m", &in->g.pixel_size_m, err);
    if (!rc)
        rc = attr_f64(f, fname, "dz_m", &in->g.dz_m, err);
    if (!rc && (pd[0] > 64 || od[0] > 512 || pd[1] > 4096 || pd[2] > 4096 || od[1] > 32768 || od[2] > 32768 ||
                od[1] < pd[1] || od[2] < pd[2]))
        rc = apt_err(err, APT_ERANGE,
                     "%s: /probe [%llu, %llu, %llu] or /object [%llu, %llu, %llu] out of range (M <= 64, L <= 512, "
                     "H, W <= 4096, object >= window and <= 32768)",
                     fname, (unsigned long long)pd[0], (unsigned long long)pd[1], (unsigned long long)pd[2],
                     (unsigned long long)od[0], (unsigned long long)od[1], (unsigned long long)od[2]);
    hid_t c64 = -1;
    int64_t *p64 = NULL;
    if (!rc) {
        in->J = (size_t)xd[0];
        size_t hw = (size_t)pd[1] * pd[2];
        in->probe = malloc(pd[0] * hw * 2 * sizeof(float));
        in->object = malloc(od[0] * od[1] * od[2] * 2 * sizeof(float));
        in->meas = malloc(in->J * hw * sizeof(float));
        in->pos = malloc(in->J * 2 * sizeof(int32_t));
        p64 = malloc(in->J * 2 * sizeof(int64_t));
        c64 = apt_h5io_complex64();
        if (!in->probe || !in->object || !in->meas || !in->pos || !p64 || c64 < 0)
            rc = apt_err(err, APT_ENOMEM, "%s: out of memory", fname);
    }
    if (!rc)
        rc = ds_read(f, fname, "/probe", c64, in->probe, err);
    if (!rc)
        rc = ds_read(f, fname, "/object", c64, in->object, err);
    if (!rc)
        rc = ds_read(f, fname, "/intensities", H5T_NATIVE_FLOAT, in->meas, err);
    if (!rc)
        rc = ds_read(f, fname, "/positions", H5T_NATIVE_INT64, p64, err);
    for (size_t j = 0; !rc && j < in->J; j++) {
        int64_t r = p64[2 * j], c = p64[2 * j + 1];
        if (r < 0 || c < 0 || r > in->g.Ny - in->g.H || c > in->g.Nx - in->g.W)
            rc = apt_err(err, APT_EINVAL,
                         "%s: /positions[%zu] = (%lld, %lld): the %d x %d window leaves the %d x %d object", fname, j,
                         (long long)r, (long long)c, in->g.H, in->g.W, in->g.Ny, in->g.Nx);
        in->pos[2 * j] = (int32_t)r;
        in->pos[2 * j + 1] = (int32_t)c;
    }
    size_t nm = in->J * (size_t)in->g.H * in->g.W;
    for (size_t i = 0; !rc && i < nm; i++)
        if (isinf(in->meas[i]))
            rc = apt_err(err, APT_EINVAL, "%s: /intensities: infinite value at element %zu", fname, i);
    free(p64);
    if (c64 >= 0)
        H5Tclose(c64);
    H5Fclose(f);
    return rc;
}

static int write_grad_out(const char *fname, const apt_ptycho_geom *g, double loss, const float *grad,
                          apt_error *err)
{
    hid_t f = H5Fcreate(fname, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        return apt_h5io_fail(err, APT_EIO, "%s: cannot create", fname);
    hid_t c64 = apt_h5io_complex64();
    hsize_t dims[3] = {(hsize_t)g->L, (hsize_t)g->Ny, (hsize_t)g->Nx};
    int rc = apt_h5io_write_scalar(f, "/loss", loss, err);
    if (!rc)
        rc = apt_h5io_write(f, "/grad", c64, c64, 3, dims, grad, err);
    if (c64 >= 0)
        H5Tclose(c64);
    if (H5Fclose(f) < 0 && !rc)
        rc = apt_h5io_fail(err, APT_EIO, "%s: close failed", fname);
    return rc;
}

static const char GRAD_HELP[] =
    "usage: aptomo kernel ptycho-grad [--threads N] [--backend B] IN.h5 OUT.h5\n"
    "Loss and object gradient of the multislice mixed-state model on one set of frames.\n"
    "  IN: /probe [M,H,W], /object [L,Ny,Nx] complex; /positions int [J,2] (row, col);\n"
    "      /intensities float [J,H,W] (centred, < 0 = not measured); attributes wavelength_m,\n"
    "      pixel_size_m, dz_m on /.   OUT: /loss float64, /grad complex64 [L,Ny,Nx]\n"
    "      (dL/dRe O + i dL/dIm O).\n"
    "  --threads N   threads, 0 = one per core, at most 64 (default 0)\n"
    "  --backend B   cpu, gpu or auto (default: cpu, the reference; gpu fails without a device)\n";

static int kernel_ptycho_grad(int argc, char **argv)
{
    static const struct option opts[] = {{"threads", required_argument, NULL, 't'},
                                         {"backend", required_argument, NULL, 'b'}, {0}};
    int threads = 0, c = 0;
    apt_backend backend = APT_BACKEND_CPU;
    cli_parser cp;
    cli_init(&cp, "kernel ptycho-grad", GRAD_HELP, NULL, opts, argc, argv);
    while ((c = cli_next(&cp)) > 0) {
        if (c == 'b')
            cli_backend(&cp, &backend);
        else
            cli_int(&cp, 0, 64, &threads);
    }
    int cli_rc = cli_done(&cp, c, 2, 2, "IN.h5 OUT.h5");
    if (cli_rc != CLI_GO)
        return cli_rc;
    const char *paths[2] = {cp.args[0], cp.args[1]};
    if ((c = cli_check_output("OUT.h5", paths[1])))
        return c;
    apt_h5io_quiet();
    apt_error err = {0};
    grad_in in = {0};
    int rc = read_grad_in(paths[0], &in, &err);
    if (rc) {
        fprintf(stderr, "aptomo kernel ptycho-grad: %s\n", err.msg);
        grad_in_free(&in);
        return cli_status(rc, CLI_SETUP);
    }
    apt_ptycho *p = NULL;
    rc = apt_ptycho_new(&in.g, threads, backend, &p, &err);
    if (rc == APT_ENODEV) { /* --backend gpu without a usable device: not the input's fault, nor the output's */
        fprintf(stderr, "aptomo kernel ptycho-grad: %s\n", err.msg);
        grad_in_free(&in);
        return CLI_FAIL;
    }
    float *grad = rc ? NULL : calloc((size_t)in.g.L * in.g.Ny * in.g.Nx * 2, sizeof(float));
    double loss = 0;
    if (!rc && !grad)
        rc = apt_err(&err, APT_ENOMEM, "out of memory for the gradient");
    if (!rc)
        rc = apt_ptycho_loss_grad(p, in.probe, in.object, in.pos, in.meas, in.J, &loss, grad, NULL, &err);
    int bad_input = rc && cli_status(rc, CLI_RUN) == CLI_USAGE;
    if (!rc)
        rc = write_grad_out(paths[1], &in.g, loss, grad, &err);
    if (rc)
        fprintf(stderr, "aptomo kernel ptycho-grad: %s: %s\n", bad_input ? paths[0] : paths[1], err.msg);
    free(grad);
    apt_ptycho_destroy(&p);
    grad_in_free(&in);
    return rc ? (bad_input ? CLI_USAGE : CLI_FAIL) : CLI_OK;
}

static const char HELP[] =
    "usage: aptomo kernel ptycho-grad|nn-forward|nn-init|nn-step|nn-axial-grad ...\n"
    "Stable entry points to single library kernels, for scripts and cross-checks (PyTorch, numpy):\n"
    "  ptycho-grad   loss and object gradient of the multislice model: IN.h5 -> OUT.h5\n"
    "  nn-forward    eval-mode network forward: W.safetensors IN.h5 (/x) -> OUT.h5 (/y)\n"
    "  nn-init       random weights for an arch: --arch ARCH.json OUT.safetensors\n"
    "  nn-step       training steps on one batch: W.safetensors IN.h5 (/x, /y) -> OUT.safetensors\n"
    "  nn-axial-grad training-mode axial attention core, forward + backward: IN.h5 -> OUT.h5\n"
    "aptomo help kernel SUB: the options of each.\n";

int cmd_kernel(int argc, char **argv)
{
    static const cli_sub subs[] = {{"ptycho-grad", kernel_ptycho_grad}, {"nn-forward", kernel_nn_forward},
                                   {"nn-init", kernel_nn_init}, {"nn-step", kernel_nn_step},
                                   {"nn-axial-grad", kernel_nn_axial_grad},
                                   {NULL, NULL}};
    return cli_dispatch("kernel", HELP, subs, argc, argv);
}
