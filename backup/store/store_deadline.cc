#include "stowage/store_deadline.h"

#include <algorithm>

namespace stowage {
namespace {
thread_local std::optional<StoreDeadline::Clock::time_point> t_deadline;
}  // namespace

StoreDeadline::StoreDeadline(Clock::duration budget) : outer_(t_deadline) {
  const auto mine = Clock::now() + budget;
  t_deadline = outer_ ? std::min(*outer_, mine) : mine;
}

StoreDeadline::~StoreDeadline() { t_deadline = outer_; }

std::optional<StoreDeadline::Clock::time_point> StoreDeadline::current() { return t_deadline; }

std::optional<StoreDeadline::Clock::duration> StoreDeadline::left() {
  if (!t_deadline) return std::nullopt;
  return std::max(*t_deadline - Clock::now(), Clock::duration::zero());
}

}  // namespace stowage
