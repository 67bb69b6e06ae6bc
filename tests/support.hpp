// Test support: PyTorch fixtures, random inputs and the numerical gradient checker.
#pragma once

#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <functional>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <tnet/tnet.hpp>

namespace test {

/// A folder of its own for one test, removed with everything in it at the end.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& name = "test")
      : path(std::filesystem::temp_directory_path() / ("tnet_" + name + "_" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

/// Runs check(kernel) with each gemm kernel this CPU runs (Eigen's, AVX2, AVX-512), which also
/// picks the instruction set of tnet's other loops (core/vectorise.hpp), then restores the choice.
/// Returns how many kernels ran.
inline int with_each_gemm_kernel(const std::function<void(tnet::GemmKernel)>& check) {
  struct Restore {  // also when a REQUIRE inside throws
    tnet::GemmKernel before = tnet::gemm_kernel();
    ~Restore() { tnet::use_gemm_kernel(before); }
  } restore;
  int kernels = 0;
  for (const tnet::GemmKernel kernel : {tnet::GemmKernel::eigen, tnet::GemmKernel::avx2, tnet::GemmKernel::avx512}) {
    if (!tnet::use_gemm_kernel(kernel)) continue;
    ++kernels;
    INFO("kernel ", std::string(tnet::name(kernel)));
    check(kernel);
  }
  return kernels;
}

/// The message of what `f` throws; empty when it throws nothing.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

/// A file's bytes, and a file written with `bytes`.
inline std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
inline void write(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

/// A file written by tests/fixtures/make_fixtures.py: named tensors, `name dims : values`.
class Fixture {
 public:
  explicit Fixture(const std::string& file) {
    const std::string path = std::string(TNET_FIXTURE_DIR) + "/" + file;
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open fixture " + path);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      std::istringstream s(line.substr(line.find(':') + 1));
      const std::string name = line.substr(0, line.find(' '));
      std::vector<double> values;
      for (double v; s >> v;) values.push_back(v);
      tensors_[name] = std::move(values);
    }
  }
  const std::vector<double>& operator[](const std::string& name) const {
    const auto found = tensors_.find(name);
    if (found == tensors_.end()) throw std::runtime_error("fixture has no tensor " + name);
    return found->second;
  }
  tnet::Buffer floats(const std::string& name) const {
    const auto& v = (*this)[name];
    return tnet::Buffer(v.begin(), v.end());
  }
  double scalar(const std::string& name) const { return (*this)[name].at(0); }

 private:
  std::map<std::string, std::vector<double>> tensors_;
};

/// Largest |actual - expected| relative to the largest |expected| (1 when expected is all zero).
inline double max_relative_error(const float* actual, const std::vector<double>& expected) {
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    worst = std::max(worst, std::abs(double(actual[i]) - expected[i]));
    scale = std::max(scale, std::abs(expected[i]));
  }
  return worst / std::max(scale, 1e-30);
}

#define CHECK_CLOSE_TO_FIXTURE(actual, expected, tolerance)              \
  do {                                                                   \
    const auto& expected_ = (expected);                                  \
    INFO(#actual " vs " #expected);                                      \
    CHECK(test::max_relative_error((actual), expected_) <= (tolerance)); \
  } while (0)

/// Uniform values in [-1, 1) from a seed.
inline tnet::Buffer random_values(std::size_t count, std::uint64_t seed, float limit = 1.0f) {
  tnet::Buffer v(count);
  const tnet::Rng rng(seed);
  for (std::size_t i = 0; i < count; ++i) v[i] = rng.symmetric(i, limit);
  return v;
}

/// Values at least `gap` apart (a shuffled ramp) and at least gap/2 from zero: no ties for max
/// pooling and no ReLU kink within a finite-difference step.
inline tnet::Buffer separated_values(std::size_t count, std::uint64_t seed, float gap = 0.05f) {
  tnet::Buffer v(count);
  for (std::size_t i = 0; i < count; ++i) v[i] = (float(i) - float(count / 2) + 0.5f) * gap;
  const tnet::Rng rng(seed);
  for (std::size_t i = count; i > 1; --i) std::swap(v[i - 1], v[rng.bits(i) % i]);
  return v;
}

struct GradientReport {
  double worst = 0;  // largest |analytic - numeric| / largest |numeric| over the tensor
  std::string where;
};

/// Compares analytic gradients with central differences of loss(), perturbing each entry of
/// `values` (or `limit` entries spread across it) by +-h. `analytic` holds the gradient the code
/// under test computed for `values`.
inline double compare_with_differences(float* values, const float* analytic, std::size_t size, const std::function<double()>& loss,
                                       double h, std::size_t limit = 1u << 30) {
  const std::size_t stride = std::max<std::size_t>(1, size / std::min(size, limit));
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < size; i += stride) {
    const float kept = values[i];
    values[i] = kept + float(h);
    const double plus = loss();
    values[i] = kept - float(h);
    const double minus = loss();
    values[i] = kept;
    const double numeric = (plus - minus) / (2 * h);
    worst = std::max(worst, std::abs(numeric - analytic[i]));
    scale = std::max(scale, std::abs(numeric));
  }
  return worst / std::max(scale, 1e-12);
}

/// Checks one layer's input and parameter gradients for the loss sum(y * r), r random, in
/// training mode with a fixed step (so dropout's mask is the same in every evaluation). `width` is
/// the run-time width of a layer that has one.
template <class Layer>
void check_layer_gradients(tnet::Standalone<Layer>& layer, int batch, const tnet::Buffer& x_in, double h = 1e-2, double tolerance = 1e-2,
                           int width = 0) {
  using In = typename Layer::input_shape;
  using Out = typename Layer::output_shape;
  tnet::Buffer x = x_in, y(std::size_t(batch) * tnet::sample_size<Out>(width)), dx(std::size_t(batch) * tnet::sample_size<In>(width));
  REQUIRE(x.size() == dx.size());
  const tnet::Buffer r = random_values(y.size(), 99);
  const tnet::Pass pass{tnet::Mode::train, 5};
  auto loss = [&] {
    layer.forward(x.data(), y.data(), batch, pass);
    double total = 0;
    for (std::size_t i = 0; i < y.size(); ++i) total += double(y[i]) * r[i];
    return total;
  };
  loss();
  layer.backward(x.data(), y.data(), r.data(), dx.data(), batch);
  std::vector<std::pair<std::string, tnet::Buffer>> grads;
  std::vector<std::pair<float*, std::size_t>> params;
  layer.visit_parameters([&](std::string_view name, float* value, float* grad, std::size_t size) {
    grads.emplace_back(std::string(name), tnet::Buffer(grad, grad + size));
    params.emplace_back(value, size);
  });

  {
    INFO(layer.describe(), ": input gradient");
    CHECK(compare_with_differences(x.data(), dx.data(), x.size(), loss, h) <= tolerance);
  }
  for (std::size_t p = 0; p < params.size(); ++p) {
    INFO(layer.describe(), ": gradient of ", grads[p].first);
    CHECK(compare_with_differences(params[p].first, grads[p].second.data(), params[p].second, loss, h) <= tolerance);
  }
}

// Training steps of Net (3 outputs) against each of its layers' own forward and backward, in
// buffers of the test's own: the output, the input gradient and every parameter gradient; two
// steps, the second with the batch normalisations' moving statistics set. `prepare` changes both
// networks first.
template <class Net>
void check_training_equals_layer_by_layer(const std::function<void(Net&)>& prepare = {}) {
  Net fused(6), plain(6);
  if (prepare) prepare(fused), prepare(plain);
  for (int step = 0; step < 2; ++step) {
    INFO("step ", step);
    const int batch = 3;
    const tnet::Buffer x = random_values(batch * Net::input_shape::size, 31 + step);
    const float targets[] = {1, 0, 1, 0, 0, 1, 1, 1, 0};  // 3 outputs a sample
    tnet::Buffer fused_grad_input(x.size());
    const double loss = fused.compute_gradients(x, targets, batch, fused_grad_input);

    // The same step with each layer's own forward and backward, in buffers of the test's own.
    std::array<tnet::Buffer, Net::depth> out;
    const tnet::Pass pass{tnet::Mode::train, std::uint64_t(step)};
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (([&] {
         out[I].assign(std::size_t(batch) * plain.template output_size<I>(), std::nanf(""));
         plain.template layer<I>().forward(I == 0 ? x.data() : out[I - 1].data(), out[I].data(), batch, pass);
       }()),
       ...);
    }(std::make_index_sequence<Net::depth>{});
    tnet::Buffer dy(std::size_t(batch) * 3), dx, plain_grad_input(x.size());
    // Not to the last bit: where the pool chooses as the statistics are summed, they are summed in
    // another order.
    CHECK(tnet::binary_crossentropy(out[Net::depth - 2].data(), targets, batch * 3, dy.data()) == doctest::Approx(loss).epsilon(1e-6));
    [&]<std::size_t... J>(std::index_sequence<J...>) {
      (([&] {
         constexpr std::size_t I = Net::depth - 2 - J;  // from the logits down
         float* grad_in = plain_grad_input.data();
         if constexpr (I > 0) dx.assign(std::size_t(batch) * plain.template output_size<I - 1>(), std::nanf("")), grad_in = dx.data();
         plain.template layer<I>().backward(I == 0 ? x.data() : out[I - 1].data(), out[I].data(), dy.data(), grad_in, batch);
         if constexpr (I > 0) dy.swap(dx);
       }()),
       ...);
    }(std::make_index_sequence<Net::depth - 1>{});

    auto close = [](const float* got, const float* want, std::size_t n) {
      double worst = 0, largest = 0;
      for (std::size_t i = 0; i < n; ++i) {
        REQUIRE(std::isfinite(got[i]));
        worst = std::max(worst, std::abs(double(got[i]) - double(want[i])));
        largest = std::max(largest, std::abs(double(want[i])));
      }
      return worst <= 1e-6 * largest;
    };
    CHECK(close(fused.output().data(), out[Net::depth - 1].data(), std::size_t(batch) * 3));
    CHECK(close(fused_grad_input.data(), plain_grad_input.data(), x.size()));
    const tnet::Parameters a = fused.parameters(), b = plain.parameters();
    for (std::size_t t = 0; t < a.tensors.size(); ++t) {
      INFO(a.tensors[t].name);
      CHECK(close(a.tensors[t].grad, b.tensors[t].grad, a.tensors[t].size));
    }
  }
}

/// `count` square images of `side` pixels with two labels to learn: "red" (every second image)
/// when the red channel is bright, "top" (every third) when the top half is brighter than the
/// bottom; noise drawn from `seed`. Split 3:1 into training and validation (seed 7).
struct TwoLabelImages {
  tnet::LabeledImages images;
  tnet::MultiLabelBinarizer labels;
  std::vector<float> targets;
  tnet::Split split;
  TwoLabelImages(int side, int count, std::uint64_t seed) {
    images.size = side;
    std::uint64_t state = seed;
    auto next = [&] { return std::uint8_t((state = state * 6364136223846793005ULL + 1442695040888963407ULL) >> 56); };
    for (int i = 0; i < count; ++i) {
      const bool red = i % 2 == 0, top = i % 3 == 0;
      for (int y = 0; y < side; ++y)
        for (int x = 0; x < side; ++x)
          for (int c = 0; c < 3; ++c)
            images.pixels.push_back(std::uint8_t(std::min(next() / 2 + (c == 0 && red ? 100 : 0) + (y < side / 2 && top ? 60 : 0), 255)));
      std::vector<std::string> l;
      if (red) l.push_back("red");
      if (top) l.push_back("top");
      images.labels.push_back(l);
      images.paths.push_back("image" + std::to_string(i) + ".png");
    }
    targets = labels.fit_transform(images.labels);
    split = tnet::train_test_split(images.count(), 0.25, 7);
  }
};

}  // namespace test
