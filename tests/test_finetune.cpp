// Fine-tuning: load_pretrained from a tnet model and from ONNX into a network with another head
// (the layers before it bit for bit, the head drawn afresh, a layer of another shape refused by
// name), training from an ONNX file with the features frozen, learning-rate multipliers under
// every optimizer, layer names, and freezing and multipliers carried through fit's resume.
#include <doctest/doctest.h>

#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "support.hpp"
#include "tnet/tnet.hpp"

using namespace tnet;

namespace {

// Features (0-5), then the label layer (7) of a run-time width.
using Net = Sequential<Input<8, 8, 3>, Conv2D<4, 3>, BatchNorm, ReLU, MaxPool2D<2>, Flatten, Dense<6>, ReLU, Dense<dynamic>, Sigmoid>;
// The same but for its first convolution's filters.
using Other = Sequential<Input<8, 8, 3>, Conv2D<5, 3>, BatchNorm, ReLU, MaxPool2D<2>, Flatten, Dense<6>, ReLU, Dense<dynamic>, Sigmoid>;

constexpr int batch = 6;

struct Data {
  std::vector<float> x, y;
};
Data data_for(int outputs, unsigned seed) {
  Data d{std::vector<float>(std::size_t(batch) * Net::input_size), std::vector<float>(std::size_t(batch) * std::size_t(outputs))};
  Rng rng(seed);
  for (std::size_t i = 0; i < d.x.size(); ++i) d.x[i] = rng.symmetric(i, 1.0f);
  for (std::size_t i = 0; i < d.y.size(); ++i) d.y[i] = float((i * 7 + seed) % 3 == 0);
  return d;
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size_bytes()) == 0;
}

// A tensor's values, by name.
template <class N>
std::vector<float> tensor(N& net, const std::string& name) {
  for (const ParamRef& p : net.parameters())
    if (p.name == name) return {p.value, p.value + p.size};
  FAIL("no tensor ", name);
  return {};
}
// A float statistic's values, by name.
template <class N>
std::vector<float> statistic(N& net, const std::string& name) {
  std::vector<float> out;
  net.visit_state([&](const std::string& n, auto span) {
    if constexpr (std::is_same_v<typename decltype(span)::value_type, float>)
      if (n == name) out.assign(span.begin(), span.end());
  });
  return out;
}

// A network of 5 labels trained a few steps, saved as a tnet model and as ONNX in `dir`.
std::unique_ptr<Net> pretrained(const test::TempDir& dir) {
  auto source = std::make_unique<Net>(Outputs{5}, 1);
  const Data d = data_for(5, 2);
  Adam adam(Adam::Options{.lr = 0.01});
  for (int i = 0; i < 4; ++i) source->train_step(d.x, d.y, batch, adam);
  save_model(dir / "source.tnet", *source, {"a", "b", "c", "d", "e"});
  save_onnx(dir / "source.onnx", *source, {"a", "b", "c", "d", "e"});
  return source;
}

const std::vector<std::string> features = {"0.conv2d.kernel",  "0.conv2d.bias",  "1.batchnorm.gamma",
                                           "1.batchnorm.beta", "5.dense.kernel", "5.dense.bias"};

}  // namespace

TEST_CASE("load_pretrained loads every layer before a head of another width, from a tnet model and from ONNX, and draws the head afresh") {
  const test::TempDir dir("finetune_load");
  auto source = pretrained(dir);
  for (const std::string file : {"source.tnet", "source.onnx"}) {
    INFO(file);
    auto net = std::make_unique<Net>(Outputs{3}, 9);
    const Data d = data_for(3, 4);
    Adam adam(Adam::Options{.lr = 0.01});
    for (int i = 0; i < 2; ++i) net->train_step(d.x, d.y, batch, adam);  // its head is not the one its seed drew
    auto fresh = std::make_unique<Net>(Outputs{3}, 9);
    const PretrainedReport report = load_pretrained(dir / file, *net, {.class_names = {"x", "y", "z"}});
    CHECK(report.format == (file == "source.onnx" ? "ONNX" : "tnet model"));
    CHECK(report.file_outputs == 5);
    CHECK(report.file_class_names == std::vector<std::string>{"a", "b", "c", "d", "e"});
    CHECK(report.loaded == std::vector<std::string>{"0.conv2d", "1.batchnorm", "5.dense"});
    CHECK(report.reinitialised == std::vector<std::string>{"7.dense"});
    CHECK(report.describe() == "loaded 3 layers from " + report.format + " " + dir / file +
                                   " (0.conv2d, 1.batchnorm, 5.dense); re-initialised 7.dense: the file's head has 5 outputs, this "
                                   "network's 3");
    for (const std::string& name : features) CHECK_MESSAGE(same_bits(tensor(*net, name), tensor(*source, name)), name);
    for (const std::string name : {"7.dense.kernel", "7.dense.bias"})
      CHECK_MESSAGE(same_bits(tensor(*net, name), tensor(*fresh, name)), name);
    for (const std::string name : {"1.batchnorm.moving_mean", "1.batchnorm.moving_variance"})
      CHECK_MESSAGE(same_bits(statistic(*net, name), statistic(*source, name)), name);
    CHECK(statistic(*net, "1.batchnorm.moving_mean") != statistic(*fresh, "1.batchnorm.moving_mean"));
    CHECK(net->seed() == 9);
  }

  // The same width and labels: the head too; other labels: the head afresh.
  auto same = std::make_unique<Net>(Outputs{5}, 9);
  const PretrainedReport whole = load_pretrained(dir / "source.tnet", *same, {.class_names = {"a", "b", "c", "d", "e"}});
  CHECK(whole.reinitialised.empty());
  CHECK(whole.describe().ends_with(", the head included"));
  CHECK(same_bits(same->parameters().values, source->parameters().values));
  auto relabelled = std::make_unique<Net>(Outputs{5}, 9);
  const PretrainedReport other = load_pretrained(dir / "source.onnx", *relabelled, {.class_names = {"a", "b", "c", "d", "f"}});
  CHECK(other.reinitialised == std::vector<std::string>{"7.dense"});
  CHECK(other.head_reason == "the file's head learned other labels than this network's");
  CHECK(same_bits(tensor(*relabelled, "7.dense.kernel"), tensor(*std::make_unique<Net>(Outputs{5}, 9), "7.dense.kernel")));
}

TEST_CASE("load_pretrained refuses a layer of another shape before the head, naming it and both shapes, and changes nothing") {
  const test::TempDir dir("finetune_refuse");
  auto other = std::make_unique<Other>(Outputs{5}, 1);
  save_model(dir / "other.tnet", *other);
  save_onnx(dir / "other.onnx", *other);
  auto net = std::make_unique<Net>(Outputs{3}, 9);
  const std::vector<float> before(net->parameters().values.begin(), net->parameters().values.end());
  auto line = [](const std::string& signature, int n) {
    std::istringstream in(signature);
    std::string l;
    for (int i = 0; i <= n; ++i) std::getline(in, l);
    return l;
  };
  CHECK(line(other->signature(), 1) == "Conv2D(5, 3x3, stride 1, same) -> (None, 8, 8, 5)");
  CHECK(test::error_of([&] { load_pretrained(dir / "other.tnet", *net); }) ==
        dir / "other.tnet" + ": cannot fine-tune from it: at layer 0.conv2d its network has '" + line(other->signature(), 1) +
            "', this one '" + line(Net(Outputs{5}).signature(), 1) + "'");
  const std::string onnx = test::error_of([&] { load_pretrained(dir / "other.onnx", *net); });
  CHECK_MESSAGE(onnx.starts_with(dir / "other.onnx: ONNX node "), onnx);
  CHECK_MESSAGE(
      onnx.find("does not fit layer 0.conv2d: its kernel has shape [5, 3, 3, 3], the layer's is [4, 3, 3, 3]") != std::string::npos, onnx);
  CHECK(same_bits(before, net->parameters().values));
  CHECK(test::error_of([&] { load_pretrained(dir / "none.tnet", *net); }).find("cannot open model file") != std::string::npos);
}

TEST_CASE("fine-tuning from an ONNX file with the features frozen: the loss falls, the frozen layers stay as loaded") {
  const test::TempDir dir("finetune_train");
  auto source = pretrained(dir);
  auto net = std::make_unique<Net>(Outputs{3}, 9);
  load_pretrained(dir / "source.onnx", *net);
  net->freeze_until(net->layer_index("flatten"));
  CHECK(net->frozen_layers() == 4);
  const Data d = data_for(3, 5);
  AdamW adamw(AdamW::Options{.lr = 0.01});
  const double first = net->evaluate(d.x, d.y, batch);
  for (int i = 0; i < 30; ++i) net->train_step(d.x, d.y, batch, adamw);
  CHECK(net->evaluate(d.x, d.y, batch) < 0.8 * first);
  for (const std::string name : {"0.conv2d.kernel", "0.conv2d.bias", "1.batchnorm.gamma", "1.batchnorm.beta"})
    CHECK_MESSAGE(same_bits(tensor(*net, name), tensor(*source, name)), name);
  for (const std::string name : {"1.batchnorm.moving_mean", "1.batchnorm.moving_variance"})
    CHECK_MESSAGE(same_bits(statistic(*net, name), statistic(*source, name)), name);
  CHECK(!same_bits(tensor(*net, "5.dense.kernel"), tensor(*source, "5.dense.kernel")));
}

TEST_CASE("layers are named by index, name, a kind one layer alone has, or head") {
  const Net net(Outputs{3});
  CHECK(net.layer_names() == std::vector<std::string>{"0.conv2d", "1.batchnorm", "2.relu", "3.maxpool2d", "4.flatten", "5.dense", "6.relu",
                                                      "7.dense", "8.sigmoid"});
  CHECK(net.layer_index("4") == 4);
  CHECK(net.layer_index("5.dense") == 5);
  CHECK(net.layer_index("flatten") == 4);
  CHECK(net.layer_index("head") == 7);
  const std::string all = "; the layers are 0.conv2d 1.batchnorm 2.relu 3.maxpool2d 4.flatten 5.dense 6.relu 7.dense 8.sigmoid";
  CHECK(test::error_of([&] { net.layer_index("dense"); }) == "2 layers are dense (5.dense, 7.dense): name one" + all);
  CHECK(test::error_of([&] { net.layer_index("5.relu"); }) == "no layer '5.relu'" + all);
  CHECK(test::error_of([&] { net.layer_index("9"); }) == "no layer '9'" + all);
}

TEST_CASE("a learning-rate multiplier of 0 leaves layers as freezing does, 0.5 moves them half as far, under every optimizer") {
  const Data d = data_for(3, 6);
  // Layers [0, 4): the convolution and its batch norm, 112 values.
  constexpr std::size_t backbone = 4 * 27 + 4 + 4 + 4;
  auto sgd = [] { return std::make_unique<SGD>(SGD::Options{.lr = 0.05, .momentum = 0.9, .weight_decay = 0.01}); };
  auto adam = [] { return std::make_unique<Adam>(Adam::Options{.lr = 0.01, .weight_decay = 0.01}); };
  auto adamw = [] { return std::make_unique<AdamW>(AdamW::Options{.lr = 0.01, .weight_decay = 0.1}); };
  for (const auto& make : std::vector<std::function<std::unique_ptr<Optimizer>()>>{sgd, adam, adamw}) {
    std::unique_ptr<Optimizer> probe = make();
    INFO(probe->kind());
    // m = 0: those values stay bit for bit, the rest moves; unlike freezing, their gradients are computed.
    auto net = std::make_unique<Net>(Outputs{3}, 3);
    net->set_learning_rate_multiplier(0, 4, 0.0);
    CHECK(net->learning_rate_multiplier(2) == 0.0);
    CHECK(net->learning_rate_multiplier(4) == 1.0);
    const Parameters p = net->parameters();
    REQUIRE(p.rates.size() == 2);
    CHECK(p.rates[0].end == backbone);
    const std::vector<float> before(p.values.begin(), p.values.end());
    std::unique_ptr<Optimizer> optimizer = make();
    for (int i = 0; i < 5; ++i) net->train_step(d.x, d.y, batch, *optimizer);
    const Parameters after = net->parameters();
    CHECK(same_bits(std::span(before).first(backbone), after.values.first(backbone)));
    CHECK(!same_bits(std::span(before).subspan(backbone), after.values.subspan(backbone)));
    bool gradients = false;
    for (std::size_t i = 0; i < backbone; ++i) gradients = gradients || after.grads[i] != 0.0f;
    CHECK(gradients);

    // m = 0.5 against m = 1, one step from the same weights: the step of those values is half.
    auto full = std::make_unique<Net>(Outputs{3}, 3), half = std::make_unique<Net>(Outputs{3}, 3);
    half->set_learning_rate_multiplier(0, 4, 0.5);
    std::unique_ptr<Optimizer> a = make(), b = make();
    full->train_step(d.x, d.y, batch, *a);
    half->train_step(d.x, d.y, batch, *b);
    const Parameters f = full->parameters(), h = half->parameters();
    CHECK(same_bits(f.values.subspan(backbone), h.values.subspan(backbone)));
    // Half as far, but for the roundings of the weights (and of AdamW's decay factor): within 2 of
    // their units in the last place. Most steps are some 10^4 of them.
    double worst = 0;
    std::size_t moved = 0;
    for (std::size_t i = 0; i < backbone; ++i) {
      const double step = double(f.values[i]) - double(before[i]), half_step = double(h.values[i]) - double(before[i]);
      moved += step != 0;
      const float largest = std::max({std::abs(before[i]), std::abs(f.values[i]), std::abs(h.values[i])});
      worst = std::max(worst, std::abs(half_step - step / 2) / double(std::nextafter(largest, 2 * largest + 1) - largest));
    }
    CHECK(moved > backbone / 2);
    CHECK(worst <= 2.0);
    if (probe->kind() == "SGD") {
      // The velocity itself, exactly half: -0.5 lr g against -lr g.
      const std::span<const Buffer> va = a->slots(), vb = b->slots();
      for (std::size_t i = 0; i < backbone; ++i) REQUIRE(vb[0][i] == va[0][i] / 2);
      CHECK(same_bits(std::span(va[0]).subspan(backbone), std::span(vb[0]).subspan(backbone)));
    }
  }
}

TEST_CASE("learning-rate multipliers: 1 and 2 threads agree, all 1 is the plain optimizer bit for bit, bad ones are refused") {
  const Data d = data_for(3, 7);
  auto train = [&](double multiplier) {
    auto net = std::make_unique<Net>(Outputs{3}, 4);
    net->set_learning_rate_multiplier(0, 6, multiplier);
    net->set_learning_rate_multiplier(5, 6, 0.25);
    Adam adam(Adam::Options{.lr = 0.01, .clip_norm = 0.5});
    for (int i = 0; i < 4; ++i) net->train_step(d.x, d.y, batch, adam);
    return net;
  };
  const int threads_before = num_threads();
  set_num_threads(1);
  auto one = train(0.5);
  set_num_threads(2);
  auto two = train(0.5);
  set_num_threads(threads_before);
  CHECK(same_bits(one->parameters().values, two->parameters().values));
  CHECK(one->parameters().rates.size() == 3);

  auto plain = std::make_unique<Net>(Outputs{3}, 4), ones = std::make_unique<Net>(Outputs{3}, 4);
  ones->set_learning_rate_multiplier(0, 3, 0.5);
  ones->set_learning_rate_multiplier(0, Net::depth, 1.0);
  CHECK(ones->parameters().rates.empty());
  Adam a, b;
  for (int i = 0; i < 3; ++i) {
    plain->train_step(d.x, d.y, batch, a);
    ones->train_step(d.x, d.y, batch, b);
  }
  CHECK(same_bits(plain->parameters().values, ones->parameters().values));

  CHECK(test::error_of([&] { one->set_learning_rate_multiplier(3, 2, 1.0); }) ==
        "tnet::Sequential::set_learning_rate_multiplier: layers [3, 2) are not a range of the network's 9");
  CHECK(test::error_of([&] { one->set_learning_rate_multiplier(0, 2, -1.0); }) ==
        "tnet::Sequential::set_learning_rate_multiplier: the multiplier must be finite and >= 0, got -1.000000");
}

namespace {

// fit's data: 48 images of 8x8 pixels with two labels to learn, batches of 8.
struct FitData : test::TwoLabelImages {
  FitData() : TwoLabelImages(8, 48, 777) {}
};

// A run of 3 epochs with layers 0-1 frozen and 2-5 at half the rate (or as `prepare` sets them).
struct FitRun {
  BatchIterator train, val;
  std::unique_ptr<Net> net = std::make_unique<Net>(Outputs{2}, 5);
  Adam adam{Adam::Options{.lr = 0.01}};
  FitResult result;
  static BatchIterator::Options options(bool shuffle) {
    BatchIterator::Options o;
    o.batch_size = 8, o.shuffle = shuffle, o.drop_last = shuffle, o.seed = 3;
    return o;
  }
  explicit FitRun(const FitData& d)
      : train(d.images, d.targets, 2, d.split.train, options(true)), val(d.images, d.targets, 2, d.split.test, options(false)) {}
  void fine_tune() {
    net->freeze_until(2);
    net->set_learning_rate_multiplier(2, 6, 0.5);
  }
  void fit(const FitData& d, const std::string& checkpoint, bool resume, long interrupt_after) {
    result = tnet::fit(*net, train, val, adam,
                       {.epochs = 3,
                        .checkpoint = checkpoint,
                        .resume = resume,
                        .class_names = d.labels.classes(),
                        .out = nullptr,
                        .interrupt_after_steps = interrupt_after});
  }
};

}  // namespace

TEST_CASE("fit keeps the frozen layers and multipliers in its checkpoint: a resumed run takes them, another freezing is refused") {
  const FitData data;
  const test::TempDir dir("finetune_fit");
  FitRun whole(data);
  whole.fine_tune();
  const std::vector<float> start(whole.net->parameters().values.begin(), whole.net->parameters().values.end());
  whole.fit(data, dir / "whole.checkpoint", false, 0);
  REQUIRE(whole.result.status == FitResult::Status::finished);
  const std::size_t frozen = whole.net->parameters().frozen;
  CHECK(frozen == 4 * 27 + 4 + 4 + 4);
  CHECK(same_bits(std::span(start).first(frozen), whole.net->parameters().values.first(frozen)));

  // Interrupted in the second epoch, resumed by a network given nothing: the uninterrupted run's weights.
  FitRun part(data);
  part.fine_tune();
  part.fit(data, dir / "part.checkpoint", false, 7);
  REQUIRE(part.result.status == FitResult::Status::interrupted);
  tnet::interrupted = false;
  FitRun resumed(data);
  resumed.fit(data, dir / "part.checkpoint", true, 0);
  REQUIRE(resumed.result.status == FitResult::Status::finished);
  CHECK(resumed.net->frozen_layers() == 2);
  CHECK(resumed.net->learning_rate_multiplier(5) == 0.5);
  CHECK(resumed.net->learning_rate_multiplier(6) == 1.0);
  CHECK(same_bits(resumed.net->parameters().values, whole.net->parameters().values));

  // Resumed with other frozen layers, or other multipliers: refused, naming both.
  FitRun again(data);
  again.fine_tune();
  again.fit(data, dir / "again.checkpoint", false, 7);
  tnet::interrupted = false;
  FitRun other(data);
  other.net->freeze_until(3);
  CHECK(test::error_of([&] { other.fit(data, dir / "again.checkpoint", true, 0); }) ==
        dir / "again.checkpoint" +
            " was trained with the first 2 layers frozen, layers 2 to 5 at 0.5 x the learning rate, this run has the first 3 layers "
            "frozen: resume with the same frozen layers and learning-rate multipliers (or none, to take the checkpoint's)");
  FitRun rates(data);
  rates.fine_tune();
  rates.net->set_learning_rate_multiplier(2, 6, 0.25);
  CHECK(test::error_of([&] {
          rates.fit(data, dir / "again.checkpoint", true, 0);
        }).find("this run has the first 2 layers frozen, layers 2 to 5 at 0.25 x") != std::string::npos);
  FitRun same(data);
  same.fine_tune();
  same.fit(data, dir / "again.checkpoint", true, 0);
  CHECK(same_bits(same.net->parameters().values, whole.net->parameters().values));
}
