"""Helpers for the end-to-end tests: free loopback ports, a running aptomod with a temporary config, a results
subscriber, the control socket, and the aptomo CLI. Everything talks over 127.0.0.1 only."""
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time

import zmq

APTOMO = os.environ.get("APTOMO_BIN", "build/tools/aptomo")
APTOMOD = os.environ.get("APTOMOD_BIN", "build/daemon/aptomod")
SRC = os.environ.get("APTOMO_SRC", ".")


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def run_pty(args, cwd, timeout=600):
    """aptomo ARGS with stderr on a pty (stdout to cwd/pty-stdout.txt), as a user at a terminal runs it: returns
    (rc, what the terminal got)."""
    mfd, sfd = pty.openpty()
    with open(os.path.join(cwd, "pty-stdout.txt"), "w") as out:
        proc = subprocess.Popen([os.path.abspath(APTOMO), *map(str, args)], stdout=out, stderr=sfd, cwd=cwd)
    os.close(sfd)
    got = b""
    while True:
        r, _, _ = select.select([mfd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(mfd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            got += chunk
        elif proc.poll() is not None:
            break
    rc = proc.wait(timeout=timeout)
    os.close(mfd)
    return rc, got.decode(errors="replace")


def run_cli(*args, check=True, timeout=300):
    p = subprocess.run([APTOMO, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        sys.exit(f"aptomo {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}")
    return p


class Daemon:
    """aptomod on loopback ports with the reference config plus --set overrides."""

    def __init__(self, workdir, sets=(), log_name="aptomod.log", config=None, env=None):
        self.det, self.res, self.ctl, self.meta = free_ports(4)
        self.workdir = workdir
        self.spool = os.path.join(workdir, "spool")
        base = [
            f"detector.endpoints=[tcp://127.0.0.1:{self.det}]",
            f"results.endpoint=tcp://127.0.0.1:{self.res}",
            f"control.endpoint=tcp://127.0.0.1:{self.ctl}",
            f"storage.dir={self.spool}",
            "results.status_period_s=0.2",
            "physics.reconstruct=false",  # ingest tests stream synthetic frames; physics tests turn it on
            "web.port=0",  # the demo's dashboard port would collide between tests run in parallel; web tests set one
        ]
        if config and os.path.basename(config) == "demo.yaml":
            # the demo's weights path is relative to the repository root, where the demo runs; tests run elsewhere
            base.append(f"model.weights={os.path.join(SRC, 'models', 'demo.safetensors')}")
        cmd = [APTOMOD, "--config", config or os.path.join(SRC, "configs", "aptomod.yaml")]
        for s in base + [x.format(meta=self.meta, det=self.det) for x in sets]:
            cmd += ["--set", s]
        self.log_path = os.path.join(workdir, log_name)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=None if env is None else {**os.environ, **env})
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(f"tcp://127.0.0.1:{self.res}")
        # the first status message proves the daemon is up and our subscription is live
        self.wait_topic("status", timeout=30)

    def recv(self, timeout=1.0):
        if not self.sub.poll(int(timeout * 1000)):
            if self.proc.poll() is not None:
                sys.exit(f"aptomod exited with {self.proc.returncode}; log:\n{open(self.log_path).read()}")
            return None
        parts = self.sub.recv_multipart()
        return parts[0].decode(), json.loads(parts[1]), (parts[2] if len(parts) > 2 else None)

    def wait_topic(self, topic, timeout=30):
        t0 = time.time()
        while time.time() - t0 < timeout:
            m = self.recv(0.5)
            if m and m[0] == topic:
                return m
        sys.exit(f"no '{topic}' message within {timeout} s; log:\n{open(self.log_path).read()}")

    def control(self, req, timeout=10):
        s = self.ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(f"tcp://127.0.0.1:{self.ctl}")
        s.send(req if isinstance(req, bytes) else json.dumps(req).encode())
        if not s.poll(int(timeout * 1000)):
            sys.exit(f"no control reply to {req}")
        rep = json.loads(s.recv())
        s.close()
        return rep

    def stop(self, how="shutdown", timeout=60):
        if how == "shutdown":
            assert self.control({"cmd": "shutdown"})["ok"]
        else:
            self.proc.send_signal(signal.SIGTERM if how == "term" else signal.SIGINT)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            sys.exit(f"aptomod did not exit within {timeout} s; log:\n{open(self.log_path).read()}")
        self.sub.close()
        self.ctx.term()
        self.log.close()
        return rc


class Checker:
    def __init__(self, name):
        self.name, self.failed, self.checks = name, 0, 0

    def eq(self, what, got, want):
        self.checks += 1
        if got != want:
            self.failed += 1
            print(f"FAIL {self.name}: {what}: got {got!r}, want {want!r}")

    def true(self, what, cond):
        self.checks += 1
        if not cond:
            self.failed += 1
            print(f"FAIL {self.name}: {what}")

    def done(self):
        print(f"{self.name}: {self.checks - self.failed} passed, {self.failed} failed")
        return self.failed
