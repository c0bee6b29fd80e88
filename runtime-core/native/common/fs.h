// Small file-system helpers shared by the runtime, the addon and the shim.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace conductor {

// Whole-file read; throws Error naming the path.
std::string read_file(const std::string& path);
// nullopt when the file does not exist; throws for any other failure.
std::optional<std::string> read_file_if_exists(const std::string& path);
// Writes `data` to an existing file (cgroup and proc files): open(O_WRONLY|O_TRUNC), one write.
void write_file(const std::string& path, const std::string& data);
// Writes atomically: a temp file in the same directory, fsync-free rename over `path`.
void write_file_atomic(const std::string& path, const std::string& data, mode_t mode = 0644);
// mkdir -p; existing directories are fine.
void mkdir_p(const std::string& path, mode_t mode = 0755);
bool path_exists(const std::string& path);
// Removes a tree without following symlinks and without crossing into other mounts.
void remove_all(const std::string& path);
std::vector<std::string> list_dir(const std::string& path);
std::string trim(const std::string& s);

}  // namespace conductor
