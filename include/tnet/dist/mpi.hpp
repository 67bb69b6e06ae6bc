// tnet/dist/mpi.hpp: data-parallel training over MPI (optional: needs <mpi.h>; link MPI yourself,
// e.g. find_package(MPI COMPONENTS CXX) and MPI::MPI_CXX; tnet's own programs with -DTNET_MPI=ON).
//
//   tnet::mpi::Environment mpi(argc, argv);     // MPI_Init_thread ... MPI_Finalize
//   tnet::mpi::Group group;                     // every process of the run
//   Net net(seed);                              // the same seed everywhere: the same weights
//   if (!tnet::same_everywhere(group, tnet::mpi::checksum(net.parameters().values))) ...;  // they differ
//   for (...) {                                 // each process walks the same global batches
//     const tnet::Shard shard = group.shard(global_batch);
//     // x, y: samples [shard.offset, shard.offset + shard.count) of the global batch
//     const double loss = net.train_step(x, y, shard, adam);   // the global batch's loss
//   }
//
// Every sum is deterministic: values are added in rank order, the same way on every process, so
// a run is reproducible for a given process count and every process keeps bit-identical weights.
// Gradients are summed layer by layer on a thread of their own while backpropagation goes on
// below (a reduce-scatter then an all-gather of the layer's gradients, both plain data movement,
// with the additions in between done in rank order); batch-normalisation statistics and the loss,
// a few numbers each, with an all-gather added up in rank order.
//
// A process that fails calls abort(): MPI ends the others rather than leaving them waiting in a
// collective. A process that dies is noticed by mpirun, which ends the rest.
#pragma once

#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1  // the C API only
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../core/hash.hpp"
#include "../core/reducer.hpp"

namespace tnet::mpi {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
inline void check(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw Error(std::string("MPI: ") + call + " failed: " + std::string(text, std::size_t(length)));
}

// Waits for a non-blocking operation, yielding the core between polls: MPI's blocking calls poll
// without pause, which on a machine whose cores all train takes a core from the training threads
// while the other processes catch up; each poll also moves the transfer on.
inline void wait(MPI_Request& request, const char* call) {
  for (;;) {
    int done = 0;
    check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), call);
    if (done) return;
    std::this_thread::yield();
  }
}
}  // namespace detail

/// MPI for the life of the object: initialised with the thread support the gradient thread needs
/// (MPI_THREAD_MULTIPLE; with less, gradients are summed after backpropagation instead), and
/// finalised at its end. Errors are returned, not fatal, so that they become exceptions.
class Environment {
 public:
  Environment(int& argc, char**& argv) {
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (!initialised) {
      detail::check(MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &threads_), "MPI_Init_thread");
      owner_ = true;
    } else {
      MPI_Query_thread(&threads_);
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
      MPI_Comm_size(node, &local_size_);
      MPI_Comm_free(&node);
    }
  }
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;
  ~Environment() {
    if (owner_) MPI_Finalize();
  }
  int rank() const { return rank_; }
  int size() const { return size_; }
  /// Processes of the run on this machine (they share its cores).
  int local_size() const { return local_size_; }
  /// Whether MPI lets the gradient thread call it while the main thread does too.
  bool multithreaded() const { return threads_ >= MPI_THREAD_MULTIPLE; }

 private:
  bool owner_ = false;
  int threads_ = MPI_THREAD_SINGLE, rank_ = 0, size_ = 1, local_size_ = 1;
};

/// Whether this process was started by an MPI launcher (mpirun, mpiexec, srun): a program can then
/// take part in a run of several processes, and otherwise need not initialise MPI at all.
inline bool launched() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"})
    if (std::getenv(name)) return true;
  return false;
}

/// A fingerprint of an array's bits, to check that every process holds the same (same_everywhere).
inline std::uint64_t checksum(std::span<const float> values) {
  return tnet::detail::fnv1a64(reinterpret_cast<const char*>(values.data()), values.size_bytes());
}

/// The processes of a communicator (every process of the run by default) as a tnet::Reducer.
class Group final : public Reducer {
 public:
  /// overlap = false sums the gradients after backpropagation, on the calling thread (to measure
  /// what overlapping saves); so it is without MPI_THREAD_MULTIPLE.
  explicit Group(MPI_Comm comm = MPI_COMM_WORLD, bool overlap = true) {
    // Separate communicators keep the gradient thread's collectives apart from the main thread's.
    detail::check(MPI_Comm_dup(comm, &main_), "MPI_Comm_dup");
    detail::check(MPI_Comm_dup(comm, &gradients_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(main_, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(gradients_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(main_, &rank_);
    MPI_Comm_size(main_, &size_);
    int threads = MPI_THREAD_SINGLE;
    MPI_Query_thread(&threads);
    if (overlap && threads >= MPI_THREAD_MULTIPLE && size_ > 1) worker_ = std::thread([this] { work(); });
  }
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;
  ~Group() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (worker_.joinable()) worker_.join();
    MPI_Comm_free(&gradients_);
    MPI_Comm_free(&main_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  /// Whether gradients are summed while backpropagation goes on.
  bool overlaps() const { return worker_.joinable(); }

  /// This process's slice of a global batch (tnet::shard_of), with this group as its reducer.
  Shard shard(int global_batch) { return shard_of(global_batch, rank_, size_, this); }

  void sum(std::span<double> values) override {
    if (size_ == 1 || values.empty()) return;
    const auto start = std::chrono::steady_clock::now();
    const int n = int(values.size());
    gathered_.resize(values.size() * std::size_t(size_));
    MPI_Request request;
    detail::check(MPI_Iallgather(values.data(), n, MPI_DOUBLE, gathered_.data(), n, MPI_DOUBLE, main_, &request), "MPI_Iallgather");
    detail::wait(request, "MPI_Iallgather");
    for (int i = 0; i < n; ++i) {
      double total = gathered_[std::size_t(i)];
      for (int r = 1; r < size_; ++r) total += gathered_[std::size_t(r) * std::size_t(n) + std::size_t(i)];
      values[std::size_t(i)] = total;
    }
    statistics_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  /// The sum of one number over the processes.
  double sum(double value) {
    sum(std::span(&value, 1));
    return value;
  }
  /// Whether `flag` is set on any process (to stop together, say).
  bool any(bool flag) { return sum(flag ? 1.0 : 0.0) > 0.0; }

  void gradients_ready(std::span<float> grads) override {
    if (size_ == 1 || grads.empty()) return;
    if (!worker_.joinable()) {  // no thread support: summed in finish_gradients
      pending_.push_back(grads);
      return;
    }
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(grads);
      ++outstanding_;
    }
    wake_.notify_all();
  }

  void finish_gradients() override {
    if (size_ == 1) return;
    const auto start = std::chrono::steady_clock::now();
    if (!worker_.joinable()) {
      for (std::span<float> grads : pending_) sum_gradients(grads);
      pending_.clear();
    } else {
      std::unique_lock lock(mutex_);
      done_.wait(lock, [this] { return outstanding_ == 0; });
      queue_.clear();  // keeps its capacity: the next step allocates nothing
      taken_ = 0;
      if (failure_) std::rethrow_exception(std::exchange(failure_, nullptr));
    }
    wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  /// Waits for every process.
  void barrier() { detail::check(MPI_Barrier(main_), "MPI_Barrier"); }

  /// Ends every process of the run with `code`: what a process that cannot go on calls, so that
  /// the others do not wait for it forever.
  [[noreturn]] void abort(int code) {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::abort();
  }

  /// Seconds spent summing gradients on the gradient thread, waiting for them at the end of
  /// backpropagation (what overlapping did not hide), and summing statistics and losses.
  double gradient_seconds() const {
    std::lock_guard lock(mutex_);
    return gradient_seconds_;
  }
  double wait_seconds() const { return wait_seconds_; }
  double statistics_seconds() const { return statistics_seconds_; }

 private:
  void work() {
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [this] { return stopping_ || taken_ < queue_.size(); });
      if (taken_ == queue_.size()) return;
      const std::span<float> grads = queue_[taken_++];
      lock.unlock();
      const auto start = std::chrono::steady_clock::now();
      std::exception_ptr failure;
      try {
        sum_gradients(grads);
      } catch (...) {
        failure = std::current_exception();
      }
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      lock.lock();
      gradient_seconds_ += seconds;
      if (failure && !failure_) failure_ = failure;
      if (--outstanding_ == 0) done_.notify_all();
    }
  }

  // Process r adds up part r of every process's gradients, in rank order, then every process
  // gathers every part: the sum is the same bits everywhere and moves 2 (N - 1) / N of the array.
  void sum_gradients(std::span<float> grads) {
    const std::size_t length = grads.size(), n = std::size_t(size_);
    counts_.resize(n);
    offsets_.resize(n);
    for (std::size_t r = 0; r < n; ++r) {
      const std::size_t begin = length * r / n, end = length * (r + 1) / n;
      offsets_[r] = int(begin);
      counts_[r] = int(end - begin);
    }
    const std::size_t mine = std::size_t(counts_[std::size_t(rank_)]);
    parts_.resize(std::max(parts_.size(), mine * n));
    receive_counts_.assign(n, int(mine));
    receive_offsets_.resize(n);
    for (std::size_t r = 0; r < n; ++r) receive_offsets_[r] = int(r * mine);
    MPI_Request request;
    detail::check(MPI_Ialltoallv(grads.data(), counts_.data(), offsets_.data(), MPI_FLOAT, parts_.data(), receive_counts_.data(),
                                 receive_offsets_.data(), MPI_FLOAT, gradients_, &request),
                  "MPI_Ialltoallv");
    detail::wait(request, "MPI_Ialltoallv");
    float* out = grads.data() + offsets_[std::size_t(rank_)];
    for (std::size_t i = 0; i < mine; ++i) {
      float total = parts_[i];
      for (std::size_t r = 1; r < n; ++r) total += parts_[r * mine + i];
      out[i] = total;
    }
    detail::check(
        MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, grads.data(), counts_.data(), offsets_.data(), MPI_FLOAT, gradients_, &request),
        "MPI_Iallgatherv");
    detail::wait(request, "MPI_Iallgatherv");
  }

  MPI_Comm main_ = MPI_COMM_NULL, gradients_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::vector<double> gathered_;
  // The gradient thread and what it is given.
  std::thread worker_;
  mutable std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::span<float>> queue_;  // given this step; the thread has taken the first taken_
  std::size_t taken_ = 0;
  std::vector<std::span<float>> pending_;
  int outstanding_ = 0;
  bool stopping_ = false;
  std::exception_ptr failure_;
  std::vector<int> counts_, offsets_, receive_counts_, receive_offsets_;
  std::vector<float> parts_;
  double gradient_seconds_ = 0, wait_seconds_ = 0, statistics_seconds_ = 0;
};

}  // namespace tnet::mpi
