// The data path on real photos: decoding alone (one thread, every photo once), decoding + resizing
// a folder (all threads), and augmenting an epoch.
//   bench_data [--dataset DIR] [--threads N] [--size 96]
// Prints `name value` lines.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>

#include <tnet/tnet.hpp>

int main(int argc, char** argv) {
  std::string dataset = "../shared/datasets/fashion/dataset";
  int threads = tnet::num_threads(), size = 96;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--dataset") dataset = argv[i + 1];
    else if (flag == "--threads") threads = std::atoi(argv[i + 1]);
    else if (flag == "--size") size = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: bench_data [--dataset DIR] [--threads N] [--size S]\n");
      return 2;
    }
  }
  if (threads < 1 || size < 1) {
    std::fprintf(stderr, "bench_data: --threads and --size must be positive\n");
    return 2;
  }
  tnet::set_num_threads(threads);
  tnet::LoadReport report;
  tnet::LabeledImages data;
  try {
    data = tnet::load_image_folder(dataset, tnet::LoadOptions{.size = size, .separator = '_', .limits = {}}, &report);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_data: %s\n", e.what());
    return 1;
  }
  std::printf("threads %d\nimages %zu\nskipped %zu\n", threads, report.loaded, report.skipped.size());
  {
    std::size_t pixels = 0;
    const auto start = std::chrono::steady_clock::now();
    for (const std::string& path : data.paths) pixels += tnet::read_image(path).pixels.size() / 3;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("decode_only_images_per_s_1_thread %.1f\ndecode_only_megapixels_per_s_1_thread %.1f\n", double(data.count()) / seconds,
                double(pixels) / seconds / 1e6);
  }
  std::printf("decode_resize_images_per_s %.1f\n", double(report.loaded) / report.seconds);

  tnet::MultiLabelBinarizer mlb;
  const std::vector<float> targets = mlb.fit_transform(data.labels);
  std::vector<std::size_t> all(data.count());
  std::iota(all.begin(), all.end(), std::size_t{0});
  tnet::BatchIterator::Options options;
  options.augmenter.emplace(tnet::AugmentOptions::keras_tutorial());
  tnet::BatchIterator batches(data, targets, int(mlb.classes().size()), all, options);
  const auto start = std::chrono::steady_clock::now();
  std::size_t seen = 0;
  for (int n; (n = batches.next()) > 0;) seen += std::size_t(n);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("augment_images_per_s %.1f\n", double(seen) / seconds);
  return 0;
}
