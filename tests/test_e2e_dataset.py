"""`aptomo dataset` end to end on tiny ICs (grid 16 x 24 x 24, 3 angles): the pairs exist with equal shapes; each
truth is the ground truth `aptomo simulate` writes for the manifest's parameters of that IC (re-simulated here, frames
included) and each Approximant what `aptomo approximant` makes of that scan (1e-4 relative: two processes may pick
different FFT plans); the JSON line's PCC is numpy's; distinct ICs differ and no IC reuses a seed or the
configuration's own (held-out) sim.seed; the same --seed gives the same manifest and files, another --seed other
ICs; a rerun skips complete ICs, remakes an IC whose file was deleted and finishes a killed run (nothing else
touched); --count may grow; other parameters on a rerun and bad arguments are refused (exit 2, naming them); a
progress bar on a terminal only."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_util import APTOMO, SRC, Checker, run_cli, run_pty  # noqa: E402

DEMO = os.path.join(SRC, "configs", "demo.yaml")
BASE = ["--config", DEMO, "--set", "sim.grid=[16,24,24]", "--angles", "3"]
SET_A = [*BASE, "--count", "3", "--seed", "5", "--layers", "2:4", "--pitch-scale", "0.8:1.3"]


def load(path, what="exchange/data"):
    with h5py.File(path, "r") as f:
        return f[what][()]


def lines(stdout):
    return [json.loads(x) for x in stdout.splitlines() if x.strip()]


def manifest(d):
    with open(os.path.join(d, "dataset.json")) as f:
        return json.load(f)


def files_of(d):
    """{relative path: (mtime_ns, bytes)} of every file under d."""
    out = {}
    for root, _, names in os.walk(d):
        for n in names:
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, d)] = (os.stat(p).st_mtime_ns, f.read())
    return out


def pcc(a, b):
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float((a @ b) / np.sqrt((a @ a) * (b @ b)))


def check_set(ck, d, out):
    """Files, shapes, manifest, distinctness of a finished run."""
    m = manifest(d)
    ck.true(f"{d}: manifest complete", m["complete"] and m["format"] == "aptomo-dataset")
    pairs = m["pairs"]
    ck.eq("pairs listed", len(pairs), m["count"])
    truths = []
    for p in pairs:
        a, t = (os.path.join(d, p[k]) for k in ("approximant", "truth"))
        ck.true(f"{p['dir']}: both files", os.path.isfile(a) and os.path.isfile(t))
        A, T = load(a), load(t)
        ck.true(f"{p['dir']}: shapes {A.shape} {T.shape} = grid", A.shape == T.shape == tuple(m["params"]["grid"]))
        ck.true(f"{p['dir']}: float32 truth with its voxel size", T.dtype == np.float32 and np.allclose(
            load(t, "exchange/voxel_size_m"), m["params"]["voxel_size_m"], rtol=0, atol=0))
        ck.true(f"{p['dir']}: layers and pitch in range", m["params"]["layers"][0] <= p["layers"] <=
                m["params"]["layers"][1] and m["params"]["pitch_scale"][0] <= p["pitch_scale"] <=
                m["params"]["pitch_scale"][1])
        kv = dict(x.split("=", 1) for x in p["set"])
        ck.true(f"{p['dir']}: its --set list says its seed, layers and pitch scale ({p['set']})",
                sorted(kv) == ["sim.layers", "sim.pitch_scale", "sim.seed"] and int(kv["sim.seed"]) == p["seed"] and
                int(kv["sim.layers"]) == p["layers"] and float(kv["sim.pitch_scale"]) == p["pitch_scale"])
        truths.append((T, A))
    seeds = [p["seed"] for p in pairs]
    ck.true(f"seeds distinct and not the held-out {m['params']['held_out_seed']}: {seeds}",
            len(set(seeds)) == len(seeds) and m["params"]["held_out_seed"] not in seeds)
    for i in range(len(truths)):
        for k in range(i):
            ck.true(f"ICs {k} and {i} differ (truth and Approximant)", not np.array_equal(truths[i][0], truths[k][0])
                    and not np.array_equal(truths[i][1], truths[k][1]))
    for r in out:
        T, A = truths[r["ic"]]
        ck.true(f"ic {r['ic']}: the line's PCC {r['pcc_vs_truth']} is numpy's {pcc(A, T):.4f}",
                abs(r["pcc_vs_truth"] - pcc(A, T)) < 2e-4)
        ck.true(f"ic {r['ic']}: line = manifest", r["seed"] == seeds[r["ic"]] and r["seconds"] > 0)
    return m


def cross_check(ck, tmp, dA, m):
    """IC 1 again through `aptomo simulate` + `aptomo approximant` with the manifest's parameters."""
    p = m["pairs"][1]
    sets = [x for s in p["set"] for x in ("--set", s)]
    cfg = ["--config", DEMO, "--set", "sim.grid=[16,24,24]", "--set", f"sim.angles={m['params']['angles']}",
           "--set", f"sim.range_deg={m['params']['range_deg']}", *sets]
    scan = os.path.join(tmp, "resim.h5")
    run_cli("simulate", *cfg, "-o", scan)
    T = load(os.path.join(dA, p["truth"]))
    ck.true("truth = aptomo simulate's ground truth, bit for bit", np.array_equal(
        T, load(scan, "entry/sample/ground_truth")))
    kept = os.path.join(dA, p["dir"], "scan.h5")
    with h5py.File(kept, "r") as f, h5py.File(scan, "r") as g:
        same = all(np.array_equal(f[f"entry/scan/{a:04d}/data"][()], g[f"entry/scan/{a:04d}/data"][()])
                   for a in range(m["params"]["angles"]))
    ck.true("--keep-scans: the kept scan's frames = aptomo simulate's", same)
    out = os.path.join(tmp, "reapprox.h5")
    run_cli("approximant", scan, *cfg, "-o", out)
    A, B = load(os.path.join(dA, p["approximant"])), load(out)
    rel = float(np.abs(A - B).max() / np.abs(B).max())
    ck.true(f"Approximant = aptomo approximant of that scan (max rel diff {rel:.2e})", rel < 1e-4)
    with h5py.File(os.path.join(dA, p["approximant"]), "r") as f, h5py.File(out, "r") as g:
        ck.eq("same datasets as aptomo approximant -o", sorted(f["exchange"]), sorted(g["exchange"]))


def fault(ck, what, args, needle, rc=2):
    p = run_cli("dataset", *args, check=False)
    ck.true(f"{what}: exit {rc} naming {needle!r} (rc {p.returncode}, {p.stderr.strip()!r})",
            p.returncode == rc and needle in p.stderr and p.stdout == "")


def main():
    ck = Checker("dataset")
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        j = lambda name: os.path.join(tmp, name)  # noqa: E731
        # bad arguments: nothing made
        fault(ck, "no --count", [*BASE, "-o", j("x")], "--count K is required")
        fault(ck, "no --config", ["--count", "2", "-o", j("x")], "--config FILE is required")
        fault(ck, "--layers 0:3", [*BASE, "--count", "2", "--layers", "0:3", "-o", j("x")], "--layers: '0:3'")
        fault(ck, "--layers 4:2", [*BASE, "--count", "2", "--layers", "4:2", "-o", j("x")], "LO <= HI")
        fault(ck, "--pitch-scale 9", [*BASE, "--count", "2", "--pitch-scale", "9", "-o", j("x")], "--pitch-scale")
        fault(ck, "--seed -1", [*BASE, "--count", "2", "--seed", "-1", "-o", j("x")], "--seed: '-1'")
        fault(ck, "--count 0", [*BASE, "--count", "0", "-o", j("x")], "--count: '0'")
        fault(ck, "layers beyond the grid", [*BASE, "--count", "2", "--layers", "2:9", "-o", j("x")], "--layers 2:9")
        fault(ck, "a bad --set", [*BASE, "--count", "2", "--set", "sim.layers=99", "-o", j("x")], "sim.layers")
        fault(ck, "a missing config", ["--config", j("none.yaml"), "--count", "2", "-o", j("x")], "none.yaml")
        os.mkdir(j("busy"))
        open(j("busy/notes.txt"), "w").close()
        fault(ck, "a non-empty non-dataset DIR", [*BASE, "--count", "2", "-o", j("busy")], "not a dataset directory")
        ck.true("refusals made nothing", not os.path.exists(j("x")) and os.listdir(j("busy")) == ["notes.txt"])

        # the set, its cross-checks
        dA = j("A")
        p = run_cli("dataset", *SET_A, "--keep-scans", "-o", dA)
        outA = lines(p.stdout)
        ck.eq("one JSON line per IC", [r["ic"] for r in outA], [0, 1, 2])
        ck.true("no bar without a terminal", "\r" not in p.stderr and "eta" not in p.stderr)
        m = check_set(ck, dA, outA)
        ck.true("no .part left, scans kept", not any(n.endswith(".part") for n in os.listdir(dA)) and all(
            os.path.isfile(os.path.join(dA, q["dir"], "scan.h5")) for q in m["pairs"]))
        cross_check(ck, tmp, dA, m)

        # same --seed: same manifest and files; another --seed: other ICs
        dB = j("B")
        run_cli("dataset", *SET_A, "-o", dB)
        mB = manifest(dB)
        ck.eq("same --seed: same parameters", mB["params"], m["params"])
        ck.eq("same --seed: same pairs", mB["pairs"], m["pairs"])
        ck.true("same --seed: same truths", all(np.array_equal(load(os.path.join(dA, q["truth"])), load(
            os.path.join(dB, q["truth"]))) for q in m["pairs"]))
        ck.true("no scans without --keep-scans", not any(os.path.exists(os.path.join(dB, q["dir"], "scan.h5"))
                                                         for q in m["pairs"]))
        dC = j("C")
        run_cli("dataset", *BASE, "--count", "1", "--seed", "6", "--layers", "2:4", "--pitch-scale", "0.8:1.3", "-o",
                dC)
        ck.true("another --seed: another IC", manifest(dC)["pairs"][0]["seed"] != m["pairs"][0]["seed"])

        # resume: only the IC with a deleted file is made again, nothing else is touched
        keep = files_of(dA)
        truth1 = load(os.path.join(dA, "ic-001/truth.h5"))
        os.remove(os.path.join(dA, "ic-001/truth.h5"))
        p = run_cli("dataset", *SET_A, "-o", dA)
        ck.eq("resume: only IC 1 made", [r["ic"] for r in lines(p.stdout)], [1])
        now = files_of(dA)
        ck.true("resume: the other ICs untouched", all(now[k] == keep[k] for k in keep if not k.startswith(
            ("ic-001", "dataset.json", ".lock"))))
        ck.true("resume: IC 1's truth as before", np.array_equal(load(os.path.join(dA, "ic-001/truth.h5")), truth1))
        ck.true("resume: the scan of a remade IC goes without --keep-scans",
                not os.path.exists(os.path.join(dA, "ic-001/scan.h5")))
        p = run_cli("dataset", *SET_A, "-o", dA)
        ck.true("complete set: nothing made", lines(p.stdout) == [] and "3 already complete" in p.stderr)

        # a killed run finishes on the rerun, equal to an uninterrupted one
        dD = j("D")
        proc = subprocess.Popen([APTOMO, "dataset", *SET_A, "-o", dD], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        ck.true(f"killed after IC 0 ({first.strip()})", json.loads(first)["ic"] == 0)
        done = [q["dir"] for q in manifest(dD)["pairs"] if os.path.isfile(os.path.join(dD, q["truth"]))]
        p = run_cli("dataset", *SET_A, "-o", dD)
        ck.eq("after a kill: the rest made", [r["ic"] for r in lines(p.stdout)],
              [i for i in range(3) if f"ic-{i:03d}" not in done])
        ck.true("after a kill: no .part left", not any(n.endswith(".part") for n in os.listdir(dD)))
        ck.true("after a kill: the same set", manifest(dD)["complete"] and all(np.array_equal(
            load(os.path.join(dA, q["truth"])), load(os.path.join(dD, q["truth"]))) for q in m["pairs"]))

        # other parameters on a rerun: refused, DIR untouched
        before = files_of(dA)
        fault(ck, "rerun with another --seed", [*SET_A[:-6], "--seed", "6", "--layers", "2:4", "--pitch-scale",
                                                "0.8:1.3", "-o", dA], "made with --seed 5, not 6")
        fault(ck, "rerun with other --layers", [*SET_A[:-2], "--layers", "2:3", "-o", dA], "--layers 2:4, not 2:3")
        fault(ck, "rerun with another config key", [*SET_A, "--set", "physics.iterations=1", "-o", dA],
              "physics.iterations")
        ck.true("refused reruns changed nothing", files_of(dA) == before)

        # --count may grow: ICs 0..2 kept, IC 3 made
        p = run_cli("dataset", *SET_A, "--count", "4", "-o", dA)
        m4 = manifest(dA)
        ck.true("--count 4: IC 3 made, the first three pairs as before",
                [r["ic"] for r in lines(p.stdout)] == [3] and m4["pairs"][:3] == m["pairs"] and m4["count"] == 4)

        # the configuration's own sim.seed is held out: an IC that would draw it gets another seed
        taken = m["pairs"][0]["seed"]
        dE = j("E")
        run_cli("dataset", *BASE, "--count", "2", "--seed", "5", "--layers", "2:4", "--pitch-scale", "0.8:1.3",
                "--set", f"sim.seed={taken}", "-o", dE)
        sE = [q["seed"] for q in manifest(dE)["pairs"]]
        ck.true(f"held out: IC 0 no longer gets {taken} ({sE}), IC 1 unchanged",
                sE[0] != taken and sE[1] == m["pairs"][1]["seed"] and len(set(sE)) == 2)

        # progress on a terminal
        rc, term = run_pty(["dataset", *BASE, "--count", "1", "-o", j("F")], tmp)
        ck.true(f"a bar with an ETA on a terminal ({term[-160:]!r})", rc == 0 and "eta" in term and "\r" in term)
        shutil.rmtree(j("F"), ignore_errors=True)
    print(f"dataset: {time.time() - t0:.1f} s")
    return 1 if ck.done() else 0


if __name__ == "__main__":
    sys.exit(main())
