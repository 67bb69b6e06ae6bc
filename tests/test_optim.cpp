// Learning-rate schedules, AdamW, L2 and gradient clipping, the imbalanced-label losses, the F1
// and average-precision metrics and decision thresholds: against PyTorch fixtures
// (tests/fixtures/make_optim_fixtures.py), hand formulas and finite differences.
#include "support.hpp"

using namespace tnet;

namespace {

// One parameter array over two tensors, as a network's (clipping's norm is over both).
struct TwoTensors {
  Buffer values, grads;
  std::vector<ParamRef> tensors;
  TwoTensors(const Buffer& a, const Buffer& b) : values(a), grads(a.size() + b.size()) {
    values.insert(values.end(), b.begin(), b.end());
    tensors = {ParamRef{"a", values.data(), grads.data(), a.size(), 0},
               ParamRef{"b", values.data() + a.size(), grads.data() + a.size(), b.size(), a.size()}};
  }
  Parameters params() { return {values, grads, tensors}; }
  void set_grads(const Buffer& ga, const Buffer& gb) {
    std::copy(ga.begin(), ga.end(), grads.begin());
    std::copy(gb.begin(), gb.end(), grads.begin() + std::ptrdiff_t(ga.size()));
  }
};

std::vector<double> joined(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> v = a;
  v.insert(v.end(), b.begin(), b.end());
  return v;
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size_bytes()) == 0;
}

}  // namespace

TEST_CASE("schedules give PyTorch's rates: StepLR, LinearLR + CosineAnnealingLR, OneCycleLR") {
  const test::Fixture fx("optim.txt");
  auto check = [&](const Schedule& schedule, double lr, const std::string& name) {
    INFO(name);
    schedule.validate("test");
    const std::vector<double>& expected = fx["lr." + name];
    for (std::size_t k = 0; k < expected.size(); ++k) {
      INFO("step ", k);
      CHECK(schedule.rate(lr, k) == doctest::Approx(expected[k]).epsilon(1e-7));
    }
  };
  check(Schedule::step(3, 0.5), 0.1, "step");
  check(Schedule::cosine(12, 4, 0.05, 0.1), 0.02, "cosine");
  check(Schedule::one_cycle(20), 0.01, "one_cycle");
  check(Schedule::one_cycle(9, 0.5, 10, 100), 0.5, "one_cycle_pct");
  // After the last step: the final rate.
  CHECK(Schedule::cosine(12, 4, 0.05).rate(0.02, 12) == doctest::Approx(0.001));
  CHECK(Schedule::cosine(12, 4, 0.05).rate(0.02, 1000) == doctest::Approx(0.001));
  CHECK(Schedule::one_cycle(20).rate(0.01, 25) == doctest::Approx(0.01 / 25 / 1e4));
}

TEST_CASE("an optimizer's step uses its schedule's rate at its iteration count, next_learning_rate shows it") {
  Buffer w{0.0f}, g{1.0f};
  const ParamRef param{"w", w.data(), g.data(), 1, 0};
  const Parameters params{w, g, {&param, 1}};
  SGD sgd(SGD::Options{.lr = 0.1, .schedule = Schedule::step(2, 0.5)});
  const double expected[] = {0.1, 0.1, 0.05, 0.05, 0.025};
  double position = 0;
  for (const double rate : expected) {
    CHECK(sgd.next_learning_rate() == doctest::Approx(rate));
    sgd.step(params);
    position -= rate;
    CHECK(w[0] == doctest::Approx(position).epsilon(1e-6));
  }
  // The base rate a callback changes is what the schedule shapes.
  sgd.set_learning_rate(1.0);
  CHECK(sgd.next_learning_rate() == doctest::Approx(0.25));
  // Keras's decay is the constant schedule's: lr / (1 + decay k), computed as before.
  const Adam adam(Adam::Options{.lr = 0.01, .decay = 0.1});
  CHECK(adam.learning_rate_at(3) == 0.01 / (1.0 + 0.1 * 3.0));
  CHECK_THROWS_WITH_AS(
      Adam(Adam::Options{.decay = 0.1, .schedule = Schedule::cosine(10)}),
      "tnet::Adam: decay (Keras's time-based schedule) and a cosine (10 steps, 0 of warm-up) schedule cannot both be given",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(AdamW(AdamW::Options{.schedule = Schedule::cosine(10, 10)}),
                       "tnet::AdamW: cosine (10 steps, 10 of warm-up) schedule: total_steps must exceed warmup_steps",
                       std::invalid_argument);
  CHECK_THROWS_AS(SGD(SGD::Options{.schedule = Schedule::one_cycle(2)}), std::invalid_argument);
  CHECK_THROWS_AS(SGD(SGD::Options{.schedule = Schedule::step(0)}), std::invalid_argument);
  CHECK_THROWS_AS(SGD(SGD::Options{.clip_norm = -1}), std::invalid_argument);
  CHECK_THROWS_AS(Adam(Adam::Options{.weight_decay = -0.1}), std::invalid_argument);
}

TEST_CASE("Adam with default options is today's update, bit for bit, with every gemm kernel") {
  // The update before schedules, L2 and clipping existed, written out: the same expressions.
  test::with_each_gemm_kernel([&](GemmKernel) {
    const std::size_t n = 16384 + 37;
    Buffer w = test::random_values(n, 3), g(n), expected_w = w, m(n), v(n);
    const ParamRef param{"w", w.data(), g.data(), n, 0};
    const Parameters params{w, g, {&param, 1}};
    Adam adam(Adam::Options{.lr = 0.01, .decay = 0.1});
    for (std::uint64_t k = 0; k < 3; ++k) {
      const Buffer grad = test::random_values(n, 10 + k);
      std::copy(grad.begin(), grad.end(), g.begin());  // in place: the parameters point at g
      adam.step(params);
      const double t = double(k + 1);
      const float lr_t =
          static_cast<float>(0.01 / (1.0 + 0.1 * double(k)) * std::sqrt(1.0 - std::pow(0.999, t)) / (1.0 - std::pow(0.9, t)));
      const detail::AdamStep old{
          .b1 = 0.9f, .b2 = 0.999f, .lr_t = lr_t, .eps = 1e-7f, .w = expected_w.data(), .g = g.data(), .m = m.data(), .v = v.data()};
      const detail::Target target = detail::target_of(gemm_kernel());
      for_blocks(std::ptrdiff_t(n), 16384, [=](std::ptrdiff_t begin, std::ptrdiff_t end) { old(target, begin, end); });
      CHECK(same_bits(w, expected_w));
    }
  });
}

TEST_CASE("AdamW with clip_grad_norm_ follows PyTorch (fixture, 5 steps over two tensors), with every gemm kernel") {
  const test::Fixture fx("optim.txt");
  test::with_each_gemm_kernel([&](GemmKernel) {
    TwoTensors p(fx.floats("adamw.a0"), fx.floats("adamw.b0"));
    AdamW adamw(AdamW::Options{.lr = 0.01, .weight_decay = 0.1, .clip_norm = 1.0});
    for (int step = 0; step < 5; ++step) {
      INFO("step ", step);
      p.set_grads(fx.floats("adamw.ga" + std::to_string(step)), fx.floats("adamw.gb" + std::to_string(step)));
      const Buffer grads_before = p.grads;
      adamw.step(p.params());
      CHECK(adamw.last_gradient_norm() == doctest::Approx(fx.scalar("adamw.norm" + std::to_string(step))).epsilon(1e-6));
      CHECK_CLOSE_TO_FIXTURE(p.values.data(), joined(fx["adamw.a" + std::to_string(step + 1)], fx["adamw.b" + std::to_string(step + 1)]),
                             2e-6);
      CHECK(same_bits(p.grads, grads_before));  // the clipping scales inside the update
    }
  });
}

TEST_CASE("gradient clipping is clip_grad_norm_'s over every tensor (fixture), and does not depend on the thread count") {
  const test::Fixture fx("optim.txt");
  // SGD at lr 1 from w = 0 moves each weight by minus its clipped gradient.
  TwoTensors p(Buffer(7, 0.0f), Buffer(13, 0.0f));
  p.set_grads(fx.floats("clip.ga"), fx.floats("clip.gb"));
  SGD sgd(SGD::Options{.lr = 1.0, .clip_norm = 0.5});
  sgd.step(p.params());
  CHECK(sgd.last_gradient_norm() == doctest::Approx(fx.scalar("clip.norm")).epsilon(1e-6));
  std::vector<double> expected = joined(fx["clip.ga_clipped"], fx["clip.gb_clipped"]);
  for (double& e : expected) e = -e;
  CHECK_CLOSE_TO_FIXTURE(p.values.data(), expected, 1e-6);

  // A norm below the limit leaves the gradient as it is.
  SGD loose(SGD::Options{.lr = 1.0, .clip_norm = 100.0});
  TwoTensors q(Buffer(7, 0.0f), Buffer(13, 0.0f));
  q.set_grads(fx.floats("clip.ga"), fx.floats("clip.gb"));
  loose.step(q.params());
  for (std::size_t i = 0; i < q.values.size(); ++i) CHECK(q.values[i] == -q.grads[i]);

  // Several blocks of the norm's sum: the same bits with 1 and 2 threads, with every kernel.
  const int threads_before = num_threads();
  test::with_each_gemm_kernel([&](GemmKernel) {
    const std::size_t n = 3 * 16384 + 11;
    std::vector<Buffer> results;
    for (const int threads : {1, 2}) {
      set_num_threads(threads);
      Buffer w = test::random_values(n, 5), g = test::random_values(n, 6, 0.01f);
      const ParamRef param{"w", w.data(), g.data(), n, 0};
      const Parameters params{w, g, {&param, 1}};
      AdamW adamw(AdamW::Options{.clip_norm = 0.3, .schedule = Schedule::cosine(10, 3)});
      for (int s = 0; s < 3; ++s) adamw.step(params);
      results.push_back(w);
    }
    CHECK(same_bits(results[0], results[1]));
  });
  set_num_threads(threads_before);
}

TEST_CASE("L2 weight decay: SGD follows PyTorch's SGD(weight_decay) (fixture), Adam adds it to the clipped gradient") {
  const test::Fixture fx("optim.txt");
  Buffer w = fx.floats("sgd_l2.w0"), g(w.size());
  const ParamRef param{"w", w.data(), g.data(), w.size(), 0};
  const Parameters params{w, g, {&param, 1}};
  SGD sgd(SGD::Options{.lr = 0.1, .weight_decay = 0.05});
  for (int step = 0; step < 3; ++step) {
    const Buffer grad = fx.floats("sgd_l2.g" + std::to_string(step));
    std::copy(grad.begin(), grad.end(), g.begin());
    sgd.step(params);
    CHECK_CLOSE_TO_FIXTURE(w.data(), fx["sgd_l2.w" + std::to_string(step + 1)], 1e-6);
  }

  // Adam (Keras's update) on g' = c g + weight_decay w, c clip_grad_norm_'s factor.
  test::with_each_gemm_kernel([&](GemmKernel) {
    const std::size_t n = 37;
    Buffer x = test::random_values(n, 8), gx(n);
    std::vector<double> ref(x.begin(), x.end()), m(n), v(n);
    const ParamRef px{"x", x.data(), gx.data(), n, 0};
    const Parameters xs{x, gx, {&px, 1}};
    const double lr = 0.01, wd = 0.2, clip = 0.5;
    Adam adam(Adam::Options{.lr = lr, .weight_decay = wd, .clip_norm = clip});
    for (int step = 1; step <= 3; ++step) {
      const Buffer grad = test::random_values(n, 20 + std::uint64_t(step));
      std::copy(grad.begin(), grad.end(), gx.begin());
      double norm = 0;
      for (const float gi : gx) norm += double(gi) * gi;
      const double c = std::min(1.0, clip / (std::sqrt(norm) + 1e-6));
      adam.step(xs);
      const double lr_t = lr * std::sqrt(1 - std::pow(0.999, step)) / (1 - std::pow(0.9, step));
      double worst = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const double gi = c * gx[i] + wd * ref[i];
        m[i] = 0.9 * m[i] + 0.1 * gi;
        v[i] = 0.999 * v[i] + 0.001 * gi * gi;
        ref[i] -= lr_t * m[i] / (std::sqrt(v[i]) + 1e-7);
        worst = std::max(worst, std::abs(x[i] - ref[i]));
      }
      INFO("step ", step);
      CHECK(worst < 1e-6);
    }
  });
}

TEST_CASE("a resumed run inside a cosine warm-up continues bit for bit: schedule, weight decay and clipping in the model file") {
  using Tiny = Sequential<Input<4, 4, 2>, Conv2D<3, 3>, BatchNorm, Flatten, Dense<2>, Sigmoid>;
  const test::TempDir dir("optim_resume");
  const Buffer x = test::random_values(4 * 32, 1);
  const Buffer y{1, 0, 0, 1, 1, 1, 0, 0};
  const AdamW::Options options{.lr = 0.01, .weight_decay = 0.05, .clip_norm = 0.5, .schedule = Schedule::cosine(20, 8, 0.1)};

  Tiny straight(7);
  AdamW adamw(options);
  for (int s = 0; s < 3; ++s) straight.train_step(x, y, 4, adamw);
  save_model(dir / "m.tnet", straight, {}, &adamw);
  for (int s = 0; s < 3; ++s) straight.train_step(x, y, 4, adamw);  // steps 3-5, still warming up

  Tiny resumed(99);
  AdamW fresh;  // other options: the file's state replaces them
  load_model(dir / "m.tnet", resumed, &fresh);
  CHECK(fresh.iterations() == 3);
  CHECK(fresh.schedule().kind == Schedule::Kind::cosine);
  CHECK(fresh.schedule().warmup_steps == 8);
  CHECK(fresh.options().weight_decay == 0.05);
  CHECK(fresh.options().clip_norm == 0.5);
  CHECK(fresh.next_learning_rate() == options.schedule.rate(0.01, 3));
  for (int s = 0; s < 3; ++s) resumed.train_step(x, y, 4, fresh);
  CHECK(same_bits(resumed.parameters().values, straight.parameters().values));
  CHECK(same_bits(fresh.slots()[0], adamw.slots()[0]));
  CHECK(same_bits(fresh.slots()[1], adamw.slots()[1]));
}

TEST_CASE("an optimizer state written before schedules, weight decay and clipping still loads, meaning none of them") {
  Buffer w{1.0f}, g{1.0f};
  const ParamRef param{"w", w.data(), g.data(), 1, 0};
  const Parameters params{w, g, {&param, 1}};
  Adam adam(Adam::Options{.weight_decay = 0.1, .clip_norm = 1, .schedule = Schedule::step(5)});
  const OptimizerState old{"Adam", 12, {{"lr", 0.002}, {"beta1", 0.9}, {"beta2", 0.999}, {"epsilon", 1e-7}, {"decay", 0.01}}, {}};
  adam.set_state(old, params);
  CHECK(adam.iterations() == 12);
  CHECK(adam.options().weight_decay == 0);
  CHECK(adam.options().clip_norm == 0);
  CHECK(adam.schedule().kind == Schedule::Kind::constant);
  CHECK(adam.next_learning_rate() == 0.002 / (1.0 + 0.01 * 12));
  SGD sgd;
  sgd.set_state({"SGD", 1, {{"lr", 0.1}, {"momentum", 0.5}, {"decay", 0}, {"nesterov", 0}}, {}}, params);
  CHECK(sgd.options().momentum == 0.5);
  // A state whose values the options refuse changes nothing.
  OptimizerState bad = adam.state();
  for (auto& [name, value] : bad.hyper_parameters)
    if (name == "schedule") value = 7;
  CHECK_THROWS_WITH_AS(adam.set_state(bad, params), "optimizer state has an unknown schedule (7)", std::invalid_argument);
  CHECK(adam.iterations() == 12);
  // AdamW is new: its state has every hyper-parameter.
  AdamW adamw;
  CHECK_THROWS_WITH_AS(adamw.set_state({"AdamW", 0, {{"lr", 0.1}, {"beta1", 0.9}, {"beta2", 0.999}, {"epsilon", 1e-8}}, {}}, params),
                       "optimizer state lacks hyper-parameter 'weight_decay'", std::invalid_argument);
}

TEST_CASE("binary cross-entropy with pos_weight is BCEWithLogitsLoss's (fixture), its gradient the finite differences'") {
  const test::Fixture fx("optim.txt");
  Buffer z = fx.floats("loss.logits");
  const Buffer y = fx.floats("loss.targets"), w = fx.floats("bce_pw.pos_weight");
  Buffer grad(z.size());
  const double loss = weighted_binary_crossentropy(z.data(), y.data(), 12, w.data(), 3, grad.data());
  CHECK(loss == doctest::Approx(fx.scalar("bce_pw.loss")).epsilon(1e-6));
  CHECK_CLOSE_TO_FIXTURE(grad.data(), fx["bce_pw.grad"], 1e-6);
  // Finite differences away from the saturated logits (12, -20), where float steps lose the slope.
  Buffer moderate = z;
  moderate[5] = 1.5f;
  moderate[7] = -2.0f;
  weighted_binary_crossentropy(moderate.data(), y.data(), 12, w.data(), 3, grad.data());
  CHECK(test::compare_with_differences(
            moderate.data(), grad.data(), 12, [&] { return weighted_binary_crossentropy(moderate.data(), y.data(), 12, w.data(), 3); },
            1e-3) < 1e-4);
  // Weights of 1 are plain binary cross-entropy (unclipped: no logit here reaches Keras's clip).
  const Buffer ones(3, 1.0f);
  Buffer plain_grad(12), weighted_grad(12);
  CHECK(weighted_binary_crossentropy(moderate.data(), y.data(), 12, ones.data(), 3, weighted_grad.data()) ==
        doctest::Approx(binary_crossentropy(moderate.data(), y.data(), 12, plain_grad.data())).epsilon(1e-12));
  for (std::size_t i = 0; i < 12; ++i) CHECK(weighted_grad[i] == doctest::Approx(plain_grad[i]).epsilon(1e-6));
}

TEST_CASE("sigmoid focal loss is torchvision's (fixture, with and without alpha), its gradient the finite differences'") {
  const test::Fixture fx("optim.txt");
  for (const std::string name : {"focal", "focal_no_alpha"}) {
    INFO(name);
    Buffer z = fx.floats("loss.logits");
    const Buffer y = fx.floats("loss.targets");
    const double alpha = fx.scalar(name + ".alpha"), gamma = fx.scalar(name + ".gamma");
    Buffer grad(12);
    CHECK(sigmoid_focal_loss(z.data(), y.data(), 12, alpha, gamma, grad.data()) ==
          doctest::Approx(fx.scalar(name + ".loss")).epsilon(1e-6));
    CHECK_CLOSE_TO_FIXTURE(grad.data(), fx[name + ".grad"], 1e-5);
    z[5] = 1.5f;
    z[7] = -2.0f;
    sigmoid_focal_loss(z.data(), y.data(), 12, alpha, gamma, grad.data());
    CHECK(test::compare_with_differences(
              z.data(), grad.data(), 12, [&] { return sigmoid_focal_loss(z.data(), y.data(), 12, alpha, gamma); }, 1e-3) < 1e-3);
  }
}

TEST_CASE("a network trains with pos_weight or the focal loss when set, the default loss is unchanged") {
  using Net = Sequential<Input<4, 4, 2>, Conv2D<3, 3>, Flatten, Dense<3>, Sigmoid>;
  using Logits = Sequential<Input<4, 4, 2>, Conv2D<3, 3>, Flatten, Dense<3>>;
  const Buffer x = test::random_values(2 * 32, 4);
  const Buffer y{1, 0, 1, 0, 0, 1};
  Net net(3);
  Logits logits(3);
  logits.set_loss(Loss::binary_crossentropy);
  // The default: Keras's binary cross-entropy of the logits below the sigmoid.
  const double plain = net.evaluate(x, y, 2);
  const std::span<const float> predicted = logits.predict(x, 2);
  const Buffer z(predicted.begin(), predicted.end());
  CHECK(plain == binary_crossentropy(z.data(), y.data(), 6));
  CHECK(logits.evaluate(x, y, 2) == plain);

  const std::vector<float> weights = positive_weights(y.data(), 2, 3);
  CHECK(weights == std::vector<float>{1.0f, 1.0f, 1.0f});                                     // each label once positive, once negative
  const Buffer many{1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0};                                      // 4 samples
  CHECK(positive_weights(many.data(), 4, 3) == std::vector<float>{1.0f / 3.0f, 3.0f, 1.0f});  // label 2: no positives

  const std::vector<float> pos_weight{2.0f, 0.5f, 4.0f};
  net.set_loss(Loss::binary_crossentropy, {.pos_weight = pos_weight});
  CHECK(net.evaluate(x, y, 2) == weighted_binary_crossentropy(z.data(), y.data(), 6, pos_weight.data(), 3));
  net.set_loss(Loss::sigmoid_focal, {.alpha = 0.5, .gamma = 1.5});
  CHECK(net.evaluate(x, y, 2) == sigmoid_focal_loss(z.data(), y.data(), 6, 0.5, 1.5));
  logits.set_loss(Loss::sigmoid_focal);
  CHECK(logits.evaluate(x, y, 2) == sigmoid_focal_loss(z.data(), y.data(), 6, 0.25, 2.0));
  // Its gradient reaches the weights: the focal loss's, through the sigmoid.
  const double before = logits.compute_gradients(x, y, 2);
  CHECK(before == sigmoid_focal_loss(z.data(), y.data(), 6, 0.25, 2.0));
  Parameters p = logits.parameters();
  Buffer analytic(p.grads.begin(), p.grads.end());
  // Each evaluation through a fresh parameters(): inference reads the kernels packed from the
  // weights at the first inference after it (Sequential::predict).
  const auto loss = [&] {
    logits.parameters();
    return logits.evaluate(x, y, 2);
  };
  CHECK(test::compare_with_differences(p.values.data(), analytic.data(), p.values.size(), loss, 1e-2, 40) < 2e-2);
  net.set_loss(Loss::binary_crossentropy);
  CHECK(net.evaluate(x, y, 2) == plain);

  CHECK_THROWS_WITH_AS(net.set_loss(Loss::binary_crossentropy, {.pos_weight = {1.0f, 2.0f}}),
                       "tnet::Sequential::set_loss: pos_weight has 2 weights; the network has 3 outputs", std::invalid_argument);
  CHECK_THROWS_WITH_AS(net.set_loss(Loss::sigmoid_focal, {.pos_weight = pos_weight}),
                       "tnet::Sequential::set_loss: pos_weight is for binary cross-entropy, not sigmoid focal loss", std::invalid_argument);
  CHECK_THROWS_AS(net.set_loss(Loss::sigmoid_focal, {.gamma = -1}), std::invalid_argument);
  Sequential<Input<4, 4, 2>, Flatten, Dense<3>, Softmax> softmax(1);
  CHECK_THROWS_AS(softmax.set_loss(Loss::sigmoid_focal), std::invalid_argument);
  CHECK(net.loss() == Loss::binary_crossentropy);
}

TEST_CASE("metrics: macro and micro F1, average precision as scikit-learn computes it (fixture), per-label thresholds") {
  const float probabilities[] = {0.9f, 0.2f, 0.6f,  //
                                 0.1f, 0.7f, 0.4f,  //
                                 0.8f, 0.3f, 0.55f};
  const float targets[] = {1, 0, 1,  //
                           0, 1, 1,  //
                           1, 1, 0};
  MultiLabelMetrics m(3);
  m.update(probabilities, targets, 3);
  // F1 per label: 1, 2/3, 1/2; counts summed: TP 4, FP 1, FN 2.
  CHECK(m.macro_f1() == doctest::Approx((1.0 + 2.0 / 3.0 + 0.5) / 3.0));
  CHECK(m.micro_f1() == doctest::Approx(8.0 / 11.0));
  // Label 2 at 0.58: predicted only for sample 0, right.
  MultiLabelMetrics own({0.5f, 0.5f, 0.58f});
  own.update(probabilities, targets, 3);
  CHECK(own.label(2).precision == 1.0);
  CHECK(own.label(2).recall == 0.5);
  CHECK(own.binary_accuracy() == doctest::Approx(7.0 / 9.0));

  const test::Fixture fx("optim.txt");
  const Buffer scores = fx.floats("ap.scores"), truth = fx.floats("ap.targets");
  MultiLabelScores s(4);
  s.update(scores.data(), truth.data(), 5);
  s.update(scores.data() + 20, truth.data() + 20, 3);
  CHECK(s.samples() == 8);
  const std::vector<double>& per_label = fx["ap.per_label"];
  for (int l = 0; l < 4; ++l) {
    INFO("label ", l);
    if (per_label[std::size_t(l)] < 0) CHECK(std::isnan(s.average_precision(l)));
    else CHECK(s.average_precision(l) == doctest::Approx(per_label[std::size_t(l)]).epsilon(1e-9));
  }
  CHECK(s.macro_average_precision() == doctest::Approx(fx.scalar("ap.macro")).epsilon(1e-9));
  CHECK(s.micro_average_precision() == doctest::Approx(fx.scalar("ap.micro")).epsilon(1e-9));
  MultiLabelMetrics direct(4);
  direct.update(scores.data(), truth.data(), 8);
  CHECK(s.metrics().binary_accuracy() == direct.binary_accuracy());
  CHECK(s.metrics().micro_f1() == direct.micro_f1());
}

TEST_CASE("best_thresholds maximise each label's F1 on the validation scores, ties go to the higher threshold") {
  // Label 0, ranked: 0.9 (+), 0.6, 0.4, 0.2 (+), 0.05. F1 of the cuts: 2/3, 2/4, 2/5, 4/6, 4/7: the
  // first and the fourth tie, and the higher threshold, between 0.9 and 0.6, wins.
  // Label 1: no positives: 0.5. Label 2: a perfect split between 0.8 and 0.4.
  const float p[] = {0.9f, 0.1f, 0.8f, 0.6f, 0.2f, 0.9f, 0.4f, 0.3f, 0.4f, 0.2f, 0.4f, 0.1f, 0.05f, 0.5f, 0.2f};
  const float y[] = {1, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0};
  MultiLabelScores s(3);
  s.update(p, y, 5);
  const std::vector<float> t = s.best_thresholds();
  CHECK(t[0] == doctest::Approx(0.75));
  CHECK(t[1] == 0.5f);
  CHECK(t[2] == doctest::Approx(0.6));
  CHECK(s.metrics(t).label(0).f1 == doctest::Approx(2.0 / 3.0));
  CHECK(s.metrics(t).label(2).f1 == 1.0);

  // On random scores, no threshold does better than the one chosen.
  const std::size_t n = 200;
  Buffer scores = test::random_values(n * 2, 11), truth(n * 2);
  for (std::size_t i = 0; i < n * 2; ++i) {
    scores[i] = std::abs(scores[i]);
    truth[i] = test::random_values(1, 100 + i)[0] + scores[i] > 0.4f ? 1.0f : 0.0f;
  }
  MultiLabelScores r(2);
  r.update(scores.data(), truth.data(), std::ptrdiff_t(n));
  const std::vector<float> chosen = r.best_thresholds();
  for (int l = 0; l < 2; ++l) {
    const double best = r.metrics(chosen).label(l).f1;
    for (int k = 0; k <= 1000; ++k) {
      std::vector<float> other = chosen;
      other[std::size_t(l)] = float(k) / 1000.0f;
      CHECK(r.metrics(other).label(l).f1 <= best);
    }
  }
  // Adjacent floats: the threshold still separates them.
  const float close[] = {0.5f, std::nextafter(0.5f, 0.0f)};
  const float split[] = {1, 0};
  MultiLabelScores c(1);
  c.update(close, split, 2);
  CHECK(c.metrics(c.best_thresholds()).label(0).f1 == 1.0);
}

TEST_CASE("decision thresholds travel in the model file, a file without them means 0.5") {
  using Tiny = Sequential<Input<4, 4, 2>, Flatten, Dense<dynamic>, Sigmoid>;
  const test::TempDir dir("thresholds");
  Tiny net(Outputs{3}, 1);
  const std::vector<float> thresholds{0.25f, 0.1f + 1e-7f, 0.875f};
  std::map<std::string, std::string> metadata{{"epoch", "3"}};
  set_thresholds(metadata, thresholds);
  save_model(dir / "t.tnet", net, {"a", "b", "c"}, nullptr, metadata);
  Tiny loaded(Outputs{3}, 2);
  const ModelFileInfo info = load_model(dir / "t.tnet", loaded);
  CHECK(info.thresholds == thresholds);  // exactly
  CHECK(info.metadata == std::map<std::string, std::string>{{"epoch", "3"}});
  CHECK(info.thresholds_or(3) == thresholds);

  save_model(dir / "plain.tnet", net);
  const ModelFileInfo plain = load_model(dir / "plain.tnet", loaded);
  CHECK(plain.thresholds.empty());
  CHECK(plain.thresholds_or(3) == std::vector<float>{0.5f, 0.5f, 0.5f});

  std::map<std::string, std::string> wrong;
  set_thresholds(wrong, std::vector<float>{0.5f, 0.5f});
  CHECK_THROWS_WITH_AS(save_model(dir / "w.tnet", net, {}, nullptr, wrong),
                       ("tnet::save_model: " + (dir / "w.tnet") + ": decision thresholds: 2 thresholds for a network of 3 outputs").c_str(),
                       std::invalid_argument);
  CHECK(!std::filesystem::exists(dir / "w.tnet"));
  wrong[thresholds_key] = "0.5 1.5 0.2";
  CHECK_THROWS_WITH_AS(save_model(dir / "w.tnet", net, {}, nullptr, wrong),
                       ("tnet::save_model: " + (dir / "w.tnet") + ": decision thresholds: '1.5' is not a threshold in [0, 1]").c_str(),
                       std::invalid_argument);
}

TEST_CASE("a model file written before schedules and thresholds (tests/fixtures/fuzz/model/adam.tnet) loads: constant rate, 0.5") {
  using Net = Sequential<Input<4, 4, 2>, Conv2D<3, 3>, ReLU, BatchNorm, Flatten, Dense<dynamic>, Sigmoid>;
  const std::string path = std::string(TNET_FIXTURE_DIR) + "/fuzz/model/adam.tnet";
  Net net(Outputs{read_model_outputs<Net>(path)}, 1);
  Adam adam(Adam::Options{.weight_decay = 0.1, .clip_norm = 2, .schedule = Schedule::one_cycle(100)});
  const ModelFileInfo info = load_model(path, net, &adam);
  CHECK(info.has_optimizer_state);
  CHECK(adam.iterations() == 1);
  CHECK(adam.schedule().kind == Schedule::Kind::constant);
  CHECK(adam.options().weight_decay == 0);
  CHECK(adam.options().clip_norm == 0);
  CHECK(adam.next_learning_rate() == 1e-3);
  CHECK(info.thresholds.empty());
  CHECK(info.thresholds_or(3) == std::vector<float>{0.5f, 0.5f, 0.5f});
  // A newer optimizer of another kind is refused as before.
  AdamW adamw;
  CHECK_THROWS_AS(load_model(path, net, &adamw), ModelFileError);
}
