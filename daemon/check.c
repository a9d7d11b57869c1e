/* check.c - every check that start-up makes on a configuration, made before anything starts: `aptomod --check`,
 * `--print-config` and the start itself run aptd_settings_check after aptd_settings_from_config, so a config that
 * passes --check starts (short of runtime faults: a port in use, a full disk), and each refusal names the key's
 * FILE:LINE:COLUMN and exits 2 (systemd's RestartPreventExitStatus=2 then stops the restart loop). Checks have no
 * lasting effect: storage.dir is probed by creating and removing a temporary entry, no socket is bound. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aptomo/angle.h"
#include "aptomo/backend.h"
#include "aptomo/config.h"
#include "aptomo/endpoint.h"
#include "aptomo/geometry.h"
#include "aptomo/nn.h"
#include "aptomo/tomo.h"
#include "aptomo/volume.h"
#include "aptomod/aptd.h"

static int check_endpoint(const apt_config *cfg, const char *key, const char *ep, int mode, apt_error *err)
{
    if (apt_endpoint_check(ep, mode, err))
        return apt_config_blame(cfg, key, err);
    return APT_OK;
}

/* Sockets the daemon binds must not share an address: the second bind would fail at start. */
static int check_endpoints(const apt_config *cfg, const aptd_settings *s, apt_error *err)
{
    int rc;
    for (int i = 0; i < s->n_endpoints; i++)
        if ((rc = check_endpoint(cfg, "detector.endpoints", s->endpoints[i], APT_EP_CONNECT, err)))
            return rc;
    if (s->metadata_endpoint[0] &&
        (rc = check_endpoint(cfg, "metadata.endpoint", s->metadata_endpoint,
                             s->metadata_bind ? APT_EP_BIND : APT_EP_CONNECT, err)))
        return rc;
    if ((rc = check_endpoint(cfg, "results.endpoint", s->results_endpoint, APT_EP_BIND, err)) ||
        (rc = check_endpoint(cfg, "control.endpoint", s->control_endpoint, APT_EP_BIND, err)))
        return rc;
    if (!strcmp(s->results_endpoint, s->control_endpoint))
        return apt_config_fail(cfg, "control.endpoint", err, APT_EINVAL, "'%s' is also results.endpoint; each "
                               "socket needs its own address", s->control_endpoint);
    if (s->metadata_bind && (!strcmp(s->metadata_endpoint, s->results_endpoint) ||
                             !strcmp(s->metadata_endpoint, s->control_endpoint)))
        return apt_config_fail(cfg, "metadata.endpoint", err, APT_EINVAL, "'%s' is also bound by results or "
                               "control; each socket needs its own address", s->metadata_endpoint);
    return APT_OK;
}

/* storage.dir is created on start: it must exist as a writable directory, or its nearest existing ancestor must
   let us create it. Probed for real (access() says yes to root on /proc). */
static int check_storage(const apt_config *cfg, const char *dir, apt_error *err)
{
    char path[1100];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return apt_config_fail(cfg, "storage.dir", err, APT_EINVAL, "path too long");
    int exists = 1;
    struct stat st;
    while (stat(path, &st) != 0) {
        if (errno != ENOENT)
            return apt_config_fail(cfg, "storage.dir", err, APT_EIO, "%s: %s", path, strerror(errno));
        exists = 0;
        char *slash = strrchr(path, '/');
        if (!slash)
            snprintf(path, sizeof path, ".");
        else if (slash == path)
            path[1] = '\0';
        else
            *slash = '\0';
    }
    if (!S_ISDIR(st.st_mode))
        return apt_config_fail(cfg, "storage.dir", err, APT_EINVAL, "%s exists and is not a directory", path);
    char probe[1200];
    snprintf(probe, sizeof probe, "%s/.aptomod-check-XXXXXX", path);
    if (!mkdtemp(probe)) {
        int e = errno;
        if (exists)
            return apt_config_fail(cfg, "storage.dir", err, APT_EIO, "'%s' is not writable: %s", dir, strerror(e));
        return apt_config_fail(cfg, "storage.dir", err, APT_EIO, "'%s' cannot be created: no new directory can be "
                               "made in %s (%s)", dir, path, strerror(e));
    }
    rmdir(probe);
    return APT_OK;
}

/* tomo.grid is a list of numbers in the schema; the sides must be whole (the int cast would hide it) and the voxel
   sizes positive (blamed on their own key); apt_grid3_check then bounds the sides. */
static int check_grid(const apt_config *cfg, const apt_grid3 *g, apt_error *err)
{
    static const char *side[3] = {"Z", "Y", "X"}, *vox[3] = {"vz", "vy", "vx"};
    const double v[3] = {g->vz, g->vy, g->vx};
    for (int a = 0; a < 3; a++) {
        double n = apt_config_list_float(cfg, "tomo.grid", (size_t)a, NULL);
        if (n != floor(n))
            return apt_config_fail(cfg, "tomo.grid", err, APT_EINVAL, "%s = %g: each side must be a whole number "
                                   "of voxels", side[a], n);
        if (!(v[a] > 0) || !isfinite(v[a]))
            return apt_config_fail(cfg, "tomo.voxel_size_m", err, APT_EINVAL, "%s = %g m: must be > 0", vox[a],
                                   v[a]);
    }
    if (apt_grid3_check(g, err))
        return apt_config_blame(cfg, "tomo.grid", err);
    return APT_OK;
}

/* The per-angle reconstruction as start-up builds it: the context, and the slice stack at the tilts where the
   slab's shadow is narrowest (0 deg), widest and deepest (90 deg), which bound every stack an angle can need. */
static int check_physics(const apt_config *cfg, const aptd_settings *s, apt_error *err)
{
    const apt_angle_cfg *a = &s->angle;
    int rc = check_grid(cfg, &a->grid, err);
    if (rc)
        return rc;
    apt_angle_ctx *ctx = NULL;
    if ((rc = apt_angle_ctx_new(a, s->probe, &ctx, err)))
        return apt_config_blame(cfg, "physics", err);
    const apt_grid3 *g = &a->grid;
    double th[3];
    aptd_grid_tilts(g, th);
    for (int i = 0; i < 3 && !rc; i++) {
        apt_stack_geom sg;
        if ((rc = apt_stack_geom_for(g, th[i], a->L, apt_angle_pixel(ctx), a->pad_px < 0 ? a->crop / 2 : a->pad_px,
                                     &sg, err)))
            apt_err_prefix(err, rc, "at a %.1f deg tilt the slice stack for this grid and object pixel (%.3g m) "
                           "is too large: ", th[i], apt_angle_pixel(ctx));
    }
    apt_angle_ctx_destroy(&ctx);
    if (rc)
        return apt_config_blame(cfg, "tomo.grid", err);
    if (s->baseline != APTD_BASELINE_NONE && apt_angle_proj_width(g->Z, g->X, th, 3) < 0)
        return apt_config_fail(cfg, "tomo.baseline", err, APT_ERANGE, "the %dx%d grid's projections would be "
                               "wider than %d pixels; set tomo.baseline: none", g->Z, g->X, APT_TOMO_MAX_SIDE);
    return APT_OK;
}

/* model.weights loads as the refinement stage loads it; the reference must match the volume it is compared with
   (the grid, times the network's scale), or every metrics message would skip it. */
static int check_refine(const apt_config *cfg, const aptd_settings *s, apt_error *err)
{
    int scale[3] = {1, 1, 1}, rc;
    if (s->model_weights[0]) {
        apt_nn_model *m = NULL;
        int patch[3];
        rc = apt_nn_load_backend(s->model_weights, 1, APT_BACKEND_CPU, &m, err); /* the file, not the device */
        if (!rc)
            rc = apt_nn_patch_shape(m, patch, scale, err);
        apt_nn_destroy(&m);
        if (rc)
            return apt_config_blame(cfg, "model.weights", err);
    }
    if (!s->reference[0])
        return APT_OK;
    apt_volume ref = {0};
    if ((rc = apt_volume_read_spec(s->reference, "/exchange/data", &ref, err)))
        return apt_config_blame(cfg, "tomo.reference", err);
    int rz = ref.Z, ry = ref.Y, rx = ref.X;
    apt_volume_free(&ref);
    const apt_grid3 *g = &s->angle.grid;
    if (s->probe && (rz != g->Z * scale[0] || ry != g->Y * scale[1] || rx != g->X * scale[2]))
        return apt_config_fail(cfg, "tomo.reference", err, APT_EINVAL, "%s is %dx%dx%d but the volume is %dx%dx%d "
                               "(tomo.grid%s): it could never be compared", s->reference, rz, ry, rx,
                               g->Z * scale[0], g->Y * scale[1], g->X * scale[2],
                               s->model_weights[0] ? " times the network's scale" : "");
    return APT_OK;
}

/* web.address must be a numeric address (the dashboard binds it; a host name would need DNS at start). */
static int check_web(const apt_config *cfg, const aptd_settings *s, apt_error *err)
{
    struct sockaddr_storage sa;
    int v6;
    if (s->web_port && aptd_web_address(s->web_address, s->web_port, &sa, &v6))
        return apt_config_fail(cfg, "web.address", err, APT_EINVAL, "'%s' is not a numeric IPv4 or IPv6 address",
                               s->web_address);
    return APT_OK;
}

/* compute.backend gpu is a promise the machine must keep before the first angle arrives, not at it. */
static int check_compute(const apt_config *cfg, const aptd_settings *s, apt_error *err)
{
    apt_backend got;
    if (apt_backend_resolve((apt_backend)s->backend, "compute", 1, &got, err))
        return apt_config_blame(cfg, "compute.backend", err);
    return APT_OK;
}

int aptd_settings_check(const apt_config *cfg, const aptd_settings *s, apt_error *err)
{
    int rc = check_endpoints(cfg, s, err);
    if (!rc)
        rc = check_web(cfg, s, err);
    if (!rc)
        rc = check_compute(cfg, s, err);
    if (!rc)
        rc = check_storage(cfg, s->storage_dir, err);
    if (!rc && s->probe)
        rc = check_physics(cfg, s, err);
    if (!rc)
        rc = check_refine(cfg, s, err);
    if (!rc)
        rc = aptd_auth_check(cfg, s, err);
    return rc;
}
