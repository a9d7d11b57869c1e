/* multislice_cuda.cu - CUDA twin of the multislice model (ptycho_int.h's apt_ptycho_ops). Placeholder until the
 * device kernels land: no GPU backend yet, so apt_backend_resolve keeps the model on the CPU. */
extern "C" {
#include "ptycho/ptycho_int.h"
}

extern "C" const struct apt_ptycho_ops *apt_ptycho_cuda_ops(void) { return NULL; }
