"""test_ptycho_cuda_emu.py - the CUDA multislice backend tested where there is no GPU: src/ptycho/multislice_cuda.cu
(host code and kernels, unchanged) is compiled as C++ against a serial CPU emulation of the CUDA runtime and cuFFT
(tests/gpu/emu/: every thread of a launch runs in turn, FFTs by FFTW, device memory poisoned with NaN, injectable
faults) and compared with the CPU engine of the built libaptomo by tests/gpu/emu/ptycho_emu.cpp (forward, loss,
gradients, descent, device batches of 1 to 512 positions, repeatability, fault injection, refusal). It checks the
backend's logic and indexing, not the hardware: tests/test_ptycho_backends.c does that on a GPU.

Skips (exit 0, saying why) without g++ or FFTW's header. Built with AddressSanitizer and UBSan."""
import os
import shutil
import subprocess
import sys
import tempfile

SRC = os.environ.get("APTOMO_SRC") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BIN = os.environ.get("APTOMO_BIN", "")


def main():
    cxx = shutil.which("g++")
    if not cxx:
        print("SKIP: no g++ to build the CUDA emulation")
        return 0
    build = os.path.dirname(os.path.dirname(os.path.abspath(BIN))) if BIN else ""
    lib = os.path.join(build, "libaptomo.so")
    if not os.path.exists(lib):
        print(f"FAIL: no libaptomo.so beside APTOMO_BIN ({lib})", file=sys.stderr)
        return 1
    emu = os.path.join(SRC, "tests", "gpu", "emu")
    fftw = subprocess.run(["pkg-config", "--cflags", "--libs", "fftw3f"], capture_output=True, text=True)
    flags = fftw.stdout.split() if fftw.returncode == 0 else ["-lfftw3f"]
    probe = subprocess.run([cxx, "-x", "c++", "-fsyntax-only", "-", *flags], input="#include <fftw3.h>\n",
                           capture_output=True, text=True)
    if probe.returncode:
        print("SKIP: FFTW's header (fftw3.h) is not installed")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "ptycho_emu")
        # the CPU engine is private to libaptomo (hidden symbols): compile its files in, beside the emulation
        objs = []
        for f in ("multislice.c", "recon.c", "ptycho_colour.c"):
            o = os.path.join(tmp, f + ".o")
            r = subprocess.run(["gcc", "-std=gnu11", "-O1", "-g", "-fsanitize=address,undefined", "-I",
                                os.path.join(SRC, "include"), "-I", os.path.join(SRC, "src"), "-c",
                                os.path.join(SRC, "src", "ptycho", f), "-o", o], capture_output=True, text=True)
            if r.returncode:
                print(f"FAIL: compiling {f}:\n" + r.stderr, file=sys.stderr)
                return 1
            objs.append(o)
        cmd = [cxx, "-std=c++17", "-O1", "-g", "-Wall", "-Wextra", "-Wno-unused-parameter",
               "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
               "-DAPT_CUDA_EMULATION", "-Dapt_ptycho_cuda_ops=apt_ptycho_cuda_emu_ops",
               "-I", emu, "-I", os.path.join(SRC, "include"), "-I", os.path.join(SRC, "src"),
               "-x", "c++", os.path.join(SRC, "src", "ptycho", "multislice_cuda.cu"),
               os.path.join(emu, "emu_runtime.cpp"), os.path.join(emu, "ptycho_emu.cpp"),
               "-x", "none", *objs, "-o", exe, lib, f"-Wl,-rpath,{build}", *flags, "-lm"]
        r = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
        if r.returncode:
            print("FAIL: building the emulation:\n" + r.stderr, file=sys.stderr)
            return 1
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=0")
        r = subprocess.run([exe], capture_output=True, text=True, errors="replace", env=env, timeout=600)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        if r.returncode or "failures: 0" not in r.stdout:
            print(f"FAIL: the emulated CUDA backend disagrees with the CPU (exit {r.returncode})", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
