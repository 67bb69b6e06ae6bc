// tnet/data/batches.hpp: float NHWC batches from 8-bit images, for training and validation.
//
// Each epoch the iterator shuffles its samples with Rng(seed).derive(epoch) (when shuffling),
// then yields batches of network inputs (pixels_to_input, data/input.hpp) with their target rows. With an Augmenter, sample k of the
// epoch is warped with a transformation drawn from Rng(seed).derive(epoch).derive(1 + k), in
// parallel and independently of the thread count. Buffers are allocated once, among them, for a
// set read from an image cache, one image per thread to read it into (LabeledImages::image(i,
// buffer)); an image the cache cannot give (truncated or damaged since opened) is an error.
//
// With Options::prefetch, a background thread prepares the next batch into a second buffer while
// the caller trains on the current one; it runs its OpenMP loop on one thread, leaving the others
// to training. A batch is a pure function of (seed, epoch, position), so the batches are
// bit-identical with and without prefetch, for any thread count.
//
// With Options::processes > 1 (data parallelism), every process walks the same batches and
// prepares only its slice of each, the slice shard() names; a sample is augmented as it would be
// in one process.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <thread>
#include <vector>

#include "../core/config.hpp"
#include "../core/reducer.hpp"
#include "../core/threads.hpp"
#include "augment.hpp"
#include "input.hpp"
#include "dataset.hpp"
#include "split.hpp"

namespace tnet {

class BatchIterator {
 public:
  struct Options {
    int batch_size = 32;
    bool shuffle = true;
    bool drop_last = false;  // true: every batch is full (Keras's steps_per_epoch = n / batch)
    std::uint64_t seed = 42;
    std::optional<Augmenter> augmenter;  // never set one for validation data
    bool prefetch = false;               // prepare the next batch on a background thread during training on this one
    // Data parallelism (core/reducer.hpp): this is process `process` of `processes`, each of
    // which walks the same batches and prepares only its slice of each (shard_of's).
    int process = 0, processes = 1;
  };

  /// `targets` holds images.count() rows of `labels` values; `indices` picks the samples.
  /// `images` must outlive the iterator (it is not copied); `targets` is.
  BatchIterator(const LabeledImages& images, std::vector<float> targets, int labels, std::vector<std::size_t> indices, Options options)
      : images_(images), targets_(std::move(targets)), labels_(labels), indices_(std::move(indices)), options_(std::move(options)) {
    if (options_.batch_size < 1) throw std::invalid_argument("BatchIterator: batch_size must be >= 1");
    if (options_.processes < 1 || options_.process < 0 || options_.process >= options_.processes)
      throw std::invalid_argument("BatchIterator: process " + std::to_string(options_.process) + " of " +
                                  std::to_string(options_.processes));
    if (targets_.size() != images_.count() * std::size_t(labels_))
      throw std::invalid_argument("BatchIterator: targets must hold one row of labels per image");
    for (std::size_t i : indices_)
      if (i >= images_.count()) throw std::invalid_argument("BatchIterator: sample index out of range");
    for (int b = 0; b < (options_.prefetch ? 2 : 1); ++b) {
      x_[b].resize(std::size_t(options_.batch_size) * images_.image_bytes());
      y_[b].resize(std::size_t(options_.batch_size) * labels_);
      if (images_.cached()) scratch_[b].resize(std::size_t(num_threads()) * images_.image_bytes());
    }
    start_epoch(0);
    if (options_.prefetch) worker_ = std::thread([this] { work(); });
  }
  // The background thread works on this object: it stays where it was made.
  BatchIterator(const BatchIterator&) = delete;
  BatchIterator& operator=(const BatchIterator&) = delete;
  ~BatchIterator() {
    if (!worker_.joinable()) return;
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
      cancel_ = true;
    }
    wake_.notify_all();
    worker_.join();
  }

  std::size_t samples() const { return indices_.size(); }
  std::size_t batches_per_epoch() const {
    const std::size_t b = std::size_t(options_.batch_size);
    return options_.drop_last ? indices_.size() / b : (indices_.size() + b - 1) / b;
  }

  void start_epoch(std::uint64_t epoch) {
    cancel();
    epoch_ = epoch;
    position_ = 0;
    order_ = indices_;
    if (options_.shuffle) detail::shuffle(order_, Rng(options_.seed).derive(epoch).derive(0));
  }

  /// Moves past the next `batches` batches without producing them (to resume mid-epoch).
  void skip(std::size_t batches) {
    cancel();
    position_ = std::min(order_.size(), position_ + batches * std::size_t(options_.batch_size));
  }

  /// Fills x() and y() with the next batch and returns its size; 0 when the epoch is over. With
  /// several processes, the size is the global batch's, and x() and y() hold this process's slice
  /// of it, shard() says which (it may be empty when the batch is smaller than the group). With
  /// prefetch, takes the batch prepared in the background (the first one after start_epoch or
  /// skip is prepared here, on every thread) and starts preparing the one after it; an exception
  /// thrown while preparing it is rethrown here.
  int next() {
    const int size = batch_at(position_);
    current_ = 0;
    if (size == 0) return 0;
    if (!options_.prefetch || !take_prepared()) fill(front_, position_, size);
    position_ += std::size_t(size);
    shard_ = slice(size);
    current_ = shard_.count;
    if (options_.prefetch) prepare(position_);
    return size;
  }

  /// The batch next() produced: its inputs (n x image floats, NHWC) and target rows (n x labels).
  std::span<const float> x() const { return {x_[front_].data(), std::size_t(current_) * images_.image_bytes()}; }
  std::span<const float> y() const { return {y_[front_].data(), std::size_t(current_) * std::size_t(labels_)}; }
  /// Where the rows of x() and y() are in the global batch next() produced (all of it in one
  /// process); add the group's Reducer to train on it (Sequential::train_step).
  Shard shard() const { return shard_; }

 private:
  enum class Job { none, queued, running, done };

  // The size of the batch starting at `position`; 0 past the epoch's end (or a short last batch
  // with drop_last).
  int batch_at(std::size_t position) const {
    const int size = int(std::min<std::size_t>(order_.size() - position, std::size_t(options_.batch_size)));
    return size == 0 || (options_.drop_last && size < options_.batch_size) ? 0 : size;
  }

  // This process's rows of a batch of `size`: as equal as they can be, in process order.
  Shard slice(int size) const {
    const long first = long(size) * options_.process / options_.processes, end = long(size) * (options_.process + 1) / options_.processes;
    return {nullptr, int(first), int(end - first), size};
  }

  // Fills buffer `buffer` with this process's slice of the `size` samples from `position` of this
  // epoch's order. A cancelled background job stops early (its buffer is then never used).
  void fill(int buffer, std::size_t position, int size) {
    const int side = images_.size;
    const std::size_t bytes = images_.image_bytes();
    const Rng epoch_rng = Rng(options_.seed).derive(epoch_);
    float* x = x_[buffer].data();
    float* y = y_[buffer].data();
    const Shard mine = slice(size);
    // A cached set's images are read into one buffer per thread (more only when the thread count
    // grew since the last batch).
    if (images_.cached() && scratch_[buffer].size() < std::size_t(num_threads()) * bytes)
      scratch_[buffer].resize(std::size_t(num_threads()) * bytes);
    std::uint8_t* const scratch = scratch_[buffer].data();
    std::exception_ptr error;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < mine.count; ++n) {
      if (cancel_.load(std::memory_order_relaxed)) continue;
      try {
        const std::size_t k = position + std::size_t(mine.offset + n), sample = order_[k];
#ifdef _OPENMP
        const std::size_t thread = std::size_t(omp_get_thread_num());
#else
        const std::size_t thread = 0;
#endif
        const std::uint8_t* src = images_.image(sample, images_.cached() ? scratch + thread * bytes : nullptr);
        float* dst = x + std::size_t(n) * bytes;
        if (options_.augmenter) {
          const AffineTransform t = options_.augmenter->draw(epoch_rng.derive(1 + k), side, side);
          options_.augmenter->apply(t, src, side, side, 3, dst);
        } else {
          pixels_to_input({src, bytes}, {dst, bytes});
        }
        std::copy_n(targets_.begin() + std::ptrdiff_t(sample * labels_), labels_, y + std::ptrdiff_t(n) * labels_);
      } catch (...) {
#pragma omp critical(tnet_batch_error)
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
  }

  // Starts preparing the batch at `position` in the buffer not in use, if there is one.
  void prepare(std::size_t position) {
    const int size = batch_at(position);
    if (size == 0) return;
    {
      std::lock_guard lock(mutex_);
      job_ = Job::queued;
      job_buffer_ = 1 - front_;
      job_position_ = position;
      job_size_ = size;
    }
    wake_.notify_one();
  }

  // Waits for the batch being prepared, if any, and makes it current; false when there is none.
  bool take_prepared() {
    std::unique_lock lock(mutex_);
    if (job_ == Job::none) return false;
    if (job_position_ != position_) throw std::logic_error("BatchIterator: the batch prepared is not the next one");
    done_.wait(lock, [&] { return job_ == Job::done; });
    job_ = Job::none;
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    front_ = job_buffer_;
    return true;
  }

  // Drops the batch being prepared: start_epoch and skip change what comes next.
  void cancel() {
    std::unique_lock lock(mutex_);
    if (job_ == Job::none) return;
    if (job_ == Job::running) {
      cancel_ = true;
      done_.wait(lock, [&] { return job_ == Job::done; });
      cancel_ = false;
    }
    job_ = Job::none;
    error_ = nullptr;
  }

  // The background thread: prepares each batch asked for, on one OpenMP thread (the thread count
  // is each thread's own), so that it does not compete with training's threads.
  void work() {
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stop_ || job_ == Job::queued; });
      if (stop_) return;
      job_ = Job::running;
      const int buffer = job_buffer_, size = job_size_;
      const std::size_t position = job_position_;
      lock.unlock();
      std::exception_ptr error;
      try {
        fill(buffer, position, size);
      } catch (...) {
        error = std::current_exception();
      }
      lock.lock();
      error_ = error;
      job_ = Job::done;
      done_.notify_all();
    }
  }

  const LabeledImages& images_;
  std::vector<float> targets_;
  int labels_;
  std::vector<std::size_t> indices_, order_;
  Options options_;
  Buffer x_[2];
  std::vector<float> y_[2];
  std::vector<std::uint8_t> scratch_[2];  // a cached set: one image per thread of fill(b), read there
  int front_ = 0;                         // the buffer holding the batch next() produced
  std::uint64_t epoch_ = 0;
  std::size_t position_ = 0;  // where the next batch starts in order_
  int current_ = 0;           // samples of the last batch here
  Shard shard_;               // which of the last batch's samples they are

  // Prefetch: the job, guarded by mutex_; the worker reads order_ and epoch_, which only
  // start_epoch and skip change, after cancel() has stopped it.
  std::thread worker_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  Job job_ = Job::none;
  int job_buffer_ = 0, job_size_ = 0;
  std::size_t job_position_ = 0;
  std::exception_ptr error_;
  std::atomic<bool> cancel_{false};
  bool stop_ = false;
};

}  // namespace tnet
