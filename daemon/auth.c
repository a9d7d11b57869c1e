/* auth.c - access control for the control (REP) and results (PUB) sockets: libzmq's CURVE with a ZAP handler.
 * libzmq encrypts and checks the handshake itself but asks a ZAP handler (a REP socket on inproc://zeromq.zap.01 in
 * the same context, RFC 27) whether a client's public key may connect; this thread is that handler, modelled on
 * czmq's zauth: each socket has its own ZAP domain ("control", "results") and its own list of authorised keys.
 * A client that never reaches ZAP (plain TCP against a CURVE socket, a wrong server key) is seen through a socket
 * monitor. Every refused handshake is counted (status auth_refused); refused keys are logged once each, other
 * refusals once and then as a count at most once a minute, so a client retrying every 100 ms cannot flood the log.
 * The key lists are swapped under a mutex on SIGHUP; the server keys and the on/off state need a restart. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "aptd_int.h"
#include "aptomo/config.h"
#include "aptomo/curve.h"
#include "aptomo/log.h"

#define AUTH_LOGGED_MAX 256         /* refused keys logged by name; later ones only counted */
#define AUTH_SUMMARY_PERIOD_S 60.0  /* at most one "N more refused" line per socket in this time */
#define AUTH_FRAME_MAX 256          /* bytes of one ZAP request frame we look at */

static const char *const domain_name[APTD_AUTH_SOCKETS] = {"control", "results"};

typedef struct auth_domain {
    unsigned char (*keys)[32];      /* sorted; guarded by aptd_auth.mu */
    size_t n;
    void *mon;                      /* PAIR end of the socket's monitor */
    uint64_t unlogged;              /* refusals not yet in a log line */
    double last_log;
    int logged_once;
} auth_domain;

struct aptd_auth {
    pthread_t thread;
    int running;
    atomic_int stop;
    void *zap;
    pthread_mutex_t mu;
    auth_domain dom[APTD_AUTH_SOCKETS];
    unsigned char logged[AUTH_LOGGED_MAX][33]; /* domain index + key, refused keys already logged */
    size_t n_logged;
};

static const char *secret_of(const aptd_settings *s, int which)
{
    return which == APTD_AUTH_CONTROL ? s->control_curve_secret : s->results_curve_secret;
}

static const char *clients_of(const aptd_settings *s, int which)
{
    return which == APTD_AUTH_CONTROL ? s->control_curve_clients : s->results_curve_clients;
}

int aptd_auth_on(const aptd_settings *s, int which)
{
    return secret_of(s, which)[0] != '\0';
}

int aptd_auth_check(const apt_config *cfg, const aptd_settings *s, apt_error *err)
{
    for (int w = 0; w < APTD_AUTH_SOCKETS; w++) {
        char skey[64], ckey[64];
        snprintf(skey, sizeof skey, "%s.curve_secret_key", domain_name[w]);
        snprintf(ckey, sizeof ckey, "%s.curve_clients", domain_name[w]);
        const char *secret = secret_of(s, w), *clients = clients_of(s, w);
        if (!secret[0] && clients[0])
            return apt_config_fail(cfg, ckey, err, APT_EINVAL, "has no effect without %s (the socket is plain "
                                   "TCP): set both or neither", skey);
        if (!secret[0])
            continue;
        if (!apt_curve_available())
            return apt_config_fail(cfg, skey, err, APT_ENOTSUP, "this libzmq was built without CURVE");
        if (!clients[0])
            return apt_config_fail(cfg, ckey, err, APT_EINVAL, "is required with %s: the authorised clients' "
                                   "public keys (a file, or a directory of *.pub)", skey);
        apt_curve_pair kp;
        if (apt_curve_read_pair(secret, &kp, err))
            return apt_config_blame(cfg, skey, err);
        memset(&kp, 0, sizeof kp);
        unsigned char (*keys)[32] = NULL;
        size_t n = 0;
        int rc = apt_curve_read_list(clients, &keys, &n, err);
        free(keys);
        if (rc)
            return apt_config_blame(cfg, ckey, err);
        if (!n)
            return apt_config_fail(cfg, ckey, err, APT_EINVAL, "%s lists no key: nobody could connect", clients);
    }
    return APT_OK;
}

int aptd_auth_server(aptd *d, void *sock, int which, apt_error *err)
{
    if (!aptd_auth_on(&d->s, which))
        return APT_OK;
    apt_curve_pair kp;
    int rc = apt_curve_read_pair(secret_of(&d->s, which), &kp, err);
    if (rc)
        return apt_err_prefix(err, rc, "%s.curve_secret_key: ", domain_name[which]);
    int one = 1;
    char mon[64];
    snprintf(mon, sizeof mon, "inproc://aptd-auth-monitor-%s", domain_name[which]);
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, kp.sec, sizeof kp.sec) != 0 ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain_name[which], strlen(domain_name[which])) != 0 ||
        zmq_socket_monitor(sock, mon, ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                          ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) != 0)
        rc = apt_err(err, APT_EIO, "%s: CURVE server set-up: %s", domain_name[which], zmq_strerror(errno));
    else
        apt_info("%s socket: CURVE on, server key %s", domain_name[which], kp.pub);
    memset(&kp, 0, sizeof kp);
    return rc;
}

/* Reads both lists first, then swaps them in: a bad file changes nothing. */
static int load_lists(aptd *d, int log_counts, apt_error *err)
{
    unsigned char (*keys[APTD_AUTH_SOCKETS])[32] = {NULL};
    size_t n[APTD_AUTH_SOCKETS] = {0};
    int rc = APT_OK;
    for (int w = 0; w < APTD_AUTH_SOCKETS && !rc; w++)
        if (aptd_auth_on(&d->s, w) && (rc = apt_curve_read_list(clients_of(&d->s, w), &keys[w], &n[w], err)))
            apt_err_prefix(err, rc, "%s.curve_clients: ", domain_name[w]);
    if (rc) {
        for (int w = 0; w < APTD_AUTH_SOCKETS; w++)
            free(keys[w]);
        return rc;
    }
    struct aptd_auth *a = d->auth;
    pthread_mutex_lock(&a->mu);
    for (int w = 0; w < APTD_AUTH_SOCKETS; w++) {
        free(a->dom[w].keys);
        a->dom[w].keys = keys[w];
        a->dom[w].n = n[w];
    }
    pthread_mutex_unlock(&a->mu);
    for (int w = 0; w < APTD_AUTH_SOCKETS && log_counts; w++)
        if (aptd_auth_on(&d->s, w))
            apt_info("%s socket: %zu authorised client keys from %s", domain_name[w], n[w], clients_of(&d->s, w));
    return APT_OK;
}

int aptd_auth_reload(aptd *d, apt_error *err)
{
    return d->auth ? load_lists(d, 1, err) : APT_OK;
}

static void refused_log(aptd *d, int w, const char *why)
{
    auth_domain *dom = &d->auth->dom[w];
    double now = apt_now();
    if (!dom->logged_once) {
        dom->logged_once = 1;
        dom->last_log = now;
        apt_warn("%s socket: a handshake was refused (%s); further ones are counted in status auth_refused and "
                 "logged at most once a minute", domain_name[w], why);
    } else {
        dom->unlogged++;
    }
}

static void summary_log(aptd *d, double now)
{
    for (int w = 0; w < APTD_AUTH_SOCKETS; w++) {
        auth_domain *dom = &d->auth->dom[w];
        if (dom->unlogged && now - dom->last_log >= AUTH_SUMMARY_PERIOD_S) {
            apt_warn("%s socket: %llu more handshakes refused in the last %.0f s", domain_name[w],
                     (unsigned long long)dom->unlogged, now - dom->last_log);
            dom->unlogged = 0;
            dom->last_log = now;
        }
    }
}

/* A key refused by ZAP: named in the log the first time only. */
static void refused_key_log(aptd *d, int w, const unsigned char *key, const char *addr)
{
    struct aptd_auth *a = d->auth;
    unsigned char id[33];
    id[0] = (unsigned char)w;
    memcpy(id + 1, key, 32);
    for (size_t i = 0; i < a->n_logged; i++)
        if (!memcmp(a->logged[i], id, sizeof id))
            return;
    if (a->n_logged == AUTH_LOGGED_MAX) {
        refused_log(d, w, "more unknown keys than are logged by name");
        return;
    }
    memcpy(a->logged[a->n_logged++], id, sizeof id);
    char z85[APT_CURVE_Z85 + 1];
    zmq_z85_encode(z85, key, 32);
    apt_warn("%s socket: refused client key %s from %s: not in %s (add its .pub there and send SIGHUP to "
             "authorise it)", domain_name[w], z85, addr, clients_of(&d->s, w));
}

/* One ZAP request (RFC 27: version, request id, domain, address, identity, mechanism, credentials...). */
static void zap_handle(aptd *d)
{
    struct aptd_auth *a = d->auth;
    char f[7][AUTH_FRAME_MAX + 1];
    size_t len[7] = {0};
    int nf = 0, more = 1;
    while (more) { /* read every part, whatever the count, so the REP socket stays in step */
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, a->zap, 0) < 0) {
            zmq_msg_close(&m);
            return;
        }
        if (nf < 7) {
            len[nf] = zmq_msg_size(&m) < AUTH_FRAME_MAX ? zmq_msg_size(&m) : AUTH_FRAME_MAX;
            memcpy(f[nf], zmq_msg_data(&m), len[nf]);
            f[nf][len[nf]] = '\0';
        }
        nf++;
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    int w = -1;
    for (int i = 0; nf >= 3 && i < APTD_AUTH_SOCKETS; i++)
        if (len[2] == strlen(domain_name[i]) && !memcmp(f[2], domain_name[i], len[2]))
            w = i;
    const char *status = "200", *text = "OK";
    if (w < 0) {
        /* not one of our domains: another socket of this context; its policy is not ours to decide */
    } else if (nf < 7 || strcmp(f[5], "CURVE") || len[6] != 32) {
        status = "400", text = "CURVE credentials required";
        refused_log(d, w, "not a CURVE client");
    } else {
        pthread_mutex_lock(&a->mu);
        int ok = apt_curve_list_has((const unsigned char (*)[32])a->dom[w].keys, a->dom[w].n,
                                    (const unsigned char *)f[6]);
        pthread_mutex_unlock(&a->mu);
        if (!ok) {
            status = "400", text = "key not authorised";
            refused_key_log(d, w, (const unsigned char *)f[6], f[3]);
        }
    }
    const char *reply[6] = {"1.0", f[1], status, text, "", ""};
    size_t rlen[6] = {3, nf >= 2 ? len[1] : 0, 3, strlen(text), 0, 0};
    for (int i = 0; i < 6; i++)
        zmq_send(a->zap, reply[i], rlen[i], i < 5 ? ZMQ_SNDMORE : 0);
}

/* One monitor event (two frames: 16-bit event + 32-bit value, then the endpoint). */
static void monitor_handle(aptd *d, int w)
{
    void *mon = d->auth->dom[w].mon;
    zmq_msg_t m;
    int more = 1, part = 0;
    uint16_t event = 0;
    uint32_t value = 0;
    while (more) {
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, mon, 0) < 0) {
            zmq_msg_close(&m);
            return;
        }
        if (part++ == 0 && zmq_msg_size(&m) >= 6) {
            memcpy(&event, zmq_msg_data(&m), 2);
            memcpy(&value, (char *)zmq_msg_data(&m) + 2, 4);
        }
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    if (!(event & (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                   ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)))
        return;
    atomic_fetch_add(&d->auth_refused, 1);
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        return; /* a ZAP refusal: logged by zap_handle with the key */
    refused_log(d, w, value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH ? "a plain (non-CURVE) client"
                      : value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC  ? "handshake does not decrypt: the client "
                                                                          "has another server key"
                                                                        : "handshake protocol error");
}

static void *auth_main(void *arg)
{
    aptd *d = arg;
    struct aptd_auth *a = d->auth;
    while (!atomic_load(&a->stop)) {
        zmq_pollitem_t items[1 + APTD_AUTH_SOCKETS];
        int owner[1 + APTD_AUTH_SOCKETS], n = 0;
        items[n] = (zmq_pollitem_t){a->zap, 0, ZMQ_POLLIN, 0}, owner[n++] = -1;
        for (int w = 0; w < APTD_AUTH_SOCKETS; w++)
            if (a->dom[w].mon)
                items[n] = (zmq_pollitem_t){a->dom[w].mon, 0, ZMQ_POLLIN, 0}, owner[n++] = w;
        if (zmq_poll(items, n, 100) < 0 && errno == ETERM)
            break;
        for (int i = 0; i < n; i++)
            if (items[i].revents & ZMQ_POLLIN) {
                if (owner[i] < 0)
                    zap_handle(d);
                else
                    monitor_handle(d, owner[i]);
            }
        summary_log(d, apt_now());
    }
    return NULL;
}

int aptd_auth_start(aptd *d, apt_error *err)
{
    if (!aptd_auth_on(&d->s, APTD_AUTH_CONTROL) && !aptd_auth_on(&d->s, APTD_AUTH_RESULTS))
        return APT_OK;
    struct aptd_auth *a = calloc(1, sizeof *a);
    if (!a)
        return apt_err(err, APT_ENOMEM, "out of memory");
    pthread_mutex_init(&a->mu, NULL);
    d->auth = a;
    int rc = load_lists(d, 1, err);
    if (rc)
        return rc;
    /* every socket of the handler is made here, before the thread, and the handler is bound before any CURVE
       socket binds: libzmq lets a CURVE client in unchecked when no handler listens */
    a->zap = zmq_socket(d->zctx, ZMQ_REP);
    int linger = 0;
    if (!a->zap || zmq_setsockopt(a->zap, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_bind(a->zap, "inproc://zeromq.zap.01") != 0)
        return apt_err(err, APT_EIO, "ZAP handler: bind inproc://zeromq.zap.01: %s", zmq_strerror(errno));
    for (int w = 0; w < APTD_AUTH_SOCKETS; w++) {
        if (!aptd_auth_on(&d->s, w))
            continue;
        char ep[64];
        snprintf(ep, sizeof ep, "inproc://aptd-auth-monitor-%s", domain_name[w]);
        a->dom[w].mon = zmq_socket(d->zctx, ZMQ_PAIR);
        if (!a->dom[w].mon || zmq_setsockopt(a->dom[w].mon, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
            zmq_connect(a->dom[w].mon, ep) != 0)
            return apt_err(err, APT_EIO, "%s socket monitor: %s", domain_name[w], zmq_strerror(errno));
    }
    if (pthread_create(&a->thread, NULL, auth_main, d))
        return apt_err(err, APT_ENOMEM, "cannot start the ZAP handler thread");
    a->running = 1;
    return APT_OK;
}

void aptd_auth_stop(aptd *d)
{
    struct aptd_auth *a = d->auth;
    if (!a)
        return;
    if (a->running) {
        atomic_store(&a->stop, 1);
        pthread_join(a->thread, NULL);
    }
    d->auth = NULL;
    for (int w = 0; w < APTD_AUTH_SOCKETS; w++) {
        if (a->dom[w].mon)
            zmq_close(a->dom[w].mon);
        free(a->dom[w].keys);
    }
    if (a->zap)
        zmq_close(a->zap);
    pthread_mutex_destroy(&a->mu);
    free(a);
}
