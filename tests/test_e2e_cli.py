"""The aptomo command line, every command and sub-command (docs/CLI.md): --help and `aptomo help CMD` print the same
text on stdout with exit 0; an unknown option, a missing value and a bad value each give exit 2 and exactly one
line naming the fault plus a hint; --opt=value works as --opt value; options after positional arguments take effect;
`--` ends options; replay refuses --wait 0 and an endpoint port above 65535; outputs are checked before the work
(approximant --png /proc/x.png fails before the first angle); approximant, tomo sart, replay and simulate draw a
progress bar with an ETA on a terminal (a pty) and nothing on stderr otherwise. Tiny simulated scan, a few seconds."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_util import APTOMO, SRC, Checker, free_ports, run_pty  # noqa: E402

DEMO = os.path.join(SRC, "configs", "demo.yaml")
TINY = ["--config", DEMO, "--set", "sim.angles=3", "--set", "sim.grid=[16,16,16]"]
PHYS = ["--config", DEMO, "--set", "physics.iterations=1"]

# every command and sub-command; the message prefix (tomo's methods share one parser: "tomo")
COMMANDS = ["version", "replay", "stream", "stream dump", "stream sample", "synth-scan", "bench", "bench ingest",
            "bench ptycho", "bench ptycho-recon", "bench tomo", "bench nn", "bench train", "codec", "approximant", "preview", "kernel",
            "kernel ptycho-grad", "kernel nn-forward", "kernel nn-init", "kernel nn-step", "kernel nn-axial-grad",
            "simulate", "dataset", "metrics", "tomo",
            "tomo fbp", "tomo sirt", "tomo sart", "tomo tv", "infer", "train", "watch", "keygen"]
HELP_ONLY = []
PREFIX = {c: "tomo" for c in COMMANDS if c.startswith("tomo")}
# an option that takes a value, per command that has one
VALUED = {"replay": "--rate", "stream dump": "--channel", "synth-scan": "-o", "bench ingest": "--frames",
          "bench ptycho": "--size", "bench ptycho-recon": "--frames", "bench tomo": "--reps", "bench nn": "--reps", "codec": "--codec",
          "approximant": "--png", "preview": "--title", "kernel ptycho-grad": "--threads",
          "kernel nn-forward": "--backend", "kernel nn-init": "--arch",
          "kernel nn-step": "--lr", "kernel nn-axial-grad": "--threads", "bench train": "--batch", "simulate": "--config", "dataset": "--count",
          "metrics": "--plot", "tomo fbp": "--iters", "infer": "--weights", "train": "--epochs", "watch": "--timeout"}


def cli(*args, cwd=None, timeout=120):
    return subprocess.run([APTOMO, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def one_line_fault(ck, what, p, prefix, needle):
    """Exit 2, stdout empty, stderr = the reason naming needle + the hint, nothing else."""
    lines = p.stderr.splitlines()
    ck.eq(f"{what}: exit", p.returncode, 2)
    ck.eq(f"{what}: stdout", p.stdout, "")
    ok = (len(lines) == 2 and lines[0].startswith(f"aptomo {prefix}: ") and needle in lines[0] and
          lines[1] == f"Try 'aptomo help {prefix}' for usage.")
    ck.true(f"{what}: one line naming {needle!r} + hint, got {p.stderr!r}", ok)


def help_checks(ck):
    top = cli("help")
    ck.eq("help: exit", top.returncode, 0)
    ck.true("help: lists the commands", all(c.split()[0] in top.stdout for c in COMMANDS + HELP_ONLY))
    ck.eq("--help = help", cli("--help").stdout, top.stdout)
    p = cli("help", "nope")
    ck.true(f"help nope: exit 2 naming it ({p.stderr!r})", p.returncode == 2 and "'nope'" in p.stderr)
    p = cli()
    ck.true("no command: usage on stderr, exit 2", p.returncode == 2 and p.stdout == "" and "usage" in p.stderr)
    v = cli("--version")
    ck.true("--version: JSON", v.returncode == 0 and json.loads(v.stdout)["version"] == json.loads(
        cli("version").stdout)["version"])
    for c in COMMANDS + HELP_ONLY:
        for flag in ("--help", "-h"):
            p = cli(*c.split(), flag)
            ck.true(f"{c} {flag}: exit 0, help on stdout, stderr empty (rc {p.returncode}, {p.stderr!r})",
                    p.returncode == 0 and p.stdout.startswith("usage") and p.stderr == "")
        h = cli("help", *c.split())
        ck.true(f"help {c}: exit 0, the text of {c} --help", h.returncode == 0 and h.stdout == p.stdout)


def fault_checks(ck):
    for c in COMMANDS:
        pre = PREFIX.get(c, c)
        one_line_fault(ck, f"{c} --bogus", cli(*c.split(), "--bogus"), pre, "'--bogus'")
        one_line_fault(ck, f"{c} --bogus=1", cli(*c.split(), "--bogus=1"), pre, "'--bogus'")
    for c, opt in VALUED.items():
        pre = PREFIX.get(c, c)
        one_line_fault(ck, f"{c} {opt} (no value)", cli(*c.split(), opt), pre, f"option '{opt}' needs a value")
    one_line_fault(ck, "flag with a value", cli("tomo", "fbp", "x.h5", "--no-cylinder=1"), "tomo",
                   "'--no-cylinder' takes no value")
    one_line_fault(ck, "tomo: missing IN", cli("tomo", "sart", "-o", "x.h5"), "tomo", "missing IN.h5")
    one_line_fault(ck, "replay: missing SCAN", cli("replay", "--rate", "5"), "replay", "missing SCAN.h5")
    one_line_fault(ck, "approximant: -o required", cli("approximant", "s.h5"), "approximant", "-o OUT.h5")
    one_line_fault(ck, "replay --wait 0", cli("replay", "s.h5", "--wait", "0"), "replay", "--wait: '0' must be")
    p = cli("replay", "s.h5", "--wait=0")
    ck.true(f"--wait 0: the valid range is said ({p.stderr!r})", "(0, 86400]" in p.stderr)
    one_line_fault(ck, "replay --rate abc", cli("replay", "s.h5", "--rate=abc"), "replay", "--rate: 'abc'")
    one_line_fault(ck, "replay --protocol v3", cli("replay", "s.h5", "--protocol", "v3"), "replay", "v1, v2")
    for opt in ("--endpoint", "--metadata-endpoint"):
        one_line_fault(ck, f"replay {opt} port 99999", cli("replay", "s.h5", opt, "tcp://*:99999"), "replay",
                       f"{opt}: 'tcp://*:99999': port 99999 is outside 1-65535")
    one_line_fault(ck, "replay: no transport", cli("replay", "s.h5", "--endpoint=localhost:5"), "replay",
                   "--endpoint: 'localhost:5'")
    one_line_fault(ck, "bench: option before the benchmark", cli("bench", "--frames", "5", "ingest"), "bench",
                   "'--frames'")
    one_line_fault(ck, "bench nope", cli("bench", "nope"), "bench", "'nope'")
    one_line_fault(ck, "kernel: nothing", cli("kernel"), "kernel", "missing")
    one_line_fault(ck, "watch --timeout -1", cli("watch", "tcp://127.0.0.1:1", "--timeout", "-1"), "watch",
                   "--timeout: '-1' must be")
    one_line_fault(ck, "watch: port 99999", cli("watch", "tcp://127.0.0.1:99999"), "watch", "port 99999")
    one_line_fault(ck, "watch: no endpoint", cli("watch", "--json"), "watch", "missing tcp://HOST:PORT")
    one_line_fault(ck, "keygen: no NAME", cli("keygen"), "keygen", "missing NAME")
    one_line_fault(ck, "watch: --server-key alone", cli("watch", "tcp://127.0.0.1:1", "--server-key", "s.pub"),
                   "watch", "--curve-key and --server-key go together")
    p = cli("watch", "--timeout=0.3", "tcp://127.0.0.1:1")
    ck.true(f"watch --timeout=S after the endpoint: exit 1 when nothing came ({p.stderr!r})",
            p.returncode == 1 and "aptomo watch: timeout" in p.stderr)


class Receiver:
    """A PULL socket draining what replay sends."""

    def __init__(self):
        (self.port,) = free_ports(1)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PULL)
        self.sock.connect(f"tcp://127.0.0.1:{self.port}")
        self.n, self.stop = 0, False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            if self.sock.poll(100):
                self.sock.recv_multipart()
                self.n += 1

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close(0)
        self.ctx.term()


def work_checks(ck, tmp):
    j = lambda name: os.path.join(tmp, name)  # noqa: E731
    p = cli("simulate", *TINY, "-o", j("s.h5"))
    ck.eq(f"tiny simulate ({p.stderr.strip()})", p.returncode, 0)
    p = cli("approximant", j("s.h5"), *PHYS, "--projections", j("p.h5"), "-o", j("a.h5"))
    ck.eq(f"approximant ({p.stderr.strip()})", p.returncode, 0)
    ck.true("approximant: no bar without a terminal", "\r" not in p.stderr and "eta" not in p.stderr)

    # outputs are checked before the work: nothing computed, nothing written
    t0 = time.time()
    p = cli("approximant", j("s.h5"), *PHYS, "-o", j("a2.h5"), "--png", "/proc/x.png")
    ck.eq("approximant --png /proc/x.png: exit 1 (cannot write)", p.returncode, 1)
    ck.true(f"... names the option and the path ({p.stderr.strip()})", "--png /proc/x.png" in p.stderr)
    ck.true("... before the first angle", '"angle"' not in p.stdout and not os.path.exists(j("a2.h5")))
    ck.true("... at once", time.time() - t0 < 5)
    for args, path in [(["simulate", *TINY, "-o", "/proc/x.h5"], "/proc/x.h5"),
                       (["tomo", "sart", j("p.h5"), "-o", "/proc/x.h5"], "/proc/x.h5"),
                       (["metrics", j("a.h5"), j("a.h5"), "--plot", "/proc/x.png"], "/proc/x.png"),
                       (["preview", j("a.h5"), "-o", "/proc/x.png"], "/proc/x.png"),
                       (["synth-scan", "-o", "/proc/x.h5"], "/proc/x.h5"),
                       (["tomo", "fbp", j("p.h5"), "-o", tmp], tmp)]:
        p = cli(*args)
        ck.true(f"{args[0]}: unwritable {path} refused up front ({p.returncode}, {p.stderr.strip()})",
                p.returncode == 1 and path in p.stderr and p.stdout == "")

    # --opt=value is --opt value; options after the positionals take effect
    for form in (["--dataset", "/nope"], ["--dataset=/nope"]):
        p = cli("preview", j("a.h5"), *form, "-o", j("x.png"))
        ck.true(f"preview FILE {' '.join(form)}: fails naming the file and /nope ({p.stderr.strip()})",
                p.returncode == 2 and "/nope" in p.stderr and j("a.h5") in p.stderr and not os.path.exists(j("x.png")))
    p = cli("preview", j("a.h5"), "--dataset=/exchange/approximant", "--title=t", f"-o{j('x.png')}")
    ck.true(f"preview with --opt=value and -oFILE: written ({p.stderr.strip()})",
            p.returncode == 0 and os.path.exists(j("x.png")))
    outs = {}
    for name, form in (("p1.png", ["--plot", j("p1.png")]), ("p2.png", [f"--plot={j('p2.png')}"])):
        p = cli("metrics", j("a.h5"), j("a.h5"), *form, "--ref-dataset=/exchange/data")
        ck.true(f"metrics A REF {form[0]}...: {name} written ({p.stderr.strip()})",
                p.returncode == 0 and os.path.getsize(j(name)) > 1000)
        outs[name] = json.loads(p.stdout)["results"] if p.returncode == 0 else None
    ck.eq("--plot=FILE and --plot FILE: the same numbers", outs["p1.png"], outs["p2.png"])
    p = cli("tomo", "sart", j("p.h5"), "--iters=2", "-o", j("t.h5"), "--nz", "8")
    ck.true(f"tomo: options after the input ({p.stderr.strip()})", p.returncode == 0 and os.path.exists(j("t.h5")))

    # `--` ends the options: a file named like an option
    shutil.copy(j("a.h5"), j("-a.h5"))
    p = cli("preview", "-o", "dash.png", "--", "-a.h5", cwd=tmp)
    ck.true(f"preview -o F -- -a.h5 ({p.stderr.strip()})", p.returncode == 0 and os.path.exists(j("dash.png")))
    one_line_fault(ck, "preview -a.h5 without --", cli("preview", "-o", "d2.png", "-a.h5", cwd=tmp), "preview",
                   "unknown option '-a'")

    # progress: a bar with an ETA on a terminal, nothing otherwise
    rx = Receiver()
    try:
        ep = ["--endpoint", f"tcp://127.0.0.1:{rx.port}", "--wait", "10"]
        frames = 0
        runs = {"approximant": [j("s.h5"), *PHYS, "-o", j("a3.h5")], "tomo": ["sart", j("p.h5"), "-o", j("t3.h5")],
                "replay": [j("s.h5"), *ep], "simulate": [*TINY, "-o", j("s3.h5")]}
        for cmd, args in runs.items():
            rc, term = run_pty([cmd, *args], tmp)
            ck.true(f"{cmd} on a terminal: exit 0 and a bar with an ETA ({term[-200:]!r})",
                    rc == 0 and "eta" in term and "\r" in term)
            if cmd == "replay":
                rep = json.load(open(j("pty-stdout.txt")))
                frames = sum(s["frames"] for s in rep["series"])
                ck.true(f"replay: the bar counts frames ({frames}), not angles", f"{frames}/{frames}" in term)
            if cmd == "approximant":
                ck.true("approximant: the bar counts angles", "3/3" in term)
            p = cli(cmd, *args)
            ck.true(f"{cmd} without a terminal: exit 0, no bar ({p.stderr[-200:]!r})",
                    p.returncode == 0 and "\r" not in p.stderr and "eta" not in p.stderr)
    finally:
        rx.close()


def main():
    ck = Checker("cli")
    t0 = time.time()
    help_checks(ck)
    fault_checks(ck)
    with tempfile.TemporaryDirectory() as tmp:
        work_checks(ck, tmp)
    print(f"cli: {time.time() - t0:.1f} s")
    return 1 if ck.done() else 0


if __name__ == "__main__":
    sys.exit(main())
