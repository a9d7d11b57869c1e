/* plotkit.c - the shared frame of aptomo's line plots (plotkit.h). */
#include "io/plotkit.h"

#include <stdio.h>
#include <unistd.h>

void plot_text(cairo_t *cr, double x, double y, double size, const char *s)
{
    cairo_set_font_size(cr, size);
    cairo_move_to(cr, x, y);
    cairo_show_text(cr, s);
}

void plot_begin(plot_frame *f, double W, double H, double left, double right, double bottom, const char *title)
{
    f->W = W, f->H = H, f->L = left, f->T = title ? 46 : 24;
    f->pw = W - left - right, f->ph = H - f->T - bottom;
    f->surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)W, (int)H);
    f->cr = cairo_create(f->surf);
    cairo_set_source_rgb(f->cr, 1, 1, 1);
    cairo_paint(f->cr);
    cairo_select_font_face(f->cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_source_rgb(f->cr, 0, 0, 0);
    if (title)
        plot_text(f->cr, left, 28, 16, title);
    cairo_set_line_width(f->cr, 1);
}

void plot_grid_y(plot_frame *f, double y)
{
    cairo_set_source_rgb(f->cr, 0.88, 0.88, 0.88);
    cairo_move_to(f->cr, f->L, y), cairo_line_to(f->cr, f->L + f->pw, y), cairo_stroke(f->cr);
    cairo_set_source_rgb(f->cr, 0, 0, 0);
}

void plot_legend(plot_frame *f, int k, const double rgb[3], const char *name)
{
    double lx = f->L + 10 + k * 130, ly = f->H - 8;
    cairo_set_source_rgb(f->cr, rgb[0], rgb[1], rgb[2]);
    cairo_rectangle(f->cr, lx, ly - 8, 18, 4);
    cairo_fill(f->cr);
    cairo_set_source_rgb(f->cr, 0, 0, 0);
    plot_text(f->cr, lx + 24, ly - 2, 11, name);
}

int plot_end(plot_frame *f, const char *png_path, apt_error *err)
{
    cairo_destroy(f->cr);
    char tmp[4096];
    cairo_status_t st = CAIRO_STATUS_WRITE_ERROR;
    if (snprintf(tmp, sizeof tmp, "%s.tmp%d", png_path, (int)getpid()) < (int)sizeof tmp)
        st = cairo_surface_write_to_png(f->surf, tmp);
    cairo_surface_destroy(f->surf);
    if (st == CAIRO_STATUS_SUCCESS && rename(tmp, png_path) == 0)
        return APT_OK;
    unlink(tmp);
    return apt_err(err, APT_EIO, "%s: %s", png_path,
                   st != CAIRO_STATUS_SUCCESS ? cairo_status_to_string(st) : "rename failed");
}
