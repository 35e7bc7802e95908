// Unit tests of the S3 wire helpers, error classification and configuration
// from the environment.
#include "s3_protocol.h"

#include <gtest/gtest.h>

#include <map>

#include "stowage/store_s3.h"
#include "support/test_support.h"

namespace stowage {
namespace {

TEST(S3Encoding, UriEncodeKeepsOnlyUnreserved) {
  EXPECT_EQ(s3::uri_encode("a b+c=d%e~f/g.h-i_j", true), "a%20b%2Bc%3Dd%25e~f/g.h-i_j");
  EXPECT_EQ(s3::uri_encode("a/b", false), "a%2Fb");
  EXPECT_EQ(s3::uri_encode("ü日", true), "%C3%BC%E6%97%A5");
  EXPECT_EQ(s3::uri_encode("*'()!", true), "%2A%27%28%29%21");
}

TEST(S3Encoding, CanonicalQuerySortsEncodesAndWritesEmptyValues) {
  EXPECT_EQ(s3::canonical_query({{"uploads", ""}}), "uploads=");
  EXPECT_EQ(s3::canonical_query({{"prefix", "a b/"}, {"list-type", "2"}, {"continuation-token", "x/y=+"}}),
            "continuation-token=x%2Fy%3D%2B&list-type=2&prefix=a%20b%2F");
  EXPECT_EQ(s3::canonical_query({{"uploadId", "2~abc"}, {"partNumber", "10"}}), "partNumber=10&uploadId=2~abc");
}

TEST(S3Encoding, Sha256) {
  EXPECT_EQ(s3::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(s3::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(S3Xml, UnescapeEntities) {
  EXPECT_EQ(s3::xml_unescape("a&amp;b&lt;c&gt;&quot;&apos;&#65;&#x42;&#x1F642;"), "a&b<c>\"'AB\xF0\x9F\x99\x82");
  EXPECT_EQ(s3::xml_unescape("&bogus; & tail"), "&bogus; & tail");
}

TEST(S3Xml, ParsesListPages) {
  auto page = s3::parse_list_page(
      "<?xml version=\"1.0\"?><ListBucketResult><Name>b</Name><IsTruncated>true</IsTruncated>"
      "<Contents><Key>p/a&amp;b</Key><Size>3</Size></Contents>"
      "<Contents><Key>p/\xC3\xBC c</Key><ETag>&quot;x&quot;</ETag><Size>0</Size></Contents>"
      "<NextContinuationToken>tok/en=</NextContinuationToken></ListBucketResult>");
  ASSERT_TRUE(page.is_ok()) << page.status().to_string();
  ASSERT_EQ(page->objects.size(), 2u);
  EXPECT_EQ(page->objects[0].key, "p/a&b");
  EXPECT_EQ(page->objects[0].size, 3u);
  EXPECT_EQ(page->objects[1].key, "p/\xC3\xBC c");
  EXPECT_TRUE(page->truncated);
  EXPECT_EQ(page->next_token, "tok/en=");

  EXPECT_EQ(s3::parse_list_page("<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>")
                .status()
                .code(),
            Code::kCorruption);
  EXPECT_EQ(s3::parse_list_page("<html>proxy error</html>").status().code(), Code::kCorruption);
}

TEST(S3Errors, ClassifiedAtTheSource) {
  struct Case {
    long http;
    const char* code;
    Code want;
    bool retryable;
  };
  for (const Case& c : std::vector<Case>{
           {404, "NoSuchKey", Code::kNotFound, false},
           {404, "NoSuchBucket", Code::kNotFound, false},
           {412, "PreconditionFailed", Code::kAlreadyExists, false},
           {403, "AccessDenied", Code::kPermissionDenied, false},
           {403, "SignatureDoesNotMatch", Code::kPermissionDenied, false},
           {403, "RequestTimeTooSkewed", Code::kPermissionDenied, false},
           {400, "InvalidArgument", Code::kInvalidArgument, false},
           {416, "InvalidRange", Code::kInvalidArgument, false},
           {400, "RequestTimeout", Code::kUnavailable, true},
           {503, "SlowDown", Code::kUnavailable, true},
           {400, "Throttling", Code::kUnavailable, true},
           {500, "InternalError", Code::kUnavailable, true},
           {502, "", Code::kUnavailable, true},
           {429, "", Code::kUnavailable, true},
           {409, "ConditionalRequestConflict", Code::kUnavailable, true},
           {501, "NotImplemented", Code::kUnimplemented, false},
       }) {
    std::string body = c.code[0] ? std::string("<Error><Code>") + c.code + "</Code><Message>m</Message></Error>" : "";
    Status s = s3::error_status(c.http, body, "ctx");
    EXPECT_EQ(s.code(), c.want) << c.http << " " << c.code << ": " << s.to_string();
    EXPECT_EQ(s.retryable(), c.retryable) << c.http << " " << c.code;
    EXPECT_TRUE(s.message().starts_with("ctx: HTTP " + std::to_string(c.http))) << s.message();
  }
}

EnvLookup fake_env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](std::string_view n) -> std::optional<std::string> {
    auto it = vars.find(std::string(n));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(S3Config, FromEnvironmentVariables) {
  auto c = s3_config_from_env("s3://bucket/some/prefix/",
                              fake_env({{"STOWAGE_S3_ENDPOINT", "http://127.0.0.1:9000"},
                                        {"AWS_ACCESS_KEY_ID", "AK"},
                                        {"AWS_SECRET_ACCESS_KEY", "SK"},
                                        {"AWS_SESSION_TOKEN", "TOK"},
                                        {"AWS_DEFAULT_REGION", "eu-west-3"},
                                        {"STOWAGE_S3_MAX_IN_FLIGHT", "32"},
                                        {"STOWAGE_S3_PART_SIZE", "10485760"}}));
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->bucket, "bucket");
  EXPECT_EQ(c->prefix, "some/prefix/");
  EXPECT_EQ(c->endpoint, "http://127.0.0.1:9000");
  EXPECT_EQ(c->region, "eu-west-3");
  EXPECT_EQ(c->access_key, "AK");
  EXPECT_EQ(c->secret_key, "SK");
  EXPECT_EQ(c->session_token, "TOK");
  EXPECT_EQ(c->max_in_flight, 32);
  EXPECT_EQ(c->part_size, 10485760u);
}

TEST(S3Config, FromSharedFilesWithProfile) {
  test::TempDir dir;
  test::write_file(dir / "credentials",
                   "[default]\naws_access_key_id = DEF\naws_secret_access_key = DEFSK\n"
                   "# comment\n[backup]\naws_access_key_id=BAK\naws_secret_access_key=BAKSK\n");
  test::write_file(dir / "config", "[default]\nregion = us-west-2\n[profile backup]\nregion = ap-south-1\n");
  auto c = s3_config_from_env("s3://bkt", fake_env({{"AWS_SHARED_CREDENTIALS_FILE", dir / "credentials"},
                                                  {"AWS_CONFIG_FILE", dir / "config"},
                                                  {"AWS_PROFILE", "backup"}}));
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->access_key, "BAK");
  EXPECT_EQ(c->secret_key, "BAKSK");
  EXPECT_EQ(c->region, "ap-south-1");
  EXPECT_EQ(c->prefix, "");
  auto d = s3_config_from_env("s3://bkt", fake_env({{"HOME", dir.path() + "/nonexistent"},
                                                  {"AWS_SHARED_CREDENTIALS_FILE", dir / "credentials"}}));
  ASSERT_TRUE(d.is_ok());
  EXPECT_EQ(d->access_key, "DEF");
  EXPECT_EQ(d->region, "us-east-1");
}

TEST(S3Config, Errors) {
  auto none = fake_env({});
  EXPECT_EQ(s3_config_from_env("s3://bkt", none).status().code(), Code::kInvalidArgument) << "no credentials";
  auto creds = fake_env({{"AWS_ACCESS_KEY_ID", "a"}, {"AWS_SECRET_ACCESS_KEY", "s"}, {"STOWAGE_S3_PART_SIZE", "x"}});
  EXPECT_EQ(s3_config_from_env("s3://bkt", creds).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(s3_config_from_env("s3:///prefix", creds).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(s3_config_from_env("http://b", creds).status().code(), Code::kInvalidArgument);
  // Credentials in the URL are refused without repeating them; bucket names
  // follow S3's rules, as stowaged's config does (check_s3_url).
  auto inline_creds = s3_config_from_env("s3://AKIA:hunter2@bucket/p", creds);
  EXPECT_EQ(inline_creds.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(inline_creds.status().message().find("hunter2"), std::string::npos) << inline_creds.status().to_string();
  EXPECT_NE(inline_creds.status().message().find("AWS_ACCESS_KEY_ID"), std::string::npos);
  for (const char* bad : {"s3://b", "s3://Bucket", "s3://buck_et", "s3://buck et", "s3://bucket?x=1", "s3://bu%2Fck"}) {
    auto r = s3_config_from_env(bad, creds);
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("is not a valid S3 bucket name"), std::string::npos) << r.status().to_string();
  }
  EXPECT_TRUE(check_s3_url("s3://my-backups.2026/stowage/").is_ok());
  S3Config c;
  c.bucket = "b";
  c.access_key = "a";
  c.secret_key = "s";
  c.endpoint = "ftp://x";
  EXPECT_EQ(open_s3_store(c).status().code(), Code::kInvalidArgument);
  c.endpoint = "";
  c.prefix = "../up";
  EXPECT_EQ(open_s3_store(c).status().code(), Code::kInvalidArgument);
  c.prefix = "fine/";
  auto s = open_s3_store(c);
  ASSERT_TRUE(s.is_ok());
  EXPECT_EQ((*s)->describe(), "s3://b/fine (endpoint https://s3.us-east-1.amazonaws.com)");
}

}  // namespace
}  // namespace stowage
