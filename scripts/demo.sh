#!/usr/bin/env bash
# The README demo: a simulated IC scan is streamed by `aptomo replay` as a live Eiger detector (stream v2, bslz4)
# into aptomod (configs/demo.yaml), which reconstructs every angle as it completes and grows the Approximant;
# `aptomo watch` follows the results stream; at N* the network (models/demo.safetensors, trained by
# models/train-demo.sh on other simulated ICs) refines the Approximant; at the end: the result files, PNG previews
# of the refined volume, the Approximant and the FBP baseline next to the ground truth, their metrics, and the
# spooled frames checked bit-exact. The dashboard (docs/DASHBOARD.md) is at http://127.0.0.1:19996/ while the daemon
# runs; APTOMO_DEMO_HOLD=SECONDS keeps the daemon (and the dashboard) up that long after the scan. Everything stays
# on 127.0.0.1.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
APTOMO=$BUILD/tools/aptomo
APTOMOD=$BUILD/daemon/aptomod
OUT=out/demo
PY=/usr/bin/python3
HOLD=${APTOMO_DEMO_HOLD:-0}
URL=http://127.0.0.1:19996/
# the daemon compares every volume with the simulated ground truth (the quality plots of the dashboard)
REF="tomo.reference=$OUT/scan.h5:/entry/sample/ground_truth"
rm -rf "$OUT" && mkdir -p "$OUT"

echo "== 1. aptomo simulate: an IC phantom, zone-plate probe (3 modes), 8 angles over +-17 deg (configs/demo.yaml)"
$APTOMO simulate --config configs/demo.yaml -o "$OUT/scan.h5"

echo "== 2. aptomod --check (every check the start makes), then aptomod (configs/demo.yaml), log in $OUT/aptomod.log"
$APTOMOD --config configs/demo.yaml --set storage.dir="$OUT/live" --set "$REF" --check | sed 's/^/   /'
$APTOMOD --config configs/demo.yaml --set storage.dir="$OUT/live" --set "$REF" > "$OUT/aptomod.log" 2>&1 &
DAEMON=$!
trap 'kill $DAEMON 2>/dev/null || true' EXIT
sleep 0.5
echo "   dashboard: $URL (open it in a browser now; APTOMO_DEMO_HOLD=600 make demo keeps it up 10 min after the scan)"

echo "== 3. aptomo watch (results stream) until the beamline is told to stop (N* = 8 angles)"
$APTOMO watch tcp://127.0.0.1:19998 --until stop --until-count 1 --timeout 600 > "$OUT/watch.log" &
WATCH=$!
sleep 0.3

echo "== 4. aptomo replay: the scan as a live Eiger (stream v2, bslz4, 500 frames/s) with a few injected faults"
$APTOMO replay "$OUT/scan.h5" --endpoint 'tcp://*:19999' --protocol v2 --compression bslz4 --rate 500 \
    --duplicate 0.01 --stale 2 --garbage 1 --seed 1 > "$OUT/replay.json"
wait $WATCH
grep '^angle' "$OUT/watch.log" | $PY -c '
import json, sys
for line in sys.stdin:
    h = json.loads(line.split(" ", 1)[1])
    loss = h["loss"] or [float("nan")]
    print("   angle %7.2f deg: %d frames used, %d dropped, loss %.3g -> %.3g, %.2f s" % (
        h["angle_deg"], h["frames_used"], h["frames_dropped"], loss[0], loss[-1], h["seconds"]))'

echo "== 5. the dashboard's endpoints ($URL): quality against the number of angles (/metrics.json)"
$PY - "$URL" <<'PYEOF'
import json, sys, urllib.request
h = json.load(urllib.request.urlopen(sys.argv[1] + "metrics.json"))
for what in ("approximant", "baseline"):
    print(f"   {what:11s} PCC vs truth after 1..{len(h[what])} angles:",
          " ".join("%.3f" % e["reference"]["pcc"] for e in h[what] if e.get("reference")))
for m in h["metrics"]:
    print(f"   refined volume at {m['angles']} angles vs truth:",
          ", ".join(f"{k} {v:.3f}" for k, v in m.get("reference", {}).items() if v is not None))
PYEOF
if [ "$HOLD" -gt 0 ]; then
    echo "   APTOMO_DEMO_HOLD: the daemon and the dashboard ($URL) stay up for $HOLD s"
    sleep "$HOLD"
fi

echo "== 6. control: status, then shutdown"
$PY - <<'PYEOF'
import json, zmq
s = zmq.Context().socket(zmq.REQ); s.connect("tcp://127.0.0.1:19997")
s.send(b'{"cmd":"status"}'); st = json.loads(s.recv())
print("   status:", json.dumps({k: st[k] for k in ("state", "angles_done", "n_star", "frames_received",
                                                   "frames_dropped", "malformed", "dropped")}))
s.send(b'{"cmd":"latest"}'); lat = json.loads(s.recv())  # what a dashboard started now is shown at once
print("   latest (for a late dashboard):", ", ".join(f"{t} ({h['angles']} angles)" for t, h in lat["topics"].items()
                                                     if "angles" in h), f"+ {len(lat['angles'])} angle rows")
s.send(b'{"cmd":"shutdown"}'); print("   shutdown:", s.recv().decode())
PYEOF
wait $DAEMON
trap - EXIT

echo "== 7. spool: frames written bit-exact as received"
$PY - "$OUT" <<'PYEOF'
import glob, json, sys
import numpy as np, h5py
import bitshuffle.h5  # noqa: F401 (bitshuffle filter for h5py)
out = sys.argv[1]
rep = json.load(open(f"{out}/replay.json"))
with h5py.File(f"{out}/scan.h5", "r") as scan:
    for i, s in enumerate(rep["series"]):
        (path,) = glob.glob(f"{out}/live/series_{s['series']}_*.h5")
        with h5py.File(path, "r") as f:
            ids = f["entry/data/image_id"][()]
            src = scan[f"entry/scan/{i:04d}/data"]
            same = all(np.array_equal(f["entry/data/data"][j], src[j]) for j in ids[:50])
            print(f"   series {s['series']}: {len(ids)} frames spooled (sent {s['sent']}), first 50 bit-identical: {same}")
PYEOF
echo "== 8. results: the refined volume (APT network, models/demo.safetensors), the Approximant and the live FBP"
echo "   baseline of the same angles, each against the ground truth"
$APTOMO preview "$OUT/live/volume.h5" "$OUT/live/volume.h5:/exchange/approximant" "$OUT/live/baseline.h5" \
    "$OUT/scan.h5:/entry/sample/ground_truth" -o "$OUT/results_vs_truth.png" \
    --title "aptomod live, 8 angles: APT refined (1st row), Approximant (2nd), FBP (3rd), ground truth delta (4th)" \
    > /dev/null
$APTOMO metrics "$OUT/live/volume.h5" "$OUT/scan.h5" --ref-dataset /entry/sample/ground_truth \
    > "$OUT/metrics_refined.json"
$APTOMO metrics "$OUT/live/volume.h5" "$OUT/scan.h5" --dataset /exchange/approximant \
    --ref-dataset /entry/sample/ground_truth > "$OUT/metrics.json"
$APTOMO metrics "$OUT/live/baseline.h5" "$OUT/scan.h5" --ref-dataset /entry/sample/ground_truth \
    > "$OUT/metrics_fbp.json"
for what in "APT refined:metrics_refined" "Approximant:metrics" "FBP baseline:metrics_fbp"; do
    $PY -c 'import json, sys; m = json.load(open(sys.argv[2])); print("   %-12s vs ground truth: " % sys.argv[1] + ", ".join(
        "%s %.3f" % (k, m[k]) for k in ("pcc", "ms_ssim", "dsc", "ber", "fsc_threshold_px") if m.get(k) is not None))' \
        "${what%%:*}" "$OUT/${what#*:}.json"
done
grep -E '^(stop|volume)' "$OUT/watch.log" | cut -c1-150 | sed 's/^/   /' || true
echo "   files: $OUT/live/approximant.h5, $OUT/live/approximant.png, $OUT/live/volume.h5, $OUT/live/volume.png,"
echo "          $OUT/live/baseline.h5, $OUT/live/baseline.png, $OUT/results_vs_truth.png, $OUT/metrics*.json"
echo "== demo done: $OUT (scan.h5, live/, aptomod.log, watch.log, replay.json)"
