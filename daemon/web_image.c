/* web_image.c - slices for the dashboard: a plane of the latest Approximant, baseline or refined volume (from the
 * latest-value cache, shared, never copied whole) or of the latest angle's phase stack, as 8-bit grey PNG (libpng)
 * or raw float32 with its shape in headers. One colour range per volume message (1st..99th percentile of the whole
 * volume, computed once), so every slice of a volume shares one colour bar. */
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/angle.h"
#include "aptomo/preview.h"
#include "web_int.h"

static const char *const topics[3] = {"approximant", "baseline", "volume"};

/* A decimal integer in [0, n) (no sign, no spaces, no suffix) or the default; -1 = invalid. */
static long parse_index(const char *s, long n, long dflt)
{
    if (!s)
        return dflt;
    if (!*s || strlen(s) > 9)
        return -1;
    long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    return v < n ? v : -1;
}

typedef struct png_mem {
    unsigned char *buf;
    size_t len, cap;
    int oom;
} png_mem;

static void png_mem_write(png_structp p, png_bytep data, png_size_t n)
{
    png_mem *m = png_get_io_ptr(p);
    if (m->oom)
        return;
    if (m->len + n > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8192;
        while (cap < m->len + n)
            cap *= 2;
        unsigned char *b = realloc(m->buf, cap);
        if (!b) {
            m->oom = 1;
            return;
        }
        m->buf = b, m->cap = cap;
    }
    memcpy(m->buf + m->len, data, n);
    m->len += n;
}

static void png_mem_flush(png_structp p) { (void)p; }

/* rows x cols floats -> grey PNG in memory, lo..hi -> 0..255 (clipped; NaN black). */
static unsigned char *png_encode(const float *v, int rows, int cols, double lo, double hi, size_t *len)
{
    unsigned char *px = malloc((size_t)rows * cols);
    png_bytep *rowp = malloc((size_t)rows * sizeof *rowp);
    png_mem m = {0};
    png_structp p = NULL;
    png_infop info = NULL;
    if (!px || !rowp)
        goto fail;
    double s = 255.0 / (hi - lo);
    for (size_t i = 0; i < (size_t)rows * cols; i++) {
        double g = isfinite(v[i]) ? (v[i] - lo) * s : 0;
        px[i] = (unsigned char)(g < 0 ? 0 : g > 255 ? 255 : lrint(g));
    }
    for (int r = 0; r < rows; r++)
        rowp[r] = px + (size_t)r * cols;
    p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    info = p ? png_create_info_struct(p) : NULL;
    if (!info || setjmp(png_jmpbuf(p)))
        goto fail;
    png_set_write_fn(p, &m, png_mem_write, png_mem_flush);
    png_set_IHDR(p, info, (png_uint_32)cols, (png_uint_32)rows, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(p, 3); /* fast: a picture per slider move */
    png_set_rows(p, info, rowp);
    png_write_png(p, info, PNG_TRANSFORM_IDENTITY, NULL);
    png_destroy_write_struct(&p, &info);
    free(px);
    free(rowp);
    if (m.oom) {
        free(m.buf);
        return NULL;
    }
    *len = m.len;
    return m.buf;
fail:
    png_destroy_write_struct(&p, &info);
    free(px);
    free(rowp);
    free(m.buf);
    return NULL;
}

/* The slice (malloc'd, rows*cols floats) as a response: PNG or raw, with the headers every slice carries. */
static struct MHD_Response *slice_response(float *sl, int rows, int cols, double lo, double hi, int png,
                                           unsigned *status, const char **why)
{
    struct MHD_Response *r = NULL;
    if (png) {
        size_t len = 0;
        unsigned char *b = png_encode(sl, rows, cols, lo, hi, &len);
        free(sl);
        r = b ? MHD_create_response_from_buffer(len, b, MHD_RESPMEM_MUST_FREE) : NULL;
        if (!r)
            free(b);
    } else {
        r = MHD_create_response_from_buffer((size_t)rows * cols * sizeof(float), sl, MHD_RESPMEM_MUST_FREE);
        if (!r)
            free(sl);
    }
    if (!r) {
        *status = MHD_HTTP_INTERNAL_SERVER_ERROR, *why = "out of memory";
        return NULL;
    }
    web_headers(r, png ? "image/png" : "application/octet-stream");
    char v[96];
    snprintf(v, sizeof v, "%d,%d", rows, cols);
    MHD_add_response_header(r, "X-Aptomo-Shape", v);
    snprintf(v, sizeof v, "%.9g,%.9g", lo, hi);
    MHD_add_response_header(r, "X-Aptomo-Range", v);
    if (!png) {
        MHD_add_response_header(r, "X-Aptomo-Dtype", "float32");
        MHD_add_response_header(r, "X-Aptomo-Order", "C");
    }
    return r;
}

static int parse_format(const char *f, int *png)
{
    *png = !f || !strcmp(f, "png");
    return *png || !strcmp(f, "raw") ? 0 : -1;
}

static void set_int_header(struct MHD_Response *r, const char *name, long long v)
{
    char t[32];
    snprintf(t, sizeof t, "%lld", v);
    MHD_add_response_header(r, name, t);
}

struct MHD_Response *web_image_volume(aptd_web *w, int topic, const char *axis, const char *index,
                                      const char *format, unsigned *status, const char **why)
{
    *status = MHD_HTTP_BAD_REQUEST;
    int png, ax = !axis || !strcmp(axis, "z") ? 0 : !strcmp(axis, "y") ? 1 : !strcmp(axis, "x") ? 2 : -1;
    if (ax < 0)
        return *why = "axis must be z, y or x", NULL;
    if (parse_format(format, &png))
        return *why = "format must be png or raw", NULL;
    if (index && parse_index(index, 1000000000L, 0) < 0)
        return *why = "index must be an integer from 0 to the axis length - 1", NULL;
    json_t *h = NULL;
    zmq_msg_t payload;
    zmq_msg_init(&payload);
    int has = aptd_latest_get(w->d, topics[topic], &h, &payload, why);
    int Z = 0, Y = 0, X = 0, angles = 0;
    if (has < 0 || json_unpack(h, "{s:[iii],s:i}", "shape", &Z, &Y, &X, "angles", &angles) ||
        Z <= 0 || Y <= 0 || X <= 0 || has != 1 ||
        zmq_msg_size(&payload) != (size_t)Z * Y * X * sizeof(float)) {
        json_decref(h);
        zmq_msg_close(&payload);
        *status = MHD_HTTP_NOT_FOUND;
        if (has >= 0)
            *why = "no volume of that kind yet";
        return NULL;
    }
    json_decref(h);
    const float *v = zmq_msg_data(&payload);
    size_t n = (size_t)Z * Y * X;
    /* the range once per message: the cached payload's buffer identifies it while the cache holds it */
    double lo, hi;
    pthread_mutex_lock(&w->mu);
    int cached = w->range_key[topic] == (const void *)v && w->range_len[topic] == n &&
                 w->range_angles[topic] == angles;
    lo = w->range_lo[topic], hi = w->range_hi[topic];
    pthread_mutex_unlock(&w->mu);
    if (!cached) {
        apt_preview_range(v, n, &lo, &hi);
        pthread_mutex_lock(&w->mu);
        w->range_key[topic] = v, w->range_len[topic] = n, w->range_angles[topic] = angles, w->range_lo[topic] = lo, w->range_hi[topic] = hi;
        pthread_mutex_unlock(&w->mu);
    }
    int len_ax[3] = {Z, Y, X};
    long idx = parse_index(index, len_ax[ax], len_ax[ax] / 2);
    if (idx < 0) {
        zmq_msg_close(&payload);
        return *why = "index must be an integer from 0 to the axis length - 1", NULL;
    }
    /* axis z -> [Y, X]; y -> [Z, X]; x -> [Z, Y] */
    int rows = ax == 0 ? Y : Z, cols = ax == 2 ? Y : X;
    float *sl = malloc((size_t)rows * cols * sizeof *sl);
    if (!sl) {
        zmq_msg_close(&payload);
        *status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        return *why = "out of memory", NULL;
    }
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            size_t z = ax == 0 ? (size_t)idx : (size_t)r, y = ax == 1 ? (size_t)idx : ax == 0 ? (size_t)r : (size_t)c;
            size_t x = ax == 2 ? (size_t)idx : (size_t)c;
            sl[(size_t)r * cols + c] = v[(z * Y + y) * X + x];
        }
    zmq_msg_close(&payload);
    struct MHD_Response *resp = slice_response(sl, rows, cols, lo, hi, png, status, why);
    if (!resp)
        return NULL;
    char t[96];
    snprintf(t, sizeof t, "%d,%d,%d", Z, Y, X);
    MHD_add_response_header(resp, "X-Aptomo-Volume-Shape", t);
    set_int_header(resp, "X-Aptomo-Angles", angles);
    MHD_add_response_header(resp, "X-Aptomo-Axis", ax == 0 ? "z" : ax == 1 ? "y" : "x");
    set_int_header(resp, "X-Aptomo-Index", idx);
    return resp;
}

struct MHD_Response *web_image_angle(aptd_web *w, const char *slice, const char *format, unsigned *status,
                                     const char **why)
{
    *status = MHD_HTTP_BAD_REQUEST;
    int png;
    if (parse_format(format, &png))
        return *why = "format must be png or raw", NULL;
    if (slice && parse_index(slice, 1000000000L, 0) < 0)
        return *why = "slice must be an integer from 0 to the stack's slices - 1", NULL;
    pthread_mutex_lock(&w->mu);
    if (!w->phase) {
        pthread_mutex_unlock(&w->mu);
        *status = MHD_HTTP_NOT_FOUND;
        return *why = "no angle reconstructed yet", NULL;
    }
    int L = w->L, Ny = w->Ny, Nx = w->Nx;
    long l = parse_index(slice, L, L / 2);
    float *sl = l >= 0 ? malloc((size_t)Ny * Nx * sizeof *sl) : NULL;
    if (sl)
        memcpy(sl, w->phase + (size_t)l * Ny * Nx, (size_t)Ny * Nx * sizeof *sl);
    uint64_t series = w->series;
    double deg = w->has_angle_deg ? w->angle_deg : NAN;
    pthread_mutex_unlock(&w->mu);
    if (l < 0)
        return *why = "slice must be an integer from 0 to the stack's slices - 1", NULL;
    if (!sl) {
        *status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        return *why = "out of memory", NULL;
    }
    double lo, hi;
    apt_preview_range(sl, (size_t)Ny * Nx, &lo, &hi);
    struct MHD_Response *r = slice_response(sl, Ny, Nx, lo, hi, png, status, why);
    if (!r)
        return NULL;
    char t[96];
    snprintf(t, sizeof t, "%d,%d,%d", L, Ny, Nx);
    MHD_add_response_header(r, "X-Aptomo-Stack", t);
    set_int_header(r, "X-Aptomo-Series", (long long)series);
    set_int_header(r, "X-Aptomo-Slice", l);
    snprintf(t, sizeof t, "%.9g", deg);
    MHD_add_response_header(r, "X-Aptomo-Angle-Deg", t);
    return r;
}

void aptd_web_angle(aptd *d, const aptd_angle *a, const apt_angle_result *res)
{
    aptd_web *w = d->web;
    if (!w || !res->object)
        return;
    int L = res->sg.L, Ny = res->sg.Ny, Nx = res->sg.Nx;
    size_t n = (size_t)L * Ny * Nx;
    float *ph = malloc(n * sizeof *ph); /* phase of the complex slices: what the Approximant is built from */
    if (!ph)
        return;
    for (size_t i = 0; i < n; i++)
        ph[i] = atan2f(res->object[2 * i + 1], res->object[2 * i]);
    pthread_mutex_lock(&w->mu);
    free(w->phase);
    w->phase = ph;
    w->L = L, w->Ny = Ny, w->Nx = Nx;
    w->series = a->series_id;
    w->angle_deg = a->angle_deg;
    w->has_angle_deg = a->has_angle;
    pthread_mutex_unlock(&w->mu);
}
