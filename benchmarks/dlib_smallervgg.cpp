// SmallerVGGNet in dlib (Debian's libdlib-dev, its CPU path on the BLAS it is linked to: OpenBLAS
// from libopenblas0-pthread), timed as bench_smallervgg times tnet's.
//   OPENBLAS_NUM_THREADS=2 dlib_smallervgg [--batch 32] [--steps 10]
// Prints `name value` lines like bench_smallervgg.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <dlib/dnn.h>

using namespace dlib;

// dlib's dropout layer takes its rate at construction; these fix it to the tutorial's rates.
class dropout25_ : public dropout_ {
 public:
  dropout25_() : dropout_(0.25f) {}
};
template <typename SUBNET>
using dropout25 = add_layer<dropout25_, SUBNET>;

template <long N, typename SUBNET>
using block = bn_con<relu<con<N, 3, 3, 1, 1, SUBNET>>>;  // Conv -> ReLU -> BatchNorm, "same" padding

// clang-format off: the network laid out as its layers
using smaller_vgg = loss_multibinary_log<
    fc<6, dropout<bn_fc<relu<fc<1024,
    dropout25<max_pool<2, 2, 2, 2, block<128, block<128,
    dropout25<max_pool<2, 2, 2, 2, block<64, block<64,
    dropout25<max_pool<3, 3, 3, 3, block<32,
    input_rgb_image_sized<96>>>>>>>>>>>>>>>>>>;

// dlib's way to run a trained network: batch norm as a fixed affine layer, dropout as a scale.
template <long N, typename SUBNET>
using affine_block = affine<relu<con<N, 3, 3, 1, 1, SUBNET>>>;
using smaller_vgg_inference = loss_multibinary_log<
    fc<6, multiply<affine<relu<fc<1024,
    multiply<max_pool<2, 2, 2, 2, affine_block<128, affine_block<128,
    multiply<max_pool<2, 2, 2, 2, affine_block<64, affine_block<64,
    multiply<max_pool<3, 3, 3, 3, affine_block<32,
    input_rgb_image_sized<96>>>>>>>>>>>>>>>>>>;
// clang-format on

int main(int argc, char** argv) {
  int batch = 32, steps = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--batch") batch = std::atoi(argv[i + 1]);
    else if (flag == "--steps") steps = std::atoi(argv[i + 1]);
  }
  if (batch < 1 || steps < 1) {
    std::fprintf(stderr, "usage: dlib_smallervgg [--batch N] [--steps N]\n");
    return 2;
  }
  std::vector<matrix<rgb_pixel>> images(batch, matrix<rgb_pixel>(96, 96));
  std::vector<std::vector<float>> labels(batch, std::vector<float>(6));
  dlib::rand rnd(1);
  for (auto& image : images)
    for (auto& p : image) p = rgb_pixel(rnd.get_random_8bit_number(), rnd.get_random_8bit_number(), rnd.get_random_8bit_number());
  for (auto& l : labels)
    for (float& v : l) v = rnd.get_random_float() > 0.5f ? 1.f : -1.f;

  smaller_vgg net;
  dnn_trainer<smaller_vgg, adam> trainer(net, adam(0, 0.9, 0.999));
  trainer.set_learning_rate(1e-3);
  trainer.set_mini_batch_size(batch);
  trainer.train_one_step(images.begin(), images.end(), labels.begin());  // warm-up
  trainer.get_net();                                                     // waits for the step
  auto start = std::chrono::steady_clock::now();
  for (int s = 0; s < steps; ++s) trainer.train_one_step(images.begin(), images.end(), labels.begin());
  trainer.get_net();
  const double train = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  smaller_vgg_inference trained = trainer.get_net();
  trained(images, std::size_t(batch));
  start = std::chrono::steady_clock::now();
  for (int s = 0; s < steps; ++s) trained(images, std::size_t(batch));
  const double infer = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  trained(images[0]);
  start = std::chrono::steady_clock::now();
  for (int s = 0; s < steps * 4; ++s) trained(images[0]);
  const double latency = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / (steps * 4);

  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf("batch %d\ntrain_images_per_s %.1f\ninfer_images_per_s %.1f\ninfer_latency_batch1_ms %.2f\npeak_rss_mb %ld\n", batch,
              steps * batch / train, steps * batch / infer, latency * 1e3, usage.ru_maxrss / 1024);
  return 0;
}
