#include "repository_store.h"

#include "stowage/store_file.h"
#include "stowage/store_retry.h"
#include "stowage/store_s3.h"

namespace stowage {

namespace {

class MeteredStore final : public ObjectStore {
 public:
  MeteredStore(std::unique_ptr<ObjectStore> inner, DaemonMetrics& m) : inner_(std::move(inner)), m_(m) {}

  Status put(std::string_view key, std::string_view data, PutOptions opts) override {
    return timed("put", [&] { return inner_->put(key, data, opts); });
  }
  Result<Bytes> get(std::string_view key, uint64_t offset, uint64_t length) override {
    return timed("get", [&] { return inner_->get(key, offset, length); });
  }
  Result<ObjectInfo> head(std::string_view key) override {
    return timed("head", [&] { return inner_->head(key); });
  }
  Result<std::vector<ObjectInfo>> list(std::string_view prefix) override {
    return timed("list", [&] { return inner_->list(prefix); });
  }
  Status remove(std::string_view key) override {
    return timed("remove", [&] { return inner_->remove(key); });
  }
  StoreCaps caps() const override { return inner_->caps(); }
  std::string describe() const override { return inner_->describe(); }

 private:
  template <typename Fn>
  auto timed(std::string_view op, Fn fn) -> decltype(fn()) {
    auto start = std::chrono::steady_clock::now();
    auto result = fn();
    m_.store_request(op, status_of(result), std::chrono::steady_clock::now() - start);
    return result;
  }

  std::unique_ptr<ObjectStore> inner_;
  DaemonMetrics& m_;
};

Result<std::unique_ptr<ObjectStore>> open_base(const DaemonOptions& opts, S3Config s3) {
  const std::string& url = opts.repository_url;
  if (url.empty()) return Status::failed_precondition("no repository configured (repository.url)");
  if (url.starts_with("file://")) return open_file_store(url.substr(7));
  if (url.starts_with("s3://")) return open_s3_store(std::move(s3));
  return Status::invalid_argument("unsupported repository URL (want file:///path or s3://bucket[/prefix]): " + url);
}

}  // namespace

std::unique_ptr<ObjectStore> make_metered_store(std::unique_ptr<ObjectStore> inner, DaemonMetrics& metrics) {
  return std::make_unique<MeteredStore>(std::move(inner), metrics);
}

Result<std::unique_ptr<ObjectStore>> open_repository_store(const DaemonOptions& opts, DaemonMetrics* metrics) {
  STOWAGE_ASSIGN_OR_RETURN(auto store, open_base(opts, opts.s3));
  RetryPolicy policy;
  if (metrics) {
    store = make_metered_store(std::move(store), *metrics);
    policy.on_retry = [metrics] { metrics->store_retry(); };
  }
  return std::unique_ptr<ObjectStore>(make_retrying_store(std::move(store), policy));
}

Status probe_repository(const DaemonOptions& opts, std::chrono::seconds timeout, DaemonMetrics* metrics) {
  S3Config s3 = opts.s3;
  s3.connect_timeout = timeout;
  s3.low_speed_time = timeout;
  auto store = open_base(opts, std::move(s3));
  if (!store.is_ok()) return store.status();
  if (metrics) *store = make_metered_store(std::move(store).value(), *metrics);
  auto head = (*store)->head("config");
  if (head.is_ok()) return Status::ok();
  if (head.status().code() == Code::kNotFound) {
    return Status::not_found("the store answers but holds no repository (no 'config' object); create one with "
                             "`stowctl repo init --repo " +
                             opts.repository_url + "`");
  }
  return head.status();
}

}  // namespace stowage
