/* fuzz_v2.c - libFuzzer target: Eiger stream v2 CBOR decoder (bounded reader, channel selection, user_data). */
#include <stdint.h>

#include "aptomo/stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apt_stream_msg m;
    apt_stream_msg_init(&m);
    apt_error err = {0};
    apt_v2_decode(data, size, NULL, &m, &err);
    apt_stream_msg_clear(&m);
    apt_v2_decode(data, size, "threshold_2", &m, &err);
    apt_stream_msg_clear(&m);
    return 0;
}
