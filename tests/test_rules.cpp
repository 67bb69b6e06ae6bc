// The fusion rules (model/rules/): which windows each mode's plan gives them, each rule's fused
// operation against the layers of its window run one by one, and for each a sabotaged rule (the
// same with one part left out or reordered) that the same comparison catches.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "support.hpp"
#include "tnet/tnet.hpp"

using namespace tnet;

namespace {

// Conv -> BN -> ReLU (PyTorch's order) and Conv -> ReLU -> BN (the tutorial's), depthwise with
// ReLU6, a residual block and the ReLU after it, and a dense layer with a batch normalisation.
using Block = Residual<Conv2D<8, 3>, BatchNorm, ReLU, Conv2D<8, 3>, BatchNorm>;
using Net = Sequential<Input<8, 8, 3>, Conv2D<8, 3>, BatchNorm, ReLU, Conv2D<8, 3>, ReLU, BatchNorm, DepthwiseConv2D<3>, BatchNorm, ReLU6,
                       Block, ReLU, MaxPool2D<2>, Flatten, Dense<6>, BatchNorm, Dense<3>, Sigmoid>;
// 0 Conv BN ReLU | 3 Conv ReLU BN | 6 Depthwise BN ReLU6 | 9 Residual ReLU | 11 MaxPool | 12 Flatten |
// 13 Dense BN | 15 Dense | 16 Sigmoid.
using Infer = Net::inference_plan;
static_assert(rule_at<Infer, 0>() == "fold_epilogue" && window_at<Infer, 0>() == 3);  // folds whole
static_assert(rule_at<Infer, 3>() == "fold_epilogue" && window_at<Infer, 3>() == 3);
static_assert(rule_at<Infer, 6>() == "fold_epilogue" && window_at<Infer, 6>() == 3);
static_assert(rule_at<Infer, 9>() == "add_in_epilogue" && window_at<Infer, 9>() == 2);  // the sum and the ReLU in the body's last write
static_assert(rule_at<Infer, 13>() == "fold_epilogue" && window_at<Infer, 13>() == 2 && rule_at<Infer, 15>() == "layer");
using Train = Net::training_plan;
static_assert(rule_at<Train, 0>() == "layer" && rule_at<Train, 1>() == "activation_in_epilogue" && window_at<Train, 1>() == 2);
static_assert(rule_at<Train, 3>() == "activation_in_epilogue" && window_at<Train, 3>() == 2);
static_assert(rule_at<Train, 6>() == "layer" && rule_at<Train, 7>() == "activation_in_epilogue");  // depthwise; BN ReLU6
static_assert(rule_at<Train, 9>() == "add_in_epilogue" && window_at<Train, 9>() == 2);             // the block's ReLU works over its sum
// The inner chains run plans of their own: the block's body folds Conv -> BN -> ReLU too.
static_assert(rule_at<Net::layer_type<9>::body_type::inference_plan, 0>() == "fold_epilogue" &&
              window_at<Net::layer_type<9>::body_type::inference_plan, 0>() == 3);

// Residual blocks on odd sizes, for add_in_epilogue: an identity block whose 3x3 convolutions
// run by Winograd's minimal filtering from batch 2 (16 channels, 9 x 8 tiles an image), a
// projection block at stride 2 with 24 channels (a part panel of the kernels' 16 or 32 columns),
// and MobileNetV2's inverted residual, whose sum no clamp follows.
using TorchBN = models::TorchBatchNorm;
using Blocks = Sequential<Input<33, 31, 16>, Residual<Conv2D<16, 3, 1, pad(1)>, TorchBN, ReLU, Conv2D<16, 3, 1, pad(1)>, TorchBN>, ReLU,
                          Residual<Conv2D<24, 3, 2, pad(1)>, TorchBN, ReLU, Conv2D<24, 3, 1, pad(1)>, TorchBN,
                                   Shortcut<Conv2D<24, 1, 2, Padding::valid>, TorchBN>>,
                          ReLU, models::InvertedResidual<48, 24>, GlobalAveragePooling2D, Dense<3>, Sigmoid>;
// 0 identity block, ReLU | 2 projection block, ReLU | 4 inverted residual | 5 pooling | 6 Dense | 7 Sigmoid.
static_assert(rule_at<Blocks::inference_plan, 0>() == "add_in_epilogue" && window_at<Blocks::inference_plan, 0>() == 2);
static_assert(rule_at<Blocks::inference_plan, 2>() == "add_in_epilogue" && window_at<Blocks::inference_plan, 2>() == 2);
static_assert(rule_at<Blocks::inference_plan, 4>() == "add_in_epilogue" && window_at<Blocks::inference_plan, 4>() == 1);
static_assert(rule_at<Blocks::training_plan, 0>() == "add_in_epilogue" && window_at<Blocks::training_plan, 0>() == 2);
static_assert(rule_at<Blocks::training_plan, 2>() == "add_in_epilogue" && window_at<Blocks::training_plan, 2>() == 2);
static_assert(rule_at<Blocks::training_plan, 4>() == "add_in_epilogue" && window_at<Blocks::training_plan, 4>() == 1);
// Where the block is followed by a batch normalisation, fold_epilogue folds it; a body whose last
// step clamps after its affine (Conv -> BN -> ReLU) cannot take the sum in the same epilogue.
using NotAdding = Sequential<Input<6, 6, 8>, Residual<Conv2D<8, 3>, BatchNorm>, BatchNorm, Residual<Conv2D<8, 3>, BatchNorm, ReLU>, ReLU,
                             Flatten, Dense<3>, Sigmoid>;
static_assert(rule_at<NotAdding::inference_plan, 0>() == "fold_epilogue" && window_at<NotAdding::inference_plan, 0>() == 2);
static_assert(rule_at<NotAdding::inference_plan, 2>() == "fold_epilogue" && window_at<NotAdding::inference_plan, 2>() == 2);
static_assert(rule_at<NotAdding::training_plan, 0>() == "add_in_epilogue" &&
              rule_at<NotAdding::training_plan, 2>() == "activation_in_epilogue");

// torchvision's networks: ResNet18's stem folds Conv -> BN -> ReLU (its max pool's windows
// overlap), each BasicBlock and the ReLU after it add in the epilogue of its last convolution;
// MobileNetV2 folds depthwise -> BN -> ReLU6, and its inverted residuals add in their projection's.
using ResNet = models::ResNet18<33, 35, 3, 3, Sigmoid>;
using Mobile = models::MobileNetV2<33, 35, 3, 3, Sigmoid>;
static_assert(rule_at<ResNet::inference_plan, 0>() == "fold_epilogue" && window_at<ResNet::inference_plan, 0>() == 3);
static_assert([]<std::size_t... B>(std::index_sequence<B...>) {
  return ((rule_at<ResNet::inference_plan, 4 + 2 * B>() == "add_in_epilogue" && window_at<ResNet::inference_plan, 4 + 2 * B>() == 2 &&
           rule_at<ResNet::training_plan, 4 + 2 * B>() == "add_in_epilogue" && window_at<ResNet::training_plan, 4 + 2 * B>() == 2) &&
          ...);
}(std::make_index_sequence<8>{}));
static_assert(rule_at<Mobile::inference_plan, 3>() == "fold_epilogue" &&
              window_at<Mobile::inference_plan, 3>() == 3);  // depthwise BN ReLU6
static_assert(rule_at<Mobile::inference_plan, 16>() == "add_in_epilogue" && window_at<Mobile::inference_plan, 16>() == 1);
static_assert(rule_at<Mobile::training_plan, 16>() == "add_in_epilogue" && window_at<Mobile::training_plan, 16>() == 1);
static_assert(rule_at<Mobile::inference_plan, 57>() == "add_in_epilogue" && rule_at<Mobile::inference_plan, 58>() != "fold_epilogue");
// MobileNetV2's expansions and the depthwise convolutions after them, in inference: those of the
// blocks without a sum (the first, 16 -> 96 channels and then stride 2; the last, 160 -> 960) and
// inside every inverted residual's body.
static_assert(rule_at<Mobile::inference_plan, 8>() == "pointwise_then_depthwise" && window_at<Mobile::inference_plan, 8>() == 6 &&
              rule_at<Mobile::inference_plan, 58>() == "pointwise_then_depthwise" && window_at<Mobile::inference_plan, 58>() == 6);
static_assert(rule_at<Mobile::layer_type<16>::body_type::inference_plan, 0>() == "pointwise_then_depthwise" &&
              window_at<Mobile::layer_type<16>::body_type::inference_plan, 0>() == 6 &&
              rule_at<Mobile::layer_type<16>::body_type::inference_plan, 6>() == "fold_epilogue");
static_assert(rule_at<Mobile::training_plan, 8>() == "layer");  // training keeps the expansion's output for backward

// A 1x1 convolution, a ReLU6, and a 5x5 depthwise convolution on a tall narrow image, so that a
// band of whole images is computed in two steps (64 rows of 4 pixels, then 6); and 12 channels,
// which forward_row does not take.
using Banded = Sequential<Input<70, 4, 8>, Conv2D<24, 1>, ReLU6, DepthwiseConv2D<5>, BatchNorm, Flatten, Dense<3>, Sigmoid>;
static_assert(rule_at<Banded::inference_plan, 0>() == "pointwise_then_depthwise" && window_at<Banded::inference_plan, 0>() == 4);
using Twelve = Sequential<Input<9, 9, 8>, Conv2D<12, 1>, ReLU6, DepthwiseConv2D<3>, Flatten, Dense<3>, Sigmoid>;
static_assert(rule_at<Twelve::inference_plan, 0>() == "fold_epilogue" && rule_at<Twelve::inference_plan, 2>() == "layer");

// A tutorial-shaped chain whose pool tiles the convolution's output, for pool_in_forward and
// normalise_then_pool.
using Pooled = Sequential<Input<8, 8, 3>, Conv2D<16, 3>, ReLU, BatchNorm, MaxPool2D<2>, Flatten, Dense<3>, Sigmoid>;
static_assert(rule_at<Pooled::inference_plan, 0>() == "pool_in_forward" && window_at<Pooled::inference_plan, 0>() == 4);
static_assert(rule_at<Pooled::training_plan, 0>() == "activation_in_epilogue" &&
              rule_at<Pooled::training_plan, 2>() == "normalise_then_pool");
static_assert(rules::relu_gradient_applied_after<Pooled::chain_type::layout_type, Pooled::backward_plan, 1>());

// The largest difference between a and b over n values, relative to b's largest magnitude.
double relative_difference(const float* a, const float* b, std::size_t n) {
  double worst = 0, largest = 1e-30;
  for (std::size_t i = 0; i < n; ++i) {
    REQUIRE(std::isfinite(a[i]));
    worst = std::max(worst, std::abs(double(a[i]) - double(b[i])));
    largest = std::max(largest, std::abs(double(b[i])));
  }
  return worst / largest;
}

// A network with its batch normalisations' statistics and parameters away from their defaults
// (a few training steps), and a forward in `mode` so that every buffer holds its values. The
// input stays with it: the chain reads the first layer's input where the caller keeps it.
template <class N>
struct Trained {
  std::unique_ptr<N> net;
  Buffer x;
  N* operator->() { return net.get(); }
};
template <class N>
Trained<N> trained(int batch, Mode mode, std::uint64_t seed) {
  Trained<N> t{std::make_unique<N>(seed), test::random_values(std::size_t(batch) * N::input_size, seed + 1)};
  Buffer targets(std::size_t(batch) * t->outputs());
  for (std::size_t i = 0; i < targets.size(); ++i) targets[i] = float((i * 7 + seed) % 3 == 0);
  Adam adam(Adam::Options{.lr = 0.05});
  for (int step = 0; step < 4; ++step) t->train_step(t.x, targets, batch, adam);
  t->forward(t.x, batch, mode);
  return t;
}

// Layers [I, I + N) of `chain` one by one on the input of layer I, in buffers of the test's own.
template <std::size_t I, std::size_t N, class Chain>
Buffer layers_one_by_one(Chain& chain, int batch, Mode mode) {
  Buffer in(
      chain.template input_of<I>(), chain.template input_of<I>() + std::size_t(batch) * [&] {
        if constexpr (I == 0) return std::size_t(Chain::input_shape::size);
        else return chain.template output_size<I - 1>();
      }());
  Buffer out;
  [&]<std::size_t... J>(std::index_sequence<J...>) {
    (([&] {
       out.assign(std::size_t(batch) * chain.template output_size<I + J>(), std::nanf(""));
       chain.template layer<I + J>().forward(in.data(), out.data(), batch, Pass{mode});
       in.swap(out);
     }()),
     ...);
  }(std::make_index_sequence<N>{});
  return in;
}

// Rule's forward of layers [I, I + N) of `chain` (whose last forward left their input in place),
// against the layers one by one: the relative difference.
template <class Rule, std::size_t I, std::size_t N, class Chain>
double rule_against_layers(Chain& chain, int batch, Mode mode) {
  const Buffer expected = layers_one_by_one<I, N>(chain, batch, mode);
  Rule::template forward<I, N>(chain, batch, Pass{mode});
  return relative_difference(chain.template output_of<I + N - 1>(), expected.data(), expected.size());
}

// f.template operator()<I>() for each of the indices I.
template <std::size_t... I, class F>
void for_each_index(F&& f) {
  (f.template operator()<I>(), ...);
}

// Sabotaged rules: each the real one with one thing wrong.
struct FoldInWrongOrder : rules::FoldEpilogue {  // the affine and the clamp the other way round
  template <std::size_t I, std::size_t N, class Chain>
  static void forward(Chain& chain, int batch, const Pass& pass) {
    Epilogue epilogue = rules::detail::folded_epilogue<I, N - 1>(chain);
    epilogue.affine_first = !epilogue.affine_first;
    chain.template layer<I>().forward(chain.template input_of<I>(), chain.template output_buffer<I + N - 1>(), batch, pass, epilogue);
  }
};
struct PoolWithoutEpilogue : rules::PoolInForward {  // the pool of the bare convolution
  template <std::size_t I, std::size_t N, class Chain>
  static void forward(Chain& chain, int batch, const Pass&) {
    using Pool = typename Chain::template layer_type<I + N - 1>;
    REQUIRE(chain.template layer<I>().template forward_pooled<Pool>(chain.template input_of<I>(), chain.template output_buffer<I + N - 1>(),
                                                                    batch, Epilogue{}));
  }
};
struct ActivationLeftOut : rules::ActivationInEpilogue {  // the clamp forgotten
  template <std::size_t I, std::size_t N, class Chain>
  static void forward(Chain& chain, int batch, const Pass& pass) {
    chain.template layer<I>().forward(chain.template input_of<I>(), chain.template output_buffer<I>(), batch, pass, Epilogue{});
  }
};
struct PoolUnnormalised : rules::NormaliseThenPool {  // the pool's choices not normalised
  struct Unchanged {
    float operator()(float v, int) const { return v; }
  };
  template <std::size_t I, std::size_t N, class Chain>
  static void forward(Chain& chain, int batch, const Pass& pass) {
    rules::NormaliseThenPool::forward<I, N>(chain, batch, pass);
    chain.template layer<I + 1>().forward_selected(chain.template output_buffer<I + 1>(), batch, Unchanged{});
  }
};

// pointwise_then_depthwise on Banded (layers 0-3) with two bands an image, each computing only
// its own rows of the 1x1 convolution's output: the rows it reads from the band above are taken
// as outside the image.
struct BandsWithoutOverlap : rules::PointwiseThenDepthwise {
  template <std::size_t I, std::size_t N, class Chain>
  static void forward(Chain& chain, int batch, const Pass&) {
    using D = typename Chain::template layer_type<2>;
    constexpr int H = D::H, W = D::W, C = D::C, OH = D::OH, OW = D::OW, top = D::pad_top;
    chain.scratch(2 * std::size_t(D::C + D::F));
    const Epilogue first = rules::detail::folded_epilogue<0, 1>(chain), second = rules::detail::folded_epilogue<2, 1>(chain, 2 * C);
    const auto& depthwise = chain.template layer<2>();
    float* y = chain.template output_buffer<3>();
    REQUIRE(chain.template layer<0>().forward_pieces(
        chain.template input_of<0>(), first, false, 2 * batch, [&](std::ptrdiff_t task, const auto& product) {
          const std::ptrdiff_t n = task / 2;
          const int from = int(task % 2) * H / 2, to = int(task % 2 + 1) * H / 2;
          Buffer band(std::size_t(to - from) * W * C);
          product((n * H + from) * W, std::ptrdiff_t(to - from) * W, band.data());
          for (int oy = int(task % 2) * OH / 2; oy < int(task % 2 + 1) * OH / 2; ++oy) {
            const float* rows[D::K];
            for (int ky = 0; ky < D::K; ++ky) {
              const int iy = oy - top + ky;
              rows[ky] = iy >= from && iy < to ? band.data() + std::ptrdiff_t(iy - from) * W * C : nullptr;
            }
            depthwise.forward_row(rows, y + (n * OH + oy) * std::ptrdiff_t(OW) * D::F, second);
          }
        }));
  }
};

// add_in_epilogue with one thing wrong: the shortcut left out, or the clamp before the sum.
template <Mode M, bool LeaveOutShortcut>
struct AddSabotaged : rules::AddInEpilogue<M> {
  template <std::size_t I, std::size_t N, class Chain>
  static void forward(Chain& chain, int batch, const Pass& pass) {
    using Block = typename Chain::template layer_type<I>;
    using Steps = rules::detail::plan_in<typename Block::body_type, M>;
    using Tail = std::tuple_element_t<std::tuple_size_v<Steps> - 1, Steps>;
    auto& body = chain.template layer<I>().body();
    const float* x = chain.template input_of<I>();
    const float* added = Block::shortcut_type::depth == 0 ? x : chain.template layer<I>().shortcut().forward(x, batch, pass);
    body.template forward_steps<Steps, std::tuple_size_v<Steps> - 1>(x, batch, pass);
    Epilogue epilogue = rules::detail::folded_epilogue<Tail::first, Tail::length - 1>(body);
    epilogue.added = LeaveOutShortcut ? nullptr : added;
    epilogue.added_stride = std::ptrdiff_t(chain.template channels_of<I>());
    if constexpr (N == 2) epilogue.relu = true, epilogue.affine_first = LeaveOutShortcut;
    body.template layer<Tail::first>().forward(body.template input_of<Tail::first>(), chain.template output_buffer<I + N - 1>(), batch,
                                               pass, epilogue);
  }
};

// A layer's forward with an epilogue that adds a tensor and clamps after it, against its plain
// forward with the sum and the clamp after it: the same bits.
template <class L>
void check_added_tensor(int batch, Mode mode) {
  using Out = typename L::output_shape;
  Standalone<L> layer;
  const Buffer x = test::random_values(std::size_t(batch) * L::input_shape::size, 41);
  const Buffer added = test::random_values(std::size_t(batch) * Out::size, 43);
  Buffer plain(added.size(), std::nanf("")), got(added.size(), std::nanf(""));
  layer.forward(x.data(), plain.data(), batch, Pass{mode});
  Epilogue epilogue;
  epilogue.added = added.data(), epilogue.added_stride = Out::channels;
  epilogue.relu = true, epilogue.relu_max = 6.0f, epilogue.affine_first = true;
  layer.forward(x.data(), got.data(), batch, Pass{mode}, epilogue);
  std::size_t clamped = 0;
  for (std::size_t i = 0; i < plain.size(); ++i) {
    const float want = std::min(std::max(plain[i] + added[i], 0.0f), 6.0f);
    clamped += want == 0.0f;
    if (got[i] != want) {
      FAIL_CHECK("value ", i, ": ", got[i], " where the sum clamped is ", want);
      return;
    }
  }
  CHECK(clamped > 0);
}

}  // namespace

TEST_CASE("fold_epilogue: bias, batch normalisation and ReLU or ReLU6 in either order, as the layers one by one, to rounding") {
  auto net = trained<Net>(4, Mode::infer, 3);
  auto& chain = net->chain();
  // The batch norm folded in double and rounded once: a few float roundings from the layers'.
  CHECK(rule_against_layers<rules::FoldEpilogue, 0, 3>(chain, 4, Mode::infer) < 1e-5);   // Conv BN ReLU
  CHECK(rule_against_layers<rules::FoldEpilogue, 3, 3>(chain, 4, Mode::infer) < 1e-5);   // Conv ReLU BN
  CHECK(rule_against_layers<rules::FoldEpilogue, 6, 3>(chain, 4, Mode::infer) < 1e-5);   // Depthwise BN ReLU6
  CHECK(rule_against_layers<rules::FoldEpilogue, 9, 2>(chain, 4, Mode::infer) == 0.0);   // Residual ReLU: the same bits
  CHECK(rule_against_layers<rules::FoldEpilogue, 13, 2>(chain, 4, Mode::infer) < 1e-5);  // Dense BN
  // The whole network, as the layers one by one.
  const Buffer x = test::random_values(4 * Net::input_size, 5);
  const auto predicted = net->predict(x, 4);
  net->forward(x, 4, Mode::infer);
  const Buffer expected = layers_one_by_one<0, Net::depth>(chain, 4, Mode::infer);
  CHECK(relative_difference(predicted.data(), expected.data(), expected.size()) < 1e-5);
  // Sabotage: the affine and the clamp swapped is caught (ReLU6 and ReLU either way round).
  net->forward(x, 4, Mode::infer);
  CHECK(rule_against_layers<FoldInWrongOrder, 0, 3>(chain, 4, Mode::infer) > 1e-3);
  CHECK(rule_against_layers<FoldInWrongOrder, 3, 3>(chain, 4, Mode::infer) > 1e-3);
  CHECK(rule_against_layers<FoldInWrongOrder, 6, 3>(chain, 4, Mode::infer) > 1e-3);
}

// pointwise_then_depthwise's forward of layers [I, I + A + B) of `chain` (whose last forward
// left their input in place): the 1x1 convolution's window of A layers and the depthwise one's of
// B, against fold_epilogue's two steps, the same bits, with 1, 2 and 3 threads (whole images or
// bands of them), the kernel packed for inference or not, its products in float or (where the CPU
// has them) in bfloat16.
template <std::size_t I, std::size_t A, std::size_t B, class Chain>
void check_bands(Chain& chain, int batch) {
  constexpr std::size_t last = I + A + B - 1;
  for (const bool bf16 : {false, true}) {
    INFO("bf16 ", bf16);
    chain.template layer<I>().round_kernel(bf16);
    rules::FoldEpilogue::forward<I, A>(chain, batch, Pass{Mode::infer});
    rules::FoldEpilogue::forward<I + A, B>(chain, batch, Pass{Mode::infer});
    const float* folded = chain.template output_of<last>();
    const Buffer expected(folded, folded + std::size_t(batch) * chain.template output_size<last>());
    CHECK(relative_difference(expected.data(), layers_one_by_one<I, A + B>(chain, batch, Mode::infer).data(), expected.size()) < 1e-5);
    const int threads = num_threads();
    chain.template layer<I>().prepare_inference(true);
    for (const bool prepared : {false, true})
      for (const int t : {1, 2, 3}) {
        INFO(t, " threads, ", std::string(prepared ? "prepared" : "packed each time"));
        set_num_threads(t);
        float* y = chain.template output_buffer<last>();
        std::fill(y, y + expected.size(), std::nanf(""));
        rules::PointwiseThenDepthwise::forward<I, A + B>(chain, batch, Pass{.mode = Mode::infer, .prepared = prepared});
        CHECK(std::equal(expected.begin(), expected.end(), chain.template output_of<last>()));
      }
    set_num_threads(threads);
    chain.template layer<I>().prepare_inference(false);
  }
  chain.template layer<I>().round_kernel(false);
}

TEST_CASE("pointwise_then_depthwise: the 1x1 convolution a band of rows at a time, the depthwise one from the band, bit for bit") {
  test::with_each_gemm_kernel([](GemmKernel) {  // Eigen's kernels: the two steps one after the other
    for (const int batch : {1, 2, 3}) {
      INFO("batch ", batch);
      auto mobile = trained<Mobile>(batch, Mode::infer, 43);
      check_bands<8, 3, 3>(mobile->chain(), batch);                     // 17x18 at stride 2
      check_bands<0, 3, 3>(mobile->chain().layer<16>().body(), batch);  // 9x9 at stride 1, in a block
      auto banded = trained<Banded>(batch, Mode::infer, 47);
      check_bands<0, 2, 2>(banded->chain(), batch);  // 70 rows of 4
      // Sabotage: bands that leave out the rows they share with the band above are caught.
      if (gemm_kernel() != GemmKernel::eigen && Banded::layer_type<2>::rows_anywhere_now())
        CHECK(rule_against_layers<BandsWithoutOverlap, 0, 4>(banded->chain(), batch, Mode::infer) > 1e-3);
    }
  });
}

TEST_CASE("pool_in_forward: the convolution, its epilogue and the max pool a strip at a time, as the layers one by one") {
  auto net = trained<Pooled>(3, Mode::infer, 7);
  auto& chain = net->chain();
  // Where Winograd or Eigen's kernels take the convolution, the rule runs the fold and the pool
  // one after the other; either way the layers' values to rounding.
  CHECK(rule_against_layers<rules::PoolInForward, 0, 4>(chain, 3, Mode::infer) < 1e-5);
  if (gemm_kernel() != GemmKernel::eigen) CHECK(rule_against_layers<PoolWithoutEpilogue, 0, 4>(chain, 3, Mode::infer) > 1e-3);
}

TEST_CASE("an epilogue's added tensor: after the affine, before the clamp, in every gemm kernel and path and every layer that takes one") {
  struct Case {
    std::ptrdiff_t M, N, K;
    bool tb;
  };
  // Tiles of rows (one starting at row 80); tiles of columns (from 112 and 224); few rows, B read
  // where it lies; K cut into chunks (the epilogue a pass after the product); B transposed with
  // few rows (computed transposed); odd sizes and part panels throughout.
  const Case cases[] = {{37, 29, 21, false}, {130, 17, 9, false},   {20, 300, 50, false},
                        {5, 40, 30, false},  {3, 200, 8192, false}, {4, 600, 600, true}};
  test::with_each_gemm_kernel([&](GemmKernel) {
    for (const Case cs : cases) {
      INFO("M ", cs.M, " N ", cs.N, " K ", cs.K);
      const std::ptrdiff_t stride = cs.N + 3;  // the added tensor's rows, apart from C's
      const Buffer a = test::random_values(std::size_t(cs.M * cs.K), 1), b = test::random_values(std::size_t(cs.K * cs.N), 2);
      const Buffer bias = test::random_values(std::size_t(cs.N), 3), scale = test::random_values(std::size_t(cs.N), 4),
                   shift = test::random_values(std::size_t(cs.N), 5), added = test::random_values(std::size_t(cs.M * stride), 6);
      Epilogue affine;
      affine.bias = bias.data(), affine.scale = scale.data(), affine.shift = shift.data();
      Buffer expected(std::size_t(cs.M * cs.N)), got(expected.size(), std::nanf(""));
      gemm(Transpose::no, cs.tb ? Transpose::yes : Transpose::no, cs.M, cs.N, cs.K, a.data(), b.data(), expected.data(), false, affine);
      for (std::ptrdiff_t r = 0; r < cs.M; ++r)
        for (std::ptrdiff_t c = 0; c < cs.N; ++c) {
          float& v = expected[std::size_t(r * cs.N + c)];
          v = std::max(v + added[std::size_t(r * stride + c)], 0.0f);
        }
      Epilogue fused = affine;
      fused.added = added.data(), fused.added_stride = stride, fused.relu = true, fused.affine_first = true;
      gemm(Transpose::no, cs.tb ? Transpose::yes : Transpose::no, cs.M, cs.N, cs.K, a.data(), b.data(), got.data(), false, fused);
      CHECK(std::equal(got.begin(), got.end(), expected.begin()));
    }
  });
  test::with_each_gemm_kernel([&](GemmKernel) {
    check_added_tensor<Conv2D<32, 3, 1, pad(1)>::Layer<Shape<33, 31, 16>>>(1, Mode::infer);  // direct
    check_added_tensor<Conv2D<32, 3, 1, pad(1)>::Layer<Shape<33, 31, 16>>>(2, Mode::infer);  // Winograd's, with tnet's kernels
    check_added_tensor<Conv2D<24, 3, 2, pad(1)>::Layer<Shape<9, 7, 5>>>(3, Mode::train);
    check_added_tensor<Conv2D<13, 1, 1, Padding::valid>::Layer<Shape<5, 3, 12>>>(2, Mode::infer);  // 1x1: the pixels where they lie
    check_added_tensor<Dense<13>::Layer<Shape<1, 1, 9>>>(3, Mode::infer);
  });
  check_added_tensor<DepthwiseConv2D<3, 1, pad(1)>::Layer<Shape<7, 5, 20>>>(2, Mode::infer);           // channels in blocks of 16
  check_added_tensor<DepthwiseConv2D<3, 2, Padding::same, 2>::Layer<Shape<7, 5, 6>>>(2, Mode::infer);  // a multiplier of 2
  check_added_tensor<BatchNorm::Layer<Shape<5, 3, 7>>>(3, Mode::train);
  check_added_tensor<BatchNorm::Layer<Shape<5, 3, 7>>>(3, Mode::infer);
  check_added_tensor<Residual<Conv2D<7, 3>, BatchNorm>::Layer<Shape<5, 3, 7>>>(2, Mode::infer);
}

TEST_CASE(
    "add_in_epilogue: a residual block's sum and the ReLU after it in its last layer's epilogue, the same bits as the layers one by one") {
  for (const int batch : {1, 2}) {  // batch 2: the identity block's convolutions by Winograd's minimal filtering
    for (const Mode mode : {Mode::infer, Mode::train}) {
      INFO("batch ", batch, (mode == Mode::infer ? " inference" : " training"));
      auto net = trained<Blocks>(batch, mode, 23);
      auto& chain = net->chain();
      auto check = [&]<Mode M>(std::integral_constant<Mode, M>) {
        CHECK(rule_against_layers<rules::AddInEpilogue<M>, 0, 2>(chain, batch, mode) == 0.0);  // identity block, ReLU
        CHECK(rule_against_layers<rules::AddInEpilogue<M>, 2, 2>(chain, batch, mode) == 0.0);  // projection block, ReLU
        CHECK(rule_against_layers<rules::AddInEpilogue<M>, 4, 1>(chain, batch, mode) == 0.0);  // inverted residual
        // Sabotage: the shortcut left out, or the ReLU before the sum, is caught.
        CHECK(rule_against_layers<AddSabotaged<M, true>, 0, 2>(chain, batch, mode) > 1e-3);
        CHECK(rule_against_layers<AddSabotaged<M, false>, 2, 2>(chain, batch, mode) > 1e-3);
        CHECK(rule_against_layers<AddSabotaged<M, true>, 4, 1>(chain, batch, mode) > 1e-3);
      };
      if (mode == Mode::infer) check(std::integral_constant<Mode, Mode::infer>{});
      else check(std::integral_constant<Mode, Mode::train>{});
      // The whole network: the plan's forward against the layers one by one.
      const Buffer x = test::random_values(std::size_t(batch) * Blocks::input_size, 29);
      net->forward(x, batch, mode);
      const Buffer fused(net->output().begin(), net->output().end());
      net->forward(x, batch, mode);
      const Buffer expected = layers_one_by_one<0, Blocks::depth>(chain, batch, mode);
      CHECK(relative_difference(fused.data(), expected.data(), expected.size()) == 0.0);
    }
  }
  // Training through the rule: gradients as the layers' own backward gives them.
  test::check_training_equals_layer_by_layer<Blocks>();
}

TEST_CASE("add_in_epilogue in torchvision's ResNet18 and MobileNetV2: every block as its layers one by one, bit for bit") {
  const int batch = 2;
  for (const Mode mode : {Mode::infer, Mode::train}) {
    INFO((mode == Mode::infer ? "inference" : "training"));
    auto resnet = trained<ResNet>(batch, mode, 31);
    auto mobile = trained<Mobile>(batch, mode, 37);
    auto check = [&]<Mode M>(std::integral_constant<Mode, M>) {
      [&]<std::size_t... B>(std::index_sequence<B...>) {
        (([&] {
           INFO("ResNet18 layer ", 4 + 2 * B);
           CHECK(rule_against_layers<rules::AddInEpilogue<M>, 4 + 2 * B, 2>(resnet->chain(), batch, mode) == 0.0);
         }()),
         ...);
      }(std::make_index_sequence<8>{});
      for_each_index<16, 25, 26, 35, 36, 37, 46, 47, 56, 57>([&]<std::size_t I>() {
        INFO("MobileNetV2 layer ", I);
        CHECK(rule_against_layers<rules::AddInEpilogue<M>, I, 1>(mobile->chain(), batch, mode) == 0.0);
      });
    };
    if (mode == Mode::infer) check(std::integral_constant<Mode, Mode::infer>{});
    else check(std::integral_constant<Mode, Mode::train>{});
  }
}

TEST_CASE("activation_in_epilogue: training's ReLU applied as the layer writes, the same bits as the layers one by one") {
  auto net = trained<Net>(4, Mode::train, 9);
  auto& chain = net->chain();
  CHECK(rule_against_layers<rules::ActivationInEpilogue, 1, 2>(chain, 4, Mode::train) == 0.0);  // BN ReLU
  CHECK(rule_against_layers<rules::ActivationInEpilogue, 3, 2>(chain, 4, Mode::train) == 0.0);  // Conv ReLU
  CHECK(rule_against_layers<rules::ActivationInEpilogue, 7, 2>(chain, 4, Mode::train) == 0.0);  // BN ReLU6
  CHECK(rule_against_layers<rules::ActivationInEpilogue, 9, 2>(chain, 4, Mode::train) == 0.0);  // Residual ReLU
  CHECK(rule_against_layers<ActivationLeftOut, 3, 2>(chain, 4, Mode::train) > 1e-3);
}

TEST_CASE("normalise_then_pool: training's batch normalisation read through by the max pool, and its backward from the pool's choices") {
  auto net = trained<Pooled>(3, Mode::train, 11);
  auto& chain = net->chain();
  // The pool chooses from x as the statistics are summed, in another order: rounding.
  CHECK(rule_against_layers<rules::NormaliseThenPool, 2, 2>(chain, 3, Mode::train) < 1e-6);
  CHECK(rule_against_layers<PoolUnnormalised, 2, 2>(chain, 3, Mode::train) > 1e-3);

  // Backward from the pool's gradient: the rule's, with and without the ReLU's mask, against the
  // pool's backward then the batch norm's (then the ReLU's).
  rules::NormaliseThenPool::forward<2, 2>(chain, 3, Pass{Mode::train});
  const int batch = 3;
  const std::size_t pooled = std::size_t(batch) * chain.output_size<3>(), normalised = std::size_t(batch) * chain.output_size<2>();
  const Buffer dy = test::random_values(pooled, 13);
  Buffer between(normalised), expected(normalised), got(normalised), masked(normalised);
  chain.layer<3>().backward(chain.output_of<2>(), chain.output_of<3>(), dy.data(), between.data(), batch);
  chain.layer<2>().backward(chain.input_of<2>(), nullptr, between.data(), expected.data(), batch);
  rules::NormaliseThenPool::backward<2, 2, false>(chain, dy.data(), got.data());
  CHECK(relative_difference(got.data(), expected.data(), normalised) < 1e-5);
  // Through the ReLU before it (layer 1, whose output is the batch norm's input): zero where it is.
  rules::NormaliseThenPool::backward<2, 2, true>(chain, dy.data(), masked.data());
  const float* relu_out = chain.input_of<2>();
  std::size_t zeros = 0;
  for (std::size_t i = 0; i < normalised; ++i) {
    if (relu_out[i] <= 0.0f) ++zeros, expected[i] = 0.0f;
  }
  REQUIRE(zeros > 0);
  CHECK(relative_difference(masked.data(), expected.data(), normalised) < 1e-5);
  // Sabotage: the mask left out is caught.
  CHECK(relative_difference(got.data(), expected.data(), normalised) > 1e-3);
}

TEST_CASE("relu_gradient: a batch normalisation's backward through the ReLU before it, bit for bit the two backwards") {
  auto net = trained<Net>(4, Mode::train, 15);
  auto& chain = net->chain();
  // Layers 4 (ReLU) and 5 (BatchNorm): the ReLU's output is the batch norm's input.
  const std::size_t n = std::size_t(4) * chain.output_size<5>();
  const Buffer dy = test::random_values(n, 17);
  Buffer between(n), expected(n), got(n), unmasked(n);
  chain.layer<5>().backward(chain.input_of<5>(), chain.output_of<5>(), dy.data(), between.data(), 4);
  chain.layer<4>().backward(chain.input_of<4>(), chain.input_of<5>(), between.data(), expected.data(), 4);
  chain.layer<5>().backward_where_positive(chain.input_of<5>(), chain.output_of<5>(), dy.data(), got.data(), 4);
  CHECK(relative_difference(got.data(), expected.data(), n) == 0.0);
  chain.layer<5>().backward(chain.input_of<5>(), chain.output_of<5>(), dy.data(), unmasked.data(), 4);
  CHECK(relative_difference(unmasked.data(), expected.data(), n) > 1e-3);  // sabotage: no mask
}

TEST_CASE("training through every rule equals training the layers one by one, and is independent of the thread count") {
  // The plans' forward and backward against each layer's own (as test_model.cpp checks for the
  // tutorial's shape of network): here the residual, depthwise and ReLU6 windows.
  test::check_training_equals_layer_by_layer<Net>();
  const int batch = 3;
  const Buffer x = test::random_values(std::size_t(batch) * Net::input_size, 19);
  const float targets[] = {1, 0, 1, 0, 0, 1, 1, 1, 0};
  auto run = [&](int threads) {
    set_num_threads(threads);
    auto net = std::make_unique<Net>(21);
    Buffer grad_input(x.size());
    net->compute_gradients(x, targets, batch, grad_input);
    Buffer all(grad_input);
    for (const ParamRef& p : net->parameters()) all.insert(all.end(), p.grad, p.grad + p.size);
    return all;
  };
  const int threads = num_threads();
  const Buffer one = run(1), two = run(2);
  set_num_threads(threads);
  REQUIRE(one.size() == two.size());
  CHECK(std::equal(one.begin(), one.end(), two.begin()));
}
