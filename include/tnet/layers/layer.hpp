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
// Beyond that contract a layer may declare capabilities, each a statement about itself alone,
// which the fusion rules (model/rules/) combine where neighbouring layers allow:
//   forward(x, y, batch, Pass, const Epilogue&)  forward, each output value then put through the
//                                               epilogue (core/gemm_kernels.hpp: bias, affine,
//                                               added tensor, clamp): Conv2D, DepthwiseConv2D,
//                                               Dense, BatchNorm, Residual
//   static constexpr float clamp_max;           the layer is min(max(x, 0), clamp_max): ReLU
//                                               (infinity), ReLU6 (6)
//   inference_affine(scale, shift)              in inference the layer is x * scale[c] + shift[c]
//                                               per channel c; writes both (BatchNorm)
//   body(), shortcut()                          the layer's output is body(x) + shortcut(x), each
//                                               a chain (model/chain.hpp, types body_type and
//                                               shortcut_type), the shortcut x itself when it has
//                                               no layers; its backward needs neither chain's
//                                               output (Residual)
//   backward_where_positive(x, y, dy, dx, batch)  backward, then dx zeroed where x <= 0
//                                               (BatchNorm): after a ReLU, its gradient too
//   forward_pooled<Pool>(x, y, batch, const Epilogue&) -> bool   inference's forward and epilogue,
//                                               then Pool, a layer whose tiling windows reduce
//                                               strips of rows (MaxPool2D::pool_strip), computed
//                                               a strip at a time; false, writing nothing, where
//                                               it cannot (Conv2D: not for Winograd or Eigen)
//   static constexpr bool pixel_product = true;   its product's rows are its input's pixels (a
//                                               1x1 convolution at stride 1), and
//                                               forward_pieces(x, epilogue, prepared, tasks, work)
//                                               computes inference's forward in pieces a caller
//                                               chooses, in parallel (Conv2D)
//   static constexpr bool rows_anywhere = true;   forward_row(rows, out, epilogue) computes one
//                                               output row from pointers to the input rows under
//                                               its window, wherever they lie, when
//                                               rows_anywhere_now() (DepthwiseConv2D)
// A per-channel map whose parameters come from the batch in training (BatchNorm):
//   statistics(x, batch, Pass)                  the training forward short of writing y
//   normalisation() -> m                        then the map itself: y = m(x, c) in channel c,
//                                               monotone in x with the sign of m.gamma[c]
//   statistics_shift(x, batch, Pass), statistics_from(sums, batch)   statistics() in two halves,
//                                               for sums of x - shift and its square taken by
//                                               another pass over x (image_sums(batch) holds them)
//   backward_at(x, at, chosen, per_image, dy, dx, batch, where_positive)   backward when dy is
//                                               zero but at one input per output of a tiling:
//                                               its offset within its image and its value
// and a pool that can read through such a map (MaxPool2D): forward_mapped(x, y, batch, Pass, m);
// where its windows tile x, select(x, batch, direction, shift, sums) choosing per window while
// it sums x - shift, then forward_selected(y, batch, m); argmax() and chosen_inputs() after.
// All buffers are NHWC: batch x height x width x channels, one contiguous float array.
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
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

/// Whether a bound layer writes its output through an epilogue (see above).
template <class Layer>
inline constexpr bool takes_epilogue = requires(Layer& layer, const float* x, float* y, int batch, Pass pass, const Epilogue& epilogue) {
  layer.forward(x, y, batch, pass, epilogue);
};

/// Whether a bound layer is min(max(x, 0), Layer::clamp_max) (see above).
template <class Layer>
inline constexpr bool is_clamp = requires { requires std::same_as<std::remove_cv_t<decltype(Layer::clamp_max)>, float>; };
/// Whether a bound layer is max(x, 0).
template <class Layer>
inline constexpr bool is_relu = [] {
  if constexpr (is_clamp<Layer>) return Layer::clamp_max == std::numeric_limits<float>::infinity();
  else return false;
}();

/// Whether a bound layer is, in inference, a per-channel affine map (see above).
template <class Layer>
inline constexpr bool folds_as_affine = requires(const Layer& layer, float* scale, float* shift) { layer.inference_affine(scale, shift); };

/// Whether a bound layer is the sum of two chains on its input (see above).
template <class Layer>
inline constexpr bool sums_paths = requires(Layer& layer) {
  typename Layer::body_type;
  typename Layer::shortcut_type;
  { layer.body() } -> std::same_as<typename Layer::body_type&>;
  { layer.shortcut() } -> std::same_as<typename Layer::shortcut_type&>;
};

/// Whether a bound layer's backward can also zero dx where its input is not positive (see above).
template <class Layer>
inline constexpr bool masks_input_gradient = requires(Layer& layer, const float* x, const float* y, const float* dy, float* dx, int batch) {
  layer.backward_where_positive(x, y, dy, dx, batch);
};

/// Whether bound layer Layer computes its output and then the pool Pool a strip at a time (see above).
template <class Layer, class Pool>
inline constexpr bool pools_in_forward = requires(Layer& layer, const float* x, float* y, int batch, const Epilogue& epilogue) {
  { layer.template forward_pooled<Pool>(x, y, batch, epilogue) } -> std::same_as<bool>;
};

/// Whether a bound layer's inference forward can be computed a piece of pixels at a time (see above).
template <class Layer>
inline constexpr bool pixel_product = requires { requires Layer::pixel_product; };

/// Whether a bound layer computes an output row from its input rows wherever they lie (see above).
template <class Layer>
inline constexpr bool rows_anywhere = requires { requires Layer::rows_anywhere; };

/// Whether a bound layer is a per-channel map with batch statistics in training (see above).
template <class Layer>
inline constexpr bool maps_per_channel = requires(Layer& layer, const Layer& constant, const float* x, int batch, Pass pass) {
  layer.statistics(x, batch, pass);
  constant.normalisation();
};

/// Whether bound layer Pool pools through the per-channel map of bound layer Map, remembering
/// the inputs it chose in windows that do not overlap, and Map's backward can start from them
/// (see above).
template <class Map, class Pool>
inline constexpr bool pools_through =
    maps_per_channel<Map> && std::is_same_v<typename Pool::input_shape, typename Map::output_shape> && requires {
      requires !Pool::windows_overlap;
    } && requires(Map& map, Pool& pool, const float* x, float* y, const float* dy, float* dx, int batch, Pass pass) {
      pool.forward_mapped(x, y, batch, pass, map.normalisation());
      { pool.argmax() } -> std::same_as<const std::int32_t*>;
      { pool.chosen_inputs() } -> std::same_as<const float*>;
      map.backward_at(x, pool.argmax(), pool.chosen_inputs(), 1, dy, dx, batch, true);
    };

/// Whether, beyond pools_through, Pool chooses in the pass over x that sums Map's statistics.
template <class Map, class Pool>
inline constexpr bool selects_through =
    pools_through<Map, Pool> && requires(Map& map, Pool& pool, const float* x, float* y, int batch, Pass pass, const float* direction) {
      { map.statistics_shift(x, batch, pass) } -> std::same_as<const double*>;
      { map.image_sums(batch) } -> std::same_as<double*>;
      pool.select(x, batch, direction, map.statistics_shift(x, batch, pass), map.image_sums(batch));
      map.statistics_from(static_cast<const double*>(map.image_sums(batch)), batch);
      pool.forward_selected(y, batch, map.normalisation());
    };

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
