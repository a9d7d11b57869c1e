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
    snprintf(s->results_endpoint, sizeof s->results_endpoint, "tcp://*:9998");
    s->results_sndhwm = 1000;
    s->status_period_s = 1.0;
    snprintf(s->control_endpoint, sizeof s->control_endpoint, "tcp://127.0.0.1:9997");
    s->n_star = 29;
    s->publish_every = 4;
    s->model_batch = 1;
    s->converge_pcc = 0.999;
    s->converge_updates = 3;
    snprintf(s->storage_dir, sizeof s->storage_dir, "/var/lib/aptomo");
    s->log_level = APT_LOG_INFO;
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
    pthread_mutex_init(&d->mu, NULL);
    aptd_latest_init(d);
    apt_log_set_level(s->log_level);
    d->zctx = zmq_ctx_new();
    d->decode_q = aptd_queue_new((size_t)(s->queue_frames > 0 ? s->queue_frames : 1));
    d->recon_q = aptd_queue_new(64);
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
        if (zmq_bind(d->rep, s->control_endpoint) != 0)
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

/* Runtime-settable keys: the ones that change decisions, never buffers already allocated. */
static int control_set(aptd *d, json_t *req, const char **why)
{
    const char *key = json_string_value(json_object_get(req, "key"));
    json_t *v = json_object_get(req, "value");
    if (!key || !v) {
        *why = "set needs \"key\" and \"value\"";
        return -1;
    }
    if ((!strcmp(key, "tomo.n_star") || !strcmp(key, "n_star")) && json_is_integer(v) && json_integer_value(v) > 0)
        d->s.n_star = (int)json_integer_value(v);
    else if ((!strcmp(key, "tomo.publish_every") || !strcmp(key, "publish_every")) && json_is_integer(v) &&
             json_integer_value(v) > 0)
        d->s.publish_every = (int)json_integer_value(v);
    else if (!strcmp(key, "detector.series_timeout_s") && json_is_number(v) && json_number_value(v) > 0)
        d->s.series_timeout_s = json_number_value(v);
    else if (!strcmp(key, "log.level") && json_is_string(v) && apt_log_parse_level(json_string_value(v)) >= 0)
        apt_log_set_level(apt_log_parse_level(json_string_value(v)));
    else {
        *why = "unknown key, wrong type or out of range (settable: tomo.n_star, tomo.publish_every, "
               "detector.series_timeout_s, log.level)";
        return -1;
    }
    apt_info("control: %s set", key);
    return 0;
}

static void control_reply(aptd *d, json_t *reply)
{
    char *text = json_dumps(reply, JSON_COMPACT);
    if (text)
        zmq_send(d->rep, text, strlen(text), 0);
    else
        zmq_send(d->rep, "{\"ok\":false,\"error\":\"internal\"}", 31, 0);
    free(text);
    json_decref(reply);
}

static json_t *fail(const char *why)
{
    return json_pack("{s:b,s:s}", "ok", 0, "error", why);
}

/* {"cmd":"latest","topic":T}: the last T message as [JSON {"ok","topic","header"}, payload], the payload part
   only when T has one (approximant, baseline, volume). */
static void control_latest(aptd *d, json_t *req)
{
    const char *topic = json_string_value(json_object_get(req, "topic")), *why = "\"topic\" must be a string";
    json_t *header = NULL;
    zmq_msg_t payload;
    zmq_msg_init(&payload);
    int has = topic ? aptd_latest_get(d, topic, &header, &payload, &why) : -1;
    if (has < 0) {
        zmq_msg_close(&payload);
        control_reply(d, fail(why));
        return;
    }
    json_t *r = json_pack("{s:b,s:s,s:o}", "ok", 1, "topic", topic, "header", header);
    char *text = r ? json_dumps(r, JSON_COMPACT) : NULL;
    json_decref(r);
    if (!text) {
        zmq_msg_close(&payload);
        zmq_send(d->rep, "{\"ok\":false,\"error\":\"internal\"}", 31, 0);
        return;
    }
    zmq_send(d->rep, text, strlen(text), has ? ZMQ_SNDMORE : 0);
    free(text);
    if (has && zmq_msg_send(&payload, d->rep, 0) < 0)
        apt_warn("control: latest %s: payload not sent: %s", topic, zmq_strerror(errno));
    zmq_msg_close(&payload);
}

static void control_handle(aptd *d)
{
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, d->rep, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&msg);
        return;
    }
    int multipart = zmq_msg_more(&msg);
    while (zmq_msg_more(&msg)) { /* REP must answer once per request, whatever its shape */
        zmq_msg_close(&msg);
        zmq_msg_init(&msg);
        zmq_msg_recv(&msg, d->rep, 0);
    }
    json_error_t jerr;
    json_t *req = multipart ? NULL : json_loadb(zmq_msg_data(&msg), zmq_msg_size(&msg), 0, &jerr);
    zmq_msg_close(&msg);
    const char *cmd = req ? json_string_value(json_object_get(req, "cmd")) : NULL;
    json_t *reply;
    const char *why = NULL;
    if (!req)
        reply = fail(multipart ? "request must be one JSON message" : "request is not JSON");
    else if (!cmd)
        reply = fail("request has no \"cmd\"");
    else if (!strcmp(cmd, "status")) {
        reply = aptd_status_json(d);
        json_object_set_new(reply, "ok", json_true());
    } else if (!strcmp(cmd, "latest")) {
        if (!json_object_get(req, "topic")) {
            reply = aptd_latest_json(d);
        } else {
            control_latest(d, req);
            json_decref(req);
            return;
        }
    } else if (!strcmp(cmd, "shutdown")) {
        d->shutdown_requested = 1;
        reply = json_pack("{s:b}", "ok", 1);
    } else if (!strcmp(cmd, "set")) {
        reply = control_set(d, req, &why) ? fail(why) : json_pack("{s:b}", "ok", 1);
    } else if (!strcmp(cmd, "reset")) {
        atomic_store(&d->angles_done, 0);
        atomic_store(&d->reset_requested, 1);
        atomic_store(&d->state, APTD_IDLE);
        aptd_latest_clear(d);
        apt_info("control: reset, a new tomographic scan starts");
        reply = json_pack("{s:b}", "ok", 1);
    } else if (!strcmp(cmd, "finalize")) {
        aptd_angle *fin = calloc(1, sizeof *fin);
        if (!d->rs.ctx)
            reply = fail("physics.reconstruct is off: there is no Approximant to refine");
        else if (!fin || (fin->finalize = 1, aptd_queue_try_push(d->recon_q, fin)) != 0)
            reply = fail("reconstruction queue full, try again");
        else
            fin = NULL, reply = json_pack("{s:b,s:s}", "ok", 1, "note", "volume follows on the results stream");
        free(fin);
    } else {
        reply = fail("unknown cmd (status, latest, reset, set, finalize, shutdown)");
    }
    json_decref(req);
    control_reply(d, reply);
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
            control_handle(d);
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
    if (d->rep)
        zmq_close(d->rep);
    free_all(d);
    apt_info("stopped");
}
