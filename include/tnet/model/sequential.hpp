// tnet/model/sequential.hpp: a network as a type.
//
//   using Net = tnet::Sequential<tnet::Input<32, 32, 3>, tnet::Conv2D<16, 3>, tnet::ReLU,
//                                tnet::MaxPool2D<2>, tnet::Flatten, tnet::Dense<10>, tnet::Softmax>;
//
// Each layer's input shape is the previous layer's output shape, worked out at compile time; a
// layer that cannot take its input, or that breaks the layer contract (layers/layer.hpp), is a
// compile error naming the layer. Two dimensions are data, not architecture, and are set at run
// time: the batch size, and the width of a Dense<dynamic> layer (the label count), given to the
// constructor: Sequential(Outputs{65}, seed). Buffers are sized for the largest batch seen and
// reused, so a training step at a batch size seen before allocates nothing
// (tests/step_allocations.cpp). Every trainable value lives in one contiguous array and every
// gradient in another (parameters()), so an optimizer step, weight averaging or a copy is one loop. A layer that can work in place
// (ReLU, Dropout, Flatten) writes its output over the previous layer's when that layer's backward
// does not read its own output (a convolution's, a pooling's): a ReLU after every convolution
// costs no memory.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <locale>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/config.hpp"
#include "../core/parameters.hpp"
#include "../core/reducer.hpp"
#include "../core/rng.hpp"
#include "../core/shape.hpp"
#include "../layers/activation.hpp"
#include "../layers/layer.hpp"
#include "../train/loss.hpp"
#include "../train/optimizer.hpp"

namespace tnet {

/// The run-time width of a network with a Dense<dynamic> layer: Sequential(Outputs{65}, seed).
struct Outputs {
  int count;
};

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
                "tnet::Sequential: a layer does not fit the output of the layer before it. The note "
                "'LayerFitsInput<Layer, Got, Needs>' names the layer, the shape it got and the shape it needs "
                "(Shape<1, 1, -1> is the run-time width of Dense<dynamic>, which only element-wise layers take).");
  using bound = std::conditional_t<fits, typename Spec::template Layer<In>, DoesNotFit<In>>;
  static constexpr bool keeps_contract = BoundLayer<bound>;
  static_assert(BoundLayer<bound>,
                "tnet::Sequential: a layer does not meet the layer contract of tnet/layers/layer.hpp. The notes name "
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

template <class T>
struct is_input : std::false_type {};
template <int H, int W, int C>
struct is_input<Input<H, W, C>> : std::true_type {};

// "Conv2D(32, 3x3, stride 1, same)" -> "conv2d": Keras's lower-case layer names.
inline std::string kind_name(const std::string& description) {
  std::string name;
  for (char c : description) {
    if (c == '(') break;
    name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return name;
}

inline std::string with_commas(std::size_t n) {
  std::string digits = std::to_string(n), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// "x holds 10 floats; a batch of 2 at (None, 4, 4, 3) needs 96". `shape()` names the shape; it is
// called only for the error, so that a training step allocates nothing.
template <class ShapeName>
void check_size(const char* where, const char* what, std::size_t got, int batch, ShapeName shape, std::size_t per_sample) {
  if (got != std::size_t(batch) * per_sample)
    throw std::invalid_argument(std::string("tnet::Sequential::") + where + ": " + what + " holds " + std::to_string(got) +
                                " floats; a batch of " + std::to_string(batch) + " at " + shape() + " needs " +
                                std::to_string(std::size_t(batch) * per_sample));
}

}  // namespace detail

template <class InputSpec, class... Specs>
class Sequential {
  static_assert(detail::is_input<InputSpec>::value, "tnet::Sequential: the first argument must be tnet::Input<H, W, C>");
  static_assert(sizeof...(Specs) > 0, "tnet::Sequential: a network needs at least one layer");

 public:
  using input_shape = typename InputSpec::shape;
  using layers_type = typename detail::bind_chain<input_shape, Specs...>::type;
  /// The output's compile-time shape; Shape<1, 1, dynamic> when it has the run-time width.
  using output_shape = typename detail::bind_chain<input_shape, Specs...>::output;
  static constexpr std::size_t depth = sizeof...(Specs);
  template <std::size_t I>
  using layer_type = std::tuple_element_t<I, layers_type>;
  /// The spec layer I was made from (Conv2D<32, 3>): what exporters map to other formats.
  template <std::size_t I>
  using spec_type = std::tuple_element_t<I, std::tuple<Specs...>>;
  /// Values in one input sample.
  static constexpr std::size_t input_size = input_shape::size;
  /// Whether a layer has the run-time width: the network is then constructed with Outputs{n}.
  static constexpr bool has_dynamic_width = []<std::size_t... I>(std::index_sequence<I...>) {
    return (false || ... || layer_type<I>::output_shape::is_dynamic);
  }(std::make_index_sequence<depth>{});

  /// A network with freshly initialised weights (glorot-uniform kernels, zero biases), all drawn
  /// from `seed`.
  explicit Sequential(std::uint64_t seed = 42)
    requires(!has_dynamic_width)
      : Sequential(Outputs{output_size<depth - 1>(0)}, seed) {}
  /// The same, with `outputs.count` (>= 1) as the run-time width of Dense<dynamic>; a network
  /// without one takes only its own output size here.
  explicit Sequential(Outputs outputs, std::uint64_t seed = 42)
      : width_(checked_width(outputs.count)), layers_(make_layers(std::make_index_sequence<depth>{})) {
    bind_parameters();
    init(seed);
  }
  // Layers hold views into the parameter arrays (parameters()), so a network is moved, never
  // copied; copy its weights with parameters().values.
  Sequential(const Sequential&) = delete;
  Sequential& operator=(const Sequential&) = delete;
  Sequential(Sequential&&) noexcept = default;
  Sequential& operator=(Sequential&&) noexcept = default;

  /// Re-draws every weight from `seed` and resets running statistics and the step count.
  void init(std::uint64_t seed) {
    seed_ = seed;
    step_ = 0;
    rounded_stale_ = true;
    const Rng root(seed);
    for_each_layer([&]<std::size_t I>(auto& layer) { layer.init(root.derive(I)); });
  }

  /// Values in one output sample: the run-time width, or the output shape's size.
  int outputs() const { return output_size<depth - 1>(width_); }
  /// Values in one sample of layer I's output.
  template <std::size_t I>
  std::size_t output_size() const {
    return std::size_t(output_size<I>(width_));
  }

  /// Runs the network on `batch` samples in `x` (batch x input_size floats, NHWC) and returns its
  /// output (batch x outputs()), valid until the next forward. A training forward keeps what
  /// backward needs, `x` included: keep it alive until then. Throws std::invalid_argument when
  /// x's size is not batch x input_size.
  std::span<const float> forward(std::span<const float> x, int batch, Mode mode = Mode::infer) {
    return forward(x, Shard{nullptr, 0, batch, batch}, mode);
  }

  /// The same for this process's slice of a global batch shared by several processes
  /// (core/reducer.hpp): batch normalisation in Mode::train and Mode::calibrate uses the global
  /// batch's statistics, dropout its masks. Every process of the group must call it together.
  std::span<const float> forward(std::span<const float> x, const Shard& shard, Mode mode) {
    const int batch = shard.count;
    if (batch < 1) throw std::invalid_argument("tnet::Sequential::forward: batch must be >= 1, got " + std::to_string(batch));
    detail::check_size("forward", "x", x.size(), batch, [] { return input_shape::str(); }, input_size);
    reserve(batch);
    input_ = x.data();
    batch_ = batch;
    if (mode == Mode::infer) round_kernels_if_stale();
    else rounded_stale_ = true;  // an optimizer step is likely to follow
    const Pass pass{mode, step_, shard.reducer, std::uint64_t(shard.offset)};
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
    if (mode == Mode::train) ++step_;
    return output();
  }

  /// Inference on a batch: forward in Mode::infer.
  std::span<const float> predict(std::span<const float> x, int batch) { return forward(x, batch, Mode::infer); }

  /// How inference reads the dense layers' kernels: as they are (Precision::fp32, the default), or
  /// rounded to bfloat16 (Precision::bf16, core/bfloat16.hpp), half the bytes to read, products and
  /// sums still in float. A batch-1 forward of SmallerVGGNet spends half its time reading its
  /// 8192 x 1024 kernel. Outputs move by the rounding (a relative 2^-8 per weight at most; see
  /// benchmarks/RESULTS.md for its effect on accuracy). The rounded copies (2 bytes a weight) are
  /// made by the first inference after this call and after anything that may have changed the
  /// weights: a training forward, init, or parameters() or layer<I>() (every way to write them,
  /// load_model's, an optimizer's and averaging's included), so keep no Parameters from
  /// parameters() across an inference to write through it later. Only with tnet's own kernels;
  /// with Eigen's (not x86-64) inference reads floats.
  void set_inference_precision(Precision precision) {
    precision_ = precision;
    rounded_stale_ = true;
    if (precision == Precision::fp32)
      for_each_layer([&]<std::size_t I>(auto& layer) {
        if constexpr (requires { layer.round_kernel(false); }) layer.round_kernel(false);
      });
  }
  Precision inference_precision() const { return precision_; }

  /// Back-propagates dL/d(output) (batch x outputs() values) through the batch of the last
  /// training forward, filling every parameter gradient, and dL/d(input) into `grad_input` (batch
  /// x input_size) unless it is empty.
  void backward(std::span<const float> grad_output, std::span<float> grad_input = {}) {
    if (batch_ == 0) throw std::logic_error("tnet::Sequential::backward: no forward pass to back-propagate through");
    detail::check_size("backward", "grad_output", grad_output.size(), batch_, [this] { return output_string(); }, std::size_t(outputs()));
    if (!grad_input.empty())
      detail::check_size("backward", "grad_input", grad_input.size(), batch_, [] { return input_shape::str(); }, input_size);
    backward_from<depth - 1>(grad_output.data(), grad_input.empty() ? nullptr : grad_input.data(), nullptr);
  }

  /// One training step: forward in training mode, the loss fused with the last layer (binary
  /// cross-entropy for Sigmoid, categorical cross-entropy for Softmax), backward, and one
  /// optimizer update. `targets` holds batch x outputs() values. Returns the batch's loss as
  /// Keras reports it; output() then holds the batch's predictions (before the update).
  double train_step(std::span<const float> x, std::span<const float> targets, int batch, Optimizer& optimizer) {
    return train_step(x, targets, Shard{nullptr, 0, batch, batch}, optimizer);
  }

  /// Data-parallel training (core/reducer.hpp, tnet/dist/mpi.hpp): one step on the global batch
  /// of which `x` and `targets` are this process's slice, `shard`. Every process of the group
  /// calls it together, with the same optimizer state; the gradients are summed over the
  /// processes (each layer's starting as soon as backpropagation has passed it), so every process
  /// makes the same update, the one a single process would make on the whole batch (up to the
  /// order of the sums). Returns the global batch's loss.
  double train_step(std::span<const float> x, std::span<const float> targets, const Shard& shard, Optimizer& optimizer) {
    const double loss = training_pass("train_step", x, targets, shard, {});
    optimizer.step(parameters());
    return loss;
  }

  /// Forward in training mode, the fused loss and backward, without an optimizer step: the
  /// gradients are left in place, dL/d(input) in `grad_input` unless it is empty. Returns the loss.
  double compute_gradients(std::span<const float> x, std::span<const float> targets, int batch, std::span<float> grad_input = {}) {
    return training_pass("compute_gradients", x, targets, Shard{nullptr, 0, batch, batch}, grad_input);
  }
  /// The same for this process's slice of a global batch: the gradients left are the global
  /// batch's, summed over the processes; so is the loss returned.
  double compute_gradients(std::span<const float> x, std::span<const float> targets, const Shard& shard, std::span<float> grad_input = {}) {
    return training_pass("compute_gradients", x, targets, shard, grad_input);
  }

  /// The loss of a batch in inference mode (Keras's evaluate); output() holds the predictions.
  double evaluate(std::span<const float> x, std::span<const float> targets, int batch) {
    check_sizes("evaluate", x, targets, batch, {});
    forward(x, batch, Mode::infer);
    return loss_only(targets.data());
  }

  /// The last forward's output (batch x outputs() values).
  std::span<const float> output() const { return {output_of<depth - 1>(), std::size_t(batch_) * outputs()}; }
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

  template <std::size_t I>
  layer_type<I>& layer() {
    rounded_stale_ = true;  // its weights may be written through it
    return std::get<I>(layers_);
  }
  template <std::size_t I>
  const layer_type<I>& layer() const {
    return std::get<I>(layers_);
  }

  /// Every trainable value in one array, every gradient in another, and each tensor's name and
  /// place, in layer order.
  Parameters parameters() {
    rounded_stale_ = true;  // the weights may be written through it
    return {values_, grads_, tensors_};
  }

  /// Calls visit(name, std::span<T>) for every non-trainable tensor (running statistics).
  template <class Visit>
  void visit_state(Visit&& visit) {
    for_each_layer([&]<std::size_t I>(auto& layer) {
      const std::string prefix = layer_name<I>() + ".";
      layer.visit_state([&](std::string_view name, auto span) { visit(prefix + std::string(name), span); });
    });
  }

  /// Makes every BatchNorm forget its moving statistics; the forwards in Mode::calibrate (or
  /// Mode::train) that follow estimate them afresh. Running the training set through
  /// forward(x, batch, Mode::calibrate) after this gives the final weights statistics of their
  /// own, measured without dropout as inference will see the activations, rather than an average
  /// that lags behind the weights ("precise batch norm").
  void reset_batch_norm_statistics() {
    for_each_layer([&]<std::size_t I>(auto& layer) {
      if constexpr (requires { layer.reset_moving_statistics(); }) layer.reset_moving_statistics();
    });
  }

  /// Training forwards so far; numbers the dropout masks.
  std::uint64_t step() const { return step_; }
  std::uint64_t seed() const { return seed_; }
  void set_step(std::uint64_t step) { step_ = step; }
  /// Sets the seed and step a model file recorded (load_model does this).
  void restore(std::uint64_t seed, std::uint64_t step) {
    seed_ = seed;
    step_ = step;
    const Rng root(seed);
    // Only dropout keeps its generator; re-deriving it leaves every weight as loaded.
    for_each_layer([&]<std::size_t I>(auto& layer) {
      if constexpr (requires { layer.reseed(root.derive(I)); }) layer.reseed(root.derive(I));
    });
  }

  /// Keras's parameter counts: trainable values, and the non-trainable batch-norm statistics.
  std::size_t trainable_count() const { return values_.size(); }
  std::size_t non_trainable_count() const {
    return []<std::size_t... I>(std::index_sequence<I...>) {
      return (std::size_t{0} + ... + layer_type<I>::non_trainable_count);
    }(std::make_index_sequence<depth>{});
  }

  /// The first line of the signature: "Input(None, 96, 96, 3)".
  static std::string input_signature() { return "Input" + input_shape::str(); }

  /// The architecture, one layer a line, the run-time width included: what a model file must
  /// match to be loaded. Dense<dynamic> with 6 outputs reads as Dense<6> does.
  std::string signature() const {
    std::string s = input_signature() + "\n";
    for_each_layer([&]<std::size_t I>(const auto& layer) { s += layer.describe() + " -> " + shape_string<I>() + "\n"; });
    return s;
  }

  /// Keras's model.summary() table.
  void summary(std::ostream& out = std::cout) const {
    const std::string rule(78, '_'), double_rule(78, '=');
    out << "Model: \"sequential\"\n" << rule << "\n";
    out << std::left << std::setw(38) << " Layer (type)" << std::setw(26) << "Output Shape" << "Param #\n" << double_rule << "\n";
    for_each_layer([&]<std::size_t I>(const auto& layer) {
      std::size_t count = layer_type<I>::non_trainable_count;
      for (const TensorSize& t : layer.parameter_tensors()) count += t.size;
      const std::string description = layer.describe();
      std::string name = " ";  // " 3.conv2d (Conv2D)"; built by appending (GCC 12 misreads " " + std::string)
      name += layer_name<I>();
      name += " (" + description.substr(0, description.find('(')) + ")";
      out << std::left << std::setw(38) << name << std::setw(26) << shape_string<I>() << detail::with_commas(count) << "\n"
          << (I + 1 < depth ? rule : double_rule) << "\n";
    });
    out << "Total params: " << detail::with_commas(trainable_count() + non_trainable_count()) << "\n"
        << "Trainable params: " << detail::with_commas(trainable_count()) << "\n"
        << "Non-trainable params: " << detail::with_commas(non_trainable_count()) << "\n"
        << rule << "\n";
  }

  /// "3.conv2d": index and kind, the prefix of the layer's tensor names.
  template <std::size_t I>
  std::string layer_name() const {
    return std::to_string(I) + "." + detail::kind_name(std::get<I>(layers_).describe());
  }

 private:
  using last_layer = layer_type<depth - 1>;
  static constexpr bool ends_in_sigmoid = std::is_same_v<last_layer, Sigmoid::Layer<typename last_layer::input_shape>>;
  static constexpr bool ends_in_softmax = std::is_same_v<last_layer, Softmax::Layer<typename last_layer::input_shape>>;

  // Values per sample of layer I's output, `width` being the run-time width.
  template <std::size_t I>
  static int output_size(int width) {
    return sample_size<typename layer_type<I>::output_shape>(width);
  }
  template <std::size_t I>
  std::string shape_string() const {
    return layer_type<I>::output_shape::str(width_);
  }
  std::string output_string() const { return output_shape::str(width_); }

  int checked_width(int width) const {
    if constexpr (has_dynamic_width) {
      if (width < 1)
        throw std::invalid_argument("tnet::Sequential: the run-time width (Outputs) must be >= 1, got " + std::to_string(width));
    } else if (width != output_shape::size) {
      throw std::invalid_argument("tnet::Sequential: this network has " + std::to_string(output_shape::size) + " outputs, not " +
                                  std::to_string(width));
    }
    return width;
  }

  // A layer whose input or output has the run-time width is constructed with it.
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

  // One array for every layer's tensors, one for their gradients; each layer gets its slices.
  void bind_parameters() {
    std::size_t total = 0;
    for_each_layer([&]<std::size_t I>(auto& layer) {
      for (const TensorSize& t : layer.parameter_tensors()) total += t.size;
    });
    values_.assign(total, 0.0f);
    grads_.assign(total, 0.0f);
    tensors_.clear();
    std::size_t at = 0;
    for_each_layer([&]<std::size_t I>(auto& layer) {
      const std::size_t first = at;
      layer.bind(values_.data() + at, grads_.data() + at);
      for (const TensorSize& t : layer.parameter_tensors()) {
        tensors_.push_back(ParamRef{layer_name<I>() + "." + std::string(t.name), values_.data() + at, grads_.data() + at, t.size, at});
        at += t.size;
      }
      layer_parameters_[I] = std::span<float>(grads_.data() + first, at - first);
    });
  }

  // Precision::bf16: the dense kernels' bfloat16 copies remade when the weights may have changed.
  void round_kernels_if_stale() {
    if (precision_ != Precision::bf16 || !rounded_stale_) return;
    for_each_layer([&]<std::size_t I>(auto& layer) {
      if constexpr (requires { layer.round_kernel(true); }) layer.round_kernel(true);
    });
    rounded_stale_ = false;
  }

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

  void reserve(int batch) {
    if (batch <= capacity_) return;
    std::size_t largest = input_size;
    for_each_layer([&]<std::size_t I>(auto&) {
      if constexpr (!shares_buffer<I>) ensure_size(buffers_[I], std::size_t(batch) * output_size<I>());
      largest = std::max(largest, output_size<I>());
    });
    ensure_size(grad_a_, std::size_t(batch) * largest);
    ensure_size(grad_b_, std::size_t(batch) * largest);
    capacity_ = batch;
  }

  // Every size checked before anything changes (a training forward moves the step and the
  // batch-norm statistics).
  void check_sizes(const char* where, std::span<const float> x, std::span<const float> targets, int batch,
                   std::span<float> grad_input) const {
    if (batch < 1)
      throw std::invalid_argument(std::string("tnet::Sequential::") + where + ": batch must be >= 1, got " + std::to_string(batch));
    detail::check_size(where, "x", x.size(), batch, [] { return input_shape::str(); }, input_size);
    detail::check_size(where, "targets", targets.size(), batch, [this] { return output_string(); }, std::size_t(outputs()));
    if (!grad_input.empty())
      detail::check_size(where, "grad_input", grad_input.size(), batch, [] { return input_shape::str(); }, input_size);
  }

  double training_pass(const char* where, std::span<const float> x, std::span<const float> targets, const Shard& shard,
                       std::span<float> grad_input) {
    check_sizes(where, x, targets, shard.count, grad_input);
    if (shard.offset < 0 || shard.global_batch < shard.offset + shard.count)
      throw std::invalid_argument(std::string("tnet::Sequential::") + where + ": samples [" + std::to_string(shard.offset) + ", " +
                                  std::to_string(shard.offset + shard.count) + ") are not in a global batch of " +
                                  std::to_string(shard.global_batch));
    forward(x, shard, Mode::train);
    double loss = loss_and_gradient(targets.data(), shard.global_batch);
    backward_from_logits(grad_input.empty() ? nullptr : grad_input.data(), shard.reducer);
    if (shard.reducer) {
      shard.reducer->finish_gradients();
      shard.reducer->sum(std::span(&loss, 1));
    }
    return loss;
  }

  // Gradients ping-pong between grad_a_ and grad_b_ on the way down. With a reducer, each layer's
  // gradients are handed to it as soon as they are final, to be summed over the processes.
  template <std::size_t I>
  void backward_from(const float* dy, float* grad_input, Reducer* reducer) {
    // dy is the ReLU's dx already; or the max pool's backward is the layer's before it
    if constexpr (relu_gradient_by_next<I> || pool_fused_after<I - 1>) return backward_from<I - 1>(dy, grad_input, reducer);
    float* dx;
    if constexpr (I == 0) dx = grad_input;
    else dx = (dy == grad_a_.data()) ? grad_b_.data() : grad_a_.data();
    if constexpr (pool_fused_after<I>)
      std::get<I>(layers_).backward_through_max_pool(layer_input<I>(), std::get<I + 1>(layers_), dy, dx, batch_,
                                                     I > 0 && relu_gradient_by_next<I - 1>);
    else if constexpr (I > 0 && relu_gradient_by_next<I - 1>)
      std::get<I>(layers_).backward_through_relu(layer_input<I>(), output_buffer<I>(), dy, dx, batch_);
    else std::get<I>(layers_).backward(layer_input<I>(), output_buffer<I>(), dy, dx, batch_);
    if (reducer && !layer_parameters_[I].empty()) reducer->gradients_ready(layer_parameters_[I]);
    if constexpr (I > 0) backward_from<I - 1>(dx, grad_input, reducer);
  }

  // Back-propagates the fused loss's gradient (in grad_a_) from the layer below the activation.
  void backward_from_logits(float* grad_input, Reducer* reducer) {
    if constexpr (depth >= 2) backward_from<depth - 2>(grad_a_.data(), grad_input, reducer);
  }

  // The loss of the last forward's logits against `targets`; dL/dlogits goes to grad_a_. The
  // batch may be a slice of a global batch of `global_batch`: the loss is then the slice's share.
  double loss_and_gradient(const float* targets, int global_batch) {
    static_assert(depth >= 2 && (ends_in_sigmoid || ends_in_softmax),
                  "tnet::Sequential: training needs a network ending in Sigmoid (binary cross-entropy) or Softmax "
                  "(categorical cross-entropy); call forward and backward yourself for other losses");
    const float* logits = output_of<depth - 2>();
    const int labels = outputs();
    if constexpr (ends_in_sigmoid)
      return binary_crossentropy(logits, targets, std::ptrdiff_t(batch_) * labels, grad_a_.data(), std::ptrdiff_t(global_batch) * labels);
    else return categorical_crossentropy(logits, targets, batch_, labels, grad_a_.data(), global_batch);
  }

  double loss_only(const float* targets) const {
    static_assert(depth >= 2 && (ends_in_sigmoid || ends_in_softmax),
                  "tnet::Sequential: evaluate needs a network ending in Sigmoid or Softmax");
    const float* logits = output_of<depth - 2>();
    const int labels = outputs();
    if constexpr (ends_in_sigmoid) return binary_crossentropy(logits, targets, std::ptrdiff_t(batch_) * labels);
    else return categorical_crossentropy(logits, targets, batch_, labels);
  }

  int width_;  // the run-time width, or the output size of a network without one
  layers_type layers_;
  Buffer values_, grads_;  // every trainable value and gradient; layers hold views into them
  std::vector<ParamRef> tensors_;
  std::array<std::span<float>, depth> layer_parameters_{};  // each layer's gradients, a slice of grads_
  Buffer affine_;                                           // a folded batch normalisation's scale and shift
  std::array<Buffer, depth> buffers_;                       // layer outputs; empty where a layer shares_buffer
  Buffer grad_a_, grad_b_;
  const float* input_ = nullptr;
  int batch_ = 0, capacity_ = 0;
  std::uint64_t seed_ = 0, step_ = 0;
  Precision precision_ = Precision::fp32;  // set_inference_precision
  bool pooled_in_forward_ = false;         // this inference's last pool_in_forward_after layer wrote the pool's output
  bool rounded_stale_ = true;              // the weights may have changed since the bf16 copies were made
};

}  // namespace tnet
