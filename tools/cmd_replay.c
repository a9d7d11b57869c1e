/* cmd_replay.c - `aptomo replay`: stream a scan file exactly as an Eiger detector would (bind PUSH, one series per
 * angle, v1 multipart or v2 CBOR, bslz4/lz4/none), with angle and positions in the header appendix/user_data, per
 * frame, or on the scan-metadata channel. Fault injection (--drop, --duplicate, --stale, --garbage, --nopos) makes
 * the daemon's bookkeeping testable; the JSON summary on stdout says exactly what a correct receiver must report.
 * Endpoints are checked (apt_endpoint_check) before anything binds. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "aptomo/codec.h"
#include "aptomo/endpoint.h"
#include "aptomo/scanfile.h"
#include "aptomo/scanmeta.h"
#include "aptomo/stream.h"
#include "cli.h"

typedef struct replay_opts {
    const char *scan, *endpoint, *meta_endpoint, *positions;
    int protocol;                /* 1, 2 */
    apt_encoding enc;            /* per protocol: bslz4, lz4 (v1 raw block, v2 h5lz4), none */
    apt_header_detail detail;
    double rate, drop, duplicate, nopos, wait_s;
    uint64_t seed, series0, stale, garbage;
    uint32_t *angles;
    size_t n_angles;
} replay_opts;

/* xorshift64*: reproducible fault injection from --seed, independent of libc. */
static uint64_t rng_state;
static double rng_uniform(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ULL) >> 11) * (1.0 / 9007199254740992.0);
}

static int send_parts(void *sock, const apt_parts *p)
{
    for (size_t i = 0; i < p->n; i++)
        if (zmq_send(sock, p->part[i].data ? (void *)p->part[i].data : "", p->part[i].len,
                     i + 1 < p->n ? ZMQ_SNDMORE : 0) < 0)
            return -1;
    return 0;
}

static int send_msg(void *sock, int protocol, const apt_stream_msg *m, apt_parts *parts, apt_bytes *buf,
                    apt_error *err)
{
    int rc;
    if (protocol == 1) {
        apt_parts_reset(parts);
        if ((rc = apt_v1_encode(m, parts, err)))
            return rc;
        rc = send_parts(sock, parts);
    } else {
        apt_bytes_reset(buf);
        if ((rc = apt_v2_encode(m, buf, err)))
            return rc;
        rc = zmq_send(sock, buf->data, buf->len, 0) < 0 ? -1 : 0;
    }
    if (rc)
        return apt_err(err, APT_EIO, "send: %s (is a receiver connected?)", zmq_strerror(errno));
    return APT_OK;
}

/* A malformed message of the protocol's shape (the receiver must count and skip it). */
static int send_garbage(void *sock, int protocol, uint64_t k)
{
    char junk[64];
    int n = snprintf(junk, sizeof junk, "{\"htype\":\"dimage-1.0\",\"series\":%llu,", (unsigned long long)k);
    if (protocol == 1) {
        if (k % 2)
            return zmq_send(sock, junk, (size_t)n, 0) < 0 ? -1 : 0; /* truncated JSON */
        return (zmq_send(sock, "{\"htype\":\"nonsense-9\"}", 22, ZMQ_SNDMORE) < 0 ||
                zmq_send(sock, junk, 3, 0) < 0) ? -1 : 0;
    }
    uint8_t cbor[32];
    for (size_t i = 0; i < sizeof cbor; i++)
        cbor[i] = (uint8_t)(rng_uniform() * 256);
    cbor[0] = 0xa3; /* a map of 3 that does not hold what it promises */
    return zmq_send(sock, cbor, sizeof cbor, 0) < 0 ? -1 : 0;
}

static void pace(double rate, double t0, uint64_t k)
{
    if (rate <= 0)
        return;
    double due = t0 + (double)k / rate, now = apt_now();
    if (due > now) {
        struct timespec ts = {(time_t)(due - now), (long)(fmod(due - now, 1.0) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

/* Encode one frame for the wire in the requested encoding (from the decoded pixels). */
static int encode_frame(apt_encoding enc, const void *px, size_t n, uint32_t elem, apt_bytes *out,
                        apt_error *err)
{
    size_t raw = n * elem, cap, len = 0;
    int rc;
    switch (enc) {
    case APT_ENC_BSLZ4: cap = apt_bslz4_bound(n, elem); break;
    case APT_ENC_LZ4: cap = apt_lz4_bound(raw); break;
    case APT_ENC_H5LZ4: cap = apt_h5lz4_bound(raw, 0); break;
    default: cap = raw; break;
    }
    if ((rc = apt_bytes_reserve(out, cap, err)))
        return rc;
    switch (enc) {
    case APT_ENC_BSLZ4: rc = apt_bslz4_encode(px, n, elem, out->data, cap, &len, err); break;
    case APT_ENC_LZ4: rc = apt_lz4_encode_raw(px, raw, out->data, cap, &len, err); break;
    case APT_ENC_H5LZ4: rc = apt_h5lz4_encode(px, raw, 0, out->data, cap, &len, err); break;
    default: memcpy(out->data, px, raw); len = raw; rc = APT_OK; break;
    }
    out->len = len;
    return rc;
}

/* The wire blob of frame j: the stored bslz4 chunk as-is when that is what is asked for, else decode + encode. */
static int load_blob(const replay_opts *o, apt_scanfile *sf, uint32_t idx, uint32_t j, size_t n, uint32_t elem,
                     uint8_t *frame, apt_bytes *blob, apt_error *err)
{
    uint32_t fmask = 1;
    if (o->enc == APT_ENC_BSLZ4 && apt_scanfile_read_chunk(sf, idx, j, blob, &fmask, NULL) == APT_OK && fmask == 0)
        return APT_OK;
    int rc = apt_scanfile_read_frames(sf, idx, j, 1, frame, err);
    return rc ? rc : encode_frame(o->enc, frame, n, elem, blob, err);
}

/* An image message of one channel ("threshold_1" in v2). */
static void image_msg(apt_stream_msg *m, int protocol, uint64_t series, const char *uid, uint32_t j, apt_pixels px)
{
    apt_stream_msg_init(m);
    m->version = protocol;
    m->type = APT_MSG_IMAGE;
    m->series_id = series;
    snprintf(m->series_unique_id, sizeof m->series_unique_id, "%s", uid);
    m->image_id = j;
    m->pixels = px;
    m->chan[0] = px;
    m->n_chan = protocol == 2;
}

typedef struct series_sum {
    uint64_t series, frames, sent, dropped, duplicates, nopos;
    double angle;
} series_sum;

static int replay_angle(const replay_opts *o, apt_scanfile *sf, void *sock, void *msock, uint32_t idx,
                        uint64_t series, uint64_t prev_series, series_sum *sum, cli_progress *bar, apt_error *err)
{
    const apt_scan_header *h = apt_scanfile_header(sf);
    uint32_t J, H, W, elem;
    int rc = apt_scanfile_angle_dims(sf, idx, &J, &H, &W, &elem, err);
    if (rc)
        return rc;
    double *pos = malloc((size_t)J * 2 * sizeof *pos);
    uint8_t *frame = malloc((size_t)H * W * elem);
    apt_bytes blob = {0}, buf = {0};
    apt_parts parts = {0};
    char *user = NULL;
    char uid[APT_NAME_LEN], prev_uid[APT_NAME_LEN];
    snprintf(uid, sizeof uid, "replay-%d-%llu", (int)getpid(), (unsigned long long)series);
    snprintf(prev_uid, sizeof prev_uid, "replay-%d-%llu", (int)getpid(), (unsigned long long)prev_series);
    if (!pos || !frame) {
        rc = apt_err(err, APT_ENOMEM, "out of memory for angle %u", idx);
        goto out;
    }
    if ((rc = apt_scanfile_read_positions(sf, idx, pos, err)))
        goto out;
    double angle = h->angles_deg[idx];
    *sum = (series_sum){series, J, 0, 0, 0, 0, angle};

    /* angle and positions: per --positions */
    apt_scanmeta meta = {.kind = APT_META_SERIES, .has_series = 1, .series = series, .has_angle = 1,
                         .angle_deg = angle, .has_n_frames = 1, .n_frames = J};
    int pos_header = !strcmp(o->positions, "header"), pos_frame = !strcmp(o->positions, "frame");
    int pos_meta = !strcmp(o->positions, "metadata");
    if (pos_header || pos_meta) {
        meta.positions_m = pos;
        meta.n_positions = J;
    }
    if (pos_meta) {
        char *text = apt_scanmeta_format(&meta, "aptomo-scan-1.0");
        if (!text || zmq_send(msock, text, strlen(text), 0) < 0) {
            free(text);
            rc = apt_err(err, APT_EIO, "metadata send failed");
            goto out;
        }
        free(text);
        usleep(50000); /* the metadata socket is separate: let it land before the series starts */
        meta.positions_m = NULL;
        meta.n_positions = 0;
    }
    user = apt_scanmeta_format(&meta, NULL);

    apt_stream_msg m;
    apt_stream_msg_init(&m);
    m.version = o->protocol;
    m.type = APT_MSG_START;
    m.series_id = series;
    snprintf(m.series_unique_id, sizeof m.series_unique_id, "%s", uid);
    m.header_detail = o->detail;
    m.config.present = o->detail != APT_DETAIL_NONE || o->protocol == 2;
    m.config.beam_center_y = h->beam_center_px[0];
    m.config.beam_center_x = h->beam_center_px[1];
    m.config.width = W;
    m.config.height = H;
    m.config.n_images = J;
    m.config.elem_size = elem;
    m.config.energy_eV = h->energy_keV * 1e3;
    m.config.distance_m = h->detector_distance_m;
    m.config.pixel_x_m = m.config.pixel_y_m = h->pixel_size_m;
    if (o->protocol == 2) {
        snprintf(m.channels[0], sizeof m.channels[0], "threshold_1");
        m.n_channels = 1;
    }
    m.user_json = user;
    m.user_json_len = user ? strlen(user) : 0;
    if ((rc = send_msg(sock, o->protocol, &m, &parts, &buf, err)))
        goto out;

    uint64_t k = 0, garbage_every = o->garbage ? J / (o->garbage + 1) + 1 : 0, garbage_left = o->garbage;
    double t0 = apt_now();
    /* stray frames of the previous series, as an aborted series leaves them in the pipe */
    for (uint32_t j = 0; prev_series && j < o->stale && j < J; j++) {
        if ((rc = load_blob(o, sf, idx, j, (size_t)H * W, elem, frame, &blob, err)))
            goto out;
        image_msg(&m, o->protocol, prev_series, prev_uid, j, (apt_pixels){"threshold_1", W, H, elem, o->enc,
                                                                           blob.data, blob.len});
        if ((rc = send_msg(sock, o->protocol, &m, &parts, &buf, err)))
            goto out;
    }
    uint64_t bar0 = bar->done;
    for (uint32_t j = 0; j < J; j++) {
        cli_progress_update(bar, bar0 + j); /* per frame: one long angle still moves the bar */
        if (o->drop > 0 && rng_uniform() < o->drop) {
            sum->dropped++;
            continue;
        }
        if ((rc = load_blob(o, sf, idx, j, (size_t)H * W, elem, frame, &blob, err)))
            goto out;
        char fuser[96];
        int with_pos = pos_frame && !(o->nopos > 0 && rng_uniform() < o->nopos);
        image_msg(&m, o->protocol, series, uid, j, (apt_pixels){"threshold_1", W, H, elem, o->enc, blob.data,
                                                                 blob.len});
        if (with_pos) {
            snprintf(fuser, sizeof fuser, "{\"pos_m\":[%.17g,%.17g]}", pos[2 * j], pos[2 * j + 1]);
            m.user_json = fuser;
            m.user_json_len = strlen(fuser);
        }
        pace(o->rate, t0, k++);
        if ((rc = send_msg(sock, o->protocol, &m, &parts, &buf, err)))
            goto out;
        sum->sent++;
        if (pos_frame && !with_pos)
            sum->nopos++;
        if (o->duplicate > 0 && rng_uniform() < o->duplicate) {
            if ((rc = send_msg(sock, o->protocol, &m, &parts, &buf, err)))
                goto out;
            sum->duplicates++;
        }
        if (garbage_left && (j + 1) % garbage_every == 0) {
            if (send_garbage(sock, o->protocol, j)) {
                rc = apt_err(err, APT_EIO, "send: %s", zmq_strerror(errno));
                goto out;
            }
            garbage_left--;
        }
    }
    for (; garbage_left; garbage_left--)
        if (send_garbage(sock, o->protocol, garbage_left)) {
            rc = apt_err(err, APT_EIO, "send: %s", zmq_strerror(errno));
            goto out;
        }
    apt_stream_msg_init(&m);
    m.version = o->protocol;
    m.type = APT_MSG_END;
    m.series_id = series;
    snprintf(m.series_unique_id, sizeof m.series_unique_id, "%s", uid);
    rc = send_msg(sock, o->protocol, &m, &parts, &buf, err);
    cli_progress_update(bar, bar0 + J);
out:
    free(user);
    free(pos);
    free(frame);
    apt_bytes_free(&blob);
    apt_bytes_free(&buf);
    apt_parts_free(&parts);
    return rc;
}

static const char HELP[] =
    "usage: aptomo replay SCAN.h5 [--endpoint tcp://*:9999] [--protocol v1|v2] [--compression bslz4|lz4|none]\n"
    "         [--rate HZ] [--positions header|frame|metadata|none] [--metadata-endpoint tcp://*:9996]\n"
    "         [--header-detail all|basic|none] [--angles I,J,...] [--series0 N] [--wait S]\n"
    "         [--drop P] [--duplicate P] [--nopos P] [--stale N] [--garbage N] [--seed S]\n"
    "Streams SCAN.h5 like an Eiger detector (binds PUSH; one series per angle) and prints a JSON summary of\n"
    "what was sent (what a correct receiver must count). Progress bar (per frame, with ETA) on a terminal.\n"
    "  --endpoint EP            where to bind the image stream (default tcp://*:9999)\n"
    "  --protocol v1|v2         Eiger stream version (default v1)\n"
    "  --compression C          bslz4 (default), lz4 (v1 raw block, v2 HDF5-LZ4 framing) or none\n"
    "  --rate HZ                frames per second, 0 = as fast as possible (default 0)\n"
    "  --positions WHERE        header appendix/user_data (default), per frame, the metadata channel, or none\n"
    "  --metadata-endpoint EP   where to bind the scan-metadata channel (--positions metadata; tcp://*:9996)\n"
    "  --header-detail D        v1 header detail: all, basic (default), none\n"
    "  --angles I,J,...         angle indices to send, in this order (default all)\n"
    "  --series0 N              series id of the first angle (>= 1, default 1)\n"
    "  --wait S                 seconds to wait for a receiver before giving up (0 < S <= 86400, default 30)\n"
    "Faults: --drop P frames never sent, --duplicate P sent twice, --nopos P sent without a position\n"
    "(--positions frame), --stale N stray frames of the previous series after each new header, --garbage N\n"
    "malformed messages per series; probabilities P in [0, 1], --seed S makes them reproducible.\n";

enum { O_ENDPOINT = 256, O_META, O_PROTOCOL, O_COMP, O_POSITIONS, O_DETAIL, O_RATE, O_WAIT, O_DROP, O_DUP, O_NOPOS,
       O_STALE, O_GARBAGE, O_SEED, O_SERIES0, O_ANGLES };

static const struct option LONGOPTS[] = {
    {"endpoint", required_argument, NULL, O_ENDPOINT},   {"metadata-endpoint", required_argument, NULL, O_META},
    {"protocol", required_argument, NULL, O_PROTOCOL},   {"compression", required_argument, NULL, O_COMP},
    {"positions", required_argument, NULL, O_POSITIONS}, {"header-detail", required_argument, NULL, O_DETAIL},
    {"rate", required_argument, NULL, O_RATE},           {"wait", required_argument, NULL, O_WAIT},
    {"drop", required_argument, NULL, O_DROP},           {"duplicate", required_argument, NULL, O_DUP},
    {"nopos", required_argument, NULL, O_NOPOS},         {"stale", required_argument, NULL, O_STALE},
    {"garbage", required_argument, NULL, O_GARBAGE},     {"seed", required_argument, NULL, O_SEED},
    {"series0", required_argument, NULL, O_SERIES0},     {"angles", required_argument, NULL, O_ANGLES},
    {0}};

static const char *const PROTOCOLS[] = {"v1", "v2", NULL}, *const COMPRESSIONS[] = {"bslz4", "lz4", "none", NULL};
static const char *const POSITIONS[] = {"header", "frame", "metadata", "none", NULL};
static const char *const DETAILS[] = {"all", "basic", "none", NULL};

/* One option into o; 0 or -1 after the message. */
static int parse_opt(cli_parser *p, int c, replay_opts *o, int *comp)
{
    int k = 0;
    switch (c) {
    case O_ENDPOINT: o->endpoint = p->arg; return cli_endpoint(p, APT_EP_BIND);
    case O_META: o->meta_endpoint = p->arg; return cli_endpoint(p, APT_EP_BIND);
    case O_PROTOCOL:
        if (cli_choice(p, PROTOCOLS, &k))
            return -1;
        o->protocol = k + 1;
        return 0;
    case O_COMP: return cli_choice(p, COMPRESSIONS, comp);
    case O_POSITIONS:
        if (cli_choice(p, POSITIONS, &k))
            return -1;
        o->positions = POSITIONS[k];
        return 0;
    case O_DETAIL:
        if (cli_choice(p, DETAILS, &k))
            return -1;
        o->detail = k == 0 ? APT_DETAIL_ALL : k == 1 ? APT_DETAIL_BASIC : APT_DETAIL_NONE;
        return 0;
    case O_RATE: return cli_real(p, 0, INFINITY, 0, &o->rate);
    case O_WAIT: return cli_real(p, 0, 86400, CLI_OPEN_LO, &o->wait_s);
    case O_DROP: return cli_real(p, 0, 1, 0, &o->drop);
    case O_DUP: return cli_real(p, 0, 1, 0, &o->duplicate);
    case O_NOPOS: return cli_real(p, 0, 1, 0, &o->nopos);
    case O_STALE: return cli_uint(p, 0, APT_SCAN_MAX_FRAMES, &o->stale);
    case O_GARBAGE: return cli_uint(p, 0, 1000000, &o->garbage);
    case O_SEED: return cli_uint(p, 0, UINT64_MAX, &o->seed);
    case O_SERIES0: return cli_uint(p, 1, UINT64_MAX / 2, &o->series0);
    case O_ANGLES: return cli_index_list(p, &o->angles, &o->n_angles);
    }
    return -1;
}

/* CLI_OK, or the exit status (help printed: -1 for "stop with 0"). */
static int parse_args(int argc, char **argv, replay_opts *o)
{
    *o = (replay_opts){.endpoint = "tcp://*:9999", .meta_endpoint = "tcp://*:9996", .positions = "header",
                       .protocol = 1, .enc = APT_ENC_BSLZ4, .detail = APT_DETAIL_BASIC, .wait_s = 30,
                       .seed = 1, .series0 = 1};
    int comp = 0, c;
    cli_parser p;
    cli_init(&p, "replay", HELP, NULL, LONGOPTS, argc, argv);
    while ((c = cli_next(&p)) > 0)
        if (parse_opt(&p, c, o, &comp))
            return CLI_USAGE;
    int cli_rc = cli_done(&p, c, 1, 1, "SCAN.h5");
    if (cli_rc != CLI_GO)
        return cli_rc == CLI_OK ? -1 : cli_rc;
    o->scan = p.args[0];
    if (o->nopos > 0 && strcmp(o->positions, "frame"))
        return cli_fail(&p, "--nopos needs --positions frame");
    o->enc = comp == 0 ? APT_ENC_BSLZ4 : comp == 2 ? APT_ENC_NONE : o->protocol == 1 ? APT_ENC_LZ4 : APT_ENC_H5LZ4;
    rng_state = o->seed * 0x9E3779B97F4A7C15ULL + 1;
    return CLI_OK;
}

static void *bind_push(void *ctx, const char *ep, double wait_s, apt_error *err)
{
    void *s = zmq_socket(ctx, ZMQ_PUSH);
    int hwm = 100000, linger = -1, tmo = (int)(wait_s * 1000);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger); /* flush everything before exit */
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &tmo, sizeof tmo);     /* no receiver for this long: give up */
    if (zmq_bind(s, ep) != 0) {
        apt_err(err, APT_EIO, "bind %s: %s", ep, zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    return s;
}

int cmd_replay(int argc, char **argv)
{
    replay_opts o;
    int prc = parse_args(argc, argv, &o);
    if (prc) {
        free(o.angles);
        return prc < 0 ? CLI_OK : prc;
    }
    apt_error err = {0};
    apt_scanfile *sf = NULL;
    if (apt_scanfile_open(o.scan, &sf, &err)) {
        cli_error("%s", err.msg);
        free(o.angles);
        return CLI_USAGE;
    }
    const apt_scan_header *h = apt_scanfile_header(sf);
    if (!o.n_angles) {
        o.angles = calloc(h->n_angles ? h->n_angles : 1, sizeof *o.angles);
        for (uint32_t i = 0; o.angles && i < h->n_angles; i++)
            o.angles[o.n_angles++] = i;
    }
    uint64_t frames = 0; /* the bar counts frames */
    for (size_t i = 0; i < o.n_angles; i++) {
        uint32_t J = 0, H, W, elem;
        if (o.angles[i] >= h->n_angles) {
            cli_error("--angles: %s has %u angles, no index %u", o.scan, h->n_angles, o.angles[i]);
            apt_scanfile_close(&sf, NULL);
            free(o.angles);
            return CLI_USAGE;
        }
        if (apt_scanfile_angle_dims(sf, o.angles[i], &J, &H, &W, &elem, NULL) == APT_OK)
            frames += J;
    }
    void *ctx = zmq_ctx_new();
    void *sock = bind_push(ctx, o.endpoint, o.wait_s, &err);
    void *msock = sock && !strcmp(o.positions, "metadata") ? bind_push(ctx, o.meta_endpoint, o.wait_s, &err) : NULL;
    series_sum *sums = calloc(o.n_angles ? o.n_angles : 1, sizeof *sums);
    int rc = (!sock || (!strcmp(o.positions, "metadata") && !msock)) ? APT_EIO : sums ? APT_OK : APT_ENOMEM;
    cli_progress prog;
    cli_progress_start(&prog, "replay", frames);
    double t0 = apt_now();
    uint64_t total = 0;
    for (size_t i = 0; rc == APT_OK && i < o.n_angles; i++) {
        uint64_t series = o.series0 + i;
        rc = replay_angle(&o, sf, sock, msock, o.angles[i], series, i ? series - 1 : 0, &sums[i], &prog, &err);
        total += sums[i].sent + sums[i].duplicates;
    }
    if (rc == APT_OK)
        cli_progress_end(&prog);
    else
        cli_progress_clear(&prog);
    double secs = apt_now() - t0;
    if (rc == APT_OK) {
        printf("{\"scan\":\"%s\",\"protocol\":\"v%d\",\"encoding\":\"%s\",\"positions\":\"%s\",\"seconds\":%.3f,"
               "\"frames_per_s\":%.1f,\"stale_per_series\":%llu,\"garbage_per_series\":%llu,\"series\":[",
               o.scan, o.protocol, apt_encoding_name(o.enc), o.positions, secs, secs > 0 ? (double)total / secs : 0,
               (unsigned long long)o.stale, (unsigned long long)o.garbage);
        for (size_t i = 0; i < o.n_angles; i++) {
            series_sum *s = &sums[i];
            uint64_t used = strcmp(o.positions, "none") ? s->sent - s->nopos : 0;
            printf("%s{\"series\":%llu,\"angle_deg\":%.17g,\"frames\":%llu,\"sent\":%llu,\"dropped\":%llu,"
                   "\"duplicates\":%llu,\"nopos\":%llu,\"stale_sent\":%llu,\"expected_used\":%llu}",
                   i ? "," : "", (unsigned long long)s->series, s->angle, (unsigned long long)s->frames,
                   (unsigned long long)s->sent, (unsigned long long)s->dropped, (unsigned long long)s->duplicates,
                   (unsigned long long)s->nopos,
                   (unsigned long long)(i ? (o.stale < s->frames ? o.stale : s->frames) : 0),
                   (unsigned long long)used);
        }
        printf("]}\n");
        fflush(stdout);
    } else {
        cli_error("%s", err.msg[0] ? err.msg : "failed");
    }
    if (msock)
        zmq_close(msock);
    if (sock)
        zmq_close(sock);
    zmq_ctx_term(ctx);
    apt_scanfile_close(&sf, NULL);
    free(sums);
    free(o.angles);
    return rc == APT_OK ? CLI_OK : CLI_FAIL;
}
