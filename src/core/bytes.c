/* bytes.c - growable byte buffers for encoders: amortised doubling, allocation failures reported, never abort. */
#include "aptomo/bytes.h"

#include <stdlib.h>
#include <string.h>

int apt_bytes_reserve(apt_bytes *b, size_t cap, apt_error *err)
{
    if (cap <= b->cap)
        return APT_OK;
    size_t nc = b->cap ? b->cap : 256;
    while (nc < cap) {
        if (nc > SIZE_MAX / 2)
            return apt_err(err, APT_ENOMEM, "buffer of %zu bytes too large", cap);
        nc *= 2;
    }
    uint8_t *p = realloc(b->data, nc);
    if (!p)
        return apt_err(err, APT_ENOMEM, "out of memory for %zu bytes", nc);
    b->data = p;
    b->cap = nc;
    return APT_OK;
}

int apt_bytes_append(apt_bytes *b, const void *p, size_t n, apt_error *err)
{
    if (n > SIZE_MAX - b->len)
        return apt_err(err, APT_ENOMEM, "buffer overflow");
    int rc = apt_bytes_reserve(b, b->len + n, err);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return APT_OK;
}

void apt_bytes_reset(apt_bytes *b) { b->len = 0; }

void apt_bytes_free(apt_bytes *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void apt_parts_reset(apt_parts *p)
{
    for (size_t i = 0; i < APT_MAX_PARTS; i++)
        p->part[i].len = 0;
    p->n = 0;
}

void apt_parts_free(apt_parts *p)
{
    for (size_t i = 0; i < APT_MAX_PARTS; i++)
        apt_bytes_free(&p->part[i]);
    p->n = 0;
}
