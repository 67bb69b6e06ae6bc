// tnet/train/fit.hpp: a whole training run as one call, Keras's model.fit.
//
//   tnet::Adam adam(tnet::Adam::Options{.lr = 1e-3, .decay = 1e-3 / epochs});
//   tnet::FitOptions options{.epochs = epochs, .checkpoint = "model.tnet.checkpoint", .model = "model.tnet"};
//   tnet::EarlyStopping stop({.patience = 5, .restore_best_weights = true});
//   tnet::FitResult result = tnet::fit(net, train_batches, val_batches, adam, options, {&stop});
//
// With options.resume, a run stopped by Ctrl-C continues where it stopped.
//
// Every epoch trains on every batch of `train` (a progress line on a terminal), validates on
// `val`, appends a row to the history, calls the callbacks (train/callbacks.hpp) and writes a
// checkpoint. The checkpoint is a model file (model/serialize.hpp) with the optimizer's state
// and, in its metadata, where training stands (epoch, step, the partial epoch's sums), the
// history, the callbacks' states, `settings`, and the network's frozen layers and learning-rate
// multipliers (Sequential::freeze_until, set_learning_rate_multiplier); from it `resume`
// continues bit-identically: the same weights, optimizer state and history as a run that was
// never stopped. A resumed network that was given no freezing and no multipliers takes the
// checkpoint's; one given others than the checkpoint's is refused (ResumeError).
//
// SIGINT, SIGTERM, SIGHUP and SIGUSR1 (catch_signals) end training after the current step with a
// checkpoint (status interrupted); a second signal kills at once. Given a group (core/reducer.hpp,
// dist/mpi.hpp), every process trains on its slice of every batch and all make the same updates;
// process 0 alone writes files. At the end, with a calibration iterator (the training data,
// unshuffled, not augmented), the batch-norm statistics are re-estimated for the final weights
// and, with average_epochs, the final weights are the mean of the last epochs' ends (train/
// average.hpp); the final model is saved and the checkpoints removed.
#pragma once

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "../core/file.hpp"
#include "../core/hash.hpp"
#include "../core/reducer.hpp"
#include "../data/batches.hpp"
#include "../model/sequential.hpp"
#include "../model/serialize.hpp"
#include "average.hpp"
#include "callbacks.hpp"
#include "metrics.hpp"
#include "optimizer.hpp"

namespace tnet {

/// Set by the signals catch_interrupts() catches; fit stops at the next step when it is set.
inline std::atomic<bool> interrupted{false};
namespace detail {
inline void on_interrupt(int signal) {
  interrupted = true;
  std::signal(signal, SIG_DFL);  // a second one stops at once
}
}  // namespace detail
/// Ctrl-C, a plain `kill`, a closed terminal (SIGHUP) and SIGUSR1 (which mpirun forwards to every
/// process; it turns Ctrl-C into SIGTERM) set `interrupted`.
inline void catch_interrupts() {
  for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGUSR1}) std::signal(signal, detail::on_interrupt);
}
inline void release_interrupts() {
  for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGUSR1}) std::signal(signal, SIG_DFL);
}

/// A checkpoint that cannot be resumed by this run (another run's, another program's, other
/// settings): the message says which and why.
struct ResumeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Where fit keeps the mean of the first `count` averaged epochs beside `checkpoint` (one file per
/// count: a checkpoint that says `count` always finds its own mean, even when a kill came between
/// writing the next mean and the checkpoint that counts it).
inline std::string average_checkpoint(const std::string& checkpoint, int count) { return checkpoint + "-average-" + std::to_string(count); }

struct FitOptions {
  int epochs = 1;
  /// Written at every epoch's end and on an interrupt, removed at the end; "": none.
  std::string checkpoint{};
  bool resume = false;  // continue from `checkpoint`
  /// The options a resumed run must repeat (the schedule, the data, the split); kept in the
  /// checkpoint and compared.
  std::string settings{};
  /// The final model; "": not saved. It holds class_names, the history and `metadata`.
  std::string model{};
  std::vector<std::string> class_names{};
  std::map<std::string, std::string> metadata{};
  /// The batch-norm re-estimation pass (the training data, unshuffled, not augmented); null:
  /// the moving averages training left are kept.
  BatchIterator* calibration = nullptr;
  /// The final weights are the mean of the ends of the last this many epochs (needs calibration).
  int average_epochs = 0;
  /// Choose each label's decision threshold on the final model's validation
  /// (MultiLabelScores::best_thresholds) and store them in the final model (set_thresholds).
  bool tune_thresholds = false;
  Reducer* group = nullptr;  // data parallelism; null: this process alone
  /// With a group: a checksum of the data (its paths, say), which every process must share.
  std::uint64_t data_checksum = 0;
  bool catch_signals = true;
  std::ostream* out = &std::cout;                // progress and messages; null: silent
  bool progress_line = ::isatty(STDOUT_FILENO);  // redraw the epoch's line after every step
  /// Called on the writing process once a resumed checkpoint is accepted (a fresh run: at once),
  /// before the first step: for writing the records of the run's inputs.
  std::function<void()> on_start{};
  /// Called on the writing process right after the final model is saved, before the checkpoint
  /// is removed: for the run's other final files (a label list).
  std::function<void()> on_saved{};
  /// Testing: behave as if a signal came after this many steps (counting on into the final
  /// passes' batches); 0: never.
  long interrupt_after_steps = 0;
  /// How the interrupted-run messages tell the user to resume.
  std::string resume_hint = "continue with the same command and --resume";

  std::string average_checkpoint(int count) const { return tnet::average_checkpoint(checkpoint, count); }
};

struct FitResult {
  enum class Status {
    finished,          // the final model is saved (all epochs run, or a callback stopped training)
    interrupted,       // by a signal: the checkpoint holds the run
    already_finished,  // resumed from the checkpoint of a run whose model had been saved: removed
  };
  Status status = Status::finished;
  History history;
  bool stopped_early = false;  // a callback stopped training
  int averaged = 0;            // epochs whose weights were averaged into the final ones
  /// The final model's validation: its loss, metrics, and predictions and targets in order.
  double val_loss = 0;
  MultiLabelMetrics val_metrics{1};
  /// The same validation's probabilities and targets, for mAP and thresholds chosen on it.
  MultiLabelScores val_scores{1};
  std::vector<float> val_predictions, val_targets;
  /// With FitOptions::tune_thresholds: the thresholds stored in the final model; else empty.
  std::vector<float> thresholds;

  /// A program's exit status: 130 after an interrupt (as a shell reports Ctrl-C), else 0.
  int exit_status() const { return status == Status::interrupted ? 130 : 0; }
};

namespace detail {

// A double written with all its digits, so a resumed run adds up exactly as an uninterrupted one.
inline std::string exact(double v) {
  std::ostringstream out;
  out << std::setprecision(17) << v;
  return out.str();
}

inline std::string progress_bar(std::size_t done, std::size_t total) {
  const int width = 30, filled = total ? int(double(done) / double(total) * width) : width;
  std::string bar = "[" + std::string(std::size_t(filled), '=');
  if (filled < width) bar += '>' + std::string(std::size_t(width - filled - 1), '.');
  return bar + "]";
}

// Binary-correct (sample, label) pairs of one batch.
inline std::size_t right_labels(std::span<const float> p, std::span<const float> y) {
  std::size_t right = 0;
  for (std::size_t i = 0; i < y.size(); ++i) right += (p[i] > 0.5f) == (y[i] > 0.5f);
  return right;
}

inline std::string fixed(double v, int digits) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(digits) << v;
  return out.str();
}

// A network of the same type and width as `net`, for holding a mean or reading a model file.
template <class Net>
std::unique_ptr<Net> twin(const Net& net) {
  return std::make_unique<Net>(Outputs{net.outputs()}, net.seed());
}

// Every weight and statistic of `net` as bytes, and back (EarlyStopping's best weights).
template <class Net>
std::string weight_bytes(Net& net) {
  std::string bytes;
  auto add = [&](const void* data, std::size_t size) { bytes.append(static_cast<const char*>(data), size); };
  const std::span<const float> values = net.parameters().values;
  add(values.data(), values.size_bytes());
  net.visit_state([&](const std::string&, auto span) { add(span.data(), span.size_bytes()); });
  return bytes;
}
template <class Net>
void set_weight_bytes(Net& net, const std::string& bytes) {
  std::size_t at = 0;
  auto take = [&](void* data, std::size_t size) {
    if (at + size > bytes.size()) throw std::invalid_argument("tnet::fit: saved weights do not fit this network");
    copy_bytes(data, bytes.data() + at, size);
    at += size;
  };
  const std::span<float> values = net.parameters().values;
  take(values.data(), values.size_bytes());
  net.visit_state([&](const std::string&, auto span) { take(span.data(), span.size_bytes()); });
  if (at != bytes.size()) throw std::invalid_argument("tnet::fit: saved weights do not fit this network");
}

inline std::string callback_key(std::size_t i, const Callback& c) { return "callback " + std::to_string(i) + " " + c.name(); }

// The checkpoint's entries for the network's fine-tuning: the frozen layers' count, and every
// layer's learning-rate multiplier (each the shortest text that reads back exactly), absent
// where they are the defaults (none, every one 1).
inline constexpr const char* frozen_key = "frozen_layers";
inline constexpr const char* multipliers_key = "learning_rate_multipliers";
template <class Net>
std::string multipliers_text(const Net& net) {
  std::string text;
  bool all_one = true;
  for (std::size_t i = 0; i < Net::depth; ++i) {
    const double m = net.learning_rate_multiplier(i);
    all_one = all_one && m == 1.0;
    char number[32];
    const auto end = std::to_chars(number, number + sizeof number, m).ptr;
    if (i > 0) text += ' ';
    text.append(number, end);
  }
  return all_one ? std::string() : text;
}
// "the first 21 layers frozen, layers 0 to 20 at 0.1 x the learning rate": for messages.
inline std::string fine_tuning_text(std::size_t frozen, const std::vector<double>& multipliers) {
  std::string text = frozen == 0 ? "no layer frozen" : "the first " + std::to_string(frozen) + " layers frozen";
  for (std::size_t i = 0; i < multipliers.size();) {
    std::size_t j = i;
    while (j + 1 < multipliers.size() && multipliers[j + 1] == multipliers[i]) ++j;
    if (multipliers[i] != 1.0) {
      std::ostringstream m;
      m << multipliers[i];
      text += ", layer" + (i == j ? " " + std::to_string(i) : "s " + std::to_string(i) + " to " + std::to_string(j)) + " at " + m.str() +
              " x the learning rate";
    }
    i = j + 1;
  }
  return text;
}
// Each layer's multiplier from multipliers_text's text ("" for all 1); throws
// std::invalid_argument unless there is one per layer, each finite and >= 0.
inline std::vector<double> parse_multipliers(const std::string& text, std::size_t depth) {
  if (text.empty()) return std::vector<double>(depth, 1.0);
  std::vector<double> multipliers;
  std::istringstream in(text);
  for (std::string word; in >> word;) {
    double m = 0;
    const auto [end, error] = std::from_chars(word.data(), word.data() + word.size(), m);
    if (error != std::errc() || end != word.data() + word.size() || !(m >= 0 && std::isfinite(m)))
      throw std::invalid_argument("'" + word + "' is not a learning-rate multiplier");
    multipliers.push_back(m);
  }
  if (multipliers.size() != depth)
    throw std::invalid_argument(std::to_string(multipliers.size()) + " learning-rate multipliers for " + std::to_string(depth) + " layers");
  return multipliers;
}

}  // namespace detail

/// Trains `net` as the file comment says; returns how the run ended and its history and final
/// validation. Throws ResumeError for a checkpoint this run cannot continue, FileError (with
/// what to do) when a file cannot be written, std::runtime_error when training diverges.
template <class Net>
FitResult fit(Net& net, BatchIterator& train, BatchIterator& val, Optimizer& optimizer, const FitOptions& o,
              const std::vector<Callback*>& callbacks = {}) {
  std::ostream silent(nullptr);
  std::ostream& out = o.out ? *o.out : silent;
  const std::size_t steps = train.batches_per_epoch();
  if (steps == 0) throw std::invalid_argument("tnet::fit: the training data holds fewer samples than one batch");
  if (o.average_epochs > 0 && !o.calibration)
    throw std::invalid_argument("tnet::fit: average_epochs needs a calibration pass to re-estimate batch-norm statistics for the mean");
  if (o.resume && o.checkpoint.empty()) throw std::invalid_argument("tnet::fit: resume needs a checkpoint");
  const int labels = net.outputs();
  // Data parallelism: every process walks the same global batches and trains on its slice of
  // each; the network sums the gradients and batch-norm statistics over the processes, so every
  // process makes the same updates. Process 0 writes every file.
  Reducer* const group = o.group;
  const int processes = group ? group->size() : 1;
  const bool writer = !group || group->rank() == 0;
  const bool checkpoints = !o.checkpoint.empty();
  auto shared = [&](const BatchIterator& batches) {
    Shard shard = batches.shard();
    shard.reducer = group;
    return shard;
  };
  // Whether any process was interrupted, so that all stop at the same step.
  auto stop_together = [&] {
    double flag = interrupted ? 1.0 : 0.0;
    if (group) group->sum(std::span(&flag, 1));
    return flag > 0;
  };

  FitResult result;
  History& history = result.history;
  FitContext context{.optimizer = optimizer, .history = history, .epochs = o.epochs, .writer = writer, .out = o.out};
  context.get_weights = [&] { return detail::weight_bytes(net); };
  context.set_weights = [&](const std::string& bytes) { detail::set_weight_bytes(net, bytes); };
  context.save_model = [&](const std::string& path, const std::map<std::string, std::string>& metadata) {
    save_model(path, net, o.class_names, nullptr, metadata);
  };

  // Where training stands; a checkpoint stores all of it.
  int first_epoch = 0;
  std::size_t first_batch = 0;
  double epoch_loss = 0, epoch_seconds = 0;
  std::size_t epoch_samples = 0, epoch_right = 0;
  bool stopped = false;  // by a callback
  // The mean of the weights at the ends of the last average_epochs epochs, in a second network.
  const int first_averaged = o.average_epochs > 1 ? o.epochs - o.average_epochs : o.epochs;
  std::unique_ptr<Net> average;
  int& averaged = result.averaged;
  auto finished = [&] {
    result.status = FitResult::Status::already_finished;
    if (writer) std::filesystem::remove(o.checkpoint);
    out << "the run had finished: " << o.model << " holds its model; " << o.checkpoint << " removed\n";
    return result;
  };
  if (o.resume) {
    const ModelFileInfo info = load_model(o.checkpoint, net, &optimizer);
    if (info.class_names != o.class_names) throw ResumeError(o.checkpoint + " was trained on other classes than this dataset has");
    // What fit wrote in its checkpoints; a final model or another program's file lacks it.
    auto meta = [&](const std::string& key) -> const std::string& {
      const auto found = info.metadata.find(key);
      if (found == info.metadata.end())
        throw ResumeError(o.checkpoint + " is not a training checkpoint (it has no '" + key +
                          "'): resuming continues from the checkpoint a run writes at every epoch's end");
      return found->second;
    };
    if (meta("settings") != o.settings)
      throw ResumeError(o.checkpoint + " was made with " + meta("settings") + "; resume with the same options and split");
    // The fine-tuning the run had: taken when the network was given none, else it must be the same.
    {
      auto entry = [&](const char* key, const std::string& fallback) {
        const auto found = info.metadata.find(key);
        return found == info.metadata.end() ? fallback : found->second;
      };
      std::size_t frozen = 0;
      std::vector<double> multipliers;
      try {
        frozen = std::stoul(entry(detail::frozen_key, "0"));
        multipliers = detail::parse_multipliers(entry(detail::multipliers_key, ""), Net::depth);
        if (frozen > Net::depth) throw std::invalid_argument(std::to_string(frozen) + " frozen layers");
      } catch (const std::exception& e) {
        throw ResumeError(o.checkpoint + ": malformed fine-tuning entry: " + e.what());
      }
      std::vector<double> ours(Net::depth);
      for (std::size_t i = 0; i < Net::depth; ++i) ours[i] = net.learning_rate_multiplier(i);
      const bool given = net.frozen_layers() != 0 || !detail::multipliers_text(net).empty();
      if (!given && (frozen != 0 || entry(detail::multipliers_key, "") != "")) {
        net.freeze_until(frozen);
        for (std::size_t i = 0; i < Net::depth; ++i) net.set_learning_rate_multiplier(i, i + 1, multipliers[i]);
        out << "resuming with the checkpoint's fine-tuning: " << detail::fine_tuning_text(frozen, multipliers) << "\n";
      } else if (given && (net.frozen_layers() != frozen || ours != multipliers)) {
        throw ResumeError(o.checkpoint + " was trained with " + detail::fine_tuning_text(frozen, multipliers) + ", this run has " +
                          detail::fine_tuning_text(net.frozen_layers(), ours) +
                          ": resume with the same frozen layers and learning-rate multipliers (or none, to take the checkpoint's)");
      }
    }
    first_epoch = std::stoi(meta("epoch"));
    first_batch = std::stoul(meta("batch"));
    epoch_loss = std::stod(meta("epoch_loss"));
    epoch_samples = std::stoul(meta("epoch_samples"));
    epoch_right = std::stoul(meta("epoch_right"));
    epoch_seconds = std::stod(meta("epoch_seconds"));
    history = parse_history(meta("history"));
    averaged = std::stoi(meta("averaged"));
    stopped = info.metadata.count("stopped") > 0;
    for (std::size_t i = 0; i < callbacks.size(); ++i) {
      if (callbacks[i]->name().empty()) continue;
      const auto found = info.metadata.find(detail::callback_key(i, *callbacks[i]));
      if (found == info.metadata.end())
        throw ResumeError(o.checkpoint + " holds no state for callback " + std::to_string(i + 1) + ", " + callbacks[i]->name() +
                          ": resume with the callbacks the run had");
      try {
        callbacks[i]->set_state(found->second);
      } catch (const std::invalid_argument& e) {
        throw ResumeError(o.checkpoint + ": " + e.what());
      }
    }
    // Killed after the final model was saved, between removing the mean and removing this
    // checkpoint: the run had finished, and its model (same history) is in place.
    if (averaged > 0 && (first_epoch == o.epochs || stopped) && !std::filesystem::exists(o.average_checkpoint(averaged)) &&
        !o.model.empty()) {
      std::string saved;
      try {
        const ModelFileInfo final_info = load_model(o.model, *detail::twin(net));
        if (const auto found = final_info.metadata.find("history"); found != final_info.metadata.end()) saved = found->second;
      } catch (const std::exception&) {
      }
      if (saved == meta("history")) return finished();
    }
    if (averaged > 0) {
      average = detail::twin(net);
      const ModelFileInfo a = load_model(o.average_checkpoint(averaged), *average);
      const auto count = a.metadata.find("averaged");
      if (count == a.metadata.end() || count->second != meta("averaged"))
        throw ResumeError(o.average_checkpoint(averaged) + " does not hold the mean of the " + meta("averaged") + " epochs " +
                          o.checkpoint + " expects: they are not from the same run");
      // Killed between writing the checkpoint that counts this mean and removing the mean before
      // it, a run leaves that one behind; no checkpoint counts it any more.
      if (writer && averaged > 1) std::filesystem::remove(o.average_checkpoint(averaged - 1));
    }
    out << "resuming from " << o.checkpoint << ": epoch " << first_epoch + 1 << ", batch " << first_batch << ", optimizer step "
        << optimizer.iterations() << "\n";
  }
  // Processes that train together must start alike: the same settings, data and weights.
  if (group) {
    std::uint64_t h = fnv1a64(o.settings.data(), o.settings.size());
    h = fnv1a64(reinterpret_cast<const char*>(&o.data_checksum), sizeof o.data_checksum, h);
    const std::span<const float> weights = net.parameters().values;
    h = fnv1a64(reinterpret_cast<const char*>(weights.data()), weights.size_bytes(), h);
    if (!same_everywhere(*group, h))
      throw std::runtime_error(
          "the processes do not start alike: each must run with the same options, find the same data at the same paths "
          "and, when resuming, read the same checkpoint");
  }
  if (writer && o.on_start) o.on_start();
  auto checkpoint = [&](int epoch, std::size_t batch) {
    if (!writer || !checkpoints) return;
    std::map<std::string, std::string> metadata{{"epoch", std::to_string(epoch)},
                                                {"batch", std::to_string(batch)},
                                                {"epoch_loss", detail::exact(epoch_loss)},
                                                {"epoch_samples", std::to_string(epoch_samples)},
                                                {"epoch_right", std::to_string(epoch_right)},
                                                {"epoch_seconds", detail::exact(epoch_seconds)},
                                                {"history", history_csv(history)},
                                                {"averaged", std::to_string(averaged)},
                                                {"settings", o.settings}};
    if (stopped) metadata["stopped"] = "by a callback";
    if (net.frozen_layers() > 0) metadata[detail::frozen_key] = std::to_string(net.frozen_layers());
    if (std::string rates = detail::multipliers_text(net); !rates.empty()) metadata[detail::multipliers_key] = std::move(rates);
    for (std::size_t i = 0; i < callbacks.size(); ++i)
      if (!callbacks[i]->name().empty()) metadata[detail::callback_key(i, *callbacks[i])] = callbacks[i]->state();
    try {
      save_model(o.checkpoint, net, o.class_names, &optimizer, metadata);
    } catch (const FileError& e) {
      // A checkpoint that cannot be written leaves the one before it.
      std::string message = e.what();
      if (std::filesystem::exists(o.checkpoint))
        message += "\nthe checkpoint before it is kept: make room and run the same command with --resume";
      throw std::runtime_error(message);
    }
  };

  // The signals are caught from here to the end of fit.
  struct Signals {
    bool caught;
    explicit Signals(bool catch_them) : caught(catch_them) {
      if (caught) interrupted = false, catch_interrupts();
    }
    ~Signals() {
      if (caught) release_interrupts();
    }
  } signals(o.catch_signals);
  long steps_here = 0;
  MultiLabelMetrics& val_metrics = result.val_metrics;
  val_metrics = MultiLabelMetrics(labels);
  // The last validation's predictions and targets, in order, for the final report.
  std::vector<float>& val_predictions = result.val_predictions;
  std::vector<float>& val_targets = result.val_targets;
  val_predictions.assign(val.samples() * std::size_t(labels), 0.0f);
  val_targets.assign(val_predictions.size(), 0.0f);
  MultiLabelScores& val_scores = result.val_scores;
  val_scores = MultiLabelScores(labels);
  std::vector<double> val_sums;  // with several processes: their predictions and losses, summed
  auto validate = [&] {          // fills val_metrics and val_predictions, returns the mean loss
    double loss = 0;
    val.start_epoch(0);
    // Each process predicts its slice of every batch (none, of a batch smaller than the group)
    // into its rows; the others' rows stay 0 until the sum over processes fills them in.
    if (group) std::ranges::fill(val_predictions, 0.0f);
    std::size_t at = 0;  // where this batch's rows go
    for (int n; (n = val.next()) > 0; at += val.y().size()) {
      const int rank = group ? group->rank() : 0, first = int(long(n) * rank / processes),
                count = int(long(n) * (rank + 1) / processes) - first;
      std::ranges::copy(val.y(), val_targets.begin() + std::ptrdiff_t(at));
      if (count == 0) continue;
      const std::size_t in = Net::input_size, width = std::size_t(labels);
      const auto x = val.x().subspan(std::size_t(first) * in, std::size_t(count) * in);
      const auto y = val.y().subspan(std::size_t(first) * width, std::size_t(count) * width);
      loss += net.evaluate(x, y, count) * count;
      std::ranges::copy(net.output(), val_predictions.begin() + std::ptrdiff_t(at + std::size_t(first) * width));
    }
    if (group) {
      val_sums.assign(val_predictions.begin(), val_predictions.end());
      val_sums.push_back(loss);
      group->sum(val_sums);
      std::ranges::copy(std::span(val_sums).first(val_predictions.size()), val_predictions.begin());
      loss = val_sums.back();
    }
    val_metrics.reset();
    val_metrics.update(val_predictions.data(), val_targets.data(), std::ptrdiff_t(val.samples()));
    val_scores.reset();
    val_scores.update(val_predictions.data(), val_targets.data(), std::ptrdiff_t(val.samples()));
    return loss / double(std::max<std::size_t>(val.samples(), 1));
  };
  auto interrupted_message = [&](const std::string& where) {
    out << where << "; checkpoint saved to " << o.checkpoint << "\n" << o.resume_hint << "\n";
  };

  for (int epoch = first_epoch; epoch < o.epochs && !stopped; ++epoch) {
    train.start_epoch(std::uint64_t(epoch));
    std::size_t batch = 0;
    if (epoch == first_epoch && first_batch > 0) {
      train.skip(first_batch);
      batch = first_batch;
    } else {
      epoch_loss = 0, epoch_seconds = 0, epoch_samples = 0, epoch_right = 0;
      for (Callback* c : callbacks) c->on_epoch_begin(context, epoch + 1);
    }
    const std::string prefix = "Epoch " + std::to_string(epoch + 1) + "/" + std::to_string(o.epochs) + "  ";
    // Seconds spent on this epoch's training steps (a resumed epoch's earlier part included).
    auto start = std::chrono::steady_clock::now();
    auto elapsed = [&] { return epoch_seconds + std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
    auto stop_clock = [&] {
      epoch_seconds = elapsed();
      start = std::chrono::steady_clock::now();
    };
    auto status = [&] {
      std::ostringstream line;
      const double seconds = elapsed();
      line << prefix << batch << "/" << steps << " " << detail::progress_bar(batch, steps) << " - " << std::lround(seconds) << "s "
           << std::lround(1000 * seconds / double(std::max<std::size_t>(batch, 1))) << "ms/step - loss: " << std::fixed
           << std::setprecision(4) << epoch_loss / double(std::max<std::size_t>(epoch_samples, 1))
           << " - acc: " << double(epoch_right) / double(std::max<std::size_t>(epoch_samples * std::size_t(labels), 1));
      return line.str();
    };
    for (int n; !context.stop_training && (n = train.next()) > 0;) {
      const auto y = train.y();
      const double loss = net.train_step(train.x(), y, shared(train), optimizer);
      if (!std::isfinite(loss)) {
        out << (o.progress_line ? "\n" : "") << std::flush;
        throw std::runtime_error(
            "training diverged: the loss is " + std::to_string(loss) + " at step " + std::to_string(batch + 1) + " of epoch " +
            std::to_string(epoch + 1) + " (a lower learning rate may help); no model is saved" +
            (checkpoints && std::filesystem::exists(o.checkpoint) ? ", and " + o.checkpoint + " keeps the last good weights" : ""));
      }
      epoch_loss += loss * n;
      epoch_samples += std::size_t(n);
      if (o.interrupt_after_steps > 0 && ++steps_here == o.interrupt_after_steps) std::raise(SIGINT);
      // Labels right over the global batch, and whether any process was interrupted: one sum.
      double counts[2] = {double(detail::right_labels(net.output(), y)), interrupted ? 1.0 : 0.0};
      if (group) group->sum(counts);
      epoch_right += std::size_t(counts[0]);
      ++batch;
      if (o.progress_line) out << "\r" << status() << std::flush;
      for (Callback* c : callbacks) c->on_batch_end(context, batch, loss);
      if (counts[1] > 0) {
        stop_clock();
        checkpoint(epoch, batch);
        out << (o.progress_line ? "\n" : "");
        interrupted_message("interrupted after step " + std::to_string(batch) + " of epoch " + std::to_string(epoch + 1));
        result.status = FitResult::Status::interrupted;
        return result;
      }
    }
    stop_clock();
    const double train_seconds = epoch_seconds;

    const double val_loss = validate();
    const double seconds = elapsed();  // validation included
    stop_clock();
    epoch_seconds = train_seconds;  // the progress line shows training time alone
    const EpochLogs record{epoch + 1,
                           epoch_loss / double(epoch_samples),
                           double(epoch_right) / double(epoch_samples * std::size_t(labels)),
                           val_loss,
                           val_metrics.binary_accuracy(),
                           val_metrics.exact_match(),
                           optimizer.next_learning_rate(),
                           seconds,
                           val_metrics.macro_f1(),
                           val_metrics.micro_f1(),
                           val_scores.macro_average_precision()};
    history.push_back(record);
    out << (o.progress_line ? "\r" : "") << status() << " - val_loss: " << detail::fixed(record.val_loss, 4)
        << " - val_acc: " << detail::fixed(record.val_acc, 4) << " - val_f1: " << detail::fixed(record.val_macro_f1, 4)
        << " - val_map: " << detail::fixed(record.val_map, 4) << " - " << detail::fixed(double(epoch_samples) / train_seconds, 1)
        << " img/s\n"
        << std::flush;
    for (Callback* c : callbacks) c->on_epoch_end(context, record);
    stopped = context.stop_training;
    epoch_loss = 0, epoch_seconds = 0, epoch_samples = 0, epoch_right = 0;
    // A run a callback stopped keeps its own weights (the best, say), not a mean.
    if (epoch >= first_averaged && !stopped) {
      if (!average) average = detail::twin(net);
      add_to_mean(average->parameters(), net.parameters(), ++averaged);
      // Before the checkpoint that counts it.
      if (writer && checkpoints)
        save_model(o.average_checkpoint(averaged), *average, o.class_names, nullptr, {{"averaged", std::to_string(averaged)}});
    }
    // After the last epoch too: what the final passes start from, should they be interrupted or
    // the model not fit on the disk.
    checkpoint(epoch + 1, 0);
    if (writer && checkpoints && averaged > 1) std::filesystem::remove(o.average_checkpoint(averaged - 1));  // no checkpoint counts it now
  }
  result.stopped_early = stopped;
  const bool use_mean = averaged > 0 && !stopped;

  // The final passes: interrupted, they leave the checkpoint for resume to start them again.
  double& final_val_loss = result.val_loss;
  final_val_loss = history.empty() ? 0.0 : history.back().val_loss;  // of the model saved
  struct Interrupted {};
  auto stop_if_interrupted = [&] {
    if (stop_together()) throw Interrupted{};
  };
  bool validated = false;  // val_metrics hold the model's validation
  try {
    // Batch-norm statistics re-estimated for the final weights with one pass over the training
    // set in Mode::calibrate (no dropout), instead of moving averages that lag behind the weights.
    auto estimate_batch_norm = [&] {
      net.reset_batch_norm_statistics();
      BatchIterator& pass = *o.calibration;
      pass.start_epoch(0);
      while (pass.next() > 0) {
        // interrupt_after_steps counts the final passes' batches after the training steps.
        if (o.interrupt_after_steps > 0 && ++steps_here == o.interrupt_after_steps) std::raise(SIGINT);
        stop_if_interrupted();
        net.forward(pass.x(), shared(pass), Mode::calibrate);
      }
      const double loss = final_val_loss = validate();
      validated = true;
      out << "val_loss " << std::fixed << std::setprecision(4) << loss << " - val_acc " << val_metrics.binary_accuracy()
          << " - exact match " << val_metrics.exact_match() << " - macro F1 " << val_metrics.macro_f1() << " - mAP "
          << val_scores.macro_average_precision() << "\n";
    };
    if (o.calibration && !history.empty()) {
      out << "last epoch, Keras's moving batch-norm averages: val_loss " << std::fixed << std::setprecision(4) << history.back().val_loss
          << " - val_acc " << history.back().val_acc << " - exact match " << history.back().val_exact << "\n"
          << (stopped ? "final weights" : "last weights") << ", batch-norm statistics re-estimated over the training set: ";
      estimate_batch_norm();
    }
    if (use_mean) {
      std::ranges::copy(average->parameters().values, net.parameters().values.begin());
      out << "mean weights of the last " << averaged << " epochs, batch-norm statistics re-estimated: ";
      estimate_batch_norm();
    }
    // Resumed after the last epoch, or the last validation ran on other weights: for the report.
    if (!validated && (first_epoch == o.epochs || stopped)) final_val_loss = validate();
    stop_if_interrupted();
    if (writer && !o.model.empty()) {
      try {
        std::map<std::string, std::string> metadata = o.metadata;
        metadata["history"] = history_csv(history);
        metadata["weights"] = use_mean ? "mean of the last " + std::to_string(averaged) + " epochs" : "last step";
        if (stopped) metadata["weights"] = "stopped by a callback after epoch " + std::to_string(history.size());
        if (o.tune_thresholds) {
          result.thresholds = val_scores.best_thresholds();
          set_thresholds(metadata, result.thresholds);
        }
        metadata["batch_norm"] = o.calibration ? "re-estimated over the training set" : "moving averages";
        save_model(o.model, net, o.class_names, &optimizer, metadata);
        if (o.on_saved) o.on_saved();
      } catch (const FileError& e) {  // the disk, not the model: the weights are safe
        if (!checkpoints) throw;
        throw std::runtime_error(std::string(e.what()) + "\nthe trained weights are kept in " + o.checkpoint +
                                 ": make room and run the same command with --resume to write the model");
      }
    }
  } catch (const Interrupted&) {
    out << "\ninterrupted during the final passes; " << o.checkpoint << " holds the trained weights: " << o.resume_hint << "\n";
    result.status = FitResult::Status::interrupted;
    return result;
  }
  if (writer && checkpoints) {
    // The mean before the checkpoint that counts it: killed between the two, the run leaves the
    // checkpoint, from which resume sees that it had finished (the other order would leave a
    // mean that no checkpoint counts).
    if (averaged > 0) std::filesystem::remove(o.average_checkpoint(averaged));
    std::filesystem::remove(o.checkpoint);
  }
  return result;
}

/// The final report of a run: seconds, peak memory, and the validation's binary accuracy, exact
/// match, macro and micro F1, mAP and micro-averaged AP, per-label precision, recall, F1 and
/// support, and the label sets most often confused.
inline void print_report(std::ostream& out, const FitResult& r, const std::vector<std::string>& classes) {
  double total_seconds = 0;
  for (const EpochLogs& e : r.history) total_seconds += e.seconds;
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  out << "trained " << r.history.size() << " epochs in " << std::fixed << std::setprecision(1) << total_seconds << " s; peak memory "
      << usage.ru_maxrss / 1024 << " MB\n";
  const int labels = int(classes.size());
  const std::size_t samples = labels ? r.val_targets.size() / std::size_t(labels) : 0;
  const MultiLabelMetrics& m = r.val_metrics;
  out << "\nvalidation (" << samples << " images): binary accuracy " << std::setprecision(4) << m.binary_accuracy() << ", exact match "
      << m.exact_match() << ", macro F1 " << m.macro_f1() << ", micro F1 " << m.micro_f1() << ", mAP "
      << r.val_scores.macro_average_precision() << ", micro AP " << r.val_scores.micro_average_precision() << "\n"
      << "label      precision  recall     f1     support\n";
  for (int l = 0; l < labels; ++l) {
    const LabelScores sc = m.label(l);
    out << std::left << std::setw(10) << classes[std::size_t(l)] << std::right << std::setw(9) << sc.precision << std::setw(9) << sc.recall
        << std::setw(9) << sc.f1 << std::setw(10) << sc.support << "\n";
  }
  // The label sets of each validation sample, predicted (above 0.5) and true.
  auto set_name = [&](const std::vector<float>& rows, std::size_t i, float above) {
    std::string s;
    for (int l = 0; l < labels; ++l)
      if (rows[i * std::size_t(labels) + std::size_t(l)] > above) s += (s.empty() ? "" : " ") + classes[std::size_t(l)];
    return s.empty() ? std::string("(none)") : s;
  };
  std::map<std::pair<std::string, std::string>, int> confusions;
  for (std::size_t i = 0; i < samples; ++i) {
    const std::string truth = set_name(r.val_targets, i, 0.5f), predicted = set_name(r.val_predictions, i, 0.5f);
    if (predicted != truth) ++confusions[{truth, predicted}];
  }
  std::vector<std::pair<int, std::pair<std::string, std::string>>> ranked;
  for (const auto& [pair, count] : confusions) ranked.push_back({count, pair});
  std::sort(ranked.rbegin(), ranked.rend());
  out << (ranked.empty() ? "no label combination confused\n" : "most confused (truth -> predicted):\n");
  for (std::size_t i = 0; i < ranked.size() && i < 5; ++i)
    out << "  " << ranked[i].second.first << " -> " << ranked[i].second.second << ": " << ranked[i].first << "\n";
  if (!r.thresholds.empty() && r.thresholds.size() == std::size_t(labels)) {
    const MultiLabelMetrics tuned = r.val_scores.metrics(r.thresholds);
    out << "thresholds chosen on the validation data, stored in the model:";
    for (int l = 0; l < labels; ++l) out << " " << classes[std::size_t(l)] << " " << r.thresholds[std::size_t(l)];
    out << "\nwith them: binary accuracy " << tuned.binary_accuracy() << ", exact match " << tuned.exact_match() << ", macro F1 "
        << tuned.macro_f1() << ", micro F1 " << tuned.micro_f1() << "\n";
  }
}

}  // namespace tnet
