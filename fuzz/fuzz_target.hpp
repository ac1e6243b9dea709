// SPDX-License-Identifier: Apache-2.0
// One fuzz target, two builds. With KFLEX_LIBFUZZER (clang, -fsanitize=fuzzer) it is libFuzzer's
// entry point and the file builds a fuzzer executable. Without it the function is registered by
// name, and the corpus replay test (tests/unit/fuzz_replay_test.cpp) runs every checked-in input
// through it in the ordinary build, so CI catches a regression on any input fuzzing once found.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

namespace kflex::fuzz {

using Target = int (*)(const uint8_t* data, size_t size);

/// The targets linked into this program, by name (the folder of their corpus under fuzz/corpus).
inline std::map<std::string, Target>& targets() {
  static std::map<std::string, Target> all;
  return all;
}

struct Registrar {
  Registrar(const char* name, Target t) { targets()[name] = t; }
};

}  // namespace kflex::fuzz

#ifdef KFLEX_LIBFUZZER
#define KFLEX_FUZZ_TARGET(name) extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
#else
#define KFLEX_FUZZ_TARGET(name)                                                    \
  static int kflexFuzz_##name(const uint8_t* data, size_t size);                   \
  static const ::kflex::fuzz::Registrar kflexFuzzRegistrar_##name(#name, &kflexFuzz_##name); \
  static int kflexFuzz_##name(const uint8_t* data, size_t size)
#endif
