// Data-parallel training of SmallerVGGNet (6 labels, 96x96x3) over MPI on random data: images/s
// for the global batch, and where a step's time goes.
//   mpirun -np P bench_mpi [--threads N] [--batch N] [--steps N] [--no-overlap]
// Every process trains on its slice of each global batch (--batch, default 32). Process 0 prints
// `name value` lines: images/s, milliseconds per step, and per step the milliseconds the
// gradient thread spent summing gradients, the part of that the step waited for at the end of
// backpropagation (what overlapping did not hide), and the batch-norm statistics' and loss's
// sums (on the training thread); with the bytes of gradients each process sends per step.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tnet/dist/mpi.hpp>
#include <vector>

#include "fashion/smaller_vgg.hpp"

namespace {
using Net = fashion::SmallerVGGNet<96>;
constexpr int labels = 6;
using Clock = std::chrono::steady_clock;

int positive(const char* flag, const char* value) {
  char* end = nullptr;
  const long n = std::strtol(value, &end, 10);
  if (*end != '\0' || n < 1 || n > 100000) {
    std::fprintf(stderr, "bench_mpi: %s needs a positive integer, got '%s'\n", flag, value);
    std::exit(2);
  }
  return int(n);
}
}  // namespace

int main(int argc, char** argv) {
  tnet::mpi::Environment mpi(argc, argv);
  int batch = 32, steps = 20, threads = 0;
  bool overlap = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--no-overlap") overlap = false;
    else if (i + 1 < argc && arg == "--batch") batch = positive("--batch", argv[++i]);
    else if (i + 1 < argc && arg == "--steps") steps = positive("--steps", argv[++i]);
    else if (i + 1 < argc && arg == "--threads") threads = positive("--threads", argv[++i]);
    else {
      std::fprintf(stderr, "usage: mpirun -np P bench_mpi [--threads N] [--batch N] [--steps N] [--no-overlap]\n");
      return 2;
    }
  }
  if (threads > 0) tnet::set_num_threads(threads);
  tnet::mpi::Group group(MPI_COMM_WORLD, overlap);
  if (batch < group.size()) {
    if (group.rank() == 0) std::fprintf(stderr, "bench_mpi: --batch %d is smaller than the %d processes\n", batch, group.size());
    return 2;
  }
  auto net = std::make_unique<Net>(tnet::Outputs{labels}, 42);
  tnet::Adam adam;
  const tnet::Shard shard = group.shard(batch);
  std::vector<float> x(std::size_t(shard.count) * Net::input_size), y(std::size_t(shard.count) * labels);
  const tnet::Rng rng(7);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = rng.uniform(i);
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = rng.derive(1).uniform(i) < 0.33f ? 1.0f : 0.0f;

  net->train_step(x, y, shard, adam);  // warm-up: buffers and the gradient thread's scratch
  group.barrier();
  const double gradient0 = group.gradient_seconds(), wait0 = group.wait_seconds(), statistics0 = group.statistics_seconds();
  const auto start = Clock::now();
  for (int s = 0; s < steps; ++s) net->train_step(x, y, shard, adam);
  group.barrier();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  // Process 0's figures; every process does the same work.
  const double per_step = 1000.0 / steps;
  if (group.rank() == 0) {
    const double sent = double(net->trainable_count()) * sizeof(float) * 2.0 * (group.size() - 1) / group.size();
    std::printf("processes %d\nthreads_per_process %d\nglobal_batch %d\noverlap %s\n", group.size(), tnet::num_threads(), batch,
                group.overlaps() ? "yes" : "no");
    std::printf("train_images_per_s %.1f\nstep_ms %.2f\n", batch * steps / seconds, seconds * per_step);
    std::printf("gradient_sum_ms %.2f\ngradient_wait_ms %.2f\nstatistics_sum_ms %.2f\ngradient_mb_sent_per_step %.1f\n",
                (group.gradient_seconds() - gradient0) * per_step, (group.wait_seconds() - wait0) * per_step,
                (group.statistics_seconds() - statistics0) * per_step, sent / 1e6);
  }
  return 0;
}
