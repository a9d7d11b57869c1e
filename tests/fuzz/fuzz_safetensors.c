/* fuzz_safetensors.c - libFuzzer target: the safetensors reader (apt_st_open_mem, the same parser apt_st_open runs
 * on a mapped file). Checked: every tensor it accepts lies inside the buffer and its byte count is shape x dtype
 * (ASan sees a read past the input), names are unique and findable, metadata lookups are safe. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/safetensors.h"

static volatile uint8_t sink; /* every accepted tensor byte is read: ASan checks it lies in the input */

static void expect(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_safetensors: contract broken: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apt_st_file *f = NULL;
    apt_error err = {0};
    if (apt_st_open_mem(data, size, &f, &err) != APT_OK) {
        expect(f == NULL && err.msg[0], "a refused file without a message, or a handle");
        return 0;
    }
    size_t len = 0;
    expect(apt_st_bytes(f, &len) == data && len == size, "bytes do not cover the input");
    for (size_t i = 0; i < apt_st_count(f); i++) {
        const apt_st_tensor *t = apt_st_at(f, i);
        size_t count = 1;
        for (int k = 0; k < t->rank; k++)
            count *= (size_t)t->shape[k];
        expect(t->rank >= 0 && t->rank <= APT_ST_MAX_RANK && count == t->count &&
                   t->nbytes == count * (t->dtype == APT_ST_I64 ? 8 : 4),
               "tensor byte count is not shape x dtype");
        const uint8_t *p = t->data;
        expect(p >= data && p + t->nbytes <= data + size, "tensor data outside the input");
        for (size_t b = 0; b < t->nbytes; b += 61)
            sink ^= p[b];
        if (t->nbytes)
            sink ^= p[t->nbytes - 1];
        expect(apt_st_find(f, t->name) == t, "tensor name not unique or not found");
    }
    expect(apt_st_at(f, apt_st_count(f)) == NULL, "apt_st_at past the end");
    apt_st_meta(f, "aptomo.arch");
    apt_st_meta(f, "format");
    apt_st_close(&f);
    return 0;
}
