// Defence against CVE-2019-5736: a container process that execs /proc/self/exe of the runtime
// (e.g. through a "#!/proc/self/exe" binary in the image) could open the runtime binary and
// overwrite it on the host once it stops running. Before anything joins a container, the
// runtime re-executes itself from a sealed memfd copy (as crun's cloned_binary.c does), so
// the only "exe" a container can reach is an immutable in-memory copy.
#pragma once

namespace conductor {

// Returns if already running from a sealed memfd; otherwise re-executes and does not return.
void ensure_cloned_binary(char** argv);
// True when /proc/self/exe is a sealed memfd (used by tests through `conductor-runtime
// features`).
bool running_from_sealed_memfd();

}  // namespace conductor
