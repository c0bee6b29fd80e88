// SHA-256 over a stream of bytes (OpenSSL's EVP, which Node exports to addons), as OCI digests
// spell it: "sha256:<hex>". Layers are named by two of them: the diff_id (the uncompressed tar)
// and the blob digest (the file as stored).
#pragma once

#include <cstddef>
#include <string>

namespace conductor::image {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const char* buf, size_t n);
  // "sha256:<hex>" of every byte given so far; call once, at the end.
  std::string digest();

 private:
  void* ctx_;  // EVP_MD_CTX*
};

}  // namespace conductor::image
