/* aptd.h - the aptomod core as a library: settings, lifecycle, statistics. main.c wraps it with the config file,
 * signals and systemd; `aptomo bench ingest` and the tests drive it in-process. No physics here: complete angles
 * are handed to the reconstruction stage (src/) through aptd_recon. The daemon's public face (include/aptomod/, beside
 * libaptomo's include/aptomo/): the CLI includes this, never the daemon's private headers (unit tests may). It is not
 * installed, since the daemon's core is not a library users link. */
#ifndef APTD_H
#define APTD_H

#include <stdint.h>

#include "aptomo/angle.h"
#include "aptomo/error.h"

#define APTD_MAX_ENDPOINTS 8
/* Control requests are small JSON objects; a peer that sends a longer message is disconnected by libzmq
   (ZMQ_MAXMSGSIZE) without the daemon reading it, so a stray 200 MiB send costs neither memory nor time. */
#define APTD_CONTROL_MAX_BYTES 65536

enum { APTD_BASELINE_NONE = 0, APTD_BASELINE_FBP = 1, APTD_BASELINE_SART = 2 }; /* tomo.baseline */

typedef struct aptd_settings {
    char endpoints[APTD_MAX_ENDPOINTS][256];
    int n_endpoints;
    int protocol;               /* 0 auto, 1, 2 */
    char channel[64];           /* v2 channel, "" = first announced, else threshold_1 */
    uint32_t crop;
    double beam_center[2];      /* y, x; NaN = from the start message, else frame centre */
    int rcvhwm;
    double series_timeout_s;
    uint64_t max_frames_per_series;
    uint64_t max_frame_pixels;
    uint64_t max_message_bytes;
    int decode_threads;         /* 0 = cores */
    int backend;                /* compute.backend: apt_backend of the model, projector and network */
    int queue_frames;
    char metadata_endpoint[256];
    int metadata_bind;
    double metadata_grace_s;    /* how long a finished series waits for late scan metadata; 0 = off */
    char results_endpoint[256];
    int results_sndhwm;
    double status_period_s;
    char control_endpoint[256];
    /* CURVE (auth.c): the server's key pair file, "" = plain TCP; the authorised clients' public keys */
    char control_curve_secret[1024], control_curve_clients[1024];
    char results_curve_secret[1024], results_curve_clients[1024];
    int n_star, publish_every;
    char storage_dir[1024];
    int queue_memory_mb;        /* complete angles queued in memory beyond this go to storage.dir/queue */
    char model_weights[1024];   /* "" = no network: the Approximant is the volume */
    int model_batch;
    char reference[1024];       /* tomo.reference, "" = none */
    double converge_pcc;
    int converge_updates;
    int baseline;                     /* tomo.baseline: 0 none, 1 fbp, 2 sart */
    int spool_frames;
    uint64_t spool_min_free_mb; /* spool off below this much free space on storage.dir; 0 = no check */
    int log_level;              /* APT_LOG_* */
    /* the dashboard (web*.c): off when web_port is 0 */
    char web_address[64];
    int web_port, web_max_clients, web_stream_events;
    double web_timeout_s;
    /* physics: probe NULL = reconstruction off (angles are only reported) */
    apt_angle_cfg angle;
    float *probe;               /* [M, crop, crop] complex, owned by the settings */
    char *config_yaml;          /* effective configuration, stored in result files; owned */
} aptd_settings;

typedef struct aptd_stats {
    uint64_t messages, malformed;            /* every message received; those that did not decode */
    uint64_t frames_received, frames_accepted, frames_decoded;
    uint64_t dropped_stale, dropped_duplicate, dropped_undecodable, dropped_nopos, dropped_overflow;
    uint64_t series_started, series_completed, angles_done;
    uint64_t spooled, spool_errors;
    uint64_t current_series;
    int state;                               /* APTD_IDLE ... */
    uint64_t queue_depth;
} aptd_stats;

enum { APTD_IDLE = 0, APTD_ACQUIRING, APTD_RECONSTRUCTING, APTD_DONE, APTD_ERROR };
const char *aptd_state_name(int state);

typedef struct aptd aptd;

void aptd_settings_default(aptd_settings *s);
struct apt_config;
/* Fill settings from a loaded configuration (settings.c). Errors name the key ("FILE:LINE:COL: key 'k': ..."). */
int aptd_settings_from_config(const struct apt_config *cfg, aptd_settings *s, apt_error *err);
/* Every check that start-up makes, without starting anything (check.c): endpoints' syntax and distinct bound
   addresses, storage.dir creatable and writable, the grid, the per-angle reconstruction's stacks at the bounding
   tilts, model.weights loads, tomo.reference loads and matches the volume's shape. */
int aptd_settings_check(const struct apt_config *cfg, const aptd_settings *s, apt_error *err);
/* The tilts that bound every angle's slice stack and projection width for grid g (baseline.c): 0 deg (narrowest
   shadow), the widest shadow, 90 deg (deepest path). */
void aptd_grid_tilts(const apt_grid3 *g, double th[3]);
/* aptd_settings_from_config then aptd_settings_check: what aptomod --check, --print-config and the start run. */
int aptd_settings_load(const struct apt_config *cfg, aptd_settings *s, apt_error *err);
void aptd_settings_free(aptd_settings *s);
/* Binds/connects every socket and starts the threads; returns once the daemon is ready to receive. */
int aptd_start(const aptd_settings *s, aptd **out, apt_error *err);
/* Runs the control loop (REP socket, timers, status) until *stop becomes non-zero or a shutdown request arrives.
   watchdog_cb, if set, is called about every 100 ms from this loop (systemd watchdog ping). */
int aptd_run(aptd *d, volatile int *stop, void (*watchdog_cb)(void *), void *cb_arg);
/* Drains: stops receiving, decodes and spools what was received, completes the open series, waits for the
   reconstruction queue, publishes the last status. Then frees everything. */
void aptd_stop(aptd **d);
void aptd_get_stats(aptd *d, aptd_stats *st);
/* CURVE key files of the control and results sockets (auth.c): the pair readable by its owner only and matching,
   the client list parseable and not empty, both keys or neither. Part of aptd_settings_check. */
struct sockaddr_storage;
/* web.address + web.port -> the dashboard's socket address (numeric IPv4 or IPv6 only); -1 if not one (web.c). */
int aptd_web_address(const char *address, int port, struct sockaddr_storage *sa, int *is_v6);
int aptd_auth_check(const struct apt_config *cfg, const aptd_settings *s, apt_error *err);
/* SIGHUP, on the control thread (control.c): ns is the re-read configuration, already through aptd_settings_load;
   cfg0 the one the daemon started with, cfg1 the new one. Live keys that differ are applied (logged old -> new),
   other keys that differ from cfg0 are named as needing a restart and left alone, the CURVE client lists are
   re-read. A failure (a client list that no longer reads) changes nothing. */
int aptd_reload(aptd *d, const struct apt_config *cfg0, const struct apt_config *cfg1, const aptd_settings *ns,
                apt_error *err);

#endif
