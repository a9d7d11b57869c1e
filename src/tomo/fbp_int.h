/* fbp_int.h - FBP internals the tests reach: which back-projection kernel runs (all give the same bits). */
#ifndef APTOMO_TOMO_FBP_INT_H
#define APTOMO_TOMO_FBP_INT_H

enum { FBP_ISA_SCALAR = 0, FBP_ISA_AVX2 = 1, FBP_ISA_AVX512 = 2 };

/* Force a kernel (process-wide, for tests and benchmarks); APT_ENOTSUP when this CPU or build lacks it. */
int apt_fbp_set_isa(int isa);

#endif
