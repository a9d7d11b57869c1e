/* settings.c - the one place where the YAML configuration becomes the daemon's settings struct: every key the
 * daemon uses is read here, so the stages never touch the config tree (and tests can build settings directly). */
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "aptomo/config.h"
#include "aptomo/log.h"
#include "aptomo/sim.h"
#include "aptomod/aptd.h"

#define COPY_STR(dst, key)                                                                                     \
    do {                                                                                                       \
        const char *v_ = apt_config_str(cfg, key, err);                                                        \
        if (strlen(v_) >= sizeof(dst))                                                                         \
            return apt_config_fail(cfg, key, err, APT_EINVAL, "longer than %zu characters", sizeof(dst) - 1);  \
        memcpy(dst, v_, strlen(v_) + 1);                                                                       \
    } while (0)

int aptd_settings_from_config(const apt_config *cfg, aptd_settings *s, apt_error *err)
{
    aptd_settings_default(s);
    size_t n = apt_config_list_len(cfg, "detector.endpoints", err);
    if (n < 1 || n > APTD_MAX_ENDPOINTS)
        return apt_config_fail(cfg, "detector.endpoints", err, APT_EINVAL, "between 1 and %d endpoints, got %zu",
                               APTD_MAX_ENDPOINTS, n);
    for (size_t i = 0; i < n; i++) {
        const char *ep = apt_config_list_str(cfg, "detector.endpoints", i, err);
        if (strlen(ep) >= sizeof s->endpoints[0])
            return apt_config_fail(cfg, "detector.endpoints", err, APT_EINVAL, "entry %zu: longer than %zu "
                                   "characters", i, sizeof s->endpoints[0] - 1);
        snprintf(s->endpoints[i], sizeof s->endpoints[i], "%s", ep);
    }
    s->n_endpoints = (int)n;
    const char *proto = apt_config_str(cfg, "detector.protocol", err);
    s->protocol = !strcmp(proto, "v1") ? 1 : !strcmp(proto, "v2") ? 2 : 0;
    COPY_STR(s->channel, "detector.channel");
    s->crop = (uint32_t)apt_config_int(cfg, "detector.crop", err);
    if (apt_config_list_len(cfg, "detector.beam_center", err) == 2) {
        s->beam_center[0] = apt_config_list_float(cfg, "detector.beam_center", 0, err);
        s->beam_center[1] = apt_config_list_float(cfg, "detector.beam_center", 1, err);
    } else {
        s->beam_center[0] = s->beam_center[1] = NAN;
    }
    s->rcvhwm = (int)apt_config_int(cfg, "detector.rcvhwm", err);
    s->series_timeout_s = apt_config_float(cfg, "detector.series_timeout_s", err);
    s->max_frames_per_series = (uint64_t)apt_config_int(cfg, "detector.max_frames_per_series", err);
    s->max_frame_pixels = (uint64_t)apt_config_int(cfg, "detector.max_frame_pixels", err);
    s->max_message_bytes = (uint64_t)apt_config_int(cfg, "detector.max_message_bytes", err);
    s->decode_threads = (int)apt_config_int(cfg, "ingest.decode_threads", err);
    s->backend = apt_config_enum(cfg, "compute.backend", err); /* auto|cpu|gpu = APT_BACKEND_* */
    s->queue_frames = (int)apt_config_int(cfg, "ingest.queue_frames", err);
    COPY_STR(s->metadata_endpoint, "metadata.endpoint");
    s->metadata_bind = apt_config_bool(cfg, "metadata.bind", err);
    s->metadata_grace_s = apt_config_float(cfg, "metadata.grace_s", err);
    COPY_STR(s->results_endpoint, "results.endpoint");
    COPY_STR(s->results_curve_secret, "results.curve_secret_key");
    COPY_STR(s->results_curve_clients, "results.curve_clients");
    s->results_sndhwm = (int)apt_config_int(cfg, "results.sndhwm", err);
    s->status_period_s = apt_config_float(cfg, "results.status_period_s", err);
    COPY_STR(s->control_endpoint, "control.endpoint");
    COPY_STR(s->control_curve_secret, "control.curve_secret_key");
    COPY_STR(s->control_curve_clients, "control.curve_clients");
    s->n_star = (int)apt_config_int(cfg, "tomo.n_star", err);
    s->publish_every = (int)apt_config_int(cfg, "tomo.publish_every", err);
    COPY_STR(s->storage_dir, "storage.dir");
    s->queue_memory_mb = (int)apt_config_int(cfg, "storage.queue_memory_mb", err);
    COPY_STR(s->model_weights, "model.weights");
    s->model_batch = (int)apt_config_int(cfg, "model.batch", err);
    COPY_STR(s->reference, "tomo.reference");
    s->converge_pcc = apt_config_float(cfg, "tomo.converge_pcc", err);
    s->converge_updates = (int)apt_config_int(cfg, "tomo.converge_updates", err);
    s->baseline = apt_config_enum(cfg, "tomo.baseline", err); /* index into none|fbp|sart = APTD_BASELINE_* */
    s->spool_frames = apt_config_bool(cfg, "storage.spool_frames", err);
    s->spool_min_free_mb = (uint64_t)apt_config_int(cfg, "storage.spool_min_free_mb", err);
    COPY_STR(s->web_address, "web.address");
    s->web_port = (int)apt_config_int(cfg, "web.port", err);
    s->web_max_clients = (int)apt_config_int(cfg, "web.max_clients", err);
    s->web_stream_events = (int)apt_config_int(cfg, "web.stream_events", err);
    s->web_timeout_s = apt_config_float(cfg, "web.timeout_s", err);
    s->log_level = apt_log_parse_level(apt_config_str(cfg, "log.level", err));
    if (s->log_level < 0)
        s->log_level = APT_LOG_INFO;
    if (err && err->code)
        return err->code;
    s->config_yaml = apt_config_dump_yaml(cfg);
    if (!apt_config_bool(cfg, "physics.reconstruct", err))
        return err && err->code ? err->code : APT_OK;
    /* physics: the probe is computed (inline optics model) or loaded now, so a bad probe stops the start */
    apt_angle_cfg *a = &s->angle;
    int rc = apt_angle_cfg_from_config(cfg, a, err);
    if (rc)
        return rc; /* only a schema/accessor mismatch: the values were range-checked when loaded */
    a->threads = s->decode_threads;
    a->backend = (apt_backend)s->backend;
    int M, H, W;
    double pixel;
    /* photon scale is matched to each angle's data later (apt_angle_reconstruct) */
    rc = apt_sim_probe_from_config(cfg, 1e6, &s->probe, &M, &H, &W, &pixel, err);
    if (rc)
        return apt_config_blame(cfg, "physics.probe", err);
    a->M = M;
    return err && err->code ? err->code : APT_OK;
}

int aptd_settings_load(const apt_config *cfg, aptd_settings *s, apt_error *err)
{
    int rc = aptd_settings_from_config(cfg, s, err);
    return rc ? rc : aptd_settings_check(cfg, s, err);
}

void aptd_settings_free(aptd_settings *s)
{
    free(s->probe);
    free(s->config_yaml);
    s->probe = NULL;
    s->config_yaml = NULL;
}
