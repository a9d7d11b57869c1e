/* probe.c - partially coherent probe modes for simulation and for the daemon's inline physics.probe model.
 * The probe is built in the angular spectrum: a zone-plate pupil (annulus: central stop .. NA = lambda / (2 dr))
 * times a Hermite-Gaussian mode of a Gaussian-Schell source, times the Fresnel defocus factor
 * exp(-i pi lambda d q^2) (the multislice propagator's sign), inverse-FFT'd and centred on [H/2, W/2].
 * Decision: no LAPACK is linked, so the truncated modes are made orthonormal by modified Gram-Schmidt in order of
 * decreasing occupancy (q^n, n = nx + ny), and the occupancies are the GSM's; docs/PHYSICS.md. */
#include <complex.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/fft.h"
#include "aptomo/sim.h"
#include "aptomo/h5io.h"

#define FIT_FRACTION 0.8    /* the defocused beam must stay within this fraction of the window */
#define GS_MIN_NORM 1e-6    /* relative residual below which a mode is linearly dependent on the previous ones */

double apt_sim_object_pixel_m(double energy_keV, double distance_m, double pixel_size_m, int N)
{
    return apt_sim_wavelength_m(energy_keV) * distance_m / ((double)N * pixel_size_m);
}

/* Physicists' Hermite polynomial H_n(x) by recurrence. */
static double hermite(int n, double x)
{
    double h0 = 1, h1 = 2 * x;
    if (n == 0)
        return h0;
    for (int k = 1; k < n; k++) {
        double h2 = 2 * x * h1 - 2 * k * h0;
        h0 = h1;
        h1 = h2;
    }
    return h1;
}

/* Mode m in order of total degree n = nx + ny (occupancy q^n), ny ascending within a degree. */
static void mode_order(int m, int *nx, int *ny)
{
    int n = 0;
    while (m > n) {
        m -= n + 1;
        n++;
    }
    *ny = m;
    *nx = n - m;
}

static int check_opts(const apt_sim_probe_opts *o, int M, int H, int W, double px, apt_error *err)
{
    if (M < 1 || M > 64)
        return apt_err(err, APT_EINVAL, "physics.modes: %d out of range 1..64", M);
    if (H < 8 || W < 8 || H > 16384 || W > 16384)
        return apt_err(err, APT_EINVAL, "detector.crop: probe window %dx%d out of range 8..16384", H, W);
    if (!(px > 0) || !(o->energy_keV > 0))
        return apt_err(err, APT_EINVAL, "probe: pixel size and physics.energy_keV must be positive");
    if (!(o->zp_diameter_m > 0) || !(o->outer_zone_m > 0))
        return apt_err(err, APT_EINVAL, "physics.probe.zp_diameter_m/outer_zone_m: must be positive");
    if (!(o->central_stop >= 0 && o->central_stop < 1))
        return apt_err(err, APT_EINVAL, "physics.probe.central_stop: %g outside [0, 1)", o->central_stop);
    if (!(o->coherence > 0 && o->coherence <= 1))
        return apt_err(err, APT_EINVAL, "physics.probe.coherence: %g outside (0, 1]", o->coherence);
    if (!(o->photons > 0) || !isfinite(o->photons))
        return apt_err(err, APT_EINVAL, "sim.photons_per_frame: %g must be positive", o->photons);
    double lam = apt_sim_wavelength_m(o->energy_keV), na = lam / (2 * o->outer_zone_m);
    /* bright-field disc radius in frequency pixels: NA / lambda over the spacing 1 / (N px) */
    double rp = na / lam * fmin(H, W) * px;
    if (rp > fmin(H, W) / 2.0)
        return apt_err(err, APT_EINVAL, "physics.probe.outer_zone_m: NA %.3g mrad puts the bright field (radius "
                       "%.1f px) outside the %dx%d detector crop", na * 1e3, rp, H, W);
    if (rp < 2)
        return apt_err(err, APT_EINVAL, "physics.probe.outer_zone_m: NA %.3g mrad gives a bright field of "
                       "%.2f px radius: too small to sample", na * 1e3, rp);
    double diam = 2 * na * fabs(o->defocus_m) + 2 * lam / na; /* geometric cone + focus size */
    if (diam > FIT_FRACTION * fmin(H, W) * px)
        return apt_err(err, APT_EINVAL, "physics.probe.defocus_m: a %.3g m defocus gives a %.3g um beam, larger "
                       "than %.0f%% of the %.3g um probe window", o->defocus_m, diam * 1e6, FIT_FRACTION * 100,
                       fmin(H, W) * px * 1e6);
    return APT_OK;
}

int apt_sim_probe(const apt_sim_probe_opts *o, int M, int H, int W, double px, float *modes, double *occupancy,
                  apt_error *err)
{
    int rc = check_opts(o, M, H, W, px, err);
    if (rc)
        return rc;
    double lam = apt_sim_wavelength_m(o->energy_keV), na = lam / (2 * o->outer_zone_m);
    /* GSM: power fraction of mode 0 is (1-q)^2 in 2-D; with s = (1+q)/(1-q) the modes are
       H_nx(sqrt(2c) u) H_ny(sqrt(2c) v) exp(-c (u^2+v^2)), c = s / (4 sigma^2), sigma = pupil radius = 1. */
    double q = 1.0 - sqrt(o->coherence), s = (1 + q) / (1 - q), cw = s / 4.0, sc = sqrt(2 * cw);
    size_t hw = (size_t)H * W;
    double complex *acc = malloc((size_t)M * hw * sizeof *acc);
    float *buf = apt_fft_alloc((size_t)M * hw);
    double *occ = malloc((size_t)M * sizeof *occ);
    apt_fft_plan *plan = NULL;
    if (!acc || !buf || !occ) {
        rc = apt_err(err, APT_ENOMEM, "probe: out of memory for %d modes of %dx%d", M, H, W);
        goto out;
    }
    if ((rc = apt_fft_plan_new(M, H, W, 0, APT_BACKEND_CPU, &plan, err)))
        goto out;
    for (int m = 0; m < M; m++) {
        int nx, ny;
        mode_order(m, &nx, &ny);
        occ[m] = pow(q, nx + ny);
        float *f = buf + 2 * (size_t)m * hw;
        for (int r = 0; r < H; r++) {
            double qy = (r < (H + 1) / 2 ? r : r - H) / (H * px), u = qy * lam / na;
            for (int c = 0; c < W; c++) {
                double qx = (c < (W + 1) / 2 ? c : c - W) / (W * px), v = qx * lam / na;
                double rho = sqrt(u * u + v * v), amp;
                if (o->model == APT_SIM_PROBE_ZONEPLATE)
                    amp = (rho <= 1.0 && rho >= o->central_stop) ? 1.0 : 0.0;
                else
                    amp = exp(-rho * rho);
                if (amp != 0)
                    amp *= hermite(nx, sc * v) * hermite(ny, sc * u) * exp(-cw * rho * rho);
                double ph = -M_PI * lam * o->defocus_m * (qx * qx + qy * qy);
                f[2 * ((size_t)r * W + c)] = (float)(amp * cos(ph));
                f[2 * ((size_t)r * W + c) + 1] = (float)(amp * sin(ph));
            }
        }
    }
    if ((rc = apt_fft_inverse(plan, buf, err)))
        goto out;
    /* fftshift into place (mode centre at [H/2, W/2]) and modified Gram-Schmidt in double */
    for (int m = 0; m < M; m++) {
        double complex *a = acc + (size_t)m * hw;
        const float *f = buf + 2 * (size_t)m * hw;
        for (int r = 0; r < H; r++)
            for (int c = 0; c < W; c++) {
                size_t d = (size_t)((r + H / 2) % H) * W + (size_t)((c + W / 2) % W), i = (size_t)r * W + c;
                a[d] = f[2 * i] + I * f[2 * i + 1];
            }
        double n0 = 0;
        for (size_t i = 0; i < hw; i++)
            n0 += creal(a[i] * conj(a[i]));
        for (int k = 0; k < m; k++) {
            const double complex *b = acc + (size_t)k * hw;
            double complex dot = 0;
            for (size_t i = 0; i < hw; i++)
                dot += conj(b[i]) * a[i];
            for (size_t i = 0; i < hw; i++)
                a[i] -= dot * b[i];
        }
        double n1 = 0;
        for (size_t i = 0; i < hw; i++)
            n1 += creal(a[i] * conj(a[i]));
        if (!(n0 > 0) || n1 < GS_MIN_NORM * n0) {
            rc = apt_err(err, APT_EINVAL, "physics.modes: mode %d is not independent of the previous ones: %d modes "
                         "are more than the pupil (%.1f px radius) can hold", m, M,
                         na / lam * fmin(H, W) * px);
            goto out;
        }
        double inv = 1.0 / sqrt(n1);
        for (size_t i = 0; i < hw; i++)
            a[i] *= inv;
    }
    double tot = 0;
    for (int m = 0; m < M; m++)
        tot += occ[m];
    for (int m = 0; m < M; m++) {
        occ[m] *= o->photons / tot;
        /* F unnormalised: sum_q |F[P]|^2 = H W sum |P|^2, so |P|^2 sums to occupancy / (H W) */
        double sc_m = sqrt(occ[m] / (double)hw);
        const double complex *a = acc + (size_t)m * hw;
        for (size_t i = 0; i < hw; i++) {
            modes[2 * ((size_t)m * hw + i)] = (float)(creal(a[i]) * sc_m);
            modes[2 * ((size_t)m * hw + i) + 1] = (float)(cimag(a[i]) * sc_m);
        }
        if (occupancy)
            occupancy[m] = occ[m];
    }
out:
    apt_fft_plan_destroy(&plan);
    apt_fft_free(buf);
    free(acc);
    free(occ);
    return rc;
}

/* /entry/probe/modes of an HDF5 file, which must be [M,H,W] complex as the configuration says. */
static int load_probe_file(const char *path, int M, int N, double px, float *modes, apt_error *err)
{
    static const char *P = "/entry/probe/modes", *PX = "/entry/probe/pixel_size_m";
    apt_h5io_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return apt_h5io_fail(err, APT_EIO, "physics.probe: %s: cannot open as HDF5", path);
    int rc = APT_OK;
    hsize_t want[3] = {(hsize_t)M, (hsize_t)N, (hsize_t)N}, dims[3];
    hid_t d = apt_h5io_open(f, path, P, err), mt = -1, ft = -1;
    if (d < 0) {
        rc = APT_EINVAL;
        goto out;
    }
    if ((rc = apt_h5io_shape(d, path, P, 3, NULL, dims, err)))
        goto out;
    if (dims[0] != want[0] || dims[1] != want[1] || dims[2] != want[2]) {
        rc = apt_err(err, APT_EINVAL, "%s: %s: shape [%llu,%llu,%llu], the configuration needs [%d,%d,%d] "
                     "(physics.modes, detector.crop)", path, P, (unsigned long long)dims[0],
                     (unsigned long long)dims[1], (unsigned long long)dims[2], M, N, N);
        goto out;
    }
    ft = H5Dget_type(d);
    if (ft < 0 || H5Tget_class(ft) != H5T_COMPOUND || H5Tget_nmembers(ft) != 2 ||
        H5Tget_member_index(ft, "r") < 0 || H5Tget_member_index(ft, "i") < 0) {
        rc = apt_err(err, APT_EINVAL, "%s: %s: not a complex compound {r, i}", path, P);
        goto out;
    }
    mt = apt_h5io_complex64();
    if (mt < 0 || H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, modes) < 0) {
        rc = apt_h5io_fail(err, APT_EIO, "%s: %s: read failed", path, P);
        goto out;
    }
    for (size_t i = 0; i < 2 * (size_t)M * N * N; i++)
        if (!isfinite(modes[i])) {
            rc = apt_err(err, APT_EINVAL, "%s: %s: non-finite value", path, P);
            goto out;
        }
    if (apt_h5io_exists(f, PX)) {
        double fpx;
        if ((rc = apt_h5io_read_scalar(f, path, PX, &fpx, err)))
            goto out;
        if (!(fabs(fpx / px - 1) < 1e-3))
            rc = apt_err(err, APT_EINVAL, "%s: %s = %.6g m, but physics.* give an object pixel of %.6g m", path,
                         PX, fpx, px);
    }
out:
    if (mt >= 0)
        H5Tclose(mt);
    if (ft >= 0)
        H5Tclose(ft);
    if (d >= 0)
        H5Dclose(d);
    H5Fclose(f);
    return rc;
}

int apt_sim_probe_from_config(const apt_config *cfg, double photons, float **modes, int *M, int *H, int *W,
                              double *pixel_m, apt_error *err)
{
    *modes = NULL;
    int m = (int)apt_config_int(cfg, "physics.modes", NULL), n = (int)apt_config_int(cfg, "detector.crop", NULL);
    apt_sim_probe_opts o = {
        .model = apt_config_enum(cfg, "physics.probe.model", NULL) == 1 ? APT_SIM_PROBE_GAUSSIAN
                                                                         : APT_SIM_PROBE_ZONEPLATE,
        .energy_keV = apt_config_float(cfg, "physics.energy_keV", NULL),
        .zp_diameter_m = apt_config_float(cfg, "physics.probe.zp_diameter_m", NULL),
        .outer_zone_m = apt_config_float(cfg, "physics.probe.outer_zone_m", NULL),
        .central_stop = apt_config_float(cfg, "physics.probe.central_stop", NULL),
        .defocus_m = apt_config_float(cfg, "physics.probe.defocus_m", NULL),
        .coherence = apt_config_float(cfg, "physics.probe.coherence", NULL),
        .photons = photons,
    };
    double px = apt_sim_object_pixel_m(o.energy_keV, apt_config_float(cfg, "physics.detector_distance_m", NULL),
                                       apt_config_float(cfg, "physics.pixel_size_m", NULL), n);
    size_t cnt = 2 * (size_t)m * n * n;
    float *buf = apt_fft_alloc(cnt / 2);
    if (!buf)
        return apt_err(err, APT_ENOMEM, "probe: out of memory for %d modes of %dx%d", m, n, n);
    int rc;
    if (apt_config_union_form(cfg, "physics.probe", NULL) == APT_CFG_FORM_STRING) {
        rc = load_probe_file(apt_config_str(cfg, "physics.probe", NULL), m, n, px, buf, err);
        if (!rc && photons > 0) { /* rescale the file's modes to the requested fluence */
            double tot = 0;
            for (size_t i = 0; i < cnt; i++)
                tot += (double)buf[i] * buf[i];
            tot *= (double)n * n;
            if (!(tot > 0))
                rc = apt_err(err, APT_EINVAL, "physics.probe: %s: the modes are all zero",
                             apt_config_str(cfg, "physics.probe", NULL));
            for (size_t i = 0; !rc && i < cnt; i++)
                buf[i] = (float)(buf[i] * sqrt(photons / tot));
        }
    } else {
        rc = photons > 0 ? apt_sim_probe(&o, m, n, n, px, buf, NULL, err)
                         : apt_err(err, APT_EINVAL, "physics.probe: the inline model needs a photon count");
    }
    if (rc) {
        apt_fft_free(buf);
        return rc;
    }
    float *outp = malloc(cnt * sizeof *outp); /* plain malloc'd for the caller (free()) */
    if (!outp) {
        apt_fft_free(buf);
        return apt_err(err, APT_ENOMEM, "probe: out of memory");
    }
    memcpy(outp, buf, cnt * sizeof *outp);
    apt_fft_free(buf);
    *modes = outp;
    *M = m;
    *H = *W = n;
    *pixel_m = px;
    return APT_OK;
}
