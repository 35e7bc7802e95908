// ChunkFeeder: FastCDC over a stream that arrives in pieces of any size (the
// FileReader's buffers), cutting exactly where Chunker::split() would on the
// whole stream. Chunks that lie inside one piece are handed out in place;
// the tail of a piece (< max_size) is kept, and of the next piece only what
// the chunk spanning both needs is appended to it, so most bytes are never
// copied.
//
// Given the chunks of the stream's previous version (the parent snapshot's
// entry of a changed file), it reuses each of them whose bytes are still
// there at the same offset, recognised by their chunk sum (keyed XXH3-128), without
// cutting them; the next backup then hashes and compresses only what
// changed. It still cuts exactly where Chunker::split() would (see
// ParentChunks). Internal to stowage_backup.
#pragma once

#include <algorithm>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "stowage/chunker.h"
#include "stowage/hash.h"
#include "stowage/status.h"

namespace stowage {

// One chunk of the stream's previous version, at `offset` in that stream.
struct ParentChunk {
  uint64_t offset = 0;
  uint32_t length = 0;
  BlobId id;
  ChunkSum sum;
};

// The previous version's chunks, in order and tiling its stream from 0
// without gaps, cut by the same Chunker. Why reusing one cuts where split() would:
// every offset where the feeder looks for a parent chunk is a cut point of
// split() on the new stream (induction from 0). From such a point, cut()
// returns the same length for the same bytes whenever the stream goes on at
// least that far, unless that length was decided by the end of the stream
// (chunker.h: a cut found by the masks or at max_size depends on nothing
// after it). Only the parent's last chunk can have been cut by its stream's
// end, so it is reused only where the new stream ends at the same offset.
class ParentChunks {
 public:
  ParentChunks() = default;
  // `chunks` must tile [0, total length) in order (the caller builds them
  // from a tree entry's chunk list and the index's raw lengths).
  explicit ParentChunks(std::vector<ParentChunk> chunks) : chunks_(std::move(chunks)) {}

  bool empty() const { return chunks_.empty(); }

  // The chunk that starts at `offset`, or nullptr. Offsets asked for must
  // not decrease from one call to the next (a cursor moves forward).
  const ParentChunk* at(uint64_t offset) {
    while (next_ < chunks_.size() && chunks_[next_].offset < offset) ++next_;
    return next_ < chunks_.size() && chunks_[next_].offset == offset ? &chunks_[next_] : nullptr;
  }
  bool is_last(const ParentChunk& c) const { return &c == &chunks_.back(); }

 private:
  std::vector<ParentChunk> chunks_;
  size_t next_ = 0;
};

// What the feeder hands out for each chunk, in stream order.
struct FedChunk {
  std::string_view data;  // the chunk's bytes; empty when `reused`
  size_t length = 0;
  ChunkSum sum;                          // the bytes' chunk sum
  const ParentChunk* reused = nullptr;  // the parent's chunk with these bytes
};

class ChunkFeeder {
 public:
  // `emit` gets each chunk in order; the view is valid only during the call.
  using Emit = std::function<Status(const FedChunk&)>;
  // `chunker`, `summer` and `parent` (may be null) must outlive the feeder.
  ChunkFeeder(const Chunker& chunker, const ChunkSummer& summer, Emit emit, ParentChunks* parent = nullptr)
      : chunker_(chunker),
        summer_(summer),
        emit_(std::move(emit)),
        parent_(parent && !parent->empty() ? parent : nullptr) {}

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
      const ParentChunk* reused = nullptr;
      const size_t len = next_length(rest, data, false, reused);
      if (len <= rest.size()) {
        STOWAGE_RETURN_IF_ERROR(emit(rest.substr(0, len), reused));
        pos_ += len;
        continue;
      }
      const size_t more = len - rest.size();
      if (reused) {  // its bytes are not needed: nothing to copy
        STOWAGE_RETURN_IF_ERROR(emit({}, reused));
      } else {
        buf_.append(data.substr(0, more));
        STOWAGE_RETURN_IF_ERROR(emit(std::string_view(buf_).substr(pos_), nullptr));
      }
      data.remove_prefix(more);
      pos_ = buf_.size();
    }
    if (pos_ == buf_.size()) {
      buf_.clear();
      pos_ = 0;
    }
    while (data.size() >= max) {
      const ParentChunk* reused = nullptr;
      const size_t len = next_length(data, {}, false, reused);
      STOWAGE_RETURN_IF_ERROR(emit(data.substr(0, len), reused));
      data.remove_prefix(len);
    }
    buf_.append(data.data(), data.size());
    return Status::ok();
  }

  // End of stream: cuts what is buffered.
  Status finish() {
    std::string_view rest = std::string_view(buf_).substr(pos_);
    while (!rest.empty()) {
      const ParentChunk* reused = nullptr;
      const size_t len = next_length(rest, {}, true, reused);
      STOWAGE_RETURN_IF_ERROR(emit(rest.substr(0, len), reused));
      rest.remove_prefix(len);
    }
    buf_.clear();
    pos_ = 0;
    return Status::ok();
  }

 private:
  // The length of the chunk that starts the bytes head + tail (at stream
  // offset offset_), which hold at least max_size bytes or, when `at_end`,
  // exactly the rest of the stream. Sets `reused` when it is the parent's
  // chunk at this offset.
  size_t next_length(std::string_view head, std::string_view tail, bool at_end, const ParentChunk*& reused) {
    if (parent_) {
      if (const ParentChunk* c = parent_->at(offset_)) {
        const size_t avail = head.size() + tail.size();
        // The parent's last chunk may end where its stream ended rather
        // than at a cut point (ParentChunks).
        const bool fits = parent_->is_last(*c) ? at_end && avail == c->length : avail >= c->length;
        if (fits && summer_(head, tail, c->length) == c->sum) {
          reused = c;
          return c->length;
        }
      }
    }
    return chunker_.cut(head, tail);
  }

  Status emit(std::string_view data, const ParentChunk* reused) {
    FedChunk c;
    if (reused) {
      c.length = reused->length;
      c.sum = reused->sum;
      c.reused = reused;
    } else {
      c.data = data;
      c.length = data.size();
      c.sum = summer_(data);
    }
    offset_ += c.length;
    return emit_(c);
  }

  const Chunker& chunker_;
  const ChunkSummer& summer_;
  Emit emit_;
  ParentChunks* parent_;
  // Bytes not yet cut start at buf_[pos_]; fewer than max_size between calls.
  std::string buf_;
  size_t pos_ = 0;
  uint64_t offset_ = 0;
};

}  // namespace stowage
