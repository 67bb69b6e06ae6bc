// tnet's quick-start demo: a small CNN learns a multi-label task on synthetic pictures (a red
// or blue, square or round blob on a noisy background: labels colour and shape), is saved,
// loaded back, and classifies pictures it has never seen.
//   tnet_demo [--epochs N] [--model demo.tnet]
#include <cmath>
#include <cstdio>
#include <span>
#include <cstdlib>
#include <string>
#include <vector>

#include <tnet/tnet.hpp>

using namespace tnet;

namespace {
constexpr int side = 24;
using Net = Sequential<Input<side, side, 3>, Conv2D<8, 3>, ReLU, BatchNorm, MaxPool2D<2>, Conv2D<16, 3>, ReLU, BatchNorm, MaxPool2D<2>,
                       Dropout<0.25f>, Flatten, Dense<32>, ReLU, Dense<4>, Sigmoid>;
const std::vector<std::string> classes = {"blue", "red", "round", "square"};

// Picture n of the set drawn from `seed`: labels [blue, red, round, square].
void draw(std::uint64_t seed, int n, float* image, float* labels) {
  const Rng rng = Rng(seed).derive(std::uint64_t(n));
  const bool red = rng.uniform(0) < 0.5f, square = rng.uniform(1) < 0.5f;
  const float cy = 7 + 10 * rng.uniform(2), cx = 7 + 10 * rng.uniform(3), radius = 4.5f + 3.0f * rng.uniform(4);
  const float background = 0.3f + 0.4f * rng.uniform(5);
  for (int y = 0; y < side; ++y)
    for (int x = 0; x < side; ++x) {
      const float dy = std::abs(y - cy), dx = std::abs(x - cx);
      const bool inside = square ? std::max(dy, dx) <= radius : dy * dy + dx * dx <= radius * radius;
      for (int c = 0; c < 3; ++c) {
        float v = background + 0.15f * rng.symmetric(16 + (y * side + x) * 3 + c, 1.0f);
        if (inside) v = (c == 0 ? (red ? 0.9f : 0.1f) : c == 2 ? (red ? 0.1f : 0.9f) : 0.2f);
        image[(y * side + x) * 3 + c] = v;
      }
    }
  labels[0] = !red, labels[1] = red, labels[2] = !square, labels[3] = square;
}
}  // namespace

int main(int argc, char** argv) {
  int epochs = 8;
  std::string model_path = "demo.tnet";
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--epochs" && i + 1 < argc && std::atoi(argv[i + 1]) > 0) epochs = std::atoi(argv[++i]);
    else if (flag == "--model" && i + 1 < argc) model_path = argv[++i];
    else {
      std::fprintf(stderr, "usage: tnet_demo [--epochs N >= 1] [--model PATH]\n");
      return 2;
    }
  }
  constexpr int train_count = 4096, val_count = 512, batch = 32;
  constexpr int pixels = Net::input_shape::size;
  std::vector<float> x_train(train_count * pixels), y_train(train_count * 4), x_val(val_count * pixels), y_val(val_count * 4);
  for (int n = 0; n < train_count; ++n) draw(1, n, &x_train[n * pixels], &y_train[n * 4]);
  for (int n = 0; n < val_count; ++n) draw(2, n, &x_val[n * pixels], &y_val[n * 4]);

  Net net(42);
  net.summary();
  Adam adam(Adam::Options{.lr = 1e-3, .decay = 1e-3 / epochs});
  std::printf("training on %d synthetic pictures, validating on %d, %d threads\n", train_count, val_count, num_threads());
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    double loss = 0;
    MultiLabelMetrics train_metrics(4), val_metrics(4);
    // Batch b of a set: its pixels and its target rows.
    auto inputs = [&](std::vector<float>& x, int b) { return std::span(x).subspan(std::size_t(b) * batch * pixels, batch * pixels); };
    auto targets = [&](std::vector<float>& y, int b) { return std::span(y).subspan(std::size_t(b) * batch * 4, batch * 4); };
    for (int b = 0; b < train_count / batch; ++b) {
      loss += net.train_step(inputs(x_train, b), targets(y_train, b), batch, adam);
      train_metrics.update(net.output().data(), targets(y_train, b).data(), batch);
    }
    double val_loss = 0;
    for (int b = 0; b < val_count / batch; ++b) {
      val_loss += net.evaluate(inputs(x_val, b), targets(y_val, b), batch);
      val_metrics.update(net.output().data(), targets(y_val, b).data(), batch);
    }
    std::printf("Epoch %d/%d - loss: %.4f - acc: %.4f - val_loss: %.4f - val_acc: %.4f - val_exact: %.4f\n", epoch, epochs,
                loss / (train_count / batch), train_metrics.binary_accuracy(), val_loss / (val_count / batch),
                val_metrics.binary_accuracy(), val_metrics.exact_match());
  }
  save_model(model_path, net, classes, &adam);
  std::printf("saved the model to %s\n", model_path.c_str());

  Net reloaded(0);
  const ModelFileInfo info = load_model(model_path, reloaded);
  std::vector<float> image(pixels), truth(4);
  for (int n = 0; n < 4; ++n) {
    draw(3, n, image.data(), truth.data());
    const std::span<const float> p = reloaded.predict(image, 1);
    std::printf("new picture %d (truth: %s %s):", n, truth[1] ? "red" : "blue", truth[3] ? "square" : "round");
    for (int l = 0; l < 4; ++l) std::printf("  %s %.2f%%", info.class_names[l].c_str(), 100.0 * p[l]);
    std::printf("\n");
  }
  return 0;
}
