// ChunkFeeder: FastCDC over a stream that arrives in pieces of any size (the
// FileReader's buffers), cutting exactly where Chunker::split() would on the
// whole stream. Chunks that lie inside one piece are handed out in place;
// the tail of a piece (< max_size) is kept, and of the next piece only what
// the chunk spanning both needs is appended to it, so most bytes are never
// copied. Internal to stowage_backup.
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
    // Bytes left from earlier pieces (< max) start the next chunk: cut them
    // together with `data` in place (Chunker::cut(head, tail)) and copy only
    // the part of `data` that the chunk spanning both needs.
    while (!data.empty() && pos_ < buf_.size()) {
      const std::string_view rest = std::string_view(buf_).substr(pos_);
      if (rest.size() + data.size() < max) {  // not enough input yet to cut
        buf_.erase(0, pos_);
        pos_ = 0;
        buf_.append(data);
        return Status::ok();
      }
      const size_t len = chunker_.cut(rest, data);
      if (len <= rest.size()) {
        STOWAGE_RETURN_IF_ERROR(emit_(rest.substr(0, len)));
        pos_ += len;
        continue;
      }
      const size_t more = len - rest.size();
      buf_.append(data.substr(0, more));
      STOWAGE_RETURN_IF_ERROR(emit_(std::string_view(buf_).substr(pos_)));
      data.remove_prefix(more);
      pos_ = buf_.size();
    }
    if (pos_ == buf_.size()) {
      buf_.clear();
      pos_ = 0;
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
    std::string_view rest = std::string_view(buf_).substr(pos_);
    while (!rest.empty()) {
      const size_t len = chunker_.cut(rest);
      STOWAGE_RETURN_IF_ERROR(emit_(rest.substr(0, len)));
      rest.remove_prefix(len);
    }
    buf_.clear();
    pos_ = 0;
    return Status::ok();
  }

 private:
  const Chunker& chunker_;
  Emit emit_;
  // Bytes not yet cut start at buf_[pos_]; fewer than max_size between calls.
  std::string buf_;
  size_t pos_ = 0;
};

}  // namespace stowage
