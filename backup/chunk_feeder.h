// ChunkFeeder: FastCDC over a stream that arrives in pieces of any size (the
// FileReader's buffers), cutting exactly where Chunker::split() would on the
// whole stream. Chunks that lie inside one piece are handed out in place;
// only a chunk that spans pieces is assembled in a buffer (< 2 × max_size),
// so most bytes are never copied. Internal to stowage_backup.
#pragma once

#include <algorithm>
#include <functional>
#include <string>
#include <string_view>

#include "stowage/chunker.h"
#include "stowage/status.h"

namespace stowage {

class ChunkFeeder {
 public:
  // `emit` gets each chunk in order; the view is valid only during the call.
  using Emit = std::function<Status(std::string_view)>;
  ChunkFeeder(const Chunker& chunker, Emit emit) : chunker_(chunker), emit_(std::move(emit)) {}

  // The next `data` bytes of the stream.
  Status feed(std::string_view data) {
    const size_t max = chunker_.params().max_size;
    // Bytes left from earlier pieces (< max) start the next chunk: top them up
    // until that chunk can be cut, then continue in `data` where it ended.
    while (!data.empty() && !buf_.empty()) {
      const size_t old = buf_.size();
      const size_t take = std::min(data.size(), 2 * max - old);
      buf_.append(data.data(), take);
      size_t pos = 0;
      while (buf_.size() - pos >= max && pos < old) {
        const size_t len = chunker_.cut(std::string_view(buf_).substr(pos));
        STOWAGE_RETURN_IF_ERROR(emit_(std::string_view(buf_).substr(pos, len)));
        pos += len;
      }
      if (pos >= old) {  // the buffered bytes are done; the rest of `data` is unread
        data.remove_prefix(pos - old);
        buf_.clear();
      } else {  // not enough input yet to cut: everything is buffered
        buf_.erase(0, pos);
        data.remove_prefix(take);
      }
    }
    while (data.size() >= max) {
      const size_t len = chunker_.cut(data);
      STOWAGE_RETURN_IF_ERROR(emit_(data.substr(0, len)));
      data.remove_prefix(len);
    }
    buf_.append(data.data(), data.size());
    return Status::ok();
  }

  // End of stream: cuts what is buffered.
  Status finish() {
    std::string_view rest = buf_;
    while (!rest.empty()) {
      const size_t len = chunker_.cut(rest);
      STOWAGE_RETURN_IF_ERROR(emit_(rest.substr(0, len)));
      rest.remove_prefix(len);
    }
    buf_.clear();
    return Status::ok();
  }

 private:
  const Chunker& chunker_;
  Emit emit_;
  std::string buf_;  // < max_size bytes between calls
};

}  // namespace stowage
