/* cmd_watch.c - `aptomo watch tcp://HOST:PORT`: a terminal dashboard of aptomod's PUB stream. On a TTY it redraws
 * one screen (state, angles N of N* with an ETA, the latest Approximant/baseline/volume/metrics/stop, the last
 * angles); piped, it prints one line per message so it can be logged or grepped. A dashboard started in the middle
 * of a scan asks the control socket for the latest state ({"cmd":"latest"}: PUB keeps nothing for late joiners),
 * from --control or the address the status message names. --until/--count make it usable in scripts. With
 * --curve-key/--server-key both sockets speak CURVE (aptomod's curve_secret_key; OPERATIONS.md "Access"). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "aptomo/curve.h"
#include "aptomo/endpoint.h"
#include "cli.h"

static volatile int watch_stop = 0;
static void on_sigint(int s)
{
    (void)s;
    watch_stop = 1;
}

#define WATCH_ROWS 12

/* The latest message of each result topic, one line each under the status. */
static const char *const result_topics[] = {"approximant", "baseline", "volume", "metrics", "stop"};
#define WATCH_RESULTS (sizeof result_topics / sizeof *result_topics)

typedef struct watch_view {
    char status[1024];
    char progress[256];
    char results[WATCH_RESULTS][256];
    char angles[WATCH_ROWS][256];
    char note[256];
    int n_angles, next;
    uint64_t messages;
    /* ETA: the count at the first angle seen to arrive and when (n0 -1: none yet), the latest and when */
    long long n0, n;
    double t0, t;
} watch_view;

static long long ival(json_t *o, const char *k) { return (long long)json_integer_value(json_object_get(o, k)); }

static void draw(const watch_view *v, const char *ep)
{
    printf("\033[H\033[2J");
    printf("aptomo watch  %s  (%llu messages, Ctrl-C to quit)\n\n", ep, (unsigned long long)v->messages);
    printf("%s\n", v->status[0] ? v->status : "waiting for status...");
    printf("%s\n\n", v->progress);
    if (v->note[0])
        printf("  %s\n\n", v->note);
    int any = 0;
    for (size_t r = 0; r < WATCH_RESULTS; r++)
        if (v->results[r][0])
            printf("  %s\n", v->results[r]), any = 1;
    if (any)
        printf("\n");
    printf("  %-7s %-6s %10s %7s %8s %8s %9s %8s\n", "series", "index", "angle", "used", "dropped", "recv",
           "counts", "seconds");
    for (int i = 0; i < v->n_angles; i++)
        printf("%s\n", v->angles[(v->next - v->n_angles + i + WATCH_ROWS) % WATCH_ROWS]);
    fflush(stdout);
}

static void format_angle(json_t *h, char *out, size_t n)
{
    json_t *ang = json_object_get(h, "angle_deg");
    char a[32];
    if (json_is_number(ang))
        snprintf(a, sizeof a, "%9.3f°", json_number_value(ang));
    else
        snprintf(a, sizeof a, "%10s", "?");
    snprintf(out, n, "  %-7lld %-6lld %s %7lld %8lld %8lld %9.1f %8.3f", ival(h, "series"),
             ival(h, "index"), a, ival(h, "frames_used"), ival(h, "frames_dropped"), ival(h, "frames_received"),
             json_number_value(json_object_get(h, "mean_counts")), json_number_value(json_object_get(h, "seconds")));
}

static void add_angle(watch_view *v, json_t *h)
{
    format_angle(h, v->angles[v->next], sizeof v->angles[0]);
    v->next = (v->next + 1) % WATCH_ROWS;
    if (v->n_angles < WATCH_ROWS)
        v->n_angles++;
}

static const char *num(json_t *o, const char *k, char *buf, size_t n)
{
    json_t *x = json_object_get(o, k);
    if (json_is_number(x))
        snprintf(buf, n, "%.4f", json_number_value(x));
    else
        snprintf(buf, n, "-");
    return buf;
}

static const char *str(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "?";
}

/* One line for a result message; 0 if the topic is not one of result_topics. */
static int format_result(const char *topic, json_t *h, size_t payload, watch_view *v)
{
    for (size_t r = 0; r < WATCH_RESULTS; r++) {
        if (strcmp(topic, result_topics[r]))
            continue;
        char *out = v->results[r], a[24], b[24], c[24], d[24];
        size_t n = sizeof v->results[r];
        json_t *shape = json_object_get(h, "shape"), *ref = json_object_get(h, "reference"),
               *chg = json_object_get(h, "change");
        char dims[64] = "";
        if (json_array_size(shape) == 3)
            snprintf(dims, sizeof dims, "[%lldx%lldx%lld]", (long long)json_integer_value(json_array_get(shape, 0)),
                     (long long)json_integer_value(json_array_get(shape, 1)),
                     (long long)json_integer_value(json_array_get(shape, 2)));
        if (r == 0)
            snprintf(out, n, "%-12s %4lld angles %s %.1f MB", "Approximant", ival(h, "angles"), dims, payload / 1e6);
        else if (r == 1)
            snprintf(out, n, "%-12s %4lld angles %s %s", "baseline", ival(h, "angles"), dims, str(h, "method"));
        else if (r == 2)
            snprintf(out, n, "%-12s %4lld angles %s reason %s, weights %s", "volume", ival(h, "angles"), dims,
                     str(h, "reason"), str(h, "weights"));
        else if (r == 3)
            snprintf(out, n, "%-12s %4lld angles change pcc %s ms-ssim %s | vs reference pcc %s dsc %s", "metrics",
                     ival(h, "angles"), num(chg, "pcc", a, sizeof a), num(chg, "ms_ssim", b, sizeof b),
                     num(ref, "pcc", c, sizeof c), num(ref, "dsc", d, sizeof d));
        else
            snprintf(out, n, "STOP         %4lld angles (%s): %s", ival(h, "angles"), str(h, "reason"),
                     str(h, "advice"));
        return 1;
    }
    return 0;
}

static void fmt_duration(double s, char *buf, size_t n)
{
    if (s < 90)
        snprintf(buf, n, "%.0f s", s);
    else if (s < 5400)
        snprintf(buf, n, "%.0f min", s / 60);
    else
        snprintf(buf, n, "%.1f h", s / 3600);
}

/* The status line and "angles N of N*" with the time to N* at the rate angles have been arriving. */
static void on_status(watch_view *v, json_t *h, double now)
{
    snprintf(v->status, sizeof v->status, "state %-14s series %-6lld frames %-9lld dropped %-7lld queue %lld",
             str(h, "state"), ival(h, "series"), ival(h, "frames_received"), ival(h, "frames_dropped"),
             ival(h, "queue_depth"));
    long long n = ival(h, "angles_done"), n_star = ival(h, "n_star");
    if (v->t == 0 || n < v->n) { /* first status, or a reset: the rate starts over */
        v->n = n, v->t = now, v->n0 = -1;
    } else if (n != v->n) { /* the rate is timed from the first angle seen to arrive */
        if (v->n0 < 0)
            v->n0 = n, v->t0 = now;
        v->n = n, v->t = now;
    }
    char eta[64] = "";
    if (n_star > 0 && n >= n_star) {
        snprintf(eta, sizeof eta, "N* reached");
    } else if (n_star > 0 && v->n0 >= 0 && n > v->n0) {
        char d[32];
        double per = (v->t - v->t0) / (double)(n - v->n0);
        fmt_duration(fmax(0, per * (double)(n_star - n) - (now - v->t)), d, sizeof d);
        snprintf(eta, sizeof eta, "eta %s to N* (%.1f s per angle)", d, per);
    } else if (n_star > 0) {
        snprintf(eta, sizeof eta, "eta - (waiting for angles)");
    }
    if (n_star > 0)
        snprintf(v->progress, sizeof v->progress, "angles %lld of %lld  %s", n, n_star, eta);
    else
        snprintf(v->progress, sizeof v->progress, "angles %lld", n);
}

/* The control endpoint the status names, with a wildcard host replaced by the one we subscribe to. */
static int control_from_status(const char *ctl, const char *sub_ep, char *out, size_t n)
{
    const char *host = strstr(ctl, "://"), *port = strrchr(ctl, ':');
    if (!host || !port || port < host + 3)
        return -1;
    host += 3;
    size_t hl = (size_t)(port - host);
    if ((hl == 1 && *host == '*') || (hl == 7 && !strncmp(host, "0.0.0.0", 7))) {
        const char *sh = strstr(sub_ep, "://"), *sp = strrchr(sub_ep, ':');
        if (!sh || !sp || sp < sh + 3)
            return -1;
        snprintf(out, n, "tcp://%.*s%s", (int)(sp - sh - 3), sh + 3, port);
    } else {
        snprintf(out, n, "%s", ctl);
    }
    return apt_endpoint_check(out, APT_EP_CONNECT, NULL) ? -1 : 0;
}

/* CURVE keys of a client socket (NULL key: plain TCP); the key files were read once at start. */
typedef struct watch_curve {
    const char *key, *server;
} watch_curve;

/* {"cmd":"latest"} on the control socket; NULL with a note when it does not answer. */
static json_t *fetch_latest(void *ctx, const char *ctl, const watch_curve *curve, watch_view *v)
{
    void *req = zmq_socket(ctx, ZMQ_REQ);
    int tmo = 3000, linger = 0;
    apt_error e = {0};
    if (curve->key && apt_curve_client(req, curve->key, curve->server, &e)) {
        snprintf(v->note, sizeof v->note, "no latest state: %.200s", e.msg);
        zmq_close(req);
        return NULL;
    }
    zmq_setsockopt(req, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    zmq_setsockopt(req, ZMQ_SNDTIMEO, &tmo, sizeof tmo);
    zmq_setsockopt(req, ZMQ_LINGER, &linger, sizeof linger);
    json_t *r = NULL;
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_connect(req, ctl) == 0 && zmq_send(req, "{\"cmd\":\"latest\"}", 16, 0) == 16 &&
        zmq_msg_recv(&msg, req, 0) >= 0)
        r = json_loadb(zmq_msg_data(&msg), zmq_msg_size(&msg), 0, NULL);
    zmq_msg_close(&msg);
    zmq_close(req);
    if (!json_is_true(json_object_get(r, "ok"))) {
        snprintf(v->note, sizeof v->note, "no latest state from %.100s (%.80s): showing new messages only", ctl,
                 r ? str(r, "error") : "no answer");
        json_decref(r);
        return NULL;
    }
    return r;
}

static void apply_latest(watch_view *v, json_t *r, double now)
{
    json_t *topics = json_object_get(r, "topics"), *angles = json_object_get(r, "angles"), *h;
    const char *topic;
    json_object_foreach(topics, topic, h)
        format_result(topic, h, (size_t)ival(h, "payload_bytes"), v);
    size_t n = json_array_size(angles);
    for (size_t i = n > WATCH_ROWS ? n - WATCH_ROWS : 0; i < n; i++)
        add_angle(v, json_array_get(angles, i));
    if (json_is_object(json_object_get(r, "status")))
        on_status(v, json_object_get(r, "status"), now);
    snprintf(v->note, sizeof v->note, "joined a running scan: the state above is aptomod's latest (%zu angles)", n);
}

#define HELP                                                                                                        \
    "usage: aptomo watch tcp://HOST:PORT [--json] [--count N] [--until TOPIC [--until-count N]] [--timeout S]\n"  \
    "                    [--control tcp://HOST:PORT] [--latest]\n"                                               \
    "                    [--curve-key CLIENT.key --server-key DAEMON.pub [--control-server-key DAEMON.pub]]\n"  \
    "Dashboard of aptomod's results stream: on a terminal one screen with the state, angles N of N* and the\n"   \
    "time to N*, the latest Approximant/baseline/volume/metrics/stop and the last angles. A dashboard that\n"   \
    "starts mid-scan shows the daemon's latest state at once: it asks the control socket (--control, else the\n" \
    "address the status message names) for {\"cmd\":\"latest\"}.\n"                                            \
    "Piped (or --json): one line per message, topic then header JSON (+N bytes of payload); --latest also\n"    \
    "prints that state first as one line 'latest {...}'.\n"                                                       \
    "  --until TOPIC       exit 0 after N messages of TOPIC (--until-count N, default 1), e.g. --until stop\n"     \
    "  --count N           exit 0 after N messages\n"                                                            \
    "  --timeout S         exit 1 if --until/--count is not met within S seconds (S > 0)\n"                     \
    "  --control EP        aptomod's control socket, for the latest state\n"                                     \
    "  --latest            piped: print the latest state first (a terminal dashboard always asks for it)\n"      \
    "  --json              one line per message even on a terminal\n"                                          \
    "  --curve-key FILE    this client's CURVE key pair (aptomo keygen's NAME.key): CURVE on both sockets\n"      \
    "  --server-key FILE   the daemon's public key (its NAME.pub), for the results and the control socket\n"      \
    "  --control-server-key FILE  the control socket's public key when it differs from --server-key\n"

enum { O_JSON = 256, O_COUNT, O_UNTIL, O_UNTIL_N, O_TIMEOUT, O_CONTROL, O_LATEST, O_CKEY, O_SKEY, O_CSKEY };
static const struct option LONGOPTS[] = {
    {"json", no_argument, NULL, O_JSON},           {"count", required_argument, NULL, O_COUNT},
    {"until", required_argument, NULL, O_UNTIL},   {"until-count", required_argument, NULL, O_UNTIL_N},
    {"timeout", required_argument, NULL, O_TIMEOUT}, {"control", required_argument, NULL, O_CONTROL},
    {"latest", no_argument, NULL, O_LATEST},       {"curve-key", required_argument, NULL, O_CKEY},
    {"server-key", required_argument, NULL, O_SKEY}, {"control-server-key", required_argument, NULL, O_CSKEY},
    {0}};

typedef struct watch_opts {
    const char *ep, *until, *control;
    const char *curve_key, *server_key, *control_server_key;
    uint64_t count, until_n;
    double timeout;
    int raw, latest;
} watch_opts;

/* CLI_OK, -1 (help printed) or CLI_USAGE. */
static int parse(int argc, char **argv, watch_opts *o)
{
    *o = (watch_opts){.until_n = 1};
    cli_parser p;
    cli_init(&p, "watch", HELP, NULL, LONGOPTS, argc, argv);
    int c;
    while ((c = cli_next(&p)) > 0) {
        switch (c) {
        case O_JSON: o->raw = 1; break;
        case O_LATEST: o->latest = 1; break;
        case O_UNTIL: o->until = p.arg; break;
        case O_COUNT: cli_uint(&p, 1, UINT64_MAX, &o->count); break;
        case O_UNTIL_N: cli_uint(&p, 1, UINT64_MAX, &o->until_n); break;
        case O_TIMEOUT: cli_real(&p, 0, 1e9, CLI_OPEN_LO, &o->timeout); break;
        case O_CONTROL: o->control = p.arg; cli_endpoint(&p, APT_EP_CONNECT); break;
        case O_CKEY: o->curve_key = p.arg; break;
        case O_SKEY: o->server_key = p.arg; break;
        case O_CSKEY: o->control_server_key = p.arg; break;
        }
    }
    int cli_rc = cli_done(&p, c, 1, 1, "tcp://HOST:PORT");
    if (cli_rc != CLI_GO)
        return cli_rc == CLI_OK ? -1 : cli_rc;
    o->ep = p.args[0];
    if (!o->curve_key != !o->server_key)
        return cli_fail(&p, "--curve-key and --server-key go together (CURVE needs both)");
    if (o->control_server_key && !o->curve_key)
        return cli_fail(&p, "--control-server-key needs --curve-key and --server-key");
    apt_error e = {0};
    if (apt_endpoint_check(o->ep, APT_EP_CONNECT, &e))
        return cli_fail(&p, "%s", e.msg);
    return CLI_OK;
}

/* One message (topic, header JSON, payload size) received: print it or update the screen. */
static void on_message(watch_view *v, int tty, const char *topic, const char *header, size_t payload, json_t *h,
                       double now)
{
    v->messages++;
    if (!tty) {
        printf("%s %s", topic, header ? header : "{}");
        if (payload)
            printf(" +%zu bytes", payload);
        printf("\n");
        fflush(stdout);
    } else if (h && !strcmp(topic, "status")) {
        on_status(v, h, now);
    } else if (h && !strcmp(topic, "angle")) {
        add_angle(v, h);
    } else if (h) {
        format_result(topic, h, payload, v);
    }
}

/* Receives one multipart message; 0, or -1 when none arrived within the socket's timeout. */
static int recv_message(void *sub, char *topic, size_t tn, char **header, size_t *payload)
{
    int n = zmq_recv(sub, topic, tn - 1, 0);
    if (n < 0)
        return -1;
    topic[n < (int)tn - 1 ? n : (int)tn - 1] = '\0';
    int more = 0;
    size_t ml = sizeof more;
    zmq_getsockopt(sub, ZMQ_RCVMORE, &more, &ml);
    *header = NULL;
    *payload = 0;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sub, 0) < 0) {
            zmq_msg_close(&part);
            break;
        }
        if (!*header)
            *header = strndup(zmq_msg_data(&part), zmq_msg_size(&part));
        else
            *payload += zmq_msg_size(&part);
        more = zmq_msg_more(&part);
        zmq_msg_close(&part);
    }
    return 0;
}

int cmd_watch(int argc, char **argv)
{
    watch_opts o;
    int prc = parse(argc, argv, &o);
    if (prc)
        return prc < 0 ? CLI_OK : prc;
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    void *ctx = zmq_ctx_new(), *sub = zmq_socket(ctx, ZMQ_SUB);
    int tmo = 200;
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    watch_curve ctl_curve = {o.curve_key, o.control_server_key ? o.control_server_key : o.server_key};
    apt_error ce = {0};
    if (o.curve_key && (apt_curve_client(sub, o.curve_key, o.server_key, &ce) ||
                        (o.control_server_key && apt_curve_read_public(o.control_server_key, (char[41]){0}, &ce)))) {
        cli_error("%s", ce.msg);
        zmq_close(sub);
        zmq_ctx_term(ctx);
        return ce.code == APT_ENOTSUP ? CLI_FAIL : CLI_USAGE; /* a key file given is input */
    }
    if (zmq_connect(sub, o.ep) != 0) {
        cli_error("connect %s: %s", o.ep, zmq_strerror(errno));
        zmq_close(sub);
        zmq_ctx_term(ctx);
        return CLI_USAGE;
    }
    int tty = !o.raw && isatty(STDOUT_FILENO), want_latest = tty || o.latest;
    watch_view v = {0};
    uint64_t seen = 0, until_seen = 0;
    double t0 = apt_now();
    int rc = CLI_OK;
    char ctl[300] = "";
    if (o.control)
        snprintf(ctl, sizeof ctl, "%s", o.control);
    if (tty)
        draw(&v, o.ep);
    while (!watch_stop) {
        double now = apt_now();
        if (o.timeout > 0 && now - t0 > o.timeout) {
            cli_error("timeout after %g s", o.timeout);
            rc = CLI_FAIL;
            break;
        }
        if (want_latest && ctl[0]) { /* once, as soon as the control address is known */
            want_latest = 0;
            json_t *r = fetch_latest(ctx, ctl, &ctl_curve, &v);
            if (r && !tty) {
                char *text = json_dumps(r, JSON_COMPACT);
                printf("latest %s\n", text ? text : "{}");
                fflush(stdout);
                free(text);
            } else if (r) {
                apply_latest(&v, r, now);
            }
            json_decref(r);
            if (tty)
                draw(&v, o.ep);
        }
        char topic[64], *header;
        size_t payload;
        if (recv_message(sub, topic, sizeof topic, &header, &payload))
            continue;
        json_t *h = header ? json_loads(header, 0, NULL) : NULL;
        if (want_latest && !ctl[0] && h && !strcmp(topic, "status") && json_is_string(json_object_get(h, "control")) &&
            control_from_status(str(h, "control"), o.ep, ctl, sizeof ctl))
            want_latest = 0; /* an address we cannot reach: new messages only */
        on_message(&v, tty, topic, header, payload, h, now);
        seen++;
        if (tty)
            draw(&v, o.ep);
        json_decref(h);
        free(header);
        if (o.until && !strcmp(topic, o.until) && ++until_seen >= o.until_n)
            break;
        if (o.count && seen >= o.count)
            break;
    }
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return rc;
}
