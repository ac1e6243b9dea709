// SPDX-License-Identifier: Apache-2.0
#include "agent/state/control_plane_state.hpp"

namespace kflex::agent {
namespace {

// Columns of the control_plane_local table (agent_state.cpp makes it).
const char* portColumn(PortRole role) {
  switch (role) {
    case PortRole::Api:
      return "port";
    case PortRole::ControllerManager:
      return "kcm_port";
    case PortRole::Scheduler:
      return "scheduler_port";
  }
  return "port";
}
constexpr const char* kNodeAgentColumn = "node_agent";
constexpr const char* kHookRecordsColumn = "hook_records";
// The host-wide holder of the node agent, in the meta table.
constexpr const char* kNodeAgentHolderKey = "k3s/node-agent";

uint16_t toPort(const std::string& text) {
  try {
    auto v = text.empty() ? 0 : std::stol(text);
    return v > 0 && v <= 65535 ? static_cast<uint16_t>(v) : 0;
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace

std::string ControlPlaneState::text(const char* column) const {
  auto st = store::Statement::prepare(
      *db_, std::string("SELECT coalesce(") + column + ", '') FROM control_plane_local WHERE name = ?");
  if (!st) {
    return "";
  }
  st->bind(1, name_);
  auto row = st->step();
  if (!row || !row.value()) {
    return "";
  }
  return st->columnText(0);
}

Result<store::Statement> ControlPlaneState::upsert(const char* column) {
  auto st = store::Statement::prepare(*db_, std::string("INSERT INTO control_plane_local (name, ") + column +
                                                ") VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET " + column +
                                                " = excluded." + column);
  if (st) {
    st->bind(1, name_);
  }
  return st;
}

Result<void> ControlPlaneState::setNumber(const char* column, std::optional<int64_t> value) {
  auto st = upsert(column);
  if (!st) {
    return st.error();
  }
  if (value) {
    st->bind(2, *value);
  } else {
    st->bindNull(2);
  }
  return st->run();
}

uint16_t ControlPlaneState::port(PortRole role) const { return toPort(text(portColumn(role))); }

Result<void> ControlPlaneState::setPort(PortRole role, uint16_t port) { return setNumber(portColumn(role), port); }

std::set<uint16_t> ControlPlaneState::portsOfDesired() const {
  std::set<uint16_t> out;
  auto st = store::Statement::prepare(*db_,
                                      "SELECT l.port, l.kcm_port, l.scheduler_port FROM control_plane_local l "
                                      "JOIN desired d ON d.name = l.name");
  if (!st) {
    return out;
  }
  (void)st->forEachRow([&](store::Statement& r) {
    for (int col = 0; col < 3; ++col) {
      if (uint16_t port = toPort(r.columnText(col)); port != 0) {
        out.insert(port);
      }
    }
  });
  return out;
}

std::optional<bool> ControlPlaneState::nodeAgent() const {
  std::string v = text(kNodeAgentColumn);
  if (v.empty()) {
    return std::nullopt;
  }
  return v == "1";
}

Result<void> ControlPlaneState::setNodeAgent(std::optional<bool> runs) {
  return setNumber(kNodeAgentColumn, runs ? std::optional<int64_t>(*runs ? 1 : 0) : std::nullopt);
}

std::string ControlPlaneState::nodeAgentHolder() const {
  auto st = store::Statement::prepare(*db_, "SELECT value FROM meta WHERE key = ?");
  if (!st) {
    return "";
  }
  st->bind(1, kNodeAgentHolderKey);
  auto row = st->step();
  return row && row.value() ? st->columnText(0) : "";
}

Result<void> ControlPlaneState::setNodeAgentHolder(const std::string& name) {
  auto st = store::Statement::prepare(*db_, "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)");
  if (!st) {
    return st.error();
  }
  return st->bind(1, kNodeAgentHolderKey).bind(2, name).run();
}

std::string ControlPlaneState::hookRecords() const { return text(kHookRecordsColumn); }

Result<void> ControlPlaneState::setHookRecords(const std::string& records) {
  auto st = upsert(kHookRecordsColumn);
  if (!st) {
    return st.error();
  }
  return st->bind(2, records).run();
}

}  // namespace kflex::agent
