// tnet/core/file.hpp: the one way tnet writes a file, and how it opens the files it reads.
//
// AtomicFile writes to a temporary file beside the target, named uniquely for this writer
// (`NAME.tnet-tmp.PID.N`, created exclusively), and commit() flushes it, checks every write,
// fsyncs it, renames it over the target and fsyncs the folder. Until commit() succeeds the target
// is untouched: a crash, a full disk or an exception leaves the old file (or none), never a part
// of the new one; a failure at any step throws FileError naming the target and the step, and the
// temporary file is removed (on an exception, by the destructor). A temporary file of the same
// target left by a writer that was killed (its process is gone) is removed by the next writer.
// AtomicFile replaces regular files only: a target that is a symbolic link, a device, a FIFO, a
// socket or a folder is refused with FileError (checked when writing starts and again just before
// the rename), so that writing `/dev/null` or a link never puts a regular file in its place nor
// writes through the link.
//
// Reading: open_for_reading accepts regular files only and never blocks (a FIFO or a device
// given as a model or a photo is refused at once, not waited on); text_line strips what other
// editors add to a line (a carriage return, a byte-order mark).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tnet {

class FileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// What `path` is when it exists and is not a regular file, not following a symbolic link ("a
/// symbolic link", "a character device", "a folder", ...); "" for a regular file or no file.
inline std::string non_regular_kind(const std::string& path) {
  struct stat info{};
  if (::lstat(path.c_str(), &info) != 0 || S_ISREG(info.st_mode)) return "";
  if (S_ISLNK(info.st_mode)) return "a symbolic link";
  if (S_ISDIR(info.st_mode)) return "a folder";
  if (S_ISCHR(info.st_mode)) return "a character device";
  if (S_ISBLK(info.st_mode)) return "a block device";
  if (S_ISFIFO(info.st_mode)) return "a FIFO";
  if (S_ISSOCK(info.st_mode)) return "a socket";
  return "not a regular file";
}

class AtomicFile {
 public:
  /// Starts writing `path` (through a temporary file); `what` names the file in errors
  /// ("model file", "label file"). Throws FileError when `path` exists and is not a regular file.
  explicit AtomicFile(std::string path, std::string what = "file") : path_(std::move(path)), what_(std::move(what)) {
    static std::atomic<std::uint64_t> counter{0};
    refuse_unless_regular();
    remove_stale_temporaries();
    temporary_ = path_ + ".tnet-tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    fd_ = ::open(temporary_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("cannot create " + temporary_);
    buffer_.reserve(buffer_size);
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() { discard(); }

  /// Appends `size` bytes.
  void write(const void* data, std::size_t size) {
    const char* bytes = static_cast<const char*>(data);
    if (buffer_.size() + size > buffer_size) flush();
    if (size >= buffer_size) write_all(bytes, size, written_);
    else buffer_.insert(buffer_.end(), bytes, bytes + size);
  }
  void write(std::string_view text) { write(text.data(), text.size()); }

  /// Overwrites `size` bytes at `offset`, already written (a header patched at the end).
  void write_at(std::uint64_t offset, const void* data, std::size_t size) {
    flush();
    std::uint64_t at = offset;
    const std::uint64_t end = written_;
    write_all(static_cast<const char*>(data), size, at);
    written_ = end;
  }

  /// Bytes written so far.
  std::uint64_t size() const { return written_ + buffer_.size(); }

  /// Makes the file durable and puts it in place of the target.
  void commit() {
    flush();
    if (::fsync(fd_) != 0) fail("cannot sync " + temporary_ + " to disk");
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("cannot close " + temporary_);
    refuse_unless_regular();
    if (::rename(temporary_.c_str(), path_.c_str()) != 0) fail("cannot move " + temporary_ + " into place");
    committed_ = true;
    // The rename is durable once the folder is.
    const std::filesystem::path parent = std::filesystem::path(path_).parent_path();
    const int dir = ::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
      const bool synced = ::fsync(dir) == 0;
      ::close(dir);
      if (!synced) fail("cannot sync its folder to disk");
    }
  }

 private:
  static constexpr std::size_t buffer_size = 1 << 20;

  // A target put in place since writing started is checked again before the rename.
  void refuse_unless_regular() {
    const std::string kind = non_regular_kind(path_);
    if (kind.empty()) return;
    discard();
    throw FileError(path_ + ": cannot write the " + what_ + ": it is " + kind +
                    ", not a regular file (tnet replaces regular files only, never a link or what it points to)");
  }

  // NAME.tnet-tmp.PID.N of this target whose process no longer runs: left by a kill.
  void remove_stale_temporaries() const {
    namespace fs = std::filesystem;
    const fs::path target(path_);
    const std::string prefix = target.filename().string() + ".tnet-tmp.";
    std::error_code error;
    fs::directory_iterator entries(target.parent_path().empty() ? fs::path(".") : target.parent_path(), error);
    for (; !error && entries != fs::directory_iterator(); entries.increment(error)) {
      const std::string name = entries->path().filename().string();
      if (name.rfind(prefix, 0) != 0) continue;
      const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
      if (pid > 0 && ::kill(pid_t(pid), 0) != 0 && errno == ESRCH) ::unlink(entries->path().c_str());
    }
  }

  [[noreturn]] void fail(const std::string& step) {
    const std::string reason = std::strerror(errno);
    discard();
    throw FileError(path_ + ": cannot write the " + what_ + ": " + step + ": " + reason);
  }

  void flush() {
    if (buffer_.empty()) return;
    write_all(buffer_.data(), buffer_.size(), written_);
    buffer_.clear();
  }

  // Writes everything at `offset`, advancing it; a short write is retried, an error is fatal.
  void write_all(const char* data, std::size_t size, std::uint64_t& offset) {
    while (size > 0) {
      const ssize_t n = ::pwrite(fd_, data, size, off_t(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail(n == 0 ? "nothing written (disk full?)" : "write failed");
      data += n, size -= std::size_t(n), offset += std::uint64_t(n);
    }
  }

  void discard() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (!committed_ && !temporary_.empty()) ::unlink(temporary_.c_str());
    temporary_.clear();
  }

  std::string path_, what_, temporary_;
  int fd_ = -1;
  bool committed_ = false;
  std::vector<char> buffer_;
  std::uint64_t written_ = 0;  // bytes in the file (the buffer not included)
};

/// Opens `path` for reading if it is a regular file, without blocking; returns the descriptor, or
/// -1 with `reason` set (the system's message, or "not a regular file (a FIFO, a device or a folder)").
inline int open_for_reading(const std::string& path, std::string& reason) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    reason = std::strerror(errno);
    return -1;
  }
  struct stat info{};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    reason = "not a regular file (a FIFO, a device or a folder)";
    return -1;
  }
  return fd;
}

/// Whether `path` is a regular file; `reason` says why not. For opening it with a stream after.
inline bool is_readable_file(const std::string& path, std::string& reason) {
  const int fd = open_for_reading(path, reason);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

namespace detail {
/// A line of a text file as tnet reads it: without a trailing carriage return (CRLF files) and,
/// on the first line, without a UTF-8 byte-order mark.
inline std::string& text_line(std::string& line, bool first) {
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (first && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);
  return line;
}
}  // namespace detail

/// Writes `contents` to `path` through an AtomicFile.
inline void write_file(const std::string& path, std::string_view contents, const std::string& what = "file") {
  AtomicFile file(path, what);
  file.write(contents);
  file.commit();
}

}  // namespace tnet
