#!/usr/bin/python3
"""check-layers.py - dependencies run one way (docs/ARCHITECTURE.md "Layers").

    scripts/check-layers.py [SOURCE_DIR]      check the tree (default: this script's checkout)
    scripts/check-layers.py --self-test       plant one violation of each rule in a copy and expect each reported

Every #include "..." of the library (src/, protocol/), the public headers (include/), the daemon and the CLI is
resolved to the module that owns the header; a file may include its own module's headers and those of modules in a
lower layer, never a higher layer's or a sibling's (same layer, other module). The daemon and the CLI include only
public headers (include/aptomo/*.h, the daemon's include/aptomod/aptd.h) besides their own; a public header includes
only public headers. Each public header belongs to exactly one module: every function it declares is defined in that
module's folder and no other. Violations are printed as FILE:LINE: message; exit 1 when there is any, 2 on a usage
error, 0 otherwise. Tests (tests/) may include anything and are not checked.
"""
import os
import re
import shutil
import sys
import tempfile

# Lowest first. Siblings (one layer) must not include each other.
LAYERS = [
    ["core"],                       # errors, logging, threads, clocks, byte buffers, GPU probe, backend rule
    ["protocol", "fft"],            # wire formats and codecs; FFT plans (FFTW / cuFFT)
    ["io"],                         # configuration, HDF5 files (scan, spool, volumes), plots, keys
    ["ptycho", "tomo", "metrics", "nn"],  # the physics and the network, each on its own
    ["sim", "angle"],               # simulation (ptycho + tomo geometry); the per-angle pipeline
    ["daemon"],                     # aptomod's core (include/aptomod/aptd.h)
    ["tools"],                      # the aptomo CLI
]
RANK = {m: i for i, layer in enumerate(LAYERS) for m in layer}
LIBRARY = {m for m in RANK if m not in ("daemon", "tools")}

# Public header -> owning module (include/aptomo/X.h is implemented in src/<module>/ or protocol/).
PUBLIC = {
    "angle": "angle", "approximant": "tomo", "axial_train": "nn", "backend": "core", "bytes": "core",
    "clock": "core", "codec": "protocol", "config": "io", "curve": "io", "endpoint": "core", "error": "core",
    "export": "core", "fft": "fft", "frame": "protocol", "fsutil": "core", "geometry": "tomo", "gpu": "core",
    "h5filter": "io", "h5io": "io", "log": "core", "metrics": "metrics", "nn": "nn", "nn_train": "nn",
    "parallel": "core", "preview": "io", "ptycho": "ptycho", "safetensors": "io", "scanfile": "io",
    "scanmeta": "protocol", "sealed": "io", "sim": "sim", "spool": "io", "stream": "protocol", "tile": "nn",
    "tomo": "tomo", "volume": "io",
}
DAEMON_PUBLIC = "include/aptomod/aptd.h"

INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
SOURCE_EXT = (".c", ".h", ".cu", ".def")


def module_dir(mod):
    return "protocol" if mod == "protocol" else "daemon" if mod == "daemon" else \
        "tools" if mod == "tools" else "src/" + mod


def files_of(root):
    """(relative path, module) of every file checked."""
    out = []
    for d in ["src", "protocol", "daemon", "tools", "include"]:
        for dp, _, fns in os.walk(os.path.join(root, d)):
            for fn in sorted(fns):
                if not fn.endswith(SOURCE_EXT):
                    continue
                rel = os.path.relpath(os.path.join(dp, fn), root)
                parts = rel.split(os.sep)
                if parts[0] == "src":
                    mod = parts[1] if len(parts) > 2 else None
                elif parts[0] == "include":
                    mod = PUBLIC.get(fn[:-2]) if parts[1] == "aptomo" else \
                        "daemon" if rel == DAEMON_PUBLIC else None
                else:
                    mod = parts[0]
                out.append((rel, mod))
    return out


def resolve(root, rel, inc):
    """(module, public) of the header `inc` included from file rel, or (None, reason)."""
    if inc.startswith("aptomo/"):
        name = inc[len("aptomo/"):-2] if inc.endswith(".h") else None
        if name in PUBLIC and os.path.isfile(os.path.join(root, "include", inc)):
            return PUBLIC[name], True
        return None, "not a public header of include/aptomo (or missing from check-layers' table)"
    if inc == "aptomod/aptd.h":
        return "daemon", True
    own = os.path.join(os.path.dirname(rel), inc)
    if os.path.isfile(os.path.join(root, own)):   # beside the includer: its own module's
        return None, "own"
    first = inc.split("/")[0]
    if "/" in inc and os.path.isfile(os.path.join(root, "src", inc)) and first in RANK:
        return first, False
    return None, "does not resolve to a header of the tree"


def check_includes(root, files, report):
    for rel, mod in files:
        if mod is None:
            if rel.startswith("include/"):
                report(rel, 1, "public header not in check-layers' table (PUBLIC): give it its module")
            elif rel.startswith("src/"):
                report(rel, 1, "library file outside a module folder (src/<module>/)")
            continue
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n")
        public_file = rel.startswith("include/")
        for n, line in enumerate(lines, 1):
            m = INCLUDE_RE.match(line)
            if not m:
                continue
            inc = m.group(1)
            target, public = resolve(root, rel, inc)
            if target is None:
                if public == "own" and not public_file:
                    continue
                report(rel, n, f'"{inc}" {public}' if public != "own" else
                       f'"{inc}": a public header includes only public headers')
                continue
            if target == mod:
                if public_file and not public:
                    report(rel, n, f'"{inc}": a public header includes only public headers')
                continue
            if not public and (mod not in LIBRARY or public_file):
                report(rel, n, f'"{inc}" is private to {target}; {mod} includes only public headers '
                       "(include/aptomo/*.h, include/aptomod/aptd.h) besides its own")
                continue
            if RANK[target] > RANK[mod]:
                report(rel, n, f'"{inc}" belongs to {target} (layer {RANK[target]}), above {mod} '
                       f"(layer {RANK[mod]})")
            elif RANK[target] == RANK[mod]:
                report(rel, n, f'"{inc}" belongs to {target}, a sibling of {mod} (layer {RANK[mod]}): siblings '
                       "do not include each other")


PROTO_RE = re.compile(r"^(?!static\b|typedef\b|#|\s)[A-Za-z_][\w \t\*]*?\b(apt_\w+)\s*\(", re.M)
DEF_RE = re.compile(r'^(?!static\b|#|\s)(?:extern "C"\s+)?[A-Za-z_][\w \t\*]*?\b(apt_\w+)\s*\([^;{]*?\)\s*\{',
                    re.M | re.S)


def strip_comments(text):
    return re.sub(r"/\*.*?\*/|//[^\n]*", lambda m: re.sub(r"[^\n]", " ", m.group(0)), text, flags=re.S)


def check_owners(root, report):
    """Every function a public header declares is defined, in its module's folder only."""
    where = {}
    for d in ["src", "protocol"]:
        for dp, _, fns in os.walk(os.path.join(root, d)):
            for fn in fns:
                if fn.endswith((".c", ".cu")):
                    rel = os.path.relpath(os.path.join(dp, fn), root)
                    with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
                        text = strip_comments(f.read())
                    mod = "protocol" if rel.startswith("protocol") else rel.split(os.sep)[1]
                    for m in DEF_RE.finditer(text):
                        where.setdefault(m.group(1), set()).add(mod)
    inc = os.path.join(root, "include", "aptomo")
    for fn in sorted(os.listdir(inc)):
        name = fn[:-2]
        if not fn.endswith(".h") or name not in PUBLIC:
            continue
        rel = os.path.join("include", "aptomo", fn)
        with open(os.path.join(root, rel), encoding="utf-8") as f:
            text = strip_comments(f.read())
        for m in PROTO_RE.finditer(text):
            fname, mods = m.group(1), where.get(m.group(1), set())
            line = text.count("\n", 0, m.start()) + 1
            others = sorted(mods - {PUBLIC[name]})
            if not mods:
                report(rel, line, f"{fname} is declared but defined nowhere in src/ or protocol/")
            elif others:
                report(rel, line, f"{fname} is defined in {', '.join(module_dir(o) for o in others)}, not in "
                       f"{module_dir(PUBLIC[name])} (the header's module): one header, one module")


def run(root):
    problems = []

    def report(rel, line, msg):
        problems.append(f"{rel}:{line}: {msg}")

    files = files_of(root)
    check_includes(root, files, report)
    check_owners(root, report)
    return problems


def self_test(root):
    """Plant one violation of each rule in a copy of the tree; each must be reported at its FILE:LINE."""
    plants = [
        ("src/core/log.c", '#include "aptomo/tomo.h"', "above core"),
        ("src/tomo/stack.c", '#include "aptomo/ptycho.h"', "sibling"),
        ("src/io/volume.c", '#include "angle/nowhere.h"', "does not resolve"),
        ("tools/cmd_keygen.c", '#include "nn/arch.h"', "private to nn"),
        ("daemon/pool.c", '#include "io/plotkit.h"', "private to io"),
        ("include/aptomo/volume.h", '#include "io/plotkit.h"', "public header includes only public"),
        ("src/sim/rng.c", '#include "aptomo/angle.h"', "sibling"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for d in ["src", "protocol", "daemon", "tools", "include"]:
            shutil.copytree(os.path.join(root, d), os.path.join(tmp, d))
        if run(tmp):
            print("check-layers self-test: the unmodified copy already fails:\n" + "\n".join(run(tmp)))
            return 1
        expect = []
        for rel, line, what in plants:
            p = os.path.join(tmp, rel)
            with open(p) as f:
                text = f.read().split("\n")
            at = next(i for i, s in enumerate(text) if s.startswith("#include")) + 1
            text.insert(at, line)
            with open(p, "w") as f:
                f.write("\n".join(text))
            expect.append((f"{rel}:{at + 1}:", what))
        # a public function defined outside its header's module
        with open(os.path.join(tmp, "src/metrics/pcc.c"), "a") as f:
            f.write("\nint apt_gpu_count(apt_error *err)\n{\n    (void)err;\n    return 0;\n}\n")
        expect.append(("include/aptomo/gpu.h:", "defined in src/metrics"))
        got = run(tmp)
        missing = [e for e in expect if not any(g.startswith(e[0]) and e[1] in g for g in got)]
        for g in got:
            print("  reported: " + g)
        if missing or len(got) != len(expect):
            print(f"check-layers self-test: FAILED: {len(got)} reported, {len(expect)} planted; not reported: "
                  + ", ".join(f"{a} ({b})" for a, b in missing))
            return 1
    print(f"check-layers self-test: ok ({len(expect)} planted violations, each reported at its line)")
    return 0


def main(argv):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if argv[1:2] == ["--self-test"]:
        return self_test(root if len(argv) < 3 else argv[2])
    if len(argv) > 2 or (len(argv) == 2 and argv[1].startswith("-")):
        print("usage: check-layers.py [SOURCE_DIR] | --self-test [SOURCE_DIR]", file=sys.stderr)
        return 2
    if len(argv) == 2:
        root = argv[1]
    if not os.path.isdir(os.path.join(root, "include", "aptomo")):
        print(f"check-layers: {root}: not an aptomo source tree (no include/aptomo)", file=sys.stderr)
        return 2
    problems = run(root)
    for p in problems:
        print(p)
    if problems:
        print(f"check-layers: {len(problems)} violation(s); the layers are in docs/ARCHITECTURE.md")
        return 1
    print("check-layers: ok (" + " < ".join(", ".join(layer) for layer in LAYERS) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
