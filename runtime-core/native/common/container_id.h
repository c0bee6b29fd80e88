// The container-id rule, once for the native core (runtime and shim): 1-64 characters of
// [A-Za-z0-9_.-], the first a letter or digit. An id names a state directory, runtime state and
// a cgroup, so it is one safe path component. The TypeScript side derives ids that pass
// (runtime-core/src/container-id.ts); test/integration/container-id.test.ts checks both agree.
#pragma once

#include <string>
#include <string_view>

#include "common/error.h"

namespace conductor {

inline constexpr size_t kContainerIdMax = 64;

inline bool valid_container_id(std::string_view id) {
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (id.empty() || id.size() > kContainerIdMax || !alnum(id[0])) return false;
  for (char c : id)
    if (!alnum(c) && c != '_' && c != '.' && c != '-') return false;
  return true;
}

// Throws conductor::Error naming the id and the rule.
inline void validate_container_id(const std::string& id) {
  if (!valid_container_id(id))
    throw Error("invalid container id `" + id +
                "`: use 1-64 of [A-Za-z0-9_.-], starting with a letter or digit");
}

}  // namespace conductor
