// The data side: decoding messy files, folders and lists of photos, labels, splits,
// augmentation with known answers, batches; and the real fashion photos when ../shared has them.
#include "support.hpp"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

using namespace tnet;
namespace fs = std::filesystem;

namespace {

using test::TempDir;

// Appended in place: GCC 12 warns (-Warray-bounds, wrongly) about `std::string(...) + "/"` at -O2.
std::string fixture(const std::string& name) {
  std::string path = TNET_FIXTURE_DIR;
  path += '/';
  path += name;
  return path;
}

// A w x h RGB image filled with one colour.
Image solid(int w, int h, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
  Image im{w, h, std::vector<std::uint8_t>(std::size_t(w) * h * 3)};
  for (std::size_t i = 0; i < im.pixels.size(); i += 3) im.pixels[i] = r, im.pixels[i + 1] = g, im.pixels[i + 2] = b;
  return im;
}

using test::error_of;

}  // namespace

TEST_CASE("decoding: PNG with alpha composited over white") {
  TempDir dir("png_alpha");
  // 3 pixels: opaque red, fully transparent (hidden black), half-transparent blue.
  const std::uint8_t rgba[] = {255, 0, 0, 255, 0, 0, 0, 0, 0, 0, 255, 128};
  REQUIRE(stbi_write_png((dir / "alpha.png").c_str(), 3, 1, 4, rgba, 12));
  const Image im = read_image(dir / "alpha.png");
  CHECK(im.width == 3);
  CHECK(im.height == 1);
  CHECK(std::vector<int>(im.pixels.begin(), im.pixels.end()) == std::vector<int>{255, 0, 0, 255, 255, 255, 127, 127, 255});
}

TEST_CASE("decoding: grayscale and progressive JPEG, GIF's first frame, BMP, a JPEG named .gif") {
  SUBCASE("grayscale JPEG: three equal channels") {
    const Image im = read_image(fixture("grayscale.jpg"));
    CHECK(im.width == 11);
    CHECK(im.height == 7);
    for (int x = 0; x < 11; ++x) {
      const std::uint8_t* p = im.at(3, x);
      CHECK(p[0] == p[1]);
      CHECK(p[1] == p[2]);
      CHECK(std::abs(int(p[0]) - 20 * x) <= 6);
    }
  }
  SUBCASE("progressive JPEG") {
    const Image im = read_image(fixture("progressive.jpg"));
    CHECK(im.width == 16);
    CHECK(im.height == 8);
    CHECK(std::abs(int(im.at(4, 2)[0]) - 220) <= 12);  // left: red
    CHECK(std::abs(int(im.at(4, 2)[2]) - 20) <= 12);
    CHECK(std::abs(int(im.at(4, 13)[2]) - 220) <= 12);  // right: blue
  }
  SUBCASE("GIF: the first frame") {
    const Image im = read_image(fixture("two_frames.gif"));
    CHECK(im.width == 6);
    CHECK(std::vector<int>(im.at(2, 2), im.at(2, 2) + 3) == std::vector<int>{255, 0, 0});
  }
  SUBCASE("BMP, and a JPEG whose name ends in .gif: the bytes decide") {
    TempDir dir("formats");
    const Image blue = solid(5, 4, 10, 20, 200);
    REQUIRE(stbi_write_bmp((dir / "blue.bmp").c_str(), 5, 4, 3, blue.pixels.data()));
    CHECK(read_image(dir / "blue.bmp").pixels == blue.pixels);
    test::write(dir / "photo.gif", test::read(fixture("progressive.jpg")));
    CHECK(read_image(dir / "photo.gif").width == 16);
  }
}

TEST_CASE("decoding refuses text, truncated files, unterminated streams and decompression bombs with the file's name") {
  TempDir dir("bad");
  test::write(dir / "notes.jpg", "this is text, not a photo\n");
  CHECK(error_of([&] { read_image(dir / "notes.jpg"); }) == dir / "notes.jpg" + ": not a JPEG, PNG, GIF or BMP image");

  const Image im = solid(40, 30, 1, 2, 3);
  REQUIRE(stbi_write_png((dir / "whole.png").c_str(), 40, 30, 3, im.pixels.data(), 120));
  const std::string png = test::read(dir / "whole.png");
  test::write(dir / "cut.png", png.substr(0, png.size() / 2));
  const std::string cut = error_of([&] { read_image(dir / "cut.png"); });
  CHECK(cut.find(dir / "cut.png" + ": png chunk at byte 33 runs past the end of the file") == 0);

  // A 5x4 PNG with a chunk claiming more bytes than the file has: stb would allocate them first
  // (2 GB; fuzz_image found it).
  const std::string past_end = std::string(TNET_FIXTURE_DIR) + "/fuzz/image/chunk_past_end.png";
  CHECK(error_of([&] { read_image(past_end); }).find(past_end + ": png chunk at byte 79 runs past the end of the file") == 0);
  // The 40x30 image with its compressed pixels cut in half, the chunks kept whole: stb's inflater
  // would decode on past the end of the stream.
  const std::size_t idat_length = std::size_t(std::uint8_t(png[35])) << 8 | std::uint8_t(png[36]);
  REQUIRE(png.compare(37, 4, "IDAT") == 0);
  const std::size_t half = idat_length / 2;
  std::string unterminated = png.substr(0, 33) + std::string{0, 0, char(half >> 8), char(half & 0xFF)} + "IDAT" + png.substr(41, half) +
                             std::string(4, '\0') + png.substr(png.size() - 12);
  test::write(dir / "unterminated.png", unterminated);
  CHECK(error_of([&] { read_image(dir / "unterminated.png"); }) ==
        dir / "unterminated.png" + ": png pixel data is truncated (its compressed stream does not end)");
  // One that inflates to more than its rows: the 40x30 image's stream under a 4x3 header.
  std::string small = png;
  const unsigned char four_by_three[8] = {0, 0, 0, 4, 0, 0, 0, 3};
  for (int i = 0; i < 8; ++i) small[16 + i] = char(four_by_three[i]);
  test::write(dir / "small.png", small);
  CHECK(error_of([&] { read_image(dir / "small.png"); }).find(dir / "small.png" + ": png pixel data inflates beyond the 39 bytes") == 0);

  // A valid PNG whose header claims 60000 x 60000 pixels: refused before any decoding.
  std::string bomb = png;
  const unsigned char side[4] = {0x00, 0x00, 0xEA, 0x60};  // 60000, big-endian, at IHDR's width and height
  for (int i = 0; i < 4; ++i) bomb[16 + i] = char(side[i]), bomb[20 + i] = char(side[i]);
  test::write(dir / "bomb.png", bomb);
  const std::string refused = error_of([&] { read_image(dir / "bomb.png"); });
  INFO(refused);
  CHECK(refused.find("60000x60000 pixels is beyond the limit") != std::string::npos);

  CHECK(error_of([&] { read_image(dir / "absent.png"); }) == dir / "absent.png" + ": cannot open: No such file or directory");
}

TEST_CASE("resizing a large photo averages rather than samples") {
  // A 1-pixel checkerboard: any point sampling gives 0 or 255; an anti-aliased filter gives grey.
  Image board{300, 200, std::vector<std::uint8_t>(300 * 200 * 3)};
  for (int y = 0; y < 200; ++y)
    for (int x = 0; x < 300; ++x) std::fill_n(board.at(y, x), 3, std::uint8_t((x + y) % 2 ? 255 : 0));
  const Image small = resize_image(board, 30, 20);
  CHECK(small.width == 30);
  CHECK(small.height == 20);
  for (std::uint8_t v : small.pixels) {
    CHECK(v >= 110);
    CHECK(v <= 145);
  }
}

TEST_CASE("a folder of class folders: labels from names, broken files skipped and named, others ignored") {
  TempDir dir("folder");
  fs::create_directories(dir.path / "red_dress" / "more");
  fs::create_directories(dir.path / "blue_jeans");
  const Image red = solid(20, 30, 250, 0, 0), blue = solid(8, 8, 0, 0, 250);
  REQUIRE(stbi_write_png((dir / "red_dress/a.png").c_str(), 20, 30, 3, red.pixels.data(), 60));
  REQUIRE(stbi_write_png((dir / "red_dress/more/b.PNG").c_str(), 20, 30, 3, red.pixels.data(), 60));
  REQUIRE(stbi_write_png((dir / "blue_jeans/c.png").c_str(), 8, 8, 3, blue.pixels.data(), 24));
  test::write(dir / "blue_jeans/broken.jpg", "not a photo");
  test::write(dir / "blue_jeans/notes.txt", "ignored");

  LoadReport report;
  const LabeledImages data = load_image_folder(dir.path.string(), LoadOptions{.size = 12, .separator = '_', .limits = {}}, &report);
  CHECK(data.count() == 3);
  CHECK(data.size == 12);
  CHECK(data.pixels.size() == 3 * 12 * 12 * 3);
  CHECK(report.loaded == 3);
  CHECK(report.ignored == 1);
  REQUIRE(report.skipped.size() == 1);
  CHECK(report.skipped[0].path == dir / "blue_jeans/broken.jpg");
  CHECK(report.label_counts == std::map<std::string, std::size_t>{{"blue", 1}, {"dress", 2}, {"jeans", 1}, {"red", 2}});
  // Sorted paths: blue_jeans/c.png first.
  CHECK(data.labels[0] == std::vector<std::string>{"blue", "jeans"});
  CHECK(data.image(0)[2] == 250);
  CHECK(data.labels[2] == std::vector<std::string>{"red", "dress"});
  std::ostringstream printed;
  report.print(printed);
  CHECK(printed.str().find("broken.jpg: not a JPEG, PNG, GIF or BMP image") != std::string::npos);

  CHECK(error_of([&] { load_image_folder(dir / "absent"); }).find("dataset folder does not exist") != std::string::npos);
  fs::create_directories(dir.path / "empty");
  CHECK(error_of([&] { load_image_folder(dir / "empty"); }).find("no image files") != std::string::npos);
}

TEST_CASE("a list file of path,labels") {
  TempDir dir("list");
  const Image im = solid(10, 10, 5, 5, 5);
  REQUIRE(stbi_write_png((dir / "x.png").c_str(), 10, 10, 3, im.pixels.data(), 30));
  REQUIRE(stbi_write_png((dir / "y.png").c_str(), 10, 10, 3, im.pixels.data(), 30));
  test::write(dir / "list.csv", "path,labels\nx.png,cat|outdoor|night\n# a comment\ny.png,dog\n");
  const LabeledImages data = load_image_list(dir / "list.csv", LoadOptions{.size = 4, .separator = '_', .limits = {}});
  REQUIRE(data.count() == 2);
  CHECK(data.labels[0] == std::vector<std::string>{"cat", "outdoor", "night"});
  CHECK(data.labels[1] == std::vector<std::string>{"dog"});
  test::write(dir / "bad.csv", "x.png,cat\nno comma here\n");
  CHECK(error_of([&] { load_image_list(dir / "bad.csv"); }) ==
        dir / "bad.csv" + ":2: expected 'path,label1|label2|...', got 'no comma here'");
}

TEST_CASE("MultiLabelBinarizer reproduces the tutorial's mapping and round-trips through its file") {
  const std::vector<std::vector<std::string>> sets = {{"red", "dress"}, {"blue", "jeans"}, {"black", "jeans"}, {"blue", "shirt"}};
  MultiLabelBinarizer mlb;
  const std::vector<float> y = mlb.fit_transform(sets);
  CHECK(mlb.classes() == std::vector<std::string>{"black", "blue", "dress", "jeans", "red", "shirt"});
  CHECK(std::vector<float>(y.begin(), y.begin() + 6) == std::vector<float>{0, 0, 1, 0, 1, 0});
  const float probabilities[] = {0.1f, 0.9f, 0.2f, 0.7f, 0.3f, 0.0f};
  CHECK(mlb.inverse_transform(probabilities, 1)[0] == std::vector<std::string>{"blue", "jeans"});
  CHECK(mlb.inverse_transform(probabilities, 1, 0.8f)[0] == std::vector<std::string>{"blue"});

  CHECK(error_of([&] { mlb.transform({{"green"}}); }).find("unknown label 'green'") != std::string::npos);
  CHECK(mlb.transform({{"green", "red"}}, MultiLabelBinarizer::Unknown::ignore) == std::vector<float>{0, 0, 0, 0, 1, 0});

  TempDir dir("mlb");
  mlb.save(dir / "labels.txt");
  CHECK(MultiLabelBinarizer::load(dir / "labels.txt").classes() == mlb.classes());
  test::write(dir / "other.txt", "red\nblue\n");
  CHECK(error_of([&] { MultiLabelBinarizer::load(dir / "other.txt"); }).find("not a tnet label file") != std::string::npos);
}

TEST_CASE("train_test_split: reproducible, disjoint, sized as scikit-learn, and stratified keeps proportions") {
  const Split a = train_test_split(101, 0.2, 42), b = train_test_split(101, 0.2, 42), c = train_test_split(101, 0.2, 43);
  CHECK(a.test.size() == 21);  // ceil(101 * 0.2)
  CHECK(a.train.size() == 80);
  CHECK(a.test == b.test);
  CHECK(a.test != c.test);
  std::vector<std::size_t> all = a.train;
  all.insert(all.end(), a.test.begin(), a.test.end());
  std::sort(all.begin(), all.end());
  for (std::size_t i = 0; i < all.size(); ++i) CHECK(all[i] == i);

  std::vector<std::vector<std::string>> labels;
  for (int i = 0; i < 100; ++i) labels.push_back(i < 70 ? std::vector<std::string>{"red", "dress"} : std::vector<std::string>{"blue"});
  const Split s = train_test_split(labels, 0.2, 7);
  CHECK(s.test.size() == 20);
  CHECK(std::count_if(s.test.begin(), s.test.end(), [](std::size_t i) { return i < 70; }) == 14);
  CHECK_THROWS_AS(train_test_split(10, 1.5, 1), std::invalid_argument);
}

namespace {
// An 8x8 one-channel image with one bright pixel at (r, c).
std::vector<std::uint8_t> dot(int r, int c, int side = 8) {
  std::vector<std::uint8_t> im(std::size_t(side) * side, 0);
  im[std::size_t(r) * side + c] = 200;
  return im;
}
std::vector<float> warp(const AffineTransform& t, const std::vector<std::uint8_t>& src, int side, FillMode mode = FillMode::nearest,
                        float cval = 0) {
  AugmentOptions o;
  o.fill_mode = mode;
  o.cval = cval;
  std::vector<float> out(src.size());
  Augmenter(o).apply(t, src.data(), side, side, 1, out.data(), 1.0f);
  return out;
}
std::pair<int, int> brightest(const std::vector<float>& im, int side) {
  const auto at = std::max_element(im.begin(), im.end()) - im.begin();
  return {int(at) / side, int(at) % side};
}
}  // namespace

TEST_CASE("augmentation known answers") {
  const int side = 8;
  std::vector<std::uint8_t> pattern(side * side);
  for (int i = 0; i < side * side; ++i) pattern[i] = std::uint8_t(3 * i + (i % 5));  // asymmetric
  const std::vector<float> original(pattern.begin(), pattern.end());

  SUBCASE("zero ranges give the identity") {
    const Augmenter none{AugmentOptions{}};
    const AffineTransform t = none.draw(Rng(1), side, side);
    std::vector<float> out(pattern.size());
    none.apply(t, pattern.data(), side, side, 1, out.data(), 1.0f);
    CHECK(out == original);
  }
  SUBCASE("a horizontal flip twice is the identity; once mirrors the columns") {
    AffineTransform flip;
    flip.flip_horizontal = true;
    const std::vector<float> once = warp(flip, pattern, side);
    CHECK(once[0 * side + 0] == original[0 * side + 7]);
    std::vector<std::uint8_t> as_bytes(once.begin(), once.end());
    CHECK(warp(flip, as_bytes, side) == original);
  }
  SUBCASE("a 90-degree rotation: output (r, c) reads input (2 c0 - c, r - c0 + c0) about Keras's centre") {
    AffineTransform t;
    t.theta = 90;
    const std::vector<float> out = warp(t, pattern, side);
    const double c0 = side / 2.0 + 0.5;  // 4.5: Keras's off-by-one centre
    for (int r = 0; r < side; ++r)
      for (int c = 0; c < side; ++c) {
        const int from_r = int(2 * c0) - c, from_c = r;  // in = c0 + R (p - c0), R = [[0, -1], [1, 0]]
        if (from_r < 0 || from_r >= side) continue;
        CHECK(out[r * side + c] == doctest::Approx(original[from_r * side + from_c]).epsilon(1e-4));
      }
  }
  SUBCASE("a shift of k pixels moves a dot by k (pull map: the content moves by -k)") {
    AffineTransform t;
    t.tx = 2;   // rows
    t.ty = -3;  // columns
    CHECK(brightest(warp(t, dot(4, 2), side), side) == std::pair<int, int>{2, 5});
  }
  SUBCASE("zoom 0.5 doubles a square's side, zoom 2 halves it") {
    // An 8-pixel square centred on Keras's centre (16.5, 16.5) of a 32x32 image.
    const int big = 32;
    std::vector<std::uint8_t> square(big * big, 0);
    for (int r = 13; r <= 20; ++r)
      for (int c = 13; c <= 20; ++c) square[r * big + c] = 255;
    auto side_of = [&](const std::vector<float>& im) {
      int n = 0;
      for (int c = 0; c < big; ++c) n += im[16 * big + c] > 127.5f;
      return n;
    };
    CHECK(side_of(warp(AffineTransform{}, square, big)) == 8);
    AffineTransform in;
    in.zx = in.zy = 0.5;
    CHECK(side_of(warp(in, square, big)) == 16);
    AffineTransform out;
    out.zx = out.zy = 2.0;
    CHECK(side_of(warp(out, square, big)) == 4);
  }
  SUBCASE("fill modes: what a shift brings in from outside") {
    std::vector<std::uint8_t> ramp(side * side);
    for (int r = 0; r < side; ++r)
      for (int c = 0; c < side; ++c) ramp[r * side + c] = std::uint8_t(10 * (c + 1));  // columns 10, 20, ..., 80
    AffineTransform t;
    t.ty = -2;  // output column c reads input column c - 2
    auto row = [&](FillMode mode) {
      const std::vector<float> out = warp(t, ramp, side, mode, 99);
      return std::vector<float>(out.begin() + 3 * side, out.begin() + 4 * side);
    };
    CHECK(row(FillMode::nearest) == std::vector<float>{10, 10, 10, 20, 30, 40, 50, 60});
    CHECK(row(FillMode::reflect) == std::vector<float>{20, 10, 10, 20, 30, 40, 50, 60});
    CHECK(row(FillMode::wrap) == std::vector<float>{70, 80, 10, 20, 30, 40, 50, 60});
    CHECK(row(FillMode::constant) == std::vector<float>{99, 99, 10, 20, 30, 40, 50, 60});
  }
  SUBCASE("the tutorial's draws stay in their ranges") {
    const Augmenter keras(AugmentOptions::keras_tutorial());
    int flips = 0;
    for (int i = 0; i < 400; ++i) {
      const AffineTransform t = keras.draw(Rng(5).derive(i), 96, 96);
      CHECK(std::abs(t.theta) <= 25);
      CHECK(std::abs(t.tx) <= 9.6);
      CHECK(std::abs(t.ty) <= 9.6);
      CHECK(std::abs(t.shear) <= 0.2);
      CHECK(t.zx >= 0.8);
      CHECK(t.zy <= 1.2);
      CHECK(!t.flip_vertical);
      flips += t.flip_horizontal;
    }
    CHECK(flips > 160);
    CHECK(flips < 240);
  }
}

TEST_CASE("batches: shuffled per epoch, seeded, augmented identically for any thread count") {
  LabeledImages data;
  data.size = 16;
  const int count = 10;
  data.pixels.resize(count * data.image_bytes());
  for (std::size_t i = 0; i < data.pixels.size(); ++i) data.pixels[i] = std::uint8_t((i * 7) % 251);
  std::vector<float> targets;
  for (int i = 0; i < count; ++i) {
    data.paths.push_back(std::to_string(i));
    data.labels.push_back({});
    targets.push_back(float(i));
  }
  std::vector<std::size_t> all(count);
  std::iota(all.begin(), all.end(), std::size_t{0});

  auto epoch = [&](int threads, std::uint64_t seed, std::uint64_t number, bool augment) {
    set_num_threads(threads);
    BatchIterator::Options o;
    o.batch_size = 4;
    o.seed = seed;
    if (augment) o.augmenter.emplace(AugmentOptions::keras_tutorial());
    BatchIterator it(data, targets, 1, all, o);
    it.start_epoch(number);
    std::vector<float> xs, ys;
    for (int n; (n = it.next()) > 0;) {
      REQUIRE(it.x().size() == n * data.image_bytes());
      REQUIRE(it.y().size() == std::size_t(n));
      xs.insert(xs.end(), it.x().begin(), it.x().end());
      ys.insert(ys.end(), it.y().begin(), it.y().end());
    }
    return std::pair{xs, ys};
  };
  const int original = num_threads();
  const auto plain = epoch(1, 1, 0, false);
  CHECK(plain.second.size() == 10);  // 4 + 4 + 2: the last partial batch kept
  std::vector<float> sorted = plain.second;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  CHECK(plain.second != std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});  // shuffled
  const int first = int(plain.second[0]);
  for (std::size_t i = 0; i < data.image_bytes(); ++i) {  // unaugmented: the one pixel-to-input conversion
    INFO(i);
    REQUIRE(plain.first[i] == to_input(data.image(std::size_t(first))[i]));
  }
  CHECK(to_input(255) == 1.0f);
  CHECK(to_input(51) == doctest::Approx(0.2).epsilon(1e-7));

  CHECK(epoch(1, 1, 1, false).second != plain.second);  // another epoch, another order
  const auto augmented = epoch(1, 1, 0, true);
  CHECK(augmented.second == plain.second);
  CHECK(augmented.first != plain.first);
  CHECK(epoch(2, 1, 0, true) == augmented);
  CHECK(epoch(3, 1, 0, true) == augmented);
  set_num_threads(original);

  BatchIterator::Options full;
  full.batch_size = 4;
  full.drop_last = true;
  BatchIterator it(data, targets, 1, all, full);
  CHECK(it.batches_per_epoch() == 2);
}

// ---- the real photos, when ../shared is beside the checkout ----------------------------------
namespace {
const std::string fashion = std::string(TNET_SHARED_DIR) + "/datasets/fashion/dataset";
bool have_fashion() {
  if (fs::is_directory(fashion)) return true;
  MESSAGE("SKIPPED: " << fashion << " is absent");
  return false;
}
}  // namespace

TEST_CASE("the tutorial's 2160 real photos all load, with the README's label counts") {
  if (!have_fashion()) return;
  LoadReport report;
  const LabeledImages data = load_image_folder(fashion, LoadOptions{.size = 96, .separator = '_', .limits = {}}, &report);
  CHECK(report.loaded == 2160);
  CHECK(report.skipped.empty());
  CHECK(data.pixels.size() == 2160u * 96 * 96 * 3);
  const std::map<std::string, std::size_t> expected = {{"black", 344},       {"blue", 385 + 355 + 368}, {"dress", 385 + 380},
                                                       {"jeans", 344 + 355}, {"red", 380 + 328},        {"shirt", 368 + 328}};
  CHECK(report.label_counts == expected);
  MultiLabelBinarizer mlb;
  mlb.fit(data.labels);
  CHECK(mlb.classes() == std::vector<std::string>{"black", "blue", "dress", "jeans", "red", "shirt"});
}

TEST_CASE("a copy of the real photos with broken files added: the 2160 good ones load, each broken one is named") {
  if (!have_fashion()) return;
  TempDir dir("fashion_copy");
  for (const fs::directory_entry& cls : fs::directory_iterator(fashion)) {
    if (!cls.is_directory()) continue;
    fs::create_directories(dir.path / cls.path().filename());
    for (const fs::directory_entry& file : fs::directory_iterator(cls.path()))
      fs::create_symlink(fs::absolute(file.path()), dir.path / cls.path().filename() / file.path().filename());
  }
  // Broken: text named .jpg, a truncated PNG, a zero-byte file; ignored: a README.
  test::write(dir / "red_dress/zz_text.jpg", "<html>not an image</html>");
  const Image im = solid(30, 30, 1, 2, 3);
  REQUIRE(stbi_write_png((dir / "whole.png").c_str(), 30, 30, 3, im.pixels.data(), 90));
  const std::string png = test::read(dir / "whole.png");
  fs::remove(dir / "whole.png");
  test::write(dir / "blue_jeans/zz_cut.png", png.substr(0, png.size() / 2));
  test::write(dir / "black_jeans/zz_empty.jpeg", "");
  test::write(dir / "black_jeans/README.md", "not an image");
  LoadReport report;
  load_image_folder(dir.path.string(), LoadOptions{.size = 96, .separator = '_', .limits = {}}, &report);
  CHECK(report.loaded == 2160);
  CHECK(report.ignored == 1);
  REQUIRE(report.skipped.size() == 3);
  std::vector<std::string> names;
  for (const SkippedFile& s : report.skipped) names.push_back(fs::path(s.path).filename().string());
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"zz_cut.png", "zz_empty.jpeg", "zz_text.jpg"});
}

TEST_CASE("one pixel-to-input conversion: batches, augmentation and classification feed the same values") {
  TempDir dir("input");
  Image photo = solid(50, 30, 0, 0, 0);
  for (std::size_t i = 0; i < photo.pixels.size(); ++i) photo.pixels[i] = std::uint8_t((i * 37) % 256);
  fs::create_directories(dir.path / "red_dress");
  write_png(dir / "red_dress/a.png", photo);
  const LabeledImages data = load_image_folder(dir.path.string(), LoadOptions{.size = 16, .separator = '_', .limits = {}});
  // What fashion_classify feeds the network: the file, resized to the input size, converted.
  const Image small = resize_image(read_image(dir / "red_dress/a.png"), 16, 16);
  std::vector<float> classified(small.pixels.size());
  pixels_to_input(small.pixels, classified);
  // What validation feeds it: a batch.
  BatchIterator::Options o;
  o.shuffle = false;
  BatchIterator batches(data, {1.0f}, 1, {0}, o);
  REQUIRE(batches.next() == 1);
  CHECK(std::equal(classified.begin(), classified.end(), batches.x().begin(), batches.x().end()));
  // What training feeds it without any transformation: augmentation's identity.
  std::vector<float> augmented(classified.size());
  const Augmenter none(AugmentOptions{});
  none.apply(none.draw(Rng(1), 16, 16), data.image(0), 16, 16, 3, augmented.data());
  CHECK(augmented == classified);
  CHECK(error_of([&] { pixels_to_input(small.pixels, std::span(augmented).first(3)); }) ==
        "tnet::pixels_to_input: 768 pixel values into 3 inputs");
}

TEST_CASE("AtomicFile: the target changes only on commit, temporary names are unique, nothing is left behind") {
  TempDir dir("atomic");
  const std::string path = dir / "out.txt";
  write_file(path, "old");
  auto files = [&] { return std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()); };
  {
    AtomicFile a(path), b(path);  // two writers of one file at once
    a.write("first");
    b.write("second");
    CHECK(files() == 3);  // the target and two temporary files
    CHECK(test::read(path) == "old");
    a.commit();
    CHECK(test::read(path) == "first");
    b.commit();
  }
  CHECK(test::read(path) == "second");
  CHECK(files() == 1);
  {
    AtomicFile c(path);
    c.write(std::string(3 << 20, 'x'));  // past its buffer
    c.write_at(1, "yz", 2);
    CHECK(c.size() == 3u << 20);
    // destroyed without commit, as on an exception
  }
  CHECK(test::read(path) == "second");
  CHECK(files() == 1);
  {
    AtomicFile d(path);
    d.write(std::string(3 << 20, 'x'));
    d.write_at(1, "yz", 2);
    d.write("!");
    d.commit();
  }
  const std::string written = test::read(path);
  CHECK(written.size() == (3u << 20) + 1);
  CHECK(written.substr(0, 4) == "xyzx");
  CHECK(written.back() == '!');
  CHECK(error_of([&] {
          write_file(dir / "no-such-folder/x.txt", "x", "history");
        }).starts_with(dir / "no-such-folder/x.txt: cannot write the history: cannot create"));
  // The writers of PNGs and label files go through it.
  CHECK(error_of([&] { write_png(dir / "no-such-folder/x.png", solid(2, 2, 1, 2, 3)); }).find("x.png: cannot write the PNG") !=
        std::string::npos);
  CHECK(error_of([&] { MultiLabelBinarizer({"a"}).save(dir / "no-such-folder/l.txt"); }).find("l.txt: cannot write the label file") !=
        std::string::npos);
  write_png(dir / "x.png", solid(3, 2, 1, 2, 3));
  CHECK(read_image(dir / "x.png").pixels == solid(3, 2, 1, 2, 3).pixels);
  CHECK(files() == 2);
}

TEST_CASE("a split by name: written as paths relative to the dataset, read back as the same indices") {
  LabeledImages data;
  data.size = 1;
  for (const char* p : {"/data/a_b/1.png", "/data/a_b/2.png", "/data/c_d/3.png", "/data/c_d/4.png", "/data/c_d/5.png"}) {
    data.paths.push_back(p);
    data.labels.push_back({});
  }
  data.pixels.resize(data.count() * data.image_bytes());
  TempDir dir("split");
  write_split_list(dir / "val.txt", data, {1, 3}, "/data");
  CHECK(test::read(dir / "val.txt") == "a_b/2.png\nc_d/4.png\n");
  Split s = read_split(data, "/data", dir / "val.txt");
  CHECK(s.test == std::vector<std::size_t>{1, 3});
  CHECK(s.train == std::vector<std::size_t>{0, 2, 4});
  test::write(dir / "train.txt", "# training\r\nc_d/5.png\r\na_b/1.png\n\n");
  s = read_split(data, "/data", dir / "val.txt", dir / "train.txt");
  CHECK(s.train == std::vector<std::size_t>{0, 4});
  test::write(dir / "twice.txt", "a_b/1.png\nc_d/4.png\n");
  CHECK(error_of([&] { read_split(data, "/data", dir / "val.txt", dir / "twice.txt"); }) ==
        dir / "twice.txt" + ":2: 'c_d/4.png' is in both the training and the validation list");
  test::write(dir / "unknown.txt", "a_b/9.png\n");
  CHECK(error_of([&] { read_split(data, "/data", dir / "unknown.txt"); }) ==
        dir / "unknown.txt" + ":1: 'a_b/9.png' is not among the images loaded from /data");
  test::write(dir / "all.txt", "a_b/1.png\na_b/2.png\nc_d/3.png\nc_d/4.png\nc_d/5.png\n");
  CHECK(error_of([&] { read_split(data, "/data", dir / "all.txt"); }) == dir / "all.txt" + ": lists every image, leaving none to train on");
}

TEST_CASE("reading is bounded: FIFOs and devices refused at once, a large file that is no image costs one small read") {
  TempDir dir("bounded");
  REQUIRE(::mkfifo((dir / "fifo.jpg").c_str(), 0600) == 0);
  CHECK(error_of([&] { read_image(dir / "fifo.jpg"); }) ==
        dir / "fifo.jpg" + ": cannot open: not a regular file (a FIFO, a device or a folder)");
  CHECK(error_of([&] { read_image("/dev/zero"); }).find("not a regular file") != std::string::npos);
  // 200 MB of nothing named .jpg (sparse: no disk used): refused after 16 bytes.
  {
    std::ofstream(dir / "empty.jpg");
    fs::resize_file(dir / "empty.jpg", 200'000'000);
  }
  CHECK(error_of([&] { read_image(dir / "empty.jpg"); }) == dir / "empty.jpg" + ": not a JPEG, PNG, GIF or BMP image");
  ImageLimits small;
  small.max_file_bytes = 10;
  write_png(dir / "big.png", solid(100, 100, 1, 2, 3));
  CHECK(error_of([&] { read_image(dir / "big.png", small); }).find("bytes, more than the 10 an image file may have") != std::string::npos);
  CHECK(read_image(dir / "big.png").width == 100);
}

TEST_CASE("an OS/2 bitmap's 16-bit header is read as such") {
  // BITMAPCOREHEADER (12 bytes): 2x2 pixels, 24 bits, rows bottom-up, each padded to 4 bytes.
  std::string bmp = {'B', 'M'};
  auto le = [&](std::uint32_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) bmp += char((v >> (8 * i)) & 0xff);
  };
  le(14 + 12 + 16, 4), le(0, 4), le(14 + 12, 4);  // file size, reserved, pixel offset
  le(12, 4), le(2, 2), le(2, 2), le(1, 2), le(24, 2);
  const std::uint8_t rows[16] = {255, 0, 0, 0, 255, 0, 0, 0, /* bottom: blue, green */ 0, 0, 255, 255, 255, 255, 0, 0};  // top: red, white
  bmp.append(reinterpret_cast<const char*>(rows), 16);
  const std::vector<std::uint8_t> bytes(bmp.begin(), bmp.end());
  CHECK(image_dimensions(bytes) == std::pair{2, 2});
  const Image im = decode_image(bytes, "os2.bmp");
  REQUIRE(im.width == 2);
  REQUIRE(im.height == 2);
  CHECK(std::vector<int>(im.at(0, 0), im.at(0, 0) + 3) == std::vector<int>{255, 0, 0});
  CHECK(std::vector<int>(im.at(1, 0), im.at(1, 0) + 3) == std::vector<int>{0, 0, 255});
}

TEST_CASE("label files and lists written by other editors: CRLF line ends and a byte-order mark") {
  TempDir dir("crlf");
  test::write(dir / "labels.txt", "\xEF\xBB\xBF# tnet MultiLabelBinarizer v1\r\nblack\r\nblue\r\n");
  CHECK(MultiLabelBinarizer::load(dir / "labels.txt").classes() == std::vector<std::string>{"black", "blue"});
  const Image im = solid(4, 4, 5, 5, 5);
  write_png(dir / "x.png", im);
  test::write(dir / "list.csv", "\xEF\xBB\xBFx.png,cat\r\n");
  CHECK(load_image_list(dir / "list.csv").labels == std::vector<std::vector<std::string>>{{"cat"}});
}

TEST_CASE("a folder with a link loop, a dangling link and an unlistable entry: the rest loads, each is named") {
  TempDir dir("loops");
  fs::create_directories(dir.path / "red_dress" / "deeper");
  write_png(dir / "red_dress/a.png", solid(8, 8, 200, 0, 0));
  write_png(dir / "red_dress/deeper/b.png", solid(8, 8, 200, 0, 0));
  fs::create_directory_symlink(dir.path / "red_dress", dir.path / "red_dress" / "deeper" / "up");  // a loop: not followed
  fs::create_symlink(dir.path / "absent.png", dir.path / "red_dress" / "dangling.png");
  fs::create_symlink(dir.path / "self_loop", dir.path / "self_loop");  // a link to itself at the top
  LoadReport report;
  const LabeledImages data = load_image_folder(dir.path.string(), LoadOptions{.size = 4, .separator = '_', .limits = {}}, &report);
  CHECK(data.count() == 2);
  CHECK(report.ignored == 1);  // the link to a folder
  std::string reasons;
  for (const SkippedFile& f : report.skipped) reasons += f.reason + "\n";
  INFO(reasons);
  CHECK(report.skipped.size() == 2);
  CHECK(reasons.find(dir / "red_dress/dangling.png") != std::string::npos);
  CHECK(reasons.find(dir / "self_loop: cannot examine") != std::string::npos);
}

TEST_CASE("AtomicFile removes the temporary files a killed writer of the same target left, and only those") {
  TempDir dir("stale");
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  REQUIRE(child > 0);
  ::waitpid(child, nullptr, 0);  // a process that no longer runs
  const std::string dead = dir / ("out.txt.tnet-tmp." + std::to_string(child) + ".0");
  const std::string alive = dir / ("out.txt.tnet-tmp." + std::to_string(::getpid()) + ".99");
  const std::string other = dir / ("other.txt.tnet-tmp." + std::to_string(child) + ".0");
  for (const std::string& path : {dead, alive, other}) test::write(path, "left over");
  write_file(dir / "out.txt", "new");
  CHECK(!fs::exists(dead));
  CHECK(fs::exists(alive));  // a writer still running
  CHECK(fs::exists(other));  // another target's
  CHECK(test::read(dir / "out.txt") == "new");
}

TEST_CASE("decoding memory is bounded per thread: the decoder's real peak, counted from the header before decoding") {
  // PNG headers of 6700 x 6700 pixels (45 megapixels, within the pixel limit), no pixel data. As
  // 16-bit RGBA, stb holds the inflated rows (8 bytes a pixel) and its 16-bit image (8 more) at
  // once: 718 MB, beyond the 512 MB budget (a flat 11 bytes a pixel would count 493 MB and let
  // it through). As 8-bit RGB: 6 bytes a pixel, 269 MB, within it.
  auto header = [](int depth, int colour) {
    // clang-format off
    return std::vector<std::uint8_t>{0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                     0, 0, 0x1A, 0x2C, 0, 0, 0x1A, 0x2C, std::uint8_t(depth), std::uint8_t(colour), 0, 0, 0};
    // clang-format on
  };
  const std::vector<std::uint8_t> rgba16 = header(16, 6), rgb8 = header(8, 2);
  CHECK(image_dimensions(rgba16) == std::pair{6700, 6700});
  CHECK(decode_bytes(image_header(rgba16)) == 6700LL * 6700 * 16 + 29);
  CHECK(error_of([&] { decode_image(rgba16, "big.png"); }) ==
        "big.png: a 6700x6700 16-bit RGBA png of 29 bytes needs about 718 MB to decode, more than the 512 MB a decoding thread may use");
  CHECK(decode_bytes(image_header(rgb8)) == 6700LL * 6700 * 6 + 29);
  CHECK(error_of([&] { decode_image(rgb8, "big.png"); }) == "big.png: png header is incomplete");  // past the budget, to the chunks
  // The same kinds of the same size: a baseline JPEG 3 bytes a pixel, a 16-bit grayscale PNG 9
  // (its rows converted to RGB at 16 bits, then to 8), an Adam7 RGBA one 20.
  CHECK(decode_bytes(image_header(header(16, 0))) == 6700LL * 6700 * 9 + 29);
  std::vector<std::uint8_t> interlaced = rgba16;
  interlaced[28] = 1;
  CHECK(decode_bytes(image_header(interlaced)) == 6700LL * 6700 * 20 + 29);
  const std::string jpeg = test::read(fixture("grayscale.jpg"));
  CHECK(decode_bytes(image_header(std::vector<std::uint8_t>(jpeg.begin(), jpeg.end()))) == 11 * 7 * 3 + std::int64_t(jpeg.size()));
  CHECK_THROWS_AS(resize_image(solid(4, 4, 1, 2, 3), 40000, 40000), std::invalid_argument);
}

TEST_CASE("CMYK and YCCK JPEGs decode to the RGB Pillow decodes them to") {
  // tests/fixtures/make_images.py: blocks of red, white, half black and a mix, written by
  // Pillow (CMYK) and TurboJPEG (YCCK), both with the Adobe marker; NAME.rgb is Pillow's RGB.
  for (const std::string name : {"cmyk", "ycck"}) {
    INFO(name);
    const Image im = read_image(fixture(name + ".jpg"));
    REQUIRE(im.width == 32);
    REQUIRE(im.height == 8);
    const std::string want = test::read(fixture(name + ".rgb"));
    REQUIRE(want.size() == im.pixels.size());
    int largest = 0;
    for (std::size_t i = 0; i < want.size(); ++i) largest = std::max(largest, std::abs(int(std::uint8_t(want[i])) - int(im.pixels[i])));
    CHECK(largest <= 1);
    CHECK(std::vector<int>(im.at(4, 4), im.at(4, 4) + 3) == std::vector<int>{255, 0, 0});
    CHECK(std::vector<int>(im.at(4, 12), im.at(4, 12) + 3) == std::vector<int>{255, 255, 255});
    CHECK(std::abs(int(im.at(4, 20)[0]) - 127) <= 1);
  }
  // Without the Adobe marker the values are ink as stored: white (all stored 255) becomes black.
  std::string cmyk = test::read(fixture("cmyk.jpg"));
  const std::size_t adobe = cmyk.find("\xFF\xEE");
  REQUIRE(adobe != std::string::npos);
  REQUIRE(cmyk.compare(adobe + 4, 5, "Adobe") == 0);
  cmyk.erase(adobe, 2 + (std::size_t(std::uint8_t(cmyk[adobe + 2])) << 8 | std::uint8_t(cmyk[adobe + 3])));
  const std::vector<std::uint8_t> plain(cmyk.begin(), cmyk.end());
  CHECK(!image_header(plain).adobe);
  const Image im = decode_image(plain, "plain.jpg");
  CHECK(std::vector<int>(im.at(4, 12), im.at(4, 12) + 3) == std::vector<int>{0, 0, 0});
  CHECK(decode_bytes(image_header(plain)) == 32 * 8 * 7 + std::int64_t(plain.size()));  // CMYK, then RGB
}

TEST_CASE("a top-down BMP (negative height) decodes with its first row on top") {
  const Image im = read_image(fixture("top_down.bmp"));  // make_images.py
  REQUIRE(im.width == 3);
  REQUIRE(im.height == 2);
  CHECK(std::vector<int>(im.pixels.begin(), im.pixels.end()) ==
        std::vector<int>{255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 128, 128, 128});
}

TEST_CASE("a header that does not parse is named as not of its format, not given a made-up size") {
  TempDir dir("not_bmp");
  test::write(dir / "notes.bmp", "BMy notes, typed into a file whose name ends in .bmp; nothing here is a bitmap.\n");
  const std::string bmp = error_of([&] { read_image(dir / "notes.bmp"); });
  CHECK(bmp.find(dir / "notes.bmp" + ": not a BMP image: its header does not parse (") == 0);
  CHECK(bmp.find("pixels") == std::string::npos);
  std::string png = "\x89PNG\r\n\x1A\n" + std::string(25, 'x');
  test::write(dir / "text.png", png);
  CHECK(error_of([&] { read_image(dir / "text.png"); }) ==
        dir / "text.png" + ": not a PNG image: its header does not parse (its first chunk is not a 13-byte IHDR)");
  test::write(dir / "text.gif", "GIF8 is how this note starts\n");
  CHECK(error_of([&] { read_image(dir / "text.gif"); }).find(": not a GIF image: its header does not parse") != std::string::npos);
  // A real BMP with a bit count no BMP has.
  const Image blue = solid(5, 4, 10, 20, 200);
  REQUIRE(stbi_write_bmp((dir / "blue.bmp").c_str(), 5, 4, 3, blue.pixels.data()));
  std::string bits = test::read(dir / "blue.bmp");
  bits[28] = 23;
  test::write(dir / "bits.bmp", bits);
  CHECK(error_of([&] { read_image(dir / "bits.bmp"); }) ==
        dir / "bits.bmp" + ": not a BMP image: its header does not parse (planes 1, bits a pixel 23)");
}

TEST_CASE("resizing to the image's own size copies its pixels, in every path that resizes") {
  Image photo{96, 96, std::vector<std::uint8_t>(96 * 96 * 3)};
  std::uint32_t state = 12345;
  for (std::uint8_t& v : photo.pixels) v = std::uint8_t((state = state * 1664525u + 1013904223u) >> 24);
  CHECK(resize_image(photo, 96, 96).pixels == photo.pixels);
  CHECK(resize_image(photo, 96, 95).pixels != photo.pixels);  // a real resize still filters
  TempDir dir("same_size");
  fs::create_directories(dir.path / "red_dress");
  write_png(dir / "red_dress/a.png", photo);
  const LoadOptions options{.size = 96, .separator = '_', .limits = {}};
  CHECK(load_image_folder(dir.path.string(), options).pixels == photo.pixels);
  LoadReport report;
  const LabeledImages cached = load_image_folder_cached(dir.path.string(), dir / "cache", options, &report);
  REQUIRE(cached.count() == 1);
  std::vector<std::uint8_t> buffer(photo.pixels.size());
  CHECK(std::equal(photo.pixels.begin(), photo.pixels.end(), cached.image(0, buffer.data())));
}

TEST_CASE("labels are printable UTF-8 without control characters, refused where read with the place escaped") {
  // What a message shows is itself printable: every byte escaped that is not.
  auto printable_message = [](const std::string& m) {
    for (unsigned char c : m)
      if (c < 0x20 || c == 0x7F) return false;
    return valid_utf8(m);
  };
  CHECK(label_problem("red") == "");
  CHECK(label_problem("rot_grün") == "");
  CHECK(label_problem("a\nb") == "'a\\nb' holds a control character");
  CHECK(label_problem("caf\xE9") == "'caf\\xE9' is not valid UTF-8");
  CHECK(label_problem("x\xC2\x85y") == "'x\\u0085y' holds a control character");  // NEL, a C1 control
  CHECK(label_problem("\xE2\x80\xA8") != "");                                     // U+2028, a line separator
  CHECK(label_problem("\xED\xA0\x80") != "");                                     // a surrogate
  CHECK(label_problem("\xC0\xAF") != "");                                         // an overlong '/'

  SUBCASE("a class folder: the dataset is refused, naming the folder") {
    for (const std::string name : {"red\ndress", "caf\xE9_dress", "tab\tbed"}) {
      TempDir dir("label_folder");
      fs::create_directories(dir.path / "blue_jeans");
      fs::create_directories(dir.path / name);
      write_png(dir / "blue_jeans/a.png", solid(8, 8, 0, 0, 200));
      write_png(dir / (name + "/b.png"), solid(8, 8, 200, 0, 0));
      const std::string error = error_of([&] { load_image_folder(dir.path.string(), {.size = 8, .separator = '_', .limits = {}}); });
      INFO(error);
      CHECK(error.find(printable(dir / name) + ": the class folder's name gives a label that cannot be one: ") == 0);
      CHECK(error.find(label_rule) != std::string::npos);
      CHECK(printable_message(error));
    }
  }
  SUBCASE("a photo whose name holds a newline is skipped, named escaped; the split lists stay one path a line") {
    TempDir dir("label_photo");
    fs::create_directories(dir.path / "red_dress");
    write_png(dir / "red_dress/a.png", solid(8, 8, 200, 0, 0));
    write_png(dir / "red_dress/b\nc.png", solid(8, 8, 200, 0, 0));
    LoadReport report;
    const LabeledImages data = load_image_folder(dir.path.string(), {.size = 8, .separator = '_', .limits = {}}, &report);
    CHECK(data.count() == 1);
    REQUIRE(report.skipped.size() == 1);
    CHECK(report.skipped[0].reason == dir /
                                          "red_dress/b\\nc.png: its path holds a control character (a newline, a tab or the like), "
                                          "which a list of paths cannot hold: rename it");
  }
  SUBCASE("a label file: the file and line") {
    TempDir dir("label_file");
    test::write(dir / "labels.txt", "# tnet MultiLabelBinarizer v1\nblack\nbl\tue\n");
    CHECK(error_of([&] { MultiLabelBinarizer::load(dir / "labels.txt"); }) ==
          dir / "labels.txt" + ":3: 'bl\\tue' holds a control character; " + label_rule);
    test::write(dir / "latin1.txt", "# tnet MultiLabelBinarizer v1\nblack\nbl\xE9\n");
    CHECK(error_of([&] { MultiLabelBinarizer::load(dir / "latin1.txt"); }) ==
          dir / "latin1.txt" + ":3: 'bl\\xE9' is not valid UTF-8; " + label_rule);
    test::write(dir / "utf8.txt", "# tnet MultiLabelBinarizer v1\nbleu\nrot_grün\n");
    CHECK(MultiLabelBinarizer::load(dir / "utf8.txt").classes() == std::vector<std::string>{"bleu", "rot_grün"});
    // Nothing can write such a file either.
    CHECK_THROWS_AS(MultiLabelBinarizer({"a\nb"}), std::invalid_argument);
    CHECK_THROWS_AS(MultiLabelBinarizer().fit({{"ok", "caf\xE9"}}), std::invalid_argument);
  }
  SUBCASE("an image list (--list) and a split list (--val-list): the file and line") {
    TempDir dir("label_list");
    write_png(dir / "x.png", solid(4, 4, 5, 5, 5));
    test::write(dir / "list.csv", "path,labels\nx.png,cat|d\x01og\n");
    CHECK(error_of([&] { load_image_list(dir / "list.csv"); }) ==
          dir / "list.csv" + ":2: 'd\\x01og' holds a control character; " + label_rule);
    test::write(dir / "paths.csv", "x\t.png,cat\n");
    CHECK(error_of([&] { load_image_list(dir / "paths.csv"); }).find(dir / "paths.csv:1: 'x\\t.png': its path holds a control character") ==
          0);
    write_png(dir / "y.png", solid(4, 4, 5, 5, 5));
    test::write(dir / "good.csv", "x.png,cat\ny.png,dog\n");
    const LabeledImages data = load_image_list(dir / "good.csv", {.size = 4, .separator = '_', .limits = {}});
    test::write(dir / "val.txt", "x\x01.png\n");
    CHECK(error_of([&] { read_split(data, dir.path.string(), dir / "val.txt"); }) ==
          dir / "val.txt:1: 'x\\x01.png' is not among the images loaded from " + dir.path.string());
  }
}

TEST_CASE("JSON strings are valid UTF-8 whatever the bytes: control characters escaped, other bytes as U+FFFD") {
  CHECK(json_string("red \"dress\" \\ x") == "\"red \\\"dress\\\" \\\\ x\"");
  CHECK(json_string("a\nb\x7F") == "\"a\\u000ab\\u007f\"");
  CHECK(json_string("rot_grün, 写真.jpg") == "\"rot_grün, 写真.jpg\"");
  CHECK(json_string("caf\xE9.jpg") == "\"caf\\ufffd.jpg\"");  // Latin-1 bytes in a photo's path
  CHECK(json_string("\xE2\x82") == "\"\\ufffd\\ufffd\"");     // a sequence cut short
  CHECK(json_string("\xC2\x85\xE2\x80\xA8") == "\"\\u0085\\u2028\"");
  for (const std::string s : {"caf\xE9", "\xFF\xFE", "\xED\xA0\x80", "ok"}) CHECK(valid_utf8(json_string(s)));
}
