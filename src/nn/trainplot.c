/* trainplot.c - loss curves of `aptomo train` with cairo, in the look of aptomo metrics --plot: the y range follows
 * the data (NPCC lives in [-1, 1] but a run spends it near one end), epochs on x, the best epoch as a dashed line. */
#include "aptomo/nn_train.h"

#include <math.h>
#include <stdio.h>

#include "io/plotkit.h"

static const double colours[2][3] = {{0.12, 0.47, 0.71}, {0.84, 0.15, 0.16}};

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

int apt_nn_train_plot(const char *png_path, const double *train, const double *test, int n, int best,
                      const char *title, apt_error *err)
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
    plot_frame f;
    plot_begin(&f, 820, 480, 80, 30, 64, title);
    cairo_t *cr = f.cr;
    const double L = f.L, T = f.T, pw = f.pw, ph = f.ph;
    char lab[64];
    for (int i = 0; i <= 5; i++) {
        double v = ylo + (yhi - ylo) * i / 5.0, y = T + ph - ph * i / 5.0;
        plot_grid_y(&f, y);
        snprintf(lab, sizeof lab, "%.4g", v);
        plot_text(cr, L - 56, y + 4, 11, lab);
    }
    int every = n > 20 ? (n + 19) / 20 : 1; /* at most ~20 epoch labels */
    for (int i = 0; i < n; i += every) {
        double x = L + (n > 1 ? pw * i / (n - 1) : pw / 2);
        snprintf(lab, sizeof lab, "%d", i + 1);
        plot_text(cr, x - 6, T + ph + 16, 11, lab);
    }
    cairo_rectangle(cr, L, T, pw, ph);
    cairo_stroke(cr);
    plot_text(cr, L + pw / 2 - 20, T + ph + 34, 13, "epoch");
    plot_text(cr, 8, T - 8, 12, "loss (NPCC)");
    if (best >= 1 && best <= n) {
        double x = L + (n > 1 ? pw * (best - 1) / (n - 1) : pw / 2), dash[2] = {5, 4};
        cairo_set_source_rgb(cr, 0.4, 0.4, 0.4);
        cairo_set_dash(cr, dash, 2, 0);
        cairo_move_to(cr, x, T), cairo_line_to(cr, x, T + ph), cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
    }
    static const char *names[3] = {"train", "test", "best (test)"};
    static const double grey[3] = {0.4, 0.4, 0.4};
    for (int k = 0; k < 3; k++) {
        if (k < 2) {
            cairo_set_source_rgb(cr, colours[k][0], colours[k][1], colours[k][2]);
            cairo_set_line_width(cr, 2);
            curve(cr, k ? test : train, n, L, T, pw, ph, ylo, yhi);
        }
        plot_legend(&f, k, k < 2 ? colours[k] : grey, names[k]);
    }
    return plot_end(&f, png_path, err);
}
