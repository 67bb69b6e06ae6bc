// tnet::fit and its callbacks: Keras's EarlyStopping and ReduceLROnPlateau on fixed sequences,
// a tiny network trained for a few epochs, a run interrupted and resumed against one that was not.
#include <tnet/train/fit.hpp>

#include "support.hpp"

using namespace tnet;

namespace {

// One small network for every test here (each network type costs compile time).
using Net = Sequential<Input<4, 4, 3>, Conv2D<3, 3>, BatchNorm, ReLU, Flatten, Dropout<0.2f>, Dense<dynamic>, Sigmoid>;

// 60 images of 4x4 pixels with labels "red" and "top" to learn.
struct Data : test::TwoLabelImages {
  Data() : TwoLabelImages(4, 60, 12345) {}
};

// The batches fit draws: shuffled and augmented for training, in order for validation and for
// the batch-norm pass.
struct Batches {
  BatchIterator train, val, calibration;
  static BatchIterator::Options options(bool shuffle) {
    BatchIterator::Options o;
    o.batch_size = 8, o.shuffle = shuffle, o.drop_last = shuffle, o.seed = 3;
    return o;
  }
  explicit Batches(const Data& d)
      : train(d.images, d.targets, 2, d.split.train, options(true)),
        val(d.images, d.targets, 2, d.split.test, options(false)),
        calibration(d.images, d.targets, 2, d.split.train, [] {
          BatchIterator::Options o = options(false);
          o.drop_last = true;
          return o;
        }()) {}
};

// A FitContext whose "weights" are the text a test sets, to watch what a callback keeps and restores.
struct FakeRun {
  SGD sgd{SGD::Options{.lr = 0.1}};
  History history;
  std::string weights, restored;
  FitContext context{.optimizer = sgd, .history = history, .epochs = 100};
  FakeRun() {
    context.get_weights = [this] { return weights; };
    context.set_weights = [this](const std::string& w) { restored = w; };
  }
  // Feeds the callback one epoch whose `monitor` figure is `value`, with weights "N".
  void epoch(Callback& c, const std::string& monitor, double value) {
    EpochLogs logs;
    logs.epoch = int(history.size()) + 1;
    (monitor == "val_acc" ? logs.val_acc : monitor == "val_map" ? logs.val_map : logs.val_loss) = value;
    history.push_back(logs);
    weights = std::to_string(logs.epoch);
    c.on_epoch_end(context, logs);
  }
};

// The epoch EarlyStopping stops at on `values` (0: none) and the weights it restored.
std::pair<int, std::string> early_stop(EarlyStopping::Options options, const std::vector<double>& values) {
  FakeRun run;
  EarlyStopping stop(options);
  for (double v : values) {
    run.epoch(stop, options.monitor, v);
    if (run.context.stop_training) break;
  }
  CHECK(stop.stopped_epoch() == (run.context.stop_training ? int(run.history.size()) : 0));
  return {stop.stopped_epoch(), run.restored};
}

// Weights, statistics and optimizer state of a run, to compare two runs bit for bit.
std::string run_state(Net& net, const Optimizer& optimizer) {
  std::string s = detail::weight_bytes(net);
  const OptimizerState state = optimizer.state();
  s += std::to_string(state.iterations) + " " + detail::exact_text(optimizer.learning_rate()) + " ";
  for (const Buffer& slot : state.slots) s.append(reinterpret_cast<const char*>(slot.data()), slot.size() * sizeof(float));
  return s;
}

std::string without_seconds(const History& history) {
  History h = history;
  for (EpochLogs& e : h) e.seconds = 0;
  return history_csv(h);
}

}  // namespace

TEST_CASE("EarlyStopping stops and restores the best weights as Keras's does") {
  const std::vector<double> losses{1.0, 0.8, 0.85, 0.79, 0.9, 0.95, 0.7};
  // min_delta 0.02: 0.79 is no improvement on 0.8, so epochs 3 and 4 wait and epoch 4 stops.
  CHECK(early_stop({.min_delta = 0.02, .patience = 2, .restore_best_weights = true}, losses) == std::pair<int, std::string>{4, "2"});
  // Without it 0.79 (epoch 4) is the best; 5 and 6 wait.
  CHECK(early_stop({.patience = 2, .restore_best_weights = true}, losses) == std::pair<int, std::string>{6, "4"});
  // Without restore_best_weights the last weights stay.
  CHECK(early_stop({.patience = 2}, losses) == std::pair<int, std::string>{6, ""});
  // Patience 0 stops at the first epoch that does not improve, never at the first epoch.
  CHECK(early_stop({.patience = 0, .restore_best_weights = true}, losses) == std::pair<int, std::string>{3, "2"});
  CHECK(early_stop({.patience = 0, .restore_best_weights = true}, {5.0}) == std::pair<int, std::string>{0, ""});
  // An accuracy improves upward (mode automatic), a negative min_delta counts as its size.
  CHECK(early_stop({.monitor = "val_acc", .min_delta = -0.05, .patience = 1, .restore_best_weights = true}, {0.5, 0.6, 0.62, 0.7}) ==
        std::pair<int, std::string>{3, "2"});
  CHECK(early_stop({.monitor = "val_acc", .patience = 1, .mode = MonitorMode::min, .restore_best_weights = true}, {0.5, 0.6}) ==
        std::pair<int, std::string>{2, "1"});
  CHECK_THROWS_WITH_AS(EarlyStopping({.monitor = "val_auc"}),
                       "no figure 'val_auc' to monitor: loss, acc, val_loss, val_acc, val_exact_match, lr, seconds, val_macro_f1, "
                       "val_micro_f1 or val_map",
                       std::invalid_argument);
  // F1 and mAP rise as the model improves.
  CHECK(early_stop({.monitor = "val_map", .patience = 1, .restore_best_weights = true}, {0.5, 0.6, 0.55}).first == 3);
}

TEST_CASE("fit: the history's F1 and mAP columns come after the first eight, which older histories have alone") {
  EpochLogs row{.epoch = 2, .loss = 0.5, .val_macro_f1 = 0.25, .val_micro_f1 = 0.75, .val_map = std::nan("")};
  const History back = parse_history(history_csv({row}));
  REQUIRE(back.size() == 1);
  CHECK(back[0].val_macro_f1 == 0.25);
  CHECK(back[0].val_micro_f1 == 0.75);
  CHECK(std::isnan(back[0].val_map));
  const History old = parse_history("epoch,loss,acc,val_loss,val_acc,val_exact_match,lr,seconds\n3,0.5,0.9,0.4,0.8,0.5,0.001,2\n");
  REQUIRE(old.size() == 1);
  CHECK(old[0].epoch == 3);
  CHECK(old[0].seconds == 2);
  CHECK(old[0].val_map == 0);
}

TEST_CASE("ReduceLROnPlateau follows Keras: patience, factor, cooldown and min_lr") {
  FakeRun run;
  ReduceLROnPlateau plateau({.factor = 0.5, .patience = 2, .cooldown = 2, .min_lr = 0.03});
  const std::vector<double> losses{1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.6, 0.6, 0.6};
  std::vector<double> rates;
  for (double v : losses) {
    run.epoch(plateau, "val_loss", v);
    rates.push_back(run.sgd.learning_rate());
  }
  // Epoch 3 waited 2: 0.1 -> 0.05, then 2 epochs of cooldown, of which Keras counts the second
  // towards the wait (the counter falls before it is tested); epoch 6: 0.05 x 0.5 = 0.025, held
  // at min_lr 0.03; at min_lr nothing changes any more.
  const std::vector<double> expected{0.1, 0.1, 0.05, 0.05, 0.05, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03};
  REQUIRE(rates.size() == expected.size());
  for (std::size_t i = 0; i < rates.size(); ++i) CHECK(rates[i] == doctest::Approx(expected[i]).epsilon(1e-15));

  // Cooldown 1 has no effect in Keras (the epoch after a reduction already counts), nor here;
  // min_delta: 0.99995 is no improvement on 1.
  FakeRun again;
  ReduceLROnPlateau quick({.factor = 0.5, .patience = 1, .cooldown = 1});
  for (double v : {1.0, 0.99995, 0.99992}) again.epoch(quick, "val_loss", v);
  CHECK(again.sgd.learning_rate() == doctest::Approx(0.025));
  CHECK_THROWS_AS(ReduceLROnPlateau({.factor = 1.0}), std::invalid_argument);
}

TEST_CASE("ModelCheckpoint saves the model of the best epoch only") {
  FakeRun run;
  std::vector<std::string> saved;
  run.context.save_model = [&](const std::string& path, const std::map<std::string, std::string>& metadata) {
    saved.push_back(path + " " + metadata.at("epoch"));
  };
  ModelCheckpoint best({.path = "best.tnet"});
  for (double v : {1.0, 0.9, 0.95, 0.9, 0.5}) run.epoch(best, "val_loss", v);
  CHECK(saved == std::vector<std::string>{"best.tnet 1", "best.tnet 2", "best.tnet 5"});
  ModelCheckpoint restored({.path = "best.tnet"});
  restored.set_state(best.state());
  CHECK(restored.best() == 0.5);
  CHECK_THROWS_WITH_AS(restored.set_state("0.5x"), "ModelCheckpoint(best.tnet): the checkpoint's state for it is malformed",
                       std::invalid_argument);
}

TEST_CASE("fit trains a tiny network, writes its history, plot and model, and a user's callback can stop it") {
  const Data data;
  const test::TempDir dir("fit");
  Batches batches(data);
  Net net(Outputs{2}, 5);
  Adam adam(Adam::Options{.lr = 0.01});
  std::ostringstream log;
  CSVLogger csv(dir / "history.csv");
  PlotHistory plot(dir / "plot.png");
  std::vector<int> begun;
  std::size_t batches_seen = 0;
  LambdaCallback watch;
  watch.epoch_begin = [&](FitContext&, int epoch) { begun.push_back(epoch); };
  watch.batch_end = [&](FitContext&, std::size_t, double loss) { batches_seen += std::isfinite(loss); };
  const FitResult r = fit(net, batches.train, batches.val, adam,
                          {.epochs = 8,
                           .checkpoint = dir / "m.tnet.checkpoint",
                           .model = dir / "m.tnet",
                           .class_names = data.labels.classes(),
                           .calibration = &batches.calibration,
                           .average_epochs = 2,
                           .out = &log,
                           .progress_line = false},
                          {&csv, &plot, &watch});
  CHECK(r.status == FitResult::Status::finished);
  REQUIRE(r.history.size() == 8);
  CHECK(begun == std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8});
  CHECK(batches_seen == 8 * batches.train.batches_per_epoch());
  CHECK(r.history.back().loss < r.history.front().loss);
  CHECK(r.history.back().val_acc > 0.75);
  CHECK(r.averaged == 2);
  CHECK(test::read(dir / "history.csv") == history_csv(r.history));
  CHECK(std::filesystem::file_size(dir / "plot.png") > 1000);
  CHECK(!std::filesystem::exists(dir / "m.tnet.checkpoint"));
  CHECK(!std::filesystem::exists(dir / "m.tnet.checkpoint-average-2"));
  Net loaded(Outputs{2});
  const ModelFileInfo info = load_model(dir / "m.tnet", loaded);
  CHECK(info.metadata.at("history") == history_csv(r.history));
  CHECK(info.metadata.at("weights") == "mean of the last 2 epochs");
  CHECK(detail::weight_bytes(loaded) == detail::weight_bytes(net));
  CHECK(log.str().find("Epoch 8/8  " + std::to_string(batches.train.batches_per_epoch()) + "/") != std::string::npos);
  // The history's rate is Adam's after Keras's decay (none here).
  CHECK(r.history.back().lr == 0.01);

  // A user's callback that stops training after epoch 2; another that stops after a step.
  LambdaCallback stop_after_two;
  stop_after_two.epoch_end = [](FitContext& fit, const EpochLogs& logs) { fit.stop_training = logs.epoch == 2; };
  Net other(Outputs{2}, 5);
  Adam adam2(Adam::Options{.lr = 0.01});
  const FitResult stopped =
      fit(other, batches.train, batches.val, adam2, {.epochs = 8, .class_names = data.labels.classes(), .out = nullptr}, {&stop_after_two});
  CHECK(stopped.history.size() == 2);
  CHECK(stopped.stopped_early);
  CHECK(adam2.iterations() == 2 * batches.train.batches_per_epoch());
  LambdaCallback stop_at_once;
  stop_at_once.batch_end = [](FitContext& fit, std::size_t, double) { fit.stop_training = true; };
  const FitResult one_step =
      fit(other, batches.train, batches.val, adam2, {.epochs = 8, .class_names = data.labels.classes(), .out = nullptr}, {&stop_at_once});
  CHECK(one_step.history.size() == 1);
  CHECK(adam2.iterations() == 2 * batches.train.batches_per_epoch() + 1);
}

TEST_CASE("fit resumed after an interrupt, every callback active, equals a run that was not interrupted") {
  const Data data;
  const test::TempDir dir("fit_resume");
  // Every callback acts: min_delta 10 makes no epoch after the first an improvement, so the rate
  // halves after epochs 3 and 5, and training stops after epoch 5 with the weights of epoch 1; the
  // mean of epoch 4, the first averaged, is then dropped.
  struct Run {
    Batches batches;
    Net net{Outputs{2}, 5};
    Adam adam{Adam::Options{.lr = 0.01, .decay = 0.001}};
    EarlyStopping stop{{.monitor = "loss", .min_delta = 10, .patience = 4, .restore_best_weights = true}};
    ReduceLROnPlateau plateau{{.monitor = "val_loss", .factor = 0.5, .patience = 2, .min_delta = 10, .cooldown = 0}};
    ModelCheckpoint best;
    CSVLogger csv;
    FitResult result;
    Run(const Data& d, const std::string& name)
        : batches(d), best({.path = name + ".best.tnet", .monitor = "val_acc"}), csv(name + ".csv") {}
    void fit(const Data& d, const std::string& name, bool resume, long interrupt_after) {
      FitOptions o{.epochs = 6,
                   .checkpoint = name + ".checkpoint",
                   .resume = resume,
                   .settings = "test",
                   .model = name + ".tnet",
                   .class_names = d.labels.classes(),
                   .calibration = &batches.calibration,
                   .average_epochs = 3,
                   .out = nullptr,
                   .interrupt_after_steps = interrupt_after};
      result = tnet::fit(net, batches.train, batches.val, adam, o, {&csv, &stop, &plateau, &best});
    }
  };
  Run whole(data, dir / "whole");
  whole.fit(data, dir / "whole", false, 0);
  REQUIRE(whole.result.status == FitResult::Status::finished);
  CHECK(whole.result.history.size() == 5);
  CHECK(whole.stop.stopped_epoch() == 5);
  CHECK(whole.adam.learning_rate() == doctest::Approx(0.0025));  // halved after epochs 3 and 5
  CHECK(whole.result.averaged == 1);
  Net first(Outputs{2});
  CHECK(load_model(dir / "whole.tnet", first).metadata.at("weights") == "stopped by a callback after epoch 5");

  const std::size_t steps = whole.batches.train.batches_per_epoch();
  for (const long at : {long(2 * steps + 1), long(4 * steps + 1), long(5 * steps + 2)}) {
    INFO("interrupted after step ", at);
    const std::string name = dir / ("part" + std::to_string(at));
    Run part(data, name);
    part.fit(data, name, false, at);
    REQUIRE(part.result.status == FitResult::Status::interrupted);
    CHECK(std::filesystem::exists(name + ".checkpoint"));
    tnet::interrupted = false;
    Run resumed(data, name);
    resumed.fit(data, name, true, 0);
    REQUIRE(resumed.result.status == FitResult::Status::finished);
    CHECK(run_state(resumed.net, resumed.adam) == run_state(whole.net, whole.adam));
    CHECK(without_seconds(resumed.result.history) == without_seconds(whole.result.history));
    CHECK(resumed.stop.state() == whole.stop.state());
    CHECK(resumed.plateau.state() == whole.plateau.state());
    CHECK(resumed.best.state() == whole.best.state());
    Net a(Outputs{2}), b(Outputs{2});
    load_model(name + ".best.tnet", a), load_model(dir / "whole.best.tnet", b);
    CHECK(detail::weight_bytes(a) == detail::weight_bytes(b));
    CHECK(!std::filesystem::exists(name + ".checkpoint"));
  }

  // Resuming with other callbacks, or other settings, is refused by name.
  Run part(data, dir / "other");
  part.fit(data, dir / "other", false, long(steps + 1));
  tnet::interrupted = false;
  Batches batches(data);
  Net net(Outputs{2}, 5);
  Adam adam(Adam::Options{.lr = 0.01, .decay = 0.001});
  ReduceLROnPlateau plateau;
  FitOptions o{.epochs = 6,
               .checkpoint = dir / "other.checkpoint",
               .resume = true,
               .settings = "test",
               .class_names = data.labels.classes(),
               .out = nullptr};
  CHECK(test::error_of([&] { fit(net, batches.train, batches.val, adam, o, {&plateau}); }) ==
        dir / "other.checkpoint" + " holds no state for callback 1, ReduceLROnPlateau(val_loss): resume with the callbacks the run had");
  o.settings = "changed";
  CHECK(test::error_of([&] { fit(net, batches.train, batches.val, adam, o, {}); }) ==
        dir / "other.checkpoint" + " was made with test; resume with the same options and split");
}
