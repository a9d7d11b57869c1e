/* fuzz_config.c - libFuzzer target: the YAML configuration loader (file:line:column errors, bounds). */
#include <stdint.h>

#include "aptomo/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apt_config *cfg = NULL;
    apt_error err = {0};
    if (apt_config_load_string((const char *)data, size, "fuzz.yaml", &cfg, &err) == APT_OK)
        apt_config_destroy(&cfg);
    return 0;
}
