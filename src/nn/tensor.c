/* tensor.c - the NCDHW tensor's arena: planning a forward pass walks the graph twice, first counting bytes (base
 * NULL), then handing out 64-byte aligned slices of one backend allocation, so execution never allocates. */
#include "nn/nn_backend.h"

void apt_nn_arena_tensor(apt_nn_arena *a, apt_nn_tensor *t, int n, int c, int d, int h, int w)
{
    *t = (apt_nn_tensor){.n = n, .c = c, .d = d, .h = h, .w = w};
    size_t bytes = (apt_nn_numel(t) * sizeof(float) + 63) & ~(size_t)63;
    t->data = a->base && a->used + bytes <= a->size ? (float *)(a->base + a->used) : NULL;
    a->used += bytes;
}

int apt_nn_tensor_same_shape(const apt_nn_tensor *a, const apt_nn_tensor *b)
{
    return a->n == b->n && a->c == b->c && a->d == b->d && a->h == b->h && a->w == b->w;
}
