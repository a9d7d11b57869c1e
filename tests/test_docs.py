"""test_docs.py - the documentation stands on its own: nothing in the repository sends a reader to a file that a
clone or an install of aptomo does not have.

What is "in the repository": `git ls-files --cached --others --exclude-standard` run in the source tree (tracked
files plus new files that are not ignored, minus tracked files deleted from the work tree); without git (or outside
a work tree) the tree is walked, skipping .git, build*/, out/ and __pycache__/. Build outputs (build/...) are thus
never repository files. The source root is $APTOMO_SRC, else the parent of this file's folder. Binary files (a NUL
byte or not UTF-8) are not read. This file itself is not scanned (it has to name what it forbids).

Rules (each failure is printed as FILE:LINE: reason; exit 1 if any):

(a) Every repository text file (README.md, docs/*.md, configs/*.yaml, sources, tests, scripts, ...):
    1. no path through a folder named `shared` (`shared/...`, `../shared/...`, `/abs/shared/...`): the design
       notes the project was written from live outside the repository;
    2. every markdown file it names (a token ending in `.md`) exists in the repository: a bare name (`FILES.md`)
       beside the naming file, at the top level or — outside README.md and docs/, e.g. in a source comment or a
       help text, where it names an installed page — in docs/; a name with a folder (`docs/FILES.md`) from the
       top level; one starting with `./` or `../` from the naming file's folder. Not checked: URLs and absolute or templated paths
       (`/usr/...`, `file://...`, `@VAR@/...`, `$OUT/...`), globs (`docs/*.md`) outside README.md/docs, and names
       below a folder that is not one of the repository's top-level folders (e.g. `OUT/table.md`, an output path
       of a script; `share/doc/aptomo/X.md`, an install path). So `DESIGN.md` / `NETWORK.md` pass only where such a
       file is in the repository (docs/NETWORK.md is; there is no DESIGN.md).

(b) README.md and docs/*.md, which readers follow by hand:
    1. every repository path they mention exists: a token (in backticks or plain text) that starts with one of the
       repository's top-level folders (bench/ cmake/ configs/ daemon/ docs/ include/ models/ protocol/ scripts/
       src/ systemd/ tests/ tools/, also when those folders do not exist yet) and is not itself part of a longer
       path (`build/tools/aptomo`, `/usr/include/...` are not repository paths: build outputs and system paths are
       allowed). A trailing `/` names a folder, which must hold a repository file. Globs (`*`, `?`) and brace
       lists (`attn_{z,y,x}`) must match at least one repository file. Mentions are resolved from the top level
       (`docs/TOMO.md`, `configs/demo.yaml`, `tests/test_nn.c`), a leading `./` or `../` from the file's folder;
    2. every relative markdown link `[text](target)` resolves, from the file's folder, to a repository file or
       folder (URLs and `#anchors` are not checked; `target#anchor` checks `target`);
    3. docs/ is installed alone (share/doc/aptomo/: its .md and .png files, subfolders such as docs/perf/ included):
       its relative links must stay inside docs/ and point at .md or .png files, so they work in an install too.
       Other repository files are mentioned as text, not linked.
"""
import fnmatch
import os
import re
import subprocess
import sys

SRC = os.path.abspath(os.environ.get("APTOMO_SRC") or os.path.join(os.path.dirname(__file__), ".."))
SELF = "tests/test_docs.py"
TOP_DIRS = ("bench", "cmake", "configs", "daemon", "docs", "include", "models", "protocol", "scripts", "src",
            "systemd", "tests", "tools")
SKIP_DIRS = {".git", "__pycache__", "out"}

failures = []


def fail(path, lineno, msg):
    entry = f"{path}:{lineno}: {msg}"
    if entry not in failures:
        failures.append(entry)


def repo_files():
    """Set of repository-relative paths (forward slashes)."""
    try:
        out = subprocess.run(["git", "-C", SRC, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True).stdout.decode("utf-8", "surrogateescape")
        files = {p for p in out.split("\0") if p}
        return {p for p in files if os.path.isfile(os.path.join(SRC, p))}
    except (OSError, subprocess.CalledProcessError):
        pass
    files = set()
    for root, dirs, names in os.walk(SRC):
        rel = os.path.relpath(root, SRC)
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not (rel == "." and d.startswith("build"))]
        for n in names:
            if n.endswith(".pyc"):
                continue
            p = os.path.normpath(os.path.join(rel, n)).replace(os.sep, "/")
            files.add(p)
    return files


FILES = repo_files()
DIRS = set()
for _f in FILES:
    _parts = _f.split("/")
    for _i in range(1, len(_parts)):
        DIRS.add("/".join(_parts[:_i]))


def read_text(path):
    try:
        with open(os.path.join(SRC, path), "rb") as f:
            raw = f.read()
    except OSError:
        return None
    if b"\0" in raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def norm(p):
    """Normalise a repository-relative path; None when it leaves the repository."""
    p = os.path.normpath(p).replace(os.sep, "/")
    if p == "." or p.startswith("../") or p == ".." or os.path.isabs(p):
        return None if p != "." else ""
    return p


def exists(p, want_dir=False):
    if p is None:
        return False
    if p == "":
        return True
    return p in DIRS if want_dir else (p in FILES or p in DIRS)


def expand_braces(s):
    m = re.search(r"\{([^{}]*)\}", s)
    if not m:
        return [s]
    out = []
    for alt in m.group(1).split(","):
        out.extend(expand_braces(s[:m.start()] + alt + s[m.end():]))
    return out


def resolve_mention(path, token):
    """Repository path named by token in file path (relative tokens from the file's folder, others from the top)."""
    base = os.path.dirname(path)
    if token.startswith("./") or token.startswith("../"):
        return norm(os.path.join(base, token))
    return norm(token)


def glob_matches(pattern):
    return any(fnmatch.fnmatchcase(f, pattern) for f in FILES) or any(
        fnmatch.fnmatchcase(d, pattern.rstrip("/")) for d in DIRS)


# ---------------------------------------------------------------- (a) every text file

SHARED = re.compile(r"(?:^|[^\w.-])(?:\.\./|\./)*shared/")
MD_TOKEN = re.compile(r"[^\s`'\"()<>\[\]{},;|=]*\.md\b")


def check_md_token(path, lineno, tok, docs_rules):
    """Rule (a)2 (and, for README/docs, the .md part of (b)1)."""
    if not tok or tok.rsplit("/", 1)[-1] == ".md" or "://" in tok or tok.startswith(("/", "~")):
        return
    if "@" in tok or "$" in tok:  # templated (@VAR@/X.md, $OUT/X.md)
        return
    if not docs_rules and any(c in tok for c in "*?"):
        return
    if any(c in tok for c in "*?"):
        if not glob_matches(resolve_mention(path, tok) or tok):
            fail(path, lineno, f"'{tok}' matches no repository file")
        return
    if tok.startswith("./") or tok.startswith("../"):
        p = resolve_mention(path, tok)
        if not exists(p):
            fail(path, lineno, f"'{tok}' is not a file of the repository")
        return
    if "/" in tok:
        if tok.split("/", 1)[0] not in TOP_DIRS:
            return  # an output or install path (OUT/table.md, share/doc/aptomo/X.md), not a repository file
        if not exists(norm(tok)):
            fail(path, lineno, f"'{tok}' is not a file of the repository")
        return
    here = norm(os.path.join(os.path.dirname(path), tok))
    if not (exists(here) or exists(norm(tok)) or (not docs_rules and exists("docs/" + tok))):
        where = [os.path.dirname(path) + "/"] if os.path.dirname(path) else []
        where += ["the top level"] + ([] if docs_rules else ["docs/"])
        fail(path, lineno, f"'{tok}' is not a file of the repository (looked in {', '.join(where)})")


def check_all_files():
    for path in sorted(FILES):
        if path == SELF:
            continue
        text = read_text(path)
        if text is None:
            continue
        docs_rules = path == "README.md" or (path.startswith("docs/") and path.endswith(".md"))
        for lineno, line in enumerate(text.splitlines(), 1):
            if SHARED.search(line):
                fail(path, lineno, "refers to a 'shared/' path outside the repository (say it in the project's own "
                                   "docs and refer to those): " + line.strip()[:120])
            if docs_rules:
                continue  # README/docs: .md names are checked with the other path mentions in (b)
            for m in MD_TOKEN.finditer(line):
                check_md_token(path, lineno, m.group(0), False)


# ---------------------------------------------------------------- (b) README.md and docs/*.md

LINK = re.compile(r"\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
PATH_CHARS = r"(?:[\w.*?+\-/]|\{[\w.,+\-]*\})"
MENTION = re.compile(r"(?<![\w./\-@$~:{}])((?:\.\.?/)*(?:%s)/%s*)" % ("|".join(TOP_DIRS), PATH_CHARS))
BARE_MD = re.compile(r"(?<![\w./\-@$~:{}])([\w\-]+\.md)\b")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


def check_mention(path, lineno, tok):
    tok = tok.rstrip(".")  # end of a sentence
    if not tok:
        return
    want_dir = tok.endswith("/")
    for alt in expand_braces(tok):
        p = resolve_mention(path, alt)
        if p is None:
            fail(path, lineno, f"'{tok}' leaves the repository")
            continue
        if any(c in alt for c in "*?"):
            if not glob_matches(p):
                fail(path, lineno, f"'{tok}' matches no repository file")
        elif not exists(p.rstrip("/"), want_dir):
            what = "folder" if want_dir else "file or folder"
            fail(path, lineno, f"'{tok}' is not a {what} of the repository")


def check_link(path, lineno, target):
    if SCHEME.match(target) or target.startswith("#"):
        return
    target = target.split("#", 1)[0]
    if not target:
        return
    p = norm(os.path.join(os.path.dirname(path), target))
    if not exists(p if p is None else p.rstrip("/")):
        fail(path, lineno, f"link '{target}' does not resolve to a repository file")
        return
    if path.startswith("docs/") and not (p.startswith("docs/") and p.endswith((".md", ".png"))):
        fail(path, lineno, f"link '{target}' leaves docs/: docs/ is installed alone, so its pages may link only to "
                           "its .md and .png files (mention other repository files as text, 'in the source tree')")


def check_docs():
    docs = ["README.md"] + sorted(f for f in FILES if re.fullmatch(r"docs/[^/]+\.md", f))
    for path in docs:
        text = read_text(path)
        if text is None:
            if path in FILES:
                fail(path, 0, "not readable as UTF-8 text")
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            for m in LINK.finditer(line):
                check_link(path, lineno, m.group(1))
            line = LINK.sub(lambda m: m.group(0)[:m.group(0).index("](") + 1], line)  # targets checked above
            for m in MENTION.finditer(line):
                check_mention(path, lineno, m.group(1))
            for m in BARE_MD.finditer(line):
                check_md_token(path, lineno, m.group(1), True)


def main():
    if not FILES:
        print("FAIL: no repository files found under", SRC, file=sys.stderr)
        return 1
    for must in ("README.md", "docs/NETWORK.md", "docs/INTERFACES.md"):
        if must not in FILES:
            fail(must, 0, "missing: the project's own reference for what users and other programs rely on")
    check_all_files()
    check_docs()
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    print(f"test_docs: {len(FILES)} repository files, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
