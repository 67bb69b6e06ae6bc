#!/usr/bin/env bash
# README.md and the docs, checked as a newcomer reads them (scripts/test.sh --full runs this):
#   - they name no path outside the repository (../shared, /work, /tmp, a home folder...);
#   - every relative link, and every repository path they name in backquotes (include/...,
#     examples/..., tnet/..., layers/...), exists in the repository;
#   - every C++ block of README.md compiles: each is compiled with -fsyntax-only against include/,
#     in a function after the declarations of the context its fence names (```cpp NAME:
#     tests/docs/contexts.hpp), its #include lines first.
# benchmarks/RESULTS.md, a record of measurements, is not checked. CXX picks the compiler [c++].
set -euo pipefail
cd "$(dirname "$0")/.."
docs=(README.md docs/*.md)
[ -f examples/fashion/README.md ] && docs+=(examples/fashion/README.md)
python3 - "${CXX:-c++}" "$(nproc)" "${docs[@]}" <<'PY'
import concurrent.futures, glob, os, re, subprocess, sys, tempfile

compiler, jobs, docs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
root = os.getcwd()
problems = []

# Paths of the machine a text was written on, not of a reader's checkout.
outside = re.compile(r"\.\./shared|(?<![\w.~/-])(?:/work|/tmp|/var/tmp|/home|/root|/Users|/mnt)(?=/|\b)|(?<![\w/])~/")
# Folders a path in backquotes starts from: the repository's top (what git tracks there, so that
# an ignored folder such as .cache/, made by a run, names an output), include/, include/tnet/.
try:
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, check=True).stdout.split()
    top = {path.split("/")[0] for path in tracked}
except (OSError, subprocess.CalledProcessError):
    top = set(os.listdir(root))
tnet_dirs = {d for d in os.listdir("include/tnet") if os.path.isdir(os.path.join("include/tnet", d))}

def exists(path):
    return bool(glob.glob(path)) if any(c in path for c in "*?[") else os.path.exists(path)

def inside(path):
    return os.path.realpath(path).startswith(os.path.realpath(root) + os.sep)

blocks = []  # (file, line, context, code) for each C++ block of README.md
for doc in docs:
    lines = open(doc, encoding="utf-8").read().split("\n")
    fence, code, start, info = None, [], 0, ""
    for number, line in enumerate(lines, 1):
        where = f"{doc}:{number}"
        match = re.match(r"^(```+)\s*(\S*)\s*(\S*)", line)
        if fence is None and match:
            fence, info, context, code, start = match.group(1), match.group(2), match.group(3), [], number
            continue
        if fence is not None and line.startswith(fence):
            if info == "cpp" and doc == "README.md":
                blocks.append((doc, start, context, "\n".join(code)))
            fence = None
            continue
        if fence is not None:
            code.append(line)
        for hit in outside.finditer(line):
            problems.append(f"{where}: names a path outside the repository ({hit.group(0)}...): {line.strip()}")
        if fence is not None:
            continue
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            path = os.path.normpath(os.path.join(os.path.dirname(doc), target.split("#")[0]))
            if not inside(path) or not exists(path):
                problems.append(f"{where}: the link {target} leads to nothing in the repository")
        for quoted in re.findall(r"`([^`\s]+)`", line):
            parts = quoted.rstrip("/").split("/")
            if len(parts) < 2 or not re.match(r"^[\w.*/-]+$", quoted):
                continue
            if parts[0] in top:
                candidates = [quoted]
            elif parts[0] == "tnet":
                candidates = [os.path.join("include", quoted)]
            elif parts[0] in tnet_dirs:
                candidates = [os.path.join("include/tnet", quoted)]
            else:
                continue  # not a repository path: an output (out/plot.png), a folder of photos
            if not any(exists(c) for c in candidates):
                problems.append(f"{where}: `{quoted}` is not in the repository")

def compile_block(block):
    doc, line, context, code = block
    includes = [l for l in code.split("\n") if l.startswith("#include")]
    body = "\n".join(l for l in code.split("\n") if not l.startswith("#include"))
    source = "\n".join(['#include "contexts.hpp"', *includes, f"// {doc}:{line}", "void readme_block() {",
                        f"  using namespace readme::{context};" if context else "", "  {", f"#line {line + 1} \"{doc}\"",
                        body, "  }", "}", ""])
    with tempfile.NamedTemporaryFile("w", suffix=".cpp", delete=False) as f:
        f.write(source)
    command = [compiler, "-std=c++20", "-fsyntax-only", "-fopenmp", "-Wall", "-Werror", "-Wno-unused",
               "-Iinclude", "-Itests/docs", "-isystem", "/usr/include/eigen3", "-isystem", "/usr/include/stb", f.name]
    done = subprocess.run(command, capture_output=True, text=True)
    os.unlink(f.name)
    return block, done.returncode, done.stdout + done.stderr

with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
    for (doc, line, context, _), status, output in pool.map(compile_block, blocks):
        if status != 0:
            problems.append(f"{doc}:{line}: the C++ block (context '{context or 'none'}') does not compile:\n{output}")

for p in problems:
    print(p, file=sys.stderr)
print(f"docs: {len(docs)} files, {len(blocks)} C++ blocks of README.md compiled; {len(problems)} problems")
sys.exit(1 if problems else 0)
PY
