#!/usr/bin/env bash
# kill -9 at a spread of moments of a short training (inside checkpoint saves, the averaged
# epochs, the final passes and the final save among them), each time running the same command
# again (with --resume once a checkpoint exists): the model it ends with must equal an
# uninterrupted run's bit for bit, and no temporary or checkpoint file may be left. Then Ctrl-C
# late in runs (the final passes among them): the same, after --resume.
# Usage: fault_injection.sh BIN_DIR
set -uo pipefail
# ctest runs this beside other tests on 2 cores: threads that wait should sleep, not spin.
export OMP_WAIT_POLICY=passive
bin=$1
train="$bin/fashion_train" classify="$bin/fashion_classify"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
options=(--epochs 4 --image-size 64 --synthetic-count 40 --average-epochs 2 --labelbin l.txt --plot p.png --history h.csv)
start=$(date +%s%N)
"$train" "${options[@]}" --model ref.tnet >ref.log 2>&1 || { echo "FAILED: the uninterrupted run: $(tail -3 ref.log)"; exit 1; }
whole=$(awk -v ns=$(($(date +%s%N) - start)) 'BEGIN { printf "%.3f", ns / 1e9 }')
echo "an uninterrupted run takes $whole s"
kills=0 attempts=0 completed=0 failures=0
# A finished run's model must equal the uninterrupted one's, and nothing may be left beside it.
check_finished() {
  "$classify" --model run/m.tnet --labelbin run/l.txt --image synthetic_examples --json --output out_run >run.json 2>/dev/null
  sed -i 's/"output": "[^"]*"//' run.json
  local left=$(ls run | grep -e tnet-tmp -e checkpoint)
  completed=$((completed + 1))
  if [ -s ref.json ] && cmp -s ref.json run.json && [ -z "$left" ]; then
    echo "ok: run $completed, killed and resumed, ends with the uninterrupted model; nothing left behind"
  else
    failures=$((failures + 1))
    echo "FAILED: run $completed: models $(cmp -s ref.json run.json && echo equal || echo differ); left behind: '$left'"
    grep -h "fashion_train:" run/attempts.log | sort | uniq -c | head
  fi
  cat run/attempts.log >>all_attempts.log 2>/dev/null
  rm -rf run && mkdir run
}
"$classify" --model ref.tnet --labelbin l.txt --image synthetic_examples --json --output out_ref >ref.json 2>/dev/null
sed -i 's/"output": "[^"]*"//' ref.json
mkdir run
# Moments as fractions of an uninterrupted run's time, from each start; a run that finishes
# before its kill is checked, and the next starts afresh.
for fraction in 0.12 0.25 0.2 0.33 0.18 0.4 0.27 0.22 0.3 0.15 0.35 0.5 0.6 0.7 0.1 0.45 0.28 0.38; do
  resume=()
  [ -e run/m.tnet.checkpoint ] && resume=(--resume)
  (cd run && exec "$train" "${options[@]}" --model m.tnet "${resume[@]}" >>attempts.log 2>&1) &
  pid=$!
  attempts=$((attempts + 1))
  sleep "$(awk -v w="$whole" -v f="$fraction" 'BEGIN { printf "%.3f", w * f }')"
  kill -9 $pid 2>/dev/null && kills=$((kills + 1))
  wait $pid 2>/dev/null
  [ -e run/m.tnet ] && [ ! -e run/m.tnet.checkpoint ] && check_finished
done
# Then to the end, undisturbed.
resume=()
[ -e run/m.tnet.checkpoint ] && resume=(--resume)
(cd run && "$train" "${options[@]}" --model m.tnet "${resume[@]}" >last.log 2>&1) || { echo "FAILED: the last run: $(tail -5 run/last.log)"; exit 1; }
check_finished
# Ctrl-C late in a run (the last epoch, the final passes, the final save): exit 130 with the
# checkpoint kept, or a finished run (also when Ctrl-C came while it printed its report); --resume
# then ends with the same model.
interrupts=0
for fraction in 0.8 0.88 0.94 0.99; do
  (cd run && exec "$train" "${options[@]}" --model m.tnet >>attempts.log 2>&1) &
  pid=$!
  sleep "$(awk -v w="$whole" -v f="$fraction" 'BEGIN { printf "%.3f", w * f }')"
  kill -INT $pid 2>/dev/null
  wait $pid
  status=$?
  if [ $status = 130 ] && [ -e run/m.tnet.checkpoint ]; then
    interrupts=$((interrupts + 1))
    (cd run && "$train" "${options[@]}" --model m.tnet --resume >>attempts.log 2>&1)
  elif [ $status = 130 ] && [ -e run/m.tnet ]; then
    :  # after the model and the labels were written (during the report): finished
  elif [ $status != 0 ]; then
    failures=$((failures + 1))
    echo "FAILED: Ctrl-C at $fraction of a run: status $status, $(ls run)"
  fi
  check_finished
done
echo "$interrupts of 4 Ctrl-C came before the end ($(grep -c "interrupted during the final passes" all_attempts.log) in the final passes)"
echo "$kills kills in $attempts attempts, $completed runs finished"
if [ "$kills" -ge 8 ] && [ "$failures" = 0 ]; then
  echo "$completed passed, 0 failed"
  exit 0
fi
echo "$((completed - failures)) passed, $((failures + (kills < 8))) failed"
exit 1
