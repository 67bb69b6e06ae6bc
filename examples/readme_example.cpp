// The API example of the README, compiled and run by the build so that it stays true.
#include <tnet/tnet.hpp>

#include <cstdio>
#include <span>
#include <vector>

// A network is a type: shapes are checked and worked out at compile time.
using Net = tnet::Sequential<tnet::Input<28, 28, 1>, tnet::Conv2D<16, 3>, tnet::ReLU, tnet::BatchNorm, tnet::MaxPool2D<2>, tnet::Flatten,
                             tnet::Dense<10>, tnet::Sigmoid>;

int main() {
  Net net(/*seed=*/42);
  net.summary();

  const int batch = 32;
  std::vector<float> images(batch * 28 * 28), labels(batch * 10);  // NHWC pixels, 0/1 targets
  for (int n = 0; n < batch; ++n) {                                // a toy task: label = row of a bright bar
    const int row = n % 10;
    for (int x = 0; x < 28; ++x) images[n * 784 + (2 + 2 * row) * 28 + x] = 1.0f;
    labels[n * 10 + row] = 1.0f;
  }

  tnet::Adam adam({.lr = 1e-3});
  for (int step = 0; step < 30; ++step) {
    const double loss = net.train_step(images, labels, batch, adam);  // sizes checked: batch x 784, batch x 10
    if (step % 10 == 0) std::printf("step %d loss %.4f\n", step, loss);
  }
  std::span<const float> probabilities = net.predict(images, batch);  // batch x 10
  std::printf("binary accuracy %.3f\n", tnet::binary_accuracy(probabilities.data(), labels.data(), batch, 10));
  tnet::save_model("readme_example.tnet", net, {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}, &adam);
}
