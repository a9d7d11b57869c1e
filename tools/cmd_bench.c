/* cmd_bench.c - `aptomo bench ingest`: decode and end-to-end ingest speed on full Eiger-size frames (514x1030 uint16,
 * bslz4), one JSON line per measurement, each with a reference measured in the same run (memcpy of the same bytes,
 * the bitshuffle library through Debian's python module when present). Never used by tests: speed is reported,
 * not asserted. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "aptomo/codec.h"
#include "aptomo/frame.h"
#include "aptomo/log.h"
#include "aptomo/stream.h"
#include "aptomod/aptd.h"
#include "bench.h"
#include "cli.h"

#define BENCH_DISTINCT 16

typedef struct bench_frames {
    uint32_t w, h;
    uint16_t *raw[BENCH_DISTINCT];
    apt_bytes blob[BENCH_DISTINCT];
} bench_frames;

/* A far-field-like photon-count frame: bright centre, speckle halo falling off as q^-3, module gaps at 0xFFFF. */
static void make_frame(uint16_t *f, uint32_t w, uint32_t h, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 12345;
    for (uint32_t r = 0; r < h; r++)
        for (uint32_t c = 0; c < w; c++) {
            double dy = (double)r - h / 2.0, dx = (double)c - w / 2.0, q2 = dy * dy + dx * dx;
            double lam = 2e4 / (1.0 + pow(q2 / 9.0, 1.5));
            s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
            double u = (double)((s * 2685821657736338717ULL) >> 11) * (1.0 / 9007199254740992.0);
            /* Poisson-ish: mean lam with sqrt(lam) spread; below 1 a Bernoulli photon */
            double v = lam < 1 ? (u < lam ? 1 : 0) : floor(lam + sqrt(lam) * (u * 2 - 1) * 1.7 + 0.5);
            f[(size_t)r * w + c] = (uint16_t)(v < 0 ? 0 : v > 65534 ? 65534 : v);
        }
    for (uint32_t c = 0; c < w; c++) /* horizontal module gap */
        f[(size_t)(h / 2 - 2) * w + c] = f[(size_t)(h / 2 - 3) * w + c] = 0xFFFF;
}

static void emit(const char *what, double fps, double bytes_per_frame, const char *extra)
{
    printf("{\"bench\":\"ingest\",\"what\":\"%s\",\"frames_per_s\":%.1f,\"gb_per_s\":%.3f%s%s}\n", what, fps,
           fps * bytes_per_frame / 1e9, extra ? "," : "", extra ? extra : "");
    fflush(stdout);
}

/* Times the bitshuffle library (python module, C inside) on one of our blobs: the reference decoder. */
static double bitshuffle_lib_fps(const apt_bytes *blob, uint32_t w, uint32_t h, int reps)
{
    char path[] = "/tmp/aptomo-bench-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "wb");
    fwrite(blob->data, 1, blob->len, f);
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import time,numpy as np,bitshuffle as b;d=np.frombuffer(open('%s','rb').read(),"
             "np.uint8)[12:];b.decompress_lz4(d,(%u,%u),np.dtype('uint16'));t=time.perf_counter()\n"
             "for i in range(%d): b.decompress_lz4(d,(%u,%u),np.dtype('uint16'))\n"
             "print(%d/(time.perf_counter()-t))\" 2>/dev/null",
             path, h, w, reps, h, w, reps);
    FILE *p = popen(cmd, "r");
    double fps = -1;
    if (p) {
        if (fscanf(p, "%lf", &fps) != 1)
            fps = -1;
        pclose(p);
    }
    unlink(path);
    return fps;
}

typedef struct sender_arg {
    void *sock;
    bench_frames *fr;
    uint64_t frames, series;
    double t_start, t_end;
    int rc;
} sender_arg;

/* The detector side is cheap on purpose: every message is encoded before the clock starts and blobs go out
   zero-copy, so the two cores measure the receiver, not the sender. Each series carries one position per frame in
   its header appendix (a 1 nm raster stands in for the scan). */
static int sender_prepare(sender_arg *a, apt_parts **out, size_t *n_out)
{
    uint64_t per = a->frames / a->series;
    size_t n = (size_t)a->series * (per + 2), k = 0;
    apt_parts *pre = calloc(n, sizeof *pre);
    size_t cap = 64 + per * 48;
    char *json = malloc(cap);
    apt_error err = {0};
    int rc = pre && json ? APT_OK : APT_ENOMEM;
    for (uint64_t s = 1; rc == APT_OK && s <= a->series; s++) {
        apt_stream_msg m;
        apt_stream_msg_init(&m);
        m.version = 1;
        m.type = APT_MSG_START;
        m.series_id = s;
        m.header_detail = APT_DETAIL_NONE;
        size_t len = (size_t)snprintf(json, cap, "{\"angle_deg\":%g,\"positions_m\":[", (double)s);
        for (uint64_t i = 0; i < per; i++)
            len += (size_t)snprintf(json + len, cap - len, "%s[%g,%g]", i ? "," : "", 1e-9 * (double)(i / 100),
                                    1e-9 * (double)(i % 100));
        len += (size_t)snprintf(json + len, cap - len, "]}");
        m.user_json = json;
        m.user_json_len = len;
        rc = apt_v1_encode(&m, &pre[k++], &err);
        for (uint64_t i = 0; rc == APT_OK && i < per; i++) {
            apt_bytes *b = &a->fr->blob[i % BENCH_DISTINCT];
            apt_stream_msg_init(&m);
            m.version = 1;
            m.type = APT_MSG_IMAGE;
            m.series_id = s;
            m.image_id = i;
            m.pixels = (apt_pixels){"", a->fr->w, a->fr->h, 2, APT_ENC_BSLZ4, b->data, b->len};
            rc = apt_v1_encode(&m, &pre[k++], &err);
            /* the blob part is sent from the shared frame instead (zero-copy) */
            apt_bytes_free(&pre[k - 1].part[2]);
        }
        apt_stream_msg_init(&m);
        m.version = 1;
        m.type = APT_MSG_END;
        m.series_id = s;
        if (rc == APT_OK)
            rc = apt_v1_encode(&m, &pre[k++], &err);
    }
    free(json);
    *out = pre;
    *n_out = k;
    return rc;
}

static void *sender_main(void *arg)
{
    sender_arg *a = arg;
    apt_parts *pre = NULL;
    size_t n = 0;
    a->rc = sender_prepare(a, &pre, &n);
    a->t_start = apt_now();
    uint64_t frame = 0;
    for (size_t i = 0; a->rc == APT_OK && i < n; i++) {
        int image = pre[i].n >= 4 && pre[i].part[2].data == NULL;
        if (!image)
            frame = 0; /* image ids restart with every series */
        for (size_t k = 0; k < pre[i].n; k++) {
            int more = k + 1 < pre[i].n ? ZMQ_SNDMORE : 0;
            if (image && k == 2) {
                apt_bytes *b = &a->fr->blob[frame++ % BENCH_DISTINCT];
                zmq_msg_t zm;
                zmq_msg_init_data(&zm, b->data, b->len, NULL, NULL);
                zmq_msg_send(&zm, a->sock, more);
            } else {
                zmq_send(a->sock, pre[i].part[k].data, pre[i].part[k].len, more);
            }
        }
    }
    a->t_end = apt_now();
    for (size_t i = 0; pre && i < n; i++)
        apt_parts_free(&pre[i]);
    free(pre);
    return NULL;
}

static int bench_end_to_end(bench_frames *fr, uint64_t frames, uint64_t n_series, uint32_t crop, int threads,
                            int spool, const char *dir)
{
    void *ctx = zmq_ctx_new(), *push = zmq_socket(ctx, ZMQ_PUSH);
    int hwm = 1000000;
    zmq_setsockopt(push, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (zmq_bind(push, "tcp://127.0.0.1:*") != 0) {
        fprintf(stderr, "aptomo bench ingest: bind: %s\n", zmq_strerror(zmq_errno()));
        return CLI_FAIL;
    }
    char ep[256];
    size_t eplen = sizeof ep;
    zmq_getsockopt(push, ZMQ_LAST_ENDPOINT, ep, &eplen);
    aptd_settings s;
    aptd_settings_default(&s);
    snprintf(s.endpoints[0], sizeof s.endpoints[0], "%s", ep);
    snprintf(s.results_endpoint, sizeof s.results_endpoint, "inproc://bench-results");
    snprintf(s.control_endpoint, sizeof s.control_endpoint, "inproc://bench-control");
    snprintf(s.storage_dir, sizeof s.storage_dir, "%s", dir);
    s.crop = crop;
    s.decode_threads = threads;
    s.spool_frames = spool;
    s.log_level = APT_LOG_WARN;
    s.queue_frames = 65536;
    aptd *d = NULL;
    apt_error err = {0};
    if (aptd_start(&s, &d, &err)) {
        fprintf(stderr, "aptomo bench ingest: daemon: %s\n", err.msg);
        return CLI_FAIL;
    }
    usleep(200000); /* let the PULL connect */
    sender_arg a = {push, fr, frames / n_series * n_series, n_series, 0, 0, 0};
    frames = a.frames;
    pthread_t th;
    pthread_create(&th, NULL, sender_main, &a);
    aptd_stats st;
    double t_last = apt_now();
    uint64_t last = 0;
    for (;;) { /* done when every frame is decoded (and spooled), or nothing moved for 5 s */
        usleep(2000);
        aptd_get_stats(d, &st);
        uint64_t done = st.frames_decoded + st.dropped_undecodable;
        if (spool && st.spooled < done)
            done = st.spooled;
        if (done != last) {
            last = done;
            t_last = apt_now();
        }
        if (done >= frames || apt_now() - t_last > 5)
            break;
    }
    double t_done = t_last;
    pthread_join(th, NULL);
    aptd_get_stats(d, &st);
    aptd_stop(&d);
    zmq_close(push);
    zmq_ctx_term(ctx);
    if (a.rc) {
        fprintf(stderr, "aptomo bench ingest: sender failed\n");
        return CLI_FAIL;
    }
    double secs = t_done - a.t_start;
    uint64_t lost = frames - (st.frames_decoded < frames ? st.frames_decoded : frames);
    char extra[512];
    snprintf(extra, sizeof extra,
             "\"frames\":%llu,\"lost\":%llu,\"stale\":%llu,\"malformed\":%llu,\"undecodable\":%llu,\"spooled\":%llu,\"decode_threads\":%d,"
             "\"crop\":%u,\"series\":%llu,\"seconds\":%.3f,\"sender_frames_per_s\":%.1f,\"cores\":%ld",
             (unsigned long long)frames, (unsigned long long)lost, (unsigned long long)st.dropped_stale,
             (unsigned long long)st.malformed, (unsigned long long)st.dropped_undecodable,
             (unsigned long long)st.spooled, threads, crop, (unsigned long long)n_series, secs, (double)frames / (a.t_end - a.t_start),
             sysconf(_SC_NPROCESSORS_ONLN));
    emit(spool ? "end_to_end_spool" : "end_to_end", (double)frames / secs, (double)fr->w * fr->h * 2, extra);
    return CLI_OK;
}

static const char INGEST_HELP[] =
    "usage: aptomo bench ingest [--frames N] [--width W] [--height H] [--crop C] [--series K] [--threads T]\n"
    "                           [--reps R] [--spool DIR]\n"
    "Decode and end-to-end ingest speed on Eiger-like bslz4 frames, one JSON line per measurement, each with a\n"
    "reference measured in the same run (memcpy; the bitshuffle library when python3-bitshuffle is there).\n"
    "  --frames N     frames through the daemon end to end (default 20000)\n"
    "  --width W      frame width, 16..8192 (default 1030)\n"
    "  --height H     frame height, 16..8192 (default 514)\n"
    "  --crop C       crop side the daemon decodes (>= 8, default 128)\n"
    "  --series K     series the frames are split into (default 4)\n"
    "  --threads T    decode threads, 0 = one per core (default 0)\n"
    "  --reps R       decode repetitions per single-core measurement (default 400)\n"
    "  --spool DIR    also measure with the HDF5 spool on, into DIR\n";

static int bench_ingest(int argc, char **argv)
{
    enum { O_FRAMES = 256, O_WIDTH, O_HEIGHT, O_CROP, O_THREADS, O_SERIES, O_REPS, O_SPOOL };
    static const struct option opts[] = {
        {"frames", required_argument, NULL, O_FRAMES},   {"width", required_argument, NULL, O_WIDTH},
        {"height", required_argument, NULL, O_HEIGHT},   {"crop", required_argument, NULL, O_CROP},
        {"threads", required_argument, NULL, O_THREADS}, {"series", required_argument, NULL, O_SERIES},
        {"reps", required_argument, NULL, O_REPS},       {"spool", required_argument, NULL, O_SPOOL},
        {0}};
    uint64_t frames = 20000, n_series = 4, w = 1030, h = 514, crop = 128, threads = 0, reps = 400;
    const char *spool_dir = NULL;
    cli_parser p;
    int oc = 0;
    cli_init(&p, "bench ingest", INGEST_HELP, NULL, opts, argc, argv);
    while ((oc = cli_next(&p)) > 0) {
        switch (oc) {
        case O_FRAMES: cli_uint(&p, 1, 1u << 30, &frames); break;
        case O_WIDTH: cli_uint(&p, 16, 8192, &w); break;
        case O_HEIGHT: cli_uint(&p, 16, 8192, &h); break;
        case O_CROP: cli_uint(&p, 8, 8192, &crop); break;
        case O_THREADS: cli_uint(&p, 0, 256, &threads); break;
        case O_SERIES: cli_uint(&p, 1, 1u << 20, &n_series); break;
        case O_REPS: cli_uint(&p, 1, 1u << 30, &reps); break;
        case O_SPOOL: spool_dir = p.arg; break;
        }
    }
    int cli_rc = cli_done(&p, oc, 0, 0, "");
    if (cli_rc != CLI_GO)
        return cli_rc;
    if (crop > w || crop > h)
        return cli_fail(&p, "--crop %llu is larger than the %llux%llu frame", (unsigned long long)crop,
                        (unsigned long long)w, (unsigned long long)h);
    bench_frames fr = {(uint32_t)w, (uint32_t)h, {0}, {{0}}};
    size_t npx = (size_t)w * h, raw_bytes = npx * 2;
    apt_error err = {0};
    for (int i = 0; i < BENCH_DISTINCT; i++) {
        fr.raw[i] = malloc(raw_bytes);
        size_t cap = apt_bslz4_bound(npx, 2), len = 0;
        if (!fr.raw[i] || apt_bytes_reserve(&fr.blob[i], cap, &err)) {
            fprintf(stderr, "aptomo bench ingest: out of memory\n");
            return CLI_FAIL;
        }
        make_frame(fr.raw[i], fr.w, fr.h, (uint64_t)i + 1);
        if (apt_bslz4_encode(fr.raw[i], npx, 2, fr.blob[i].data, cap, &len, &err)) {
            fprintf(stderr, "aptomo bench ingest: encode: %s\n", err.msg);
            return CLI_FAIL;
        }
        fr.blob[i].len = len;
    }
    char extra[256];
    snprintf(extra, sizeof extra, "\"width\":%u,\"height\":%u,\"compressed_bytes\":%zu,\"ratio\":%.2f", fr.w, fr.h,
             fr.blob[0].len, (double)raw_bytes / (double)fr.blob[0].len);
    /* memcpy of the decoded bytes: what any decoder must at least do */
    uint8_t *dst = malloc(raw_bytes);
    double t0 = apt_now();
    for (uint64_t r = 0; r < reps * 4; r++) {
        memcpy(dst, fr.raw[r % BENCH_DISTINCT], raw_bytes);
        __asm__ volatile("" : : "r"(dst) : "memory");
    }
    double memcpy_fps = (double)(reps * 4) / (apt_now() - t0);
    emit("memcpy", memcpy_fps, (double)raw_bytes, extra);
    t0 = apt_now();
    for (uint64_t r = 0; r < reps; r++)
        apt_bslz4_decode(fr.blob[r % BENCH_DISTINCT].data, fr.blob[r % BENCH_DISTINCT].len, 2, dst, raw_bytes, &err);
    double full_fps = (double)reps / (apt_now() - t0);
    double lib_fps = bitshuffle_lib_fps(&fr.blob[0], fr.w, fr.h, (int)reps);
    snprintf(extra, sizeof extra, "\"vs_memcpy\":%.4f,\"bitshuffle_lib_frames_per_s\":%.1f,\"vs_bitshuffle_lib\":%.3f",
             full_fps / memcpy_fps, lib_fps, lib_fps > 0 ? full_fps / lib_fps : NAN);
    emit("decode_full_1core", full_fps, (double)raw_bytes, extra);
    apt_crop c;
    apt_crop_place(fr.w, fr.h, NAN, NAN, (uint32_t)crop, &c, &err);
    float *out = malloc((size_t)crop * crop * sizeof *out);
    apt_bytes scratch = {0};
    apt_pixels px = {"", fr.w, fr.h, 2, APT_ENC_BSLZ4, NULL, 0};
    t0 = apt_now();
    for (uint64_t r = 0; r < reps * 4; r++) {
        px.blob = fr.blob[r % BENCH_DISTINCT].data;
        px.blob_len = fr.blob[r % BENCH_DISTINCT].len;
        apt_frame_decode_crop(&px, &c, NULL, out, &scratch, &err);
    }
    double crop_fps = (double)(reps * 4) / (apt_now() - t0);
    snprintf(extra, sizeof extra, "\"crop\":%llu,\"vs_full_decode\":%.2f,\"vs_memcpy\":%.4f",
             (unsigned long long)crop, crop_fps / full_fps, crop_fps / memcpy_fps);
    emit("decode_crop_1core", crop_fps, (double)raw_bytes, extra);
    free(out);
    free(dst);
    apt_bytes_free(&scratch);

    char tmpdir[] = "/tmp/aptomo-bench-spool-XXXXXX";
    const char *dir = spool_dir ? spool_dir : mkdtemp(tmpdir);
    int rc = bench_end_to_end(&fr, frames, n_series, (uint32_t)crop, (int)threads, 0, dir);
    if (rc == CLI_OK && spool_dir)
        rc = bench_end_to_end(&fr, frames, n_series, (uint32_t)crop, (int)threads, 1, dir);
    if (!spool_dir)
        rmdir(tmpdir);
    for (int i = 0; i < BENCH_DISTINCT; i++) {
        free(fr.raw[i]);
        apt_bytes_free(&fr.blob[i]);
    }
    return rc;
}

static const char HELP[] =
    "usage: aptomo bench ingest|ptycho|ptycho-recon|tomo|nn|train [options]\n"
    "Benchmarks, one JSON line per measurement, each next to a reference measured in the same run:\n"
    "  ingest   decode and end-to-end ingest speed (bslz4 Eiger frames through the daemon's pipeline)\n"
    "  ptycho   multislice forward + gradient patterns/s vs the same FFTs alone\n"
    "  ptycho-recon  one angle's whole reconstruction on a backend (auto, cpu, gpu) vs the paper's 54 s\n"
    "  tomo     FBP and SART vs scikit-image's iradon / iradon_sart\n"
    "  nn       network forward voxels/s vs PyTorch on the same weights\n"
    "  train    one training step's time vs PyTorch on the same weights, batch and threads\n"
    "aptomo help bench SUB: the options of each.\n";

int cmd_bench(int argc, char **argv)
{
    static const cli_sub subs[] = {{"ingest", bench_ingest}, {"ptycho", bench_ptycho},
                                   {"ptycho-recon", bench_ptycho_recon}, {"tomo", bench_tomo},
                                   {"nn", bench_nn},
                                   {"train", bench_train}, {NULL, NULL}};
    return cli_dispatch("bench", HELP, subs, argc, argv);
}
