#include "stowage/volume.h"

#include <gtest/gtest.h>

namespace stowage {
namespace {

TEST(VolumeName, AcceptsDockerNames) {
  for (const char* n : {"a", "db1", "my_vol.v2-final", "0abc", "A.B_C-D"}) {
    EXPECT_TRUE(validate_volume_name(n).is_ok()) << n;
  }
  EXPECT_TRUE(validate_volume_name(std::string(kMaxVolumeNameLength, 'x')).is_ok());
}

TEST(VolumeName, RefusesHostileNamesWithReason) {
  struct Case {
    std::string name;
    std::string why;
  };
  std::vector<Case> cases = {
      {"", "empty"},
      {"..", "must start with a letter or digit"},
      {".", "must start with a letter or digit"},
      {"../etc", "must start"},
      {"a/b", "'/'"},
      {"a/../../x", "'/'"},
      {std::string("a\0b", 3), "byte 0x00"},
      {"-rf", "must start"},
      {"_x", "must start"},
      {"a b", "' '"},
      {"naïve", "byte 0xc3"},
      {std::string(kMaxVolumeNameLength + 1, 'x'), "limit is 128"},
  };
  for (const auto& c : cases) {
    Status st = validate_volume_name(c.name);
    EXPECT_EQ(st.code(), Code::kInvalidArgument) << c.name;
    EXPECT_NE(st.message().find(c.why), std::string::npos) << "'" << c.name << "': " << st.message();
  }
}

TEST(VolumeOptions, ParsesUidGidMode) {
  auto o = parse_volume_options({{"uid", "1000"}, {"gid", "999"}, {"mode", "0750"}});
  ASSERT_TRUE(o.is_ok()) << o.status().message();
  EXPECT_EQ(o->uid, 1000u);
  EXPECT_EQ(o->gid, 999u);
  EXPECT_EQ(o->mode, 0750u);
  EXPECT_EQ(o->raw.size(), 3u);
  auto m = parse_volume_options({{"mode", "1777"}});
  ASSERT_TRUE(m.is_ok());
  EXPECT_EQ(m->mode, 01777u);
}

TEST(VolumeOptions, EqualWhenTheParsedValuesAre) {
  auto parse = [](std::map<std::string, std::string> raw) { return parse_volume_options(raw).value(); };
  EXPECT_EQ(parse({{"mode", "0750"}}), parse({{"mode", "750"}}));
  EXPECT_EQ(parse({{"uid", "007"}, {"gid", "0"}}), parse({{"uid", "7"}, {"gid", "00"}}));
  EXPECT_EQ(parse({{"quiesce", "none"}}), parse({}));
  EXPECT_FALSE(parse({{"mode", "0750"}}) == parse({{"mode", "0755"}}));
  EXPECT_FALSE(parse({{"mode", "0755"}}) == parse({}));  // unset: the default, but not the same request
  EXPECT_FALSE(parse({{"takeover", "force"}}) == parse({}));
  EXPECT_FALSE(parse({{"from-snapshot", "a@s"}}) == parse({{"from-snapshot", "a@t"}}));
}

TEST(VolumeOptions, UnknownOptionListsValidOnes) {
  auto o = parse_volume_options({{"size", "10G"}});
  ASSERT_FALSE(o.is_ok());
  EXPECT_EQ(o.status().code(), Code::kInvalidArgument);
  EXPECT_NE(o.status().message().find("unknown option 'size'"), std::string::npos);
  EXPECT_NE(o.status().message().find("uid, gid, mode"), std::string::npos) << o.status().message();
}

TEST(VolumeOptions, RefusesBadValuesNamingTheKey) {
  for (auto [k, v] : std::vector<std::pair<std::string, std::string>>{{"uid", "-1"},
                                                                      {"uid", "abc"},
                                                                      {"uid", ""},
                                                                      {"uid", "4294967295"},
                                                                      {"gid", "1e3"},
                                                                      {"gid", "99999999999"},
                                                                      {"mode", "0800"},
                                                                      {"mode", "17777"},
                                                                      {"mode", "rwx"},
                                                                      {"mode", "0750 "}}) {
    auto o = parse_volume_options({{k, v}});
    ASSERT_FALSE(o.is_ok()) << k << "=" << v;
    EXPECT_NE(o.status().message().find("option '" + k + "'"), std::string::npos) << o.status().message();
  }
}

TEST(VolumeRecord, JsonRoundTrip) {
  VolumeRecord r;
  r.name = "db";
  r.options = *parse_volume_options({{"uid", "70"}, {"mode", "0700"}});
  r.created_unix_ns = 1700000000123456789;
  r.mount_ids = {"abc", "def"};
  r.boot_id = "boot-1";
  auto back = volume_record_from_json(volume_record_to_json(r));
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  EXPECT_EQ(*back, r);
}

TEST(VolumeRecord, DamagedRecordsAreCorruption) {
  for (const char* bad : {"", "{", "[]", R"({"format":2})",
                          R"({"format":1,"name":"../x","kind":"dir","created_unix_ns":0,"options":{},"mount_ids":[]})",
                          R"({"format":1,"name":"x","kind":"dir","created_unix_ns":0,"options":{"bogus":"1"},"mount_ids":[]})",
                          R"({"format":1,"name":"x","kind":"dir","created_unix_ns":"0","options":{},"mount_ids":[]})"}) {
    auto r = volume_record_from_json(bad);
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_EQ(r.status().code(), Code::kCorruption) << bad;
  }
}

TEST(Rfc3339, FormatsUtcWithNanoseconds) {
  EXPECT_EQ(format_rfc3339(0), "1970-01-01T00:00:00.000000000Z");
  EXPECT_EQ(format_rfc3339(1700000000123456789), "2023-11-14T22:13:20.123456789Z");
  // Before 1970 (a file time can be): the fraction stays positive.
  EXPECT_EQ(format_rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
}

}  // namespace
}  // namespace stowage
