#include "runtime/cloned_binary.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fd.h"

extern char** environ;

namespace conductor {

namespace {
constexpr int kSeals = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
}

bool running_from_sealed_memfd() {
  UniqueFd self(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
  if (!self) return false;
  int seals = ::fcntl(self.get(), F_GET_SEALS);
  return seals >= 0 && (seals & kSeals) == kSeals;
}

void ensure_cloned_binary(char** argv) {
  if (running_from_sealed_memfd()) return;
  UniqueFd self(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
  if (!self) throw_errno("open /proc/self/exe");
  struct stat st;
  if (::fstat(self.get(), &st) < 0) throw_errno("stat /proc/self/exe");
  UniqueFd mem(static_cast<int>(
      ::syscall(SYS_memfd_create, "conductor-runtime", MFD_CLOEXEC | MFD_ALLOW_SEALING)));
  if (!mem) throw_errno("memfd_create");
  off_t off = 0;
  while (off < st.st_size) {
    ssize_t n = ::sendfile(mem.get(), self.get(), &off, static_cast<size_t>(st.st_size - off));
    if (n < 0) throw_errno("copy the runtime binary into a memfd");
    if (n == 0) break;
  }
  if (::fcntl(mem.get(), F_ADD_SEALS, kSeals) < 0) throw_errno("seal the runtime memfd");
  // execveat(AT_EMPTY_PATH) on an ELF works with a close-on-exec fd.
  ::syscall(SYS_execveat, mem.get(), "", argv, environ, AT_EMPTY_PATH);
  throw_errno("re-execute the runtime from its sealed memfd");
}

}  // namespace conductor
