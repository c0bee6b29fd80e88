#include "runtime/state.h"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "common/container_id.h"
#include "common/error.h"
#include "common/fs.h"
#include "runtime/hooks.h"

namespace conductor {

using json = nlohmann::json;

void validate_id(const std::string& id) { validate_container_id(id); }

uint64_t process_start_time(pid_t pid, bool* zombie) {
  auto s = read_file_if_exists("/proc/" + std::to_string(pid) + "/stat");
  if (zombie) *zombie = false;
  if (!s) return 0;
  // comm may contain spaces and parentheses: fields start after the last ')'.
  size_t close = s->rfind(')');
  if (close == std::string::npos || close + 2 >= s->size()) return 0;
  if (zombie) *zombie = (*s)[close + 2] == 'Z' || (*s)[close + 2] == 'X';
  std::istringstream in(s->substr(close + 2));
  std::string f;
  for (int i = 3; i <= 22 && in >> f; ++i) {
    if (i == 22) return std::stoull(f);
  }
  return 0;
}

std::string now_rfc3339() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t;
  gmtime_r(&ts.tv_sec, &t);
  char buf[64];
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
  snprintf(buf + n, sizeof buf - n, ".%09ldZ", ts.tv_nsec);
  return buf;
}

void StateStore::create_dir(const std::string& id) const {
  mkdir_p(root_, 0700);
  if (::mkdir(dir(id).c_str(), 0700) < 0) {
    if (errno == EEXIST) throw Error("container `" + id + "` already exists", EEXIST);
    throw_errno("mkdir `" + dir(id) + "`");
  }
}

void StateStore::save(const ContainerState& s) const {
  json j = {{"id", s.id},
            {"bundle", s.bundle},
            {"cgroupsPath", s.cgroups_path},
            {"created", s.created},
            {"pid", s.pid},
            {"pidStartTime", s.pid_start_time},
            {"namespaces", s.namespaces},
            {"annotations", s.annotations},
            {"poststart", hooks_to_json(s.poststart)},
            {"poststop", hooks_to_json(s.poststop)}};
  write_file_atomic(dir(s.id) + "/state.json", j.dump(), 0600);
}

ContainerState StateStore::load(const std::string& id) const {
  validate_id(id);
  auto text = read_file_if_exists(dir(id) + "/state.json");
  if (!text) throw Error("container `" + id + "` does not exist", ENOENT);
  ContainerState s;
  try {
    json j = json::parse(*text);
    s.id = j.at("id").get<std::string>();
    s.bundle = j.at("bundle").get<std::string>();
    s.cgroups_path = j.at("cgroupsPath").get<std::string>();
    s.created = j.at("created").get<std::string>();
    s.pid = j.at("pid").get<pid_t>();
    s.pid_start_time = j.at("pidStartTime").get<uint64_t>();
    s.namespaces = j.at("namespaces").get<std::vector<std::string>>();
    s.annotations = j.at("annotations").get<std::map<std::string, std::string>>();
    // Absent in the state of a container created before hooks were supported.
    if (j.contains("poststart")) s.poststart = hooks_from_json(j.at("poststart"));
    if (j.contains("poststop")) s.poststop = hooks_from_json(j.at("poststop"));
  } catch (const json::exception& e) {
    throw Error("state of container `" + id + "` is corrupt: " + e.what());
  }
  return s;
}

void StateStore::remove(const std::string& id) const { remove_all(dir(id)); }

std::vector<std::string> StateStore::ids() const {
  std::vector<std::string> out;
  for (const auto& name : list_dir(root_)) {
    if (path_exists(dir(name) + "/state.json")) out.push_back(name);
  }
  return out;
}

std::string StateStore::status(const ContainerState& s) const {
  bool zombie = false;
  uint64_t st = s.pid > 0 ? process_start_time(s.pid, &zombie) : 0;
  if (st == 0 || st != s.pid_start_time || zombie) return "stopped";
  return path_exists(fifo(s.id)) ? "created" : "running";
}

}  // namespace conductor
