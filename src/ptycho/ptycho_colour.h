/* ptycho_colour.h - colour classes of scan windows: a class never holds two overlapping H x W windows, so a device
 * kernel can add every window of one class into the object at once without races, and adding class after class in
 * a fixed order makes the sum deterministic (the CUDA backend's object gradient and illumination). Plain C, shared
 * by both builds so the CPU-only test suite checks it. */
#ifndef APTOMO_PTYCHO_COLOUR_H
#define APTOMO_PTYCHO_COLOUR_H

#include <stddef.h>
#include <stdint.h>

/* Greedy first-fit colouring of the n windows at rc[2 i] (row), rc[2 i + 1] (col), in index order. perm[n] gets
   the windows by class (index order within a class), cstart[0..ncol] the class bounds in perm (cstart needs n + 1
   entries), col[n] each window's class. mark: n + 1 entries of scratch. Returns ncol (0 when n is 0). O(n^2): meant
   for one device batch (<= 512 windows). */
size_t apt_ptycho_colour(const int32_t *rc, size_t n, int H, int W, size_t *perm, size_t *cstart, size_t *col,
                         size_t *mark);

#endif
