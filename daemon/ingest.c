/* ingest.c - bytes -> messages. One receiver thread per detector endpoint (a PULL socket connected to the
 * detector's PUSH, as Eiger expects) keeps each endpoint's messages in order, which the series state machine needs;
 * the heavy work (decompression) happens later on the decode pool. A scan-metadata thread PULLs positions/angles.
 * A malformed message is counted, logged (rate-limited) and skipped: nothing a peer sends can stop ingest. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "aptd_int.h"
#include "aptomo/log.h"

typedef struct aptd_rx rx_arg;

static void note_malformed(aptd *d, const char *where, const char *why)
{
    uint64_t n = atomic_fetch_add(&d->malformed, 1) + 1;
    if (n <= 10 || n % 1000 == 0)
        apt_warn("malformed message #%llu on %s: %s", (unsigned long long)n, where, why);
}

/* Which part holds the pixel blob (the image is moved out of it into the decode job). */
static int part_of(const zmq_msg_t *parts, int n, const uint8_t *p)
{
    for (int i = 0; i < n; i++) {
        const uint8_t *b = zmq_msg_data((zmq_msg_t *)&parts[i]);
        if (p >= b && p <= b + zmq_msg_size((zmq_msg_t *)&parts[i]))
            return i;
    }
    return -1;
}

static void handle(aptd *d, const char *where, zmq_msg_t *parts, int n)
{
    apt_buf bufs[APT_MAX_PARTS];
    for (int i = 0; i < n; i++) {
        bufs[i].ptr = zmq_msg_data(&parts[i]);
        bufs[i].len = zmq_msg_size(&parts[i]);
    }
    int version = d->s.protocol ? d->s.protocol : apt_stream_sniff(bufs[0].ptr, bufs[0].len);
    apt_stream_msg m;
    apt_stream_msg_init(&m);
    apt_error err = {0};
    int rc;
    if (version == 1)
        rc = apt_v1_decode(bufs, (size_t)n, &m, &err);
    else if (version == 2 && n == 1)
        rc = apt_v2_decode(bufs[0].ptr, bufs[0].len, NULL, &m, &err);
    else
        rc = apt_err(&err, APT_EPROTO, version == 2 ? "v2 message with %d parts" : "neither v1 JSON nor v2 CBOR",
                     n);
    if (rc != APT_OK) {
        note_malformed(d, where, err.msg);
        apt_stream_msg_clear(&m);
        return;
    }
    if (m.type == APT_MSG_START) {
        aptd_on_start(d, &m);
    } else if (m.type == APT_MSG_IMAGE) {
        const uint8_t *blob = m.pixels.blob;
        for (int c = 0; !blob && c < m.n_chan; c++)
            blob = m.chan[c].blob;
        int k = blob ? part_of(parts, n, blob) : -1;
        if (k < 0)
            note_malformed(d, where, "image without pixel data");
        else
            aptd_on_image(d, &m, &parts[k], zmq_msg_data(&parts[k]));
    } else if (m.type == APT_MSG_END) {
        aptd_on_end(d, &m);
    }
    apt_stream_msg_clear(&m);
}

static void *rx_main(void *arg)
{
    rx_arg *a = arg;
    aptd *d = a->d;
    const char *where = d->s.endpoints[a->index];
    zmq_msg_t parts[APT_MAX_PARTS], extra;
    while (atomic_load(&d->running)) {
        zmq_msg_init(&parts[0]);
        if (zmq_msg_recv(&parts[0], a->sock, 0) < 0) {
            zmq_msg_close(&parts[0]);
            if (errno != EAGAIN && errno != EINTR && errno != ETERM)
                apt_warn("%s: receive: %s", where, zmq_strerror(errno));
            continue;
        }
        atomic_fetch_add(&d->messages, 1);
        int n = 1, too_many = 0, more = zmq_msg_more(&parts[0]);
        while (more) { /* multipart messages arrive whole: these receives do not wait */
            zmq_msg_t *into = n < APT_MAX_PARTS ? &parts[n] : &extra;
            zmq_msg_init(into);
            if (zmq_msg_recv(into, a->sock, 0) < 0) {
                zmq_msg_close(into);
                break;
            }
            more = zmq_msg_more(into);
            if (into == &extra) {
                too_many = 1;
                zmq_msg_close(&extra);
            } else {
                n++;
            }
        }
        if (too_many) {
            note_malformed(d, where, "more parts than any Eiger message has");
        } else {
            handle(d, where, parts, n);
        }
        for (int i = 0; i < n; i++)
            zmq_msg_close(&parts[i]);
    }
    return NULL;
}

static void *meta_main(void *arg)
{
    rx_arg *a = arg;
    aptd *d = a->d;
    while (atomic_load(&d->running)) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, a->sock, 0) < 0) {
            zmq_msg_close(&msg);
            continue;
        }
        if (zmq_msg_more(&msg)) {
            note_malformed(d, d->s.metadata_endpoint, "scan metadata must be a single-part message");
            while (zmq_msg_more(&msg)) {
                zmq_msg_close(&msg);
                zmq_msg_init(&msg);
                if (zmq_msg_recv(&msg, a->sock, 0) < 0)
                    break;
            }
            zmq_msg_close(&msg);
            continue;
        }
        apt_scanmeta meta;
        apt_error err = {0};
        if (apt_scanmeta_parse(zmq_msg_data(&msg), zmq_msg_size(&msg), d->s.max_frames_per_series, &meta, &err))
            note_malformed(d, d->s.metadata_endpoint, err.msg);
        else
            aptd_on_meta(d, &meta);
        apt_scanmeta_clear(&meta);
        zmq_msg_close(&msg);
    }
    return NULL;
}

static void *open_pull(aptd *d, const char *ep, int bind, apt_error *err)
{
    void *s = zmq_socket(d->zctx, ZMQ_PULL);
    int hwm = d->s.rcvhwm, tmo = 100;
    int64_t maxsz = (int64_t)d->s.max_message_bytes;
    if (!s)
        return NULL;
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxsz, sizeof maxsz);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if ((bind ? zmq_bind(s, ep) : zmq_connect(s, ep)) != 0) {
        apt_err(err, APT_EIO, "%s %s: %s", bind ? "bind" : "connect", ep, zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    return s;
}

int aptd_ingest_start(aptd *d, apt_error *err)
{
    for (int i = 0; i < d->s.n_endpoints; i++) {
        d->rx_arg[i] = (rx_arg){d, open_pull(d, d->s.endpoints[i], 0, err), i};
        if (!d->rx_arg[i].sock)
            return APT_EIO;
        if (pthread_create(&d->rx[i], NULL, rx_main, &d->rx_arg[i])) {
            zmq_close(d->rx_arg[i].sock);
            return apt_err(err, APT_ENOMEM, "cannot start receiver thread");
        }
        d->n_rx = i + 1;
        apt_info("detector endpoint %s connected (PULL)", d->s.endpoints[i]);
    }
    if (d->s.metadata_endpoint[0]) {
        rx_arg *a = &d->rx_arg[APTD_MAX_ENDPOINTS];
        *a = (rx_arg){d, open_pull(d, d->s.metadata_endpoint, d->s.metadata_bind, err), -1};
        if (!a->sock)
            return APT_EIO;
        if (pthread_create(&d->meta_rx, NULL, meta_main, a)) {
            zmq_close(a->sock);
            return apt_err(err, APT_ENOMEM, "cannot start metadata thread");
        }
        d->have_meta = 1;
        apt_info("scan-metadata endpoint %s %s (PULL)", d->s.metadata_endpoint,
                 d->s.metadata_bind ? "bound" : "connected");
    }
    return APT_OK;
}

/* Receivers notice `running` within their 100 ms receive timeout. */
void aptd_ingest_stop(aptd *d)
{
    atomic_store(&d->running, 0);
    for (int i = 0; i < d->n_rx; i++) {
        pthread_join(d->rx[i], NULL);
        zmq_close(d->rx_arg[i].sock);
    }
    d->n_rx = 0;
    if (d->have_meta) {
        pthread_join(d->meta_rx, NULL);
        zmq_close(d->rx_arg[APTD_MAX_ENDPOINTS].sock);
        d->have_meta = 0;
    }
}
