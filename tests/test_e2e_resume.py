"""Crash safety: aptomod is killed with SIGKILL at 20 random moments of a replayed scan (4 in the sanitizer build's run) and at every step of its
state writes (APTOMO_CRASH_AT: after a file's bytes, after its fsync, after its rename, between the angle file and
the sums file, after the sums), restarted on the same storage.dir each time, and the detector re-sends the scan
from the last angle the daemon had (so one angle arrives twice every round). At the end the Approximant must equal
an uninterrupted run's, with every series in it exactly once. The state files are read here independently of the
daemon (format in docs/FILES.md: magic, JSON header, payload, zlib CRC-32). Then: a corrupted angle file and a
truncated sums file are detected, reported in status, moved aside and never used, and the angle is taken again."""
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_util import APTOMO, SRC, Checker, Daemon, run_cli  # noqa: E402

DEMO = os.path.join(SRC, "configs", "demo.yaml")
SETS = ["physics.reconstruct=true", "model.weights=", "results.status_period_s=0.2"]


def read_sealed(path):
    """(header dict, payload bytes) of a state file, checked like the daemon checks it; ValueError if damaged."""
    raw = open(path, "rb").read()
    if len(raw) < 24 or raw[:8] != b"APTSEAL1":
        raise ValueError("bad magic")
    (hl,) = struct.unpack("<I", raw[8:12])
    if 12 + hl + 8 + 4 > len(raw):
        raise ValueError("truncated")
    (pl,) = struct.unpack("<Q", raw[12 + hl:20 + hl])
    if 20 + hl + pl + 4 != len(raw):
        raise ValueError("length mismatch")
    (crc,) = struct.unpack("<I", raw[-4:])
    if zlib.crc32(raw[:-4]) != crc:
        raise ValueError("crc")
    return json.loads(raw[12:12 + hl]), raw[20 + hl:-4]


def state(live):
    """The series in the Approximant per its sums file, in order ([] when there is none yet)."""
    p = os.path.join(live, "state", "approximant.bin")
    if not os.path.exists(p):
        return []
    h, _ = read_sealed(p)
    return [e[1] for e in h["done"]]


def saved(live):
    """What a restart must resume: the sums file's series, then those of angle files written after it (a kill
    between the two writes), in order."""
    done = state(live)
    d = os.path.join(live, "state")
    for f in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if f.startswith("angle_") and f.endswith(".bin"):
            s = read_sealed(os.path.join(d, f))[0]["series"]
            if s not in done:
                done.append(s)
    return done


def status(d):
    return d.control({"cmd": "status"})


def wait_angles(d, n, series=0, timeout=300):
    """Until n angles are in the Approximant and `series` series have been completed and handled."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        st = status(d)
        if (st["angles_done"] >= n and st["series_completed"] >= series and st["queue_depth"] == 0 and
                st["state"] != "reconstructing"):
            return st
        time.sleep(0.2)
    sys.exit(f"{n} angles not reached in {timeout} s; log:\n{open(d.log_path).read()[-4000:]}")


def replay(scan, d, first, n_angles):
    """The detector (re)starts at angle `first` with series ids = angle index + 1, like a fly-scan resumed."""
    idx = ",".join(str(i) for i in range(first, n_angles))
    return subprocess.Popen([APTOMO, "replay", scan, "--endpoint", f"tcp://127.0.0.1:{d.det}", "--protocol", "v2",
                             "--angles", idx, "--series0", str(first + 1), "--rate", "400", "--wait", "30"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill(d, rp):
    for p in (d.proc, rp):
        if p and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(30)
    d.sub.close()
    d.ctx.term()
    d.log.close()


def close(a, b, test=False):
    """Float tolerance between two processes' results: relative L2 difference below 1e-4. Each process plans its
    FFTs (FFTW_MEASURE) anew and may pick another plan, whose last-bit differences the nonlinear per-angle
    iterations and the phase unwrap can leave larger at single voxels, so the max difference is only reported."""
    l2 = float(np.linalg.norm(a - b) / (np.linalg.norm(b) + 1e-30))
    mx = float(np.abs(a - b).max() / (np.abs(b).max() + 1e-30))
    return l2 < 1e-4 if test else f"relative L2 difference {l2:.2e}, max {mx:.2e}"


def approximant(path):
    with h5py.File(path, "r") as f:
        return f["exchange/data"][()], len(f["exchange/theta"])


def interrupted(ck, scan, n_angles, live, rounds, t_scan, rng):
    """Kill the daemon once per round (at a random moment or at its APTOMO_CRASH_AT point), restart it on the same
    storage.dir, re-send from the last angle it had; then a last round runs to the end. Returns the kills."""
    kills = 0
    tmp = os.path.dirname(live)
    for r, (kind, point) in enumerate(rounds + [("final", None)]):
        tag = f"{os.path.basename(live)} round {r}"
        done = saved(live)
        ck.true(f"{tag}: no series twice in the state ({done})", len(done) == len(set(done)))
        ck.true(f"{tag}: the state's series are a prefix of the scan", done == list(range(1, len(done) + 1)))
        env = {"APTOMO_CRASH_AT": point} if kind == "point" else None
        d = Daemon(tmp, SETS + [f"storage.dir={live}"], log_name=f"{os.path.basename(live)}{r}.log", config=DEMO,
                   env=env)
        st = status(d)
        ck.eq(f"{tag}: status shows the resumed angles", st["state_files"]["resumed_angles"], len(done))
        ck.eq(f"{tag}: angles_done after resume", st["angles_done"], len(done))
        first = max(0, len(done) - 1)  # one angle the daemon already has comes again
        rp = replay(scan, d, first, n_angles)
        if kind == "final":
            st = wait_angles(d, n_angles, n_angles - first)
            rp.wait(60)
            ck.eq(f"{tag}: the re-sent angle recognised (not counted twice)", st["state_files"]["resent_skipped"],
                  1 if done else 0)
            ck.eq(f"{tag}: daemon exit", d.stop(), 0)
            break
        if kind == "time":
            time.sleep(rng.uniform(0.2, max(0.5, t_scan * (n_angles - first) / n_angles)))
            ck.true(f"{tag} (random time): still running when killed", d.proc.poll() is None)
        else:  # the daemon kills itself at the point, which the next new angle reaches
            t1 = time.time()
            while d.proc.poll() is None and time.time() - t1 < 10 * t_scan:
                time.sleep(0.05)
            ck.eq(f"{tag}: killed itself at {point}", d.proc.poll(), -9)
        kill(d, rp)
        kills += 1
    return kills


def check_final(ck, live, ref, ref_dir, n_angles, name):
    done = state(live)
    ck.eq(f"{name}: every series exactly once, in order", done, list(range(1, n_angles + 1)))
    files = sorted(f for f in os.listdir(os.path.join(live, "state")) if f.startswith("angle_"))
    series = sorted(read_sealed(os.path.join(live, "state", f))[0]["series"] for f in files if f.endswith(".bin"))
    ck.eq(f"{name}: one angle file per series", series, list(range(1, n_angles + 1)))
    ck.true(f"{name}: no temporary file left behind", not any(f.endswith(".tmp") for f in os.listdir(live + "/state")))
    used = {read_sealed(os.path.join(live, "state", f))[0]["series"]: read_sealed(os.path.join(live, "state", f))[0]
            ["frames_used"] for f in files if f.endswith(".bin")}
    ref_used = {h["series"]: h["frames_used"] for h in (read_sealed(os.path.join(ref_dir, "state", f))[0]
                for f in os.listdir(os.path.join(ref_dir, "state")) if f.startswith("angle_"))}
    ck.eq(f"{name}: every angle from all of its frames (frames used per series)", used, ref_used)
    got, n_got = approximant(os.path.join(live, "approximant.h5"))
    ck.eq(f"{name}: angles", n_got, n_angles)
    ck.true(f"{name}: Approximant == uninterrupted ({close(got, ref)})", close(got, ref, True))
    h, payload = read_sealed(os.path.join(live, "state", "approximant.bin"))
    sw = np.frombuffer(payload[:len(payload) // 2], "<f8")
    swv = np.frombuffer(payload[len(payload) // 2:], "<f8")
    mean = np.where(sw > 0, swv / np.where(sw > 0, sw, 1), 0).reshape(got.shape)
    ck.true(f"{name}: sums file = the published Approximant", float(np.abs(mean - got).max()) <= 1e-6 * np.abs(got).max())


def main():
    ck = Checker("resume")
    rng = random.Random(20261203)
    with tempfile.TemporaryDirectory() as tmp:
        scan = os.path.join(tmp, "scan.h5")
        run_cli("simulate", "--config", DEMO, "-o", scan, timeout=600)
        with h5py.File(scan, "r") as f:
            n_angles = len(f["entry/scan/angles_deg"])

        # the uninterrupted run
        ref_dir = os.path.join(tmp, "ref")
        d = Daemon(tmp, SETS + [f"storage.dir={ref_dir}"], log_name="ref.log", config=DEMO)
        t0 = time.time()
        rp = replay(scan, d, 0, n_angles)
        wait_angles(d, n_angles)
        t_scan = time.time() - t0
        rp.wait(60)
        ck.eq("reference: daemon exit", d.stop(), 0)
        ref, n_ref = approximant(os.path.join(ref_dir, "approximant.h5"))
        ck.eq("reference: angles", n_ref, n_angles)
        print(f"uninterrupted scan: {t_scan:.1f} s", flush=True)

        points = [f"{w}@{k}" for w in ("sealed-written", "sealed-synced", "sealed-renamed") for k in (1, 2)]
        points += ["angle-saved@1", "sums-saved@1"]
        # 20 random kills in the optimised build's run; the sanitizer build's run repeats the paths with fewer
        san = os.environ.get("APTOMO_SANITIZED") == "1"
        rng.shuffle(points)
        n_random = 3 if san else 20
        # two scans: one killed at each write step (each such kill loses at most the angle being written, so all
        # of them land while angles remain), one at random moments spread over the whole scan
        kills = 0
        for name, rounds in (("points", [("point", p) for p in points[:3 if san else len(points)]]),
                             ("random", [("time", None)] * n_random)):
            live = os.path.join(tmp, name)
            kills += interrupted(ck, scan, n_angles, live, rounds, t_scan, rng)
            check_final(ck, live, ref, ref_dir, n_angles, name)
        print(f"{kills} kills", flush=True)

        files = sorted(f for f in os.listdir(os.path.join(live, "state")) if f.startswith("angle_"))

        # damage: one angle file's payload byte flipped, and the sums file cut short
        victim = os.path.join(live, "state", files[2])
        lost = read_sealed(victim)[0]["series"]
        raw = bytearray(open(victim, "rb").read())
        raw[len(raw) // 2] ^= 0x40
        open(victim, "wb").write(raw)
        sums = os.path.join(live, "state", "approximant.bin")
        open(sums, "r+b").truncate(os.path.getsize(sums) - 100)
        d = Daemon(tmp, SETS + [f"storage.dir={live}"], log_name="damaged.log", config=DEMO)
        st = status(d)["state_files"]
        ck.eq("damaged: both files reported", st["corrupt_files"], 2)
        ck.true(f"damaged: the error is in status ({st['error']})", st["error"] and "checksum" in st["error"])
        ck.eq("damaged: rebuilt from the intact angle files", st["resumed_angles"], n_angles - 1)
        ck.true("damaged: files moved aside, not deleted",
                os.path.exists(victim + ".corrupt") and os.path.exists(sums + ".corrupt"))
        log = open(d.log_path).read()
        ck.true("damaged: the log names the file", files[2] in log and "not used" in log)
        # the detector sends that angle again: it is not in the Approximant, so it is taken
        rp = replay(scan, d, lost - 1, lost)
        wait_angles(d, n_angles, 1)
        rp.wait(60)
        ck.eq("damaged: daemon exit", d.stop(), 0)
        got, n_got = approximant(os.path.join(live, "approximant.h5"))
        ck.true(f"damaged, angle re-sent: Approximant == uninterrupted ({close(got, ref)})", close(got, ref, True))
        ck.eq("damaged, angle re-sent: every series once", sorted(state(live)), list(range(1, n_angles + 1)))

        # reset: the scan's state is moved aside whole, the next start begins empty
        d = Daemon(tmp, SETS + [f"storage.dir={live}"], log_name="reset.log", config=DEMO)
        ck.true("reset", d.control({"cmd": "reset"})["ok"])
        time.sleep(1.0)
        ck.eq("reset: exit", d.stop(), 0)
        kept = [f for f in os.listdir(live) if f.startswith("state-")]
        ck.eq("reset: the old state kept aside", len(kept), 1)
        d = Daemon(tmp, SETS + [f"storage.dir={live}"], log_name="after-reset.log", config=DEMO)
        ck.eq("after reset: nothing resumed", status(d)["state_files"]["resumed_angles"], 0)
        ck.eq("after reset: exit", d.stop(), 0)
    ck.done()


if __name__ == "__main__":
    main()
