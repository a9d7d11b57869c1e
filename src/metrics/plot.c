/* plot.c - "metric vs number of angles" PNG with cairo (aptomo metrics --plot): the four unit-scale metrics on the
 * left axis, the FSC resolution in voxels (dashed) on the right axis, so one picture answers "how many angles are
 * enough". Points are sorted by N so files may be given in any order. */
#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "aptomo/metrics.h"
#include "io/plotkit.h"

static const char *names[5] = {"PCC", "MS-SSIM", "DSC", "BER", "FSC res. (vox)"};
static const double colours[5][3] = {
    {0.12, 0.47, 0.71}, {1.00, 0.50, 0.05}, {0.17, 0.63, 0.17}, {0.84, 0.15, 0.16}, {0.58, 0.40, 0.74}};

static double value_of(const apt_metrics *m, int k)
{
    return k == 0 ? m->pcc : k == 1 ? m->ms_ssim : k == 2 ? m->dsc : k == 3 ? m->ber : m->fsc_threshold_px;
}

int apt_metrics_plot(const char *png_path, const int *n_angles, const apt_metrics *m, int n, const char *title,
                     apt_error *err)
{
    if (!png_path || !n_angles || !m || n < 1)
        return apt_err(err, APT_EINVAL, "metrics plot: no result to plot");
    int *ord = malloc((size_t)n * sizeof *ord);
    if (!ord)
        return apt_err(err, APT_ENOMEM, "metrics plot: out of memory");
    for (int i = 0; i < n; i++)
        ord[i] = i;
    for (int i = 1; i < n; i++) /* insertion sort by N: a handful of files */
        for (int k = i; k > 0 && n_angles[ord[k]] < n_angles[ord[k - 1]]; k--) {
            int t = ord[k];
            ord[k] = ord[k - 1], ord[k - 1] = t;
        }
    double xmin = n_angles[ord[0]], xmax = n_angles[ord[n - 1]], ylo = 0, rmax = 2;
    if (xmax <= xmin)
        xmin -= 1, xmax += 1;
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < 4; k++)
            if (isfinite(value_of(&m[i], k)) && value_of(&m[i], k) < ylo)
                ylo = floor(value_of(&m[i], k) * 5) / 5;
        if (isfinite(m[i].fsc_threshold_px) && m[i].fsc_threshold_px > rmax)
            rmax = m[i].fsc_threshold_px;
    }
    rmax = ceil(rmax * 1.1);
    plot_frame f;
    plot_begin(&f, 820, 520, 70, 80, 60, title);
    cairo_t *cr = f.cr;
    const double L = f.L, T = f.T, pw = f.pw, ph = f.ph;
    /* grid and left axis ticks */
    char lab[64];
    for (int i = 0; i <= 5; i++) {
        double v = ylo + (1 - ylo) * i / 5.0, y = T + ph - ph * i / 5.0;
        plot_grid_y(&f, y);
        snprintf(lab, sizeof lab, "%.2f", v);
        plot_text(cr, L - 40, y + 4, 11, lab);
        snprintf(lab, sizeof lab, "%.1f", rmax * i / 5.0);
        plot_text(cr, L + pw + 8, y + 4, 11, lab);
    }
    for (int i = 0; i < n; i++) { /* x ticks at each distinct N */
        if (i && n_angles[ord[i]] == n_angles[ord[i - 1]])
            continue;
        double x = L + pw * (n_angles[ord[i]] - xmin) / (xmax - xmin);
        snprintf(lab, sizeof lab, "%d", n_angles[ord[i]]);
        plot_text(cr, x - 8, T + ph + 16, 11, lab);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_rectangle(cr, L, T, pw, ph);
    cairo_stroke(cr);
    plot_text(cr, L + pw / 2 - 60, T + ph + 34, 13, "number of angles N");
    plot_text(cr, 8, T - 8, 12, "metric");
    plot_text(cr, L + pw - 20, T - 8, 12, "FSC res. [voxels]");
    for (int k = 0; k < 5; k++) {
        cairo_set_source_rgb(cr, colours[k][0], colours[k][1], colours[k][2]);
        cairo_set_line_width(cr, 2);
        if (k == 4) {
            double dash[2] = {6, 4};
            cairo_set_dash(cr, dash, 2, 0);
        }
        int pen = 0;
        for (int i = 0; i < n; i++) {
            double v = value_of(&m[ord[i]], k);
            if (!isfinite(v)) {
                pen = 0;
                continue;
            }
            double x = L + pw * (n_angles[ord[i]] - xmin) / (xmax - xmin);
            double y = k < 4 ? T + ph - ph * (v - ylo) / (1 - ylo) : T + ph - ph * v / rmax;
            if (pen)
                cairo_line_to(cr, x, y);
            else
                cairo_move_to(cr, x, y);
            pen = 1;
        }
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        for (int i = 0; i < n; i++) {
            double v = value_of(&m[ord[i]], k);
            if (!isfinite(v))
                continue;
            double x = L + pw * (n_angles[ord[i]] - xmin) / (xmax - xmin);
            double y = k < 4 ? T + ph - ph * (v - ylo) / (1 - ylo) : T + ph - ph * v / rmax;
            cairo_arc(cr, x, y, 3.5, 0, 6.283185307179586);
            cairo_fill(cr);
        }
        plot_legend(&f, k, colours[k], names[k]); /* bottom row */
    }
    free(ord);
    return plot_end(&f, png_path, err);
}
