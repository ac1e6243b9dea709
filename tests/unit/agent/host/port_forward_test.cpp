// SPDX-License-Identifier: Apache-2.0
#include "agent/host/port_forward.hpp"

#include <gtest/gtest.h>

#include "agent/host/ports.hpp"

namespace kflex::agent::runtime {
namespace {

// A port another program holds is told by the error's code (the runtimes turn it into the
// condition reason PortInUse), not by its message.
TEST(PortForward, APortAnotherProgramHoldsIsAConflict) {
  net::io_context ioc;
  net::ip::tcp::acceptor holder(ioc, {net::ip::make_address("127.0.0.1"), 0});  // listening
  const uint16_t taken = holder.local_endpoint().port();
  auto f = PortForward::open(ioc.get_executor(), "127.0.0.1", taken, nullptr, 80);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code, Errc::Conflict) << f.error().message;
  EXPECT_NE(f.error().message.find("another program holds the port"), std::string::npos) << f.error().message;
  // Other failures are not conflicts.
  auto bad = PortForward::open(ioc.get_executor(), "not-an-address", 0, nullptr, 80);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::Internal) << bad.error().message;
  auto free_port = PortForward::open(ioc.get_executor(), "127.0.0.1", 0, nullptr, 80);
  ASSERT_TRUE(free_port) << free_port.error().message;
  EXPECT_NE(free_port.value()->port(), 0);
  free_port.value()->close();
}

TEST(FreePort, PicksOneOrSaysWhyNot) {
  auto port = freePort("127.0.0.1");
  ASSERT_TRUE(port) << port.error().message;
  EXPECT_NE(*port, 0);
  auto bad = freePort("not-an-address");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::Internal);
}

}  // namespace
}  // namespace kflex::agent::runtime
