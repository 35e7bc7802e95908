// Pure helpers for the S3 wire protocol: encodings that curl 7.88's SigV4
// signer needs done for it, a minimal XML reader for S3 responses, and the
// mapping from S3 errors to Status. Internal to stowage_store (and its tests).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stowage/object_store.h"

namespace stowage::s3 {

// Percent-encodes everything except A-Za-z0-9-._~ (and '/' when keep_slash),
// as SigV4's canonical form requires; UTF-8 is encoded byte by byte.
std::string uri_encode(std::string_view s, bool keep_slash);

// "a=1&b=2" from name/value pairs, sorted by name and encoded, with valueless
// parameters written "name=" (curl 7.88 signs the query string as given).
std::string canonical_query(std::vector<std::pair<std::string, std::string>> params);

// Lowercase hex SHA-256.
std::string sha256_hex(std::string_view data);

// Decodes the five XML entities and numeric character references.
std::string xml_unescape(std::string_view s);

// Text of every <tag>…</tag> element (unescaped), in document order. Enough for
// S3's flat, attribute-free responses.
std::vector<std::string> xml_all(std::string_view body, std::string_view tag);
std::optional<std::string> xml_first(std::string_view body, std::string_view tag);

struct ListPage {
  std::vector<ObjectInfo> objects;  // keys as in the bucket (store prefix included)
  bool truncated = false;
  std::string next_token;
};
// Parses a ListObjectsV2 result. kCorruption if it is not one, or if it says
// truncated without a continuation token (that would loop forever).
Result<ListPage> parse_list_page(std::string_view body);

// Classifies a non-2xx answer (or a 200 whose body is an <Error>): 404 →
// kNotFound, 412 → kAlreadyExists, 403 → kPermissionDenied, 400/416 →
// kInvalidArgument, 5xx/429/SlowDown/Throttling/RequestTimeout → retryable.
Status error_status(long http_status, std::string_view body, std::string_view context);

}  // namespace stowage::s3
