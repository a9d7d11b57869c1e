"""Faults around aptomod, end to end over loopback, each against what the sender says it sent:
- stalled subscribers (one never reads, one stops after a few messages) during a full-rate replay with
  reconstruction on: every frame is received, every angle completes, a reading subscriber gets every angle;
- a detector that restarts mid-scan: the open series completes as "superseded" with exactly the frames it had, stray
  frames of it after the new header are counted stale, none is mixed into the new series (recorded replay messages,
  re-sent in a chosen order; and a real replay killed mid-angle, then restarted with --series0);
- a full disk on the spool: a file size limit (RLIMIT_FSIZE, write() fails with EFBIG) and
  storage.spool_min_free_mb above the free space: spooling goes off with an error in status, reconstruction goes on;
- scan metadata that arrives after its series' frames: applied within metadata.grace_s, counted when too late."""
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time

import h5py
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_util import APTOMO, SRC, Checker, Daemon, free_ports, run_cli  # noqa: E402

DEMO = os.path.join(SRC, "configs", "demo.yaml")
PHYSICS = ["physics.reconstruct=true", 'model.weights=""']  # the network is not what these tests are about


def replay(d, scan, *args, endpoint=None, timeout=300):
    rp = subprocess.run([APTOMO, "replay", scan, "--endpoint", endpoint or f"tcp://127.0.0.1:{d.det}",
                         "--wait", "20", *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if rp.returncode != 0:
        sys.exit(f"replay failed ({rp.returncode}): {rp.stderr}")
    return json.loads(rp.stdout)


def collect(d, n_angles, timeout=300, until=None):
    """Angle headers by series until n_angles arrived (and until(status, topics) holds, if given); topics counted."""
    angles, topics, t0 = {}, {}, time.time()
    while time.time() - t0 < timeout:
        if len(angles) >= n_angles and (until is None or until(d.control({"cmd": "status"}), topics)):
            break
        m = d.recv(0.3)
        if m:
            topics[m[0]] = topics.get(m[0], 0) + 1
            if m[0] == "angle":
                angles[m[1]["series"]] = m[1]
    return angles, topics


def drain(sock, quiet_s=1.0):
    """Every message sock holds (its publisher is gone), per topic."""
    topics = {}
    while sock.poll(int(quiet_s * 1000)):
        parts = sock.recv_multipart()
        topics[parts[0].decode()] = topics.get(parts[0].decode(), 0) + 1
    return topics


def stalled_subscribers(tmp, scan, n_angles):
    """PUB must never hold ingest back: a subscriber that never reads (1-message RCVHWM, tiny kernel buffer) and one
    that reads three messages and stops only lose messages themselves (PUB high-water mark, results.sndhwm)."""
    ck = Checker("stalled-subscribers")
    d = Daemon(tmp, [*PHYSICS, f"storage.dir={tmp}/stalled", "results.sndhwm=8"], log_name="stalled.log",
               config=DEMO)
    ctx = zmq.Context()
    subs = []
    for _ in range(2):
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.RCVHWM, 1)
        s.setsockopt(zmq.RCVBUF, 4096)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.connect(f"tcp://127.0.0.1:{d.res}")
        subs.append(s)
    t0 = time.time()
    read = 0
    while read < 3 and time.time() - t0 < 10:  # the second one reads a bit (status messages), then stops
        if subs[1].poll(500):
            subs[1].recv_multipart()
            read += 1
    ck.eq("second subscriber read a few messages first", read, 3)
    summary = replay(d, scan, "--protocol", "v2", "--rate", 0)
    sent = sum(s["sent"] for s in summary["series"])
    angles, topics = collect(d, n_angles, until=lambda st, tp: st["angles_done"] >= n_angles and
                             tp.get("approximant", 0) >= n_angles)
    st = d.control({"cmd": "status"})
    print(f"  full-rate replay: {sent} frames in {summary['seconds']:.2f} s ({summary['frames_per_s']:.0f}/s); "
          f"daemon received {st['frames_received']}, dropped {st['frames_dropped']}, "
          f"publish_dropped {st['publish_dropped']}")
    ck.eq("frames received == sent", st["frames_received"], sent)
    ck.eq("frames dropped", st["frames_dropped"], 0)
    ck.eq("angles reconstructed", st["angles_done"], n_angles)
    ck.eq("series completed", st["series_completed"], n_angles)
    ck.true("publish_dropped reported", isinstance(st.get("publish_dropped"), int))
    ck.eq("reading subscriber: every angle", len(angles), n_angles)
    ck.eq("reading subscriber: every Approximant", topics.get("approximant", 0), n_angles)
    for s in summary["series"]:
        a = angles.get(s["series"], {})
        ck.eq(f"series {s['series']} frames_used", a.get("frames_used"), s["sent"])
    ck.eq("daemon exit status", d.stop(), 0)
    got = [drain(s) for s in subs]  # what they hold now is all they will ever get
    print(f"  reading subscriber: {topics}; stalled: {got[0]}; stopped after 3: {got[1]}")
    # the stalled ones lost Approximants at the PUB high-water mark: proof the test reached it
    for name, g in zip(("never reads", "stopped reading"), got):
        ck.true(f"subscriber that {name} lost messages ({g.get('approximant', 0)} of {n_angles} Approximants)",
                g.get("approximant", 0) < n_angles)
    for s in subs:
        s.close(linger=0)
    ctx.term()
    return ck.done()


def record(scan, *args):
    """What `aptomo replay` sends, message by message (multipart lists), received by a PULL of our own."""
    port, = free_ports(1)
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.connect(f"tcp://127.0.0.1:{port}")
    proc = subprocess.Popen([APTOMO, "replay", scan, "--endpoint", f"tcp://127.0.0.1:{port}", "--wait", "20",
                             *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    msgs = []
    while proc.poll() is None or pull.poll(500):
        if pull.poll(100):
            msgs.append(pull.recv_multipart())
    out, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"replay (recording) failed: {err}")
    pull.close(linger=0)
    ctx.term()
    return msgs, json.loads(out)


def v1_kind(msg):
    h = json.loads(msg[0])
    return h["htype"].split("-")[0], h.get("series"), h.get("frame")


def detector_restart_recorded(tmp, scan):
    """Series A whole; series B's header and its first K frames, then the detector restarts: series C's header,
    S stray frames of B (and B's late end message), C's frames and end. B completes as superseded with exactly K
    frames, the S strays are stale, C is complete and unmixed."""
    ck = Checker("detector-restart-recorded")
    K, S = 15, 4
    msgs, summary = record(scan, "--protocol", "v1", "--series0", 5)
    by = {}
    for m in msgs:
        kind, series, _ = v1_kind(m)
        by.setdefault(series, {"dheader": [], "dimage": [], "dseries_end": []})[kind].append(m)
    A, B, C = (s["series"] for s in summary["series"])
    order = (by[A]["dheader"] + by[A]["dimage"] + by[A]["dseries_end"] +
             by[B]["dheader"] + by[B]["dimage"][:K] +
             by[C]["dheader"] + by[B]["dimage"][K:K + S] + by[B]["dseries_end"] +
             by[C]["dimage"] + by[C]["dseries_end"])
    d = Daemon(tmp, ["detector.crop=32"], log_name="restart.log")
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.bind(f"tcp://127.0.0.1:{d.det}")
    for m in order:
        push.send_multipart(m)
    n_images = sum(v1_kind(m)[0] == "dimage" for m in order)
    angles, _ = collect(d, 3, timeout=60)
    st = d.control({"cmd": "status"})
    nA, nC = len(by[A]["dimage"]), len(by[C]["dimage"])
    print(f"  sent {n_images} images: series {A} {nA}, series {B} {K} + {S} strays, series {C} {nC}")
    ck.eq("frames received", st["frames_received"], n_images)
    ck.eq("stale: the strays of the aborted series", st["dropped"]["stale"], S)
    ck.eq("series completed", st["series_completed"], 3)
    for series, n, how in ((A, nA, "end"), (B, K, "superseded"), (C, nC, "end")):
        a = angles.get(series, {})
        ck.eq(f"series {series} completed_by", a.get("completed_by"), how)
        ck.eq(f"series {series} frames_received", a.get("frames_received"), n)
        ck.eq(f"series {series} frames_used", a.get("frames_used"), n)
        ck.eq(f"series {series} duplicates", a.get("dropped", {}).get("duplicate"), 0)
    push.close(linger=0)
    ctx.term()
    ck.eq("daemon exit status", d.stop(), 0)
    return ck.done()


def detector_restart_killed(tmp, scan):
    """A real restart: replay killed (SIGKILL) in the middle of its second series, a new replay from --series0 10.
    The killed series completes as superseded with what the daemon had of it; the new series are whole."""
    ck = Checker("detector-restart-killed")
    d = Daemon(tmp, ["detector.crop=32"], log_name="killed.log")
    ep = f"tcp://127.0.0.1:{d.det}"
    first = subprocess.Popen([APTOMO, "replay", scan, "--endpoint", ep, "--wait", "20", "--rate", "200",
                              "--protocol", "v2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 30 and d.control({"cmd": "status"})["frames_received"] < 55:
        time.sleep(0.01)
    first.kill()
    first.wait()
    time.sleep(0.5)
    before = d.control({"cmd": "status"})["frames_received"]
    summary = replay(d, scan, "--protocol", "v2", "--series0", 10, "--angles", "0,1", endpoint=ep)
    angles, _ = collect(d, 4, timeout=60)  # series 1, the killed 2, then 10 and 11
    st = d.control({"cmd": "status"})
    n0 = 40  # frames per angle of the scan
    print(f"  killed replay: daemon had {before} frames ({before - n0} of series 2); restarted replay sent "
          f"{sum(s['sent'] for s in summary['series'])}")
    ck.true("killed in the middle of series 2", n0 < before < 2 * n0)
    ck.eq("frames received", st["frames_received"], before + sum(s["sent"] for s in summary["series"]))
    ck.eq("frames dropped", st["frames_dropped"], 0)
    a = angles.get(2, {})
    ck.eq("series 2 completed_by", a.get("completed_by"), "superseded")
    ck.eq("series 2 frames_received", a.get("frames_received"), before - n0)
    ck.eq("series 2 frames_used", a.get("frames_used"), before - n0)
    for s in summary["series"]:
        a = angles.get(s["series"], {})
        ck.eq(f"series {s['series']} frames_received (not mixed)", a.get("frames_received"), s["sent"])
        ck.eq(f"series {s['series']} completed_by", a.get("completed_by"), "end")
    ck.eq("daemon exit status", d.stop(), 0)
    return ck.done()


def spool_file_limit(tmp, scan, n_angles):
    """The daemon runs under a file size limit that one series' spool file exceeds but the result files do not:
    the write fails with EFBIG (SIGXFSZ ignored), the spool goes off with the error in status, every angle is
    still reconstructed and approximant.h5 is written."""
    ck = Checker("spool-file-limit")
    limit = 700 * 1024  # above approximant.h5 (32x48x48 float32 twice, 590 KB), below one series' spool file
    live = os.path.join(tmp, "flimit")
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))  # inherited by the daemon only: we write nothing
    try:
        d = Daemon(tmp, [*PHYSICS, f"storage.dir={live}", "storage.spool_frames=true"], log_name="flimit.log",
                   config=DEMO)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
    summary = replay(d, scan, "--protocol", "v2")
    sent = sum(s["sent"] for s in summary["series"])
    collect(d, n_angles, until=lambda st, tp: st["angles_done"] >= n_angles)
    st = d.control({"cmd": "status"})
    sp = st.get("spool", {})
    print(f"  RLIMIT_FSIZE {limit} B: spooled {st['spooled']}, skipped {sp.get('frames_skipped')}, "
          f"errors {st['spool_errors']}; status spool: {sp}")
    ck.eq("frames received == sent", st["frames_received"], sent)
    ck.eq("spool disabled", sp.get("enabled"), False)
    ck.true("spool error names the cause", "File too large" in (sp.get("error") or ""))
    ck.eq("disabled once", sp.get("disabled"), 1)
    ck.true("some frames spooled before the limit", 0 < st["spooled"] < sent)
    ck.eq("spooled + skipped == accepted", st["spooled"] + sp.get("frames_skipped", -1), st["frames_accepted"])
    ck.eq("every angle reconstructed", st["angles_done"], n_angles)
    rc = d.stop()
    ck.eq("daemon exit status (not killed by SIGXFSZ)", rc, 0)
    with h5py.File(os.path.join(live, "approximant.h5"), "r") as f:
        ck.eq("approximant.h5 written, of every angle", len(f["exchange/theta"]), n_angles)
    files = [f for f in os.listdir(live) if f.startswith("series_")]
    ck.eq("one (cut) spool file", len(files), 1)
    ck.true("spool file within the limit", all(os.path.getsize(os.path.join(live, f)) <= limit for f in files))
    log = open(d.log_path).read()
    ck.eq("disabling logged once", log.count("spool disabled"), 1)
    return ck.done()


def spool_min_free(tmp, scan, n_angles):
    """storage.spool_min_free_mb above the free space: no frame is spooled, status says why, angles complete."""
    ck = Checker("spool-min-free")
    live = os.path.join(tmp, "minfree")
    d = Daemon(tmp, [f"storage.dir={live}", "storage.spool_frames=true", "storage.spool_min_free_mb=1000000000",
                     "detector.crop=32"], log_name="minfree.log")
    summary = replay(d, scan, "--protocol", "v1")
    sent = sum(s["sent"] for s in summary["series"])
    angles, _ = collect(d, n_angles, timeout=60)
    st = d.control({"cmd": "status"})
    sp = st.get("spool", {})
    print(f"  status spool: {sp}")
    ck.eq("frames received == sent", st["frames_received"], sent)
    ck.eq("spool disabled", sp.get("enabled"), False)
    ck.true("error names the key", "storage.spool_min_free_mb" in (sp.get("error") or ""))
    ck.true("free space reported", isinstance(sp.get("free_mb"), (int, float)) and sp["free_mb"] < 1e9)
    ck.eq("nothing spooled", st["spooled"], 0)
    ck.eq("every frame skipped", sp.get("frames_skipped"), sent)
    for s in summary["series"]:
        ck.eq(f"series {s['series']} frames_used", angles.get(s["series"], {}).get("frames_used"), s["sent"])
    ck.eq("daemon exit status", d.stop(), 0)
    ck.eq("no spool file", [f for f in os.listdir(live) if f.startswith("series_")], [])
    return ck.done()


class DelayedRelay(threading.Thread):
    """The scan-metadata channel, late: PULLs what replay sends and re-sends each message `delay` s later."""

    def __init__(self, src, dst, delay):
        super().__init__(daemon=True)
        self.ctx = zmq.Context()
        self.pull = self.ctx.socket(zmq.PULL)
        self.pull.connect(src)
        self.push = self.ctx.socket(zmq.PUSH)
        self.push.bind(dst)
        self.delay, self.stop, self.forwarded = delay, False, 0
        self.start()

    def run(self):
        queue = []
        while not self.stop or queue:
            if self.pull.poll(20):
                queue.append((time.time() + self.delay, self.pull.recv()))
            while queue and queue[0][0] <= time.time():
                self.push.send(queue.pop(0)[1])
                self.forwarded += 1

    def close(self):
        self.stop = True
        self.join()
        self.pull.close(linger=0)
        self.push.close(linger=1000)
        self.ctx.term()


def late_metadata(tmp, scan, n_angles, grace, delay):
    """Positions on the metadata channel only, delayed by `delay` s while the daemon waits `grace` s."""
    late = delay < grace
    ck = Checker(f"late-metadata-grace{grace}-delay{delay}")
    d = Daemon(tmp, ["detector.crop=32", "metadata.endpoint=tcp://127.0.0.1:{meta}", f"metadata.grace_s={grace}"],
               log_name=f"late{grace}.log")
    src, = free_ports(1)
    relay = DelayedRelay(f"tcp://127.0.0.1:{src}", f"tcp://127.0.0.1:{d.meta}", delay)
    t0 = time.time()
    summary = replay(d, scan, "--protocol", "v2", "--positions", "metadata", "--metadata-endpoint",
                     f"tcp://127.0.0.1:{src}")
    t_sent = time.time() - t0
    sent = sum(s["sent"] for s in summary["series"])
    st_mid = d.control({"cmd": "status"})
    angles, _ = collect(d, n_angles, timeout=60)
    t_done = time.time() - t0
    time.sleep(delay + 0.5)  # metadata that comes after its grace must be counted, not applied
    st = d.control({"cmd": "status"})
    md = st.get("metadata", {})
    print(f"  replay took {t_sent:.2f} s, angles done after {t_done:.2f} s; status metadata: {md}; "
          f"no_position {st['dropped']['no_position']}")
    ck.eq("frames received == sent (ingest went on)", st_mid["frames_received"], sent)
    ck.eq("relay forwarded every metadata message", relay.forwarded, n_angles)
    ck.eq("nothing held any more", md.get("held"), 0)
    for s in summary["series"]:
        a = angles.get(s["series"], {})
        ck.eq(f"series {s['series']} frames_used", a.get("frames_used"), s["sent"] if late else 0)
        ck.eq(f"series {s['series']} no_position", a.get("dropped", {}).get("no_position"), 0 if late else s["sent"])
        ck.true(f"series {s['series']} angle", abs(a.get("angle_deg", 1e9) - s["angle_deg"]) < 1e-9)
    ck.eq("late metadata applied", md.get("late_applied"), n_angles if late else 0)
    ck.eq("series handed on without it", md.get("expired"), 0 if late else n_angles)
    ck.eq("metadata after its grace ignored", md.get("ignored"), 0 if late else n_angles)
    if late:
        ck.true(f"angles waited for their metadata ({t_done:.2f} s >= {delay} s)", t_done >= delay)
    relay.close()
    ck.eq("daemon exit status", d.stop(), 0)
    return ck.done()


def main():
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        synth = os.path.join(tmp, "synth.h5")
        run_cli("synth-scan", "-o", synth, "--angles", 3, "--frames", 40, "--width", 96, "--height", 80,
                "--seed", 11)
        demo = os.path.join(tmp, "demo.h5")
        run_cli("simulate", "--config", DEMO, "-o", demo, "--set", "sim.angles=6")
        # enough payload (two 295 KB volumes per angle) that the stalled subscribers' buffers surely fill
        demo12 = os.path.join(tmp, "demo12.h5")
        run_cli("simulate", "--config", DEMO, "-o", demo12, "--set", "sim.angles=12")
        failed += detector_restart_recorded(tmp, synth)
        failed += detector_restart_killed(tmp, synth)
        failed += late_metadata(tmp, synth, 3, grace=5, delay=1.0)
        failed += late_metadata(tmp, synth, 3, grace=0.5, delay=2.0)
        failed += spool_min_free(tmp, synth, 3)
        failed += spool_file_limit(tmp, demo, 6)
        failed += stalled_subscribers(tmp, demo12, 12)
    print(f"faults: {'FAILED' if failed else 'all scenarios passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
