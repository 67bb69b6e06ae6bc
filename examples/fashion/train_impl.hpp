// fashion_train's training loop, for one network type (one image size; any label count).
#pragma once

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "cli.hpp"
#include "models.hpp"

namespace fashion {

struct TrainSettings {
  std::string dataset;  // empty: the built-in synthetic set
  std::string model = "fashion.tnet", labelbin = "labels.txt", plot = "plot.png", history = "history.csv";
  std::string train_list, val_list;  // a split named by files (read_split); empty: drawn with seed
  Architecture architecture = Architecture::smallervgg;
  int epochs = 75, batch_size = 32, image_size = 96;
  double lr = 1e-3, val_split = 0.2;
  std::uint64_t seed = 42;
  bool augment = true, resume = false;
  bool overwrite = false;              // a fresh run discards an unfinished run's checkpoint (else it refuses to start)
  bool recalibrate_batch_norm = true;  // tnet's addition to the tutorial, see train()
  int average_epochs = 0;              // the final weights average the last this many epochs' ends
  long interrupt_after_steps = 0;      // testing: behave as if Ctrl-C came after this many steps (then final-pass batches)
  // The processes training this model together (data parallelism over MPI, train.cpp), each on
  // its slice of every batch; null: this process alone. Process 0 alone prints and writes files.
  tnet::Reducer* group = nullptr;
  bool prefetch = false;  // prepare each batch on a background thread while the one before trains
  // Under mpirun: seconds a collective may make no progress before the run ends (train.cpp).
  double mpi_timeout = 300;

  std::string checkpoint() const { return model + ".checkpoint"; }
  /// Held (flock) by the one process training this model; left in place.
  std::string lock_file() const { return model + ".lock"; }
  /// The mean of the first `count` averaged epochs. One file per count: a checkpoint that says
  /// `count` always finds its own mean, even when a kill came between writing the next mean and
  /// the checkpoint that counts it.
  std::string average_checkpoint(int count) const { return model + ".checkpoint-average-" + std::to_string(count); }
  /// Where the split is written, beside the model: fashion.tnet -> fashion.train.txt, fashion.val.txt.
  std::string split_list(const std::string& part) const {
    return std::filesystem::path(model).replace_extension("").string() + "." + part + ".txt";
  }
};

struct TrainData {
  tnet::LabeledImages images;
  tnet::MultiLabelBinarizer labels;
  std::vector<float> targets;
  tnet::Split split;
  FileLock lock;  // on the model's lock file, in the process that writes the files
  // Writes the records of the run's inputs (its split lists, the synthetic set's examples): called
  // once a resumed run's checkpoint has been accepted, so that a refused --resume writes nothing.
  std::function<void()> write_records;
};

/// The options a resumed run must repeat: they fix the schedule, the split and the batches (the
/// split itself is named by a checksum of its indices).
inline std::string settings_text(const TrainSettings& s, const tnet::Split& split) {
  std::uint64_t h = tnet::detail::fnv1a64_basis;
  for (const auto* part : {&split.train, &split.test}) {
    h = tnet::detail::fnv1a64(reinterpret_cast<const char*>(part->data()), part->size() * sizeof(std::size_t), h);
    h = tnet::detail::fnv1a64("|", 1, h);
  }
  std::ostringstream out;
  out << "--epochs " << s.epochs << " --batch-size " << s.batch_size << " --lr " << s.lr << " --seed " << s.seed << " --image-size "
      << s.image_size << " --average-epochs " << s.average_epochs << (s.augment ? "" : " --no-augment") << " --split " << std::hex << h;
  return out.str();
}

/// One row of history.csv.
struct EpochRecord {
  int epoch = 0;
  double loss = 0, acc = 0, val_loss = 0, val_acc = 0, val_exact = 0, lr = 0, seconds = 0;
};

inline std::atomic<bool> interrupted{false};
inline void on_interrupt(int signal) {
  interrupted = true;
  std::signal(signal, SIG_DFL);  // a second one stops at once
}
/// Ctrl-C, a plain `kill`, a closed terminal (SIGHUP) and SIGUSR1 (which mpirun forwards to every
/// process; it turns Ctrl-C into SIGTERM) stop training after the current step with a checkpoint.
inline void catch_interrupts() {
  for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGUSR1}) std::signal(signal, on_interrupt);
}
inline void release_interrupts() {
  for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGUSR1}) std::signal(signal, SIG_DFL);
}

namespace detail {

// The history a final model of Net at `path` was saved with, or "" when there is none to read.
template <class Net>
std::string model_history(const std::string& path, int labels, std::uint64_t seed) {
  try {
    auto model = std::make_unique<Net>(tnet::Outputs{labels}, seed);
    const tnet::ModelFileInfo info = tnet::load_model(path, *model);
    const auto found = info.metadata.find("history");
    return found == info.metadata.end() ? std::string() : found->second;
  } catch (const std::exception&) {
    return {};
  }
}

// A double written with all its digits, so a resumed run adds up exactly as an uninterrupted one.
inline std::string exact(double v) {
  std::ostringstream out;
  out << std::setprecision(17) << v;
  return out.str();
}

inline std::string history_csv(const std::vector<EpochRecord>& rows) {
  std::ostringstream out;
  out << "epoch,loss,acc,val_loss,val_acc,val_exact_match,lr,seconds\n" << std::setprecision(10);
  for (const EpochRecord& r : rows)
    out << r.epoch << ',' << r.loss << ',' << r.acc << ',' << r.val_loss << ',' << r.val_acc << ',' << r.val_exact << ',' << r.lr << ','
        << r.seconds << '\n';
  return out.str();
}

inline std::vector<EpochRecord> parse_history(const std::string& csv) {
  std::vector<EpochRecord> rows;
  std::istringstream in(csv);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::replace(line.begin(), line.end(), ',', ' ');
    std::istringstream fields(line);
    EpochRecord r;
    fields >> r.epoch >> r.loss >> r.acc >> r.val_loss >> r.val_acc >> r.val_exact >> r.lr >> r.seconds;
    rows.push_back(r);
  }
  return rows;
}

inline void write_outputs(const TrainSettings& s, const std::vector<EpochRecord>& history) {
  tnet::write_file(s.history, history_csv(history), "history");
  std::vector<double> loss, val_loss, acc, val_acc;
  for (const EpochRecord& r : history) {
    loss.push_back(r.loss), val_loss.push_back(r.val_loss), acc.push_back(r.acc), val_acc.push_back(r.val_acc);
  }
  tnet::write_png(s.plot, tnet::line_plot({{"train_loss", loss, {31, 119, 180}},
                                           {"val_loss", val_loss, {255, 127, 14}},
                                           {"train_acc", acc, {44, 160, 44}},
                                           {"val_acc", val_acc, {214, 39, 40}}},
                                          {.title = "Training Loss and Accuracy", .x_label = "Epoch #", .y_label = "Loss/Accuracy"}));
}

// Binary-correct (sample, label) pairs of one batch.
inline std::size_t right_labels(std::span<const float> p, std::span<const float> y) {
  std::size_t right = 0;
  for (std::size_t i = 0; i < y.size(); ++i) right += (p[i] > 0.5f) == (y[i] > 0.5f);
  return right;
}

inline std::string progress_bar(std::size_t done, std::size_t total) {
  const int width = 30, filled = total ? int(double(done) / double(total) * width) : width;
  std::string bar = "[" + std::string(std::size_t(filled), '=');
  if (filled < width) bar += '>' + std::string(std::size_t(width - filled - 1), '.');
  return bar + "]";
}

inline std::string set_name(const std::vector<std::string>& labels) {
  if (labels.empty()) return "(none)";
  std::string s;
  for (const std::string& l : labels) s += (s.empty() ? "" : " ") + l;
  return s;
}

inline long peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024;
}

}  // namespace detail

/// Trains `Net` (the network s.architecture names, at s.image_size) on `data` as `s` says;
/// returns the exit status.
template <class Net>
int train(const TrainSettings& s, TrainData& data) {
  constexpr int size = Net::input_shape::height;
  const std::vector<std::string>& classes = data.labels.classes();
  const int labels = int(classes.size());
  auto net = std::make_unique<Net>(tnet::Outputs{labels}, s.seed);
  tnet::Adam adam(tnet::Adam::Options{.lr = s.lr, .decay = s.lr / s.epochs});
  const std::string settings = settings_text(s, data.split);
  // Data parallelism: every process walks the same global batches and trains on its slice of
  // each; the network sums the gradients and batch-norm statistics over the processes, so every
  // process makes the same updates. Process 0 writes every file.
  tnet::Reducer* const group = s.group;
  const int processes = group ? group->size() : 1;
  const bool writer = !group || group->rank() == 0;
  // The group's share of a batch an iterator produced (each process prepares its slice of it).
  auto shared = [&](const tnet::BatchIterator& batches) {
    tnet::Shard shard = batches.shard();
    shard.reducer = group;
    return shard;
  };
  // Whether any process was interrupted, so that all stop at the same step.
  auto stop_together = [&] {
    double flag = interrupted ? 1.0 : 0.0;
    if (group) group->sum(std::span(&flag, 1));
    return flag > 0;
  };

  // Where training stands; a checkpoint stores all of it.
  int first_epoch = 0;
  std::size_t first_batch = 0;
  double epoch_loss = 0, epoch_seconds = 0;
  std::size_t epoch_samples = 0, epoch_right = 0;
  std::vector<EpochRecord> history;
  // Stochastic weight averaging (tnet/train/average.hpp): the mean of the weights at the ends of
  // the last average_epochs epochs, kept in a second network. The tutorial's learning rate is
  // still 95 % of its first value at the end, so the weights of successive epochs scatter around a
  // minimum; their mean lies nearer its centre.
  // The epochs from this one (0-based) on are averaged; the mean of one epoch is the last weights.
  const int first_averaged = s.average_epochs > 1 ? s.epochs - s.average_epochs : s.epochs;
  std::unique_ptr<Net> average;
  int averaged = 0;  // epochs in the mean so far
  if (s.resume) {
    const tnet::ModelFileInfo info = tnet::load_model(s.checkpoint(), *net, &adam);
    if (info.class_names != classes) throw UsageError(s.checkpoint() + " was trained on other classes than this dataset has");
    // What fashion_train wrote in its checkpoints; a final model or another program's file lacks it.
    auto meta = [&](const std::string& key) -> const std::string& {
      const auto found = info.metadata.find(key);
      if (found == info.metadata.end())
        throw UsageError(s.checkpoint() + " is not a fashion_train checkpoint (it has no '" + key +
                         "'): --resume continues from MODEL.checkpoint, which a run writes at every epoch's end");
      return found->second;
    };
    if (meta("settings") != settings)
      throw UsageError(s.checkpoint() + " was made with " + meta("settings") + "; resume with the same options and split");
    first_epoch = std::stoi(meta("epoch"));
    first_batch = std::stoul(meta("batch"));
    epoch_loss = std::stod(meta("epoch_loss"));
    epoch_samples = std::stoul(meta("epoch_samples"));
    epoch_right = std::stoul(meta("epoch_right"));
    epoch_seconds = std::stod(meta("epoch_seconds"));
    history = detail::parse_history(meta("history"));
    averaged = std::stoi(meta("averaged"));
    // Killed after the final model was saved, between removing the mean and removing this
    // checkpoint: the run had finished, and its model (same history) is in place.
    if (averaged > 0 && first_epoch == s.epochs && !std::filesystem::exists(s.average_checkpoint(averaged)) &&
        detail::model_history<Net>(s.model, labels, s.seed) == meta("history")) {
      release_interrupts();
      if (writer) std::filesystem::remove(s.checkpoint());
      std::cout << "the run had finished: " << s.model << " holds its model; " << s.checkpoint() << " removed\n";
      return 0;
    }
    if (averaged > 0) {
      average = std::make_unique<Net>(tnet::Outputs{labels}, s.seed);
      const tnet::ModelFileInfo a = tnet::load_model(s.average_checkpoint(averaged), *average);
      const auto count = a.metadata.find("averaged");
      if (count == a.metadata.end() || count->second != meta("averaged"))
        throw UsageError(s.average_checkpoint(averaged) + " does not hold the mean of the " + meta("averaged") + " epochs " +
                         s.checkpoint() + " expects: they are not from the same run");
      // Killed between writing the checkpoint that counts this mean and removing the mean before
      // it, a run leaves that one behind; no checkpoint counts it any more.
      if (writer && averaged > 1) std::filesystem::remove(s.average_checkpoint(averaged - 1));
    }
    std::cout << "resuming from " << s.checkpoint() << ": epoch " << first_epoch + 1 << ", batch " << first_batch << ", optimizer step "
              << adam.iterations() << "\n";
  }
  // Processes that train together must start alike: the same options, photos and weights.
  if (group) {
    std::uint64_t h = tnet::detail::fnv1a64(settings.data(), settings.size());
    for (const std::string& path : data.images.paths) h = tnet::detail::fnv1a64(path.data(), path.size() + 1, h);  // with its '\0'
    const std::span<const float> weights = net->parameters().values;
    h = tnet::detail::fnv1a64(reinterpret_cast<const char*>(weights.data()), weights.size_bytes(), h);
    if (!tnet::same_everywhere(*group, h))
      throw std::runtime_error(
          "the processes do not start alike: each must run with the same options, find the same photos at the same paths "
          "and, with --resume, read the same checkpoint");
  }
  if (writer && data.write_records) data.write_records();
  auto checkpoint = [&](int epoch, std::size_t batch) {
    if (!writer) return;
    try {
      tnet::save_model(s.checkpoint(), *net, classes, &adam,
                       {{"epoch", std::to_string(epoch)},
                        {"batch", std::to_string(batch)},
                        {"epoch_loss", detail::exact(epoch_loss)},
                        {"epoch_samples", std::to_string(epoch_samples)},
                        {"epoch_right", std::to_string(epoch_right)},
                        {"epoch_seconds", detail::exact(epoch_seconds)},
                        {"history", detail::history_csv(history)},
                        {"averaged", std::to_string(averaged)},
                        {"settings", settings}});
    } catch (const tnet::FileError& e) {
      // A checkpoint that cannot be written leaves the one before it.
      std::string message = e.what();
      if (std::filesystem::exists(s.checkpoint()))
        message += "\nthe checkpoint before it is kept: make room and run the same command with --resume";
      throw std::runtime_error(message);
    }
  };

  tnet::BatchIterator::Options train_options;
  train_options.batch_size = s.batch_size;
  train_options.drop_last = true;  // Keras: steps_per_epoch = len(trainX) // BS
  train_options.seed = s.seed;
  train_options.prefetch = s.prefetch;
  train_options.process = group ? group->rank() : 0;
  train_options.processes = processes;
  if (s.augment) train_options.augmenter.emplace(tnet::AugmentOptions::keras_tutorial());
  tnet::BatchIterator train_batches(data.images, data.targets, labels, data.split.train, train_options);
  tnet::BatchIterator::Options val_options;
  val_options.batch_size = s.batch_size;
  val_options.shuffle = false;
  tnet::BatchIterator val_batches(data.images, data.targets, labels, data.split.test, val_options);
  const std::size_t steps = train_batches.batches_per_epoch();
  if (steps == 0)
    throw UsageError("the training set has " + std::to_string(data.split.train.size()) + " images, fewer than one batch of " +
                     std::to_string(s.batch_size));

  std::cout << arch_name(s.architecture) << ": " << tnet::detail::with_commas(net->trainable_count() + net->non_trainable_count())
            << " parameters, " << size << "x" << size << "x3 input, " << labels << " labels; " << steps << " steps of " << s.batch_size
            << " per epoch, " << tnet::num_threads() << " threads"
            << (processes > 1 ? " in each of " + std::to_string(processes) + " processes" : "")
            << (s.augment ? ", augmented" : ", no augmentation") << "\n";
  const bool terminal = ::isatty(STDOUT_FILENO);
  catch_interrupts();
  long steps_here = 0;
  tnet::MultiLabelMetrics val_metrics(labels);
  // The last validation's predictions and targets, in order, for the final report.
  std::vector<float> val_predictions(val_batches.samples() * std::size_t(labels)), val_targets(val_predictions.size());
  std::vector<double> val_sums;  // with several processes: their predictions and losses, summed
  auto validate = [&] {          // fills val_metrics and val_predictions, returns the mean loss
    double loss = 0;
    val_batches.start_epoch(0);
    // Each process predicts its slice of every batch (none, of a batch smaller than the group)
    // into its rows; the others' rows stay 0 until the sum over processes fills them in.
    if (group) std::ranges::fill(val_predictions, 0.0f);
    std::size_t at = 0;  // where this batch's rows go
    for (int n; (n = val_batches.next()) > 0; at += val_batches.y().size()) {
      const int rank = group ? group->rank() : 0, first = int(long(n) * rank / processes),
                count = int(long(n) * (rank + 1) / processes) - first;
      std::ranges::copy(val_batches.y(), val_targets.begin() + std::ptrdiff_t(at));
      if (count == 0) continue;
      const std::size_t in = Net::input_size, out = std::size_t(labels);
      const auto x = val_batches.x().subspan(std::size_t(first) * in, std::size_t(count) * in);
      const auto y = val_batches.y().subspan(std::size_t(first) * out, std::size_t(count) * out);
      loss += net->evaluate(x, y, count) * count;
      std::ranges::copy(net->output(), val_predictions.begin() + std::ptrdiff_t(at + std::size_t(first) * std::size_t(labels)));
    }
    if (group) {
      val_sums.assign(val_predictions.begin(), val_predictions.end());
      val_sums.push_back(loss);
      group->sum(val_sums);
      std::ranges::copy(std::span(val_sums).first(val_predictions.size()), val_predictions.begin());
      loss = val_sums.back();
    }
    val_metrics.reset();
    val_metrics.update(val_predictions.data(), val_targets.data(), std::ptrdiff_t(val_batches.samples()));
    return loss / double(std::max<std::size_t>(val_batches.samples(), 1));
  };

  for (int epoch = first_epoch; epoch < s.epochs; ++epoch) {
    train_batches.start_epoch(std::uint64_t(epoch));
    std::size_t batch = 0;
    if (epoch == first_epoch && first_batch > 0) {
      train_batches.skip(first_batch);
      batch = first_batch;
    } else {
      epoch_loss = 0, epoch_seconds = 0, epoch_samples = 0, epoch_right = 0;
    }
    const std::string prefix = "Epoch " + std::to_string(epoch + 1) + "/" + std::to_string(s.epochs) + "  ";
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
    auto fixed = [](double v, int digits) {
      std::ostringstream out;
      out << std::fixed << std::setprecision(digits) << v;
      return out.str();
    };
    for (int n; (n = train_batches.next()) > 0;) {
      const auto y = train_batches.y();
      const double loss = net->train_step(train_batches.x(), y, shared(train_batches), adam);
      if (!std::isfinite(loss)) {
        std::cout << (terminal ? "\n" : "") << std::flush;
        throw std::runtime_error(
            "training diverged: the loss is " + std::to_string(loss) + " at step " + std::to_string(batch + 1) + " of epoch " +
            std::to_string(epoch + 1) + " (a lower --lr may help); no model is saved" +
            (std::filesystem::exists(s.checkpoint()) ? ", and " + s.checkpoint() + " keeps the last good weights" : ""));
      }
      epoch_loss += loss * n;
      epoch_samples += std::size_t(n);
      if (s.interrupt_after_steps > 0 && ++steps_here == s.interrupt_after_steps) std::raise(SIGINT);
      // Labels right over the global batch, and whether any process was interrupted: one sum.
      double counts[2] = {double(detail::right_labels(net->output(), y)), interrupted ? 1.0 : 0.0};
      if (group) group->sum(counts);
      epoch_right += std::size_t(counts[0]);
      ++batch;
      if (terminal) std::cout << "\r" << status() << std::flush;
      if (counts[1] > 0) {
        stop_clock();
        checkpoint(epoch, batch);
        std::cout << (terminal ? "\n" : "") << "interrupted after step " << batch << " of epoch " << epoch + 1 << "; checkpoint saved to "
                  << s.checkpoint() << "\ncontinue with the same command and --resume\n";
        return 130;
      }
    }
    stop_clock();
    const double train_seconds = epoch_seconds;

    const double val_loss = validate();
    const double seconds = elapsed();  // validation included
    stop_clock();
    epoch_seconds = train_seconds;  // the progress line shows training time alone
    const EpochRecord record{epoch + 1,
                             epoch_loss / double(epoch_samples),
                             double(epoch_right) / double(epoch_samples * std::size_t(labels)),
                             val_loss,
                             val_metrics.binary_accuracy(),
                             val_metrics.exact_match(),
                             s.lr / (1.0 + s.lr / s.epochs * double(adam.iterations())),
                             seconds};
    history.push_back(record);
    std::cout << (terminal ? "\r" : "") << status() << " - val_loss: " << fixed(record.val_loss, 4)
              << " - val_acc: " << fixed(record.val_acc, 4) << " - " << fixed(double(epoch_samples) / train_seconds, 1) << " img/s\n"
              << std::flush;
    if (writer) detail::write_outputs(s, history);
    epoch_loss = 0, epoch_seconds = 0, epoch_samples = 0, epoch_right = 0;
    if (epoch >= first_averaged) {
      if (!average) average = std::make_unique<Net>(tnet::Outputs{labels}, s.seed);
      tnet::add_to_mean(average->parameters(), net->parameters(), ++averaged);
      // Before the checkpoint that counts it.
      if (writer) tnet::save_model(s.average_checkpoint(averaged), *average, classes, nullptr, {{"averaged", std::to_string(averaged)}});
    }
    // After the last epoch too: what the final passes start from, should they be interrupted or
    // the model not fit on the disk.
    checkpoint(epoch + 1, 0);
    if (writer && averaged > 1) std::filesystem::remove(s.average_checkpoint(averaged - 1));  // no checkpoint counts it now
  }
  // The final passes: interrupted, they leave the checkpoint for --resume to start them again.
  double final_val_loss = history.empty() ? 0.0 : history.back().val_loss;  // of the model saved
  struct Interrupted {};
  auto stop_if_interrupted = [&] {
    if (stop_together()) throw Interrupted{};
  };
  try {
    // Keras leaves the final model with moving batch-norm statistics averaged over the last hundred
    // or so steps, while the weights kept changing under them, and measured with dropout on; on the
    // tutorial's photos that alone moves the final validation accuracy by several points from one
    // epoch to the next. tnet re-estimates them for the final weights with one pass over the
    // training set without dropout (training data only; --no-recalibrate-bn keeps Keras's).
    auto estimate_batch_norm = [&] {
      net->reset_batch_norm_statistics();
      tnet::BatchIterator::Options pass_options;
      pass_options.batch_size = s.batch_size;
      pass_options.shuffle = false;
      pass_options.drop_last = true;
      pass_options.prefetch = s.prefetch;
      pass_options.process = group ? group->rank() : 0;
      pass_options.processes = processes;
      tnet::BatchIterator pass(data.images, data.targets, labels, data.split.train, pass_options);
      while (pass.next() > 0) {
        // --interrupt-after-steps counts the final passes' batches after the training steps.
        if (s.interrupt_after_steps > 0 && ++steps_here == s.interrupt_after_steps) std::raise(SIGINT);
        stop_if_interrupted();
        net->forward(pass.x(), shared(pass), tnet::Mode::calibrate);
      }
      const double val_loss = final_val_loss = validate();
      std::cout << "val_loss " << std::fixed << std::setprecision(4) << val_loss << " - val_acc " << val_metrics.binary_accuracy()
                << " - exact match " << val_metrics.exact_match() << "\n";
    };
    if (s.recalibrate_batch_norm) {
      std::cout << "last epoch, Keras's moving batch-norm averages: val_loss " << std::fixed << std::setprecision(4)
                << history.back().val_loss << " - val_acc " << history.back().val_acc << " - exact match " << history.back().val_exact
                << "\nlast weights, batch-norm statistics re-estimated over the training set: ";
      estimate_batch_norm();
    }
    if (averaged > 0) {
      std::ranges::copy(average->parameters().values, net->parameters().values.begin());
      std::cout << "mean weights of the last " << averaged << " epochs, batch-norm statistics re-estimated: ";
      estimate_batch_norm();
    }

    if (first_epoch == s.epochs && !s.recalibrate_batch_norm) final_val_loss = validate();  // resumed after the last epoch: for the report
    stop_if_interrupted();
    if (writer) {
      try {
        tnet::save_model(s.model, *net, classes, &adam,
                         {{"history", detail::history_csv(history)},
                          {"dataset", s.dataset.empty() ? "synthetic" : s.dataset},
                          {"weights", averaged ? "mean of the last " + std::to_string(averaged) + " epochs" : "last step"},
                          {"batch_norm", s.recalibrate_batch_norm ? "re-estimated over the training set" : "moving averages"}});
        data.labels.save(s.labelbin);
      } catch (const tnet::FileError& e) {  // the disk, not the model: the weights are safe
        throw std::runtime_error(std::string(e.what()) + "\nthe trained weights are kept in " + s.checkpoint() +
                                 ": make room and run the same command with --resume to write the model");
      }
    }
  } catch (const Interrupted&) {
    std::cout << "\ninterrupted during the final passes; " << s.checkpoint()
              << " holds the trained weights: continue with the same command and --resume\n";
    return 130;
  }
  release_interrupts();
  if (writer) {
    // The mean before the checkpoint that counts it: killed between the two, the run leaves the
    // checkpoint, from which --resume sees that it had finished (the other order would leave a
    // mean that no checkpoint counts).
    if (averaged > 0) std::filesystem::remove(s.average_checkpoint(averaged));
    std::filesystem::remove(s.checkpoint());
  }
  double total_seconds = 0;
  for (const EpochRecord& r : history) total_seconds += r.seconds;
  std::cout << "saved model " << s.model << ", labels " << s.labelbin << ", plot " << s.plot << ", history " << s.history << "\n"
            << "trained " << history.size() << " epochs in " << std::fixed << std::setprecision(1) << total_seconds << " s; peak memory "
            << detail::peak_rss_mb() << " MB\n";

  // A model worse than knowing only how often each label occurs has not learned (a learning rate
  // far too high does this without any number becoming infinite): say so.
  {
    std::vector<double> frequency(std::size_t(labels), 0.0);
    for (std::size_t i : data.split.train)
      for (int l = 0; l < labels; ++l) frequency[std::size_t(l)] += data.targets[i * std::size_t(labels) + std::size_t(l)];
    double baseline = 0;
    for (std::size_t i : data.split.test)
      for (int l = 0; l < labels; ++l) {
        const double p =
            std::clamp(frequency[std::size_t(l)] / double(data.split.train.size()), tnet::keras_epsilon, 1 - tnet::keras_epsilon);
        baseline -= data.targets[i * std::size_t(labels) + std::size_t(l)] > 0.5f ? std::log(p) : std::log(1 - p);
      }
    baseline /= double(data.split.test.size() * std::size_t(labels));
    if (writer && !(final_val_loss <= baseline))
      std::cerr << "fashion_train: warning: the saved model's validation loss, " << std::setprecision(4) << final_val_loss
                << ", is worse than predicting each label's training frequency (" << baseline
                << "): training diverged or did not learn; a lower --lr may help\n";
  }

  // Validation report.
  std::cout << "\nvalidation (" << val_batches.samples() << " images): binary accuracy " << std::setprecision(4)
            << val_metrics.binary_accuracy() << ", exact match " << val_metrics.exact_match() << "\n"
            << "label      precision  recall     f1     support\n";
  for (int l = 0; l < labels; ++l) {
    const tnet::LabelScores sc = val_metrics.label(l);
    std::cout << std::left << std::setw(10) << classes[std::size_t(l)] << std::right << std::setw(9) << sc.precision << std::setw(9)
              << sc.recall << std::setw(9) << sc.f1 << std::setw(10) << sc.support << "\n";
  }
  // From the last validation, which ran on the saved model.
  std::map<std::pair<std::string, std::string>, int> confusions;
  const auto predicted = data.labels.inverse_transform(val_predictions.data(), val_batches.samples());
  const auto truth = data.labels.inverse_transform(val_targets.data(), val_batches.samples());
  for (std::size_t i = 0; i < truth.size(); ++i)
    if (predicted[i] != truth[i]) ++confusions[{detail::set_name(truth[i]), detail::set_name(predicted[i])}];
  std::vector<std::pair<int, std::pair<std::string, std::string>>> ranked;
  for (const auto& [pair, count] : confusions) ranked.push_back({count, pair});
  std::sort(ranked.rbegin(), ranked.rend());
  std::cout << (ranked.empty() ? "no label combination confused\n" : "most confused (truth -> predicted):\n");
  for (std::size_t i = 0; i < ranked.size() && i < 5; ++i)
    std::cout << "  " << ranked[i].second.first << " -> " << ranked[i].second.second << ": " << ranked[i].first << "\n";
  return 0;
}

}  // namespace fashion
