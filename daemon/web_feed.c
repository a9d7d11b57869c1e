/* web_feed.c - the dashboard's live feed. The publisher thread appends every results message's header to one ring
 * of Server-Sent-Events records (bounded in count and bytes, never waiting); each browser's stream reads the ring at
 * its own pace from its own thread. A stream that fell behind the ring's oldest record gets a fresh snapshot
 * instead of what it missed, so a slow browser costs memory for nobody and still ends up showing the current state.
 * The feed also keeps what a results stream does not: the metrics of every update (for the plots against the
 * number of angles), so a page opened late draws the whole curve at once. */
#include <jansson.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "web_int.h"

#define STREAM_BATCH ((size_t)32 << 10) /* bytes of events a stream copies per wake-up (a slow one re-reads the ring
                                            this often, and so learns soon that it fell behind) */

static const char *const hist_topics[3] = {"approximant", "baseline", "metrics"};

int web_feed_init(aptd_web *w, int events)
{
    w->ring_cap = (uint64_t)events;
    w->ring = calloc((size_t)events, sizeof *w->ring);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_mutex_init(&w->mu, NULL) || pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    for (int i = 0; i < 3; i++)
        if (!(w->hist[i] = json_array()))
            rc = -1;
    return rc || !w->ring ? -1 : 0;
}

void web_feed_free(aptd_web *w)
{
    for (uint64_t id = w->first_id; w->ring && id < w->next_id; id++)
        free(w->ring[id % w->ring_cap].text);
    for (int i = 0; i < 3; i++)
        json_decref(w->hist[i]);
    free(w->ring);
    free(w->phase);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

/* Caller holds w->mu. Takes text (malloc'd). Drops the oldest records beyond the ring's count and byte bounds. */
static void ring_push_locked(aptd_web *w, char *text, size_t len)
{
    while (w->next_id - w->first_id >= w->ring_cap ||
           (w->next_id > w->first_id && w->ring_bytes + len > WEB_RING_BYTES)) {
        web_event *old = &w->ring[w->first_id % w->ring_cap];
        w->ring_bytes -= old->len;
        free(old->text);
        old->text = NULL;
        w->first_id++;
    }
    web_event *e = &w->ring[w->next_id % w->ring_cap];
    e->id = w->next_id++;
    e->text = text;
    e->len = len;
    w->ring_bytes += len;
    pthread_cond_broadcast(&w->cv);
}

/* One SSE record; a header is compact JSON (one line), but a stray newline would split the record, so it is
   turned into a space (JSON whitespace; a raw newline cannot be inside a JSON string). */
static char *record(uint64_t id, const char *event, const char *data, size_t *len)
{
    size_t n = strlen(data) + strlen(event) + 48;
    char *t = malloc(n);
    if (!t)
        return NULL;
    int k = snprintf(t, n, "id: %llu\nevent: %s\ndata: ", (unsigned long long)id, event);
    for (const char *p = data; *p; p++)
        t[k++] = *p == '\n' || *p == '\r' ? ' ' : *p;
    memcpy(t + k, "\n\n", 3);
    *len = (size_t)k + 2;
    return t;
}

static void push_event(aptd_web *w, const char *topic, const char *header)
{
    pthread_mutex_lock(&w->mu);
    size_t len;
    char *t = record(w->next_id, topic, header, &len);
    if (t)
        ring_push_locked(w, t, len);
    pthread_mutex_unlock(&w->mu);
}

void aptd_web_event(aptd *d, const char *topic, const char *header)
{
    aptd_web *w = d->web;
    if (!w)
        return;
    for (int i = 0; i < 3; i++) {
        if (strcmp(topic, hist_topics[i]))
            continue;
        json_t *h = json_loads(header, 0, NULL);
        if (!h)
            break;
        if (i < 2) /* the volumes' headers minus what a plot does not need */
            json_object_del(h, "voxel_size_m"), json_object_del(h, "dtype"), json_object_del(h, "order");
        pthread_mutex_lock(&w->mu);
        if (json_array_size(w->hist[i]) >= WEB_HISTORY)
            json_array_remove(w->hist[i], 0);
        json_array_append_new(w->hist[i], h);
        pthread_mutex_unlock(&w->mu);
    }
    push_event(w, topic, header);
}

void aptd_web_reset(aptd *d)
{
    aptd_web *w = d->web;
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < 3; i++)
        json_array_clear(w->hist[i]);
    free(w->phase);
    w->phase = NULL;
    pthread_mutex_unlock(&w->mu);
    push_event(w, "reset", "{}");
}

static json_t *history_locked(aptd_web *w)
{
    json_t *h = json_object();
    for (int i = 0; i < 3; i++)
        json_object_set_new(h, hist_topics[i], json_deep_copy(w->hist[i]));
    return h;
}

json_t *web_feed_history(aptd_web *w)
{
    pthread_mutex_lock(&w->mu);
    json_t *h = history_locked(w);
    pthread_mutex_unlock(&w->mu);
    return h;
}

json_t *web_feed_snapshot(aptd_web *w, uint64_t *next_id)
{
    /* the id first: a message published while the snapshot is built is then in it, or in the events after it,
       or both (a page applies events idempotently), never in neither */
    pthread_mutex_lock(&w->mu);
    *next_id = w->next_id;
    json_t *hist = history_locked(w);
    json_t *img = w->phase ? json_pack("{s:I,s:o,s:[i,i,i]}", "series", (json_int_t)w->series, "angle_deg",
                                       w->has_angle_deg ? json_real(w->angle_deg) : json_null(), "stack", w->L,
                                       w->Ny, w->Nx)
                           : json_null();
    pthread_mutex_unlock(&w->mu);
    json_t *s = aptd_latest_json(w->d);
    json_object_del(s, "ok");
    json_object_set_new(s, "history", hist);
    json_object_set_new(s, "angle_image", img);
    return s;
}

/* One browser's event stream, read by libmicrohttpd in that connection's own thread. */
typedef struct web_stream {
    aptd_web *w;
    char *buf;
    size_t len, off, cap;
    uint64_t next;                    /* the next ring id to send */
    int started;
} web_stream;

static int stream_append(web_stream *s, const char *t, size_t n)
{
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n)
            cap *= 2;
        char *b = realloc(s->buf, cap);
        if (!b)
            return -1;
        s->buf = b, s->cap = cap;
    }
    memcpy(s->buf + s->len, t, n);
    s->len += n;
    return 0;
}

static int stream_snapshot(web_stream *s)
{
    uint64_t next;
    json_t *j = web_feed_snapshot(s->w, &next);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    size_t len;
    char *t = text ? record(next ? next - 1 : 0, "snapshot", text, &len) : NULL;
    free(text);
    int rc = t ? stream_append(s, t, len) : -1;
    free(t);
    s->next = next;
    return rc;
}

static double mono_now(struct timespec *ts)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    return (double)ts->tv_sec + ts->tv_nsec * 1e-9;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    web_stream *s = cls;
    aptd_web *w = s->w;
    for (;;) {
        if (s->off < s->len) {
            size_t n = s->len - s->off < max ? s->len - s->off : max;
            memcpy(out, s->buf + s->off, n);
            s->off += n;
            return (ssize_t)n;
        }
        s->off = s->len = 0;
        if (!s->started) {
            s->started = 1;
            static const char retry[] = "retry: 2000\n\n";
            if (stream_append(s, retry, sizeof retry - 1) || stream_snapshot(s))
                return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        struct timespec dl;
        mono_now(&dl);
        dl.tv_sec += (time_t)WEB_KEEPALIVE_S;
        pthread_mutex_lock(&w->mu);
        int timed_out = 0;
        while (!w->stopping && s->next == w->next_id && !timed_out)
            timed_out = pthread_cond_timedwait(&w->cv, &w->mu, &dl) != 0;
        if (w->stopping) {
            pthread_mutex_unlock(&w->mu);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        int rc = 0;
        if (s->next < w->first_id) { /* fell behind the ring: the current state instead of what it missed */
            pthread_mutex_unlock(&w->mu);
            atomic_fetch_add(&w->resyncs, 1);
            rc = stream_snapshot(s);
        } else if (s->next == w->next_id) {
            pthread_mutex_unlock(&w->mu);
            static const char ka[] = ": keepalive\n\n";
            rc = stream_append(s, ka, sizeof ka - 1);
        } else {
            while (!rc && s->next < w->next_id && s->len < STREAM_BATCH) {
                const web_event *e = &w->ring[s->next % w->ring_cap];
                rc = stream_append(s, e->text, e->len);
                s->next++;
            }
            pthread_mutex_unlock(&w->mu);
        }
        if (rc)
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

static void stream_free(void *cls)
{
    web_stream *s = cls;
    atomic_fetch_sub(&s->w->clients, 1);
    free(s->buf);
    free(s);
}

struct MHD_Response *web_feed_stream(aptd_web *w)
{
    web_stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->w = w;
    atomic_fetch_add(&w->clients, 1);
    atomic_fetch_add(&w->streams, 1);
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 << 10, stream_read, s,
                                                               stream_free);
    if (!r) {
        stream_free(s);
        return NULL;
    }
    web_headers(r, "text/event-stream; charset=utf-8");
    return r;
}
