// SPDX-License-Identifier: Apache-2.0
#include "shared/common/file_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "shared/common/util.hpp"

namespace kflex {

Result<FileLock> FileLock::acquire(const std::filesystem::path& file, const std::string& what_to_do) {
  int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return fail("cannot open " + file.string() + ": " + std::strerror(errno));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    std::string holder;
    if (auto text = readFile(file); text) {
      holder = std::string(trim(text.value()));
    }
    ::close(fd);
    if (err != EWOULDBLOCK) {
      return fail("cannot lock " + file.string() + ": " + std::strerror(err));
    }
    std::string who = "another process";
    if (!holder.empty() && holder.find_first_not_of("0123456789") == std::string::npos) {
      who = "process " + holder;
      if (auto cmd = readFile("/proc/" + holder + "/cmdline"); cmd && !cmd.value().empty()) {
        std::string c = cmd.value();
        std::replace(c.begin(), c.end(), '\0', ' ');
        who += " (" + std::string(trim(c)) + ")";
      }
    }
    return fail(file.string() + " is locked by " + who + ": " + what_to_do);
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != ssize_t(pid.size())) {
    // The lock holds all the same; only the message another process would print is poorer.
  }
  return FileLock(fd);
}

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

FileLock::~FileLock() {
  if (fd_ >= 0) {
    ::close(fd_);  // releases the lock; the file stays (removing it would race a new holder)
  }
}

}  // namespace kflex
