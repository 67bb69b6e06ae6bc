// Whole networks: shapes and counts, one SmallerVGGNet training step against PyTorch, gradients
// of a small network against finite differences, thread-count independence, learning.
#include "support.hpp"

#include <algorithm>
#include <memory>
#include <sstream>

#include "../examples/fashion/smaller_vgg.hpp"

using namespace tnet;
using VGG = fashion::SmallerVGGNet<96>;  // the label count is its run-time width

TEST_CASE("SmallerVGGNet's shapes and Keras's parameter counts, for any label count") {
  static_assert(std::is_same_v<VGG::output_shape, Shape<1, 1, dynamic>>);
  static_assert(std::is_same_v<VGG::layer_type<3>::output_shape, Shape<32, 32, 32>>);
  static_assert(std::is_same_v<VGG::layer_type<21>::output_shape, Shape<1, 1, 8192>>);
  static_assert(VGG::has_dynamic_width && !std::is_constructible_v<VGG, std::uint64_t>);  // Outputs is required
  auto net = std::make_unique<VGG>(Outputs{6}, 1);
  CHECK(net->outputs() == 6);
  CHECK(net->trainable_count() + net->non_trainable_count() == 8679302);
  CHECK(net->non_trainable_count() == 2880);
  std::ostringstream table;
  net->summary(table);
  CHECK(table.str().find("Total params: 8,679,302") != std::string::npos);
  CHECK(table.str().find("Non-trainable params: 2,880") != std::string::npos);
  CHECK(table.str().find("(None, 8, 8, 128)") != std::string::npos);
  CHECK(table.str().find(" 26.dense (Dense)                     (None, 6)                 6,150\n") != std::string::npos);
  // A network of fixed width 6 has the same signature: model files of either load into the other.
  using Fixed = Sequential<Input<4, 4, 1>, Flatten, Dense<6>, Sigmoid>;
  using Dynamic = Sequential<Input<4, 4, 1>, Flatten, Dense<dynamic>, Sigmoid>;
  CHECK(Fixed(1).signature() == Dynamic(Outputs{6}, 1).signature());
  CHECK(Dynamic(Outputs{6}, 1).signature() == "Input(None, 4, 4, 1)\nFlatten -> (None, 16)\nDense(6) -> (None, 6)\nSigmoid -> (None, 6)\n");
  CHECK_THROWS_WITH_AS(Dynamic(Outputs{0}, 1), "tnet::Sequential: the run-time width (Outputs) must be >= 1, got 0", std::invalid_argument);
  CHECK_THROWS_WITH_AS(Fixed(Outputs{5}, 1), "tnet::Sequential: this network has 6 outputs, not 5", std::invalid_argument);
  CHECK_NOTHROW(Fixed(Outputs{6}, 1));
}

TEST_CASE("one network type trains for 1, 7 or 1000 labels") {
  using Net = Sequential<Input<6, 5, 2>, Conv2D<3, 3>, ReLU, Flatten, Dense<8>, ReLU, Dropout<0.2f>, Dense<dynamic>, Sigmoid>;
  for (const int labels : {1, 7, 1000}) {
    INFO(labels, " labels");
    Net net(Outputs{labels}, 3);
    const int batch = 4;
    const Buffer x = test::random_values(batch * Net::input_size, 5);
    Buffer y(std::size_t(batch) * labels);
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = float(i % 3 == 0);
    Adam adam(Adam::Options{.lr = 0.01});
    const double first = net.train_step(x, y, batch, adam);
    for (int step = 0; step < 60; ++step) net.train_step(x, y, batch, adam);
    CHECK(net.evaluate(x, y, batch) < first * 0.5);  // it learns the targets
    CHECK(net.predict(x, batch).size() == std::size_t(batch) * labels);
    CHECK(net.trainable_count() == (3 * 3 * 2 * 3 + 3) + (90 * 8 + 8) + (8 * labels + labels));
  }
}

TEST_CASE("inputs are spans whose sizes are checked") {
  using Net = Sequential<Input<4, 4, 3>, Flatten, Dense<dynamic>, Sigmoid>;
  Net net(Outputs{5}, 1);
  Adam adam;
  const Buffer x(2 * 48), short_x(2 * 48 - 1), y(2 * 5), short_y(9);
  CHECK_THROWS_WITH_AS(net.predict(short_x, 2), "tnet::Sequential::forward: x holds 95 floats; a batch of 2 at (None, 4, 4, 3) needs 96",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(net.predict(x, 3), "tnet::Sequential::forward: x holds 96 floats; a batch of 3 at (None, 4, 4, 3) needs 144",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(net.train_step(x, short_y, 2, adam),
                       "tnet::Sequential::train_step: targets holds 9 floats; a batch of 2 at (None, 5) needs 10", std::invalid_argument);
  CHECK(adam.iterations() == 0);  // refused before anything ran
  CHECK(net.step() == 0);
  CHECK_THROWS_AS(net.evaluate(x, short_y, 2), std::invalid_argument);
  Buffer grad_input(95);
  CHECK_THROWS_WITH_AS(net.compute_gradients(x, y, 2, grad_input),
                       "tnet::Sequential::compute_gradients: grad_input holds 95 floats; a batch of 2 at (None, 4, 4, 3) needs 96",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(net.compute_gradients(x, y, 0), "tnet::Sequential::compute_gradients: batch must be >= 1, got 0",
                       std::invalid_argument);
  CHECK(net.step() == 0);  // no training forward ran
  net.forward(x, 2, Mode::train);
  CHECK_THROWS_WITH_AS(net.backward(short_y), "tnet::Sequential::backward: grad_output holds 9 floats; a batch of 2 at (None, 5) needs 10",
                       std::invalid_argument);
  CHECK(net.train_step(x, y, 2, adam) > 0);
}

TEST_CASE("a network ending in its logits trains with the loss chosen, as the fused final activation does") {
  // The same layers and seed with and without the final activation: the same weights.
  using WithSigmoid = Sequential<Input<5, 4, 2>, Conv2D<3, 3>, ReLU, Flatten, Dense<3>, Sigmoid>;
  using WithSoftmax = Sequential<Input<5, 4, 2>, Conv2D<3, 3>, ReLU, Flatten, Dense<3>, Softmax>;
  using Logits = Sequential<Input<5, 4, 2>, Conv2D<3, 3>, ReLU, Flatten, Dense<3>>;
  const int batch = 4;
  const Buffer x = test::random_values(batch * 40, 31);
  const float targets[] = {1, 0, 1, 0, 1, 0, 0, 0, 1, 1, 1, 0};
  const float one_hot[] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0};
  auto gradients = [&](auto& net, std::span<const float> t) {
    Buffer grad_input(x.size());
    const double loss = net.compute_gradients(x, t, batch, grad_input);
    std::vector<float> all(net.parameters().grads.begin(), net.parameters().grads.end());
    all.insert(all.end(), grad_input.begin(), grad_input.end());
    return std::pair(loss, all);
  };
  Logits logits(5);
  CHECK(logits.loss() == Loss::none);
  CHECK_THROWS_WITH_AS(logits.compute_gradients(x, targets, batch),
                       "tnet::Sequential::compute_gradients: the network ends in neither Sigmoid nor Softmax, so it has no loss of its "
                       "own; choose one with set_loss(tnet::Loss::binary_crossentropy) or "
                       "set_loss(tnet::Loss::categorical_crossentropy)",
                       std::logic_error);
  CHECK(logits.step() == 0);  // refused before the forward
  SUBCASE("binary cross-entropy") {
    WithSigmoid fused(5);
    logits.set_loss(Loss::binary_crossentropy);
    CHECK(gradients(logits, targets) == gradients(fused, targets));
    CHECK(logits.evaluate(x, targets, batch) == fused.evaluate(x, targets, batch));
  }
  SUBCASE("categorical cross-entropy") {
    WithSoftmax fused(5);
    logits.set_loss(Loss::categorical_crossentropy);
    CHECK(gradients(logits, one_hot) == gradients(fused, one_hot));
    CHECK(logits.evaluate(x, one_hot, batch) == fused.evaluate(x, one_hot, batch));
  }
  WithSigmoid fused(5);
  CHECK_THROWS_WITH_AS(fused.set_loss(Loss::categorical_crossentropy),
                       "tnet::Sequential::set_loss: a network ending in Sigmoid trains with binary cross-entropy, not categorical "
                       "cross-entropy; end it in its logits to choose another",
                       std::invalid_argument);
}

TEST_CASE("every parameter lives in one array, every gradient in another, and layers are views into them") {
  using Net = Sequential<Input<5, 5, 2>, Conv2D<3, 3>, ReLU, BatchNorm, Flatten, Dense<dynamic>, Sigmoid>;
  Net net(Outputs{4}, 7);
  const Parameters p = net.parameters();
  REQUIRE(p.tensors.size() == 6);
  CHECK(p.values.size() == (18 * 3 + 3) + (3 + 3) + (75 * 4 + 4));
  CHECK(p.grads.size() == p.values.size());
  std::size_t at = 0;
  for (const ParamRef& t : p) {  // consecutive, in layer order, covering both arrays
    INFO(t.name);
    CHECK(t.offset == at);
    CHECK(t.value == p.values.data() + at);
    CHECK(t.grad == p.grads.data() + at);
    at += t.size;
  }
  CHECK(at == p.values.size());
  CHECK(p.tensors[0].name == "0.conv2d.kernel");
  CHECK(p.tensors[5].name == "4.dense.bias");
  CHECK(net.layer<0>().kernel() == p.values.data());
  CHECK(net.layer<2>().gamma() == p.tensors[2].value);
  CHECK(net.layer<4>().kernel() == p.tensors[4].value);
  CHECK(net.layer<4>().grad_bias() == p.tensors[5].grad);
  // A write through the array is what the layer computes with.
  const Buffer x = test::random_values(2 * 50, 3);
  const std::vector<float> before(net.predict(x, 2).begin(), net.predict(x, 2).end());
  p.tensors[5].value[1] += 1.0f;  // the Dense bias of output 1
  const std::span<const float> after = net.predict(x, 2);
  CHECK(after[1] > before[1]);
  CHECK(after[0] == before[0]);
  // Moving a network keeps its views valid.
  Net moved = std::move(net);
  CHECK(moved.layer<4>().kernel() == p.tensors[4].value);
  CHECK(moved.predict(x, 2)[1] == after[1]);
}

TEST_CASE("one SmallerVGGNet training step matches PyTorch (batch 4, dropout, Adam with decay), with every gemm kernel") {
  // PyTorch computed it in float64 from the same float32 weights and input: the differences are
  // tnet's float32 rounding. A gradient entry may be off by 1e-3 of its size plus the tensor's
  // RMS: biases feeding a batch norm have gradients that are mostly cancellation, and Winograd's
  // F(4x4, 3x3) (at this batch the 32x32 convolutions) rounds about 10x more than the direct
  // product (measured: 3.9e-4 at worst; 8.9e-5 with F(2x2, 3x3)). Each kernel
  // also runs the batch norms, pooling, dropout and Adam compiled for its instruction set.
  constexpr double pick_tolerance = 1e-3;
  const test::Fixture fx("smaller_vgg.txt");
  test::with_each_gemm_kernel([&](GemmKernel) {
    auto net = std::make_unique<VGG>(Outputs{6}, 7);  // weights drawn exactly as make_fixtures.py draws them
    const int batch = 4;
    Buffer input(std::size_t(batch) * 96 * 96 * 3);
    const Rng rng(123);
    for (std::size_t i = 0; i < input.size(); ++i) input[i] = rng.uniform(i);
    const float targets[] = {0, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1};

    const double loss = net->compute_gradients(input, targets, batch);
    CHECK(loss == doctest::Approx(fx.scalar("loss")).epsilon(1e-4));
    CHECK_CLOSE_TO_FIXTURE(net->output().data(), fx["probabilities"], 1e-4);

    for (const ParamRef& p : net->parameters()) {
      INFO("gradient of ", p.name);
      double abs_sum = 0, square_sum = 0;
      for (std::size_t i = 0; i < p.size; ++i) {
        abs_sum += std::abs(double(p.grad[i]));
        square_sum += double(p.grad[i]) * p.grad[i];
      }
      CHECK(abs_sum == doctest::Approx(fx.scalar(p.name + ".grad_abs_sum")).epsilon(1e-4));
      CHECK(square_sum == doctest::Approx(fx.scalar(p.name + ".grad_square_sum")).epsilon(2e-4));
      const auto& picks = fx[p.name + ".pick_index"];
      const auto& expected = fx[p.name + ".grad_pick"];
      const double rms = std::sqrt(fx.scalar(p.name + ".grad_square_sum") / double(p.size));
      for (std::size_t k = 0; k < picks.size(); ++k)
        CHECK(std::abs(p.grad[std::size_t(picks[k])] - expected[k]) <= pick_tolerance * (std::abs(expected[k]) + rms));
    }
    net->visit_state([&](const std::string& name, auto span) {
      if constexpr (std::is_same_v<typename decltype(span)::value_type, float>) {
        if (name.ends_with("moving_mean") || name.ends_with("moving_variance")) {
          INFO(name);
          CHECK_CLOSE_TO_FIXTURE(span.data(), fx[name], 1e-4);
        }
      }
    });

    Adam adam(Adam::Options{.lr = 1e-3, .decay = 1e-3 / 75});
    adam.step(net->parameters());
    // Adam's first step is lr * g / (|g| + c) with c = epsilon / sqrt(1 - beta2) = 3.2e-6: about
    // lr * sign(g), so the bound is a fraction of lr, plus what the gradient's own tolerance dg
    // moves it by where |g| is near c, lr * c * dg / (|g| + c)^2.
    const double lr = 1e-3, c = 1e-7 / std::sqrt(1 - 0.999);
    for (const ParamRef& p : net->parameters()) {
      INFO("after one Adam step: ", p.name);
      const auto& picks = fx[p.name + ".pick_index"];
      const auto& expected = fx[p.name + ".after_step_pick"];
      const auto& gradients = fx[p.name + ".grad_pick"];
      const double rms = std::sqrt(fx.scalar(p.name + ".grad_square_sum") / double(p.size));
      for (std::size_t k = 0; k < picks.size(); ++k) {
        const double g = std::abs(gradients[k]), dg = pick_tolerance * (g + rms);
        CHECK(std::abs(p.value[std::size_t(picks[k])] - expected[k]) <=
              1e-4 * lr + lr * c * dg / ((g + c) * (g + c)) + 1e-6 * std::abs(expected[k]));
      }
    }
  });
}

namespace {
// Every kind of layer, odd sizes, ending in the fused sigmoid + binary cross-entropy.
using Small = Sequential<Input<6, 5, 3>, Conv2D<4, 3>, ReLU, BatchNorm, MaxPool2D<2>, Dropout<0.3f>, Conv2D<6, 2, 1, Padding::valid>, ReLU,
                         Flatten, Dense<7>, ReLU, BatchNorm, Dense<3>, Sigmoid>;
}  // namespace

TEST_CASE("a whole network's gradients agree with central differences of its loss") {
  Small net(5);
  const int batch = 3;
  Buffer x = test::random_values(batch * Small::input_shape::size, 21);
  const float targets[] = {1, 0, 1, 0, 0, 1, 1, 1, 0};
  Buffer grad_input(x.size());
  net.set_step(9);
  net.compute_gradients(x, targets, batch, grad_input);
  auto loss = [&] {
    net.set_step(9);  // the same dropout mask in every evaluation
    net.forward(x, batch, Mode::train);
    return binary_crossentropy(net.output_of<Small::depth - 2>(), targets, batch * 3);
  };
  CHECK(test::compare_with_differences(x.data(), grad_input.data(), x.size(), loss, 1e-3) <= 2e-2);
  for (const ParamRef& p : net.parameters()) {
    INFO(p.name);
    const Buffer analytic(p.grad, p.grad + p.size);
    CHECK(test::compare_with_differences(p.value, analytic.data(), p.size, loss, 1e-3, 40) <= 2e-2);
  }
}

TEST_CASE("a network with the run-time width: gradients agree with central differences (Softmax, 5 outputs)") {
  // Every layer that takes the run-time width: ReLU, Dropout, Softmax after Dense<dynamic>.
  using Net = Sequential<Input<6, 5, 3>, Conv2D<4, 3>, ReLU, Flatten, Dense<7>, ReLU, Dense<dynamic>, ReLU, Dropout<0.3f>, Softmax>;
  Net net(Outputs{5}, 4);
  const int batch = 3;
  Buffer x = test::random_values(batch * Net::input_size, 22);
  const float targets[] = {0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0};
  Buffer grad_input(x.size());
  net.set_step(3);
  net.compute_gradients(x, targets, batch, grad_input);
  auto loss = [&] {
    net.set_step(3);
    net.forward(x, batch, Mode::train);
    return categorical_crossentropy(net.output_of<Net::depth - 2>(), targets, batch, 5);
  };
  CHECK(test::compare_with_differences(x.data(), grad_input.data(), x.size(), loss, 1e-3) <= 2e-2);
  for (const ParamRef& p : net.parameters()) {
    INFO(p.name);
    const Buffer analytic(p.grad, p.grad + p.size);
    CHECK(test::compare_with_differences(p.value, analytic.data(), p.size, loss, 1e-3, 40) <= 2e-2);
  }
}

TEST_CASE("a layer works in place over the output before it only where that output is not needed") {
  // Small: 0 Conv2D, 1 ReLU, 2 BatchNorm, 3 MaxPool2D, 4 Dropout, 5 Conv2D, 6 ReLU, 7 Flatten,
  // 8 Dense, 9 ReLU, 10 BatchNorm, 11 Dense, 12 Sigmoid.
  static_assert(!Small::shares_buffer<0>);                                                       // the input is the caller's
  static_assert(Small::shares_buffer<1> && Small::shares_buffer<6> && Small::shares_buffer<9>);  // ReLU after Conv2D, Dense
  static_assert(Small::shares_buffer<4>);                                                        // Dropout after MaxPool2D
  static_assert(!Small::shares_buffer<7>);                               // Flatten after ReLU, whose backward reads its output
  static_assert(!Small::shares_buffer<2> && !Small::shares_buffer<12>);  // BatchNorm, Sigmoid need buffers of their own
  Small net(2);
  const Buffer x = test::random_values(2 * Small::input_shape::size, 3);
  net.forward(x, 2, Mode::train);
  CHECK(net.output_of<0>() == net.output_of<1>());
  CHECK(net.output_of<3>() == net.output_of<4>());
  CHECK(net.output_of<6>() != net.output_of<7>());
  CHECK(net.output_of<1>() != net.output_of<2>());
  // The shared buffer holds the in-place layer's result: ReLU's output is never negative.
  CHECK(*std::min_element(net.output_of<0>(), net.output_of<0>() + 2 * Small::layer_type<0>::output_shape::size) >= 0.0f);
}

namespace {

// A batch norm fused into the max pool after it with channels in groups of 16 (the pool's
// registers path), windows covering the image.
using Pooled = Sequential<Input<6, 6, 8>, Conv2D<32, 3>, ReLU, BatchNorm, MaxPool2D<2>, Flatten, Dense<3>, Sigmoid>;
// The same with 5 channels (all at once) and 3x3 windows.
using PooledFew = Sequential<Input<9, 6, 3>, Conv2D<5, 3>, ReLU, BatchNorm, MaxPool2D<3>, Flatten, Dense<3>, Sigmoid>;
}  // namespace

TEST_CASE(
    "training applies a ReLU in the layer before it and its gradient in the batch normalisation after it, and a batch "
    "normalisation in the max pool after it, as the layers one by one do") {
  // Small: 0 Conv2D, 1 ReLU, 2 BatchNorm, 3 MaxPool2D, 4 Dropout, 5 Conv2D, 6 ReLU, 7 Flatten,
  // 8 Dense, 9 ReLU, 10 BatchNorm, 11 Dense, 12 Sigmoid.
  using Train = Small::training_plan;
  using Back = Small::backward_plan;
  using Layout = Small::chain_type::layout_type;
  static_assert(rule_at<Train, 0>() == "activation_in_epilogue" && rule_at<Train, 5>() == "activation_in_epilogue" &&
                rule_at<Train, 8>() == "activation_in_epilogue");
  static_assert(rule_at<Train, 1>().empty() && rule_at<Train, 3>().empty() && rule_at<Train, 11>() == "layer");
  static_assert(rules::relu_gradient_applied_after<Layout, Back, 1>() && rules::relu_gradient_applied_after<Layout, Back, 9>());
  // a ReLU before Flatten; not a ReLU
  static_assert(!rules::relu_gradient_applied_after<Layout, Back, 6>() && !rules::relu_gradient_applied_after<Layout, Back, 2>());
  // The 2x2 pool over 6x5 leaves the last column out: its gradient is the batch norm's with dy = 0.
  static_assert(rule_at<Train, 2>() == "normalise_then_pool" && rule_at<Train, 10>() == "layer");
  static_assert(!pools_through<BatchNorm::Layer<Shape<6, 5, 4>>, MaxPool2D<3, 2>::Layer<Shape<6, 5, 4>>>);  // overlapping windows
  static_assert(rule_at<Pooled::training_plan, 2>() == "normalise_then_pool");
  // Where the pool's windows tile the image, it chooses as the batch norm's statistics are summed.
  static_assert(selects_through<Pooled::layer_type<2>, Pooled::layer_type<3>>);
  static_assert(!selects_through<Small::layer_type<2>, Small::layer_type<3>>);
  test::check_training_equals_layer_by_layer<Small>();
  test::check_training_equals_layer_by_layer<Pooled>();
  // A batch norm that decreases (gamma < 0: the pool takes the smallest input) or flattens
  // (gamma = 0) some of its channels.
  auto turn = [](auto& net) {
    float* gamma = net.template layer<2>().gamma();
    for (int c = 0; c < 32; c += 3) gamma[c] = -0.5f - 0.01f * float(c);
    gamma[1] = 0.0f;
  };
  test::check_training_equals_layer_by_layer<Pooled>(turn);
  test::check_training_equals_layer_by_layer<Small>([](Small& net) { net.layer<2>().gamma()[1] = -2.0f; });
  static_assert(selects_through<PooledFew::layer_type<2>, PooledFew::layer_type<3>>);
  test::check_training_equals_layer_by_layer<PooledFew>();
  test::check_training_equals_layer_by_layer<PooledFew>([](PooledFew& net) {
    float* gamma = net.layer<2>().gamma();
    gamma[0] = -1.5f, gamma[3] = 0.0f, gamma[4] = -0.25f;
  });
}

namespace {
// The first Count layers' inference forwards, each on its own, unfolded, in buffers of the test's own.
template <std::size_t Count, class Net>
Buffer predict_layer_by_layer(Net& net, const Buffer& x, int batch) {
  Buffer in = x, out;
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (([&] {
       out.assign(std::size_t(batch) * net.template output_size<I>(), std::nanf(""));
       net.template layer<I>().forward(in.data(), out.data(), batch, Pass{Mode::infer});
       in.swap(out);
     }()),
     ...);
  }(std::make_index_sequence<Count>{});
  return in;
}

using Folds = Sequential<Input<7, 6, 2>, Conv2D<5, 3>, BatchNorm, Flatten, Dense<9>, ReLU, Dense<2>, Sigmoid>;
}  // namespace

TEST_CASE("inference folds ReLU and batch normalisation into the layer before, and predicts what the layers do one by one") {
  // Small: Conv2D ReLU BatchNorm | MaxPool2D Dropout | Conv2D ReLU | Flatten | Dense ReLU BatchNorm | Dense | Sigmoid.
  using Infer = Small::inference_plan;
  static_assert(rule_at<Infer, 0>() == "fold_epilogue" && window_at<Infer, 0>() == 3 && window_at<Infer, 5>() == 2 &&
                window_at<Infer, 8>() == 3);
  static_assert(rule_at<Infer, 3>() == "layer" && rule_at<Infer, 11>() == "layer");
  static_assert(window_at<Infer, 1>() == 0 && window_at<Infer, 2>() == 0 && window_at<Infer, 6>() == 0 && window_at<Infer, 9>() == 0 &&
                window_at<Infer, 10>() == 0);
  static_assert(window_at<Infer, 3>() == 1 && window_at<Infer, 7>() == 1 && window_at<Infer, 12>() == 1);
  // Folds: a batch normalisation alone after a convolution, a ReLU alone after a dense layer.
  static_assert(window_at<Folds::inference_plan, 0>() == 2 && window_at<Folds::inference_plan, 3>() == 2 &&
                rule_at<Folds::inference_plan, 5>() == "layer");
  auto check = [](auto& net, int batch, std::uint64_t seed) {
    using Net = std::remove_reference_t<decltype(net)>;
    const Buffer x = test::random_values(std::size_t(batch) * Net::input_size, seed);
    const Buffer targets = test::random_values(std::size_t(batch) * net.outputs(), seed + 1);
    Buffer binary(targets.size());
    for (std::size_t i = 0; i < targets.size(); ++i) binary[i] = targets[i] > 0.0f ? 1.0f : 0.0f;
    Adam adam(Adam::Options{.lr = 0.05});
    // Training moves gamma and beta away from 1 and 0 and the moving statistics from 0 and 1.
    for (int step = 0; step < 5; ++step) net.train_step(x, binary, batch, adam);
    const Buffer expected = predict_layer_by_layer<Net::depth>(net, x, batch);
    const auto predicted = net.predict(x, batch);
    REQUIRE(predicted.size() == expected.size());
    double worst = 0;
    for (std::size_t i = 0; i < expected.size(); ++i) {
      REQUIRE(std::isfinite(predicted[i]));  // no NaN or infinity
      worst = std::max(worst, std::abs(double(predicted[i]) - double(expected[i])));
    }
    CHECK(worst < 1e-5);
    // evaluate's loss, which reads the logits, against the loss of the layer-by-layer logits.
    const Buffer logits = predict_layer_by_layer<Net::depth - 1>(net, x, batch);
    CHECK(net.evaluate(x, binary, batch) ==
          doctest::Approx(binary_crossentropy(logits.data(), binary.data(), std::ptrdiff_t(batch) * net.outputs())).epsilon(1e-5));
  };
  Small small(3);
  check(small, 4, 11);
  check(small, 1, 12);
  Folds folds(4);
  check(folds, 3, 13);
  // The max pool after a folded convolution computed in its forward, a strip at a time, where
  // its windows tile the output (not Small's 6x5).
  static_assert(rule_at<Infer, 0>() == "fold_epilogue");
  static_assert(rule_at<Pooled::inference_plan, 0>() == "pool_in_forward" && window_at<Pooled::inference_plan, 0>() == 4 &&
                rule_at<Pooled::inference_plan, 4>() == "layer");
  static_assert(rule_at<PooledFew::inference_plan, 0>() == "pool_in_forward" && window_at<PooledFew::inference_plan, 0>() == 4);
  Pooled pooled(5);
  check(pooled, 4, 14);
  check(pooled, 1, 15);
  PooledFew pooled_few(6);
  check(pooled_few, 3, 16);
}

namespace {
// Makes `to` a copy of `from`: weights and running statistics; the dense layers' kernels rounded
// to bfloat16 when `round`.
template <class Net>
void copy_network(Net& from, Net& to, bool round) {
  const Parameters source = from.parameters(), target = to.parameters();
  std::copy(source.values.begin(), source.values.end(), target.values.begin());
  if (round)
    for (const ParamRef& p : target)
      if (p.name.ends_with("dense.kernel"))
        for (std::size_t i = 0; i < p.size; ++i) p.value[i] = from_bfloat16(to_bfloat16(p.value[i]));
  std::vector<std::span<std::byte>> from_state, to_state;
  from.visit_state([&](const std::string&, auto span) { from_state.push_back(std::as_writable_bytes(span)); });
  to.visit_state([&](const std::string&, auto span) { to_state.push_back(std::as_writable_bytes(span)); });
  for (std::size_t i = 0; i < from_state.size(); ++i) std::copy(from_state[i].begin(), from_state[i].end(), to_state[i].begin());
}
}  // namespace

TEST_CASE(
    "inference in bfloat16: the dense kernels rounded, the convolutions in bfloat16 where the CPU has it, following the weights, every "
    "gemm kernel") {
  test::with_each_gemm_kernel([&](GemmKernel kernel) {
    const bool rounds = kernel != GemmKernel::eigen;  // Eigen's kernels read floats whatever the precision
    // With AVX512_BF16 the convolutions compute in bfloat16 too, their activations rounded as they
    // are read (tests/test_layers.cpp checks their values): the reference is then a copy in bf16,
    // which makes its rounded copies afresh from the weights net has.
    const bool convolutions = rounds && bf16_products();
    for (const int batch : {4, 1}) {  // predicting 4 samples, or 1 (the row kernels)
      INFO("batch ", batch);
      Small net(3), reference(4);
      const Buffer x = test::random_values(std::size_t(4) * Small::input_size, 21);
      Buffer targets = test::random_values(std::size_t(4) * net.outputs(), 22);
      for (float& t : targets) t = t > 0.0f ? 1.0f : 0.0f;
      Adam adam(Adam::Options{.lr = 0.05});
      net.train_step(x, targets, 4, adam);  // batch normalisation's statistics away from 0 and 1
      const std::span<const float> input = std::span(x).first(std::size_t(batch) * Small::input_size);
      CHECK(net.inference_precision() == Precision::fp32);
      net.set_inference_precision(Precision::bf16);
      CHECK(net.inference_precision() == Precision::bf16);
      // net's bf16 inference against a copy with its dense kernels rounded, and without.
      auto check = [&](const std::string& when) {
        INFO(when);
        const auto predicted = net.predict(input, batch);
        const Buffer rounded(predicted.begin(), predicted.end());
        copy_network(net, reference, rounds && !convolutions);
        if (convolutions) reference.set_inference_precision(Precision::bf16);
        const auto expected = reference.predict(input, batch);
        CHECK(Buffer(expected.begin(), expected.end()) == rounded);  // the same operations on the same values
        reference.set_inference_precision(Precision::fp32);
        copy_network(net, reference, false);
        const auto exact = reference.predict(input, batch);
        double moved = 0;
        for (std::size_t i = 0; i < exact.size(); ++i) moved = std::max(moved, std::abs(double(rounded[i]) - exact[i]));
        CHECK(moved < 0.05);  // probabilities
        CHECK((moved > 0) == rounds);
        net.predict(input, batch);  // copies made from the weights as they are now
      };
      check("after a training step");
      net.train_step(x, targets, 4, adam);
      check("after another");
      for (const ParamRef& p : net.parameters())
        if (p.name.ends_with("dense.kernel")) std::transform(p.value, p.value + p.size, p.value, [](float v) { return -1.5f * v; });
      check("after a write through parameters()");
      static_assert(std::is_same_v<Small::spec_type<8>, Dense<7>>);
      float* kernel = net.layer<8>().kernel();
      std::transform(kernel, kernel + 20, kernel, [](float v) { return v + 0.25f; });
      check("after a write through layer<I>()");
      // Back to floats: the exact inference.
      net.set_inference_precision(Precision::fp32);
      const auto predicted = net.predict(input, batch);
      copy_network(net, reference, false);
      const auto exact = reference.predict(input, batch);
      CHECK(Buffer(predicted.begin(), predicted.end()) == Buffer(exact.begin(), exact.end()));
    }
  });
}

namespace {
// A network whose inference of 1 to 4 samples runs its convolution by Winograd's F(4x4, 3x3),
// with the transformed kernel made once (as training's forward at these batches does not), and
// reads its first dense kernel in one sweep (Dense::forward); of 9, reads the dense kernels
// packed once.
using Prepared = Sequential<Input<16, 16, 16>, Conv2D<16, 3>, ReLU, BatchNorm, MaxPool2D<2>, Flatten, Dense<40>, ReLU, Dense<3>, Sigmoid>;

// net's inference (its copies for inference made by an earlier one) against a new network's
// first, as the weights change.
template <class Net>
void check_inference_follows_weights() {
  for (const int batch : {4, 1, 9}) {
    INFO("batch ", batch);
    Net net(3);
    const Buffer x = test::random_values(std::size_t(9) * Net::input_size, 21);
    Buffer targets = test::random_values(std::size_t(4) * net.outputs(), 22);
    for (float& t : targets) t = t > 0.0f ? 1.0f : 0.0f;
    Adam adam(Adam::Options{.lr = 0.05});
    const std::span<const float> input = std::span(x).first(std::size_t(batch) * Net::input_size);
    Buffer before;
    auto check = [&](const std::string& when) {
      INFO(when);
      const auto predicted = net.predict(input, batch);
      const Buffer got(predicted.begin(), predicted.end());
      Net reference(4);
      copy_network(net, reference, false);
      const auto expected = reference.predict(input, batch);
      CHECK(Buffer(expected.begin(), expected.end()) == got);
      CHECK(got != before);  // the weights' change shows
      before = got;
      net.predict(input, batch);
    };
    net.predict(input, batch);
    check("after an inference");
    net.train_step(std::span(x).first(std::size_t(4) * Net::input_size), targets, 4, adam);
    check("after a training step");
    for (const ParamRef& p : net.parameters())
      if (p.name.ends_with("conv2d.kernel")) std::transform(p.value, p.value + p.size, p.value, [](float v) { return -1.5f * v; });
    check("after a write through parameters()");
    float* kernel = net.template layer<0>().kernel();
    std::transform(kernel, kernel + 20, kernel, [](float v) { return v + 0.25f; });
    check("after a write through layer<I>()");
    for (const ParamRef& p : net.parameters())
      if (p.name.ends_with("dense.kernel")) std::transform(p.value, p.value + p.size, p.value, [](float v) { return 0.5f - v; });
    check("after a write to the dense kernels through parameters()");
  }
}
}  // namespace

TEST_CASE("inference reads the convolutions' and dense layers' kernels packed once, and follows the weights, with every gemm kernel") {
  test::with_each_gemm_kernel([&](GemmKernel kernel) {
    check_inference_follows_weights<Small>();
    check_inference_follows_weights<Prepared>();
    if (kernel != GemmKernel::eigen) {
      CHECK(Prepared::layer_type<0>::uses_winograd(1, Mode::infer));
      CHECK(!Prepared::layer_type<0>::uses_winograd(4, Mode::train));
    }
  });
}

TEST_CASE("results do not depend on the thread count, with every gemm kernel") {
  auto train = [](int threads) {
    set_num_threads(threads);
    auto net = std::make_unique<VGG>(Outputs{6}, 3);
    Adam adam;
    const Buffer x = test::random_values(5 * 96 * 96 * 3, 4);
    const float targets[30] = {1, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 0};
    net->train_step(x, targets, 5, adam);
    net->train_step(x, targets, 5, adam);
    std::vector<Buffer> values;
    values.emplace_back(net->parameters().values.begin(), net->parameters().values.end());
    values.emplace_back(net->output().begin(), net->output().end());
    const auto predicted = net->predict(x, 5);  // inference: Winograd's F(4x4, 3x3) at 32x32
    values.emplace_back(predicted.begin(), predicted.end());
    // One image: Winograd's in blocks as many as the threads, the dense kernel in one sweep.
    const auto one = net->predict(std::span(x).first(VGG::input_size), 1);
    values.emplace_back(one.begin(), one.end());
    return values;
  };
  const int original = num_threads();
  test::with_each_gemm_kernel([&](GemmKernel) {
    const auto one = train(1), two = train(2), three = train(3);
    CHECK(one == two);
    CHECK(one == three);
  });
  set_num_threads(original);
}

TEST_CASE("a small network learns a separable problem") {
  // Bright vs dark images with a bright square's corner as a second label: the loss must fall
  // and the predictions must come out right.
  using Net = Sequential<Input<8, 8, 1>, Conv2D<4, 3>, ReLU, MaxPool2D<2>, Flatten, Dense<2>, Sigmoid>;
  Net net(1);
  Adam adam(Adam::Options{.lr = 0.01});
  const int batch = 16;
  Buffer x(batch * 64), y(batch * 2);
  const Rng rng(2);
  for (int n = 0; n < batch; ++n) {
    const bool bright = n % 2, left = (n / 2) % 2;
    for (int i = 0; i < 64; ++i) x[n * 64 + i] = (bright ? 0.6f : -0.6f) + 0.2f * rng.symmetric(n * 64 + i, 1.0f);
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) x[n * 64 + r * 8 + (left ? c : 5 + c)] += 1.5f;
    y[n * 2] = bright;
    y[n * 2 + 1] = left;
  }
  const double first = net.train_step(x, y, batch, adam);
  double last = first;
  for (int step = 0; step < 200; ++step) last = net.train_step(x, y, batch, adam);
  CHECK(last < first * 0.1);
  net.predict(x, batch);
  CHECK(binary_accuracy(net.output().data(), y.data(), batch, 2) == 1.0);
}
