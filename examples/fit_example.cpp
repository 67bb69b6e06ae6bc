// Trains a network on a folder of photos with tnet::fit: class folders named like red_dress/
// give each photo its labels. Stops when validation stops improving, keeping the best weights;
// Ctrl-C saves a checkpoint, and the next run continues from it.
//   fit_example PHOTOS_DIR
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <tnet/tnet.hpp>

using Net =
    tnet::Sequential<tnet::Input<64, 64, 3>, tnet::Conv2D<16, 3>, tnet::BatchNorm, tnet::ReLU, tnet::MaxPool2D<2>, tnet::Conv2D<32, 3>,
                     tnet::BatchNorm, tnet::ReLU, tnet::GlobalAveragePooling2D, tnet::Dense<tnet::dynamic>, tnet::Sigmoid>;

int main(int argc, char** argv) {
  if (argc != 2) return std::fprintf(stderr, "usage: fit_example PHOTOS_DIR\n"), 2;
  const tnet::LabeledImages photos = tnet::load_image_folder(argv[1], {.size = 64, .separator = '_', .limits = {}});
  tnet::MultiLabelBinarizer labels;
  const std::vector<float> targets = labels.fit_transform(photos.labels);
  const tnet::Split split = tnet::train_test_split(photos.count(), 0.2, 42);
  const int n = int(labels.classes().size());
  tnet::BatchIterator::Options augmented, in_order;
  augmented.augmenter.emplace(tnet::AugmentOptions::keras_tutorial());
  in_order.shuffle = false;
  tnet::BatchIterator train(photos, targets, n, split.train, augmented), val(photos, targets, n, split.test, in_order);

  Net net(tnet::Outputs{n});
  tnet::Adam adam({.lr = 1e-3});
  tnet::EarlyStopping stop({.patience = 5, .restore_best_weights = true});
  tnet::ReduceLROnPlateau plateau({.factor = 0.5, .patience = 2});
  tnet::ModelCheckpoint best({.path = "best.tnet", .monitor = "val_acc"});
  tnet::CSVLogger history("history.csv");
  const tnet::FitResult result = tnet::fit(net, train, val, adam,
                                           {.epochs = 30,
                                            .checkpoint = "model.tnet.checkpoint",
                                            .resume = std::filesystem::exists("model.tnet.checkpoint"),
                                            .model = "model.tnet",
                                            .class_names = labels.classes()},
                                           {&history, &best, &plateau, &stop});
  tnet::print_report(std::cout, result, labels.classes());
  return result.exit_status();
}
