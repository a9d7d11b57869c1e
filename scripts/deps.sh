#!/usr/bin/env bash
# Installs the Debian 12 packages aptomo builds and tests with. Idempotent: apt-get runs only if something is missing.
# Installs without Recommends, so every package the build uses must be here or a Depends/Pre-Depends of one here:
# scripts/check-deps.sh proves that for the files a configured + built tree used (make test runs it).
#   scripts/deps.sh          install what is missing
#   scripts/deps.sh --list   print the package list, one per line (what check-deps.sh reads), install nothing
set -euo pipefail
pkgs=(
  # toolchain; clang's sanitizer and libFuzzer runtimes (the fuzz build) are only a Recommends of clang
  cmake make gcc g++ clang libclang-rt-dev pkg-config git
  # libraries (configure + build)
  libzmq3-dev libhdf5-dev libyaml-dev libfftw3-dev liblz4-dev zlib1g-dev libcbor-dev libjansson-dev libsystemd-dev
  libpng-dev libcairo2-dev libopenblas-dev libmicrohttpd-dev
  # oneDNN; Debian's dnnl-config.cmake requires OpenCL, which libdnnl-dev only Recommends
  libdnnl-dev ocl-icd-opencl-dev
  # run time + tests: HDF5 LZ4 plugin, preview font, systemd-analyze (tests/test_install.sh), Python references
  hdf5-filter-plugin fonts-dejavu-core systemd
  python3 python3-numpy python3-h5py python3-zmq python3-cbor2 python3-lz4 bitshuffle python3-torch python3-skimage
  python3-pil
  # the dashboard's browser test (tests/test_web_browser.py): headless Chromium
  chromium
)
if [ "${1:-}" = "--list" ]; then
  printf '%s\n' "${pkgs[@]}"
  exit 0
elif [ $# -gt 0 ]; then
  echo "usage: $0 [--list]" >&2
  exit 2
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
