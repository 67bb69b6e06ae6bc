#!/usr/bin/env bash
# What the fashion programs write, and what they must never write over:
# - outputs are regular files or new names: a device (/dev/null, /dev/full, a private node made
#   with mknod), a FIFO, a socket, a folder or a symbolic link given as an output is refused
#   before any work (exit 2, naming the option), and left as it was;
# - no two outputs, and no output and an input, are one file (by name, by a second name, by a
#   hard link), in fashion_train (derived files included), fashion_classify and fashion_export;
# - a run's state is never destroyed silently: a fresh run refuses an unfinished run's
#   checkpoint (--resume or --overwrite), a refused --resume writes nothing, and a second trainer
#   of one model is refused while the first runs;
# - the up-front writability check opens no file of the user's and removes none;
# - early, whole checks: empty values, a name too long for its derived files; SIGHUP saves a
#   checkpoint; a closed stdout (| head -1) ends quietly with the outputs written; a file past
#   `ulimit -f` fails with a message and leaves no temporary file; out of memory is said in words.
# Usage: outputs.sh BIN_DIR
set -uo pipefail
bin=$1
train="$bin/fashion_train" classify="$bin/fashion_classify" export_="$bin/fashion_export"
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"
# A run of a few seconds.
tiny=(--synthetic-count 4 --epochs 1 --image-size 64 --batch-size 4 --threads 1)

# refused NAME MESSAGE -- COMMAND...: COMMAND exits 2 within 60 s, prints MESSAGE on stderr, and
# changes nothing in the folder it runs in (the names, kinds and contents of its files).
snapshot() { find . -path ./err.txt -prune -o -printf '%p %y %l %s\n' | sort; find . -type f ! -name err.txt -exec md5sum {} + | sort; }
refused() {
  local name=$1 message=$2
  shift 3
  local before=$(snapshot)
  timeout 60 "$@" >/dev/null 2>err.txt
  local got=$? after=$(snapshot)
  if [ $got = 2 ] && grep -qF -- "$message" err.txt && [ "$before" = "$after" ]; then
    pass "$name"
  else
    fail "$name: status $got (want 2), stderr '$(head -c 400 err.txt)', changed: '$(diff <(echo "$before") <(echo "$after") | head -5)'"
  fi
}

# A model to classify and export, with its files (synthetic_examples/, b.train.txt, b.val.txt).
"$train" "${tiny[@]}" --model b.tnet --labelbin b.txt --plot b.png --history b.csv >b.log 2>&1 ||
  { echo "FAILED: the first training: $(tail -3 b.log)"; exit 1; }
photo=synthetic_examples/red_dress.png
outs=(--labelbin o.txt --plot o.png --history o.csv)

# ---- 1. Outputs are regular files, or new names ----
mkfifo fifo
refused "a FIFO as --history is refused, not written or waited on" "--history fifo: not a regular file (a FIFO)" -- \
  "$train" "${tiny[@]}" --model o.tnet --labelbin o.txt --plot o.png --history fifo
canary=$failures
echo "the user's file" >target.txt
ln -s target.txt link.txt
refused "a symbolic link as --labelbin is refused; the link and its target stay as they were" \
  "--labelbin link.txt: not a regular file (a symbolic link)" -- "$train" "${tiny[@]}" --model o.tnet --labelbin link.txt --plot o.png --history o.csv
[ -L link.txt ] && [ "$(cat target.txt)" = "the user's file" ] && pass "the link is still a link to the unchanged file" ||
  fail "the link: $(ls -l link.txt target.txt)"
mkdir folder
refused "a folder as --plot is refused" "--plot folder: not a regular file (a folder)" -- \
  "$train" "${tiny[@]}" --model o.tnet --labelbin o.txt --plot folder --history o.csv
refused "a symbolic link as a derived output (the checkpoint) is refused" "--model's checkpoint o.tnet.checkpoint: not a regular file (a symbolic link)" -- \
  sh -c "ln -sf target.txt o.tnet.checkpoint && trap 'rm -f o.tnet.checkpoint' EXIT && '$train' ${tiny[*]} --model o.tnet ${outs[*]}"
ln -s /proc/self/fd/1 stdout-link
refused "fashion_export --onnx LINK (to /proc/self/fd/1) is refused" "--onnx stdout-link: not a regular file (a symbolic link)" -- \
  "$export_" --model b.tnet --labelbin b.txt --onnx stdout-link
[ -L stdout-link ] && pass "the link to /proc/self/fd/1 is still a link" || fail "stdout-link: $(ls -l stdout-link)"
refused "a FIFO as fashion_classify --output is refused" "--output fifo: not a regular file (a FIFO)" -- \
  "$classify" --model b.tnet --labelbin b.txt --image "$photo" --output fifo
[ -p fifo ] && pass "the FIFO is still a FIFO" || fail "fifo: $(ls -l fifo)"
if command -v python3 >/dev/null && python3 -c "import socket; socket.socket(socket.AF_UNIX).bind('sock')" 2>/dev/null; then
  refused "a socket as --model is refused" "--model sock: not a regular file (a socket)" -- "$train" "${tiny[@]}" --model sock "${outs[@]}"
  [ -S sock ] && pass "the socket is still a socket" || fail "sock: $(ls -l sock)"
else
  echo "skipped: a socket as an output (no python3 to make one)"
fi
# A private device node with /dev/null's numbers, where the system lets this user make one.
mkdir devices
if mknod devices/null c 1 3 2>mknod.err; then
  refused "a private character device as --plot is refused" "--plot devices/null: not a regular file (a character device)" -- \
    "$train" "${tiny[@]}" --model o.tnet --labelbin o.txt --plot devices/null --history o.csv
  refused "a private character device as --onnx is refused" "--onnx devices/null: not a regular file (a character device)" -- \
    "$export_" --model b.tnet --labelbin b.txt --onnx devices/null
  [ -c devices/null ] && pass "the private device is still a character device" || fail "devices/null: $(ls -l devices/null)"
else
  echo "skipped: a private device node (mknod c 1 3: $(cat mknod.err))"
fi
# The machine's own devices, only once a FIFO and a private device were refused (so that a
# regression cannot replace /dev/null here).
if [ "$failures" = "$canary" ] && [ -c /dev/null ] && [ -c /dev/full ]; then
  refused "--plot /dev/null is refused" "--plot /dev/null: not a regular file (a character device); outputs must be regular files or new names" -- \
    "$train" "${tiny[@]}" --model o.tnet --labelbin o.txt --plot /dev/null --history o.csv
  refused "--model /dev/full is refused" "--model /dev/full: not a regular file (a character device)" -- \
    "$train" "${tiny[@]}" --model /dev/full "${outs[@]}"
  refused "fashion_classify --output /dev/null is refused" "--output /dev/null: not a regular file (a character device)" -- \
    "$classify" --model b.tnet --labelbin b.txt --image "$photo" --output /dev/null
  [ -c /dev/null ] && [ -c /dev/full ] && pass "/dev/null and /dev/full are still character devices" || fail "/dev/null: $(ls -l /dev/null /dev/full)"
else
  echo "skipped: /dev/null and /dev/full (a FIFO or a private device was not refused)"
fi

# ---- 2. No two outputs, and no output and an input, are one file ----
refused "--labelbin equal to --model" "--model m.tnet and --labelbin m.tnet are the same file" -- \
  "$train" "${tiny[@]}" --model m.tnet --labelbin m.tnet --plot o.png --history o.csv
refused "--plot equal to --history" "--plot same.csv and --history same.csv are the same file: one output would overwrite the other" -- \
  "$train" "${tiny[@]}" --model o.tnet --labelbin o.txt --plot same.csv --history same.csv
refused "--plot and --history, one of them spelt ./NAME" "--plot x.csv and --history ./x.csv are the same file" -- \
  "$train" "${tiny[@]}" --model o.tnet --labelbin o.txt --plot x.csv --history ./x.csv
refused "--history equal to the --val-list given" "--history b.val.txt and --val-list b.val.txt are the same file: the output would overwrite the input" -- \
  "$train" "${tiny[@]}" --model o.tnet --labelbin o.txt --plot o.png --history b.val.txt --val-list b.val.txt
refused "--val-list equal to the validation list the run writes beside the model" "--model's validation list b.val.txt and --val-list b.val.txt are the same file" -- \
  "$train" "${tiny[@]}" --model b.tnet --labelbin o.txt --plot o.png --history o.csv --val-list b.val.txt
refused "--history equal to the model's checkpoint" "--model's checkpoint o.tnet.checkpoint and --history o.tnet.checkpoint are the same file" -- \
  "$train" "${tiny[@]}" --model o.tnet --labelbin o.txt --plot o.png --history o.tnet.checkpoint
refused "--labelbin equal to a synthetic example the run writes" \
  "--labelbin synthetic_examples/red_dress.png and the synthetic example synthetic_examples/red_dress.png are the same file" -- \
  "$train" "${tiny[@]}" --model o.tnet --labelbin synthetic_examples/red_dress.png --plot o.png --history o.csv
echo "old history" >h.csv && ln h.csv hard.png
refused "--plot a hard link of --history" "--plot hard.png and --history h.csv are the same file" -- \
  "$train" "${tiny[@]}" --model o.tnet --labelbin o.txt --plot hard.png --history h.csv
refused "fashion_classify --output MODEL" "--model b.tnet and --output b.tnet are the same file: the output would overwrite the input" -- \
  "$classify" --model b.tnet --labelbin b.txt --image "$photo" --output b.tnet
refused "fashion_classify --output LABELS" "--labelbin b.txt and --output b.txt are the same file" -- \
  "$classify" --model b.tnet --labelbin b.txt --image "$photo" --output b.txt
cp "$photo" photo.png && ln photo.png other_name.png
refused "fashion_classify: a labelled copy over a second name of a photo" "--image other_name.png and the labelled copy of photo.png" -- \
  sh -c "ln other_name.png photo_labeled.png && trap 'rm -f photo_labeled.png' EXIT && '$classify' --model b.tnet --labelbin b.txt --image other_name.png --image photo.png"
refused "fashion_export --onnx LABELS" "--labelbin b.txt and --onnx b.txt are the same file" -- \
  "$export_" --model b.tnet --labelbin b.txt --onnx b.txt

# ---- 3. A run's state is never destroyed silently ----
"$train" --synthetic-count 4 --epochs 2 --image-size 64 --batch-size 4 --threads 1 --model r.tnet "${outs[@]}" --interrupt-after-steps 2 >r.log 2>&1
status=$?
[ $status = 130 ] && [ -e r.tnet.checkpoint ] && pass "an interrupted run keeps its checkpoint" || fail "interruption: status $status, $(tail -3 r.log)"
refused "a fresh run over an unfinished run's checkpoint is refused" "r.tnet.checkpoint holds a run that did not finish: continue it with --resume" -- \
  "$train" --synthetic-count 4 --epochs 2 --image-size 64 --batch-size 4 --threads 1 --model r.tnet "${outs[@]}"
refused "a refused --resume (another seed) writes nothing: no split list, no example" "resume with the same options" -- \
  "$train" --synthetic-count 4 --epochs 2 --image-size 64 --batch-size 4 --threads 1 --model r.tnet "${outs[@]}" --resume --seed 7
refused "--resume with --overwrite" "--overwrite discards it: give one" -- \
  "$train" --synthetic-count 4 --epochs 2 --image-size 64 --batch-size 4 --threads 1 --model r.tnet "${outs[@]}" --resume --overwrite
cp r.tnet.checkpoint r.tnet.checkpoint-average-9
"$train" --synthetic-count 4 --epochs 2 --image-size 64 --batch-size 4 --threads 1 --model r.tnet "${outs[@]}" --overwrite >r2.log 2>&1
status=$?
[ $status = 0 ] && [ -s r.tnet ] && [ -z "$(ls | grep '^r.tnet.checkpoint')" ] && pass "--overwrite starts afresh, discarding the checkpoint and its averages" ||
  fail "--overwrite: status $status, $(tail -3 r2.log), left: $(ls | grep '^r.tnet')"
# Two trainers of one model: the second is refused while the first runs. The first, sent SIGHUP,
# saves a checkpoint as on Ctrl-C.
"$train" --synthetic-count 20 --epochs 1000 --image-size 64 --batch-size 4 --threads 1 --model l.tnet --labelbin l.txt --plot l.png \
  --history l.csv >l.log 2>&1 &
first=$!
for _ in $(seq 600); do [ -e l.csv ] && break; sleep 0.1; done
"$train" "${tiny[@]}" --model l.tnet --labelbin l2.txt --plot l2.png --history l2.csv >l2.log 2>&1
status=$?
[ $status = 2 ] && grep -qF "another fashion_train is training l.tnet (it holds the lock l.tnet.lock)" l2.log && [ -z "$(ls | grep '^l2\.[tpc]')" ] &&
  pass "a second trainer of the same model is refused while the first runs, and writes nothing" ||
  fail "second trainer: status $status, $(tail -2 l2.log), $(ls | grep '^l2')"
kill -HUP $first
wait $first
status=$?
[ $status = 130 ] && grep -q "checkpoint saved to l.tnet.checkpoint" l.log && [ -e l.tnet.checkpoint ] &&
  pass "SIGHUP (a closed terminal) stops training with a checkpoint, as Ctrl-C does" || fail "SIGHUP: status $status, $(tail -3 l.log)"

# ---- 4. The writability check opens and removes no file of the user's ----
echo "the user's notes" >w.tnet.write-test
echo "the link's target" >w-target.txt
ln -s w-target.txt w.txt.write-test
"$train" "${tiny[@]}" --model w.tnet --labelbin w.txt --plot w.png --history w.csv >w.log 2>&1
status=$?
[ $status = 0 ] && [ "$(cat w.tnet.write-test)" = "the user's notes" ] && [ -L w.txt.write-test ] && [ "$(cat w-target.txt)" = "the link's target" ] &&
  [ -z "$(ls -A | grep tnet-probe)" ] && pass "a user's PATH.write-test, and a link of that name, are left as they were; no probe left" ||
  fail "writability probe: status $status, $(ls -lA | grep -e write-test -e tnet-probe) '$(cat w-target.txt)'"

# ---- 7. Early, whole checks ----
refused "--model \"\" is refused" "--model needs a non-empty value" -- "$train" "${tiny[@]}" --model "" "${outs[@]}"
refused "--dataset \"\" is refused, not read as the synthetic set" "--dataset needs a non-empty value" -- "$train" "${tiny[@]}" --dataset "" "${outs[@]}"
refused "fashion_classify --image \"\" is refused" "--image needs a non-empty value" -- "$classify" --model b.tnet --labelbin b.txt --image ""
refused "fashion_export --onnx \"\" is refused" "--onnx needs a non-empty value" -- "$export_" --model b.tnet --labelbin b.txt --onnx ""
long=$(printf 'm%.0s' $(seq 225)).tnet
refused "a 230-byte model name is refused up front (its checkpoint's name would be too long)" \
  "--model's checkpoint $long.checkpoint: the name is too long: 241 bytes" -- "$train" "${tiny[@]}" --model "$long" "${outs[@]}"
# A closed stdout: training goes on, the files are written, exit 0, nothing on stderr (but the
# warning that so short a run did not learn).
"$train" --synthetic-count 4 --epochs 2 --image-size 64 --batch-size 4 --threads 1 --model p.tnet --labelbin p.txt --plot p.png \
  --history p.csv 2>p.err | head -1 >/dev/null
status=${PIPESTATUS[0]}
[ $status = 0 ] && [ -s p.tnet ] && [ -s p.png ] && ! grep -v ": warning: " p.err && pass "| head -1: training finishes quietly with its files written" ||
  fail "| head -1: status $status, $(ls p.* 2>&1 | tr '\n' ' '), stderr '$(cat p.err)'"
# A file past `ulimit -f` (200 KiB: the checkpoint) fails with a message, not SIGXFSZ.
(ulimit -f 200 && exec "$train" "${tiny[@]}" --model f.tnet --labelbin f.txt --plot f.png --history f.csv) >f.log 2>&1
status=$?
[ $status = 1 ] && grep -q "f.tnet.checkpoint: cannot write the model file: write failed: File too large" f.log && [ -z "$(ls -A | grep tnet-tmp)" ] &&
  pass "a file past ulimit -f: a message naming it, exit 1, no temporary file left" ||
  fail "ulimit -f: status $status, $(tail -2 f.log), $(ls -A | grep tnet-tmp)"
# Out of memory: said in words (16 GB of synthetic pictures, within a 4 GB address space).
(ulimit -v 4000000 && exec "$train" --synthetic-count 100000 --image-size 96 --model big.tnet "${outs[@]}") >big.log 2>&1
status=$?
[ $status = 1 ] && grep -q "^fashion_train: out of memory: an allocation failed with [0-9]* MB taken at the peak" big.log &&
  pass "out of memory is a message, exit 1" || fail "out of memory: status $status, $(tail -2 big.log)"

finish
