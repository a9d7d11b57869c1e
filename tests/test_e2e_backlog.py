"""Reconstruction slower than acquisition: the worker is slowed for real (physics.iterations=4, twice the demo's work
per angle) and storage.queue_memory_mb=0 sends every complete angle to storage.dir/queue. A full-rate replay must
be received whole while the backlog grows (0 frames dropped, ingest never waits for reconstruction); then the daemon
is killed with SIGKILL in the middle of the backlog, and a restart with no detector at all must reconstruct every
queued angle from disk: the final Approximant equals the offline `aptomo approximant` of the same scan and settings,
each angle is in it once, and the queue directory is empty."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_util import APTOMO, SRC, Checker, Daemon, run_cli  # noqa: E402

DEMO = os.path.join(SRC, "configs", "demo.yaml")
SLOW = ["physics.iterations=4", "storage.queue_memory_mb=0"]
SETS = ["physics.reconstruct=true", "model.weights=", "results.status_period_s=0.2"] + SLOW


def main():
    ck = Checker("backlog")
    with tempfile.TemporaryDirectory() as tmp:
        scan = os.path.join(tmp, "scan.h5")
        run_cli("simulate", "--config", DEMO, "-o", scan, timeout=600)
        with h5py.File(scan, "r") as f:
            n_angles = len(f["entry/scan/angles_deg"])
        off = os.path.join(tmp, "offline.h5")
        run_cli("approximant", scan, "-o", off, "--config", DEMO, "--set", SLOW[0], timeout=900)
        with h5py.File(off, "r") as f:
            offline = f["exchange/data"][()]

        live = os.path.join(tmp, "live")
        d = Daemon(tmp, SETS + [f"storage.dir={live}"], log_name="slow.log", config=DEMO)
        rp = subprocess.run([APTOMO, "replay", scan, "--endpoint", f"tcp://127.0.0.1:{d.det}", "--protocol", "v2",
                             "--rate", "0", "--wait", "30"], capture_output=True, text=True, timeout=600)
        ck.eq("replay exit", rp.returncode, 0)
        sent = sum(s["sent"] for s in json.loads(rp.stdout)["series"])
        t0 = time.time()
        while time.time() - t0 < 60:  # every frame arrives while reconstruction is far behind
            st = d.control({"cmd": "status"})
            if st["series_completed"] == n_angles and st["state_files"]["spilled"] == n_angles:
                break
            time.sleep(0.1)
        q = st["state_files"]
        print(f"after the replay: {st['angles_done']} of {n_angles} angles reconstructed, {q['queued_on_disk']} "
              f"queued on disk, {st['frames_received']} of {sent} frames received", flush=True)
        ck.eq("all frames received while reconstruction lags", st["frames_received"], sent)
        ck.eq("no frame dropped", st["frames_dropped"], 0)
        ck.eq("every complete angle went to the disk queue (queue_memory_mb=0)", q["spilled"], n_angles)
        ck.true(f"a backlog is on disk ({q['queued_on_disk']} angles)", q["queued_on_disk"] >= 2)
        done_before = st["angles_done"]
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(30)
        d.sub.close()
        d.ctx.term()
        d.log.close()
        left = sorted(os.listdir(os.path.join(live, "queue")))
        ck.true(f"the backlog survived the kill ({len(left)} files)", len(left) >= n_angles - done_before - 1)

        # restart, no detector: the queue is picked up from disk
        d = Daemon(tmp, SETS + [f"storage.dir={live}"], log_name="restart.log", config=DEMO)
        t0 = time.time()
        while time.time() - t0 < 300:
            st = d.control({"cmd": "status"})
            if st["angles_done"] >= n_angles and st["queue_depth"] == 0 and st["state"] != "reconstructing":
                break
            time.sleep(0.2)
        ck.eq("restart: every angle reconstructed", st["angles_done"], n_angles)
        ck.eq("restart: nothing left on disk", st["state_files"]["queued_on_disk"], 0)
        ck.eq("restart: queue directory empty", os.listdir(os.path.join(live, "queue")), [])
        ck.eq("restart: exit", d.stop(), 0)
        with h5py.File(os.path.join(live, "approximant.h5"), "r") as f:
            got = f["exchange/data"][()]
            ck.eq("restart: angles in the result", len(f["exchange/theta"]), n_angles)
        diff = float(np.abs(got - offline).max() / (np.abs(offline).max() + 1e-30))
        ck.true(f"Approximant == offline with the same settings (max rel diff {diff:.2e})", diff < 1e-4)
    ck.done()


if __name__ == "__main__":
    main()
