// tnet/core/parameters.hpp: a network's trainable parameters as one array.
//
// Every trainable value of a network lives in one contiguous array, layer after layer, and every
// gradient in a second array of the same layout; each layer's tensors are views into them (see
// layers/layer.hpp, bind). An optimizer step, weight averaging, a copy of the weights or a sum of
// gradients across processes is one loop over one array; the tensors' names and places are there
// for model files and reports.
#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace tnet {

/// One trainable tensor of a network: its name and where its values and gradients are.
struct ParamRef {
  std::string name;  // "3.conv2d.kernel": layer index, layer kind, tensor
  float* value;      // values.data() + offset
  float* grad;       // grads.data() + offset
  std::size_t size;
  std::size_t offset;  // of its first value in Parameters::values
};

/// Values [begin, end) of Parameters::values train at `multiplier` times the optimizer's learning
/// rate (Sequential::set_learning_rate_multiplier).
struct RateSegment {
  std::size_t begin, end;
  double multiplier;
};

/// A view of a network's parameters (Sequential::parameters()); iterating it visits the tensors.
struct Parameters {
  std::span<float> values;  // every trainable value
  std::span<float> grads;   // their gradients, in the same layout
  std::span<const ParamRef> tensors;
  /// Values [0, frozen) belong to frozen layers (Sequential::freeze_until): optimizers leave
  /// them, their gradients and their slots as they are.
  std::size_t frozen = 0;
  /// Consecutive ranges of the values, in order, covering them all, each with its learning-rate
  /// multiplier; empty when every value trains at the optimizer's own rate.
  std::span<const RateSegment> rates{};

  auto begin() const { return tensors.begin(); }
  auto end() const { return tensors.end(); }
};

}  // namespace tnet
