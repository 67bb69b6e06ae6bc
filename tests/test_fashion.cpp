// fashion_classify's helpers on hostile input: photos of extreme shape, clashing names, outputs
// that would overwrite a photo, probabilities that are not numbers.
#include "support.hpp"

#include "../examples/fashion/classify_impl.hpp"

using namespace tnet;

TEST_CASE("the labelled copy of a photo of extreme shape stays within 400 x 4000") {
  const std::vector<std::pair<std::string, double>> top = {{"red", 0.99}, {"dress", 0.5}};
  for (const auto& [w, h, height] : {std::tuple{1, 4480, 4000}, std::tuple{4480, 1, 1}, std::tuple{300, 600, 800}}) {
    INFO(w, "x", h);
    const Image photo{w, h, std::vector<std::uint8_t>(std::size_t(w) * h * 3, 128)};
    const Image copy = fashion::labelled_copy(photo, top);
    CHECK(copy.width == 400);
    CHECK(copy.height == height);
  }
}

TEST_CASE("labelled copies: one name per photo, never over a photo") {
  using fashion::labelled_copy_paths;
  CHECK(labelled_copy_paths({"in/a.jpg", "in/a.png", "other/a.jpg", "more/a.jpg", "b.gif"}, "", false) ==
        std::vector<std::string>{"a_labeled.png", "a_png_labeled.png", "a_jpg_labeled.png", "a_2_labeled.png", "b_labeled.png"});
  CHECK(labelled_copy_paths({"in/a.jpg", "a"}, "", false) == std::vector<std::string>{"a_labeled.png", "a_2_labeled.png"});
  CHECK(labelled_copy_paths({"in/a.jpg", "in/b.jpg"}, "out", true) == std::vector<std::string>{"out/a_labeled.png", "out/b_labeled.png"});
  CHECK(labelled_copy_paths({"in/a.jpg"}, "mine.png", false) == std::vector<std::string>{"mine.png"});
  CHECK_THROWS_WITH_AS(labelled_copy_paths({"in/a.jpg"}, "in/a.jpg", false),
                       "the labelled copy in/a.jpg would overwrite the photo in/a.jpg: give another --output", fashion::UsageError);
  CHECK_THROWS_WITH_AS(labelled_copy_paths({"a_labeled.png", "a.jpg"}, "", false),
                       "the labelled copy a_labeled.png would overwrite the photo a_labeled.png: give another --output",
                       fashion::UsageError);
}

TEST_CASE("JSON numbers: a probability that is not a number is null") {
  CHECK(fashion::json_number(0.25) == "0.25");
  CHECK(fashion::json_number(std::nan("")) == "null");
  CHECK(fashion::json_number(std::numeric_limits<double>::infinity()) == "null");
}

TEST_CASE("fashion_classify's decisions: the model file's thresholds by default, --threshold for every label, else 0.5") {
  using fashion::decision_thresholds;
  const std::vector<float> stored{0.2f, 0.7f, 0.5f};
  CHECK(decision_thresholds(std::nullopt, stored, 3) == stored);
  CHECK(decision_thresholds(0.4, stored, 3) == std::vector<float>{0.4f, 0.4f, 0.4f});
  CHECK(decision_thresholds(std::nullopt, {}, 3) == std::vector<float>{0.5f, 0.5f, 0.5f});  // an older file, or ONNX
  const std::vector<float> p{0.3f, 0.6f, 0.5f};
  CHECK(fashion::present_labels(p, stored) == std::vector<int>{0});
  CHECK(fashion::present_labels(p, decision_thresholds(std::nullopt, {}, 3)) == std::vector<int>{1});
}

TEST_CASE("tnet's helpers the fashion programs use: counts with commas, image extensions, FNV-1a-64") {
  CHECK(tnet::with_commas(0) == "0");
  CHECK(tnet::with_commas(999) == "999");
  CHECK(tnet::with_commas(1000) == "1,000");
  CHECK(tnet::with_commas(100000) == "100,000");
  CHECK(tnet::with_commas(1234567) == "1,234,567");
  CHECK(tnet::has_image_extension("photos/a.JPG"));
  CHECK(tnet::has_image_extension("b.jpeg"));
  CHECK(tnet::has_image_extension("c.Png"));
  CHECK_FALSE(tnet::has_image_extension("d.jpg.txt"));
  CHECK_FALSE(tnet::has_image_extension("jpg"));
  CHECK(tnet::fnv1a64("", 0) == tnet::fnv1a64_basis);
  CHECK(tnet::fnv1a64("a", 1) == 0xaf63dc4c8601ec8cull);  // the published test vector
  CHECK(tnet::fnv1a64("b", 1, tnet::fnv1a64("a", 1)) == tnet::fnv1a64("ab", 2));
}

TEST_CASE("the fashion programs' networks: the build's are listed ones, and messages say how to compile the others") {
  using namespace fashion;
  CHECK(!networks.empty());
  for (const Network& n : networks) CHECK(listed(n));
  CHECK_FALSE(listed(Network{Architecture::smallervgg, 50}));
  const std::string every = configure_with([](Network) { return true; });
  CHECK(every.starts_with("-DTNET_FASHION_NETWORKS=\"smallervgg:"));
  CHECK(std::count(every.begin(), every.end(), ';') == std::ptrdiff_t(all_networks.size()) - 1);
  CHECK(every.find("smallervgg:96") != std::string::npos);
  // A build's own networks are always named, so that the advice adds to them.
  const std::string own = configure_with([](Network) { return false; });
  CHECK(std::count(own.begin(), own.end(), ';') == std::ptrdiff_t(networks.size()) - 1);
}
