/* recon.c - complete angles -> per-angle ptychography -> the Approximant -> `angle` and `approximant` messages and
 * the result file. One worker takes angles in completion order, so the Approximant grows one angle at a time while
 * ingest of the next angle goes on (apt_angle_reconstruct is multi-threaded inside). Same code as
 * `aptomo approximant`. Each angle also feeds the live classical baseline (baseline.c). Without a probe (physics
 * disabled) the worker only reports what arrived. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptd_int.h"
#include "aptomo/angle.h"
#include "aptomo/approximant.h"
#include "aptomo/geometry.h"
#include "aptomo/log.h"
#include "aptomo/preview.h"
#include "aptomo/sealed.h"
#include "aptomo/volume.h"

void aptd_angle_free(aptd *d, aptd_angle **ap)
{
    aptd_angle *a = *ap;
    if (!a)
        return;
    for (size_t i = 0; a->frames && i < a->n_frames; i++)
        aptd_pool_put(d->patterns, a->frames[i]);
    free(a->frames);
    free(a->pos);
    free(a->spill_path); /* its file stays for the next start */
    free(a);
    *ap = NULL;
}

/* Mean counts per pattern over measured pixels (negative = not measured). */
static double mean_counts(const aptd_angle *a)
{
    double sum = 0;
    size_t npx = (size_t)a->n * a->n;
    for (size_t i = 0; i < a->n_frames; i++)
        for (size_t k = 0; k < npx; k++)
            if (a->frames[i][k] > 0)
                sum += a->frames[i][k];
    return a->n_frames ? sum / (double)a->n_frames : 0.0;
}

static void publish_angle(aptd *d, const aptd_angle *a, const apt_angle_result *res, double seconds, double counts)
{
    json_t *h = json_object();
    json_object_set_new(h, "series", json_integer((json_int_t)a->series_id));
    json_object_set_new(h, "index", json_integer((json_int_t)a->index));
    json_object_set_new(h, "angle_deg", a->has_angle ? json_real(a->angle_deg) : json_null());
    json_object_set_new(h, "frames_used", json_integer((json_int_t)a->n_frames));
    json_object_set_new(h, "frames_received", json_integer((json_int_t)a->frames_received));
    json_object_set_new(h, "frames_dropped", json_integer((json_int_t)a->frames_dropped));
    json_t *dr = json_object();
    json_object_set_new(dr, "duplicate", json_integer((json_int_t)a->dup));
    json_object_set_new(dr, "undecodable", json_integer((json_int_t)a->undecodable));
    json_object_set_new(dr, "no_position", json_integer((json_int_t)a->nopos));
    json_object_set_new(dr, "overflow", json_integer((json_int_t)a->overflow));
    json_object_set_new(h, "dropped", dr);
    json_object_set_new(h, "completed_by", json_string(a->reason));
    json_object_set_new(h, "crop", json_integer(a->n));
    json_object_set_new(h, "mean_counts", json_real(counts));
    json_t *loss = json_array();
    for (int i = 0; res && i < res->n_loss; i++)
        json_array_append_new(loss, json_real(res->loss[i]));
    json_object_set_new(h, "loss", loss);
    if (res) {
        json_object_set_new(h, "frames_outside", json_integer((json_int_t)res->frames_outside));
        json_object_set_new(h, "stack", json_pack("[i,i,i]", res->sg.L, res->sg.Ny, res->sg.Nx));
    }
    json_object_set_new(h, "seconds", json_real(seconds));
    json_object_set_new(h, "seconds_acquire", json_real(a->seconds_acquire));
    aptd_publish_json(d, "angle", h, NULL, 0);
}

/* The current Approximant: PUB message (header + raw float32 LE) and the result file + preview under storage.dir.
   The file is renamed into place, so a reader never sees half of it. */
static void publish_approximant(aptd *d, aptd_recon_state *r)
{
    const apt_grid3 *g = apt_approx_grid(r->approx);
    size_t n = (size_t)g->Z * g->Y * g->X;
    apt_error err = {0};
    if (apt_approx_get(r->approx, r->volume, &err)) {
        apt_error_log("approximant: %s", err.msg);
        return;
    }
    json_t *h = json_pack("{s:i,s:[i,i,i],s:[f,f,f],s:s,s:s}", "angles", apt_approx_angles(r->approx), "shape", g->Z,
                          g->Y, g->X, "voxel_size_m", g->vz, g->vy, g->vx, "dtype", "float32", "order", "C");
    json_t *ref = aptd_reference_pcc(d, r->volume, g); /* the dashboard's quality-vs-angles plot */
    if (ref)
        json_object_set_new(h, "reference", ref);
    aptd_publish_json(d, "approximant", h, r->volume, n * sizeof(float));
    apt_volume v = {g->Z, g->Y, g->X, {g->vz, g->vy, g->vx}, r->volume};
    apt_result res = {NULL, &v, r->theta, r->n_theta, d->s.config_yaml, NULL, NULL, 0};
    char path[1200], png[1200];
    snprintf(path, sizeof path, "%s/approximant.h5", d->s.storage_dir);
    snprintf(png, sizeof png, "%s/approximant.png", d->s.storage_dir);
    if (apt_result_write(path, &res, &err))
        apt_error_log("%s", err.msg);
    const apt_volume *vols[1] = {&v};
    const char *labels[1] = {"Approximant (delta)"};
    char title[96];
    snprintf(title, sizeof title, "aptomod live Approximant, %d angles", apt_approx_angles(r->approx));
    if (apt_preview_write(png, vols, labels, 1, title, &err))
        apt_warn("%s", err.msg);
}

static void reset_scan(aptd *d, aptd_recon_state *r)
{
    if (r->approx)
        apt_approx_reset(r->approx);
    aptd_baseline_reset(d);
    aptd_state_reset(d);
    r->n_theta = 0;
    apt_info("Approximant reset: a new tomographic scan starts");
}

/* Crash safety: the angle file, then the Approximant with it, then the sums file, then PUB; a failed write is
   reported (status state_files.error) and the live work goes on without it. */
static int add_angle(aptd *d, aptd_recon_state *r, const aptd_angle *a, const apt_angle_result *res, apt_error *err)
{
    uint64_t seq = d->store.next_seq++;
    apt_error werr = {0};
    if (aptd_state_save_angle(d, seq, a, res, apt_angle_wavelength(r->ctx), &werr)) {
        apt_error_log("state: %s", werr.msg);
        aptd_state_error(d, werr.msg);
    }
    apt_crashpoint("angle-saved");
    int rc = apt_approx_add(r->approx, &res->sg, apt_angle_wavelength(r->ctx), res->object, res->weight, err);
    if (rc)
        return rc;
    aptd_state_add(d, seq, a);
    if (r->n_theta < APTD_MAX_ANGLES)
        r->theta[r->n_theta++] = a->angle_deg;
    apt_err_clear(&werr);
    if (aptd_state_save_sums(d, r->approx, &werr)) {
        apt_error_log("state: %s", werr.msg);
        aptd_state_error(d, werr.msg);
    }
    apt_crashpoint("sums-saved");
    return APT_OK;
}

static void reconstruct(aptd *d, aptd_recon_state *r, aptd_angle *a)
{
    if (atomic_exchange(&d->reset_requested, 0))
        reset_scan(d, r);
    if (a->wake)
        return;
    if (a->finalize) { /* control: refine what we have now */
        if (r->approx && apt_approx_angles(r->approx) > 0 && !apt_approx_get(r->approx, r->volume, NULL))
            aptd_refine_request(d, r->volume, apt_approx_grid(r->approx), apt_approx_angles(r->approx), r->theta,
                                r->n_theta, "finalize");
        else
            apt_warn("finalize: no angle in the Approximant yet");
        return;
    }
    double t0 = apt_now();
    apt_error err = {0};
    if (aptd_angleq_load(d, a, &err)) {
        apt_error_log("series %llu: the angle queued on disk is lost: %s", (unsigned long long)a->series_id,
                      err.msg);
        aptd_state_error(d, err.msg);
        a->n_frames = 0;
        publish_angle(d, a, NULL, apt_now() - t0, 0);
        return;
    }
    double counts = mean_counts(a);
    if (!a->has_angle) {
        apt_warn("series %llu: no angle received (user data / scan metadata); not reconstructed",
                 (unsigned long long)a->series_id);
        publish_angle(d, a, NULL, apt_now() - t0, counts);
        return;
    }
    if (!r->ctx) { /* physics off: report what arrived */
        atomic_fetch_add(&d->angles_done, 1);
        publish_angle(d, a, NULL, apt_now() - t0, counts);
        return;
    }
    if (aptd_state_seen(d, a)) {
        atomic_fetch_add(&d->store.skipped, 1);
        apt_info("series %llu (%.3f deg) is already in the Approximant: sent again after a restart, not counted "
                 "twice", (unsigned long long)a->series_id, a->angle_deg);
        return;
    }
    apt_angle_result res;
    if (apt_angle_reconstruct(r->ctx, a->angle_deg, (const float *const *)a->frames, a->pos, a->n_frames, &res,
                              &err) ||
        add_angle(d, r, a, &res, &err)) {
        apt_error_log("series %llu (%.3f deg): %s", (unsigned long long)a->series_id, a->angle_deg, err.msg);
        apt_angle_result_free(&res);
        publish_angle(d, a, NULL, apt_now() - t0, counts);
        return;
    }
    atomic_fetch_add(&d->angles_done, 1);
    atomic_store(&d->ran_ptycho, (int)res.backend);
    apt_info("series %llu: angle %.3f deg reconstructed in %.2f s (%zu frames, loss %.4g -> %.4g), %d angles in "
             "the Approximant", (unsigned long long)a->series_id, a->angle_deg, res.seconds, res.frames_used,
             res.n_loss ? res.loss[0] : NAN, res.n_loss ? res.loss[res.n_loss - 1] : NAN,
             apt_approx_angles(r->approx));
    aptd_web_angle(d, a, &res); /* before the angle message: a page that gets it finds this angle's picture */
    publish_angle(d, a, &res, apt_now() - t0, counts);
    publish_approximant(d, r);
    aptd_baseline_add(d, &res, 2 * M_PI / apt_angle_wavelength(r->ctx), a->angle_deg);
    apt_angle_result_free(&res);
    int n = apt_approx_angles(r->approx);
    if (n >= d->s.n_star && (n - d->s.n_star) % (d->s.publish_every > 0 ? d->s.publish_every : 1) == 0)
        aptd_refine_request(d, r->volume, apt_approx_grid(r->approx), n, r->theta, r->n_theta,
                            n == d->s.n_star ? "n_star" : "update");
}

/* Start-up: the state a previous run left (state.c), published at once, so a dashboard sees the resumed scan. */
static int resume(aptd *d, aptd_recon_state *r, apt_error *err)
{
    int rc = aptd_state_resume(d, r->approx, 2 * M_PI / apt_angle_wavelength(r->ctx), err);
    if (rc)
        return rc;
    r->n_theta = 0;
    for (size_t i = 0; i < d->store.n_done && r->n_theta < APTD_MAX_ANGLES; i++)
        r->theta[r->n_theta++] = d->store.done[i].angle_deg;
    int n = apt_approx_angles(r->approx);
    atomic_store(&d->angles_done, (uint64_t)n);
    if (n == 0)
        return APT_OK;
    publish_approximant(d, r);
    aptd_baseline_update(d);
    if (n >= d->s.n_star && !apt_approx_get(r->approx, r->volume, NULL))
        aptd_refine_request(d, r->volume, apt_approx_grid(r->approx), n, r->theta, r->n_theta, "resumed");
    return APT_OK;
}

static void *recon_main(void *arg)
{
    aptd *d = arg;
    aptd_angle *a;
    while ((a = aptd_queue_pop(d->recon_q, -1))) {
        atomic_store(&d->state, APTD_RECONSTRUCTING);
        reconstruct(d, &d->rs, a);
        aptd_angleq_done(d, a);
        aptd_angle_free(d, &a);
        atomic_store(&d->state, APTD_IDLE);
        aptd_queue_done(d->recon_q);
    }
    return NULL;
}

int aptd_recon_start(aptd *d, apt_error *err)
{
    aptd_recon_state *r = &d->rs;
    if (d->s.probe) {
        int rc = apt_angle_ctx_new(&d->s.angle, d->s.probe, &r->ctx, err);
        if (!rc)
            rc = apt_approx_new(&d->s.angle.grid, &r->approx, err);
        size_t n = (size_t)d->s.angle.grid.Z * d->s.angle.grid.Y * d->s.angle.grid.X;
        if (!rc && !(r->volume = malloc(n * sizeof *r->volume)))
            rc = apt_err(err, APT_ENOMEM, "out of memory for the %zu-voxel Approximant", n);
        if (!rc)
            rc = aptd_baseline_init(d, err);
        if (!rc)
            rc = resume(d, r, err);
        if (rc)
            return rc;
        apt_info("per-angle reconstruction: %d slices, %d modes, %d iterations x %d batches; Approximant grid "
                 "%dx%dx%d", d->s.angle.L, d->s.angle.M, d->s.angle.iterations, d->s.angle.batches,
                 d->s.angle.grid.Z, d->s.angle.grid.Y, d->s.angle.grid.X);
    }
    int rc = aptd_angleq_resume(d, err);
    if (rc)
        return rc;
    if (pthread_create(&d->recon, NULL, recon_main, d))
        return apt_err(err, APT_ENOMEM, "cannot start reconstruction thread");
    d->recon_running = 1;
    return APT_OK;
}

void aptd_recon_stop(aptd *d)
{
    aptd_queue_wait_idle(d->recon_q);
    aptd_queue_close(d->recon_q);
    pthread_join(d->recon, NULL);
    d->recon_running = 0;
}

void aptd_recon_free(aptd *d)
{
    apt_angle_ctx_destroy(&d->rs.ctx);
    apt_approx_destroy(&d->rs.approx);
    free(d->rs.volume);
    d->rs.volume = NULL;
    aptd_baseline_free(d);
}
