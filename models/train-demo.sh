#!/bin/sh
# train-demo.sh - reproduces the demo weights models/demo.safetensors: 96 simulated ICs (aptomo dataset, two sets of
# 48 with seeds 1000 and 2000, 2-4 metal layers, line pitches x0.7-1.4; the demo scan's own seed is never used) at
# the demo's physics, grid and angles (configs/demo.yaml: 8 angles over +-17 deg), then aptomo train on the arch
# models/demo-arch.json. 15-25 minutes on 2 cores (datasets ~6 min, 60 epochs ~9-20 s each); see models/README.md.
#   usage: models/train-demo.sh [WORKDIR]   (default out/train-demo; APTOMO=path/to/aptomo to use a build tree)
# A rerun resumes: complete ICs are kept, and `aptomo train --resume` continues from WORKDIR's checkpoint.
set -eu
APTOMO=${APTOMO:-aptomo}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${1:-out/train-demo}
mkdir -p "$WORK"
for seed in 1000 2000; do
    "$APTOMO" dataset --config "$HERE/../configs/demo.yaml" --count 48 --seed "$seed" --layers 2:4 \
        --pitch-scale 0.7:1.4 -o "$WORK/set-$seed"
done
if [ -f "$WORK/demo.ckpt.safetensors" ]; then
    start="--resume $WORK/demo.ckpt.safetensors"
else
    start="--arch $HERE/demo-arch.json --seed 1"
fi
# shellcheck disable=SC2086
"$APTOMO" train $start --dataset "$WORK/set-1000/dataset.json" --dataset "$WORK/set-2000/dataset.json" \
    --epochs 60 --batch 4 --lr0 1e-3 --lr-end 1e-5 --schedule-steps 60 --test-fraction 0.1 \
    --checkpoint "$WORK/demo.ckpt.safetensors" --log "$WORK/train.jsonl" --plot "$WORK/demo-loss.png" \
    -o "$WORK/demo.safetensors"
cp "$WORK/demo.safetensors" "$HERE/demo.safetensors"
cp "$WORK/demo-loss.png" "$HERE/demo-loss.png"
cp "$WORK/train.jsonl" "$HERE/demo-train.jsonl"
