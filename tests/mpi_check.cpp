// Data-parallel training over MPI against one process training on the whole batch. Run as
//   mpirun -np N mpi_check [--no-overlap]
// Every process trains a network on its slice of each global batch (tnet::mpi::Group) and, beside
// it, a reference network on the whole batch, as one process would. At every step the loss and
// the gradients must agree within 1e-5 (the loss relative to its size; the gradients as the
// largest difference over the largest gradient), and after six steps of SGD with momentum every
// weight and batch-norm statistic within 1e-5 (relative to its size, at least 1); every process
// must hold the same bits. (Adam is left out: its first steps move a weight by the learning rate
// whatever the size of its gradient, so a gradient of 1e-12 against -1e-12 moves it two ways.) The net has every
// layer whose result depends on the batch: batch normalisation after a convolution and after a
// dense layer (statistics over the global batch), dropout (the global batch's masks). Batches of
// 7 and 13 do not divide evenly. Exits non-zero, saying where, when anything differs.
//
//   mpirun -np N mpi_check --stop-rank R --timeout S
// tests the watchdog (tests/mpi_stall.sh): the same checks with a limit of S seconds on every
// collective, then process R prints its process id and stops itself (SIGSTOP), and the others
// wait for it in a sum; they must end the run (MPI_Abort) after S seconds, naming process R.
#include <unistd.h>

#include <csignal>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <type_traits>
#include <tnet/dist/mpi.hpp>
#include <tnet/tnet.hpp>
#include <vector>

namespace {

// Multi-label (binary cross-entropy) and single-label (categorical cross-entropy).
template <class Last>
using Net =
    tnet::Sequential<tnet::Input<8, 8, 3>, tnet::Conv2D<6, 3>, tnet::BatchNorm, tnet::ReLU, tnet::MaxPool2D<2>, tnet::Dropout<0.25f>,
                     tnet::Flatten, tnet::Dense<12>, tnet::BatchNorm, tnet::ReLU, tnet::Dropout<0.5f>, tnet::Dense<tnet::dynamic>, Last>;
constexpr int labels = 5;
constexpr double tolerance = 1e-5;

double difference(double a, double b) { return std::abs(a - b) / std::max(1.0, std::abs(b)); }

// Trains Net<Last> both ways; returns the number of failures (each said on stderr).
template <class Last>
int check(tnet::mpi::Group& group, const char* name) {
  using Net = ::Net<Last>;
  int failures = 0;
  auto fail = [&](const std::string& what) {
    if (++failures <= 10) std::cerr << "rank " << group.rank() << ", " << name << ": " << what << "\n";
  };
  {
    Net shared(tnet::Outputs{labels}, 7), whole(tnet::Outputs{labels}, 7);
    if (!tnet::same_everywhere(group, tnet::mpi::checksum(shared.parameters().values))) fail("the initial weights differ");
    tnet::SGD sgd_shared({.lr = 0.05, .momentum = 0.9}), sgd_whole({.lr = 0.05, .momentum = 0.9});
    const int batches[] = {7, 13, 8, 7, 13, 8};
    double worst_gradient = 0;
    for (int step = 0; step < 6; ++step) {
      const int global = batches[step];
      // The same global batch on every process.
      const tnet::Rng rng = tnet::Rng(1234).derive(std::uint64_t(step));
      std::vector<float> x(std::size_t(global) * Net::input_size), y(std::size_t(global) * labels);
      for (std::size_t i = 0; i < x.size(); ++i) x[i] = rng.symmetric(i, 2.0f);
      for (std::size_t i = 0; i < y.size(); ++i) y[i] = rng.derive(1).uniform(i) < 0.4f ? 1.0f : 0.0f;
      if constexpr (std::is_same_v<Last, tnet::Softmax>)  // one class a sample
        for (int n = 0; n < global; ++n)
          for (int l = 0; l < labels; ++l) y[std::size_t(n * labels + l)] = l == int(rng.derive(2).bits(std::uint64_t(n)) % labels);
      const tnet::Shard shard = group.shard(global);
      const std::span<const float> my_x =
          std::span(x).subspan(std::size_t(shard.offset) * Net::input_size, std::size_t(shard.count) * Net::input_size);
      const std::span<const float> my_y = std::span(y).subspan(std::size_t(shard.offset) * labels, std::size_t(shard.count) * labels);
      const double loss = shared.compute_gradients(my_x, my_y, shard);
      const double reference = whole.compute_gradients(x, y, global);
      if (difference(loss, reference) > tolerance)
        fail("step " + std::to_string(step) + ": loss " + std::to_string(loss) + ", one process " + std::to_string(reference));
      const auto g = shared.parameters().grads, h = whole.parameters().grads;
      double largest = 0, apart = 0;
      for (std::size_t i = 0; i < g.size(); ++i) {
        largest = std::max(largest, double(std::abs(h[i])));
        apart = std::max(apart, double(std::abs(g[i] - h[i])));
      }
      if (!(apart <= tolerance * largest))
        fail("step " + std::to_string(step) + ": gradients differ by " + std::to_string(apart) + ", the largest is " +
             std::to_string(largest));
      worst_gradient = std::max(worst_gradient, apart / largest);
      sgd_shared.step(shared.parameters());
      sgd_whole.step(whole.parameters());
    }
    const auto a = shared.parameters(), b = whole.parameters();
    double worst = 0;
    for (std::size_t i = 0; i < a.values.size(); ++i) worst = std::max(worst, difference(a.values[i], b.values[i]));
    if (worst > tolerance) fail("weights differ from one process's by " + std::to_string(worst));
    std::vector<float> state_shared, state_whole;
    shared.visit_state([&](const std::string&, auto span) {
      for (auto v : span) state_shared.push_back(float(v));
    });
    whole.visit_state([&](const std::string&, auto span) {
      for (auto v : span) state_whole.push_back(float(v));
    });
    double worst_state = 0;
    for (std::size_t i = 0; i < state_shared.size(); ++i) worst_state = std::max(worst_state, difference(state_shared[i], state_whole[i]));
    if (worst_state > tolerance) fail("batch-norm statistics differ from one process's by " + std::to_string(worst_state));
    if (!tnet::same_everywhere(group, tnet::mpi::checksum(a.values))) fail("the processes' final weights differ");
    if (!tnet::same_everywhere(group, tnet::mpi::checksum(state_shared))) fail("the processes' batch-norm statistics differ");
    if (group.rank() == 0)
      std::cout << name << ", " << group.size() << " processes" << (group.overlaps() ? ", gradients summed during backpropagation" : "")
                << ": gradients within " << worst_gradient << " (relative), weights within " << worst << ", statistics within "
                << worst_state << " of one process's\n";
  }
  return failures;
}

}  // namespace

int main(int argc, char** argv) {
  tnet::mpi::Environment mpi(argc, argv);
  bool overlap = true;
  int stop_rank = -1;
  double timeout = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--no-overlap") == 0) overlap = false;
    else if (std::strcmp(argv[i], "--stop-rank") == 0 && i + 1 < argc) stop_rank = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) timeout = std::atof(argv[++i]);
    else {
      std::cerr << "usage: mpi_check [--no-overlap] [--stop-rank R --timeout SECONDS]\n";
      return 2;
    }
  }
  tnet::mpi::Group group(MPI_COMM_WORLD, overlap);
  if (timeout > 0) group.set_timeout(timeout);
  int failures = 0;
  try {
    failures += check<tnet::Sigmoid>(group, "sigmoid");
    failures += check<tnet::Softmax>(group, "softmax");
  } catch (const std::exception& e) {
    std::cerr << "rank " << group.rank() << ": " << e.what() << "\n";
    group.abort(1);
  }
  if (stop_rank >= 0) {
    std::cout << "rank " << group.rank() << " pid " << getpid() << "\n" << std::flush;
    group.barrier();
    if (group.rank() == stop_rank) {
      std::cout << "rank " << stop_rank << " stops itself" << std::endl;
      std::raise(SIGSTOP);
      std::_Exit(3);  // resumed by mpirun as it ends the run: the others have given up on it
    }
    group.any(failures > 0);  // the stopped process never comes: the watchdog must end the run
    std::cout << "FAILED: rank " << group.rank() << " went on without process " << stop_rank << "\n";
    return 1;
  }
  const bool all_good = !group.any(failures > 0);
  if (group.rank() == 0) std::cout << (all_good ? "OK\n" : "FAILED\n");
  return all_good ? 0 : 1;
}
