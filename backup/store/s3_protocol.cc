#include "s3_protocol.h"

#include <openssl/evp.h>

#include <algorithm>
#include <charconv>

namespace stowage::s3 {

std::string uri_encode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (unsigned char c : s) {
    bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                 c == '.' || c == '_' || c == '~' || (keep_slash && c == '/');
    if (plain) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string canonical_query(std::vector<std::pair<std::string, std::string>> params) {
  for (auto& [k, v] : params) {
    k = uri_encode(k, false);
    v = uri_encode(v, false);
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) out += '&';
    out += k;
    out += '=';
    out += v;
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[32];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

namespace {
void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}
}  // namespace

std::string xml_unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out += s[i];
      continue;
    }
    size_t semi = s.find(';', i);
    if (semi == std::string_view::npos) {
      out += s.substr(i);
      break;
    }
    std::string_view ent = s.substr(i + 1, semi - i - 1);
    if (ent == "amp") out += '&';
    else if (ent == "lt") out += '<';
    else if (ent == "gt") out += '>';
    else if (ent == "quot") out += '"';
    else if (ent == "apos") out += '\'';
    else if (ent.size() > 1 && ent[0] == '#') {
      uint32_t cp = 0;
      bool hex = ent[1] == 'x' || ent[1] == 'X';
      std::string_view digits = ent.substr(hex ? 2 : 1);
      auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), cp, hex ? 16 : 10);
      if (ec != std::errc() || p != digits.data() + digits.size()) {
        out += s.substr(i, semi - i + 1);
      } else {
        append_utf8(out, cp);
      }
    } else {
      out += s.substr(i, semi - i + 1);
    }
    i = semi;
  }
  return out;
}

std::vector<std::string> xml_all(std::string_view body, std::string_view tag) {
  std::vector<std::string> out;
  // Built with append(): GCC 12 -O3 flags "<" + std::string as overlapping (-Wrestrict, a false positive).
  std::string open = "<", close = "</";
  open.append(tag).append(">");
  close.append(tag).append(">");
  size_t pos = 0;
  while ((pos = body.find(open, pos)) != std::string_view::npos) {
    size_t start = pos + open.size();
    size_t end = body.find(close, start);
    if (end == std::string_view::npos) break;
    out.push_back(xml_unescape(body.substr(start, end - start)));
    pos = end + close.size();
  }
  return out;
}

std::optional<std::string> xml_first(std::string_view body, std::string_view tag) {
  auto all = xml_all(body, tag);
  if (all.empty()) return std::nullopt;
  return std::move(all.front());
}

Result<ListPage> parse_list_page(std::string_view body) {
  if (body.find("<ListBucketResult") == std::string_view::npos) {
    return Status::corruption("ListObjectsV2: unexpected response: " + std::string(body.substr(0, 200)));
  }
  ListPage page;
  size_t pos = 0;
  while ((pos = body.find("<Contents>", pos)) != std::string_view::npos) {
    size_t end = body.find("</Contents>", pos);
    if (end == std::string_view::npos) return Status::corruption("ListObjectsV2: unterminated <Contents>");
    std::string_view entry = body.substr(pos, end - pos);
    auto key = xml_first(entry, "Key");
    auto size = xml_first(entry, "Size");
    uint64_t n = 0;
    if (!key || !size || std::from_chars(size->data(), size->data() + size->size(), n).ec != std::errc()) {
      return Status::corruption("ListObjectsV2: entry without Key/Size");
    }
    page.objects.push_back({std::move(*key), n});
    pos = end;
  }
  page.truncated = xml_first(body, "IsTruncated").value_or("false") == "true";
  page.next_token = xml_first(body, "NextContinuationToken").value_or("");
  if (page.truncated && page.next_token.empty()) {
    return Status::corruption("ListObjectsV2: truncated page without NextContinuationToken");
  }
  return page;
}

Status error_status(long http, std::string_view body, std::string_view context) {
  std::string code = xml_first(body, "Code").value_or("");
  std::string msg = std::string(context) + ": HTTP " + std::to_string(http);
  if (!code.empty()) msg += " " + code;
  if (auto m = xml_first(body, "Message"); m && !m->empty()) msg += ": " + *m;

  if (code == "SlowDown" || code == "Throttling" || code == "ThrottlingException" || code == "RequestTimeout" ||
      code == "RequestLimitExceeded" || code == "InternalError" || code == "ServiceUnavailable" ||
      code == "ConditionalRequestConflict" || http == 429) {
    return Status::unavailable(msg);
  }
  if (code == "RequestTimeTooSkewed") return Status::permission_denied(msg + " (fix the clock)");
  switch (http) {
    case 404: return Status::not_found(msg);
    case 412: return Status::already_exists(msg);
    case 409: return Status::already_exists(msg);
    case 401:
    case 403: return Status::permission_denied(msg);
    case 400:
    case 411:
    case 413:
    case 414:
    case 416: return Status::invalid_argument(msg);
    case 501: return Status::unimplemented(msg);
    default: break;
  }
  if (http >= 500) return Status::unavailable(msg);
  return Status::io_error(msg);
}

}  // namespace stowage::s3
