// S3Store: ObjectStore over the S3 REST API with libcurl 7.88. Every request
// obeys the rules that make curl's built-in SigV4 signer produce signatures
// S3 and radosgw accept (DESIGN §5): x-amz-content-sha256 always sent, keys
// percent-encoded by us, query strings pre-sorted and pre-encoded, no header
// removals, SIGV4 set anew on every (reset) handle.
#include <curl/curl.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <cstring>
#include <map>
#include <mutex>
#include <semaphore>
#include <thread>

#include "s3_protocol.h"
#include "stowage/store_deadline.h"
#include "stowage/store_s3.h"

namespace stowage {
namespace {

constexpr uint64_t kMinPartSize = 5u << 20;
constexpr int kMaxParts = 10000;
constexpr std::string_view kEmptySha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

void init_curl_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

Status curl_status(CURLcode rc, const char* errbuf, std::string_view context) {
  std::string msg = std::string(context) + ": " + (errbuf && *errbuf ? errbuf : curl_easy_strerror(rc));
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: return Status::deadline_exceeded(msg);
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return Status::unavailable(msg);
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return Status::invalid_argument(msg);
    case CURLE_OUT_OF_MEMORY: return Status::resource_exhausted(msg);
    default: return Status::io_error(msg);
  }
}

struct Request {
  const char* method = "GET";
  std::string path{};   // "/bucket/encoded/key", already encoded
  std::string query{};  // canonical (s3::canonical_query)
  std::string_view body{};
  std::vector<std::string> headers{};  // extra "Name: value" lines
};

struct Response {
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
};

struct UploadCursor {
  std::string_view data;
  size_t pos = 0;
};

size_t on_read(char* buf, size_t size, size_t n, void* arg) {
  auto* c = static_cast<UploadCursor*>(arg);
  size_t k = std::min(size * n, c->data.size() - c->pos);
  std::memcpy(buf, c->data.data() + c->pos, k);
  c->pos += k;
  return k;
}

int on_seek(void* arg, curl_off_t offset, int origin) {
  auto* c = static_cast<UploadCursor*>(arg);
  if (origin != SEEK_SET || offset < 0 || static_cast<size_t>(offset) > c->data.size()) return CURL_SEEKFUNC_FAIL;
  c->pos = static_cast<size_t>(offset);
  return CURL_SEEKFUNC_OK;
}

size_t on_write(char* buf, size_t size, size_t n, void* arg) {
  static_cast<Response*>(arg)->body.append(buf, size * n);
  return size * n;
}

size_t on_header(char* buf, size_t size, size_t n, void* arg) {
  auto* r = static_cast<Response*>(arg);
  std::string_view line(buf, size * n);
  if (line.starts_with("HTTP/")) {
    r->headers.clear();  // a new response (after 100 Continue)
  } else if (auto colon = line.find(':'); colon != std::string_view::npos) {
    std::string name(line.substr(0, colon));
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    std::string_view v = line.substr(colon + 1);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) v.remove_suffix(1);
    r->headers[name] = std::string(v);
  }
  return size * n;
}

class S3Store final : public ObjectStore {
 public:
  explicit S3Store(S3Config c)
      : cfg_(std::move(c)), slots_(cfg_.max_in_flight), sigv4_("aws:amz:" + cfg_.region + ":s3") {
    init_curl_once();
  }
  ~S3Store() override {
    for (CURL* h : idle_) curl_easy_cleanup(h);
  }

  Status put(std::string_view key, std::string_view data, PutOptions opts) override {
    STOWAGE_RETURN_IF_ERROR(validate_object_key(key));
    const std::string ctx = "s3 put '" + std::string(key) + "'";
    // create_only must stay single-part: radosgw ignores If-None-Match on
    // CompleteMultipartUpload.
    if (!opts.create_only && data.size() > cfg_.multipart_threshold) return put_multipart(key, data, ctx);
    Request rq{.method = "PUT", .path = object_path(key), .body = data};
    rq.headers.push_back("x-amz-content-sha256: " + s3::sha256_hex(data));
    if (opts.create_only) rq.headers.push_back("If-None-Match: *");
    STOWAGE_ASSIGN_OR_RETURN(Response r, perform(rq, ctx));
    if (r.status != 200) return s3::error_status(r.status, r.body, ctx);
    return Status::ok();
  }

  Result<Bytes> get(std::string_view key, uint64_t offset, uint64_t length) override {
    STOWAGE_RETURN_IF_ERROR(validate_object_key(key));
    const std::string ctx = "s3 get '" + std::string(key) + "'";
    Request rq{.method = "GET", .path = object_path(key)};
    bool ranged = offset != 0 || length != 0;
    if (ranged) {
      std::string range = "Range: bytes=" + std::to_string(offset) + "-";
      if (length != 0) range += std::to_string(offset + length - 1);
      rq.headers.push_back(std::move(range));
    }
    STOWAGE_ASSIGN_OR_RETURN(Response r, perform(rq, ctx));
    if (r.status == 206) return std::move(r.body);
    if (r.status == 200) {
      if (!ranged) return std::move(r.body);
      // The server ignored Range: cut the window out ourselves.
      if (offset > r.body.size()) return Status::invalid_argument(ctx + ": offset past end");
      return r.body.substr(offset, length == 0 ? std::string::npos : length);
    }
    if (r.status == 416) {
      // S3 rejects any range starting at or past the end; our contract makes
      // offset == size an empty read.
      STOWAGE_ASSIGN_OR_RETURN(ObjectInfo info, head(key));
      if (offset == info.size) return Bytes();
      return Status::invalid_argument(ctx + ": offset " + std::to_string(offset) + " past end " +
                                      std::to_string(info.size));
    }
    return s3::error_status(r.status, r.body, ctx);
  }

  Result<ObjectInfo> head(std::string_view key) override {
    STOWAGE_RETURN_IF_ERROR(validate_object_key(key));
    const std::string ctx = "s3 head '" + std::string(key) + "'";
    STOWAGE_ASSIGN_OR_RETURN(Response r, perform(Request{.method = "HEAD", .path = object_path(key)}, ctx));
    if (r.status != 200) return s3::error_status(r.status, r.body, ctx);
    uint64_t size = 0;
    const std::string& len = r.headers["content-length"];
    if (std::from_chars(len.data(), len.data() + len.size(), size).ec != std::errc()) {
      return Status::corruption(ctx + ": HEAD without Content-Length");
    }
    return ObjectInfo{std::string(key), size};
  }

  Result<std::vector<ObjectInfo>> list(std::string_view prefix) override {
    const std::string ctx = "s3 list '" + std::string(prefix) + "'";
    const std::string full_prefix = cfg_.prefix + std::string(prefix);
    std::vector<ObjectInfo> out;
    std::string token;
    do {
      std::vector<std::pair<std::string, std::string>> q = {
          {"list-type", "2"}, {"prefix", full_prefix}, {"max-keys", std::to_string(cfg_.list_page_size)}};
      if (!token.empty()) q.emplace_back("continuation-token", token);
      Request rq{.method = "GET", .path = "/" + cfg_.bucket, .query = s3::canonical_query(std::move(q))};
      STOWAGE_ASSIGN_OR_RETURN(Response r, perform(rq, ctx));
      if (r.status != 200) return s3::error_status(r.status, r.body, ctx);
      STOWAGE_ASSIGN_OR_RETURN(s3::ListPage page, s3::parse_list_page(r.body));
      for (auto& o : page.objects) {
        if (!o.key.starts_with(full_prefix)) return Status::corruption(ctx + ": key outside prefix: " + o.key);
        out.push_back({o.key.substr(cfg_.prefix.size()), o.size});
      }
      token = page.truncated ? page.next_token : "";
    } while (!token.empty());
    // S3 lists in UTF-8 binary order already; sorting keeps the contract even
    // for servers that do not.
    std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
    return out;
  }

  Status remove(std::string_view key) override {
    STOWAGE_RETURN_IF_ERROR(validate_object_key(key));
    const std::string ctx = "s3 remove '" + std::string(key) + "'";
    STOWAGE_ASSIGN_OR_RETURN(Response r, perform(Request{.method = "DELETE", .path = object_path(key)}, ctx));
    if (r.status == 204 || r.status == 200) return Status::ok();
    Status s = s3::error_status(r.status, r.body, ctx);
    if (s.code() == Code::kNotFound && s3::xml_first(r.body, "Code").value_or("NoSuchKey") == "NoSuchKey") {
      return Status::ok();
    }
    return s;
  }

  StoreCaps caps() const override { return {.conditional_create = true, .atomic_replace = true, .ranged_get = true}; }

  std::string describe() const override {
    std::string p = cfg_.prefix;
    if (!p.empty()) p.pop_back();
    return "s3://" + cfg_.bucket + (p.empty() ? "" : "/" + p) + " (endpoint " + cfg_.endpoint + ")";
  }

 private:
  std::string object_path(std::string_view key) const {
    return "/" + cfg_.bucket + "/" + s3::uri_encode(cfg_.prefix + std::string(key), true);
  }

  Status put_multipart(std::string_view key, std::string_view data, const std::string& ctx) {
    const std::string path = object_path(key);
    uint64_t part = std::max<uint64_t>(cfg_.part_size, kMinPartSize);
    part = std::max<uint64_t>(part, (data.size() + kMaxParts - 1) / kMaxParts);
    const size_t nparts = static_cast<size_t>((data.size() + part - 1) / part);

    Request init{.method = "POST", .path = path, .query = s3::canonical_query({{"uploads", ""}})};
    init.headers = {"x-amz-content-sha256: " + std::string(kEmptySha256), "Content-Type: application/octet-stream"};
    STOWAGE_ASSIGN_OR_RETURN(Response ir, perform(init, ctx + ": initiate multipart"));
    if (ir.status != 200) return s3::error_status(ir.status, ir.body, ctx + ": initiate multipart");
    auto upload_id = s3::xml_first(ir.body, "UploadId");
    if (!upload_id || upload_id->empty()) return Status::corruption(ctx + ": no UploadId in " + ir.body);

    std::vector<std::string> etags(nparts);
    std::atomic<size_t> next{0};
    std::mutex err_mu;
    Status first_error;
    auto worker = [&] {
      for (size_t i = next++; i < nparts; i = next++) {
        {
          std::lock_guard lock(err_mu);
          if (!first_error.is_ok()) return;
        }
        std::string_view body = data.substr(i * part, part);
        const std::string pctx = ctx + ": part " + std::to_string(i + 1) + "/" + std::to_string(nparts);
        Request rq{.method = "PUT",
                   .path = path,
                   .query = s3::canonical_query({{"partNumber", std::to_string(i + 1)}, {"uploadId", *upload_id}}),
                   .body = body};
        rq.headers.push_back("x-amz-content-sha256: " + s3::sha256_hex(body));
        auto r = perform(rq, pctx);
        Status s = !r.is_ok()           ? r.status()
                   : r->status != 200   ? s3::error_status(r->status, r->body, pctx)
                   : r->headers["etag"].empty() ? Status::corruption(pctx + ": no ETag")
                                                : Status::ok();
        if (!s.is_ok()) {
          std::lock_guard lock(err_mu);
          if (first_error.is_ok()) first_error = s;
          return;
        }
        etags[i] = r->headers["etag"];
      }
    };
    {
      std::vector<std::jthread> threads;
      size_t n = std::min<size_t>(nparts, static_cast<size_t>(std::max(1, cfg_.multipart_parallelism)));
      for (size_t t = 1; t < n; ++t) threads.emplace_back(worker);
      worker();
    }
    if (first_error.is_ok()) first_error = complete_multipart(path, *upload_id, etags, ctx);
    if (!first_error.is_ok()) {
      // Best effort: an unaborted upload keeps its parts (and their cost).
      Request ab{.method = "DELETE", .path = path, .query = s3::canonical_query({{"uploadId", *upload_id}})};
      (void)perform(ab, ctx + ": abort multipart");
    }
    return first_error;
  }

  Status complete_multipart(const std::string& path, const std::string& upload_id,
                            const std::vector<std::string>& etags, const std::string& ctx) {
    std::string xml = "<CompleteMultipartUpload>";
    for (size_t i = 0; i < etags.size(); ++i) {
      xml += "<Part><PartNumber>" + std::to_string(i + 1) + "</PartNumber><ETag>" + etags[i] + "</ETag></Part>";
    }
    xml += "</CompleteMultipartUpload>";
    Request rq{.method = "POST", .path = path, .query = s3::canonical_query({{"uploadId", upload_id}}), .body = xml};
    rq.headers = {"x-amz-content-sha256: " + s3::sha256_hex(xml), "Content-Type: application/xml"};
    const std::string cctx = ctx + ": complete multipart";
    STOWAGE_ASSIGN_OR_RETURN(Response r, perform(rq, cctx));
    // S3 may answer 200 and still fail, with an <Error> body.
    if (r.status != 200 || r.body.find("<Error>") != std::string::npos) {
      return s3::error_status(r.status == 200 ? 500 : r.status, r.body, cctx);
    }
    return Status::ok();
  }

  CURL* acquire_handle() {
    {
      std::lock_guard lock(pool_mu_);
      if (!idle_.empty()) {
        CURL* h = idle_.back();
        idle_.pop_back();
        return h;
      }
    }
    return curl_easy_init();
  }
  void release_handle(CURL* h) {
    std::lock_guard lock(pool_mu_);
    idle_.push_back(h);  // keeps its connection alive for the next request
  }

  // Sends one request. Transport failures become statuses; any HTTP answer is
  // returned for the caller to interpret.
  Result<Response> perform(const Request& rq, const std::string& ctx) {
    const auto deadline = StoreDeadline::current();
    if (!deadline) {
      slots_.acquire();
    } else if (!slots_.try_acquire_until(*deadline)) {
      return Status::deadline_exceeded(ctx + ": out of time waiting for a free connection");
    }
    struct Release {
      std::counting_semaphore<>& s;
      ~Release() { s.release(); }
    } release{slots_};

    CURL* h = acquire_handle();
    if (h == nullptr) return Status::resource_exhausted(ctx + ": curl_easy_init failed");

    Response resp;
    UploadCursor cursor{rq.body, 0};
    char errbuf[CURL_ERROR_SIZE] = {0};
    std::string url = cfg_.endpoint + rq.path + (rq.query.empty() ? "" : "?" + rq.query);

    curl_slist* headers = nullptr;
    bool has_sha = false;
    for (const auto& hd : rq.headers) {
      has_sha |= hd.starts_with("x-amz-content-sha256:");
      headers = curl_slist_append(headers, hd.c_str());
    }
    if (!has_sha) headers = curl_slist_append(headers, ("x-amz-content-sha256: " + std::string(kEmptySha256)).c_str());
    if (!cfg_.session_token.empty()) {
      headers = curl_slist_append(headers, ("x-amz-security-token: " + cfg_.session_token).c_str());
    }

    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sigv4_.c_str());
    curl_easy_setopt(h, CURLOPT_USERNAME, cfg_.access_key.c_str());
    curl_easy_setopt(h, CURLOPT_PASSWORD, cfg_.secret_key.c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(cfg_.connect_timeout.count()));
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, cfg_.low_speed_bytes);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, static_cast<long>(cfg_.low_speed_time.count()));
    if (const auto left = StoreDeadline::left()) {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*left);
      curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(std::max<int64_t>(1, ms.count())));
    }
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, cfg_.verify_tls ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, cfg_.verify_tls ? 2L : 0L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &resp);
    const std::string_view method = rq.method;
    if (method == "PUT") {
      curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
      curl_easy_setopt(h, CURLOPT_READDATA, &cursor);
      curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
      curl_easy_setopt(h, CURLOPT_SEEKDATA, &cursor);
      curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(rq.body.size()));
    } else if (method == "POST") {
      curl_easy_setopt(h, CURLOPT_POST, 1L);
      // Never NULL: curl would then read the body from stdin.
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq.body.empty() ? "" : rq.body.data());
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(rq.body.size()));
    } else if (method == "HEAD") {
      curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (method == "DELETE") {
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
    } else {
      curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }

    CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp.status);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK) {
      curl_easy_cleanup(h);  // its connection is in an unknown state
      return curl_status(rc, errbuf, ctx);
    }
    curl_easy_reset(h);  // drop pointers to this call's stack and headers; keeps the connection
    release_handle(h);
    return resp;
  }

  const S3Config cfg_;
  std::counting_semaphore<> slots_;
  const std::string sigv4_;
  std::mutex pool_mu_;
  std::vector<CURL*> idle_;
};

}  // namespace

Result<std::unique_ptr<ObjectStore>> open_s3_store(S3Config c) {
  if (c.bucket.empty()) return Status::invalid_argument("s3: bucket is empty");
  if (c.access_key.empty() || c.secret_key.empty()) return Status::invalid_argument("s3: no credentials");
  if (c.region.empty()) c.region = "us-east-1";
  if (c.endpoint.empty()) c.endpoint = "https://s3." + c.region + ".amazonaws.com";
  while (c.endpoint.ends_with('/')) c.endpoint.pop_back();
  if (!c.endpoint.starts_with("http://") && !c.endpoint.starts_with("https://")) {
    return Status::invalid_argument("s3: endpoint must start with http:// or https://: " + c.endpoint);
  }
  if (!c.prefix.empty()) {
    if (!c.prefix.ends_with('/')) c.prefix += '/';
    STOWAGE_RETURN_IF_ERROR(validate_object_key(std::string_view(c.prefix).substr(0, c.prefix.size() - 1))
                                .with_context("s3: prefix"));
  }
  c.max_in_flight = std::clamp(c.max_in_flight, 1, 1024);
  c.list_page_size = std::clamp(c.list_page_size, 1, 1000);
  return std::unique_ptr<ObjectStore>(std::make_unique<S3Store>(std::move(c)));
}

}  // namespace stowage
