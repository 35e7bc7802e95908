#include "stowage/hash.h"

#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>

namespace stowage {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// OpenSSL failing to hash in memory means the library is broken (out of
// memory, missing default provider): there is no sane way to continue.
[[noreturn]] void openssl_fatal(const char* what) {
  std::fprintf(stderr, "stowage: OpenSSL SHA-256 failure in %s\n", what);
  std::abort();
}

}  // namespace

std::string Hash256::hex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(64, '0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0xf];
  }
  return out;
}

Result<Hash256> Hash256::from_hex(std::string_view hex) {
  Hash256 h;
  if (hex.size() != 64) {
    return Status::invalid_argument("id '" + std::string(hex.substr(0, 80)) + "': want 64 lowercase hex digits");
  }
  for (size_t i = 0; i < 32; ++i) {
    const int hi = hex_value(hex[2 * i]);
    const int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return Status::invalid_argument("id '" + std::string(hex) + "': want 64 lowercase hex digits");
    }
    h.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return h;
}

struct Sha256::Impl {
  EVP_MD* md = nullptr;
  EVP_MD_CTX* ctx = nullptr;
};

Sha256::Sha256() : impl_(new Impl) {
  impl_->md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  impl_->ctx = EVP_MD_CTX_new();
  if (impl_->md == nullptr || impl_->ctx == nullptr) openssl_fatal("EVP_MD_fetch/EVP_MD_CTX_new");
}

Sha256::~Sha256() {
  EVP_MD_CTX_free(impl_->ctx);
  EVP_MD_free(impl_->md);
  delete impl_;
}

Hash256 Sha256::digest(std::string_view data) {
  Hash256 h;
  unsigned int len = 0;
  if (EVP_DigestInit_ex2(impl_->ctx, impl_->md, nullptr) != 1 ||
      EVP_DigestUpdate(impl_->ctx, data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(impl_->ctx, h.bytes.data(), &len) != 1 || len != h.bytes.size()) {
    openssl_fatal("digest");
  }
  return h;
}

Hash256 sha256(std::string_view data) {
  Sha256 hasher;
  return hasher.digest(data);
}

}  // namespace stowage
