// state and list: what the runtime knows of its containers, status observed from the kernel.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "runtime/container.h"
#include "runtime/hooks.h"

namespace conductor {

using json = nlohmann::json;

namespace {
json state_json(const StateStore& store, const ContainerState& s) {
  std::string status = store.status(s);
  json j = oci_state(s.id, status, status == "stopped" ? 0 : s.pid, s.bundle, s.annotations);
  j["rootfs"] = s.bundle + "/rootfs";
  j["created"] = s.created;
  return j;
}
}  // namespace

void container_state(const GlobalOptions& g, const std::string& id) {
  StateStore store(g.root);
  std::printf("%s\n", state_json(store, store.load(id)).dump(2).c_str());
}

void container_list(const GlobalOptions& g, const std::string& format) {
  StateStore store(g.root);
  json all = json::array();
  for (const auto& id : store.ids()) {
    try {
      all.push_back(state_json(store, store.load(id)));
    } catch (const std::exception&) {
      // Being removed concurrently: not listed.
    }
  }
  if (format == "json") {
    std::printf("%s\n", all.dump().c_str());
    return;
  }
  std::printf("%-24s %-8s %-10s %-40s %s\n", "ID", "PID", "STATUS", "BUNDLE", "CREATED");
  for (const auto& c : all) {
    std::printf("%-24s %-8d %-10s %-40s %s\n", c["id"].get<std::string>().c_str(),
                c["pid"].get<int>(), c["status"].get<std::string>().c_str(),
                c["bundle"].get<std::string>().c_str(), c["created"].get<std::string>().c_str());
  }
}

}  // namespace conductor
