// Every layer against PyTorch (tests/fixtures/layers.txt) and against finite differences.
#include "support.hpp"

#include <bit>
#include <cstdint>
#include <limits>

using namespace tnet;
using test::Fixture;

namespace {

const Fixture& layers() {
  static const Fixture fixture("layers.txt");
  return fixture;
}

constexpr double fixture_tolerance = 1e-4;

// Loads the fixture's x, runs forward (training) and backward with its dy, returns y and dx.
template <class Layer>
std::pair<Buffer, Buffer> run(Layer& layer, const std::string& prefix, int batch, const std::string& x_name = "x") {
  const Buffer x = layers().floats(prefix + "." + x_name), dy = layers().floats(prefix + ".dy");
  Buffer y(std::size_t(batch) * Layer::output_shape::size), dx(std::size_t(batch) * Layer::input_shape::size);
  REQUIRE(x.size() == dx.size());
  REQUIRE(dy.size() == y.size());
  layer.forward(x.data(), y.data(), batch, Pass{Mode::train, 0});
  layer.backward(x.data(), y.data(), dy.data(), dx.data(), batch);
  return {y, dx};
}

template <class Layer>
void check_conv_like(Layer& layer, const std::string& prefix) {
  const Buffer kernel = layers().floats(prefix + ".kernel"), bias = layers().floats(prefix + ".bias");
  std::copy(kernel.begin(), kernel.end(), layer.kernel());
  std::copy(bias.begin(), bias.end(), layer.bias());
  auto [y, dx] = run(layer, prefix, 3);
  CHECK_CLOSE_TO_FIXTURE(y.data(), layers()[prefix + ".y"], fixture_tolerance);
  CHECK_CLOSE_TO_FIXTURE(dx.data(), layers()[prefix + ".dx"], fixture_tolerance);
  CHECK_CLOSE_TO_FIXTURE(layer.grad_kernel(), layers()[prefix + ".dkernel"], fixture_tolerance);
  CHECK_CLOSE_TO_FIXTURE(layer.grad_bias(), layers()[prefix + ".dbias"], fixture_tolerance);
}

using OddImage = Shape<7, 5, 5>;  // odd sizes: batch 3, 7x5 pixels, 5 channels

}  // namespace

TEST_CASE("Conv2D matches PyTorch: same padding, asymmetric same padding, valid with stride") {
  SUBCASE("3x3 stride 1 same") {
    Standalone<Conv2D<4, 3>::Layer<OddImage>> conv;
    check_conv_like(conv, "conv_same");
  }
  SUBCASE("2x2 stride 2 same (the extra padding row and column go after)") {
    Standalone<Conv2D<4, 2, 2>::Layer<OddImage>> conv;
    static_assert(std::is_same_v<decltype(conv)::output_shape, Shape<4, 3, 4>>);
    check_conv_like(conv, "conv_same_k2s2");
  }
  SUBCASE("3x3 stride 2 valid") {
    Standalone<Conv2D<4, 3, 2, Padding::valid>::Layer<OddImage>> conv;
    static_assert(std::is_same_v<decltype(conv)::output_shape, Shape<3, 2, 4>>);
    check_conv_like(conv, "conv_valid_k3s2");
  }
}

namespace {
// A convolution against its definition, computed directly in double: y, dL/dkernel, dL/dbias
// and dL/dx (with dy given), for every gemm kernel this CPU runs (Eigen's materialises the columns; tnet's
// gather them from the image, and at stride 1 compute dL/dx as a convolution of dy, or run
// Winograd's F(4x4, 3x3) and its adjoint), then y in inference.
template <class Spec, class In>
void check_conv_directly(int batch) {
  using L = typename Spec::template Layer<In>;
  constexpr int H = In::height, W = In::width, C = In::channels, F = L::F, K = L::K, S = L::S, OH = L::OH, OW = L::OW;
  const std::size_t in_size = std::size_t(batch) * In::size, out_size = std::size_t(batch) * L::output_shape::size;
  const Buffer x = test::random_values(in_size, 21), dy = test::random_values(out_size, 22);
  const Buffer kernel = test::random_values(std::size_t(K) * K * C * F, 23), bias = test::random_values(std::size_t(F), 24);
  std::vector<double> y(out_size), dkernel(kernel.size()), dbias(bias.size()), dx(in_size);
  // y of x and the kernel rounded to bfloat16 (Precision::bf16's products), and the sum of its
  // terms' magnitudes, which bounds float's rounding of the sums.
  std::vector<double> y_bf16(out_size), magnitude(out_size);
  auto rounded = [](float v) { return double(from_bfloat16(to_bfloat16(v))); };
  for (std::size_t o = 0; o < out_size; ++o) dbias[o % F] += dy[o];
  for (int n = 0; n < batch; ++n)
    for (int oy = 0; oy < OH; ++oy)
      for (int ox = 0; ox < OW; ++ox)
        for (int f = 0; f < F; ++f) {
          const std::size_t o = ((std::size_t(n) * OH + oy) * OW + ox) * F + f;
          double sum = bias[std::size_t(f)], sum_bf16 = sum, size = std::abs(sum);
          for (int ky = 0; ky < K; ++ky)
            for (int kx = 0; kx < K; ++kx) {
              const int iy = oy * S - L::pad_top + ky, ix = ox * S - L::pad_left + kx;
              if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
              for (int c = 0; c < C; ++c) {
                const std::size_t i = ((std::size_t(n) * H + iy) * W + ix) * C + c, w = ((std::size_t(ky) * K + kx) * C + c) * F + f;
                sum += double(x[i]) * kernel[w];
                const double term = rounded(x[i]) * rounded(kernel[w]);
                sum_bf16 += term, size += std::abs(term);
                dkernel[w] += double(x[i]) * dy[o];
                dx[i] += double(kernel[w]) * dy[o];
              }
            }
          y[o] = sum, y_bf16[o] = sum_bf16, magnitude[o] = size;
        }
  auto worst = [](const float* got, const std::vector<double>& want) {
    double error = 0, scale = 1e-30;
    for (std::size_t i = 0; i < want.size(); ++i)
      error = std::max(error, std::abs(got[i] - want[i])), scale = std::max(scale, std::abs(want[i]));
    return error / scale;  // relative to the largest value
  };
  test::with_each_gemm_kernel([&](GemmKernel kernel_kind) {
    INFO(L::describe(), " on ", In::str(), ", batch ", batch);
    Standalone<L> conv;
    std::copy(kernel.begin(), kernel.end(), conv.kernel());
    std::copy(bias.begin(), bias.end(), conv.bias());
    Buffer got_y(out_size, std::nanf("")), got_dx(in_size, std::nanf(""));
    // Winograd's F(4x4, 3x3) where it applies, whose transforms add rounding (measured: 3e-6 to
    // 6e-6 of the largest value, where the direct product's is 1e-7 to 9e-7).
    const bool winograd = kernel_kind != GemmKernel::eigen && L::uses_winograd(batch);
    const bool winograd_shape = C % 16 == 0 && F % 16 == 0 && K == 3 && S == 1;
    if (kernel_kind != GemmKernel::eigen) CHECK(winograd == (winograd_shape && batch * ((OH + 3) / 4) * ((OW + 3) / 4) >= 128));
    const double tolerance = winograd ? 3e-5 : 1e-5;
    // Inference takes Winograd's with fewer tiles: 16 at least (tiles of 4 x 4 output pixels).
    const bool winograd_inference = kernel_kind != GemmKernel::eigen && L::uses_winograd(batch, Mode::infer);
    if (kernel_kind != GemmKernel::eigen) CHECK(winograd_inference == (winograd_shape && batch * ((OH + 3) / 4) * ((OW + 3) / 4) >= 16));
    const double inference_tolerance = winograd_inference ? 3e-5 : 1e-5;
    conv.forward(x.data(), got_y.data(), batch, Pass{Mode::train, 0});
    conv.backward(x.data(), got_y.data(), dy.data(), got_dx.data(), batch);
    CHECK(worst(got_y.data(), y) < tolerance);
    CHECK(worst(conv.grad_kernel(), dkernel) < tolerance);
    CHECK(worst(conv.grad_bias(), dbias) < 1e-5);
    CHECK(worst(got_dx.data(), dx) < tolerance);
    Buffer inferred(out_size, std::nanf(""));
    conv.forward(x.data(), inferred.data(), batch, Pass{Mode::infer});
    CHECK(worst(inferred.data(), y) < inference_tolerance);
    // The kernel packed once for inference (read when the pass says it is current): the same
    // bits as packing it in each product. A pass that does not say so packs the kernel it has.
    conv.prepare_inference(true);
    Buffer prepared(out_size, std::nanf(""));
    conv.forward(x.data(), prepared.data(), batch, Pass{.mode = Mode::infer, .prepared = true});
    CHECK(prepared == inferred);
    std::transform(conv.kernel(), conv.kernel() + kernel.size(), conv.kernel(), [](float v) { return -v; });
    conv.forward(x.data(), prepared.data(), batch, Pass{Mode::infer});
    CHECK(worst(prepared.data(), y) > 0.01);  // the new kernel's
    conv.prepare_inference(false);
    // Inference in bfloat16 where the CPU has AVX512_BF16: products Winograd's do not take are of
    // x and the kernel rounded, their sums in float; elsewhere (and in Winograd's) as in float.
    std::copy(kernel.begin(), kernel.end(), conv.kernel());
    conv.round_kernel(true);
    Buffer low(out_size, std::nanf(""));
    conv.forward(x.data(), low.data(), batch, Pass{Mode::infer});
    if (bf16_products() && !winograd_inference) {
      double error = 0;  // in units of float's rounding of a sum of the terms' magnitudes
      for (std::size_t o = 0; o < out_size; ++o) error = std::max(error, std::abs(low[o] - y_bf16[o]) / (magnitude[o] * 0x1p-24));
      INFO("bfloat16: worst error ", error, " roundings of the terms' magnitudes");
      CHECK(error < 2.0 * (K * K * C + 1));
      CHECK(worst(low.data(), y) > 1e-5);  // the rounding shows
      CHECK(worst(low.data(), y) < 1e-2);
    } else CHECK(low == inferred);
    conv.round_kernel(false);
    conv.forward(x.data(), low.data(), batch, Pass{Mode::infer});
    CHECK(low == inferred);
  });
}
}  // namespace

TEST_CASE("Conv2D equals the direct convolution with every gemm kernel: paddings, strides, odd sizes, batch 1") {
  check_conv_directly<Conv2D<7, 3>, Shape<9, 11, 5>>(3);                    // channels not a multiple of a panel
  check_conv_directly<Conv2D<40, 3>, Shape<6, 7, 16>>(1);                   // panels of 8 channels of one cell; batch 1
  check_conv_directly<Conv2D<3, 2>, Shape<5, 6, 3>>(2);                     // even kernel: padding only after
  check_conv_directly<Conv2D<5, 4>, Shape<7, 6, 8>>(2);                     // padding 1 before, 2 after
  check_conv_directly<Conv2D<6, 3, 1, Padding::valid>, Shape<8, 5, 4>>(3);  // no padding
  check_conv_directly<Conv2D<6, 3, 2>, Shape<9, 8, 9>>(2);                  // stride 2: the input gradient through col2im
  check_conv_directly<Conv2D<6, 7, 2, pad(3)>, Shape<11, 10, 3>>(2);        // PyTorch's padding: ResNet's stem
  check_conv_directly<Conv2D<9, 3, 2, pad(1)>, Shape<9, 8, 16>>(2);         // a MobileNetV2 downsampling
  check_conv_directly<Conv2D<16, 3, 1, pad(2)>, Shape<30, 30, 16>>(2);      // Winograd, the output larger than the input
  check_conv_directly<Conv2D<40, 3>, Shape<48, 48, 16>>(2);                 // 4,608 rows: tiles, the weight gradient in chunks
  // Winograd's F(4x4, 3x3): tiles cut by the edges, several blocks and kernel-gradient chunks;
  // valid (the output smaller than the input, the input gradient's windows reaching 2 before);
  // SmallerVGGNet's size; kernel-gradient sums over 1 MB (taken 64 tiles at a time); more input
  // channels than one depth step of the packed kernel (256), and filters not filling a panel.
  check_conv_directly<Conv2D<32, 3>, Shape<13, 11, 16>>(12);
  check_conv_directly<Conv2D<16, 3, 1, Padding::valid>, Shape<10, 13, 48>>(22);
  check_conv_directly<Conv2D<64, 3>, Shape<32, 32, 64>>(2);
  check_conv_directly<Conv2D<96, 3>, Shape<15, 14, 80>>(9);
  check_conv_directly<Conv2D<48, 3>, Shape<8, 7, 272>>(32);
  // The kernel gradient over the whole batch at once: few tiles (two an image, cut by the edges)
  // against large sums.
  check_conv_directly<Conv2D<80, 3>, Shape<3, 5, 64>>(64);
  // A batch-1 inference: Winograd's with 16 tiles (SmallerVGGNet's fourth convolution), and at
  // batch 4 with 4 tiles an image; the direct product with 4 tiles (ResNet18's third stage at
  // 96x96) and with 1.
  check_conv_directly<Conv2D<128, 3>, Shape<16, 16, 64>>(1);
  check_conv_directly<Conv2D<32, 3>, Shape<7, 8, 32>>(4);
  check_conv_directly<Conv2D<32, 3>, Shape<7, 8, 32>>(1);
  check_conv_directly<Conv2D<16, 3>, Shape<4, 3, 16>>(1);
  // 1x1 at stride 1, the pixels read where they lie: filters not a multiple of 8; more channels
  // than a depth step; fewer rows than filters (the product cut into columns, 80 wide: not a
  // whole AVX-512 panel). Strided 1x1 (ResNet's projection) gathers. A deep product of few rows
  // (K cut into chunks) with its kernel packed for inference.
  check_conv_directly<Conv2D<20, 1, 1, Padding::valid>, Shape<7, 5, 13>>(2);
  check_conv_directly<Conv2D<24, 1, 1, Padding::valid>, Shape<5, 6, 300>>(1);
  check_conv_directly<Conv2D<144, 1, 1, Padding::valid>, Shape<3, 3, 40>>(1);
  check_conv_directly<Conv2D<6, 1, 2, Padding::valid>, Shape<7, 6, 10>>(2);
  check_conv_directly<Conv2D<40, 3, 1, pad(1)>, Shape<2, 2, 512>>(1);
}

namespace {
// A Winograd convolution's gradients (kernel, bias, input) at 1, 2 and 3 threads: the same bits.
template <class L>
void check_winograd_gradients_threads(int batch) {
  const std::size_t in_size = std::size_t(batch) * L::input_shape::size, out_size = std::size_t(batch) * L::output_shape::size;
  const Buffer x = test::random_values(in_size, 41), dy = test::random_values(out_size, 42);
  test::with_each_gemm_kernel([&](GemmKernel kernel_kind) {
    if (kernel_kind == GemmKernel::eigen) return;
    REQUIRE(L::uses_winograd(batch));
    const int threads_before = num_threads();
    auto gradients = [&](int threads) {
      set_num_threads(threads);
      Standalone<L> conv;
      Buffer y(out_size), dx(in_size);
      conv.forward(x.data(), y.data(), batch, Pass{Mode::train, 0});
      conv.backward(x.data(), y.data(), dy.data(), dx.data(), batch);
      std::vector<float> all(conv.grad_kernel(), conv.grad_kernel() + std::size_t(9) * L::input_shape::channels * L::F);
      all.insert(all.end(), conv.grad_bias(), conv.grad_bias() + L::F);
      all.insert(all.end(), dx.begin(), dx.end());
      return all;
    };
    const auto one = gradients(1);
    CHECK(gradients(2) == one);
    CHECK(gradients(3) == one);
    set_num_threads(threads_before);
  });
}
}  // namespace

TEST_CASE("Winograd's kernel gradient, in chunks or over the whole batch: the same bits for any thread count") {
  using detail::winograd_gradient_plan;
  // Many tiles against small sums: chunks (SmallerVGGNet's 32x32x64 convolution at batch 32 takes 8).
  CHECK(!winograd_gradient_plan(32 * 64, 64, 64, 36).whole);
  CHECK(winograd_gradient_plan(32 * 64, 64, 64, 36).chunks == 8);
  CHECK(!winograd_gradient_plan(12 * 12, 16, 32, 36).whole);
  check_winograd_gradients_threads<Conv2D<32, 3>::Layer<Shape<13, 11, 16>>>(12);
  // Few tiles against large sums: the whole batch (ResNet18's 12x12 and 6x6 stages at batch 32,
  // and SmallerVGGNet's 16x16x128 convolution, whose V and W take as many floats as 8 chunks' sums).
  CHECK(winograd_gradient_plan(32 * 9, 128, 128, 36).whole);
  CHECK(winograd_gradient_plan(32 * 16, 128, 128, 36).whole);
  CHECK(winograd_gradient_plan(32 * 4, 256, 256, 36).whole);
  CHECK(winograd_gradient_plan(64 * 2, 64, 80, 36).whole);
  check_winograd_gradients_threads<Conv2D<80, 3>::Layer<Shape<3, 5, 64>>>(64);
}

TEST_CASE("Conv2D::forward_pooled: the forward, its epilogue and the max pool after it, bit for bit, a strip at a time") {
  // 3x3 windows tiling a 12x9 output, 20 filters (not a whole panel); an epilogue with a ReLU and
  // a scale of either sign, as a folded batch normalisation makes it.
  using Conv = Conv2D<20, 3>::Layer<Shape<12, 9, 3>>;
  using Pool = MaxPool2D<3>::Layer<Conv::output_shape>;
  static_assert(pools_in_forward<Conv, Pool>);
  static_assert(!pools_in_forward<Conv, MaxPool2D<2>::Layer<Conv::output_shape>>);  // 9 columns: the windows do not tile them
  const Buffer x = test::random_values(5 * Conv::input_shape::size, 31), scale = test::random_values(20, 32),
               shift = test::random_values(20, 33);
  Standalone<Conv> conv;
  const Buffer kernel = test::random_values(std::size_t(Conv::patch) * 20, 34), bias = test::random_values(20, 35);
  std::copy(kernel.begin(), kernel.end(), conv.kernel());
  std::copy(bias.begin(), bias.end(), conv.bias());
  Epilogue epilogue;
  epilogue.relu = true, epilogue.scale = scale.data(), epilogue.shift = shift.data();
  test::with_each_gemm_kernel([&](GemmKernel kind) {
    for (const bool bf16 : {false, true})  // products in bfloat16 where the CPU has them
      for (const int batch : {1, 5}) {
        INFO("batch ", batch, " bf16 ", bf16);
        conv.round_kernel(bf16);
        Buffer full(std::size_t(batch) * Conv::output_shape::size), expected(std::size_t(batch) * Pool::output_shape::size);
        conv.forward(x.data(), full.data(), batch, Pass{Mode::infer}, epilogue);
        Standalone<Pool> pool;
        pool.forward(full.data(), expected.data(), batch, Pass{Mode::infer});
        Buffer pooled(expected.size(), std::nanf(""));
        const bool fused = conv.forward_pooled<Pool>(x.data(), pooled.data(), batch, epilogue);
        CHECK(fused == (kind != GemmKernel::eigen));  // Eigen's kernels: left to forward and the pool
        if (fused) CHECK(pooled == expected);
      }
    conv.round_kernel(false);
  });
  // Winograd's convolutions are left to forward and the pool.
  using Wide = Conv2D<16, 3>::Layer<Shape<16, 16, 16>>;
  Standalone<Wide> wide;
  const Buffer wide_x = test::random_values(32 * Wide::input_shape::size, 36);
  Buffer out(32 * 8 * 8 * 16);
  CHECK(!wide.forward_pooled<MaxPool2D<2>::Layer<Wide::output_shape>>(wide_x.data(), out.data(), 32, {}));
}

TEST_CASE("Dense matches PyTorch") {
  Standalone<Dense<5>::Layer<Shape<1, 1, 7>>> dense;
  check_conv_like(dense, "dense");
}

TEST_CASE("Dense's inference of 1 to 4 samples (its kernel read in one sweep) equals the training forward's values, every call") {
  // 300 -> 45 units: rows of the kernel ending inside a vector; K in one chunk.
  Standalone<Dense<45>::Layer<Shape<1, 1, 300>>> dense;
  const Buffer bias = test::random_values(45, 8);
  std::copy(bias.begin(), bias.end(), dense.bias());
  const Buffer x = test::random_values(std::size_t(5) * 300, 9);
  test::with_each_gemm_kernel([&](GemmKernel) {
    for (const int batch : {1, 2, 3, 4, 5}) {
      INFO("batch ", batch);
      Buffer trained(std::size_t(batch) * 45), inferred(trained.size());
      dense.forward(x.data(), trained.data(), batch, Pass{Mode::train, 0});
      double worst = 0;
      for (int call = 0; call < 3; ++call) {  // the sweeps alternate their direction: the same bits
        Buffer again(trained.size());
        dense.forward(x.data(), again.data(), batch, Pass{Mode::infer, 0});
        if (call == 0) inferred = again;
        CHECK(again == inferred);
      }
      for (std::size_t i = 0; i < trained.size(); ++i) worst = std::max(worst, std::abs(double(inferred[i]) - trained[i]));
      CHECK(worst <= 1e-6 * std::sqrt(300.0) * 4);  // the order of additions only
    }
  });
}

TEST_CASE("Dense's inference with its kernel rounded to bfloat16: the product of the rounded kernel, or of both operands rounded") {
  // 300 -> 45 units; 1 to 4 samples read the kernel in one sweep, more go through the products;
  // with AVX512_BF16 those compute in bfloat16, the input rounded too.
  Standalone<Dense<45>::Layer<Shape<1, 1, 300>>> dense;
  const Buffer kernel = test::random_values(std::size_t(300) * 45, 10), bias = test::random_values(45, 8);
  std::copy(kernel.begin(), kernel.end(), dense.kernel());
  std::copy(bias.begin(), bias.end(), dense.bias());
  const Buffer x = test::random_values(std::size_t(37) * 300, 9);
  auto rounded = [](float v) { return double(from_bfloat16(to_bfloat16(v))); };
  test::with_each_gemm_kernel([&](GemmKernel kind) {
    dense.round_kernel(true);
    for (const int batch : {3, 9, 37}) {
      // Eigen's kernels read the float kernel.
      const bool round_kernel = kind != GemmKernel::eigen,
                 both = kind == GemmKernel::avx512 && bf16_products() && batch > detail::sweep_rows;
      INFO("batch ", batch, " input rounded too ", both);
      Buffer y(std::size_t(batch) * 45);
      dense.forward(x.data(), y.data(), batch, Pass{Mode::infer, 0});
      double worst = 0;  // in units of float's rounding of the sum of the terms' magnitudes
      for (int n = 0; n < batch; ++n)
        for (int u = 0; u < 45; ++u) {
          double sum = bias[std::size_t(u)], size = std::abs(sum);
          for (int k = 0; k < 300; ++k) {
            const double in = x[std::size_t(n * 300 + k)], weight = kernel[std::size_t(k * 45 + u)],
                         term = (both ? rounded(float(in)) : in) * (round_kernel ? rounded(float(weight)) : weight);
            sum += term, size += std::abs(term);
          }
          worst = std::max(worst, std::abs(y[std::size_t(n * 45 + u)] - sum) / (size * 0x1p-24));
        }
      CHECK(worst < 2.0 * 301);
    }
    dense.round_kernel(false);
  });
}

TEST_CASE("BatchNorm matches Keras semantics: batch statistics, moving statistics, inference") {
  auto check = [](auto& bn, const std::string& prefix) {
    const Buffer gamma = layers().floats(prefix + ".gamma"), beta = layers().floats(prefix + ".beta");
    std::copy(gamma.begin(), gamma.end(), bn.gamma());
    std::copy(beta.begin(), beta.end(), bn.beta());
    const Buffer x1 = layers().floats(prefix + ".x1");
    Buffer scratch(x1.size());
    bn.forward(x1.data(), scratch.data(), 3, Pass{Mode::train, 0});  // first batch: moving statistics only
    auto [y2, dx] = run(bn, prefix, 3, "x2");
    CHECK_CLOSE_TO_FIXTURE(y2.data(), layers()[prefix + ".y2"], fixture_tolerance);
    CHECK_CLOSE_TO_FIXTURE(dx.data(), layers()[prefix + ".dx"], fixture_tolerance);
    CHECK_CLOSE_TO_FIXTURE(bn.grad_gamma(), layers()[prefix + ".dgamma"], fixture_tolerance);
    CHECK_CLOSE_TO_FIXTURE(bn.grad_beta(), layers()[prefix + ".dbeta"], fixture_tolerance);
    CHECK_CLOSE_TO_FIXTURE(bn.moving_mean(), layers()[prefix + ".moving_mean"], fixture_tolerance);
    CHECK_CLOSE_TO_FIXTURE(bn.moving_variance(), layers()[prefix + ".moving_variance"], fixture_tolerance);
    bn.forward(x1.data(), scratch.data(), 3, Pass{Mode::infer, 0});
    CHECK_CLOSE_TO_FIXTURE(scratch.data(), layers()[prefix + ".infer_y1"], fixture_tolerance);
  };
  SUBCASE("after a convolution: per channel over N*H*W") {
    Standalone<BatchNorm::Layer<OddImage>> bn;
    check(bn, "bn_conv");
  }
  SUBCASE("after a dense layer: per feature over N") {
    Standalone<BatchNorm::Layer<Shape<1, 1, 6>>> bn;
    check(bn, "bn_dense");
  }
}

TEST_CASE("BatchNorm's moving statistics equal the batch's after one batch (zero-debiasing)") {
  Standalone<BatchNorm::Layer<Shape<1, 1, 2>>> bn;
  const Buffer x{1.0f, 10.0f, 3.0f, 20.0f, 5.0f, 30.0f, 7.0f, 40.0f};  // 4 samples x 2 features
  Buffer y(x.size());
  bn.forward(x.data(), y.data(), 4, Pass{Mode::train, 0});
  CHECK(bn.moving_mean()[0] == doctest::Approx(4.0));
  CHECK(bn.moving_mean()[1] == doctest::Approx(25.0));
  // biased variance 5 and 125, times n / (n - (1 + eps)) with n = 4, eps = 1e-3
  CHECK(bn.moving_variance()[0] == doctest::Approx(5.0 * 4.0 / (4.0 - 1.001)));
  CHECK(bn.moving_variance()[1] == doctest::Approx(125.0 * 4.0 / (4.0 - 1.001)));
}

TEST_CASE("BatchNorm's batch variance keeps its digits for values far from zero (one pass, shifted)") {
  // 3000 values a million from zero, spread about 0.6: mean(x^2) - mean(x)^2 from zero would
  // cancel 1e12 of 0.3 and keep two or three digits in double. The sums start from the batch's
  // mean on the first batch, from the moving mean after.
  Standalone<BatchNorm::Layer<Shape<1, 1, 1>>> bn;
  const int batch = 3000;
  for (int step = 0; step < 3; ++step) {
    INFO("batch ", step + 1);
    const Buffer noise = test::random_values(batch, 8 + step);
    Buffer x(batch), y(batch);
    for (int i = 0; i < batch; ++i) x[i] = 1e6f + float(step) + noise[i];
    double mean = 0, variance = 0;
    for (const float v : x) mean += v;
    mean /= batch;
    for (const float v : x) variance += (v - mean) * (v - mean);
    variance /= batch;
    bn.forward(x.data(), y.data(), batch, Pass{Mode::train, std::uint64_t(step)});
    if (step == 0) {  // the moving statistics are the batch's (zero-debiasing), the variance Keras's unbiased one
      CHECK(bn.moving_mean()[0] == doctest::Approx(mean).epsilon(1e-7));
      CHECK(bn.moving_variance()[0] == doctest::Approx(variance * batch / (batch - 1.001)).epsilon(1e-6));
    }
    // The scale the batch is normalised with, measured from what it did: y's spread is x's times it.
    double y_variance = 0, y_mean = 0;
    for (const float v : y) y_mean += v;
    y_mean /= batch;
    for (const float v : y) y_variance += (v - y_mean) * (v - y_mean);
    y_variance /= batch;
    CHECK(y_variance == doctest::Approx(variance / (variance + 1e-3)).epsilon(1e-4));
  }
}

TEST_CASE("BatchNorm's moving statistics can be forgotten and re-estimated") {
  using Net = Sequential<Input<1, 1, 2>, BatchNorm, Sigmoid>;
  Net net(1);
  const Buffer first{1.0f, 10.0f, 3.0f, 20.0f}, second{-5.0f, 0.0f, -7.0f, 2.0f};
  net.forward(first, 2, Mode::train);
  net.forward(second, 2, Mode::train);
  const float* mean = net.layer<0>().moving_mean();
  CHECK(mean[0] != doctest::Approx(-6.0));  // an average of both batches
  net.reset_batch_norm_statistics();
  const std::uint64_t step = net.step();
  net.forward(second, 2, Mode::calibrate);
  CHECK(mean[0] == doctest::Approx(-6.0));  // the second batch's alone
  CHECK(mean[1] == doctest::Approx(1.0));
  CHECK(net.step() == step);  // calibration is not a training step
}

TEST_CASE("Re-estimated batch-norm statistics weigh every calibration batch the same, inside a residual block too") {
  // PyTorch's momentum (0.9 in Keras's terms): a decaying average of four batches would give the
  // last 0.1 / (1 - 0.9^4) = 29 % of the weight, the first 21 %; the re-estimate is their mean.
  using Norm = BatchNormWith<0.9f, 1e-5f>;
  using Net = Sequential<Input<1, 1, 1>, Norm, Residual<Norm>, Sigmoid>;
  Net net(1);
  const float values[4][2] = {{1.0f, 3.0f}, {10.0f, 12.0f}, {-4.0f, -2.0f}, {7.0f, 9.0f}};  // means 2, 11, -3, 8
  for (const auto& batch : values) net.forward(Buffer{batch[0], batch[1]}, 2, Mode::train);
  net.reset_batch_norm_statistics();
  for (const auto& batch : values) net.forward(Buffer{batch[0], batch[1]}, 2, Mode::calibrate);
  // Each batch's variance is 1 (Keras's unbiased correction: 2 / (2 - (1 + 1e-5))).
  const double variance = 2.0 / (2.0 - (1.0 + 1e-5));
  CHECK(net.layer<0>().moving_mean()[0] == doctest::Approx(4.5).epsilon(1e-6));
  CHECK(net.layer<0>().moving_variance()[0] == doctest::Approx(variance).epsilon(1e-6));
  // The block's batch norm sees the first one's output: each batch normalised to -1 and +1
  // (times 1 / sqrt(1 + 1e-5)), so a mean of 0 and every batch's variance the same.
  const float* inner_mean = net.layer<1>().body().layer<0>().moving_mean();
  CHECK(inner_mean[0] == doctest::Approx(0.0).epsilon(1e-6));
  // Training afterwards decays again: one more batch moves the mean by 0.1 of the difference.
  net.forward(Buffer{21.5f, 23.5f}, 2, Mode::train);
  CHECK(net.layer<0>().moving_mean()[0] != doctest::Approx(4.5).epsilon(1e-3));
}

TEST_CASE("MaxPool2D matches PyTorch, including windows that do not tile the image") {
  auto check = [](auto& pool, const std::string& prefix) {
    auto [y, dx] = run(pool, prefix, 3);
    CHECK_CLOSE_TO_FIXTURE(y.data(), layers()[prefix + ".y"], 1e-7);
    CHECK_CLOSE_TO_FIXTURE(dx.data(), layers()[prefix + ".dx"], 1e-6);
  };
  SUBCASE("3x3") {
    Standalone<MaxPool2D<3>::Layer<OddImage>> pool;
    check(pool, "pool3");
  }
  SUBCASE("2x2") {
    Standalone<MaxPool2D<2>::Layer<OddImage>> pool;
    check(pool, "pool2");
  }
  SUBCASE("3x3 stride 2, overlapping") {
    Standalone<MaxPool2D<3, 2>::Layer<OddImage>> pool;
    check(pool, "pool3s2");
  }
}

TEST_CASE("ReLU, Sigmoid and Softmax match PyTorch") {
  using Flat = Shape<1, 1, 6>;
  Standalone<ReLU::Layer<Flat>> relu;
  Standalone<Sigmoid::Layer<Flat>> sigmoid;
  Standalone<Softmax::Layer<Flat>> softmax;
  auto check = [](auto& layer, const std::string& prefix) {
    auto [y, dx] = run(layer, prefix, 3);
    CHECK_CLOSE_TO_FIXTURE(y.data(), layers()[prefix + ".y"], 1e-6);
    CHECK_CLOSE_TO_FIXTURE(dx.data(), layers()[prefix + ".dx"], 1e-5);
  };
  check(relu, "relu");
  check(sigmoid, "sigmoid");
  check(softmax, "softmax");
}

TEST_CASE("Dropout: inverted, seeded by step, identity in inference") {
  using S = Shape<10, 10, 10>;
  Standalone<Dropout<0.25f>::Layer<S>> drop;
  drop.init(Rng(3));
  const Buffer x = test::random_values(4 * S::size, 1);
  Buffer y(x.size()), again(x.size()), other(x.size());
  drop.forward(x.data(), y.data(), 4, Pass{Mode::train, 7});
  std::size_t kept = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (y[i] != 0.0f) {
      ++kept;
      CHECK(y[i] == x[i] * (1.0f / 0.75f));
    }
  }
  CHECK(double(kept) / double(x.size()) == doctest::Approx(0.75).epsilon(0.03));
  drop.forward(x.data(), again.data(), 4, Pass{Mode::train, 7});
  CHECK(again == y);
  drop.forward(x.data(), other.data(), 4, Pass{Mode::train, 8});
  CHECK(other != y);
  drop.forward(x.data(), other.data(), 4, Pass{Mode::infer, 8});
  CHECK(other == x);
  drop.forward(x.data(), other.data(), 4, Pass{Mode::calibrate, 8});
  CHECK(other == x);
}

TEST_CASE("binary cross-entropy: Keras's reported value, the exact gradient") {
  const Buffer logits = layers().floats("bce.logits"), targets = layers().floats("bce.targets");
  Buffer grad(logits.size());
  const double loss = binary_crossentropy(logits.data(), targets.data(), std::ptrdiff_t(logits.size()), grad.data());
  CHECK(loss == doctest::Approx(layers().scalar("bce.loss")).epsilon(1e-6));
  CHECK_CLOSE_TO_FIXTURE(grad.data(), layers()["bce.dlogits"], 1e-6);
}

TEST_CASE("every layer's gradients agree with central differences (batch 3, 7x5 images, 5 channels)") {
  const int batch = 3;
  const Buffer x = test::random_values(std::size_t(batch) * OddImage::size, 11);
  const Buffer separated = test::separated_values(std::size_t(batch) * OddImage::size, 12);
  SUBCASE("Conv2D same") {
    Standalone<Conv2D<4, 3>::Layer<OddImage>> layer;
    layer.init(Rng(1));
    std::copy_n(test::random_values(4, 2, 0.5f).begin(), 4, layer.bias());
    test::check_layer_gradients(layer, batch, x);
  }
  SUBCASE("Conv2D valid stride 2") {
    Standalone<Conv2D<3, 3, 2, Padding::valid>::Layer<OddImage>> layer;
    layer.init(Rng(1));
    test::check_layer_gradients(layer, batch, x);
  }
  SUBCASE("Conv2D same 2x2 stride 2") {
    Standalone<Conv2D<3, 2, 2>::Layer<OddImage>> layer;
    layer.init(Rng(1));
    test::check_layer_gradients(layer, batch, x);
  }
  SUBCASE("Dense") {
    Standalone<Dense<4>::Layer<Shape<1, 1, 9>>> layer;
    layer.init(Rng(1));
    test::check_layer_gradients(layer, batch, test::random_values(batch * 9, 3));
  }
  SUBCASE("BatchNorm per channel") {
    Standalone<BatchNorm::Layer<OddImage>> layer;
    std::copy_n(test::random_values(5, 4, 2.0f).begin(), 5, layer.gamma());
    std::copy_n(test::random_values(5, 5).begin(), 5, layer.beta());
    test::check_layer_gradients(layer, batch, x);
  }
  SUBCASE("BatchNorm per feature") {
    Standalone<BatchNorm::Layer<Shape<1, 1, 6>>> layer;
    std::copy_n(test::random_values(6, 4, 2.0f).begin(), 6, layer.gamma());
    test::check_layer_gradients(layer, batch, test::random_values(batch * 6, 6));
  }
  SUBCASE("MaxPool2D 3x3") {
    Standalone<MaxPool2D<3>::Layer<OddImage>> layer;
    test::check_layer_gradients(layer, batch, separated);
  }
  SUBCASE("MaxPool2D 3x3 stride 2") {
    Standalone<MaxPool2D<3, 2>::Layer<OddImage>> layer;
    test::check_layer_gradients(layer, batch, separated);
  }
  SUBCASE("Dropout") {
    Standalone<Dropout<0.4f>::Layer<OddImage>> layer;
    layer.init(Rng(8));
    test::check_layer_gradients(layer, batch, x);
  }
  SUBCASE("ReLU") {
    Standalone<ReLU::Layer<OddImage>> layer;
    test::check_layer_gradients(layer, batch, separated);
  }
  SUBCASE("Sigmoid") {
    Standalone<Sigmoid::Layer<OddImage>> layer;
    test::check_layer_gradients(layer, batch, x);
  }
  SUBCASE("Softmax") {
    Standalone<Softmax::Layer<OddImage>> layer;
    test::check_layer_gradients(layer, batch, x);
  }
  SUBCASE("Flatten") {
    Standalone<Flatten::Layer<OddImage>> layer;
    test::check_layer_gradients(layer, batch, x);
  }
}

TEST_CASE("the layers that take the run-time width, at that width, against central differences") {
  const int batch = 3, width = 5;
  using Wide = Shape<1, 1, dynamic>;
  SUBCASE("Dense<dynamic>") {
    Standalone<Dense<dynamic>::Layer<Shape<1, 1, 9>>> layer(width);
    CHECK(layer.describe() == "Dense(5)");
    layer.init(Rng(1));
    test::check_layer_gradients(layer, batch, test::random_values(batch * 9, 3), 1e-2, 1e-2, width);
  }
  SUBCASE("ReLU") {
    Standalone<ReLU::Layer<Wide>> layer(width);
    test::check_layer_gradients(layer, batch, test::separated_values(batch * width, 4), 1e-2, 1e-2, width);
  }
  SUBCASE("Sigmoid") {
    Standalone<Sigmoid::Layer<Wide>> layer(width);
    test::check_layer_gradients(layer, batch, test::random_values(batch * width, 5), 1e-2, 1e-2, width);
  }
  SUBCASE("Softmax") {
    Standalone<Softmax::Layer<Wide>> layer(width);
    test::check_layer_gradients(layer, batch, test::random_values(batch * width, 6), 1e-2, 1e-2, width);
  }
  SUBCASE("Dropout") {
    Standalone<Dropout<0.4f>::Layer<Wide>> layer(width);
    layer.init(Rng(8));
    test::check_layer_gradients(layer, batch, test::random_values(batch * width, 7), 1e-2, 1e-2, width);
  }
  CHECK_THROWS_WITH_AS((Dense<dynamic>::Layer<Shape<1, 1, 9>>(0)), "tnet::Dense: 0 units; expected at least 1", std::invalid_argument);
}

namespace {
// Runs forward and backward (training mode, fixed step) into fresh buffers; `in_place` makes y
// the input buffer and backward see x == y, as Sequential does for a layer that works in place;
// `poison_output` hands backward a NaN-filled y, as if the next layer had written over it.
template <class Layer>
std::pair<Buffer, Buffer> run_with(Standalone<Layer>& layer, int batch, const Buffer& x, bool in_place, bool poison_output) {
  using In = typename Layer::input_shape;
  using Out = typename Layer::output_shape;
  Buffer input = x, y(std::size_t(batch) * Out::size), dx(std::size_t(batch) * In::size);
  const Buffer dy = test::random_values(y.size(), 31);
  float* out = in_place ? input.data() : y.data();
  layer.forward(input.data(), out, batch, Pass{Mode::train, 2});
  Buffer result(out, out + y.size());
  Buffer poisoned(y.size(), std::numeric_limits<float>::quiet_NaN());
  layer.backward(input.data(), poison_output ? poisoned.data() : out, dy.data(), dx.data(), batch);
  return {result, dx};
}

// The promises a layer makes about memory (layer.hpp), checked by running it: a layer that works
// in place computes the same with y == x; one whose backward does not read y computes the same
// gradients with y poisoned.
template <class Layer>
void check_memory_promises(Standalone<Layer>& layer, const Buffer& x, int batch) {
  INFO(layer.describe());
  const auto [y, dx] = run_with(layer, batch, x, false, false);
  std::vector<float> grads;
  layer.visit_parameters([&](std::string_view, float*, float* grad, std::size_t size) { grads.insert(grads.end(), grad, grad + size); });
  if constexpr (runs_in_place<Layer>) {
    const auto [y2, dx2] = run_with(layer, batch, x, true, false);
    CHECK(y2 == y);
    CHECK(dx2 == dx);
  }
  if constexpr (!backward_reads_output<Layer>) {
    const auto [y3, dx3] = run_with(layer, batch, x, false, true);
    CHECK(dx3 == dx);
    std::vector<float> again;
    layer.visit_parameters([&](std::string_view, float*, float* grad, std::size_t size) { again.insert(again.end(), grad, grad + size); });
    CHECK(again == grads);
  }
}
}  // namespace

TEST_CASE("every layer keeps the memory promises it declares (in_place, backward_reads_output)") {
  const int batch = 3;
  const Buffer x = test::separated_values(std::size_t(batch) * OddImage::size, 13);
  static_assert(runs_in_place<ReLU::Layer<OddImage>> && runs_in_place<Dropout<0.5f>::Layer<OddImage>> &&
                runs_in_place<Flatten::Layer<OddImage>>);
  static_assert(!backward_reads_output<Conv2D<4, 3>::Layer<OddImage>> && !backward_reads_output<BatchNorm::Layer<OddImage>> &&
                !backward_reads_output<MaxPool2D<2>::Layer<OddImage>> && !backward_reads_output<Dense<3>::Layer<Shape<1, 1, 4>>>);
  Standalone<Conv2D<4, 3>::Layer<OddImage>> conv;
  check_memory_promises(conv, x, batch);
  Standalone<BatchNorm::Layer<OddImage>> bn;
  check_memory_promises(bn, x, batch);
  Standalone<MaxPool2D<2>::Layer<OddImage>> pool;
  check_memory_promises(pool, x, batch);
  Standalone<Dropout<0.5f>::Layer<OddImage>> dropout;
  dropout.init(Rng(2));
  check_memory_promises(dropout, x, batch);
  Standalone<ReLU::Layer<OddImage>> relu;
  check_memory_promises(relu, x, batch);
  Standalone<Flatten::Layer<OddImage>> flatten;
  check_memory_promises(flatten, x, batch);
  Standalone<Dense<3>::Layer<Shape<1, 1, 175>>> dense;
  check_memory_promises(dense, x, batch);
}

TEST_CASE("the gradient checker catches a wrong gradient") {
  // A deliberately wrong analytic gradient (10% off in one entry) must fail the comparison.
  Buffer values = test::random_values(20, 1);
  Buffer analytic(20);
  for (int i = 0; i < 20; ++i) analytic[i] = 2 * values[i];
  auto loss = [&] {
    double total = 0;
    for (float v : values) total += double(v) * v;
    return total;
  };
  CHECK(test::compare_with_differences(values.data(), analytic.data(), 20, loss, 1e-2) < 1e-3);
  analytic[7] *= 1.1f;
  CHECK(test::compare_with_differences(values.data(), analytic.data(), 20, loss, 1e-2) > 1e-2);
}

TEST_CASE("Buffer: every allocation starts on a cache line, in any build, contents kept as it grows") {
  const auto on_line = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 64 == 0; };
  std::vector<Buffer> kept;  // held, so that malloc cannot hand back one block again and again
  for (std::size_t n : {1, 3, 15, 16, 17, 1000, 4097, 1 << 20}) {
    kept.emplace_back(n, 1.5f);
    CHECK(on_line(kept.back().data()));
    CHECK(kept.back()[n - 1] == 1.5f);
  }
  Buffer grown{1, 2, 3};
  for (int i = 0; i < 1000; ++i) grown.push_back(float(i));
  CHECK(on_line(grown.data()));
  CHECK((grown[2] == 3 && grown[1002] == 999));
  ensure_size(grown, 1 << 18);
  CHECK(on_line(grown.data()));
  std::vector<double, CacheAligned<double>> doubles(5);
  CHECK(on_line(doubles.data()));
  CHECK_THROWS_AS(CacheAligned<float>().allocate(std::numeric_limits<std::size_t>::max() / 2), std::bad_array_new_length);
}

TEST_CASE("gemm: every kernel, transpose and edge, accumulate, and a long K cut into chunks, against a double reference") {
  struct Case {
    std::ptrdiff_t M, N, K;
  };
  // (300, 40, 50): tiles of rows, K whole; (24, 150, 6000): two column tiles, K in 3 chunks;
  // (16, 24, 20000): one tile, K in 9 chunks (a first convolution's weight gradient); (5, 7, 9000):
  // fewer rows than a micro-kernel's; (1, 420, 700): one row (a batch-1 dense layer) in tiles of
  // columns wider than a vector strip and not a multiple of it (112 with AVX2's kernels: no count
  // of tiles cuts its 27 panels evenly); (2003, 33, 300): tiles of rows with partial panels of rows
  // and columns, K in two kernel steps; (200, 27, 9000): tiles of rows with K in chunks; (3, 600,
  // 500): few rows times a large B, computed transposed when B is (a dense layer's input
  // gradient); (576, 24, 144) and (36, 96, 384): few tiles cut into more that threads share evenly,
  // 6 of 96 rows (MobileNetV2's 24x24 projection at batch 1) and, with AVX2's kernels, 6 of 16
  // columns (its 6x6 one); (9, 1, 1) and (3, 4, 0): degenerate.
  const Case cases[] = {{300, 40, 50},   {24, 150, 6000}, {16, 24, 20000}, {5, 7, 9000},  {1, 420, 700}, {2003, 33, 300},
                        {200, 27, 9000}, {3, 600, 500},   {576, 24, 144},  {36, 96, 384}, {9, 1, 1},     {3, 4, 0}};
  const int kernels_run = test::with_each_gemm_kernel([&](GemmKernel) {
    for (const Case cs : cases)
      for (const bool ta : {false, true})
        for (const bool tb : {false, true})
          for (const bool accumulate : {false, true}) {
            INFO("M ", cs.M, " N ", cs.N, " K ", cs.K, " transposed A ", ta, " B ", tb, " accumulate ", accumulate);
            const Buffer a = test::random_values(std::size_t(cs.M * cs.K), 1), b = test::random_values(std::size_t(cs.K * cs.N), 2);
            Buffer c = test::random_values(std::size_t(cs.M * cs.N), 3);
            std::vector<double> expected(c.size());
            for (std::ptrdiff_t m = 0; m < cs.M; ++m)
              for (std::ptrdiff_t n = 0; n < cs.N; ++n) {
                double sum = accumulate ? c[std::size_t(m * cs.N + n)] : 0.0;
                for (std::ptrdiff_t k = 0; k < cs.K; ++k)
                  sum +=
                      double(a[std::size_t(ta ? k * cs.M + m : m * cs.K + k)]) * double(b[std::size_t(tb ? n * cs.K + k : k * cs.N + n)]);
                expected[std::size_t(m * cs.N + n)] = sum;
              }
            // Then an epilogue: none, a bias, or a bias, ReLU and per-column affine map (in the
            // kernels, or in a pass of its own after K in chunks, a few rows, Eigen).
            const Buffer bias = test::random_values(std::size_t(cs.N), 4), scale = test::random_values(std::size_t(cs.N), 5),
                         shift = test::random_values(std::size_t(cs.N), 6);
            for (const int finish : {0, 1, 2}) {
              INFO("epilogue ", finish);
              Epilogue epilogue;
              if (finish >= 1) epilogue.bias = bias.data();
              if (finish == 2) epilogue.relu = true, epilogue.scale = scale.data(), epilogue.shift = shift.data();
              Buffer result = c;
              gemm(ta ? Transpose::yes : Transpose::no, tb ? Transpose::yes : Transpose::no, cs.M, cs.N, cs.K, a.data(), b.data(),
                   result.data(), accumulate, epilogue);
              double worst = 0;
              for (std::size_t i = 0; i < c.size(); ++i) {
                const std::size_t n = i % std::size_t(cs.N);
                double want = expected[i];
                if (finish >= 1) want += bias[n];
                if (finish == 2) want = std::max(want, 0.0) * scale[n] + shift[n];
                worst = std::max(worst, std::abs(double(result[i]) - want));
              }
              CHECK(worst <= 1e-6 * std::sqrt(double(std::max<std::ptrdiff_t>(cs.K, 1))) * 4);  // float rounding grows like sqrt(K)
            }
          }
  });
  // Every x86-64 CPU this is tested on has AVX2; elsewhere only Eigen's kernel exists.
  CHECK(kernels_run == (TNET_X86_KERNELS && supported(GemmKernel::avx2) ? (supported(GemmKernel::avx512) ? 3 : 2) : 1));
  MESSAGE("gemm kernels tested: ", kernels_run, ", default ", std::string(name(gemm_kernel())));
}

TEST_CASE(
    "a build for its own machine (TNET_NATIVE) without AVX-512, or with TNET_NO_AVX512, compiles no AVX-512 code and never picks it") {
#if TNET_X86_KERNELS && ((defined(TNET_NATIVE) && TNET_NATIVE && !defined(__AVX512F__)) || (defined(TNET_NO_AVX512) && TNET_NO_AVX512))
  CHECK(std::is_same_v<detail::Avx512, detail::Avx2>);
  CHECK_FALSE(supported(GemmKernel::avx512));
  CHECK_FALSE(use_gemm_kernel(GemmKernel::avx512));
#elif TNET_X86_KERNELS
  CHECK_FALSE(std::is_same_v<detail::Avx512, detail::Avx2>);
  CHECK(supported(GemmKernel::avx512) == detail::runs_x86_64_v4());
#endif
  CHECK((gemm_kernel() != GemmKernel::avx512 || supported(GemmKernel::avx512)));
}

TEST_CASE("bfloat16: rounded to nearest, ties to even, NaN, infinities and overflow kept, widened exactly") {
  const auto bits = [](float x) { return std::bit_cast<std::uint32_t>(x); };
  const auto from_bits = [](std::uint32_t b) { return std::bit_cast<float>(b); };
  CHECK(to_bfloat16(1.0f) == 0x3F80);
  CHECK(to_bfloat16(-2.0f) == 0xC000);
  CHECK(to_bfloat16(from_bits(0x3F808000u)) == 0x3F80);  // a tie, to the even 0x3F80
  CHECK(to_bfloat16(from_bits(0x3F818000u)) == 0x3F82);  // a tie, to the even 0x3F82
  CHECK(to_bfloat16(from_bits(0x3F808001u)) == 0x3F81);  // just above the tie: up
  CHECK(to_bfloat16(from_bits(0x3F807FFFu)) == 0x3F80);  // just below: down
  CHECK(to_bfloat16(std::numeric_limits<float>::infinity()) == 0x7F80);
  CHECK(to_bfloat16(-std::numeric_limits<float>::infinity()) == 0xFF80);
  CHECK(to_bfloat16(std::numeric_limits<float>::max()) == 0x7F80);  // rounds up past the largest bfloat16
  CHECK(std::isnan(from_bfloat16(to_bfloat16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(std::isnan(from_bfloat16(to_bfloat16(from_bits(0x7F800001u)))));  // a signalling NaN whose payload is in the low bits
  CHECK(to_bfloat16(-0.0f) == 0x8000);
  CHECK(to_bfloat16(from_bits(0x00000001u)) == 0x0000);  // the smallest subnormal rounds to zero
  // Every bfloat16 widens to the float it stands for, which rounds back to it.
  for (std::uint32_t h = 0; h < 0x10000u; ++h) {
    const float wide = from_bfloat16(std::uint16_t(h));
    CHECK(bits(wide) == h << 16);
    if (!std::isnan(wide)) CHECK(to_bfloat16(wide) == h);
  }
  // The rounding error is at most half a unit in the last of 8 significant bits: 2^-8 relative.
  const Buffer values = test::random_values(10000, 11);
  double worst = 0;
  for (const float v : values) worst = std::max(worst, std::abs(double(from_bfloat16(to_bfloat16(v))) - v) / std::abs(double(v)));
  CHECK(worst <= std::ldexp(1.0, -8));
  CHECK(worst > std::ldexp(1.0, -9));  // and it does round
}

TEST_CASE("Epilogue::finish_row: every kind of epilogue, as finish() value by value, bit for bit, with every kernel's instruction set") {
  // Rows of 16 values (Winograd's output blocks), 32 (a layer's channels) and 7 (a remainder); the
  // values of both signs, with zeros of both signs, a NaN and values beyond ReLU6's clamp.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Buffer values = [&] {
    Buffer v = test::random_values(32, 11, 8.0f);
    v[1] = 0.0f, v[2] = -0.0f, v[3] = nan, v[5] = 7.5f, v[6] = -7.5f;
    return v;
  }();
  const Buffer bias = test::random_values(32, 12), scale = test::random_values(32, 13, 2.0f), shift = test::random_values(32, 14),
               added = test::random_values(32, 15, 4.0f);
  const int kernels_run = test::with_each_gemm_kernel([&](GemmKernel) {
    for (const std::ptrdiff_t n : {7, 16, 32})
      for (int kind = 0; kind < 64; ++kind) {
        const bool with_bias = kind & 1, with_scale = kind & 4, with_added = kind & 8;
        Epilogue e;
        e.relu = kind & 2;
        e.relu_max = kind & 16 ? 6.0f : std::numeric_limits<float>::infinity();
        e.affine_first = kind & 32;
        if (with_scale) e.scale = scale.data(), e.shift = shift.data();
        INFO("values ", n, " bias ", with_bias, " relu ", e.relu, " up to ", e.relu_max, " scale ", with_scale, " added ", with_added,
             " affine first ", e.affine_first);
        const float *b = with_bias ? bias.data() : nullptr, *s = scale.data(), *t = shift.data(), *a = with_added ? added.data() : nullptr;
        Buffer row(values.begin(), values.begin() + n), expected(static_cast<std::size_t>(n));
        vectorised([=](float* v) { e.finish_row(v, n, b, s, t, a); }, row.data());
        // finish() value by value, compiled for the same instruction set: both then contract
        // v * scale + shift into one fused multiply-add, or neither does.
        vectorised(
            [=](const float* in, float* out) {
              for (std::ptrdiff_t j = 0; j < n; ++j) out[j] = e.finish(b ? in[j] + b[j] : in[j], s[j], t[j], a ? a + j : nullptr);
            },
            values.data(), expected.data());
        for (std::ptrdiff_t j = 0; j < n; ++j) {
          INFO("value ", j, ": ", row[std::size_t(j)], ", finish() gives ", expected[std::size_t(j)]);
          CHECK(std::bit_cast<std::uint32_t>(row[std::size_t(j)]) == std::bit_cast<std::uint32_t>(expected[std::size_t(j)]));
        }
      }
  });
  CHECK(kernels_run >= 1);
}

TEST_CASE("gemm_bf16: B in bfloat16 with every kernel against a double reference of its values, Eigen's kernel refuses") {
  struct Case {
    std::ptrdiff_t M, N, K;
  };
  // (1, 1024, 3000): a batch-1 dense layer, B read where it lies, K in chunks; (1, 37, 300) and
  // (2, 6, 1024): rows ending inside a vector strip (masked bfloat16 loads); (32, 300, 700):
  // packed B, tiles of columns; (300, 20, 64): tiles of rows, B packed once for all; (5, 3, 9000):
  // few columns, K in chunks.
  const Case cases[] = {{1, 1024, 3000}, {1, 37, 300}, {2, 6, 1024}, {32, 300, 700}, {300, 20, 64}, {5, 3, 9000}};
  const int kernels_run = test::with_each_gemm_kernel([&](GemmKernel kernel) {
    for (const Case cs : cases) {
      INFO("M ", cs.M, " N ", cs.N, " K ", cs.K);
      const Buffer a = test::random_values(std::size_t(cs.M * cs.K), 1), b = test::random_values(std::size_t(cs.K * cs.N), 2);
      const Buffer bias = test::random_values(std::size_t(cs.N), 3);
      std::vector<std::uint16_t> rounded(b.size());
      for (std::size_t i = 0; i < b.size(); ++i) rounded[i] = to_bfloat16(b[i]);
      Buffer c(std::size_t(cs.M * cs.N), -7.0f);
      Epilogue epilogue;
      epilogue.bias = bias.data(), epilogue.relu = true;
      if (kernel == GemmKernel::eigen) {
        CHECK_THROWS_AS(gemm_bf16(cs.M, cs.N, cs.K, a.data(), rounded.data(), c.data(), epilogue), std::logic_error);
        continue;
      }
      gemm_bf16(cs.M, cs.N, cs.K, a.data(), rounded.data(), c.data(), epilogue);
      double worst = 0, worst_unrounded = 0;
      for (std::ptrdiff_t m = 0; m < cs.M; ++m)
        for (std::ptrdiff_t n = 0; n < cs.N; ++n) {
          double sum = bias[std::size_t(n)], unrounded = sum;
          for (std::ptrdiff_t k = 0; k < cs.K; ++k) {
            sum += double(a[std::size_t(m * cs.K + k)]) * from_bfloat16(rounded[std::size_t(k * cs.N + n)]);
            unrounded += double(a[std::size_t(m * cs.K + k)]) * b[std::size_t(k * cs.N + n)];
          }
          const double got = c[std::size_t(m * cs.N + n)];
          worst = std::max(worst, std::abs(got - std::max(sum, 0.0)));
          worst_unrounded = std::max(worst_unrounded, std::abs(got - std::max(unrounded, 0.0)));
        }
      CHECK(worst <= 1e-6 * std::sqrt(double(cs.K)) * 4);  // the product of B's bfloat16 values, in float
      CHECK(worst_unrounded > worst);                      // not of B's floats
    }
  });
  // Eigen's always; AVX2 and AVX-512 wherever the CPU runs them (as the gemm test above counts)
  CHECK(kernels_run == (TNET_X86_KERNELS && supported(GemmKernel::avx2) ? (supported(GemmKernel::avx512) ? 3 : 2) : 1));
}

TEST_CASE("sweep_gemm: 1 to 4 rows times B in floats or bfloat16 against a double reference, the same bits any way") {
  struct Case {
    std::ptrdiff_t M, N, K;
  };
  // (1, 1024, 3000): a batch-1 dense layer, K in chunks; (1, 37, 301) and (3, 1003, 1030): rows
  // of B ending inside a vector (masked loads), K past the last whole pass; (2, 64, 5) and
  // (4, 40, 1): K in one short chunk; (4, 200, 9000): K in 16 chunks; (1, 48, 0): no K.
  const Case cases[] = {{1, 1024, 3000}, {1, 37, 301}, {3, 1003, 1030}, {2, 64, 5}, {4, 40, 1}, {4, 200, 9000}, {1, 48, 0}};
  const int threads_before = num_threads();
  const int kernels_run = test::with_each_gemm_kernel([&](GemmKernel kernel) {
    for (const Case cs : cases)
      for (const bool bf16 : {false, true}) {
        INFO("M ", cs.M, " N ", cs.N, " K ", cs.K, " bf16 ", bf16);
        const Buffer a = test::random_values(std::size_t(cs.M * cs.K), 1), b = test::random_values(std::size_t(cs.K * cs.N), 2);
        const Buffer bias = test::random_values(std::size_t(cs.N), 3), scale = test::random_values(std::size_t(cs.N), 4),
                     shift = test::random_values(std::size_t(cs.N), 5);
        std::vector<std::uint16_t> rounded(b.size());
        for (std::size_t i = 0; i < b.size(); ++i) rounded[i] = to_bfloat16(b[i]);
        Epilogue epilogue;
        epilogue.bias = bias.data(), epilogue.relu = true, epilogue.scale = scale.data(), epilogue.shift = shift.data();
        auto product = [&](bool backwards) {
          Buffer c(std::size_t(cs.M * cs.N), -7.0f);
          if (bf16) sweep_gemm(cs.M, cs.N, cs.K, a.data(), rounded.data(), c.data(), epilogue, backwards);
          else sweep_gemm(cs.M, cs.N, cs.K, a.data(), b.data(), c.data(), epilogue, backwards);
          return c;
        };
        if (kernel == GemmKernel::eigen) {
          CHECK_THROWS_AS(product(false), std::logic_error);
          continue;
        }
        set_num_threads(2);
        const Buffer c = product(false);
        double worst = 0;
        for (std::ptrdiff_t m = 0; m < cs.M; ++m)
          for (std::ptrdiff_t n = 0; n < cs.N; ++n) {
            double sum = 0;
            for (std::ptrdiff_t k = 0; k < cs.K; ++k) {
              const std::size_t at = std::size_t(k * cs.N + n);
              sum += double(a[std::size_t(m * cs.K + k)]) * (bf16 ? double(from_bfloat16(rounded[at])) : double(b[at]));
            }
            const double want = std::max(sum + bias[std::size_t(n)], 0.0) * scale[std::size_t(n)] + shift[std::size_t(n)];
            worst = std::max(worst, std::abs(double(c[std::size_t(m * cs.N + n)]) - want));
          }
        CHECK(worst <= 1e-6 * std::sqrt(double(std::max<std::ptrdiff_t>(cs.K, 1))) * 4);  // float rounding grows like sqrt(K)
        // Each thread's chunks backwards, and other thread counts: the same bits.
        CHECK(product(true) == c);
        for (const int threads : {1, 3}) {
          set_num_threads(threads);
          CHECK(product(false) == c);
          CHECK(product(true) == c);
        }
      }
  });
  set_num_threads(threads_before);
  CHECK(kernels_run == (TNET_X86_KERNELS && supported(GemmKernel::avx2) ? (supported(GemmKernel::avx512) ? 3 : 2) : 1));
  if (gemm_kernel() != GemmKernel::eigen) {
    const Buffer a(5, 1.0f), b(5, 1.0f);
    Buffer c(1);
    CHECK_THROWS_AS(sweep_gemm(5, 1, 1, a.data(), b.data(), c.data()), std::invalid_argument);  // more rows than it takes
  }
}

TEST_CASE("gemm: the same bits for any thread count, with every kernel") {
  const int threads_before = num_threads();
  const Buffer a = test::random_values(std::size_t(700 * 300), 4), b = test::random_values(std::size_t(300 * 90), 5);
  const Buffer x = test::random_values(std::size_t(9000 * 64), 6), dy = test::random_values(std::size_t(9000 * 40), 7);
  test::with_each_gemm_kernel([&](GemmKernel) {
    std::vector<Buffer> results;
    for (const int threads : {1, 2, 3}) {
      set_num_threads(threads);
      Buffer c(std::size_t(700 * 90)), g(std::size_t(64 * 40));
      gemm(Transpose::no, Transpose::no, 700, 90, 300, a.data(), b.data(), c.data());
      gemm(Transpose::yes, Transpose::no, 64, 40, 9000, x.data(), dy.data(), g.data());  // a weight gradient: K in chunks
      c.insert(c.end(), g.begin(), g.end());
      results.push_back(std::move(c));
    }
    CHECK(results[0] == results[1]);
    CHECK(results[0] == results[2]);
  });
  set_num_threads(threads_before);
}
