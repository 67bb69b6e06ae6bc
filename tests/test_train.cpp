// Optimizers against hand-written Keras formulas (PyTorch fixture for Adam), and the metrics.
#include "support.hpp"

using namespace tnet;

TEST_CASE("Adam follows Keras 2, decay and epsilon included (PyTorch fixture, 3 steps), with every gemm kernel") {
  const test::Fixture fx("layers.txt");
  // 10 values: the AVX-512 and AVX2 updates run them under a mask.
  test::with_each_gemm_kernel([&](GemmKernel) {
    Buffer w = fx.floats("adam.w0"), g(w.size());
    const ParamRef param{"w", w.data(), g.data(), w.size(), 0};
    const Parameters params{w, g, {&param, 1}};
    Adam adam(Adam::Options{.lr = 0.01, .decay = 0.1});
    for (int step = 0; step < 3; ++step) {
      const Buffer grad = fx.floats("adam.g" + std::to_string(step));
      std::copy(grad.begin(), grad.end(), g.begin());
      adam.step(params);
      CHECK_CLOSE_TO_FIXTURE(w.data(), fx["adam.w" + std::to_string(step + 1)], 1e-6);
    }
    CHECK(adam.iterations() == 3);
  });
}

TEST_CASE("Adam's update is Keras's formula for every value, on sizes around its lanes and blocks, with every gemm kernel") {
  const Rng rng(7);
  for (const std::size_t n : {std::size_t(1), std::size_t(7), std::size_t(16), std::size_t(17), std::size_t(16384 + 23)}) {
    INFO("n = ", n);
    test::with_each_gemm_kernel([&](GemmKernel) {
      Buffer w(n), g(n);
      for (std::size_t i = 0; i < n; ++i) w[i] = rng.uniform(i) * 2 - 1;
      std::vector<double> ref_w(w.begin(), w.end()), ref_m(n), ref_v(n);
      const ParamRef param{"w", w.data(), g.data(), n, 0};
      const Parameters params{w, g, {&param, 1}};
      const double lr = 0.01, beta1 = 0.9, beta2 = 0.999, epsilon = 1e-7;
      Adam adam(Adam::Options{.lr = lr});
      for (int step = 1; step <= 3; ++step) {
        // gradients of every size, zero and tiny ones included
        for (std::size_t i = 0; i < n; ++i) g[i] = i % 5 == 0 ? 0.0f : (rng.uniform(step * n + i) - 0.5f) * (i % 3 == 0 ? 1e-6f : 2.0f);
        adam.step(params);
        const double lr_t = lr * std::sqrt(1 - std::pow(beta2, step)) / (1 - std::pow(beta1, step));
        double worst = 0;
        for (std::size_t i = 0; i < n; ++i) {
          ref_m[i] = beta1 * ref_m[i] + (1 - beta1) * g[i];
          ref_v[i] = beta2 * ref_v[i] + (1 - beta2) * double(g[i]) * g[i];
          ref_w[i] -= lr_t * ref_m[i] / (std::sqrt(ref_v[i]) + epsilon);
          worst = std::max(worst, std::abs(w[i] - ref_w[i]));
        }
        INFO("step ", step);
        CHECK(worst < 1e-6);  // each step moves a weight by up to lr (0.01); float rounding of w is 6e-8
      }
    });
  }
}

TEST_CASE("SGD with momentum follows Keras 2") {
  Buffer w{1.0f, -2.0f}, g{0.5f, 0.25f};
  const ParamRef param{"w", w.data(), g.data(), 2, 0};
  const Parameters params{w, g, {&param, 1}};
  SGD sgd(SGD::Options{.lr = 0.1, .momentum = 0.9, .decay = 0.5});
  sgd.step(params);  // lr 0.1: v = -0.05, -0.025
  CHECK(w[0] == doctest::Approx(0.95));
  CHECK(w[1] == doctest::Approx(-2.025));
  sgd.step(params);  // lr 0.1 / 1.5: v = 0.9 v - lr g
  const double v0 = 0.9 * -0.05 - 0.1 / 1.5 * 0.5, v1 = 0.9 * -0.025 - 0.1 / 1.5 * 0.25;
  CHECK(w[0] == doctest::Approx(0.95 + v0));
  CHECK(w[1] == doctest::Approx(-2.025 + v1));
}

TEST_CASE("a changed learning rate takes effect at the next step and travels in the optimizer's state") {
  Buffer w{1.0f}, g{1.0f};
  const ParamRef param{"w", w.data(), g.data(), 1, 0};
  const Parameters params{w, g, {&param, 1}};
  SGD sgd(SGD::Options{.lr = 0.1});
  sgd.step(params);
  CHECK(w[0] == doctest::Approx(0.9));
  sgd.set_learning_rate(0.01);
  CHECK(sgd.learning_rate() == 0.01);
  sgd.step(params);
  CHECK(w[0] == doctest::Approx(0.89));
  SGD resumed;
  resumed.set_state(sgd.state(), params);
  CHECK(resumed.learning_rate() == 0.01);
  Adam adam;
  CHECK_THROWS_AS(adam.set_learning_rate(0.0), std::invalid_argument);
  CHECK(adam.learning_rate() == 1e-3);
}

TEST_CASE("optimizer options are validated") {
  CHECK_THROWS_AS(Adam(Adam::Options{.lr = 0}), std::invalid_argument);
  CHECK_THROWS_AS(Adam(Adam::Options{.beta1 = 1.0}), std::invalid_argument);
  CHECK_THROWS_AS(SGD(SGD::Options{.momentum = -0.1}), std::invalid_argument);
  CHECK_THROWS_WITH_AS(set_num_threads(0), "tnet::set_num_threads: n must be >= 1, got 0", std::invalid_argument);
}

TEST_CASE("metrics: binary accuracy, exact match, per-label precision, recall and F1") {
  // 3 samples x 3 labels.
  const float probabilities[] = {0.9f, 0.2f, 0.6f,  //
                                 0.1f, 0.7f, 0.4f,  //
                                 0.8f, 0.3f, 0.55f};
  const float targets[] = {1, 0, 1,  //
                           0, 1, 1,  //
                           1, 1, 0};
  MultiLabelMetrics m(3);
  m.update(probabilities, targets, 3);
  CHECK(m.samples() == 3);
  CHECK(m.binary_accuracy() == doctest::Approx(6.0 / 9.0));
  CHECK(m.exact_match() == doctest::Approx(1.0 / 3.0));
  CHECK(m.label(0).precision == doctest::Approx(1.0));
  CHECK(m.label(0).recall == doctest::Approx(1.0));
  CHECK(m.label(1).precision == doctest::Approx(1.0));
  CHECK(m.label(1).recall == doctest::Approx(0.5));
  CHECK(m.label(1).f1 == doctest::Approx(2.0 / 3.0));
  CHECK(m.label(2).precision == doctest::Approx(0.5));  // predicted for samples 0 and 2, right once
  CHECK(m.label(2).recall == doctest::Approx(0.5));
  CHECK(m.label(2).support == 2);
  CHECK(binary_accuracy(probabilities, targets, 3, 3) == doctest::Approx(6.0 / 9.0));
}

TEST_CASE("add_to_mean keeps the running mean of several networks' weights") {
  using Tiny = Sequential<Input<4, 4, 2>, Conv2D<3, 3>, BatchNorm, Flatten, Dense<2>, Sigmoid>;
  Tiny a(1), b(2), c(3), mean(4);
  add_to_mean(mean.parameters(), a.parameters(), 1);
  const std::span<const float> mv = mean.parameters().values, av = a.parameters().values, bv = b.parameters().values,
                               cv = c.parameters().values;
  CHECK(std::equal(av.begin(), av.end(), mv.begin(), mv.end()));  // the first is copied exactly
  add_to_mean(mean.parameters(), b.parameters(), 2);
  add_to_mean(mean.parameters(), c.parameters(), 3);
  double largest_error = 0;
  for (std::size_t j = 0; j < mv.size(); ++j)
    largest_error = std::max(largest_error, std::abs(double(mv[j]) - (double(av[j]) + double(bv[j]) + double(cv[j])) / 3.0));
  CHECK(mv.size() == (54 + 3) + (3 + 3) + (48 * 2 + 2));
  CHECK(largest_error < 1e-6);
  CHECK(mv[0] != av[0]);

  Sequential<Input<4, 4, 2>, Conv2D<4, 3>, BatchNorm, Flatten, Dense<2>, Sigmoid> other(5);
  CHECK_THROWS_WITH_AS(add_to_mean(mean.parameters(), other.parameters(), 2),
                       "tnet::add_to_mean: tensor 0.conv2d.kernel (54 values) does not match 0.conv2d.kernel (72 values)",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(add_to_mean(mean.parameters(), a.parameters(), 0), "tnet::add_to_mean: count must be >= 1, got 0",
                       std::invalid_argument);
}

TEST_CASE("shard_of shares a batch in rank order, as evenly as it goes") {
  for (int batch : {3, 7, 32, 33})
    for (int size : {1, 2, 3}) {
      int next = 0;
      for (int rank = 0; rank < size; ++rank) {
        const Shard s = shard_of(batch, rank, size);
        CHECK(s.offset == next);
        CHECK(s.global_batch == batch);
        CHECK((s.count == batch / size || s.count == batch / size + 1));
        next += s.count;
      }
      CHECK(next == batch);
    }
  CHECK_THROWS_WITH_AS(shard_of(1, 0, 2), "tnet::shard_of: a batch of 1 cannot be shared by 2 processes (each needs at least one sample)",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(shard_of(4, 2, 2), "tnet::shard_of: rank 2 of 2 processes", std::invalid_argument);
}

namespace {
// A group in which the other processes passed `others` to same_everywhere: sum() adds what their
// calls would have added.
struct OthersSaid final : Reducer {
  explicit OthersSaid(std::vector<std::uint64_t> values) : others(std::move(values)) {}
  std::vector<std::uint64_t> others;
  int rank() const override { return 0; }
  int size() const override { return 1 + int(others.size()); }
  void sum(std::span<double> values) override {
    for (std::uint64_t value : others)
      for (int q = 0; q < 4; ++q) {
        const double x = double((value >> (16 * q)) & 0xffff);
        values[std::size_t(2 * q)] += x, values[std::size_t(2 * q + 1)] += x * x;
      }
  }
  void gradients_ready(std::span<float>) override {}
  void finish_gradients() override {}
};

bool alike(std::vector<std::uint64_t> others, std::uint64_t mine) {
  OthersSaid group(std::move(others));
  return same_everywhere(group, mine);
}
}  // namespace

TEST_CASE("same_everywhere tells whether every process passed the same value") {
  const std::uint64_t v = 0x0123456789abcdefull;
  CHECK(alike({}, v));
  CHECK(alike({v, v, v}, v));
  for (int bit : {0, 17, 40, 63}) CHECK(!alike({v, v ^ (1ull << bit)}, v));
  // Sums alike, values not: 2 against 1 and 3 in every quarter.
  CHECK(!alike({0x0001000100010001ull, 0x0003000300030003ull}, 0x0002000200020002ull));
  CHECK(!alike({~0ull}, 0));
}
