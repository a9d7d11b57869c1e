/* cmd_watch.c - `aptomo watch tcp://HOST:PORT`: a terminal dashboard of aptomod's PUB stream. On a TTY it redraws
 * one screen (state, counters, the latest Approximant/baseline/volume/metrics/stop, the last angles); piped, it prints one line per message so it can be logged or
 * grepped. --until/--count make it usable in scripts and the demo. */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

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
    char results[WATCH_RESULTS][256];
    char angles[WATCH_ROWS][256];
    int n_angles, next;
    uint64_t messages;
} watch_view;

static long long ival(json_t *o, const char *k) { return (long long)json_integer_value(json_object_get(o, k)); }

static void draw(const watch_view *v, const char *ep)
{
    printf("\033[H\033[2J");
    printf("aptomo watch  %s  (%llu messages, Ctrl-C to quit)\n\n", ep, (unsigned long long)v->messages);
    printf("%s\n\n", v->status[0] ? v->status : "waiting for status...");
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

int cmd_watch(int argc, char **argv)
{
    const char *ep = NULL, *until = NULL;
    uint64_t count = 0, until_n = 1;
    double timeout = 0;
    int raw = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--until") && i + 1 < argc)
            until = argv[++i];
        else if (!strcmp(argv[i], "--until-count") && i + 1 < argc && !cli_parse_u64(argv[i + 1], &until_n))
            i++;
        else if (!strcmp(argv[i], "--count") && i + 1 < argc && !cli_parse_u64(argv[i + 1], &count))
            i++;
        else if (!strcmp(argv[i], "--timeout") && i + 1 < argc && !cli_parse_double(argv[i + 1], &timeout))
            i++;
        else if (!strcmp(argv[i], "--json"))
            raw = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: aptomo watch tcp://HOST:PORT [--json] [--count N] [--until TOPIC [--until-count N]]\n"
                   "                    [--timeout S]\n"
                   "Dashboard of aptomod's results stream. Piped (or --json): one line per message, topic then\n"
                   "header JSON. --until TOPIC exits after N messages of TOPIC (e.g. --until angle --until-count 8),\n"
                   "--timeout S exits 1 if that has not happened after S seconds.\n");
            return CLI_OK;
        } else if (argv[i][0] != '-' && !ep)
            ep = argv[i];
        else {
            fprintf(stderr, "watch: bad argument '%s'\n", argv[i]);
            return CLI_USAGE;
        }
    }
    if (!ep) {
        fprintf(stderr, "watch: endpoint required, e.g. aptomo watch tcp://127.0.0.1:9998\n");
        return CLI_USAGE;
    }
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    void *ctx = zmq_ctx_new(), *sub = zmq_socket(ctx, ZMQ_SUB);
    int tmo = 200;
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    if (zmq_connect(sub, ep) != 0) {
        fprintf(stderr, "watch: connect %s: %s\n", ep, zmq_strerror(errno));
        zmq_close(sub);
        zmq_ctx_term(ctx);
        return CLI_USAGE;
    }
    int tty = !raw && isatty(STDOUT_FILENO);
    watch_view v = {0};
    uint64_t seen = 0, until_seen = 0;
    double t0 = apt_now();
    int rc = CLI_OK;
    while (!watch_stop) {
        if (timeout > 0 && apt_now() - t0 > timeout) {
            fprintf(stderr, "watch: timeout after %.0f s\n", timeout);
            rc = CLI_FAIL;
            break;
        }
        char topic[64] = "";
        int n = zmq_recv(sub, topic, sizeof topic - 1, 0);
        if (n < 0)
            continue;
        topic[n < (int)sizeof topic - 1 ? n : (int)sizeof topic - 1] = '\0';
        int more = 0;
        size_t ml = sizeof more;
        zmq_getsockopt(sub, ZMQ_RCVMORE, &more, &ml);
        char *header = NULL;
        size_t payload = 0;
        while (more) {
            zmq_msg_t part;
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, sub, 0) < 0) {
                zmq_msg_close(&part);
                break;
            }
            if (!header)
                header = strndup(zmq_msg_data(&part), zmq_msg_size(&part));
            else
                payload += zmq_msg_size(&part);
            more = zmq_msg_more(&part);
            zmq_msg_close(&part);
        }
        v.messages++;
        seen++;
        json_t *h = header ? json_loads(header, 0, NULL) : NULL;
        if (!tty) {
            printf("%s %s", topic, header ? header : "{}");
            if (payload)
                printf(" +%zu bytes", payload);
            printf("\n");
            fflush(stdout);
        } else if (h && !strcmp(topic, "status")) {
            snprintf(v.status, sizeof v.status,
                     "state %-14s series %-6lld angles %-5lld frames %-9lld dropped %-7lld queue %lld",
                     str(h, "state"), ival(h, "series"), ival(h, "angles_done"),
                     ival(h, "frames_received"), ival(h, "frames_dropped"), ival(h, "queue_depth"));
        } else if (h && !strcmp(topic, "angle")) {
            format_angle(h, v.angles[v.next], sizeof v.angles[0]);
            v.next = (v.next + 1) % WATCH_ROWS;
            if (v.n_angles < WATCH_ROWS)
                v.n_angles++;
        } else if (h) {
            format_result(topic, h, payload, &v);
        }
        if (tty)
            draw(&v, ep);
        json_decref(h);
        free(header);
        if (until && !strcmp(topic, until) && ++until_seen >= until_n)
            break;
        if (count && seen >= count)
            break;
    }
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return rc;
}
