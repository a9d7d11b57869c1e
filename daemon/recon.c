/* recon.c - complete angles -> reconstruction -> `angle` messages. A single worker takes angles in completion
 * order so the daemon's view of the tomogram grows one angle at a time, while ingest of the next angle goes on.
 * The per-angle physics (multislice ptychography, Approximant) plugs in here; until it is wired the worker reports
 * what arrived: frames used/dropped and the mean photon count of the used patterns. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>

#include "aptd_int.h"
#include "aptomo/log.h"

void aptd_angle_free(aptd *d, aptd_angle **ap)
{
    aptd_angle *a = *ap;
    if (!a)
        return;
    for (size_t i = 0; i < a->n_frames; i++)
        aptd_pool_put(d->patterns, a->frames[i]);
    free(a->frames);
    free(a->pos);
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

static void publish_angle(aptd *d, const aptd_angle *a, double seconds, double counts)
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
    json_object_set_new(h, "loss", json_array());
    json_object_set_new(h, "seconds", json_real(seconds));
    json_object_set_new(h, "seconds_acquire", json_real(a->seconds_acquire));
    char *text = json_dumps(h, JSON_COMPACT);
    if (text)
        aptd_publish(d, "angle", text, NULL, 0);
    free(text);
    json_decref(h);
}

static void *recon_main(void *arg)
{
    aptd *d = arg;
    aptd_angle *a;
    while ((a = aptd_queue_pop(d->recon_q, -1))) {
        atomic_store(&d->state, APTD_RECONSTRUCTING);
        double t0 = aptd_now();
        double counts = mean_counts(a);
        if (!a->has_angle)
            apt_warn("series %llu: no angle received (user data / scan metadata); not reconstructed",
                     (unsigned long long)a->series_id);
        else
            atomic_fetch_add(&d->angles_done, 1);
        publish_angle(d, a, aptd_now() - t0, counts);
        aptd_angle_free(d, &a);
        atomic_store(&d->state, APTD_IDLE);
        aptd_queue_done(d->recon_q);
    }
    return NULL;
}

int aptd_recon_start(aptd *d, apt_error *err)
{
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
