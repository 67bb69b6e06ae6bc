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
// collective. A process that dies is noticed by mpirun, which ends the rest. A process that
// neither dies nor goes on (stopped, hung) is caught by a watchdog: a collective that makes no
// progress for Group::timeout() seconds (300 by default) ends the run with MPI_Abort, after a
// message naming the processes it waited for (those that do not answer a query on a
// communicator of its own) and how long. Waiting polls the non-blocking collective, yielding the
// core at first and then sleeping between polls, so that a long wait takes next to no CPU.
#pragma once

#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1  // the C API only
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
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

// What a process waits in, for the watchdog's messages.
enum class Collective : int { none, sum, gradients_scatter, gradients_gather, barrier };
inline const char* describe(Collective c) {
  switch (c) {
    case Collective::sum:
      return "a sum of statistics or losses (MPI_Iallgather)";
    case Collective::gradients_scatter:
      return "a gradient sum (MPI_Ialltoallv)";
    case Collective::gradients_gather:
      return "a gradient sum (MPI_Iallgatherv)";
    case Collective::barrier:
      return "a barrier (MPI_Ibarrier)";
    default:
      return "no collective";
  }
}

// The pause before the next poll of an operation that has been waited for `waited`: none (a
// yield of the core) for the first 50 ms, which covers every collective of a training step that
// is not held up by another process, then 1 ms, and 10 ms after a second. A blocking MPI call
// would poll without pause, taking a core from the training threads while the other processes
// catch up, and a whole core while one of them is stopped.
inline std::chrono::microseconds poll_pause(std::chrono::steady_clock::duration waited) {
  using namespace std::chrono_literals;
  if (waited < 50ms) return 0us;
  return waited < 1s ? 1000us : 10000us;
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
  return tnet::fnv1a64(reinterpret_cast<const char*>(values.data()), values.size_bytes());
}

/// The processes of a communicator (every process of the run by default) as a tnet::Reducer.
class Group final : public Reducer {
 public:
  /// overlap = false sums the gradients after backpropagation, on the calling thread (to measure
  /// what overlapping saves); so it is without MPI_THREAD_MULTIPLE.
  explicit Group(MPI_Comm comm = MPI_COMM_WORLD, bool overlap = true) {
    // Separate communicators keep the gradient thread's collectives apart from the main thread's.
    // The watchdog's queries travel on a third, so that they never match a collective's messages.
    detail::check(MPI_Comm_dup(comm, &main_), "MPI_Comm_dup");
    detail::check(MPI_Comm_dup(comm, &gradients_), "MPI_Comm_dup");
    detail::check(MPI_Comm_dup(comm, &watch_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(main_, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(gradients_, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(watch_, MPI_ERRORS_RETURN);
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
    MPI_Comm_free(&watch_);
    MPI_Comm_free(&gradients_);
    MPI_Comm_free(&main_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  /// Whether gradients are summed while backpropagation goes on.
  bool overlaps() const { return worker_.joinable(); }

  /// The watchdog: a collective of this group that makes no progress for `seconds` ends the run
  /// (a message on stderr naming the processes waited for, then MPI_Abort with `exit_code`); 0
  /// waits without limit. Every process should set the same; 300 s by default.
  void set_timeout(double seconds, int exit_code = 1) {
    if (!(seconds >= 0) || seconds > 1e9) throw std::invalid_argument("tnet::mpi::Group::set_timeout: " + std::to_string(seconds) + " s");
    timeout_ = seconds;
    stall_code_ = exit_code;
  }
  double timeout() const { return timeout_; }

  /// This process's slice of a global batch (tnet::shard_of), with this group as its reducer.
  Shard shard(int global_batch) { return shard_of(global_batch, rank_, size_, this); }

  void sum(std::span<double> values) override {
    if (size_ == 1 || values.empty()) return;
    const auto start = std::chrono::steady_clock::now();
    const int n = int(values.size());
    gathered_.resize(values.size() * std::size_t(size_));
    MPI_Request request;
    detail::check(MPI_Iallgather(values.data(), n, MPI_DOUBLE, gathered_.data(), n, MPI_DOUBLE, main_, &request), "MPI_Iallgather");
    wait(request, detail::Collective::sum);
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
  void barrier() {
    MPI_Request request;
    detail::check(MPI_Ibarrier(main_, &request), "MPI_Ibarrier");
    wait(request, detail::Collective::barrier);
  }

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
  // The watchdog's messages: a query, and the answer (what the answering process waits in, and
  // for how many seconds).
  static constexpr int query_tag = 1, answer_tag = 2;

  // Waits for a non-blocking collective, answering the watchdog's queries meanwhile; ends the run
  // when it makes no progress for timeout() seconds.
  void wait(MPI_Request& request, detail::Collective what) {
    const auto start = std::chrono::steady_clock::now();
    const double limit = timeout();
    for (;;) {
      int done = 0;
      detail::check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), detail::describe(what));
      if (done) return;
      const auto waited = std::chrono::steady_clock::now() - start;
      const double seconds = std::chrono::duration<double>(waited).count();
      const std::chrono::microseconds pause = detail::poll_pause(waited);
      if (pause.count() == 0) {  // a collective on its way: nothing but polling
        std::this_thread::yield();
        continue;
      }
      answer_queries(what, seconds);
      if (limit > 0 && seconds >= limit) stalled(what, seconds, limit);
      std::this_thread::sleep_for(pause);
    }
  }

  // Answers every query waiting for this process: it is alive, waiting in `what` for `waited`.
  void answer_queries(detail::Collective what, double waited) {
    for (;;) {
      int found = 0;
      MPI_Message message;
      MPI_Status status;
      if (MPI_Improbe(MPI_ANY_SOURCE, query_tag, watch_, &found, &message, &status) != MPI_SUCCESS || !found) return;
      int query = 0;
      MPI_Mrecv(&query, 1, MPI_INT, &message, MPI_STATUS_IGNORE);
      const double answer[2] = {double(int(what)), waited};
      MPI_Send(answer, 2, MPI_DOUBLE, status.MPI_SOURCE, answer_tag, watch_);
    }
  }

  // A collective made no progress for `waited` seconds: asks every other process whether it is
  // alive (a process waiting in a collective answers at once), names those that do not answer
  // within a few seconds, and ends the run.
  [[noreturn]] void stalled(detail::Collective what, double waited, double limit) {
    std::lock_guard lock(stall_mutex_);  // one thread of this process asks; the run ends after
    const auto asked = std::chrono::steady_clock::now();
    std::vector<double> answers(std::size_t(size_) * 2, -1.0);
    std::vector<MPI_Request> requests(std::size_t(size_), MPI_REQUEST_NULL);
    const int query = 1;
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      MPI_Irecv(&answers[std::size_t(r) * 2], 2, MPI_DOUBLE, r, answer_tag, watch_, &requests[std::size_t(r)]);
      MPI_Request sent;
      if (MPI_Isend(&query, 1, MPI_INT, r, query_tag, watch_, &sent) == MPI_SUCCESS) MPI_Request_free(&sent);
    }
    const double grace = std::min(limit, 2.0);
    std::vector<bool> answered(std::size_t(size_), false);
    answered[std::size_t(rank_)] = true;
    for (;;) {
      bool all = true;
      for (int r = 0; r < size_; ++r) {
        if (answered[std::size_t(r)]) continue;
        int done = 0;
        MPI_Test(&requests[std::size_t(r)], &done, MPI_STATUS_IGNORE);
        answered[std::size_t(r)] = done != 0;
        all = all && done;
      }
      const double since = std::chrono::duration<double>(std::chrono::steady_clock::now() - asked).count();
      if (all || since >= grace) break;
      answer_queries(what, waited + since);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::string silent, waiting;
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      if (!answered[std::size_t(r)]) {
        silent += (silent.empty() ? "" : ", ") + std::to_string(r);
        continue;
      }
      char text[200];
      std::snprintf(text, sizeof text, "%s%d (in %s for %.1f s)", waiting.empty() ? "" : ", ", r,
                    detail::describe(detail::Collective(int(answers[std::size_t(r) * 2]))), answers[std::size_t(r) * 2 + 1]);
      waiting += text;
    }
    char head[300];
    std::snprintf(head, sizeof head, "tnet::mpi: process %d of %d waited %.1f s in %s without progress (the limit is %g s): ", rank_, size_,
                  waited, detail::describe(what), limit);
    std::string message = head;
    char grace_text[32];
    std::snprintf(grace_text, sizeof grace_text, "%g", grace);
    if (!silent.empty())
      message += "waiting for process" + std::string(silent.find(',') == std::string::npos ? " " : "es ") + silent +
                 ", which did not answer within " + grace_text + " s (stopped, hung or far behind)";
    else message += "every other process answered, so the processes wait in collectives that do not match, or the transport stalls";
    if (!waiting.empty()) message += "; waiting too: process " + waiting;
    message += ". Ending the run (MPI_Abort).\n";
    std::fputs(message.c_str(), stderr);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, stall_code_);
    std::abort();
  }

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
    wait(request, detail::Collective::gradients_scatter);
    float* out = grads.data() + offsets_[std::size_t(rank_)];
    for (std::size_t i = 0; i < mine; ++i) {
      float total = parts_[i];
      for (std::size_t r = 1; r < n; ++r) total += parts_[r * mine + i];
      out[i] = total;
    }
    detail::check(
        MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, grads.data(), counts_.data(), offsets_.data(), MPI_FLOAT, gradients_, &request),
        "MPI_Iallgatherv");
    wait(request, detail::Collective::gradients_gather);
  }

  MPI_Comm main_ = MPI_COMM_NULL, gradients_ = MPI_COMM_NULL, watch_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::atomic<double> timeout_ = 300;  // the watchdog's limit in seconds; 0: none
  std::atomic<int> stall_code_ = 1;
  std::mutex stall_mutex_;
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
