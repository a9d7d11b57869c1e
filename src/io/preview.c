/* preview.c - orthogonal-slice PNG previews with cairo (drawing, text, PNG out). Slices are upsampled by an integer
 * factor so small demo volumes stay legible; each row gets its own robust range (1st..99th percentile) because a
 * phase Approximant and a delta ground truth differ in scale. Colour map: viridis (sampled, 16 stops). */
#include "aptomo/preview.h"

#include <cairo.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double viridis[16][3] = {
    {0.267, 0.005, 0.329}, {0.283, 0.141, 0.458}, {0.254, 0.265, 0.530}, {0.207, 0.372, 0.553},
    {0.164, 0.471, 0.558}, {0.128, 0.567, 0.551}, {0.135, 0.659, 0.518}, {0.267, 0.749, 0.441},
    {0.478, 0.821, 0.318}, {0.741, 0.873, 0.150}, {0.993, 0.906, 0.144}, {0.993, 0.906, 0.144},
    {0.993, 0.906, 0.144}, {0.993, 0.906, 0.144}, {0.993, 0.906, 0.144}, {0.993, 0.906, 0.144}};

static void colour(double t, uint8_t rgb[3])
{
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double x = t * 10.0; /* stops 0..10 hold the map; the rest pad */
    int i = (int)x;
    if (i >= 10)
        i = 9;
    double f = x - i;
    for (int c = 0; c < 3; c++)
        rgb[c] = (uint8_t)lround(255.0 * (viridis[i][c] * (1 - f) + viridis[i + 1][c] * f));
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

void apt_preview_range(const float *v, size_t n, double *lo, double *hi)
{
    size_t step = n > 200000 ? n / 200000 : 1, m = 0;
    float *s = malloc((n / step + 1) * sizeof *s);
    if (!s) {
        *lo = 0, *hi = 1;
        return;
    }
    for (size_t i = 0; i < n; i += step)
        if (isfinite(v[i]))
            s[m++] = v[i];
    qsort(s, m, sizeof *s, cmp_float);
    *lo = m ? s[m / 100] : 0;
    *hi = m ? s[m - 1 - m / 100] : 1;
    if (*hi <= *lo)
        *hi = *lo + (fabs(*lo) > 0 ? fabs(*lo) * 1e-3 : 1e-12);
    free(s);
}

static void range_of(const apt_volume *v, double *lo, double *hi)
{
    apt_preview_range(v->data, (size_t)v->Z * v->Y * v->X, lo, hi);
}

typedef struct slice_view {
    int rows, cols;
    double pix_h, pix_w; /* metres per pixel down and across */
    const char *name;
} slice_view;

static float sample(const apt_volume *v, int which, int r, int c)
{
    size_t Y = (size_t)v->Y, X = (size_t)v->X;
    if (which == 0) /* XY at mid Z: rows y, cols x */
        return v->data[((size_t)(v->Z / 2) * Y + (size_t)r) * X + (size_t)c];
    if (which == 1) /* XZ at mid Y: rows z, cols x */
        return v->data[((size_t)r * Y + (size_t)(v->Y / 2)) * X + (size_t)c];
    return v->data[((size_t)r * Y + (size_t)c) * X + (size_t)(v->X / 2)]; /* YZ at mid X: rows z, cols y */
}

static void views_of(const apt_volume *v, slice_view out[3])
{
    double vz = isfinite(v->voxel_m[0]) ? v->voxel_m[0] : 0, vy = isfinite(v->voxel_m[1]) ? v->voxel_m[1] : 0;
    double vx = isfinite(v->voxel_m[2]) ? v->voxel_m[2] : 0;
    out[0] = (slice_view){v->Y, v->X, vy, vx, "xy (mid z)"};
    out[1] = (slice_view){v->Z, v->X, vz, vx, "xz (mid y)"};
    out[2] = (slice_view){v->Z, v->Y, vz, vy, "yz (mid x)"};
}

/* Draw one slice as an image at (x0, y0) magnified by scale (integer), anisotropic voxels kept square-ish. */
static void draw_slice(cairo_t *cr, const apt_volume *v, int which, const slice_view *sv, double x0, double y0,
                       int scale, double lo, double hi)
{
    int w = sv->cols * scale, h = sv->rows * scale;
    cairo_surface_t *img = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    unsigned char *px = cairo_image_surface_get_data(img);
    int stride = cairo_image_surface_get_stride(img);
    cairo_surface_flush(img);
    for (int r = 0; r < h; r++)
        for (int c = 0; c < w; c++) {
            uint8_t rgb[3];
            double val = sample(v, which, r / scale, c / scale);
            colour(isfinite(val) ? (val - lo) / (hi - lo) : 0, rgb);
            uint32_t *p = (uint32_t *)(px + (size_t)r * stride) + c;
            *p = (uint32_t)rgb[0] << 16 | (uint32_t)rgb[1] << 8 | rgb[2];
        }
    cairo_surface_mark_dirty(img);
    cairo_set_source_surface(cr, img, x0, y0);
    cairo_paint(cr);
    cairo_surface_destroy(img);
}

static void text(cairo_t *cr, double x, double y, double size, const char *s)
{
    cairo_set_font_size(cr, size);
    cairo_move_to(cr, x, y);
    cairo_show_text(cr, s);
}

/* A scale bar of a round length (1, 2, 5 x 10^k m) about a fifth of the slice width. */
static void scale_bar(cairo_t *cr, double x, double y, double metres_per_px)
{
    if (metres_per_px <= 0)
        return;
    double target = 60 * metres_per_px, p = pow(10, floor(log10(target))), len = p;
    if (2 * p <= target)
        len = 2 * p;
    if (5 * p <= target)
        len = 5 * p;
    double px = len / metres_per_px;
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_rectangle(cr, x, y, px, 4);
    cairo_fill(cr);
    char lab[32];
    if (len >= 1e-6)
        snprintf(lab, sizeof lab, "%g um", len * 1e6);
    else
        snprintf(lab, sizeof lab, "%g nm", len * 1e9);
    text(cr, x, y - 4, 11, lab);
}

int apt_preview_write(const char *png_path, const apt_volume *const *vols, const char *const *labels, int n,
                      const char *title, apt_error *err)
{
    if (n < 1)
        return apt_err(err, APT_EINVAL, "preview: no volume");
    /* layout: integer magnification so the tallest slice is at least ~200 px */
    int max_rows = 1, scale = 1;
    for (int i = 0; i < n; i++) {
        int m = vols[i]->Z > vols[i]->Y ? vols[i]->Z : vols[i]->Y;
        max_rows = m > max_rows ? m : max_rows;
    }
    while (max_rows * scale < 200 && scale < 16)
        scale++;
    const double pad = 12, head = title ? 28 : 8, label_h = 18, bar_w = 70;
    double width = pad, height = head;
    for (int i = 0; i < n; i++) {
        slice_view sv[3];
        views_of(vols[i], sv);
        double w = pad + bar_w, hrow = 0;
        for (int k = 0; k < 3; k++) {
            w += sv[k].cols * scale + pad;
            hrow = sv[k].rows * scale > hrow ? sv[k].rows * scale : hrow;
        }
        width = w > width ? w : width;
        height += label_h + hrow + pad + 14;
    }
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)ceil(width), (int)ceil(height));
    cairo_t *cr = cairo_create(surf);
    cairo_set_source_rgb(cr, 0.08, 0.08, 0.1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_source_rgb(cr, 1, 1, 1);
    if (title)
        text(cr, pad, 20, 15, title);
    double y = head;
    for (int i = 0; i < n; i++) {
        const apt_volume *v = vols[i];
        double lo, hi;
        range_of(v, &lo, &hi);
        slice_view sv[3];
        views_of(v, sv);
        char lab[256];
        snprintf(lab, sizeof lab, "%s  [%d x %d x %d]", labels && labels[i] ? labels[i] : "", v->Z, v->Y, v->X);
        cairo_set_source_rgb(cr, 1, 1, 1);
        text(cr, pad, y + 13, 12, lab);
        y += label_h;
        double x = pad, hrow = 0;
        for (int k = 0; k < 3; k++) {
            draw_slice(cr, v, k, &sv[k], x, y, scale, lo, hi);
            cairo_set_source_rgb(cr, 0.85, 0.85, 0.85);
            text(cr, x + 3, y + sv[k].rows * scale + 12, 10, sv[k].name);
            scale_bar(cr, x + 6, y + sv[k].rows * scale - 8, sv[k].pix_w / scale);
            x += sv[k].cols * scale + pad;
            hrow = sv[k].rows * scale > hrow ? sv[k].rows * scale : hrow;
        }
        /* colour bar */
        for (int r = 0; r < (int)hrow; r++) {
            uint8_t rgb[3];
            colour(1.0 - (double)r / (hrow - 1 > 0 ? hrow - 1 : 1), rgb);
            cairo_set_source_rgb(cr, rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0);
            cairo_rectangle(cr, x, y + r, 14, 1);
            cairo_fill(cr);
        }
        char num[32];
        cairo_set_source_rgb(cr, 1, 1, 1);
        snprintf(num, sizeof num, "%.3g", hi);
        text(cr, x + 18, y + 10, 10, num);
        snprintf(num, sizeof num, "%.3g", lo);
        text(cr, x + 18, y + hrow, 10, num);
        y += hrow + pad + 14;
    }
    cairo_destroy(cr);
    cairo_status_t st = cairo_surface_write_to_png(surf, png_path);
    cairo_surface_destroy(surf);
    if (st != CAIRO_STATUS_SUCCESS)
        return apt_err(err, APT_EIO, "%s: %s", png_path, cairo_status_to_string(st));
    return APT_OK;
}
