/* trainplot.c - loss curves of `aptomo train` with cairo, in the look of aptomo metrics --plot: the y range follows
 * the data (NPCC lives in [-1, 1] but a run spends it near one end), epochs on x, the best epoch as a dashed line. */
#include "nn/trainplot.h"

#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <unistd.h>

static const double colours[2][3] = {{0.12, 0.47, 0.71}, {0.84, 0.15, 0.16}};

static void text(cairo_t *cr, double x, double y, double size, const char *s)
{
    cairo_set_font_size(cr, size);
    cairo_move_to(cr, x, y);
    cairo_show_text(cr, s);
}

static void curve(cairo_t *cr, const double *v, int n, double L, double T, double pw, double ph, double ylo,
                  double yhi)
{
    int pen = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i])) {
            pen = 0;
            continue;
        }
        double x = L + (n > 1 ? pw * i / (n - 1) : pw / 2), y = T + ph - ph * (v[i] - ylo) / (yhi - ylo);
        if (pen)
            cairo_line_to(cr, x, y);
        else
            cairo_move_to(cr, x, y);
        pen = 1;
    }
    cairo_stroke(cr);
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            continue;
        double x = L + (n > 1 ? pw * i / (n - 1) : pw / 2), y = T + ph - ph * (v[i] - ylo) / (yhi - ylo);
        cairo_arc(cr, x, y, 3, 0, 6.283185307179586);
        cairo_fill(cr);
    }
}

int nn_train_plot(const char *png_path, const double *train, const double *test, int n, int best, const char *title,
                  apt_error *err)
{
    if (!png_path || n < 1)
        return apt_err(err, APT_EINVAL, "loss plot: no epoch to plot");
    double ylo = INFINITY, yhi = -INFINITY;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 2; k++) {
            double v = k ? test[i] : train[i];
            if (isfinite(v))
                ylo = v < ylo ? v : ylo, yhi = v > yhi ? v : yhi;
        }
    if (!(ylo <= yhi))
        ylo = -1, yhi = 0;
    double pad = yhi > ylo ? 0.08 * (yhi - ylo) : 0.05;
    ylo -= pad, yhi += pad;
    const double W = 820, H = 480, L = 80, R = 30, T = title ? 46 : 24, B = 64;
    const double pw = W - L - R, ph = H - T - B;
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)W, (int)H);
    cairo_t *cr = cairo_create(surf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_source_rgb(cr, 0, 0, 0);
    if (title)
        text(cr, L, 28, 16, title);
    char lab[64];
    cairo_set_line_width(cr, 1);
    for (int i = 0; i <= 5; i++) {
        double v = ylo + (yhi - ylo) * i / 5.0, y = T + ph - ph * i / 5.0;
        cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
        cairo_move_to(cr, L, y), cairo_line_to(cr, L + pw, y), cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        snprintf(lab, sizeof lab, "%.4g", v);
        text(cr, L - 56, y + 4, 11, lab);
    }
    int every = n > 20 ? (n + 19) / 20 : 1; /* at most ~20 epoch labels */
    for (int i = 0; i < n; i += every) {
        double x = L + (n > 1 ? pw * i / (n - 1) : pw / 2);
        snprintf(lab, sizeof lab, "%d", i + 1);
        text(cr, x - 6, T + ph + 16, 11, lab);
    }
    cairo_rectangle(cr, L, T, pw, ph);
    cairo_stroke(cr);
    text(cr, L + pw / 2 - 20, T + ph + 34, 13, "epoch");
    text(cr, 8, T - 8, 12, "loss (NPCC)");
    if (best >= 1 && best <= n) {
        double x = L + (n > 1 ? pw * (best - 1) / (n - 1) : pw / 2), dash[2] = {5, 4};
        cairo_set_source_rgb(cr, 0.4, 0.4, 0.4);
        cairo_set_dash(cr, dash, 2, 0);
        cairo_move_to(cr, x, T), cairo_line_to(cr, x, T + ph), cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
    }
    static const char *names[3] = {"train", "test", "best (test)"};
    for (int k = 0; k < 3; k++) {
        if (k < 2) {
            cairo_set_source_rgb(cr, colours[k][0], colours[k][1], colours[k][2]);
            cairo_set_line_width(cr, 2);
            curve(cr, k ? test : train, n, L, T, pw, ph, ylo, yhi);
        } else
            cairo_set_source_rgb(cr, 0.4, 0.4, 0.4);
        double lx = L + 10 + k * 130, ly = H - 8;
        cairo_rectangle(cr, lx, ly - 8, 18, 4);
        cairo_fill(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        text(cr, lx + 24, ly - 2, 11, names[k]);
    }
    cairo_destroy(cr);
    char tmp[4096];
    cairo_status_t st = CAIRO_STATUS_WRITE_ERROR;
    if (snprintf(tmp, sizeof tmp, "%s.tmp%d", png_path, (int)getpid()) < (int)sizeof tmp)
        st = cairo_surface_write_to_png(surf, tmp);
    cairo_surface_destroy(surf);
    if (st == CAIRO_STATUS_SUCCESS && rename(tmp, png_path) == 0)
        return APT_OK;
    unlink(tmp);
    return apt_err(err, APT_EIO, "%s: %s", png_path,
                   st != CAIRO_STATUS_SUCCESS ? cairo_status_to_string(st) : "rename failed");
}
