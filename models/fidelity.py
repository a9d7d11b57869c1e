#!/usr/bin/env python3
"""fidelity.py - the fidelity table of docs/TRAINING.md: on simulated ICs held out from training (the ICs of an
`aptomo dataset` manifest made with a seed the training set did not use), the APT output (the network over the
Approximant) against the Approximant itself, FBP, SART and TV at the same number of angles, and against SART over
349 angles at +-70.4 deg (the paper's gold standard). Every volume goes through `aptomo metrics` against the IC's
ground truth; the table has the mean (and the spread) over the ICs.

usage: models/fidelity.py --weights W.safetensors --held DIR/dataset.json -o OUTDIR
                          [--aptomo BIN] [--config configs/demo.yaml] [--ics N] [--angles 8,29] [--no-gold]
Only the aptomo CLI and the Python standard library are used. Prints the Markdown table; OUTDIR/fidelity.json
has every number."""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
METRICS = ("pcc", "ms_ssim", "dsc", "ber")


def run(bin_, *args):
    p = subprocess.run([bin_, *map(str, args)], capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"aptomo {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p.stdout


def once(bin_, out, *args):
    """Run unless OUT is already there (a rerun with other weights redoes only the network's rows)."""
    if not os.path.exists(out):
        run(bin_, *args)


def metrics(bin_, vol, scan, dataset="/exchange/data"):
    out = run(bin_, "metrics", vol, scan, "--dataset", dataset, "--ref-dataset", "/entry/sample/ground_truth")
    m = json.loads(out)
    return {k: m[k] for k in METRICS}


def one_ic(a, pair, workdir):
    os.makedirs(workdir, exist_ok=True)
    cfg = ["--config", a.config]
    sets = [x for s in pair["set"] for x in ("--set", s)]
    rows = {}
    for n in a.angles:
        scan = os.path.join(workdir, f"scan{n}.h5")
        once(a.aptomo, scan, "simulate", *cfg, *sets, "--set", f"sim.angles={n}", "--set", f"sim.range_deg={a.range}",
             "-o", scan)
        appr, proj, apt = (os.path.join(workdir, f"{k}{n}.h5") for k in ("approximant", "proj", "apt"))
        once(a.aptomo, appr, "approximant", scan, "-o", appr, "--projections", proj, *cfg)
        run(a.aptomo, "infer", "--weights", a.weights, appr, "-o", apt)
        rows[f"Approximant, {n} angles"] = metrics(a.aptomo, appr, scan)
        rows[f"APT, {n} angles"] = metrics(a.aptomo, apt, scan)
        for alg in ("fbp", "sart", "tv"):
            out = os.path.join(workdir, f"{alg}{n}.h5")
            once(a.aptomo, out, "tomo", alg, proj, "-o", out, *cfg)
            rows[f"{alg.upper()}, {n} angles"] = metrics(a.aptomo, out, scan)
    if a.gold:
        scan = os.path.join(workdir, "scan349.h5")
        once(a.aptomo, scan, "simulate", *cfg, *sets, "--set", "sim.angles=349", "--set", "sim.range_deg=70.4",
             "-o", scan)
        out = os.path.join(workdir, "sart349.h5")
        once(a.aptomo, out, "tomo", "sart", scan, "-o", out, *cfg)
        rows["SART, 349 angles (+-70.4 deg)"] = metrics(a.aptomo, out, scan)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--held", required=True, help="dataset.json of held-out ICs (their seeds, layers, pitch)")
    ap.add_argument("-o", dest="out", required=True)
    ap.add_argument("--aptomo", default="aptomo")
    ap.add_argument("--config", default=os.path.join(HERE, "..", "configs", "demo.yaml"))
    ap.add_argument("--ics", type=int, default=4)
    ap.add_argument("--angles", default="8,29")
    ap.add_argument("--range", type=float, default=17.0, help="largest tilt of the same-N scans (deg)")
    ap.add_argument("--no-gold", dest="gold", action="store_false", help="skip SART over 349 angles")
    a = ap.parse_args()
    a.angles = [int(v) for v in a.angles.split(",")]
    pairs = json.load(open(a.held))["pairs"][:a.ics]
    per_ic = []
    for i, pair in enumerate(pairs):
        print(f"IC {i + 1}/{len(pairs)} (seed {pair['seed']}, {pair['layers']} layers, pitch x{pair['pitch_scale']})",
              file=sys.stderr, flush=True)
        per_ic.append({"seed": pair["seed"], "rows": one_ic(a, pair, os.path.join(a.out, f"ic-{i:03d}"))})
    names = list(per_ic[0]["rows"])
    table = {}
    for name in names:
        table[name] = {}
        for k in METRICS:
            v = [ic["rows"][name][k] for ic in per_ic]
            table[name][k] = {"mean": statistics.fmean(v), "sd": statistics.pstdev(v), "values": v}
    with open(os.path.join(a.out, "fidelity.json"), "w") as f:
        json.dump({"weights": a.weights, "ics": per_ic, "table": table}, f, indent=1)
    print(f"| method ({len(per_ic)} held-out ICs, mean ± sd) | PCC | MS-SSIM | DSC | BER |")
    print("|---|---|---|---|---|")
    for name in names:
        cells = " | ".join(f"{table[name][k]['mean']:.3f} ± {table[name][k]['sd']:.3f}" for k in METRICS)
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
