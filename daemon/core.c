/* core.c - aptomod's lifecycle and control loop: start the stages back to front (publish, recon, spool, decode,
 * then receivers, so nothing is received before it can be handled), serve the REP control socket, time out silent
 * series, emit status at 1 Hz and on change; stop front to back, draining every queue so nothing received is lost. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aptd_int.h"
#include "aptomo/fsutil.h"
#include "aptomo/log.h"

const char *aptd_state_name(int state)
{
    static const char *names[] = {"idle", "acquiring", "reconstructing", "done", "error"};
    return state >= 0 && state <= APTD_ERROR ? names[state] : "unknown";
}

void aptd_settings_default(aptd_settings *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->endpoints[0], sizeof s->endpoints[0], "tcp://127.0.0.1:9999");
    s->n_endpoints = 1;
    s->crop = 128;
    s->beam_center[0] = s->beam_center[1] = NAN;
    s->rcvhwm = 200000;
    s->series_timeout_s = 30;
    s->max_frames_per_series = 1000000;
    s->max_frame_pixels = 16777216;
    s->max_message_bytes = 67108864;
    s->queue_frames = 65536;
    s->metadata_grace_s = 5;
    s->spool_min_free_mb = 512;
    snprintf(s->results_endpoint, sizeof s->results_endpoint, "tcp://*:9998");
    s->results_sndhwm = 1000;
    s->status_period_s = 1.0;
    snprintf(s->control_endpoint, sizeof s->control_endpoint, "tcp://127.0.0.1:9997");
    s->queue_memory_mb = 4096;
    s->n_star = 29;
    s->publish_every = 4;
    s->model_batch = 1;
    s->converge_pcc = 0.999;
    s->converge_updates = 3;
    snprintf(s->storage_dir, sizeof s->storage_dir, "/var/lib/aptomo");
    s->log_level = APT_LOG_INFO;
    snprintf(s->web_address, sizeof s->web_address, "127.0.0.1");
    s->web_max_clients = 16;
    s->web_stream_events = 512;
    s->web_timeout_s = 30;
}

void aptd_get_stats(aptd *d, aptd_stats *st)
{
    memset(st, 0, sizeof *st);
    st->messages = atomic_load(&d->messages);
    st->malformed = atomic_load(&d->malformed);
    st->frames_received = atomic_load(&d->frames_received);
    st->frames_accepted = atomic_load(&d->frames_accepted);
    st->frames_decoded = atomic_load(&d->frames_decoded);
    st->dropped_stale = atomic_load(&d->dropped_stale);
    st->dropped_duplicate = atomic_load(&d->dropped_duplicate);
    st->dropped_undecodable = atomic_load(&d->dropped_undecodable);
    st->dropped_nopos = atomic_load(&d->dropped_nopos);
    st->dropped_overflow = atomic_load(&d->dropped_overflow);
    st->series_started = atomic_load(&d->series_started);
    st->series_completed = atomic_load(&d->series_completed);
    st->angles_done = atomic_load(&d->angles_done);
    st->spooled = atomic_load(&d->spooled);
    st->spool_errors = atomic_load(&d->spool_errors);
    st->current_series = atomic_load(&d->current_series);
    st->state = atomic_load(&d->state);
    st->queue_depth = aptd_queue_depth(d->decode_q) + (d->spool_q ? aptd_queue_depth(d->spool_q) : 0) +
                      aptd_queue_depth(d->recon_q);
}

static void free_all(aptd *d)
{
    aptd_queue_destroy(&d->decode_q);
    aptd_queue_destroy(&d->spool_q);
    aptd_queue_destroy(&d->recon_q);
    aptd_queue_destroy(&d->pub_q);
    aptd_queue_destroy(&d->refine_q);
    aptd_pool_destroy(&d->patterns);
    aptd_recon_free(d);
    for (int i = 0; i < d->n_pending; i++)
        apt_scanmeta_clear(&d->pending[i].meta);
    aptd_latest_free(d); /* its messages before the context they belong to */
    if (d->zctx)
        zmq_ctx_term(d->zctx);
    aptd_state_free(d);
    pthread_mutex_destroy(&d->store.mu);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

int aptd_start(const aptd_settings *s, aptd **out, apt_error *err)
{
    *out = NULL;
    if (s->n_endpoints < 1)
        return apt_err(err, APT_EINVAL, "detector.endpoints: at least one endpoint is needed");
    aptd *d = calloc(1, sizeof *d);
    if (!d)
        return apt_err(err, APT_ENOMEM, "out of memory");
    d->s = *s;
    atomic_init(&d->ran_ptycho, -1), atomic_init(&d->ran_proj, -1), atomic_init(&d->ran_nn, -1);
    pthread_mutex_init(&d->mu, NULL);
    pthread_mutex_init(&d->store.mu, NULL);
    aptd_latest_init(d);
    apt_log_set_level(s->log_level);
    d->zctx = zmq_ctx_new();
    d->decode_q = aptd_queue_new((size_t)(s->queue_frames > 0 ? s->queue_frames : 1));
    d->recon_q = aptd_queue_new(APTD_MAX_ANGLES); /* pointers only: angles beyond memory are on disk */
    d->pub_q = aptd_queue_new(1024);
    d->refine_q = aptd_queue_new(4);
    d->patterns = aptd_pool_new((size_t)s->crop * s->crop * sizeof(float), APTD_POOL_CACHE_BYTES);
    d->have_spool = s->spool_frames;
    if (d->have_spool)
        d->spool_q = aptd_queue_new((size_t)(s->queue_frames > 0 ? s->queue_frames : 1));
    if (!d->zctx || !d->decode_q || !d->recon_q || !d->pub_q || !d->refine_q || !d->patterns || (d->have_spool && !d->spool_q)) {
        free_all(d);
        return apt_err(err, APT_ENOMEM, "out of memory");
    }
    atomic_store(&d->running, 1);
    int rc = apt_mkdir_p(d->s.storage_dir, 0750, err);
    if (rc)
        apt_err_prefix(err, rc, "storage.dir: ");
    if (!rc)
        rc = aptd_auth_start(d, err); /* the ZAP handler listens before a CURVE socket binds */
    if (!rc)
        rc = aptd_web_start(d, err); /* before the publisher: the feed sees every message, the resumed ones too */
    if (!rc)
        rc = aptd_publish_start(d, err);
    if (!rc)
        rc = aptd_refine_start(d, err);
    if (!rc)
        rc = aptd_recon_start(d, err);
    if (!rc && d->have_spool)
        rc = aptd_spool_start(d, err);
    if (!rc)
        rc = aptd_decode_start(d, err);
    if (!rc) {
        d->rep = zmq_socket(d->zctx, ZMQ_REP);
        int linger = 0;
        int64_t maxmsg = APTD_CONTROL_MAX_BYTES; /* libzmq drops a longer request's peer before buffering it */
        zmq_setsockopt(d->rep, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt(d->rep, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
        if ((rc = aptd_auth_server(d, d->rep, APTD_AUTH_CONTROL, err)))
            ;
        else if (zmq_bind(d->rep, s->control_endpoint) != 0)
            rc = apt_err(err, APT_EIO, "control.endpoint %s: bind: %s", s->control_endpoint, zmq_strerror(errno));
        else
            apt_info("control on %s (REP)", s->control_endpoint);
    }
    if (!rc)
        rc = aptd_ingest_start(d, err);
    *out = d;
    if (rc) {
        aptd_stop(out);
        return rc;
    }
    return APT_OK;
}

int aptd_run(aptd *d, volatile int *stop, void (*watchdog_cb)(void *), void *cb_arg)
{
    zmq_pollitem_t item = {d->rep, 0, ZMQ_POLLIN, 0};
    int last_state = -1;
    aptd_publish_status(d);
    d->last_status = apt_now();
    while (!*stop && !d->shutdown_requested) {
        int n = zmq_poll(&item, 1, 100);
        if (n > 0 && (item.revents & ZMQ_POLLIN))
            aptd_control_handle(d);
        double now = apt_now();
        aptd_check_timeouts(d, now);
        int state = atomic_load(&d->state);
        if (now - d->last_status >= d->s.status_period_s || state != last_state) {
            aptd_publish_status(d);
            d->last_status = now;
            last_state = state;
        }
        if (watchdog_cb)
            watchdog_cb(cb_arg);
    }
    return APT_OK;
}

void aptd_stop(aptd **dp)
{
    aptd *d = *dp;
    if (!d)
        return;
    *dp = NULL;
    aptd_ingest_stop(d);
    pthread_mutex_lock(&d->mu);
    aptd_series *cur = d->current;
    d->current = NULL;
    pthread_mutex_unlock(&d->mu);
    if (cur) {
        aptd_series_end(d, cur, "shutdown");
        aptd_series_unref(&cur);
    }
    if (d->n_decoders)
        aptd_decode_stop(d);
    aptd_series_release_held(d);
    if (d->spool_running)
        aptd_spool_stop(d);
    if (d->recon_running)
        aptd_recon_stop(d);
    aptd_refine_stop(d);
    if (d->pub) {
        atomic_store(&d->state, APTD_IDLE);
        aptd_publish_status(d);
        aptd_publish_stop(d);
    }
    aptd_web_stop(d); /* its requests read the queues and the latest-value cache: before they go */
    if (d->rep)
        zmq_close(d->rep);
    aptd_auth_stop(d); /* after the sockets it serves */
    free_all(d);
    apt_info("stopped");
}
