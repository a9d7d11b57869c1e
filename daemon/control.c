/* control.c - the REP control socket. A request is decoded by one pure function (aptd_control_parse: bytes in,
 * a checked request or the reason out; fuzzed by tests/fuzz/fuzz_control.c) and then run on the control thread.
 * Settings that may change while the daemon runs are listed once (live[] below): `set` and SIGHUP change those
 * and nothing else. OPERATIONS.md "Live-changeable keys" lists the same keys; tests/test_e2e_access.py compares
 * that list with the refusal of `set`, which is built from this table. */
#include <errno.h>
#include <pthread.h>
#include <jansson.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "aptd_int.h"
#include "aptomo/config.h"
#include "aptomo/log.h"

enum { LIVE_INT, LIVE_FLOAT, LIVE_LEVEL };

/* Keys that change decisions only, never a buffer already sized or a socket already bound. */
static const struct {
    const char *key, *alias;
    int type;
    double lo, hi;
    size_t off;
} live[] = {
    {"tomo.n_star", "n_star", LIVE_INT, 1, 100000, offsetof(aptd_settings, n_star)},
    {"tomo.publish_every", "publish_every", LIVE_INT, 1, 100000, offsetof(aptd_settings, publish_every)},
    {"detector.series_timeout_s", NULL, LIVE_FLOAT, 0.1, 86400, offsetof(aptd_settings, series_timeout_s)},
    {"log.level", NULL, LIVE_LEVEL, 0, 0, offsetof(aptd_settings, log_level)},
};
#define N_LIVE (sizeof live / sizeof live[0])

const char *aptd_live_key(size_t i)
{
    return i < N_LIVE ? live[i].key : NULL;
}

static int live_find(const char *key)
{
    for (size_t i = 0; i < N_LIVE; i++)
        if (!strcmp(key, live[i].key) || (live[i].alias && !strcmp(key, live[i].alias)))
            return (int)i;
    return -1;
}

/* The refusal names every live key, from the table (built once: the control thread is its only reader). */
static char not_live_msg[512];
static void not_live_build(void)
{
    size_t n = (size_t)snprintf(not_live_msg, sizeof not_live_msg, "not a live-changeable key (live:");
    for (size_t i = 0; i < N_LIVE && n < sizeof not_live_msg; i++)
        n += (size_t)snprintf(not_live_msg + n, sizeof not_live_msg - n, "%s %s", i ? "," : "", live[i].key);
    if (n < sizeof not_live_msg)
        snprintf(not_live_msg + n, sizeof not_live_msg - n, "; others need a restart)");
}

static void live_format(const aptd_settings *s, size_t i, char *buf, size_t n)
{
    const void *p = (const char *)s + live[i].off;
    if (live[i].type == LIVE_INT)
        snprintf(buf, n, "%d", *(const int *)p);
    else if (live[i].type == LIVE_FLOAT)
        snprintf(buf, n, "%g", *(const double *)p);
    else
        snprintf(buf, n, "%s", (const char *[]){"debug", "info", "warn", "error"}[*(const int *)p & 3]);
}

static int live_differs(const aptd_settings *a, const aptd_settings *b, size_t i)
{
    const void *p = (const char *)a + live[i].off, *q = (const char *)b + live[i].off;
    return live[i].type == LIVE_FLOAT ? *(const double *)p != *(const double *)q : *(const int *)p != *(const int *)q;
}

int aptd_settings_set_live(aptd_settings *s, const char *key, const json_t *v, const char **why)
{
    int k = live_find(key);
    if (k < 0) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, not_live_build);
        *why = not_live_msg;
        return -1;
    }
    size_t i = (size_t)k;
    void *p = (char *)s + live[i].off;
    if (live[i].type == LIVE_INT && json_is_integer(v) && json_integer_value(v) >= live[i].lo &&
        json_integer_value(v) <= live[i].hi)
        *(int *)p = (int)json_integer_value(v);
    else if (live[i].type == LIVE_FLOAT && json_is_number(v) && json_number_value(v) >= live[i].lo &&
             json_number_value(v) <= live[i].hi)
        *(double *)p = json_number_value(v);
    else if (live[i].type == LIVE_LEVEL && json_is_string(v) && apt_log_parse_level(json_string_value(v)) >= 0)
        *(int *)p = apt_log_parse_level(json_string_value(v));
    else {
        *why = live[i].type == LIVE_LEVEL ? "log.level must be one of debug, info, warn, error"
                                          : "value has the wrong type or is out of range";
        return -1;
    }
    if (live[i].type == LIVE_LEVEL)
        apt_log_set_level(s->log_level);
    return 0;
}

int aptd_reload(aptd *d, const apt_config *cfg0, const apt_config *cfg1, const aptd_settings *ns, apt_error *err)
{
    int rc = aptd_auth_reload(d, err);
    if (rc)
        return rc;
    int applied = 0, ignored = 0;
    for (size_t i = 0; i < N_LIVE; i++) {
        if (!live_differs(&d->s, ns, i))
            continue;
        char was[64], now[64];
        live_format(&d->s, i, was, sizeof was);
        live_format(ns, i, now, sizeof now);
        memcpy((char *)&d->s + live[i].off, (const char *)ns + live[i].off,
               live[i].type == LIVE_FLOAT ? sizeof(double) : sizeof(int));
        if (live[i].type == LIVE_LEVEL)
            apt_log_set_level(d->s.log_level);
        apt_info("reload: %s: %s -> %s", live[i].key, was, now);
        applied++;
    }
    /* everything else is compared with what the daemon started with: it stays in force until a restart */
    for (size_t k = 0; k < apt_config_key_count(); k++) {
        const char *key = apt_config_key_at(k)->key;
        if (live_find(key) >= 0 || apt_config_equal(cfg0, cfg1, key))
            continue;
        apt_warn("reload: %s changed (%s): needs a restart, not applied", key, apt_config_source(cfg1, key));
        ignored++;
    }
    apt_info("reload: %d live keys applied, %d changes need a restart", applied, ignored);
    return APT_OK;
}

void aptd_request_clear(aptd_request *rq)
{
    json_decref(rq->value);
    memset(rq, 0, sizeof *rq);
}

int aptd_control_parse(const void *buf, size_t len, aptd_request *rq, const char **why)
{
    static const char *cmds[] = {"status", "latest", "reset", "set", "finalize", "shutdown"};
    memset(rq, 0, sizeof *rq);
    json_error_t jerr;
    json_t *req = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    int rc = -1;
    rq->cmd = -1;
    if (!req)
        *why = "request is not JSON";
    else if (!json_is_object(req) || !cmd)
        *why = "request has no \"cmd\"";
    else {
        for (int i = 0; i < (int)(sizeof cmds / sizeof cmds[0]); i++)
            if (!strcmp(cmd, cmds[i]))
                rq->cmd = i;
        json_t *topic = json_object_get(req, "topic"), *key = json_object_get(req, "key");
        if (rq->cmd < 0)
            *why = "unknown cmd (status, latest, reset, set, finalize, shutdown)";
        else if (rq->cmd == APTD_CMD_LATEST && topic &&
                 (!json_is_string(topic) || json_string_length(topic) >= sizeof rq->topic))
            *why = "\"topic\" must be a string";
        else if (rq->cmd == APTD_CMD_SET && (!json_is_string(key) || !json_object_get(req, "value")))
            *why = "set needs \"key\" and \"value\"";
        else if (rq->cmd == APTD_CMD_SET && json_string_length(key) >= sizeof rq->key)
            *why = "\"key\" is too long";
        else {
            if (topic && rq->cmd == APTD_CMD_LATEST) {
                rq->has_topic = 1;
                memcpy(rq->topic, json_string_value(topic), json_string_length(topic) + 1);
            }
            if (rq->cmd == APTD_CMD_SET) {
                memcpy(rq->key, json_string_value(key), json_string_length(key) + 1);
                rq->value = json_incref(json_object_get(req, "value"));
            }
            rc = 0;
        }
    }
    json_decref(req);
    return rc;
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
static void control_latest(aptd *d, const char *topic)
{
    const char *why = NULL;
    json_t *header = NULL;
    zmq_msg_t payload;
    zmq_msg_init(&payload);
    int has = aptd_latest_get(d, topic, &header, &payload, &why);
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

static json_t *control_run(aptd *d, aptd_request *rq)
{
    const char *why = NULL;
    switch (rq->cmd) {
    case APTD_CMD_STATUS: {
        json_t *reply = aptd_status_json(d);
        json_object_set_new(reply, "ok", json_true());
        return reply;
    }
    case APTD_CMD_LATEST:
        if (!rq->has_topic)
            return aptd_latest_json(d);
        control_latest(d, rq->topic);
        return NULL;
    case APTD_CMD_SHUTDOWN:
        d->shutdown_requested = 1;
        return json_pack("{s:b}", "ok", 1);
    case APTD_CMD_SET: {
        int k = live_find(rq->key);
        char was[64] = "", now[64] = "";
        if (k >= 0)
            live_format(&d->s, (size_t)k, was, sizeof was);
        if (aptd_settings_set_live(&d->s, rq->key, rq->value, &why))
            return fail(why);
        live_format(&d->s, (size_t)k, now, sizeof now);
        apt_info("control: set %s: %s -> %s", live[k].key, was, now);
        return json_pack("{s:b}", "ok", 1);
    }
    case APTD_CMD_RESET:
        atomic_store(&d->angles_done, 0);
        atomic_store(&d->reset_requested, 1);
        atomic_store(&d->state, APTD_IDLE);
        aptd_latest_clear(d);
        aptd_web_reset(d);
        aptd_angle *wake = calloc(1, sizeof *wake); /* the worker resets (and moves the state aside) now */
        if (wake && (wake->wake = 1, aptd_queue_try_push(d->recon_q, wake)) != 0)
            free(wake);
        apt_info("control: reset, a new tomographic scan starts");
        return json_pack("{s:b}", "ok", 1);
    case APTD_CMD_FINALIZE: {
        if (!d->rs.ctx)
            return fail("physics.reconstruct is off: there is no Approximant to refine");
        aptd_angle *fin = calloc(1, sizeof *fin);
        if (!fin || (fin->finalize = 1, aptd_queue_try_push(d->recon_q, fin)) != 0) {
            free(fin);
            return fail("reconstruction queue full, try again");
        }
        return json_pack("{s:b,s:s}", "ok", 1, "note", "volume follows on the results stream");
    }
    }
    return fail("internal: unhandled command");
}

void aptd_control_handle(aptd *d)
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
    aptd_request rq;
    const char *why = "request must be one JSON message";
    int rc = multipart ? -1 : aptd_control_parse(zmq_msg_data(&msg), zmq_msg_size(&msg), &rq, &why);
    zmq_msg_close(&msg);
    if (rc) {
        control_reply(d, fail(why));
        return;
    }
    json_t *reply = control_run(d, &rq);
    aptd_request_clear(&rq);
    if (reply)
        control_reply(d, reply);
}
