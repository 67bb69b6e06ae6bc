// Test support: running a piece of a test in a child process with little memory, to show that a
// hostile file is refused before anything large is allocated for it.
#pragma once

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <fstream>
#include <functional>
#include <string>

namespace test {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool address_sanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool address_sanitizer = true;
#else
inline constexpr bool address_sanitizer = false;
#endif
#else
inline constexpr bool address_sanitizer = false;
#endif

/// A field of /proc/self/status in kB ("VmSize", "VmRSS", "VmHWM"); -1 when absent.
inline long status_kb(const std::string& field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.starts_with(field + ":")) return std::stol(line.substr(field.size() + 1));
  return -1;
}

struct ChildRun {
  std::string message;       // what `f` threw (its what()), "" when it returned, or how the child ended
  long peak_growth_mb = -1;  // how far the child's peak resident memory rose above its start
};

/// Runs `f` in a forked child whose address space may grow by `limit_mb` MB at most (not under
/// AddressSanitizer, whose shadow memory needs terabytes of it), and reports what it threw and
/// how much memory it took at its peak.
inline ChildRun in_child(const std::function<void()>& f, long limit_mb = 512) {
  int fds[2];
  if (::pipe(fds) != 0) return {"pipe failed", -1};
  const pid_t pid = ::fork();
  if (pid < 0) return {"fork failed", -1};
  if (pid == 0) {
    ::close(fds[0]);
    if (!address_sanitizer) {
      const rlim_t limit = rlim_t(status_kb("VmSize") + limit_mb * 1024) * 1024;
      const rlimit r{limit, limit};
      ::setrlimit(RLIMIT_AS, &r);
    }
    const long start = status_kb("VmRSS");
    std::string message;
    try {
      f();
    } catch (const std::exception& e) {
      message = e.what();
    } catch (...) {
      message = "an exception that is not a std::exception";
    }
    const std::string report = std::to_string((status_kb("VmHWM") - start) / 1024) + "\n" + message;
    if (::write(fds[1], report.data(), report.size()) < 0) ::_exit(3);
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string report;
  char buffer[4096];
  for (ssize_t n; (n = ::read(fds[0], buffer, sizeof buffer)) > 0;) report.append(buffer, std::size_t(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) return {"killed by signal " + std::to_string(WTERMSIG(status)), -1};
  const std::size_t line = report.find('\n');
  if (line == std::string::npos) return {"no report from the child", -1};
  return {report.substr(line + 1), std::stol(report.substr(0, line))};
}

}  // namespace test
