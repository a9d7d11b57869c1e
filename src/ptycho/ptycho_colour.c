/* ptycho_colour.c - the window colouring of ptycho_colour.h. */
#include "ptycho/ptycho_colour.h"

#include <stdlib.h>

size_t apt_ptycho_colour(const int32_t *rc, size_t n, int H, int W, size_t *perm, size_t *cstart, size_t *col,
                         size_t *mark)
{
    size_t ncol = 0;
    for (size_t i = 0; i <= n; i++)
        mark[i] = 0;
    /* mark[c] == i + 1: class c holds a window overlapping window i (a stamp, so nothing is cleared per window) */
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < i; j++)
            if (abs(rc[2 * i] - rc[2 * j]) < H && abs(rc[2 * i + 1] - rc[2 * j + 1]) < W)
                mark[col[j]] = i + 1;
        size_t c = 0;
        while (c < ncol && mark[c] == i + 1)
            c++;
        col[i] = c;
        if (c == ncol)
            ncol++;
    }
    /* stable counting sort by class; mark becomes the per-class write cursor */
    for (size_t c = 0; c <= ncol; c++)
        cstart[c] = 0;
    for (size_t i = 0; i < n; i++)
        cstart[col[i] + 1]++;
    for (size_t c = 0; c < ncol; c++)
        cstart[c + 1] += cstart[c];
    for (size_t c = 0; c < ncol; c++)
        mark[c] = cstart[c];
    for (size_t i = 0; i < n; i++)
        perm[mark[col[i]]++] = i;
    return ncol;
}
