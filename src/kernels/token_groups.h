// Kernels that take a fixed number of tokens at once (their per-token sums live in registers, so
// the count is a template parameter) walk a run of tokens in groups: this turns each group's size
// into that template argument, in one place instead of a switch in every kernel file.
#pragma once

#include <algorithm>
#include <type_traits>

namespace elutq::kern {

// f(std::integral_constant<int, n>{}) for a run-time n in 1..kMax.
template <int kMax, class F>
inline void with_group_size(int n, F&& f) {
  if constexpr (kMax > 1) {
    if (n < kMax) return with_group_size<kMax - 1>(n, f);
  }
  f(std::integral_constant<int, kMax>{});
}

// f(T, t0) for the groups t0 = begin, begin + T, ... of at most kMax tokens each (every one full
// but perhaps the last), T = std::integral_constant<int, group size>.
template <int kMax, class F>
inline void for_token_groups(int begin, int end, F&& f) {
  for (int t0 = begin; t0 < end;) {
    const int n = std::min(kMax, end - t0);
    with_group_size<kMax>(n, [&](auto T) { f(T, t0); });
    t0 += n;
  }
}

}  // namespace elutq::kern
