// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>

#include "shared/common/result.hpp"

namespace kflex {

/**
 * An exclusive advisory lock (flock) on a file, held while the object lives, with the holder's
 * pid written into the file so that a second process can say who holds it. The descriptor is
 * close-on-exec: programs the holder starts do not inherit the lock (they may outlive it).
 */
class FileLock {
 public:
  /// Takes the lock without waiting. When another process holds it, the error names the file and
  /// that process (pid and command line), followed by `what_to_do`.
  static Result<FileLock> acquire(const std::filesystem::path& file, const std::string& what_to_do);
  FileLock(FileLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace kflex
