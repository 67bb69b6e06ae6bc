// tnet/train/average.hpp: the running mean of a network's weights (stochastic weight averaging,
// Izmailov et al., 2018).
//
// Training with a constant or slowly decaying learning rate leaves the weights wandering around a
// minimum; the mean of the weights at several moments (say, the ends of the last epochs) lies
// nearer its centre and usually generalises better than any one of them. Keep the mean in a
// second network of the same type, fold each moment in with add_to_mean, and re-estimate the
// mean network's batch-norm statistics before using it (Sequential::reset_batch_norm_statistics,
// then forwards in Mode::calibrate): the statistics of no single moment fit the mean weights.
#pragma once

#include <algorithm>
#include <span>
#include <stdexcept>
#include <string>

#include "../core/parameters.hpp"
#include "../core/vectorise.hpp"

namespace tnet {

/// Makes `mean`, the mean of count - 1 earlier networks' weights, the mean of `count` by folding
/// in `value`'s: mean += (value - mean) / count; with count 1 the values are copied exactly.
/// Both are parameters() of two networks of one type.
inline void add_to_mean(const Parameters& mean, const Parameters& value, int count) {
  if (count < 1) throw std::invalid_argument("tnet::add_to_mean: count must be >= 1, got " + std::to_string(count));
  if (mean.tensors.size() != value.tensors.size())
    throw std::invalid_argument("tnet::add_to_mean: " + std::to_string(mean.tensors.size()) + " tensors against " +
                                std::to_string(value.tensors.size()));
  for (std::size_t i = 0; i < mean.tensors.size(); ++i)
    if (mean.tensors[i].size != value.tensors[i].size || mean.tensors[i].name != value.tensors[i].name)
      throw std::invalid_argument("tnet::add_to_mean: tensor " + mean.tensors[i].name + " (" + std::to_string(mean.tensors[i].size) +
                                  " values) does not match " + value.tensors[i].name + " (" + std::to_string(value.tensors[i].size) +
                                  " values)");
  float* m = mean.values.data();
  const float* v = value.values.data();
  const std::ptrdiff_t n = std::ptrdiff_t(mean.values.size());
  if (count == 1) {
    std::copy(v, v + n, m);
    return;
  }
  const float weight = 1.0f / float(count);
  for_blocks(n, 16384, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
    for (std::ptrdiff_t j = begin; j < end; ++j) m[j] += (v[j] - m[j]) * weight;
  });
}

}  // namespace tnet
