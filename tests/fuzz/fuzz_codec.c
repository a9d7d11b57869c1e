/* fuzz_codec.c - libFuzzer target: bslz4 (whole, range and crop), HDF5-LZ4 and raw LZ4 decoders on hostile blobs.
 * The first byte picks the element size; outputs are sized from the claimed header only when it is small. */
#include <stdint.h>
#include <stdlib.h>

#include "aptomo/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t es = (size_t[]){1, 2, 4}[data[0] % 3];
    data++, size--;
    apt_error err = {0};
    uint64_t raw = 0;
    uint32_t block = 0;
    enum { CAP = 1 << 20 };
    uint8_t *dst = malloc(CAP);
    if (!dst)
        return 0;
    if (apt_bslz4_header(data, size, es, &raw, &block, &err) == APT_OK && raw <= CAP) {
        apt_bslz4_decode(data, size, es, dst, CAP, &err);
        size_t n = raw / es;
        if (n > 4)
            apt_bslz4_decode_range(data, size, es, n / 3, n / 3, dst, &err);
        if (n >= 64 && n % 8 == 0)
            apt_bslz4_decode_crop(data, size, es, 8, 2, 1, 4, n / 8 - 2, dst, &err);
    }
    size_t got = 0;
    apt_h5lz4_decode(data, size, dst, CAP, &got, &err);
    apt_lz4_decode_raw(data, size, dst, size * 4 < CAP ? size * 4 : CAP, &err);
    free(dst);
    return 0;
}
