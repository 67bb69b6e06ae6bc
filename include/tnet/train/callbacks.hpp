// tnet/train/callbacks.hpp: what tnet::fit (train/fit.hpp) calls at the start and end of every
// epoch and after every training step, with Keras's callbacks built on it.
//
// A callback sees the run through a FitContext: the history so far, the optimizer (whose
// learning rate it may change), the network's weights (to keep a copy and put it back), a way to
// save the model, and a flag that stops training. A callback with a state (a best value, wait
// counters) names itself with name() and gives the state as text (state() / set_state()); fit
// writes it into every checkpoint, so that a resumed run decides exactly as an uninterrupted one.
//
//   tnet::EarlyStopping stop({.monitor = "val_loss", .patience = 5, .restore_best_weights = true});
//   tnet::ReduceLROnPlateau plateau({.factor = 0.5, .patience = 2});
//   tnet::ModelCheckpoint best({.path = "best.tnet", .monitor = "val_acc"});
//   tnet::fit(net, train, val, adam, options, {&best, &plateau, &stop});
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iomanip>
#include <limits>
#include <map>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "../core/file.hpp"
#include "../data/image.hpp"
#include "../viz/plot.hpp"
#include "optimizer.hpp"

namespace tnet {

/// The figures of one epoch: one row of the history.
struct EpochLogs {
  int epoch = 0;  // 1 for the first
  double loss = 0, acc = 0, val_loss = 0, val_acc = 0, val_exact = 0, lr = 0, seconds = 0;
  /// The validation's macro- and micro-averaged F1 (at 0.5) and mAP (NaN without positives).
  double val_macro_f1 = 0, val_micro_f1 = 0, val_map = 0;

  /// The figure named `name`: loss, acc, val_loss, val_acc, val_exact_match, lr, seconds,
  /// val_macro_f1, val_micro_f1 or val_map. Throws std::invalid_argument for another name.
  double get(const std::string& name) const {
    if (name == "loss") return loss;
    if (name == "acc") return acc;
    if (name == "val_loss") return val_loss;
    if (name == "val_acc") return val_acc;
    if (name == "val_exact_match") return val_exact;
    if (name == "lr") return lr;
    if (name == "seconds") return seconds;
    if (name == "val_macro_f1") return val_macro_f1;
    if (name == "val_micro_f1") return val_micro_f1;
    if (name == "val_map") return val_map;
    throw std::invalid_argument(
        "no figure '" + name +
        "' to monitor: loss, acc, val_loss, val_acc, val_exact_match, lr, seconds, val_macro_f1, val_micro_f1 or val_map");
  }
};
using History = std::vector<EpochLogs>;

/// The history as CSV, one epoch a line, with a header (the file CSVLogger writes).
inline std::string history_csv(const History& rows) {
  std::ostringstream out;
  out << "epoch,loss,acc,val_loss,val_acc,val_exact_match,lr,seconds,val_macro_f1,val_micro_f1,val_map\n" << std::setprecision(10);
  for (const EpochLogs& r : rows)
    out << r.epoch << ',' << r.loss << ',' << r.acc << ',' << r.val_loss << ',' << r.val_acc << ',' << r.val_exact << ',' << r.lr << ','
        << r.seconds << ',' << r.val_macro_f1 << ',' << r.val_micro_f1 << ',' << r.val_map << '\n';
  return out.str();
}

/// Reads what history_csv wrote (a history without the last three columns, from before them,
/// reads them as 0; "nan" as NaN).
inline History parse_history(const std::string& csv) {
  History rows;
  std::istringstream in(csv);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::replace(line.begin(), line.end(), ',', ' ');
    std::istringstream fields(line);
    EpochLogs r;
    fields >> r.epoch >> r.loss >> r.acc >> r.val_loss >> r.val_acc >> r.val_exact >> r.lr >> r.seconds;
    for (double* extra : {&r.val_macro_f1, &r.val_micro_f1, &r.val_map}) {
      std::string field;
      if (!(fields >> field)) break;
      *extra = field == "nan" || field == "-nan" ? std::nan("") : std::stod(field);
    }
    rows.push_back(r);
  }
  return rows;
}

/// What a callback sees of the run fit() is making.
struct FitContext {
  Optimizer& optimizer;  // learning_rate() / set_learning_rate(): the optimizer's state carries a change
  const History& history;
  int epochs = 0;               // the epochs fit was asked for
  bool writer = true;           // this process writes files (process 0 of an MPI group)
  bool stop_training = false;   // set to end training after this epoch (after this step, from on_batch_end)
  std::ostream* out = nullptr;  // where fit prints; null: silent
  /// A copy of the network's weights and statistics, and putting such a copy back.
  std::function<std::string()> get_weights{};
  std::function<void(const std::string&)> set_weights{};
  /// Saves the network as a model file (with the run's class names, without optimizer state).
  std::function<void(const std::string& path, const std::map<std::string, std::string>& metadata)> save_model{};

  void say(const std::string& line) const {
    if (out) *out << line << "\n" << std::flush;
  }
};

/// Called in the order fit is given them: a callback that saves the model (ModelCheckpoint) goes
/// before one that may put other weights back (EarlyStopping). Under MPI every process calls its
/// callbacks alike (the figures are the group's); only the one with fit.writer writes files.
class Callback {
 public:
  virtual ~Callback() = default;
  /// Epochs count from 1; `batch` is the number of steps taken so far in this epoch.
  virtual void on_epoch_begin(FitContext&, int /*epoch*/) {}
  virtual void on_batch_end(FitContext&, std::size_t /*batch*/, double /*loss*/) {}
  virtual void on_epoch_end(FitContext&, const EpochLogs&) {}

  /// A callback with a state to keep across a resume names itself (unique among a run's
  /// callbacks); "" for one without.
  virtual std::string name() const { return ""; }
  virtual std::string state() const { return ""; }
  /// Throws std::invalid_argument for text state() did not write.
  virtual void set_state(const std::string&) {}
};

/// Which way a monitored figure improves; `automatic`: up for an accuracy ("acc" in the name),
/// down for anything else (Keras's "auto").
enum class MonitorMode { automatic, min, max };

namespace detail {

inline bool improves_upward(MonitorMode mode, const std::string& monitor) {
  if (mode == MonitorMode::automatic)
    return monitor.find("acc") != std::string::npos || monitor.find("exact") != std::string::npos ||
           monitor.find("f1") != std::string::npos || monitor.find("map") != std::string::npos;
  return mode == MonitorMode::max;
}

// A double as text that reads back to the same bits ("%a"; inf as "inf").
inline std::string exact_text(double v) {
  char text[64];
  std::snprintf(text, sizeof text, "%a", v);
  return text;
}

// Reads the whitespace-separated fields a callback wrote; throws naming the callback on a mismatch.
class StateReader {
 public:
  StateReader(const std::string& text, std::string who) : in_(text), who_(std::move(who)) {}
  double number() {
    std::string field;
    if (!(in_ >> field)) fail();
    char* end = nullptr;
    const double v = std::strtod(field.c_str(), &end);
    if (end != field.c_str() + field.size()) fail();
    return v;
  }
  long integer() {
    const double v = number();
    if (v != std::floor(v)) fail();
    return long(v);
  }
  /// The rest after one separating character.
  std::string rest() {
    in_.get();
    return {std::istreambuf_iterator<char>(in_), std::istreambuf_iterator<char>()};
  }
  [[noreturn]] void fail() const { throw std::invalid_argument(who_ + ": the checkpoint's state for it is malformed"); }

 private:
  std::istringstream in_;
  std::string who_;
};

}  // namespace detail

/// Stops training when a monitored figure has stopped improving, as Keras's EarlyStopping does:
/// an epoch improves when its figure beats the best so far by more than min_delta; after
/// `patience` epochs without improvement (and not at the first epoch) training stops, and with
/// restore_best_weights the network gets back the weights (and batch-norm statistics) of the end
/// of its best epoch (of the first epoch when none improved). Weights are restored only when this
/// callback stops training, as in Keras.
class EarlyStopping : public Callback {
 public:
  struct Options {
    std::string monitor = "val_loss";
    double min_delta = 0;
    int patience = 0;
    MonitorMode mode = MonitorMode::automatic;
    bool restore_best_weights = false;
  };
  EarlyStopping() : EarlyStopping(Options{}) {}
  explicit EarlyStopping(Options options)
      : options_(std::move(options)), upward_(detail::improves_upward(options_.mode, options_.monitor)) {
    EpochLogs{}.get(options_.monitor);  // a known figure
    if (options_.patience < 0) throw std::invalid_argument("tnet::EarlyStopping: patience must be >= 0");
    options_.min_delta = std::abs(options_.min_delta);
  }

  void on_epoch_end(FitContext& fit, const EpochLogs& logs) override {
    const double current = logs.get(options_.monitor);
    if (options_.restore_best_weights && best_weights_.empty()) best_weights_ = fit.get_weights();
    ++wait_;
    if (improves(current)) {
      best_ = current, best_epoch_ = logs.epoch, wait_ = 0, has_best_ = true;
      if (options_.restore_best_weights) best_weights_ = fit.get_weights();
      return;
    }
    if (wait_ >= options_.patience && logs.epoch > 1) {
      stopped_epoch_ = logs.epoch;
      fit.stop_training = true;
      std::ostringstream line;
      line << "early stopping: " << options_.monitor << " has not improved for " << wait_ << " epochs";
      if (options_.restore_best_weights && !best_weights_.empty()) {
        fit.set_weights(best_weights_);
        line << "; weights restored from the end of epoch " << std::max(best_epoch_, 1);
      }
      fit.say(line.str());
    }
  }

  /// The epoch that stopped training (0: none), the best figure and its epoch.
  int stopped_epoch() const { return stopped_epoch_; }
  double best() const { return best_; }
  int best_epoch() const { return best_epoch_; }

  std::string name() const override { return "EarlyStopping(" + options_.monitor + ")"; }
  std::string state() const override {
    return std::to_string(has_best_) + " " + detail::exact_text(best_) + " " + std::to_string(best_epoch_) + " " + std::to_string(wait_) +
           " " + std::to_string(stopped_epoch_) + " " + best_weights_;
  }
  void set_state(const std::string& text) override {
    detail::StateReader in(text, name());
    has_best_ = in.integer() != 0;
    best_ = in.number();
    best_epoch_ = int(in.integer()), wait_ = int(in.integer()), stopped_epoch_ = int(in.integer());
    best_weights_ = in.rest();
  }

 private:
  bool improves(double current) const {
    if (!has_best_) return true;
    return upward_ ? current - options_.min_delta > best_ : current + options_.min_delta < best_;
  }
  Options options_;
  bool upward_;
  bool has_best_ = false;
  double best_ = 0;
  int best_epoch_ = 0, wait_ = 0, stopped_epoch_ = 0;
  std::string best_weights_;
};

/// Divides the learning rate when a monitored figure has stopped improving, as Keras's
/// ReduceLROnPlateau does: an epoch improves when its figure beats the best by more than
/// min_delta; after `patience` epochs without improvement the rate becomes
/// max(rate x factor, min_lr) (if it is above min_lr), and the next `cooldown` epochs count no
/// waiting.
class ReduceLROnPlateau : public Callback {
 public:
  struct Options {
    std::string monitor = "val_loss";
    double factor = 0.1;
    int patience = 10;
    MonitorMode mode = MonitorMode::automatic;
    double min_delta = 1e-4;
    int cooldown = 0;
    double min_lr = 0;
  };
  ReduceLROnPlateau() : ReduceLROnPlateau(Options{}) {}
  explicit ReduceLROnPlateau(Options options)
      : options_(std::move(options)), upward_(detail::improves_upward(options_.mode, options_.monitor)) {
    EpochLogs{}.get(options_.monitor);
    if (!(options_.factor > 0 && options_.factor < 1)) throw std::invalid_argument("tnet::ReduceLROnPlateau: factor must be in (0, 1)");
    if (options_.patience < 0 || options_.cooldown < 0)
      throw std::invalid_argument("tnet::ReduceLROnPlateau: patience and cooldown must be >= 0");
    if (!(options_.min_lr >= 0)) throw std::invalid_argument("tnet::ReduceLROnPlateau: min_lr must be >= 0");
    best_ = upward_ ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  }

  void on_epoch_end(FitContext& fit, const EpochLogs& logs) override {
    const double current = logs.get(options_.monitor);
    if (cooldown_counter_ > 0) --cooldown_counter_, wait_ = 0;
    if (upward_ ? current > best_ + options_.min_delta : current < best_ - options_.min_delta) {
      best_ = current, wait_ = 0;
    } else if (cooldown_counter_ == 0 && ++wait_ >= options_.patience) {
      const double old_lr = fit.optimizer.learning_rate();
      if (old_lr > options_.min_lr) {
        // A min_lr of 0 leaves the rate positive, as the optimizer needs.
        const double new_lr = std::max(old_lr * options_.factor, options_.min_lr);
        fit.optimizer.set_learning_rate(new_lr);
        std::ostringstream line;
        line << "epoch " << logs.epoch << ": reducing the learning rate to " << new_lr;
        fit.say(line.str());
        cooldown_counter_ = options_.cooldown, wait_ = 0;
      }
    }
  }

  std::string name() const override { return "ReduceLROnPlateau(" + options_.monitor + ")"; }
  std::string state() const override {
    return detail::exact_text(best_) + " " + std::to_string(wait_) + " " + std::to_string(cooldown_counter_);
  }
  void set_state(const std::string& text) override {
    detail::StateReader in(text, name());
    best_ = in.number();
    wait_ = int(in.integer()), cooldown_counter_ = int(in.integer());
  }

 private:
  Options options_;
  bool upward_;
  double best_;
  int wait_ = 0, cooldown_counter_ = 0;
};

/// Saves the model to `path` at the end of every epoch whose monitored figure is the best so far
/// (Keras's ModelCheckpoint with save_best_only), or at every epoch's end (save_best_only false).
/// The file records the epoch and the figure in its metadata ("epoch", the monitor's name).
class ModelCheckpoint : public Callback {
 public:
  struct Options {
    std::string path;
    std::string monitor = "val_loss";
    MonitorMode mode = MonitorMode::automatic;
    bool save_best_only = true;
  };
  explicit ModelCheckpoint(Options options)
      : options_(std::move(options)), upward_(detail::improves_upward(options_.mode, options_.monitor)) {
    if (options_.path.empty()) throw std::invalid_argument("tnet::ModelCheckpoint: path must not be empty");
    EpochLogs{}.get(options_.monitor);
    best_ = upward_ ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  }

  void on_epoch_end(FitContext& fit, const EpochLogs& logs) override {
    const double current = logs.get(options_.monitor);
    if (options_.save_best_only && !(upward_ ? current > best_ : current < best_)) return;
    best_ = current;
    if (fit.writer) {
      std::ostringstream figure;
      figure << std::setprecision(17) << current;
      fit.save_model(options_.path, {{"epoch", std::to_string(logs.epoch)}, {options_.monitor, figure.str()}});
    }
  }
  double best() const { return best_; }

  std::string name() const override { return "ModelCheckpoint(" + options_.path + ")"; }
  std::string state() const override { return detail::exact_text(best_); }
  void set_state(const std::string& text) override { best_ = detail::StateReader(text, name()).number(); }

 private:
  Options options_;
  bool upward_;
  double best_;
};

/// Writes the history as CSV (history_csv) at the end of every epoch.
class CSVLogger : public Callback {
 public:
  explicit CSVLogger(std::string path) : path_(std::move(path)) {}
  void on_epoch_end(FitContext& fit, const EpochLogs&) override {
    if (fit.writer) write_file(path_, history_csv(fit.history), "history");
  }

 private:
  std::string path_;
};

/// Draws the training and validation loss and accuracy over the epochs into a PNG at the end of
/// every epoch (the Keras tutorial's plot).
class PlotHistory : public Callback {
 public:
  explicit PlotHistory(std::string path) : path_(std::move(path)) {}
  void on_epoch_end(FitContext& fit, const EpochLogs&) override {
    if (!fit.writer) return;
    std::vector<double> loss, val_loss, acc, val_acc;
    for (const EpochLogs& r : fit.history) {
      loss.push_back(r.loss), val_loss.push_back(r.val_loss), acc.push_back(r.acc), val_acc.push_back(r.val_acc);
    }
    write_png(path_, line_plot({{"train_loss", loss, {31, 119, 180}},
                                {"val_loss", val_loss, {255, 127, 14}},
                                {"train_acc", acc, {44, 160, 44}},
                                {"val_acc", val_acc, {214, 39, 40}}},
                               {.title = "Training Loss and Accuracy", .x_label = "Epoch #", .y_label = "Loss/Accuracy"}));
  }

 private:
  std::string path_;
};

/// A callback made of functions (any may be empty). It keeps no state across a resume.
struct LambdaCallback : Callback {
  std::function<void(FitContext&, int)> epoch_begin;
  std::function<void(FitContext&, std::size_t, double)> batch_end;
  std::function<void(FitContext&, const EpochLogs&)> epoch_end;

  void on_epoch_begin(FitContext& fit, int epoch) override {
    if (epoch_begin) epoch_begin(fit, epoch);
  }
  void on_batch_end(FitContext& fit, std::size_t batch, double loss) override {
    if (batch_end) batch_end(fit, batch, loss);
  }
  void on_epoch_end(FitContext& fit, const EpochLogs& logs) override {
    if (epoch_end) epoch_end(fit, logs);
  }
};

}  // namespace tnet
