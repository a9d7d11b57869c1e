#!/usr/bin/env bash
# Installs the Debian 12 packages aptomo builds and tests with. Idempotent: apt-get runs only if something is missing.
set -euo pipefail
pkgs=(cmake make gcc g++ pkg-config git libzmq3-dev libhdf5-dev hdf5-filter-plugin libyaml-dev libfftw3-dev
      liblz4-dev zlib1g-dev libcbor-dev libjansson-dev libdnnl-dev libopenblas-dev libsystemd-dev libpng-dev libcairo2-dev fonts-dejavu-core clang
      python3 python3-numpy python3-h5py python3-zmq python3-cbor2 python3-lz4 bitshuffle python3-torch
      python3-skimage)
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
