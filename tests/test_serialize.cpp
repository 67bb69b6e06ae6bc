// Model files: a bit-exact round trip, and one clear, distinct error for each kind of bad file,
// with the network in memory left untouched.
#include "support.hpp"
#include "limited.hpp"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

#include <sys/stat.h>

using namespace tnet;
namespace fs = std::filesystem;

namespace {
using Net = Sequential<Input<8, 8, 2>, Conv2D<4, 3>, ReLU, BatchNorm, MaxPool2D<2>, Dropout<0.2f>, Flatten, Dense<5>, Sigmoid>;
using Wider = Sequential<Input<8, 8, 2>, Conv2D<4, 3>, ReLU, BatchNorm, MaxPool2D<2>, Dropout<0.2f>, Flatten, Dense<6>, Sigmoid>;
using AnyWidth = Sequential<Input<8, 8, 2>, Conv2D<4, 3>, ReLU, BatchNorm, MaxPool2D<2>, Dropout<0.2f>, Flatten, Dense<dynamic>, Sigmoid>;
constexpr int batch = 3;

using test::read;
using test::TempDir;
using test::write;

// A trained network: weights, running statistics and Adam's state all away from their defaults.
void train(Net& net, Adam& adam, int steps) {
  const Buffer x = test::random_values(batch * Net::input_shape::size, 1);
  const Buffer y = test::random_values(batch * 5, 2, 0.5f);
  Buffer targets(y.size());
  for (std::size_t i = 0; i < y.size(); ++i) targets[i] = y[i] > 0 ? 1.0f : 0.0f;
  for (int s = 0; s < steps; ++s) net.train_step(x, targets, batch, adam);
}

std::vector<Buffer> snapshot(Net& net) {
  std::vector<Buffer> all;
  for (const ParamRef& p : net.parameters()) all.emplace_back(p.value, p.value + p.size);
  net.visit_state([&](const std::string&, auto span) {
    if constexpr (std::is_same_v<typename decltype(span)::value_type, float>) all.emplace_back(span.begin(), span.end());
  });
  return all;
}

void check_refused(const std::string& path, ModelFileError::Kind kind, const std::string& words) {
  Net net(9);
  Adam adam;
  const auto before = snapshot(net);
  try {
    load_model(path, net, &adam);
    FAIL("load_model accepted a bad file");
  } catch (const ModelFileError& e) {
    INFO(e.what());
    CHECK(e.kind() == kind);
    CHECK(std::string(e.what()).find(words) != std::string::npos);
    CHECK(std::string(e.what()).find(path) == 0);
  }
  CHECK(snapshot(net) == before);
  CHECK(adam.iterations() == 0);
}
// read_model_signature checks the header alone (load_model checks the rest).
void check_signature_refused(const std::string& path, ModelFileError::Kind kind) {
  try {
    read_model_signature(path);
    FAIL("read_model_signature accepted a bad file");
  } catch (const ModelFileError& e) {
    INFO(e.what());
    CHECK(e.kind() == kind);
  }
}
}  // namespace

TEST_CASE("save, load into a fresh network: identical outputs, statistics and optimizer state") {
  TempDir dir;
  Net trained(1);
  Adam adam(Adam::Options{.lr = 2e-3, .decay = 1e-4});
  train(trained, adam, 3);
  save_model(dir / "m.tnet", trained, {"black", "blue", "dress"}, &adam, {{"epoch", "3"}, {"note", "a b\nc"}});
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);  // no temporary file left
  CHECK(read_model_signature(dir / "m.tnet") == trained.signature());
  CHECK(read_model_outputs(dir / "m.tnet") == 5);

  Net loaded(2);
  Adam resumed;
  const ModelFileInfo info = load_model(dir / "m.tnet", loaded, &resumed);
  CHECK(info.class_names == std::vector<std::string>{"black", "blue", "dress"});
  CHECK(info.has_optimizer_state);
  CHECK(info.metadata == std::map<std::string, std::string>{{"epoch", "3"}, {"note", "a b\nc"}});
  CHECK(info.step == 3);
  CHECK(loaded.step() == 3);
  CHECK(resumed.iterations() == 3);
  CHECK(resumed.options().lr == 2e-3);
  CHECK(snapshot(loaded) == snapshot(trained));

  const Buffer x = test::random_values(batch * Net::input_shape::size, 5);
  const std::span<const float> a = trained.predict(x, batch), b = loaded.predict(x, batch);
  CHECK(std::equal(a.begin(), a.end(), b.begin(), b.end()));

  // Training on from both gives the same network: the schedule, dropout masks and moments carried over.
  train(trained, adam, 2);
  train(loaded, resumed, 2);
  CHECK(snapshot(loaded) == snapshot(trained));
}

TEST_CASE("bad model files are refused with their own errors, the network untouched") {
  TempDir dir;
  Net net(1);
  Adam adam;
  train(net, adam, 1);
  const std::string good = dir / "good.tnet";
  save_model(good, net, {"a"}, &adam);
  const std::string bytes = read(good);

  SUBCASE("missing file") { check_refused(dir / "absent.tnet", ModelFileError::Kind::io, "cannot open"); }
  SUBCASE("a folder") { check_refused(dir.path.string(), ModelFileError::Kind::io, "it is a folder"); }
  SUBCASE("not a model file") {
    write(dir / "text.tnet", "hello, this is not a model\n");
    check_refused(dir / "text.tnet", ModelFileError::Kind::not_a_model, "not a tnet model file");
    check_signature_refused(dir / "text.tnet", ModelFileError::Kind::not_a_model);
  }
  SUBCASE("truncated") {
    write(dir / "cut.tnet", bytes.substr(0, bytes.size() - 100));
    check_refused(dir / "cut.tnet", ModelFileError::Kind::truncated, "truncated");
    check_signature_refused(dir / "cut.tnet", ModelFileError::Kind::truncated);
  }
  SUBCASE("truncated inside the header") {
    write(dir / "cut.tnet", bytes.substr(0, 20));
    check_refused(dir / "cut.tnet", ModelFileError::Kind::truncated, "truncated");
    check_signature_refused(dir / "cut.tnet", ModelFileError::Kind::truncated);
  }
  SUBCASE("corrupted: one bit flipped") {
    std::string flipped = bytes;
    flipped[bytes.size() / 2] ^= 0x10;
    write(dir / "flip.tnet", flipped);
    check_refused(dir / "flip.tnet", ModelFileError::Kind::corrupted, "checksum mismatch");
  }
  SUBCASE("a signature longer than the file") {
    std::string long_signature = bytes;
    long_signature[35] = char(0x7f);  // the signature's length, little-endian at offset 32
    write(dir / "long.tnet", long_signature);
    check_refused(dir / "long.tnet", ModelFileError::Kind::corrupted, "checksum mismatch");
    check_signature_refused(dir / "long.tnet", ModelFileError::Kind::corrupted);
  }
  SUBCASE("a newer format version") {
    std::string newer = bytes;
    newer[8] = char(model_format_version + 1);
    write(dir / "newer.tnet", newer);
    check_refused(dir / "newer.tnet", ModelFileError::Kind::newer_version, "newer tnet");
  }
  SUBCASE("another architecture") {
    Wider wider(1);
    save_model(dir / "wider.tnet", wider);
    check_refused(dir / "wider.tnet", ModelFileError::Kind::architecture_mismatch,
                  "layer line 8: the file has 'Dense(6) -> (None, 6)', this network has 'Dense(5) -> (None, 5)'");
  }
  SUBCASE("another optimizer") {
    SGD sgd;
    train(net, adam, 0);
    Net other(4);
    const Buffer x = test::random_values(batch * Net::input_shape::size, 1);
    const float targets[15] = {};
    other.train_step(x, targets, batch, sgd);
    save_model(dir / "sgd.tnet", other, {}, &sgd);
    check_refused(dir / "sgd.tnet", ModelFileError::Kind::optimizer_mismatch, "SGD");
  }
}

TEST_CASE("a model with the run-time width records it, and loads back at that width only") {
  TempDir dir;
  AnyWidth trained(Outputs{5}, 1);
  Adam adam;
  save_model(dir / "five.tnet", trained, {}, &adam);
  CHECK(read_model_outputs(dir / "five.tnet") == 5);
  AnyWidth loaded(Outputs{read_model_outputs(dir / "five.tnet")}, 2);
  load_model(dir / "five.tnet", loaded, &adam);
  const Buffer x = test::random_values(batch * Net::input_size, 5);
  const std::span<const float> a = trained.predict(x, batch), b = loaded.predict(x, batch);
  CHECK(std::equal(a.begin(), a.end(), b.begin(), b.end()));
  AnyWidth six(Outputs{6}, 3);
  CHECK_THROWS_WITH_AS(load_model(dir / "five.tnet", six),
                       doctest::Contains("layer line 8: the file has 'Dense(5) -> (None, 5)', this network has 'Dense(6) -> (None, 6)'"),
                       ModelFileError);
  // A file of the fixed-width network with the same architecture is the same file.
  Net fixed(4);
  save_model(dir / "fixed.tnet", fixed);
  AnyWidth from_fixed(Outputs{read_model_outputs(dir / "fixed.tnet")}, 5);
  load_model(dir / "fixed.tnet", from_fixed);
  const std::span<const float> c = fixed.predict(x, batch), d = from_fixed.predict(x, batch);
  CHECK(std::equal(c.begin(), c.end(), d.begin(), d.end()));
}

TEST_CASE("saving to a path that cannot be written throws naming it and leaves the old file and no other") {
  Net net(1);
  CHECK_THROWS_WITH_AS(save_model("/nonexistent-dir/model.tnet", net),
                       doctest::Contains("/nonexistent-dir/model.tnet: cannot write the model file"), FileError);
  CHECK(!fs::exists("/nonexistent-dir"));
  // A name of 250 characters can hold the model, not its temporary file: the save fails after
  // the old file is in place, which stays as it was.
  TempDir dir;
  const std::string path = dir / std::string(250, 'm');
  write(path, "the old model");
  CHECK_THROWS_WITH_AS(save_model(path, net), doctest::Contains(": cannot write the model file: cannot create"), FileError);
  CHECK(read(path) == "the old model");
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);
}

TEST_CASE("AtomicFile replaces regular files only: a link, a FIFO or a folder is refused and left as it was") {
  TempDir dir;
  write(dir / "target", "the user's file");
  fs::create_symlink(dir / "target", dir / "link");
  CHECK_THROWS_WITH_AS(write_file(dir / "link", "new"), doctest::Contains("link: cannot write the file: it is a symbolic link"), FileError);
  CHECK(fs::is_symlink(dir / "link"));
  CHECK(read(dir / "target") == "the user's file");
  REQUIRE(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
  CHECK_THROWS_WITH_AS(write_file(dir / "fifo", "new"), doctest::Contains("it is a FIFO, not a regular file"), FileError);
  CHECK(fs::is_fifo(dir / "fifo"));
  fs::create_directory(dir / "folder");
  CHECK_THROWS_WITH_AS(write_file(dir / "folder", "new"), doctest::Contains("it is a folder"), FileError);
  // A link put in place of the target while the file was written: refused at the rename.
  {
    AtomicFile file(dir / "late", "model file");
    file.write("new");
    fs::create_symlink(dir / "target", dir / "late");
    CHECK_THROWS_WITH_AS(file.commit(), doctest::Contains("late: cannot write the model file: it is a symbolic link"), FileError);
  }
  CHECK(fs::is_symlink(dir / "late"));
  CHECK(read(dir / "target") == "the user's file");
  // Nothing else written: no temporary file left.
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 5);
  // A regular file is replaced.
  write_file(dir / "target", "new");
  CHECK(read(dir / "target") == "new");
}

TEST_CASE("non-finite weights: never saved, never loaded") {
  TempDir dir;
  Net net(1);
  save_model(dir / "good.tnet", net);
  const std::string good = read(dir / "good.tnet");
  // A NaN in a kernel, with a valid checksum: as a bug or a hand-made file would have it.
  std::string bad = good;
  const std::size_t at =
      bad.find("0.conv2d.kernel") + std::string("0.conv2d.kernel").size() + 1 + 8 + 4 * 5;  // name, dtype, count, 5 floats in
  const std::uint32_t nan_bits = 0x7fc00000u;
  std::memcpy(bad.data() + at, &nan_bits, 4);
  const std::uint64_t checksum = fnv1a64(bad.data() + 32, bad.size() - 32);
  std::memcpy(bad.data() + 24, &checksum, 8);
  write(dir / "nan.tnet", bad);
  check_refused(dir / "nan.tnet", ModelFileError::Kind::not_finite, "model file's tensor 0.conv2d.kernel holds NaN or infinity");

  net.parameters().tensors[2].value[0] = std::numeric_limits<float>::infinity();  // 2.batchnorm.gamma
  CHECK_THROWS_WITH_AS(save_model(dir / "good.tnet", net), doctest::Contains("refusing to save a model whose 2.batchnorm.gamma holds NaN"),
                       ModelFileError);
  CHECK(read(dir / "good.tnet") == good);  // the old file stays
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 2);
}

TEST_CASE("header fields: reserved bytes must be zero, a huge promised length is reported as it is") {
  TempDir dir;
  Net net(1);
  save_model(dir / "m.tnet", net);
  std::string bytes = read(dir / "m.tnet");
  bytes[13] = 1;
  write(dir / "reserved.tnet", bytes);
  check_refused(dir / "reserved.tnet", ModelFileError::Kind::corrupted, "header bytes 12-15 are not zero");
  bytes = read(dir / "m.tnet");
  const std::uint64_t huge = ~std::uint64_t{0};
  std::memcpy(bytes.data() + 16, &huge, 8);
  write(dir / "huge.tnet", bytes);
  check_refused(
      dir / "huge.tnet", ModelFileError::Kind::truncated,
      "its header promises 18446744073709551615 bytes after the 32-byte header, the file has " + std::to_string(bytes.size() - 32));
}

TEST_CASE("a FIFO or a device given as a model is refused at once, not waited on") {
  TempDir dir;
  REQUIRE(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
  check_refused(dir / "fifo", ModelFileError::Kind::io, "not a regular file");
  check_refused("/dev/zero", ModelFileError::Kind::io, "not a regular file");
  CHECK_THROWS_WITH_AS(read_model_signature(dir / "fifo"), doctest::Contains("not a regular file"), ModelFileError);
}

TEST_CASE("a network without parameters saves and loads (no copy from an empty tensor)") {
  TempDir dir;
  using Plain = Sequential<Input<2, 2, 1>, ReLU, Flatten, Softmax>;
  Plain net(1);
  CHECK(net.parameters().values.empty());
  save_model(dir / "plain.tnet", net, {"a", "b", "c", "d"});
  Plain loaded(2);
  CHECK(load_model(dir / "plain.tnet", loaded).class_names.size() == 4);
}

TEST_CASE("a model file larger than the network's model can be is refused before it is read") {
  TempDir dir;
  Net net(1);
  save_model(dir / "m.tnet", net);
  std::string bytes = read(dir / "m.tnet");
  bytes.resize(bytes.size() + (100u << 20));  // 100 MB of zeros after a valid model, the header saying so
  const std::uint64_t payload = bytes.size() - 32;
  std::memcpy(bytes.data() + 16, &payload, 8);
  write(dir / "big.tnet", bytes);
  check_refused(dir / "big.tnet", ModelFileError::Kind::corrupted, "bytes, more than a model of this network can hold");
}

namespace {
// A model file's bytes with its payload's length and checksum made right again, as a hand-made
// (hostile) file would have them.
std::string with_valid_checksum(std::string bytes) {
  const std::uint64_t length = bytes.size() - 32, checksum = fnv1a64(bytes.data() + 32, length);
  std::memcpy(bytes.data() + 16, &length, 8);
  std::memcpy(bytes.data() + 24, &checksum, 8);
  return bytes;
}
// The same file with the signature `signature` in place of its own.
std::string with_signature(const std::string& bytes, const std::string& signature) {
  std::uint32_t old_length;
  std::memcpy(&old_length, bytes.data() + 32, 4);
  const auto length = std::uint32_t(signature.size());
  std::string out =
      bytes.substr(0, 32) + std::string(reinterpret_cast<const char*>(&length), 4) + signature + bytes.substr(36 + old_length);
  return with_valid_checksum(out);
}
std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const std::size_t at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}
}  // namespace

TEST_CASE("a small model file claiming a huge output count is refused before memory is taken for it") {
  // What fashion_classify and fashion_export do: construct the network at the file's width, then
  // load. A 1 KB file claiming 1,000,000 outputs once took 8 GB for 40 s before its checksum
  // failed; 2^30 - 1 outputs ended in a bare std::bad_alloc.
  TempDir dir;
  AnyWidth net(Outputs{5}, 1);
  save_model(dir / "five.tnet", net, {"a", "b", "c", "d", "e"});
  const std::string bytes = read(dir / "five.tnet"), signature = net.signature();
  REQUIRE(signature.ends_with("Dense(5) -> (None, 5)\nSigmoid -> (None, 5)\n"));
  const std::string both = "Dense(1000000) -> (None, 1000000)\nSigmoid -> (None, 1000000)\n";
  const struct {
    const char* what;
    std::string signature, words;
  } cases[] = {
      {"the Dense layer and the output", replaced(signature, "Dense(5) -> (None, 5)\nSigmoid -> (None, 5)\n", both),
       "gives 1000000 outputs ('Dense(1000000) -> (None, 1000000)'), whose weights cannot fit in its"},
      {"2^30 - 1",
       replaced(signature, "Dense(5) -> (None, 5)\nSigmoid -> (None, 5)\n",
                "Dense(1073741823) -> (None, 1073741823)\nSigmoid -> (None, 1073741823)\n"),
       "gives 1073741823 outputs"},
      {"the last line only", replaced(signature, "Sigmoid -> (None, 5)", "Sigmoid -> (None, 1000000)"),
       "gives 1000000 outputs ('Sigmoid -> (None, 1000000)')"},
      {"no Dense line", replaced(signature, "Dense(5) -> (None, 5)\nSigmoid -> (None, 5)\n", "Sigmoid -> (None, 1000000)\n"),
       "gives 1000000 outputs ('Sigmoid -> (None, 1000000)')"},
  };
  for (const auto& c : cases) {
    INFO(std::string(c.what));
    const std::string path = dir / "huge.tnet";
    write(path, with_signature(bytes, c.signature));
    CHECK(read(path).size() < 4000);  // a few KB
    const test::ChildRun run = test::in_child([&] {
      AnyWidth loaded(Outputs{read_model_outputs<AnyWidth>(path)}, 2);
      load_model(path, loaded);
    });
    CHECK_MESSAGE(run.message.starts_with(path + ": malformed model file: its signature " + c.words), run.message);
    CHECK(run.peak_growth_mb >= 0);
    CHECK_MESSAGE(run.peak_growth_mb < 64, run.peak_growth_mb << " MB at the peak");
  }
  // A width the file's own signature could hold (a Dense of 1 input), but the network's Dense of
  // 64 inputs could not: read_model_outputs<Net> refuses it.
  const std::string path = dir / "narrow.tnet";
  write(path, with_signature(
                  bytes, replaced(replaced(signature, "Flatten -> (None, 64)", "Flatten -> (None, 1)"),
                                  "Dense(5) -> (None, 5)\nSigmoid -> (None, 5)\n", "Dense(100) -> (None, 100)\nSigmoid -> (None, 100)\n")));
  CHECK(read_model_outputs(path) == 100);
  CHECK(test::error_of([&] { read_model_outputs<AnyWidth>(path); }) ==
        path + ": model file's signature gives 100 outputs ('Dense(100) -> (None, 100)'): this network's 65 floats an output would " +
            "not fit in its " + std::to_string(read(path).size() - 32) + "-byte payload");
  // The file's own signature, with the checksum remade, still reads.
  write(dir / "same.tnet", with_signature(bytes, signature));
  CHECK(read_model_outputs<AnyWidth>(dir / "same.tnet") == 5);
}

TEST_CASE("a model file's counts are checked against the bytes left before anything is allocated") {
  TempDir dir;
  Net net(1);
  save_model(dir / "m.tnet", net, {"a", "b"});
  const std::string bytes = read(dir / "m.tnet");
  std::uint32_t signature_length;
  std::memcpy(&signature_length, bytes.data() + 32, 4);
  const std::size_t class_count_at = 32 + 4 + signature_length + 8 + 8;
  std::string claimed = bytes;
  const std::uint32_t billions = 4000000000u;
  std::memcpy(claimed.data() + class_count_at, &billions, 4);
  write(dir / "labels.tnet", with_valid_checksum(claimed));
  check_refused(dir / "labels.tnet", ModelFileError::Kind::corrupted, "malformed model file: 4000000000 class names in ");
  // Two tensors of one name: refused, not the last one taken.
  std::string twice = bytes;
  const std::size_t at = twice.find("2.batchnorm.biased_mean");
  REQUIRE(at != std::string::npos);
  twice.replace(at, 23, "2.batchnorm.moving_mean");
  write(dir / "twice.tnet", with_valid_checksum(twice));
  check_refused(dir / "twice.tnet", ModelFileError::Kind::corrupted, "malformed model file: two tensors named 2.batchnorm.moving_mean");
}

TEST_CASE("out of memory while reading a model names what was being allocated, how much and the file") {
  CHECK(detail::byte_count(512) == "512 bytes");
  CHECK(detail::byte_count(3u << 20) == "3.0 MB");
  CHECK(detail::byte_count(std::uint64_t(4) << 30) == "4.0 GB");
  try {
    detail::allocating(std::uint64_t(4) << 30, "the weights of layer 7.dense", "model.tnet", []() -> int { throw std::bad_alloc(); });
    FAIL("no error");
  } catch (const std::bad_alloc& e) {  // an AllocationError is still a std::bad_alloc
    CHECK(std::string(e.what()) == "cannot allocate 4.0 GB for the weights of layer 7.dense of model.tnet");
  }
  std::uint64_t product = 0;
  CHECK(detail::checked_mul(std::uint64_t(1) << 40, std::uint64_t(1) << 20, product));
  CHECK(product == std::uint64_t(1) << 60);
  CHECK(!detail::checked_mul(std::uint64_t(1) << 40, std::uint64_t(1) << 40, product));
  CHECK(!detail::checked_mul(1000, 1000, product, 999999));
  CHECK(!detail::checked_add(~std::uint64_t{0}, 1, product));
}
