// Command-line parsing for the fashion programs: `--name value` options and `--flag`s, with one
// clear message for anything malformed.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <new>
#include <set>
#include <stdexcept>
#include <string>
#include <tnet/core/file.hpp>
#include <utility>
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
        if (argv[i + 1][0] == '\0') throw UsageError(arg + " needs a non-empty value");
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

/// What an exception says, for a message: out of memory (std::bad_alloc, whose own text is
/// "std::bad_alloc") is said in words, with the memory the process had taken.
inline std::string error_text(const std::exception& e) {
  if (!dynamic_cast<const std::bad_alloc*>(&e)) return e.what();
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return "out of memory: an allocation failed with " + std::to_string(usage.ru_maxrss / 1024) +
         " MB taken at the peak (the machine's memory or the process's limit, ulimit -v, is too small for this work)";
}

/// A fashion program's main: runs `run`, and prints an error as "program: message", exiting 2 for
/// a UsageError and `error_status` for any other (1 for out of memory). A closed output (a pipe
/// whose reader has gone, `| head -1`) and a file larger than `ulimit -f` are errors of the write
/// that meets them, not signals that kill the program: the first only silences the printing, the
/// second fails the file's writer with a message.
template <class Run>
int guarded_main(const char* program, int error_status, Run&& run) {
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGXFSZ, SIG_IGN);
  try {
    return run();
  } catch (const UsageError& e) {
    std::cerr << program << ": " << e.what() << "\n";
    return 2;
  } catch (const std::bad_alloc& e) {
    std::cerr << program << ": " << error_text(e) << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << program << ": " << e.what() << "\n";
    return error_status;
  }
}

/// The files a program reads and writes, checked together before any work starts; check() throws
/// UsageError naming the option and the path:
/// - an output is a regular file or a new name, never a symbolic link, a device, a FIFO, a socket
///   or a folder (tnet::AtomicFile refuses them too, but only when it comes to write);
/// - its folder exists and takes new files, tried with a scratch file of a new name
///   (`.NAME.tnet-probe.PID.N`, created exclusively, not through a link, and removed): no file of
///   the user's is opened or removed;
/// - its name with the writer's temporary suffix (`.tnet-tmp.PID.N`) fits the folder's NAME_MAX,
///   and its absolute path PATH_MAX, so that the first save does not fail late;
/// - no two outputs, and no output and an input, are the same file: compared by device and inode
///   where both exist, by absolute path with the folder resolved where neither does.
class FileSet {
 public:
  /// `label` names the output in messages ("--plot", "--model's checkpoint"); `what` says what it
  /// holds ("plot", "model").
  void output(const std::string& label, const std::string& path, const std::string& what) { entries_.push_back({label, path, what, true}); }
  void input(const std::string& label, const std::string& path) { entries_.push_back({label, path, "", false}); }

  void check() const {
    std::map<std::pair<dev_t, ino_t>, const Entry*> by_inode;
    std::map<std::string, const Entry*> by_name;
    std::map<std::string, Folder> folders;
    for (const Entry& e : entries_) {
      if (e.output) check_output(e, folders);
      struct stat info{};
      // The first entry of this file (this one, when it is the first).
      const Entry* same = ::stat(e.path.c_str(), &info) == 0 ? by_inode.try_emplace({info.st_dev, info.st_ino}, &e).first->second
                                                             : by_name.try_emplace(normalised(e.path), &e).first->second;
      if (same == &e || !(same->output || e.output)) continue;
      throw UsageError(same->label + " " + same->path + " and " + e.label + " " + e.path + " are the same file: " +
                       (same->output && e.output ? "one output would overwrite the other" : "the output would overwrite the input") +
                       "; give each its own name");
    }
  }

 private:
  struct Entry {
    std::string label, path, what;
    bool output;
  };
  struct Folder {
    long name_max = NAME_MAX, path_max = PATH_MAX;
  };

  // The path with its folder resolved (links, "..") and the name kept: two names of one file
  // that does not exist yet compare equal.
  static std::string normalised(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code error;
    const fs::path absolute = fs::absolute(path, error);
    const fs::path folder = fs::weakly_canonical(absolute.parent_path(), error);
    return (folder / absolute.filename()).lexically_normal().string();
  }

  static void check_output(const Entry& e, std::map<std::string, Folder>& folders) {
    namespace fs = std::filesystem;
    if (e.path.empty()) throw UsageError(e.label + " needs a non-empty value");
    const std::string kind = tnet::non_regular_kind(e.path);
    if (!kind.empty())
      throw UsageError(e.label + " " + e.path + ": not a regular file (" + kind + "); outputs must be regular files or new names");
    const fs::path p(e.path);
    const std::string parent = p.has_parent_path() ? p.parent_path().string() : ".";
    auto found = folders.find(parent);
    if (found == folders.end()) {
      std::error_code error;
      if (!fs::is_directory(parent, error))
        throw UsageError("cannot write " + e.what + " " + e.path + ": folder " + parent + " does not exist");
      Folder folder;
      if (const long n = ::pathconf(parent.c_str(), _PC_NAME_MAX); n > 0) folder.name_max = n;
      if (const long n = ::pathconf(parent.c_str(), _PC_PATH_MAX); n > 0) folder.path_max = n;
      probe(e, parent);
      found = folders.emplace(parent, folder).first;
    }
    // The writer's temporary file, NAME.tnet-tmp.PID.N, is the longest name written for it.
    const std::size_t temporary = std::string(".tnet-tmp.").size() + std::to_string(::getpid()).size() + 7;
    const std::string name = p.filename().string();
    if (long(name.size() + temporary) > found->second.name_max)
      throw UsageError(e.label + " " + e.path + ": the name is too long: " + std::to_string(name.size()) + " bytes, and its files need " +
                       std::to_string(temporary) + " more (temporary files), where the folder allows " +
                       std::to_string(found->second.name_max));
    std::error_code error;
    const std::size_t length = fs::absolute(p, error).string().size() + temporary;
    if (long(length) >= found->second.path_max)
      throw UsageError(e.label + " " + e.path + ": the path is too long: " + std::to_string(length) +
                       " bytes with its temporary files' suffix, where the system allows " + std::to_string(found->second.path_max - 1));
  }

  // Creates and removes a scratch file of a name no one uses in `folder`.
  static void probe(const Entry& e, const std::string& folder) {
    const std::string name = std::filesystem::path(e.path).filename().string();
    for (int n = 0;; ++n) {
      std::string leaf = ".";  // appended piece by piece: GCC 12 warns falsely (-Wrestrict) of "." + name
      leaf.append(name, 0, 64).append(".tnet-probe.").append(std::to_string(::getpid())).append(".").append(std::to_string(n));
      const std::string scratch = (std::filesystem::path(folder) / leaf).string();
      const int fd = ::open(scratch.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd >= 0) {
        ::close(fd);
        ::unlink(scratch.c_str());
        return;
      }
      if (errno != EEXIST || n == 100)
        throw UsageError("cannot write " + e.what + " " + e.path + ": cannot create a file in folder " + folder + " (" +
                         std::strerror(errno) + ")");
    }
  }

  std::vector<Entry> entries_;
};

/// Throws UsageError unless `path` is a regular file or a new name in a folder that takes new
/// files (FileSet's checks for one output).
inline void check_writable(const std::string& path, const std::string& what) {
  FileSet files;
  files.output(what, path, what);
  files.check();
}

/// An exclusive lock (flock) on a file, held until this object goes or the process ends (a kill
/// included). The file is created if needed, never through a link, never truncated, and left in
/// place: removing it would let a second process lock a new file while the first holds the old.
class FileLock {
 public:
  FileLock() = default;
  /// Throws UsageError saying `busy` when another process holds the lock.
  FileLock(const std::string& path, const std::string& busy) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
    if (fd_ < 0) throw UsageError("cannot open the lock file " + path + ": " + std::strerror(errno));
    struct stat info{};
    if (::fstat(fd_, &info) != 0 || !S_ISREG(info.st_mode)) {
      release();
      throw UsageError("the lock file " + path + " is not a regular file");
    }
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int error = errno;
      release();
      throw UsageError(error == EWOULDBLOCK ? busy : "cannot lock " + path + ": " + std::strerror(error));
    }
  }
  FileLock(FileLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  FileLock& operator=(FileLock&& other) noexcept {
    if (this != &other) release(), fd_ = std::exchange(other.fd_, -1);
    return *this;
  }
  ~FileLock() { release(); }

 private:
  void release() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
};

}  // namespace fashion
