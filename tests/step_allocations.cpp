// step_allocations: a training step (with layers frozen too), and inference at batch 32 and batch 1
// (dense kernels in float or bfloat16), allocate nothing once
// the network has run at those batch sizes (Sequential's promise) and its threads' workspaces have
// grown: GEMM packing, Winograd's transformed kernels and tiles, reductions. Counts the process's
// malloc, calloc and realloc calls while it measures (operator new and Eigen's aligned buffers
// both come through malloc), but for the OpenMP runtime's own; exits 1 when any happened.
#include <dlfcn.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <tnet/tnet.hpp>

namespace {
std::atomic<bool> counting{false};
std::atomic<long> allocations{0};
// LLVM's OpenMP runtime (libomp, Clang's) allocates for its own bookkeeping in some parallel
// regions; that is not tnet's doing and is not counted. GCC's libgomp does not.
void count(void* caller) {
  if (!counting.load(std::memory_order_relaxed)) return;
  Dl_info where;
  if (dladdr(caller, &where) && where.dli_fname && std::strstr(where.dli_fname, "libomp")) return;
  allocations.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

// glibc's own allocator under the replaced entry points.
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* malloc(std::size_t size) {
  count(__builtin_return_address(0));
  return __libc_malloc(size);
}
void* calloc(std::size_t n, std::size_t size) {
  count(__builtin_return_address(0));
  return __libc_calloc(n, size);
}
void* realloc(void* p, std::size_t size) {
  count(__builtin_return_address(0));
  return __libc_realloc(p, size);
}
}

int main() {
  // Every kind of layer; convolutions taking the direct (3 channels, 8 channels), gathered and
  // Winograd paths (16 and 32 channels at 32x32: F(4x4, 3x3) and its adjoint).
  using Net = tnet::Sequential<tnet::Input<32, 32, 3>, tnet::Conv2D<16, 3>, tnet::ReLU, tnet::BatchNorm, tnet::Conv2D<32, 3>, tnet::ReLU,
                               tnet::BatchNorm, tnet::MaxPool2D<2>, tnet::Dropout<0.25f>, tnet::Conv2D<8, 3, 2>, tnet::Flatten,
                               tnet::Dense<tnet::dynamic>, tnet::Sigmoid>;
  Net net(tnet::Outputs{5}, 1);
  const int batch = 32;
  tnet::Buffer x(std::size_t(batch) * Net::input_size), targets(std::size_t(batch) * 5);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = float(i % 17) / 17.0f;
  for (std::size_t i = 0; i < targets.size(); ++i) targets[i] = float(i % 3 == 0);
  tnet::Adam adam;
  auto run = [&] {
    net.train_step(x, targets, batch, adam);
    net.predict(x, batch);
    net.predict(std::span<const float>(x).first(Net::input_size), 1);
  };
  // The first run sizes the buffers and every thread's workspaces (the same thread always gets the
  // same pieces of a product); three more must not allocate. Then the same with inference reading
  // the dense kernel in bfloat16, remade after each training step.
  long total = 0;
  for (const tnet::Precision precision : {tnet::Precision::fp32, tnet::Precision::bf16}) {
    net.set_inference_precision(precision);
    run();
    counting = true;
    for (int i = 0; i < 3; ++i) run();
    counting = false;
    const long measured = allocations.exchange(0);
    std::printf("allocations in 3 runs of a training step and two predictions (dense kernels in %s): %ld\n",
                precision == tnet::Precision::bf16 ? "bf16" : "fp32", measured);
    total += measured;
  }
  // AdamW with a cosine warm-up and gradient-norm clipping (its per-block sums made on its first
  // step), and the imbalanced-label losses.
  tnet::AdamW adamw(tnet::AdamW::Options{.clip_norm = 1.0, .schedule = tnet::Schedule::cosine(100, 10)});
  auto train = [&] { net.train_step(x, targets, batch, adamw); };
  for (const tnet::Loss loss : {tnet::Loss::binary_crossentropy, tnet::Loss::sigmoid_focal}) {
    net.set_loss(loss, loss == tnet::Loss::binary_crossentropy ? tnet::LossOptions{.pos_weight = {1, 2, 3, 4, 5}} : tnet::LossOptions{});
    train();
    counting = true;
    for (int i = 0; i < 3; ++i) train();
    counting = false;
    const long measured = allocations.exchange(0);
    std::printf("allocations in 3 training steps with AdamW, clipping and %s: %ld\n", tnet::loss_name(loss), measured);
    total += measured;
  }
  // Fine-tuning: the first layers frozen (run as inference runs them, backward stopping above
  // them), with inference in float and in bfloat16 (the frozen dense kernel's copy remade for
  // each training step when the dense layer is frozen too).
  for (const std::size_t frozen : {std::size_t(7), std::size_t(12)})
    for (const tnet::Precision precision : {tnet::Precision::fp32, tnet::Precision::bf16}) {
      net.freeze_until(frozen);
      net.set_inference_precision(precision);
      run();
      train();
      counting = true;
      for (int i = 0; i < 3; ++i) {
        run();
        train();
      }
      counting = false;
      const long measured = allocations.exchange(0);
      std::printf("allocations in 3 runs with layers [0, %zu) frozen (dense kernels in %s): %ld\n", frozen,
                  precision == tnet::Precision::bf16 ? "bf16" : "fp32", measured);
      total += measured;
    }
  // Learning-rate multipliers instead of freezing: their ranges made when they are set, every
  // optimizer's step walks them.
  net.freeze_until(0);
  net.set_learning_rate_multiplier(0, 7, 0.1);
  net.set_learning_rate_multiplier(9, 10, 0.0);
  tnet::SGD sgd(tnet::SGD::Options{.momentum = 0.9});
  for (tnet::Optimizer* optimizer : std::initializer_list<tnet::Optimizer*>{&adam, &adamw, &sgd}) {
    net.train_step(x, targets, batch, *optimizer);
    counting = true;
    for (int i = 0; i < 3; ++i) net.train_step(x, targets, batch, *optimizer);
    counting = false;
    const long measured = allocations.exchange(0);
    std::printf("allocations in 3 training steps of %s with learning-rate multipliers: %ld\n", optimizer->kind().c_str(), measured);
    total += measured;
  }
  return total == 0 ? 0 : 1;
}
