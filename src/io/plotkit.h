/* plotkit.h - the frame every aptomo line plot shares (cairo): a white canvas with the title, the plot rectangle's
 * place, text, legend entries, and the PNG written atomically (temp file + rename). The plots themselves
 * (metrics --plot, train's loss curve) draw their own axes and series inside. */
#ifndef APTOMO_IO_PLOTKIT_H
#define APTOMO_IO_PLOTKIT_H

#include <cairo.h>

#include "aptomo/error.h"

typedef struct plot_frame {
    cairo_surface_t *surf;
    cairo_t *cr;
    double W, H, L, T, pw, ph; /* canvas; plot rectangle at (L, T), pw x ph */
} plot_frame;

/* W x H canvas, margins left/right/bottom (the top one leaves room for the title when there is one). */
void plot_begin(plot_frame *f, double W, double H, double left, double right, double bottom, const char *title);
void plot_text(cairo_t *cr, double x, double y, double size, const char *s);
/* A light horizontal grid line at height y. */
void plot_grid_y(plot_frame *f, double y);
/* Legend entry k of the bottom row: a colour bar and its name (leaves the source black). */
void plot_legend(plot_frame *f, int k, const double rgb[3], const char *name);
/* Write the PNG (temp file + rename: readers never see half a file) and free the frame. */
int plot_end(plot_frame *f, const char *png_path, apt_error *err);

#endif
