#!/usr/bin/env bash
# fashion_train and fashion_classify as a user runs them: bad input, a short training on the
# synthetic set that must learn, the files it writes, classification, and resuming after an
# interruption, the split by name, a dataset of 44 labels, and the image cache (--cache). Usage:
#   fashion_cli.sh BIN_DIR IMAGE_CHECK MAKE_LABEL_DATASET SIZES
# SIZES: the sizes SmallerVGGNet is compiled for, as the programs name them ("64, 96 or 128");
# the build has 64 and 96 at least.
set -uo pipefail
bin=$1 image_check=$2 make_label_dataset=$3 sizes=$4
train="$bin/fashion_train" classify="$bin/fashion_classify"
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"

expect_error "missing dataset" 2 "dataset folder does not exist" -- "$train" --dataset "$work/no-such-folder" --epochs 1
mkdir -p "$work/err/empty"
expect_error "empty dataset" 2 "no image files" -- sh -c "mkdir -p empty && exec '$train' --dataset empty --epochs 1"
expect_error "--epochs 0" 2 "--epochs must be an integer from 1 to 100000, got '0'" -- "$train" --epochs 0
expect_error "--val-split 1.5" 2 "--val-split must be a fraction in (0, 1), got '1.5'" -- "$train" --val-split 1.5
expect_error "--lr nonsense" 2 "--lr must be a learning rate in (0, 10), got 'fast'" -- "$train" --lr fast
expect_error "--image-size 50" 2 "--image-size must be $sizes (the sizes fashion_train is compiled for), got 50" -- "$train" --image-size 50
# --help names the networks the build has (examples/fashion/networks.cmake).
if "$train" --help | grep -qF "Compiled for SmallerVGGNet at $sizes pixels"; then
  pass "--help names the compiled networks"
else
  fail "--help names the compiled networks: $("$train" --help | tail -n 2)"
fi
expect_error "unknown option" 2 "unknown option --epoch" -- "$train" --epoch 3
expect_error "unwritable model" 2 "cannot write model /no-such-dir/m.tnet: folder /no-such-dir does not exist" -- "$train" --model /no-such-dir/m.tnet
expect_error "resume without checkpoint" 2 "no checkpoint fashion.tnet.checkpoint" -- "$train" --resume
expect_error "--average-epochs beyond --epochs" 2 "--average-epochs must be an integer from 0 to 4, got '5'" -- \
  "$train" --epochs 4 --average-epochs 5
expect_error "--average-epochs without re-estimated batch norm" 2 "--average-epochs needs batch-norm statistics" -- \
  "$train" --average-epochs 2 --no-recalibrate-bn
expect_error "--threads beyond the machine's" 2 "--threads must be an integer from 1 to" -- "$train" --threads 100000
expect_error "--train-list alone" 2 "--train-list needs --val-list" -- "$train" --train-list some.txt
expect_error "--val-list and --val-split" 2 "--val-split and --val-list both choose" -- "$train" --val-list some.txt --val-split 0.3
printf 'synthetic/black_jeans/0\nsynthetic/black_jeans/no-such-photo\n' >"$work/bad-list.txt"
expect_error "a validation list naming an unknown photo" 2 "bad-list.txt:2: 'synthetic/black_jeans/no-such-photo' is not among the images" -- \
  "$train" --synthetic-count 10 --val-list "$work/bad-list.txt"

# A short training on the synthetic set must learn: validation binary accuracy >= 0.90 (0.67 is
# what predicting no label at all scores) and exact match >= 0.50 (1/6 by chance).
"$train" --epochs 4 --synthetic-count 100 --model m.tnet --labelbin labels.txt --plot plot.png --history history.csv >train.txt 2>&1
status=$?
cat train.txt
report=$(grep -E "^validation \(" train.txt)
binary=$(echo "$report" | sed -E 's/.*binary accuracy ([0-9.]+).*/\1/')
exact=$(echo "$report" | sed -E 's/.*exact match ([0-9.]+).*/\1/')
if [ $status = 0 ] && awk -v b="$binary" -v e="$exact" 'BEGIN { exit !(b >= 0.90 && e >= 0.50) }'; then
  pass "synthetic training learns (binary accuracy $binary, exact match $exact)"
else
  fail "synthetic training: status $status, binary accuracy '$binary', exact match '$exact'"
fi
[ "$(wc -l <history.csv)" = 5 ] && pass "history.csv has a header and one row per epoch" || fail "history.csv: $(cat history.csv)"
"$image_check" plot.png 800 560 && pass "plot.png is an 800x560 PNG, not blank" || fail "plot.png"
[ ! -e m.tnet.checkpoint ] && pass "the checkpoint is gone after a complete run" || fail "checkpoint left behind"
grep -q "^# tnet MultiLabelBinarizer v1" labels.txt && [ "$(tail -n +2 labels.txt | tr '\n' ' ')" = "black blue dress jeans red shirt " ] &&
  pass "labels.txt lists the six classes" || fail "labels.txt: $(cat labels.txt)"
# The split, by name: 480 training and 120 validation pictures, none in both, all 600 named.
if [ "$(wc -l <m.train.txt)" = 480 ] && [ "$(wc -l <m.val.txt)" = 120 ] && [ -z "$(sort m.train.txt m.val.txt | uniq -d)" ] &&
   [ "$(sort -u m.train.txt m.val.txt | wc -l)" = 600 ]; then
  pass "the split is written beside the model: m.train.txt (480) and m.val.txt (120)"
else
  fail "split lists: $(wc -l m.train.txt m.val.txt)"
fi
[ -z "$(ls | grep tnet-tmp)" ] && pass "no temporary file is left" || fail "temporary files left: $(ls | grep tnet-tmp)"

# Classification of held-out synthetic pictures written beside the model.
ls synthetic_examples/*.png >/dev/null 2>&1 && pass "synthetic example pictures written" || fail "no synthetic_examples/"
"$classify" --model m.tnet --labelbin labels.txt --image synthetic_examples/red_dress.png >classify.txt 2>&1
status=$?
cat classify.txt
top=$(grep "top 2:" classify.txt)
if [ $status = 0 ] && [ "$(grep -cE '^  (black|blue|dress|jeans|red|shirt): [0-9.]+%$' classify.txt)" = 6 ] &&
   echo "$top" | grep -q "red (" && echo "$top" | grep -q "dress ("; then
  pass "classify prints every label's probability and names red dress"
else
  fail "classify red_dress: status $status"
fi
"$image_check" red_dress_labeled.png 400 400 && pass "the labelled copy is a 400-pixel-wide PNG" || fail "red_dress_labeled.png"
"$classify" --model m.tnet --labelbin labels.txt --image synthetic_examples --json --output labelled >all.json 2>&1
[ $? = 0 ] && [ "$(grep -o '"probabilities"' all.json | wc -l)" = 6 ] && [ "$(ls labelled | wc -l)" = 6 ] &&
  pass "--json over a folder: six results, six labelled copies" || fail "--json: $(cat all.json)"
# The dense kernels read in bfloat16: the same labels present, each probability within 0.01.
"$classify" --model m.tnet --labelbin labels.txt --image synthetic_examples --json --precision bf16 --output labelled_bf16 >bf16.json 2>&1
status=$?
probabilities() { grep -oE '"[a-z]+": [0-9][0-9.e+-]*' "$1" | awk '{ print $2 }'; }
if [ $status = 0 ] && [ "$(grep -o '"present": [^]]*' all.json)" = "$(grep -o '"present": [^]]*' bf16.json)" ] &&
  paste <(probabilities all.json) <(probabilities bf16.json) |
  awk 'NF != 2 || $1 - $2 > 0.01 || $2 - $1 > 0.01 { bad = 1 } END { exit bad || NR != 36 }'; then
  pass "--precision bf16: the same labels present, every probability within 0.01"
else
  fail "--precision bf16: status $status, $(head -c 600 bf16.json)"
fi
expect_error "a bad --precision" 2 "--precision takes fp32 or bf16, got 'fp16'" -- "$classify" --model "$work/m.tnet" \
  --labelbin "$work/labels.txt" --precision fp16 --image "$work/synthetic_examples/red_dress.png"

echo "not a photo" >broken.jpg
expect_error "unreadable image" 1 "broken.jpg: not a JPEG, PNG, GIF or BMP image" -- "$classify" --model "$work/m.tnet" --labelbin "$work/labels.txt" --image "$work/broken.jpg"
printf '# tnet MultiLabelBinarizer v1\nblack\nblue\nred\n' >three.txt
expect_error "label file of another model" 2 "lists 3 classes, but" -- "$classify" --model "$work/m.tnet" --labelbin "$work/three.txt" --image "$work/synthetic_examples/red_dress.png"
expect_error "missing model" 2 "cannot open model file" -- "$classify" --model "$work/none.tnet" --labelbin "$work/labels.txt" --image "$work/synthetic_examples/red_dress.png"

# Interrupted after 4 steps, then resumed: the same model as an uninterrupted run, bit for bit
# (compared through classify's printed probabilities).
"$train" --epochs 2 --synthetic-count 20 --image-size 64 --model a.tnet --labelbin a.txt --plot a.png --history a.csv >/dev/null 2>&1
"$train" --epochs 2 --synthetic-count 20 --image-size 64 --model b.tnet --labelbin b.txt --plot b.png --history b.csv --interrupt-after-steps 4 >interrupted.txt 2>&1
status=$?
[ $status = 130 ] && [ -e b.tnet.checkpoint ] && [ ! -e b.tnet ] && grep -q "checkpoint saved" interrupted.txt &&
  pass "an interruption saves a checkpoint and exits 130" || fail "interruption: status $status, $(cat interrupted.txt)"
expect_error "resume with other options" 2 "resume with the same options" -- "$train" --epochs 3 --synthetic-count 20 --image-size 64 \
  --model "$work/b.tnet" --labelbin "$work/b.txt" --plot "$work/b.png" --history "$work/b.csv" --resume
"$train" --epochs 2 --synthetic-count 20 --image-size 64 --model b.tnet --labelbin b.txt --plot b.png --history b.csv --resume >resumed.txt 2>&1
grep -q "optimizer step 4" resumed.txt && pass "resumed at optimizer step 4" || fail "resume: $(cat resumed.txt)"
"$classify" --model a.tnet --labelbin a.txt --image synthetic_examples --json --output out_a >a.json 2>/dev/null
"$classify" --model b.tnet --labelbin b.txt --image synthetic_examples --json --output out_b >b.json 2>/dev/null
sed -i 's/"output": "[^"]*"//' a.json b.json
[ -s a.json ] && cmp -s a.json b.json && pass "the resumed model equals the uninterrupted one" || fail "resumed model differs: $(diff a.json b.json | head -5)"
[ "$(wc -l <b.csv)" = 3 ] && pass "the resumed history has both epochs" || fail "b.csv: $(cat b.csv)"

# Weights averaged over the last 2 of 3 epochs (3 steps each), interrupted in the third, after
# the first averaged epoch, and resumed: again the uninterrupted model, bit for bit.
averaging=(--epochs 3 --synthetic-count 20 --image-size 64 --average-epochs 2)
"$train" "${averaging[@]}" --model c.tnet --labelbin c.txt --plot c.png --history c.csv >c.log 2>&1
grep -q "^mean weights of the last 2 epochs" c.log && grep -q "^last weights, batch-norm statistics re-estimated" c.log &&
  pass "the final model averages the last 2 epochs' weights" || fail "averaging: $(cat c.log)"
"$train" "${averaging[@]}" --model d.tnet --labelbin d.txt --plot d.png --history d.csv --interrupt-after-steps 7 >interrupted.txt 2>&1
status=$?
[ $status = 130 ] && [ -e d.tnet.checkpoint ] && [ -e d.tnet.checkpoint-average-1 ] &&
  pass "an interruption among the averaged epochs keeps the mean so far" || fail "interrupted averaging: status $status, $(ls)"
mv d.tnet.checkpoint-average-1 kept-average
expect_error "resume without the mean so far" 1 "d.tnet.checkpoint-average-1" -- "$train" "${averaging[@]}" --model "$work/d.tnet" \
  --labelbin "$work/d.txt" --plot "$work/d.png" --history "$work/d.csv" --resume
mv kept-average d.tnet.checkpoint-average-1
"$train" "${averaging[@]}" --model d.tnet --labelbin d.txt --plot d.png --history d.csv --resume >resumed.txt 2>&1
"$classify" --model c.tnet --labelbin c.txt --image synthetic_examples --json --output out_c >c.json 2>/dev/null
"$classify" --model d.tnet --labelbin d.txt --image synthetic_examples --json --output out_d >d.json 2>/dev/null
sed -i 's/"output": "[^"]*"//' c.json d.json
[ -s c.json ] && cmp -s c.json d.json && pass "the resumed averaged model equals the uninterrupted one" ||
  fail "resumed averaged model differs: $(diff c.json d.json | head -5)"
[ ! -e d.tnet.checkpoint ] && [ -z "$(ls | grep checkpoint-average)" ] && pass "both checkpoints are gone after the resumed run" ||
  fail "checkpoints left: $(ls d.tnet*)"
# Killed between the checkpoint that counts the mean of 2 epochs and the removal of the mean of 1
# (the window is a few instructions wide: made here by copying that file back): the resumed run
# removes it, and leaves nothing behind.
"$train" --epochs 4 --synthetic-count 20 --image-size 64 --average-epochs 3 --model e.tnet --labelbin e.txt --plot e.png --history e.csv \
  --interrupt-after-steps 10 >e.log 2>&1
prepared=no
[ -e e.tnet.checkpoint-average-2 ] && [ ! -e e.tnet.checkpoint-average-1 ] && cp e.tnet.checkpoint-average-2 e.tnet.checkpoint-average-1 &&
  prepared=yes
"$train" --epochs 4 --synthetic-count 20 --image-size 64 --average-epochs 3 --model e.tnet --labelbin e.txt --plot e.png --history e.csv --resume \
  >e_resumed.log 2>&1
status=$?
[ $prepared = yes ] && [ $status = 0 ] && [ -e e.tnet ] && [ -z "$(ls | grep '^e.tnet.checkpoint')" ] &&
  pass "a mean left behind by a kill between two file operations is removed on resume" ||
  fail "stale mean: prepared $prepared, status $status, left: $(ls | grep '^e.tnet')"

# Killed after the final model was saved, between removing the mean and removing the checkpoint:
# --resume says the run had finished, removes the checkpoint and leaves the model as it was. The
# state is made by interrupting the first final pass (step 10 of 9 training steps) to keep the
# checkpoint after the last epoch, a resumed run that saves the model and cleans up, and that
# checkpoint put back without its mean.
"$train" "${averaging[@]}" --model f.tnet --labelbin f.txt --plot f.png --history f.csv --interrupt-after-steps 10 >f.log 2>&1
status=$?
prepared=no
[ $status = 130 ] && grep -q "interrupted during the final passes" f.log && [ -e f.tnet.checkpoint-average-2 ] &&
  cp f.tnet.checkpoint kept-checkpoint &&
  "$train" "${averaging[@]}" --model f.tnet --labelbin f.txt --plot f.png --history f.csv --resume >f_resumed.log 2>&1 &&
  [ -s f.tnet ] && [ -z "$(ls | grep '^f.tnet.checkpoint')" ] && cp f.tnet kept-model && mv kept-checkpoint f.tnet.checkpoint && prepared=yes
"$train" "${averaging[@]}" --model f.tnet --labelbin f.txt --plot f.png --history f.csv --resume >f_finished.log 2>&1
status=$?
[ $prepared = yes ] && [ $status = 0 ] && grep -q "^the run had finished" f_finished.log && cmp -s f.tnet kept-model &&
  [ -z "$(ls | grep '^f.tnet.checkpoint')" ] && pass "a checkpoint left by a kill after the final save is removed on resume, the model kept" ||
  fail "finished run: prepared $prepared, status $status, $(tail -2 f_finished.log), left: $(ls | grep '^f.tnet')"

# A final model is not a checkpoint.
cp m.tnet final.tnet.checkpoint
expect_error "--resume from a final model" 2 "final.tnet.checkpoint is not a training checkpoint (it has no 'settings')" -- \
  "$train" --epochs 4 --synthetic-count 100 --model "$work/final.tnet" --labelbin "$work/final.txt" --plot "$work/final.png" \
  --history "$work/final.csv" --resume
cp synthetic_examples/red_dress.png photo.png
expect_error "a labelled copy over the photo" 2 "would overwrite the photo" -- "$classify" --model "$work/m.tnet" --labelbin "$work/labels.txt" \
  --image "$work/photo.png" --output "$work/photo.png"
cmp -s photo.png synthetic_examples/red_dress.png && pass "the photo is untouched" || fail "the photo was overwritten"

# A learning rate far too high: a model that learned nothing is saved with a warning.
"$train" --epochs 3 --synthetic-count 20 --image-size 64 --lr 9.99 --model h.tnet --labelbin h.txt --plot h.png --history h.csv >h.log 2>h.err
status=$?
[ $status = 0 ] && grep -q "warning: the saved model's validation loss, .* is worse than predicting each label's training frequency" h.err &&
  pass "a run that learned nothing says so" || fail "--lr 9.99: status $status, $(cat h.err)"
grep -q "warning" train.txt && fail "a good run warned: $(grep warning train.txt)" || pass "a run that learned does not warn"

# A full disk: the checkpoint that does not fit is refused by name, the one before it is kept,
# and after making room --resume ends with the model an uninterrupted run makes. Needs a small
# tmpfs (root); skipped without one.
mkdir -p small
if mount -t tmpfs -o size=60m tmpfs small 2>/dev/null; then
  trap 'umount "$work/small" 2>/dev/null; rm -rf "$work"' EXIT
  full=(--epochs 2 --image-size 64 --synthetic-count 100 --average-epochs 0 --labelbin small/l.txt --plot small/p.png --history small/h.csv)
  "$train" "${full[@]}" --model small/m.tnet >full.log 2>&1
  status=$?
  if [ $status = 1 ] && grep -q "small/m.tnet.checkpoint: cannot write the model file: write failed: No space left on device" full.log &&
     grep -q "the checkpoint before it is kept" full.log && [ -e small/m.tnet.checkpoint ] && [ -z "$(ls small | grep tnet-tmp)" ]; then
    pass "a full disk: the checkpoint is refused by name, the one before it kept, no temporary file left"
  else
    fail "full disk: status $status, $(tail -3 full.log), $(ls small)"
  fi
  mount -o remount,size=200m small
  "$train" "${full[@]}" --model small/m.tnet --resume >resumed_full.log 2>&1
  "$train" --epochs 2 --image-size 64 --synthetic-count 100 --average-epochs 0 --labelbin full_l.txt --plot full_p.png --history full_h.csv \
    --model full.tnet >/dev/null 2>&1
  "$classify" --model small/m.tnet --labelbin small/l.txt --image synthetic_examples --json --output out_small >small.json 2>/dev/null
  "$classify" --model full.tnet --labelbin full_l.txt --image synthetic_examples --json --output out_full >full.json 2>/dev/null
  sed -i 's/"output": "[^"]*"//' small.json full.json
  [ -s small.json ] && cmp -s small.json full.json && pass "after making room, --resume gives the uninterrupted model" ||
    fail "resumed after a full disk: $(tail -3 resumed_full.log)"
  umount small
else
  echo "skipped: a full disk (cannot mount a tmpfs here)"
fi

# Given back, a run's split lists reproduce it: the same training, epoch for epoch.
"$train" --epochs 2 --synthetic-count 20 --image-size 64 --model e.tnet --labelbin e.txt --plot e.png --history e.csv >e.log 2>&1
"$train" --epochs 2 --synthetic-count 20 --image-size 64 --model f.tnet --labelbin f.txt --plot f.png --history f.csv --val-list e.val.txt \
  --train-list e.train.txt >f.log 2>&1
status=$?
if [ $status = 0 ] && grep -q "validating on 24 (the images e.val.txt lists)" f.log && cmp -s e.val.txt f.val.txt &&
   [ "$(cut -d, -f1-6 e.csv)" = "$(cut -d, -f1-6 f.csv)" ]; then
  pass "training on the lists a run wrote repeats that run"
else
  fail "named split: status $status, $(grep validating f.log), $(diff <(cut -d, -f1-6 e.csv) <(cut -d, -f1-6 f.csv))"
fi
"$train" --epochs 1 --synthetic-count 20 --image-size 64 --model g.tnet --labelbin g.txt --plot g.png --history g.csv --val-list e.val.txt >g.log 2>&1
grep -q "training on 96, validating on 24" g.log && cmp -s e.train.txt g.train.txt && pass "--val-list alone trains on every other picture" ||
  fail "--val-list alone: $(grep training g.log)"

# Any label count: 44 labels (24 colours, 20 places) from folders, trained, then classified.
"$make_label_dataset" many 24 20 15
"$train" --dataset many --image-size 64 --epochs 10 --no-augment --model many.tnet --labelbin many.txt --plot many.png \
  --history many.csv >many.log 2>&1
status=$?
report=$(grep -E "^validation \(" many.log)
binary=$(echo "$report" | sed -E 's/.*binary accuracy ([0-9.]+).*/\1/')
exact=$(echo "$report" | sed -E 's/.*exact match ([0-9.]+).*/\1/')
# Predicting no label scores 42/44 = 0.955 binary accuracy and 0 exact match.
if [ $status = 0 ] && grep -q "720 images, 44 classes" many.log && grep -q "44 labels;" many.log &&
   awk -v b="$binary" -v e="$exact" 'BEGIN { exit !(b >= 0.97 && e >= 0.40) }'; then
  pass "44 labels: trained (binary accuracy $binary, exact match $exact)"
else
  fail "44 labels: status $status, binary accuracy '$binary', exact match '$exact'; $(tail -5 many.log)"
fi
"$classify" --model many.tnet --labelbin many.txt --image many/c07_p07 --json --output many_out >many.json 2>&1
status=$?
right=$(grep -o '"top": \["[a-z0-9]*", "[a-z0-9]*"\]' many.json | grep -c -e '"c07", "p07"' -e '"p07", "c07"')
if [ $status = 0 ] && [ "$(grep -o '"p19": ' many.json | wc -l)" = 15 ] && [ "$(grep -o '"c[0-9]*": \|"p[0-9]*": ' many.json | wc -l)" = $((15 * 44)) ] &&
   [ "$right" -ge 12 ]; then
  pass "classify reads the 44-label model: 44 probabilities a photo, c07 p07 the top two for $right of 15"
else
  fail "classify 44 labels: status $status, top two right for '$right' of 15: $(head -c 600 many.json)"
fi

# One label: a dataset of one folder without a separator.
mkdir -p single/c03 && cp many/c03_p03/*.png single/c03/
"$train" --dataset single --image-size 64 --epochs 1 --batch-size 8 --model one.tnet --labelbin one.txt --plot one.png --history one.csv >one.log 2>&1 &&
  "$classify" --model one.tnet --labelbin one.txt --image single/c03/0.png >one_classify.txt 2>&1
status=$?
[ $status = 0 ] && grep -q "1 classes: c03" one.log && grep -qE "^  c03: [0-9.]+%$" one_classify.txt && pass "a dataset of one label trains and classifies" ||
  fail "one label: status $status, $(tail -3 one.log) $(cat one_classify.txt)"

# Fine-tuning: --init-from a model of another label count (one.tnet: 1 label; the synthetic set
# has 6), its convolutions frozen (--freeze-until flatten); interrupted and resumed without the
# option, the checkpoint's freezing is re-applied (the same model as without the interruption);
# resumed with another, refused. --backbone-lr-multiplier instead of freezing; an ONNX file.
expect_error "--backbone-lr-multiplier without --freeze-until" 2 "--backbone-lr-multiplier needs --freeze-until" -- \
  "$train" --backbone-lr-multiplier 0.1
expect_error "--init-from a model of another image size" 2 \
  "--init-from: $work/one.tnet holds a SmallerVGGNet for 64-pixel images: fine-tune it with --arch smallervgg --image-size 64" -- \
  "$train" --init-from "$work/one.tnet"
expect_error "--init-from the --model" 2 "--model $work/one.tnet and --init-from $work/one.tnet are the same file" -- \
  "$train" --image-size 64 --init-from "$work/one.tnet" --model "$work/one.tnet"
tune=(--image-size 64 --synthetic-count 10 --batch-size 8 --epochs 2 --init-from "$work/one.tnet")
expect_error "--freeze-until an unknown layer" 2 "--freeze-until 30.dense: no layer '30.dense'; the layers are 0.conv2d 1.relu 2.batchnorm" -- \
  "$train" "${tune[@]}" --freeze-until 30.dense --model "$work/bad.tnet"
expect_error "--freeze-until a kind two layers have" 2 "--freeze-until dense: 2 layers are dense (22.dense, 26.dense): name one" -- \
  "$train" "${tune[@]}" --freeze-until dense --model "$work/bad.tnet"
"$train" "${tune[@]}" --freeze-until flatten --model ft_a.tnet --labelbin ft.txt --plot ft.png --history ft_a.csv >ft_a.log 2>&1
status=$?
if [ $status = 0 ] &&
  grep -q "^--init-from: loaded 12 layers from tnet model $work/one.tnet (0.conv2d ... 24.batchnorm); re-initialised 26.dense: the file's head has 1 output, this network's 6$" ft_a.log &&
  grep -q "^layers 0.conv2d to 20.dropout are frozen (278,592 weights); 21.flatten to 27.sigmoid train$" ft_a.log; then
  pass "--init-from a model of 1 label loads all but its head; --freeze-until flatten freezes the convolutions"
else
  fail "--init-from: status $status, $(grep -e init-from -e frozen ft_a.log) $(tail -2 ft_a.log)"
fi
"$train" "${tune[@]}" --freeze-until flatten --model ft_b.tnet --labelbin ft_b.txt --plot ft_b.png --history ft_b.csv \
  --interrupt-after-steps 7 >ft_b.log 2>&1
interrupted=$?
expect_error "resume with another --freeze-until" 2 \
  "ft_b.tnet.checkpoint was trained with the first 21 layers frozen, this run has the first 26 layers frozen: resume with the same" -- \
  "$train" "${tune[@]}" --freeze-until head --model "$work/ft_b.tnet" --labelbin "$work/ft_b.txt" --plot "$work/ft_b.png" \
  --history "$work/ft_b.csv" --resume
"$train" "${tune[@]}" --model ft_b.tnet --labelbin ft_b.txt --plot ft_b.png --history ft_b.csv --resume >ft_b_resumed.log 2>&1
resumed=$?
"$classify" --model ft_a.tnet --labelbin ft.txt --image synthetic_examples --json --output out_ft_a >ft_a.json 2>/dev/null
"$classify" --model ft_b.tnet --labelbin ft_b.txt --image synthetic_examples --json --output out_ft_b >ft_b.json 2>/dev/null
sed -i 's/"output": "[^"]*"//' ft_a.json ft_b.json
if [ $interrupted = 130 ] && [ $resumed = 0 ] && grep -q "^resuming with the checkpoint's fine-tuning: the first 21 layers frozen$" ft_b_resumed.log &&
  [ -s ft_a.json ] && cmp -s ft_a.json ft_b.json; then
  pass "--resume re-applies the checkpoint's frozen layers: the uninterrupted model, bit for bit"
else
  fail "frozen resume: status $interrupted, $resumed; $(grep resuming ft_b_resumed.log) $(diff ft_a.json ft_b.json | head -3)"
fi
"$train" "${tune[@]}" --epochs 1 --freeze-until flatten --backbone-lr-multiplier 0.1 --model ft_m.tnet --labelbin ft_m.txt \
  --plot ft_m.png --history ft_m.csv >ft_m.log 2>&1
status=$?
[ $status = 0 ] && grep -q "^layers 0.conv2d to 20.dropout train at 0.1 x the learning rate; 21.flatten to 27.sigmoid train at the full rate$" ft_m.log &&
  pass "--backbone-lr-multiplier trains the layers before --freeze-until's at a fraction of the rate" ||
  fail "--backbone-lr-multiplier: status $status, $(tail -3 ft_m.log)"
if [ -x "$bin/fashion_export" ]; then
  "$bin/fashion_export" --model one.tnet --labelbin one.txt --onnx one.onnx >/dev/null 2>&1
  "$train" "${tune[@]}" --init-from one.onnx --epochs 1 --freeze-until head --model ft_o.tnet --labelbin ft_o.txt --plot ft_o.png \
    --history ft_o.csv >ft_o.log 2>&1
  status=$?
  [ $status = 0 ] && grep -q "^--init-from: loaded 12 layers from ONNX one.onnx (0.conv2d ... 24.batchnorm); re-initialised 26.dense" ft_o.log &&
    grep -q "^layers 0.conv2d to 25.dropout are frozen" ft_o.log && pass "--init-from an ONNX file" ||
    fail "--init-from ONNX: status $status, $(tail -3 ft_o.log)"
else
  echo "skipped: --init-from an ONNX file (no fashion_export built)"
fi

# --list: a CSV list of photos and their labels instead of class folders; the split written
# relative to the list's folder.
expect_error "--dataset and --list" 2 "--dataset and --list both name the photos to train on: give one" -- \
  "$train" --dataset "$work/many" --list "$work/photos.csv"
{
  echo "path,labels"
  for folder in $(ls many | head -4); do
    for photo in many/"$folder"/*.png; do echo "$photo,${folder/_/|}"; done
  done
} >photos.csv
"$train" --list photos.csv --image-size 64 --epochs 1 --batch-size 8 --model li.tnet --labelbin li.txt --plot li.png \
  --history li.csv >li.log 2>&1
status=$?
[ $status = 0 ] && grep -q "^60 images, 6 classes" li.log && [ "$(wc -l <li.val.txt)" = 12 ] && grep -q "^many/c[0-9]*_p[0-9]*/[0-9]*.png$" li.val.txt &&
  pass "--list trains on the photos a CSV list names" || fail "--list: status $status, $(grep images li.log) $(head -2 li.val.txt)"
printf 'path,labels\nmany/one.png\n' >bad-photos.csv
expect_error "a malformed --list" 2 "bad-photos.csv:2: expected 'path,label1|label2|...', got 'many/one.png'" -- \
  "$train" --list "$work/bad-photos.csv"

# --cache: the photos decoded once into an image cache, read as batches need them, prepared in
# the background: the same model as in memory, bit for bit; the next run reuses the cache; a photo
# replaced makes the run after rebuild it.
probabilities() {  # what the model says of the photos, to compare models bit for bit
  "$classify" --model "$1.tnet" --labelbin one.txt --image many/c05_p05 --json --output "out_$1" 2>/dev/null | sed 's/"output": "[^"]*"//'
}
cached=(--dataset single --image-size 64 --epochs 2 --batch-size 8 --labelbin one.txt --plot one.png --history cached.csv)
"$train" "${cached[@]}" --model cached.tnet --cache photo-cache >cached.log 2>&1
status=$?
"$train" "${cached[@]}" --model cached2.tnet --cache photo-cache >cached2.log 2>&1
"$train" "${cached[@]}" --model memory.tnet >memory.log 2>&1
if [ $status = 0 ] && grep -q "built the image cache photo-cache/single-64px-" cached.log && grep -q "read the image cache" cached2.log &&
   grep -q "read from the image cache" cached.log && [ "$(ls photo-cache)" != "" ] &&
   [ "$(probabilities cached)" = "$(probabilities memory)" ] && [ "$(probabilities cached2)" = "$(probabilities memory)" ]; then
  pass "--cache builds an image cache, reuses it, and trains the in-memory model bit for bit"
else
  fail "--cache: status $status, $(grep -i cache cached.log cached2.log | head -5)"
fi
cp many/c03_p03/1.png single/c03/0.png
"$train" "${cached[@]}" --model cached3.tnet --cache photo-cache >cached3.log 2>&1
grep -q "is stale: 1 photo changed; rebuilding it" cached3.log && pass "a photo replaced rebuilds the cache" ||
  fail "stale cache: $(grep -i cache cached3.log | head -3)"
expect_error "--cache without --dataset" 2 "--cache keeps decoded photos of a --dataset" -- "$train" --cache "$work/c" --epochs 1

# Labels and paths as text: a class folder whose name holds a newline is refused before any work
# (labels are printable UTF-8); a photo's path that is not UTF-8 comes out of --json as valid
# UTF-8, the byte as U+FFFD.
mkdir -p newline/red_dress "newline/$(printf 'blue\njeans')"
cp synthetic_examples/red_dress.png newline/red_dress/1.png
cp synthetic_examples/red_dress.png "newline/$(printf 'blue\njeans')/2.png"
expect_error "a class folder whose name holds a newline" 2 "blue\\njeans: the class folder's name gives a label that cannot be one" -- \
  "$train" --dataset "$work/newline" --epochs 1
latin1=$(printf 'caf\351.png')
cp synthetic_examples/red_dress.png "$latin1"
"$classify" --model m.tnet --labelbin labels.txt --image "$latin1" --json --output latin1_labeled.png >latin1.json 2>&1
status=$?
if [ ! -x /usr/bin/python3 ]; then
  echo "SKIPPED: --json of a path that is not UTF-8 (no /usr/bin/python3 to parse it)"
elif [ $status = 0 ] && /usr/bin/python3 -c 'import json, sys
items = json.loads(open(sys.argv[1], "rb").read().decode("utf-8"))
assert items[0]["image"] == "caf\ufffd.png", items' latin1.json; then
  pass "--json of a photo whose path is not UTF-8: valid UTF-8, the byte as U+FFFD"
else
  fail "--json of a path that is not UTF-8: status $status, $(head -c 300 latin1.json)"
fi

# tnet::fit's callbacks in fashion_train: early stopping (patience 2, and a least improvement no
# loss can make, so that it stops after the third of four epochs whatever the losses), reduce-on-
# plateau (patience 1) and keep-best; interrupted in the third epoch and resumed, the same models
# as without the interruption (the callbacks' waiting and best values travel in the checkpoint).
expect_error "--reduce-lr-factor without --reduce-lr" 2 "--reduce-lr-factor needs --reduce-lr" -- "$train" --reduce-lr-factor 0.5
expect_error "--early-stopping-min-delta without --early-stopping" 2 "--early-stopping-min-delta needs --early-stopping" -- \
  "$train" --early-stopping-min-delta 0.1
expect_error "negative --early-stopping-min-delta" 2 "--early-stopping-min-delta must be a loss difference of at least 0" -- \
  "$train" --early-stopping 1 --early-stopping-min-delta -1
callbacks=(--epochs 4 --synthetic-count 20 --image-size 64 --early-stopping 2 --early-stopping-min-delta 1000 --reduce-lr 1
  --reduce-lr-factor 0.5)
"$train" "${callbacks[@]}" --model g.tnet --labelbin g.txt --plot g.png --history g.csv --keep-best g-best.tnet >g.log 2>&1
status=$?
[ $status = 0 ] && [ -s g.tnet ] && [ -s g-best.tnet ] && grep -q "^early stopping: val_loss has not improved for 2 epochs" g.log &&
  [ "$(grep -c '^Epoch' g.log)" = 3 ] &&
  pass "--early-stopping stops the run, --keep-best keeps the best model" || fail "callbacks: status $status, $(tail -3 g.log)"
"$train" "${callbacks[@]}" --model h.tnet --labelbin h.txt --plot h.png --history h.csv --keep-best h-best.tnet \
  --interrupt-after-steps 7 >h.log 2>&1
status=$?
"$train" "${callbacks[@]}" --model h.tnet --labelbin h.txt --plot h.png --history h.csv --keep-best h-best.tnet --resume >h_resumed.log 2>&1
for m in g h g-best h-best; do
  "$classify" --model $m.tnet --labelbin g.txt --image synthetic_examples --json --output out_$m >$m.json 2>/dev/null
  sed -i 's/"output": "[^"]*"//' $m.json
done
[ $status = 130 ] && [ -s g.json ] && cmp -s g.json h.json && [ -s g-best.json ] && cmp -s g-best.json h-best.json &&
  cmp -s <(cut -d, -f1-7 g.csv) <(cut -d, -f1-7 h.csv) && pass "with every callback, the resumed run's models and history equal the uninterrupted one's" ||
  fail "callbacks resumed: status $status, $(diff g.json h.json | head -3) $(diff g-best.json h-best.json | head -3)"

# --tune-thresholds: each label's threshold, chosen on the validation images, is printed and stored
# in the model, and fashion_classify uses them unless --threshold gives one for every label. The
# report and the history gain macro and micro F1 and mAP.
"$train" --epochs 2 --synthetic-count 30 --image-size 64 --tune-thresholds --model t.tnet --labelbin t.txt --plot t.png --history t.csv >t.log 2>&1
status=$?
"$classify" --model t.tnet --labelbin t.txt --image synthetic_examples/red_dress.png >t_tuned.txt 2>&1
"$classify" --model t.tnet --labelbin t.txt --image synthetic_examples/red_dress.png --threshold 0.5 >t_half.txt 2>&1
if [ $status = 0 ] && grep -q "^thresholds chosen on the validation data, stored in the model: black " t.log &&
  grep -qE "^validation \(.*, macro F1 [0-9.]+, micro F1 [0-9.]+, mAP [0-9.]+" t.log &&
  [ "$(head -1 t.csv)" = "epoch,loss,acc,val_loss,val_acc,val_exact_match,lr,seconds,val_macro_f1,val_micro_f1,val_map" ] &&
  grep -q "above their thresholds" t_tuned.txt && grep -q "(threshold 0\.[0-9]*)" t_tuned.txt && grep -q "above 0.5" t_half.txt; then
  pass "--tune-thresholds stores per-label thresholds that classify uses (--threshold overrides); F1 and mAP reported"
else
  fail "--tune-thresholds: status $status, $(grep -A1 '^thresholds' t.log) $(grep -E 'above|threshold' t_tuned.txt t_half.txt | head -4)"
fi

# The optimizer's options: usage errors name the option; a run with AdamW, clipping and a cosine
# schedule with warm-up trains, and resuming it with another schedule is refused.
expect_error "--schedule unknown" 2 "--schedule must be keras, constant, cosine, one-cycle or step, got 'linear'" -- "$train" --schedule linear
expect_error "--weight-decay negative" 2 "--weight-decay must be a weight decay in [0, 1), got '-1'" -- "$train" --weight-decay -1
expect_error "--clip-norm 0" 2 "--clip-norm must be a gradient norm above 0, got '0'" -- "$train" --clip-norm 0
expect_error "--warmup-epochs without cosine" 2 "--warmup-epochs needs --schedule cosine" -- "$train" --warmup-epochs 1
expect_error "--weight-decay with Keras's decay" 2 "--schedule keras is Adam's decay" -- "$train" --weight-decay 0.01 --schedule keras
optim=(--epochs 3 --synthetic-count 30 --image-size 64 --weight-decay 0.01 --clip-norm 1 --schedule cosine --warmup-epochs 1 --model o.tnet
  --labelbin o.txt --plot o.png --history o.csv)
"$train" "${optim[@]}" --interrupt-after-steps 3 >o.log 2>&1
status=$?
"$train" "${optim[@]/0.01/0.02}" --resume >o_other.log 2>&1
other=$?
"$train" "${optim[@]}" --resume >o_resumed.log 2>&1
resumed=$?
if [ $status = 130 ] && [ $other = 2 ] && grep -q "was made with .*--weight-decay 0.01 --clip-norm 1 --schedule cosine --warmup-epochs 1" o_other.log &&
  [ $resumed = 0 ] && [ -s o.tnet ] && [ "$(wc -l <o.csv)" = 4 ]; then
  pass "--weight-decay, --clip-norm, --schedule cosine --warmup-epochs train, and resume with another schedule is refused"
else
  fail "optimizer options: status $status, other $other, resumed $resumed; $(tail -2 o_other.log) $(tail -2 o_resumed.log)"
fi

# The losses for imbalanced labels: usage errors, and short runs with each that learn something.
expect_error "--pos-weight other" 2 "--pos-weight takes auto" -- "$train" --pos-weight 3
expect_error "--focal-gamma negative" 2 "--focal-gamma must be a focal loss gamma in [0, 100), got '-2'" -- "$train" --focal-gamma -2
expect_error "--pos-weight with --focal-gamma" 2 "--pos-weight and --focal-gamma choose two losses" -- "$train" --pos-weight auto --focal-gamma 2
"$train" --epochs 2 --synthetic-count 30 --image-size 64 --pos-weight auto --model pw.tnet --labelbin pw.txt --plot pw.png --history pw.csv >pw.log 2>&1
pw=$?
"$train" --epochs 2 --synthetic-count 30 --image-size 64 --focal-gamma 2 --model fo.tnet --labelbin fo.txt --plot fo.png --history fo.csv >fo.log 2>&1
fo=$?
if [ $pw = 0 ] && grep -q "^positive weights (--pos-weight auto): black [0-9.]" pw.log && [ -s pw.tnet ] && [ $fo = 0 ] && [ -s fo.tnet ] &&
  ! cmp -s <(cut -d, -f4 fo.csv) <(cut -d, -f4 pw.csv); then
  pass "--pos-weight auto and --focal-gamma train"
else
  fail "losses: status $pw, $fo; $(tail -2 pw.log) $(tail -2 fo.log)"
fi

finish
