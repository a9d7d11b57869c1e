#!/bin/sh
# baselines.sh - the issue-5 table: a simulated IC at N=29 over +-17 deg and N=349 over +-70.4 deg; ONE ptychography
# pass per set (`aptomo approximant --projections`) gives the Approximant and the projections, FBP/SIRT/SART/TV run
# on those projections, every volume is scored against the ground truth with `aptomo metrics`. Prints a markdown
# table (and writes it to OUT/table.md). Usage: bench/baselines.sh OUT_DIR [CONFIG] [--set key=VALUE]...
# Default CONFIG configs/demo.yaml (32x48x48 at 28 nm, 64-px crop, 3 modes); larger scans: pass --set sim.grid=...
# REUSE=1 keeps an existing OUT/nN/scan.h5 + proj.h5 + approximant.h5 and only redoes the baselines and metrics.
set -eu
OUT=${1:?usage: bench/baselines.sh OUT_DIR [CONFIG] [--set k=v]...}
shift
CONFIG=configs/demo.yaml
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then CONFIG=$1; shift; fi
APTOMO=${APTOMO:-build/tools/aptomo}
PY=/usr/bin/python3
mkdir -p "$OUT"
printf '| N, range | method | PCC | MS-SSIM | DSC | BER | seconds |\n|---|---|---|---|---|---|---|\n' > "$OUT/table.md"
for set in "29 17" "349 70.4"; do
    N=${set% *}; R=${set#* }
    D="$OUT/n$N"
    mkdir -p "$D"
    if [ "${REUSE:-0}" = 1 ] && [ -f "$D/proj.h5" ] && [ -f "$D/approximant.h5" ]; then
        # the ptychography's time: the sum of the per-angle seconds it logged
        t0=0; t1=0; t2=$(awk -F'"seconds":' 'NF > 1 {split($2, a, ","); s += a[1]} END {print s + 0}' "$D/approximant.log")
    else
        t0=$(date +%s.%N)
        "$APTOMO" simulate --config "$CONFIG" "$@" --set sim.angles="$N" --set sim.range_deg="$R" -o "$D/scan.h5" >/dev/null
        t1=$(date +%s.%N)
        "$APTOMO" approximant "$D/scan.h5" -o "$D/approximant.h5" --projections "$D/proj.h5" --config "$CONFIG" "$@" \
            > "$D/approximant.log"
        t2=$(date +%s.%N)
    fi
    echo "N=$N: simulate $(awk "BEGIN{print $t1 - $t0}") s, ptychography + Approximant $(awk "BEGIN{print $t2 - $t1}") s" >&2
    for m in approximant fbp sirt sart tv; do
        s0=$(date +%s.%N)
        [ $m = approximant ] || "$APTOMO" tomo $m "$D/proj.h5" -o "$D/$m.h5" 2>/dev/null
        s1=$(date +%s.%N)
        sec=$(awk "BEGIN{print $s1 - $s0}")
        [ $m = approximant ] && sec=$(awk "BEGIN{print $t2 - $t1}")
        "$APTOMO" metrics "$D/$m.h5" "$D/scan.h5" --ref-dataset /entry/sample/ground_truth > "$D/$m.json"
        $PY - "$D/$m.json" "$N" "$R" "$m" "$sec" >> "$OUT/table.md" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
name = {"approximant": "Approximant", "fbp": "FBP", "sirt": "SIRT", "sart": "SART", "tv": "TV"}[sys.argv[4]]
print(f"| {sys.argv[2]}, ±{sys.argv[3]}° | {name} | {m['pcc']:.3f} | {m['ms_ssim']:.3f} | {m['dsc']:.3f} | "
      f"{m['ber']:.3f} | {float(sys.argv[5]):.1f} |")
PYEOF
    done
    "$APTOMO" preview "$D/approximant.h5" "$D/fbp.h5" "$D/sart.h5" "$D/tv.h5" "$D/scan.h5:/entry/sample/ground_truth" \
        -o "$D/compare.png" --title "N=$N over +-$R deg: Approximant, FBP, SART, TV, ground truth" >/dev/null
done
cat "$OUT/table.md"
