#include "stowage/tree.h"

#include <array>

#include "json_util.h"
#include "repo_util.h"

namespace stowage {

namespace {

using json_util::Json;
using json_util::id_from_json;
using json_util::ids_to_json;

constexpr std::array<std::string_view, 7> kTypeNames = {"file",    "dir",      "symlink", "fifo",
                                                        "chardev", "blockdev", "socket"};

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<uint8_t>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = cp << 6 | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<uint8_t>(in[i + 1]) << 8;
    if (i + 2 < in.size()) v |= static_cast<uint8_t>(in[i + 2]);
    out.push_back(kB64[v >> 18 & 63]);
    out.push_back(kB64[v >> 12 & 63]);
    out.push_back(i + 1 < in.size() ? kB64[v >> 6 & 63] : '=');
    out.push_back(i + 2 < in.size() ? kB64[v & 63] : '=');
  }
  return out;
}

// Strict standard base64 with padding; false on anything else.
bool base64_decode(std::string_view in, std::string& out) {
  if (in.size() % 4 != 0) return false;
  out.clear();
  out.reserve(in.size() / 4 * 3);
  for (size_t i = 0; i < in.size(); i += 4) {
    uint32_t v = 0;
    int pad = 0;
    for (size_t k = 0; k < 4; ++k) {
      const char c = in[i + k];
      int d;
      if (c == '=' && i + 4 == in.size() && k >= 2) {
        ++pad;
        d = 0;
      } else if (pad > 0) {
        return false;
      } else {
        const char* p = std::char_traits<char>::find(kB64, 64, c);
        if (p == nullptr) return false;
        d = static_cast<int>(p - kB64);
      }
      v = v << 6 | static_cast<uint32_t>(d);
    }
    out.push_back(static_cast<char>(v >> 16));
    if (pad < 2) out.push_back(static_cast<char>(v >> 8));
    if (pad < 1) out.push_back(static_cast<char>(v));
  }
  return true;
}

// Writes `value` as "<field>" when it is printable UTF-8, else "<field>_b64".
void put_bytes(Json& j, const char* field, const std::string& value) {
  if (valid_utf8(value)) {
    j[field] = value;
  } else {
    j[std::string(field) + "_b64"] = base64_encode(value);
  }
}

// The checks shared by writer and reader. Returns an empty string when the
// entry is fine, otherwise what is wrong.
std::string entry_problem(const TreeEntry& e) {
  const std::string_view n = e.name;
  if (n.empty() || n == "." || n == ".." || n.find('/') != n.npos || n.find('\0') != n.npos) {
    return "invalid name";
  }
  if (e.mode > 07777) return "mode has bits outside 07777";
  const bool file = e.type == NodeType::kFile;
  if (!file && (e.size != 0 || !e.chunks.empty() || !e.holes.empty() || e.hardlink != 0 || !e.chunk_sums.empty())) {
    return "size/chunks/holes/hardlink/chunk_xxh128 on a non-file";
  }
  if (!e.chunk_sums.empty() && e.chunk_sums.size() != e.chunks.size()) {
    return "chunk_xxh128 does not hold one sum per chunk";
  }
  if (e.type != NodeType::kDir && !e.subtree.empty()) return "subtree on a non-directory";
  if (e.type != NodeType::kSymlink && !e.target.empty()) return "target on a non-symlink";
  if (e.type == NodeType::kSymlink && (e.target.empty() || e.target.find('\0') != std::string::npos)) {
    return "symlink without a valid target";
  }
  if (e.type != NodeType::kCharDev && e.type != NodeType::kBlockDev && e.rdev != 0) return "rdev on a non-device";
  uint64_t end = 0;
  for (const auto& h : e.holes) {
    if (h.length == 0 || h.offset < end || h.offset > e.size || h.length > e.size - h.offset) {
      return "holes not sorted, empty, overlapping or beyond the size";
    }
    end = h.offset + h.length;
  }
  return json_util::xattrs_problem(e.xattrs);
}

std::string tree_problem(const Tree& t, size_t* bad_index) {
  if (t.entries.size() > kMaxTreeEntries) {
    *bad_index = t.entries.size();
    return "more than " + std::to_string(kMaxTreeEntries) + " entries";
  }
  for (size_t i = 0; i < t.entries.size(); ++i) {
    *bad_index = i;
    std::string p = entry_problem(t.entries[i]);
    if (!p.empty()) return p;
    if (i > 0 && !(t.entries[i - 1].name < t.entries[i].name)) return "names not sorted and unique";
  }
  return {};
}

// A name as error messages show it: UTF-8 as is but with control bytes
// (NUL, newline, ESC, DEL, …) and backslashes as \xNN, so that a crafted name
// cannot cut a message or drive the terminal; a name that is not UTF-8 in
// base64.
std::string printable_name(const std::string& n) {
  return valid_utf8(n) ? repo_util::escape_bytes(n, true) : base64_encode(n);
}

std::string describe_entry(const Tree& t, size_t i) {
  if (i >= t.entries.size()) return "tree";
  return "tree entry " + std::to_string(i) + " ('" + printable_name(t.entries[i].name) + "')";
}

using json_util::get_field;
using json_util::get_optional;

// Reads "<field>" or "<field>_b64" into `out`; absent leaves it empty.
void get_bytes(const Json& j, const char* field, std::string& out) {
  const std::string b64 = std::string(field) + "_b64";
  if (j.contains(field)) {
    out = get_field<std::string>(j, field);
  } else if (j.contains(b64)) {
    if (!base64_decode(get_field<std::string>(j, b64.c_str()), out)) {
      throw std::invalid_argument(b64 + " is not valid base64");
    }
  }
}

}  // namespace

namespace json_util {

Json xattrs_to_json(const std::vector<Xattr>& xattrs) {
  Json xs = Json::array();
  for (const auto& x : xattrs) {
    Json xj;
    put_bytes(xj, "name", x.name);
    xj["value_b64"] = base64_encode(x.value);
    xs.push_back(std::move(xj));
  }
  return xs;
}

Xattr xattr_from_json(const Json& xj) {
  Xattr x;
  get_bytes(xj, "name", x.name);
  if (!base64_decode(get_field<std::string>(xj, "value_b64"), x.value)) {
    throw std::invalid_argument("xattr value is not valid base64");
  }
  return x;
}

std::vector<Xattr> xattrs_from_json(const Json& list) {
  if (!list.is_array()) throw std::invalid_argument("xattrs is not an array");
  std::vector<Xattr> out;
  for (const auto& xj : list) out.push_back(xattr_from_json(xj));
  return out;
}

std::string xattrs_problem(const std::vector<Xattr>& xattrs) {
  for (size_t i = 0; i < xattrs.size(); ++i) {
    if (xattrs[i].name.empty() || xattrs[i].name.find('\0') != std::string::npos) return "invalid xattr name";
    if (i > 0 && !(xattrs[i - 1].name < xattrs[i].name)) return "xattrs not sorted and unique";
  }
  return {};
}

}  // namespace json_util

std::string_view node_type_name(NodeType type) {
  const auto i = static_cast<size_t>(type);
  return i < kTypeNames.size() ? kTypeNames[i] : "unknown";
}

Result<std::string> serialize_tree(const Tree& tree) {
  size_t bad = 0;
  if (std::string p = tree_problem(tree, &bad); !p.empty()) {
    return Status::invalid_argument(describe_entry(tree, bad) + ": " + p);
  }
  Json entries = Json::array();
  for (const auto& e : tree.entries) {
    Json j;
    j["type"] = node_type_name(e.type);
    put_bytes(j, "name", e.name);
    j["mode"] = e.mode;
    j["uid"] = e.uid;
    j["gid"] = e.gid;
    j["mtime_ns"] = e.mtime_ns;
    j["ctime_ns"] = e.ctime_ns;
    j["inode"] = e.inode;
    if (e.type == NodeType::kFile) j["size"] = e.size;
    if (e.type == NodeType::kSymlink) put_bytes(j, "target", e.target);
    if (e.type == NodeType::kCharDev || e.type == NodeType::kBlockDev) j["rdev"] = e.rdev;
    if (e.hardlink != 0) j["hardlink"] = e.hardlink;
    if (!e.xattrs.empty()) j["xattrs"] = json_util::xattrs_to_json(e.xattrs);
    if (!e.holes.empty()) {
      Json hs = Json::array();
      for (const auto& h : e.holes) hs.push_back(Json::array({h.offset, h.length}));
      j["holes"] = std::move(hs);
    }
    if (!e.chunks.empty()) j["chunks"] = ids_to_json(e.chunks);
    if (!e.subtree.empty()) j["subtree"] = ids_to_json(e.subtree);
    if (!e.chunk_sums.empty()) {
      std::string sums;
      sums.reserve(32 * e.chunk_sums.size());
      for (const auto& cs : e.chunk_sums) sums += cs.hex();
      j["chunk_xxh128"] = std::move(sums);
    }
    entries.push_back(std::move(j));
  }
  Json root;
  root["entries"] = std::move(entries);
  return root.dump();
}

namespace {

// What parse_tree() takes out of an entry while it is parsed, so that the
// document never holds these lists: the parts whose length has no bound but
// the blob's, and whose DOM would cost up to 25 times the text.
struct EntryLists {
  std::vector<Hole> holes;
  std::vector<BlobId> chunks, subtree;
  std::vector<Xattr> xattrs;
};

TreeEntry entry_from_json(const Json& j, EntryLists& lists) {
  if (!j.is_object()) throw std::invalid_argument("an entry is not an object");
  TreeEntry e;
  const auto type = get_field<std::string>(j, "type");
  size_t t = 0;
  while (t < kTypeNames.size() && kTypeNames[t] != type) ++t;
  if (t == kTypeNames.size()) throw std::invalid_argument("unknown entry type '" + type + "'");
  e.type = static_cast<NodeType>(t);
  get_bytes(j, "name", e.name);
  e.mode = get_field<uint32_t>(j, "mode");
  e.uid = get_field<uint32_t>(j, "uid");
  e.gid = get_field<uint32_t>(j, "gid");
  e.mtime_ns = get_field<int64_t>(j, "mtime_ns");
  e.ctime_ns = get_field<int64_t>(j, "ctime_ns");
  e.inode = get_optional<uint64_t>(j, "inode");
  e.size = get_optional<uint64_t>(j, "size");
  get_bytes(j, "target", e.target);
  e.rdev = get_optional<uint64_t>(j, "rdev");
  e.hardlink = get_optional<uint64_t>(j, "hardlink");
  // The lists' elements were taken out as they were parsed; what is left here
  // must still be an array (now empty).
  for (const char* list : {"xattrs", "holes", "chunks", "subtree"}) {
    if (j.contains(list) && !j.at(list).is_array()) throw std::invalid_argument(std::string(list) + " is not an array");
  }
  e.xattrs = std::move(lists.xattrs);
  e.holes = std::move(lists.holes);
  e.chunks = std::move(lists.chunks);
  e.subtree = std::move(lists.subtree);
  if (j.contains("chunk_xxh128")) {
    const auto sums = get_field<std::string>(j, "chunk_xxh128");
    if (sums.size() % 32 != 0) throw std::invalid_argument("chunk_xxh128 is not a list of 32-digit sums");
    for (size_t i = 0; i < sums.size(); i += 32) {
      auto cs = ChunkSum::from_hex(std::string_view(sums).substr(i, 32));
      if (!cs.is_ok()) throw std::invalid_argument("chunk_xxh128: " + cs.status().message());
      e.chunk_sums.push_back(*cs);
    }
  }
  return e;
}

}  // namespace

Result<Tree> parse_tree(std::string_view text) {
  // Parsed with a callback that turns each entry into a TreeEntry as soon as
  // it is complete and drops it from the document, and takes the elements of
  // an entry's lists out one by one: memory stays near the size of the
  // result, whatever the blob holds (a 60 MiB blob of [0,0] holes took 1.5
  // GB as a document). Depths: 0 the root, 1 its keys, 2 an entry, 3 an
  // entry's keys, 4 a list element.
  Tree tree;
  EntryLists lists;
  std::string root_key, entry_key;
  int element_parts = 0;  // events inside the current list element
  auto callback = [&](int depth, Json::parse_event_t event, Json& parsed) -> bool {
    using E = Json::parse_event_t;
    if (depth == 0 && event == E::array_start) throw std::invalid_argument("no entries");  // not an object
    if (depth == 1 && event == E::key) {
      root_key = parsed.get<std::string>();
      return true;
    }
    if (depth < 2) return true;
    if (root_key != "entries") return false;  // not read: keep none of it
    if (depth == 2) {
      if (event == E::object_start) {
        lists = {};
        entry_key.clear();
        return true;
      }
      if (event == E::key) return true;  // "entries" is an object: refused below
      if (event == E::array_start) throw std::invalid_argument("an entry is not an object");
      if (tree.entries.size() >= kMaxTreeEntries) {
        throw std::invalid_argument("more than " + std::to_string(kMaxTreeEntries) + " entries");
      }
      tree.entries.push_back(entry_from_json(parsed, lists));
      return false;
    }
    if (depth == 3) {
      if (event == E::key) entry_key = parsed.get<std::string>();
      return true;
    }
    // depth >= 4: inside one of the entry's values. An element of a list the
    // entry keeps is a hole [offset, length], an id, or an xattr {name,
    // value}: anything nested deeper or longer is refused before the document
    // can grow with it.
    const bool kept_list =
        entry_key == "holes" || entry_key == "chunks" || entry_key == "subtree" || entry_key == "xattrs";
    if (!kept_list) return false;  // a value no field reads: keep none of it
    if (depth == 4 && (event == E::array_start || event == E::object_start)) element_parts = 0;
    if (depth >= 5 && (depth > 5 || ++element_parts > 8)) {
      throw std::invalid_argument("an element of " + entry_key + " is not what the format allows");
    }
    const bool element_done = depth == 4 && (event == E::value || event == E::array_end || event == E::object_end);
    if (!element_done) return true;
    if (entry_key == "holes") {
      if (!parsed.is_array() || parsed.size() != 2 || !parsed[0].is_number_unsigned() ||
          !parsed[1].is_number_unsigned()) {
        throw std::invalid_argument("a hole is not [offset, length] of unsigned integers");
      }
      lists.holes.push_back({parsed[0].get<uint64_t>(), parsed[1].get<uint64_t>()});
      return false;
    }
    if (entry_key == "xattrs") {
      lists.xattrs.push_back(json_util::xattr_from_json(parsed));
      return false;
    }
    (entry_key == "chunks" ? lists.chunks : lists.subtree).push_back(id_from_json(parsed, entry_key.c_str()));
    return false;
  };
  try {
    const auto root = Json::parse(text, callback);
    if (!root.is_object() || !root.contains("entries")) return Status::corruption("tree: no entries");
    if (!root.at("entries").is_array()) return Status::corruption("tree: entries is not an array");
  } catch (const std::exception& e) {  // nlohmann type/parse errors and our own
    return Status::corruption(std::string("tree: ") + e.what());
  }
  size_t bad = 0;
  if (std::string p = tree_problem(tree, &bad); !p.empty()) {
    return Status::corruption(describe_entry(tree, bad) + ": " + p);
  }
  return tree;
}

}  // namespace stowage
