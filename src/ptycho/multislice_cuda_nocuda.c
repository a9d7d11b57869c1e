/* multislice_cuda_nocuda.c - stands in for multislice_cuda.cu in a build without CUDA: there is no GPU backend of
 * the ptychography model, so apt_backend_resolve sends every request to the CPU (or refuses "gpu"). */
#include "ptycho/ptycho_int.h"

const struct apt_ptycho_ops *apt_ptycho_cuda_ops(void) { return NULL; }
