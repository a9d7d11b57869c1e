/* kernel.h - `aptomo kernel` sub-kernels that live in their own files (cmd_kernel.c dispatches on argv[1]); argv[0]
 * is the sub-kernel name. Exit 0 ok, 2 bad usage/input (message names the file/tensor/field), 1 runtime failure. */
#ifndef APTOMO_TOOLS_KERNEL_H
#define APTOMO_TOOLS_KERNEL_H

/* `aptomo kernel nn-forward [--threads N] [--backend cpu|gpu|auto] W.safetensors IN.h5 OUT.h5`: /x -> /y. */
int kernel_nn_forward(int argc, char **argv);
/* `aptomo kernel nn-init --arch ARCH.json --seed S [--input JSON] OUT.safetensors`: random weights. */
int kernel_nn_init(int argc, char **argv);
/* `aptomo kernel nn-axial-grad [--threads N] IN.h5 OUT.h5`: training-mode axial attention core, fwd + bwd. */
int kernel_nn_axial_grad(int argc, char **argv);

/* `aptomo kernel nn-step [--lr LR] [--steps K] [--threads N] W.safetensors IN.h5 OUT.safetensors`: training steps. */
int kernel_nn_step(int argc, char **argv);

#endif
