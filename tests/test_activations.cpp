// ReLU6, LeakyReLU, SiLU, HardSwish and GlobalAveragePooling2D: against PyTorch
// (tests/fixtures/activations.txt, made by make_activation_fixtures.py), against central
// differences, in place, with any thread count, in a network that trains.
#include "support.hpp"

#include <limits>
#include <memory>

using namespace tnet;
using test::Fixture;

namespace {

const Fixture& activations() {
  static const Fixture fixture("activations.txt");
  return fixture;
}

using Row = Shape<1, 1, 16>;       // the fixtures' activations: 2 samples of 16 values
using PoolInput = Shape<4, 5, 6>;  // the fixture's pooling: 3 images of 4x5 pixels, 6 channels
using OddImage = Shape<7, 5, 5>;   // finite differences: batch 3

// Forward (training) of the fixture's x and backward of its dy; y and dx.
template <class Layer>
std::pair<Buffer, Buffer> run_fixture(Standalone<Layer>& layer, const std::string& prefix, int batch) {
  const Buffer x = activations().floats(prefix + ".x"), dy = activations().floats(prefix + ".dy");
  Buffer y(std::size_t(batch) * Layer::output_shape::size, std::nanf("")), dx(std::size_t(batch) * Layer::input_shape::size, std::nanf(""));
  REQUIRE(x.size() == dx.size());
  REQUIRE(dy.size() == y.size());
  layer.forward(x.data(), y.data(), batch, Pass{Mode::train, 0});
  layer.backward(x.data(), y.data(), dy.data(), dx.data(), batch);
  return {y, dx};
}

// The input gradient's largest error against central differences of sum(y * r), relative to the
// largest numeric gradient; `sabotage` (index, factor) first scales one entry of the analytic one.
template <class Layer>
double input_gradient_error(Standalone<Layer>& layer, int batch, const Buffer& x_in, double h, std::size_t wrong = 0, float factor = 1.0f,
                            int width = 0) {
  Buffer x = x_in, y(std::size_t(batch) * sample_size<typename Layer::output_shape>(width)), dx(x.size());
  const Buffer r = test::random_values(y.size(), 99);
  auto loss = [&] {
    layer.forward(x.data(), y.data(), batch, Pass{Mode::train, 1});
    double total = 0;
    for (std::size_t i = 0; i < y.size(); ++i) total += double(y[i]) * r[i];
    return total;
  };
  loss();
  layer.backward(x.data(), y.data(), r.data(), dx.data(), batch);
  dx[wrong] *= factor;
  return test::compare_with_differences(x.data(), dx.data(), x.size(), loss, h);
}

}  // namespace

TEST_CASE("ReLU6, LeakyReLU, SiLU and HardSwish match PyTorch, at their kinks too, compiled for each instruction set") {
  auto check = [](auto& layer, const std::string& prefix) {
    INFO(layer.describe());
    test::with_each_gemm_kernel([&](GemmKernel) {  // the loops compiled for its instruction set (core/vectorise.hpp)
      auto [y, dx] = run_fixture(layer, prefix, 2);
      CHECK_CLOSE_TO_FIXTURE(y.data(), activations()[prefix + ".y"], 1e-6);
      CHECK_CLOSE_TO_FIXTURE(dx.data(), activations()[prefix + ".dx"], 1e-6);
      // The first five inputs are -3, 0, 3, 6 and -0 (HardSwish's -3.5, 0, 3.5, 6, -0): each
      // gradient there is PyTorch's.
      for (int i = 0; i < 5; ++i) CHECK(dx[std::size_t(i)] == doctest::Approx(activations()[prefix + ".dx"][std::size_t(i)]).epsilon(1e-6));
      // value() is the forward of one value.
      const Buffer x = activations().floats(prefix + ".x");
      for (std::size_t i = 0; i < x.size(); ++i) CHECK(layer.value(x[i]) == y[i]);
    });
  };
  Standalone<ReLU6::Layer<Row>> relu6;
  check(relu6, "relu6");
  Standalone<LeakyReLU<>::Layer<Row>> leaky;
  check(leaky, "leaky_relu");
  Standalone<LeakyReLU<0.2f>::Layer<Row>> leaky02;
  check(leaky02, "leaky_relu_02");
  Standalone<SiLU::Layer<Row>> silu;
  check(silu, "silu");
  Standalone<HardSwish::Layer<Row>> hardswish;
  check(hardswish, "hardswish");
  // The kink conventions, spelled out: ReLU6 0 at 0 and 6; LeakyReLU the slope at 0; HardSwish
  // 0 at -3 and 1 at 3 (PyTorch 2's; torch 1.13's differ between its code paths).
  const float at[] = {-3.0f, 0.0f, 3.0f, 6.0f}, ones[] = {1, 1, 1, 1};
  float y[4], dx[4];
  Standalone<ReLU6::Layer<Shape<1, 1, 4>>> r6;
  r6.forward(at, y, 1, Pass{Mode::train, 0});
  r6.backward(at, y, ones, dx, 1);
  CHECK((dx[0] == 0.0f && dx[1] == 0.0f && dx[2] == 1.0f && dx[3] == 0.0f));
  Standalone<LeakyReLU<>::Layer<Shape<1, 1, 4>>> lr;
  lr.forward(at, y, 1, Pass{Mode::train, 0});
  lr.backward(at, y, ones, dx, 1);
  CHECK((dx[0] == 0.01f && dx[1] == 0.01f && dx[2] == 1.0f && dx[3] == 1.0f));
  Standalone<HardSwish::Layer<Shape<1, 1, 4>>> hs;
  hs.forward(at, y, 1, Pass{Mode::train, 0});
  hs.backward(at, y, ones, dx, 1);
  CHECK((dx[0] == 0.0f && dx[1] == 0.5f && dx[2] == 1.0f && dx[3] == 1.0f));
  CHECK((y[0] == 0.0f && y[1] == 0.0f && y[2] == 3.0f && y[3] == 6.0f));
}

TEST_CASE("describe names each layer and LeakyReLU's slope") {
  CHECK(ReLU6::Layer<Row>::describe() == "ReLU6");
  CHECK(LeakyReLU<>::Layer<Row>::describe() == "LeakyReLU(slope 0.01)");
  CHECK(LeakyReLU<0.3f>::Layer<Row>::describe() == "LeakyReLU(slope 0.3)");
  CHECK(LeakyReLU<-0.125f>::Layer<Row>::describe() == "LeakyReLU(slope -0.125)");
  CHECK(SiLU::Layer<Row>::describe() == "SiLU");
  CHECK(HardSwish::Layer<Row>::describe() == "HardSwish");
  CHECK(GlobalAveragePooling2D::Layer<PoolInput>::describe() == "GlobalAveragePooling2D");
}

TEST_CASE("GlobalAveragePooling2D matches PyTorch's AdaptiveAvgPool2d(1) and flatten") {
  Standalone<GlobalAveragePooling2D::Layer<PoolInput>> gap;
  static_assert(std::is_same_v<decltype(gap)::output_shape, Shape<1, 1, 6>>);
  auto [y, dx] = run_fixture(gap, "gap", 3);
  CHECK_CLOSE_TO_FIXTURE(y.data(), activations()["gap.y"], 1e-6);
  CHECK_CLOSE_TO_FIXTURE(dx.data(), activations()["gap.dx"], 1e-6);
}

TEST_CASE("the gradients agree with central differences, and a gradient 2% off one entry does not") {
  const int batch = 3;
  constexpr double tolerance = 1e-3;
  // 525 values 0.03 apart, from -7.9 to 7.9: none within 0.015 of a kink (-3, 0, 3, 6), so a step
  // of 0.01 never crosses one.
  const Buffer separated = test::separated_values(std::size_t(batch) * OddImage::size, 12, 0.03f);
  auto check = [&](auto& layer, const Buffer& x, std::size_t wrong) {
    INFO(layer.describe());
    CHECK(input_gradient_error(layer, batch, x, 1e-2) <= tolerance);
    CHECK(input_gradient_error(layer, batch, x, 1e-2, wrong, 1.02f) > tolerance);
  };
  // `wrong`: an entry whose gradient is among the largest.
  auto largest = [&](auto& layer, const Buffer& x) {
    Buffer y(std::remove_reference_t<decltype(layer)>::output_shape::size * std::size_t(batch)), dx(x.size());
    const Buffer r = test::random_values(y.size(), 99);
    layer.forward(x.data(), y.data(), batch, Pass{Mode::train, 1});
    layer.backward(x.data(), y.data(), r.data(), dx.data(), batch);
    std::size_t best = 0;
    for (std::size_t i = 0; i < dx.size(); ++i)
      if (std::abs(dx[i]) > std::abs(dx[best])) best = i;
    return best;
  };
  Standalone<ReLU6::Layer<OddImage>> relu6;
  check(relu6, separated, largest(relu6, separated));
  Standalone<LeakyReLU<>::Layer<OddImage>> leaky;
  check(leaky, separated, largest(leaky, separated));
  Standalone<LeakyReLU<-0.5f>::Layer<OddImage>> leaky_negative;
  check(leaky_negative, separated, largest(leaky_negative, separated));
  Standalone<SiLU::Layer<OddImage>> silu;
  check(silu, separated, largest(silu, separated));
  Standalone<HardSwish::Layer<OddImage>> hardswish;
  check(hardswish, separated, largest(hardswish, separated));
  const Buffer x = test::random_values(std::size_t(batch) * OddImage::size, 11, 3.0f);
  Standalone<GlobalAveragePooling2D::Layer<OddImage>> gap;
  check(gap, x, largest(gap, x));
}

TEST_CASE("the activations take the run-time width after Dense<dynamic>") {
  const int batch = 3, width = 5;
  using Wide = Shape<1, 1, dynamic>;
  const Buffer x = test::separated_values(batch * width, 4, 0.9f);  // -6.3 to 6.3, none within 0.45 of a kink
  Standalone<ReLU6::Layer<Wide>> relu6(width);
  CHECK(input_gradient_error(relu6, batch, x, 1e-2, 0, 1.0f, width) <= 1e-3);
  Standalone<LeakyReLU<>::Layer<Wide>> leaky(width);
  CHECK(input_gradient_error(leaky, batch, x, 1e-2, 0, 1.0f, width) <= 1e-3);
  Standalone<SiLU::Layer<Wide>> silu(width);
  CHECK(input_gradient_error(silu, batch, x, 1e-2, 0, 1.0f, width) <= 1e-3);
  Standalone<HardSwish::Layer<Wide>> hardswish(width);
  CHECK(input_gradient_error(hardswish, batch, x, 1e-2, 0, 1.0f, width) <= 1e-3);
}

namespace {
// Forward and backward into fresh buffers: `in_place` runs y over x (backward then sees x == y),
// `poison_output` hands backward a NaN-filled y, as if the next layer had written over it.
template <class Layer>
std::pair<Buffer, Buffer> run_with(Standalone<Layer>& layer, int batch, const Buffer& x, bool in_place, bool poison_output) {
  Buffer input = x, y(std::size_t(batch) * Layer::output_shape::size), dx(std::size_t(batch) * Layer::input_shape::size);
  const Buffer dy = test::random_values(y.size(), 31);
  float* out = in_place ? input.data() : y.data();
  layer.forward(input.data(), out, batch, Pass{Mode::train, 2});
  Buffer result(out, out + y.size());
  Buffer poisoned(y.size(), std::numeric_limits<float>::quiet_NaN());
  layer.backward(input.data(), poison_output ? poisoned.data() : out, dy.data(), dx.data(), batch);
  return {result, dx};
}

template <class Layer>
void check_memory_promises(Standalone<Layer>& layer, const Buffer& x, int batch) {
  INFO(layer.describe());
  const auto [y, dx] = run_with(layer, batch, x, false, false);
  if constexpr (runs_in_place<Layer>) {
    const auto [y2, dx2] = run_with(layer, batch, x, true, false);
    CHECK(y2 == y);
    CHECK(dx2 == dx);
  }
  if constexpr (!backward_reads_output<Layer>) {
    const auto [y3, dx3] = run_with(layer, batch, x, false, true);
    CHECK(dx3 == dx);
  }
}
}  // namespace

TEST_CASE("in place equals out of place, a backward that does not read y gives the same with y poisoned") {
  // Only where backward can be computed from y: ReLU6, LeakyReLU with a slope >= 0.
  static_assert(runs_in_place<ReLU6::Layer<OddImage>> && runs_in_place<LeakyReLU<>::Layer<OddImage>> &&
                runs_in_place<LeakyReLU<0.0f>::Layer<OddImage>>);
  static_assert(!runs_in_place<LeakyReLU<-0.5f>::Layer<OddImage>> && !runs_in_place<SiLU::Layer<OddImage>> &&
                !runs_in_place<HardSwish::Layer<OddImage>> && !runs_in_place<GlobalAveragePooling2D::Layer<OddImage>>);
  static_assert(!backward_reads_output<LeakyReLU<-0.5f>::Layer<OddImage>> && !backward_reads_output<SiLU::Layer<OddImage>> &&
                !backward_reads_output<HardSwish::Layer<OddImage>> && !backward_reads_output<GlobalAveragePooling2D::Layer<OddImage>>);
  const int batch = 3;
  // The kinks among the inputs: 0.03 apart, shifted so that -3, 0, 3 and 6 are inputs.
  Buffer x = test::separated_values(std::size_t(batch) * OddImage::size, 13, 0.03f);
  for (float& v : x) v = std::round(v / 0.03f - 0.5f) * 0.03f;
  x[0] = -3.0f, x[1] = 0.0f, x[2] = 3.0f, x[3] = 6.0f;
  Standalone<ReLU6::Layer<OddImage>> relu6;
  check_memory_promises(relu6, x, batch);
  Standalone<LeakyReLU<>::Layer<OddImage>> leaky;
  check_memory_promises(leaky, x, batch);
  Standalone<LeakyReLU<0.0f>::Layer<OddImage>> leaky_zero;
  check_memory_promises(leaky_zero, x, batch);
  Standalone<LeakyReLU<-0.5f>::Layer<OddImage>> leaky_negative;
  check_memory_promises(leaky_negative, x, batch);
  Standalone<SiLU::Layer<OddImage>> silu;
  check_memory_promises(silu, x, batch);
  Standalone<HardSwish::Layer<OddImage>> hardswish;
  check_memory_promises(hardswish, x, batch);
  Standalone<GlobalAveragePooling2D::Layer<OddImage>> gap;
  check_memory_promises(gap, x, batch);
}

TEST_CASE("the same bits for 1 and 2 threads") {
  const int threads_before = num_threads();
  using Big = Shape<12, 12, 40>;  // a batch of 8 is 46,080 values: three blocks of the element-wise loops
  const int batch = 8;
  const Buffer x = test::random_values(std::size_t(batch) * Big::size, 5, 8.0f);
  const Buffer dy = test::random_values(std::size_t(batch) * Big::size, 6);
  auto run = [&](auto& layer) {
    using L = std::remove_reference_t<decltype(layer)>;
    std::vector<Buffer> results;
    for (const int threads : {1, 2}) {
      set_num_threads(threads);
      Buffer y(std::size_t(batch) * L::output_shape::size), dx(x.size());
      layer.forward(x.data(), y.data(), batch, Pass{Mode::train, 0});
      layer.backward(x.data(), y.data(), dy.data(), dx.data(), batch);
      y.insert(y.end(), dx.begin(), dx.end());
      results.push_back(std::move(y));
    }
    INFO(layer.describe());
    CHECK(results[0] == results[1]);
  };
  Standalone<ReLU6::Layer<Big>> relu6;
  run(relu6);
  Standalone<LeakyReLU<>::Layer<Big>> leaky;
  run(leaky);
  Standalone<SiLU::Layer<Big>> silu;
  run(silu);
  Standalone<HardSwish::Layer<Big>> hardswish;
  run(hardswish);
  Standalone<GlobalAveragePooling2D::Layer<Big>> gap;
  run(gap);
  set_num_threads(threads_before);
}

namespace {
// Every new layer in one network: a SiLU before a convolution, a ReLU6 working in place over a
// HardSwish's output (which HardSwish's backward does not read), a LeakyReLU after the ReLU6 (whose
// output its backward reads: not over it), the pooling straight into a Dense.
using Mixed = Sequential<Input<6, 5, 3>, Conv2D<4, 3>, SiLU, Conv2D<5, 3>, HardSwish, ReLU6, LeakyReLU<0.1f>, GlobalAveragePooling2D,
                         Dense<dynamic>, Sigmoid>;
}  // namespace

TEST_CASE("a network of them: gradients against central differences, buffers shared only where allowed") {
  static_assert(Mixed::shares_buffer<4>);   // ReLU6 over HardSwish's output
  static_assert(!Mixed::shares_buffer<5>);  // LeakyReLU not over ReLU6's
  Mixed net(Outputs{3}, 4);
  const int batch = 3;
  Buffer x = test::random_values(batch * Mixed::input_size, 22, 2.0f);
  const float targets[] = {1, 0, 1, 0, 0, 1, 1, 1, 0};
  Buffer grad_input(x.size());
  net.compute_gradients(x, targets, batch, grad_input);
  auto loss = [&] {
    net.forward(x, batch, Mode::train);
    return binary_crossentropy(net.output_of<Mixed::depth - 2>(), targets, batch * 3);
  };
  CHECK(test::compare_with_differences(x.data(), grad_input.data(), x.size(), loss, 1e-3) <= 2e-2);
  for (const ParamRef& p : net.parameters()) {
    INFO(p.name);
    const Buffer analytic(p.grad, p.grad + p.size);
    CHECK(test::compare_with_differences(p.value, analytic.data(), p.size, loss, 1e-3, 40) <= 2e-2);
  }
}

namespace {
// Conv2D, the activation, global average pooling, Dense, Sigmoid learn two labels of 8x8 images:
// bright or dark, and whether a bright 3x3 square is in them (anywhere: the pooling forgets where).
template <class Activation, class Head>
void check_learns() {
  using Net = Sequential<Input<8, 8, 1>, Conv2D<6, 3>, Activation, GlobalAveragePooling2D, Head, Sigmoid>;
  Net net(Outputs{2}, 1);
  INFO(net.signature());
  Adam adam(Adam::Options{.lr = 0.03});
  const int batch = 16;
  Buffer x(batch * 64), y(batch * 2);
  const Rng rng(2);
  for (int n = 0; n < batch; ++n) {
    const bool bright = n % 2, square = (n / 2) % 2;
    for (int i = 0; i < 64; ++i) x[n * 64 + i] = (bright ? 0.5f : -0.5f) + 0.2f * rng.symmetric(n * 64 + i, 1.0f);
    const int top = n % 5, left = (n / 3) % 5;
    if (square)
      for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c) x[n * 64 + (top + r) * 8 + left + c] += 2.0f;
    y[n * 2] = bright;
    y[n * 2 + 1] = square;
  }
  const double first = net.train_step(x, y, batch, adam);
  double last = first;
  for (int step = 0; step < 300; ++step) last = net.train_step(x, y, batch, adam);
  CHECK(last < first * 0.2);
  net.predict(x, batch);
  CHECK(binary_accuracy(net.output().data(), y.data(), batch, 2) == 1.0);
}
}  // namespace

TEST_CASE("Conv2D, each activation, GlobalAveragePooling2D, Dense, Sigmoid: the loss falls with train_step") {
  check_learns<ReLU6, Dense<2>>();
  check_learns<SiLU, Dense<2>>();
  check_learns<HardSwish, Dense<dynamic>>();
  check_learns<LeakyReLU<>, Dense<dynamic>>();
}

// ---- ONNX --------------------------------------------------------------------------------------

namespace {
// Mixed with a Flatten between the pooling and the Dense, as Keras users may write it.
using MixedFlatten = Sequential<Input<6, 5, 3>, Conv2D<4, 3>, SiLU, Conv2D<5, 3>, HardSwish, ReLU6, LeakyReLU<0.1f>, GlobalAveragePooling2D,
                                Flatten, Dense<dynamic>, Sigmoid>;
// What tests/fixtures/make_activation_fixtures.py exports from PyTorch.
using FromTorch = Sequential<Input<8, 8, 3>, Conv2D<6, 3>, SiLU, Conv2D<6, 3>, HardSwish, Conv2D<6, 3>, ReLU6, LeakyReLU<0.1f>,
                             GlobalAveragePooling2D, Dense<4>>;

template <class N>
std::vector<float> values_of(N& net) {
  return {net.parameters().values.begin(), net.parameters().values.end()};
}
}  // namespace

TEST_CASE("ONNX: a network of every new layer exports and imports to the same network, bit for bit, in both layouts") {
  test::TempDir dir("activations_onnx");
  auto check = [&](auto& net, auto& copy) {
    // Train a few steps: weights away from their initial values; scaled inputs reach every piece.
    using N = std::remove_reference_t<decltype(net)>;
    const int batch = 3;
    const Buffer x = test::random_values(batch * N::input_size, 1, 3.0f);
    const float targets[] = {1, 0, 1, 0, 0, 1, 1, 1, 0};
    Adam adam;
    for (int s = 0; s < 3; ++s) net.train_step(x, targets, batch, adam);
    const auto y = net.predict(x, batch);
    const std::vector<float> expected(y.begin(), y.end());
    for (const OnnxLayout layout : {OnnxLayout::nhwc, OnnxLayout::nchw}) {
      CAPTURE(int(layout));
      save_onnx(dir / "net.onnx", net, {"a", "b", "c"}, layout);
      CHECK(values_of(copy) != values_of(net));
      load_onnx(dir / "net.onnx", copy);
      CHECK(values_of(copy) == values_of(net));
      const auto got = copy.predict(x, batch);
      CHECK(std::vector<float>(got.begin(), got.end()) == expected);
      copy.parameters().values[0] += 1.0f;  // differs again for the next layout
    }
  };
  Mixed net(Outputs{3}, 5), copy(Outputs{3}, 6);
  check(net, copy);
  MixedFlatten flat(Outputs{3}, 5), flat_copy(Outputs{3}, 6);
  check(flat, flat_copy);
}

TEST_CASE("ONNX: PyTorch's SiLU, Hardswish, ReLU6, LeakyReLU and AdaptiveAvgPool2d(1) then Linear load and give its outputs") {
  // Exported by torch.onnx.export at opsets 10 and 13 (Hardswish as HardSigmoid then Mul) and 14
  // (a HardSwish node); ReLU6 as Clip, its bounds attributes at 10 and Constant inputs from 11;
  // then GlobalAveragePool, Flatten, Gemm.
  const Buffer x = activations().floats("torch.x");
  const std::vector<double>& want = activations()["torch.y"];
  const int batch = 3;
  REQUIRE(x.size() == batch * FromTorch::input_size);
  double spread = 0;
  for (const double v : want) spread = std::max(spread, std::abs(v));
  CHECK(spread > 0.5);  // outputs that differ between inputs, not a constant
  auto check = [&](auto& net, const std::string& file) {
    INFO(file);
    const OnnxInfo info = load_onnx(std::string(TNET_FIXTURE_DIR) + "/" + file, net);
    CHECK(info.layout == OnnxLayout::nchw);
    const auto y = net.predict(x, batch);
    REQUIRE(y.size() == want.size());
    double worst = 0;
    for (std::size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::abs(double(y[i]) - want[i]));
    MESSAGE(file, ": largest difference from PyTorch ", worst);
    CHECK(worst <= 1e-4);
  };
  for (const std::string file : {"activations_opset10.onnx", "activations_opset13.onnx", "activations_opset14.onnx"}) {
    FromTorch net(1);
    check(net, file);
    // PyTorch's Flatten is also a tnet Flatten between the pooling and the Dense.
    Sequential<Input<8, 8, 3>, Conv2D<6, 3>, SiLU, Conv2D<6, 3>, HardSwish, Conv2D<6, 3>, ReLU6, LeakyReLU<0.1f>, GlobalAveragePooling2D,
               Flatten, Dense<4>>
        flat(1);
    check(flat, file);
  }
}

TEST_CASE("a network of every new layer saves to a model file and loads back, bit for bit") {
  test::TempDir dir("activations_model");
  Mixed net(Outputs{3}, 5), copy(Outputs{3}, 6);
  const Buffer x = test::random_values(3 * Mixed::input_size, 1, 3.0f);
  const float targets[] = {1, 0, 1, 0, 0, 1, 1, 1, 0};
  Adam adam;
  net.train_step(x, targets, 3, adam);
  save_model(dir / "net.tnet", net);
  load_model(dir / "net.tnet", copy);
  CHECK(values_of(copy) == values_of(net));
  const auto y = net.predict(x, 3);
  const std::vector<float> expected(y.begin(), y.end());
  const auto got = copy.predict(x, 3);
  CHECK(std::vector<float>(got.begin(), got.end()) == expected);
  // A network with another slope has another signature: refused.
  using Slope = Sequential<Input<6, 5, 3>, Conv2D<4, 3>, SiLU, Conv2D<5, 3>, HardSwish, ReLU6, LeakyReLU<0.2f>, GlobalAveragePooling2D,
                           Dense<dynamic>, Sigmoid>;
  Slope other(Outputs{3}, 1);
  const std::string message = test::error_of([&] { load_model(dir / "net.tnet", other); });
  CHECK_MESSAGE(message.find("LeakyReLU(slope 0.1)") != std::string::npos, message);
}

TEST_CASE("ONNX: a graph whose activation differs from the network's is refused, naming the node") {
  test::TempDir dir("activations_refused");
  Mixed net(Outputs{3}, 5);
  save_onnx(dir / "net.onnx", net);
  auto refused = [&](auto&& other, const std::string& words) {
    const std::vector<float> before = values_of(other);
    const std::string message = test::error_of([&] { load_onnx(dir / "net.onnx", other); });
    CHECK_MESSAGE(message.find(words) != std::string::npos, message);
    CHECK(values_of(other) == before);
  };
  using Slope = Sequential<Input<6, 5, 3>, Conv2D<4, 3>, SiLU, Conv2D<5, 3>, HardSwish, ReLU6, LeakyReLU<0.2f>, GlobalAveragePooling2D,
                           Dense<dynamic>, Sigmoid>;
  refused(Slope(Outputs{3}, 1), "does not fit layer 5.leakyrelu: its alpha is 0.100000, the layer's slope 0.200000");
  using Swapped = Sequential<Input<6, 5, 3>, Conv2D<4, 3>, HardSwish, Conv2D<5, 3>, SiLU, ReLU6, LeakyReLU<0.1f>, GlobalAveragePooling2D,
                             Dense<dynamic>, Sigmoid>;
  refused(Swapped(Outputs{3}, 1),
          "ONNX node 2 (Sigmoid '1.silu.sigmoid') does not fit layer 1.hardswish: expected HardSwish or HardSigmoid");
  using Relu = Sequential<Input<6, 5, 3>, Conv2D<4, 3>, SiLU, Conv2D<5, 3>, HardSwish, ReLU, LeakyReLU<0.1f>, GlobalAveragePooling2D,
                          Dense<dynamic>, Sigmoid>;
  refused(Relu(Outputs{3}, 1), "(Clip '4.relu6') does not fit layer 4.relu: expected Relu");
  using Pooled = Sequential<Input<6, 5, 3>, Conv2D<4, 3>, SiLU, Conv2D<5, 3>, HardSwish, ReLU6, LeakyReLU<0.1f>, MaxPool2D<2>, Flatten,
                            Dense<dynamic>, Sigmoid>;
  refused(Pooled(Outputs{3}, 1), "(GlobalAveragePool '6.globalaveragepooling2d') does not fit layer 6.maxpool2d: expected MaxPool");
}
