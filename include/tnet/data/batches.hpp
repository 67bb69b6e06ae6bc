// tnet/data/batches.hpp: float NHWC batches from 8-bit images, for training and validation.
//
// Each epoch the iterator shuffles its samples with Rng(seed).derive(epoch) (when shuffling),
// then yields batches of network inputs (pixels_to_input, data/input.hpp) with their target rows. With an Augmenter, sample k of the
// epoch is warped with a transformation drawn from Rng(seed).derive(epoch).derive(1 + k), in
// parallel and independently of the thread count. Buffers are allocated once.
#pragma once

#include <algorithm>
#include <optional>
#include <span>
#include <stdexcept>
#include <vector>

#include "../core/config.hpp"
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
  };

  /// `targets` holds images.count() rows of `labels` values; `indices` picks the samples.
  /// `images` must outlive the iterator (it is not copied); `targets` is.
  BatchIterator(const LabeledImages& images, std::vector<float> targets, int labels, std::vector<std::size_t> indices, Options options)
      : images_(images), targets_(std::move(targets)), labels_(labels), indices_(std::move(indices)), options_(std::move(options)) {
    if (options_.batch_size < 1) throw std::invalid_argument("BatchIterator: batch_size must be >= 1");
    if (targets_.size() != images_.count() * std::size_t(labels_))
      throw std::invalid_argument("BatchIterator: targets must hold one row of labels per image");
    for (std::size_t i : indices_)
      if (i >= images_.count()) throw std::invalid_argument("BatchIterator: sample index out of range");
    x_.resize(std::size_t(options_.batch_size) * images_.image_bytes());
    y_.resize(std::size_t(options_.batch_size) * labels_);
    start_epoch(0);
  }

  std::size_t samples() const { return indices_.size(); }
  std::size_t batches_per_epoch() const {
    const std::size_t b = std::size_t(options_.batch_size);
    return options_.drop_last ? indices_.size() / b : (indices_.size() + b - 1) / b;
  }

  void start_epoch(std::uint64_t epoch) {
    epoch_ = epoch;
    position_ = 0;
    order_ = indices_;
    if (options_.shuffle) detail::shuffle(order_, Rng(options_.seed).derive(epoch).derive(0));
  }

  /// Moves past the next `batches` batches without producing them (to resume mid-epoch).
  void skip(std::size_t batches) { position_ = std::min(order_.size(), position_ + batches * std::size_t(options_.batch_size)); }

  /// Fills x() and y() with the next batch and returns its size; 0 when the epoch is over.
  int next() {
    const std::size_t left = order_.size() - position_;
    const int size = int(std::min<std::size_t>(left, std::size_t(options_.batch_size)));
    current_ = 0;
    if (size == 0 || (options_.drop_last && size < options_.batch_size)) return 0;
    const int side = images_.size;
    const std::size_t bytes = images_.image_bytes();
    const Rng epoch_rng = Rng(options_.seed).derive(epoch_);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < size; ++n) {
      const std::size_t k = position_ + std::size_t(n), sample = order_[k];
      const std::uint8_t* src = images_.image(sample);
      float* dst = x_.data() + std::size_t(n) * bytes;
      if (options_.augmenter) {
        const AffineTransform t = options_.augmenter->draw(epoch_rng.derive(1 + k), side, side);
        options_.augmenter->apply(t, src, side, side, 3, dst);
      } else {
        pixels_to_input({src, bytes}, {dst, bytes});
      }
      std::copy_n(targets_.begin() + std::ptrdiff_t(sample * labels_), labels_, y_.begin() + std::ptrdiff_t(n) * labels_);
    }
    position_ += std::size_t(size);
    current_ = size;
    return size;
  }

  /// The batch next() produced: its inputs (n x image floats, NHWC) and target rows (n x labels).
  std::span<const float> x() const { return {x_.data(), std::size_t(current_) * images_.image_bytes()}; }
  std::span<const float> y() const { return {y_.data(), std::size_t(current_) * std::size_t(labels_)}; }

 private:
  const LabeledImages& images_;
  std::vector<float> targets_;
  int labels_;
  std::vector<std::size_t> indices_, order_;
  Options options_;
  Buffer x_;
  std::vector<float> y_;
  std::uint64_t epoch_ = 0;
  std::size_t position_ = 0;
  int current_ = 0;  // samples in the last batch
};

}  // namespace tnet
