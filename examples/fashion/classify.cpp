// fashion_classify: the Keras multi-label tutorial's classify.py, in C++ with tnet.
//   fashion_classify --model fashion.tnet --labelbin labels.txt --image photo.jpg
#include <filesystem>
#include <iostream>
#include <optional>

#include "classify_impl.hpp"
#include "model_files.hpp"
#include "models.hpp"

namespace {

const char* usage = R"(usage: fashion_classify --image PHOTO|FOLDER [--image ...] [options]

Prints every label's probability for each photo, then the most probable ones, and writes a copy
of the photo (width 400) with the top labels drawn on it.

  --model FILE      model written by fashion_train [fashion.tnet], or an ONNX file (.onnx) of one
                    of its networks (fashion_export's, or one exported from PyTorch)
  --arch NAME       the network an ONNX file from elsewhere holds: smallervgg, resnet18 or
                    mobilenetv2 [each is tried; a model file and fashion_export's ONNX say theirs]
  --labelbin FILE   its label file [labels.txt]
  --image PATH      a photo, or a folder of photos; repeatable (photos may also follow the options)
  --output PATH     the labelled copy; with several photos, a folder for them
                    [<photo name>_labeled.png in the current folder]
  --top K           how many labels to name and draw [2]
  --threshold X     labels above it are reported as present, every label alike [each label's
                    threshold stored in the model file (chosen on validation data), else 0.5]
  --json            machine-readable output
  --precision P     fp32, or bf16: the dense layers' kernels read rounded to bfloat16 and, on CPUs
                    with AVX512_BF16, the convolutions computed in bfloat16; faster (on the
                    tutorial's validation photos no decision changed: benchmarks/RESULTS.md) [fp32]
  --help
)";

int run(int argc, char** argv) {
  using namespace fashion;
  namespace fs = std::filesystem;
  const Arguments args(argc, argv, {"--model", "--labelbin", "--image", "--output", "--top", "--threshold", "--precision", "--arch"},
                       {"--json", "--help"});
  if (args.flag("--help")) {
    std::cout << usage;
    return 0;
  }
  ClassifySettings s;
  s.model = args.text("--model", s.model);
  s.labelbin = args.text("--labelbin", s.labelbin);
  s.output = args.text("--output", "");
  s.top = int(args.integer("--top", s.top, 1, 1000));
  if (args.has("--threshold")) s.threshold = args.number("--threshold", 0.5, -1e-9, 1.0, "a probability in [0, 1)");
  s.json = args.flag("--json");
  const std::string precision = args.text("--precision", "fp32");
  if (precision != "fp32" && precision != "bf16") throw UsageError("--precision takes fp32 or bf16, got '" + precision + "'");
  s.precision = precision == "bf16" ? tnet::Precision::bf16 : tnet::Precision::fp32;
  std::optional<Architecture> architecture;
  if (args.has("--arch")) architecture = parse_architecture("--arch", args.text("--arch", ""));
  std::vector<std::string> given = args.all("--image");
  given.insert(given.end(), args.positional().begin(), args.positional().end());
  if (given.empty()) throw UsageError("no --image given (see --help)");
  for (const std::string& path : given) {
    if (fs::is_directory(path)) {
      std::vector<std::string> found;
      for (const fs::directory_entry& e : fs::directory_iterator(path))
        if (e.is_regular_file() && tnet::has_image_extension(e.path())) found.push_back(e.path().string());
      if (found.empty()) throw UsageError(path + ": no image files in this folder");
      std::sort(found.begin(), found.end());
      s.images.insert(s.images.end(), found.begin(), found.end());
    } else if (!fs::exists(path)) {
      throw UsageError(path + ": no such file");
    } else {
      s.images.push_back(path);
    }
  }
  const bool into_folder = !s.output.empty() && (s.images.size() > 1 || fs::is_directory(s.output));
  s.outputs = labelled_copy_paths(s.images, s.output, into_folder);
  if (into_folder) {
    if (fs::exists(fs::symlink_status(s.output)) && !fs::is_directory(s.output))
      throw UsageError("--output " + s.output + ": not a folder; with several photos it names the folder for their labelled copies");
    fs::create_directories(s.output);
  }
  // The labelled copies are new files or regular ones, none of them a photo, the model or its labels.
  FileSet files;
  files.input("--model", s.model);
  files.input("--labelbin", s.labelbin);
  for (const std::string& image : s.images) files.input("--image", image);
  for (std::size_t i = 0; i < s.images.size(); ++i)
    files.output(s.output.empty() || into_folder ? "the labelled copy of " + s.images[i] + "," : std::string("--output"), s.outputs[i],
                 "labelled copy");
  files.check();

  // The model file names its network; an ONNX file from elsewhere is tried as each network of its
  // input size in turn, the first whose layers it fits taken.
  const std::vector<Network> candidates = candidate_networks(s.model, architecture);
  auto run_as = [&](Network n) { return with_network(n, [&]<Network N>() { return classify_network<N>(s); }); };
  if (candidates.size() == 1) return run_as(candidates[0]);
  std::string refusals;
  for (const Network& n : candidates) {
    try {
      return run_as(n);
    } catch (const tnet::ModelFileError& e) {
      if (e.kind() != tnet::ModelFileError::Kind::architecture_mismatch) throw;
      refusals += "\n  as " + std::string(arch_name(n.architecture)) + " (--arch " + arch_option(n.architecture) + "): " + e.what();
    }
  }
  throw UsageError(s.model + " fits none of the networks for its " + std::to_string(candidates[0].size) + "-pixel input:" + refusals);
}

}  // namespace

int main(int argc, char** argv) {
  // A model that cannot be read is a usage error here too (exit 2); an unreadable photo is
  // reported by classify() and exits 1.
  return fashion::guarded_main("fashion_classify", 2, [&] { return run(argc, argv); });
}
