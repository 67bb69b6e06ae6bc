// tnet/train/metrics.hpp: how well multi-label predictions match their targets.
//
// binary accuracy (Keras's "acc" for binary cross-entropy): the fraction of all (sample, label)
// pairs where (p > threshold) equals the target. It flatters multi-label models, so exact match
// (every label of a sample right) and per-label precision, recall and F1 are kept too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace tnet {

struct LabelScores {
  double precision = 0, recall = 0, f1 = 0;
  std::uint64_t support = 0;  // samples whose target has this label
};

class MultiLabelMetrics {
 public:
  explicit MultiLabelMetrics(int labels, float threshold = 0.5f)
      : labels_(labels), threshold_(threshold), true_pos_(labels), false_pos_(labels), false_neg_(labels) {
    if (labels < 1) throw std::invalid_argument("tnet::MultiLabelMetrics: labels must be >= 1");
  }

  /// Adds `batch` samples: rows of `labels` probabilities and 0/1 targets.
  void update(const float* probabilities, const float* targets, std::ptrdiff_t batch) {
    for (std::ptrdiff_t n = 0; n < batch; ++n) {
      bool all_right = true;
      for (int l = 0; l < labels_; ++l) {
        const bool predicted = probabilities[n * labels_ + l] > threshold_;
        const bool actual = targets[n * labels_ + l] > 0.5f;
        if (predicted == actual) ++right_;
        else all_right = false;
        true_pos_[l] += predicted && actual;
        false_pos_[l] += predicted && !actual;
        false_neg_[l] += !predicted && actual;
      }
      exact_ += all_right;
    }
    samples_ += std::uint64_t(batch);
  }

  void reset() { *this = MultiLabelMetrics(labels_, threshold_); }

  std::uint64_t samples() const { return samples_; }
  double binary_accuracy() const { return samples_ ? double(right_) / double(samples_ * labels_) : 0.0; }
  double exact_match() const { return samples_ ? double(exact_) / double(samples_) : 0.0; }

  /// Precision, recall and F1 of label l; a ratio with nothing to count is 0 (scikit-learn's
  /// zero_division=0).
  LabelScores label(int l) const {
    const double tp = double(true_pos_.at(l)), fp = double(false_pos_[l]), fn = double(false_neg_[l]);
    LabelScores s;
    s.precision = tp + fp > 0 ? tp / (tp + fp) : 0.0;
    s.recall = tp + fn > 0 ? tp / (tp + fn) : 0.0;
    s.f1 = s.precision + s.recall > 0 ? 2 * s.precision * s.recall / (s.precision + s.recall) : 0.0;
    s.support = true_pos_[l] + false_neg_[l];
    return s;
  }

 private:
  int labels_;
  float threshold_;
  std::uint64_t samples_ = 0, right_ = 0, exact_ = 0;
  std::vector<std::uint64_t> true_pos_, false_pos_, false_neg_;
};

/// Binary accuracy of one batch (see MultiLabelMetrics).
inline double binary_accuracy(const float* probabilities, const float* targets, std::ptrdiff_t batch, int labels, float threshold = 0.5f) {
  MultiLabelMetrics m(labels, threshold);
  m.update(probabilities, targets, batch);
  return m.binary_accuracy();
}

}  // namespace tnet
