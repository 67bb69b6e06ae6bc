// Residual blocks (layers/residual.hpp): gradients against central differences and a training
// step and an inference against PyTorch (tests/fixtures/make_residual_fixtures.py), parameter
// and state names, thread-count independence.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "support.hpp"
#include "tnet/tnet.hpp"

using namespace tnet;

namespace {
using Identity = Residual<Conv2D<8, 3>, BatchNorm, ReLU, Conv2D<8, 3>, BatchNorm>;
using Projection =
    Residual<Conv2D<16, 3, 2>, BatchNorm, ReLU, Conv2D<16, 3>, BatchNorm, Shortcut<Conv2D<16, 1, 2, Padding::valid>, BatchNorm>>;
// What make_residual_fixtures.py computes.
using Net = Sequential<Input<8, 8, 4>, Conv2D<8, 3>, BatchNorm, ReLU, Identity, ReLU, Projection, ReLU, Flatten, Dense<3>, Sigmoid>;
}  // namespace

TEST_CASE("a residual block's shapes, parameters and state are its body's and its shortcut's") {
  static_assert(std::is_same_v<Net::layer_type<3>::output_shape, Shape<8, 8, 8>>);
  static_assert(std::is_same_v<Net::layer_type<5>::output_shape, Shape<4, 4, 16>>);
  static_assert(Net::layer_type<3>::identity && !Net::layer_type<5>::identity);
  static_assert(Net::shares_buffer<4> && Net::shares_buffer<6>);  // the ReLU after a block works over its output
  auto net = std::make_unique<Net>(1);
  std::vector<std::string> names;
  for (const ParamRef& p : net->parameters()) names.push_back(p.name);
  const std::vector<std::string> expected = {"0.conv2d.kernel",
                                             "0.conv2d.bias",
                                             "1.batchnorm.gamma",
                                             "1.batchnorm.beta",
                                             "3.residual.0.conv2d.kernel",
                                             "3.residual.0.conv2d.bias",
                                             "3.residual.1.batchnorm.gamma",
                                             "3.residual.1.batchnorm.beta",
                                             "3.residual.3.conv2d.kernel",
                                             "3.residual.3.conv2d.bias",
                                             "3.residual.4.batchnorm.gamma",
                                             "3.residual.4.batchnorm.beta",
                                             "5.residual.0.conv2d.kernel",
                                             "5.residual.0.conv2d.bias",
                                             "5.residual.1.batchnorm.gamma",
                                             "5.residual.1.batchnorm.beta",
                                             "5.residual.3.conv2d.kernel",
                                             "5.residual.3.conv2d.bias",
                                             "5.residual.4.batchnorm.gamma",
                                             "5.residual.4.batchnorm.beta",
                                             "5.residual.shortcut.0.conv2d.kernel",
                                             "5.residual.shortcut.0.conv2d.bias",
                                             "5.residual.shortcut.1.batchnorm.gamma",
                                             "5.residual.shortcut.1.batchnorm.beta",
                                             "8.dense.kernel",
                                             "8.dense.bias"};
  CHECK(names == expected);
  // One array: each tensor starts where the one before ends.
  std::size_t at = 0;
  for (const ParamRef& p : net->parameters()) {
    CHECK(p.offset == at);
    at += p.size;
  }
  CHECK(at == net->trainable_count());
  std::vector<std::string> state;
  net->visit_state([&](const std::string& name, auto) { state.push_back(name); });
  auto has = [&](const std::string& name) { return std::ranges::find(state, name) != state.end(); };
  CHECK(state.size() == 6 * 5);  // six batch norms: moving and biased mean and variance, update count
  CHECK(has("3.residual.1.batchnorm.moving_mean"));
  CHECK(has("5.residual.shortcut.1.batchnorm.moving_variance"));
  CHECK(net->non_trainable_count() == 2 * (8 + 8 + 8 + 16 + 16 + 16));
  const std::string signature = net->signature();
  CHECK(signature.find("Residual(Conv2D(8, 3x3, stride 1, same) -> BatchNorm") != std::string::npos);
  CHECK(signature.find("; shortcut identity) -> (None, 8, 8, 8)") != std::string::npos);
  CHECK(signature.find("; shortcut Conv2D(16, 1x1, stride 2, valid) -> BatchNorm") != std::string::npos);
}

namespace {
// A convolution's bias right before a batch norm has no effect on the loss: its gradient is zero
// (to rounding), and central differences of it are noise. Those are checked to be zero; every
// other tensor against central differences of `loss`.
void check_against_differences(const std::string& name, float* value, const float* analytic, std::size_t size,
                               const std::function<double()>& loss, double h, double tolerance, bool before_batch_norm) {
  INFO(name);
  if (before_batch_norm) {
    double largest = 0;
    for (std::size_t i = 0; i < size; ++i) largest = std::max(largest, std::abs(double(analytic[i])));
    CHECK(largest <= 1e-5);
  } else {
    CHECK(test::compare_with_differences(value, analytic, size, loss, h, 40) <= tolerance);
  }
}
bool feeds_batch_norm(const std::string& name) { return name.ends_with("conv2d.bias"); }

// One block on its own, loss sum(y * r), in training mode.
template <class Block>
void check_block(std::uint64_t seed) {
  Standalone<Block> block;
  using In = typename Block::input_shape;
  using Out = typename Block::output_shape;
  const int batch = 2;
  Buffer x = test::random_values(batch * In::size, seed), y(batch * Out::size), dx(x.size());
  const Buffer r = test::random_values(y.size(), seed + 1);
  auto loss = [&] {
    block.forward(x.data(), y.data(), batch, Pass{Mode::train, 5});
    double total = 0;
    for (std::size_t i = 0; i < y.size(); ++i) total += double(y[i]) * r[i];
    return total;
  };
  loss();
  block.backward(x.data(), y.data(), r.data(), dx.data(), batch);
  check_against_differences("input", x.data(), Buffer(dx).data(), x.size(), loss, 1e-2, 2e-2, false);
  block.visit_parameters([&](std::string_view name, float* value, float* grad, std::size_t size) {
    const Buffer analytic(grad, grad + size);
    check_against_differences(std::string(name), value, analytic.data(), size, loss, 1e-2, 2e-2, feeds_batch_norm(std::string(name)));
  });
}
}  // namespace

TEST_CASE("residual blocks, identity and projection: gradients agree with central differences") {
  // Without ReLUs, so that the loss is smooth and a step of 1e-2 is well above float's noise and
  // crosses no kink (the fixture test above covers the blocks with their ReLUs, against PyTorch).
  using SmoothIdentity = Residual<Conv2D<8, 3>, BatchNorm, Conv2D<8, 3>, BatchNorm>;
  using SmoothProjection =
      Residual<Conv2D<16, 3, 2>, BatchNorm, Conv2D<16, 3>, BatchNorm, Shortcut<Conv2D<16, 1, 2, Padding::valid>, BatchNorm>>;
  using Smooth = Sequential<Input<8, 8, 4>, Conv2D<8, 3>, BatchNorm, SmoothIdentity, SmoothProjection, Flatten, Dense<3>, Sigmoid>;
  SUBCASE("one block at a time") {
    check_block<SmoothIdentity::Layer<Shape<5, 5, 8>>>(3);
    check_block<SmoothProjection::Layer<Shape<5, 6, 8>>>(4);
  }
  SUBCASE("in a network, with the fused loss") {
    using Net = Smooth;
    Net net(5);
    const int batch = 3;
    Buffer x = test::random_values(batch * Net::input_size, 21);
    const float targets[] = {1, 0, 1, 0, 0, 1, 1, 1, 0};
    Buffer grad_input(x.size());
    net.compute_gradients(x, targets, batch, grad_input);
    auto loss = [&] {
      net.forward(x, batch, Mode::train);
      return binary_crossentropy(net.output_of<Net::depth - 2>(), targets, batch * 3);
    };
    check_against_differences("input", x.data(), grad_input.data(), x.size(), loss, 1e-2, 2e-2, false);
    for (const ParamRef& p : net.parameters()) {
      const Buffer analytic(p.grad, p.grad + p.size);
      check_against_differences(p.name, p.value, analytic.data(), p.size, loss, 1e-2, 2e-2, feeds_batch_norm(p.name));
    }
  }
}

TEST_CASE("a residual network's training step and inference match PyTorch, with every gemm kernel") {
  const test::Fixture fx("residual.txt");
  test::with_each_gemm_kernel([&](GemmKernel) {
    auto net = std::make_unique<Net>(1);
    for (const ParamRef& p : net->parameters()) {
      const Buffer values = fx.floats(p.name);
      REQUIRE(values.size() == p.size);
      std::copy(values.begin(), values.end(), p.value);
    }
    const Buffer x = fx.floats("input"), targets = fx.floats("targets");
    const int batch = 4;
    Buffer grad_input(x.size());
    const double loss = net->compute_gradients(x, targets, batch, grad_input);
    CHECK(loss == doctest::Approx(fx.scalar("loss")).epsilon(1e-5));
    CHECK_CLOSE_TO_FIXTURE(net->output().data(), fx["probabilities"], 1e-5);
    CHECK_CLOSE_TO_FIXTURE(grad_input.data(), fx["grad_input"], 1e-4);
    for (const ParamRef& p : net->parameters()) {
      INFO("gradient of ", p.name);
      if (feeds_batch_norm(p.name)) {  // zero in exact arithmetic: rounding alone, against the kernel's gradient
        const auto& kernel = fx[p.name.substr(0, p.name.size() - 4) + "kernel.grad"];
        double largest = 0, scale = 0;
        for (std::size_t i = 0; i < p.size; ++i) largest = std::max(largest, std::abs(double(p.grad[i])));
        for (double v : kernel) scale = std::max(scale, std::abs(v));
        CHECK(largest <= 1e-5 * scale);
      } else {
        CHECK_CLOSE_TO_FIXTURE(p.grad, fx[p.name + ".grad"], 1e-4);
      }
    }
    // Inference folds the batch norms into the convolutions inside the blocks too.
    CHECK_CLOSE_TO_FIXTURE(net->predict(x, batch).data(), fx["inference"], 1e-5);
  });
}

TEST_CASE("a residual network's results do not depend on the thread count") {
  auto run = [](int threads) {
    set_num_threads(threads);
    Net net(9);
    const int batch = 5;
    const Buffer x = test::random_values(batch * Net::input_size, 8);
    const float targets[15] = {1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 1};
    Buffer grad_input(x.size());
    net.compute_gradients(x, targets, batch, grad_input);
    std::vector<float> result(grad_input.begin(), grad_input.end());
    result.insert(result.end(), net.parameters().grads.begin(), net.parameters().grads.end());
    const auto predicted = net.predict(x, batch);
    result.insert(result.end(), predicted.begin(), predicted.end());
    return result;
  };
  const int original = num_threads();
  const auto one = run(1), two = run(2), three = run(3);
  set_num_threads(original);
  CHECK(one == two);
  CHECK(one == three);
}

TEST_CASE("a residual network goes out to ONNX and back: the body, the shortcut, then Add") {
  test::TempDir dir("residual_onnx");
  auto net = std::make_unique<Net>(3);
  net->forward(test::random_values(4 * Net::input_size, 5), 4, Mode::train);  // statistics away from the defaults
  const Buffer x = test::random_values(2 * Net::input_size, 6);
  const auto y = net->predict(x, 2);
  const std::vector<float> expected(y.begin(), y.end());
  for (OnnxLayout layout : {OnnxLayout::nhwc, OnnxLayout::nchw}) {
    save_onnx(dir / "r.onnx", *net, {}, layout);
    auto back = std::make_unique<Net>(4);
    load_onnx(dir / "r.onnx", *back);
    const auto again = back->predict(x, 2);
    CHECK(std::equal(again.begin(), again.end(), expected.begin()));
  }
  // A chain that is not the block: the shortcut's batch norm missing.
  using Other =
      Sequential<Input<8, 8, 4>, Conv2D<8, 3>, BatchNorm, ReLU, Identity, ReLU,
                 Residual<Conv2D<16, 3, 2>, BatchNorm, ReLU, Conv2D<16, 3>, BatchNorm, Shortcut<Conv2D<16, 1, 2, Padding::valid>>>, ReLU,
                 Flatten, Dense<3>, Sigmoid>;
  auto other = std::make_unique<Other>(1);
  const std::string error = test::error_of([&] { load_onnx(dir / "r.onnx", *other); });
  CHECK(error.find("does not fit layer 5.residual") != std::string::npos);
  CHECK(error.find("expected the Add of the block's two paths") != std::string::npos);
}

TEST_CASE("a residual network's model file round-trips, and a network of other blocks is refused by name") {
  test::TempDir dir("residual_model");
  auto net = std::make_unique<Net>(3);
  Adam adam;
  const Buffer x = test::random_values(4 * Net::input_size, 5);
  const float targets[12] = {1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0};
  net->train_step(x, targets, 4, adam);
  save_model(dir / "r.tnet", *net);
  auto back = std::make_unique<Net>(4);
  load_model(dir / "r.tnet", *back);
  CHECK(std::ranges::equal(back->parameters().values, net->parameters().values));
  const auto expected = net->predict(x, 4);
  const std::vector<float> want(expected.begin(), expected.end());
  const auto got = back->predict(x, 4);
  CHECK(std::equal(got.begin(), got.end(), want.begin()));
  using Wider = Sequential<Input<8, 8, 4>, Conv2D<8, 3>, BatchNorm, ReLU, Residual<Conv2D<8, 3>, BatchNorm, ReLU, Conv2D<8, 5>, BatchNorm>,
                           ReLU, Projection, ReLU, Flatten, Dense<3>, Sigmoid>;
  auto wider = std::make_unique<Wider>(1);
  const std::string error = test::error_of([&] { load_model(dir / "r.tnet", *wider); });
  CHECK(error.find("Conv2D(8, 5x5") != std::string::npos);
}
