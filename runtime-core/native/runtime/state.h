// The runtime's own record of a container under --root: <root>/<id>/state.json (+ exec.fifo
// between create and start). Status is observed, not stored: a live init (same pid and start
// time) waiting on exec.fifo is "created", a live one past it "running", anything else
// "stopped".
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "runtime/spec.h"

namespace conductor {

struct ContainerState {
  std::string id, bundle, cgroups_path, created;
  pid_t pid = 0;
  uint64_t pid_start_time = 0;
  std::vector<std::string> namespaces;  // types the container has of its own (for exec)
  std::map<std::string, std::string> annotations;
  // Hooks of the stages that run after create (start, delete): kept from config.json.
  std::vector<Hook> poststart, poststop;
};

class StateStore {
 public:
  explicit StateStore(std::string root) : root_(std::move(root)) {}
  const std::string& root() const { return root_; }
  std::string dir(const std::string& id) const { return root_ + "/" + id; }
  std::string fifo(const std::string& id) const { return dir(id) + "/exec.fifo"; }

  // Creates <root>/<id> (fails with "already exists" if it does).
  void create_dir(const std::string& id) const;
  void save(const ContainerState& s) const;
  ContainerState load(const std::string& id) const;  // "container `x` does not exist"
  void remove(const std::string& id) const;
  std::vector<std::string> ids() const;
  std::string status(const ContainerState& s) const;

 private:
  std::string root_;
};

void validate_id(const std::string& id);
// Field 22 of /proc/PID/stat (0 when the process is gone); `zombie` set when it is a zombie.
uint64_t process_start_time(pid_t pid, bool* zombie = nullptr);
std::string now_rfc3339();

}  // namespace conductor
