#!/usr/bin/env bash
# tests/gpu/run.sh - the one-command GPU check (docs/TESTING.md "GPU"): configure and build with CUDA into
# build-gpu/, run the CPU-vs-GPU comparison tests, then the GPU benches; one JSON line per figure on stdout (test logs
# go to build-gpu/gpu-check.log). Exit status: 0 when every comparison passed (or, without a GPU, when there was
# nothing to compare), 1 when one failed, 2 on a usage or build problem.
#
#   bash tests/gpu/run.sh              # on a machine with an NVIDIA GPU (CUDA toolkit, cuDNN, the Debian deps)
#   bash tests/gpu/run.sh --smoke      # no GPU needed: build with CUDA if nvcc is there, run the same tests (they
#                                      # print "SKIP gpu: ..." and check the backend rule), no benches
# Environment: JOBS (build jobs, default 16), BUILD (build folder, default build-gpu), FRAMES (bench ptycho-recon
# frames, default 60000), NN_FULL=0 (skip the full-size network bench), CUDA_ARCH (e.g. 90; default: the build's),
# REGEX (the ctest selection, default "backend|fft|ptycho|tomo|nn").
set -u
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$SRC/build-gpu}
JOBS=${JOBS:-16}
FRAMES=${FRAMES:-60000}
NN_FULL=${NN_FULL:-1}
SMOKE=0
case "${1:-}" in
  "") ;;
  --smoke) SMOKE=1 ;;
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  *) echo "run.sh: unknown argument '$1' (expected --smoke or --help)" >&2; exit 2 ;;
esac
T0=$(date +%s)
json() { printf '%s\n' "$1"; }
elapsed() { echo $(( $(date +%s) - T0 )); }

# ---- is there a GPU? ----
GPU_NAME=""
if command -v nvidia-smi >/dev/null 2>&1; then
  GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)
fi
if [ -z "$GPU_NAME" ] && [ "$SMOKE" = 0 ]; then
  echo "run.sh: SKIP: no NVIDIA GPU here (nvidia-smi lists none); nothing to compare. --smoke builds and runs the" >&2
  echo "run.sh: comparison tests anyway (they skip their GPU halves and check the backend rule)." >&2
  json '{"check":"gpu","skipped":true,"reason":"no NVIDIA GPU (nvidia-smi lists none)"}'
  exit 0
fi
CUDA=ON
if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  if [ "$SMOKE" = 0 ]; then
    echo "run.sh: a GPU ($GPU_NAME) but no CUDA compiler (nvcc, /usr/local/cuda/bin/nvcc): install the CUDA toolkit" >&2
    exit 2
  fi
  CUDA=OFF
fi

# ---- build: the library, the CLI and the tests the comparisons need ----
REGEX=${REGEX:-"backend|fft|ptycho|tomo|nn"}
TARGETS="aptomo_cli"
for t in "$SRC"/tests/test_*.c; do
  n=$(basename "$t" .c)
  if echo "$n" | grep -Eq "$REGEX"; then TARGETS="$TARGETS $n"; fi
done
ARCH_FLAG=()
[ -n "${CUDA_ARCH:-}" ] && ARCH_FLAG=(-DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH")
mkdir -p "$BUILD"
LOG=$BUILD/gpu-check.log
: >"$LOG"
echo "run.sh: building into $BUILD (CUDA $CUDA, -j$JOBS): $TARGETS" >&2
if ! cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DAPTOMO_CUDA=$CUDA "${ARCH_FLAG[@]}" >>"$LOG" 2>&1 ||
   ! cmake --build "$BUILD" -j"$JOBS" --target $TARGETS >>"$LOG" 2>&1; then
  tail -n 30 "$LOG" >&2
  echo "run.sh: the build failed (whole log: $LOG)" >&2
  json "{\"check\":\"build\",\"passed\":false,\"seconds\":$(elapsed)}"
  exit 2
fi
json "{\"check\":\"build\",\"passed\":true,\"cuda\":\"$CUDA\",\"seconds\":$(elapsed)}"
APTOMO="$BUILD/tools/aptomo"
json "$("$APTOMO" version)"

# ---- comparisons ----
EXCLUDE=()
if ! /usr/bin/python3 -c "import numpy, h5py, torch, skimage" >/dev/null 2>&1; then
  echo "run.sh: SKIP the PyTorch reference tests (py_*): /usr/bin/python3 lacks numpy, h5py, torch or skimage" >&2
  json '{"check":"python_references","skipped":true,"reason":"/usr/bin/python3 lacks numpy, h5py, torch or skimage"}'
  EXCLUDE=(-E "^py_")
fi
FAILED=0
T1=$(date +%s)
# APTOMO_TEST_BACKEND: test_ptycho_ref.py runs its cases once more on the GPU
(cd "$BUILD" && APTOMO_TEST_BACKEND=$([ -n "$GPU_NAME" ] && echo gpu) ctest -R "$REGEX" "${EXCLUDE[@]}" \
  -V -j4 --timeout 300) >>"$LOG" 2>&1 || FAILED=1
# one line per test from ctest's summary ("  1/12 Test  #3: test_fft ......   Passed    0.21 sec", "***Failed")
grep -E "^ *[0-9]+/[0-9]+ Test +#[0-9]+: " "$LOG" |
  awk '{ name = ""; for (i = 1; i <= NF; i++) if ($i ~ /^#[0-9]+:$/) name = $(i + 1);
         ok = ($0 ~ / Passed /) ? "true" : "false"; secs = $(NF - 1);
         printf "{\"check\":\"%s\",\"passed\":%s,\"seconds\":%s}\n", name, ok, secs }'
# the figures the comparison tests printed ("  NAME  rel L2 X  max abs Y (Z of max)"; ctest -V prefixes "N: ")
sed -E 's/^[0-9]+: //' "$LOG" | grep -E "^ +.* rel L2 [0-9.e+-]+ +max abs " |
  awk '{ i = index($0, " rel L2 "); name = substr($0, 1, i - 1); gsub(/^ +| +$/, "", name); gsub(/ +/, " ", name);
         split(substr($0, i + 8), v, " "); printf "{\"figure\":\"%s\",\"rel_l2\":%s,\"max_abs\":%s}\n", name, v[1], v[4] }'
sed -E 's/^[0-9]+: //' "$LOG" | grep -E "^(gpu: |SKIP gpu: )" | sort -u | sed 's/^/run.sh: /' >&2
json "{\"check\":\"comparisons\",\"passed\":$([ $FAILED = 0 ] && echo true || echo false),\"seconds\":$(( $(date +%s) - T1 ))}"
if [ $FAILED != 0 ]; then
  grep -E "CHECK failed|FAIL" "$LOG" | head -n 40 >&2
  echo "run.sh: a comparison failed (whole log: $LOG)" >&2
fi

# ---- benches (GPU only) ----
if [ -n "$GPU_NAME" ] && [ "$CUDA" = ON ]; then
  # (a) one angle: FRAMES frames of 128 x 128, 12 modes, 5 slices, 2 iterations (paper: about 54 s; target <= 5 s)
  if OUT=$(timeout 240 "$APTOMO" bench ptycho-recon --backend gpu --frames "$FRAMES" 2>>"$LOG"); then
    json "$OUT"
    secs=$(echo "$OUT" | sed -nE 's/.*"seconds":([0-9.]+).*/\1/p')
    json "{\"figure\":\"ptycho-recon gpu seconds\",\"value\":${secs:-null},\"frames\":$FRAMES,\"target_max\":5,\"paper\":54}"
  else
    echo "run.sh: bench ptycho-recon (gpu) failed (log: $LOG)" >&2
    FAILED=1
  fi
  # the CPU on a slice of the same work, for scale
  timeout 120 "$APTOMO" bench ptycho-recon --backend cpu --frames 2000 2>>"$LOG" ||
    echo "run.sh: bench ptycho-recon (cpu) failed (log: $LOG)" >&2
  # (b) network voxels/s (backend auto = the GPU here; paper 1.3e7 voxels/s, target >= 10x)
  if [ "$NN_FULL" = 1 ]; then NN_ARGS=(); else NN_ARGS=(--no-full); fi
  timeout 180 "$APTOMO" bench nn --reps 3 "${NN_ARGS[@]}" 2>>"$LOG" ||
    echo "run.sh: bench nn failed or timed out (log: $LOG)" >&2
else
  echo "run.sh: SKIP the GPU benches: no GPU${GPU_NAME:+ or no CUDA build}" >&2
fi
json "{\"check\":\"gpu_run\",\"passed\":$([ $FAILED = 0 ] && echo true || echo false),\"gpu\":\"${GPU_NAME:-none}\",\"seconds\":$(elapsed)}"
exit $FAILED
