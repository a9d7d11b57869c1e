/* fuzz_scanmeta.c - libFuzzer target: scan metadata / user_data JSON parser with a position bound. */
#include <stdint.h>

#include "aptomo/scanmeta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apt_scanmeta m;
    apt_error err = {0};
    if (apt_scanmeta_parse((const char *)data, size, 4096, &m, &err) == APT_OK)
        apt_scanmeta_clear(&m);
    return 0;
}
