// SPDX-License-Identifier: Apache-2.0
// README.md's walkthroughs, run as written: every ```sh block of the walkthrough sections, in
// order, in one shell, against a fresh hub started by the README's own command, so that README
// and code cannot drift apart. Only three things are changed, the same way in every block: the
// hub's port (a free one instead of 6443), `build/bin/` (the binaries under test), and `sudo `
// (the test runs as the user it is; what needs root is skipped by the code itself).
#include <gtest/gtest.h>
#include <unistd.h>

#include <set>
#include <sstream>

#include "shared/common/util.hpp"
#include "shared/net/asio.hpp"
#include "tests/integration/agent_cleanup.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::test {
namespace {

namespace fs = std::filesystem;

struct Block {
  std::string section;
  std::string text;
  /// The comment lines that end a block showing an error: what the last command must print
  /// (each without its "# " and a trailing "..."), and it must fail.
  std::vector<std::string> expected_error;
};

// The ```sh blocks of README.md, with the section ("## ...") each is in.
std::vector<Block> shellBlocks(const std::string& readme) {
  std::vector<Block> out;
  std::istringstream in(readme);
  std::string line, section;
  bool inside = false;
  Block b;
  while (std::getline(in, line)) {
    if (!inside && line.rfind("## ", 0) == 0) {
      section = line.substr(3);
    } else if (!inside && line == "```sh") {
      inside = true;
      b = Block{section, "", {}};
    } else if (inside && line == "```") {
      inside = false;
      // Trailing comment lines that quote an error: the block must fail and print them.
      auto lines = split(b.text, '\n');
      size_t first_comment = lines.size();
      while (first_comment > 0 && (lines[first_comment - 1].rfind("# ", 0) == 0 || lines[first_comment - 1].empty())) {
        --first_comment;
      }
      if (first_comment < lines.size() && lines[first_comment].find("is invalid") != std::string::npos) {
        for (size_t i = first_comment; i < lines.size(); ++i) {
          std::string e = lines[i].substr(std::min<size_t>(2, lines[i].size()));
          if (auto dots = e.rfind(" ..."); dots != std::string::npos && dots + 4 == e.size()) {
            e.resize(dots);
          }
          if (e.rfind("* ", 0) == 0) {
            e = e.substr(2);
          }
          if (!e.empty()) {
            b.expected_error.push_back(e);
          }
        }
      }
      out.push_back(b);
    } else if (inside) {
      b.text += line + "\n";
    }
  }
  return out;
}

std::string replaceAll(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
  return s;
}

int freePort() {
  net::io_context ioc;
  net::ip::tcp::acceptor a(ioc, {net::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

TEST(Readme, TheWalkthroughRunsAsWritten) {
  if (kubectlPath().empty()) {
    GTEST_SKIP() << "kubectl is not installed";
  }
  auto readme = readFile(sourceDir() / "README.md");
  ASSERT_TRUE(readme) << readme.error().message;
  auto blocks = shellBlocks(readme.value());
  TempDir dir;
  const fs::path work = dir.path() / "checkout";
  fs::create_directories(work / "home");
  const std::string port = std::to_string(freePort());
  auto adapt = [&](std::string text) {
    text = replaceAll(text, "127.0.0.1:6443", "127.0.0.1:" + port);
    text = replaceAll(text, "build/bin/", binDir().string() + "/");
    text = replaceAll(text, "sudo ", "");
    return text;
  };

  // The hub: the last command of the first block ("Set up"), without the install and build before it.
  ASSERT_FALSE(blocks.empty());
  const std::string& setup = blocks.front().text;
  auto serve_at = setup.find("build/bin/kflex-hub serve");
  ASSERT_NE(serve_at, std::string::npos) << "README's first block no longer starts the hub:\n" << setup;
  std::string serve = adapt(setup.substr(serve_at, setup.find('\n', serve_at) - serve_at));
  Process hub({"bash", "-c", "cd '" + work.string() + "' && exec " + serve}, dir.path() / "hub.log");
  ASSERT_TRUE(waitFor([&] { return hub.log().find("kflex-hub serving") != std::string::npos || !hub.running(); },
                      std::chrono::seconds(20), "the hub"))
      << hub.log();
  ASSERT_TRUE(hub.running()) << serve << "\n" << hub.log();

  // Every block of the walkthroughs, in one shell (exports and background jobs carry over).
  const std::set<std::string> walkthroughs = {"Five minutes with kubectl", "An edge agent in one minute",
                                              "Existing clusters: adopt, and the hub's own", "PostCreateHooks"};
  std::string script = "set -euo pipefail\ncd '" + work.string() + "'\nexport HOME='" + (work / "home").string() +
                       "'\nunset KUBECONFIG\n";
  size_t n = 0;
  std::vector<const Block*> failing;
  for (const auto& b : blocks) {
    if (!walkthroughs.count(b.section)) {
      continue;
    }
    ++n;
    fs::path file = dir.path() / ("block-" + std::to_string(n) + ".sh");
    ASSERT_TRUE(writeFileAtomic(file, adapt(b.text), 0600));
    std::string section = b.section;
    std::erase(section, '\'');
    script += "echo '=== block " + std::to_string(n) + " (" + section + ")' >&2\n";
    if (b.expected_error.empty()) {
      script += "source '" + file.string() + "'\n";
    } else {
      failing.push_back(&b);
      fs::path out = dir.path() / ("block-" + std::to_string(n) + ".out");
      script += "if source '" + file.string() + "' > '" + out.string() + "' 2>&1; then echo 'block " +
                std::to_string(n) + " should have failed' >&2; exit 1; fi\n";
    }
  }
  ASSERT_GE(n, 6u) << "the walkthrough sections were renamed: update this test";
  script += "echo '=== walkthrough done' >&2\nkill $(jobs -p) 2>/dev/null || true\n";
  ASSERT_TRUE(writeFileAtomic(dir.path() / "walkthrough.sh", script, 0600));
  // Its own session and process group: whatever it leaves running is ended with it.
  Process shell({"setsid", "bash", (dir.path() / "walkthrough.sh").string()}, dir.path() / "walkthrough.log");
  int rc = shell.wait(std::chrono::seconds(240));
  std::string log = shell.log();
  ::kill(-shell.pid(), SIGKILL);
  endControlPlanes(work / "agent-data");
  EXPECT_EQ(rc, 0) << "the walkthrough stopped at the last block named below\n" << log << "\n--- hub ---\n"
                   << hub.log();
  EXPECT_NE(log.find("=== walkthrough done"), std::string::npos);
  // The blocks that show an error printed it.
  n = 0;
  for (const auto& b : blocks) {
    if (!walkthroughs.count(b.section)) {
      continue;
    }
    ++n;
    if (b.expected_error.empty()) {
      continue;
    }
    auto out = readFile(dir.path() / ("block-" + std::to_string(n) + ".out"));
    ASSERT_TRUE(out);
    for (const auto& e : b.expected_error) {
      EXPECT_NE(out.value().find(e), std::string::npos) << "block " << n << " should print\n  " << e << "\nbut printed\n"
                                                        << out.value();
    }
  }
  EXPECT_FALSE(failing.empty()) << "README no longer shows what bad input gets";
}

}  // namespace
}  // namespace kflex::test
