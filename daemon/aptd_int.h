/* aptd_int.h - the daemon's internal structures shared by its stages: receive (ingest.c), assemble (series.c),
 * decode (decode.c), spool (spoolq.c), reconstruct (recon.c), publish (publish.c), control (core.c). */
#ifndef APTD_INT_H
#define APTD_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <zmq.h>

#include "aptomo/angle.h"
#include "aptomo/approximant.h"
#include "aptomo/clock.h"
#include "aptomo/frame.h"
#include "aptomo/geometry.h"
#include "aptomo/scanmeta.h"
#include "aptomo/stream.h"
#include "aptomo/volume.h"
#include "aptomod/aptd.h"
#include "pool.h"
#include "queue.h"

/* One detector series = one tomographic angle while it is being received. */
typedef struct aptd_series {
    atomic_int refs;
    pthread_mutex_t mu;
    struct aptd_pool *pool;           /* where its patterns go back to */
    uint64_t id, index;               /* detector series id; order of arrival among series */
    char unique_id[APT_NAME_LEN];
    int version;
    char channel[APT_NAME_LEN];       /* v2 channel in use */
    apt_detector_config config;
    uint32_t width, height, elem_size; /* fixed by the first image */
    apt_crop crop;
    int geometry_ok;                  /* crop placed */
    uint32_t *mask;                   /* full-frame pixel mask or NULL */
    int has_angle;
    double angle_deg;
    /* per image id, grown on demand up to max_frames_per_series */
    size_t cap;
    float **frames;
    double *pos;                      /* [cap][2] */
    uint8_t *flags;                   /* SEEN | HAS_POS | DECODED | BAD */
    uint64_t received, accepted, decoded, dup, undecodable, overflow, nopos;
    int inflight;                     /* accepted frames not yet decoded */
    int ended;                        /* end message (or timeout/supersede) seen */
    int finished;                     /* handed to reconstruction (or held for late metadata) */
    int held;                         /* finished, waiting in aptd.held for late scan metadata */
    char reason[16];
    double t_start, t_last;
} aptd_series;

enum { SF_SEEN = 1, SF_HAS_POS = 2, SF_DECODED = 4, SF_BAD = 8 };

/* A received frame travelling to the decoders (and the spool): owns the ZeroMQ message holding the blob. */
typedef struct aptd_frame {
    atomic_int refs;
    aptd_series *series;
    uint64_t image_id;
    apt_pixels px;                    /* blob is at zmq_msg_data(&msg) + blob_off */
    size_t blob_off;
    zmq_msg_t msg;
} aptd_frame;

/* A complete angle handed to reconstruction. */
typedef struct aptd_angle {
    uint64_t series_id, index;
    int has_angle;
    double angle_deg;
    uint32_t n;                       /* crop size */
    size_t n_frames;
    float **frames;                   /* n_frames patterns of n*n, owned */
    double *pos;                      /* [n_frames][2] (y, x) metres */
    uint64_t frames_received, frames_dropped, dup, undecodable, nopos, overflow;
    char reason[16];
    double seconds_acquire;
    int finalize;                     /* not an angle: "refine the Approximant now" (control finalize) */
    int wake;                         /* not an angle: look at the reset flag now (control reset) */
    char unique_id[APT_NAME_LEN];
    char *spill_path;                 /* queued on disk (angleq.c): frames == NULL until loaded */
    size_t mem_bytes;                 /* counted against storage.queue_memory_mb while queued in memory */
} aptd_angle;

/* An angle in the Approximant (state.c): its file's sequence number, its series and angle. */
typedef struct aptd_done {
    uint64_t seq, series;
    double angle_deg;
} aptd_done;

/* Crash-safe state (state.c) and the on-disk angle queue (angleq.c). done/next_seq: recon worker only. */
typedef struct aptd_store {
    pthread_mutex_t mu;               /* last_error */
    char last_error[256];
    aptd_done *done;
    size_t n_done, cap_done;
    uint64_t next_seq;
    atomic_uint_fast64_t resumed, corrupt, write_errors, skipped, on_disk, spilled, mem_bytes, spill_seq;
} aptd_store;

typedef struct aptd_pending_meta {
    uint64_t series;
    apt_scanmeta meta;
} aptd_pending_meta;

#define APTD_MAX_PENDING_META 64
#define APTD_MAX_HELD 8               /* finished series waiting for late metadata (each holds its patterns) */
#define APTD_MAX_ANGLES 100000

typedef struct aptd_refine_req aptd_refine_req;

/* The last message per results topic (latest.c), for {"cmd":"latest"}. */
#define APTD_N_TOPICS 6
typedef struct aptd_latest {
    pthread_mutex_t mu;
    char *header[APTD_N_TOPICS];      /* JSON text, NULL = nothing yet */
    zmq_msg_t payload[APTD_N_TOPICS]; /* shares the PUB message's buffer */
    int has_payload[APTD_N_TOPICS];
    struct json_t *angles;            /* this scan's angle headers, oldest first (bounded) */
} aptd_latest;

/* The refinement worker's own state. */
typedef struct aptd_refine_state {
    apt_volume prev;                  /* last published volume (change metrics) */
    int unchanged, stop_n_star, stop_converged;
} aptd_refine_state;


/* The live classical baseline (baseline.c): projections of the angles since the last reset. */
typedef struct aptd_baseline {
    int method, n, U;
    size_t cap, row;                  /* rows allocated, floats per row (Y * U) */
    float *proj;                      /* [cap][Y][U] */
    double *theta;                    /* [cap] */
    float *vol;                       /* the grid's [Z, Y, X] */
} aptd_baseline;

/* The reconstruction worker's own state (touched by that thread only). */
typedef struct aptd_recon_state {
    aptd_baseline base;
    apt_angle_ctx *ctx;
    apt_approx *approx;
    float *volume;                    /* scratch for publishing */
    double theta[APTD_MAX_ANGLES];
    size_t n_theta;
} aptd_recon_state;
#define APTD_POOL_CACHE_BYTES ((size_t)2 << 30) /* patterns kept for reuse: about one large angle */

struct aptd_rx {
    struct aptd *d;
    void *sock;
    int index;
};

struct aptd {
    aptd_settings s;
    struct aptd_rx rx_arg[APTD_MAX_ENDPOINTS + 1]; /* receivers, then the metadata channel */
    void *zctx;
    atomic_int running;               /* receivers keep going while set */
    /* threads */
    pthread_t rx[APTD_MAX_ENDPOINTS], meta_rx, *decoders, spooler, recon, publisher;
    int n_rx, n_decoders, have_meta, have_spool, spool_running, recon_running;
    aptd_queue *decode_q, *spool_q, *recon_q, *pub_q;
    aptd_pool *patterns;              /* crop*crop float buffers, recycled across angles */
    aptd_recon_state rs;
    aptd_queue *refine_q;
    pthread_t refiner;
    int refine_running;
    aptd_refine_state refine;
    aptd_store store;
    struct apt_nn_model *model;       /* NULL without model.weights */
    int patch[3], scale[3];           /* network input patch, output/input scale */
    apt_volume reference;             /* tomo.reference, data NULL if none */
    atomic_int reset_requested;       /* control -> reconstruction worker */
    /* assembly state */
    pthread_mutex_t mu;
    aptd_series *current;
    uint64_t series_count;
    aptd_pending_meta pending[APTD_MAX_PENDING_META];
    int n_pending;
    aptd_series *held[APTD_MAX_HELD]; /* referenced, oldest first; under mu */
    double held_since[APTD_MAX_HELD];
    int n_held;
    atomic_uint_fast64_t meta_late_applied, meta_late_expired, meta_ignored;
    /* spool health (spoolq.c): off after a full disk, quota or size limit; error text under mu */
    atomic_int spool_off;
    atomic_uint_fast64_t spool_skipped, spool_disabled;
    char spool_error[512];
    double spool_free_mb;             /* at the last check, under mu; -1 = not checked */
    /* statistics (atomics: updated from many threads) */
    atomic_uint_fast64_t messages, malformed, frames_received, frames_accepted, frames_decoded, dropped_stale,
        dropped_duplicate, dropped_undecodable, dropped_nopos, dropped_overflow, series_started, series_completed,
        angles_done, spooled, spool_errors, current_series, pub_dropped;
    atomic_int state;
    int state_published;
    aptd_latest latest;               /* publisher thread writes, control thread reads */
    /* sockets owned by one thread each */
    void *pub, *rep;
    double last_status;
    int shutdown_requested;
    struct aptd_auth *auth;           /* ZAP handler (auth.c), NULL when CURVE is off on both sockets */
    atomic_uint_fast64_t auth_refused; /* handshakes refused on the control and results sockets */
    atomic_int ran_ptycho, ran_proj, ran_nn; /* apt_backend each last ran on; -1 = not yet (status backends) */
    struct aptd_web *web;             /* the dashboard (web*.c), NULL when web.port is 0 */
};

/* series.c */
aptd_series *aptd_series_new(aptd *d, const apt_stream_msg *start);
void aptd_series_unref(aptd_series **s);
void aptd_on_start(aptd *d, const apt_stream_msg *m);
/* Takes ownership of *msg (moved) when the frame is accepted; returns 1 accepted, 0 dropped. */
int aptd_on_image(aptd *d, const apt_stream_msg *m, zmq_msg_t *msg, const uint8_t *msg_base);
void aptd_on_end(aptd *d, const apt_stream_msg *m);
void aptd_on_meta(aptd *d, apt_scanmeta *meta);
void aptd_check_timeouts(aptd *d, double now);
/* Hand every series held for late metadata to reconstruction now (shutdown, after the decoders drained). */
void aptd_series_release_held(aptd *d);
/* Marks a series ended (reason) and finishes it when nothing is in flight. Caller holds no locks. */
void aptd_series_end(aptd *d, aptd_series *s, const char *reason);
/* Called by a decoder when a frame of s is done (ok or not). */
void aptd_series_frame_done(aptd *d, aptd_series *s, uint64_t image_id, float *pattern, int ok);
void aptd_frame_unref(aptd_frame **f);

/* ingest.c */
int aptd_ingest_start(aptd *d, apt_error *err);
void aptd_ingest_stop(aptd *d);
/* decode.c */
int aptd_decode_start(aptd *d, apt_error *err);
void aptd_decode_stop(aptd *d);
/* spoolq.c */
int aptd_spool_start(aptd *d, apt_error *err);
void aptd_spool_stop(aptd *d);
void aptd_spool_series_done(aptd *d, aptd_series *s);
/* recon.c */
int aptd_recon_start(aptd *d, apt_error *err);
void aptd_recon_stop(aptd *d);
void aptd_angle_free(aptd *d, aptd_angle **a);
void aptd_recon_free(aptd *d);
/* baseline.c (recon worker only) */
int aptd_baseline_init(aptd *d, apt_error *err);
void aptd_baseline_add(aptd *d, const apt_angle_result *res, double k, double angle_deg); /* push + update */
int aptd_baseline_push(aptd *d, const apt_angle_result *res, double k, double angle_deg); /* projection only */
void aptd_baseline_update(aptd *d);                                                         /* recompute, publish */
void aptd_baseline_reset(aptd *d);
void aptd_baseline_free(aptd *d);
/* state.c (recon worker) */
int aptd_state_resume(aptd *d, apt_approx *ap, double k, apt_error *err);
int aptd_state_seen(const aptd *d, const aptd_angle *a);
int aptd_state_save_angle(aptd *d, uint64_t seq, const aptd_angle *a, const apt_angle_result *res,
                          double wavelength, apt_error *err);
int aptd_state_add(aptd *d, uint64_t seq, const aptd_angle *a);
int aptd_state_save_sums(aptd *d, const apt_approx *ap, apt_error *err);
void aptd_state_reset(aptd *d);
void aptd_state_error(aptd *d, const char *msg);
void aptd_state_status(aptd *d, struct json_t *h);
void aptd_state_free(aptd *d);
size_t aptd_state_list(const char *dir, const char *prefix, char ***names);
void aptd_state_remove_tmp(const char *dir); /* NAME.tmp left by a kill between a file's bytes and its rename */
/* angleq.c: complete angles -> reconstruction, in memory up to storage.queue_memory_mb, then on disk */
int aptd_angleq_push(aptd *d, aptd_angle *a);
int aptd_angleq_load(aptd *d, aptd_angle *a, apt_error *err); /* frames of an angle queued on disk */
void aptd_angleq_done(aptd *d, aptd_angle *a);                 /* reconstructed: forget its memory / file */
int aptd_angleq_resume(aptd *d, apt_error *err);              /* queue the angles a previous run left on disk */
/* A queued angle's file header (JSON) -> its fields; the payload must be its frames' size. Fuzzed (fuzz_sealed). */
int aptd_angleq_parse(const char *text, aptd_angle *a, uint64_t payload, apt_error *err, const char *path);
/* refine.c */
int aptd_refine_start(aptd *d, apt_error *err);
void aptd_refine_stop(aptd *d);
/* Queue a copy of the Approximant for refinement (never blocks for long: the worker keeps only the newest). */
void aptd_refine_request(aptd *d, const float *vol, const apt_grid3 *g, int angles, const double *theta,
                         size_t n_theta, const char *why);
/* publish.c */
int aptd_publish_start(aptd *d, apt_error *err);
void aptd_publish_stop(aptd *d);
/* Queue a message for the PUB socket; header is JSON text (copied), payload copied if non-NULL. Never blocks. */
void aptd_publish(aptd *d, const char *topic, const char *header, const void *payload, size_t len);
struct json_t;
/* Publish a JSON header (takes the reference: h is released) with an optional payload. Never blocks. */
void aptd_publish_json(aptd *d, const char *topic, struct json_t *h, const void *payload, size_t len);
void aptd_publish_status(aptd *d);
/* The status header (also the control socket's status reply). */
struct json_t *aptd_status_json(aptd *d);
/* control.c */
enum { APTD_CMD_STATUS, APTD_CMD_LATEST, APTD_CMD_RESET, APTD_CMD_SET, APTD_CMD_FINALIZE, APTD_CMD_SHUTDOWN };
typedef struct aptd_request {
    int cmd;                          /* APTD_CMD_* */
    int has_topic;
    char topic[32];                   /* latest */
    char key[64];                     /* set */
    struct json_t *value;             /* set: owned, released by aptd_request_clear */
} aptd_request;
/* A control request's bytes -> checked request (0), or -1 with *why set (static text). Pure: no daemon state. */
int aptd_control_parse(const void *buf, size_t len, aptd_request *rq, const char **why);
void aptd_request_clear(aptd_request *rq);
/* Receive one request on the REP socket (if any) and answer it. */
void aptd_control_handle(aptd *d);
/* Set one live-changeable key from a JSON value (range-checked); -1 with *why for any other key or a bad value. */
int aptd_settings_set_live(aptd_settings *s, const char *key, const struct json_t *v, const char **why);
const char *aptd_live_key(size_t i); /* the i-th live key's name, NULL past the end */
/* auth.c */
enum { APTD_AUTH_CONTROL = 0, APTD_AUTH_RESULTS = 1, APTD_AUTH_SOCKETS = 2 };
int aptd_auth_on(const aptd_settings *s, int which);
/* The ZAP handler thread and the client lists; before any CURVE socket binds. Nothing when CURVE is off. */
int aptd_auth_start(aptd *d, apt_error *err);
/* A server socket (before bind): CURVE keys, ZAP domain, monitor of refused handshakes; nothing when off. */
int aptd_auth_server(aptd *d, void *sock, int which, apt_error *err);
/* Re-read the client lists (SIGHUP); on a bad file the old lists stay. */
int aptd_auth_reload(aptd *d, apt_error *err);
/* After the CURVE sockets are closed. */
void aptd_auth_stop(aptd *d);
/* latest.c */
void aptd_latest_init(aptd *d);
void aptd_latest_free(aptd *d);
void aptd_latest_clear(aptd *d); /* control reset: a new scan */
/* Publisher thread: header is JSON text; payload (may be NULL) is shared, not consumed. */
void aptd_latest_keep(aptd *d, const char *topic, const char *header, zmq_msg_t *payload);
/* {"ok":true,"status":{...},"topics":{topic: header + payload_bytes},"angles":[...]} */
struct json_t *aptd_latest_json(aptd *d);
/* One topic's header (owned by the caller) and payload (into an initialised message): 1 with a payload, 0 without,
   -1 with *why set when there is nothing to give. */
int aptd_latest_get(aptd *d, const char *topic, struct json_t **header, zmq_msg_t *payload, const char **why);
/* web.c, web_feed.c, web_image.c: the dashboard over HTTP (nothing when web.port is 0) */
int aptd_web_start(aptd *d, apt_error *err);
void aptd_web_stop(aptd *d);
void aptd_web_event(aptd *d, const char *topic, const char *header);            /* publisher thread: every message */
void aptd_web_angle(aptd *d, const aptd_angle *a, const apt_angle_result *res); /* recon: the angle's phase stack */
void aptd_web_reset(aptd *d);                                                   /* control reset */
void aptd_web_status(aptd *d, struct json_t *h);                                /* status "web" */
/* The PCC of a volume on the Approximant's grid with tomo.reference, as {"pcc": x} for the approximant and
   baseline headers; NULL when no reference is set or its shape differs (recon.c). */
struct json_t *aptd_reference_pcc(aptd *d, const float *vol, const apt_grid3 *g);

#endif
