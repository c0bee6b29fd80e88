// conductor-runtime: the OCI runtime command line (as runc and crun), see runtime-core/README.md.
#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.h"
#include "runtime/cloned_binary.h"
#include "runtime/container.h"
#include "runtime/security.h"
#include "runtime/spec.h"
#include "runtime/state.h"

using namespace conductor;

namespace {

const char kUsage[] =
    "usage: conductor-runtime [--root DIR] [--log FILE] [--log-format text|json] COMMAND\n"
    "  create [--bundle|-b DIR] [--pid-file FILE] ID\n"
    "  start ID\n"
    "  run [--bundle|-b DIR] [--pid-file FILE] [--detach|-d] ID\n"
    "  state ID\n"
    "  kill [--all|-a] ID [SIGNAL]\n"
    "  delete [--force|-f] ID\n"
    "  exec [--detach|-d] [--tty|-t] [--pid-file FILE] [--env|-e K=V]... [--cwd DIR]\n"
    "       [--user UID[:GID]]\n"
    "       [--process FILE] ID [--] CMD [ARG...]\n"
    "  list [--format|-f table|json]\n"
    "  prepare [--bundle|-b DIR]\n"
    "  features\n";

struct Args {
  std::vector<std::string> v;
  size_t i = 0;
  bool done() const { return i >= v.size(); }
  const std::string& peek() const { return v[i]; }
  std::string next(const std::string& what) {
    if (done()) throw Error("missing " + what + "\n" + kUsage);
    return v[i++];
  }
  // Matches --name VALUE, --name=VALUE and the short form; fills `out`.
  bool option(const char* lng, const char* shrt, std::string& out) {
    const std::string& a = v[i];
    std::string eq = std::string(lng) + "=";
    if (a == lng || (shrt && a == shrt)) {
      ++i;
      out = next(std::string("value for ") + lng);
      return true;
    }
    if (a.rfind(eq, 0) == 0) {
      out = a.substr(eq.size());
      ++i;
      return true;
    }
    return false;
  }
  bool flag(const char* lng, const char* shrt) {
    if (v[i] == lng || (shrt && v[i] == shrt)) {
      ++i;
      return true;
    }
    return false;
  }
};

void unknown(const std::string& a) { throw Error("unknown option `" + a + "`\n" + kUsage); }

int dispatch(GlobalOptions& g, Args& a, char** argv) {
  // Global options come before the command (runc's --debug and --systemd-cgroup are named).
  while (!a.done() && a.peek().rfind("-", 0) == 0) {
    std::string ignored;
    if (a.option("--root", nullptr, g.root) || a.option("--log", nullptr, g.log) ||
        a.option("--log-format", nullptr, g.log_format))
      continue;
    if (a.flag("--debug", nullptr)) continue;
    if (a.flag("--systemd-cgroup", nullptr))
      throw Error("--systemd-cgroup: not supported (conductor-runtime manages cgroupfs itself)");
    if (a.flag("--help", "-h")) {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a.flag("--version", "-v")) {
      std::puts("conductor-runtime version 0.1.0\nspec: 1.0.2");
      return 0;
    }
    unknown(a.peek());
  }
  if (g.log_format != "text" && g.log_format != "json")
    throw Error("--log-format must be text or json");
  std::string cmd = a.next("command");
  // Commands that bring a process into a container run from a sealed copy of the binary.
  if (cmd == "create" || cmd == "run" || cmd == "exec") {
    ensure_cloned_binary(argv);
    // Not dumpable: a process in the container cannot ptrace or read the memory of the
    // runtime's children before they exec (execve makes the container's program dumpable
    // again). runc does the same.
    ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  }

  if (cmd == "create" || cmd == "run") {
    CreateOptions o;
    bool detach = false;
    while (!a.done() && a.peek().rfind("-", 0) == 0) {
      if (a.option("--bundle", "-b", o.bundle) || a.option("--pid-file", nullptr, o.pid_file))
        continue;
      if (cmd == "run" && a.flag("--detach", "-d")) {
        detach = true;
        continue;
      }
      std::string ignored;
      if (a.option("--console-socket", nullptr, ignored))
        throw Error("--console-socket: terminals are not supported");
      if (a.flag("--no-pivot", nullptr)) throw Error("--no-pivot: conductor-runtime always pivots");
      if (a.flag("--no-new-keyring", nullptr)) continue;
      unknown(a.peek());
    }
    o.id = a.next("container id");
    if (cmd == "run") return container_run(g, o, detach);
    container_create(g, o);
    return 0;
  }
  if (cmd == "start") {
    container_start(g, a.next("container id"));
    return 0;
  }
  if (cmd == "state") {
    container_state(g, a.next("container id"));
    return 0;
  }
  if (cmd == "kill") {
    bool all = false;
    while (!a.done() && a.peek().rfind("-", 0) == 0) {
      if (a.flag("--all", "-a")) {
        all = true;
        continue;
      }
      unknown(a.peek());
    }
    std::string id = a.next("container id");
    int sig = a.done() ? 15 : signal_from_name(a.next("signal"));
    container_kill(g, id, sig, all);
    return 0;
  }
  if (cmd == "delete") {
    bool force = false;
    while (!a.done() && a.peek().rfind("-", 0) == 0) {
      if (a.flag("--force", "-f")) {
        force = true;
        continue;
      }
      unknown(a.peek());
    }
    container_delete(g, a.next("container id"), force);
    return 0;
  }
  if (cmd == "exec") {
    ExecOptions o;
    while (!a.done() && a.peek().rfind("-", 0) == 0 && a.peek() != "--") {
      std::string v;
      if (a.option("--env", "-e", v)) {
        o.env.push_back(v);
        continue;
      }
      if (a.option("--cwd", nullptr, o.cwd) || a.option("--user", "-u", o.user) ||
          a.option("--process", "-p", o.process_file) ||
          a.option("--pid-file", nullptr, o.pid_file))
        continue;
      if (a.flag("--detach", "-d")) {
        o.detach = true;
        continue;
      }
      if (a.flag("--tty", "-t")) {
        o.tty = true;
        continue;
      }
      unknown(a.peek());
    }
    o.id = a.next("container id");
    if (!a.done() && a.peek() == "--") a.i++;
    while (!a.done()) o.args.push_back(a.next("argument"));
    return container_exec(g, o);
  }
  if (cmd == "list" || cmd == "ps") {
    std::string format = "table";
    while (!a.done() && a.peek().rfind("-", 0) == 0) {
      if (a.option("--format", "-f", format)) continue;
      if (a.flag("--quiet", "-q")) continue;
      unknown(a.peek());
    }
    container_list(g, format);
    return 0;
  }
  // What a create of this bundle compiles (its seccomp filter) goes into --root's cache now, so
  // the first create after a controller starts is as fast as the next ones. No container.
  if (cmd == "prepare") {
    std::string bundle = ".";
    while (!a.done() && a.peek().rfind("-", 0) == 0) {
      if (a.option("--bundle", "-b", bundle)) continue;
      unknown(a.peek());
    }
    Spec spec = load_spec(bundle, "prepare");
    if (spec.seccomp) compile_seccomp(*spec.seccomp, g.root + "/.seccomp-cache");
    return 0;
  }
  if (cmd == "features") {
    container_features();
    return 0;
  }
  throw Error("unknown command `" + cmd + "`\n" + kUsage);
}

}  // namespace

int main(int argc, char** argv) {
  GlobalOptions g;
  Args a;
  for (int i = 1; i < argc; ++i) a.v.emplace_back(argv[i]);
  try {
    return dispatch(g, a, argv);
  } catch (const std::exception& e) {
    log_message(g, "error", e.what());
    return 1;
  }
}
