// tnet/train/metrics.hpp: how well multi-label predictions match their targets.
//
// binary accuracy (Keras's "acc" for binary cross-entropy): the fraction of all (sample, label)
// pairs where (p > threshold) equals the target. It flatters multi-label models, so exact match
// (every label of a sample right), per-label precision, recall and F1, and their macro and micro
// averages (scikit-learn's f1_score(average="macro" / "micro"), zero_division=0) are kept too.
// Each label may have a threshold of its own (MultiLabelScores::best_thresholds chooses them).
//
// MultiLabelScores keeps the probabilities themselves, for what needs the ranking: average
// precision (scikit-learn's average_precision_score; mAP its macro average over the labels that
// have positives, micro-averaged AP over every (sample, label) pair) and thresholds chosen on
// validation data.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
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
      : labels_(labels),
        thresholds_(std::size_t(std::max(labels, 0)), threshold),
        true_pos_(labels),
        false_pos_(labels),
        false_neg_(labels) {
    if (labels < 1) throw std::invalid_argument("tnet::MultiLabelMetrics: labels must be >= 1");
  }
  /// With a threshold per label: label l is predicted when p > thresholds[l].
  explicit MultiLabelMetrics(std::vector<float> thresholds) : MultiLabelMetrics(int(thresholds.size())) {
    thresholds_ = std::move(thresholds);
  }

  /// Adds `batch` samples: rows of `labels` probabilities and 0/1 targets.
  void update(const float* probabilities, const float* targets, std::ptrdiff_t batch) {
    for (std::ptrdiff_t n = 0; n < batch; ++n) {
      bool all_right = true;
      for (int l = 0; l < labels_; ++l) {
        const bool predicted = probabilities[n * labels_ + l] > thresholds_[std::size_t(l)];
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

  void reset() { *this = MultiLabelMetrics(thresholds_); }

  int labels() const { return labels_; }
  const std::vector<float>& thresholds() const { return thresholds_; }

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

  /// The unweighted mean of every label's F1 (a label with nothing predicted and nothing to find
  /// counts 0, as scikit-learn's zero_division=0 has it).
  double macro_f1() const {
    double sum = 0;
    for (int l = 0; l < labels_; ++l) sum += label(l).f1;
    return sum / labels_;
  }
  /// F1 of the counts summed over the labels: 2 TP / (2 TP + FP + FN); 0 when all are 0.
  double micro_f1() const {
    double tp = 0, wrong = 0;
    for (int l = 0; l < labels_; ++l) {
      tp += double(true_pos_[std::size_t(l)]);
      wrong += double(false_pos_[std::size_t(l)] + false_neg_[std::size_t(l)]);
    }
    return tp + wrong > 0 ? 2 * tp / (2 * tp + wrong) : 0.0;
  }

 private:
  int labels_;
  std::vector<float> thresholds_;
  std::uint64_t samples_ = 0, right_ = 0, exact_ = 0;
  std::vector<std::uint64_t> true_pos_, false_pos_, false_neg_;
};

/// Binary accuracy of one batch (see MultiLabelMetrics).
inline double binary_accuracy(const float* probabilities, const float* targets, std::ptrdiff_t batch, int labels, float threshold = 0.5f) {
  MultiLabelMetrics m(labels, threshold);
  m.update(probabilities, targets, batch);
  return m.binary_accuracy();
}

namespace detail {
// scikit-learn's average precision of one ranking: `order` sorts the pairs by score, highest first;
// pairs of equal score are one threshold. sum over thresholds of (R_k - R_{k-1}) P_k.
template <class Score, class Positive>
double average_precision(std::span<const std::size_t> order, Score score, Positive positive, double positives) {
  double tp = 0, fp = 0, recall = 0, ap = 0;
  for (std::size_t i = 0; i < order.size(); ++i) {
    if (positive(order[i])) ++tp;
    else ++fp;
    if (i + 1 < order.size() && score(order[i + 1]) == score(order[i])) continue;
    const double r = tp / positives;
    ap += (r - recall) * (tp / (tp + fp));
    recall = r;
  }
  return ap;
}
// A score that sorts: NaN below everything.
inline float rank_of(float p) { return std::isnan(p) ? -INFINITY : p; }
}  // namespace detail

/// Every probability and target of a validation pass, for the metrics that need the ranking.
class MultiLabelScores {
 public:
  explicit MultiLabelScores(int labels) : labels_(labels) {
    if (labels < 1) throw std::invalid_argument("tnet::MultiLabelScores: labels must be >= 1");
  }

  /// Adds `batch` samples: rows of `labels` probabilities and targets (a target above 0.5 is a
  /// positive).
  void update(const float* probabilities, const float* targets, std::ptrdiff_t batch) {
    const std::size_t count = std::size_t(batch) * std::size_t(labels_), first = probabilities_.size();
    probabilities_.resize(first + count);
    positive_.resize(first + count);
    for (std::size_t i = 0; i < count; ++i) {
      probabilities_[first + i] = probabilities[i];
      positive_[first + i] = targets[i] > 0.5f;
    }
  }
  void reset() { *this = MultiLabelScores(labels_); }

  int labels() const { return labels_; }
  std::size_t samples() const { return probabilities_.size() / std::size_t(labels_); }
  /// Samples whose target has label l.
  std::size_t positives(int l) const {
    std::size_t n = 0;
    for (std::size_t s = 0; s < samples(); ++s) n += positive_[at(s, l)];
    return n;
  }

  /// scikit-learn's average_precision_score for label l; NaN when it has no positives.
  double average_precision(int l) const {
    check_label(l);
    const double pos = double(positives(l));
    if (pos == 0) return std::nan("");
    const std::vector<std::size_t> order = ranking(l);
    return detail::average_precision(
        order, [&](std::size_t s) { return detail::rank_of(probabilities_[at(s, l)]); },
        [&](std::size_t s) { return positive_[at(s, l)] != 0; }, pos);
  }
  /// mAP: the mean of average_precision over the labels with positives (scikit-learn's
  /// average="macro" restricted to them); NaN when no label has one.
  double macro_average_precision() const {
    double sum = 0;
    int counted = 0;
    for (int l = 0; l < labels_; ++l)
      if (positives(l) > 0) {
        sum += average_precision(l);
        ++counted;
      }
    return counted ? sum / counted : std::nan("");
  }
  /// Average precision of every (sample, label) pair as one ranking (scikit-learn's
  /// average="micro"); NaN without positives.
  double micro_average_precision() const {
    double pos = 0;
    for (const std::uint8_t p : positive_) pos += p;
    if (pos == 0) return std::nan("");
    std::vector<std::size_t> order(probabilities_.size());
    std::iota(order.begin(), order.end(), std::size_t(0));
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return detail::rank_of(probabilities_[a]) > detail::rank_of(probabilities_[b]); });
    return detail::average_precision(
        order, [&](std::size_t i) { return detail::rank_of(probabilities_[i]); }, [&](std::size_t i) { return positive_[i] != 0; }, pos);
  }

  /// The counting metrics (binary accuracy, exact match, F1s) at the given thresholds, one per label.
  MultiLabelMetrics metrics(const std::vector<float>& thresholds) const {
    if (thresholds.size() != std::size_t(labels_))
      throw std::invalid_argument("tnet::MultiLabelScores::metrics: " + std::to_string(thresholds.size()) + " thresholds for " +
                                  std::to_string(labels_) + " labels");
    MultiLabelMetrics m(thresholds);
    std::vector<float> targets(positive_.begin(), positive_.end());
    m.update(probabilities_.data(), targets.data(), std::ptrdiff_t(samples()));
    return m;
  }
  MultiLabelMetrics metrics(float threshold = 0.5f) const { return metrics(std::vector<float>(std::size_t(labels_), threshold)); }

  /// A decision threshold per label, each maximising that label's F1 on these samples (label l is
  /// then predicted when p > threshold, as MultiLabelMetrics and fashion_classify decide).
  /// Every cut between two distinct probabilities is tried, and below the lowest; the threshold
  /// is the midpoint of the probabilities either side of the cut (half the lowest for the cut
  /// below it), kept within [the one below, the one above). Of cuts with equal F1 (compared
  /// exactly, as fractions of counts) the highest threshold wins: fewer positive predictions. A
  /// label without positives here, whose F1 is 0 at every cut, keeps `fallback`.
  std::vector<float> best_thresholds(float fallback = 0.5f) const {
    std::vector<float> thresholds(std::size_t(labels_), fallback);
    for (int l = 0; l < labels_; ++l) {
      const std::uint64_t pos = positives(l);
      if (pos == 0) continue;
      const std::vector<std::size_t> order = ranking(l);
      auto p = [&](std::size_t i) { return detail::rank_of(probabilities_[at(order[i], l)]); };
      // F1 = 2 tp / (2 tp + fp + fn) as (numerator, denominator); the best so far.
      std::uint64_t tp = 0, fp = 0, best_num = 0, best_den = 1;
      std::size_t best_end = 0;  // predict the first best_end of the ranking
      for (std::size_t i = 0; i < order.size(); ++i) {
        if (positive_[at(order[i], l)]) ++tp;
        else ++fp;
        if (i + 1 < order.size() && p(i + 1) == p(i)) continue;
        const std::uint64_t num = 2 * tp, den = 2 * tp + fp + (pos - tp);
        if (num * best_den > best_num * den) {  // strictly better: an equal F1 further down is a lower threshold
          best_num = num;
          best_den = den;
          best_end = i + 1;
        }
      }
      const float above = p(best_end - 1);
      if (!std::isfinite(above)) continue;  // only NaN probabilities: nothing to choose from
      const float below = best_end < order.size() ? p(best_end) : 0.0f;
      float t = float((double(above) + double(std::max(below, 0.0f))) / 2.0);
      if (best_end < order.size() && std::isfinite(below)) t = std::clamp(t, below, above);
      if (!(t < above)) t = best_end < order.size() && std::isfinite(below) ? below : std::nextafter(above, -INFINITY);
      thresholds[std::size_t(l)] = t;
    }
    return thresholds;
  }

 private:
  std::size_t at(std::size_t sample, int l) const { return sample * std::size_t(labels_) + std::size_t(l); }
  void check_label(int l) const {
    if (l < 0 || l >= labels_)
      throw std::out_of_range("tnet::MultiLabelScores: label " + std::to_string(l) + " of " + std::to_string(labels_));
  }
  // The samples by label l's probability, highest first.
  std::vector<std::size_t> ranking(int l) const {
    std::vector<std::size_t> order(samples());
    std::iota(order.begin(), order.end(), std::size_t(0));
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return detail::rank_of(probabilities_[at(a, l)]) > detail::rank_of(probabilities_[at(b, l)]);
    });
    return order;
  }

  int labels_;
  std::vector<float> probabilities_;
  std::vector<std::uint8_t> positive_;
};

}  // namespace tnet
