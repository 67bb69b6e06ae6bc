// fashion_train: the Keras multi-label tutorial's train.py, in C++ with tnet.
//   fashion_train --dataset DIR --model fashion.tnet --labelbin labels.txt --plot plot.png
// Without --dataset it trains on a built-in synthetic set of drawn garments. See --help.
#include <functional>
#include <iostream>
#include <optional>
#include <thread>

#include "model_files.hpp"
#include "models.hpp"
#include "synthetic.hpp"
#include "train_impl.hpp"
#ifdef TNET_WITH_MPI
#include <tnet/dist/mpi.hpp>
#endif

namespace {

const char* usage = R"(usage: fashion_train [options]

Trains a network to name the colour and the garment in photos, as the Keras tutorial does.

  --dataset DIR        folder of class folders named colour_garment (red_dress/, blue_jeans/, ...);
                       without it (and --list), a built-in synthetic set of drawn garments is used
  --list FILE          the photos FILE lists instead, one `path,label1|label2|...` a line (paths
                       relative to FILE's folder; a first line `path,labels` is a header)
  --model FILE         trained model (weights, statistics, optimizer state, classes) [fashion.tnet]
  --labelbin FILE      class names, one per line [labels.txt]
  --plot FILE          training curves, PNG [plot.png]
  --history FILE       per-epoch figures, CSV [history.csv]
  --epochs N           [75]            --batch-size N       [32]
  --lr X               Adam's learning rate, decayed by lr/epochs per step [0.001]
  --seed N             shuffling, split, augmentation, initial weights [42]
  --threads N          1 to the machine's hardware threads [all cores, or OMP_NUM_THREADS]
  --arch NAME          the network: smallervgg (the tutorial's SmallerVGGNet), resnet18 or
                       mobilenetv2 (ResNet18 and MobileNetV2, as torchvision has them) [smallervgg]
  --image-size N       the photos' size, one the network is compiled for (below) [96]
  --val-split X        fraction kept for validation, in (0, 1) [0.2]
  --val-list FILE      validate on the images FILE lists (paths relative to --dataset, or to
                       --list's folder, one a line) and train on the others, instead of a split
                       drawn with --seed
  --train-list FILE    with --val-list: train on the images FILE lists only
                       (every run writes its split beside the model as MODEL.train.txt and
                       MODEL.val.txt, in this form: give them back to train on the same images)
  --no-augment         train without the tutorial's random rotations, shifts, zoom and flips
  --no-recalibrate-bn  keep Keras's moving batch-norm averages in the final model instead of
                       re-estimating them for the final weights over the training set (and so
                       the last weights: see --average-epochs)
  --average-epochs N   the final model's weights are the mean of the weights at the ends of
                       the last N epochs (stochastic weight averaging; needs the batch-norm
                       re-estimation) [a quarter of --epochs, or 0 with --no-recalibrate-bn]
  --early-stopping N   stop when the validation loss has not improved for N epochs, and keep
                       the weights of the best epoch (no weight averaging then) [off]
  --early-stopping-min-delta X
                       the least fall of the validation loss that counts as an improvement
                       for --early-stopping, as Keras's min_delta [0]
  --reduce-lr N        multiply the learning rate by --reduce-lr-factor when the validation loss
                       has not improved for N epochs [off]
  --reduce-lr-factor X [0.1]
  --tune-thresholds    after training, choose each label's decision threshold (the one of best F1)
                       on the validation images and store them in the model, where
                       fashion_classify uses them [off: 0.5 for every label]
  --weight-decay X     train with AdamW, decoupled weight decay X (e.g. 0.01) [0: Adam]
  --clip-norm X        scale each step's gradient down to a global norm of at most X [off]
  --schedule NAME      the learning rate: keras (decayed by lr/epochs per step), constant,
                       cosine (to 0, after --warmup-epochs of linear warm-up), one-cycle, or
                       step (x0.1 every --step-epochs epochs) [keras; constant with --weight-decay]
  --warmup-epochs N    with --schedule cosine [0]
  --step-epochs N      with --schedule step [a third of --epochs]
  --pos-weight auto    weigh each label's positive term of the binary cross-entropy by its
                       negatives / positives in the training set (for rare labels) [off]
  --focal-gamma G      train with the sigmoid focal loss (gamma G >= 0, alpha 0.25) [off]
  --init-from MODEL    start from the weights of MODEL, a model (.tnet, a checkpoint too) or an ONNX
                       file (.onnx) of the same --arch and --image-size: every layer is loaded but
                       the label layer, re-initialised unless MODEL learned the same labels; a
                       layer of another shape before it is refused, named (a resumed run takes its
                       weights from the checkpoint instead)
  --freeze-until LAYER freeze the layers before LAYER: their weights and batch-norm statistics stay
                       as they are while LAYER and the layers after it train. LAYER is an index, a
                       name (21.flatten: index and kind, as summaries and tensor names have it),
                       a kind that one layer alone has (flatten), or head (the label layer); an
                       unknown one lists them. SmallerVGGNet: flatten freezes its convolutions, head
                       all but the label layer. The checkpoint keeps it: --resume without it
                       re-applies it, with another is refused
  --backbone-lr-multiplier X
                       train the layers before --freeze-until's at X times the learning rate
                       (X >= 0; 0.1, say) instead of freezing them
  --keep-best FILE     save the model of the lowest validation loss so far to FILE at the end of
                       every epoch that lowers it
  --resume             continue from FILE.checkpoint (written at every epoch's end and on Ctrl-C,
                       a plain kill or a closed terminal)
  --overwrite          start afresh although FILE.checkpoint holds a run that did not finish,
                       discarding that checkpoint and its averaged weights (without --resume or
                       --overwrite, such a run refuses to start)
  --cache DIR          for datasets larger than memory: decode the photos once into an image cache
                       in DIR (rebuilt when photos change), read from it as batches need
                       it, and prepare each batch while the one before trains; memory then stays
                       bounded however many photos there are
  --synthetic-count N  pictures per class in the synthetic set [100]
  --interrupt-after-steps N
                       act as if Ctrl-C came after N training steps, counting on into the
                       final passes' batches (to test --resume)
  --help

Several processes (built with -DTNET_MPI=ON): `mpirun -np N fashion_train ...` trains one model,
each process on its slice of every batch (--batch-size stays the global batch); process 0 prints
and writes the files. --threads is per process [the machine's cores shared among its processes].
mpirun turns Ctrl-C into SIGTERM and kills 1 s later: give it --mca odls_base_sigkill_timeout 60
for the checkpoint to be written, or send it SIGUSR1 (kill -USR1 PID), which it passes on.
  --mpi-timeout S      a process that makes no progress for S seconds in training (stopped,
                       hung) ends the run: a message names it, and every process exits with
                       status 1 (MPI_Abort) [300]
)";

// Thrown where another process of the group could not go on (it says why).
struct StoppedElsewhere {};

// Several processes' agreement on whether to go on: agree(this one failed) returns whether any
// did. Empty for one process.
using Agreement = std::function<bool(bool)>;

// Reads the options and the data; returns an exit status to stop with, or -1 to train.
int prepare(int argc, char** argv, fashion::TrainSettings& s, fashion::TrainData& data, int local_processes, const Agreement& agree) {
  using namespace fashion;
  const Arguments args(argc, argv,
                       {"--dataset",
                        "--model",
                        "--labelbin",
                        "--plot",
                        "--history",
                        "--epochs",
                        "--batch-size",
                        "--lr",
                        "--seed",
                        "--arch",
                        "--threads",
                        "--image-size",
                        "--val-split",
                        "--val-list",
                        "--train-list",
                        "--average-epochs",
                        "--synthetic-count",
                        "--interrupt-after-steps",
                        "--cache",
                        "--mpi-timeout",
                        "--early-stopping",
                        "--early-stopping-min-delta",
                        "--reduce-lr",
                        "--reduce-lr-factor",
                        "--keep-best",
                        "--weight-decay",
                        "--clip-norm",
                        "--schedule",
                        "--warmup-epochs",
                        "--step-epochs",
                        "--pos-weight",
                        "--focal-gamma",
                        "--list",
                        "--init-from",
                        "--freeze-until",
                        "--backbone-lr-multiplier"},
                       {"--no-augment", "--no-recalibrate-bn", "--resume", "--overwrite", "--tune-thresholds", "--help"});
  if (args.flag("--help")) {
    std::cout << usage << "\nCompiled for " << compiled_networks() << ".\n";
    return 0;
  }
  if (!args.positional().empty()) throw UsageError("unexpected argument '" + args.positional()[0] + "' (see --help)");
  const bool writer = !s.group || s.group->rank() == 0;
  s.dataset = args.text("--dataset", "");
  s.list = args.text("--list", "");
  if (!s.dataset.empty() && !s.list.empty()) throw UsageError("--dataset and --list both name the photos to train on: give one");
  s.model = args.text("--model", s.model);
  s.labelbin = args.text("--labelbin", s.labelbin);
  s.plot = args.text("--plot", s.plot);
  s.history = args.text("--history", s.history);
  s.epochs = int(args.integer("--epochs", s.epochs, 1, 100000));
  s.batch_size = int(args.integer("--batch-size", s.batch_size, 1, 4096));
  if (s.group && s.batch_size < s.group->size())
    throw UsageError("--batch-size " + std::to_string(s.batch_size) + " cannot be shared by " + std::to_string(s.group->size()) +
                     " processes: it is the global batch, and each process needs at least one sample");
  s.lr = args.number("--lr", s.lr, 0.0, 10.0, "a learning rate in (0, 10)");
  s.seed = std::uint64_t(args.integer("--seed", long(s.seed), 0, 1L << 62));
  s.architecture = parse_architecture("--arch", args.text("--arch", arch_option(s.architecture)));
  s.image_size = int(args.integer("--image-size", s.image_size, 1, 100000));
  if (!built(s.architecture)) throw UsageError("--arch " + std::string(arch_option(s.architecture)) + ": " + not_built(s.architecture));
  if (!compiled({s.architecture, s.image_size}))
    throw UsageError(
        "--image-size must be " + sizes_text(s.architecture) + " (the sizes fashion_train is compiled for" +
        (s.architecture == Architecture::smallervgg ? std::string() : std::string(" with --arch ") + arch_option(s.architecture)) +
        "), got " + std::to_string(s.image_size) +
        (listed({s.architecture, s.image_size})
             ? "; to compile it, configure with " + configure_with([&](Network n) { return n == Network{s.architecture, s.image_size}; })
             : ""));
  s.val_split = args.number("--val-split", s.val_split, 0.0, 1.0, "a fraction in (0, 1)");
  s.val_list = args.text("--val-list", "");
  s.train_list = args.text("--train-list", "");
  if (!s.train_list.empty() && s.val_list.empty()) throw UsageError("--train-list needs --val-list (the images to validate on)");
  if (!s.val_list.empty() && args.has("--val-split"))
    throw UsageError("--val-split and --val-list both choose the validation images: give one");
  s.augment = !args.flag("--no-augment");
  s.recalibrate_batch_norm = !args.flag("--no-recalibrate-bn");
  if (!args.has("--average-epochs")) s.average_epochs = s.recalibrate_batch_norm ? s.epochs / 4 : 0;
  else s.average_epochs = int(args.integer("--average-epochs", 0, 0, s.epochs));
  if (s.average_epochs > 0 && !s.recalibrate_batch_norm)
    throw UsageError(
        "--average-epochs needs batch-norm statistics estimated for the averaged weights: drop --no-recalibrate-bn "
        "or give --average-epochs 0");
  s.early_stopping = int(args.integer("--early-stopping", 0, 1, s.epochs));
  s.early_stopping_min_delta = args.number("--early-stopping-min-delta", 0.0, -1e-300, 1e30, "a loss difference of at least 0");
  if (args.has("--early-stopping-min-delta") && !s.early_stopping)
    throw UsageError("--early-stopping-min-delta needs --early-stopping (the epochs to wait)");
  s.reduce_lr = int(args.integer("--reduce-lr", 0, 1, s.epochs));
  s.reduce_lr_factor = args.number("--reduce-lr-factor", s.reduce_lr_factor, 0.0, 1.0, "a factor in (0, 1)");
  if (args.has("--reduce-lr-factor") && !s.reduce_lr) throw UsageError("--reduce-lr-factor needs --reduce-lr (the epochs to wait)");
  s.keep_best = args.text("--keep-best", "");
  s.tune_thresholds = args.flag("--tune-thresholds");
  s.weight_decay = args.number("--weight-decay", 0.0, -1e-300, 1.0, "a weight decay in [0, 1)");
  s.clip_norm = args.number("--clip-norm", 0.0, 0.0, 1e30, "a gradient norm above 0");
  s.schedule = args.text("--schedule", s.weight_decay > 0 ? "constant" : "keras");
  if (s.schedule != "keras" && s.schedule != "constant" && s.schedule != "cosine" && s.schedule != "one-cycle" && s.schedule != "step")
    throw UsageError("--schedule must be keras, constant, cosine, one-cycle or step, got '" + s.schedule + "'");
  if (s.schedule == "keras" && s.weight_decay > 0)
    throw UsageError(
        "--schedule keras is Adam's decay, which AdamW (--weight-decay) does not have: give --schedule constant, cosine, "
        "one-cycle or step");
  s.warmup_epochs = int(args.integer("--warmup-epochs", 0, 0, s.epochs - 1));
  if (args.has("--warmup-epochs") && s.schedule != "cosine") throw UsageError("--warmup-epochs needs --schedule cosine");
  s.step_epochs = int(args.integer("--step-epochs", 0, 1, s.epochs));
  if (args.has("--step-epochs") && s.schedule != "step") throw UsageError("--step-epochs needs --schedule step");
  if (args.has("--pos-weight")) {
    if (args.text("--pos-weight", "") != "auto")
      throw UsageError("--pos-weight takes auto (negatives / positives of each label in the training set), got '" +
                       args.text("--pos-weight", "") + "'");
    s.pos_weight_auto = true;
  }
  s.focal_gamma = args.number("--focal-gamma", -1.0, -1e-300, 100.0, "a focal loss gamma in [0, 100)");
  if (s.pos_weight_auto && s.focal_gamma >= 0)
    throw UsageError("--pos-weight and --focal-gamma choose two losses (weighted binary cross-entropy, focal loss): give one");
  s.init_from = args.text("--init-from", "");
  s.freeze_until = args.text("--freeze-until", "");
  s.backbone_lr_multiplier = args.number("--backbone-lr-multiplier", -1.0, -1e-300, 1e6, "a learning-rate multiplier >= 0");
  if (args.has("--backbone-lr-multiplier") && s.freeze_until.empty())
    throw UsageError("--backbone-lr-multiplier needs --freeze-until (the first layer that trains at the full rate)");
  s.resume = args.flag("--resume");
  s.mpi_timeout = args.number("--mpi-timeout", s.mpi_timeout, 0.0, 1e9, "a number of seconds above 0");
  s.overwrite = args.flag("--overwrite");
  if (s.resume && s.overwrite)
    throw UsageError("--resume continues the run in " + s.checkpoint() + " and --overwrite discards it: give one");
  s.interrupt_after_steps = args.integer("--interrupt-after-steps", 0, 0, 1L << 40);
  const std::string cache = args.text("--cache", "");
  if (!cache.empty() && !s.list.empty()) throw UsageError("--cache keeps decoded photos of a --dataset folder, not of a --list");
  if (!cache.empty() && s.dataset.empty()) throw UsageError("--cache keeps decoded photos of a --dataset; give the dataset too");
  s.prefetch = !cache.empty();
  const int per_class = int(args.integer("--synthetic-count", 100, 2, 100000));
  // More threads than the machine has only slow every step down.
  const long hardware = std::max(1L, long(std::thread::hardware_concurrency()));
  if (args.has("--threads")) tnet::set_num_threads(int(args.integer("--threads", 1, 1, hardware)));
  else if (local_processes > 1) tnet::set_num_threads(int(std::max(1L, std::min<long>(tnet::num_threads(), hardware / local_processes))));
  namespace fs = std::filesystem;
  // One held-out picture per class (another seed) of the synthetic set, for trying fashion_classify.
  const fs::path examples = fs::path(s.model).parent_path() / "synthetic_examples";
  auto example = [examples](const Garment& g) { return (examples / (g.colour + "_" + g.kind + ".png")).string(); };
  if (writer) {
    // Every file the run writes, and the files it reads, before any work.
    FileSet files;
    files.output("--model", s.model, "model");
    files.output("--model's checkpoint", s.checkpoint(), "checkpoint");
    for (int n = 1; n <= s.average_epochs; ++n) files.output("--model's averaged checkpoint", s.average_checkpoint(n), "checkpoint");
    files.output("--model's lock file", s.lock_file(), "lock file");
    files.output("--model's training list", s.split_list("train"), "training list");
    files.output("--model's validation list", s.split_list("val"), "validation list");
    files.output("--labelbin", s.labelbin, "label file");
    files.output("--plot", s.plot, "plot");
    files.output("--history", s.history, "history");
    if (!s.keep_best.empty()) files.output("--keep-best", s.keep_best, "model");
    if (s.synthetic() && fs::exists(fs::symlink_status(examples))) {
      if (!fs::is_directory(examples)) throw UsageError(examples.string() + ", where the synthetic set's examples go, is not a folder");
      for (const Garment& g : synthetic_classes) files.output("the synthetic example", example(g), "synthetic example");
    }
    if (!s.val_list.empty()) files.input("--val-list", s.val_list);
    if (!s.train_list.empty()) files.input("--train-list", s.train_list);
    if (!s.list.empty()) files.input("--list", s.list);
    if (!s.init_from.empty()) files.input("--init-from", s.init_from);
    files.check();
  }
  if (s.resume && !std::filesystem::exists(s.checkpoint()))
    throw UsageError("--resume: no checkpoint " + s.checkpoint() + " to continue from");
  if (s.resume) {
    // A checkpoint of another network: say which, before any work (one that cannot be read is
    // reported when it loads).
    std::optional<Network> held;
    try {
      held = model_network(s.checkpoint());
    } catch (const std::exception&) {
    }
    if (held && !(*held == Network{s.architecture, s.image_size}))
      throw UsageError("--resume: " + s.checkpoint() + " holds a " + arch_name(held->architecture) + " for " + std::to_string(held->size) +
                       "-pixel images: resume with --arch " + arch_option(held->architecture) + " --image-size " +
                       std::to_string(held->size));
  }
  if (!s.init_from.empty() && !s.resume && !is_onnx_path(s.init_from)) {
    // A model of another network: say which, before any work (as for --resume).
    std::optional<Network> held;
    try {
      held = model_network(s.init_from);
    } catch (const std::exception&) {
    }
    if (held && !(*held == Network{s.architecture, s.image_size}))
      throw UsageError("--init-from: " + s.init_from + " holds a " + arch_name(held->architecture) + " for " + std::to_string(held->size) +
                       "-pixel images: fine-tune it with --arch " + arch_option(held->architecture) + " --image-size " +
                       std::to_string(held->size));
  }
  // A fresh run would overwrite, then remove, the checkpoint of a run that did not finish.
  auto keep_unfinished_run = [&] {
    if (!s.resume && !s.overwrite && fs::exists(fs::symlink_status(s.checkpoint())))
      throw UsageError(s.checkpoint() +
                       " holds a run that did not finish: continue it with --resume (and the same options), or give --overwrite to "
                       "discard it and start afresh");
  };
  if (writer) keep_unfinished_run();

  if (s.synthetic()) {
    std::cout << "no --dataset: using the built-in synthetic set (" << per_class << " drawn garments per class)\n";
    data.images = synthetic_dataset(per_class, s.image_size, s.seed);
  } else {
    tnet::LoadReport report;
    const tnet::LoadOptions options{.size = s.image_size, .separator = '_', .limits = {}};
    try {
      if (!s.list.empty()) {
        data.images = tnet::load_image_list(s.list, options, &report);
      } else if (cache.empty()) {
        data.images = tnet::load_image_folder(s.dataset, options, &report);
      } else {
        // Process 0 builds the cache (or finds it current) before the others open it; Ctrl-C
        // stops the build cleanly (no temporary file left).
        std::string failure;
        bool interrupted = false;
        if (writer) {
          tnet::catch_interrupts();
          try {
            data.images = tnet::load_image_folder_cached(s.dataset, cache, options, &report, &std::cout, &tnet::interrupted);
          } catch (const tnet::Interrupted& e) {
            failure = e.what(), interrupted = true;
          } catch (const std::exception& e) {
            failure = e.what();
          }
          tnet::release_interrupts();
        }
        if (agree && agree(!failure.empty()) && failure.empty()) throw StoppedElsewhere{};
        if (interrupted) {
          std::cerr << "fashion_train: " << failure << "\n";
          return 130;
        }
        if (!failure.empty()) throw tnet::DatasetError(failure);
        if (!writer) data.images = tnet::load_image_folder_cached(s.dataset, cache, options, &report);
      }
    } catch (const tnet::DatasetError& e) {
      throw UsageError(e.what());
    } catch (const tnet::FileError& e) {  // the cache folder
      throw UsageError(e.what());
    }
    report.print(std::cout);
  }
  data.targets = data.labels.fit_transform(data.images.labels);
  const std::size_t labels = data.labels.classes().size();
  std::cout << data.images.count() << " images, " << labels << " classes:";
  for (const std::string& c : data.labels.classes()) std::cout << " " << c;
  std::cout << "; " << double(data.images.count() * data.images.image_bytes()) / 1e6 << " MB of pixels"
            << (data.images.cached() ? ", read from the image cache as batches need them" : "") << "\n";
  try {
    data.split = s.val_list.empty() ? tnet::train_test_split(data.images.count(), s.val_split, s.seed)
                                    : tnet::read_split(data.images, s.data_root(), s.val_list, s.train_list);
  } catch (const tnet::DatasetError& e) {
    throw UsageError(e.what());
  }
  std::cout << "training on " << data.split.train.size() << ", validating on " << data.split.test.size()
            << (s.val_list.empty() ? "" : " (the images " + s.val_list + " lists)") << "\n";
  if (writer) {
    // One process trains this model at a time; the checks above hold for the process that has
    // the lock.
    data.lock = FileLock(s.lock_file(), "another fashion_train is training " + s.model + " (it holds the lock " + s.lock_file() +
                                            "): wait for it to end, or give another --model");
    keep_unfinished_run();
    if (s.overwrite) {
      fs::remove(s.checkpoint());
      const fs::path model(s.model);
      const std::string averages = model.filename().string() + ".checkpoint-average-";
      std::error_code error;
      fs::directory_iterator entries(model.parent_path().empty() ? fs::path(".") : model.parent_path(), error);
      for (; !error && entries != fs::directory_iterator(); entries.increment(error))
        if (entries->path().filename().string().rfind(averages, 0) == 0) fs::remove(entries->path());
    }
    data.write_records = [&s, &data, examples, example] {
      if (s.synthetic()) {
        fs::create_directories(examples);
        for (int c = 0; c < int(synthetic_classes.size()); ++c) {
          tnet::Image picture{s.image_size, s.image_size, std::vector<std::uint8_t>(std::size_t(s.image_size) * s.image_size * 3)};
          draw_garment(c, s.seed + 1000, std::uint64_t(c), s.image_size, picture.pixels.data());
          tnet::write_png(example(synthetic_classes[std::size_t(c)]), picture);
        }
        std::cout << "wrote one held-out picture per class to " << examples.string() << "/\n";
      }
      // The split, by name, for another run or another framework to use the same images.
      tnet::write_split_list(s.split_list("train"), data.images, data.split.train, s.data_root());
      tnet::write_split_list(s.split_list("val"), data.images, data.split.test, s.data_root());
      std::cout << "split written to " << s.split_list("train") << " and " << s.split_list("val") << "\n";
    };
  }
  return -1;
}

int train(const fashion::TrainSettings& s, fashion::TrainData& data) {
  using namespace fashion;
  return with_network({s.architecture, s.image_size}, [&]<Network N>() { return train_network<N>(s, data); });
}

int run(int argc, char** argv) {
  fashion::TrainSettings s;
  fashion::TrainData data;
  const int status = prepare(argc, argv, s, data, 1, {});
  return status >= 0 ? status : train(s, data);
}

#ifdef TNET_WITH_MPI
// One of several processes started by mpirun. Each reads the options and the data; if any of them
// cannot, all stop there with its message (process 0's when it has one), so none is left waiting
// for the others. Every process meets the others in exactly one agreement that stops: the one
// after reading, or, with --cache, the one after process 0 has built the cache, which a process
// that failed earlier meets with its final one (the same collective). An error once training has
// begun ends every process (MPI_Abort). Once the data is read, a collective that makes no
// progress for --mpi-timeout seconds ends every process too (tnet::mpi::Group's watchdog); before,
// the others wait without limit while process 0 builds the image cache.
int run_in_group(int argc, char** argv) {
  tnet::mpi::Environment mpi(argc, argv);
  tnet::mpi::Group group;
  group.set_timeout(0);
  const int rank = group.rank();
  if (rank != 0) std::cout.rdbuf(nullptr);  // process 0 alone prints
  const std::string name = "fashion_train" + (rank == 0 ? std::string() : " (process " + std::to_string(rank) + ")");
  fashion::TrainSettings s;
  s.group = &group;
  fashion::TrainData data;
  int status = -1;
  std::string error;
  double stops[2] = {0, 0};  // processes that stop, and whether process 0 is among them
  bool stopped = false;      // an agreement said to stop
  const Agreement agree = [&](bool failed) {
    stops[0] = failed ? 1.0 : 0.0, stops[1] = rank == 0 && failed ? 1.0 : 0.0;
    group.sum(stops);
    return stopped = stops[0] > 0;
  };
  try {
    status = prepare(argc, argv, s, data, mpi.local_size(), agree);
  } catch (const StoppedElsewhere&) {
    status = 2;
  } catch (const fashion::UsageError& e) {
    status = 2, error = e.what();
  } catch (const std::exception& e) {
    status = 1, error = fashion::error_text(e);
  }
  group.set_timeout(s.mpi_timeout);
  if (!stopped) agree(status >= 0);
  if (stopped) {
    if (!error.empty() && (rank == 0 || stops[1] == 0)) std::cerr << name << ": " << error << "\n";
    return status >= 0 ? status : 2;
  }
  return fashion::guarded_main(name.c_str(), 1, [&] {
    try {
      return train(s, data);
    } catch (const std::exception& e) {
      std::cerr << name << ": " << fashion::error_text(e) << "\n";
      group.abort(dynamic_cast<const fashion::UsageError*>(&e) ? 2 : 1);
    }
  });
}
#endif

}  // namespace

int main(int argc, char** argv) {
#ifdef TNET_WITH_MPI
  if (tnet::mpi::launched()) return fashion::guarded_main("fashion_train", 1, [&] { return run_in_group(argc, argv); });
#endif
  return fashion::guarded_main("fashion_train", 1, [&] { return run(argc, argv); });
}
