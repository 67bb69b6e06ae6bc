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
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "../layers/activation.hpp"

namespace tnet {

/// The losses a network trains with (Sequential::set_loss), both from logits.
enum class Loss { none, binary_crossentropy, categorical_crossentropy };

inline const char* loss_name(Loss loss) {
  switch (loss) {
    case Loss::binary_crossentropy:
      return "binary cross-entropy";
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

}  // namespace tnet
