// SmallerVGGNet (6 labels, 96x96x3) throughput on random data: training steps (forward,
// backward, Adam), inference, batch-1 latency, peak memory, and the achieved GFLOP/s against a
// GEMM roofline measured here with the same thread count. --net resnet18 or mobilenetv2 times
// torchvision's networks instead (tnet/models, where this tnet has them; no GFLOP/s).
//   bench_smallervgg [--net NAME] [--threads N] [--batch N] [--steps N] [--latency-runs N]
//                    [--kernel eigen|avx2|avx512] [--onnx FILE] [--json] [--layers] | --list-nets
// Prints `name value` lines (or one JSON object); --layers adds each step's forward and
// backward milliseconds per batch (the training plan's: a layer, or the layers a rule fuses; a
// residual block is one step) and each step of the inference plan's milliseconds (the median of
// a quarter of --latency-runs, at least 20, each step run alone; `infer_step` lines in fp32,
// `infer_step_bf16` with Precision::bf16), each step with its forward
// FLOPs per batch as the GFLOP/s count them (none in a residual block); --kernel makes gemm use that kernel rather
// than the widest the CPU runs (core/gemm_kernels.hpp). Batch-1 latency is the median and the 99th percentile of
// --latency-runs single-image predictions, each timed alone (4 x steps by default). --onnx writes
// the network, as trained by the timed steps, to FILE as ONNX with an NCHW input (the order of the
// runtimes benchmarks/compare.sh runs it in). --list-nets prints the networks --net takes.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fashion/smaller_vgg.hpp"
#if __has_include(<tnet/models/resnet.hpp>) && __has_include(<tnet/models/mobilenet.hpp>)
#include <tnet/models/mobilenet.hpp>
#include <tnet/models/resnet.hpp>
#define BENCH_TORCHVISION_MODELS 1
#endif

namespace {
constexpr int labels = 6;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

int positive(const char* flag, const char* value) {
  char* end = nullptr;
  const long n = std::strtol(value, &end, 10);
  if (*end != '\0' || n < 1 || n > 100000) {
    std::fprintf(stderr, "bench_smallervgg: %s needs a positive integer, got '%s'\n", flag, value);
    std::exit(2);
  }
  return int(n);
}

// FLOPs per sample of the layers' matrix products (element-wise layers are not counted), as the
// direct convolution counts them: Winograd's convolutions (layers/winograd.hpp) multiply 4x fewer
// times, so the GFLOP/s derived from these are effective figures and may exceed the roofline. A
// training step adds, to each forward product, the weight gradient and (but for the first layer)
// the input gradient, each as costly as the forward.
template <class Net>
double flops(const Net& net, bool training) {
  double total = 0;
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    ((total +=
      [&] {
        const auto& layer = net.template layer<I>();
        if constexpr (requires { layer.forward_flops(); }) return layer.forward_flops() * (!training ? 1.0 : I == 0 ? 2.0 : 3.0);
        else return 0.0;
      }()),
     ...);
  }(std::make_index_sequence<Net::depth>{});
  return total;
}

// GFLOP/s of tnet::gemm on 1024-cubed products: the ceiling the layers' GEMMs work against.
double gemm_roofline() {
  const int n = 1024;
  tnet::Buffer a(std::size_t(n) * n, 0.5f), b(std::size_t(n) * n, 0.25f), c(std::size_t(n) * n);
  tnet::gemm(tnet::Transpose::no, tnet::Transpose::no, n, n, n, a.data(), b.data(), c.data());
  const int repeats = 8;
  const auto start = Clock::now();
  for (int r = 0; r < repeats; ++r) tnet::gemm(tnet::Transpose::no, tnet::Transpose::no, n, n, n, a.data(), b.data(), c.data());
  return 2.0 * n * n * n * repeats / seconds_since(start) / 1e9;
}

// Median and 99th percentile (nearest rank) of `times`, reordered.
std::pair<double, double> median_p99(std::vector<double>& times) {
  std::sort(times.begin(), times.end());
  const std::size_t n = times.size();
  const double median = n % 2 ? times[n / 2] : (times[n / 2 - 1] + times[n / 2]) / 2;
  const std::size_t rank = (99 * n + 99) / 100;  // ceil(0.99 n)
  return {median, times[std::max<std::size_t>(rank, 1) - 1]};
}

struct LayerTime {
  std::string name;
  double forward_ms, backward_ms;
  double forward_flops;  // of the batch, as flops() counts them
};

// FLOPs per sample of layers First to Last of Net's forward, as flops() counts them.
template <std::size_t First, std::size_t Last, class Net>
double step_flops(const Net& net) {
  double total = 0;
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    ((total +=
      [&] {
        const auto& layer = net.template layer<First + I>();
        if constexpr (requires { layer.forward_flops(); }) return double(layer.forward_flops());
        else return 0.0;
      }()),
     ...);
  }(std::make_index_sequence<Last - First + 1>{});
  return total;
}

// Each step of the training plan alone (model/plan.hpp: a layer, or the layers a rule runs as
// one), on the activations of a real training forward, as a training step runs it: forward, then
// the backward steps inside its window (a ReLU whose gradient the step after applies takes none).
// A plan step's name: its layers' indices and its rule, e.g. "2+3.normalise_then_pool".
template <class Step>
std::string step_name() {
  std::string name;
  for (std::size_t i = Step::first; i <= Step::last; ++i) {
    if (i > Step::first) name += '+';
    name += std::to_string(i);
  }
  return name + '.' + std::string(Step::rule::name);
}

template <class Net>
std::vector<LayerTime> time_layers(Net& net, int batch, int repeats) {
  using Chain = typename Net::chain_type;
  using Forward = typename Chain::training_plan;
  using Backward = typename Chain::backward_plan;
  Chain& chain = net.chain();
  std::vector<LayerTime> times;
  const tnet::Pass pass{tnet::Mode::train, 0};
  [&]<std::size_t... S>(std::index_sequence<S...>) {
    (([&] {
       using Step = std::tuple_element_t<S, Forward>;
       const std::string name = step_name<Step>();
       auto start = Clock::now();
       for (int r = 0; r < repeats; ++r) chain.template forward_step<S>(batch, pass);
       const double forward = seconds_since(start) / repeats;
       double backward = 0;
       [&]<std::size_t... B>(std::index_sequence<B...>) {
         (([&] {
            using Back = std::tuple_element_t<B, Backward>;
            if constexpr (Back::first >= Step::first && Back::last <= Step::last) {
              tnet::Buffer dy(std::size_t(batch) * chain.template output_size<Back::last>(), 0.01f);
              tnet::Buffer dx(Back::first == 0 ? 0
                                               : std::size_t(batch) * chain.template output_size<Back::first == 0 ? 0 : Back::first - 1>());
              const auto begin = Clock::now();
              for (int r = 0; r < repeats; ++r) chain.template backward_step_alone<B>(dy.data(), Back::first == 0 ? nullptr : dx.data());
              backward += seconds_since(begin) / repeats;
            }
          }()),
          ...);
       }(std::make_index_sequence<std::tuple_size_v<Backward>>{});
       times.push_back({name, forward * 1e3, backward * 1e3, batch * step_flops<Step::first, Step::last>(net)});
     }()),
     ...);
  }(std::make_index_sequence<std::tuple_size_v<Forward>>{});
  return times;
}

// Each step of the inference plan alone (model/plan.hpp), on the activations of an inference of
// the batch, as predict runs it: the median of `repeats` runs of each, in milliseconds.
template <class Net>
std::vector<LayerTime> time_inference_steps(Net& net, const tnet::Buffer& x, int batch, int repeats) {
  using Chain = typename Net::chain_type;
  using Plan = typename Chain::inference_plan;
  Chain& chain = net.chain();
  net.predict(std::span(x).first(std::size_t(batch) * Net::input_size), batch);  // the kernels prepared, every step's input written
  const tnet::Pass pass{tnet::Mode::infer, 0, nullptr, 0, true};
  std::vector<LayerTime> times;
  std::vector<double> runs(std::size_t(std::max(1, repeats)));
  [&]<std::size_t... S>(std::index_sequence<S...>) {
    (([&] {
       using Step = std::tuple_element_t<S, Plan>;
       const std::string name = step_name<Step>();
       chain.template inference_step<S>(batch, pass);
       for (double& t : runs) {
         const auto start = Clock::now();
         chain.template inference_step<S>(batch, pass);
         t = seconds_since(start);
       }
       times.push_back({name, median_p99(runs).first * 1e3, 0, batch * step_flops<Step::first, Step::last>(net)});
     }()),
     ...);
  }(std::make_index_sequence<std::tuple_size_v<Plan>>{});
  return times;
}

// The networks --net takes: SmallerVGGNet, and where tnet has them (tnet/models) torchvision's
// ResNet18 and MobileNetV2 with a sigmoid after their Linear (binary cross-entropy, as
// benchmarks/peers/torch_bench.py trains them); 6 labels, 96x96x3 inputs.
#ifdef BENCH_TORCHVISION_MODELS
constexpr const char* nets[] = {"smallervgg", "resnet18", "mobilenetv2"};
#else
constexpr const char* nets[] = {"smallervgg"};
#endif

struct Options {
  int threads, batch, steps, latency_runs;
  bool json, layers;
  std::string onnx_path;
};

// Times Net as the head of this file says. The FLOP counts and the share of the roofline are
// SmallerVGGNet's alone (Counted; a Residual block counts no FLOPs of its own).
template <class Net, bool Counted>
int run(const Options& options) {
  const auto& [threads, batch, steps, latency_runs, json, layers, onnx_path] = options;
  tnet::set_num_threads(threads);
  auto net = std::make_unique<Net>(tnet::Outputs{labels}, 1);
  const double train_flops = flops(*net, true), infer_flops = flops(*net, false);
  tnet::Adam adam;
  const tnet::Rng rng(2);
  tnet::Buffer x(std::size_t(batch) * Net::input_shape::size), y(std::size_t(batch) * labels);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = rng.uniform(i);
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = rng.uniform(x.size() + i) > 0.5f ? 1.0f : 0.0f;

  net->train_step(x, y, batch, adam);  // warm-up: buffers allocated, pages touched
  const auto start = Clock::now();
  for (int s = 0; s < steps; ++s) net->train_step(x, y, batch, adam);
  const double train = seconds_since(start);

  // Seconds for `steps` predictions of the batch, and the median and 99th percentile of the
  // seconds one prediction of one image takes, each after a warm-up; in float, then with the dense
  // kernels read in bfloat16 (Sequential::set_inference_precision).
  std::vector<double> times(static_cast<std::size_t>(latency_runs));
  struct Inference {
    double batch, median, p99;
  };
  auto inference = [&](tnet::Precision precision) {
    net->set_inference_precision(precision);
    net->predict(x, batch);
    auto begin = Clock::now();
    for (int s = 0; s < steps; ++s) net->predict(x, batch);
    const double whole_batch = seconds_since(begin);
    const std::span<const float> one = std::span(x).first(Net::input_size);
    net->predict(one, 1);
    for (double& t : times) {
      begin = Clock::now();
      net->predict(one, 1);
      t = seconds_since(begin);
    }
    const auto [median, p99] = median_p99(times);
    return Inference{whole_batch, median, p99};
  };
  const Inference fp32 = inference(tnet::Precision::fp32), bf16 = inference(tnet::Precision::bf16);
  net->set_inference_precision(tnet::Precision::fp32);
  if (!onnx_path.empty()) {
    try {
      tnet::save_onnx(onnx_path, *net, {}, tnet::OnnxLayout::nchw);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_smallervgg: --onnx %s: %s\n", onnx_path.c_str(), e.what());
      return 1;
    }
  }

  std::vector<LayerTime> per_layer, per_inference_step, per_inference_step_bf16;
  if (layers) {
    per_inference_step = time_inference_steps(*net, x, batch, std::max(20, latency_runs / 4));
    net->set_inference_precision(tnet::Precision::bf16);
    per_inference_step_bf16 = time_inference_steps(*net, x, batch, std::max(20, latency_runs / 4));
    net->set_inference_precision(tnet::Precision::fp32);
    net->forward(x, batch, tnet::Mode::train);
    per_layer = time_layers(*net, batch, std::max(2, steps / 2));
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double roofline = gemm_roofline();

  const double train_rate = steps * batch / train, infer_rate = steps * batch / fp32.batch;
  const double train_gflops = train_rate * train_flops / 1e9, infer_gflops = infer_rate * infer_flops / 1e9;
  std::vector<std::pair<std::string, double>> figures = {{"threads", threads},
                                                         {"batch", batch},
                                                         {"train_images_per_s", train_rate},
                                                         {"infer_images_per_s", infer_rate},
                                                         {"infer_latency_batch1_ms", fp32.median * 1e3},
                                                         {"infer_latency_batch1_p99_ms", fp32.p99 * 1e3},
                                                         {"latency_runs", latency_runs},
                                                         {"infer_images_per_s_bf16", steps * batch / bf16.batch},
                                                         {"infer_latency_batch1_ms_bf16", bf16.median * 1e3},
                                                         {"infer_latency_batch1_p99_ms_bf16", bf16.p99 * 1e3},
                                                         {"bf16_convolutions", tnet::bf16_products() ? 1.0 : 0.0},
                                                         {"peak_rss_mb", double(usage.ru_maxrss) / 1024},
                                                         {"gemm_roofline_gflops", roofline}};
  if constexpr (Counted)
    figures.insert(figures.end(), {{"train_gflop_per_image", train_flops / 1e9},
                                   {"train_gflops", train_gflops},
                                   {"infer_gflops", infer_gflops},
                                   {"train_percent_of_roofline", 100 * train_gflops / roofline},
                                   {"infer_percent_of_roofline", 100 * infer_gflops / roofline}});
  if (json) {
    std::printf("{\"gemm_kernel\": \"%s\"", tnet::name(tnet::gemm_kernel()));
    for (std::size_t i = 0; i < figures.size(); ++i) std::printf(", \"%s\": %.4g", figures[i].first.c_str(), figures[i].second);
    if (layers) {
      std::printf(", \"layers\": [");
      for (std::size_t i = 0; i < per_layer.size(); ++i)
        std::printf("%s{\"name\": \"%s\", \"forward_ms\": %.4g, \"backward_ms\": %.4g, \"forward_flops\": %.0f}", i ? ", " : "",
                    per_layer[i].name.c_str(), per_layer[i].forward_ms, per_layer[i].backward_ms, per_layer[i].forward_flops);
      for (const auto& [key, steps_timed] :
           {std::pair{"inference_steps", &per_inference_step}, std::pair{"inference_steps_bf16", &per_inference_step_bf16}}) {
        std::printf("], \"%s\": [", key);
        for (std::size_t i = 0; i < steps_timed->size(); ++i)
          std::printf("%s{\"name\": \"%s\", \"ms\": %.4g, \"forward_flops\": %.0f}", i ? ", " : "", (*steps_timed)[i].name.c_str(),
                      (*steps_timed)[i].forward_ms, (*steps_timed)[i].forward_flops);
      }
      std::printf("]");
    }
    std::printf("}\n");
    return 0;
  }
  std::printf("gemm_kernel %s\n", tnet::name(tnet::gemm_kernel()));
  for (const auto& [name, value] : figures) std::printf("%s %.*f\n", name.c_str(), value == double(long(value)) ? 0 : 3, value);
  for (const LayerTime& t : per_layer)
    std::printf("step %-32s forward_ms %8.3f backward_ms %8.3f forward_flops %.0f\n", t.name.c_str(), t.forward_ms, t.backward_ms,
                t.forward_flops);
  for (const LayerTime& t : per_inference_step)
    std::printf("infer_step %-26s ms %8.3f forward_flops %.0f\n", t.name.c_str(), t.forward_ms, t.forward_flops);
  for (const LayerTime& t : per_inference_step_bf16)  // Precision::bf16
    std::printf("infer_step_bf16 %-21s ms %8.3f forward_flops %.0f\n", t.name.c_str(), t.forward_ms, t.forward_flops);
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  int threads = tnet::num_threads(), batch = 32, steps = 10, latency_runs = 0;
  bool json = false, layers = false;
  std::string onnx_path, net = "smallervgg";
  const char* usage_text =
      "usage: bench_smallervgg [--net NAME] [--threads N] [--batch N] [--steps N] [--latency-runs N]\n"
      "                        [--kernel eigen|avx2|avx512] [--onnx FILE] [--json] [--layers] | --list-nets\n";
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--list-nets") {
      for (const char* net : nets) std::printf("%s\n", net);
      return 0;
    }
    if (i + 1 < argc && flag == "--net") {
      net = argv[++i];
      if (std::ranges::find(nets, net) == std::end(nets)) {
        std::string names;
        for (const char* name : nets) names += std::string(names.empty() ? "" : ", ") + name;
        std::fprintf(stderr, "bench_smallervgg: --net takes %s (the networks this tnet has), got '%s'\n", names.c_str(), net.c_str());
        return 2;
      }
    } else if (i + 1 < argc && flag == "--threads") threads = positive(argv[i], argv[i + 1]), ++i;
    else if (i + 1 < argc && flag == "--latency-runs") latency_runs = positive(argv[i], argv[i + 1]), ++i;
    else if (i + 1 < argc && flag == "--onnx") onnx_path = argv[++i];
    else if (i + 1 < argc && flag == "--batch") batch = positive(argv[i], argv[i + 1]), ++i;
    else if (i + 1 < argc && flag == "--steps") steps = positive(argv[i], argv[i + 1]), ++i;
    else if (i + 1 < argc && flag == "--kernel") {
      const std::string kernel = argv[++i];
      const auto chosen = kernel == "eigen"  ? tnet::GemmKernel::eigen
                          : kernel == "avx2" ? tnet::GemmKernel::avx2
                                             : tnet::GemmKernel::avx512;
      if (kernel != tnet::name(chosen) || !tnet::use_gemm_kernel(chosen)) {
        std::fprintf(stderr, "bench_smallervgg: --kernel takes eigen, avx2 or avx512 (one this CPU runs), got '%s'\n", kernel.c_str());
        return 2;
      }
    } else if (flag == "--json") json = true;
    else if (flag == "--layers") layers = true;
    else {
      std::fputs(usage_text, stderr);
      return 2;
    }
  }
  if (latency_runs == 0) latency_runs = 4 * steps;
  const Options options{threads, batch, steps, latency_runs, json, layers, onnx_path};
#ifdef BENCH_TORCHVISION_MODELS
  if (net == "resnet18") return run<tnet::models::ResNet18<96, 96, 3, tnet::dynamic, tnet::Sigmoid>, false>(options);
  if (net == "mobilenetv2") return run<tnet::models::MobileNetV2<96, 96, 3, tnet::dynamic, tnet::Sigmoid>, false>(options);
#endif
  return run<fashion::SmallerVGGNet<96>, true>(options);
}
