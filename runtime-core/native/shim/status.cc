// CTRDIR/status.json, and the OOM-kill counter of the container's memory cgroup.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shim/shim.h"

namespace shim {

void write_status(const char* dir, const ContainerStatus& s) {
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/status.json", dir) >= static_cast<int>(sizeof path))
    fail("path too long: %s/status.json", dir);
  char started[kTimeLen];
  format_time(started, s.started_at);
  char json[512];
  int n;
  if (!s.stopped) {
    n = snprintf(json, sizeof json, "{\"status\":\"running\",\"pid\":%d,\"startedAt\":\"%s\"}\n",
                 s.pid, started);
  } else {
    char finished[kTimeLen];
    format_time(finished, s.finished_at);
    char sig[24] = "null";
    if (s.signal > 0) {
      char name[16];
      signal_name(s.signal, name);
      snprintf(sig, sizeof sig, "\"%s\"", name);
    }
    n = snprintf(json, sizeof json,
                 "{\"status\":\"stopped\",\"pid\":%d,\"startedAt\":\"%s\",\"finishedAt\":\"%s\","
                 "\"exitCode\":%d,\"signal\":%s,\"oomKilled\":%s}\n",
                 s.pid, started, finished, s.exit_code, sig, s.oom_killed ? "true" : "false");
  }
  write_file_atomic(path, json, static_cast<size_t>(n));
}

namespace {

struct CgroupScan {
  char v1_memory[PATH_MAX] = "";  // "N:memory:/path" (the line may list controllers: "memory,x")
  char v2[PATH_MAX] = "";         // "0::/path"
  char mount2[PATH_MAX] = "";     // where cgroup2 is mounted (from /proc/self/mounts)
};

void copy_field(char* out, const char* s, size_t n) {
  if (n >= PATH_MAX) n = PATH_MAX - 1;
  memcpy(out, s, n);
  out[n] = '\0';
}

void scan_cgroup_line(void* ctx, const char* line, size_t n) {
  auto* scan = static_cast<CgroupScan*>(ctx);
  const char* c1 = static_cast<const char*>(memchr(line, ':', n));
  if (!c1) return;
  const char* rest = c1 + 1;
  const char* c2 =
      static_cast<const char*>(memchr(rest, ':', n - static_cast<size_t>(rest - line)));
  if (!c2) return;
  const char* path = c2 + 1;
  size_t path_len = n - static_cast<size_t>(path - line);
  size_t ctl_len = static_cast<size_t>(c2 - rest);
  if (ctl_len == 0 && c1 - line == 1 && line[0] == '0') {
    copy_field(scan->v2, path, path_len);
    return;
  }
  // Controllers are a comma-separated list, e.g. "memory" or "cpu,cpuacct".
  for (const char* p = rest; p < c2;) {
    const char* comma = static_cast<const char*>(memchr(p, ',', static_cast<size_t>(c2 - p)));
    const char* end = comma ? comma : c2;
    if (end - p == 6 && memcmp(p, "memory", 6) == 0) copy_field(scan->v1_memory, path, path_len);
    p = end + 1;
  }
}

void scan_mount_line(void* ctx, const char* line, size_t n) {
  auto* scan = static_cast<CgroupScan*>(ctx);
  if (scan->mount2[0]) return;
  // "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,... 0 0"
  const char* sp1 = static_cast<const char*>(memchr(line, ' ', n));
  if (!sp1) return;
  const char* target = sp1 + 1;
  const char* sp2 =
      static_cast<const char*>(memchr(target, ' ', n - static_cast<size_t>(target - line)));
  if (!sp2) return;
  size_t rest = n - static_cast<size_t>(sp2 + 1 - line);
  if (rest >= 8 && memcmp(sp2 + 1, "cgroup2 ", 8) == 0)
    copy_field(scan->mount2, target, static_cast<size_t>(sp2 - target));
}

bool scan_file(const char* path, LineFn fn, void* ctx) {
  UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
  return fd && for_each_line(fd.get(), fn, ctx);
}

// Three PATH_MAX buffers, used once: in .bss rather than on the stack the shim keeps for life.
CgroupScan g_cgroup_scan;

struct CounterScan {
  long value = -1;
};

void scan_counter_line(void* ctx, const char* line, size_t n) {
  if (n > 9 && memcmp(line, "oom_kill ", 9) == 0)
    static_cast<CounterScan*>(ctx)->value = strtol(line + 9, nullptr, 10);
}

}  // namespace

bool OomCounter::find(pid_t pid) {
  path[0] = '\0';
  CgroupScan& scan = g_cgroup_scan;
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/%d/cgroup", pid);
  if (!scan_file(proc, scan_cgroup_line, &scan)) return false;
  if (scan.v1_memory[0]) {
    if (snprintf(path, sizeof path, "/sys/fs/cgroup/memory%s/memory.oom_control", scan.v1_memory) >=
        static_cast<int>(sizeof path))
      path[0] = '\0';
  } else if (scan.v2[0]) {
    scan_file("/proc/self/mounts", scan_mount_line, &scan);
    if (!scan.mount2[0]) return false;
    if (snprintf(path, sizeof path, "%s%s/memory.events", scan.mount2, scan.v2) >=
        static_cast<int>(sizeof path))
      path[0] = '\0';
  } else {
    return false;
  }
  // On a hybrid host the v2 mount may lack the memory controller: then there is no counter.
  if (!path[0] || access(path, R_OK) != 0) {
    path[0] = '\0';
    return false;
  }
  return true;
}

long OomCounter::read() const {
  if (!path[0]) return -1;
  CounterScan scan;
  if (!scan_file(path, scan_counter_line, &scan)) return -1;
  return scan.value;
}

}  // namespace shim
