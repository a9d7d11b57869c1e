/* publish.c - results -> subscribers. One thread owns the PUB socket (ZeroMQ sockets are single-threaded); stages
 * queue (topic, JSON header, payload) without ever blocking: if the queue is full the message is dropped and
 * counted, and PUB itself drops for slow subscribers at its high-water mark. Ingest never waits on a dashboard. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "aptd_int.h"
#include "aptomo/backend.h"
#include "aptomo/log.h"

typedef struct pub_msg {
    char topic[32];
    char *header;
    void *payload;
    size_t len;
} pub_msg;

void aptd_publish(aptd *d, const char *topic, const char *header, const void *payload, size_t len)
{
    pub_msg *m = calloc(1, sizeof *m);
    if (!m)
        return;
    snprintf(m->topic, sizeof m->topic, "%s", topic);
    m->header = strdup(header);
    if (payload && len) {
        m->payload = malloc(len);
        if (m->payload) {
            memcpy(m->payload, payload, len);
            m->len = len;
        }
    }
    if (!m->header || (payload && len && !m->payload) || aptd_queue_try_push(d->pub_q, m) != 0) {
        atomic_fetch_add(&d->pub_dropped, 1);
        free(m->header);
        free(m->payload);
        free(m);
    }
}

static void free_payload(void *data, void *hint)
{
    (void)hint;
    free(data);
}

static void *publish_main(void *arg)
{
    aptd *d = arg;
    pub_msg *m;
    while ((m = aptd_queue_pop(d->pub_q, -1))) {
        /* the payload becomes a ZeroMQ message that the latest-value cache shares (no second copy) */
        zmq_msg_t body;
        int has = m->len && zmq_msg_init_data(&body, m->payload, m->len, free_payload, NULL) == 0;
        if (has)
            m->payload = NULL;
        aptd_latest_keep(d, m->topic, m->header, has ? &body : NULL);
        aptd_web_event(d, m->topic, m->header);
        int more = has ? ZMQ_SNDMORE : 0;
        if (zmq_send(d->pub, m->topic, strlen(m->topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
            zmq_send(d->pub, m->header, strlen(m->header), more | ZMQ_DONTWAIT) < 0 ||
            (has && zmq_msg_send(&body, d->pub, ZMQ_DONTWAIT) < 0))
            atomic_fetch_add(&d->pub_dropped, 1);
        if (has)
            zmq_msg_close(&body);
        free(m->header);
        free(m->payload);
        free(m);
        aptd_queue_done(d->pub_q);
    }
    return NULL;
}

int aptd_publish_start(aptd *d, apt_error *err)
{
    d->pub = zmq_socket(d->zctx, ZMQ_PUB);
    int hwm = d->s.results_sndhwm, linger = 200;
    zmq_setsockopt(d->pub, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(d->pub, ZMQ_LINGER, &linger, sizeof linger);
    int rc = aptd_auth_server(d, d->pub, APTD_AUTH_RESULTS, err);
    if (rc || zmq_bind(d->pub, d->s.results_endpoint) != 0) {
        if (!rc)
            apt_err(err, APT_EIO, "results.endpoint %s: bind: %s", d->s.results_endpoint, zmq_strerror(errno));
        zmq_close(d->pub);
        d->pub = NULL;
        return APT_EIO;
    }
    if (pthread_create(&d->publisher, NULL, publish_main, d)) {
        zmq_close(d->pub);
        d->pub = NULL;
        return apt_err(err, APT_ENOMEM, "cannot start publisher thread");
    }
    apt_info("results published on %s (PUB)", d->s.results_endpoint);
    return APT_OK;
}

void aptd_publish_stop(aptd *d)
{
    if (!d->pub)
        return;
    aptd_queue_wait_idle(d->pub_q);
    aptd_queue_close(d->pub_q);
    pthread_join(d->publisher, NULL);
    zmq_close(d->pub);
    d->pub = NULL;
}

json_t *aptd_status_json(aptd *d)
{
    aptd_stats st;
    aptd_get_stats(d, &st);
    json_t *h = json_object();
    json_object_set_new(h, "state", json_string(aptd_state_name(st.state)));
    json_object_set_new(h, "series", json_integer((json_int_t)st.current_series));
    json_object_set_new(h, "angles_done", json_integer((json_int_t)st.angles_done));
    json_object_set_new(h, "n_star", json_integer(d->s.n_star));
    json_object_set_new(h, "control", json_string(d->s.control_endpoint)); /* where {"cmd":"latest"} goes */
    json_object_set_new(h, "frames_received", json_integer((json_int_t)st.frames_received));
    uint64_t dropped = st.dropped_stale + st.dropped_duplicate + st.dropped_undecodable + st.dropped_nopos +
                       st.dropped_overflow;
    json_object_set_new(h, "frames_dropped", json_integer((json_int_t)dropped));
    json_object_set_new(h, "queue_depth", json_integer((json_int_t)st.queue_depth));
    json_object_set_new(h, "frames_accepted", json_integer((json_int_t)st.frames_accepted));
    json_object_set_new(h, "frames_decoded", json_integer((json_int_t)st.frames_decoded));
    json_object_set_new(h, "messages", json_integer((json_int_t)st.messages));
    json_object_set_new(h, "malformed", json_integer((json_int_t)st.malformed));
    json_t *dr = json_object();
    json_object_set_new(dr, "stale", json_integer((json_int_t)st.dropped_stale));
    json_object_set_new(dr, "duplicate", json_integer((json_int_t)st.dropped_duplicate));
    json_object_set_new(dr, "undecodable", json_integer((json_int_t)st.dropped_undecodable));
    json_object_set_new(dr, "no_position", json_integer((json_int_t)st.dropped_nopos));
    json_object_set_new(dr, "overflow", json_integer((json_int_t)st.dropped_overflow));
    json_object_set_new(h, "dropped", dr);
    json_object_set_new(h, "series_started", json_integer((json_int_t)st.series_started));
    json_object_set_new(h, "series_completed", json_integer((json_int_t)st.series_completed));
    json_object_set_new(h, "spooled", json_integer((json_int_t)st.spooled));
    json_object_set_new(h, "spool_errors", json_integer((json_int_t)st.spool_errors));
    json_object_set_new(h, "publish_dropped", json_integer((json_int_t)atomic_load(&d->pub_dropped)));
    aptd_state_status(d, h);
    json_t *curve = json_array(); /* the sockets with CURVE on, and the handshakes they refused */
    for (int w = 0; w < APTD_AUTH_SOCKETS; w++)
        if (aptd_auth_on(&d->s, w))
            json_array_append_new(curve, json_string(w == APTD_AUTH_CONTROL ? "control" : "results"));
    json_object_set_new(h, "curve", curve);
    json_object_set_new(h, "auth_refused", json_integer((json_int_t)atomic_load(&d->auth_refused)));
    /* where the compute runs: what was asked, where each part last ran, and GPU calls redone on the CPU */
    json_t *be = json_object();
    json_object_set_new(be, "requested", json_string(apt_backend_name((apt_backend)d->s.backend)));
    const char *part[3] = {"ptycho", "projector", "nn"};
    int ran[3] = {atomic_load(&d->ran_ptycho), atomic_load(&d->ran_proj), atomic_load(&d->ran_nn)};
    for (int i = 0; i < 3; i++)
        json_object_set_new(be, part[i], ran[i] < 0 ? json_null() : json_string(apt_backend_name((apt_backend)ran[i])));
    char last[256];
    unsigned long nfb = apt_backend_fallbacks(last, sizeof last);
    json_object_set_new(be, "fallbacks", json_integer((json_int_t)nfb));
    json_object_set_new(be, "last_fallback", nfb ? json_string(last) : json_null());
    json_object_set_new(h, "backends", be);
    /* spool health: off after a full disk / quota / size limit or below storage.spool_min_free_mb */
    json_t *sp = json_object();
    pthread_mutex_lock(&d->mu);
    json_object_set_new(sp, "enabled", json_boolean(d->have_spool && !atomic_load(&d->spool_off)));
    json_object_set_new(sp, "error", d->spool_error[0] ? json_string(d->spool_error) : json_null());
    json_object_set_new(sp, "free_mb", d->have_spool && d->spool_free_mb >= 0 ? json_real(d->spool_free_mb)
                                                                               : json_null());
    pthread_mutex_unlock(&d->mu);
    json_object_set_new(sp, "min_free_mb", json_integer((json_int_t)d->s.spool_min_free_mb));
    json_object_set_new(sp, "frames_skipped", json_integer((json_int_t)atomic_load(&d->spool_skipped)));
    json_object_set_new(sp, "disabled", json_integer((json_int_t)atomic_load(&d->spool_disabled)));
    json_object_set_new(h, "spool", sp);
    /* late scan metadata: series waiting now, messages applied to a held series, series handed on without it */
    json_t *md = json_object();
    pthread_mutex_lock(&d->mu);
    json_object_set_new(md, "held", json_integer(d->n_held));
    pthread_mutex_unlock(&d->mu);
    json_object_set_new(md, "grace_s", json_real(d->s.metadata_grace_s));
    json_object_set_new(md, "late_applied", json_integer((json_int_t)atomic_load(&d->meta_late_applied)));
    json_object_set_new(md, "expired", json_integer((json_int_t)atomic_load(&d->meta_late_expired)));
    json_object_set_new(md, "ignored", json_integer((json_int_t)atomic_load(&d->meta_ignored)));
    json_object_set_new(h, "metadata", md);
    aptd_web_status(d, h);
    return h;
}

void aptd_publish_json(aptd *d, const char *topic, json_t *h, const void *payload, size_t len)
{
    char *text = h ? json_dumps(h, JSON_COMPACT) : NULL;
    if (text)
        aptd_publish(d, topic, text, payload, len);
    free(text);
    json_decref(h);
}

void aptd_publish_status(aptd *d)
{
    aptd_publish_json(d, "status", aptd_status_json(d), NULL, 0);
}
