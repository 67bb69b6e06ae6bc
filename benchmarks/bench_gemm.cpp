// GFLOP/s of tnet::gemm on SmallerVGGNet's matrix shapes (batch 32) with every kernel this CPU
// runs: Eigen's (vectorised for the compile-time target) and tnet's own (core/gemm_kernels.hpp);
// and where the CPU has AVX512_BF16, of the forward products in bfloat16 as inference computes
// them with Precision::bf16 (core/gemm_bf16.hpp: B rounded once, A as it is read).
//   bench_gemm [--threads N]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <tnet/core/gemm.hpp>
#include <tnet/core/gemm_bf16.hpp>
#include <tnet/core/threads.hpp>

namespace {
using tnet::Transpose;

double gflops(Transpose ta, Transpose tb, long M, long N, long K) {
  tnet::Buffer a(std::size_t(M * K)), b(std::size_t(K * N)), c(std::size_t(M * N));
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = float(i % 7) * 0.1f;
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = float(i % 5) * 0.1f;
  tnet::gemm(ta, tb, M, N, K, a.data(), b.data(), c.data());  // warm-up: workspaces, pages
  const int repeats = M == 1 ? 200 : 5;
  const auto start = std::chrono::steady_clock::now();
  for (int r = 0; r < repeats; ++r) tnet::gemm(ta, tb, M, N, K, a.data(), b.data(), c.data());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return 2.0 * double(M) * double(N) * double(K) * repeats / seconds / 1e9;
}

// The same for C = A * B in bfloat16, B (the kernel) rounded beforehand, as inference has it.
double gflops_bf16(long M, long N, long K) {
  tnet::Buffer a(std::size_t(M * K)), b(std::size_t(K * N)), c(std::size_t(M * N));
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = float(i % 7) * 0.1f;
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = float(i % 5) * 0.1f;
  tnet::detail::PackedBf16 rounded;
  rounded.pack(b.data(), N, K);
  const tnet::detail::Operand rows{a.data(), K, 1};
  tnet::detail::kernel_gemm_bf16(rows, rounded, M, c.data());  // warm-up
  const int repeats = 5;
  const auto start = std::chrono::steady_clock::now();
  for (int r = 0; r < repeats; ++r) tnet::detail::kernel_gemm_bf16(rows, rounded, M, c.data());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return 2.0 * double(M) * double(N) * double(K) * repeats / seconds / 1e9;
}
}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  if (argc == 3 && std::string(argv[1]) == "--threads") threads = std::atoi(argv[2]);
  else if (argc != 1) {
    std::fprintf(stderr, "usage: bench_gemm [--threads N]\n");
    return 2;
  }
  tnet::set_num_threads(std::max(1, threads));
  struct Shape {
    const char* name;
    Transpose ta, tb;
    long M, N, K;
  };
  const Shape shapes[] = {
      {"square_1024", Transpose::no, Transpose::no, 1024, 1024, 1024},
      {"conv64_forward", Transpose::no, Transpose::no, 32768, 64, 576},       // columns * kernel
      {"conv64_weight_grad", Transpose::yes, Transpose::no, 576, 64, 32768},  // columns^T dy
      {"conv64_input_grad", Transpose::no, Transpose::yes, 32768, 576, 64},   // dy kernel^T
      {"conv3_forward", Transpose::no, Transpose::no, 294912, 32, 27},        // the first convolution
      {"conv3_weight_grad", Transpose::yes, Transpose::no, 27, 32, 294912},
      {"conv128_forward", Transpose::no, Transpose::no, 8192, 128, 1152},
      {"conv128_weight_grad", Transpose::yes, Transpose::no, 1152, 128, 8192},
      {"dense_forward", Transpose::no, Transpose::no, 32, 1024, 8192},
      {"dense_input_grad", Transpose::no, Transpose::yes, 32, 8192, 1024},
      {"dense_forward_batch1", Transpose::no, Transpose::no, 1, 1024, 8192},
  };
  std::printf("%-22s", "shape (GFLOP/s)");
  const tnet::GemmKernel kernels[] = {tnet::GemmKernel::eigen, tnet::GemmKernel::avx2, tnet::GemmKernel::avx512};
  for (const auto kernel : kernels)
    if (tnet::supported(kernel)) std::printf(" %9s", tnet::name(kernel));
  const tnet::GemmKernel chosen = tnet::gemm_kernel();
  const bool bf16 = tnet::use_gemm_kernel(tnet::GemmKernel::avx512) && tnet::bf16_products();
  if (bf16) std::printf(" %11s", "avx512_bf16");
  std::printf("\n");
  for (const Shape& shape : shapes) {
    std::printf("%-22s", shape.name);
    for (const auto kernel : kernels)
      if (tnet::use_gemm_kernel(kernel)) std::printf(" %9.1f", gflops(shape.ta, shape.tb, shape.M, shape.N, shape.K));
    // Inference's products in bfloat16: the forward ones (A times an untransposed kernel), as a
    // convolution or a batch of dense rows has them.
    if (bf16 && shape.ta == Transpose::no && shape.tb == Transpose::no && shape.M > 1 && tnet::use_gemm_kernel(tnet::GemmKernel::avx512))
      std::printf(" %11.1f", gflops_bf16(shape.M, shape.N, shape.K));
    std::printf("\n");
  }
  tnet::use_gemm_kernel(chosen);
  return 0;
}
