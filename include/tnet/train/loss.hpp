// tnet/train/loss.hpp: losses computed from logits, fused with the last activation.
//
// binary_crossentropy: for sigmoid outputs p = sigmoid(z) and targets y in [0, 1], the mean over
// labels and batch of -(y log p + (1 - y) log(1 - p)). The value returned is the one Keras reports:
// Keras clips p to [1e-7, 1 - 1e-7], i.e. z to +-log((1 - 1e-7) / 1e-7), before the stable
// formula max(z, 0) - z y + log(1 + exp(-|z|)). The gradient is the exact, unclipped
// (sigmoid(z) - y) / count.
//
// categorical_crossentropy: for softmax outputs over `classes`, the mean over the batch of
// -sum y log p; gradient (softmax(z) - y) / batch.
//
// For imbalanced labels (LossOptions, Sequential::set_loss):
// binary_crossentropy with pos_weight (PyTorch's BCEWithLogitsLoss(pos_weight=w), mean reduction):
// the mean of -(w_l y log p + (1 - y) log(1 - p)), w_l the weight of the element's label l,
// computed unclipped as (1 - y) z + (1 + (w_l - 1) y) (log(1 + exp(-|z|)) + max(-z, 0)); gradient
// (p (w_l y + 1 - y) - w_l y) / count. positive_weights() gives negatives / positives per label.
// sigmoid_focal (torchvision.ops.sigmoid_focal_loss, reduction "mean"): with ce the element's
// binary cross-entropy (unclipped), p_t = p y + (1 - p)(1 - y) and alpha_t = alpha y +
// (1 - alpha)(1 - y), the mean of alpha_t ce (1 - p_t)^gamma (alpha < 0: no alpha_t); its exact
// gradient below.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "../layers/activation.hpp"

namespace tnet {

/// The losses a network trains with (Sequential::set_loss), both from logits.
enum class Loss { none, binary_crossentropy, categorical_crossentropy, sigmoid_focal };

/// What a loss takes besides its kind (Sequential::set_loss).
struct LossOptions {
  /// binary_crossentropy: each label's weight of its positive term (BCEWithLogitsLoss's
  /// pos_weight), one per output; empty (the default) for plain binary cross-entropy as Keras
  /// computes it.
  std::vector<float> pos_weight = {};
  /// sigmoid_focal: torchvision's defaults; alpha < 0 turns the class weighting off.
  double alpha = 0.25, gamma = 2.0;
};

inline const char* loss_name(Loss loss) {
  switch (loss) {
    case Loss::binary_crossentropy:
      return "binary cross-entropy";
    case Loss::sigmoid_focal:
      return "sigmoid focal loss";
    case Loss::categorical_crossentropy:
      return "categorical cross-entropy";
    default:
      return "no loss";
  }
}

/// Keras's backend epsilon (K.epsilon()), the clipping bound of its cross-entropies.
inline constexpr double keras_epsilon = 1e-7;

/// Mean binary cross-entropy over `count` logits; writes dL/dz into `grad` when it is not null.
/// With `total` > count, the logits are a slice of `total` (one process's share of a global batch,
/// core/reducer.hpp): the sum over the slice divided by `total`, and its gradient, are returned.
inline double binary_crossentropy(const float* logits, const float* targets, std::ptrdiff_t count, float* grad = nullptr,
                                  std::ptrdiff_t total = 0) {
  if (total < count) total = count;
  const double clip = std::log((1.0 - keras_epsilon) / keras_epsilon);
  double loss = 0.0;
  for (std::ptrdiff_t i = 0; i < count; ++i) {
    const double z = std::clamp(double(logits[i]), -clip, clip), y = targets[i];
    loss += std::max(z, 0.0) - z * y + std::log1p(std::exp(-std::abs(z)));
    if (grad) grad[i] = (sigmoid(logits[i]) - targets[i]) / float(total);
  }
  return loss / double(total);
}

/// Mean categorical cross-entropy over `batch` rows of `classes` logits; writes dL/dz into
/// `grad` when it is not null. Keras clips p to [1e-7, 1 - 1e-7] here too. `total`: as above, in
/// rows.
inline double categorical_crossentropy(const float* logits, const float* targets, std::ptrdiff_t batch, int classes, float* grad = nullptr,
                                       std::ptrdiff_t total = 0) {
  if (total < batch) total = batch;
  double loss = 0.0;
  for (std::ptrdiff_t n = 0; n < batch; ++n) {
    const float* z = logits + n * classes;
    const float* y = targets + n * classes;
    const double top = *std::max_element(z, z + classes);
    double sum = 0.0;
    for (int c = 0; c < classes; ++c) sum += std::exp(double(z[c]) - top);
    for (int c = 0; c < classes; ++c) {
      const double p = std::exp(double(z[c]) - top) / sum;
      loss -= double(y[c]) * std::log(std::clamp(p, keras_epsilon, 1.0 - keras_epsilon));
      if (grad) grad[n * classes + c] = static_cast<float>((p - double(y[c])) / double(total));
    }
  }
  return loss / double(total);
}

/// Binary cross-entropy with per-label positive weights (PyTorch's BCEWithLogitsLoss with
/// pos_weight): `count` logits, rows of `labels`, element i of label i % labels; `total`: as above.
inline double weighted_binary_crossentropy(const float* logits, const float* targets, std::ptrdiff_t count, const float* pos_weight,
                                           int labels, float* grad = nullptr, std::ptrdiff_t total = 0) {
  if (total < count) total = count;
  double loss = 0.0;
  for (std::ptrdiff_t i = 0; i < count; ++i) {
    const double z = logits[i], y = targets[i], w = pos_weight[i % labels];
    // -log sigmoid(z) = log(1 + exp(-|z|)) + max(-z, 0); -log(1 - sigmoid(z)) = that + z
    loss += (1.0 - y) * z + (1.0 + (w - 1.0) * y) * (std::log1p(std::exp(-std::abs(z))) + std::max(-z, 0.0));
    if (grad) {
      const double p = sigmoid(logits[i]);
      grad[i] = static_cast<float>((p * (w * y + 1.0 - y) - w * y) / double(total));
    }
  }
  return loss / double(total);
}

/// torchvision's sigmoid_focal_loss with reduction "mean" over `count` logits; writes dL/dz into
/// `grad` when it is not null; `total`: as above.
///   dL/dz = alpha_t ((p - y) q^gamma + ce gamma q^(gamma - 1) dq/dz) / count, q = 1 - p_t,
///   dq/dz = (1 - 2y) p (1 - p)
inline double sigmoid_focal_loss(const float* logits, const float* targets, std::ptrdiff_t count, double alpha, double gamma,
                                 float* grad = nullptr, std::ptrdiff_t total = 0) {
  if (total < count) total = count;
  double loss = 0.0;
  for (std::ptrdiff_t i = 0; i < count; ++i) {
    const double z = logits[i], y = targets[i];
    const double p = 1.0 / (1.0 + std::exp(-z)), not_p = 1.0 / (1.0 + std::exp(z));  // both without cancellation
    const double ce = std::max(z, 0.0) - z * y + std::log1p(std::exp(-std::abs(z)));
    const double q = y * not_p + (1.0 - y) * p;  // 1 - p_t
    const double weight = alpha >= 0 ? alpha * y + (1.0 - alpha) * (1.0 - y) : 1.0;
    const double modulation = std::pow(q, gamma);
    loss += weight * ce * modulation;
    if (grad) {
      // q^(gamma - 1) dq/dz, taken as 0 where q is 0 (p is then 0 or 1, so is p (1 - p))
      const double slope = q > 0 ? gamma * std::pow(q, gamma - 1.0) * (1.0 - 2.0 * y) * p * not_p : 0.0;
      grad[i] = static_cast<float>(weight * ((p - y) * modulation + ce * slope) / double(total));
    }
  }
  return loss / double(total);
}

/// BCEWithLogitsLoss's pos_weight from a training set's targets (`samples` rows of `labels`
/// values, a value above 0.5 a positive): negatives / positives of each label; 1 for a label
/// without positives or without negatives, whose ratio would be infinite or 0.
inline std::vector<float> positive_weights(const float* targets, std::ptrdiff_t samples, int labels) {
  std::vector<double> positives(std::size_t(labels), 0.0);
  for (std::ptrdiff_t n = 0; n < samples; ++n)
    for (int l = 0; l < labels; ++l) positives[std::size_t(l)] += targets[n * labels + l] > 0.5f;
  std::vector<float> weights(std::size_t(labels), 1.0f);
  for (int l = 0; l < labels; ++l) {
    const double pos = positives[std::size_t(l)], neg = double(samples) - pos;
    if (pos > 0 && neg > 0) weights[std::size_t(l)] = static_cast<float>(neg / pos);
  }
  return weights;
}

}  // namespace tnet
