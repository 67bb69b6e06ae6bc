// SmallerVGGNet (6 labels, 96x96x3) throughput: training steps (forward, backward, Adam) and
// inference, on random data. Prints `name value` lines.
//   bench_smallervgg [--threads N] [--batch N] [--steps N]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "fashion/smaller_vgg.hpp"

namespace {
double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
int positive(const char* flag, const char* value) {
  const int n = std::atoi(value);
  if (n < 1) {
    std::fprintf(stderr, "bench_smallervgg: %s needs a positive integer, got '%s'\n", flag, value);
    std::exit(2);
  }
  return n;
}
}  // namespace

int main(int argc, char** argv) {
  int threads = tnet::num_threads(), batch = 32, steps = 10;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 < argc && flag == "--threads") threads = positive(argv[i], argv[i + 1]), ++i;
    else if (i + 1 < argc && flag == "--batch") batch = positive(argv[i], argv[i + 1]), ++i;
    else if (i + 1 < argc && flag == "--steps") steps = positive(argv[i], argv[i + 1]), ++i;
    else {
      std::fprintf(stderr, "usage: bench_smallervgg [--threads N] [--batch N] [--steps N]\n");
      return 2;
    }
  }
  tnet::set_num_threads(threads);
  using Net = fashion::SmallerVGGNet<6>;
  auto net = std::make_unique<Net>(1);
  tnet::Adam adam;
  const tnet::Rng rng(2);
  tnet::Buffer x(std::size_t(batch) * Net::input_shape::size), y(std::size_t(batch) * 6);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = rng.uniform(i);
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = rng.uniform(x.size() + i) > 0.5f ? 1.0f : 0.0f;

  net->train_step(x.data(), y.data(), batch, adam);  // warm-up: buffers allocated, pages touched
  auto start = std::chrono::steady_clock::now();
  for (int s = 0; s < steps; ++s) net->train_step(x.data(), y.data(), batch, adam);
  const double train = seconds_since(start);

  net->predict(x.data(), batch);
  start = std::chrono::steady_clock::now();
  for (int s = 0; s < steps; ++s) net->predict(x.data(), batch);
  const double infer = seconds_since(start);

  net->predict(x.data(), 1);
  start = std::chrono::steady_clock::now();
  for (int s = 0; s < steps * 4; ++s) net->predict(x.data(), 1);
  const double latency = seconds_since(start) / (steps * 4);

  std::printf("threads %d\nbatch %d\n", threads, batch);
  std::printf("train_images_per_s %.1f\n", steps * batch / train);
  std::printf("infer_images_per_s %.1f\n", steps * batch / infer);
  std::printf("infer_latency_batch1_ms %.2f\n", latency * 1e3);
  return 0;
}
