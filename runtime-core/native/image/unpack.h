// Turning one OCI layer tarball into a directory used as an overlayfs lowerdir, and resolving
// paths inside a root file system. Both treat their input as hostile: nothing they do may touch
// a file outside the target / root.
#pragma once

#include <cstdint>
#include <string>

#include "image/tar.h"

namespace conductor::image {

struct UnpackResult {
  uint64_t entries = 0;  // archive entries applied (metadata headers not counted)
  uint64_t bytes = 0;    // regular-file data written
  std::string diff_id;   // "sha256:<hex>" of the uncompressed tar stream, as read to its end
};

// Unpacks `archive` into `target`, an existing empty directory. Throws Error on the first
// refused or failed entry, naming it (`layer entry "a/../x": path leaves the layer`); what was
// written so far stays, and the caller deletes `target`.
//
// Security contract:
// - names that are absolute or hold a `..` component are refused, not rewritten;
// - every file is created relative to a directory fd of its parent, opened with openat2
//   (RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV): an entry
//   below a symlink (even one pointing inside the layer) is refused; final components are
//   never followed (O_NOFOLLOW | O_EXCL after unlinking what was there, symlinkat, mknodat);
// - hardlink targets must be non-directory, non-device entries already in the layer, found the
//   same way;
// - device entries are refused; OCI whiteouts become overlayfs ones: `d/.wh.NAME` a 0/0 char
//   device `d/NAME`, `d/.wh..wh..opq` the xattr trusted.overlay.opaque=y on `d`;
// - xattrs from pax SCHILY.xattr.*: only `user.*` and `security.capability` are applied;
//   trusted.* (overlayfs's own trusted.overlay.* would let a layer forge whiteouts, redirects
//   or metacopy), security.* others and system.* are ignored, as are LIBARCHIVE.xattr.*.
//
// Kept exactly: modes (setuid/setgid/sticky, no umask), numeric owners, mtimes (atime = mtime;
// symlinks too; directories after their contents). A later entry with the same name replaces
// the earlier one; a directory over a directory merges. Parents missing from the archive are
// created 0755 root:root.
UnpackResult unpack_layer(const std::string& archive, const std::string& target,
                          Compression compression);

// Resolves `path` as if `root` were `/` (openat2 RESOLVE_IN_ROOT: symlinks followed, clamped
// inside root, `..` at the top stays at the top) and returns the host path. Missing trailing
// components are allowed: the longest existing prefix is resolved and the rest appended, which
// must not hold `..` and must not start at a dangling symlink (it would be followed on the
// host). The answer is only as good as the moment it was computed: `root` must not be changed
// by anyone else while the caller uses it.
std::string resolve_in_root(const std::string& root, const std::string& path);

}  // namespace conductor::image
