"""The dashboard's HTTP server (docs/DASHBOARD.md) end to end, as scripts and misbehaving browsers use it: aptomod
(demo config, live reconstruction, tomo.reference = the simulated ground truth) <- `aptomo replay`, with
- browsers that stall: event streams that never read, a client that never finishes its request, and more
  connections than web.max_clients. Nothing may be lost: every angle reconstructed, every frame received, no
  message dropped by the publisher; the stalled connections are closed after web.timeout_s and the server still
  answers;
- a healthy event stream: a snapshot first, then every results message in order, the same headers as the PUB
  stream; a late stream's snapshot holds the whole scan and its quality history;
- slices: raw float32 planes equal the PUB payload's planes; the PNG's grey levels are the documented mapping of
  X-Aptomo-Range, which is the volume's 1st and 99th percentile; the angle's phase slice has its stack's shape;
- request checks: unknown paths 404, bad queries 400, other methods 405, malformed requests never hurt it;
- control reset clears the history and streams a `reset`."""
import http.client
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time

import h5py
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_util import APTOMO, SRC, Checker, Daemon, free_ports, run_cli  # noqa: E402

DEMO = os.path.join(SRC, "configs", "demo.yaml")
TIMEOUT_S = 2  # web.timeout_s for this test: stalled connections go quickly


def get(port, path, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    c.request(method, path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict(r.getheaders()), body


class SSE:
    """A browser's event stream, read in a thread: [(event, data dict)]."""

    def __init__(self, port):
        self.events, self.comments = [], 0
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        self.f = self.sock.makefile("rb")
        self.head = []
        while True:
            line = self.f.readline().decode().strip()
            if not line:
                break
            self.head.append(line)
        self.t = threading.Thread(target=self.read, daemon=True)
        self.t.start()

    def read(self):
        ev, data = None, None
        try:
            for raw in self.f:
                line = raw.decode().rstrip("\r\n")
                if line.startswith(":"):
                    self.comments += 1
                elif line.startswith("event: "):
                    ev = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                elif line == "" and ev:
                    self.events.append((ev, data))
                    ev, data = None, None
        except (OSError, ValueError):
            pass

    def of(self, name):
        return [d for e, d in self.events if e == name]

    def wait(self, cond, timeout=60):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if cond():
                return True
            time.sleep(0.1)
        return False

    def close(self):
        self.sock.close()


def stalled_stream(port):
    """An event stream whose reader never reads: a tiny receive buffer that fills at once."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
    return s


class SlowReader:
    """An event stream read slower than events come (1 KiB every 0.5 s) while .slow, then at full speed."""

    def __init__(self, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        self.data, self.slow = b"", True
        self.t = threading.Thread(target=self.read, daemon=True)
        self.t.start()

    def read(self):
        self.sock.settimeout(30)
        try:
            while True:
                chunk = self.sock.recv(1024 if self.slow else 1 << 20)
                if not chunk:
                    return
                self.data += chunk
                if self.slow:
                    time.sleep(0.5)
        except OSError:
            return

    def events(self):
        return [line[7:] for line in self.data.decode(errors="replace").split("\n") if line.startswith("event: ")]


def check_resync(ck, tmp):
    """A page that reads slower than events come falls behind the ring (web.stream_events, here 16; status at the
    control loop's 10 Hz, about 13 KB/s, read at 2 KB/s): once it is further behind than the ring holds it is sent
    a fresh snapshot instead of what it missed, stays open, and reads on at full speed from there. A second,
    idle daemon (no scan needed), run beside the scan of main()."""
    os.makedirs(os.path.join(tmp, "resync"))
    (port,) = free_ports(1)
    d = Daemon(os.path.join(tmp, "resync"), [f"web.port={port}", "web.stream_events=16", "web.timeout_s=60",
                                             "results.status_period_s=0.02"], log_name="resync.log", config=DEMO)
    r = SlowReader(port)
    t0 = time.time()
    while json.loads(get(port, "/status.json")[2])["web"]["resyncs"] < 1 and time.time() - t0 < 120:
        time.sleep(0.5)
    r.slow = False
    n0 = len(r.data)
    time.sleep(2)
    ev = r.events()
    ck.true(f"slow stream: resynced ({ev.count('snapshot')} snapshots in {len(ev)} events)",
            ev.count("snapshot") >= 2 and ev[0] == "snapshot")
    ck.true("slow stream: still open, reading on", r.t.is_alive() and len(r.data) > n0)
    web = json.loads(get(port, "/status.json")[2])["web"]
    ck.true(f"status web: resyncs counted ({web['resyncs']}), the stream open", web["resyncs"] >= 1 and
            web["streams_open"] == 1)
    r.sock.close()
    ck.eq("resync daemon exit", d.stop(), 0)


def closed_by_server(s, timeout):
    """True if the server closes s within timeout (reads and discards what it had sent)."""
    s.settimeout(timeout)
    t0 = time.time()
    try:
        while time.time() - t0 < timeout:
            if not s.recv(1 << 16):
                return True
    except socket.timeout:
        return False
    except OSError:
        return True
    return False


def check_requests(ck, port):
    st, h, body = get(port, "/")
    ck.eq("page: 200", st, 200)
    ck.true("page: HTML", h.get("Content-Type", "").startswith("text/html") and b"<html" in body.lower())
    ck.true("page: CSP keeps it to this server", "default-src 'self'" in h.get("Content-Security-Policy", ""))
    ck.eq("page: no caching", h.get("Cache-Control"), "no-store")
    st, h, body = get(port, "/", "HEAD")
    ck.eq("HEAD /: 200 without a body", (st, body), (200, b""))
    for path in ["/nope", "/volume/", "/volume/secret", "/../etc/passwd", "/volume/../status.json", "/status.json/",
                 "/STATUS.JSON", "/events/x", "/angle/first"]:
        st, h, body = get(port, path)
        ck.eq(f"{path}: 404", st, 404)
        ck.true(f"{path}: JSON error", json.loads(body).get("status") == 404)
    for path in ["/volume/approximant?axis=w", "/volume/approximant?format=jpeg", "/volume/approximant?foo=1",
                 "/status.json?x=1", "/angle/latest?slice=a", "/angle/latest?format=tiff", "/events?axis=z"]:
        st, h, body = get(port, path)
        ck.eq(f"{path}: 400", st, 400)
    for method in ["POST", "PUT", "DELETE"]:
        st, h, body = get(port, "/status.json", method)
        ck.eq(f"{method}: 405", st, 405)
        ck.eq(f"{method}: Allow", h.get("Allow"), "GET, HEAD")
    st, _, body = get(port, "/status.json?v=123")
    ck.eq("cache-buster v accepted", st, 200)
    ck.eq("before any angle: no volume", get(port, "/volume/approximant")[0], 404)
    ck.eq("before any angle: no angle picture", get(port, "/angle/latest")[0], 404)
    # malformed requests: the server answers with an error or closes, and lives on
    for junk in [b"\x00\x01\x02\r\n\r\n", b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\n\r\n",
                 b"GET /status.json HTTP/1.1\r\n" + b"X: " + b"y" * 70000 + b"\r\n\r\n", b"GARBAGE\r\n\r\n",
                 b"GET /status.json HTTP/9.9\r\n\r\n"]:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            s.sendall(junk)
            reply = s.recv(200)
        except OSError:
            reply = b""
        s.close()
        code = reply[9:12]
        ck.true(f"junk {junk[:20]!r}...: error status or closed ({reply[:30]!r})",
                reply == b"" or code[:1] in (b"4", b"5"))
    ck.eq("alive after junk", get(port, "/status.json")[0], 200)
    # random requests from the grammar of valid ones with mutations: every answer is a documented status
    rng = random.Random(7)
    parts = ["/", "/volume/", "approximant", "baseline", "volume", "/angle/latest", "/status.json", "/events",
             "/metrics.json", "?", "&", "=", "axis", "index", "format", "slice", "v", "z", "y", "x", "raw", "png",
             "-1", "0", "1", "99999999999", "%00", "%2e%2e", "..", "//", "\xff", "\u00e9", "#", ";", " "]
    bad = []
    for _ in range(300):
        path = "/" + "".join(rng.choice(parts) for _ in range(rng.randint(1, 8)))
        path = "".join(ch if 33 <= ord(ch) < 127 else "%%%02X" % (ord(ch) & 0xFF) for ch in path)
        if path.startswith("/events"):
            continue  # a stream does not end: covered by the stream tests
        try:
            st = get(port, path)[0]
        except (OSError, http.client.HTTPException) as e:
            st = str(e)
        if st not in (200, 400, 404):
            bad.append((path, st))
    ck.eq("random requests: only 200, 400 and 404", bad, [])


def check_slices(ck, port, pub):
    """Slices against the PUB stream's payloads (the last approximant, baseline, volume)."""
    for name in ("approximant", "baseline", "volume"):
        hdr, payload = pub[name]
        vol = np.frombuffer(payload, "<f4").reshape(hdr["shape"])
        Z, Y, X = vol.shape
        for axis, idx, plane in [("z", 0, vol[0]), ("z", Z - 1, vol[Z - 1]), ("y", 5, vol[:, 5, :]),
                                 ("x", X // 2, vol[:, :, X // 2])]:
            st, h, body = get(port, f"/volume/{name}?axis={axis}&index={idx}&format=raw")
            ck.eq(f"{name} {axis}={idx}: 200", st, 200)
            ck.eq(f"{name} {axis}={idx}: shape header", h.get("X-Aptomo-Shape"), f"{plane.shape[0]},{plane.shape[1]}")
            got = np.frombuffer(body, "<f4")
            ck.true(f"{name} {axis}={idx}: raw plane == PUB payload plane",
                    got.size == plane.size and np.array_equal(got.reshape(plane.shape), plane))
        ck.eq(f"{name}: volume shape header", h.get("X-Aptomo-Volume-Shape"), f"{Z},{Y},{X}")
        ck.eq(f"{name}: angles header", int(h.get("X-Aptomo-Angles", -1)), hdr["angles"])
        # the colour range: 1st and 99th percentile of the whole volume (an order statistic, exact below 200000)
        s = np.sort(vol.ravel())
        m = s.size
        lo, hi = map(float, h["X-Aptomo-Range"].split(","))
        ck.true(f"{name}: range = 1st/99th percentile ({lo:.4g},{hi:.4g})",
                np.float32(lo) == s[m // 100] and np.float32(hi) == s[m - 1 - m // 100])
        st, h, body = get(port, f"/volume/{name}?axis=y")
        ck.eq(f"{name}: PNG", (st, h.get("Content-Type")), (200, "image/png"))
        img = np.asarray(Image.open(io.BytesIO(body)))
        plane = vol[:, Y // 2, :]
        ck.eq(f"{name}: PNG default index is the middle", h.get("X-Aptomo-Index"), str(Y // 2))
        want = np.clip(np.rint((plane.astype(np.float64) - lo) * (255.0 / (hi - lo))), 0, 255)
        ck.true(f"{name}: PNG grey = documented mapping of the range (max diff "
                f"{np.abs(img.astype(int) - want).max() if img.shape == want.shape else 'shape'})",
                img.shape == plane.shape and np.abs(img.astype(int) - want).max() <= 1)
        ck.eq(f"{name}: index out of range", get(port, f"/volume/{name}?axis=z&index={Z}")[0], 400)
        ck.eq(f"{name}: negative index", get(port, f"/volume/{name}?axis=z&index=-1")[0], 400)


def main():
    ck = Checker("web")
    with tempfile.TemporaryDirectory() as tmp:
        scan = os.path.join(tmp, "scan.h5")
        run_cli("simulate", "--config", DEMO, "-o", scan, timeout=600)
        with h5py.File(scan, "r") as f:
            truth = f["entry/sample/ground_truth"][()]
            n_angles = len(f["entry/scan/angles_deg"])
        (port,) = free_ports(1)
        max_clients = 8
        resync = threading.Thread(target=check_resync, args=(ck, tmp))
        resync.start()
        d = Daemon(tmp, ["physics.reconstruct=true", f"storage.dir={tmp}/live", f"web.port={port}",
                         f"web.timeout_s={TIMEOUT_S}", f"web.max_clients={max_clients}",
                         f"tomo.reference={scan}:/entry/sample/ground_truth"], log_name="web.log", config=DEMO)
        check_requests(ck, port)

        # browsers: one healthy stream, three that never read, one that never finishes its request
        sse = SSE(port)
        ck.true("stream: text/event-stream", any("text/event-stream" in l for l in sse.head))
        stalled = [stalled_stream(port) for _ in range(3)]
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"GET /status.json HTTP/1.1\r\nHost")  # ... and nothing more
        ck.true("stream: snapshot first", sse.wait(lambda: sse.events) and sse.events[0][0] == "snapshot")

        rp = subprocess.run([APTOMO, "replay", scan, "--endpoint", f"tcp://127.0.0.1:{d.det}", "--protocol", "v2",
                             "--compression", "bslz4", "--rate", "500", "--wait", "30"],
                            capture_output=True, text=True, timeout=600)
        ck.eq("replay exit", rp.returncode, 0)
        sent = sum(s["sent"] for s in json.loads(rp.stdout)["series"])
        pub, pub_angles, t0 = {}, [], time.time()
        while "volume" not in pub and time.time() - t0 < 600:
            m = d.recv(1.0)
            if m and m[0] in ("approximant", "baseline", "volume"):
                pub[m[0]] = (m[1], m[2])
            if m and m[0] == "angle":
                pub_angles.append(m[1])
        ck.true("PUB: a refined volume", "volume" in pub)
        ck.true("stream: stop advice", sse.wait(lambda: sse.of("stop")))

        # nothing lost while browsers stalled
        st = json.loads(get(port, "/status.json")[2])
        ck.eq("status: every angle reconstructed", st["angles_done"], n_angles)
        ck.eq("status: every frame received", st["frames_received"], sent)
        ck.eq("status: nothing dropped", (st["frames_dropped"], st["publish_dropped"]), (0, 0))
        # the stalled connections are closed after web.timeout_s (their buffers full, nothing written for that
        # long); the healthy stream stays
        t0 = time.time()
        while json.loads(get(port, "/status.json")[2])["web"]["streams_open"] > 1 and time.time() - t0 < 30:
            time.sleep(0.2)
        ck.eq("status web: the stalled streams closed", json.loads(get(port, "/status.json")[2])["web"]["streams_open"],
              1)
        for i, s in enumerate(stalled + [slow]):
            ck.true(f"stalled connection {i} closed by the server", closed_by_server(s, 10 * TIMEOUT_S))
            s.close()
        ck.true("stream: healthy one still open", sse.t.is_alive())
        # the slow stream falls behind the ring (32 events; 10 status events a second): it is given a new
        # snapshot instead of what it missed, and from there reaches the end of the scan

        web = json.loads(get(port, "/status.json")[2])["web"]
        ck.eq("status web: one stream open", web["streams_open"], 1)
        ck.true(f"status web: counts requests ({web['requests']}) and errors ({web['errors']})",
                web["requests"] > 20 and web["errors"] >= 15)

        # the healthy stream: every results message, the same headers as PUB, in order
        angles = sse.of("angle")
        ck.eq("stream: every angle", [a["series"] for a in angles], [a["series"] for a in pub_angles])
        ck.true("stream: angle headers == PUB headers", angles == pub_angles)
        appr = sse.of("approximant")
        ck.eq("stream: an Approximant per angle", [a["angles"] for a in appr], list(range(1, n_angles + 1)))
        ck.true("stream: status events", len(sse.of("status")) >= 2)
        ck.eq("stream: metrics", len(sse.of("metrics")), 1)
        # the per-angle quality: PCC of the Approximant and baseline with the reference, as numpy computes it
        a8 = np.frombuffer(pub["approximant"][1], "<f4").reshape(truth.shape).astype(np.float64)
        want = float(np.corrcoef(a8.ravel(), truth.ravel().astype(np.float64))[0, 1])
        got = appr[-1].get("reference", {}).get("pcc")
        ck.true(f"approximant header reference.pcc {got} == numpy {want:.6f}", got is not None and abs(got - want) < 1e-4)
        bases = sse.of("baseline")
        ck.true("baseline headers carry reference.pcc", all("pcc" in b.get("reference", {}) for b in bases))

        check_slices(ck, port, pub)
        st, h, body = get(port, "/angle/latest?format=raw&slice=0")
        last = pub_angles[-1]
        L, Ny, Nx = last["stack"]
        ck.eq("angle picture: 200", st, 200)
        ck.eq("angle picture: the last angle", h.get("X-Aptomo-Series"), str(last["series"]))
        ck.eq("angle picture: stack header", h.get("X-Aptomo-Stack"), f"{L},{Ny},{Nx}")
        ph = np.frombuffer(body, "<f4")
        ck.true("angle picture: a phase plane in [-pi, pi]",
                ph.size == Ny * Nx and np.all(np.abs(ph) <= np.pi + 1e-6) and ph.std() > 0)
        ck.eq("angle picture: slice out of range", get(port, f"/angle/latest?slice={L}")[0], 400)

        # /metrics.json and a late browser's snapshot: the whole history at once
        hist = json.loads(get(port, "/metrics.json")[2])
        ck.eq("history: approximant per angle", [x["angles"] for x in hist["approximant"]],
              list(range(1, n_angles + 1)))
        ck.eq("history: one metrics message", len(hist["metrics"]), 1)
        ck.true("history: metrics vs reference", "pcc" in hist["metrics"][0].get("reference", {}))
        late = SSE(port)
        ck.true("late stream: snapshot", late.wait(lambda: late.events))
        snap = late.events[0][1] if late.events and late.events[0][0] == "snapshot" else {}
        ck.eq("late snapshot: every angle", len(snap.get("angles", [])), n_angles)
        ck.eq("late snapshot: stop advice", snap.get("topics", {}).get("stop", {}).get("reason"), "n_star")
        ck.eq("late snapshot: history", snap.get("history"), hist)
        ck.eq("late snapshot: angle picture", (snap.get("angle_image") or {}).get("series"), last["series"])
        late.close()

        # more connections than web.max_clients: the extra ones are refused, the server stays up
        idle = []
        for _ in range(max_clients + 4):
            try:
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                pass
        time.sleep(0.5)
        refused = 0
        for s in idle:
            s.settimeout(0.5)
            try:
                if s.recv(1) == b"":
                    refused += 1
            except socket.timeout:
                pass
            except OSError:
                refused += 1
        ck.true(f"beyond max_clients: {refused} connections refused", refused >= 4)
        for s in idle:
            s.close()
        # served again once connections close (the idle ones time out after web.timeout_s)
        t0, answered = time.time(), False
        while not answered and time.time() - t0 < 10 * TIMEOUT_S:
            try:
                answered = get(port, "/status.json")[0] == 200
            except OSError:
                time.sleep(0.5)
        ck.true("answers after the flood", answered)

        # reset: a new scan starts; history and volumes are gone, the stream says so
        ck.true("reset", d.control({"cmd": "reset"}).get("ok") is True)
        ck.true("stream: reset event", sse.wait(lambda: sse.of("reset"), 10))
        hist = json.loads(get(port, "/metrics.json")[2])
        ck.eq("after reset: empty history", hist, {"approximant": [], "baseline": [], "metrics": []})
        ck.eq("after reset: no volume", get(port, "/volume/approximant")[0], 404)
        sse.close()
        ck.eq("daemon exit", d.stop(), 0)
        resync.join()
    return ck.done()


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
