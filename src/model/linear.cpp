// forward_same_input (linear.h): the one place that decides whether layers on one input run as
// one job.
#include "model/linear.h"

#include "core/error.h"

namespace elutq {

void forward_same_input(std::span<const Linear* const> layers, const float* x, int64_t n,
                        std::span<float* const> ys, ThreadPool& pool) {
  require(!layers.empty() && layers.size() == ys.size(), "forward_same_input: ", layers.size(),
          " layers and ", ys.size(), " outputs");
  if (layers.size() > 1 && layers[0]->forward_together(layers, x, n, ys, pool)) return;
  for (size_t i = 0; i < layers.size(); ++i) layers[i]->forward(x, n, ys[i], pool);
}

}  // namespace elutq
