#!/usr/bin/env bash
# Proves that scripts/deps.sh installs everything a configured + built tree used. deps.sh installs without
# Recommends, so a package the build needs must be in the closure of deps.sh's list over Depends/Pre-Depends (plus
# the Essential packages every Debian system has); a package that is merely installed on this machine does not count.
#
#   scripts/check-deps.sh [--without PKG]... [-v] BUILDDIR...
#
# Files the configure + build step used, per build directory:
#   - CMakeCache.txt: every FILEPATH/PATH entry that is a file (find_library/find_program/find_file results, the
#     compiler), except CMake's binutils probes (CMAKE_AR, CMAKE_LINKER, ...: the first present of alternatives);
#   - CMakeFiles/Makefile.cmake: CMAKE_MAKEFILE_DEPENDS, every CMake file configure read (package config files of
#     find_package, modules); a tree without it (another generator) is reconfigured with --trace-format=json-v1;
#   - the .pc files pkg-config read for the cached pkg_check_modules calls (with all their Requires, private too);
#   - the compiler's depfiles (*.d): every header the build included;
#   - the link lines (link.txt): every library given by path or -l, and clang's sanitizer/libFuzzer runtime
#     archives for -fsanitize= (static, so neither a path on the line nor ldd shows them);
#   - ldd of every ELF file the build made: every shared library they load.
# Each file (and each symlink on its way, e.g. libOpenCL.so -> libOpenCL.so.1) is mapped to its package with
# dpkg -S; files no package owns (e.g. /usr/local/cuda) are skipped and listed. Exit 0 when every owned file's
# package is in the closure, 1 with the missing packages named, 2 on a usage or set-up error.
# --without PKG checks the list without PKG (the self-test in make test: the check must name what is missing).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
list=$(bash "$here/deps.sh" --list) || { echo "check-deps: scripts/deps.sh --list failed" >&2; exit 2; }
exec python3 - "$list" "$@" <<'PY'
import json, os, re, subprocess, sys, tempfile

ME = "check-deps"
deps_list = [p for p in sys.argv[1].split() if p]
args = sys.argv[2:]
without, dirs, verbose = set(), [], False
i = 0
while i < len(args):
    a = args[i]
    if a == "--without" and i + 1 < len(args):
        without.add(args[i + 1]); i += 2; continue
    if a == "-v":
        verbose = True
    elif a.startswith("-"):
        sys.exit(f"usage: check-deps.sh [--without PKG]... [-v] BUILDDIR...  (unknown option {a})")
    else:
        dirs.append(a)
    i += 1
if not dirs:
    sys.exit("usage: check-deps.sh [--without PKG]... [-v] BUILDDIR...")
for w in without:
    if w not in deps_list:
        print(f"{ME}: --without {w}: not in scripts/deps.sh's list", file=sys.stderr); sys.exit(2)
roots = [p for p in deps_list if p not in without]

def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)

# ---- installed packages: Depends/Pre-Depends/Provides/Essential --------------------------------------------------
q = run(["dpkg-query", "-W",
         "-f=${Package}\t${db:Status-Abbrev}\t${Essential}\t${Pre-Depends}\t${Depends}\t${Provides}\n"])
installed, deps_of, providers, essential = set(), {}, {}, set()
def names(field):
    """'a (>= 1) | b:any, c' -> [['a', 'b'], ['c']]"""
    groups = []
    for g in field.split(","):
        alts = [re.sub(r"[\s(\[<].*$", "", a.strip()).split(":")[0] for a in g.split("|")]
        alts = [a for a in alts if a]
        if alts:
            groups.append(alts)
    return groups
for line in q.stdout.splitlines():
    f = line.split("\t")
    if len(f) < 6 or len(f[1]) < 2 or f[1][1] != "i":  # ii, hi: installed
        continue
    pkg = f[0]
    installed.add(pkg)
    deps_of.setdefault(pkg, []).extend(names(f[3]) + names(f[4]))
    for g in names(f[5]):
        providers.setdefault(g[0], set()).add(pkg)
    if f[2] == "yes":
        essential.add(pkg)

def resolve(name):
    """The installed packages that satisfy a dependency on name (itself, or what provides it)."""
    if name in installed:
        return {name}
    return set(providers.get(name, ()))

not_installed = [p for p in roots if not resolve(p)]
if not_installed:
    print(f"{ME}: scripts/deps.sh lists {' '.join(not_installed)}, not installed here: run scripts/deps.sh first",
          file=sys.stderr)
    sys.exit(2)

# Closure over Depends/Pre-Depends. Of alternatives (a | b) the first one installed is what apt chose.
closure, todo = set(), []
for p in list(roots) + sorted(essential):
    todo.extend(resolve(p))
while todo:
    p = todo.pop()
    if p in closure:
        continue
    closure.add(p)
    for alts in deps_of.get(p, ()):
        for a in alts:
            r = resolve(a)
            if r:
                todo.extend(r)
                break

# ---- files the configure + build used ----------------------------------------------------------------------------
used = {}  # path -> why (first reason seen)
def use(path, why):
    if path and os.path.isabs(path):
        used.setdefault(os.path.normpath(path), why)

BINUTILS = re.compile(r"^CMAKE_(AR|RANLIB|LINKER|NM|OBJCOPY|OBJDUMP|READELF|STRIP|ADDR2LINE|DLLTOOL|MT"
                      r"|[A-Z]+_COMPILER_(AR|RANLIB|CLANG_SCAN_DEPS))$")
def cache_entries(cache):
    ent = {}
    with open(cache, errors="replace") as fh:
        for line in fh:
            m = re.match(r"^([^#/][^:]*):([A-Z]+)=(.*)$", line.rstrip("\n"))
            if m:
                ent[m.group(1)] = (m.group(2), m.group(3))
    return ent

RT_NAMES = {"fuzzer": "fuzzer", "address": "asan", "undefined": "ubsan_standalone"}
def sanitizer_runtimes(cc, names):
    """clang's static runtime archives a -fsanitize= link pulls in (libclang-rt-N-dev); gcc's are shared (ldd)."""
    r = run([cc, "-print-runtime-dir"])
    rt = r.stdout.strip()
    if r.returncode or not os.path.isdir(rt):
        return []
    out = []
    for n in names.split(","):
        f = os.path.join(rt, f"libclang_rt.{RT_NAMES.get(n, n)}-x86_64.a")
        if os.path.isfile(f):
            out.append(f)
    return out

for d in dirs:
    d = os.path.realpath(d)
    cache = os.path.join(d, "CMakeCache.txt")
    if not os.path.isfile(cache):
        print(f"{ME}: {d}: no CMakeCache.txt (configure and build it first)", file=sys.stderr); sys.exit(2)
    ent = cache_entries(cache)
    src = ent.get("CMAKE_HOME_DIRECTORY", ("", ""))[1] or ent.get("aptomo_SOURCE_DIR", ("", ""))[1]
    skip_roots = tuple(os.path.realpath(x) + os.sep for x in (d, src) if x)
    def ours(p):
        return os.path.realpath(p).startswith(skip_roots) or p.startswith(skip_roots)
    # 1. find_* results. Not CMake's binutils probes (CMAKE_AR, CMAKE_LINKER, ...): CMake takes the first present of
    # several alternatives (llvm-ar before ar for clang), so they say what this machine has, not what the build
    # needs; the compiler's own Depends bring a working set (binutils).
    probes = {t for k, (_, t) in ent.items() if BINUTILS.match(k)}
    for k, (t, v) in ent.items():
        if t in ("FILEPATH", "PATH") and not BINUTILS.match(k):
            for p in v.split(";"):
                if os.path.isabs(p) and os.path.isfile(p) and not ours(p):
                    use(p, f"{os.path.basename(d)}/CMakeCache.txt {k}")
    # 2. CMake files configure read
    mk = os.path.join(d, "CMakeFiles", "Makefile.cmake")
    cmake_files = []
    if os.path.isfile(mk):
        txt = open(mk, errors="replace").read()
        m = re.search(r"set\(CMAKE_MAKEFILE_DEPENDS\s*(.*?)\)", txt, re.S)
        if m:
            cmake_files = re.findall(r'"([^"]+)"', m.group(1))
    else:
        with tempfile.TemporaryDirectory() as t:
            tr = os.path.join(t, "trace.json")
            r = run(["cmake", "--trace-format=json-v1", f"--trace-redirect={tr}", d])
            if r.returncode:
                print(f"{ME}: reconfiguring {d} with --trace failed:\n{r.stderr}", file=sys.stderr); sys.exit(2)
            for line in open(tr, errors="replace"):
                try:
                    f = json.loads(line).get("file")
                except ValueError:
                    continue
                if f:
                    cmake_files.append(f)
    for p in cmake_files:
        if os.path.isabs(p) and os.path.isfile(p) and not ours(p):
            use(p, f"{os.path.basename(d)}: read by cmake at configure")
    # 3. pkg-config modules of the cached pkg_check_modules calls, with everything they require
    mods = []
    for k, (t, v) in ent.items():
        if k.startswith("__pkg_config_arguments_"):
            for a in v.split(";"):
                if a and a not in ("REQUIRED", "QUIET", "IMPORTED_TARGET", "GLOBAL", "NO_CMAKE_PATH",
                                   "NO_CMAKE_ENVIRONMENT_PATH"):
                    mods.append(re.split(r"[<>=]", a)[0].strip())
    if mods:
        pc = ent.get("PKG_CONFIG_EXECUTABLE", ("", "pkg-config"))[1] or "pkg-config"
        r = run([pc, "--static", "--digraph"] + mods)
        nodes = set(re.findall(r'^"([^"]+)" \[', r.stdout, re.M)) - {"virtual:world"}
        for mod in sorted(nodes | set(mods)):
            r = run([pc, "--path", mod])
            p = r.stdout.strip()
            if r.returncode or not p:
                print(f"{ME}: pkg-config finds no {mod}.pc (used by {d})", file=sys.stderr); sys.exit(1)
            use(p, f"{os.path.basename(d)}: pkg-config module {mod}")
    # 4. headers (compiler depfiles), 5. link lines, 6. ldd of what was built
    cc = ent.get("CMAKE_C_COMPILER", ("", "cc"))[1] or "cc"
    elves = []
    for root, sub, files in os.walk(d):
        for fn in files:
            p = os.path.join(root, fn)
            if fn.endswith(".d") and os.sep + "CMakeFiles" + os.sep in p:
                txt = open(p, errors="replace").read().replace("\\\n", " ")
                for tok in re.split(r"(?<!\\)\s+", txt):
                    tok = tok.rstrip(":")
                    if tok.startswith("/") and os.path.isfile(tok) and not ours(tok):
                        use(tok, f"header included by {os.path.relpath(p, d)}")
            elif fn == "link.txt":
                for tok in open(p, errors="replace").read().split():
                    if tok in probes:
                        continue
                    if tok.startswith("-fsanitize="):  # clang links its static runtimes: no path, no ldd trace
                        for f in sanitizer_runtimes(cc, tok[len("-fsanitize="):]):
                            use(f, f"sanitizer runtime ({tok}) of {os.path.relpath(p, d)}")
                        continue
                    if tok.startswith("/") and os.path.isfile(tok) and not ours(tok):
                        use(tok, f"linked by {os.path.relpath(p, d)}")
                    elif tok.startswith("-l") and len(tok) > 2:
                        for cand in (f"lib{tok[2:]}.so", f"lib{tok[2:]}.a"):
                            r = run([cc, f"-print-file-name={cand}"])
                            f = r.stdout.strip()
                            if os.path.isabs(f) and os.path.isfile(f):
                                use(f, f"linked ({tok}) by {os.path.relpath(p, d)}"); break
            elif os.sep + "CMakeFiles" + os.sep not in p and os.path.isfile(p) and not os.path.islink(p):
                try:
                    with open(p, "rb") as fh:
                        if fh.read(4) == b"\x7fELF" and not fn.endswith((".o", ".a")):
                            elves.append(p)
                except OSError:
                    pass
    for e in elves:
        r = run(["ldd", e])
        for line in r.stdout.splitlines():
            if "not found" in line:
                print(f"{ME}: {e}: {line.strip()}", file=sys.stderr); sys.exit(1)
            m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
            if m and not ours(m.group(1)):
                use(m.group(1), f"loaded by {os.path.relpath(e, d)}")

# ---- owners: every symlink hop of every file, under its /usr-merged aliases, in one dpkg -S call ------------------
def hops(p):
    out, seen = [], set()
    while p not in seen and len(seen) < 40:
        seen.add(p)
        out.append(p)
        if not os.path.islink(p):
            break
        p = os.path.normpath(os.path.join(os.path.dirname(p), os.readlink(p)))
    real = os.path.realpath(p)
    if real not in seen:
        out.append(real)
    return out
MERGED = ("/bin/", "/sbin/", "/lib/", "/lib32/", "/lib64/", "/libx32/")
def aliases(p):
    out = {p, os.path.join(os.path.realpath(os.path.dirname(p)), os.path.basename(p))}
    for q in list(out):
        for m in MERGED:
            if q.startswith(m):
                out.add("/usr" + q)
            elif q.startswith("/usr" + m):
                out.add(q[4:])
    return out
file_hops = {f: [(h, aliases(h)) for h in hops(f)] for f in used}
queries = sorted({a for hs in file_hops.values() for _, al in hs for a in al})
owner = {}
for k in range(0, len(queries), 2000):
    r = run(["dpkg-query", "-S"] + queries[k:k + 2000])
    for line in r.stdout.splitlines():
        if line.startswith(("diversion by", "local diversion")) or ": " not in line:
            continue
        pk, path = line.split(": ", 1)
        owner.setdefault(path, set()).update(x.strip().split(":")[0] for x in pk.split(","))

missing, unowned, nowned = {}, [], 0
for f, hs in sorted(file_hops.items()):
    owned_any = False
    for hop, al in hs:
        own = set().union(*(owner.get(a, set()) for a in al))
        if not own:
            continue  # e.g. /etc/alternatives/cc, or a hop a maintainer script made
        owned_any = True
        if not own & closure:
            for o in sorted(own):
                missing.setdefault(o, []).append((f, hop, used[f]))
    if owned_any:
        nowned += 1
    else:
        unowned.append(f)

pkgs_used = set()
for f, hs in file_hops.items():
    for _, al in hs:
        pkgs_used |= set().union(*(owner.get(a, set()) for a in al))
if verbose:
    for f in sorted(used):
        own = sorted(set().union(*(owner.get(a, set()) for _, al in file_hops[f] for a in al)))
        print(f"  {f}  [{', '.join(own) or 'no package'}]  ({used[f]})")
if unowned:
    where = {}
    for f in unowned:
        where.setdefault("/".join(f.split("/")[:4]), []).append(f)
    print(f"{ME}: skipped {len(unowned)} file(s) no Debian package owns (not installed by apt, not checked): "
          + ", ".join(f"{len(fs)} under {t}" if len(fs) > 1 else fs[0] for t, fs in sorted(where.items())))
if missing:
    for pkg, why in sorted(missing.items()):
        print(f"{ME}: MISSING {pkg}: the build used it, but scripts/deps.sh"
              + (f" (without {', '.join(sorted(without))})" if without else "")
              + " neither lists it nor pulls it in through Depends/Pre-Depends:", file=sys.stderr)
        for f, hop, how in why[:5]:
            print(f"    {hop}" + (f" (via {f})" if hop != f else "") + f"  [{how}]", file=sys.stderr)
        if len(why) > 5:
            print(f"    ... and {len(why) - 5} more file(s)", file=sys.stderr)
    print(f"{ME}: add {' '.join(sorted(missing))} to scripts/deps.sh", file=sys.stderr)
    sys.exit(1)
print(f"{ME}: ok: {nowned} files from {len(pkgs_used)} packages used by configure + build of "
      f"{', '.join(os.path.basename(os.path.realpath(x)) for x in dirs)}; all in the Depends closure "
      f"({len(closure)} packages) of scripts/deps.sh's {len(roots)}")
PY
