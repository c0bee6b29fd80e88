// Streaming writer of POSIX pax tar archives, the format OCI layers use, over a chain of byte
// sinks: a file, gzip, and SHA-256 digests of the bytes passing through (a layer's diff_id is
// the digest of its uncompressed tar, its blob digest that of the file as stored). Nothing is
// held whole: entry data is written in the caller's chunks.
//
// Headers are ustar; a pax ('x') header comes first when a value does not fit a ustar field
// (names and link targets over 100 bytes, ids over 2097151, sizes of 8 GiB and more, times
// before 1970 or with nanoseconds) and for extended attributes (SCHILY.xattr.NAME), as GNU tar
// and Go's archive/tar write them and tar.h's reader reads them.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/fd.h"
#include "image/digest.h"

namespace conductor::image {

class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual void write(const char* buf, size_t n) = 0;
  // Writes out what is buffered and ends the stream (gzip's trailer); nothing is written after.
  virtual void finish() = 0;
};

// Buffered writes to a file descriptor (owned). `path` names it in errors.
class FileSink : public ByteSink {
 public:
  FileSink(UniqueFd fd, std::string path);
  void write(const char* buf, size_t n) override;
  void finish() override;

 private:
  void flush();
  UniqueFd fd_;
  std::string path_;
  std::vector<char> buf_;
  size_t used_ = 0;
};

// Counts and digests what passes through to `out`.
class HashingSink : public ByteSink {
 public:
  explicit HashingSink(ByteSink& out) : out_(out) {}
  void write(const char* buf, size_t n) override;
  void finish() override { out_.finish(); }
  std::string digest() { return sha_.digest(); }
  uint64_t size() const { return size_; }

 private:
  ByteSink& out_;
  Sha256 sha_;
  uint64_t size_ = 0;
};

// gzip (one member, no name or time in its header, so equal input gives equal bytes) at `level`
// (1 fastest .. 9 smallest; zlib's default is 6).
class GzipSink : public ByteSink {
 public:
  GzipSink(ByteSink& out, int level);
  ~GzipSink() override;
  GzipSink(const GzipSink&) = delete;
  GzipSink& operator=(const GzipSink&) = delete;
  void write(const char* buf, size_t n) override;
  void finish() override;

 private:
  void deflate_all(int flush);
  ByteSink& out_;
  z_stream z_{};
  std::vector<char> buf_;
};

struct TarHeader {
  char type = '0';       // '0' regular, '1' hardlink, '2' symlink, '5' directory, '6' fifo
  std::string name;      // relative, without a trailing slash (added for directories)
  std::string linkname;  // hardlink or symlink target
  uint64_t size = 0;     // bytes of data to follow (regular files only)
  uint32_t mode = 0;     // permission bits with setuid/setgid/sticky
  uint32_t uid = 0, gid = 0;
  int64_t mtime_sec = 0;
  long mtime_nsec = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;  // written as SCHILY.xattr.<name>
};

class TarWriter {
 public:
  explicit TarWriter(ByteSink& out) : out_(out) {}
  // Starts an entry; a regular file's `size` bytes of data follow through data().
  void add(const TarHeader& h);
  void data(const char* buf, size_t n);
  // The end-of-archive marker (two zero blocks), then the sink's finish().
  void close();

 private:
  void end_entry();
  void header_block(const TarHeader& h, const std::string& name, char type, uint64_t size);
  ByteSink& out_;
  uint64_t data_left_ = 0;
  uint64_t padding_ = 0;
};

}  // namespace conductor::image
