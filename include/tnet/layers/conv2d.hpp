// tnet/layers/conv2d.hpp: 2-D convolution (Keras Conv2D).
//
// Contract: x (N, H, W, C) -> y (N, OH, OW, F), y = sum over the K x K window of x * kernel + bias.
// padding (layers/padding.hpp) same: OH = ceil(H / S), zero padding split as Keras does (the
// extra row at the bottom); valid: OH = (H - K) / S + 1, needs H, W >= K; pad(p), PyTorch's
// padding=p: OH = (H + 2p - K) / S + 1. Learns kernel (K, K, C, F) in Keras's HWIO order and bias
// (F); kernel glorot-uniform, bias zero.
// Computed as one GEMM over the whole batch: y = columns * kernel, where `columns`, the im2col
// matrix of x, has N*OH*OW rows of K*K*C. With tnet's own kernels the columns are never written
// out: the GEMM gathers each block of them from x as it needs it (detail::Patches), for the
// forward pass and the weight gradient (columns^T dy); at stride 1 the input gradient is the
// convolution of dy with the flipped kernel, gathered the same way. 3x3 convolutions at stride 1
// with channels in multiples of 16 use Winograd's minimal filtering instead (layers/winograd.hpp)
// for all three products, when the batch has tiles enough. The bias (and the
// ReLU after the layer, and in inference the batch normalisation after that) is applied as y is
// written. With Eigen's kernels, and for the input gradient at larger strides or with output
// channels not a multiple of 8, im2col writes the columns into one workspace per calling thread,
// shared by every convolution of every network (detail::conv_workspace), and col2im folds the
// columns' gradient back onto the pixels.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "../core/gemm.hpp"
#include "../core/gemm_bf16.hpp"
#include "layer.hpp"
#include "padding.hpp"
#include "winograd.hpp"

namespace tnet {

namespace detail {
// One inline function, hence one buffer per thread in the whole program: a static inside the
// class template would be one per convolution shape.
inline Buffer& conv_workspace() {
  static thread_local Buffer columns;  // grows to the largest convolution seen, then stays
  return columns;
}

/// The im2col matrix of a batch of NHWC images, never materialised: row r is output pixel
/// (n, oy, ox), column k is (ky, kx, c) of the window whose corner is (oy * S - top, ox * S - left);
/// values outside the images are zero. As the A operand of tnet's kernels (core/gemm_kernels.hpp)
/// each block of rows is gathered from the images into the calling thread's packing buffer when
/// the kernels reach it, so the matrix never leaves the cache.
/// K (the window) and C (channels) are compile-time constants: the gathers divide by them.
template <int K, int C>
struct Patches {
  const float* x;
  int H, W, OH, OW, S, top, left;
  std::ptrdiff_t r0 = 0, k0 = 0;  // where this view starts

  Patches at(std::ptrdiff_t r, std::ptrdiff_t k) const {
    Patches view = *this;
    view.r0 += r, view.k0 += k;
    return view;
  }
  template <int MR>
  ABlock block(std::ptrdiff_t rows, std::ptrdiff_t k, std::ptrdiff_t kc) const {
    ensure_size(packed_a(), std::size_t(rows * kc));
    float* out = packed_a().data();
    // Output pixels one after another from (n, oy, ox).
    const std::ptrdiff_t pixels = std::ptrdiff_t(OH) * OW;
    std::ptrdiff_t n = r0 / pixels;
    int oy = int(r0 % pixels) / OW, ox = int(r0 % pixels) % OW;
    for (std::ptrdiff_t i = 0; i < rows; ++i) {
      gather(x + n * H * W * C, oy, ox, k0 + k, kc, out + i * kc);
      if (++ox == OW) {
        ox = 0;
        if (++oy == OH) oy = 0, ++n;
      }
    }
    return {out, kc, kc, 1};
  }
  // Columns [k, k + kc) of the window under output pixel (oy, ox) of `image`, as window() gives
  // them; a whole window inside the image (the usual case when a window fits one step along K: a
  // first convolution's 27 values) as K copies of known size.
  void gather(const float* image, int oy, int ox, std::ptrdiff_t k, std::ptrdiff_t kc, float* out) const {
    const int iy = oy * S - top, ix = ox * S - left;
    if (k == 0 && kc == K * K * C && iy >= 0 && iy + K <= H && ix >= 0 && ix + K <= W) {
      for (int ky = 0; ky < K; ++ky) std::memcpy(out + ky * K * C, image + (std::ptrdiff_t(iy + ky) * W + ix) * C, sizeof(float) * K * C);
      return;
    }
    window(image, oy, ox, k, kc, out);
  }
  // Columns [k, k + kc) of the window under output pixel (oy, ox) of `image`, in runs: the rest of
  // a row of the window where it lies within the image (its cells are adjacent pixels), else the
  // rest of a cell's channels.
  void window(const float* image, int oy, int ox, std::ptrdiff_t k, std::ptrdiff_t kc, float* out) const {
    for (const std::ptrdiff_t end = k + kc; k < end;) {
      const int cell = int(k / C), c = int(k % C), kx = cell % K, iy = oy * S - top + cell / K, ix = ox * S - left + kx;
      const bool row_inside = iy >= 0 && iy < H, cells_inside = row_inside && ix >= 0 && ix + (K - kx) <= W;
      if (cells_inside && kx == 0 && c == 0 && end - k >= K * C) {  // a whole row of the window: a copy of known size
        std::memcpy(out, image + (std::ptrdiff_t(iy) * W + ix) * C, sizeof(float) * K * C);
        out += K * C, k += K * C;
        continue;
      }
      const int run = int(std::min<std::ptrdiff_t>(cells_inside || !row_inside ? (K - kx) * C - c : C - c, end - k));
      if (!row_inside || ix < 0 || ix >= W) std::fill(out, out + run, 0.0f);
      else std::memcpy(out, image + (std::ptrdiff_t(iy) * W + ix) * C + c, sizeof(float) * std::size_t(run));
      out += run, k += run;
    }
  }
};

/// The im2col matrix of a 1x1 convolution at stride 1 without padding: the images' pixels
/// themselves, rows of C values, read where they lie (as Patches<1, C> gathers the same values).
struct Pixels {
  const float* x;
  std::ptrdiff_t C;

  Pixels at(std::ptrdiff_t r, std::ptrdiff_t k) const { return {x + r * C + k, C}; }
  template <int MR>
  ABlock block(std::ptrdiff_t, std::ptrdiff_t k, std::ptrdiff_t) const {
    return {x + k, C, C, 1};
  }
};

/// The transpose of Patches (rows: the window's (ky, kx, c); depth: output pixels), the A operand
/// of a weight gradient: blocks are packed into panels of MR window positions straight from the
/// images, each pixel's MR values one copy when they are MR channels of one window cell. A row of
/// ones follows the window's K * K * C rows: its product with dy is the bias gradient, summed in
/// the same pass over dy as the kernel's.
template <int K, int C>
struct PatchesTransposed {
  static constexpr std::ptrdiff_t ones_row = std::ptrdiff_t(K) * K * C;
  Patches<K, C> patches;
  std::ptrdiff_t p0 = 0, q0 = 0;  // first window position and pixel of this view

  PatchesTransposed at(std::ptrdiff_t p, std::ptrdiff_t q) const { return {patches, p0 + p, q0 + q}; }
  template <int MR>
  ABlock block(std::ptrdiff_t rows, std::ptrdiff_t k, std::ptrdiff_t kc) const {
    const Patches<K, C>& in = patches;
    ensure_size(packed_a(), std::size_t((rows + MR - 1) / MR * MR * kc));
    float* out = packed_a().data();
    const std::ptrdiff_t pixels = std::ptrdiff_t(in.OH) * in.OW;
    if constexpr (C < 8) {
      // Few channels (a first convolution's 3): each pixel's window, gathered in runs (rows of the
      // window), then dealt out to the panels.
      static thread_local Buffer window;
      const std::ptrdiff_t padded = (rows + MR - 1) / MR * MR;
      ensure_size(window, std::size_t(padded));
      std::fill(window.data() + rows, window.data() + padded, 0.0f);
      const std::ptrdiff_t in_window = std::min(rows, ones_row - p0);
      if (in_window < rows) window[std::size_t(ones_row - p0)] = 1.0f;
      std::ptrdiff_t q = q0 + k, image = q / pixels;
      int oy = int(q % pixels) / in.OW, ox = int(q % pixels) % in.OW;
      for (std::ptrdiff_t j = 0; j < kc; ++j) {
        in.gather(in.x + image * in.H * in.W * C, oy, ox, p0, in_window, window.data());
        for (std::ptrdiff_t p = 0; p < padded; p += MR)
          for (int i = 0; i < MR; ++i) out[p * kc + j * MR + i] = window[std::size_t(p + i)];
        if (++ox == in.OW) {
          ox = 0;
          if (++oy == in.OH) oy = 0, ++image;
        }
      }
      return {out, kc, 1, MR};
    }
    for (std::ptrdiff_t p = p0; p < p0 + rows; p += MR, out += MR * kc) {
      const int n = int(std::min<std::ptrdiff_t>(MR, p0 + rows - p));
      int dy[MR], dx[MR], channel[MR];  // each row's window offset and channel; padded rows read nothing
      for (int i = 0; i < MR; ++i) {
        const std::ptrdiff_t position = p + std::min(i, n - 1), cell = position / C;
        dy[i] = int(cell / K) - in.top, dx[i] = int(cell % K) - in.left, channel[i] = int(position % C);
      }
      // channels c .. c + MR - 1 of one cell
      const bool one_cell = n == MR && p + MR <= ones_row && dy[0] == dy[MR - 1] && dx[0] == dx[MR - 1];
      std::ptrdiff_t q = q0 + k, image = q / pixels;
      int oy = int(q % pixels) / in.OW, ox = int(q % pixels) % in.OW;
      for (std::ptrdiff_t j = 0; j < kc; ++j) {
        const float* pixel_row = in.x + image * in.H * in.W * C;
        float* dst = out + j * MR;
        if (one_cell) {
          const int iy = oy * in.S + dy[0], ix = ox * in.S + dx[0];
          if (iy < 0 || iy >= in.H || ix < 0 || ix >= in.W) std::fill(dst, dst + MR, 0.0f);
          else std::memcpy(dst, pixel_row + (std::ptrdiff_t(iy) * in.W + ix) * C + channel[0], sizeof(float) * MR);
        } else {
          for (int i = 0; i < MR; ++i) {
            const int iy = oy * in.S + dy[i], ix = ox * in.S + dx[i];
            const bool inside = i < n && iy >= 0 && iy < in.H && ix >= 0 && ix < in.W;
            dst[i] = p + i == ones_row ? 1.0f : inside ? pixel_row[(std::ptrdiff_t(iy) * in.W + ix) * C + channel[i]] : 0.0f;
          }
        }
        if (++ox == in.OW) {
          ox = 0;
          if (++oy == in.OH) oy = 0, ++image;
        }
      }
    }
    return {packed_a().data(), kc, 1, MR};
  }
};

// A convolution's kernel turned for its input gradient at stride 1: flipped in space, input and
// output channels swapped, (K, K, F, C) from (K, K, C, F). In the calling thread's workspace.
// Transposed in blocks of 16 x 16, each read and written a cache line a row, the blocks shared
// by the threads (ResNet18's 3x3 kernels of 512 x 512 channels, turned one value at a time with
// the writes 2 KB apart, took 3 % of its training step).
inline const float* flipped_kernel(const float* kernel, int K, int C, int F) {
  static thread_local Buffer flipped;
  const std::ptrdiff_t size = std::ptrdiff_t(K) * K * C * F;
  ensure_size(flipped, std::size_t(size));
  float* out = flipped.data();
  constexpr int B = 16;
  const std::ptrdiff_t c_blocks = (C + B - 1) / B;
#pragma omp parallel for schedule(static) if (size > (1 << 16))
  for (std::ptrdiff_t job = 0; job < K * K * c_blocks; ++job) {
    const int cell = int(job / c_blocks), c0 = int(job % c_blocks) * B, c1 = std::min(C, c0 + B);
    const float* from = kernel + std::ptrdiff_t(K * K - 1 - cell) * C * F;
    float* to = out + std::ptrdiff_t(cell) * F * C;
    for (int f0 = 0; f0 < F; f0 += B)
      for (int f = f0; f < std::min(F, f0 + B); ++f)
        for (int c = c0; c < c1; ++c) to[std::ptrdiff_t(f) * C + c] = from[std::ptrdiff_t(c) * F + f];
  }
  return out;
}
}  // namespace detail

template <int Filters, int Kernel, int Stride = 1, Padding Pad = Padding::same>
struct Conv2D : LayerSpec {
  static_assert(Filters > 0 && Kernel > 0 && Stride > 0, "tnet::Conv2D: filters, kernel and stride must be positive");
  static_assert(Pad.amount >= 0 && Pad.amount < Kernel, "tnet::Conv2D: pad(p) needs 0 <= p < kernel");

  static constexpr int output_size(int in) { return Pad.output_size(in, Kernel, Stride); }
  static constexpr int padding_before(int in) { return Pad.before(in, Kernel, Stride); }

  template <class In>
  static constexpr bool accepts = Pad.fits(In::height, Kernel) && Pad.fits(In::width, Kernel);
  template <class In>
  using needs = Shape<std::max(In::height, Kernel - 2 * Pad.amount), std::max(In::width, Kernel - 2 * Pad.amount), In::channels>;

  template <class In>
  class Layer {
   public:
    static constexpr int H = In::height, W = In::width, C = In::channels, F = Filters, K = Kernel, S = Stride;
    static constexpr int OH = output_size(H), OW = output_size(W);
    static constexpr int pad_top = padding_before(H), pad_left = padding_before(W);
    static constexpr int patch = K * K * C;  // one row of the im2col matrix
    using input_shape = In;
    using output_shape = Shape<OH, OW, F>;
    static constexpr bool backward_reads_output = false;
    static constexpr std::size_t non_trainable_count = 0;
    /// Floating-point operations of one sample's forward pass (a multiply-add counts 2).
    static constexpr double forward_flops() { return 2.0 * OH * OW * patch * F; }

    /// Whether passes of `mode` over `batch` images are computed by Winograd's minimal filtering.
    static bool uses_winograd(int batch, Mode mode = Mode::train) { return winograd(batch, OH, OW, mode == Mode::infer); }

    static std::string describe() {
      return "Conv2D(" + std::to_string(F) + ", " + std::to_string(K) + "x" + std::to_string(K) + ", stride " + std::to_string(S) + ", " +
             Pad.str() + ")";
    }

    Layer() : bias_sums_(F) {}

    static std::array<TensorSize, 2> parameter_tensors() { return {{{"kernel", std::size_t(patch) * F}, {"bias", std::size_t(F)}}}; }
    void bind(float* values, float* grads) {
      kernel_ = values, bias_ = values + std::size_t(patch) * F;
      // the bias gradient right after the kernel's: the weight-gradient product writes both (PatchesTransposed)
      grad_kernel_ = grads, grad_bias_ = grads + std::size_t(patch) * F;
      prepare_inference(false);
    }

    void init(Rng rng) {
      prepare_inference(false);
      const float limit = static_cast<float>(std::sqrt(6.0 / (double(K * K * C) + double(K * K * F))));
      for (std::size_t i = 0; i < std::size_t(patch) * F; ++i) kernel_[i] = rng.symmetric(i, limit);
      std::fill(bias_, bias_ + F, 0.0f);
    }

    void forward(const float* x, float* y, int batch, Pass pass, const Epilogue& epilogue = {}) {
      const std::ptrdiff_t rows = std::ptrdiff_t(batch) * OH * OW;
      Epilogue finish = epilogue;
      finish.bias = bias_;
      if constexpr (winograd_shape) {
        if (winograd(batch, OH, OW, pass.mode == Mode::infer))
          return winograd_conv({x, batch, H, W, C, OH, OW, F, pad_top, pad_left}, false, y, finish,
                               pass.mode == Mode::infer && pass.prepared);
      }
      if (pass.mode == Mode::infer && rounded()) {
        if constexpr (pointwise) detail::kernel_gemm_bf16(detail::Pixels{x, C}, rounded_, rows, y, finish);
        else detail::kernel_gemm_bf16(patches(x), rounded_, rows, y, finish);
        return;
      }
      const float* prepacked = pass.mode == Mode::infer && pass.prepared ? packed_.get() : nullptr;
      if (gemm_kernel() != GemmKernel::eigen) {
        if constexpr (pointwise) detail::kernel_gemm(detail::Pixels{x, C}, false, rows, F, patch, kernel_, y, false, finish, prepacked);
        else detail::kernel_gemm(patches(x), false, rows, F, patch, kernel_, y, false, finish, prepacked);
      } else gemm(Transpose::no, Transpose::no, rows, F, patch, im2col(x, batch), kernel_, y, false, finish);
    }

    /// Packs the kernel for inference as the product reads it (`prepare` true), once for all
    /// inferences until the weights change, or forgets that copy (false). Sequential calls it
    /// before an inference after anything that may have changed the weights (as it rounds the
    /// dense kernels: Sequential::set_inference_precision); an inference whose Pass says
    /// `prepared` reads the copy, with the same bits as packing the kernel each time (which a
    /// batch-1 inference of a large kernel spends most of its time on).
    /// The same for Winograd's transform of the kernel, made now where the layer has its shape.
    void prepare_inference(bool prepare) {
      packed_.pack(prepare, kernel_, F, patch);
      if constexpr (winograd_shape)
        if (prepare && gemm_kernel() != GemmKernel::eigen) {
          if (gemm_kernel() == GemmKernel::avx512) winograd_forward_.get<winograd_tile, detail::Avx512>(kernel_, C, F, false);
          else winograd_forward_.get<winograd_tile, detail::Avx2>(kernel_, C, F, false);
        }
    }

    /// Makes inference compute the products that Winograd's convolutions do not take in bfloat16
    /// (core/gemm_bf16.hpp), from the kernel rounded now, where the CPU has AVX512_BF16
    /// (bf16_products()); elsewhere, or `round` false, in float. Sequential remakes the copy
    /// whenever the weights may have changed (set_inference_precision).
    void round_kernel(bool round) {
      if (round && bf16_products()) rounded_.pack(kernel_, F, patch);
      else rounded_.clear();
    }

    /// Inference's forward followed by the max pool Pool (a MaxPool2D's bound layer whose windows
    /// tile this layer's output) into y, the pool's output: the product is computed Pool output
    /// rows at a time and pooled while in the cache, so the output is never written whole (37.7
    /// MB at SmallerVGGNet's first layer, batch 32). The same values as forward and then the
    /// pool. Returns false, doing nothing, where it does not apply: Winograd's convolutions,
    /// Eigen's kernels, and an epilogue that adds a tensor (laid out as the output, not a strip).
    /// `prepared`: the kernel's copy for inference is current (Pass::prepared), and is read rather
    /// than packed again.
    template <class Pool>
    bool forward_pooled(const float* x, float* y, int batch, const Epilogue& epilogue, bool prepared = false)
      requires(Pool::tiles && Pool::window > 0 && std::is_same_v<typename Pool::input_shape, output_shape>)
    {
      if constexpr (winograd_shape)
        if (winograd(batch, OH, OW, true)) return false;
      if (gemm_kernel() == GemmKernel::eigen || epilogue.added) return false;
      Epilogue finish = epilogue;
      finish.bias = bias_;
      const float* prepacked = prepared ? packed_.get() : nullptr;
      if (rounded()) pooled_product<detail::Avx512, Pool>(x, y, batch, finish, nullptr, true);
      else if (gemm_kernel() == GemmKernel::avx512) pooled_product<detail::Avx512, Pool>(x, y, batch, finish, prepacked);
      else pooled_product<detail::Avx2, Pool>(x, y, batch, finish, prepacked);
      return true;
    }

    /// Whether forward_pieces applies: a 1x1 convolution at stride 1 without padding, whose product's
    /// rows are the input's pixels, shallow enough that its depth is never cut into chunks.
    static constexpr bool pixel_product = K == 1 && S == 1 && OH == H && OW == W && patch < 2 * detail::min_chunk_depth;

    /// Inference's forward of a pixel_product layer in pieces a caller chooses (a band a layer
    /// after it reads at once: model/rules/pointwise_then_depthwise.hpp): for each task in [0,
    /// tasks), in parallel, work(task, product), where product(first, count, out) writes output
    /// pixels [first, first + count) of the batch (F floats each) at `out`, as forward computes
    /// them with `epilogue` (which adds nothing). Returns false, doing nothing, with Eigen's kernels.
    template <class Work>
    bool forward_pieces(const float* x, const Epilogue& epilogue, bool prepared, std::ptrdiff_t tasks, const Work& work)
      requires pixel_product
    {
      if (gemm_kernel() == GemmKernel::eigen) return false;
      if (gemm_kernel() == GemmKernel::avx512) pieces<detail::Avx512>(x, epilogue, prepared, tasks, work);
      else pieces<detail::Avx2>(x, epilogue, prepared, tasks, work);
      return true;
    }

    void backward(const float* x, const float*, const float* dy, float* dx, int batch) {
      const std::ptrdiff_t rows = std::ptrdiff_t(batch) * OH * OW;
      const bool own_kernels = gemm_kernel() != GemmKernel::eigen;
      // dL/dkernel = columns^T dy ; dL/dbias = sum of dy over rows, here or by kernel_gradient.
      float* columns = nullptr;
      if (!kernel_gradient(x, dy, batch, columns)) {
        sum_over_rows(rows, F, bias_sums_.data(), [dy](std::ptrdiff_t r, std::ptrdiff_t f) { return double(dy[r * F + f]); });
        for (int f = 0; f < F; ++f) grad_bias_[f] = static_cast<float>(bias_sums_[f]);
      }
      if (!dx) return;
      if constexpr (winograd_shape) {
        if (winograd(batch, H, W))  // the convolution of dy with the flipped kernel, as below
          return winograd_conv({dy, batch, OH, OW, F, H, W, C, K - 1 - pad_top, K - 1 - pad_left}, true, dx, {});
      }
      if (own_kernels && pointwise) {  // dL/dx = dy kernel^T, dy's pixels read where they lie
        detail::kernel_gemm(detail::Pixels{dy, F}, true, std::ptrdiff_t(batch) * H * W, C, F, kernel_, dx);
        return;
      }
      if (own_kernels && gathers_input_gradient) {
        // At stride 1, dL/dx is the convolution of dy with the flipped kernel, whose windows
        // reach K - 1 - pad before each pixel: no columns to fold back.
        const detail::Patches<K, F> of_dy{dy, OH, OW, H, W, 1, K - 1 - pad_top, K - 1 - pad_left};
        detail::kernel_gemm(of_dy, false, std::ptrdiff_t(batch) * H * W, C, patch_of_dy, detail::flipped_kernel(kernel_, K, C, F), dx);
        return;
      }
      // dL/dcolumns = dy kernel^T, written over the columns (no longer needed), then folded back.
      if (!columns) columns = im2col_workspace(batch);
      gemm(Transpose::no, Transpose::yes, rows, patch, F, dy, kernel_, columns);
      col2im(columns, dx, batch);
    }

    template <class Visit>
    void visit_state(Visit&&) {}

    float* kernel() { return kernel_; }
    float* bias() { return bias_; }
    const float* grad_kernel() const { return grad_kernel_; }
    const float* grad_bias() const { return grad_bias_; }

   private:
    static constexpr int patch_of_dy = K * K * F;  // a window of dy, for the input gradient

    // The kernel as Isa's products read it, packed once for all as kernel_gemm packs it (into the
    // calling thread's workspace), or `prepacked` already.
    template <class Isa>
    const float* kernel_panels(const float* prepacked) const {
      if (prepacked) return prepacked;
      constexpr int NR = Isa::NR;
      Buffer& panels = detail::shared_packed_b();
      ensure_size(panels, std::size_t((F + NR - 1) / NR * NR * patch));
      detail::pack_steps<NR>(detail::Operand{kernel_, 1, F}, F, patch, detail::kernel_depth, panels.data());
      return panels.data();
    }

    // forward_pooled's work: strips of Pool output rows (Pool x OW rows of the product), each one
    // product on one thread, its rows the ones kernel_gemm computes for them (the same bits; with
    // `bf16`, kernel_gemm_bf16's from the rounded kernel), then pooled.
    template <class Isa, class Pool>
    void pooled_product(const float* x, float* y, int batch, const Epilogue& finish, const float* prepacked, bool bf16 = false) {
      constexpr int P = Pool::window;
      constexpr std::ptrdiff_t strip_rows = std::ptrdiff_t(P) * OW;
      const detail::Operand b{kernel_, 1, F};
      const float* packed = bf16 ? nullptr : kernel_panels<Isa>(prepacked);
      const auto source = patches(x);
      const detail::ASource a = detail::erase(source);
      const std::ptrdiff_t strips = std::ptrdiff_t(batch) * (OH / P);
#pragma omp parallel for schedule(static)
      for (std::ptrdiff_t s = 0; s < strips; ++s) {
        static thread_local Buffer strip;  // the strip's product, in the cache while it is pooled
        ensure_size(strip, std::size_t(strip_rows * F));
        if (bf16) detail::bf16_product(a, s * strip_rows, 0, rounded_, 0, strip_rows, F, patch, strip.data(), F, false, &finish);
        else detail::packed_product<Isa>(a, s * strip_rows, 0, b, strip_rows, F, patch, strip.data(), F, false, packed, false, &finish);
        detail::run_for<Isa::target>([](const float* in, float* out) { Pool::pool_strip(in, out); }, strip.data(),
                                     y + s * std::ptrdiff_t(Pool::output_shape::width) * F);
      }
    }

    // forward_pieces' work: each piece one product on one thread (the same bits as kernel_gemm's
    // rows), the kernel packed once for all (or the copy for inference); in bfloat16 from the
    // rounded kernel when inference computes so (kernel_gemm_bf16's rows).
    template <class Isa, class Work>
    void pieces(const float* x, const Epilogue& epilogue, bool prepared, std::ptrdiff_t tasks, const Work& work) {
      const detail::Operand b{kernel_, 1, F};
      const bool bf16 = rounded();
      const float* packed = bf16 ? nullptr : kernel_panels<Isa>(prepared ? packed_.get() : nullptr);
      Epilogue finish = epilogue;
      finish.bias = bias_;
      const detail::Pixels source{x, C};
      const detail::ASource a = detail::erase(source);
      auto product = [&](std::ptrdiff_t first, std::ptrdiff_t count, float* out) {
        if (bf16) detail::bf16_product(a, first, 0, rounded_, 0, count, F, patch, out, F, false, &finish);
        else detail::packed_product<Isa>(a, first, 0, b, count, F, patch, out, F, false, packed, false, &finish);
      };
#pragma omp parallel for schedule(static)
      for (std::ptrdiff_t task = 0; task < tasks; ++task) work(task, product);
    }

    // x's im2col matrix as tnet's kernels read it, never materialised.
    static detail::Patches<K, C> patches(const float* x) { return {x, H, W, OH, OW, S, pad_top, pad_left}; }
    // dL/dkernel into grad_kernel_; returns whether dL/dbias, which follows it, came with it. Sets
    // `columns` to x's im2col columns when it wrote them out (Eigen's kernels).
    bool kernel_gradient(const float* x, const float* dy, int batch, float*& columns) {
      if constexpr (winograd_shape)
        if (winograd(batch, OH, OW)) return winograd_kernel_gradient({x, batch, H, W, C, OH, OW, F, pad_top, pad_left}, dy), true;
      const std::ptrdiff_t rows = std::ptrdiff_t(batch) * OH * OW;
      if (gemm_kernel() != GemmKernel::eigen) {
        static_assert(detail::PatchesTransposed<K, C>::ones_row == patch);
        detail::kernel_gemm(detail::PatchesTransposed<K, C>{patches(x)}, false, patch + 1, F, rows, dy, grad_kernel_);
        return true;
      }
      columns = im2col(x, batch);
      gemm(Transpose::yes, Transpose::no, patch, F, rows, columns, dy, grad_kernel_);
      return false;
    }
    // 3x3 at stride 1, channels in multiples of 16, with tnet's kernels: Winograd's minimal
    // filtering F(4x4, 3x3) (layers/winograd.hpp) when there are tiles enough: in training, for
    // every thread; in inference, enough to repay reading the transformed kernel, 4x the kernel's
    // size: 16 (at batch 1 a 16x16 image repays it; ResNet18 at 96x96, whose 12x12 and 6x6 stages
    // have 9 and 4 tiles and transformed kernels of 2.4 and 9.4 MB, answers one image 1.25x as
    // fast without: a batch-1 inference waits for its kernels to be read, and 4x the bytes leave
    // the cache). The choice depends on the shapes and the mode only. 4x fewer multiplications,
    // rounding about 10x the direct product's (a few millionths of the largest value), in the
    // forward pass, the input gradient and the kernel gradient alike.
    static constexpr bool winograd_shape = K == 3 && S == 1 && C % 16 == 0 && F % 16 == 0;
    static constexpr int winograd_tile = 4;  // F(4x4, 3x3)
    static bool winograd(int batch, int height, int width, bool inference = false) {
      const std::ptrdiff_t tiles =
          std::ptrdiff_t(batch) * ((height + winograd_tile - 1) / winograd_tile) * ((width + winograd_tile - 1) / winograd_tile);
      return winograd_shape && gemm_kernel() != GemmKernel::eigen && tiles >= (inference ? 16 : 128);
    }
    // `prepared`: the forward's transformed kernel is current (prepare_inference), read as it is.
    void winograd_conv(const detail::WinogradConv& p, bool flipped, float* out, const Epilogue& finish, bool prepared = false) {
      constexpr int M = winograd_tile;
      detail::WinogradKernel& transformed = flipped ? winograd_input_gradient_ : winograd_forward_;
      auto panels = [&]<class Isa>(Isa) {
        const float* made = prepared && !flipped ? transformed.made<M, Isa>() : nullptr;
        return made ? made : transformed.get<M, Isa>(kernel_, p.C, p.F, flipped);
      };
      if (gemm_kernel() == GemmKernel::avx512) detail::winograd_conv3x3<M, detail::Avx512>(p, panels(detail::Avx512{}), out, finish);
      else detail::winograd_conv3x3<M, detail::Avx2>(p, panels(detail::Avx2{}), out, finish);
    }
    void winograd_kernel_gradient(const detail::WinogradConv& p, const float* dy) {
      constexpr int M = winograd_tile;
      if (gemm_kernel() == GemmKernel::avx512) detail::winograd_kernel_gradient<M, detail::Avx512>(p, dy, grad_kernel_, grad_bias_);
      else detail::winograd_kernel_gradient<M, detail::Avx2>(p, dy, grad_kernel_, grad_bias_);
    }
    // A 1x1 convolution at stride 1 without padding: its im2col matrix is x itself (Pixels).
    static constexpr bool pointwise = K == 1 && S == 1 && OH == H && OW == W;
    // The input gradient is gathered from dy, F channels, at stride 1.
    static constexpr bool gathers_input_gradient = S == 1 && F % 8 == 0;

    static float* im2col_workspace(int batch) {
      Buffer& workspace = detail::conv_workspace();
      ensure_size(workspace, std::size_t(batch) * OH * OW * patch);
      return workspace.data();
    }

    // The im2col matrix of x in the calling thread's workspace (for Eigen's kernels, and for the
    // input gradient at strides above 1). Row (n, oy, ox) holds the K x K x C window under output
    // pixel (oy, ox), in the kernel's (ky, kx, c) order; padding is zero.
    static float* im2col(const float* x, int batch) {
      float* columns = im2col_workspace(batch);
#pragma omp parallel for schedule(static)
      for (int n = 0; n < batch; ++n) {
        const float* image = x + std::ptrdiff_t(n) * H * W * C;
        float* row = columns + std::ptrdiff_t(n) * OH * OW * patch;
        for (int oy = 0; oy < OH; ++oy)
          for (int ox = 0; ox < OW; ++ox, row += patch)
            for (int ky = 0; ky < K; ++ky) {
              const int iy = oy * S - pad_top + ky;
              for (int kx = 0; kx < K; ++kx) {
                const int ix = ox * S - pad_left + kx;
                float* dst = row + (ky * K + kx) * C;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) std::fill(dst, dst + C, 0.0f);
                else std::memcpy(dst, image + (std::ptrdiff_t(iy) * W + ix) * C, sizeof(float) * C);
              }
            }
      }
      return columns;
    }

    // The adjoint of im2col: every window's gradient is added back onto the pixels it was read from.
    static void col2im(const float* columns, float* dx, int batch) {
#pragma omp parallel for schedule(static)
      for (int n = 0; n < batch; ++n) {
        float* image = dx + std::ptrdiff_t(n) * H * W * C;
        std::fill(image, image + H * W * C, 0.0f);
        const float* row = columns + std::ptrdiff_t(n) * OH * OW * patch;
        for (int oy = 0; oy < OH; ++oy)
          for (int ox = 0; ox < OW; ++ox, row += patch)
            for (int ky = 0; ky < K; ++ky) {
              const int iy = oy * S - pad_top + ky;
              if (iy < 0 || iy >= H) continue;
              for (int kx = 0; kx < K; ++kx) {
                const int ix = ox * S - pad_left + kx;
                if (ix < 0 || ix >= W) continue;
                const float* src = row + (ky * K + kx) * C;
                float* dst = image + (std::ptrdiff_t(iy) * W + ix) * C;
                for (int c = 0; c < C; ++c) dst[c] += src[c];
              }
            }
      }
    }

    float *kernel_ = nullptr, *bias_ = nullptr, *grad_kernel_ = nullptr, *grad_bias_ = nullptr;  // views (bind)
    std::vector<double> bias_sums_;
    detail::WinogradKernel winograd_forward_, winograd_input_gradient_;
    detail::PackedB packed_;      // the kernel packed for inference (prepare_inference), or nothing
    detail::PackedBf16 rounded_;  // the kernel rounded to bfloat16 for inference (round_kernel), or nothing
    // Whether inference computes in bfloat16: a rounded copy, and the kernels that read it in use.
    bool rounded() const { return !rounded_.empty() && bf16_products(); }
  };
};

}  // namespace tnet
