// The data path on real photos: decoding alone (one thread, every photo once), decoding + resizing
// a folder (all threads), augmenting an epoch, and batches read from an image cache (built in a
// temporary folder, then opened again): plain and augmented, an epoch each.
//   bench_data [--dataset DIR] [--threads N] [--size 96]
// Prints `name value` lines.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <string>

#include <unistd.h>

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
  // Batches of 32 a second over an epoch of `images`.
  auto epoch = [&](const tnet::LabeledImages& images, bool augment) {
    tnet::BatchIterator::Options o;
    if (augment) o.augmenter.emplace(tnet::AugmentOptions::keras_tutorial());
    tnet::BatchIterator batches(images, targets, int(mlb.classes().size()), all, o);
    const auto start = std::chrono::steady_clock::now();
    std::size_t seen = 0, count = 0;
    for (int n; (n = batches.next()) > 0; ++count) seen += std::size_t(n);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return std::pair{double(seen) / seconds, double(count) / seconds};
  };
  std::printf("augment_images_per_s %.1f\n", epoch(data, true).first);
  std::printf("memory_batches_per_s %.1f\n", epoch(data, false).second);

  namespace fs = std::filesystem;
  const fs::path cache = fs::temp_directory_path() / ("tnet_bench_data_" + std::to_string(::getpid()));
  try {
    const tnet::LoadOptions options{.size = size, .separator = '_', .limits = {}};
    tnet::LoadReport built, opened;
    tnet::load_image_folder_cached(dataset, cache.string(), options, &built);
    const tnet::LabeledImages cached = tnet::load_image_folder_cached(dataset, cache.string(), options, &opened);
    std::printf("cache_build_s %.3f\ncache_open_s %.3f\n", built.seconds, opened.seconds);
    for (int pass = 0; pass < 3; ++pass)
      std::printf("cache_batches_per_s %.1f\ncache_augment_batches_per_s %.1f\n", epoch(cached, false).second, epoch(cached, true).second);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_data: %s\n", e.what());
    fs::remove_all(cache);
    return 1;
  }
  fs::remove_all(cache);
  return 0;
}
