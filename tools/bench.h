/* bench.h - `aptomo bench` sub-benchmarks that live in their own files (cmd_bench.c dispatches on argv[1]). Each
 * prints one JSON line per measurement, with a reference measured in the same run; argv[0] is the sub-benchmark. */
#ifndef APTOMO_TOOLS_BENCH_H
#define APTOMO_TOOLS_BENCH_H

/* `aptomo bench ptycho`: multislice forward + gradient pattern rate vs the same FFTs alone. */
int bench_ptycho(int argc, char **argv);
/* `aptomo bench ptycho-recon`: one angle's whole reconstruction on a chosen backend, wall time and frames/s. */
int bench_ptycho_recon(int argc, char **argv);
/* `aptomo bench tomo`: FBP and SART vs scikit-image's iradon / iradon_sart on the same sinograms. */
int bench_tomo(int argc, char **argv);
/* `aptomo bench nn`: network forward voxels/s, demo and full-size arch, vs PyTorch CPU on the same weights. */
int bench_nn(int argc, char **argv);
/* `aptomo bench train`: one training step of the demo arch vs PyTorch CPU on the same weights, batch and threads. */
int bench_train(int argc, char **argv);
/* The source tree whose tests/nn_torch.py the PyTorch references import ($APTOMO_SRC, else the build's). */
const char *bench_source_dir(void);
/* Run a shell command (a PyTorch reference) and read the one number it prints: seconds, NaN if it failed. */
double bench_python_seconds(const char *cmd);

#endif
