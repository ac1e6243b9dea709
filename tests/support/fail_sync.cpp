// SPDX-License-Identifier: Apache-2.0
// Fault injection for tests, loaded with LD_PRELOAD (see also SSL_new below): once the file named by
// $KFLEX_TEST_FAIL_SYNC_TRIGGER exists, fdatasync and fsync of a file whose name ends in "-wal"
// fail with EIO, as they do when a disk goes bad under a running process. Everything else, and
// everything before the trigger, goes to the real calls.
#include <dlfcn.h>
#include <openssl/err.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

bool shouldFail(int fd) {
  const char* trigger = std::getenv("KFLEX_TEST_FAIL_SYNC_TRIGGER");
  if (trigger == nullptr || ::access(trigger, F_OK) != 0) {
    return false;
  }
  char target[PATH_MAX];
  std::string link = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
  if (n < 4) {
    return false;
  }
  return std::memcmp(target + n - 4, "-wal", 4) == 0;
}

template <class F>
F real(const char* name) {
  return reinterpret_cast<F>(::dlsym(RTLD_NEXT, name));
}

int syncOrFail(int fd, int (*next)(int)) {
  if (shouldFail(fd)) {
    errno = EIO;
    return -1;
  }
  return next(fd);
}

}  // namespace

extern "C" int fdatasync(int fd) {
  static auto next = real<int (*)(int)>("fdatasync");
  return syncOrFail(fd, next);
}

extern "C" int fsync(int fd) {
  static auto next = real<int (*)(int)>("fsync");
  return syncOrFail(fd, next);
}

// Once the file named by $KFLEX_TEST_FAIL_SSL_NEW_TRIGGER exists, SSL_new fails as it does when
// memory runs out (OpenSSL's own allocation failure), for the accept path of a server under
// memory pressure.
extern "C" void* SSL_new(void* ctx) {
  static auto next = real<void* (*)(void*)>("SSL_new");
  const char* trigger = std::getenv("KFLEX_TEST_FAIL_SSL_NEW_TRIGGER");
  if (trigger != nullptr && ::access(trigger, F_OK) == 0) {
    // OpenSSL queues the reason, which callers such as Asio's engine turn into an exception.
    static auto err_new = real<void (*)()>("ERR_new");
    static auto err_set_error = real<void (*)(int, int, const char*, ...)>("ERR_set_error");
    if (err_new != nullptr && err_set_error != nullptr) {
      err_new();
      err_set_error(ERR_LIB_SSL, ERR_R_MALLOC_FAILURE, nullptr);
    }
    return nullptr;
  }
  return next(ctx);
}
