// Fine-tuning by freezing layers (Sequential::freeze_until): frozen layers' weights and batch-norm
// statistics stay bit-identical under every optimizer while the rest trains; the trainable part's
// gradients are those of a network fed the frozen part's output; unfreezing restores training;
// thread-count independence; residual blocks freeze whole.
#include <doctest/doctest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "support.hpp"
#include "tnet/tnet.hpp"

using namespace tnet;

namespace {
// Layers 0-4 (convolution, batch norm, ReLU, pool, dropout) are the "features", 5-10 the head.
using Net = Sequential<Input<8, 8, 3>, Conv2D<4, 3>, BatchNorm, ReLU, MaxPool2D<2>, Dropout<0.25f>, Conv2D<6, 3>, BatchNorm, ReLU, Flatten,
                       Dense<5>, Sigmoid>;
// The same without the dropout, split in two: the features, and the head they feed.
using Whole =
    Sequential<Input<8, 8, 3>, Conv2D<4, 3>, BatchNorm, ReLU, MaxPool2D<2>, Conv2D<6, 3>, BatchNorm, ReLU, Flatten, Dense<5>, Sigmoid>;
using Features = Sequential<Input<8, 8, 3>, Conv2D<4, 3>, BatchNorm, ReLU, MaxPool2D<2>>;
using Head = Sequential<Input<4, 4, 4>, Conv2D<6, 3>, BatchNorm, ReLU, Flatten, Dense<5>, Sigmoid>;

constexpr int batch = 6;

struct Data {
  std::vector<float> x, y;
};
Data data_for(std::size_t input_size, int outputs, unsigned seed) {
  Data d{std::vector<float>(std::size_t(batch) * input_size), std::vector<float>(std::size_t(batch) * std::size_t(outputs))};
  Rng rng(seed);
  for (std::size_t i = 0; i < d.x.size(); ++i) d.x[i] = rng.symmetric(i, 1.0f);
  for (std::size_t i = 0; i < d.y.size(); ++i) d.y[i] = float((i * 7 + seed) % 3 == 0);
  return d;
}

// Every non-trainable value (moving statistics, update counts), by name, as doubles (exact).
template <class N>
std::vector<std::pair<std::string, std::vector<double>>> state_of(N& net) {
  std::vector<std::pair<std::string, std::vector<double>>> out;
  net.visit_state([&](const std::string& name, auto span) {
    std::vector<double> values;
    for (const auto v : span) values.push_back(double(v));
    out.emplace_back(name, std::move(values));
  });
  return out;
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The values of tensors whose names start with one of `prefixes`.
template <class N>
std::vector<float> tensors_of(N& net, const std::vector<std::string>& prefixes) {
  std::vector<float> out;
  for (const ParamRef& p : net.parameters())
    for (const std::string& prefix : prefixes)
      if (p.name.starts_with(prefix)) out.insert(out.end(), p.value, p.value + p.size);
  return out;
}
}  // namespace

TEST_CASE("frozen layers keep their weights and batch-norm statistics bit for bit under every optimizer while the rest trains") {
  const Data d = data_for(Net::input_size, 5, 3);
  auto adam = [] { return std::make_unique<Adam>(Adam::Options{.lr = 0.01, .weight_decay = 0.01, .clip_norm = 0.5}); };
  auto adamw = [] { return std::make_unique<AdamW>(AdamW::Options{.lr = 0.01, .weight_decay = 0.1}); };
  auto sgd = [] { return std::make_unique<SGD>(SGD::Options{.lr = 0.05, .momentum = 0.9, .weight_decay = 0.01}); };
  for (const auto& make : std::vector<std::function<std::unique_ptr<Optimizer>()>>{adam, adamw, sgd}) {
    auto net = std::make_unique<Net>(7);
    std::unique_ptr<Optimizer> optimizer = make();
    INFO(optimizer->kind());
    // Trained unfrozen first: the optimizer's slots (momentum) and the statistics are not zero.
    for (int i = 0; i < 3; ++i) net->train_step(d.x, d.y, batch, *optimizer);
    net->freeze_until(5);
    CHECK(net->frozen_layers() == 5);
    const Parameters params = net->parameters();
    const std::size_t frozen = params.frozen;
    CHECK(frozen == std::size_t(4 * 27 + 4 + 4 + 4));  // the convolution's kernel and bias, the batch norm's gamma and beta
    for (std::size_t i = 0; i < frozen; ++i) REQUIRE(params.grads[i] == 0.0f);
    const std::vector<float> before(params.values.begin(), params.values.end());
    const auto state_before = state_of(*net);
    const double first_loss = net->evaluate(d.x, d.y, batch);
    for (int i = 0; i < 20; ++i) net->train_step(d.x, d.y, batch, *optimizer);
    const Parameters after = net->parameters();
    CHECK(same_bits(std::span(before).first(frozen), after.values.first(frozen)));
    // Every trainable tensor moved.
    for (const ParamRef& p : after)
      if (p.offset >= frozen) CHECK_MESSAGE(!same_bits(std::span(before).subspan(p.offset, p.size), {p.value, p.size}), p.name);
    const auto state_after = state_of(*net);
    REQUIRE(state_after.size() == state_before.size());
    for (std::size_t i = 0; i < state_after.size(); ++i) {
      INFO(state_after[i].first);
      if (state_after[i].first.starts_with("1.")) CHECK(state_after[i].second == state_before[i].second);
      else CHECK(state_after[i].second != state_before[i].second);
    }
    CHECK(net->evaluate(d.x, d.y, batch) < first_loss);
    for (std::size_t i = 0; i < frozen; ++i) REQUIRE(after.grads[i] == 0.0f);
  }
}

TEST_CASE("the trainable part's gradients are those of the same layers fed the frozen part's output") {
  const Data d = data_for(Whole::input_size, 5, 4);
  auto whole = std::make_unique<Whole>(11);
  Adam adam(Adam::Options{.lr = 0.01});
  for (int i = 0; i < 3; ++i) whole->train_step(d.x, d.y, batch, adam);  // statistics of its own
  whole->freeze_until(4);
  // The features and the head, with the whole network's weights and statistics.
  auto features = std::make_unique<Features>(1);
  auto head = std::make_unique<Head>(1);
  const Parameters w = whole->parameters(), f = features->parameters(), h = head->parameters();
  REQUIRE(w.frozen == f.values.size());
  REQUIRE(w.values.size() == f.values.size() + h.values.size());
  std::copy(w.values.begin(), w.values.begin() + std::ptrdiff_t(w.frozen), f.values.begin());
  std::copy(w.values.begin() + std::ptrdiff_t(w.frozen), w.values.end(), h.values.begin());
  auto state = state_of(*whole);
  auto copy_state = [&](auto& net, int shift) {
    std::size_t copied = 0, tensors = 0;
    net.visit_state([&](const std::string& name, auto span) {
      const std::string index = name.substr(0, name.find('.'));
      const std::string whole_name = std::to_string(std::stoi(index) + shift) + name.substr(index.size());
      ++tensors;
      for (const auto& [n, values] : state)
        if (n == whole_name && values.size() == span.size()) {
          for (std::size_t i = 0; i < span.size(); ++i) span[i] = static_cast<std::remove_reference_t<decltype(span[i])>>(values[i]);
          ++copied;
        }
    });
    REQUIRE(copied == tensors);
  };
  copy_state(*features, 0);
  copy_state(*head, 4);
  const std::span<const float> feature_output = features->predict(d.x, batch);
  const std::vector<float> fed(feature_output.begin(), feature_output.end());

  const double loss = whole->compute_gradients(d.x, d.y, batch);
  const double head_loss = head->compute_gradients(fed, d.y, batch);
  CHECK(loss == head_loss);
  const std::span<const float> whole_grads = whole->parameters().grads;
  CHECK(same_bits(whole_grads.subspan(w.frozen), head->parameters().grads));
  for (std::size_t i = 0; i < w.frozen; ++i) REQUIRE(whole_grads[i] == 0.0f);
  CHECK(same_bits(whole->output(), head->output()));
  // No input gradient past frozen layers: refused, naming why.
  std::vector<float> grad_input(d.x.size());
  CHECK(test::error_of([&] { whole->compute_gradients(d.x, d.y, batch, grad_input); }).find("frozen") != std::string::npos);

  // Unfrozen, it trains as a network never frozen does: the same gradients, bit for bit.
  auto never = std::make_unique<Whole>(11);
  std::copy(w.values.begin(), w.values.end(), never->parameters().values.begin());
  state = state_of(*whole);  // the head's batch norm has moved since
  copy_state(*never, 0);
  never->set_step(whole->step());
  whole->freeze_until(0);
  CHECK(whole->parameters().frozen == 0);
  CHECK(whole->compute_gradients(d.x, d.y, batch) == never->compute_gradients(d.x, d.y, batch));
  CHECK(same_bits(whole->parameters().grads, never->parameters().grads));
  CHECK(state_of(*whole) == state_of(*never));  // the batch norms train again
}

TEST_CASE("freezing: calibration leaves frozen statistics, 1 and 2 threads agree, bad counts are refused") {
  const Data d = data_for(Net::input_size, 5, 5);
  auto train = [&] {
    auto net = std::make_unique<Net>(3);
    net->freeze_until(2);  // between the batch norm and its ReLU: a step of the training plan splits
    AdamW adamw(AdamW::Options{.lr = 0.01});
    for (int i = 0; i < 5; ++i) net->train_step(d.x, d.y, batch, adamw);
    return net;
  };
  const int threads_before = num_threads();
  set_num_threads(1);
  auto one = train();
  set_num_threads(2);
  auto two = train();
  set_num_threads(threads_before);
  CHECK(same_bits(one->parameters().values, two->parameters().values));
  CHECK(state_of(*one) == state_of(*two));

  const auto state = state_of(*one);
  one->reset_batch_norm_statistics();
  one->forward(d.x, batch, Mode::calibrate);
  const auto calibrated = state_of(*one);
  for (std::size_t i = 0; i < state.size(); ++i) {
    INFO(state[i].first);
    if (state[i].first.starts_with("1.")) CHECK(calibrated[i].second == state[i].second);
    else CHECK(calibrated[i].second != state[i].second);
  }
  CHECK(test::error_of([&] { one->freeze_until(Net::depth + 1); }) ==
        "tnet::Sequential::freeze_until: 12 layers; the network has 11 (0 unfreezes)");
  one->freeze_until(Net::depth);  // everything: a step changes nothing
  const std::vector<float> before(one->parameters().values.begin(), one->parameters().values.end());
  Adam adam;
  one->train_step(d.x, d.y, batch, adam);
  CHECK(same_bits(before, one->parameters().values));
}

TEST_CASE("a residual block freezes whole, its inner batch norms included") {
  using Block = Residual<Conv2D<4, 3>, BatchNorm, ReLU, Conv2D<4, 3>, BatchNorm>;
  using R = Sequential<Input<6, 6, 3>, Conv2D<4, 3>, BatchNorm, ReLU, Block, ReLU, Block, ReLU, GlobalAveragePooling2D, Dense<3>, Sigmoid>;
  const Data d = data_for(R::input_size, 3, 6);
  for (const std::size_t until : {std::size_t(3), std::size_t(5)}) {
    INFO("frozen until ", until);
    auto net = std::make_unique<R>(5);
    AdamW adamw(AdamW::Options{.lr = 0.01});
    for (int i = 0; i < 2; ++i) net->train_step(d.x, d.y, batch, adamw);
    net->freeze_until(until);
    const std::vector<std::string> frozen_names =
        until == 3 ? std::vector<std::string>{"0.", "1."} : std::vector<std::string>{"0.", "1.", "3."};
    const std::vector<float> frozen_before = tensors_of(*net, frozen_names);
    const std::vector<std::string> trained_names =
        until == 3 ? std::vector<std::string>{"3.", "5.", "9."} : std::vector<std::string>{"5.", "9."};
    const std::vector<float> trained_before = tensors_of(*net, trained_names);
    const auto state_before = state_of(*net);
    const double first_loss = net->evaluate(d.x, d.y, batch);
    for (int i = 0; i < 10; ++i) net->train_step(d.x, d.y, batch, adamw);
    CHECK(tensors_of(*net, frozen_names) == frozen_before);
    CHECK(tensors_of(*net, trained_names) != trained_before);
    const auto state_after = state_of(*net);
    for (std::size_t i = 0; i < state_after.size(); ++i) {
      INFO(state_after[i].first);
      bool frozen = false;
      for (const std::string& prefix : frozen_names) frozen = frozen || state_after[i].first.starts_with(prefix);
      if (frozen) CHECK(state_after[i].second == state_before[i].second);
      else CHECK(state_after[i].second != state_before[i].second);
    }
    CHECK(net->evaluate(d.x, d.y, batch) < first_loss);
  }
}
