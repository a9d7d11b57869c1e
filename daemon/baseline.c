/* baseline.c - the classical baseline beside the Approximant, live: every reconstructed angle's integrated phase
 * (apt_angle_projection, the same projections `aptomo approximant --projections` writes) is kept, and after each
 * angle FBP or SART of all angles so far is published as `baseline` and written to storage.dir/baseline.h5 + .png,
 * so the operator sees next to the APT volume what classical tomography makes of the same few angles. The
 * detector is as wide as the slab's widest shadow at any tilt, so one width serves every angle set; the recon
 * worker runs it (milliseconds for FBP; SART costs a few of its passes). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptd_int.h"
#include "aptomo/log.h"
#include "aptomo/preview.h"
#include "aptomo/tomo.h"
#include "aptomo/volume.h"

static const char *method_name[] = {"none", "fbp", "sart"};

void aptd_grid_tilts(const apt_grid3 *g, double th[3])
{
    /* the shadow's width, (X-1)/2 |cos| + (Z-1)/2 |sin|, peaks at tan = (Z-1)/(X-1) */
    th[0] = 0;
    th[1] = atan2(g->Z - 1, g->X - 1) * 180.0 / M_PI;
    th[2] = 90;
}

int aptd_baseline_init(aptd *d, apt_error *err)
{
    aptd_baseline *b = &d->rs.base;
    const apt_grid3 *g = &d->s.angle.grid;
    memset(b, 0, sizeof *b);
    b->method = d->s.baseline;
    if (b->method == APTD_BASELINE_NONE)
        return APT_OK;
    double th[3]; /* any tilt may come */
    aptd_grid_tilts(g, th);
    int U = apt_angle_proj_width(g->Z, g->X, th, 3);
    if (U < 0)
        return apt_err(err, APT_ERANGE, "tomo.baseline: grid %dx%d too wide for a projection", g->Z, g->X);
    b->U = U;
    b->row = (size_t)g->Y * U;
    if (!(b->vol = malloc((size_t)g->Z * g->Y * g->X * sizeof *b->vol)))
        return apt_err(err, APT_ENOMEM, "tomo.baseline: out of memory for the volume");
    return APT_OK;
}

void aptd_baseline_free(aptd *d)
{
    aptd_baseline *b = &d->rs.base;
    free(b->proj);
    free(b->theta);
    free(b->vol);
    memset(b, 0, sizeof *b);
}

void aptd_baseline_reset(aptd *d)
{
    d->rs.base.n = 0;
}

static void publish(aptd *d, const aptd_baseline *b, const double *theta)
{
    const apt_grid3 *g = &d->s.angle.grid;
    size_t nv = (size_t)g->Z * g->Y * g->X;
    json_t *h = json_pack("{s:i,s:s,s:[i,i,i],s:[f,f,f],s:s,s:s}", "angles", b->n, "method", method_name[b->method],
                          "shape", g->Z, g->Y, g->X, "voxel_size_m", g->vz, g->vy, g->vx, "dtype", "float32", "order",
                          "C");
    json_t *ref = aptd_reference_pcc(d, b->vol, g); /* the dashboard's quality-vs-angles plot */
    if (ref)
        json_object_set_new(h, "reference", ref);
    aptd_publish_json(d, "baseline", h, b->vol, nv * sizeof(float));
    apt_volume v = {g->Z, g->Y, g->X, {g->vz, g->vy, g->vx}, b->vol};
    apt_result res = {&v, NULL, theta, (size_t)b->n, d->s.config_yaml, NULL, NULL, 0};
    char path[1200], png[1200], title[96], label[48];
    snprintf(path, sizeof path, "%s/baseline.h5", d->s.storage_dir);
    snprintf(png, sizeof png, "%s/baseline.png", d->s.storage_dir);
    apt_error err = {0};
    if (apt_result_write(path, &res, &err))
        apt_error_log("baseline: %s", err.msg);
    const apt_volume *vols[1] = {&v};
    snprintf(label, sizeof label, "%s (delta)", b->method == APTD_BASELINE_FBP ? "FBP" : "SART");
    const char *labels[1] = {label};
    snprintf(title, sizeof title, "aptomod live %s baseline, %d angles", method_name[b->method], b->n);
    if (apt_preview_write(png, vols, labels, 1, title, &err))
        apt_warn("baseline: %s", err.msg);
}

int aptd_baseline_push(aptd *d, const apt_angle_result *res, double k, double angle_deg)
{
    aptd_baseline *b = &d->rs.base;
    const apt_grid3 *g = &d->s.angle.grid;
    if (b->method == APTD_BASELINE_NONE || b->n >= APTD_MAX_ANGLES)
        return -1;
    apt_error err = {0};
    if ((size_t)b->n >= b->cap) { /* grows by doubling; bounded by APTD_MAX_ANGLES rows */
        size_t cap = b->cap ? 2 * b->cap : 32;
        float *p = realloc(b->proj, cap * b->row * sizeof *p);
        if (p)
            b->proj = p;
        double *t = p ? realloc(b->theta, cap * sizeof *t) : NULL;
        if (!p || !t) {
            apt_error_log("baseline: out of memory for %zu projections; this angle is left out", cap);
            return -1;
        }
        b->theta = t, b->cap = cap;
    }
    if (apt_angle_projection(res, k, g, b->U, b->proj + (size_t)b->n * b->row, &err)) {
        apt_error_log("baseline: %s", err.msg);
        return -1;
    }
    b->theta[b->n++] = angle_deg;
    return 0;
}

void aptd_baseline_update(aptd *d)
{
    aptd_baseline *b = &d->rs.base;
    const apt_grid3 *g = &d->s.angle.grid;
    if (b->method == APTD_BASELINE_NONE || b->n == 0)
        return;
    apt_error err = {0};
    const double *th = b->theta;
    apt_proj *p = NULL;
    double t0 = apt_now();
    int rc = apt_proj_new(g->Z, g->Y, g->X, b->U, th, b->n, d->s.angle.threads, d->s.angle.backend, &p, &err);
    if (!rc && b->method == APTD_BASELINE_FBP) {
        rc = apt_fbp(p, b->proj, APT_FBP_RAMP, b->vol, &err);
    } else if (!rc) {
        apt_iter_opts o;
        apt_iter_opts_default(&o, "sart");
        memset(b->vol, 0, (size_t)g->Z * g->Y * g->X * sizeof *b->vol);
        rc = apt_sart(p, b->proj, &o, b->vol, &err);
    }
    if (p)
        atomic_store(&d->ran_proj, (int)apt_proj_backend(p));
    apt_proj_destroy(&p);
    if (rc) {
        apt_error_log("baseline %s: %s", method_name[b->method], err.msg);
        return;
    }
    apt_debug("baseline %s of %d angles in %.3f s", method_name[b->method], b->n, apt_now() - t0);
    publish(d, b, th);
}

void aptd_baseline_add(aptd *d, const apt_angle_result *res, double k, double angle_deg)
{
    if (aptd_baseline_push(d, res, k, angle_deg) == 0)
        aptd_baseline_update(d);
}
