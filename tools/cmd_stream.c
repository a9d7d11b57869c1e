/* cmd_stream.c - `aptomo stream dump FILE [--v1|--v2] [--channel NAME]`: decode one captured Eiger stream message
 * and print a JSON summary (blobs as length + CRC-32, never decoded), exit 2 with the decoder's reason when it is
 * malformed. `aptomo stream sample DIR` writes a fixed set of messages made by our encoders, so independent readers
 * (python cbor2/bitshuffle in tests/test_stream_ref.py) can check what we put on the wire. v1 files use the
 * container of tests/data/README.md: u32 LE part count, then per part u32 LE length + bytes. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "aptomo/codec.h"
#include "aptomo/stream.h"
#include "cli.h"

#define DUMP_MAX_FILE (512u << 20)
#define V1_MAX_PARTS 64

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

/* Split a v1 container into parts (borrowed); returns 0 or prints why not. */
static int split_v1(const char *path, const uint8_t *d, size_t len, apt_buf *parts, size_t *nparts)
{
    if (len < 4) {
        fprintf(stderr, "aptomo stream dump: %s: v1 container shorter than its 4-byte part count\n", path);
        return -1;
    }
    uint32_t n = le32(d);
    if (n == 0 || n > V1_MAX_PARTS) {
        fprintf(stderr, "aptomo stream dump: %s: v1 container declares %u parts (1..%d)\n", path, n, V1_MAX_PARTS);
        return -1;
    }
    size_t at = 4;
    for (uint32_t i = 0; i < n; i++) {
        if (len - at < 4) {
            fprintf(stderr, "aptomo stream dump: %s: v1 container truncated at part %u length\n", path, i + 1);
            return -1;
        }
        uint32_t k = le32(d + at);
        at += 4;
        if (k > len - at) {
            fprintf(stderr, "aptomo stream dump: %s: v1 part %u declares %u bytes, %zu left\n", path, i + 1, k,
                    len - at);
            return -1;
        }
        parts[i] = (apt_buf){d + at, k};
        at += k;
    }
    if (at != len) {
        fprintf(stderr, "aptomo stream dump: %s: %zu trailing bytes after the v1 container\n", path, len - at);
        return -1;
    }
    *nparts = n;
    return 0;
}

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *pixels_json(const apt_pixels *p)
{
    if (!p->blob)
        return json_null();
    uLong crc = crc32(0L, Z_NULL, 0);
    size_t left = p->blob_len;
    const uint8_t *b = p->blob;
    while (left) { /* zlib's crc32 takes a uInt length */
        uInt k = left > (1u << 30) ? (1u << 30) : (uInt)left;
        crc = crc32(crc, b, k);
        b += k;
        left -= k;
    }
    return json_pack("{s:s, s:i, s:i, s:i, s:s, s:I, s:I}", "channel", p->channel, "width", (int)p->width, "height",
                     (int)p->height, "elem_size", (int)p->elem_size, "encoding", apt_encoding_name(p->enc), "blob_len",
                     (json_int_t)p->blob_len, "crc32", (json_int_t)crc);
}

static json_t *summary(const apt_stream_msg *m)
{
    static const char *types[] = {"none", "start", "image", "end"}, *details[] = {"none", "basic", "all"};
    json_t *o = json_pack("{s:i, s:s, s:I, s:s}", "version", m->version, "type", types[m->type], "series_id",
                          (json_int_t)m->series_id, "series_unique_id", m->series_unique_id);
    if (!o)
        return NULL;
    if (m->type == APT_MSG_START) {
        const apt_detector_config *c = &m->config;
        if (m->version == 1)
            json_object_set_new(o, "header_detail", json_string(details[m->header_detail]));
        json_object_set_new(
            o, "config",
            json_pack("{s:b, s:o, s:o, s:i, s:i, s:I, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:I}", "present", c->present,
                      "beam_center_x", num_or_null(c->beam_center_x), "beam_center_y", num_or_null(c->beam_center_y),
                      "width", (int)c->width, "height", (int)c->height, "n_images", (json_int_t)c->n_images,
                      "elem_size", (int)c->elem_size, "energy_eV", num_or_null(c->energy_eV), "distance_m",
                      num_or_null(c->distance_m), "pixel_x_m", num_or_null(c->pixel_x_m), "pixel_y_m",
                      num_or_null(c->pixel_y_m), "count_time_s", num_or_null(c->count_time_s), "frame_time_s",
                      num_or_null(c->frame_time_s), "saturation", (json_int_t)c->saturation));
        json_t *ch = json_array();
        for (int k = 0; k < m->n_channels; k++)
            json_array_append_new(ch, json_string(m->channels[k]));
        json_object_set_new(o, "channels", ch);
        json_object_set_new(o, "mask", pixels_json(&m->mask));
    }
    if (m->type == APT_MSG_IMAGE) {
        json_object_set_new(o, "image_id", json_integer((json_int_t)m->image_id));
        json_object_set_new(o, "pixels", pixels_json(&m->pixels));
        json_t *ch = json_array();
        for (int k = 0; k < m->n_chan; k++)
            json_array_append_new(ch, pixels_json(&m->chan[k]));
        json_object_set_new(o, "chan", ch);
    }
    json_t *u = m->user_json ? json_stringn(m->user_json, m->user_json_len) : NULL; /* NULL too if not UTF-8 */
    json_object_set_new(o, "user_json", u ? u : json_null());
    return o;
}

static const char DUMP_HELP[] =
    "usage: aptomo stream dump FILE [--v1|--v2] [--channel NAME]\n"
    "Decodes one captured Eiger stream message and prints a JSON summary (blobs as length + CRC-32, never\n"
    "decoded); exit 2 with the decoder's reason when it is malformed.\n"
    "  --v2            FILE is one CBOR message (stream v2, the default)\n"
    "  --v1            FILE is a v1 container: u32 LE part count, then per part u32 LE length and bytes\n"
    "  --channel NAME  v2: the channel to report as pixels (default the first)\n";

static const char SAMPLE_HELP[] =
    "usage: aptomo stream sample DIR\n"
    "Writes reference messages made by aptomo's encoders into DIR (v1 containers *.bin, v2 CBOR *.cbor: start\n"
    "at every header detail, images in every encoding and element size, end), for independent readers.\n";

static const char HELP[] =
    "usage: aptomo stream dump FILE [--v1|--v2] [--channel NAME]\n"
    "       aptomo stream sample DIR\n"
    "dump: decode one captured Eiger stream message (v2: one CBOR message, the default; v1: container of\n"
    "u32 LE part count + per part u32 LE length and bytes) and print a JSON summary; exit 2 if malformed.\n"
    "sample: write reference messages made by aptomo's encoders into DIR.\n"
    "aptomo help stream dump|sample: the options of each.\n";

static int dump(int argc, char **argv)
{
    static const struct option opts[] = {{"v1", no_argument, NULL, '1'}, {"v2", no_argument, NULL, '2'},
                                         {"channel", required_argument, NULL, 'c'}, {0}};
    const char *path = NULL, *channel = NULL;
    int v1 = 0, c;
    cli_parser p;
    cli_init(&p, "stream dump", DUMP_HELP, NULL, opts, argc, argv);
    while ((c = cli_next(&p)) > 0) {
        if (c == '1' || c == '2')
            v1 = c == '1';
        else
            channel = p.arg;
    }
    int cli_rc = cli_done(&p, c, 1, 1, "FILE");
    if (cli_rc != CLI_GO)
        return cli_rc;
    path = p.args[0];
    size_t len = 0;
    uint8_t *data = cli_read_file(path, DUMP_MAX_FILE, &len);
    if (!data)
        return CLI_USAGE;
    apt_stream_msg m;
    apt_stream_msg_init(&m);
    apt_error err = {0};
    int rc;
    if (v1) {
        apt_buf parts[V1_MAX_PARTS];
        size_t n = 0;
        if (split_v1(path, data, len, parts, &n)) {
            free(data);
            return CLI_USAGE;
        }
        rc = apt_v1_decode(parts, n, &m, &err);
    } else {
        rc = apt_v2_decode(data, len, channel, &m, &err);
    }
    int status = CLI_OK;
    if (rc) {
        fprintf(stderr, "aptomo stream dump: %s: %s\n", path, err.msg);
        status = CLI_USAGE;
    } else {
        json_t *o = summary(&m);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (s) {
            printf("%s\n", s);
        } else {
            fprintf(stderr, "aptomo stream dump: %s: decoded, but the summary could not be formatted as JSON\n", path);
            status = CLI_FAIL;
        }
        free(s);
        json_decref(o);
    }
    apt_stream_msg_clear(&m);
    free(data);
    return status;
}

/* ---- sample: deterministic messages from our encoders ---- */

enum { SW = 48, SH = 32 };

/* The test pattern: channel c (0-based), pixel (y, x), wrapped to the element width. tests/test_stream_ref.py
   computes the same numbers. */
static uint32_t pattern(int c, uint32_t y, uint32_t x, uint32_t elem)
{
    uint64_t v = ((uint64_t)x * 7 + (uint64_t)y * 131 + (uint64_t)c * 1013) * (elem == 4 ? 65537u : 1u);
    return elem == 4 ? (uint32_t)v : elem == 2 ? (uint32_t)(v & 0xffff) : (uint32_t)(v & 0xff);
}

static void fill(uint8_t *raw, int c, uint32_t elem)
{
    for (uint32_t y = 0; y < SH; y++)
        for (uint32_t x = 0; x < SW; x++) {
            uint32_t v = pattern(c, y, x, elem);
            for (uint32_t b = 0; b < elem; b++)
                raw[((size_t)y * SW + x) * elem + b] = (uint8_t)(v >> (8 * b));
        }
}

static int encode_blob(const uint8_t *raw, uint32_t elem, apt_encoding enc, apt_bytes *out, apt_error *err)
{
    size_t n = (size_t)SW * SH, bytes = n * elem, got = 0;
    size_t cap = enc == APT_ENC_BSLZ4 ? apt_bslz4_bound(n, elem)
                 : enc == APT_ENC_H5LZ4 ? apt_h5lz4_bound(bytes, 0)
                 : enc == APT_ENC_LZ4   ? apt_lz4_bound(bytes)
                                        : bytes;
    int rc = apt_bytes_reserve(out, cap, err);
    if (rc)
        return rc;
    if (enc == APT_ENC_BSLZ4)
        rc = apt_bslz4_encode(raw, n, elem, out->data, cap, &got, err);
    else if (enc == APT_ENC_H5LZ4)
        rc = apt_h5lz4_encode(raw, bytes, 0, out->data, cap, &got, err);
    else if (enc == APT_ENC_LZ4)
        rc = apt_lz4_encode_raw(raw, bytes, out->data, cap, &got, err);
    else
        memcpy(out->data, raw, got = bytes);
    out->len = got;
    return rc;
}

static int write_v1(const char *dir, const char *name, const apt_parts *p)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t total = 4;
    for (size_t i = 0; i < p->n; i++)
        total += 4 + p->part[i].len;
    uint8_t *buf = malloc(total), *w = buf;
    if (!buf)
        return -1;
    uint32_t v = (uint32_t)p->n;
    for (int b = 0; b < 4; b++)
        *w++ = (uint8_t)(v >> (8 * b));
    for (size_t i = 0; i < p->n; i++) {
        v = (uint32_t)p->part[i].len;
        for (int b = 0; b < 4; b++)
            *w++ = (uint8_t)(v >> (8 * b));
        if (p->part[i].len)
            memcpy(w, p->part[i].data, p->part[i].len);
        w += p->part[i].len;
    }
    int rc = cli_write_file(path, buf, total);
    free(buf);
    return rc;
}

static int write_v2(const char *dir, const char *name, const apt_bytes *b)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return cli_write_file(path, b->data, b->len);
}

static void sample_start(apt_stream_msg *m, const uint8_t *mask)
{
    apt_stream_msg_init(m);
    m->type = APT_MSG_START;
    m->series_id = 7;
    snprintf(m->series_unique_id, APT_NAME_LEN, "sample-7");
    apt_detector_config *c = &m->config;
    c->present = 1;
    c->beam_center_x = 23.5;
    c->beam_center_y = 15.25;
    c->width = SW;
    c->height = SH;
    c->n_images = 3;
    c->elem_size = 2;
    c->energy_eV = 8000.0;
    c->distance_m = 2.5;
    c->pixel_x_m = c->pixel_y_m = 75e-6;
    c->count_time_s = 0.001;
    c->frame_time_s = 0.0011;
    c->saturation = 65000;
    snprintf(m->channels[0], APT_NAME_LEN, "threshold_1");
    snprintf(m->channels[1], APT_NAME_LEN, "threshold_2");
    m->n_channels = 2;
    m->mask = (apt_pixels){"threshold_1", SW, SH, 4, APT_ENC_NONE, mask, (size_t)SW * SH * 4};
    m->user_json = "{\"angle_deg\":12.5,\"positions_m\":[[1e-06,-2e-06],[3e-06,4e-06],[5e-06,6e-06]]}";
    m->user_json_len = strlen(m->user_json);
}

static int sample(int argc, char **argv)
{
    cli_parser p;
    int c;
    cli_init(&p, "stream sample", SAMPLE_HELP, NULL, NULL, argc, argv);
    while ((c = cli_next(&p)) > 0)
        ;
    int cli_rc = cli_done(&p, c, 1, 1, "DIR");
    if (cli_rc != CLI_GO)
        return cli_rc;
    const char *dir = p.args[0];
    static const apt_encoding encs[] = {APT_ENC_NONE, APT_ENC_BSLZ4, APT_ENC_H5LZ4, APT_ENC_LZ4};
    static const uint32_t elems[] = {1, 2, 4};
    static const char *details[] = {"none", "basic", "all"};
    uint8_t raw[2][SW * SH * 4], mask[SW * SH * 4];
    apt_bytes blob[2] = {{0}}, out = {0};
    apt_parts parts = {0};
    apt_stream_msg m;
    apt_error err = {0};
    char name[128];
    int rc = 0;
    fill(mask, 0, 4);
    for (int d = 0; d < 3 && !rc; d++) { /* start: v2 once, v1 per header_detail */
        sample_start(&m, mask);
        m.header_detail = (apt_header_detail)d;
        snprintf(name, sizeof name, "v1_start_%s.bin", details[d]);
        rc = apt_v1_encode(&m, &parts, &err) || write_v1(dir, name, &parts);
        if (!rc && d == 0)
            rc = apt_v2_encode(&m, &out, &err) || write_v2(dir, "v2_start.cbor", &out);
    }
    for (size_t e = 0; e < 4 && !rc; e++)
        for (size_t k = 0; k < 3 && !rc; k++) {
            uint32_t elem = elems[k];
            for (int c = 0; c < 2 && !rc; c++) {
                fill(raw[c], c, elem);
                rc = encode_blob(raw[c], elem, encs[e], &blob[c], &err);
            }
            apt_stream_msg_init(&m);
            m.type = APT_MSG_IMAGE;
            m.series_id = 7;
            snprintf(m.series_unique_id, APT_NAME_LEN, "sample-7");
            m.image_id = 2;
            for (int c = 0; c < 2; c++) {
                m.chan[c] = (apt_pixels){"", SW, SH, elem, encs[e], blob[c].data, blob[c].len};
                snprintf(m.chan[c].channel, APT_NAME_LEN, "threshold_%d", c + 1);
            }
            m.n_chan = 2;
            m.pixels = m.chan[0];
            m.user_json = "{\"pos_m\":[3e-06,4e-06]}";
            m.user_json_len = strlen(m.user_json);
            if (!rc && encs[e] != APT_ENC_H5LZ4) {
                snprintf(name, sizeof name, "v1_image_%s_%u.bin", apt_encoding_name(encs[e]), elem * 8);
                rc = apt_v1_encode(&m, &parts, &err) || write_v1(dir, name, &parts);
            }
            if (!rc && encs[e] != APT_ENC_LZ4) {
                snprintf(name, sizeof name, "v2_image_%s_%u.cbor", apt_encoding_name(encs[e]), elem * 8);
                rc = apt_v2_encode(&m, &out, &err) || write_v2(dir, name, &out);
            }
        }
    if (!rc) {
        apt_stream_msg_init(&m);
        m.type = APT_MSG_END;
        m.series_id = 7;
        snprintf(m.series_unique_id, APT_NAME_LEN, "sample-7");
        rc = apt_v1_encode(&m, &parts, &err) || write_v1(dir, "v1_end.bin", &parts) ||
             apt_v2_encode(&m, &out, &err) || write_v2(dir, "v2_end.cbor", &out);
    }
    if (rc)
        fprintf(stderr, "aptomo stream sample: %s\n", err.msg[0] ? err.msg : "write failed");
    apt_bytes_free(&blob[0]);
    apt_bytes_free(&blob[1]);
    apt_bytes_free(&out);
    apt_parts_free(&parts);
    return rc ? CLI_FAIL : CLI_OK;
}

int cmd_stream(int argc, char **argv)
{
    static const cli_sub subs[] = {{"dump", dump}, {"sample", sample}, {NULL, NULL}};
    return cli_dispatch("stream", HELP, subs, argc, argv);
}
