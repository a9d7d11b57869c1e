/* refine.c - Approximant -> refined volume -> `volume`, `metrics`, `stop`. A worker of its own, so a network pass
 * (seconds to minutes) never holds up ingest or the per-angle reconstruction. Requests carry a snapshot of the
 * Approximant; if several queue up while the network runs, only the newest is refined (the older ones are stale).
 * Without model.weights the Approximant itself is published as the volume. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptd_int.h"
#include "aptomo/log.h"
#include "aptomo/metrics.h"
#include "aptomo/nn.h"
#include "aptomo/preview.h"
#include "aptomo/tile.h"
#include "aptomo/volume.h"

struct aptd_refine_req {
    int angles;
    char why[16];          /* "n_star", "update", "finalize" */
    apt_volume vol;        /* Approximant snapshot (owned) */
    double *theta;
    size_t n_theta;
};

static void req_free(aptd_refine_req **rp)
{
    if (!*rp)
        return;
    apt_volume_free(&(*rp)->vol);
    free((*rp)->theta);
    free(*rp);
    *rp = NULL;
}

void aptd_refine_request(aptd *d, const float *vol, const apt_grid3 *g, int angles, const double *theta,
                         size_t n_theta, const char *why)
{
    if (!d->refine_running)
        return;
    aptd_refine_req *r = calloc(1, sizeof *r);
    size_t n = (size_t)g->Z * g->Y * g->X;
    if (r) {
        r->vol = (apt_volume){g->Z, g->Y, g->X, {g->vz, g->vy, g->vx}, malloc(n * sizeof(float))};
        r->theta = malloc((n_theta ? n_theta : 1) * sizeof *r->theta);
    }
    if (!r || !r->vol.data || !r->theta) {
        req_free(&r);
        apt_error_log("refine: out of memory for a snapshot");
        return;
    }
    memcpy(r->vol.data, vol, n * sizeof(float));
    memcpy(r->theta, theta, n_theta * sizeof *theta);
    r->n_theta = n_theta;
    r->angles = angles;
    snprintf(r->why, sizeof r->why, "%s", why);
    if (aptd_queue_push(d->refine_q, r) != 0)
        req_free(&r);
}

static int net_forward(void *ctx, const float *x, int B, float *y, apt_error *err)
{
    aptd *d = ctx;
    return apt_nn_forward(d->model, x, B, d->patch[0], d->patch[1], d->patch[2], y, err);
}

/* The refined volume: the network tiled over the Approximant, or the Approximant itself. */
static int refine_volume(aptd *d, const apt_volume *in, apt_volume *out, apt_error *err)
{
    if (!d->model) {
        size_t n = (size_t)in->Z * in->Y * in->X;
        *out = (apt_volume){in->Z, in->Y, in->X, {in->voxel_m[0], in->voxel_m[1], in->voxel_m[2]},
                            malloc(n * sizeof(float))};
        if (!out->data)
            return apt_err(err, APT_ENOMEM, "out of memory");
        memcpy(out->data, in->data, n * sizeof(float));
        return APT_OK;
    }
    double mean, std;
    apt_nn_input_norm(d->model, &mean, &std);
    apt_tile_spec sp = {d->patch[0], d->patch[1], d->patch[2], d->scale[0], d->scale[1], d->scale[2],
                        d->s.model_batch, mean, std};
    *out = (apt_volume){in->Z * sp.fz, in->Y * sp.fy, in->X * sp.fx,
                        {in->voxel_m[0] / sp.fz, in->voxel_m[1] / sp.fy, in->voxel_m[2] / sp.fx}, NULL};
    out->data = malloc((size_t)out->Z * out->Y * out->X * sizeof(float));
    if (!out->data)
        return apt_err(err, APT_ENOMEM, "out of memory for the refined volume");
    int rc = apt_tile_run(in->data, in->Z, in->Y, in->X, &sp, net_forward, d, NULL, NULL, out->data, err);
    if (!rc)
        apt_nn_output_apply(d->model, out->data, (size_t)out->Z * out->Y * out->X);
    if (rc)
        apt_volume_free(out);
    return rc;
}

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

json_t *aptd_reference_pcc(aptd *d, const float *vol, const apt_grid3 *g)
{
    const apt_volume *r = &d->reference; /* loaded before the reconstruction worker starts, then read-only */
    if (!r->data || r->Z != g->Z || r->Y != g->Y || r->X != g->X)
        return NULL;
    return json_pack("{s:o}", "pcc", num_or_null(apt_metric_pcc(vol, r->data, (size_t)g->Z * g->Y * g->X, NULL)));
}

static void publish_stop(aptd *d, int angles, const char *reason)
{
    json_t *h = json_pack("{s:i,s:s,s:s}", "angles", angles, "reason", reason, "advice", "stop_acquisition");
    aptd_publish_json(d, "stop", h, NULL, 0);
    apt_info("stop advised to the beamline: %s at %d angles", reason, angles);
}

static void refine_one(aptd *d, aptd_refine_state *st, aptd_refine_req *r)
{
    double t0 = apt_now();
    apt_volume vol;
    apt_error err = {0};
    if (refine_volume(d, &r->vol, &vol, &err)) {
        apt_error_log("refine (%d angles): %s", r->angles, err.msg);
        return;
    }
    double secs = apt_now() - t0;
    size_t n = (size_t)vol.Z * vol.Y * vol.X;
    const char *wid = d->model ? apt_nn_weights_id(d->model) : "none";
    json_t *h = json_pack("{s:i,s:[i,i,i],s:[f,f,f],s:s,s:s,s:s,s:s,s:f}", "angles", r->angles, "shape", vol.Z,
                          vol.Y, vol.X, "voxel_size_m", vol.voxel_m[0], vol.voxel_m[1], vol.voxel_m[2], "dtype",
                          "float32", "order", "C", "weights", wid, "reason", r->why, "seconds", secs);
    aptd_publish_json(d, "volume", h, vol.data, n * sizeof(float));

    /* metrics: change vs the previous volume, and vs the reference when one is configured */
    json_t *m = json_pack("{s:i}", "angles", r->angles);
    double change_pcc = NAN;
    if (st->prev.data && st->prev.Z == vol.Z && st->prev.Y == vol.Y && st->prev.X == vol.X) {
        change_pcc = apt_metric_pcc(vol.data, st->prev.data, n, NULL);
        double ms = NAN;
        if (apt_metric_ms_ssim(vol.data, st->prev.data, vol.Z, vol.Y, vol.X, 0, &ms, NULL, NULL))
            ms = NAN; /* too small for five scales */
        json_object_set_new(m, "change", json_pack("{s:o,s:o}", "pcc", num_or_null(change_pcc), "ms_ssim",
                                                   num_or_null(ms)));
    } else {
        json_object_set_new(m, "change", json_null());
    }
    double metric_vals[5] = {NAN, NAN, NAN, NAN, NAN}; /* vs reference, for the result file */
    if (d->reference.data && d->reference.Z == vol.Z && d->reference.Y == vol.Y && d->reference.X == vol.X) {
        apt_metrics mm;
        if (!apt_metrics_compute(vol.data, d->reference.data, vol.Z, vol.Y, vol.X, 0, &mm, &err)) {
            json_object_set_new(m, "reference",
                                json_pack("{s:o,s:o,s:o,s:o,s:o}", "pcc", num_or_null(mm.pcc), "ms_ssim",
                                          num_or_null(mm.ms_ssim), "dsc", num_or_null(mm.dsc), "ber",
                                          num_or_null(mm.ber), "fsc_threshold_px", num_or_null(mm.fsc_threshold_px)));
            metric_vals[0] = mm.pcc, metric_vals[1] = mm.ms_ssim, metric_vals[2] = mm.dsc, metric_vals[3] = mm.ber;
            metric_vals[4] = mm.fsc_threshold_px;
            apt_metrics_free(&mm);
        } else {
            apt_warn("metrics vs reference: %s", err.msg);
        }
    } else if (d->reference.data) {
        apt_warn("tomo.reference is %dx%dx%d, the volume %dx%dx%d: not compared", d->reference.Z, d->reference.Y,
                 d->reference.X, vol.Z, vol.Y, vol.X);
    }
    aptd_publish_json(d, "metrics", m, NULL, 0);

    /* stop advice: once at N*, once when the volume stopped changing */
    st->unchanged = isfinite(change_pcc) && change_pcc >= d->s.converge_pcc ? st->unchanged + 1 : 0;
    if (!st->stop_n_star && r->angles >= d->s.n_star) {
        st->stop_n_star = 1;
        publish_stop(d, r->angles, "n_star");
    }
    if (!st->stop_converged && st->unchanged >= d->s.converge_updates) {
        st->stop_converged = 1;
        publish_stop(d, r->angles, "converged");
    }
    /* result file + preview, renamed into place */
    static const char *names[] = {"pcc_vs_reference", "ms_ssim_vs_reference", "dsc_vs_reference",
                                  "ber_vs_reference", "fsc_threshold_px_vs_reference"};
    apt_result res = {&vol, &r->vol, r->theta, r->n_theta, d->s.config_yaml, names, metric_vals,
                      isfinite(metric_vals[0]) ? 5 : 0};
    char path[1200], png[1200];
    snprintf(path, sizeof path, "%s/volume.h5", d->s.storage_dir);
    snprintf(png, sizeof png, "%s/volume.png", d->s.storage_dir);
    if (apt_result_write(path, &res, &err))
        apt_error_log("%s", err.msg);
    const apt_volume *vols[2] = {&vol, &r->vol};
    const char *labels[2] = {d->model ? "refined volume" : "volume (= Approximant: no model.weights)", "Approximant"};
    char title[128];
    snprintf(title, sizeof title, "aptomod volume, %d angles, weights %s", r->angles, wid);
    if (apt_preview_write(png, vols, labels, d->model ? 2 : 1, title, &err))
        apt_warn("%s", err.msg);
    apt_volume_free(&st->prev);
    st->prev = vol;
    apt_info("volume published: %d angles (%s), %.2f s, change PCC %.5f", r->angles, r->why, secs, change_pcc);
}

static void *refine_main(void *arg)
{
    aptd *d = arg;
    aptd_refine_req *r;
    while ((r = aptd_queue_pop(d->refine_q, -1))) {
        /* only the newest snapshot matters: skip the ones that queued up behind a long network pass */
        aptd_refine_req *newer;
        while ((newer = aptd_queue_pop(d->refine_q, 0))) {
            req_free(&r);
            aptd_queue_done(d->refine_q);
            r = newer;
        }
        refine_one(d, &d->refine, r);
        req_free(&r);
        aptd_queue_done(d->refine_q);
    }
    return NULL;
}

int aptd_refine_start(aptd *d, apt_error *err)
{
    int rc;
    if (d->s.model_weights[0]) {
        if ((rc = apt_nn_load_backend(d->s.model_weights, d->s.decode_threads, (apt_backend)d->s.backend,
                                      &d->model, err)))
            return apt_err_prefix(err, rc, "model.weights: ");
        atomic_store(&d->ran_nn, (int)apt_nn_backend(d->model));
        if ((rc = apt_nn_patch_shape(d->model, d->patch, d->scale, err)))
            return apt_err_prefix(err, rc, "model.weights: ");
        apt_info("model %s (weights %s): patch %dx%dx%d -> x(%d,%d,%d)", d->s.model_weights,
                 apt_nn_weights_id(d->model), d->patch[0], d->patch[1], d->patch[2], d->scale[0], d->scale[1],
                 d->scale[2]);
    }
    if (d->s.reference[0] && (rc = apt_volume_read_spec(d->s.reference, "/exchange/data", &d->reference, err)))
        return apt_err_prefix(err, rc, "tomo.reference: ");
    if (pthread_create(&d->refiner, NULL, refine_main, d))
        return apt_err(err, APT_ENOMEM, "cannot start refinement thread");
    d->refine_running = 1;
    return APT_OK;
}

void aptd_refine_stop(aptd *d)
{
    if (d->refine_running) {
        aptd_queue_wait_idle(d->refine_q);
        aptd_queue_close(d->refine_q);
        pthread_join(d->refiner, NULL);
        d->refine_running = 0;
    }
    apt_volume_free(&d->refine.prev);
    apt_volume_free(&d->reference);
    apt_nn_destroy(&d->model);
}
