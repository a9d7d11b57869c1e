"""aptomod's command line and start-up checks, as an operator meets them: --version/--help/--opt=value, one-line
usage errors; `--check` makes every check the start makes, each refusal exits 2 naming FILE:LINE:COLUMN of the key
(or `--set KEY`), `--print-config` prints nothing it would refuse, and the daemon itself refuses the same configs
with exit 2 (systemd's RestartPreventExitStatus=2 then stops, instead of restarting forever); the control socket
drops an oversized request without buffering it; `ingest.queue_frames` makes the receiver wait, never drop."""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_util import APTOMOD, SRC, Checker, Daemon  # noqa: E402

DEMO = os.path.join(SRC, "configs", "demo.yaml")


def aptomod(*args, timeout=60):
    try:
        return subprocess.run([APTOMOD, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:  # it started instead of refusing: killed, reported as a failure
        return subprocess.CompletedProcess(e.cmd, None, e.stdout or "", f"still running after {timeout} s")


def key_position(text, dotted):
    """line:column (1-based) of the last key of `dotted` inside its sections, found in the YAML text by indentation,
    independently of the loader."""
    parts = dotted.split(".")
    depth, want_indent, lines = 0, 0, text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if indent == want_indent and stripped.startswith(parts[depth] + ":"):
            if depth == len(parts) - 1:
                return i + 1, indent + 1
            depth += 1
            want_indent = indent + 2
    raise KeyError(dotted)


def with_value(base, dotted, value):
    """The YAML text `base` with `dotted` set to `value` (flow text): replaced in place when the key is there, else
    appended in a section of its own."""
    try:
        line, col = key_position(base, dotted)
    except KeyError:
        sec, key = dotted.rsplit(".", 1)
        try:
            line, col = key_position(base, sec)
        except KeyError:
            return base + f"\n{sec}:\n  {key}: {value}\n"
        lines = base.splitlines()
        return "\n".join(lines[:line] + [" " * (col + 1) + f"{key}: {value}"] + lines[line:]) + "\n"
    lines = base.splitlines()
    lines[line - 1] = " " * (col - 1) + dotted.split(".")[-1] + ": " + value
    end = line  # a mapping value (physics.probe's model keys) goes with it: the lines indented below the key
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip(" ")) >= col):
        end += 1
    return "\n".join(lines[:line] + lines[end:]) + "\n"


def main():
    ck = Checker("aptomod-cli")
    with tempfile.TemporaryDirectory() as tmp:
        # --- conventions ---
        p = aptomod("--version")
        ck.true(f"--version prints the version ({p.stdout.strip()!r})",
                p.returncode == 0 and re.fullmatch(r"aptomod \d+\.\d+\.\d+", p.stdout.strip()) is not None)
        p = aptomod("--help")
        ck.true("--help: usage on stdout, exit 0", p.returncode == 0 and "usage: aptomod" in p.stdout and not p.stderr)
        # the demo's relative paths (storage, weights) are for the repository root: anchor them
        base = open(DEMO).read().replace('dir: "out/demo"', f'dir: "{tmp}/store"').replace(
            '"models/demo.safetensors"', '"' + os.path.join(SRC, "models", "demo.safetensors") + '"')
        good = os.path.join(tmp, "good.yaml")
        open(good, "w").write(base)
        for form in (["--config", good], [f"--config={good}"], ["-c", good]):
            p = aptomod(*form, "--check")
            ck.true(f"{' '.join(form)} --check accepted ({p.stderr.strip()})", p.returncode == 0)
        p = aptomod("--check", "--config", good, "--set", "tomo.n_star=9", "--print-config")
        ck.true("options in any order, --print-config of a good config",
                p.returncode == 0 and re.search(r"^  n_star: 9$", p.stdout, re.M) is not None)
        for args, what in ((["--bogus"], "unknown option '--bogus'"), (["--config"], "'--config' needs a value"),
                           (["--config", good, "extra"], "unexpected argument 'extra'")):
            p = aptomod(*args)
            err = p.stderr.strip().splitlines()
            ck.true(f"{args}: exit 2, one line naming the fault + a hint ({p.stderr.strip()!r})",
                    p.returncode == 2 and len(err) == 2 and what in err[0] and "--help" in err[1])
        os.mkdir(os.path.join(tmp, "adir"))
        p = aptomod("--config", os.path.join(tmp, "adir"), "--check")
        ck.true(f"a directory as config: says so ({p.stderr.strip()!r})",
                p.returncode == 2 and "is a directory" in p.stderr)

        # --- every refusal of the start is a --check refusal, with FILE:LINE:COLUMN ---
        garbage = os.path.join(tmp, "garbage.safetensors")
        open(garbage, "wb").write(os.urandom(4096))
        small_ref = os.path.join(tmp, "ref.h5")
        with h5py.File(small_ref, "w") as f:
            f["exchange/data"] = np.zeros((4, 4, 4), np.float32)
        bad = [  # key, YAML value, what the message must say
            ("tomo.grid", "[-32, 48, 48]", "Z = -32"),
            ("tomo.grid", "[0, 0, 0]", "Z = 0"),
            ("tomo.grid", "[32.5, 48, 48]", "whole number"),
            ("tomo.voxel_size_m", "[-28e-9, 28e-9, 28e-9]", "must be > 0"),
            ("storage.dir", '"/proc/x"', "cannot be created"),
            ("detector.endpoints", "[bogus]", "not an endpoint"),
            ("detector.endpoints", '["tcp://127.0.0.1:99999"]', "port 99999"),
            ("results.endpoint", '"tcp://127.0.0.1:19997"', None),  # control.endpoint's address: refused there
            ("model.weights", f'"{garbage}"', garbage),
            ("tomo.reference", f'"{tmp}/nope.h5"', "nope.h5"),
            ("tomo.reference", f'"{small_ref}"', "4x4x4"),
            ("physics.probe", f'"{tmp}/probe.h5"', "probe.h5"),
        ]
        for key, value, says in bad:
            text = with_value(base, key, value)
            path = os.path.join(tmp, "bad.yaml")
            open(path, "w").write(text)
            blame = "control.endpoint" if key == "results.endpoint" else key
            line, col = key_position(text, blame)
            where = f"{path}:{line}:{col}: key '{blame}'"
            name = f"{key}={value}"
            p = aptomod("--config", path, "--check")
            ck.true(f"--check refuses {name} with exit 2 at {line}:{col} ({p.stderr.strip()!r})",
                    p.returncode == 2 and where in p.stderr and (says is None or says in p.stderr))
            ck.true(f"{name}: no doubled key prefix", f"{blame}: {blame}:" not in p.stderr)
            q = aptomod("--config", path, "--print-config")
            ck.true(f"--print-config echoes nothing of a refused config ({name})",
                    q.returncode == 2 and q.stdout == "")
            r = aptomod("--config", path, timeout=15)  # the start refuses it the same way, before starting
            ck.true(f"start refuses {name} with exit 2 and the same message",
                    r.returncode == 2 and p.stderr.strip().splitlines()[-1] in r.stderr)  # after log lines
            s = aptomod("--config", good, "--set", f"{key}={value}", "--check")
            ck.true(f"--set {name} is refused naming --set ({s.stderr.strip()!r})",
                    s.returncode == 2 and (f"--set {blame}:" in s.stderr or key == "results.endpoint"))

        # --- the reference config's comments say what the code does ---
        code = "".join(open(os.path.join(SRC, "daemon", f)).read() for f in os.listdir(os.path.join(SRC, "daemon"))
                       if f.endswith(".c"))
        published = set(re.findall(r'aptd_publish_json\(d, "(\w+)"', code))
        ref = open(os.path.join(SRC, "configs", "aptomod.yaml")).read()
        m = re.search(r"# Results PUB socket.*?Topics: ([^.]*)\.", ref, re.S)
        listed = set(re.findall(r"\w+", m.group(1).replace("#", ""))) if m else set()
        ck.true(f"results.endpoint's comment lists every topic published ({sorted(published)} vs {sorted(listed)})",
                len(published) >= 7 and published == listed)
        m = re.search(r"\n((?:  #[^\n]*\n)+)  queue_frames:", ref)
        ck.true("ingest.queue_frames's comment says the receiver waits (no frame dropped)",
                m is not None and "waits" in m.group(1) and "are dropped" not in m.group(1))

        # --- the control socket: an oversized request costs neither memory nor the socket ---
        d = Daemon(tmp, [f"storage.dir={tmp}/ctl"])

        def hwm_kb():
            for line in open(f"/proc/{d.proc.pid}/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
            return 0

        before = hwm_kb()
        ctx = zmq.Context()
        big = ctx.socket(zmq.REQ)
        big.setsockopt(zmq.LINGER, 0)
        big.connect(f"tcp://127.0.0.1:{d.ctl}")
        big.send(b"{" + b" " * (200 << 20) + b"}")
        answered = big.poll(2000)
        big.close()
        st = d.control({"cmd": "status"}, timeout=10)
        grown = (hwm_kb() - before) / 1024
        ck.true("a 200 MiB request gets no reply (its peer is dropped)", not answered)
        ck.true(f"... and the daemon's peak memory grew {grown:.0f} MiB (< 64)", grown < 64)
        ck.true("the control socket still answers", st.get("ok") is True)
        ck.eq("status carries n_star", st.get("n_star"), 29)
        ck.eq("daemon exit", d.stop(), 0)
        ctx.term()
    return ck.done()


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
