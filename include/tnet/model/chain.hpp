// tnet/model/chain.hpp: runs a chain of layers, each reading the output of the one before.
//
// LayerChain<In, Specs...> binds each layer spec to the output shape of the layer before it
// (In for the first), owns the bound layers, their output buffers and the gradient buffers, and
// runs the forward and backward passes by the plan of the pass's mode (model/plan.hpp): windows
// of layers that fusion rules (model/rules/) run as one, the other layers alone. It is what a
// network is made of (Sequential) and what a residual block's body and shortcut are
// (layers/residual.hpp), so every rule applies wherever layers follow one another. It owns no
// parameters: bind() points its layers at slices of an array its owner keeps.
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
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../core/config.hpp"
#include "../core/rng.hpp"
#include "../core/shape.hpp"
#include "../layers/layer.hpp"
#include "rules.hpp"

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

/// The types of a chain: its bound layers and which of them share a buffer. What the fusion
/// rules match against (model/plan.hpp).
template <class In, class... Specs>
struct ChainLayout {
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

  /// Whether layer I writes its output over its input, the previous layer's output: it can work in
  /// place, and the previous layer's backward does not need that output. Never the first layer,
  /// whose input is the caller's.
  template <std::size_t I>
  static constexpr bool shares_buffer = [] {
    if constexpr (I == 0) return false;
    else return runs_in_place<layer_type<I>> && !backward_reads_output<layer_type<I - 1>>;
  }();
  /// The layer whose buffer holds layer I's output.
  template <std::size_t I>
  static constexpr std::size_t buffer_owner() {
    if constexpr (shares_buffer<I>) return buffer_owner<I - 1>();
    else return I;
  }
};

template <class In, class... Specs>
class LayerChain : public ChainLayout<In, Specs...> {
 public:
  using layout_type = ChainLayout<In, Specs...>;
  using layout_type::depth;
  using typename layout_type::input_shape;
  using typename layout_type::layers_type;
  using typename layout_type::output_shape;
  template <std::size_t I>
  using layer_type = typename layout_type::template layer_type<I>;
  template <std::size_t I>
  using spec_type = typename layout_type::template spec_type<I>;
  template <std::size_t I>
  static constexpr bool shares_buffer = layout_type::template shares_buffer<I>;
  template <std::size_t I>
  static constexpr std::size_t buffer_owner() {
    return layout_type::template buffer_owner<I>();
  }
  /// The steps of each mode's plan (model/plan.hpp, model/rules.hpp); calibration runs training's.
  using inference_plan = Plan<layout_type, InferenceRules>;
  using training_plan = Plan<layout_type, TrainingRules>;
  using backward_plan = BackwardPlan<layout_type, TrainingRules>;
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

  /// Freezes layers [0, count) (count <= depth; 0 unfreezes): a training or calibration forward
  /// runs them as inference does (batch norm with its moving statistics, left as they are;
  /// dropout off), by the inference plan's steps that end below `count`, and the rest by the
  /// training plan's; a step of either plan that crosses `count` runs its layers one by one.
  /// Backward stops at the lowest layer at or above `count` that has parameters: it writes no
  /// gradient below it, nor dx.
  void freeze(std::size_t count) {
    if (count > depth)
      throw std::invalid_argument("tnet: cannot freeze " + std::to_string(count) + " layers of a chain of " + std::to_string(depth));
    frozen_ = count;
    stop_ = 0;
    if (count == 0) return;
    stop_ = depth;
    for_each_layer([&]<std::size_t I>(const auto& layer) {
      std::size_t size = 0;
      for (const TensorSize& t : layer.parameter_tensors()) size += t.size;
      if (I >= count && size > 0) stop_ = std::min(stop_, I);
    });
  }
  /// The layers freeze() froze: [0, frozen()).
  std::size_t frozen() const { return frozen_; }

  /// Runs the chain on `batch` samples at `x` (reserve(batch) first) and returns its output, valid
  /// until the next forward. A training forward keeps what backward needs, `x` included.
  const float* forward(const float* x, int batch, const Pass& pass) {
    input_ = x;
    batch_ = batch;
    if (pass.mode == Mode::infer) run_forward<inference_plan>(batch, pass);
    else if (frozen_ == 0) run_forward<training_plan>(batch, pass);
    else run_forward_frozen(batch, pass);
    return output();
  }

  /// The first Count steps of Steps, one of this chain's plans (inference_plan in inference,
  /// training_plan otherwise), as forward runs them on `batch` samples at `x` (reserve(batch)
  /// first): for a rule that runs the rest itself, writing the last layer's output elsewhere
  /// (model/rules/add_in_epilogue.hpp). Backward then runs as after forward, provided no layer of
  /// the rest reads its own output there. Not with layers frozen.
  template <class Steps, std::size_t Count>
  void forward_steps(const float* x, int batch, const Pass& pass) {
    static_assert(std::is_same_v<Steps, inference_plan> || std::is_same_v<Steps, training_plan>, "tnet: one of the chain's plans");
    static_assert(Count <= std::tuple_size_v<Steps>);
    input_ = x;
    batch_ = batch;
    run_forward<Steps, Count>(batch, pass);
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
  /// gradient_buffer(). Layer Last ends a step of the backward plan.
  template <std::size_t Last, class Done>
  void backward_from(const float* dy, float* dx, Done&& done) {
    if constexpr (depth > 0) {
      constexpr std::size_t start = step_ending_at<Last>();
      static_assert(start < std::tuple_size_v<backward_plan>, "tnet: backward must start at the end of a step of the plan");
      backward_step<start, start>(dy, dx, done);
    }
  }
  template <class Done>
  void backward(const float* dy, float* dx, Done&& done) {
    if constexpr (depth > 0) backward_from<depth - 1>(dy, dx, done);
  }
  /// A buffer of the largest layer output's size for a batch: where an owner may write the
  /// gradient it starts backward_from with.
  float* gradient_buffer() { return grad_a_.data(); }

  /// The output of layer I from the last forward, unless the layer after it works in place
  /// (shares_buffer<I + 1>): then that layer's output has replaced it. Not written where a step of
  /// the forward's plan runs layer I and does not end there (rule_at and window_at in
  /// model/plan.hpp say which).
  template <std::size_t I>
  const float* output_of() const {
    return buffers_[buffer_owner<I>()].data();
  }

  /// Step S of the training plan alone, on the inputs the last forward left (for benchmarks).
  template <std::size_t S>
  void forward_step(int batch, const Pass& pass) {
    using Step = std::tuple_element_t<S, training_plan>;
    batch_ = batch;
    Step::rule::template forward<Step::first, Step::length>(*this, batch, pass);
  }
  /// Step S of the inference plan alone, on the inputs the last inference left (for benchmarks).
  template <std::size_t S>
  void inference_step(int batch, const Pass& pass) {
    using Step = std::tuple_element_t<S, inference_plan>;
    batch_ = batch;
    Step::rule::template forward<Step::first, Step::length>(*this, batch, pass);
  }
  /// Step S of the backward plan alone, as backward runs it (for benchmarks): returns the
  /// gradient below it, `dx` or (a ReLU whose gradient the step after applies) `dy`.
  template <std::size_t S>
  const float* backward_step_alone(const float* dy, float* dx) {
    using Step = std::tuple_element_t<S, backward_plan>;
    if constexpr (rules::applies_relu_gradient<layout_type, backward_plan, S + 1>()) return dy;
    Step::rule::template backward<Step::first, Step::length, rules::applies_relu_gradient<layout_type, backward_plan, S>()>(*this, dy, dx);
    return dx;
  }

  // ---- for the rules (model/rules/) ----
  /// Layer I's input: the caller's x, or the output of layer I - 1.
  template <std::size_t I>
  const float* input_of() const {
    if constexpr (I == 0) return input_;
    else return output_of<I - 1>();
  }
  /// Where layer I writes its output.
  template <std::size_t I>
  float* output_buffer() {
    return buffers_[buffer_owner<I>()].data();
  }
  /// Channels of layer I's output.
  template <std::size_t I>
  std::size_t channels_of() const {
    using shape = typename layer_type<I>::output_shape;
    return output_size<I>() / std::size_t(shape::height * shape::width);
  }
  /// `count` floats of scratch for a rule's forward (a folded affine); allocates only when more
  /// than ever before are asked for.
  float* scratch(std::size_t count) {
    ensure_size(scratch_, count);
    return scratch_.data();
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

  // The first Count steps of Steps.
  template <class Steps, std::size_t Count = std::tuple_size_v<Steps>>
  void run_forward(int batch, const Pass& pass) {
    [&]<std::size_t... S>(std::index_sequence<S...>) {
      ((std::tuple_element_t<S, Steps>::rule::template forward<std::tuple_element_t<S, Steps>::first,
                                                               std::tuple_element_t<S, Steps>::length>(*this, batch, pass)),
       ...);
    }(std::make_index_sequence<Count>{});
  }

  // A training forward with layers [0, frozen_) frozen: the inference plan's steps below
  // frozen_, then the training plan's from it; a step that crosses it runs its layers alone, each
  // in its part's mode.
  void run_forward_frozen(int batch, const Pass& pass) {
    const Pass infer{Mode::infer, pass.step, pass.reducer, pass.sample_offset};
    const std::size_t frozen = frozen_;
    // Each step through a member function rather than a lambda in the fold: clang-19 crashes on
    // a lambda that names the pack's element inside a fold expression's lambda.
    [&]<std::size_t... S>(std::index_sequence<S...>) {
      (forward_frozen_part<std::tuple_element_t<S, inference_plan>>(frozen, batch, infer), ...);
    }(std::make_index_sequence<std::tuple_size_v<inference_plan>>{});
    [&]<std::size_t... S>(std::index_sequence<S...>) {
      (forward_trainable_part<std::tuple_element_t<S, training_plan>>(frozen, batch, pass), ...);
    }(std::make_index_sequence<std::tuple_size_v<training_plan>>{});
  }
  // An inference step's layers below `frozen`: the whole step, or those of a step that crosses it.
  template <class Step>
  void forward_frozen_part(std::size_t frozen, int batch, const Pass& infer) {
    if (Step::last < frozen) Step::rule::template forward<Step::first, Step::length>(*this, batch, infer);
    else if (Step::first < frozen) run_alone<Step::first, Step::length>(0, frozen, batch, infer);
  }
  // A training step's layers from `frozen` on.
  template <class Step>
  void forward_trainable_part(std::size_t frozen, int batch, const Pass& pass) {
    if (Step::first >= frozen) Step::rule::template forward<Step::first, Step::length>(*this, batch, pass);
    else if (Step::last >= frozen) run_alone<Step::first, Step::length>(frozen, depth, batch, pass);
  }
  // Layers [First, First + Length) that are in [begin, end), each alone.
  template <std::size_t First, std::size_t Length>
  void run_alone(std::size_t begin, std::size_t end, int batch, const Pass& pass) {
    [&]<std::size_t... J>(std::index_sequence<J...>) {
      ((First + J >= begin && First + J < end ? rules::Alone::forward<First + J, 1>(*this, batch, pass) : void()), ...);
    }(std::make_index_sequence<Length>{});
  }

  // The step of the backward plan whose last layer is Last (the plan's size where none is).
  template <std::size_t Last>
  static constexpr std::size_t step_ending_at() {
    return []<std::size_t... S>(std::index_sequence<S...>) {
      std::size_t found = sizeof...(S);
      ((std::tuple_element_t<S, backward_plan>::last == Last ? (found = S, 0) : 0), ...);
      return found;
    }(std::make_index_sequence<std::tuple_size_v<backward_plan>>{});
  }

  // Step S of the backward plan, then the steps before it; Start is the step backward began at.
  // Gradients ping-pong between grad_a_ and grad_b_ on the way down; a ReLU whose gradient the
  // step after it applies (rules/relu_gradient.hpp) passes dy on untouched.
  // With layers frozen, backward ends at the step holding stop_ (that step writes no dx); a step
  // the frozen forward split (it crosses frozen_) runs its layers' backward one by one.
  template <std::size_t Start, std::size_t S, class Done>
  void backward_step(const float* dy, float* grad_input, Done& done) {
    using Step = std::tuple_element_t<S, backward_plan>;
    constexpr bool mask_input = rules::applies_relu_gradient<layout_type, backward_plan, S>();
    constexpr bool left_to_next = S < Start && rules::applies_relu_gradient<layout_type, backward_plan, S + 1>();
    if (Step::last < stop_) return;
    if (Step::first < frozen_) return backward_alone<Step::last, Step::length>(dy, done);
    const float* below = dy;
    if constexpr (!left_to_next) {
      float* dx;
      if constexpr (Step::first == 0) dx = grad_input;
      else dx = Step::first <= stop_ ? nullptr : (dy == grad_a_.data()) ? grad_b_.data() : grad_a_.data();
      Step::rule::template backward<Step::first, Step::length, mask_input>(*this, dy, dx);
      below = dx;
    }
    [&]<std::size_t... J>(std::index_sequence<J...>) { (done(Step::last - J), ...); }(std::make_index_sequence<Step::length>{});
    if constexpr (S > 0) backward_step<Start, S - 1>(below, grad_input, done);
  }
  // Layers Last, Last - 1, ... down to stop_, each alone (of the Length layers ending at Last).
  template <std::size_t Last, std::size_t Length, class Done>
  void backward_alone(const float* dy, Done& done) {
    [&]<std::size_t... J>(std::index_sequence<J...>) { (backward_one<Last - J>(dy, done), ...); }(std::make_index_sequence<Length>{});
  }
  // Layer I alone, if it is at or above stop_; dy moves on to the gradient it writes.
  template <std::size_t I, class Done>
  void backward_one(const float*& dy, Done& done) {
    if (I < stop_) return;
    float* dx = I == stop_ ? nullptr : (dy == grad_a_.data()) ? grad_b_.data() : grad_a_.data();
    rules::Alone::backward<I, 1, false>(*this, dy, dx);
    done(I);
    dy = dx;
  }

  int width_;  // the run-time width of Dense<dynamic>, if a layer has it
  layers_type layers_;
  Buffer scratch_;                     // the rules' (a folded batch normalisation's scale and shift)
  std::array<Buffer, depth> buffers_;  // layer outputs; empty where a layer shares_buffer
  Buffer grad_a_, grad_b_;
  const float* input_ = nullptr;
  int batch_ = 0, capacity_ = 0;
  std::size_t frozen_ = 0;  // layers [0, frozen_) frozen (freeze)
  std::size_t stop_ = 0;    // the lowest layer backward reaches: 0, or with layers frozen the lowest trainable one
};

}  // namespace tnet
