// Command-line parsing for the fashion programs: `--name value` options and `--flag`s, with one
// clear message for anything malformed.
#pragma once

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace fashion {

/// A user error: printed as "program: message" with exit status 2, before any work starts.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Arguments {
 public:
  /// `valued` options take a value (repeatable ones collect several); `flags` take none.
  Arguments(int argc, char** argv, const std::set<std::string>& valued, const std::set<std::string>& flags) {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (valued.count(arg)) {
        if (i + 1 >= argc) throw UsageError(arg + " needs a value");
        values_[arg].push_back(argv[++i]);
      } else if (flags.count(arg)) {
        flags_.insert(arg);
      } else if (arg.rfind("--", 0) == 0) {
        throw UsageError("unknown option " + arg + " (see --help)");
      } else {
        positional_.push_back(arg);
      }
    }
  }

  bool flag(const std::string& name) const { return flags_.count(name) > 0; }
  bool has(const std::string& name) const { return values_.count(name) > 0; }
  const std::vector<std::string>& all(const std::string& name) const {
    static const std::vector<std::string> none;
    const auto found = values_.find(name);
    return found == values_.end() ? none : found->second;
  }
  std::string text(const std::string& name, const std::string& fallback) const { return has(name) ? values_.at(name).back() : fallback; }
  const std::vector<std::string>& positional() const { return positional_; }

  /// An integer in [low, high].
  long integer(const std::string& name, long fallback, long low, long high) const {
    if (!has(name)) return fallback;
    const std::string& s = values_.at(name).back();
    long v = 0;
    const auto [end, error] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (error != std::errc() || end != s.data() + s.size() || v < low || v > high)
      throw UsageError(name + " must be an integer from " + std::to_string(low) + " to " + std::to_string(high) + ", got '" + s + "'");
    return v;
  }

  /// A number in the open interval (low, high); `range` words it for the error message.
  double number(const std::string& name, double fallback, double low, double high, const std::string& range) const {
    if (!has(name)) return fallback;
    const std::string& s = values_.at(name).back();
    double v = 0;
    const auto [end, error] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (error != std::errc() || end != s.data() + s.size() || !(v > low && v < high))
      throw UsageError(name + " must be " + range + ", got '" + s + "'");
    return v;
  }

 private:
  std::map<std::string, std::vector<std::string>> values_;
  std::set<std::string> flags_;
  std::vector<std::string> positional_;
};

/// A fashion program's main: runs `run`, and prints an error as "program: message", exiting 2 for
/// a UsageError and `error_status` for any other.
template <class Run>
int guarded_main(const char* program, int error_status, Run&& run) {
  try {
    return run();
  } catch (const UsageError& e) {
    std::cerr << program << ": " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << program << ": " << e.what() << "\n";
    return error_status;
  }
}

/// Throws UsageError unless a file can be created at `path` (tried with a scratch file beside
/// it, removed at once), so that a long run does not end in an unwritable output.
inline void check_writable(const std::string& path, const std::string& what) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  if (fs::is_directory(p)) throw UsageError(what + " " + path + " is a folder, not a file name");
  const fs::path parent = p.has_parent_path() ? p.parent_path() : fs::path(".");
  if (!fs::is_directory(parent)) throw UsageError("cannot write " + what + " " + path + ": folder " + parent.string() + " does not exist");
  const std::string probe = path + ".write-test";
  {
    std::ofstream out(probe);
    if (!out) throw UsageError("cannot write " + what + " " + path + ": permission denied or read-only folder");
  }
  std::remove(probe.c_str());
}

}  // namespace fashion
