/* fuzz_v1.c - libFuzzer target: Eiger stream v1 multipart decoder. The input is split into parts at a separator
 * byte sequence so the fuzzer can vary the part count as well as the bytes. */
#include <stdint.h>
#include <string.h>

#include "aptomo/stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apt_buf parts[APT_MAX_PARTS + 2];
    size_t n = 0, start = 0;
    for (size_t i = 0; i + 1 < size && n < APT_MAX_PARTS + 1; i++)
        if (data[i] == 0xFE && data[i + 1] == 0xFF) {
            parts[n++] = (apt_buf){data + start, i - start};
            start = i + 2;
            i++;
        }
    parts[n++] = (apt_buf){data + start, size - start};
    apt_stream_msg m;
    apt_stream_msg_init(&m);
    apt_error err = {0};
    apt_v1_decode(parts, n, &m, &err);
    apt_stream_msg_clear(&m);
    return 0;
}
