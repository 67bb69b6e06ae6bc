// tnet/layers/layer.hpp: what every layer is, and how a network checks that layers fit.
//
// A layer is a *spec*, such as Conv2D<32, 3>, holding only its hyper-parameters, plus the class
// template Spec::Layer<InputShape> that does the work once the input shape is known: the *bound*
// layer. The concept BoundLayer below is the contract every bound layer meets; a network whose
// layer breaks it does not compile, and the compiler's note names the layer and the requirement.
//
//   using input_shape, output_shape;     compile-time Shape<H, W, C> of one sample; after
//                                        Dense<dynamic>, Shape<1, 1, dynamic>
//   describe() -> std::string            "Conv2D(32, 3x3, stride 1, same)": the model file's
//                                        signature line, so it names every hyper-parameter
//   parameter_tensors()                  each trainable tensor's name and size, in order
//   bind(values, grads)                  the layer's tensors live at `values`, one after another
//                                        in that order, their gradients likewise at `grads`:
//                                        slices of the network's one parameter array
//   init(Rng)                            seeded initial weights, written through bind's views
//   forward(x, y, batch, Pass)           y = f(x); in training, caches what backward needs
//   backward(x, y, dy, dx, batch)        dx = dL/dx (skipped when dx is null), and writes (does
//                                        not accumulate) every parameter gradient
//   visit_state(v)                       v(name, std::span<T>) for each non-trainable tensor
//   non_trainable_count                  Keras's count of them (the batch-norm moving statistics)
// A layer whose input or output has the run-time width is constructed with it (Layer(int width)).
// It may declare, to save memory (see LayerChain, model/chain.hpp):
//   static constexpr bool in_place = true;      forward and backward also work with y == x, and
//                                               backward then reads y, never x (ReLU, Dropout);
//                                               so its output has as many values as its input
//   static constexpr bool backward_reads_output = false;   backward never reads y, so the next
//                                               layer may write its output over it (Conv2D)
// A layer that declares neither is given buffers of its own and is assumed to read y. The
// compiler checks what it can of these promises (they are constants; in-place layers keep the
// size); tests/test_layers.cpp checks the rest by running every layer with poisoned buffers.
// A chain of layers (LayerChain) folds the ReLU and batch normalisation that follow a layer into
// that layer's output as it is written (an Epilogue: core/gemm_kernels.hpp), where they say they can:
//   forward(x, y, batch, Pass, const Epilogue&)  forward, each output value then put through the
//                                               epilogue (Conv2D, Dense)
//   static constexpr bool folds_as_relu = true; the layer is max(x, 0) (ReLU)
//   inference_affine(scale, shift)              in inference the layer is x * scale[c] + shift[c]
//                                               per channel c; writes both (BatchNorm)
//   backward_through_relu(x, y, dy, dx, batch)  backward, then dx zeroed where x <= 0: the
//                                               gradient of a ReLU before the layer (BatchNorm)
// In inference the group writes its result where its last layer writes its output, and the other
// layers' outputs (Sequential::output_of) are not written. A max pool after the group, its
// windows tiling the group's output, is computed in the group's forward too (pools_in_forward)
// where the first layer can at run time:
//   forward_pooled<Pool>(x, y, batch, const Epilogue&) -> bool   y = the pool's output; false,
//                                               writing nothing, where it cannot (Conv2D:
//                                               Winograd's convolutions, Eigen's kernels)
// In training a ReLU after a Conv2D or Dense is applied as they write their output (the ReLU's
// own output, over it in place, is then the same), and its gradient by a backward_through_relu
// after it; the ReLU's passes are skipped.
// Training also runs a per-channel map and the max pool after it as one, where they say they can
// (pools_through): the map's output is never written, nor the gradient the pool passes back to it.
//   statistics(x, batch, Pass)                  the map's training forward but for writing y
//                                               (BatchNorm: the batch statistics)
//   normalisation() -> m                        then the map itself: y = m(x, c) in channel c
//   forward_mapped(x, y, batch, Pass, m)        the pool's forward of m(x, c) (MaxPool2D)
//   backward_through_max_pool(x, pool, dy, dx, batch, through_relu)   the map's backward from
//                                               the pool's dy, the positions the pool chose and
//                                               (through_relu) the gradient of a ReLU before it
// and, where the pool's windows tile x (selects_through), the first two in one pass over x:
//   statistics_selecting(x, batch, Pass, pool)  the statistics, the pool choosing from x as they
//                                               are summed (MaxPool2D::select)
//   forward_selected(y, batch, m)               the pool's output, m of the inputs it chose
// All buffers are NHWC: batch x height x width x channels, one contiguous float array.
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "../core/config.hpp"
#include "../core/gemm.hpp"
#include "../core/rng.hpp"
#include "../core/shape.hpp"

namespace tnet {

/// A trainable tensor as a layer declares it: its name within the layer and its element count.
struct TensorSize {
  std::string_view name;
  std::size_t size;
};

/// Defaults for a spec: accepts every compile-time input shape and needs nothing in particular.
/// A layer that can also take the run-time width (Shape<1, 1, dynamic>) says so.
struct LayerSpec {
  template <class In>
  static constexpr bool accepts = !In::is_dynamic;
  template <class In>
  using needs = In;
};

/// Layers without parameters or state.
struct Stateless {
  static constexpr std::size_t non_trainable_count = 0;
  static std::array<TensorSize, 0> parameter_tensors() { return {}; }
  void bind(float*, float*) {}
  void init(Rng) {}
  template <class Visit>
  void visit_state(Visit&&) {}
};

/// Element-wise layers (ReLU, Sigmoid, Dropout, ...), which also take the run-time width: the
/// number of values in one sample.
template <class In>
class Elementwise : public Stateless {
 public:
  Elementwise()
    requires(!In::is_dynamic)
      : sample_size_(tnet::sample_size<In>(0)) {}
  explicit Elementwise(int width) : sample_size_(tnet::sample_size<In>(width)) {}
  int sample_size() const { return sample_size_; }

 private:
  int sample_size_;
};

/// The spec of an element-wise layer: it also takes the run-time width after Dense<dynamic>.
struct ElementwiseSpec : LayerSpec {
  template <class In>
  static constexpr bool accepts = true;
};

/// Whether a bound layer can write its output over its input (see above).
template <class Layer>
inline constexpr bool runs_in_place = [] {
  if constexpr (requires { Layer::in_place; }) return bool(Layer::in_place);
  else return false;
}();

/// Whether inference can fold what follows a bound layer into its forward pass (see above).
template <class Layer>
inline constexpr bool takes_epilogue = requires(Layer& layer, const float* x, float* y, int batch, Pass pass, const Epilogue& epilogue) {
  layer.forward(x, y, batch, pass, epilogue);
};

/// Whether a bound layer is a ReLU that inference can fold into the layer before.
template <class Layer>
inline constexpr bool folds_as_relu = [] {
  if constexpr (requires { Layer::folds_as_relu; }) return bool(Layer::folds_as_relu);
  else return false;
}();

/// Whether a bound layer's backward can also apply the gradient of a ReLU before it (see above).
template <class Layer>
inline constexpr bool masks_relu_gradient = requires(Layer& layer, const float* x, const float* y, const float* dy, float* dx, int batch) {
  layer.backward_through_relu(x, y, dy, dx, batch);
};

/// Whether training can run bound layer Map and the max pool Pool after it as one (see above).
template <class Map, class Pool>
inline constexpr bool pools_through =
    requires(Map& map, Pool& pool, const float* x, float* y, const float* dy, float* dx, int batch, Pass pass, bool through_relu) {
      map.statistics(x, batch, pass);
      pool.forward_mapped(x, y, batch, pass, map.normalisation());
      map.backward_through_max_pool(x, pool, dy, dx, batch, through_relu);
    };

/// Whether, beyond pools_through, the map's statistics and the pool's choices can be made in one
/// pass over x (the pool's windows tile it; see above).
template <class Map, class Pool>
inline constexpr bool selects_through =
    pools_through<Map, Pool> && requires(Map& map, Pool& pool, const float* x, float* y, int batch, Pass pass) {
      map.statistics_selecting(x, batch, pass, pool);
      pool.forward_selected(y, batch, map.normalisation());
    };

/// Whether inference can run bound layer Layer (with what it folds) and the max pool Pool after
/// that as one: Layer computes its output a strip at a time and pools it (Conv2D::forward_pooled).
template <class Layer, class Pool>
inline constexpr bool pools_in_forward = requires(Layer& layer, const float* x, float* y, int batch, const Epilogue& epilogue) {
  { layer.template forward_pooled<Pool>(x, y, batch, epilogue) } -> std::same_as<bool>;
};

/// Whether a bound layer is, in inference, a per-channel affine map that can be folded.
template <class Layer>
inline constexpr bool folds_as_affine = requires(const Layer& layer, float* scale, float* shift) { layer.inference_affine(scale, shift); };

/// Whether a bound layer's backward reads its own output (assumed unless it says otherwise).
template <class Layer>
inline constexpr bool backward_reads_output = [] {
  if constexpr (requires { Layer::backward_reads_output; }) return bool(Layer::backward_reads_output);
  else return true;
}();

namespace detail {
// What visit_state is called with in the concept: any name and span.
struct StateVisitor {
  template <class T>
  void operator()(std::string_view, std::span<T>) const {}
};

template <class Flag>
concept ConstantBool = std::same_as<std::remove_cv_t<Flag>, bool>;

template <class L>
constexpr bool same_sample_size() {
  using In = typename L::input_shape;
  using Out = typename L::output_shape;
  if constexpr (In::is_dynamic || Out::is_dynamic) return In::is_dynamic == Out::is_dynamic;
  else return In::size == Out::size;
}
}  // namespace detail

/// What a bound layer must provide (see the top of this file).
template <class L>
concept HasLayerMembers = requires(L& layer, const L& constant, const float* in, float* out, int batch, Pass pass, Rng rng) {
  typename L::input_shape;
  typename L::output_shape;
  requires is_shape_v<typename L::input_shape> && is_shape_v<typename L::output_shape>;
  { constant.describe() } -> std::convertible_to<std::string>;
  { constant.parameter_tensors() } -> std::ranges::range;
  requires std::same_as<std::ranges::range_value_t<decltype(constant.parameter_tensors())>, TensorSize>;
  layer.bind(out, out);
  layer.init(rng);
  layer.forward(in, out, batch, pass);
  layer.backward(in, in, in, out, batch);
  layer.visit_state(detail::StateVisitor{});
  { L::non_trainable_count } -> std::convertible_to<std::size_t>;
};

/// The memory promises a layer may make are compile-time booleans.
template <class L>
concept MemoryPromisesAreConstants = (!requires { L::in_place; } || detail::ConstantBool<decltype(L::in_place)>) &&
                                     (!requires { L::backward_reads_output; } || detail::ConstantBool<decltype(L::backward_reads_output)>);

/// A layer that works in place writes as many values as it reads.
template <class L>
concept InPlaceKeepsSize = !runs_in_place<L> || detail::same_sample_size<L>();

/// The contract of a bound layer.
template <class L>
concept BoundLayer = HasLayerMembers<L> && MemoryPromisesAreConstants<L> && InPlaceKeepsSize<L>;

/// True when layer `Spec` accepts input shape `Got`; `Needs` is the shape it would accept. When
/// a network is ill-formed the compiler's note names this template with all three arguments:
///   'tnet::LayerFitsInput<tnet::Dense<10>, tnet::Shape<8, 8, 3>, tnet::Shape<1, 1, 192>>::value'
///   evaluates to false
template <class Spec, class Got, class Needs>
struct LayerFitsInput {
  static constexpr bool value = Spec::template accepts<Got>;
};

/// A bound layer with parameter storage of its own, for using one layer outside a network (tests,
/// experiments): its tensors are bound to arrays it owns and initialised from Rng(seed).
template <BoundLayer L>
class Standalone : public L {
 public:
  template <class... Args>
  explicit Standalone(Args&&... args) : L(std::forward<Args>(args)...) {
    std::size_t size = 0;
    for (const TensorSize& t : this->parameter_tensors()) size += t.size;
    values_.assign(size, 0.0f);
    grads_.assign(size, 0.0f);
    this->bind(values_.data(), grads_.data());
    this->init(Rng(0));
  }
  Standalone(const Standalone&) = delete;
  Standalone& operator=(const Standalone&) = delete;

  /// Calls visit(name, values, grads, size) for each trainable tensor.
  template <class Visit>
  void visit_parameters(Visit&& visit) {
    std::size_t at = 0;
    for (const TensorSize& t : this->parameter_tensors()) {
      visit(t.name, values_.data() + at, grads_.data() + at, t.size);
      at += t.size;
    }
  }

 private:
  Buffer values_, grads_;
};

}  // namespace tnet
