#!/usr/bin/env bash
# clang-19's front end, warnings as errors, over every source of tnet's own programs that is not in
# the unit tests (scripts/test.sh --full builds those whole with clang-19): the examples, the
# benchmarks, the test tools. Templates are instantiated, so what clang refuses or warns of is
# found without generating code. The compile commands come from a clang-19 configuration in
# build-clang-check (configured, never built).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build-clang-check
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_DISABLE_PRECOMPILE_HEADERS=ON -DCMAKE_CXX_COMPILER=clang++-19 -DTNET_WERROR=ON -DTNET_MPI=ON \
  -DTNET_FASHION_TORCHVISION=ON -DTNET_FASHION_NETWORKS= -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
python3 - "$dir/compile_commands.json" "$(nproc)" <<'PY'
import concurrent.futures, json, shlex, subprocess, sys

def syntax_only(entry):
    """The entry's command with -c and -o FILE replaced by -fsyntax-only."""
    args, out, skip = shlex.split(entry["command"]), [], False
    for a in args:
        if skip:
            skip = False
        elif a == "-o":
            skip = True
        elif a != "-c":
            out.append(a)
    return out + ["-fsyntax-only"]

def check(entry):
    done = subprocess.run(syntax_only(entry), cwd=entry["directory"], capture_output=True, text=True)
    return entry["file"], done.returncode, done.stdout + done.stderr

entries = [e for e in json.load(open(sys.argv[1])) if "/tnet_tests.dir/" not in e["command"]]
failed = 0
with concurrent.futures.ThreadPoolExecutor(int(sys.argv[2])) as pool:
    for source, status, output in pool.map(check, entries):
        if status != 0:
            failed += 1
            print(f"clang-19 refused {source}:\n{output}", file=sys.stderr)
print(f"clang-19: {len(entries) - failed} of {len(entries)} sources of the examples, benchmarks and test tools without a warning")
sys.exit(1 if failed else 0)
PY
