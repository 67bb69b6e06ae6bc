// Explicit padding, depthwise convolution and average pooling: against PyTorch
// (tests/fixtures/depthwise.txt, from make_depthwise_fixtures.py) and against finite differences.
#include "support.hpp"

#include <cstring>

using namespace tnet;
using test::Fixture;

namespace {

const Fixture& fixtures() {
  static const Fixture fixture("depthwise.txt");
  return fixture;
}

constexpr double fixture_tolerance = 1e-5;

// Loads the case's x (and kernel and bias, for a layer that has them), runs the training forward
// and the backward with its dy, and compares y, dx and the parameter gradients with PyTorch's.
template <class L>
void check_against_fixture(const std::string& name, int batch = 2) {
  INFO(L::describe(), " against ", name);
  Standalone<L> layer;
  const Buffer x = fixtures().floats(name + ".x"), dy = fixtures().floats(name + ".dy");
  REQUIRE(x.size() == std::size_t(batch) * L::input_shape::size);
  REQUIRE(dy.size() == std::size_t(batch) * L::output_shape::size);
  if constexpr (requires { layer.kernel(); }) {
    const Buffer kernel = fixtures().floats(name + ".kernel"), bias = fixtures().floats(name + ".bias");
    std::copy(kernel.begin(), kernel.end(), layer.kernel());
    std::copy(bias.begin(), bias.end(), layer.bias());
  }
  Buffer y(dy.size(), std::nanf("")), dx(x.size(), std::nanf(""));
  layer.forward(x.data(), y.data(), batch, Pass{Mode::train, 0});
  layer.backward(x.data(), y.data(), dy.data(), dx.data(), batch);
  CHECK_CLOSE_TO_FIXTURE(y.data(), fixtures()[name + ".y"], fixture_tolerance);
  CHECK_CLOSE_TO_FIXTURE(dx.data(), fixtures()[name + ".dx"], fixture_tolerance);
  if constexpr (requires { layer.kernel(); }) {
    CHECK_CLOSE_TO_FIXTURE(layer.grad_kernel(), fixtures()[name + ".dkernel"], fixture_tolerance);
    CHECK_CLOSE_TO_FIXTURE(layer.grad_bias(), fixtures()[name + ".dbias"], fixture_tolerance);
  }
  Buffer inferred(dy.size(), std::nanf(""));
  layer.forward(x.data(), inferred.data(), batch, Pass{Mode::infer});
  CHECK_CLOSE_TO_FIXTURE(inferred.data(), fixtures()[name + ".y"], fixture_tolerance);
}

using Odd3 = Shape<7, 6, 3>;
using Odd4 = Shape<7, 6, 4>;

template <class L>
void check_gradients(int batch, const Buffer& x, double tolerance = 1e-2) {
  Standalone<L> layer;
  if constexpr (requires { layer.bias(); })  // a bias away from zero, as training leaves it
    for (int f = 0; f < L::output_shape::channels; ++f) layer.bias()[f] = 0.1f * float(f % 3) - 0.1f;
  test::check_layer_gradients(layer, batch, x, 1e-2, tolerance);
}

template <class L>
Buffer image_values(int batch, std::uint64_t seed) {
  return test::separated_values(std::size_t(batch) * L::input_shape::size, seed, 0.02f);
}

}  // namespace

TEST_CASE("Padding: output sizes and padding of same, valid and pad(p), as Keras and PyTorch compute them") {
  static_assert(Padding::same.output_size(224, 7, 2) == 112 && pad(3).output_size(224, 7, 2) == 112 && pad(3).before(224, 7, 2) == 3);
  static_assert(pad(1).output_size(112, 3, 2) == 56);  // ResNet's max pool
  static_assert(Padding::valid.output_size(7, 3, 2) == 3 && Padding::valid.before(7, 3, 2) == 0);
  static_assert(Padding::same.before(6, 3, 2) == 0 && Padding::same.after(6, 3, 2) == 1);  // the extra column after
  static_assert(pad(1).after(6, 3, 2) == 0);                                               // the last padded column is read by no window
  static_assert(Padding::same != Padding::valid && pad(0) != Padding::valid && pad(2) == pad(2));
  using Stem = Conv2D<64, 7, 2, pad(3)>::Layer<Shape<224, 224, 3>>;
  static_assert(std::is_same_v<Stem::output_shape, Shape<112, 112, 64>>);
  static_assert(std::is_same_v<MaxPool2D<3, 2, pad(1)>::Layer<Stem::output_shape>::output_shape, Shape<56, 56, 64>>);
  CHECK(Stem::describe() == "Conv2D(64, 7x7, stride 2, pad 3)");
  // the spellings of before: the same signatures
  CHECK(Conv2D<4, 3, 1, Padding::valid>::Layer<Odd3>::describe() == "Conv2D(4, 3x3, stride 1, valid)");
  CHECK(Conv2D<4, 3>::Layer<Odd3>::describe() == "Conv2D(4, 3x3, stride 1, same)");
  CHECK(MaxPool2D<2>::Layer<Odd3>::describe() == "MaxPool2D(2x2, stride 2)");
  CHECK(MaxPool2D<3, 2, pad(1)>::Layer<Odd3>::describe() == "MaxPool2D(3x3, stride 2, pad 1)");
  CHECK(DepthwiseConv2D<3, 2, pad(1), 2>::Layer<Odd3>::describe() == "DepthwiseConv2D(3x3, stride 2, pad 1, multiplier 2)");
  CHECK(AveragePooling2D<3, 2, Padding::same>::Layer<Odd3>::describe() == "AveragePooling2D(3x3, stride 2, same)");
  // a 3x3 padded by 1 fits a 1x1 input; unpadded it does not
  static_assert(Conv2D<4, 3, 1, pad(1)>::accepts<Shape<1, 1, 2>> && !Conv2D<4, 3, 1, Padding::valid>::accepts<Shape<1, 1, 2>>);
}

TEST_CASE("DepthwiseConv2D, Conv2D with pad(p), MaxPool2D and AveragePooling2D with padding match PyTorch") {
  check_against_fixture<DepthwiseConv2D<3>::Layer<Odd3>>("dw_same_s1_m1");
  check_against_fixture<DepthwiseConv2D<3, 2>::Layer<Odd3>>("dw_same_s2_m1");
  check_against_fixture<DepthwiseConv2D<3, 1, Padding::valid, 2>::Layer<Odd3>>("dw_valid_s1_m2");
  check_against_fixture<DepthwiseConv2D<3, 2, pad(1), 2>::Layer<Odd3>>("dw_pad1_s2_m2");
  check_against_fixture<DepthwiseConv2D<5, 1, pad(2)>::Layer<Odd3>>("dw_pad2_s1_m1");
  test::with_each_gemm_kernel([](GemmKernel) {
    check_against_fixture<Conv2D<4, 7, 2, pad(3)>::Layer<Shape<9, 8, 3>>>("conv_pad3_s2");
    check_against_fixture<Conv2D<4, 3, 2, pad(1)>::Layer<Shape<7, 6, 5>>>("conv_pad1_s2");
  });
  check_against_fixture<MaxPool2D<3, 2, pad(1)>::Layer<Odd4>>("max_3_2_pad1");
  check_against_fixture<MaxPool2D<3, 2, Padding::same>::Layer<Odd4>>("max_3_2_same");
  check_against_fixture<AveragePooling2D<3, 2, pad(1)>::Layer<Odd4>>("avg_3_2_pad1");
  check_against_fixture<AveragePooling2D<2>::Layer<Odd4>>("avg_2_2_valid");
  check_against_fixture<AveragePooling2D<3, 2, Padding::same>::Layer<Odd4>>("avg_3_2_same");
}

TEST_CASE("gradients of DepthwiseConv2D, padded convolutions and pools match central differences") {
  SUBCASE("DepthwiseConv2D: multiplier 1 and 2, stride 1 and 2, same, valid and pad(1)") {
    check_gradients<DepthwiseConv2D<3>::Layer<Odd3>>(2, image_values<DepthwiseConv2D<3>::Layer<Odd3>>(2, 1));
    check_gradients<DepthwiseConv2D<3, 2>::Layer<Odd3>>(2, image_values<DepthwiseConv2D<3>::Layer<Odd3>>(2, 2));
    check_gradients<DepthwiseConv2D<3, 1, Padding::valid, 2>::Layer<Odd3>>(2, image_values<DepthwiseConv2D<3>::Layer<Odd3>>(2, 3));
    check_gradients<DepthwiseConv2D<3, 2, pad(1), 2>::Layer<Odd3>>(2, image_values<DepthwiseConv2D<3>::Layer<Odd3>>(2, 4));
    check_gradients<DepthwiseConv2D<3, 1, pad(1), 2>::Layer<Odd3>>(1, image_values<DepthwiseConv2D<3>::Layer<Odd3>>(1, 5));
  }
  SUBCASE("Conv2D 7x7 stride 2 pad(3) and 3x3 stride 2 pad(1)") {
    using Stem = Conv2D<4, 7, 2, pad(3)>::Layer<Shape<9, 8, 3>>;
    using Strided = Conv2D<4, 3, 2, pad(1)>::Layer<Shape<7, 6, 5>>;
    test::with_each_gemm_kernel([](GemmKernel) {
      check_gradients<Stem>(2, image_values<Stem>(2, 6));
      check_gradients<Strided>(2, image_values<Strided>(2, 7));
    });
  }
  SUBCASE("MaxPool2D 3x3 stride 2 pad(1) and same") {
    using Pool = MaxPool2D<3, 2, pad(1)>::Layer<Odd4>;
    check_gradients<Pool>(2, image_values<Pool>(2, 8));
    check_gradients<MaxPool2D<3, 2, Padding::same>::Layer<Odd4>>(2, image_values<Pool>(2, 9));
  }
  SUBCASE("AveragePooling2D valid, pad(1) and same") {
    using Pool = AveragePooling2D<3, 2, pad(1)>::Layer<Odd4>;
    check_gradients<Pool>(2, image_values<Pool>(2, 10));
    check_gradients<AveragePooling2D<2>::Layer<Odd4>>(2, image_values<Pool>(2, 11));
    check_gradients<AveragePooling2D<3, 2, Padding::same>::Layer<Odd4>>(2, image_values<Pool>(2, 12));
  }
}

TEST_CASE("MaxPool2D with padding never chooses a padded position: all-negative inputs") {
  using Pool = MaxPool2D<3, 2, pad(1)>::Layer<Shape<4, 4, 1>>;
  Standalone<Pool> pool;
  Buffer x(16), y(4), dy(4, 1.0f), dx(16);
  for (int i = 0; i < 16; ++i) x[i] = -1.0f - float(i);  // a zero pad would win every window
  pool.forward(x.data(), y.data(), 1, Pass{Mode::train, 0});
  // windows of rows -1..1 and 1..3, columns likewise: each one's top left input inside the image
  CHECK(std::vector<float>(y.begin(), y.end()) == std::vector<float>{-1, -2, -5, -6});
  pool.backward(x.data(), y.data(), dy.data(), dx.data(), 1);
  CHECK(std::vector<float>(dx.begin(), dx.end()) == std::vector<float>{1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
}

TEST_CASE("DepthwiseConv2D's results do not depend on the thread count") {
  using L = DepthwiseConv2D<3, 1, pad(1), 2>::Layer<Shape<12, 10, 16>>;
  const int batch = 5;  // 60 output rows: 32 pieces of the gradient sums
  const Buffer x = test::random_values(std::size_t(batch) * L::input_shape::size, 31);
  const Buffer dy = test::random_values(std::size_t(batch) * L::output_shape::size, 32);
  auto run = [&](int threads) {
    set_num_threads(threads);
    Standalone<L> layer;
    Buffer y(dy.size()), dx(x.size());
    layer.forward(x.data(), y.data(), batch, Pass{Mode::train, 0});
    layer.backward(x.data(), y.data(), dy.data(), dx.data(), batch);
    std::vector<float> all(y.begin(), y.end());
    all.insert(all.end(), dx.begin(), dx.end());
    all.insert(all.end(), layer.grad_kernel(), layer.grad_kernel() + L::kernel_size + L::F);  // and the bias's, after it
    return all;
  };
  const int original = num_threads();
  const std::vector<float> one = run(1), two = run(2), three = run(3);
  set_num_threads(original);
  REQUIRE(one.size() == two.size());
  CHECK(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(one.data(), three.data(), one.size() * sizeof(float)) == 0);
}

namespace {
// A depthwise convolution against its definition, computed directly in double: y (then put
// through two epilogues: ReLU6, then a per-channel affine of either sign; the affine, an added
// tensor, then ReLU6), dL/dx, dL/dkernel and dL/dbias, with each kernel's instruction set; and
// the same bits with 1 and 2 threads.
template <class L>
void check_depthwise_directly(int batch) {
  using In = typename L::input_shape;
  constexpr int H = In::height, W = In::width, C = In::channels, M = L::M, F = L::F, K = L::K, S = L::S, OH = L::OH, OW = L::OW;
  const std::size_t in_size = std::size_t(batch) * In::size, out_size = std::size_t(batch) * L::output_shape::size;
  const Buffer x = test::random_values(in_size, 51), dy = test::random_values(out_size, 52);
  const Buffer kernel = test::random_values(L::kernel_size, 53), bias = test::random_values(F, 54);
  const Buffer scale = test::random_values(F, 55), shift = test::random_values(F, 56), added = test::random_values(out_size, 57);
  std::vector<double> y(out_size), finished(out_size), residual(out_size), dkernel(kernel.size()), dbias(F), dx(in_size);
  for (int n = 0; n < batch; ++n)
    for (int oy = 0; oy < OH; ++oy)
      for (int ox = 0; ox < OW; ++ox)
        for (int f = 0; f < F; ++f) {
          const std::size_t o = ((std::size_t(n) * OH + oy) * OW + ox) * F + f;
          const int c = f / M;
          double sum = bias[std::size_t(f)];
          dbias[std::size_t(f)] += dy[o];
          for (int ky = 0; ky < K; ++ky)
            for (int kx = 0; kx < K; ++kx) {
              const int iy = oy * S - L::pad_top + ky, ix = ox * S - L::pad_left + kx;
              if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
              const std::size_t i = ((std::size_t(n) * H + iy) * W + ix) * C + c, w = (std::size_t(ky) * K + kx) * F + f;
              sum += double(x[i]) * kernel[w];
              dkernel[w] += double(x[i]) * dy[o];
              dx[i] += double(kernel[w]) * dy[o];
            }
          y[o] = sum;
          finished[o] = std::min(std::max(sum, 0.0), 6.0) * scale[std::size_t(f)] + shift[std::size_t(f)];
          residual[o] = std::min(std::max(sum * scale[std::size_t(f)] + shift[std::size_t(f)] + added[o], 0.0), 6.0);
        }
  auto worst = [](const float* got, const std::vector<double>& want) {  // a value not written (NaN) is infinitely wrong
    double error = 0, largest = 1e-30;
    for (std::size_t i = 0; i < want.size(); ++i)
      error = std::max(error, std::isfinite(got[i]) ? std::abs(got[i] - want[i]) : HUGE_VAL),
      largest = std::max(largest, std::abs(want[i]));
    return error / largest;
  };
  test::with_each_gemm_kernel([&](GemmKernel) {
    INFO(L::describe(), " on ", In::str(), ", batch ", batch);
    auto run = [&](int threads) {
      set_num_threads(threads);
      Standalone<L> layer;
      std::copy(kernel.begin(), kernel.end(), layer.kernel());
      std::copy(bias.begin(), bias.end(), layer.bias());
      Buffer got_y(out_size, std::nanf("")), got_dx(in_size, std::nanf("")), got_finished(out_size, std::nanf("")),
          got_residual(out_size, std::nanf(""));
      layer.forward(x.data(), got_y.data(), batch, Pass{Mode::train, 0});
      layer.backward(x.data(), got_y.data(), dy.data(), got_dx.data(), batch);
      Epilogue epilogue;
      epilogue.relu = true, epilogue.relu_max = 6.0f, epilogue.scale = scale.data(), epilogue.shift = shift.data();
      layer.forward(x.data(), got_finished.data(), batch, Pass{Mode::infer}, epilogue);
      epilogue.affine_first = true, epilogue.added = added.data(), epilogue.added_stride = F;
      layer.forward(x.data(), got_residual.data(), batch, Pass{Mode::infer}, epilogue);
      CHECK(worst(got_y.data(), y) < 1e-5);
      CHECK(worst(got_finished.data(), finished) < 1e-5);
      CHECK(worst(got_residual.data(), residual) < 1e-5);
      CHECK(worst(got_dx.data(), dx) < 1e-5);
      CHECK(worst(layer.grad_kernel(), dkernel) < 1e-5);
      CHECK(worst(layer.grad_bias(), dbias) < 1e-5);
      std::vector<float> all(got_y.begin(), got_y.end());
      all.insert(all.end(), got_finished.begin(), got_finished.end());
      all.insert(all.end(), got_residual.begin(), got_residual.end());
      all.insert(all.end(), got_dx.begin(), got_dx.end());
      all.insert(all.end(), layer.grad_kernel(), layer.grad_kernel() + L::kernel_size + F);
      return all;
    };
    const int original = num_threads();
    const std::vector<float> one = run(1), two = run(2);
    set_num_threads(original);
    CHECK(one == two);
  });
}
}  // namespace

TEST_CASE("DepthwiseConv2D equals the direct convolution: strides 1 to 3, paddings, channels past a vector block, batch 1") {
  check_depthwise_directly<DepthwiseConv2D<3, 1, pad(1)>::Layer<Shape<9, 7, 19>>>(2);        // 16 channels and 3 more
  check_depthwise_directly<DepthwiseConv2D<3, 2, pad(1)>::Layer<Shape<9, 8, 32>>>(3);        // MobileNetV2's downsampling
  check_depthwise_directly<DepthwiseConv2D<3, 2, Padding::same>::Layer<Shape<8, 9, 5>>>(1);  // padding only after
  check_depthwise_directly<DepthwiseConv2D<5, 1, Padding::valid>::Layer<Shape<7, 6, 48>>>(2);
  check_depthwise_directly<DepthwiseConv2D<3, 1, pad(1)>::Layer<Shape<2, 3, 17>>>(1);    // windows past both edges
  check_depthwise_directly<DepthwiseConv2D<3, 2, pad(1), 2>::Layer<Shape<7, 6, 3>>>(2);  // a multiplier of 2
  // Stride 3: an input pixel gets two taps a row or one; stride past the kernel: some get none.
  check_depthwise_directly<DepthwiseConv2D<5, 3, pad(2)>::Layer<Shape<11, 10, 20>>>(2);
  check_depthwise_directly<DepthwiseConv2D<2, 3, Padding::valid>::Layer<Shape<8, 8, 17>>>(1);
  // Rows wide enough for four pixels at a time, twice, and one more, at strides 2 and 1.
  check_depthwise_directly<DepthwiseConv2D<3, 2, pad(1)>::Layer<Shape<10, 21, 24>>>(2);
  check_depthwise_directly<DepthwiseConv2D<5, 1, pad(2)>::Layer<Shape<6, 13, 8>>>(1);
}

TEST_CASE("DepthwiseConv2D's epilogue forward equals forward, then ReLU, then the batch normalisation") {
  using L = DepthwiseConv2D<3, 2, pad(1), 2>::Layer<Odd3>;
  using Norm = BatchNorm::Layer<L::output_shape>;
  static_assert(takes_epilogue<L>);
  const int batch = 3;
  Standalone<L> layer;
  Standalone<Norm> norm;
  const Buffer gamma = test::random_values(L::F, 41), beta = test::random_values(L::F, 42);
  std::copy(gamma.begin(), gamma.end(), norm.gamma());
  std::copy(beta.begin(), beta.end(), norm.beta());
  Buffer scale(L::F), shift(L::F);
  norm.inference_affine(scale.data(), shift.data());
  const Buffer x = test::random_values(std::size_t(batch) * L::input_shape::size, 43);
  const std::size_t out = std::size_t(batch) * L::output_shape::size;
  Buffer plain(out), normalised(out), folded(out, std::nanf(""));
  layer.forward(x.data(), plain.data(), batch, Pass{Mode::infer});
  for (float& v : plain) v = std::max(v, 0.0f);
  norm.forward(plain.data(), normalised.data(), batch, Pass{Mode::infer});
  Epilogue epilogue;
  epilogue.relu = true, epilogue.scale = scale.data(), epilogue.shift = shift.data();
  layer.forward(x.data(), folded.data(), batch, Pass{Mode::infer}, epilogue);
  double worst = 0, largest = 0;
  for (std::size_t i = 0; i < out; ++i)
    worst = std::max(worst, double(std::abs(folded[i] - normalised[i]))), largest = std::max(largest, double(std::abs(normalised[i])));
  CHECK(largest > 0.5);
  CHECK(worst <= 1e-6 * largest);
}

TEST_CASE("a network with DepthwiseConv2D -> BatchNorm -> ReLU and the padded layers trains") {
  using Net =
      Sequential<Input<8, 8, 2>, Conv2D<8, 3, 2, pad(1)>, BatchNorm, ReLU, DepthwiseConv2D<3, 1, pad(1)>, BatchNorm, ReLU,
                 MaxPool2D<3, 2, pad(1)>, DepthwiseConv2D<3, 1, Padding::same, 2>, ReLU, AveragePooling2D<2>, Flatten, Dense<2>, Sigmoid>;
  Net net(1);
  Adam adam(Adam::Options{.lr = 0.01});
  const int batch = 16;
  Buffer x(std::size_t(batch) * Net::input_size), y(std::size_t(batch) * 2);
  const Rng rng(3);
  for (int n = 0; n < batch; ++n) {
    const bool bright = n % 2, left = (n / 2) % 2;
    for (std::size_t i = 0; i < Net::input_size; ++i)
      x[std::size_t(n) * Net::input_size + i] = (bright ? 0.5f : -0.5f) + 0.3f * rng.symmetric(std::uint64_t(n) * 1000 + i, 1.0f);
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 3; ++c) x[std::size_t(n) * Net::input_size + std::size_t(r * 8 + (left ? c : 5 + c)) * 2] += 1.5f;
    y[std::size_t(n) * 2] = float(bright), y[std::size_t(n) * 2 + 1] = float(left);
  }
  const double first = net.train_step(x, y, batch, adam);
  double last = first;
  for (int step = 0; step < 150; ++step) last = net.train_step(x, y, batch, adam);
  INFO("loss ", first, " -> ", last);
  CHECK(last < first * 0.2);
  // inference, the batch normalisations folded into the convolutions before them
  const auto predicted = net.predict(x, batch);
  const std::vector<float> folded(predicted.begin(), predicted.end());
  CHECK(net.evaluate(x, y, batch) < first * 0.2);
  CHECK(net.signature().find("DepthwiseConv2D(3x3, stride 1, pad 1, multiplier 1) -> (None, 4, 4, 8)") != std::string::npos);
  CHECK(net.signature().find("MaxPool2D(3x3, stride 2, pad 1) -> (None, 2, 2, 8)") != std::string::npos);
  CHECK(binary_accuracy(folded.data(), y.data(), batch, 2) == 1.0);
}

namespace {
// Every layer of this file in one network, for ONNX: PyTorch's paddings, Keras's, depthwise with
// multiplier 1 and 2, both average poolings.
using Mobile =
    Sequential<Input<17, 16, 3>, Conv2D<8, 7, 2, pad(3)>, BatchNorm, ReLU, MaxPool2D<3, 2, pad(1)>, DepthwiseConv2D<3, 1, pad(1)>,
               BatchNorm, ReLU, Conv2D<8, 3, 2, pad(1)>, DepthwiseConv2D<3, 2, Padding::same, 2>, BatchNorm, ReLU,
               AveragePooling2D<3, 2, pad(1)>, AveragePooling2D<2, 1, Padding::same>, Flatten, Dense<4>, Softmax>;
// PyTorch's network in tests/fixtures/mobile_torch.onnx (make_depthwise_fixtures.py's mobile()).
using FromTorch = Sequential<Input<16, 16, 3>, Conv2D<8, 3, 2, pad(1)>, BatchNorm, ReLU, DepthwiseConv2D<3, 1, pad(1), 2>, BatchNorm, ReLU,
                             MaxPool2D<3, 2, pad(1)>, AveragePooling2D<3, 2, pad(1)>, Flatten, Dense<5>, Softmax>;

template <class N>
std::vector<float> all_values(N& net) {
  std::vector<float> all(net.parameters().values.begin(), net.parameters().values.end());
  net.visit_state([&](const std::string& name, auto span) {
    if constexpr (std::is_same_v<typename decltype(span)::value_type, float>)
      if (name.find("moving_") != std::string::npos) all.insert(all.end(), span.begin(), span.end());
  });
  return all;
}

std::string refusal(const std::function<void()>& load) {
  try {
    load();
  } catch (const ModelFileError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("ONNX: padded convolutions and pools, depthwise convolutions and average pools export and import bit for bit") {
  test::TempDir dir("depthwise_onnx");
  Mobile net(1);
  const int batch = 3;
  const Buffer x = test::random_values(std::size_t(batch) * Mobile::input_size, 1);
  Buffer targets(std::size_t(batch) * 4, 0.0f);
  for (int n = 0; n < batch; ++n) targets[std::size_t(n) * 4 + std::size_t(n)] = 1.0f;
  Adam adam;
  for (int step = 0; step < 4; ++step) net.train_step(x, targets, batch, adam);  // statistics away from 0 and 1
  const auto predicted = net.predict(x, batch);
  const std::vector<float> expected(predicted.begin(), predicted.end());
  for (const OnnxLayout layout : {OnnxLayout::nhwc, OnnxLayout::nchw}) {
    CAPTURE(int(layout));
    save_onnx(dir / "mobile.onnx", net, {"a", "b", "c", "d"}, layout);
    Mobile copy(7);
    CHECK(all_values(copy) != all_values(net));
    load_onnx(dir / "mobile.onnx", copy);
    CHECK(all_values(copy) == all_values(net));
    const auto got = copy.predict(x, batch);
    CHECK(std::vector<float>(got.begin(), got.end()) == expected);
  }
  // The file's padding must be the layer's: pad(1) is not Keras's same at stride 2 on an even side.
  using Same = Sequential<Input<16, 16, 3>, Conv2D<8, 3, 2>, BatchNorm, ReLU, DepthwiseConv2D<3, 1, pad(1), 2>, BatchNorm, ReLU,
                          MaxPool2D<3, 2, pad(1)>, AveragePooling2D<3, 2, pad(1)>, Flatten, Dense<5>, Softmax>;
  const std::string torch_file = std::string(TNET_FIXTURE_DIR) + "/mobile_torch.onnx";
  Same same(1);
  const std::string why = refusal([&] { load_onnx(torch_file, same); });
  CHECK_MESSAGE(
      why.find("its padding (top, left, bottom, right) is [1, 1, 1, 1], the layer's [0, 0, 1, 1] (Keras's \"same\")") != std::string::npos,
      why);
  // Keras's same average pool does not count the zeros PyTorch's counts.
  using Uncounted = Sequential<Input<16, 16, 3>, Conv2D<8, 3, 2, pad(1)>, BatchNorm, ReLU, DepthwiseConv2D<3, 1, pad(1), 2>, BatchNorm,
                               ReLU, MaxPool2D<3, 2, pad(1)>, AveragePooling2D<3, 2, Padding::same>, Flatten, Dense<5>, Softmax>;
  Uncounted uncounted(1);
  const std::string uncounted_why = refusal([&] { load_onnx(torch_file, uncounted); });
  CHECK_MESSAGE(uncounted_why.find("does not fit layer 7.averagepooling2d") != std::string::npos, uncounted_why);
  // A depthwise convolution is not a full one.
  using Full = Sequential<Input<16, 16, 3>, Conv2D<8, 3, 2, pad(1)>, BatchNorm, ReLU, Conv2D<16, 3, 1, pad(1)>, BatchNorm, ReLU,
                          MaxPool2D<3, 2, pad(1)>, AveragePooling2D<3, 2, pad(1)>, Flatten, Dense<5>, Softmax>;
  Full full(1);
  CHECK(refusal([&] { load_onnx(torch_file, full); }).find("group is 8, not 1") != std::string::npos);
}

TEST_CASE("ONNX: PyTorch's Conv 3x3 s2 p1, BatchNorm, ReLU, depthwise Conv, MaxPool p1, AvgPool p1 import and give its outputs") {
  // mobile_torch.onnx: torch.onnx.export of make_depthwise_fixtures.py's mobile(), NCHW input; its
  // average pool is a Pad and an AveragePool, as PyTorch 1.13 writes count_include_pad. In
  // mobile_torch_attribute.onnx it is one AveragePool with pads and count_include_pad 1 (PyTorch 2).
  for (const char* file : {"mobile_torch.onnx", "mobile_torch_attribute.onnx"}) {
    CAPTURE(file);
    FromTorch net(1);
    const OnnxInfo info = load_onnx(std::string(TNET_FIXTURE_DIR) + "/" + file, net);
    CHECK(info.layout == OnnxLayout::nchw);
    const Buffer x = fixtures().floats("mobile.x");
    const int batch = 2;
    REQUIRE(x.size() == std::size_t(batch) * FromTorch::input_size);
    const auto y = net.predict(x, batch);
    const std::vector<double>& expected = fixtures()["mobile.y"];
    REQUIRE(y.size() == expected.size());
    double worst = 0;
    for (std::size_t i = 0; i < y.size(); ++i) worst = std::max(worst, std::abs(double(y[i]) - expected[i]));
    INFO("largest difference ", worst);
    CHECK(worst < 1e-5);
  }
}

TEST_CASE("a network of the new layers: its gradients agree with central differences of its loss") {
  // (A ReLU before each batch normalisation, which would otherwise cancel the biases' gradients.)
  // A batch normalisation then a max pool with Keras's same padding (windows apart: training
  // runs them as one, the pool reading through the normalisation), a ReLU after a depthwise
  // convolution (applied as it writes its output), both kinds of padding and pooling.
  using Net =
      Sequential<Input<7, 6, 3>, Conv2D<4, 3, 2, pad(1)>, ReLU, BatchNorm, MaxPool2D<2, 2, Padding::same>, DepthwiseConv2D<3, 1, pad(1), 2>,
                 ReLU, BatchNorm, AveragePooling2D<2, 1, Padding::same>, AveragePooling2D<3, 1, pad(1)>, Flatten, Dense<3>, Sigmoid>;
  static_assert(pools_through<Net::layer_type<2>, Net::layer_type<3>> && !Net::layer_type<3>::tiles);
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
  CHECK(test::compare_with_differences(x.data(), grad_input.data(), x.size(), loss, 1e-3) <= 2e-2);
  for (const ParamRef& p : net.parameters()) {
    INFO(p.name);
    const Buffer analytic(p.grad, p.grad + p.size);
    CHECK(test::compare_with_differences(p.value, analytic.data(), p.size, loss, 1e-3, 40) <= 2e-2);
  }
}
