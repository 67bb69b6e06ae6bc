// fashion_train's training loop, for one network type (one image size; any label count).
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <tnet/train/fit.hpp>
#include <vector>

#include "cli.hpp"
#include "model_files.hpp"
#include "models.hpp"

namespace fashion {

struct TrainSettings {
  std::string dataset;  // a folder of class folders; with list empty too, the built-in synthetic set
  std::string list;     // a list of `path,label1|label2` lines (tnet::load_image_list), instead of dataset
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
  bool tune_thresholds = false;        // each label's threshold chosen on the validation data, stored in the model
  // The optimizer: Adam with Keras's decay (the tutorial's), or with weight_decay > 0 AdamW;
  // schedule keras, constant, cosine (warmup_epochs of linear warm-up), one-cycle or step (x0.1
  // every step_epochs epochs); clip_norm > 0 limits the gradient's global norm.
  double weight_decay = 0, clip_norm = 0;
  std::string schedule = "keras";
  int warmup_epochs = 0, step_epochs = 0;
  // The loss: binary cross-entropy, with pos_weight_auto each label's positives weighted by its
  // negatives / positives in the training set; focal_gamma >= 0: the sigmoid focal loss instead.
  bool pos_weight_auto = false;
  double focal_gamma = -1;
  int early_stopping = 0;               // > 0: stop after this many epochs without a better val_loss, keeping the best weights
  double early_stopping_min_delta = 0;  // the least fall of val_loss that counts as better
  int reduce_lr = 0;                    // > 0: multiply the learning rate by reduce_lr_factor after this many such epochs
  double reduce_lr_factor = 0.1;
  std::string keep_best;           // non-empty: the model of the best val_loss so far is saved here
  long interrupt_after_steps = 0;  // testing: behave as if Ctrl-C came after this many steps (then final-pass batches)
  // Fine-tuning: the weights a fresh run starts from (a .tnet or .onnx model, tnet::load_pretrained);
  // the layer before which the layers are frozen (Sequential::layer_index's names), or with
  // backbone_lr_multiplier >= 0 train at that times the learning rate instead.
  std::string init_from, freeze_until;
  double backbone_lr_multiplier = -1;
  // The processes training this model together (data parallelism over MPI, train.cpp), each on
  // its slice of every batch; null: this process alone. Process 0 alone prints and writes files.
  tnet::Reducer* group = nullptr;
  bool prefetch = false;  // prepare each batch on a background thread while the one before trains
  // Under mpirun: seconds a collective may make no progress before the run ends (train.cpp).
  double mpi_timeout = 300;

  std::string checkpoint() const { return model + ".checkpoint"; }
  /// Whether the run trains on the built-in synthetic set (no --dataset, no --list).
  bool synthetic() const { return dataset.empty() && list.empty(); }
  /// The folder the photos' paths in split lists are relative to: --dataset, or --list's folder.
  std::string data_root() const { return list.empty() ? dataset : std::filesystem::path(list).parent_path().string(); }
  /// Held (flock) by the one process training this model; left in place.
  std::string lock_file() const { return model + ".lock"; }
  /// The mean of the first `count` averaged epochs, as tnet::fit keeps it.
  std::string average_checkpoint(int count) const { return tnet::average_checkpoint(checkpoint(), count); }
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
  std::uint64_t h = tnet::fnv1a64_basis;
  for (const auto* part : {&split.train, &split.test}) {
    h = tnet::fnv1a64(reinterpret_cast<const char*>(part->data()), part->size() * sizeof(std::size_t), h);
    h = tnet::fnv1a64("|", 1, h);
  }
  std::ostringstream out;
  out << "--epochs " << s.epochs << " --batch-size " << s.batch_size << " --lr " << s.lr << " --seed " << s.seed << " --image-size "
      << s.image_size << " --average-epochs " << s.average_epochs << (s.augment ? "" : " --no-augment");
  if (s.early_stopping > 0) out << " --early-stopping " << s.early_stopping;
  if (s.early_stopping_min_delta > 0) out << " --early-stopping-min-delta " << s.early_stopping_min_delta;
  if (s.tune_thresholds) out << " --tune-thresholds";
  if (s.weight_decay > 0) out << " --weight-decay " << s.weight_decay;
  if (s.clip_norm > 0) out << " --clip-norm " << s.clip_norm;
  if (s.schedule != "keras") out << " --schedule " << s.schedule;
  if (s.warmup_epochs > 0) out << " --warmup-epochs " << s.warmup_epochs;
  if (s.step_epochs > 0) out << " --step-epochs " << s.step_epochs;
  if (s.pos_weight_auto) out << " --pos-weight auto";
  if (s.focal_gamma >= 0) out << " --focal-gamma " << s.focal_gamma;
  if (s.reduce_lr > 0) out << " --reduce-lr " << s.reduce_lr << " --reduce-lr-factor " << s.reduce_lr_factor;
  out << " --split " << std::hex << h;
  return out.str();
}

/// The optimizer `s` names, for `steps` steps an epoch (TrainSettings).
inline std::unique_ptr<tnet::Optimizer> make_optimizer(const TrainSettings& s, std::size_t steps) {
  const std::uint64_t total = std::uint64_t(s.epochs) * steps;
  tnet::Schedule schedule;
  if (s.schedule == "cosine") {
    if (s.warmup_epochs >= s.epochs)
      throw UsageError("--warmup-epochs must be below --epochs (" + std::to_string(s.epochs) + "), got " + std::to_string(s.warmup_epochs));
    schedule = tnet::Schedule::cosine(total, std::uint64_t(s.warmup_epochs) * steps);
  } else if (s.schedule == "one-cycle") {
    schedule = tnet::Schedule::one_cycle(total);
  } else if (s.schedule == "step") {
    schedule = tnet::Schedule::step(std::uint64_t(s.step_epochs > 0 ? s.step_epochs : std::max(1, s.epochs / 3)) * steps);
  }
  try {
    if (s.weight_decay > 0)
      return std::make_unique<tnet::AdamW>(
          tnet::AdamW::Options{.lr = s.lr, .weight_decay = s.weight_decay, .clip_norm = s.clip_norm, .schedule = schedule});
    return std::make_unique<tnet::Adam>(tnet::Adam::Options{
        .lr = s.lr, .decay = s.schedule == "keras" ? s.lr / s.epochs : 0.0, .clip_norm = s.clip_norm, .schedule = schedule});
  } catch (const std::invalid_argument& e) {  // a schedule too short for its steps
    throw UsageError(std::string("--schedule ") + s.schedule + ": " + e.what());
  }
}

/// Trains `Net` (the network s.architecture names, at s.image_size) on `data` as `s` says, with
/// tnet::fit; returns the exit status.
template <class Net>
int train(const TrainSettings& s, TrainData& data) {
  constexpr int size = Net::input_shape::height;
  const std::vector<std::string>& classes = data.labels.classes();
  const int labels = int(classes.size());
  auto net = std::make_unique<Net>(tnet::Outputs{labels}, s.seed);
  const bool writer = !s.group || s.group->rank() == 0;
  // Fine-tuning: a fresh run starts from --init-from's weights (a resumed one from its checkpoint's),
  // the layers before --freeze-until frozen or at --backbone-lr-multiplier.
  std::size_t until = 0;
  if (!s.freeze_until.empty()) {
    try {
      until = net->layer_index(s.freeze_until);
    } catch (const std::invalid_argument& e) {
      throw UsageError("--freeze-until " + s.freeze_until + ": " + e.what());
    }
    if (until == 0) throw UsageError("--freeze-until " + s.freeze_until + " names the first layer: there is nothing before it");
  }
  if (!s.init_from.empty() && !s.resume) {
    tnet::PretrainedReport report;
    try {
      report = load_pretrained_model(s.init_from, *net, classes);
    } catch (const tnet::ModelFileError& e) {
      throw UsageError(std::string("--init-from: ") + e.what());
    }
    if (writer) std::cout << "--init-from: " << report.describe() << "\n";
  }
  if (until > 0) {
    const std::vector<std::string> names = net->layer_names();
    if (s.backbone_lr_multiplier >= 0) net->set_learning_rate_multiplier(0, until, s.backbone_lr_multiplier);
    else net->freeze_until(until);
    if (writer) {
      std::ostringstream rate;
      rate << s.backbone_lr_multiplier;
      std::cout << "layers " << names.front() << " to " << names[until - 1]
                << (s.backbone_lr_multiplier >= 0 ? " train at " + rate.str() + " x the learning rate; "
                                                  : " are frozen (" + tnet::with_commas(net->parameters().frozen) + " weights); ")
                << names[until] << " to " << names.back() << " train" << (s.backbone_lr_multiplier >= 0 ? " at the full rate" : "") << "\n";
    }
  }
  if (s.focal_gamma >= 0) net->set_loss(tnet::Loss::sigmoid_focal, {.gamma = s.focal_gamma});
  if (s.pos_weight_auto) {
    std::vector<float> train_targets;
    for (std::size_t i : data.split.train)
      train_targets.insert(train_targets.end(), data.targets.begin() + std::ptrdiff_t(i * std::size_t(labels)),
                           data.targets.begin() + std::ptrdiff_t((i + 1) * std::size_t(labels)));
    const std::vector<float> weights = tnet::positive_weights(train_targets.data(), std::ptrdiff_t(data.split.train.size()), labels);
    if (!s.group || s.group->rank() == 0) {
      std::cout << "positive weights (--pos-weight auto):";
      for (int l = 0; l < labels; ++l) std::cout << " " << classes[std::size_t(l)] << " " << weights[std::size_t(l)];
      std::cout << "\n";
    }
    net->set_loss(tnet::Loss::binary_crossentropy, {.pos_weight = weights});
  }
  const int processes = s.group ? s.group->size() : 1;
  // Every process walks the same batches and prepares its slice of each (tnet::fit).
  auto batch_options = [&](bool shuffle) {
    tnet::BatchIterator::Options o;
    o.batch_size = s.batch_size, o.shuffle = shuffle, o.seed = s.seed;
    o.drop_last = true;  // Keras: steps_per_epoch = len(trainX) // BS
    o.prefetch = s.prefetch;
    o.process = s.group ? s.group->rank() : 0, o.processes = processes;
    return o;
  };
  tnet::BatchIterator::Options train_options = batch_options(true);
  if (s.augment) train_options.augmenter.emplace(tnet::AugmentOptions::keras_tutorial());
  tnet::BatchIterator train_batches(data.images, data.targets, labels, data.split.train, train_options);
  tnet::BatchIterator::Options val_options;
  val_options.batch_size = s.batch_size, val_options.shuffle = false;
  tnet::BatchIterator val_batches(data.images, data.targets, labels, data.split.test, val_options);
  // Keras leaves the final model with moving batch-norm statistics averaged over the last hundred
  // or so steps, while the weights kept changing under them, and measured with dropout on; on the
  // tutorial's photos that alone moves the final validation accuracy by several points from one
  // epoch to the next. tnet re-estimates them for the final weights with one pass over the
  // training set without dropout (--no-recalibrate-bn keeps Keras's).
  std::unique_ptr<tnet::BatchIterator> calibration;
  if (s.recalibrate_batch_norm)
    calibration = std::make_unique<tnet::BatchIterator>(data.images, data.targets, labels, data.split.train, batch_options(false));
  const std::size_t steps = train_batches.batches_per_epoch();
  if (steps == 0)
    throw UsageError("the training set has " + std::to_string(data.split.train.size()) + " images, fewer than one batch of " +
                     std::to_string(s.batch_size));
  const std::unique_ptr<tnet::Optimizer> optimizer = make_optimizer(s, steps);

  // Said once a resumed checkpoint is accepted, after the records of the inputs are written.
  auto start = [&] {
    if (data.write_records) data.write_records();
    std::cout << arch_name(s.architecture) << ": " << tnet::with_commas(net->trainable_count() + net->non_trainable_count())
              << " parameters, " << size << "x" << size << "x3 input, " << labels << " labels; " << steps << " steps of " << s.batch_size
              << " per epoch, " << tnet::num_threads() << " threads"
              << (processes > 1 ? " in each of " + std::to_string(processes) + " processes" : "")
              << (s.augment ? ", augmented" : ", no augmentation") << "\n";
  };
  std::uint64_t paths = tnet::fnv1a64_basis;
  for (const std::string& path : data.images.paths) paths = tnet::fnv1a64(path.data(), path.size() + 1, paths);  // with its '\0'
  // Stochastic weight averaging (tnet/train/average.hpp): the tutorial's learning rate is still
  // 95 % of its first value at the end, so the weights of successive epochs scatter around a
  // minimum; the mean of the last average_epochs epochs' ends lies nearer its centre.
  const tnet::FitOptions options{.epochs = s.epochs,
                                 .checkpoint = s.checkpoint(),
                                 .resume = s.resume,
                                 .settings = settings_text(s, data.split),
                                 .model = s.model,
                                 .class_names = classes,
                                 .metadata = {{"dataset", s.synthetic()    ? "synthetic"
                                                          : s.list.empty() ? s.dataset
                                                                           : s.list}},
                                 .calibration = calibration.get(),
                                 .average_epochs = s.average_epochs,
                                 .tune_thresholds = s.tune_thresholds,
                                 .group = s.group,
                                 .data_checksum = paths,
                                 .on_start = start,
                                 .on_saved = [&] { data.labels.save(s.labelbin); },
                                 .interrupt_after_steps = s.interrupt_after_steps};
  tnet::CSVLogger csv(s.history);
  tnet::PlotHistory plot(s.plot);
  std::vector<tnet::Callback*> callbacks{&csv, &plot};
  // The best model is kept before early stopping may put back other weights.
  std::optional<tnet::ModelCheckpoint> best;
  if (!s.keep_best.empty()) callbacks.push_back(&best.emplace(tnet::ModelCheckpoint::Options{.path = s.keep_best}));
  tnet::ReduceLROnPlateau plateau({.factor = s.reduce_lr_factor, .patience = s.reduce_lr});
  if (s.reduce_lr > 0) callbacks.push_back(&plateau);
  tnet::EarlyStopping stop({.min_delta = s.early_stopping_min_delta, .patience = s.early_stopping, .restore_best_weights = true});
  if (s.early_stopping > 0) callbacks.push_back(&stop);
  tnet::FitResult result;
  try {
    result = tnet::fit(*net, train_batches, val_batches, *optimizer, options, callbacks);
  } catch (const tnet::ResumeError& e) {
    throw UsageError(e.what());
  }
  if (result.status != tnet::FitResult::Status::finished) return result.exit_status();
  std::cout << "saved model " << s.model << ", labels " << s.labelbin << ", plot " << s.plot << ", history " << s.history << "\n";

  // A model worse than knowing only how often each label occurs has not learned (a learning rate
  // far too high does this without any number becoming infinite): say so.
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
  const bool plain_loss = !s.pos_weight_auto && s.focal_gamma < 0;
  if ((!s.group || s.group->rank() == 0) && plain_loss && !(result.val_loss <= baseline))
    std::cerr << "fashion_train: warning: the saved model's validation loss, " << std::setprecision(4) << result.val_loss
              << ", is worse than predicting each label's training frequency (" << baseline
              << "): training diverged or did not learn; a lower --lr may help\n";
  tnet::print_report(std::cout, result, classes);
  return 0;
}

}  // namespace fashion
