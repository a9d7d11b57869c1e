/* nn_init.h - random initial weights for an arch (Kaiming-normal convs, BN weight 1 bias 0, running stats near 0/1,
 * random relative embeddings): the one initialisation of `aptomo kernel nn-init` and `aptomo train --arch`. */
#ifndef APTOMO_TOOLS_NN_INIT_H
#define APTOMO_TOOLS_NN_INIT_H

#include <stdint.h>

#include "aptomo/error.h"

/* Write random weights for arch_json (compact JSON text, stored as aptomo.arch) seeded by seed to out; input_json
   (may be NULL) is stored as aptomo.input unchecked. *arch_fault (may be NULL) is set when the arch itself was
   refused (the message names the key), so callers can tell bad input from a failed write. */
int nn_init_write(const char *arch_json, uint64_t seed, const char *input_json, const char *out, int *arch_fault,
                  apt_error *err);

#endif
