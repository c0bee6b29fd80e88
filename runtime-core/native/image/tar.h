// Streaming reader for OCI layer tarballs: a decompressor (gzip, zstd or none) under a tar
// parser for ustar, POSIX pax (path, linkpath, size, uid, gid, mtime, SCHILY.xattr.*) and GNU
// long names ('L'/'K'). Nothing is loaded whole: entry data is read in caller-sized chunks.
//
// The reader only parses; it does not judge names (unpack.cc does). It is strict about
// structure, so a damaged or truncated archive is an error, never a hang or a silent stop:
// bad checksums, malformed numbers or pax records, metadata headers over 1 MiB, data that ends
// before an entry's size, a compressed stream that ends early, a missing end-of-archive marker.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/fd.h"
#include "image/digest.h"

namespace conductor::image {

enum class Compression { Auto, Gzip, Zstd, None };

// A byte stream: read() returns 0 only at the clean end of the stream and throws Error on
// damage or truncation.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual size_t read(char* buf, size_t n) = 0;
  // Bytes certainly left (uncompressed file: size minus position), if known. Lets the tar
  // reader refuse an entry larger than what is left before writing any of it.
  virtual std::optional<uint64_t> remaining() const { return std::nullopt; }
};

// Passes a stream through and computes its SHA-256: "sha256:<hex>" of every byte read, once
// the stream has been read to its end.
class HashingSource : public ByteSource {
 public:
  explicit HashingSource(ByteSource& in) : in_(in) {}
  size_t read(char* buf, size_t n) override;
  std::optional<uint64_t> remaining() const override { return in_.remaining(); }
  std::string digest() { return sha_.digest(); }

 private:
  ByteSource& in_;
  Sha256 sha_;
};

// Opens `path` (a regular file) and stacks the decompressor `c` on it; Auto sniffs the magic
// bytes (gzip 1f 8b, zstd 28 b5 2f fd, anything else is read as a plain tar).
std::unique_ptr<ByteSource> open_archive(const std::string& path, Compression c);

struct TarEntry {
  char type = '0';       // normalised: '0' regular, '1' hardlink, '2' symlink, '3' char, '4' block,
                         // '5' directory, '6' fifo; other type flags are passed through as read
  std::string name;      // as in the archive (pax path / GNU long name win over the header)
  std::string linkname;  // symlink target or hardlink target
  uint64_t size = 0;     // bytes of data that follow (0 for header-only types)
  uint32_t mode = 0;     // permission bits incl. setuid/setgid/sticky (& 07777)
  uint32_t uid = 0, gid = 0;
  int64_t mtime_sec = 0;
  long mtime_nsec = 0;
  uint32_t devmajor = 0, devminor = 0;
  std::map<std::string, std::string> xattrs;  // from SCHILY.xattr.<name>
};

// `"name"` for error messages, with control bytes, quotes and backslashes escaped as \xNN.
std::string quote_name(const std::string& name);

class TarReader {
 public:
  explicit TarReader(ByteSource& src) : src_(src) {}
  // The next entry, skipping what is left of the previous one's data; nullopt at the
  // end-of-archive marker. Throws Error on a damaged or truncated archive.
  std::optional<TarEntry> next();
  // Reads up to n bytes of the current entry's data; 0 once it is all read.
  size_t read_data(char* buf, size_t n);
  // After next() returned nullopt: reads the stream to its end, so a compressed stream's
  // trailer (gzip CRC and length, zstd frame end) is checked too.
  void drain();

 private:
  void read_exact(char* buf, size_t n, const char* what);
  void skip(uint64_t n);
  std::string read_meta(uint64_t size, const char* what);

  ByteSource& src_;
  uint64_t data_left_ = 0;  // of the current entry
  uint64_t padding_ = 0;    // after the current entry's data, to the next 512-byte block
};

}  // namespace conductor::image
