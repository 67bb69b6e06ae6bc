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
#include <cmath>
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
#include "chain.hpp"
#include "../train/loss.hpp"
#include "../train/optimizer.hpp"

namespace tnet {

/// The run-time width of a network with a Dense<dynamic> layer: Sequential(Outputs{65}, seed).
struct Outputs {
  int count;
};

/// A count with its thousands separated as summary() prints them: 1234567 is "1,234,567".
inline std::string with_commas(std::size_t n) {
  std::string digits = std::to_string(n), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

namespace detail {

template <class T>
struct is_input : std::false_type {};
template <int H, int W, int C>
struct is_input<Input<H, W, C>> : std::true_type {};

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
  /// What runs the layers (model/chain.hpp).
  using chain_type = LayerChain<input_shape, Specs...>;
  using layers_type = typename chain_type::layers_type;
  /// The output's compile-time shape; Shape<1, 1, dynamic> when it has the run-time width.
  using output_shape = typename chain_type::output_shape;
  static constexpr std::size_t depth = sizeof...(Specs);
  template <std::size_t I>
  using layer_type = std::tuple_element_t<I, layers_type>;
  /// The spec layer I was made from (Conv2D<32, 3>): what exporters map to other formats.
  template <std::size_t I>
  using spec_type = std::tuple_element_t<I, std::tuple<Specs...>>;
  /// Values in one input sample.
  static constexpr std::size_t input_size = input_shape::size;
  /// Whether a layer has the run-time width: the network is then constructed with Outputs{n}.
  static constexpr bool has_dynamic_width = chain_type::has_dynamic_width;

  /// A network with freshly initialised weights (glorot-uniform kernels, zero biases), all drawn
  /// from `seed`.
  explicit Sequential(std::uint64_t seed = 42)
    requires(!has_dynamic_width)
      : Sequential(Outputs{output_size<depth - 1>(0)}, seed) {}
  /// The same, with `outputs.count` (>= 1) as the run-time width of Dense<dynamic>; a network
  /// without one takes only its own output size here.
  explicit Sequential(Outputs outputs, std::uint64_t seed = 42) : width_(checked_width(outputs.count)), chain_(width_) {
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
    chain_.init(Rng(seed));
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
    chain_.reserve(batch);
    if (mode == Mode::infer) round_kernels_if_stale();
    else {
      if (chain_.frozen() > 0 && precision_ == Precision::bf16 && rounded_stale_) round_frozen_kernels();
      rounded_stale_ = true;  // an optimizer step is likely to follow
    }
    chain_.forward(x.data(), batch, Pass{mode, step_, shard.reducer, std::uint64_t(shard.offset), mode == Mode::infer});
    if (mode == Mode::train) ++step_;
    return output();
  }

  /// Inference on a batch: forward in Mode::infer. The first inference after anything that may
  /// have changed the weights (as set_inference_precision lists them) packs the convolutions'
  /// kernels as the products read them, once for all inferences until then: a copy of them (4
  /// bytes a weight). As there, keep no Parameters from parameters() across an inference to
  /// write through it later.
  std::span<const float> predict(std::span<const float> x, int batch) { return forward(x, batch, Mode::infer); }

  /// How inference computes: in float (Precision::fp32, the default), or (Precision::bf16) with
  /// the dense layers' kernels rounded to bfloat16 (core/bfloat16.hpp), half the bytes to read,
  /// products and sums still in float (a batch-1 forward of SmallerVGGNet spends half its time
  /// reading its 8192 x 1024 kernel), and on CPUs with AVX512_BF16 (bf16_products()) the
  /// convolutions' products that Winograd's do not take, and the dense layers' of more than 4
  /// rows, in bfloat16: kernel and activations rounded, twice the multiply-adds an instruction,
  /// sums in float (core/gemm_bf16.hpp).
  /// Outputs move by the rounding (a relative 2^-8 per value at most; see benchmarks/RESULTS.md
  /// for its effect on accuracy). The rounded copies (2 bytes a weight) are
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
  /// x input_size) unless it is empty. With layers frozen (freeze_until), only the trainable
  /// layers' gradients, and no dL/d(input): `grad_input` must then be empty.
  void backward(std::span<const float> grad_output, std::span<float> grad_input = {}) {
    if (chain_.batch() == 0) throw std::logic_error("tnet::Sequential::backward: no forward pass to back-propagate through");
    const int batch = chain_.batch();
    detail::check_size("backward", "grad_output", grad_output.size(), batch, [this] { return output_string(); }, std::size_t(outputs()));
    if (!grad_input.empty()) {
      detail::check_size("backward", "grad_input", grad_input.size(), batch, [] { return input_shape::str(); }, input_size);
      check_no_input_gradient("backward");
    }
    chain_.backward(grad_output.data(), grad_input.empty() ? nullptr : grad_input.data(), [](std::size_t) {});
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

  /// The loss train_step and compute_gradients minimise and evaluate reports, computed from the
  /// logits. A network ending in Sigmoid has binary cross-entropy, fused with the sigmoid; one
  /// ending in Softmax categorical cross-entropy, fused likewise; any other network (one that ends
  /// in its logits, as PyTorch's do) has none until it is chosen here, and then treats its output
  /// as the logits (PyTorch's BCEWithLogitsLoss and CrossEntropyLoss with probabilities as
  /// targets). Throws std::invalid_argument for a loss that does not fit the final activation.
  /// For imbalanced labels (train/loss.hpp), a network ending in Sigmoid or in its logits may take
  /// binary cross-entropy with `options.pos_weight` (one weight per output, >= 0), or
  /// Loss::sigmoid_focal with options.alpha (<= 1; < 0: none) and options.gamma (>= 0):
  ///   net.set_loss(tnet::Loss::binary_crossentropy, {.pos_weight = tnet::positive_weights(y, n, labels)});
  ///   net.set_loss(tnet::Loss::sigmoid_focal, {.alpha = 0.25, .gamma = 2});
  void set_loss(Loss loss, LossOptions options = {}) {
    const bool binary = loss == Loss::binary_crossentropy || loss == Loss::sigmoid_focal;
    if ((ends_in_sigmoid && !binary) || (ends_in_softmax && loss != Loss::categorical_crossentropy))
      throw std::invalid_argument(std::string("tnet::Sequential::set_loss: a network ending in ") +
                                  (ends_in_sigmoid ? "Sigmoid" : "Softmax") + " trains with " +
                                  (ends_in_sigmoid ? "binary" : "categorical") + " cross-entropy, not " + loss_name(loss) +
                                  "; end it in its logits to choose another");
    if (!options.pos_weight.empty()) {
      if (loss != Loss::binary_crossentropy)
        throw std::invalid_argument(std::string("tnet::Sequential::set_loss: pos_weight is for binary cross-entropy, not ") +
                                    loss_name(loss));
      if (options.pos_weight.size() != std::size_t(outputs()))
        throw std::invalid_argument("tnet::Sequential::set_loss: pos_weight has " + std::to_string(options.pos_weight.size()) +
                                    " weights; the network has " + std::to_string(outputs()) + " outputs");
      for (const float w : options.pos_weight)
        if (!(w >= 0 && std::isfinite(w)))
          throw std::invalid_argument("tnet::Sequential::set_loss: pos_weight holds " + std::to_string(w) +
                                      "; weights must be finite and >= 0");
    }
    if (loss == Loss::sigmoid_focal && !(options.alpha <= 1 && options.gamma >= 0 && std::isfinite(options.gamma)))
      throw std::invalid_argument("tnet::Sequential::set_loss: the focal loss needs alpha <= 1 (below 0: none) and a finite gamma >= 0");
    loss_ = loss;
    loss_options_ = std::move(options);
  }
  /// set_loss's options: the positive weights, the focal loss's alpha and gamma.
  const LossOptions& loss_options() const { return loss_options_; }
  Loss loss() const { return loss_; }

  /// The loss of a batch in inference mode (Keras's evaluate); output() holds the predictions.
  double evaluate(std::span<const float> x, std::span<const float> targets, int batch) {
    check_sizes("evaluate", x, targets, batch, {});
    forward(x, batch, Mode::infer);
    return loss_of("evaluate", targets.data(), batch, false);
  }

  /// The last forward's output (batch x outputs() values).
  std::span<const float> output() const { return {chain_.output(), std::size_t(chain_.batch()) * outputs()}; }
  /// The output of layer I from the last forward, unless the layer after it works in place
  /// (shares_buffer<I + 1>): then that layer's output has replaced it. Not written where a step of
  /// the forward's plan runs layer I and does not end there (model/plan.hpp).
  template <std::size_t I>
  const float* output_of() const {
    return chain_.template output_of<I>();
  }
  /// How the chain runs (model/chain.hpp, model/plan.hpp), for tests and the curious.
  template <std::size_t I>
  static constexpr bool shares_buffer = chain_type::template shares_buffer<I>;
  using inference_plan = typename chain_type::inference_plan;
  using training_plan = typename chain_type::training_plan;
  using backward_plan = typename chain_type::backward_plan;

  /// The chain of layers the network runs (model/chain.hpp), for benchmarks and tests.
  chain_type& chain() {
    rounded_stale_ = true;  // its weights may be written through it
    return chain_;
  }

  template <std::size_t I>
  layer_type<I>& layer() {
    rounded_stale_ = true;  // its weights may be written through it
    return chain_.template layer<I>();
  }
  template <std::size_t I>
  const layer_type<I>& layer() const {
    return chain_.template layer<I>();
  }

  /// Every trainable value in one array, every gradient in another, and each tensor's name and
  /// place, in layer order.
  Parameters parameters() {
    rounded_stale_ = true;  // the weights may be written through it
    return {values_, grads_, tensors_, layer_offsets_[chain_.frozen()], rate_segments_};
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
      if constexpr (requires { layer.reset_moving_statistics(); })
        if (I >= chain_.frozen()) layer.reset_moving_statistics();
    });
  }

  /// Freezes layers [0, count) for fine-tuning (count <= depth; 0 unfreezes every layer). A frozen
  /// layer keeps its weights and its batch-norm statistics: training forwards (Mode::train and
  /// Mode::calibrate) run it as inference does (batch norm with its moving statistics, which stay
  /// as they are; dropout off; Precision::bf16 dense kernels when inference reads them), backward
  /// computes no gradient for it and stops at the lowest trainable layer that has parameters (so
  /// no dL/d(input) either), its gradients are zero, and parameters() says the optimizers must
  /// leave its values and their slots alone (Parameters::frozen), so that neither momentum nor
  /// weight decay (L2 or AdamW's) moves them. reset_batch_norm_statistics leaves its statistics
  /// too. Freezing is not stored in model files (tnet::fit keeps it in its checkpoints): freeze
  /// again after load_model. A block (Residual) is one layer here: it freezes whole.
  void freeze_until(std::size_t count) {
    if (count > depth)
      throw std::invalid_argument("tnet::Sequential::freeze_until: " + std::to_string(count) + " layers; the network has " +
                                  std::to_string(depth) + " (0 unfreezes)");
    chain_.freeze(count);
    std::fill(grads_.begin(), grads_.begin() + std::ptrdiff_t(layer_offsets_[count]), 0.0f);
    rounded_stale_ = true;
  }
  /// How many layers from the first are frozen (freeze_until); 0 when none is.
  std::size_t frozen_layers() const { return chain_.frozen(); }

  /// Trains layers [first, last) at `multiplier` (finite, >= 0) times the optimizer's learning
  /// rate, for fine-tuning pretrained layers more gently than a new head: every optimizer (SGD,
  /// Adam, AdamW) then uses multiplier x lr_k for their values, as PyTorch does for a parameter
  /// group with that rate (parameters() carries the ranges: Parameters::rates). Unlike freezing,
  /// the layers still run in training mode and get their gradients; a multiplier of 0 leaves
  /// their weights exactly where they are (their batch-norm statistics still move). 1 is every
  /// layer's to begin with. Not stored in model files (tnet::fit keeps it in its checkpoints).
  void set_learning_rate_multiplier(std::size_t first, std::size_t last, double multiplier) {
    if (first > last || last > depth)
      throw std::invalid_argument("tnet::Sequential::set_learning_rate_multiplier: layers [" + std::to_string(first) + ", " +
                                  std::to_string(last) + ") are not a range of the network's " + std::to_string(depth));
    if (!(multiplier >= 0 && std::isfinite(multiplier)))
      throw std::invalid_argument("tnet::Sequential::set_learning_rate_multiplier: the multiplier must be finite and >= 0, got " +
                                  std::to_string(multiplier));
    std::fill(rate_multipliers_.begin() + std::ptrdiff_t(first), rate_multipliers_.begin() + std::ptrdiff_t(last), multiplier);
    // Consecutive layers of one multiplier make one range; none at all when every one is 1.
    rate_segments_.clear();
    if (std::ranges::all_of(rate_multipliers_, [](double m) { return m == 1.0; })) return;
    for (std::size_t i = 0; i < depth; ++i) {
      const std::size_t begin = layer_offsets_[i], end = layer_offsets_[i + 1];
      if (begin == end) continue;
      if (!rate_segments_.empty() && rate_segments_.back().multiplier == rate_multipliers_[i]) rate_segments_.back().end = end;
      else rate_segments_.push_back({begin, end, rate_multipliers_[i]});
    }
    if (!rate_segments_.empty()) rate_segments_.front().begin = 0;
  }
  /// Layer `layer`'s learning-rate multiplier (set_learning_rate_multiplier); 1 unless set.
  double learning_rate_multiplier(std::size_t layer) const { return rate_multipliers_.at(layer); }

  /// The layers' names, as summary() prints them and the tensors' names begin: "0.conv2d",
  /// "1.relu", ...: the index and the kind, lower case.
  std::vector<std::string> layer_names() const {
    std::vector<std::string> names;
    for_each_layer([&]<std::size_t I>(const auto&) { names.push_back(layer_name<I>()); });
    return names;
  }
  /// The index of the layer `name` names: its index ("21"), its name ("21.flatten"), its kind when
  /// one layer alone is of it ("flatten"), or "head": the label layer, the last that has weights.
  /// Throws std::invalid_argument naming what was asked and listing the layers.
  std::size_t layer_index(const std::string& name) const {
    const std::vector<std::string> names = layer_names();
    auto listed = [&] {
      std::string all;
      for (const std::string& n : names) all += (all.empty() ? "" : " ") + n;
      return "; the layers are " + all;
    };
    std::vector<std::size_t> found;
    for (std::size_t i = 0; i < depth; ++i) {
      const std::string kind = names[i].substr(names[i].find('.') + 1);
      if (name == names[i] || name == std::to_string(i) || name == kind) found.push_back(i);
    }
    if (name == "head") {
      for (std::size_t i = depth; i-- > 0;)
        if (layer_offsets_[i] != layer_offsets_[i + 1]) return i;
    }
    if (found.size() == 1) return found[0];
    if (found.empty()) throw std::invalid_argument("no layer '" + name + "'" + listed());
    std::string which;
    for (std::size_t i : found) which += (which.empty() ? "" : ", ") + names[i];
    throw std::invalid_argument(std::to_string(found.size()) + " layers are " + name + " (" + which + "): name one" + listed());
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
  std::size_t non_trainable_count() const { return chain_type::non_trainable_count(); }

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
      out << std::left << std::setw(38) << name << std::setw(26) << shape_string<I>() << with_commas(count) << "\n"
          << (I + 1 < depth ? rule : double_rule) << "\n";
    });
    out << "Total params: " << with_commas(trainable_count() + non_trainable_count()) << "\n"
        << "Trainable params: " << with_commas(trainable_count()) << "\n"
        << "Non-trainable params: " << with_commas(non_trainable_count()) << "\n"
        << rule << "\n";
  }

  /// "3.conv2d": index and kind, the prefix of the layer's tensor names.
  template <std::size_t I>
  std::string layer_name() const {
    return chain_.template layer_name<I>();
  }

 private:
  using last_layer = layer_type<depth - 1>;
  static constexpr bool ends_in_sigmoid = std::is_same_v<last_layer, Sigmoid::Layer<typename last_layer::input_shape>>;
  static constexpr bool ends_in_softmax = std::is_same_v<last_layer, Softmax::Layer<typename last_layer::input_shape>>;
  // The layer whose output the loss reads: the one below a final Sigmoid or Softmax, whose
  // gradient the loss computes with its own, or the last.
  static constexpr std::size_t logits_layer = (ends_in_sigmoid || ends_in_softmax) && depth >= 2 ? depth - 2 : depth - 1;

  // Values per sample of layer I's output, `width` being the run-time width.
  template <std::size_t I>
  static int output_size(int width) {
    return chain_type::template output_size<I>(width);
  }
  template <std::size_t I>
  std::string shape_string() const {
    return chain_.template shape_string<I>();
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

  // One array for every layer's tensors, one for their gradients; each layer gets its slices.
  void bind_parameters() {
    const std::size_t total = chain_.parameter_count();
    values_.assign(total, 0.0f);
    grads_.assign(total, 0.0f);
    tensors_.clear();
    std::array<std::size_t, depth + 1> first{};
    first.fill(total);
    chain_.bind(values_.data(), grads_.data(), [&](std::size_t i, std::string_view name, std::size_t at, std::size_t size) {
      first[i] = std::min(first[i], at);
      tensors_.push_back(ParamRef{layer_name(i) + "." + std::string(name), values_.data() + at, grads_.data() + at, size, at});
    });
    for (std::size_t i = depth; i-- > 0;) {
      first[i] = std::min(first[i], first[i + 1]);
      layer_parameters_[i] = std::span<float>(grads_.data() + first[i], first[i + 1] - first[i]);
    }
    layer_offsets_ = first;
  }
  std::string layer_name(std::size_t i) const {
    std::string name;
    for_each_layer([&]<std::size_t I>(const auto&) {
      if (I == i) name = layer_name<I>();
    });
    return name;
  }

  // The layers' copies of their kernels for inference, remade when the weights may have changed
  // (or the kernels gemm() multiplies with have): the convolutions' kernels packed as the products
  // read them, and with Precision::bf16 the dense kernels' bfloat16 copies.
  void round_kernels_if_stale() {
    if (!rounded_stale_ && prepared_for_ == gemm_kernel()) return;
    for_each_layer([&]<std::size_t I>(auto& layer) {
      if constexpr (requires { layer.prepare_inference(true); }) layer.prepare_inference(true);
      if (precision_ == Precision::bf16)
        if constexpr (requires { layer.round_kernel(true); }) layer.round_kernel(true);
    });
    rounded_stale_ = false;
    prepared_for_ = gemm_kernel();
  }

  // With layers frozen and inference reading bfloat16 kernels, the frozen layers' copies, which
  // training forwards read as inference does, remade from the weights as they are now.
  void round_frozen_kernels() {
    for_each_layer([&]<std::size_t I>(auto& layer) {
      if constexpr (requires { layer.round_kernel(true); })
        if (I < chain_.frozen()) layer.round_kernel(true);
    });
  }

  void check_no_input_gradient(const char* where) const {
    if (chain_.frozen() > 0)
      throw std::logic_error(std::string("tnet::Sequential::") + where + ": no gradient of the input while layers are frozen (" +
                             std::to_string(chain_.frozen()) + " are: freeze_until); pass no grad_input");
  }

  template <class F>
  void for_each_layer(F&& f) {
    chain_.for_each_layer(std::forward<F>(f));
  }
  template <class F>
  void for_each_layer(F&& f) const {
    chain_.for_each_layer(std::forward<F>(f));
  }

  void check_loss(const char* where) const {
    if (loss_ == Loss::none)
      throw std::logic_error(std::string("tnet::Sequential::") + where +
                             ": the network ends in neither Sigmoid nor Softmax, so it has no loss of its own; choose one with "
                             "set_loss(tnet::Loss::binary_crossentropy) or set_loss(tnet::Loss::categorical_crossentropy)");
  }

  // Every size (and the loss) checked before anything changes (a training forward moves the step
  // and the batch-norm statistics).
  void check_sizes(const char* where, std::span<const float> x, std::span<const float> targets, int batch,
                   std::span<float> grad_input) const {
    check_loss(where);
    if (batch < 1)
      throw std::invalid_argument(std::string("tnet::Sequential::") + where + ": batch must be >= 1, got " + std::to_string(batch));
    detail::check_size(where, "x", x.size(), batch, [] { return input_shape::str(); }, input_size);
    detail::check_size(where, "targets", targets.size(), batch, [this] { return output_string(); }, std::size_t(outputs()));
    if (!grad_input.empty()) {
      detail::check_size(where, "grad_input", grad_input.size(), batch, [] { return input_shape::str(); }, input_size);
      check_no_input_gradient(where);
    }
  }

  double training_pass(const char* where, std::span<const float> x, std::span<const float> targets, const Shard& shard,
                       std::span<float> grad_input) {
    check_sizes(where, x, targets, shard.count, grad_input);
    if (shard.offset < 0 || shard.global_batch < shard.offset + shard.count)
      throw std::invalid_argument(std::string("tnet::Sequential::") + where + ": samples [" + std::to_string(shard.offset) + ", " +
                                  std::to_string(shard.offset + shard.count) + ") are not in a global batch of " +
                                  std::to_string(shard.global_batch));
    forward(x, shard, Mode::train);
    double loss = loss_of(where, targets.data(), shard.global_batch, true);
    backward_from_logits(grad_input.empty() ? nullptr : grad_input.data(), shard.reducer);
    if (shard.reducer) {
      shard.reducer->finish_gradients();
      shard.reducer->sum(std::span(&loss, 1));
    }
    return loss;
  }

  // Back-propagates the loss's gradient (in the chain's gradient buffer) from the logits: the
  // layer below a final Sigmoid or Softmax, whose backward the loss fuses, or else the output.
  // With a reducer, each layer's gradients are handed to it as soon as they are final, to be
  // summed over the processes.
  void backward_from_logits(float* grad_input, Reducer* reducer) {
    chain_.template backward_from<logits_layer>(chain_.gradient_buffer(), grad_input, [&](std::size_t i) {
      if (reducer && !layer_parameters_[i].empty()) reducer->gradients_ready(layer_parameters_[i]);
    });
  }

  // The loss of the last forward's logits against `targets`; dL/dlogits goes to the chain's
  // gradient buffer unless `gradient` is false. The batch may be a slice of a global batch of
  // `global_batch`: the loss is then the slice's share.
  double loss_of(const char* where, const float* targets, int global_batch, bool gradient) {
    static_assert(depth >= 2 || !(ends_in_sigmoid || ends_in_softmax),
                  "tnet::Sequential: a network of one activation has nothing to train");
    check_loss(where);
    const float* logits = output_of<logits_layer>();
    const int labels = outputs();
    const int batch = chain_.batch();
    float* grad = gradient ? chain_.gradient_buffer() : nullptr;
    const std::ptrdiff_t count = std::ptrdiff_t(batch) * labels, total = std::ptrdiff_t(global_batch) * labels;
    if (loss_ == Loss::binary_crossentropy && !loss_options_.pos_weight.empty())
      return weighted_binary_crossentropy(logits, targets, count, loss_options_.pos_weight.data(), labels, grad, total);
    if (loss_ == Loss::binary_crossentropy) return binary_crossentropy(logits, targets, count, grad, total);
    if (loss_ == Loss::sigmoid_focal)
      return sigmoid_focal_loss(logits, targets, count, loss_options_.alpha, loss_options_.gamma, grad, total);
    return categorical_crossentropy(logits, targets, batch, labels, grad, global_batch);
  }

  int width_;  // the run-time width, or the output size of a network without one
  chain_type chain_;
  Loss loss_ = ends_in_sigmoid ? Loss::binary_crossentropy : ends_in_softmax ? Loss::categorical_crossentropy : Loss::none;
  LossOptions loss_options_;
  Buffer values_, grads_;  // every trainable value and gradient; layers hold views into them
  std::vector<ParamRef> tensors_;
  std::array<std::span<float>, depth> layer_parameters_{};  // each layer's gradients, a slice of grads_
  std::array<std::size_t, depth + 1> layer_offsets_{};      // where each layer's values begin; [depth]: the count
  std::array<double, depth> rate_multipliers_ = [] {        // each layer's learning-rate multiplier
    std::array<double, depth> ones;
    ones.fill(1.0);
    return ones;
  }();
  std::vector<RateSegment> rate_segments_;  // the multipliers as ranges of values_; empty when all are 1
  std::uint64_t seed_ = 0, step_ = 0;
  Precision precision_ = Precision::fp32;        // set_inference_precision
  bool rounded_stale_ = true;                    // the weights may have changed since the inference copies were made
  GemmKernel prepared_for_ = GemmKernel::eigen;  // the kernels they were made for
};

}  // namespace tnet
