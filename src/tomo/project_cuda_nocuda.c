/* project_cuda_nocuda.c - stands in for project_cuda.cu in a build without CUDA: there is no device projector, so
 * apt_backend_resolve sends auto to the CPU and refuses gpu. */
#include "tomo/project_int.h"

const apt_proj_ops *apt_proj_cuda_ops(void) { return NULL; }
