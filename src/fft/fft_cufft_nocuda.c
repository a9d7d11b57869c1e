/* fft_cufft_nocuda.c - CPU-only twin of fft_cufft.cu: this build has no cuFFT backend, so GPU requests fall back to
 * FFTW in fft.c. */
#include "fft/fft_backend.h"

const struct apt_fft_ops *apt_fft_cufft_ops(void) { return NULL; }
