#!/usr/bin/python3
"""check-exports.py - libaptomo.so exports exactly its public API (docs/ARCHITECTURE.md "Exports").

    scripts/check-exports.py LIBAPTOMO.so INCLUDE_DIR     INCLUDE_DIR: include/aptomo of the source tree
    scripts/check-exports.py --self-test LIBAPTOMO.so INCLUDE_DIR

Fails (exit 1), naming each symbol, when the library exports a symbol (nm -D --defined-only) that no public header
declares (a private function that escaped -fvisibility=hidden), or when a function a public header declares is not
exported (a header without APT_API_BEGIN/END, or a definition that missed its header). --self-test checks the check:
without parallel.h and with a header declaring a function nobody defines, both faults must be named.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

# what the linker itself defines in every shared object
LINKER = {"_init", "_fini", "_edata", "_end", "__bss_start"}
PROTO_RE = re.compile(r"^(?!static\b|typedef\b|#|\s)[A-Za-z_][\w \t\*]*?\b(apt_\w+)\s*\(", re.M)


def strip_comments(text):
    return re.sub(r"/\*.*?\*/|//[^\n]*", " ", text, flags=re.S)


def declared(inc):
    """(every identifier of the public headers, the functions they declare)."""
    idents, funcs = set(), set()
    for fn in sorted(os.listdir(inc)):
        if fn.endswith(".h"):
            with open(os.path.join(inc, fn), encoding="utf-8") as f:
                text = strip_comments(f.read())
            idents |= set(re.findall(r"\b[A-Za-z_]\w*\b", text))
            funcs |= {m.group(1) for m in PROTO_RE.finditer(text)}
    return idents, funcs


def exported(lib):
    out = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"check-exports: nm -D {lib}: {out.stderr.strip()}")
    return {line.split()[-1].split("@")[0] for line in out.stdout.splitlines() if line.strip()} - LINKER


def check(lib, inc):
    idents, funcs = declared(inc)
    syms = exported(lib)
    problems = [f"{lib}: exports {s}, which no public header (include/aptomo/*.h) declares"
                for s in sorted(syms - idents)]
    problems += [f"{inc}: {f} is declared but {os.path.basename(lib)} does not export it"
                 for f in sorted(funcs - syms)]
    return problems, len(syms)


def main(argv):
    self_test = argv[1:2] == ["--self-test"]
    args = argv[2:] if self_test else argv[1:]
    if len(args) != 2 or not os.path.isfile(args[0]) or not os.path.isdir(args[1]):
        print("usage: check-exports.py [--self-test] LIBAPTOMO.so INCLUDE_DIR", file=sys.stderr)
        return 2
    lib, inc = args
    if self_test:
        with tempfile.TemporaryDirectory() as tmp:
            hdrs = os.path.join(tmp, "aptomo")
            shutil.copytree(inc, hdrs)
            os.remove(os.path.join(hdrs, "parallel.h"))
            with open(os.path.join(hdrs, "zz_planted.h"), "w") as f:
                f.write("int apt_planted_nowhere(void);\n")
            problems, _ = check(lib, hdrs)
        want = ["exports apt_par_for,", "exports apt_par_tasks,", "apt_planted_nowhere is declared"]
        missing = [w for w in want if not any(w in p for p in problems)]
        if missing:
            print("check-exports self-test: FAILED, not reported: " + "; ".join(missing))
            print("\n".join(problems))
            return 1
        print(f"check-exports self-test: ok ({len(problems)} planted faults reported)")
        return 0
    problems, n = check(lib, inc)
    for p in problems:
        print(p)
    if problems:
        print(f"check-exports: {len(problems)} problem(s)")
        return 1
    print(f"check-exports: ok ({n} symbols exported, each declared in include/aptomo; every declared function exported)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
