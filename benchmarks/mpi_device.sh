#!/usr/bin/env bash
# bench_mpi at 1 to 8 processes on a lent 16-core device machine (benchmarks/RESULTS.md), with
# the Open MPI of its image and Debian's orterun (a thin front of libopen-rte). Prepared here:
#   cmake -S . -B build-v4 -DCMAKE_BUILD_TYPE=Release -DTNET_MPI=ON -DCMAKE_CXX_FLAGS=-march=x86-64-v4 \
#     -DTNET_BUILD_TESTS=OFF -DTNET_BUILD_EXAMPLES=OFF && cmake --build build-v4 --target bench_mpi
#   mkdir -p .device/bin && cp build-v4/benchmarks/bench_mpi .device/bench_mpi-v4 && cp /usr/bin/orterun .device/bin/
# (.device ignored by git), then run there with .device carried: bash benchmarks/mpi_device.sh
D=$PWD/.device
for v in $(env | grep -o -E "^(PMIX|PMI|SLURM|OMPI|PRTE|LD_BIND)[A-Za-z0-9_]*"); do unset $v; done
command -v mpirun >/dev/null || cp $D/bin/orterun /usr/local/bin/mpirun
# As root, without ssh, in a VM without cross-process memory access.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mca_base_component_show_load_errors=0
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_WAIT_POLICY=passive OMPI_MCA_plm_rsh_agent=/bin/false
M=(mpirun --oversubscribe --bind-to none --mca btl self,vader)
run() { echo "== np $1 threads $2 batch $3 $4"; timeout 60 "${M[@]}" -np $1 $D/bench_mpi-v4 --threads $2 --batch $3 --steps 20 $4 | tr '\n' ' '; echo; }
for round in 1 2; do
  run 1 2 32; run 2 1 32; run 2 1 32 --no-overlap
  run 1 16 32; run 2 8 32; run 4 4 32; run 8 2 32
  run 1 16 128; run 2 8 128; run 4 4 128; run 8 2 128; run 8 2 128 --no-overlap
done
