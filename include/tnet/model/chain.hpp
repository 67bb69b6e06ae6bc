// tnet/model/chain.hpp: runs a chain of layers, each reading the output of the one before.
//
// LayerChain<In, Specs...> binds each layer spec to the output shape of the layer before it
// (In for the first), owns the bound layers, their output buffers and the gradient buffers, and
// runs the forward and backward passes, fusing neighbouring layers where they say they can
// (layers/layer.hpp). It is what a network is made of (Sequential) and what a residual block's
// body and shortcut are (layers/residual.hpp), so every fusion applies wherever layers follow one
// another. It owns no parameters: bind() points its layers at slices of an array its owner keeps.
//
// Buffers are sized for the largest batch seen and reused. A layer that can work in place (ReLU,
// Dropout, Flatten) writes its output over the previous layer's when that layer's backward does
// not read its own output (shares_buffer).
#pragma once

#include <algorithm>
#include <array>
#include <cctype>
#include <cstddef>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../core/config.hpp"
#include "../core/rng.hpp"
#include "../core/shape.hpp"
#include "../layers/layer.hpp"

namespace tnet {

namespace detail {

// Stands in for a layer that does not fit, so that one static_assert is the whole error.
template <class In>
struct DoesNotFit : Stateless {
  using input_shape = In;
  using output_shape = In;
  static std::string describe() { return "?"; }
  void forward(const float*, float*, int, Pass) {}
  void backward(const float*, const float*, const float*, float*, int) {}
};

template <class Spec, class In>
struct bind_layer {
  static constexpr bool fits = LayerFitsInput<Spec, In, typename Spec::template needs<In>>::value;
  static_assert(LayerFitsInput<Spec, In, typename Spec::template needs<In>>::value,
                "tnet: a layer does not fit the output of the layer before it. The note "
                "'LayerFitsInput<Layer, Got, Needs>' names the layer, the shape it got and the shape it needs "
                "(Shape<1, 1, -1> is the run-time width of Dense<dynamic>, which only element-wise layers take).");
  using bound = std::conditional_t<fits, typename Spec::template Layer<In>, DoesNotFit<In>>;
  static constexpr bool keeps_contract = BoundLayer<bound>;
  static_assert(BoundLayer<bound>,
                "tnet: a layer does not meet the layer contract of tnet/layers/layer.hpp. The notes name "
                "the layer (BoundLayer<L> [with L = ...]) and the requirement it fails.");
  using type = std::conditional_t<keeps_contract, bound, DoesNotFit<In>>;
};

template <class In, class... Specs>
struct bind_chain {
  using type = std::tuple<>;
  using output = In;
};
template <class In, class Spec, class... Rest>
struct bind_chain<In, Spec, Rest...> {
  using layer = typename bind_layer<Spec, In>::type;
  using rest = bind_chain<typename layer::output_shape, Rest...>;
  using type = decltype(std::tuple_cat(std::declval<std::tuple<layer>>(), std::declval<typename rest::type>()));
  using output = typename rest::output;
};

// "Conv2D(32, 3x3, stride 1, same)" -> "conv2d": Keras's lower-case layer names.
inline std::string kind_name(const std::string& description) {
  std::string name;
  for (char c : description) {
    if (c == '(') break;
    name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return name;
}

}  // namespace detail

template <class In, class... Specs>
class LayerChain {
 public:
  using input_shape = In;
  using layers_type = typename detail::bind_chain<In, Specs...>::type;
  /// The last layer's output shape (In for an empty chain); Shape<1, 1, dynamic> when it has the
  /// run-time width.
  using output_shape = typename detail::bind_chain<In, Specs...>::output;
  static constexpr std::size_t depth = sizeof...(Specs);
  template <std::size_t I>
  using layer_type = std::tuple_element_t<I, layers_type>;
  template <std::size_t I>
  using spec_type = std::tuple_element_t<I, std::tuple<Specs...>>;
  /// Whether a layer has the run-time width (Dense<dynamic>).
  static constexpr bool has_dynamic_width = []<std::size_t... I>(std::index_sequence<I...>) {
    return (false || ... || layer_type<I>::output_shape::is_dynamic);
  }(std::make_index_sequence<depth>{});

  /// The layers, those with the run-time width constructed with `width`.
  explicit LayerChain(int width = 0) : width_(width), layers_(make_layers(std::make_index_sequence<depth>{})) {}
  // Layers hold views into their owner's parameter arrays and the buffers into each other.
  LayerChain(const LayerChain&) = delete;
  LayerChain& operator=(const LayerChain&) = delete;
  LayerChain(LayerChain&&) noexcept = default;
  LayerChain& operator=(LayerChain&&) noexcept = default;

  /// Values per sample of layer I's output, `width` being the run-time width.
  template <std::size_t I>
  static int output_size(int width) {
    return sample_size<typename layer_type<I>::output_shape>(width);
  }
  template <std::size_t I>
  std::size_t output_size() const {
    return std::size_t(output_size<I>(width_));
  }
  template <std::size_t I>
  std::string shape_string() const {
    return layer_type<I>::output_shape::str(width_);
  }

  /// "3.conv2d": index and kind, the prefix of the layer's tensor names.
  template <std::size_t I>
  std::string layer_name() const {
    return std::to_string(I) + "." + detail::kind_name(std::get<I>(layers_).describe());
  }

  /// Calls f.template operator()<I>(layer) for each layer in order.
  template <class F>
  void for_each_layer(F&& f) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (f.template operator()<I>(std::get<I>(layers_)), ...);
    }(std::make_index_sequence<depth>{});
  }
  template <class F>
  void for_each_layer(F&& f) const {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (f.template operator()<I>(std::get<I>(layers_)), ...);
    }(std::make_index_sequence<depth>{});
  }

  template <std::size_t I>
  layer_type<I>& layer() {
    return std::get<I>(layers_);
  }
  template <std::size_t I>
  const layer_type<I>& layer() const {
    return std::get<I>(layers_);
  }

  /// Values in every layer's trainable tensors together.
  std::size_t parameter_count() const {
    std::size_t total = 0;
    for_each_layer([&]<std::size_t I>(const auto& layer) {
      for (const TensorSize& t : layer.parameter_tensors()) total += t.size;
    });
    return total;
  }
  /// Points the layers at their slices of `values` and `grads` (parameter_count() floats each),
  /// in layer order, calling tensor(I, name, offset, size) for each tensor.
  template <class Tensor>
  void bind(float* values, float* grads, Tensor&& tensor) {
    std::size_t at = 0;
    for_each_layer([&]<std::size_t I>(auto& layer) {
      layer.bind(values + at, grads + at);
      for (const TensorSize& t : layer.parameter_tensors()) {
        tensor(I, t.name, at, t.size);
        at += t.size;
      }
    });
  }
  /// Each layer initialised from its own stream of `root`.
  void init(const Rng& root) {
    for_each_layer([&]<std::size_t I>(auto& layer) { layer.init(root.derive(I)); });
  }
  static constexpr std::size_t non_trainable_count() {
    return []<std::size_t... I>(std::index_sequence<I...>) {
      return (std::size_t{0} + ... + layer_type<I>::non_trainable_count);
    }(std::make_index_sequence<depth>{});
  }

  /// Sizes the buffers for `batch` samples; allocates only when the batch is the largest so far.
  void reserve(int batch) {
    if (batch <= capacity_) return;
    std::size_t largest = input_shape::is_dynamic ? std::size_t(sample_size<In>(width_)) : std::size_t(In::size);
    for_each_layer([&]<std::size_t I>(auto&) {
      if constexpr (!shares_buffer<I>) ensure_size(buffers_[I], std::size_t(batch) * output_size<I>());
      largest = std::max(largest, output_size<I>());
    });
    ensure_size(grad_a_, std::size_t(batch) * largest);
    ensure_size(grad_b_, std::size_t(batch) * largest);
    capacity_ = batch;
  }

  /// Runs the chain on `batch` samples at `x` (reserve(batch) first) and returns its output, valid
  /// until the next forward. A training forward keeps what backward needs, `x` included.
  const float* forward(const float* x, int batch, const Pass& pass) {
    input_ = x;
    batch_ = batch;
    const Mode mode = pass.mode;
    pooled_in_forward_ = false;
    for_each_layer([&]<std::size_t I>(auto& layer) {
      if constexpr (pooled_in_forward_before<I>) {
        if (mode == Mode::infer && pooled_in_forward_) {  // written already, by the layer this pool follows
          pooled_in_forward_ = false;
          return;
        }
      }
      if constexpr (folded_after<I> > 0 || folded_into_previous<I>) {
        if (mode == Mode::infer) {
          if constexpr (folded_after<I> > 0) forward_folded<I>(layer, batch, pass);
          return;
        }
      }
      if constexpr (pool_fused_after<I>) {  // training: the max pool after this layer reads x through its map
        if (mode != Mode::infer) {
          if constexpr (selects_through<layer_type<I>, layer_type<I + 1>>)  // choosing as the statistics are summed
            return layer.statistics_selecting(layer_input<I>(), batch, pass, std::get<I + 1>(layers_));
          return layer.statistics(layer_input<I>(), batch, pass);
        }
      } else if constexpr (pool_fused_after<I - 1>) {
        if (mode != Mode::infer) {
          const auto map = std::get<I - 1>(layers_).normalisation();
          if constexpr (selects_through<layer_type<I - 1>, layer_type<I>>) return layer.forward_selected(output_buffer<I>(), batch, map);
          return layer.forward_mapped(layer_input<I - 1>(), output_buffer<I>(), batch, pass, map);
        }
      }
      if constexpr (relu_fused_after<I>) {  // training: the ReLU after this layer is applied as it writes its output
        Epilogue relu;
        relu.relu = true;
        return layer.forward(layer_input<I>(), output_buffer<I>(), batch, pass, relu);
      } else if constexpr (relu_fused_after<I - 1>) {
        return;  // the ReLU's output, over its input, is written already
      }
      layer.forward(layer_input<I>(), output_buffer<I>(), batch, pass);
    });
    return output();
  }

  /// The last forward's output.
  const float* output() const {
    if constexpr (depth == 0) return input_;
    else return output_of<depth - 1>();
  }
  /// The batch of the last forward (0 before the first).
  int batch() const { return batch_; }

  /// Back-propagates dL/d(output of layer Last) at `dy` through layers Last, ..., 0 of the last
  /// training forward, writing every parameter gradient, and dL/d(input) to `dx` unless it is
  /// null. `done(I)` is called as soon as layer I's parameter gradients are final. `dy` may be
  /// gradient_buffer().
  template <std::size_t Last, class Done>
  void backward_from(const float* dy, float* dx, Done&& done) {
    if constexpr (depth > 0) backward_step<Last>(dy, dx, done);
  }
  template <class Done>
  void backward(const float* dy, float* dx, Done&& done) {
    if constexpr (depth > 0) backward_step<depth - 1>(dy, dx, done);
  }
  /// A buffer of the largest layer output's size for a batch: where an owner may write the
  /// gradient it starts backward_from with.
  float* gradient_buffer() { return grad_a_.data(); }

  /// The output of layer I from the last forward, unless the layer after it works in place
  /// (shares_buffer<I + 1>): then that layer's output has replaced it. Not written where the
  /// forward fused layer I into another: folded_into_previous<I> in inference, pool_fused_after<I>
  /// in training and calibration, and in inference the last layer folded into a layer that
  /// computed the max pool after them in its forward (pool_in_forward_after).
  template <std::size_t I>
  const float* output_of() const {
    return buffers_[buffer_owner<I>()].data();
  }

  /// Whether layer I writes its output over its input, the previous layer's output: it can work in
  /// place, and the previous layer's backward does not need that output. Never the first layer,
  /// whose input is the caller's.
  template <std::size_t I>
  static constexpr bool shares_buffer = [] {
    if constexpr (I == 0) return false;
    else return runs_in_place<layer_type<I>> && !backward_reads_output<layer_type<I - 1>>;
  }();
  /// Whether layer I exists and is a ReLU, or a per-channel affine map in inference (BatchNorm).
  template <std::size_t I>
  static constexpr bool relu_at = [] {
    if constexpr (I < depth) return folds_as_relu<layer_type<I>>;
    else return false;
  }();
  template <std::size_t I>
  static constexpr bool affine_at = [] {
    if constexpr (I < depth) return folds_as_affine<layer_type<I>>;
    else return false;
  }();
  /// How many of the layers after layer I inference folds into it (layers/layer.hpp): a ReLU, a
  /// batch normalisation, or a ReLU then a batch normalisation after a convolution or dense layer.
  template <std::size_t I>
  static constexpr std::size_t folded_after = [] {
    if constexpr (!takes_epilogue<layer_type<I>>) return std::size_t(0);
    else if constexpr (relu_at<I + 1>) return std::size_t(affine_at<I + 2> ? 2 : 1);
    else return std::size_t(affine_at<I + 1> ? 1 : 0);
  }();
  /// Whether inference folds layer I into a layer before it; it then writes nothing itself.
  template <std::size_t I>
  static constexpr bool folded_into_previous = [] {
    if constexpr (I >= 2) return folded_after<I - 1> >= 1 || folded_after<I - 2> >= 2;
    else if constexpr (I == 1) return folded_after<0> >= 1;
    else return false;
  }();

  /// Whether inference may run the max pool after layer I and the layers folded into it inside
  /// layer I's forward (layers/layer.hpp: pools_in_forward); where it does at run time, only the
  /// pool's output is written.
  template <std::size_t I>
  static constexpr bool pool_in_forward_after = [] {
    if constexpr (I >= depth) return false;
    else if constexpr (folded_after<I> == 0 || I + folded_after<I> + 1 >= depth) return false;
    else return pools_in_forward<layer_type<I>, layer_type<I + folded_after<I> + 1>>;
  }();
  /// Whether layer I is such a max pool.
  template <std::size_t I>
  static constexpr bool pooled_in_forward_before = [] {
    if constexpr (I >= 2 && I - 2 < depth) {
      if constexpr (pool_in_forward_after<I - 2> && folded_after<I - 2> == 1) return true;
    }
    if constexpr (I >= 3 && I - 3 < depth) {
      if constexpr (pool_in_forward_after<I - 3> && folded_after<I - 3> == 2) return true;
    }
    return false;
  }();

  /// Whether training applies the ReLU after layer I as layer I writes its output (the ReLU works
  /// over that output in place and writes nothing itself).
  template <std::size_t I>
  static constexpr bool relu_fused_after = [] {
    if constexpr (I + 1 >= depth || I >= depth) return false;
    else return takes_epilogue<layer_type<I>> && relu_at<I + 1> && shares_buffer<I + 1>;
  }();
  /// Whether training (and calibration) leaves layer I's output to the max pool after it, which
  /// applies layer I's map (a batch normalisation) to layer I's input as it reads it; layer I then
  /// writes no output, and its backward takes the pool's gradient in place of the pool's backward
  /// (layers/layer.hpp: pools_through).
  template <std::size_t I>
  static constexpr bool pool_fused_after = [] {
    if constexpr (I + 1 >= depth || I >= depth) return false;
    else return pools_through<layer_type<I>, layer_type<I + 1>>;
  }();
  /// Whether layer I is a ReLU whose gradient the layer after it applies in its own backward
  /// (layers/layer.hpp: backward_through_relu), so that the ReLU's backward is skipped.
  template <std::size_t I>
  static constexpr bool relu_gradient_by_next = [] {
    if constexpr (I == 0 || I + 1 >= depth || I >= depth) return false;
    else return relu_at<I> && masks_relu_gradient<layer_type<I + 1>>;
  }();

  /// The layer whose buffer holds layer I's output.
  template <std::size_t I>
  static constexpr std::size_t buffer_owner() {
    if constexpr (shares_buffer<I>) return buffer_owner<I - 1>();
    else return I;
  }

 private:
  template <std::size_t... I>
  layers_type make_layers(std::index_sequence<I...>) const {
    return layers_type{make_layer<I>()...};
  }
  template <std::size_t I>
  layer_type<I> make_layer() const {
    using L = layer_type<I>;
    if constexpr (L::input_shape::is_dynamic || L::output_shape::is_dynamic) return L(width_);
    else return L();
  }

  // Layer I's inference forward with the layers folded into it: one pass over its output, written
  // where the last of them would have written theirs.
  template <std::size_t I, class Layer>
  void forward_folded(Layer& layer, int batch, const Pass& pass) {
    constexpr std::size_t last = I + folded_after<I>;
    Epilogue epilogue;
    epilogue.relu = relu_at<I + 1>;
    if constexpr (affine_at<last>) {
      using shape = typename layer_type<last>::output_shape;
      const std::size_t channels = output_size<last>() / std::size_t(shape::height * shape::width);
      ensure_size(affine_, 2 * channels);  // the first inference's only allocation
      std::get<last>(layers_).inference_affine(affine_.data(), affine_.data() + channels);
      epilogue.scale = affine_.data(), epilogue.shift = affine_.data() + channels;
    }
    if constexpr (pool_in_forward_after<I>) {
      pooled_in_forward_ =
          layer.template forward_pooled<layer_type<last + 1>>(layer_input<I>(), output_buffer<last + 1>(), batch, epilogue);
      if (pooled_in_forward_) return;
    }
    layer.forward(layer_input<I>(), output_buffer<last>(), batch, pass, epilogue);
  }

  template <std::size_t I>
  float* output_buffer() {
    return buffers_[buffer_owner<I>()].data();
  }

  template <std::size_t I>
  const float* layer_input() const {
    if constexpr (I == 0) return input_;
    else return output_of<I - 1>();
  }

  // Gradients ping-pong between grad_a_ and grad_b_ on the way down.
  template <std::size_t I, class Done>
  void backward_step(const float* dy, float* grad_input, Done& done) {
    // dy is the ReLU's dx already; or the max pool's backward is the layer's before it
    if constexpr (relu_gradient_by_next<I> || pool_fused_after<I - 1>) return backward_step<I - 1>(dy, grad_input, done);
    float* dx;
    if constexpr (I == 0) dx = grad_input;
    else dx = (dy == grad_a_.data()) ? grad_b_.data() : grad_a_.data();
    if constexpr (pool_fused_after<I>)
      std::get<I>(layers_).backward_through_max_pool(layer_input<I>(), std::get<I + 1>(layers_), dy, dx, batch_,
                                                     I > 0 && relu_gradient_by_next<I - 1>);
    else if constexpr (I > 0 && relu_gradient_by_next<I - 1>)
      std::get<I>(layers_).backward_through_relu(layer_input<I>(), output_buffer<I>(), dy, dx, batch_);
    else std::get<I>(layers_).backward(layer_input<I>(), output_buffer<I>(), dy, dx, batch_);
    done(I);
    if constexpr (I > 0) backward_step<I - 1>(dx, grad_input, done);
  }

  int width_;  // the run-time width of Dense<dynamic>, if a layer has it
  layers_type layers_;
  Buffer affine_;                      // a folded batch normalisation's scale and shift
  std::array<Buffer, depth> buffers_;  // layer outputs; empty where a layer shares_buffer
  Buffer grad_a_, grad_b_;
  const float* input_ = nullptr;
  int batch_ = 0, capacity_ = 0;
  bool pooled_in_forward_ = false;  // this inference's last pool_in_forward_after layer wrote the pool's output
};

}  // namespace tnet
