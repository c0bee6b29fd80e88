// features: the runtime-spec's features document (features.md), as runc and crun print it, so a
// caller (containerd, podman) can tell what this runtime supports before it writes a config.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "runtime/cloned_binary.h"
#include "runtime/container.h"
#include "runtime/security.h"
#include "runtime/spec.h"

namespace conductor {

void container_features() {
  using json = nlohmann::json;
  SeccompFeatures sec = seccomp_features();
  json doc = {
      {"ociVersionMin", "1.0.0"},
      {"ociVersionMax", "1.3.0"},
      {"hooks", known_hook_stages()},
      {"mountOptions", known_mount_options()},
      {"linux",
       {{"namespaces", known_namespaces()},
        {"capabilities", known_capabilities()},
        {"cgroup", {{"v1", true}, {"v2", true}, {"systemd", false}, {"systemdUser", false}}},
        {"seccomp",
         {{"enabled", true},
          {"actions", sec.actions},
          {"operators", sec.operators},
          {"supportedFlags", sec.flags}}},
        {"apparmor", {{"enabled", false}}},
        {"selinux", {{"enabled", false}}},
        {"intelRdt", {{"enabled", false}}},
        {"mountExtensions", {{"idmap", {{"enabled", true}}}}}}},
      // Conductor's own, beside the spec's: whether this process runs from its sealed copy.
      {"sealedBinary", running_from_sealed_memfd()},
  };
  std::printf("%s\n", doc.dump(2).c_str());
}

}  // namespace conductor
