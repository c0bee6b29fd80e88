#include "image/tar_writer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

#include "common/error.h"

namespace conductor::image {

namespace {

constexpr size_t kBlock = 512;
constexpr size_t kChunk = 256 * 1024;

// `value` as `width - 1` octal digits and a NUL, if it fits.
bool put_octal(char* field, size_t width, uint64_t value) {
  if (width - 1 < 22 && value >> (3 * (width - 1)) != 0) return false;
  for (size_t i = width - 1; i-- > 0;) {
    field[i] = static_cast<char>('0' + (value & 7));
    value >>= 3;
  }
  field[width - 1] = '\0';
  return true;
}

// "LEN KEY=VALUE\n", LEN counting its own digits.
std::string pax_record(const std::string& key, const std::string& value) {
  size_t base = key.size() + value.size() + 3;  // ' ', '=', '\n'
  size_t len = base + std::to_string(base).size();
  if (std::to_string(len).size() != std::to_string(base).size()) len++;
  return std::to_string(len) + " " + key + "=" + value + "\n";
}

// pax mtime: "[-]SECONDS[.NANOSECONDS]"; a negative time with a fraction counts back from the
// whole seconds (-1.5 is 1.5 s before the epoch), as tar.cc's reader reads it.
std::string pax_time(int64_t sec, long nsec) {
  char frac[32] = "";
  if (sec < 0 && nsec > 0) {
    std::snprintf(frac, sizeof frac, ".%09ld", 1000000000L - nsec);
    return "-" + std::to_string(-(sec + 1)) + frac;
  }
  if (nsec > 0) std::snprintf(frac, sizeof frac, ".%09ld", nsec);
  return std::to_string(sec) + frac;
}

}  // namespace

// ---- sinks ----------------------------------------------------------------------------------

FileSink::FileSink(UniqueFd fd, std::string path)
    : fd_(std::move(fd)), path_(std::move(path)), buf_(kChunk * 4) {}

void FileSink::write(const char* buf, size_t n) {
  while (n > 0) {
    if (used_ == buf_.size()) flush();
    size_t k = std::min(n, buf_.size() - used_);
    std::memcpy(buf_.data() + used_, buf, k);
    used_ += k;
    buf += k;
    n -= k;
  }
}

void FileSink::flush() {
  for (size_t off = 0; off < used_;) {
    ssize_t w = ::write(fd_.get(), buf_.data() + off, used_ - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) throw_errno("write `" + path_ + "`");
    off += static_cast<size_t>(w);
  }
  used_ = 0;
}

void FileSink::finish() {
  flush();
  if (::close(fd_.release()) < 0) throw_errno("close `" + path_ + "`");
}

void HashingSink::write(const char* buf, size_t n) {
  sha_.update(buf, n);
  size_ += n;
  out_.write(buf, n);
}

GzipSink::GzipSink(ByteSink& out, int level) : out_(out), buf_(kChunk) {
  // windowBits 16 + 15: a gzip wrapper; its header has no name and a zero time.
  if (deflateInit2(&z_, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw Error("gzip: deflateInit2 failed (level " + std::to_string(level) + ")", EINVAL);
}

GzipSink::~GzipSink() { deflateEnd(&z_); }

void GzipSink::deflate_all(int flush) {
  for (;;) {
    z_.next_out = reinterpret_cast<Bytef*>(buf_.data());
    z_.avail_out = static_cast<uInt>(buf_.size());
    int r = deflate(&z_, flush);
    if (r == Z_STREAM_ERROR) throw Error("gzip: deflate failed", EIO);
    size_t produced = buf_.size() - z_.avail_out;
    if (produced > 0) out_.write(buf_.data(), produced);
    if (flush == Z_FINISH ? r == Z_STREAM_END : z_.avail_in == 0 && z_.avail_out != 0) return;
  }
}

void GzipSink::write(const char* buf, size_t n) {
  while (n > 0) {
    size_t k = std::min<size_t>(n, UINT_MAX);
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(buf));
    z_.avail_in = static_cast<uInt>(k);
    deflate_all(Z_NO_FLUSH);
    buf += k;
    n -= k;
  }
}

void GzipSink::finish() {
  z_.next_in = nullptr;
  z_.avail_in = 0;
  deflate_all(Z_FINISH);
  out_.finish();
}

// ---- tar ------------------------------------------------------------------------------------

void TarWriter::header_block(const TarHeader& h, const std::string& name, char type,
                             uint64_t size) {
  char b[kBlock];
  std::memset(b, 0, sizeof b);
  // Values that do not fit are in the pax header before this one; the field gets 0.
  std::memcpy(b, name.data(), std::min<size_t>(name.size(), 100));
  put_octal(b + 100, 8, h.mode & 07777);
  if (!put_octal(b + 108, 8, h.uid)) put_octal(b + 108, 8, 0);
  if (!put_octal(b + 116, 8, h.gid)) put_octal(b + 116, 8, 0);
  if (!put_octal(b + 124, 12, size)) put_octal(b + 124, 12, 0);
  if (h.mtime_sec < 0 || !put_octal(b + 136, 12, static_cast<uint64_t>(h.mtime_sec)))
    put_octal(b + 136, 12, 0);
  b[156] = type;
  std::memcpy(b + 157, h.linkname.data(), std::min<size_t>(h.linkname.size(), 100));
  std::memcpy(b + 257,
              "ustar\0"
              "00",
              8);
  put_octal(b + 329, 8, 0);
  put_octal(b + 337, 8, 0);
  // The checksum: the sum of the header's bytes with its own field read as spaces.
  std::memset(b + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : b) sum += c;
  std::snprintf(b + 148, 8, "%06o", sum);
  b[155] = ' ';
  out_.write(b, sizeof b);
}

void TarWriter::add(const TarHeader& h) {
  end_entry();
  if (h.name.empty()) throw Error("tar: an entry without a name", EINVAL);
  std::string name = h.type == '5' ? h.name + "/" : h.name;
  uint64_t size = h.type == '0' ? h.size : 0;

  std::string pax;
  if (name.size() > 100) pax += pax_record("path", name);
  if (h.linkname.size() > 100) pax += pax_record("linkpath", h.linkname);
  char probe[12];
  if (!put_octal(probe, 8, h.uid)) pax += pax_record("uid", std::to_string(h.uid));
  if (!put_octal(probe, 8, h.gid)) pax += pax_record("gid", std::to_string(h.gid));
  if (!put_octal(probe, 12, size)) pax += pax_record("size", std::to_string(size));
  if (h.mtime_sec < 0 || h.mtime_nsec != 0 ||
      !put_octal(probe, 12, static_cast<uint64_t>(h.mtime_sec)))
    pax += pax_record("mtime", pax_time(h.mtime_sec, h.mtime_nsec));
  for (const auto& [k, v] : h.xattrs) pax += pax_record("SCHILY.xattr." + k, v);
  if (!pax.empty()) {
    std::string base = h.name.substr(h.name.rfind('/') + 1);
    TarHeader meta;
    meta.mode = 0644;
    meta.mtime_sec = std::max<int64_t>(h.mtime_sec, 0);
    header_block(meta, ("PaxHeaders/" + base).substr(0, 100), 'x', pax.size());
    out_.write(pax.data(), pax.size());
    static const char kZero[kBlock] = {};
    out_.write(kZero, (kBlock - pax.size() % kBlock) % kBlock);
  }
  header_block(h, name, h.type, size);
  data_left_ = size;
  padding_ = (kBlock - size % kBlock) % kBlock;
}

void TarWriter::data(const char* buf, size_t n) {
  if (n > data_left_) throw Error("tar: more data than the entry's size", EINVAL);
  out_.write(buf, n);
  data_left_ -= n;
}

void TarWriter::end_entry() {
  if (data_left_ != 0)
    throw Error("tar: entry ended " + std::to_string(data_left_) + " bytes short", EIO);
  static const char kZero[kBlock] = {};
  out_.write(kZero, padding_);
  padding_ = 0;
}

void TarWriter::close() {
  end_entry();
  static const char kZero[2 * kBlock] = {};
  out_.write(kZero, sizeof kZero);
  out_.finish();
}

}  // namespace conductor::image
