"""The Keras multi-label fashion tutorial (PyImageSearch, 2018) run on tnet's split of the photos.

    python train_keras.py --dataset DIR --train-list F --val-list F --out OUT
                          [--seed 1] [--threads 2] [--epochs 75] [--resume] [--examples DIR]

The tutorial's train.py as its author ran it, on the Keras 2 API (tf-keras): SmallerVGGNet (Conv ->
ReLU -> BatchNorm blocks, max pools, dropouts, Dense 1024, sigmoid), the photos read with OpenCV
(BGR), resized to 96x96 and divided by 255 (as float64, as the tutorial held them), labels from the
folder name binarized as scikit-learn's MultiLabelBinarizer does (classes sorted), ImageDataGenerator
with the tutorial's arguments, Adam 1e-3 with the legacy optimizer's decay lr / epochs, batch 32,
binary cross-entropy, steps per epoch = len(train) // 32. What differs from the tutorial: the
images are the ones fashion_train's split files list (MODEL.train.txt, MODEL.val.txt: paths
relative to --dataset, one a line) rather than its own 80/20 split, so both systems train and
validate on the same photos; the random sources are seeded (--seed) and drawn so that a run can be
continued (below); the metric is BinaryAccuracy by name, which the tutorial's "accuracy" meant in
its Keras (2.1-2.2) and no longer means in tf-keras (categorical accuracy for a 6-wide output).

OUT receives:
  history.csv   one row per epoch in tnet's columns (include/tnet/train/callbacks.hpp): Keras's
                loss, acc (binary accuracy), val_loss, val_acc; the validation's exact match,
                macro and micro F1 (at 0.5) and mAP computed as include/tnet/train/metrics.hpp
                defines them; lr (the rate the next step uses); seconds (training and Keras's
                validation pass, as tnet's column; the extra pass for the metrics above and the
                checkpoint are not counted)
  train.log     everything printed, appended to by every session of the run
  model.h5      the trained model (the tutorial saved HDF5), with its optimizer state
  labels.txt    the classes, as a tnet label file (fashion_classify --labelbin)
  examples.txt, examples.json
                each --examples photo's probabilities and top two labels, read and preprocessed as
                the tutorial's classify.py did
  keras.onnx    the model converted by tf2onnx (opset 17, NHWC input), input in BGR as trained
  keras_rgb.onnx  the same with the first convolution's input channels reversed: it takes RGB
                (as tnet's fashion_classify feeds every model) and computes what model.h5 computes
                on the same pixels in BGR
  run.json      the run's summary (versions, settings, peak memory, last epoch's figures); written
                last, so its presence means the run is complete
  checkpoint.pkl  while the run is unfinished: written at every epoch end (temporary file, then
                rename): the weights, the optimizer's state (its step count, so the decay goes on),
                the history, the sessions' peak memory, the Python, NumPy and TensorFlow random
                states, the dropout layers' generator states and the augmentation's batch count.
                --resume continues from it; a run without --resume refuses to start over it.
                Removed once the run is complete.

Resuming: a run interrupted (Ctrl-C, kill -TERM, a crash, the machine going away) continues from
the last completed epoch with --resume and the same options; the epoch in progress is redone. The
batches (order and augmentation) and the dropout masks continue exactly as in an uninterrupted run:
the augmentation reseeds NumPy per batch from --seed and the batch count (ImageDataGenerator.flow's
seed; exact when the training set is a whole number of batches, as tnet's split of the 2160 photos
is, 1728: otherwise tf.data may or may not fetch the sequence's last, partial batch, which
steps_per_epoch leaves out, and the count moves with it), the dropout layers draw from
tf.random.Generator objects whose states are saved
(tf_keras.backend.experimental.enable_tf_random_generator; the tutorial's Keras used TF's stateful
dropout op, same distribution). Whether a resumed run is then bit-identical to an uninterrupted
one depends on TensorFlow's CPU kernels summing in the same order in both processes, which
TensorFlow does not promise without op determinism (not enabled here: the system is timed as a
user runs it); benchmarks/keras/README.md says what was observed.

Threads: --threads sets TensorFlow's intra-op pool, the inter-op pool is 1. The augmentation runs
in Python in tf.data's generator thread, alongside.
"""
import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import pickle
import random
import resource
import signal
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf.keras is tf-keras, Keras 2
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # the CPU, as tnet runs

CHECKPOINT_FORMAT = "tnet benchmarks/keras checkpoint v1"
BATCH_SIZE = 32
INIT_LR = 1e-3
IMAGE_DIMS = (96, 96, 3)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True, help="the folder the split files' paths are relative to")
    ap.add_argument("--train-list", required=True, help="fashion_train's MODEL.train.txt")
    ap.add_argument("--val-list", required=True, help="fashion_train's MODEL.val.txt")
    ap.add_argument("--out", required=True, help="folder for the results (made if missing)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="TensorFlow's intra-op threads (inter-op: 1)")
    ap.add_argument("--epochs", type=int, default=75)
    ap.add_argument("--examples", default="", help="a folder of photos to classify at the end (the tutorial's examples/)")
    ap.add_argument("--resume", action="store_true", help="continue the run in OUT/checkpoint.pkl")
    args = ap.parse_args(argv)
    if args.epochs < 1:
        ap.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    if args.seed < 0 or args.seed >= 2**31:
        ap.error(f"--seed must be in [0, 2^31), got {args.seed}")
    for option, path in (("--train-list", args.train_list), ("--val-list", args.val_list)):
        if not os.path.isfile(path):
            ap.error(f"{option} {path}: no such file")
    if not os.path.isdir(args.dataset):
        ap.error(f"--dataset {args.dataset}: no such folder")
    if args.examples and not os.path.isdir(args.examples):
        ap.error(f"--examples {args.examples}: no such folder")
    return args


class Tee:
    """Writes to the terminal and, line-buffered, to the log file."""

    def __init__(self, stream, log):
        self.stream, self.log = stream, log

    def write(self, text):
        self.stream.write(text)
        self.log.write(text)
        return len(text)

    def flush(self):
        self.stream.flush()
        self.log.flush()

    def isatty(self):
        return False

    def fileno(self):
        return self.stream.fileno()


def write_atomic(path, data):
    """Writes bytes or text to path through a temporary file in the same folder, fsynced, then renamed."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def fail(message):
    """A refusal: the message on stderr, exit status 2, nothing written."""
    print(f"train_keras.py: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def read_list(path):
    """The paths of a split file (fashion_train's write_split_list): one a line; '#' comments and blank lines skipped."""
    with open(path, encoding="utf-8-sig") as f:
        lines = [line.rstrip("\r\n") for line in f]
    paths = [line for line in lines if line and not line.startswith("#")]
    if not paths:
        fail(f"{path}: the image list is empty")
    return paths


def load_images(dataset, relative_paths, cv2, np):
    """The tutorial's loading: cv2.imread (BGR), resize to 96x96, labels from the folder name split at '_'."""
    data, labels = [], []
    for rel in relative_paths:
        path = os.path.join(dataset, rel)
        image = cv2.imread(path)
        if image is None:
            fail(f"{path}: OpenCV cannot read this image")
        image = cv2.resize(image, (IMAGE_DIMS[1], IMAGE_DIMS[0]))
        data.append(image.astype("float32"))  # img_to_array
        labels.append(os.path.basename(os.path.dirname(path)).split("_"))
    # The tutorial scaled into float64: np.array(data, dtype="float") / 255.0.
    return np.array(data, dtype="float") / 255.0, labels


def binarize(label_lists, classes, np):
    """MultiLabelBinarizer.transform: one 0/1 column per class, classes in sorted order."""
    return np.array([[int(c in labels) for c in classes] for labels in label_lists])


def smaller_vgg(keras, width, height, depth, classes, final_act):
    """SmallerVGGNet as the tutorial builds it, channels last."""
    layers = keras.layers
    model = keras.models.Sequential()
    input_shape, chan_dim = (height, width, depth), -1
    if keras.backend.image_data_format() == "channels_first":
        input_shape, chan_dim = (depth, height, width), 1

    def conv(filters, **kw):
        model.add(layers.Conv2D(filters, (3, 3), padding="same", **kw))
        model.add(layers.Activation("relu"))
        model.add(layers.BatchNormalization(axis=chan_dim))

    conv(32, input_shape=input_shape)  # CONV => RELU => POOL
    model.add(layers.MaxPooling2D(pool_size=(3, 3)))
    model.add(layers.Dropout(0.25))
    conv(64)  # (CONV => RELU) * 2 => POOL
    conv(64)
    model.add(layers.MaxPooling2D(pool_size=(2, 2)))
    model.add(layers.Dropout(0.25))
    conv(128)  # (CONV => RELU) * 2 => POOL
    conv(128)
    model.add(layers.MaxPooling2D(pool_size=(2, 2)))
    model.add(layers.Dropout(0.25))
    model.add(layers.Flatten())  # FC => RELU
    model.add(layers.Dense(1024))
    model.add(layers.Activation("relu"))
    model.add(layers.BatchNormalization())
    model.add(layers.Dropout(0.5))
    model.add(layers.Dense(classes))
    model.add(layers.Activation(final_act))
    return model


# The validation metrics as include/tnet/train/metrics.hpp defines them (a label is predicted when
# p > 0.5; a ratio with nothing to count is 0; mAP is scikit-learn's average precision averaged
# over the labels with positives, tied scores forming one threshold).
def average_precision(scores, positive, np):
    positives = float(positive.sum())
    if positives == 0:
        return float("nan")
    ranked = np.where(np.isnan(scores), -np.inf, scores)
    order = np.argsort(-ranked, kind="stable")
    tp = fp = recall = ap = 0.0
    for i, k in enumerate(order):
        if positive[k]:
            tp += 1
        else:
            fp += 1
        if i + 1 < len(order) and ranked[order[i + 1]] == ranked[k]:
            continue
        r = tp / positives
        ap += (r - recall) * (tp / (tp + fp))
        recall = r
    return ap


def multilabel_metrics(probabilities, targets, np):
    predicted = probabilities > 0.5
    actual = targets > 0.5
    acc = float((predicted == actual).mean())
    exact = float((predicted == actual).all(axis=1).mean())
    tp = (predicted & actual).sum(axis=0).astype(float)
    fp = (predicted & ~actual).sum(axis=0).astype(float)
    fn = (~predicted & actual).sum(axis=0).astype(float)
    f1s = []
    for t, p, n in zip(tp, fp, fn):
        precision = t / (t + p) if t + p > 0 else 0.0
        recall = t / (t + n) if t + n > 0 else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0)
    wrong = fp.sum() + fn.sum()
    micro = 2 * tp.sum() / (2 * tp.sum() + wrong) if tp.sum() + wrong > 0 else 0.0
    aps = [average_precision(probabilities[:, l], actual[:, l], np) for l in range(targets.shape[1]) if actual[:, l].any()]
    return {"acc": acc, "exact": exact, "macro_f1": float(np.mean(f1s)), "micro_f1": float(micro),
            "map": float(np.mean(aps)) if aps else float("nan")}


COLUMNS = ["epoch", "loss", "acc", "val_loss", "val_acc", "val_exact_match", "lr", "seconds", "val_macro_f1", "val_micro_f1", "val_map"]


def history_csv(rows):
    def number(v):
        return str(v) if isinstance(v, int) else f"{v:.10g}"

    return ",".join(COLUMNS) + "\n" + "".join(",".join(number(r[c]) for c in COLUMNS) + "\n" for r in rows)


def file_digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def stop_on_term(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def main(argv):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    out = lambda name: os.path.join(args.out, name)
    # One process per folder: a second one waits for nothing, it stops.
    lock = open(out(".lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fail(f"another train_keras.py is running in {args.out} (it holds {out('.lock')})")
    for name in os.listdir(args.out):  # temporary files of a session that was killed while writing
        if ".tmp." in name:
            os.remove(out(name))
    if os.path.exists(out("run.json")):
        if os.path.exists(out("checkpoint.pkl")):  # killed between writing run.json and removing it
            os.remove(out("checkpoint.pkl"))
        fail(f"{args.out} holds a complete run (run.json): give another --out, or remove it to run again")
    if os.path.exists(out("checkpoint.pkl")) and not args.resume:
        fail(f"{out('checkpoint.pkl')} holds a run that did not finish: continue it with --resume "
                 "(and the same options), or remove it to start afresh")
    if args.resume and not os.path.exists(out("checkpoint.pkl")):
        fail(f"--resume: no checkpoint {out('checkpoint.pkl')} to continue from")

    log = open(out("train.log"), "a", buffering=1)
    sys.stdout, sys.stderr = Tee(sys.__stdout__, log), Tee(sys.__stderr__, log)
    # Ctrl-C and kill -INT stop the run between steps, the last checkpoint kept, and kill -TERM
    # likewise; SIGINT's handler is set even where it came ignored (a job started with & by a
    # shell without job control), so that kill -INT always works.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop_on_term)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import cv2
    import numpy as np
    import scipy
    import tensorflow as tf
    import tf_keras as keras

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.backend.experimental.enable_tf_random_generator()
    keras.utils.set_random_seed(args.seed)
    versions = {"python": sys.version.split()[0], "tensorflow": tf.__version__, "tf_keras": keras.__version__,
                "numpy": np.__version__, "opencv": cv2.__version__, "scipy": scipy.__version__}
    print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] train_keras.py {' '.join(argv)}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))

    settings = {"dataset": os.path.abspath(args.dataset), "train_list": file_digest(args.train_list),
                "val_list": file_digest(args.val_list), "seed": args.seed, "epochs": args.epochs}
    state = None
    if args.resume:
        with open(out("checkpoint.pkl"), "rb") as f:
            state = pickle.load(f)
        if state.get("format") != CHECKPOINT_FORMAT:
            fail(f"{out('checkpoint.pkl')}: not a checkpoint of this script")
        differ = [k for k in settings if state["settings"].get(k) != settings[k]]
        if differ:
            fail(f"--resume: {out('checkpoint.pkl')} was made with other " + ", ".join(differ) +
                     " (" + ", ".join(f"{k} {state['settings'].get(k)!r}" for k in differ) + "): resume with the same options")

    # The data, as the tutorial prepared it, on fashion_train's split.
    print("[INFO] loading images...")
    start = time.time()
    train_paths, val_paths = read_list(args.train_list), read_list(args.val_list)
    trainX, train_labels = load_images(args.dataset, train_paths, cv2, np)
    testX, test_labels = load_images(args.dataset, val_paths, cv2, np)
    classes = sorted({l for labels in train_labels + test_labels for l in labels})  # mlb.fit on every image
    trainY, testY = binarize(train_labels, classes, np), binarize(test_labels, classes, np)
    print(f"[INFO] data matrix: {len(trainX) + len(testX)} images ({(trainX.nbytes + testX.nbytes) / (1024 * 1000.0):.2f}MB) "
          f"in {time.time() - start:.1f} s; training on {len(trainX)}, validating on {len(testX)}")
    print("[INFO] class labels: " + " ".join(f"{i + 1}. {c}" for i, c in enumerate(classes)))
    write_atomic(out("labels.txt"), "# tnet MultiLabelBinarizer v1\n" + "".join(c + "\n" for c in classes))

    aug = keras.preprocessing.image.ImageDataGenerator(rotation_range=25, width_shift_range=0.1, height_shift_range=0.1,
                                                       shear_range=0.2, zoom_range=0.2, horizontal_flip=True,
                                                       fill_mode="nearest")
    print("[INFO] compiling model...")
    model = smaller_vgg(keras, IMAGE_DIMS[1], IMAGE_DIMS[0], IMAGE_DIMS[2], len(classes), "sigmoid")
    opt = keras.optimizers.legacy.Adam(learning_rate=INIT_LR, decay=INIT_LR / args.epochs)
    # The tutorial's metrics=["accuracy"] was binary accuracy in its Keras (2.1-2.2 chose it for
    # binary cross-entropy); tf-keras picks categorical accuracy for a 6-wide output, so the
    # binary one is named, under the tutorial's log name.
    model.compile(loss="binary_crossentropy", optimizer=opt, metrics=[keras.metrics.BinaryAccuracy(name="acc")])
    steps = len(trainX) // BATCH_SIZE
    if steps < 1:
        fail(f"{args.train_list}: {len(trainX)} images, fewer than one batch of {BATCH_SIZE}")
    flow = aug.flow(trainX, trainY, batch_size=BATCH_SIZE, seed=args.seed)
    if len(trainX) % BATCH_SIZE:
        print(f"[WARNING] {len(trainX)} training images are not a whole number of batches: the augmentation's draws "
              "may differ from run to run and after a resume (see the header)")
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]

    history, sessions, first_epoch = [], [], 0
    saved = {"epoch": 0}  # the epoch the checkpoint on disk holds
    if state is not None:
        model.set_weights(state["weights"])
        opt._create_all_weights(model.trainable_variables)
        opt.set_weights(state["optimizer"])
        for layer, s in zip(dropouts, state["dropout_states"]):
            layer._random_generator._generator.state.assign(s)
        tf.random.get_global_generator().reset(state["tf_global"])
        history, sessions, first_epoch = state["history"], state["sessions"], state["epoch"]
        saved["epoch"] = first_epoch
        # As the uninterrupted run at this epoch's end: the sequence reshuffles with NumPy's state
        # as it was; fit's first look at batch 0 counts one batch, so the count is set one short.
        np.random.set_state(state["np_random"])
        flow.on_epoch_end()
        flow.total_batches_seen = state["total_batches_seen"] - 1
        print(f"[INFO] resuming after epoch {first_epoch} of {args.epochs} from {out('checkpoint.pkl')}")
    sessions.append({"first_epoch": first_epoch + 1, "last_epoch": first_epoch, "peak_mb": 0.0,
                     "started": time.strftime("%Y-%m-%d %H:%M:%S")})

    def save_checkpoint(epoch, flow_batches):
        state = {"format": CHECKPOINT_FORMAT, "settings": settings, "epoch": epoch, "weights": model.get_weights(),
                 "optimizer": opt.get_weights(), "dropout_states": [l._random_generator._generator.state.numpy() for l in dropouts],
                 "tf_global": tf.random.get_global_generator().state.numpy(), "np_random": np.random.get_state(),
                 "py_random": random.getstate(), "total_batches_seen": flow_batches, "history": history,
                 "sessions": sessions}
        write_atomic(out("checkpoint.pkl"), pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        saved["epoch"] = epoch

    class Progress(keras.callbacks.Callback):
        """Times each epoch, adds tnet's validation figures, writes history.csv and the checkpoint."""

        def on_train_begin(self, logs=None):
            # Python's random shuffles the batch order when fit starts each epoch's pass (after
            # this point): restored here, as late as possible.
            if state is not None:
                random.setstate(state["py_random"])

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self.start  # training and Keras's validation
            probabilities = self.model.predict(testX, batch_size=BATCH_SIZE, verbose=0)
            m = multilabel_metrics(probabilities, testY, np)
            lr = float(opt._decayed_lr(tf.float32).numpy())  # what the next step uses: lr / (1 + decay * steps)
            history.append({"epoch": epoch + 1, "loss": float(logs["loss"]), "acc": float(logs["acc"]),
                            "val_loss": float(logs["val_loss"]), "val_acc": float(logs["val_acc"]),
                            "val_exact_match": m["exact"], "lr": lr, "seconds": seconds, "val_macro_f1": m["macro_f1"],
                            "val_micro_f1": m["micro_f1"], "val_map": m["map"]})
            sessions[-1]["last_epoch"] = epoch + 1
            sessions[-1]["peak_mb"] = peak_mb()
            write_atomic(out("history.csv"), history_csv(history))
            # The sequence's count now, before fit's reshuffle for the next epoch.
            save_checkpoint(epoch + 1, flow.total_batches_seen)
            print(f"epoch {epoch + 1}/{args.epochs}: {seconds:.1f} s ({steps * BATCH_SIZE / seconds:.1f} img/s with validation) - "
                  f"val_acc {m['acc']:.4f} (Keras {float(logs['val_acc']):.4f}) - val_exact_match {m['exact']:.4f} - "
                  f"val_macro_f1 {m['macro_f1']:.4f} - val_map {m['map']:.4f} - peak {sessions[-1]['peak_mb']:.0f} MB", flush=True)

    try:
        if first_epoch < args.epochs:
            print(f"[INFO] training network... ({steps} steps of {BATCH_SIZE} per epoch, {args.threads} intra-op threads)")
            model.fit(flow, validation_data=(testX, testY), steps_per_epoch=steps, epochs=args.epochs, initial_epoch=first_epoch,
                      verbose=2, callbacks=[Progress()])
        finish(args, out, model, classes, history, sessions, versions, settings, steps, keras, tf, cv2, np)
    except KeyboardInterrupt as e:
        done = saved["epoch"]
        where = (f"{out('checkpoint.pkl')} holds epoch {done}: run the same command with --resume to continue" if done
                 else "no epoch was complete: run the same command again to start")
        print(f"\ntrain_keras.py: interrupted ({str(e) or 'SIGINT'}); {where}", flush=True)
        return 143 if str(e) == "SIGTERM" else 130
    return 0


def classify_examples(model, classes, folder, cv2, np):
    """The tutorial's classify.py for each photo: cv2.imread, resize to 96x96, float / 255, predict; the top two labels."""
    results = {}
    for name in sorted(os.listdir(folder)):
        image = cv2.imread(os.path.join(folder, name))
        if image is None:
            continue
        image = cv2.resize(image, (96, 96)).astype("float") / 255.0
        proba = model.predict(np.expand_dims(image.astype("float32"), axis=0), verbose=0)[0]
        top = [classes[j] for j in np.argsort(proba)[::-1][:2]]
        results[name] = {"probabilities": {c: float(p) for c, p in zip(classes, proba)}, "top": top}
    return results


def to_onnx(keras, tf, model, path):
    import onnx
    import tf2onnx

    spec = (tf.TensorSpec((None,) + IMAGE_DIMS, tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    tmp = f"{path}.tmp.{os.getpid()}"
    onnx.save(proto, tmp)
    os.replace(tmp, path)
    return tf2onnx.__version__


def finish(args, out, model, classes, history, sessions, versions, settings, steps, keras, tf, cv2, np):
    """After the last epoch: the model, the examples, the ONNX files, then run.json; the checkpoint goes."""
    print("[INFO] serializing network...")
    tmp = out(f"model.tmp.{os.getpid()}.h5")
    model.save(tmp)
    os.replace(tmp, out("model.h5"))
    examples = {}
    if args.examples:
        examples = classify_examples(model, classes, args.examples, cv2, np)
        write_atomic(out("examples.json"), json.dumps(examples, indent=1) + "\n")
        text = ""
        for name, r in examples.items():
            text += f"{name}: {r['top'][0]} {100 * r['probabilities'][r['top'][0]]:.2f}%, " \
                    f"{r['top'][1]} {100 * r['probabilities'][r['top'][1]]:.2f}%\n"
            text += "".join(f"  {c}: {100 * p:.2f}%\n" for c, p in r["probabilities"].items())
        write_atomic(out("examples.txt"), text)
        print(text, end="")
    print("[INFO] converting to ONNX (tf2onnx)...")
    versions["tf2onnx"] = to_onnx(keras, tf, model, out("keras.onnx"))
    # tnet feeds RGB: the same network with the first convolution's input channels reversed
    # computes on RGB pixels what the trained one computes on the same pixels in BGR.
    rgb = keras.models.clone_model(model)
    rgb.set_weights(model.get_weights())
    first = rgb.layers[0]
    kernel, bias = first.get_weights()
    first.set_weights([kernel[:, :, ::-1, :], bias])
    to_onnx(keras, tf, rgb, out("keras_rgb.onnx"))
    last = history[-1] if history else {}
    summary = {"system": "keras", "versions": versions, "settings": settings, "threads": args.threads,
               "batch_size": BATCH_SIZE, "steps_per_epoch": steps,
               "epochs": len(history), "train_seconds": sum(r["seconds"] for r in history),
               "peak_mb": max(s["peak_mb"] for s in sessions), "peak_mb_with_export": peak_mb(), "sessions": sessions,
               "final": {k: last.get(k) for k in ("val_loss", "val_acc", "val_exact_match", "val_macro_f1", "val_map")},
               "examples": examples}
    write_atomic(out("run.json"), json.dumps(summary, indent=1) + "\n")
    os.remove(out("checkpoint.pkl"))
    print(f"[INFO] done: {len(history)} epochs in {summary['train_seconds']:.1f} s; peak memory {summary['peak_mb']:.0f} MB "
          f"during training; results in {args.out}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
