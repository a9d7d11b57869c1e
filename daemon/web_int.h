/* web_int.h - the dashboard's HTTP server (web.c: libmicrohttpd, routes, request checks), its live feed (web_feed.c:
 * the event ring every Server-Sent-Events stream reads, the metrics history, snapshots) and its pictures
 * (web_image.c: volume and angle slices as PNG or raw float32). Only aptd_web_* in aptd_int.h is seen outside. */
#ifndef APTD_WEB_INT_H
#define APTD_WEB_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "aptd_int.h"

#define WEB_RING_BYTES ((size_t)8 << 20)      /* ... and at most this many bytes of them */
#define WEB_HISTORY 10000                     /* metrics history entries per series */
#define WEB_KEEPALIVE_S 10.0                  /* an idle stream gets a comment this often */
#define WEB_SNDBUF (64 << 10)                 /* kernel send buffer per connection (bytes; Linux doubles it) */

typedef struct web_event {
    uint64_t id;
    char *text;                               /* "id: N\nevent: T\ndata: JSON\n\n" */
    size_t len;
} web_event;

struct MHD_Daemon;

typedef struct aptd_web {
    aptd *d;
    struct MHD_Daemon *mhd;
    pthread_mutex_t mu;                       /* everything below up to the counters */
    pthread_cond_t cv;                        /* a new event, or stopping */
    int stopping;
    web_event *ring;                          /* web.stream_events records */
    uint64_t ring_cap;
    uint64_t first_id, next_id;               /* the ring holds ids first_id .. next_id-1 */
    size_t ring_bytes;
    struct json_t *hist[3];                   /* approximant, baseline, metrics headers, oldest first */
    float *phase;                             /* latest angle's phase [L, Ny, Nx] (radians), NULL before one */
    int L, Ny, Nx;
    uint64_t series;
    double angle_deg;
    int has_angle_deg;
    /* the colour range of each volume topic's latest payload (computed once per message) */
    const void *range_key[3];
    size_t range_len[3];
    int range_angles[3];
    double range_lo[3], range_hi[3];
    atomic_uint_fast64_t requests, errors, streams, resyncs;
    atomic_int clients;                       /* open SSE streams */
} aptd_web;

/* web_feed.c */
int web_feed_init(aptd_web *w, int events); /* the ring holds that many events */
void web_feed_free(aptd_web *w);
/* {"approximant":[..],"baseline":[..],"metrics":[..]} (a copy) */
struct json_t *web_feed_history(aptd_web *w);
/* The full state a page starts from (or resyncs to), and the id of the first event not in it. */
struct json_t *web_feed_snapshot(aptd_web *w, uint64_t *next_id);
/* The SSE response: a snapshot, then every event, keepalives; NULL on out of memory. */
struct MHD_Response *web_feed_stream(aptd_web *w);

/* web_image.c: each builds a complete response (200) or returns NULL with *status and *why set (400/404/500). */
struct MHD_Response *web_image_volume(aptd_web *w, int topic, const char *axis, const char *index,
                                      const char *format, unsigned *status, const char **why);
struct MHD_Response *web_image_angle(aptd_web *w, const char *slice, const char *format, unsigned *status,
                                     const char **why);
/* The common headers of every response (no caching, no sniffing). */
void web_headers(struct MHD_Response *r, const char *content_type);

#endif
