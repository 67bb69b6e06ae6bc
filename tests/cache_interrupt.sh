#!/usr/bin/env bash
# Ctrl-C (SIGINT) or SIGTERM while fashion_train builds its image cache (--cache) stops the build
# cleanly: the message "interrupted while building the image cache ...; nothing kept", exit
# status 130, and neither a cache nor a temporary file left in the cache folder. The signal is
# sent while the process is stopped (SIGSTOP) once its temporary file exists, so that it arrives
# mid-build however fast the machine. Usage:
#   cache_interrupt.sh BIN_DIR MAKE_LABEL_DATASET
set -uo pipefail
export OMP_WAIT_POLICY=passive
bin=$1 make_label_dataset=$2
train="$bin/fashion_train"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
failures=0 passed=0
pass() { passed=$((passed + 1)); echo "ok: $1"; }
fail() { failures=$((failures + 1)); echo "FAILED: $1"; }

# 24 colours at 2 places, 64 pictures each: 3072 small photos, decoded at 96x96 on one thread
# (about a second here).
"$make_label_dataset" photos 24 20 64 >/dev/null || { echo "make_label_dataset failed"; exit 1; }

for signal in INT TERM; do
  rm -rf cache && mkdir cache
  "$train" --dataset photos --cache cache --image-size 96 --threads 1 --epochs 1 --model "model_$signal.tnet" --labelbin "labels_$signal.txt" \
    --plot "plot_$signal.png" --history "history_$signal.csv" >"out_$signal.txt" 2>"err_$signal.txt" &
  pid=$!
  # Wait (up to 60 s) for the build's temporary file, then stop the process there.
  started=0
  for _ in $(seq 12000); do
    if compgen -G "cache/*.tnet-tmp.*" >/dev/null; then
      kill -STOP "$pid" 2>/dev/null && started=1
      break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.005
  done
  if [ $started = 1 ] && ! compgen -G "cache/*.tnet-tmp.*" >/dev/null; then
    started=0  # the build ended before the process was stopped
  fi
  kill -"$signal" "$pid" 2>/dev/null
  kill -CONT "$pid" 2>/dev/null
  wait "$pid"
  status=$?
  left=$(ls -A cache | tr '\n' ' ')
  if [ $started = 0 ]; then
    fail "SIG$signal: the cache's build was not caught in progress (status $status; $(tail -2 "out_$signal.txt"))"
  elif [ $status = 130 ] && grep -qE "^fashion_train: interrupted while building the image cache cache/photos-96px-[0-9a-f]{16}\.tnetcache; nothing kept$" "err_$signal.txt" &&
     [ -z "$left" ] && [ ! -e "model_$signal.tnet" ]; then
    pass "SIG$signal while the image cache is built: stopped with a message, status 130, nothing left in the cache folder"
  else
    fail "SIG$signal: status $status (want 130), stderr '$(cat "err_$signal.txt")', left in the cache folder: '$left'"
  fi
done

echo "$passed passed, $failures failed"
[ $failures = 0 ]
