#include "image/tar.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "common/error.h"

namespace conductor::image {

namespace {

constexpr size_t kBlock = 512;
constexpr size_t kChunk = 128 * 1024;
// pax and GNU long-name headers are read into memory: bound them (Go's archive/tar does too).
constexpr uint64_t kMaxMeta = 1 << 20;

class FileSource : public ByteSource {
 public:
  FileSource(UniqueFd fd, uint64_t size, std::string path)
      : fd_(std::move(fd)), size_(size), path_(std::move(path)) {}
  size_t read(char* buf, size_t n) override {
    for (;;) {
      ssize_t r = ::read(fd_.get(), buf, n);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw_errno("read `" + path_ + "`");
      pos_ += static_cast<uint64_t>(r);
      return static_cast<size_t>(r);
    }
  }
  std::optional<uint64_t> remaining() const override { return pos_ <= size_ ? size_ - pos_ : 0; }
  const std::string& path() const { return path_; }

 private:
  UniqueFd fd_;
  uint64_t size_, pos_ = 0;
  std::string path_;
};

// Concatenated gzip members are one stream (as gzip -d reads them).
class GzipSource : public ByteSource {
 public:
  explicit GzipSource(std::unique_ptr<FileSource> in) : in_(std::move(in)), buf_(kChunk) {
    if (inflateInit2(&z_, 16 + MAX_WBITS) != Z_OK) throw Error("gzip: inflateInit2 failed");
  }
  ~GzipSource() override { inflateEnd(&z_); }

  size_t read(char* out, size_t n) override {
    if (done_ || n == 0) return 0;
    z_.next_out = reinterpret_cast<Bytef*>(out);
    z_.avail_out = static_cast<uInt>(std::min<size_t>(n, UINT32_MAX));
    const uInt want = z_.avail_out;
    while (z_.avail_out == want) {
      if (z_.avail_in == 0 && !refill()) {
        if (!in_member_) {
          done_ = true;
          break;
        }
        throw Error("gzip stream of `" + in_->path() + "` ends early (truncated)", EIO);
      }
      in_member_ = true;
      int r = inflate(&z_, Z_NO_FLUSH);
      if (r == Z_STREAM_END) {
        in_member_ = false;
        if (inflateReset(&z_) != Z_OK) throw Error("gzip: inflateReset failed");
      } else if (r != Z_OK && r != Z_BUF_ERROR) {
        throw Error("gzip stream of `" + in_->path() + "`: " + (z_.msg ? z_.msg : "corrupt"), EIO);
      }
    }
    return want - z_.avail_out;
  }

 private:
  bool refill() {
    size_t r = in_->read(buf_.data(), buf_.size());
    z_.next_in = reinterpret_cast<Bytef*>(buf_.data());
    z_.avail_in = static_cast<uInt>(r);
    return r > 0;
  }

  std::unique_ptr<FileSource> in_;
  std::vector<char> buf_;
  z_stream z_{};
  bool in_member_ = false, done_ = false;
};

// Concatenated zstd frames are one stream.
class ZstdSource : public ByteSource {
 public:
  explicit ZstdSource(std::unique_ptr<FileSource> in)
      : src_(std::move(in)), buf_(ZSTD_DStreamInSize()), ctx_(ZSTD_createDCtx()) {
    if (!ctx_) throw Error("zstd: ZSTD_createDCtx failed");
  }
  ~ZstdSource() override { ZSTD_freeDCtx(ctx_); }

  size_t read(char* out, size_t n) override {
    ZSTD_outBuffer o{out, n, 0};
    while (o.pos == 0 && n > 0) {
      if (zin_.pos == zin_.size) {
        size_t r = src_->read(buf_.data(), buf_.size());
        zin_ = ZSTD_inBuffer{buf_.data(), r, 0};
        if (r == 0) eof_ = true;
      }
      size_t in_before = zin_.pos;
      size_t r = ZSTD_decompressStream(ctx_, &o, &zin_);
      if (ZSTD_isError(r))
        throw Error("zstd stream of `" + src_->path() + "`: " + ZSTD_getErrorName(r), EIO);
      // 0 = a frame is complete and flushed. A call that moved nothing only reports the size of
      // the next frame's header, which does not reopen a frame.
      if (zin_.pos != in_before || o.pos != 0) frame_open_ = r != 0;
      if (o.pos == 0 && eof_ && zin_.pos == zin_.size) {
        if (frame_open_)
          throw Error("zstd stream of `" + src_->path() + "` ends early (truncated)", EIO);
        break;
      }
    }
    return o.pos;
  }

 private:
  std::unique_ptr<FileSource> src_;
  std::vector<char> buf_;
  ZSTD_DCtx* ctx_;
  ZSTD_inBuffer zin_{nullptr, 0, 0};
  bool eof_ = false, frame_open_ = false;
};

// A numeric header field: octal digits padded with spaces/NULs, or GNU base-256 (high bit of
// the first byte set; 0xff = negative).
int64_t parse_number(const char* f, size_t len, const char* field) {
  auto bad = [&]() -> Error { return Error(std::string("malformed ") + field + " field", EINVAL); };
  const auto* u = reinterpret_cast<const unsigned char*>(f);
  if (u[0] & 0x80) {
    bool negative = u[0] == 0xff;
    uint64_t v = u[0] & 0x7f;
    if (negative) v = 0;
    for (size_t i = 1; i < len; i++) {
      unsigned char b = negative ? static_cast<unsigned char>(~u[i]) : u[i];
      if (v >> 55) throw bad();
      v = (v << 8) | b;
    }
    if (v > static_cast<uint64_t>(INT64_MAX)) throw bad();
    return negative ? -static_cast<int64_t>(v) - 1 : static_cast<int64_t>(v);
  }
  size_t i = 0;
  while (i < len && (f[i] == ' ' || f[i] == '\0')) i++;
  uint64_t v = 0;
  for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
    if (v >> 60) throw bad();
    v = v * 8 + static_cast<uint64_t>(f[i] - '0');
  }
  for (; i < len; i++)
    if (f[i] != ' ' && f[i] != '\0') throw bad();
  return static_cast<int64_t>(v);
}

std::string field_string(const char* f, size_t len) { return std::string(f, strnlen(f, len)); }

uint64_t parse_decimal(const std::string& s, const std::string& key) {
  if (s.empty() || s.size() > 19) throw Error("pax record " + key + ": bad number", EINVAL);
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') throw Error("pax record " + key + ": bad number", EINVAL);
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

uint32_t id_value(int64_t v, const char* what) {
  // (uid_t)-1 means "unchanged" to chown: never a real owner.
  if (v < 0 || v >= static_cast<int64_t>(UINT32_MAX))
    throw Error(std::string(what) + " out of range", EINVAL);
  return static_cast<uint32_t>(v);
}

// Out-of-range ids stay out of range (id_value refuses them) rather than wrapping.
int64_t clamp_id(uint64_t v) {
  return v > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(v);
}

// pax mtime: "[-]SECONDS[.FRACTION]".
void parse_pax_time(const std::string& s, int64_t& sec, long& nsec) {
  bool neg = !s.empty() && s[0] == '-';
  std::string body = neg ? s.substr(1) : s;
  size_t dot = body.find('.');
  std::string whole = body.substr(0, dot);
  uint64_t w = parse_decimal(whole, "mtime");
  if (w > static_cast<uint64_t>(INT64_MAX)) throw Error("pax record mtime: bad number", EINVAL);
  long frac = 0;
  if (dot != std::string::npos) {
    std::string f = body.substr(dot + 1);
    for (size_t i = 0; i < 9; i++) {
      char c = i < f.size() ? f[i] : '0';
      if (c < '0' || c > '9') throw Error("pax record mtime: bad number", EINVAL);
      frac = frac * 10 + (c - '0');
    }
  }
  sec = static_cast<int64_t>(w);
  nsec = frac;
  if (neg) {
    sec = -sec;
    if (nsec) {
      sec -= 1;
      nsec = 1000000000L - nsec;
    }
  }
}

// Pending overrides from pax ('x') and GNU ('L', 'K') headers for the next real entry.
struct Pending {
  std::optional<std::string> path, linkpath;
  std::optional<uint64_t> size;
  std::optional<int64_t> uid, gid;
  std::optional<std::pair<int64_t, long>> mtime;
  std::map<std::string, std::string> xattrs;
};

void parse_pax(const std::string& data, Pending& p) {
  size_t pos = 0;
  while (pos < data.size()) {
    size_t sp = data.find(' ', pos);
    if (sp == std::string::npos || sp == pos || sp - pos > 19)
      throw Error("malformed pax record", EINVAL);
    uint64_t len = parse_decimal(data.substr(pos, sp - pos), "length");
    if (len < sp - pos + 3 || len > data.size() - pos || data[pos + len - 1] != '\n')
      throw Error("malformed pax record", EINVAL);
    std::string rec = data.substr(sp + 1, pos + len - 1 - (sp + 1));
    pos += len;
    size_t eq = rec.find('=');
    if (eq == std::string::npos || eq == 0) throw Error("malformed pax record", EINVAL);
    std::string key = rec.substr(0, eq), value = rec.substr(eq + 1);
    if (key == "path") {
      p.path = value;
    } else if (key == "linkpath") {
      p.linkpath = value;
    } else if (key == "size") {
      p.size = parse_decimal(value, key);
    } else if (key == "uid") {
      p.uid = clamp_id(parse_decimal(value, key));
    } else if (key == "gid") {
      p.gid = clamp_id(parse_decimal(value, key));
    } else if (key == "mtime") {
      std::pair<int64_t, long> t;
      parse_pax_time(value, t.first, t.second);
      p.mtime = t;
    } else if (key.rfind("SCHILY.xattr.", 0) == 0) {
      p.xattrs[key.substr(13)] = value;
    } else if (key.rfind("GNU.sparse.", 0) == 0) {
      throw Error("sparse files are not supported", ENOTSUP);
    }
    // Other keys (atime, ctime, uname, gname, charset, LIBARCHIVE.*) do not matter to a layer.
  }
}

bool all_zero(const char* b) {
  for (size_t i = 0; i < kBlock; i++)
    if (b[i] != 0) return false;
  return true;
}

// The header checksum is the sum of its bytes with the checksum field read as spaces; some
// old tars summed signed chars, which is accepted too.
bool checksum_ok(const char* b) {
  int64_t want;
  try {
    want = parse_number(b + 148, 8, "checksum");
  } catch (const Error&) {
    return false;
  }
  int64_t u = 0, s = 0;
  for (size_t i = 0; i < kBlock; i++) {
    bool in_field = i >= 148 && i < 156;
    u += in_field ? ' ' : static_cast<unsigned char>(b[i]);
    s += in_field ? ' ' : static_cast<signed char>(b[i]);
  }
  return want == u || want == s;
}

// The rest of an entry's header, with pax/GNU overrides applied.
void fill_entry(TarEntry& e, const char* b, Pending& p, uint64_t size, ByteSource& src) {
  e.linkname = field_string(b + 157, 100);
  e.mode = static_cast<uint32_t>(parse_number(b + 100, 8, "mode") & 07777);
  int64_t uid = parse_number(b + 108, 8, "uid"), gid = parse_number(b + 116, 8, "gid");
  e.mtime_sec = parse_number(b + 136, 12, "mtime");
  e.devmajor = static_cast<uint32_t>(parse_number(b + 329, 8, "devmajor"));
  e.devminor = static_cast<uint32_t>(parse_number(b + 337, 8, "devminor"));
  if (p.linkpath) e.linkname = *p.linkpath;
  if (p.size) size = *p.size;
  if (p.uid) uid = *p.uid;
  if (p.gid) gid = *p.gid;
  if (p.mtime) {
    e.mtime_sec = p.mtime->first;
    e.mtime_nsec = p.mtime->second;
  }
  e.xattrs = std::move(p.xattrs);
  e.uid = id_value(uid, "uid");
  e.gid = id_value(gid, "gid");

  // Old tars mark directories only by a trailing slash; '7' (contiguous) is a regular file.
  char type = b[156];
  if (type == '\0' || type == '7') type = '0';
  if (type == '0' && !e.name.empty() && e.name.back() == '/' && b[156] == '\0') type = '5';
  e.type = type;
  // As Go's archive/tar: links, devices, directories and fifos carry no data whatever the size.
  bool header_only = type >= '1' && type <= '6';
  if (size > static_cast<uint64_t>(INT64_MAX)) throw Error("size out of range", EINVAL);
  e.size = header_only ? 0 : size;
  if (auto left = src.remaining(); left && e.size > *left)
    throw Error("size " + std::to_string(e.size) + " is larger than the rest of the archive (" +
                    std::to_string(*left) + " bytes)",
                EINVAL);
}

}  // namespace

std::string quote_name(const std::string& name) {
  // Names come from the archive: control bytes are escaped so an error message stays one line.
  std::string out = "\"";
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::unique_ptr<ByteSource> open_archive(const std::string& path, Compression c) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("open archive `" + path + "`");
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) throw_errno("stat archive `" + path + "`");
  if (!S_ISREG(st.st_mode)) throw Error("archive `" + path + "` is not a regular file", EINVAL);
  if (c == Compression::Auto) {
    unsigned char m[4] = {0, 0, 0, 0};
    ssize_t n = ::pread(fd.get(), m, sizeof m, 0);
    if (n < 0) throw_errno("read archive `" + path + "`");
    if (n >= 2 && m[0] == 0x1f && m[1] == 0x8b)
      c = Compression::Gzip;
    else if (n == 4 && m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd)
      c = Compression::Zstd;
    else
      c = Compression::None;
  }
  auto file = std::make_unique<FileSource>(std::move(fd), static_cast<uint64_t>(st.st_size), path);
  switch (c) {
    case Compression::Gzip:
      return std::make_unique<GzipSource>(std::move(file));
    case Compression::Zstd:
      return std::make_unique<ZstdSource>(std::move(file));
    default:
      return file;
  }
}

void TarReader::read_exact(char* buf, size_t n, const char* what) {
  size_t got = 0;
  while (got < n) {
    size_t r = src_.read(buf + got, n - got);
    if (r == 0)
      throw Error(std::string("archive ends in the middle of ") + what + " (truncated)", EIO);
    got += r;
  }
}

void TarReader::skip(uint64_t n) {
  char buf[16384];
  while (n > 0) {
    size_t k = static_cast<size_t>(std::min<uint64_t>(n, sizeof buf));
    read_exact(buf, k, "entry data");
    n -= k;
  }
}

std::string TarReader::read_meta(uint64_t size, const char* what) {
  if (size > kMaxMeta) throw Error(std::string(what) + " header larger than 1 MiB", EINVAL);
  std::string data(static_cast<size_t>(size), '\0');
  read_exact(data.data(), data.size(), what);
  skip((kBlock - size % kBlock) % kBlock);
  return data;
}

size_t TarReader::read_data(char* buf, size_t n) {
  if (data_left_ == 0) return 0;
  size_t k = static_cast<size_t>(std::min<uint64_t>(n, data_left_));
  size_t r = src_.read(buf, k);
  if (r == 0) throw Error("archive ends in the middle of entry data (truncated)", EIO);
  data_left_ -= r;
  return r;
}

void TarReader::drain() {
  std::vector<char> buf(kChunk);
  while (src_.read(buf.data(), buf.size()) > 0) {
  }
}

std::optional<TarEntry> TarReader::next() {
  skip(data_left_ + padding_);
  data_left_ = padding_ = 0;
  Pending p;
  char b[kBlock];
  for (;;) {
    size_t got = 0;
    while (got < kBlock) {
      size_t r = src_.read(b + got, kBlock - got);
      if (r == 0) break;
      got += r;
    }
    if (got == 0) throw Error("archive ends without an end-of-archive marker (truncated)", EIO);
    if (got < kBlock) throw Error("archive ends in the middle of a header (truncated)", EIO);
    if (all_zero(b)) {
      // End of archive: a second zero block, or (leniently, as GNU tar) the end of the stream.
      got = 0;
      while (got < kBlock) {
        size_t r = src_.read(b + got, kBlock - got);
        if (r == 0) break;
        got += r;
      }
      if (got != 0 && (got < kBlock || !all_zero(b)))
        throw Error("data after an end-of-archive block", EINVAL);
      return std::nullopt;
    }
    if (!checksum_ok(b)) throw Error("header checksum mismatch (not a tar archive?)", EINVAL);

    char type = b[156];
    int64_t raw_size = parse_number(b + 124, 12, "size");
    if (raw_size < 0) throw Error("negative size field", EINVAL);
    uint64_t size = static_cast<uint64_t>(raw_size);
    if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
      std::string data = read_meta(size, type == 'L' || type == 'K' ? "GNU long name" : "pax");
      if (type == 'x') parse_pax(data, p);
      // 'g' (global pax defaults) is ignored: layers do not rely on it.
      if (type == 'L') p.path = field_string(data.data(), data.size());
      if (type == 'K') p.linkpath = field_string(data.data(), data.size());
      continue;
    }

    TarEntry e;
    bool ustar = std::memcmp(b + 257, "ustar\0", 6) == 0;  // POSIX; GNU has "ustar  \0"
    e.name = field_string(b, 100);
    if (ustar && b[345] != '\0') e.name = field_string(b + 345, 155) + "/" + e.name;
    if (p.path) e.name = *p.path;
    try {
      fill_entry(e, b, p, size, src_);
    } catch (const Error& err) {
      throw err.wrap("layer entry " + quote_name(e.name));
    }
    data_left_ = e.size;
    padding_ = (kBlock - e.size % kBlock) % kBlock;
    return e;
  }
}

size_t HashingSource::read(char* buf, size_t n) {
  size_t r = in_.read(buf, n);
  sha_.update(buf, r);
  return r;
}

}  // namespace conductor::image
