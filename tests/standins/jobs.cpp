// SPDX-License-Identifier: Apache-2.0
// The Job controller of the stand-in clusters. No container runs: what a Job's container would do
// is read from its command and arguments, so tests say in the spec how a Job ends:
// - `sleep N` runs N seconds, `sleep infinity` never ends;
// - `exit N` (N > 0) or the command `false` fails every attempt (BackoffLimitExceeded);
// - anything else succeeds at once (`echo`, `helm upgrade --install ...`);
// - spec.activeDeadlineSeconds ends a Job still running with DeadlineExceeded, as Kubernetes does;
// - a pod that mounts a secret missing from its namespace does not start, as a kubelet waits.
// Bare pods (runPods) end the same way; a vCluster's Jobs run through pods (runJobsThroughPods).
#include <regex>

#include "shared/common/log.hpp"
#include "shared/common/time.hpp"
#include "shared/tls/pki.hpp"
#include "tests/standins/standin.hpp"

namespace kflex::standin {

namespace {

using Json = nlohmann::json;

struct Script {
  bool fails = false;
  std::optional<double> runs_for = 0;  // nullopt: forever
};

Script scriptOf(const Json& pod_spec) {
  Script s;
  for (const auto& c : pod_spec.value("containers", Json::array())) {
    std::string text;
    for (const char* field : {"command", "args"}) {
      for (const auto& word : c.value(field, Json::array())) {
        if (word.is_string()) {
          text += word.get<std::string>() + " ";
        }
      }
    }
    static const std::regex kSleep(R"((?:^|[\s;&|])sleep\s+(infinity|\d+(?:\.\d+)?))");
    static const std::regex kExit(R"((?:^|[\s;&|])exit\s+([1-9]\d*))");
    std::smatch m;
    if (std::regex_search(text, m, kSleep)) {
      if (m[1] == "infinity") {
        s.runs_for = std::nullopt;
      } else if (s.runs_for) {
        s.runs_for = std::max(*s.runs_for, std::stod(m[1]));
      }
    }
    if (std::regex_search(text, kExit) || text.rfind("false ", 0) == 0) {
      s.fails = true;
    }
  }
  return s;
}

Json condition(const std::string& type, const std::string& reason, const std::string& message,
               const std::string& now) {
  return {{"type", type}, {"status", "True"}, {"reason", reason}, {"message", message},
          {"lastProbeTime", now}, {"lastTransitionTime", now}};
}

// The status a Job moves to now, or null when nothing changes.
Json nextStatus(ApiServer& server, const Json& job, std::chrono::system_clock::time_point now) {
  const Json status = job.value("status", Json::object());
  for (const auto& c : status.value("conditions", Json::array())) {
    if ((c.value("type", "") == "Complete" || c.value("type", "") == "Failed") && c.value("status", "") == "True") {
      return nullptr;  // finished
    }
  }
  std::string ns = job["metadata"].value("namespace", "");
  const Json spec = job.value("spec", Json::object());
  const Json pod = spec.value("template", Json::object()).value("spec", Json::object());
  // A pod whose secret volume is missing waits (ContainerCreating) until it appears.
  const auto* secrets = server.registry().find("", "v1", "secrets");
  bool can_start = true;
  for (const auto& v : pod.value("volumes", Json::array())) {
    const Json secret = v.value("secret", Json());
    if (secret.is_object() && !secret.value("optional", false) &&
        !server.store().get(hub::resourceKey(*secrets, ns), secret.value("secretName", ""))) {
      can_start = false;
    }
  }
  std::string stamp = formatTime(now);
  auto started = parseTime(status.value("startTime", ""));
  Json next = status;
  if (!started) {
    next["startTime"] = stamp;
    next["active"] = 1;
    started = now;
  }
  double elapsed = std::chrono::duration<double>(now - *started).count();
  Script script = scriptOf(pod);
  int64_t deadline = spec.value("activeDeadlineSeconds", int64_t(0));
  int64_t backoff = spec.value("backoffLimit", int64_t(6));
  int64_t completions = spec.value("completions", int64_t(1));
  Json conditions = Json::array();
  if (deadline > 0 && elapsed >= static_cast<double>(deadline)) {
    conditions.push_back(condition("Failed", "DeadlineExceeded", "Job was active longer than specified deadline", stamp));
    next["failed"] = 1;
  } else if (!can_start) {
    // (waiting for the secret)
  } else if (script.fails) {
    conditions.push_back(condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit", stamp));
    next["failed"] = backoff + 1;
  } else if (script.runs_for && elapsed >= *script.runs_for) {
    conditions.push_back({{"type", "Complete"}, {"status", "True"}, {"lastProbeTime", stamp}, {"lastTransitionTime", stamp}});
    next["succeeded"] = completions;
    next["completionTime"] = stamp;
  }
  if (!conditions.empty()) {
    next["conditions"] = conditions;
    next["active"] = 0;
    next["ready"] = 0;
  }
  return next == status ? Json(nullptr) : next;
}

}  // namespace

net::awaitable<void> runJobs(ApiServer& server) {
  const auto* jobs = server.registry().find("batch", "v1", "jobs");
  if (jobs == nullptr) {
    co_return;
  }
  auto now = std::chrono::system_clock::now();
  for (const auto& rec : server.store().listPrefix(hub::resourceKey(*jobs, "")).first) {
    Json job = Json::parse(rec->bytes, nullptr, false);
    if (!job.is_object() || job["metadata"].contains("deletionTimestamp")) {
      continue;
    }
    Json next = nextStatus(server, job, now);
    if (next.is_null()) {
      continue;
    }
    std::string ns = job["metadata"].value("namespace", "");
    std::function<bool(Json&)> change = [next](Json& o) {
      o["status"] = next;
      return true;
    };
    co_await server.api().changeStatusIn(*jobs, ns, rec->name, change);
  }
}

net::awaitable<void> runPods(ApiServer& server) {
  const auto* pods = server.registry().find("", "v1", "pods");
  auto now = std::chrono::system_clock::now();
  for (const auto& rec : server.store().listPrefix(hub::resourceKey(*pods, "")).first) {
    Json pod = Json::parse(rec->bytes, nullptr, false);
    if (!pod.is_object() || pod["metadata"].contains("deletionTimestamp")) {
      continue;
    }
    const Json status = pod.value("status", Json::object());
    std::string phase = status.value("phase", "");
    if (phase == "Succeeded" || phase == "Failed") {
      continue;
    }
    Json next = status;
    auto started = parseTime(status.value("startTime", ""));
    if (!started) {
      next["phase"] = "Running";
      next["startTime"] = formatTime(now);
    } else {
      Script script = scriptOf(pod.value("spec", Json::object()));
      double elapsed = std::chrono::duration<double>(now - *started).count();
      if (script.fails) {
        next["phase"] = "Failed";
      } else if (script.runs_for && elapsed >= *script.runs_for) {
        next["phase"] = "Succeeded";
      } else {
        continue;
      }
    }
    std::string ns = pod["metadata"].value("namespace", "");
    std::function<bool(Json&)> change = [next](Json& o) {
      o["status"] = next;
      return true;
    };
    co_await server.api().changeStatusIn(*pods, ns, rec->name, change);
  }
}

net::awaitable<void> runJobsThroughPods(ApiServer& server) {
  const auto* jobs = server.registry().find("batch", "v1", "jobs");
  const auto* pods = server.registry().find("", "v1", "pods");
  auto now = std::chrono::system_clock::now();
  std::string stamp = formatTime(now);
  for (const auto& rec : server.store().listPrefix(hub::resourceKey(*jobs, "")).first) {
    Json job = Json::parse(rec->bytes, nullptr, false);
    if (!job.is_object() || job["metadata"].contains("deletionTimestamp")) {
      continue;
    }
    const Json status = job.value("status", Json::object());
    bool finished = false;
    for (const auto& c : status.value("conditions", Json::array())) {
      finished = finished || c.value("type", "") == "Complete" || c.value("type", "") == "Failed";
    }
    if (finished) {
      continue;
    }
    std::string ns = job["metadata"].value("namespace", "");
    std::string pod_name = rec->name + "-" + tls::sha256Hex(job["metadata"].value("uid", rec->name)).substr(0, 5);
    auto pod = server.store().get(hub::resourceKey(*pods, ns), pod_name);
    Json next = status;
    if (!pod) {
      const Json tmpl = job.value("spec", Json::object()).value("template", Json::object());
      Json obj = {{"apiVersion", "v1"},
                  {"kind", "Pod"},
                  {"metadata", {{"name", pod_name}, {"namespace", ns},
                                {"labels", {{"job-name", rec->name}}},
                                {"ownerReferences", Json::array({{{"apiVersion", "batch/v1"}, {"kind", "Job"},
                                                                  {"name", rec->name},
                                                                  {"uid", job["metadata"].value("uid", "")},
                                                                  {"controller", true}}})}}},
                  {"spec", tmpl.value("spec", Json::object())}};
      Result<Json> made = co_await server.api().create(*pods, obj);
      if (!made) {
        log::error("cannot make a Job's pod", {{"job", ns + "/" + rec->name}, {"answer", made.error().message}});
        continue;
      }
      if (!status.contains("startTime")) {
        next["startTime"] = stamp;
        next["active"] = 1;
      }
    } else {
      std::string phase = Json::parse(pod->bytes, nullptr, false).value("status", Json::object()).value("phase", "");
      auto started = parseTime(status.value("startTime", ""));
      int64_t deadline = job.value("spec", Json::object()).value("activeDeadlineSeconds", int64_t(0));
      Json conditions = Json::array();
      if (phase == "Succeeded") {
        conditions.push_back({{"type", "Complete"}, {"status", "True"}, {"lastProbeTime", stamp}, {"lastTransitionTime", stamp}});
        next["succeeded"] = 1;
        next["completionTime"] = stamp;
      } else if (phase == "Failed") {
        conditions.push_back(condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit", stamp));
        next["failed"] = 1;
      } else if (deadline > 0 && started &&
                 std::chrono::duration<double>(now - *started).count() >= static_cast<double>(deadline)) {
        conditions.push_back(condition("Failed", "DeadlineExceeded", "Job was active longer than specified deadline", stamp));
        next["failed"] = 1;
      }
      if (!conditions.empty()) {
        next["conditions"] = conditions;
        next["active"] = 0;
      }
    }
    if (next != status) {
      std::function<bool(Json&)> change = [next](Json& o) {
        o["status"] = next;
        return true;
      };
      co_await server.api().changeStatusIn(*jobs, ns, rec->name, change);
    }
  }
}

net::awaitable<void> runCrds(ApiServer& server) {
  const auto* crds = server.registry().find("apiextensions.k8s.io", "v1", "customresourcedefinitions");
  if (crds == nullptr) {
    co_return;
  }
  std::string now = formatTime(std::chrono::system_clock::now());
  for (const auto& rec : server.store().list(hub::resourceKey(*crds)).first) {
    if (rec->bytes.find("\"Established\"") != std::string::npos) {
      continue;
    }
    std::function<bool(Json&)> change = [now](Json& o) {
      Json names = o.value("spec", Json::object()).value("names", Json::object());
      o["status"] = {{"acceptedNames", names},
                     {"conditions", Json::array({{{"type", "NamesAccepted"}, {"status", "True"},
                                                  {"reason", "NoConflicts"}, {"message", "no conflicts found"},
                                                  {"lastTransitionTime", now}},
                                                 {{"type", "Established"}, {"status", "True"},
                                                  {"reason", "InitialNamesAccepted"},
                                                  {"message", "the initial names have been accepted"},
                                                  {"lastTransitionTime", now}}})}};
      return true;
    };
    co_await server.api().changeStatus(*crds, rec->name, change);
  }
}

}  // namespace kflex::standin
