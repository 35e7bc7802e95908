// Put/get throughput of the object stores with 1, 4 and 16 requests in flight:
// the file store in a temp directory and S3 on a throwaway radosgw (the test
// fixture). Prints MB/s; asserts nothing about speed.
//
//   store_bench [object_MiB=4] [objects=32]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "stowage/store_file.h"
#include "stowage/store_s3.h"
#include "support/radosgw.h"
#include "support/test_support.h"

namespace {

using Clock = std::chrono::steady_clock;

// Runs fn(i) for i in [0, n) on `threads` threads; returns seconds, or -1 if
// any call failed.
double run_parallel(int n, int threads, const std::function<bool(int)>& fn) {
  std::atomic<int> next{0};
  std::atomic<bool> ok{true};
  auto t0 = Clock::now();
  {
    std::vector<std::jthread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&] {
        for (int i = next++; i < n; i = next++) {
          if (!fn(i)) ok = false;
        }
      });
    }
  }
  double s = std::chrono::duration<double>(Clock::now() - t0).count();
  return ok ? s : -1;
}

void bench_store(const char* name, stowage::ObjectStore& store, size_t object_size, int objects) {
  std::string data(object_size, '\0');
  std::mt19937_64 rng(1);
  for (size_t i = 0; i + 8 <= data.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(&data[i], &v, 8);
  }
  const double mb = static_cast<double>(object_size) * objects / 1e6;
  for (int inflight : {1, 4, 16}) {
    auto key = [&](int i) { return "bench/" + std::to_string(inflight) + "/" + std::to_string(i); };
    double put_s = run_parallel(objects, inflight, [&](int i) {
      stowage::Status s = store.put(key(i), data);
      if (!s.is_ok()) std::fprintf(stderr, "put: %s\n", s.to_string().c_str());
      return s.is_ok();
    });
    double get_s = run_parallel(objects, inflight, [&](int i) {
      auto r = store.get(key(i));
      if (!r.is_ok()) std::fprintf(stderr, "get: %s\n", r.status().to_string().c_str());
      return r.is_ok() && r->size() == object_size;
    });
    (void)run_parallel(objects, inflight, [&](int i) { return store.remove(key(i)).is_ok(); });
    if (put_s < 0 || get_s < 0) {
      std::printf("%-10s in_flight=%-2d FAILED\n", name, inflight);
      continue;
    }
    std::printf("%-10s in_flight=%-2d put %8.1f MB/s   get %8.1f MB/s   (%d x %zu KiB)\n", name, inflight,
                mb / put_s, mb / get_s, objects, object_size >> 10);
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const size_t mib = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 4;
  const int objects = argc > 2 ? std::atoi(argv[2]) : 32;
  const size_t size = mib << 20;

  stowage::test::TempDir dir("stowage-bench");
  auto file = stowage::open_file_store(dir / "file");
  if (!file.is_ok()) {
    std::fprintf(stderr, "%s\n", file.status().to_string().c_str());
    return 1;
  }
  bench_store("file", **file, size, objects);

  stowage::test::Radosgw rgw;
  if (std::string err = rgw.start(dir / "ceph"); !err.empty()) {
    std::fprintf(stderr, "%s\n", err.c_str());
    return 1;
  }
  if (std::string err = rgw.create_bucket("bench"); !err.empty()) {
    std::fprintf(stderr, "%s\n", err.c_str());
    return 1;
  }
  stowage::S3Config c;
  c.endpoint = rgw.endpoint();
  c.region = rgw.region();
  c.bucket = "bench";
  c.access_key = rgw.user().access_key;
  c.secret_key = rgw.user().secret_key;
  auto s3 = stowage::open_s3_store(c);
  if (!s3.is_ok()) {
    std::fprintf(stderr, "%s\n", s3.status().to_string().c_str());
    return 1;
  }
  bench_store("radosgw", **s3, size, objects);
  return 0;
}
