#!/usr/bin/env bash
# The MPI watchdog (tnet::mpi::Group::set_timeout): 3 processes, of which process 1 stops itself
# (SIGSTOP) after training; the other two wait for it in a sum and must, within 5 s (the limit)
# plus the few seconds they wait for answers, end the run: mpirun exits non-zero, a message names
# process 1 and the limit, and no process is left behind. While they wait they take next to no
# CPU (under 10 % of a core each over 2 s).
# Usage: mpi_stall.sh MPIRUN MPI_CHECK
set -uo pipefail
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1
mpirun=$1 mpi_check=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
pass() { echo "ok: $1"; }
fail() { failures=$((failures + 1)); echo "FAILED: $1"; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

start=$SECONDS
timeout -s KILL 120 "$mpirun" --oversubscribe --allow-run-as-root -np 3 "$mpi_check" --stop-rank 1 --timeout 5 >"$work/out.txt" 2>&1 &
launcher=$!
# Once process 1 has stopped, the CPU time the other two take while they wait.
for _ in $(seq 600); do grep -q "rank 1 stops itself" "$work/out.txt" && break; sleep 0.1; done
pid() { sed -n "s/^rank $1 pid \([0-9]*\)$/\1/p" "$work/out.txt"; }
waiting=("$(pid 0)" "$(pid 2)")
stopped=$(pid 1)
sleep 0.5
before=($(ticks "${waiting[0]}") $(ticks "${waiting[1]}"))
sleep 2
after=($(ticks "${waiting[0]}") $(ticks "${waiting[1]}"))
hz=$(getconf CLK_TCK)
for i in 0 1; do
  used=$((after[i] - before[i]))
  if [ "${waiting[i]}" ] && [ $((used * 100)) -lt $((hz * 2 * 10)) ]; then pass "a waiting process took $used/$hz s of CPU in 2 s"
  else fail "a waiting process (pid '${waiting[i]}') took $used/$hz s of CPU in 2 s"; fi
done
wait $launcher
status=$?
elapsed=$((SECONDS - start))
cat "$work/out.txt"
[ "$status" != 0 ] && [ "$status" != 137 ] && pass "mpirun exits with status $status" || fail "mpirun's status is $status (137: killed after 120 s)"
grep -q "waited 5.* s in a sum .* without progress (the limit is 5 s): waiting for process 1, which did not answer" "$work/out.txt" &&
  pass "the message names process 1 and the limit" || fail "no message naming process 1 and the limit"
grep -q "FAILED" "$work/out.txt" && fail "a process went on without process 1"
[ $elapsed -lt 60 ] && pass "the run ended after $elapsed s" || fail "the run took $elapsed s"
left=0
for p in "$stopped" "${waiting[@]}"; do
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null && [ "$(ps -o stat= -p "$p" | cut -c1)" != Z ]; then
    left=$((left + 1))
    kill -KILL "$p"
  fi
done
[ -n "$stopped" ] && [ $left = 0 ] && pass "no process left behind" || fail "$left processes left behind (killed now), or process 1's pid not printed"
[ $failures = 0 ] && echo "all passed" || echo "$failures failed"
[ $failures = 0 ]
