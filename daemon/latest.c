/* latest.c - the last message of every results topic, kept by the publisher thread, so a dashboard that starts in
 * the middle of a scan asks the control socket ({"cmd":"latest"}) and shows the current state at once instead of
 * waiting for the next angle. PUB cannot do this itself: it keeps nothing for late subscribers. Payloads (volumes)
 * are shared with the PUB send as reference-counted ZeroMQ messages, not copied. A reset forgets the old scan. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "aptd_int.h"

static const char *const topics[APTD_N_TOPICS] = {"angle", "approximant", "baseline", "volume", "metrics", "stop"};

#define LATEST_MAX_ANGLES 10000 /* angle headers kept for a late dashboard's table (about 300 bytes each) */

static int topic_index(const char *topic)
{
    for (int i = 0; i < APTD_N_TOPICS; i++)
        if (!strcmp(topic, topics[i]))
            return i;
    return -1;
}

void aptd_latest_init(aptd *d)
{
    aptd_latest *l = &d->latest;
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
    l->angles = json_array();
}

static void clear_locked(aptd_latest *l)
{
    for (int i = 0; i < APTD_N_TOPICS; i++) {
        free(l->header[i]);
        l->header[i] = NULL;
        if (l->has_payload[i])
            zmq_msg_close(&l->payload[i]);
        l->has_payload[i] = 0;
    }
    if (l->angles)
        json_array_clear(l->angles);
}

void aptd_latest_free(aptd *d)
{
    aptd_latest *l = &d->latest;
    clear_locked(l);
    json_decref(l->angles);
    l->angles = NULL;
    pthread_mutex_destroy(&l->mu);
}

void aptd_latest_clear(aptd *d)
{
    pthread_mutex_lock(&d->latest.mu);
    clear_locked(&d->latest);
    pthread_mutex_unlock(&d->latest.mu);
}

void aptd_latest_keep(aptd *d, const char *topic, const char *header, zmq_msg_t *payload)
{
    aptd_latest *l = &d->latest;
    int i = topic_index(topic);
    if (i < 0)
        return; /* status is made fresh on request */
    char *h = strdup(header);
    json_t *angle = i == 0 ? json_loads(header, 0, NULL) : NULL;
    zmq_msg_t copy;
    int has = 0;
    if (payload) {
        zmq_msg_init(&copy);
        has = zmq_msg_copy(&copy, payload) == 0;
        if (!has)
            zmq_msg_close(&copy);
    }
    pthread_mutex_lock(&l->mu);
    free(l->header[i]);
    l->header[i] = h;
    if (l->has_payload[i])
        zmq_msg_close(&l->payload[i]);
    l->has_payload[i] = has;
    if (has)
        l->payload[i] = copy;
    if (angle && l->angles) {
        if (json_array_size(l->angles) >= LATEST_MAX_ANGLES)
            json_array_remove(l->angles, 0);
        json_array_append(l->angles, angle);
    }
    pthread_mutex_unlock(&l->mu);
    json_decref(angle);
}

json_t *aptd_latest_json(aptd *d)
{
    aptd_latest *l = &d->latest;
    json_t *t = json_object();
    pthread_mutex_lock(&l->mu);
    for (int i = 0; i < APTD_N_TOPICS; i++) {
        json_t *h = l->header[i] ? json_loads(l->header[i], 0, NULL) : NULL;
        if (h) {
            json_object_set_new(h, "payload_bytes",
                                json_integer(l->has_payload[i] ? (json_int_t)zmq_msg_size(&l->payload[i]) : 0));
            json_object_set_new(t, topics[i], h);
        }
    }
    json_t *angles = json_deep_copy(l->angles);
    pthread_mutex_unlock(&l->mu);
    json_t *r = json_pack("{s:b,s:o,s:o}", "ok", 1, "topics", t, "angles", angles ? angles : json_array());
    json_object_set_new(r, "status", aptd_status_json(d));
    return r;
}

int aptd_latest_get(aptd *d, const char *topic, json_t **header, zmq_msg_t *payload, const char **why)
{
    aptd_latest *l = &d->latest;
    int i = topic_index(topic);
    if (i < 0) {
        *why = "unknown topic (angle, approximant, baseline, volume, metrics, stop)";
        return -1;
    }
    int rc = -1;
    pthread_mutex_lock(&l->mu);
    *header = l->header[i] ? json_loads(l->header[i], 0, NULL) : NULL;
    if (!*header)
        *why = "nothing published on that topic since the start or the last reset";
    else if (l->has_payload[i] && zmq_msg_copy(payload, &l->payload[i]) != 0)
        *why = "out of memory";
    else
        rc = l->has_payload[i] ? 1 : 0;
    pthread_mutex_unlock(&l->mu);
    if (rc < 0) {
        json_decref(*header);
        *header = NULL;
    }
    return rc;
}
