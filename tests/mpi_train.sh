#!/usr/bin/env bash
# fashion_train under mpirun, as a user runs it:
# - two processes train the model one process trains: the first step's weights within 1e-5;
#   over three steps the training losses within 1e-3, the validation losses within 3e-3 and the
#   same validation accuracy. (Adam moves a weight by about its learning rate whatever the size
#   of its gradient, so rounding differences in near-zero gradients grow step by step: measured
#   1.6e-4 and 5.9e-4 after three steps, with Winograd's F(4x4, 3x3) in the convolutions;
#   tests/mpi_check.cpp checks the sums themselves, to 1e-6.)
# - two 2-process runs, and two 3-process runs (batches of 16 shared unevenly), give the same
#   model, bit for bit, and one process under mpirun gives the plain run's;
# - an interrupted 2-process run resumes to the uninterrupted model, and resumes in 1 process;
# - a bad option stops every process with one message; processes started unlike are refused; a
#   killed process ends the run instead of leaving the others waiting, and so does a stopped one
#   (SIGSTOP) after --mpi-timeout seconds, with a message naming it.
# - with --cache, 2 processes train the in-memory 2-process model bit for bit, and a process
#   that fails before process 0 has built the cache stops the others instead of leaving them
#   waiting for it.
# Usage: mpi_train.sh BIN_DIR MODEL_DIFF MPIRUN MAKE_LABEL_DATASET
set -uo pipefail
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1
bin=$1 model_diff=$2 mpirun=$3 make_label_dataset=$4
train="$bin/fashion_train" classify="$bin/fashion_classify"
mpi=("$mpirun" --oversubscribe --allow-run-as-root)
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"
# run NAME [mpirun options --] fashion_train options: trains into NAME.tnet etc.
run() {
  local name=$1
  shift
  local launcher=()
  if [ "${1:-}" = -np ]; then launcher=("${mpi[@]}" -np "$2"); shift 2; fi
  "${launcher[@]}" "$train" --synthetic-count 20 --image-size 64 --model "$name.tnet" --labelbin "$name.txt" --plot "$name.png" \
    --history "$name.csv" "$@" >"$name.log" 2>&1
}
# The probabilities fashion_classify prints for the held-out pictures, to compare models bit for bit.
probabilities() {
  "$classify" --model "$1.tnet" --labelbin "$1.txt" --image synthetic_examples --json --output "out_$1" 2>/dev/null |
    sed 's/"output": "[^"]*"//'
}
# close A.csv B.csv T V: every epoch's training loss within T and validation loss within V
# (relative), and the same validation accuracy.
close() {
  paste -d, "$1" "$2" | awk -F, -v t="$3" -v v="$4" 'function far(a, b, t) { d = a - b; if (d < 0) d = -d; return d > t * b }
    NR > 1 { h = NF / 2; if (far($2, $(h + 2), t) || far($4, $(h + 4), v) || $5 != $(h + 5)) bad = 1; n++ } END { exit (bad || n == 0) }'
}

# One global batch of 96 a step, no augmentation: 1 process against 2.
exact=(--batch-size 96 --no-augment --average-epochs 0)
run one1 --epochs 1 "${exact[@]}" --threads 2
run two1 -np 2 --epochs 1 "${exact[@]}"
grep -q "in each of 2 processes" two1.log && "$model_diff" two1.tnet one1.tnet 1e-5 >diff.txt &&
  pass "after one step, 2 processes' weights and statistics are 1 process's within 1e-5 ($(cat diff.txt))" ||
  fail "one step: $(cat diff.txt) $(tail -3 two1.log)"
run one3 --epochs 3 "${exact[@]}" --threads 2
run two3 -np 2 --epochs 3 "${exact[@]}"
close two3.csv one3.csv 1e-3 3e-3 && pass "three steps' losses agree within 1e-3, validation losses within 3e-3" || fail "losses: $(paste -d' ' one3.csv two3.csv)"

# Augmented, batches of 16 shared unevenly by 3 processes, weights averaged: reproducible.
usual=(--epochs 2 --batch-size 16 --average-epochs 2)
run a -np 3 "${usual[@]}"
run b -np 3 "${usual[@]}"
[ -s a.tnet ] && [ "$(probabilities a)" = "$(probabilities b)" ] && "$model_diff" a.tnet b.tnet 0 >/dev/null &&
  pass "two 3-process runs give the same model, bit for bit" || fail "3-process runs differ: $(tail -3 a.log)"
run plain --epochs 2 --batch-size 16 --threads 1
run single -np 1 --epochs 2 --batch-size 16
[ -s plain.tnet ] && "$model_diff" single.tnet plain.tnet 0 >/dev/null && pass "one process under mpirun is the plain run, bit for bit" ||
  fail "mpirun -np 1 differs from the plain run"
ls *.tnet.checkpoint* >/dev/null 2>&1 && fail "checkpoints left behind: $(ls *.checkpoint*)" || pass "no checkpoint left behind"
[ "$(ls | grep -c '\.tnet-tmp\.')" = 0 ] && pass "no temporary file left behind" || fail "temporary files left: $(ls | grep tnet-tmp)"

# Two 2-process runs: the same model, bit for bit. Then one interrupted after 4 steps (every
# process) and resumed: the uninterrupted model, bit for bit.
run c -np 2 "${usual[@]}"
run c2 -np 2 "${usual[@]}"
[ -s c.tnet ] && "$model_diff" c2.tnet c.tnet 0 >/dev/null && [ "$(cut -d, -f1-7 c.csv)" = "$(cut -d, -f1-7 c2.csv)" ] &&
  pass "two 2-process runs give the same model and history, bit for bit" || fail "2-process runs differ: $(tail -3 c2.log)"
run d -np 2 "${usual[@]}" --interrupt-after-steps 4
status=$?
[ $status = 130 ] && [ -e d.tnet.checkpoint ] && [ ! -e d.tnet ] && grep -q "checkpoint saved" d.log &&
  pass "an interrupted 2-process run saves a checkpoint and exits 130" || fail "interruption: status $status, $(tail -5 d.log)"
run d -np 2 "${usual[@]}" --resume
grep -q "optimizer step 4" d.log && [ "$(probabilities c)" = "$(probabilities d)" ] && "$model_diff" d.tnet c.tnet 0 >/dev/null &&
  pass "the resumed 2-process run ends with the uninterrupted model" || fail "resume: $(tail -5 d.log)"
run e -np 2 "${usual[@]}" --interrupt-after-steps 7
run e "${usual[@]}" --resume --threads 1
status=$?
# Not the same bits: the sums after the resumption are added in another order.
[ $status = 0 ] && grep -q "optimizer step 7" e.log && [ -s e.tnet ] && [ "$(wc -l <e.csv)" = 3 ] &&
  pass "a 2-process checkpoint resumes in 1 process" || fail "resume in 1 process: status $status, $(tail -5 e.log)"

# A bad option: one message, status 2, no file written.
mkdir bad && pushd bad >/dev/null
"${mpi[@]}" -np 2 "$train" --batch-size 1 >out.txt 2>err.txt
status=$?
[ $status = 2 ] && [ "$(grep -c 'cannot be shared by 2 processes' err.txt)" = 1 ] && [ -z "$(ls -A | grep -v -e out.txt -e err.txt)" ] &&
  pass "a batch too small to share: one message, status 2, nothing written" || fail "bad option: status $status, $(cat err.txt)"
"${mpi[@]}" -np 2 "$train" --mpi-timeout 0 >out.txt 2>err.txt
status=$?
[ $status = 2 ] && [ "$(grep -c -- "--mpi-timeout must be a number of seconds above 0, got '0'" err.txt)" = 1 ] &&
  pass "--mpi-timeout 0: one message, status 2" || fail "--mpi-timeout 0: status $status, $(cat err.txt)"
popd >/dev/null

# The image cache under mpirun: process 0 builds it, the others map it; the same model as in memory.
"$make_label_dataset" photos 4 2 6 >/dev/null
folder=(--dataset photos --image-size 64 --epochs 2 --batch-size 8)
run m -np 2 "${folder[@]}"
run n -np 2 "${folder[@]}" --cache photo-cache
[ -s m.tnet ] && grep -q "built the image cache" n.log && "$model_diff" n.tnet m.tnet 0 >/dev/null &&
  pass "2 processes with --cache train the in-memory model, bit for bit" || fail "--cache under mpirun: $(tail -3 n.log)"
# Process 0 refuses an unwritable model path before building the cache; the other, waiting for the
# cache, stops too.
timeout 120 "${mpi[@]}" -np 2 "$train" "${folder[@]}" --cache other-cache --model no-such-folder/m.tnet >w.log 2>&1
status=$?
[ $status = 2 ] && grep -q "cannot write model no-such-folder/m.tnet" w.log && [ ! -e other-cache ] &&
  pass "a process that fails before the cache is built stops the others" || fail "failure before the cache: status $status, $(tail -3 w.log)"

# Processes started unlike (another seed, so other weights and another split): refused.
"${mpi[@]}" -np 1 "$train" --synthetic-count 20 --image-size 64 --epochs 1 --model u.tnet --seed 1 : \
  -np 1 "$train" --synthetic-count 20 --image-size 64 --epochs 1 --model u.tnet --seed 2 >u.log 2>&1
status=$?
[ $status != 0 ] && grep -q "the processes do not start alike" u.log && [ ! -e u.tnet ] &&
  pass "processes started with other options are refused" || fail "unlike processes: status $status, $(tail -5 u.log)"

# A process killed mid-training: the run ends within 30 s with mpirun's message.
("${mpi[@]}" -np 2 "$train" --synthetic-count 40 --image-size 64 --epochs 50 --model k.tnet --labelbin k.txt --plot k.png \
  --history k.csv >k.log 2>&1; echo "status $?" >>k.log) &
for _ in $(seq 100); do grep -q "Epoch 1/50" k.log 2>/dev/null && break; sleep 0.2; done
victim=$(pgrep -f "$train --synthetic-count 40" -n)
kill -9 "$victim"
for _ in $(seq 150); do grep -q "^status" k.log && break; sleep 0.2; done
grep -q "^status [1-9]" k.log && grep -q "exited on signal 9" k.log && [ -z "$(pgrep -f "$train --synthetic-count 40")" ] &&
  pass "a killed process ends the run: $(grep -o 'process rank 1.*signal 9' k.log | head -1)" ||
  fail "killed process: $(tail -5 k.log); still running: $(pgrep -f "$train --synthetic-count 40" -a)"
pkill -9 -f "$train --synthetic-count 40" 2>/dev/null

# A process stopped mid-training (SIGSTOP): with --mpi-timeout 5 the other ends the run, naming it.
("${mpi[@]}" -np 2 "$train" --synthetic-count 40 --image-size 64 --epochs 50 --model s.tnet --labelbin s.txt --plot s.png \
  --history s.csv --mpi-timeout 5 >s.log 2>&1; echo "status $?" >>s.log) &
for _ in $(seq 100); do grep -q "Epoch 1/50" s.log 2>/dev/null && break; sleep 0.2; done
victim=$(pgrep -f "$train --synthetic-count 40 --image-size 64 --epochs 50 --model s.tnet" -n)
kill -STOP "$victim"
for _ in $(seq 150); do grep -q "^status" s.log && break; sleep 0.2; done
grep -q "^status [1-9]" s.log && grep -q "without progress (the limit is 5 s): waiting for process [01], which did not answer" s.log &&
  [ -z "$(pgrep -f "$train --synthetic-count 40 --image-size 64 --epochs 50 --model s.tnet")" ] &&
  pass "a stopped process ends the run after --mpi-timeout: $(grep -o 'waiting for process [01]' s.log | head -1)" ||
  fail "stopped process: $(tail -5 s.log); still running: $(pgrep -f "$train --synthetic-count 40" -a)"
pkill -9 -f "$train --synthetic-count 40" 2>/dev/null

finish
