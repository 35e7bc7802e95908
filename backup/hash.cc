#include "stowage/hash.h"

#include <openssl/evp.h>
#include <xxhash.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>

namespace stowage {

namespace detail {
const uint64_t kHash256Key = [] {
  std::random_device rd;
  return uint64_t{rd()} << 32 ^ rd();
}();
}  // namespace detail

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// `n` lowercase hex digits of `v`, most significant first, appended to `out`.
void put_hex(std::string& out, uint64_t v, int n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (int shift = 4 * (n - 1); shift >= 0; shift -= 4) out.push_back(kDigits[(v >> shift) & 0xf]);
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

std::string ChunkSum::hex() const {
  std::string out;
  out.reserve(32);
  put_hex(out, high, 16);
  put_hex(out, low, 16);
  return out;
}

Result<ChunkSum> ChunkSum::from_hex(std::string_view hex) {
  ChunkSum s;
  if (hex.size() == 32) {
    uint64_t* halves[] = {&s.high, &s.low};
    bool ok = true;
    for (size_t i = 0; i < 32 && ok; ++i) {
      const int d = hex_value(hex[i]);
      ok = d >= 0;
      uint64_t& h = *halves[i / 16];
      h = h << 4 | static_cast<uint64_t>(ok ? d : 0);
    }
    if (ok) return s;
  }
  return Status::invalid_argument("chunk sum '" + std::string(hex.substr(0, 40)) + "': want 32 lowercase hex digits");
}

ChunkSummer::ChunkSummer(const Hash256& repository_id) {
  static constexpr std::string_view kLabel = "stowage chunk_xxh128 v1";
  Sha256 sha;
  for (size_t i = 0; i < secret_.size() / 32; ++i) {
    std::string input(kLabel);
    input += repository_id.raw();
    input.push_back(static_cast<char>(i));
    const Hash256 part = sha.digest(input);
    std::memcpy(secret_.data() + 32 * i, part.bytes.data(), 32);
  }
}

ChunkSum ChunkSummer::operator()(std::string_view data) const {
  const XXH128_hash_t h = XXH3_128bits_withSecret(data.data(), data.size(), secret_.data(), secret_.size());
  return {h.high64, h.low64};
}

ChunkSum ChunkSummer::operator()(std::string_view head, std::string_view tail, size_t len) const {
  if (len <= head.size()) return (*this)(head.substr(0, len));
  // One state per thread: XXH3_createState() allocates (≈ 600 bytes, aligned).
  struct StateDeleter {
    void operator()(XXH3_state_t* s) const { XXH3_freeState(s); }
  };
  thread_local std::unique_ptr<XXH3_state_t, StateDeleter> state(XXH3_createState());
  if (!state) std::abort();  // out of memory for 600 bytes
  // The state keeps a pointer to the secret, which outlives this call.
  XXH3_128bits_reset_withSecret(state.get(), secret_.data(), secret_.size());
  XXH3_128bits_update(state.get(), head.data(), head.size());
  XXH3_128bits_update(state.get(), tail.data(), len - head.size());
  const XXH128_hash_t h = XXH3_128bits_digest(state.get());
  return {h.high64, h.low64};
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
