// tnet/train/optimizer.hpp: Adam and SGD with Keras 2 semantics, AdamW with PyTorch's, learning-rate
// schedules, L2 and decoupled weight decay, and gradient-norm clipping.
//
// An optimizer updates a network's parameters from their gradients, one loop over the network's
// one parameter array (core/parameters.hpp). Its state (iteration count, hyper-parameters, one or
// two slots, each an array the size of the parameters) can be taken out and put back, which is
// how model files carry it (model/serialize.hpp) so that a resumed run continues the same schedule.
//
// Every optimizer takes, besides its own options:
//   schedule     how the rate of step k (k = iterations so far) follows from the base rate `lr`
//                (Schedule below); learning_rate() is the base rate, next_learning_rate() the
//                rate the next step uses.
//   clip_norm    > 0: the gradients are scaled by min(1, clip_norm / (||g|| + 1e-6)), ||g|| the
//                L2 norm over every parameter (torch.nn.utils.clip_grad_norm_). The scaling is
//                applied inside the update; the gradient array is left as it was.
//   weight_decay Adam and SGD: L2, added to the (clipped) gradient, g + weight_decay w (PyTorch's
//                Adam and SGD `weight_decay`). AdamW: decoupled, w *= 1 - lr_k weight_decay.
// A network's layers may train at a multiple of the rate (Parameters::rates,
// Sequential::set_learning_rate_multiplier): every optimizer uses m lr_k for their values, as
// PyTorch does for a parameter group whose lr is m times the others' (its decoupled weight decay
// too); the moments and velocities are updated as usual, so m = 0 leaves the weights exactly as
// they are. Clipping's norm is over every value not frozen, whatever its multiplier.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../core/config.hpp"
#include "../core/vectorise.hpp"
#include "../core/parameters.hpp"

namespace tnet {

/// Everything an optimizer needs to continue where it stopped.
struct OptimizerState {
  std::string kind;
  std::uint64_t iterations = 0;
  std::vector<std::pair<std::string, double>> hyper_parameters;
  std::vector<Buffer> slots;  // slots_per_parameter() arrays, each laid out as Parameters::values
};

using HyperParameters = std::vector<std::pair<std::string, double>>;

/// How the learning rate of step k (0-based: the optimizer's iterations before the step) follows
/// from the base rate lr. Steps are optimizer steps: an epoch of B batches is B steps.
///   constant   lr (with the optimizers' `decay` option, Keras's time-based decay lr / (1 + decay k))
///   step       lr gamma^floor(k / step_size)                        (PyTorch StepLR)
///   cosine     k < warmup: lr (s + (1 - s) k / warmup), s = warmup_start (PyTorch LinearLR);
///              then lr_min + (lr - lr_min) (1 + cos(pi (k - warmup) / (total - warmup))) / 2 with
///              lr_min = min_factor lr (PyTorch CosineAnnealingLR after the warm-up, as
///              SequentialLR chains them); lr_min from step `total` on.
///   one_cycle  PyTorch OneCycleLR with cosine annealing, two phases, max_lr = lr: from
///              lr / div_factor up to lr over steps [0, pct_start total - 1], then down to
///              lr / div_factor / final_div_factor at step total - 1; that rate after it (where
///              PyTorch refuses). Only the rate: its momentum cycling is not done
///              (cycle_momentum=False).
struct Schedule {
  enum class Kind { constant = 0, step = 1, cosine = 2, one_cycle = 3 };
  Kind kind = Kind::constant;
  std::uint64_t total_steps = 0;    // cosine, one_cycle
  std::uint64_t warmup_steps = 0;   // cosine
  std::uint64_t step_size = 0;      // step
  double gamma = 0.1;               // step
  double warmup_start = 1.0 / 3.0;  // cosine: the warm-up's first factor (LinearLR's start_factor), in (0, 1]
  double min_factor = 0.0;          // cosine: the final rate over lr, in [0, 1]
  double pct_start = 0.3, div_factor = 25.0, final_div_factor = 1e4;  // one_cycle: OneCycleLR's defaults

  static Schedule constant() { return {}; }
  static Schedule step(std::uint64_t step_size, double gamma = 0.1) {
    Schedule s;
    s.kind = Kind::step;
    s.step_size = step_size;
    s.gamma = gamma;
    return s;
  }
  static Schedule cosine(std::uint64_t total_steps, std::uint64_t warmup_steps = 0, double min_factor = 0.0,
                         double warmup_start = 1.0 / 3.0) {
    Schedule s;
    s.kind = Kind::cosine;
    s.total_steps = total_steps;
    s.warmup_steps = warmup_steps;
    s.min_factor = min_factor;
    s.warmup_start = warmup_start;
    return s;
  }
  static Schedule one_cycle(std::uint64_t total_steps, double pct_start = 0.3, double div_factor = 25.0, double final_div_factor = 1e4) {
    Schedule s;
    s.kind = Kind::one_cycle;
    s.total_steps = total_steps;
    s.pct_start = pct_start;
    s.div_factor = div_factor;
    s.final_div_factor = final_div_factor;
    return s;
  }

  /// "cosine (1000 steps, 100 of warm-up)": for reports.
  std::string describe() const {
    switch (kind) {
      case Kind::step:
        return "step (x" + trimmed(gamma) + " every " + std::to_string(step_size) + " steps)";
      case Kind::cosine:
        return "cosine (" + std::to_string(total_steps) + " steps, " + std::to_string(warmup_steps) + " of warm-up)";
      case Kind::one_cycle:
        return "one-cycle (" + std::to_string(total_steps) + " steps)";
      default:
        return "constant";
    }
  }

  /// Throws std::invalid_argument, naming `who` and the field, for a schedule that cannot run.
  void validate(const std::string& who) const {
    auto refuse = [&](const std::string& what) { throw std::invalid_argument(who + ": " + describe() + " schedule: " + what); };
    switch (kind) {
      case Kind::constant:
        return;
      case Kind::step:
        if (step_size < 1) refuse("step_size must be >= 1");
        if (!(gamma > 0 && std::isfinite(gamma))) refuse("gamma must be positive");
        return;
      case Kind::cosine:
        if (total_steps <= warmup_steps) refuse("total_steps must exceed warmup_steps");
        if (!(warmup_start > 0 && warmup_start <= 1)) refuse("warmup_start must be in (0, 1]");
        if (!(min_factor >= 0 && min_factor <= 1)) refuse("min_factor must be in [0, 1]");
        return;
      case Kind::one_cycle:
        if (!(pct_start > 0 && pct_start < 1)) refuse("pct_start must be in (0, 1)");
        // OneCycleLR's phases end at steps pct_start total - 1 and total - 1, which must rise.
        if (!(pct_start * double(total_steps) - 1 > 0 && double(total_steps) - 1 > pct_start * double(total_steps) - 1))
          refuse("total_steps x pct_start must exceed 1");
        if (!(div_factor > 0 && std::isfinite(div_factor)) || !(final_div_factor > 0 && std::isfinite(final_div_factor)))
          refuse("div_factor and final_div_factor must be positive");
        return;
    }
    refuse("unknown kind");
  }

  /// The rate of step k for the base rate lr (Keras's decay, which only `constant` takes, apart).
  double rate(double lr, std::uint64_t k) const {
    const double step = double(k);
    switch (kind) {
      case Kind::step:
        return lr * std::pow(gamma, double(k / step_size));
      case Kind::cosine: {
        if (k < warmup_steps) return lr * (warmup_start + (1.0 - warmup_start) * step / double(warmup_steps));
        const double low = min_factor * lr;
        if (k >= total_steps) return low;
        const double t = (step - double(warmup_steps)) / double(total_steps - warmup_steps);
        return low + (lr - low) * (1.0 + std::cos(std::numbers::pi * t)) / 2.0;
      }
      case Kind::one_cycle: {
        const double initial = lr / div_factor, lowest = initial / final_div_factor;
        const double end_up = pct_start * double(total_steps) - 1, end_down = double(total_steps) - 1;
        // OneCycleLR's _annealing_cos(start, end, pct)
        auto anneal = [](double start, double end, double pct) {
          return end + (start - end) / 2.0 * (std::cos(std::numbers::pi * pct) + 1);
        };
        if (step <= end_up) return anneal(initial, lr, step / end_up);
        return anneal(lr, lowest, (std::min(step, end_down) - end_up) / (end_down - end_up));
      }
      default:
        return lr;
    }
  }

  /// The schedule as hyper-parameters ("schedule", "schedule_total_steps", ...), for the state.
  void append_to(HyperParameters& values) const {
    values.insert(values.end(), {{"schedule", double(int(kind))},
                                 {"schedule_total_steps", double(total_steps)},
                                 {"schedule_warmup_steps", double(warmup_steps)},
                                 {"schedule_step_size", double(step_size)},
                                 {"schedule_gamma", gamma},
                                 {"schedule_warmup_start", warmup_start},
                                 {"schedule_min_factor", min_factor},
                                 {"schedule_pct_start", pct_start},
                                 {"schedule_div_factor", div_factor},
                                 {"schedule_final_div_factor", final_div_factor}});
  }
  /// The schedule append_to wrote; a state without one (written before schedules) is constant.
  static Schedule from(const HyperParameters& values) {
    Schedule s;
    auto get = [&](const char* name, double fallback) {
      for (const auto& [key, value] : values)
        if (key == name) return value;
      return fallback;
    };
    const double kind = get("schedule", 0.0);
    if (!(kind == 0 || kind == 1 || kind == 2 || kind == 3))
      throw std::invalid_argument("optimizer state has an unknown schedule (" + trimmed(kind) + ")");
    s.kind = Kind(int(kind));
    auto count = [&](const char* name) {
      const double v = get(name, 0.0);
      if (!(v >= 0 && v < 9007199254740992.0 && v == std::floor(v)))
        throw std::invalid_argument(std::string("optimizer state's ") + name + " is not a step count");
      return std::uint64_t(v);
    };
    s.total_steps = count("schedule_total_steps");
    s.warmup_steps = count("schedule_warmup_steps");
    s.step_size = count("schedule_step_size");
    s.gamma = get("schedule_gamma", s.gamma);
    s.warmup_start = get("schedule_warmup_start", s.warmup_start);
    s.min_factor = get("schedule_min_factor", s.min_factor);
    s.pct_start = get("schedule_pct_start", s.pct_start);
    s.div_factor = get("schedule_div_factor", s.div_factor);
    s.final_div_factor = get("schedule_final_div_factor", s.final_div_factor);
    s.validate("optimizer state");
    return s;
  }

 private:
  static std::string trimmed(double v) {
    std::string s = std::to_string(v);
    while (s.size() > 1 && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
  }
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual std::string kind() const = 0;
  /// One update of every parameter from its gradient, but for the first params.frozen (frozen
  /// layers': Sequential::freeze_until), whose values and slots it leaves as they are; the values
  /// of params.rates' ranges at their multiple of the learning rate.
  virtual void step(const Parameters& params) = 0;

  /// Steps taken so far (Keras's `iterations`).
  std::uint64_t iterations() const { return iterations_; }

  /// The base learning rate, before any decay: what a callback such as reduce-on-plateau reads
  /// and changes. It is a hyper-parameter ("lr"), so the optimizer's state carries a change.
  virtual double learning_rate() const = 0;
  /// Throws std::invalid_argument unless lr > 0.
  virtual void set_learning_rate(double lr) = 0;
  /// The rate step k uses: the base rate under the schedule (and Keras's decay). For Adam it is
  /// the rate before the bias correction (Keras's lr_k, PyTorch's group['lr']).
  virtual double learning_rate_at(std::uint64_t k) const = 0;
  /// The rate the next step will use (a history's `lr` column).
  double next_learning_rate() const { return learning_rate_at(iterations_); }
  virtual const Schedule& schedule() const = 0;

  /// The L2 norm of the gradients the last step saw, before clipping; 0 when clipping is off.
  double last_gradient_norm() const { return last_gradient_norm_; }

  OptimizerState state() const {
    OptimizerState s = state_without_slots();
    s.slots = slots_;
    return s;
  }
  /// state() less its slots, which slots() shows in place: for writing them out without a copy.
  OptimizerState state_without_slots() const { return OptimizerState{kind(), iterations_, hyper_parameters(), {}}; }
  std::span<const Buffer> slots() const { return slots_; }

  /// Arrays of optimizer state per parameter array: Adam's two moments, SGD's velocity.
  virtual std::size_t slots_per_parameter() const = 0;

  /// Throws std::invalid_argument when `state` was made by another kind of optimizer, lacks a
  /// hyper-parameter, holds values this optimizer would refuse, or its slots do not match `params`.
  /// Hyper-parameters added after a kind first existed (weight_decay, clip_norm, the schedule's)
  /// may be absent: they then take the values that meant what the older state did.
  void check_state(const OptimizerState& state, const Parameters& params) const {
    if (state.kind != kind()) throw std::invalid_argument("optimizer state is for " + state.kind + ", not " + kind());
    if (!state.slots.empty()) {
      if (state.slots.size() != slots_per_parameter())
        throw std::invalid_argument("optimizer state has " + std::to_string(state.slots.size()) + " slots, " + kind() + " needs " +
                                    std::to_string(slots_per_parameter()));
      for (const Buffer& slot : state.slots)
        if (slot.size() != params.values.size())
          throw std::invalid_argument("optimizer state holds " + std::to_string(slot.size()) + " values per slot, the model has " +
                                      std::to_string(params.values.size()) + " parameters");
    }
    for (const std::string& name : required_hyper_parameters()) find(state.hyper_parameters, name);
    validated(state.hyper_parameters);
  }

  /// Replaces this optimizer's state; on a state check_state refuses it throws and changes nothing.
  void set_state(OptimizerState state, const Parameters& params) {
    check_state(state, params);
    set_hyper_parameters(state.hyper_parameters);
    iterations_ = state.iterations;
    slots_ = std::move(state.slots);
  }

 protected:
  virtual HyperParameters hyper_parameters() const = 0;
  /// The hyper-parameters every state of this kind has had.
  virtual std::vector<std::string> required_hyper_parameters() const = 0;
  /// Sets them; throws std::invalid_argument (changing nothing) for values the options refuse.
  virtual void set_hyper_parameters(const HyperParameters& values) = 0;
  /// Throws as set_hyper_parameters would, without changing anything.
  virtual void validated(const HyperParameters& values) const = 0;

  /// Allocates the slots (zeros) on the first step, and the clipping's per-block sums when it is
  /// on; afterwards only checks they still fit.
  void bind(const Parameters& params, bool clipping) {
    if (params.grads.size() != params.values.size())
      throw std::invalid_argument("optimizer: " + std::to_string(params.grads.size()) + " gradients for " +
                                  std::to_string(params.values.size()) + " parameters");
    if (params.frozen > params.values.size())
      throw std::invalid_argument("optimizer: " + std::to_string(params.frozen) + " frozen values of " +
                                  std::to_string(params.values.size()) + " parameters");
    std::size_t covered = 0;
    for (const RateSegment& r : params.rates) {
      if (r.begin != covered || r.end < r.begin || !(r.multiplier >= 0 && std::isfinite(r.multiplier)))
        throw std::invalid_argument("optimizer: the learning-rate multipliers' ranges are not consecutive ranges of multipliers >= 0");
      covered = r.end;
    }
    if (!params.rates.empty() && covered != params.values.size())
      throw std::invalid_argument("optimizer: the learning-rate multipliers cover " + std::to_string(covered) + " of " +
                                  std::to_string(params.values.size()) + " parameters");
    if (slots_.empty()) slots_.assign(slots_per_parameter(), Buffer(params.values.size(), 0.0f));
    if (slots_.size() != slots_per_parameter() || slots_[0].size() != params.values.size())
      throw std::invalid_argument("optimizer was used with a different set of parameters");
    if (clipping) block_sums_.resize(std::size_t((trainable(params) + block - 1) / block));
  }

  /// The values a step updates: [params.frozen, params.values.size()).
  static std::ptrdiff_t trainable(const Parameters& params) { return std::ptrdiff_t(params.values.size() - params.frozen); }

  /// Calls update(begin, end, multiplier) for each range of the values a step updates that
  /// trains at one multiple of the learning rate (Parameters::rates), in order; once, with 1, when
  /// every value trains at the optimizer's rate.
  template <class Update>
  static void for_each_rate(const Parameters& params, Update&& update) {
    const std::size_t from = params.frozen, to = params.values.size();
    if (params.rates.empty()) {
      if (from < to) update(from, to, 1.0);
      return;
    }
    for (const RateSegment& r : params.rates) {
      const std::size_t begin = std::max(r.begin, from), end = std::min(r.end, to);
      if (begin < end) update(begin, end, r.multiplier);
    }
  }

  /// The factor clip_grad_norm_ scales the gradients by: min(1, clip_norm / (||g|| + 1e-6)), the
  /// norm over the values not frozen; 1 without clipping. The norm's sum is taken in blocks of
  /// `block` values, each summed in double and the blocks added in order, so it does not depend
  /// on the thread count.
  float clip_scale(const Parameters& params, double clip_norm) {
    last_gradient_norm_ = 0;
    if (!(clip_norm > 0)) return 1.0f;
    const float* g = params.grads.data() + params.frozen;
    double* sums = block_sums_.data();
    const detail::Target target = detail::target_of(gemm_kernel());
    for_blocks(trainable(params), block,
               [=](std::ptrdiff_t begin, std::ptrdiff_t end) { sums[begin / block] = sum_of_squares(target, g, begin, end); });
    double total = 0;
    for (const double s : block_sums_) total += s;
    last_gradient_norm_ = std::sqrt(total);
    return float(std::min(1.0, clip_norm / (last_gradient_norm_ + 1e-6)));
  }

  /// The learning rate of step k under Keras's time-based decay: lr / (1 + decay * k).
  static double decayed(double lr, double decay, std::uint64_t k) { return lr / (1.0 + decay * double(k)); }

  static double find(const HyperParameters& values, const std::string& name) {
    for (const auto& [key, value] : values)
      if (key == name) return value;
    throw std::invalid_argument("optimizer state lacks hyper-parameter '" + name + "'");
  }
  static double find_or(const HyperParameters& values, const std::string& name, double fallback) {
    for (const auto& [key, value] : values)
      if (key == name) return value;
    return fallback;
  }

  /// Checks the options every optimizer shares; `decay` is Keras's, which excludes a schedule.
  static void check_common(const std::string& who, double lr, double decay, double weight_decay, double clip_norm,
                           const Schedule& schedule) {
    if (!(lr > 0 && std::isfinite(lr))) throw std::invalid_argument(who + ": lr must be positive");
    if (!(decay >= 0)) throw std::invalid_argument(who + ": decay must be non-negative");
    if (!(weight_decay >= 0 && std::isfinite(weight_decay))) throw std::invalid_argument(who + ": weight_decay must be non-negative");
    if (!(clip_norm >= 0 && std::isfinite(clip_norm))) throw std::invalid_argument(who + ": clip_norm must be non-negative (0: off)");
    schedule.validate(who);
    if (decay > 0 && schedule.kind != Schedule::Kind::constant)
      throw std::invalid_argument(who + ": decay (Keras's time-based schedule) and a " + schedule.describe() +
                                  " schedule cannot both be given");
  }

  /// Adam's and AdamW's betas and epsilon.
  static void check_moments(const std::string& who, double beta1, double beta2, double epsilon) {
    if (!(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1)) throw std::invalid_argument(who + ": beta1 and beta2 must be in [0, 1)");
    if (!(epsilon > 0)) throw std::invalid_argument(who + ": epsilon must be positive");
  }

  static constexpr std::ptrdiff_t block = 16384;
  std::uint64_t iterations_ = 0;
  std::vector<Buffer> slots_;

 private:
  static double sum_of_squares(detail::Target target, const float* g, std::ptrdiff_t begin, std::ptrdiff_t end) {
#if TNET_X86_KERNELS
    if (target == detail::Target::avx512 || target == detail::Target::avx2) return sum_of_squares_avx2(g, begin, end);
#endif
    (void)target;
    double sum = 0;
    for (std::ptrdiff_t i = begin; i < end; ++i) sum += double(g[i]) * double(g[i]);
    return sum;
  }
#if TNET_X86_KERNELS
  // Two lanes of four doubles; the masked end loads zeros.
  __attribute__((target("avx2,fma"))) static double sum_of_squares_avx2(const float* g, std::ptrdiff_t begin, std::ptrdiff_t end) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256d low = _mm256_setzero_pd(), high = _mm256_setzero_pd();
    for (std::ptrdiff_t i = begin; i < end; i += 8) {
      const __m256i lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(std::min<std::ptrdiff_t>(end - i, 8))), lane);
      const __m256 x = _mm256_maskload_ps(g + i, lanes);
      const __m256d a = _mm256_cvtps_pd(_mm256_castps256_ps128(x)), b = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
      low = _mm256_fmadd_pd(a, a, low);
      high = _mm256_fmadd_pd(b, b, high);
    }
    alignas(32) double parts[4];
    _mm256_store_pd(parts, _mm256_add_pd(low, high));
    return (parts[0] + parts[1]) + (parts[2] + parts[3]);
  }
#endif

  std::vector<double> block_sums_;  // clip_scale's sums, one per block
  double last_gradient_norm_ = 0;
};

namespace detail {

/// One Adam update of w, m and v over [begin, end), in lanes of 16 (AVX-512) or 8 (AVX2 + FMA)
/// with masked ends, so that every value is computed alike. Written with intrinsics: std::sqrt
/// may set errno, and GCC does not vectorise a loop that calls it; scalar, the update (4 arrays
/// read and 3 written over every parameter, each step) could not keep up with memory.
/// With `adjusted`, the gradient is first scaled and given L2 (g' = scale g + l2 w) and the weight
/// shrunk (w' = shrink w - step, AdamW's decoupled decay); without, the plain Keras update.
struct AdamStep {
  float b1, b2, lr_t, eps;
  float* w = nullptr;
  const float* g = nullptr;
  float *m = nullptr, *v = nullptr;
  bool adjusted = false;
  float scale = 1.0f, l2 = 0.0f, shrink = 1.0f;

  void operator()(Target target, std::ptrdiff_t begin, std::ptrdiff_t end) const {
    if (adjusted) run<true>(target, begin, end);
    else run<false>(target, begin, end);
  }

 private:
  template <bool Adjusted>
  void run(Target target, std::ptrdiff_t begin, std::ptrdiff_t end) const {
#if TNET_X86_KERNELS
    if (target == Target::avx512) return avx512<Adjusted>(begin, end);
    if (target == Target::avx2) return avx2<Adjusted>(begin, end);
#endif
    (void)target;
    for (std::ptrdiff_t i = begin; i < end; ++i) {
      const float grad = Adjusted ? scale * g[i] + l2 * w[i] : g[i];
      m[i] = b1 * m[i] + (1.0f - b1) * grad;
      v[i] = b2 * v[i] + (1.0f - b2) * grad * grad;
      if (Adjusted) w[i] = shrink * w[i] - lr_t * m[i] / (std::sqrt(v[i]) + eps);
      else w[i] -= lr_t * m[i] / (std::sqrt(v[i]) + eps);
    }
  }

#if TNET_X86_KERNELS
  template <bool Adjusted>
  __attribute__((target("avx512f"))) void avx512(std::ptrdiff_t begin, std::ptrdiff_t end) const {
    const __m512 beta1 = _mm512_set1_ps(b1), rest1 = _mm512_set1_ps(1.0f - b1), beta2 = _mm512_set1_ps(b2),
                 rest2 = _mm512_set1_ps(1.0f - b2), rate = _mm512_set1_ps(lr_t), epsilon = _mm512_set1_ps(eps),
                 gscale = _mm512_set1_ps(scale), decay = _mm512_set1_ps(l2), keep = _mm512_set1_ps(shrink);
    for (std::ptrdiff_t i = begin; i < end; i += 16) {
      const __mmask16 lanes = end - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (end - i)) - 1);
      const __m512 wi = _mm512_maskz_loadu_ps(lanes, w + i);
      __m512 grad = _mm512_maskz_loadu_ps(lanes, g + i);
      if constexpr (Adjusted) grad = _mm512_fmadd_ps(decay, wi, _mm512_mul_ps(gscale, grad));
      const __m512 mi = _mm512_fmadd_ps(beta1, _mm512_maskz_loadu_ps(lanes, m + i), _mm512_mul_ps(rest1, grad));
      const __m512 vi = _mm512_fmadd_ps(beta2, _mm512_maskz_loadu_ps(lanes, v + i), _mm512_mul_ps(_mm512_mul_ps(rest2, grad), grad));
      const __m512 step = _mm512_div_ps(_mm512_mul_ps(rate, mi), _mm512_add_ps(_mm512_sqrt_ps(vi), epsilon));
      _mm512_mask_storeu_ps(m + i, lanes, mi);
      _mm512_mask_storeu_ps(v + i, lanes, vi);
      if constexpr (Adjusted) _mm512_mask_storeu_ps(w + i, lanes, _mm512_sub_ps(_mm512_mul_ps(keep, wi), step));
      else _mm512_mask_storeu_ps(w + i, lanes, _mm512_sub_ps(wi, step));
    }
  }
  template <bool Adjusted>
  __attribute__((target("avx2,fma"))) void avx2(std::ptrdiff_t begin, std::ptrdiff_t end) const {
    const __m256 beta1 = _mm256_set1_ps(b1), rest1 = _mm256_set1_ps(1.0f - b1), beta2 = _mm256_set1_ps(b2),
                 rest2 = _mm256_set1_ps(1.0f - b2), rate = _mm256_set1_ps(lr_t), epsilon = _mm256_set1_ps(eps),
                 gscale = _mm256_set1_ps(scale), decay = _mm256_set1_ps(l2), keep = _mm256_set1_ps(shrink);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (std::ptrdiff_t i = begin; i < end; i += 8) {
      const __m256i lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(std::min<std::ptrdiff_t>(end - i, 8))), lane);
      const __m256 wi = _mm256_maskload_ps(w + i, lanes);
      __m256 grad = _mm256_maskload_ps(g + i, lanes);
      if constexpr (Adjusted) grad = _mm256_fmadd_ps(decay, wi, _mm256_mul_ps(gscale, grad));
      const __m256 mi = _mm256_fmadd_ps(beta1, _mm256_maskload_ps(m + i, lanes), _mm256_mul_ps(rest1, grad));
      const __m256 vi = _mm256_fmadd_ps(beta2, _mm256_maskload_ps(v + i, lanes), _mm256_mul_ps(_mm256_mul_ps(rest2, grad), grad));
      const __m256 step = _mm256_div_ps(_mm256_mul_ps(rate, mi), _mm256_add_ps(_mm256_sqrt_ps(vi), epsilon));
      _mm256_maskstore_ps(m + i, lanes, mi);
      _mm256_maskstore_ps(v + i, lanes, vi);
      if constexpr (Adjusted) _mm256_maskstore_ps(w + i, lanes, _mm256_sub_ps(_mm256_mul_ps(keep, wi), step));
      else _mm256_maskstore_ps(w + i, lanes, _mm256_sub_ps(wi, step));
    }
  }
#endif
};

/// Runs `update` (its scalars set) over values [from, to) of `params`, with slots[0] and
/// slots[1] as m and v, in blocks of `block` values: the loop Adam and AdamW share.
inline void adam_update(const Parameters& params, std::span<Buffer> slots, std::size_t from, std::size_t to, std::ptrdiff_t block,
                        AdamStep update) {
  update.w = params.values.data() + from;
  update.g = params.grads.data() + from;
  update.m = slots[0].data() + from;
  update.v = slots[1].data() + from;
  const Target target = target_of(gemm_kernel());
  for_blocks(std::ptrdiff_t(to - from), block, [=](std::ptrdiff_t begin, std::ptrdiff_t end) { update(target, begin, end); });
}

}  // namespace detail

/// Adam as Keras 2 computes it, with k = iterations so far:
///   lr_k = the schedule's rate (lr / (1 + decay k) by default);  t = k + 1;
///   lr_t = lr_k sqrt(1 - beta2^t) / (1 - beta1^t);  g = c g + weight_decay w (c: clip_norm's scale)
///   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2;  w -= lr_t m / (sqrt(v) + epsilon)
/// Epsilon is outside the bias correction (Keras's placement; PyTorch's Adam has it inside).
class Adam final : public Optimizer {
 public:
  struct Options {
    double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, epsilon = 1e-7, decay = 0.0;
    double weight_decay = 0.0;  // L2, added to the gradient
    double clip_norm = 0.0;     // > 0: the global gradient norm's limit
    Schedule schedule = {};
  };
  Adam() : Adam(Options{}) {}
  explicit Adam(Options options) : options_(options) { check(options); }

  std::string kind() const override { return "Adam"; }
  const Options& options() const { return options_; }
  double learning_rate() const override { return options_.lr; }
  void set_learning_rate(double lr) override {
    if (!(lr > 0)) throw std::invalid_argument("tnet::Adam: lr must be positive");
    options_.lr = lr;
  }
  double learning_rate_at(std::uint64_t k) const override {
    return options_.schedule.kind == Schedule::Kind::constant ? decayed(options_.lr, options_.decay, k)
                                                              : options_.schedule.rate(options_.lr, k);
  }
  const Schedule& schedule() const override { return options_.schedule; }

  void step(const Parameters& params) override {
    bind(params, options_.clip_norm > 0);
    const float scale = clip_scale(params, options_.clip_norm);
    const double t = double(iterations_ + 1);
    const double lr_t = learning_rate_at(iterations_) * std::sqrt(1.0 - std::pow(options_.beta2, t)) / (1.0 - std::pow(options_.beta1, t));
    for_each_rate(params, [&](std::size_t from, std::size_t to, double multiplier) {
      detail::adam_update(params, slots_, from, to, block,
                          {.b1 = float(options_.beta1),
                           .b2 = float(options_.beta2),
                           .lr_t = static_cast<float>(lr_t * multiplier),
                           .eps = float(options_.epsilon),
                           .adjusted = scale != 1.0f || options_.weight_decay != 0,
                           .scale = scale,
                           .l2 = float(options_.weight_decay)});
    });
    ++iterations_;
  }

  std::size_t slots_per_parameter() const override { return 2; }

 protected:
  HyperParameters hyper_parameters() const override {
    HyperParameters values{{"lr", options_.lr},
                           {"beta1", options_.beta1},
                           {"beta2", options_.beta2},
                           {"epsilon", options_.epsilon},
                           {"decay", options_.decay},
                           {"weight_decay", options_.weight_decay},
                           {"clip_norm", options_.clip_norm}};
    options_.schedule.append_to(values);
    return values;
  }
  std::vector<std::string> required_hyper_parameters() const override { return {"lr", "beta1", "beta2", "epsilon", "decay"}; }
  void set_hyper_parameters(const HyperParameters& values) override { options_ = read(values); }
  void validated(const HyperParameters& values) const override { (void)read(values); }

 private:
  static void check(const Options& options) {
    check_common("tnet::Adam", options.lr, options.decay, options.weight_decay, options.clip_norm, options.schedule);
    check_moments("tnet::Adam", options.beta1, options.beta2, options.epsilon);
  }
  static Options read(const HyperParameters& values) {
    Options o{find(values, "lr"),
              find(values, "beta1"),
              find(values, "beta2"),
              find(values, "epsilon"),
              find(values, "decay"),
              find_or(values, "weight_decay", 0.0),
              find_or(values, "clip_norm", 0.0),
              Schedule::from(values)};
    check(o);
    return o;
  }
  Options options_;
};

/// AdamW as PyTorch computes it (torch.optim.AdamW, amsgrad off), with k = iterations so far:
///   lr_k = the schedule's rate;  t = k + 1;  g = c g (c: clip_norm's scale)
///   w *= 1 - lr_k weight_decay                                   (decoupled weight decay)
///   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
///   w -= lr_k / (1 - beta1^t) m / (sqrt(v) / sqrt(1 - beta2^t) + epsilon)
/// computed as Adam's update with lr_t = lr_k sqrt(1 - beta2^t) / (1 - beta1^t) and epsilon
/// sqrt(1 - beta2^t) in place of epsilon (the same value; epsilon inside the bias correction).
/// PyTorch's defaults: lr 1e-3, betas (0.9, 0.999), epsilon 1e-8, weight_decay 0.01.
class AdamW final : public Optimizer {
 public:
  struct Options {
    double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8;
    double weight_decay = 0.01;  // decoupled
    double clip_norm = 0.0;      // > 0: the global gradient norm's limit
    Schedule schedule = {};
  };
  AdamW() : AdamW(Options{}) {}
  explicit AdamW(Options options) : options_(options) { check(options); }

  std::string kind() const override { return "AdamW"; }
  const Options& options() const { return options_; }
  double learning_rate() const override { return options_.lr; }
  void set_learning_rate(double lr) override {
    if (!(lr > 0)) throw std::invalid_argument("tnet::AdamW: lr must be positive");
    options_.lr = lr;
  }
  double learning_rate_at(std::uint64_t k) const override { return options_.schedule.rate(options_.lr, k); }
  const Schedule& schedule() const override { return options_.schedule; }

  void step(const Parameters& params) override {
    bind(params, options_.clip_norm > 0);
    const float scale = clip_scale(params, options_.clip_norm);
    const double t = double(iterations_ + 1);
    const double correction2 = std::sqrt(1.0 - std::pow(options_.beta2, t));
    for_each_rate(params, [&](std::size_t from, std::size_t to, double multiplier) {
      const double lr = learning_rate_at(iterations_) * multiplier;
      detail::adam_update(params, slots_, from, to, block,
                          {.b1 = float(options_.beta1),
                           .b2 = float(options_.beta2),
                           .lr_t = static_cast<float>(lr * correction2 / (1.0 - std::pow(options_.beta1, t))),
                           .eps = static_cast<float>(options_.epsilon * correction2),
                           .adjusted = true,
                           .scale = scale,
                           .shrink = static_cast<float>(1.0 - lr * options_.weight_decay)});
    });
    ++iterations_;
  }

  std::size_t slots_per_parameter() const override { return 2; }

 protected:
  HyperParameters hyper_parameters() const override {
    HyperParameters values{{"lr", options_.lr},
                           {"beta1", options_.beta1},
                           {"beta2", options_.beta2},
                           {"epsilon", options_.epsilon},
                           {"weight_decay", options_.weight_decay},
                           {"clip_norm", options_.clip_norm}};
    options_.schedule.append_to(values);
    return values;
  }
  std::vector<std::string> required_hyper_parameters() const override {
    return {"lr", "beta1", "beta2", "epsilon", "weight_decay", "clip_norm", "schedule"};
  }
  void set_hyper_parameters(const HyperParameters& values) override { options_ = read(values); }
  void validated(const HyperParameters& values) const override { (void)read(values); }

 private:
  static void check(const Options& options) {
    check_common("tnet::AdamW", options.lr, 0.0, options.weight_decay, options.clip_norm, options.schedule);
    check_moments("tnet::AdamW", options.beta1, options.beta2, options.epsilon);
  }
  static Options read(const HyperParameters& values) {
    Options o{find(values, "lr"),           find(values, "beta1"),     find(values, "beta2"), find(values, "epsilon"),
              find(values, "weight_decay"), find(values, "clip_norm"), Schedule::from(values)};
    check(o);
    return o;
  }
  Options options_;
};

/// Stochastic gradient descent as Keras 2 computes it: lr_k = the schedule's rate (lr / (1 +
/// decay k) by default); g = c g + weight_decay w (c: clip_norm's scale);
/// velocity = momentum velocity - lr_k g; w += velocity, or with Nesterov
/// w += momentum velocity - lr_k g.
class SGD final : public Optimizer {
 public:
  struct Options {
    double lr = 0.01, momentum = 0.0, decay = 0.0;
    bool nesterov = false;
    double weight_decay = 0.0;  // L2, added to the gradient
    double clip_norm = 0.0;     // > 0: the global gradient norm's limit
    Schedule schedule = {};
  };
  SGD() : SGD(Options{}) {}
  explicit SGD(Options options) : options_(options) { check(options); }

  std::string kind() const override { return "SGD"; }
  const Options& options() const { return options_; }
  double learning_rate() const override { return options_.lr; }
  void set_learning_rate(double lr) override {
    if (!(lr > 0)) throw std::invalid_argument("tnet::SGD: lr must be positive");
    options_.lr = lr;
  }
  double learning_rate_at(std::uint64_t k) const override {
    return options_.schedule.kind == Schedule::Kind::constant ? decayed(options_.lr, options_.decay, k)
                                                              : options_.schedule.rate(options_.lr, k);
  }
  const Schedule& schedule() const override { return options_.schedule; }

  void step(const Parameters& params) override {
    bind(params, options_.clip_norm > 0);
    const float scale = clip_scale(params, options_.clip_norm);
    const float mu = float(options_.momentum), l2 = float(options_.weight_decay);
    const bool nesterov = options_.nesterov;
    for_each_rate(params, [&](std::size_t from, std::size_t to, double multiplier) {
      const float lr = static_cast<float>(learning_rate_at(iterations_) * multiplier);
      float* w = params.values.data() + from;
      const float* g = params.grads.data() + from;
      float* velocity = slots_[0].data() + from;
      const std::ptrdiff_t n = std::ptrdiff_t(to - from);
      if (scale == 1.0f && l2 == 0.0f) {
        for_blocks(n, block, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
          for (std::ptrdiff_t i = begin; i < end; ++i) {
            velocity[i] = mu * velocity[i] - lr * g[i];
            w[i] += nesterov ? mu * velocity[i] - lr * g[i] : velocity[i];
          }
        });
      } else {
        for_blocks(n, block, [=](std::ptrdiff_t begin, std::ptrdiff_t end) {
          for (std::ptrdiff_t i = begin; i < end; ++i) {
            const float grad = scale * g[i] + l2 * w[i];
            velocity[i] = mu * velocity[i] - lr * grad;
            w[i] += nesterov ? mu * velocity[i] - lr * grad : velocity[i];
          }
        });
      }
    });
    ++iterations_;
  }

  std::size_t slots_per_parameter() const override { return 1; }

 protected:
  HyperParameters hyper_parameters() const override {
    HyperParameters values{{"lr", options_.lr},
                           {"momentum", options_.momentum},
                           {"decay", options_.decay},
                           {"nesterov", options_.nesterov ? 1.0 : 0.0},
                           {"weight_decay", options_.weight_decay},
                           {"clip_norm", options_.clip_norm}};
    options_.schedule.append_to(values);
    return values;
  }
  std::vector<std::string> required_hyper_parameters() const override { return {"lr", "momentum", "decay", "nesterov"}; }
  void set_hyper_parameters(const HyperParameters& values) override { options_ = read(values); }
  void validated(const HyperParameters& values) const override { (void)read(values); }

 private:
  static void check(const Options& options) {
    check_common("tnet::SGD", options.lr, options.decay, options.weight_decay, options.clip_norm, options.schedule);
    if (!(options.momentum >= 0 && options.momentum < 1)) throw std::invalid_argument("tnet::SGD: momentum must be in [0, 1)");
  }
  static Options read(const HyperParameters& values) {
    Options o{find(values, "lr"),
              find(values, "momentum"),
              find(values, "decay"),
              find(values, "nesterov") != 0.0,
              find_or(values, "weight_decay", 0.0),
              find_or(values, "clip_norm", 0.0),
              Schedule::from(values)};
    check(o);
    return o;
  }
  Options options_;
};

}  // namespace tnet
