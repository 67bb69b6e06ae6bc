// tnet/layers/layer.hpp: what every layer is, and how a network checks that layers fit.
//
// A layer is a *spec*, such as Conv2D<32, 3>, holding only its hyper-parameters, plus the class
// template Spec::Layer<InputShape> that does the work once the input shape is known. Every bound
// layer provides:
//   using input_shape, output_shape;            compile-time Shape<H, W, C> of one sample
//   static std::string describe();              "Conv2D(32, 3x3, stride 1, same)"
//   void init(Rng);                             seeded initial weights
//   void forward(x, y, batch, Pass);            y = f(x); in training, caches what backward needs
//   void backward(x, y, dy, dx, batch);         dx = dL/dx (skipped when dx is null) and writes
//                                               (does not accumulate) every parameter gradient
//   visit_parameters(v): v(name, value, grad, size) for each trainable tensor
//   visit_state(v):      v(name, std::span<T>) for each non-trainable tensor (running statistics)
//   static constexpr std::size_t trainable_count, non_trainable_count;   Keras's parameter counts
// and may declare, to save memory (see Sequential):
//   static constexpr bool in_place = true;      forward and backward also work with y == x, and
//                                               backward then reads y, never x (ReLU, Dropout)
//   static constexpr bool backward_reads_output = false;   backward never reads y, so the next
//                                               layer may write its output over it (Conv2D)
// A layer that declares neither is given buffers of its own and is assumed to read y.
// All buffers are NHWC: batch x height x width x channels, one contiguous float array.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "../core/config.hpp"
#include "../core/rng.hpp"
#include "../core/shape.hpp"

namespace tnet {

/// Defaults for a spec: accepts every input shape and needs nothing in particular.
struct LayerSpec {
  template <class In>
  static constexpr bool accepts = true;
  template <class In>
  using needs = In;
};

/// Layers without parameters or state.
struct Stateless {
  static constexpr std::size_t trainable_count = 0;
  static constexpr std::size_t non_trainable_count = 0;
  void init(Rng) {}
  template <class Visit>
  void visit_parameters(Visit&&) {}
  template <class Visit>
  void visit_state(Visit&&) {}
};

/// Whether a bound layer can write its output over its input (see above).
template <class Layer>
inline constexpr bool runs_in_place = [] {
  if constexpr (requires { Layer::in_place; }) return bool(Layer::in_place);
  else return false;
}();

/// Whether a bound layer's backward reads its own output (assumed unless it says otherwise).
template <class Layer>
inline constexpr bool backward_reads_output = [] {
  if constexpr (requires { Layer::backward_reads_output; }) return bool(Layer::backward_reads_output);
  else return true;
}();

/// True when layer `Spec` accepts input shape `Got`; `Needs` is the shape it would accept. When
/// a network is ill-formed the compiler's note names this template with all three arguments:
///   'tnet::LayerFitsInput<tnet::Dense<10>, tnet::Shape<8, 8, 3>, tnet::Shape<1, 1, 192>>::value'
///   evaluates to false
template <class Spec, class Got, class Needs>
struct LayerFitsInput {
  static constexpr bool value = Spec::template accepts<Got>;
};

}  // namespace tnet
