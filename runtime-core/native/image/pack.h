// Turning a layer directory of the layer store (an overlayfs lowerdir: overlay whiteouts, opaque
// directories) back into an OCI layer tarball: the reverse of unpack.h, for `conductor image
// export`. The directory is treated as hostile (a layer holds what an image's author put in it):
// nothing outside it may be read.
#pragma once

#include <cstdint>
#include <string>

#include "image/tar.h"

namespace conductor::image {

struct PackResult {
  uint64_t entries = 0;  // tar entries written (pax headers not counted)
  uint64_t bytes = 0;    // regular-file data written
  std::string diff_id;   // "sha256:<hex>" of the uncompressed tar
  std::string digest;    // "sha256:<hex>" of the file written (= diff_id without compression)
  uint64_t size = 0;     // bytes of the file written
};

// Writes `source` (a directory) as a tar at `target`, created (it must not exist), compressed
// with `compression` (Gzip at `level`, or None). Throws Error on the first entry that cannot be
// written, naming it (`layer entry "dev/null": a device node ...`); the caller removes `target`.
//
// Security contract:
// - every entry is reached from a directory fd by one name: fstatat/openat/readlinkat with
//   AT_SYMLINK_NOFOLLOW / O_NOFOLLOW, so no symlink is ever followed (a symlink is written as
//   one, whatever it points to); what is opened must be what was stat'ed (same inode), and an
//   entry on another file system (a mount point) is refused;
// - a file is read for exactly the size it had when stat'ed: one that shrinks or grows meanwhile
//   is an error, not a truncated or overlong entry.
//
// What becomes what:
// - directories, regular files, symlinks and fifos: modes (setuid/setgid/sticky too), numeric
//   owners, mtimes (with nanoseconds); a second name of an inode already written (nlink > 1)
//   becomes a hardlink to the first;
// - overlayfs whiteouts (0/0 character devices) become OCI whiteouts `.wh.NAME` (empty regular
//   files, mode 0); an opaque directory (trusted.overlay.opaque=y) gets `DIR/.wh..wh..opq`
//   after it;
// - xattrs `user.*` and `security.capability` (file capabilities) are written as pax
//   SCHILY.xattr records (what unpack.h applies); security.selinux (the host's label) and
//   overlayfs's bookkeeping (trusted.overlay.origin, impure, nlink, upper, uuid) are left out.
//
// Refused, naming the entry: device nodes (layers hold none: containers get their own /dev, and
// the unpacker refuses them), sockets, names starting with `.wh.` (they would read as
// whiteouts), overlayfs redirects, metacopy and other trusted.overlay.* attributes (the content
// is in another layer: a tar cannot say that), any other xattr (ACLs, trusted.*, security.*).
// The layer root's own metadata is not part of a layer (as with docker and containerd), except
// an opaque root, written as `.wh..wh..opq`.
PackResult pack_layer(const std::string& source, const std::string& target, Compression compression,
                      int level);

}  // namespace conductor::image
