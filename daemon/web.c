/* web.c - the operators' dashboard over HTTP (libmicrohttpd): the embedded page, the JSON state, the live event
 * stream and slice pictures, on web.address:web.port (off unless a port is set). A browser is a guest here: it only
 * ever reads what the stages already published (the latest-value cache, the feed's ring), each connection has its
 * own thread and a bounded buffer, and nothing a stage does waits for a browser. Only GET and HEAD of a fixed set of
 * paths are served; nothing on disk is reachable. */
#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "aptomo/log.h"
#include "web_int.h"

extern const unsigned char aptd_dashboard_html[];
extern const size_t aptd_dashboard_html_len;

void web_headers(struct MHD_Response *r, const char *content_type)
{
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
}

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *type, char *text)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    web_headers(r, type);
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return MHD_NO;
    return send_text(c, status, "application/json", text);
}

static enum MHD_Result send_error(aptd_web *w, struct MHD_Connection *c, unsigned status, const char *why)
{
    atomic_fetch_add(&w->errors, 1);
    return send_json(c, status, json_pack("{s:s,s:i}", "error", why, "status", (int)status));
}

/* The query parameters each path takes; any other one is a mistake worth a 400, not silence. "v" is always allowed
   (a page's cache-buster). */
typedef struct query_check {
    const char *const *allowed;
    const char *bad;
} query_check;

static enum MHD_Result check_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind, (void)value;
    query_check *q = cls;
    if (!strcmp(key, "v"))
        return MHD_YES;
    for (const char *const *a = q->allowed; a && *a; a++)
        if (!strcmp(key, *a))
            return MHD_YES;
    q->bad = key;
    return MHD_NO;
}

static const char *arg(struct MHD_Connection *c, const char *key)
{
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, key);
}

static enum MHD_Result send_response(aptd_web *w, struct MHD_Connection *c, struct MHD_Response *r,
                                     unsigned status, const char *why)
{
    if (!r)
        return send_error(w, c, status, why);
    enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ok;
}

static const char *const volume_args[] = {"axis", "index", "format", NULL};
static const char *const angle_args[] = {"slice", "format", NULL};
static const char *const volume_topics[3] = {"approximant", "baseline", "volume"};

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **state)
{
    (void)version, (void)upload_data, (void)upload_size, (void)state;
    aptd_web *w = cls;
    atomic_fetch_add(&w->requests, 1);
    if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD)) {
        atomic_fetch_add(&w->errors, 1);
        json_t *j = json_pack("{s:s,s:i}", "error", "only GET and HEAD are served", "status", 405);
        char *text = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        struct MHD_Response *r = text ? MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE)
                                      : NULL;
        if (!r) {
            free(text);
            return MHD_NO;
        }
        web_headers(r, "application/json");
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
        enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, r);
        MHD_destroy_response(r);
        return ok;
    }
    const char *const *allowed = NULL;
    int topic = -1;
    if (!strncmp(url, "/volume/", 8)) {
        for (int i = 0; i < 3; i++)
            if (!strcmp(url + 8, volume_topics[i]))
                topic = i;
        if (topic < 0)
            return send_error(w, c, MHD_HTTP_NOT_FOUND, "no such volume (approximant, baseline, volume)");
        allowed = volume_args;
    } else if (!strcmp(url, "/angle/latest")) {
        allowed = angle_args;
    } else if (strcmp(url, "/") && strcmp(url, "/status.json") && strcmp(url, "/latest.json") &&
               strcmp(url, "/metrics.json") && strcmp(url, "/events")) {
        return send_error(w, c, MHD_HTTP_NOT_FOUND, "no such page (/, /status.json, /latest.json, /metrics.json, "
                                                    "/events, /volume/{approximant,baseline,volume}, "
                                                    "/angle/latest)");
    }
    query_check q = {allowed, NULL};
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, check_arg, &q);
    if (q.bad) {
        char why[160];
        snprintf(why, sizeof why, "unknown query parameter '%.64s' for %.40s", q.bad, url);
        for (char *p = why; *p; p++) /* the name is the client's bytes: JSON text must be valid UTF-8 */
            if ((unsigned char)*p < 32 || (unsigned char)*p > 126)
                *p = '?';
        return send_error(w, c, MHD_HTTP_BAD_REQUEST, why);
    }
    if (!strcmp(url, "/")) {
        struct MHD_Response *r = MHD_create_response_from_buffer(
            aptd_dashboard_html_len, (void *)aptd_dashboard_html, MHD_RESPMEM_PERSISTENT);
        if (!r)
            return MHD_NO;
        web_headers(r, "text/html; charset=utf-8");
        /* the page is one file: its own inline script and style, data from this server only */
        MHD_add_response_header(r, "Content-Security-Policy",
                                "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
                                "'unsafe-inline'; img-src 'self' blob: data:; connect-src 'self'");
        enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ok;
    }
    if (!strcmp(url, "/status.json"))
        return send_json(c, MHD_HTTP_OK, aptd_status_json(w->d));
    if (!strcmp(url, "/latest.json"))
        return send_json(c, MHD_HTTP_OK, aptd_latest_json(w->d));
    if (!strcmp(url, "/metrics.json"))
        return send_json(c, MHD_HTTP_OK, web_feed_history(w));
    unsigned status = MHD_HTTP_INTERNAL_SERVER_ERROR;
    const char *why = "out of memory";
    struct MHD_Response *r;
    if (!strcmp(url, "/events"))
        r = web_feed_stream(w);
    else if (topic >= 0)
        r = web_image_volume(w, topic, arg(c, "axis"), arg(c, "index"), arg(c, "format"), &status, &why);
    else
        r = web_image_angle(w, arg(c, "slice"), arg(c, "format"), &status, &why);
    return send_response(w, c, r, status, why);
}

/* Each connection's kernel send buffer is kept small: a browser that stops reading then blocks its stream within
   WEB_SNDBUF bytes, and web.timeout_s later libmicrohttpd closes it, instead of the kernel queueing megabytes for
   it (Linux grows a loopback socket's buffer to 4 MiB). */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)cls, (void)socket_context;
    if (code != MHD_CONNECTION_NOTIFY_STARTED)
        return;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    int sndbuf = WEB_SNDBUF;
    if (ci)
        setsockopt(ci->connect_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    apt_warn("web: %s", msg);
}

/* web.address (numeric IPv4 or IPv6) + web.port -> a socket address; the settings check runs the same parse. */
int aptd_web_address(const char *address, int port, struct sockaddr_storage *sa, int *is_v6)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    hints.ai_socktype = SOCK_STREAM;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    if (getaddrinfo(address, service, &hints, &res) || !res)
        return -1;
    memset(sa, 0, sizeof *sa);
    memcpy(sa, res->ai_addr, res->ai_addrlen);
    *is_v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return 0;
}

int aptd_web_start(aptd *d, apt_error *err)
{
    if (!d->s.web_port)
        return APT_OK;
    aptd_web *w = calloc(1, sizeof *w);
    if (!w || web_feed_init(w, d->s.web_stream_events)) {
        if (w)
            web_feed_free(w);
        free(w);
        return apt_err(err, APT_ENOMEM, "out of memory for the dashboard");
    }
    w->d = d;
    struct sockaddr_storage sa;
    int v6 = 0;
    if (aptd_web_address(d->s.web_address, d->s.web_port, &sa, &v6)) {
        web_feed_free(w);
        free(w);
        return apt_err(err, APT_EINVAL, "web.address '%s' is not a numeric IPv4 or IPv6 address", d->s.web_address);
    }
    /* one thread per connection: an event stream waits for events in its own thread, and a stalled browser holds
       only its own thread until web.timeout_s closes it */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG |
                     MHD_USE_POLL | (v6 ? MHD_USE_IPv6 : 0);
    w->mhd = MHD_start_daemon(flags, (uint16_t)d->s.web_port, NULL, NULL, on_request, w,
                              MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)d->s.web_max_clients,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)d->s.web_timeout_s,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536,
                              MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
                              MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL, MHD_OPTION_END);
    if (!w->mhd) {
        web_feed_free(w);
        free(w);
        return apt_err(err, APT_EIO, "web: cannot serve the dashboard on %s port %d (in use, or not an address of "
                       "this machine)", d->s.web_address, d->s.web_port);
    }
    d->web = w;
    const char *host = d->s.web_address;
    apt_info("dashboard on http://%s%s%s:%d/ (HTTP, up to %d connections)", v6 ? "[" : "", host, v6 ? "]" : "",
             d->s.web_port, d->s.web_max_clients);
    return APT_OK;
}

void aptd_web_stop(aptd *d)
{
    aptd_web *w = d->web;
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = 1; /* event streams end at their next wake-up */
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    MHD_stop_daemon(w->mhd);
    d->web = NULL;
    web_feed_free(w);
    free(w);
}

void aptd_web_status(aptd *d, json_t *h)
{
    aptd_web *w = d->web;
    if (!w) {
        json_object_set_new(h, "web", json_null());
        return;
    }
    json_object_set_new(h, "web", json_pack("{s:s,s:i,s:i,s:I,s:I,s:I,s:I}", "address", d->s.web_address, "port",
                                            d->s.web_port, "streams_open", atomic_load(&w->clients), "requests",
                                            (json_int_t)atomic_load(&w->requests), "errors",
                                            (json_int_t)atomic_load(&w->errors), "streams",
                                            (json_int_t)atomic_load(&w->streams), "resyncs",
                                            (json_int_t)atomic_load(&w->resyncs)));
}
