#!/usr/bin/python3
"""Scaling curves for sizing a beamline's hardware (docs/PERFORMANCE.md, "Ptychography on the CPU").

Runs `aptomo bench ptycho` over frames per angle, crop (probe window), modes and slices, and `aptomo bench nn
--volume` over volume sizes, then writes PNG plots (matplotlib), docs/perf/scaling.md (tables, machine, command)
and docs/perf/scaling.json (every raw JSON line). Usage:

    /usr/bin/python3 bench/scaling.py [--aptomo build/tools/aptomo] [--out docs/perf] [--seconds 0.5] [--full-arch]
    /usr/bin/python3 bench/scaling.py --from-json docs/perf/scaling.json   # redraw only

Time per angle is extrapolated from the measured pattern rate: seconds = frames x iterations / patterns_per_s
(the model's cost per pattern does not depend on how many patterns an angle has; the frames curve checks that with
measured points at several J). Plots need matplotlib (Debian: python3-matplotlib, for /usr/bin/python3); without it
only the tables are written.
"""
import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile

CROPS = [64, 96, 128, 192, 256]
MODES = [1, 2, 3, 4, 6, 8, 12]
SLICES = [1, 2, 3, 4, 5, 6, 8]
FRAMES_MEASURED = [16, 64, 256]
FRAMES_CURVE = [16, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000]
VOLUMES = ["32x48x48", "64x64x64", "64x96x96", "96x128x128", "128x160x160"]
FULL_VOLUMES = [(280, 128, 128), (280, 256, 256), (280, 512, 512), (280, 1024, 1024)]
DEFAULT = {"size": 128, "modes": 12, "slices": 5}


def run_json(cmd):
    """Run an aptomo bench command; its JSON lines (stderr passes through only on failure)."""
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"scaling.py: {' '.join(map(shlex.quote, cmd))} failed ({r.returncode}):\n{r.stderr}")
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def ptycho(args, wisdom, size, modes, slices, positions):
    cmd = [args.aptomo, "bench", "ptycho", "--size", str(size), "--modes", str(modes), "--slices", str(slices),
           "--positions", str(positions), "--threads", str(args.threads), "--seconds", str(args.seconds),
           "--wisdom", wisdom]
    lines = run_json(cmd)
    one = next(d for d in lines if d["threads"] == 1)
    many = next((d for d in lines if d["threads"] > 1), one)
    print(f"  crop {size:4d} modes {modes:2d} slices {slices} J {positions:4d}: {one['patterns_per_s']:9.2f} "
          f"patterns/s (1 thread, fft_bound_fraction {one['fft_bound_fraction']:.3f}), "
          f"{many['patterns_per_s']:9.2f} ({many['threads']} threads)", flush=True)
    return {"size": size, "modes": modes, "slices": slices, "positions": positions, "one": one, "many": many}


def tile_count(n, p):
    """Patches along an axis, as src/nn/tile.c (apt_tile_starts) places them: 50 % overlap, the last one ends at n."""
    return 1 if n <= p else math.ceil((n - p) / max(p // 2, 1)) + 1


def angle_seconds(pps, frames, iterations):
    return frames * iterations / pps


def machine():
    cpu = platform.processor() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs (nproc {len(os.sched_getaffinity(0))})"


def plot_all(res, out, iterations, frames_ref, nthreads):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("scaling.py: matplotlib missing (Debian: apt-get install python3-matplotlib): tables only")
        return []
    files = []

    def save(fig, name):
        path = os.path.join(out, name)
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)
        files.append(path)

    def sweep(key, pts, xlabel, name, title):
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        x = [p[key] for p in pts]
        for which, label, style in (("one", "1 thread", "o-"), ("many", f"{nthreads} threads", "s--")):
            ax.plot(x, [angle_seconds(p[which]["patterns_per_s"], frames_ref, iterations) for p in pts], style,
                    label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"seconds per angle ({frames_ref} frames, {iterations} it.)")
        ax.set_title(title, fontsize=10)
        ax.set_xticks(x)
        ax.grid(alpha=0.3)
        ax2 = ax.twinx()
        ax2.plot(x, [p["one"]["fft_bound_fraction"] for p in pts], ":", color="gray", label="FFT share (1 thread)")
        ax2.set_ylim(0, 1.05)
        ax2.set_ylabel("fft_bound_fraction", color="gray")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
        save(fig, name)

    d = DEFAULT
    sweep("size", res["crop"], "crop (probe window side, pixels)", "ptycho_crop.png",
          f"multislice time vs crop (M={d['modes']}, L={d['slices']})")
    sweep("modes", res["modes"], "probe modes M", "ptycho_modes.png",
          f"multislice time vs modes ({d['size']}x{d['size']}, L={d['slices']})")
    sweep("slices", res["slices"], "slices L", "ptycho_slices.png",
          f"multislice time vs slices ({d['size']}x{d['size']}, M={d['modes']})")

    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for which, label, style in (("one", "1 thread", "-"), ("many", f"{nthreads} threads", "--")):
        rate = res["frames"][-1][which]["patterns_per_s"]
        ax.plot(FRAMES_CURVE, [angle_seconds(rate, f, iterations) for f in FRAMES_CURVE], style,
                label=f"{label}: frames x {iterations} / {rate:.0f} patterns/s")
        ax.plot([p["positions"] for p in res["frames"]],
                [angle_seconds(p[which]["patterns_per_s"], p["positions"], iterations) for p in res["frames"]],
                "o" if which == "one" else "s", color=ax.lines[-1].get_color(), label=f"measured ({label})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("frames per angle")
    ax.set_ylabel(f"seconds per angle ({iterations} iterations)")
    ax.set_title(f"per-angle reconstruction ({d['size']}x{d['size']}, M={d['modes']}, L={d['slices']})",
                 fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    save(fig, "ptycho_frames.png")

    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    vx = [v["voxels"] for v in res["nn"]]
    ax.plot(vx, [v["seconds"] for v in res["nn"]], "o-", label="demo arch (measured)")
    if res.get("nn_full"):
        f = res["nn_full"]
        ax.plot([v["voxels"] for v in f["volumes"]], [v["seconds"] for v in f["volumes"]], "s--",
                label=f"full arch (patches x {f['patch_seconds']:.1f} s/patch)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("input volume (voxels)")
    ax.set_ylabel("inference seconds")
    ax.set_title("network inference vs volume size", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save(fig, "nn_volume.png")
    return files


def write_tables(res, out, iterations, frames_ref, nthreads, cmdline):
    L = ["# Scaling curves (generated by bench/scaling.py)", "",
         f"Machine: {res['machine']}. Command: `{cmdline}`.", "",
         f"Time per angle = frames x iterations / patterns_per_s (extrapolated from the measured rate; "
         f"{iterations} iterations). 1-thread rates count the thread's CPU time (best of alternating repetitions); "
         f"{nthreads}-thread rates are wall time.", "",
         "## Multislice forward + gradient (aptomo bench ptycho)", "",
         "| crop | modes | slices | J | patterns/s, 1 thread | patterns/s, "
         f"{nthreads} threads | fft_bound_fraction | s per angle ({frames_ref} frames), 1 thread | "
         f"s per angle, {nthreads} threads |", "|---|---|---|---|---|---|---|---|---|"]
    seen = set()
    for group in ("crop", "modes", "slices", "frames"):
        for p in res[group]:
            k = (p["size"], p["modes"], p["slices"], p["positions"])
            if k in seen:
                continue
            seen.add(k)
            one, many = p["one"], p["many"]
            L.append(f"| {p['size']} | {p['modes']} | {p['slices']} | {p['positions']} | "
                     f"{one['patterns_per_s']:.1f} | {many['patterns_per_s']:.1f} | {one['fft_bound_fraction']:.3f} | "
                     f"{angle_seconds(one['patterns_per_s'], frames_ref, iterations):.1f} | "
                     f"{angle_seconds(many['patterns_per_s'], frames_ref, iterations):.1f} |")
    L += ["", "## Network inference over a volume (aptomo bench nn --volume, demo arch)", "",
          "| volume (Z x Y x X) | patches | seconds | output voxels/s |", "|---|---|---|---|"]
    for v in res["nn"]:
        L.append(f"| {v['volume']} | {v['patches']} | {v['seconds']:.2f} | {v['voxels_per_s']:.3g} |")
    if res.get("nn_full"):
        f = res["nn_full"]
        L += ["", f"Full-size arch (patch {f['patch']}): {f['patch_seconds']:.2f} s per patch measured; volume times "
              "extrapolated = patches x that.", "", "| volume (Z x Y x X) | patches | seconds (extrapolated) |",
              "|---|---|---|"]
        for v in f["volumes"]:
            L.append(f"| {v['volume']} | {v['patches']} | {v['seconds']:.0f} |")
    path = os.path.join(out, "scaling" + ".md")  # docs/perf/scaling.md by default
    with open(path, "w") as fh:
        fh.write("\n".join(L) + "\n")
    return path


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--aptomo", default=os.environ.get("APTOMO_BIN", os.path.join(here, "..", "build", "tools",
                                                                                  "aptomo")))
    ap.add_argument("--out", default=os.path.join(here, "..", "docs", "perf"))
    ap.add_argument("--seconds", type=float, default=0.5, help="bench ptycho --seconds per point")
    ap.add_argument("--threads", type=int, default=0, help="threads of the many-thread line (0 = all cores)")
    ap.add_argument("--iterations", type=int, default=2, help="per-angle iterations (physics.iterations)")
    ap.add_argument("--frames", type=int, default=1000, help="frames per angle of the crop/modes/slices curves")
    ap.add_argument("--positions", type=int, default=8, help="bench ptycho --positions of the sweeps")
    ap.add_argument("--full-arch", action="store_true",
                    help="also time one patch of the full-size arch (minutes on a few cores) and extrapolate")
    ap.add_argument("--from-json", metavar="FILE",
                    help="measure nothing: redraw the plots and tables from an earlier run's scaling.json")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.from_json:
        with open(args.from_json) as fh:
            res = json.load(fh)
        nthreads = max(p["many"]["threads"] for p in res["crop"])
        return finish(res, args.out, res["iterations"], res.get("frames_ref", args.frames), nthreads, args.from_json)
    nthreads = args.threads or len(os.sched_getaffinity(0))
    cmdline = "/usr/bin/python3 bench/scaling.py " + " ".join(map(shlex.quote, sys.argv[1:]))
    res = {"machine": machine(), "iterations": args.iterations, "frames_ref": args.frames, "command": cmdline.strip()}
    with tempfile.TemporaryDirectory() as tmp:
        wisdom = os.path.join(tmp, "fftw.wisdom")  # one plan per shape for the whole run
        d, J = DEFAULT, args.positions
        print("crop:")
        res["crop"] = [ptycho(args, wisdom, n, d["modes"], d["slices"], J) for n in CROPS]
        print("modes:")
        res["modes"] = [ptycho(args, wisdom, d["size"], m, d["slices"], J) for m in MODES]
        print("slices:")
        res["slices"] = [ptycho(args, wisdom, d["size"], d["modes"], s, J) for s in SLICES]
        print("frames (positions per call):")
        res["frames"] = [ptycho(args, wisdom, d["size"], d["modes"], d["slices"], f) for f in FRAMES_MEASURED]
    print("inference:")
    cmd = [args.aptomo, "bench", "nn"]
    for v in VOLUMES:
        cmd += ["--volume", v]
    res["nn"] = []
    for line in run_json(cmd):
        z, y, x = line["volume"]
        res["nn"].append({"volume": f"{z}x{y}x{x}", "voxels": z * y * x, "patches": line["patches"],
                          "seconds": line["seconds"], "voxels_per_s": line["voxels_per_s"]})
        print(f"  {z}x{y}x{x}: {line['patches']} patches, {line['seconds']:.2f} s", flush=True)
    if args.full_arch:
        full = next(d for d in run_json([args.aptomo, "bench", "nn", "--no-torch", "--reps", "1"])
                    if d["arch"] == "full")
        p = full["patch"]
        vols = []
        for v in FULL_VOLUMES:
            n = tile_count(v[0], p[0]) * tile_count(v[1], p[1]) * tile_count(v[2], p[2])
            vols.append({"volume": "x".join(map(str, v)), "voxels": v[0] * v[1] * v[2], "patches": n,
                         "seconds": n * full["seconds"]})
        res["nn_full"] = {"patch": "x".join(map(str, p)), "patch_seconds": full["seconds"], "volumes": vols}
        print(f"  full arch: {full['seconds']:.2f} s per {p} patch", flush=True)
    return finish(res, args.out, args.iterations, args.frames, nthreads)


def finish(res, out, iterations, frames_ref, nthreads, source=None):
    files = plot_all(res, out, iterations, frames_ref, nthreads)
    files.append(write_tables(res, out, iterations, frames_ref, nthreads,
                              res.get("command", "/usr/bin/python3 bench/scaling.py")))
    path = os.path.join(out, "scaling.json")
    if source is None or os.path.abspath(source) != os.path.abspath(path):
        with open(path, "w") as fh:
            json.dump(res, fh, indent=1)
        files.append(path)
    for f in files:
        print("wrote", os.path.relpath(f))
    return 0


if __name__ == "__main__":
    sys.exit(main())
