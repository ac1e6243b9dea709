// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <unistd.h>

#include <string>
#include <vector>

#include "tests/support/test_support.hpp"

namespace kflex::test {

/**
 * A network namespace of its own for an agent, joined to this host by a veth pair: this host's
 * end is SUBNET.1/30, the namespace's SUBNET.2/30 (SUBNET = 10.`octet`.PID%250), loopback up in
 * it. Deleting the namespace takes the pair with it, at the end. Needs root and the ip tool.
 */
class VethNamespace {
 public:
  /// `tag`: a letter that keeps the names of tests that run at once apart.
  VethNamespace(const std::string& tag, int octet) {
    std::string id = std::to_string(::getpid() % 100000);
    ns_ = "kflex-" + tag + id;
    host_if_ = "k" + tag + "h" + id;
    std::string inner_if = "k" + tag + "a" + id;
    subnet_ = "10." + std::to_string(octet) + "." + std::to_string(::getpid() % 250) + ".";
    if (::geteuid() != 0 || run({"ip", "netns", "add", ns_}).exit_code != 0) {
      unavailable_ = "network namespaces need root and the ip tool (ip netns add failed)";
      ns_.clear();
      return;
    }
    for (const auto& cmd : std::vector<std::vector<std::string>>{
             {"ip", "link", "add", host_if_, "type", "veth", "peer", "name", inner_if},
             {"ip", "link", "set", inner_if, "netns", ns_},
             {"ip", "addr", "add", hostAddress() + "/30", "dev", host_if_},
             {"ip", "link", "set", host_if_, "up"},
             {"ip", "netns", "exec", ns_, "ip", "addr", "add", innerAddress() + "/30", "dev", inner_if},
             {"ip", "netns", "exec", ns_, "ip", "link", "set", inner_if, "up"},
             {"ip", "netns", "exec", ns_, "ip", "link", "set", "lo", "up"}}) {
      auto r = run(cmd);
      if (r.exit_code != 0 && problem_.empty()) {
        problem_ = cmd[0] + " " + cmd[1] + " " + cmd[2] + ": " + r.err;
      }
    }
  }
  ~VethNamespace() {
    if (!ns_.empty()) {
      run({"ip", "netns", "del", ns_});
    }
  }
  VethNamespace(const VethNamespace&) = delete;
  VethNamespace& operator=(const VethNamespace&) = delete;

  /// Why there is none here (skip the test), or "".
  const std::string& unavailable() const { return unavailable_; }
  /// What failed setting it up (fail the test), or "".
  const std::string& problem() const { return problem_; }
  std::string hostAddress() const { return subnet_ + "1"; }
  std::string innerAddress() const { return subnet_ + "2"; }
  /// An address of the namespace's own that this host has no route to (SUBNET.5/32 on its
  /// loopback, outside the pair's /30): what an edge host's LAN address is behind NAT. "" when it
  /// cannot be added (problem() says why).
  std::string siteAddress() {
    const std::string address = subnet_ + "5";
    auto r = run({"ip", "netns", "exec", ns_, "ip", "addr", "add", address + "/32", "dev", "lo"});
    if (r.exit_code != 0) {
      problem_ = "ip addr add " + address + ": " + r.err;
      return "";
    }
    return address;
  }
  /// A default route in the namespace through this host's end, as an edge host's goes to its
  /// NAT gateway (k3s with its node agent looks its node IP up from it). Nothing in the tests
  /// sends traffic beyond this host. False (problem() says why) when it cannot be added.
  bool defaultRoute() {
    auto r = run({"ip", "netns", "exec", ns_, "ip", "route", "add", "default", "via", hostAddress()});
    if (r.exit_code != 0) {
      problem_ = "ip route add default: " + r.err;
    }
    return r.exit_code == 0;
  }
  /// This host's end of the pair (down: packets vanish both ways, nothing is reset).
  const std::string& hostInterface() const { return host_if_; }
  /// A command line's prefix that runs it in the namespace.
  std::vector<std::string> exec() const { return {"ip", "netns", "exec", ns_}; }

 private:
  std::string ns_;
  std::string host_if_;
  std::string subnet_;
  std::string unavailable_;
  std::string problem_;
};

}  // namespace kflex::test
