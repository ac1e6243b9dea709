// SPDX-License-Identifier: Apache-2.0
// Replays fuzz/corpus/TARGET/* through each fuzz target (fuzz/*_fuzz.cpp): the seeds, and every
// input fuzzing kept or found a crash with. A crash, an exception or an abort fails the test.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "fuzz/fuzz_target.hpp"

namespace kflex::fuzz {
namespace {

namespace fs = std::filesystem;

TEST(FuzzCorpus, EveryCheckedInInputRunsCleanly) {
  ASSERT_EQ(targets().size(), 4u) << "a fuzz target is not linked into this test";
  for (const auto& [name, target] : targets()) {
    fs::path dir = fs::path(KFLEX_FUZZ_CORPUS) / name;
    ASSERT_TRUE(fs::is_directory(dir)) << dir;
    size_t inputs = 0;
    for (const auto& entry : fs::directory_iterator(dir)) {
      std::ifstream in(entry.path(), std::ios::binary);
      std::stringstream bytes;
      bytes << in.rdbuf();
      std::string data = bytes.str();
      SCOPED_TRACE(entry.path().string());
      EXPECT_NO_THROW(target(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
      ++inputs;
    }
    EXPECT_GT(inputs, 0u) << "no corpus for " << name;
  }
}

}  // namespace
}  // namespace kflex::fuzz
