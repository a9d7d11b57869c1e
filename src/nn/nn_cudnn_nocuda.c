/* nn_cudnn_nocuda.c - CPU-only twin of nn_cudnn.cu: this build has no CUDA, so there is no GPU network backend. */
#include "nn/nn_backend.h"

const struct apt_nn_ops *apt_nn_cudnn_ops(void) { return NULL; }
