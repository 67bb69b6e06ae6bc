# Sourced by the shell tests of the programs (fashion_cli.sh, fashion_arch.sh, outputs.sh,
# mpi_train.sh): a scratch folder they run in, removed on exit; pass / fail counting and the
# summary that is the script's status; expect_error for usage errors.
# ctest runs these beside other tests on 2 cores: threads that wait should sleep, not spin.
export OMP_WAIT_POLICY=passive
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
failures=0 passed=0
pass() { passed=$((passed + 1)); echo "ok: $1"; }
fail() { failures=$((failures + 1)); echo "FAILED: $1"; }
# The counts, and the script's status: 0 when nothing failed.
finish() {
  echo "$passed passed, $failures failed"
  [ $failures = 0 ]
}

# expect_error NAME STATUS MESSAGE -- COMMAND...: COMMAND exits with STATUS, prints MESSAGE on
# stderr, and leaves no file behind in an empty folder (but a folder named empty a test made).
expect_error() {
  local name=$1 status=$2 message=$3
  shift 4
  mkdir -p "$work/err" && rm -rf "$work/err"/* && pushd "$work/err" >/dev/null
  "$@" >out.txt 2>err.txt
  local got=$?
  local left=$(ls -A | grep -v -e '^out.txt$' -e '^err.txt$' -e '^empty$' | tr '\n' ' ')
  if [ "$got" = "$status" ] && grep -qF -- "$message" err.txt && [ -z "$left" ]; then
    pass "$name"
  else
    fail "$name: status $got (want $status), stderr '$(cat err.txt)', files left: '$left'"
  fi
  popd >/dev/null
}
