"""Access control of aptomod, as an operator sets it up (docs/OPERATIONS.md "Access"): `aptomo keygen` writes key
pairs that pyzmq (libzmq's CURVE, independent of aptomo's key-file code) accepts; with CURVE on, an authorised client
gets control replies and results, a client with an unknown key, a plain TCP client and a client that trusts another
server key get nothing on either socket, are counted in status auth_refused and logged without a flood, and the
authorised client is served on; SIGHUP authorises a key added to the client list, applies a changed live key,
names a changed non-live key as needing a restart and leaves it in force, and survives a broken file; `set`
changes live keys only and its refusal lists exactly the live keys OPERATIONS.md lists; `--check` refuses an
insecure secret-key file and half-configured CURVE; the control socket defaults to loopback."""
import json
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import time

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_util import APTOMO, APTOMOD, SRC, Checker, free_ports  # noqa: E402

QUIET_S = 1.5  # how long a refused client waits for what an authorised one gets every 0.2 s


def read_pair(path):
    """(public, secret) Z85 from a NAME.key, parsed here from the documented format."""
    kv = dict(line.split(": ", 1) for line in open(path).read().splitlines() if line and not line.startswith("#"))
    return kv["public-key"].encode(), kv["secret-key"].encode()


def read_pub(path):
    return [l for l in open(path).read().splitlines() if l and not l.startswith("#")][0].encode()


def keygen(ck, tmp, name):
    base = os.path.join(tmp, name)
    p = subprocess.run([APTOMO, "keygen", base], capture_output=True, text=True, timeout=30)
    ck.eq(f"keygen {name}: exit", p.returncode, 0)
    return base


def write_config(path, n_star, status_period, extra=""):
    with open(path, "w") as f:
        f.write(f"results:\n  status_period_s: {status_period}\n"
                f"tomo:\n  n_star: {n_star}\n  converge_updates: 3\n{extra}")


class CurveDaemon:
    """aptomod with CURVE on both sockets: configuration in a file (for SIGHUP), ports and keys as --set."""

    def __init__(self, tmp, config, server_key, clients, client_pair):
        self.res, self.ctl, det = free_ports(3)
        self.server_pub = read_pub(server_key + ".pub")
        self.pair = client_pair
        self.log_path = os.path.join(tmp, "aptomod.log")
        sets = [f"detector.endpoints=[tcp://127.0.0.1:{det}]", f"results.endpoint=tcp://127.0.0.1:{self.res}",
                f"control.endpoint=tcp://127.0.0.1:{self.ctl}", f"storage.dir={os.path.join(tmp, 'spool')}",
                "physics.reconstruct=false"]
        for sock in ("control", "results"):
            sets += [f"{sock}.curve_secret_key={server_key}.key", f"{sock}.curve_clients={clients}"]
        cmd = [APTOMOD, "--config", config]
        for s in sets:
            cmd += ["--set", s]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.ctx = zmq.Context()
        t0 = time.time()
        while self.control({"cmd": "status"}, timeout=0.5) is None:
            if self.proc.poll() is not None or time.time() - t0 > 30:
                sys.exit(f"aptomod did not answer an authorised client; log:\n{self.logtext()}")

    def logtext(self):
        return open(self.log_path).read()

    def secure(self, s, pair, server=None):
        if pair:
            s.curve_publickey, s.curve_secretkey = pair
            s.curve_serverkey = server or self.server_pub
        return s

    def control(self, req, pair="self", timeout=5.0, server=None):
        """The reply (dict), or None when none came within timeout."""
        s = self.secure(self.ctx.socket(zmq.REQ), self.pair if pair == "self" else pair, server)
        s.linger = 0
        s.connect(f"tcp://127.0.0.1:{self.ctl}")
        s.send(json.dumps(req).encode())
        rep = json.loads(s.recv()) if s.poll(int(timeout * 1000)) else None
        s.close()
        return rep

    def subscribe(self, pair="self", server=None):
        s = self.secure(self.ctx.socket(zmq.SUB), self.pair if pair == "self" else pair, server)
        s.linger = 0
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.connect(f"tcp://127.0.0.1:{self.res}")
        return s

    def hup_and_wait(self, marker):
        """SIGHUP, then wait for the reload's last log line (applied or refused)."""
        before = self.logtext().count(marker)
        self.proc.send_signal(signal.SIGHUP)
        t0 = time.time()
        while self.logtext().count(marker) == before and time.time() - t0 < 20:
            time.sleep(0.05)
        return self.logtext().count(marker) > before

    def stop(self):
        rep = self.control({"cmd": "shutdown"})
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = None
        self.ctx.term()
        self.log.close()
        return rep, rc


def count_messages(sub, seconds):
    n, t0 = 0, time.time()
    while time.time() - t0 < seconds:
        if sub.poll(50):
            sub.recv_multipart()
            n += 1
    return n


def docs_live_keys():
    """The keys listed under OPERATIONS.md's "Live-changeable keys" heading (backticked, first column)."""
    text = open(os.path.join(SRC, "docs", "OPERATIONS.md")).read()
    m = re.search(r"^#+ Live-changeable keys\n(.*?)(?=^#)", text, re.S | re.M)
    return re.findall(r"^\| `([a-z_.]+)`", m.group(1), re.M) if m else []


def keygen_checks(ck, tmp):
    base = keygen(ck, tmp, "k")
    ck.eq("keygen: NAME.key mode", stat.S_IMODE(os.stat(base + ".key").st_mode), 0o600)
    ck.eq("keygen: NAME.pub mode (umask 022)", stat.S_IMODE(os.stat(base + ".pub").st_mode), 0o644)
    pub, sec = read_pair(base + ".key")
    ck.eq("keygen: the secret gives the public key (libzmq via pyzmq)", zmq.curve_public(sec), pub)
    ck.eq("keygen: NAME.pub is NAME.key's public key", read_pub(base + ".pub"), pub)
    before = open(base + ".key").read(), open(base + ".pub").read()
    p = subprocess.run([APTOMO, "keygen", base], capture_output=True, text=True, timeout=30)
    ck.true(f"keygen: refuses to overwrite, exit 2 naming the file ({p.returncode}, {p.stderr!r})",
            p.returncode == 2 and "k.key exists" in p.stderr)
    ck.eq("keygen: files untouched after the refusal", (open(base + ".key").read(), open(base + ".pub").read()),
          before)
    os.remove(base + ".key")
    p = subprocess.run([APTOMO, "keygen", base], capture_output=True, text=True, timeout=30)
    ck.true("keygen: refuses when only NAME.pub exists, and writes no NAME.key",
            p.returncode == 2 and "k.pub exists" in p.stderr and not os.path.exists(base + ".key"))
    ck.true("keygen: two runs give different keys", read_pub(keygen(ck, tmp, "k2") + ".pub") != pub)


def check_checks(ck, tmp, config, srv, clients):
    def check(*sets):
        cmd = [APTOMOD, "--config", config, "--check", "--set", f"storage.dir={os.path.join(tmp, 'spool')}"]
        for s in sets:
            cmd += ["--set", s]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    on = [f"control.curve_secret_key={srv}.key", f"control.curve_clients={clients}"]
    ck.eq("--check: CURVE on with good files", check(*on).returncode, 0)
    os.chmod(srv + ".key", 0o640)
    p = check(*on)
    ck.true(f"--check: a group-readable secret key is refused, exit 2 naming key, file and mode ({p.stderr!r})",
            p.returncode == 2 and "control.curve_secret_key" in p.stderr and f"{srv}.key has mode 0640" in p.stderr
            and "chmod 600" in p.stderr)
    os.chmod(srv + ".key", 0o604)
    ck.eq("--check: a world-readable secret key is refused", check(*on).returncode, 2)
    os.chmod(srv + ".key", 0o600)
    p = check(f"results.curve_secret_key={srv}.key")
    ck.true(f"--check: a secret key without a client list names results.curve_clients ({p.stderr!r})",
            p.returncode == 2 and "results.curve_clients" in p.stderr)
    p = check(f"control.curve_clients={clients}")
    ck.true(f"--check: a client list without a secret key is refused ({p.stderr!r})",
            p.returncode == 2 and "control.curve_clients" in p.stderr and "no effect" in p.stderr)
    bad = os.path.join(tmp, "bad-clients")
    with open(bad, "w") as f:
        f.write("# ops\n" + open(srv + ".key").read())
    p = check(f"control.curve_secret_key={srv}.key", f"control.curve_clients={bad}")
    ck.true(f"--check: a secret key in a client list is refused naming file:line ({p.stderr!r})",
            p.returncode == 2 and f"{bad}:5: a secret key in a client list" in p.stderr)
    with open(bad, "w") as f:
        f.write("# ops\nnot-a-key\n")
    p = check(f"control.curve_secret_key={srv}.key", f"control.curve_clients={bad}")
    ck.true(f"--check: a malformed line is refused naming file:line ({p.stderr!r})",
            p.returncode == 2 and f"{bad}:2: not a CURVE key" in p.stderr)
    p = check(f"control.curve_secret_key={srv}.pub", f"control.curve_clients={clients}")
    ck.true(f"--check: a .pub given as the secret key is refused ({p.stderr!r})",
            p.returncode == 2 and "no 'secret-key:' line" in p.stderr)
    # the default control endpoint is loopback, in the effective configuration of a file that does not set it
    p = subprocess.run([APTOMOD, "--config", config, "--print-config", "--set",
                        f"storage.dir={os.path.join(tmp, 'spool')}"], capture_output=True, text=True, timeout=60)
    m = re.search(r"^control:\n(?:  .*\n)*?  endpoint: \"?([^\"\n]+)", p.stdout, re.M)
    ck.eq("default control.endpoint (--print-config)", m.group(1) if m else p.stdout[:200], "tcp://127.0.0.1:9997")


def refusal_checks(ck, d, pair_b, srv_b_pub):
    sub_a, sub_b, sub_plain = d.subscribe(), d.subscribe(pair_b), d.subscribe(None)
    sub_wrong = d.subscribe(server=srv_b_pub)  # right client key, another server's public key
    ck.eq("unknown key: no control reply", d.control({"cmd": "status"}, pair=pair_b, timeout=QUIET_S), None)
    ck.eq("plain TCP client: no control reply", d.control({"cmd": "status"}, pair=None, timeout=QUIET_S), None)
    ck.eq("wrong server key: no control reply", d.control({"cmd": "status"}, server=srv_b_pub, timeout=QUIET_S), None)
    got = [count_messages(s, QUIET_S) for s in (sub_a, sub_b, sub_plain, sub_wrong)]
    ck.true(f"results: the authorised subscriber gets messages, the three others none (got {got})",
            got[0] >= 2 and got[1:] == [0, 0, 0])
    for s in (sub_a, sub_b, sub_plain, sub_wrong):
        s.close()
    st = d.control({"cmd": "status"})
    ck.true("authorised client still served after the refusals", st is not None and st.get("ok"))
    st = st or {}
    ck.eq("status names the CURVE sockets", st.get("curve"), ["control", "results"])
    # unknown key: 2 (control, results); plain and wrong-server-key clients retry every ~100 ms: many more
    ck.true(f"auth_refused counts the refused handshakes ({st.get('auth_refused')})", st.get("auth_refused", 0) >= 6)
    log = d.logtext()
    b_pub = pair_b[0].decode()
    ck.eq("the unknown key is logged once per socket", log.count(f"refused client key {b_pub}"), 2)
    first = len(re.findall(r"(control|results) socket: a handshake was refused", log))
    ck.true(f"retrying clients do not flood the log ({first} lines for {st.get('auth_refused')} refusals)",
            first <= 2 and st.get("auth_refused", 0) > first + 2)


def watch_checks(ck, tmp, d, a, b, srv):
    common = [APTOMO, "watch", f"tcp://127.0.0.1:{d.res}", "--control", f"tcp://127.0.0.1:{d.ctl}", "--json"]
    p = subprocess.run(common + ["--latest", "--count", "2", "--timeout", "20", "--curve-key", a + ".key",
                                 "--server-key", srv + ".pub"], capture_output=True, text=True, timeout=60)
    lines = p.stdout.splitlines()
    ck.true(f"watch with the authorised key: latest state from control and 2 messages ({p.returncode}, "
            f"{p.stdout[:300]!r} {p.stderr!r})",
            p.returncode == 0 and lines and lines[0].startswith("latest {") and
            sum(l.startswith("status ") for l in lines) == 2)
    p = subprocess.run(common + ["--count", "1", "--timeout", "1.5", "--curve-key", b + ".key", "--server-key",
                                 srv + ".pub"], capture_output=True, text=True, timeout=60)
    ck.true(f"watch with an unknown key: nothing, timeout exit 1 ({p.returncode}, {p.stdout!r})",
            p.returncode == 1 and p.stdout == "")
    p = subprocess.run(common + ["--count", "1", "--curve-key", a + ".key"], capture_output=True, text=True)
    ck.true(f"watch: --curve-key without --server-key is a usage error ({p.stderr!r})",
            p.returncode == 2 and "--server-key" in p.stderr)
    os.chmod(a + ".key", 0o644)
    p = subprocess.run(common + ["--count", "1", "--curve-key", a + ".key", "--server-key", srv + ".pub"],
                       capture_output=True, text=True, timeout=30)
    os.chmod(a + ".key", 0o600)
    ck.true(f"watch: a readable client secret is refused ({p.stderr!r})", p.returncode == 2 and "mode 0644" in p.stderr)


def set_checks(ck, d):
    ck.eq("set tomo.n_star (live)", d.control({"cmd": "set", "key": "tomo.n_star", "value": 40}).get("ok"), True)
    ck.eq("status shows the new n_star", d.control({"cmd": "status"}).get("n_star"), 40)
    r = d.control({"cmd": "set", "key": "results.sndhwm", "value": 5})
    listed = re.findall(r"[a-z_]+\.[a-z_]+", r.get("error", "").split("live:")[-1])
    ck.true(f"set of a non-live key is refused ({r})", r.get("ok") is False and "not a live-changeable" in r["error"])
    docs = docs_live_keys()
    ck.true(f"the refusal lists exactly OPERATIONS.md's live keys ({listed} vs {docs})",
            docs and sorted(listed) == sorted(docs))
    r = d.control({"cmd": "set", "key": "tomo.n_star", "value": 0})
    ck.true(f"set out of range is refused ({r})", r.get("ok") is False)
    ck.true("set logs old -> new", "control: set tomo.n_star: 29 -> 40" in d.logtext())


def sighup_checks(ck, d, config, clients, b, pair_b):
    # a key added to the client list is authorised by SIGHUP, without a restart
    with open(clients, "a") as f:
        f.write(open(b + ".pub").read())
    write_config(config, n_star=33, status_period=30)  # live change + non-live change
    ck.true("SIGHUP: reload finishes", d.hup_and_wait("changes need a restart"))
    st = d.control({"cmd": "status"}, pair=pair_b, timeout=5)
    ck.true(f"SIGHUP: the newly listed key gets a reply ({st})", st is not None and st.get("ok"))
    st = d.control({"cmd": "status"})
    ck.eq("SIGHUP: live tomo.n_star applied (status)", st.get("n_star"), 33)
    log = d.logtext()
    ck.true("SIGHUP: live change logged old -> new", "reload: tomo.n_star: 40 -> 33" in log)
    ck.true("SIGHUP: non-live change named as needing a restart",
            re.search(r"reload: results\.status_period_s changed \(.*\): needs a restart, not applied", log))
    sub = d.subscribe()
    n = count_messages(sub, QUIET_S)
    sub.close()
    ck.true(f"SIGHUP: the non-live status period stays 0.2 s, not 30 s ({n} status in {QUIET_S} s)", n >= 3)
    # a broken file: the error names FILE:LINE, the daemon keeps its settings and serves on
    with open(config, "w") as f:
        f.write("tomo:\n  n_star: 0\n")
    ck.true("SIGHUP on a broken file: refused", d.hup_and_wait("reload refused"))
    log = d.logtext()
    ck.true("SIGHUP on a broken file: the error names FILE:2", f"{config}:2:" in log.split("reload refused")[-1])
    st = d.control({"cmd": "status"})
    ck.true(f"SIGHUP on a broken file: daemon alive, n_star still 33 ({st})", st and st.get("n_star") == 33)


def main():
    if not zmq.has("curve"):
        print("SKIP: this libzmq has no CURVE")
        return 0
    ck = Checker("access")
    with tempfile.TemporaryDirectory() as tmp:
        keygen_checks(ck, tmp)
        srv, a, b, srv_b = (keygen(ck, tmp, n) for n in ("server", "alice", "bob", "other-server"))
        clients = os.path.join(tmp, "clients")
        with open(clients, "w") as f:
            f.write("# dashboards and operators\n" + open(a + ".pub").read())
        config = os.path.join(tmp, "aptomod.yaml")
        write_config(config, n_star=29, status_period=0.2)
        check_checks(ck, tmp, config, srv, clients)
        d = CurveDaemon(tmp, config, srv, clients, read_pair(a + ".key"))
        try:
            refusal_checks(ck, d, read_pair(b + ".key"), read_pub(srv_b + ".pub"))
            watch_checks(ck, tmp, d, a, b, srv)
            set_checks(ck, d)
            sighup_checks(ck, d, config, clients, b, read_pair(b + ".key"))
        finally:
            rep, rc = d.stop()
        ck.eq("shutdown by the authorised client: exit 0", rc, 0)
        if ck.failed:
            print(d.logtext()[-4000:])
    return 1 if ck.done() else 0


if __name__ == "__main__":
    sys.exit(main())
