#include "stowage/blob.h"

#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <memory>
#include <string>

namespace stowage {

std::string_view blob_type_name(BlobType type) {
  switch (type) {
    case BlobType::kData: return "data";
    case BlobType::kTree: return "tree";
  }
  return "unknown";
}

struct BlobCodec::Impl {
  ZSTD_CCtx* cctx = nullptr;
  ZSTD_DCtx* dctx = nullptr;
  Sha256 sha;
  // encode_view()'s output; uninitialised on purpose (zstd writes before
  // anything reads, and only the bytes it reports written are used).
  std::unique_ptr<char[]> out;
  size_t out_capacity = 0;
};

BlobCodec::BlobCodec(int zstd_level)
    : impl_(new Impl), level_(std::clamp(zstd_level, ZSTD_minCLevel(), ZSTD_maxCLevel())) {
  impl_->cctx = ZSTD_createCCtx();
  impl_->dctx = ZSTD_createDCtx();
}

BlobCodec::~BlobCodec() {
  ZSTD_freeCCtx(impl_->cctx);
  ZSTD_freeDCtx(impl_->dctx);
  delete impl_;
}

Result<EncodedBlob> BlobCodec::encode(BlobType type, std::string_view plaintext) {
  if (plaintext.size() > kMaxBlobSize) return encode_hashed(type, BlobId{}, plaintext);  // the size error
  return encode_hashed(type, impl_->sha.digest(plaintext), plaintext);
}

Result<EncodedBlob> BlobCodec::encode_hashed(BlobType type, const BlobId& id, std::string_view plaintext) {
  STOWAGE_ASSIGN_OR_RETURN(const EncodedBlobView v, encode_view(type, id, plaintext));
  EncodedBlob out;
  out.id = v.id;
  out.type = v.type;
  out.compression = v.compression;
  out.raw_length = v.raw_length;
  out.stored.assign(v.stored);
  return out;
}

Result<EncodedBlobView> BlobCodec::encode_view(BlobType type, const BlobId& id, std::string_view plaintext) {
  if (plaintext.size() > kMaxBlobSize) {
    return Status::invalid_argument("blob of " + std::to_string(plaintext.size()) + " bytes exceeds the " +
                                    std::to_string(kMaxBlobSize) + "-byte limit");
  }
  if (impl_->cctx == nullptr || impl_->dctx == nullptr) return Status::internal("zstd context allocation failed");
  EncodedBlobView out;
  out.id = id;
  out.type = type;
  out.raw_length = static_cast<uint32_t>(plaintext.size());
  // Only a strictly smaller frame is worth the decompression cost on restore,
  // so the output buffer is one byte short of the plaintext: zstd fails with
  // dstSize_tooSmall exactly when compression does not pay.
  if (plaintext.size() > 1) {
    const size_t capacity = plaintext.size() - 1;
    if (impl_->out_capacity < capacity) {
      impl_->out = std::make_unique_for_overwrite<char[]>(capacity);
      impl_->out_capacity = capacity;
    }
    // The one-shot API writes the content size into the frame header, which
    // decode() checks against the recorded raw length.
    const size_t n =
        ZSTD_compressCCtx(impl_->cctx, impl_->out.get(), capacity, plaintext.data(), plaintext.size(), level_);
    if (!ZSTD_isError(n)) {
      out.stored = std::string_view(impl_->out.get(), n);
      out.compression = Compression::kZstd;
      return out;
    }
    if (ZSTD_getErrorCode(n) != ZSTD_error_dstSize_tooSmall) {
      return Status::internal(std::string("zstd compress: ") + ZSTD_getErrorName(n));
    }
  }
  out.stored = plaintext;
  out.compression = Compression::kRaw;
  return out;
}

Result<Bytes> BlobCodec::decode(const BlobId& id, Compression compression, uint32_t raw_length,
                                std::string_view stored) {
  auto corrupt = [&](const std::string& why) { return Status::corruption("blob " + id.hex() + ": " + why); };
  if (raw_length > kMaxBlobSize) return corrupt("raw length " + std::to_string(raw_length) + " exceeds the limit");
  Bytes plain;
  switch (compression) {
    case Compression::kRaw:
      if (stored.size() != raw_length) {
        return corrupt("raw blob has " + std::to_string(stored.size()) + " bytes, expected " +
                       std::to_string(raw_length));
      }
      plain.assign(stored);
      break;
    case Compression::kZstd: {
      if (impl_->dctx == nullptr) return Status::internal("zstd context allocation failed");
      const unsigned long long declared = ZSTD_getFrameContentSize(stored.data(), stored.size());
      if (declared == ZSTD_CONTENTSIZE_ERROR || declared == ZSTD_CONTENTSIZE_UNKNOWN) {
        return corrupt("not a zstd frame with a content size");
      }
      if (declared != raw_length) {
        return corrupt("zstd frame declares " + std::to_string(declared) + " bytes, expected " +
                       std::to_string(raw_length));
      }
      plain.resize(raw_length);
      const size_t n = ZSTD_decompressDCtx(impl_->dctx, plain.data(), plain.size(), stored.data(), stored.size());
      if (ZSTD_isError(n)) return corrupt(std::string("zstd: ") + ZSTD_getErrorName(n));
      if (n != raw_length) {
        return corrupt("decompressed to " + std::to_string(n) + " bytes, expected " + std::to_string(raw_length));
      }
      break;
    }
    default:
      return corrupt("unknown compression code " + std::to_string(static_cast<int>(compression)));
  }
  if (impl_->sha.digest(plain) != id) return corrupt("content does not match its id (SHA-256 mismatch)");
  return plain;
}

}  // namespace stowage
