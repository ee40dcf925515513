// Block-output gradients of the fp model; see loss_gradients.h.
#include "quant/loss_gradients.h"

#include <algorithm>

#include "core/error.h"
#include "format/dequant.h"
#include "model/block_gradient.h"
#include "model/block_ops.h"
#include "model/block_vectors.h"
#include "model/gemm.h"
#include "model/linear.h"
#include "tensor/tensor_names.h"

namespace elutq {
namespace {

// One block's fp32 weights and the views block_forward takes.
struct FpBlock {
  std::vector<float> w[kLinearSlots];
  BlockVectors vectors;
  BlockWeights<float> view;

  FpBlock(const ModelSource& src, int l) : vectors(load_block_vectors(src, l)) {
    for (LinearSlot s : kAllLinearSlots) {
      const auto [R, C] = linear_shape(src.config(), s);
      const TensorInfo& t = src.get(linear_weight_name(l, s), {R, C});
      w[int(s)].resize(size_t(R * C));
      load_tensor_f32(t, w[int(s)].data());
      view.w[int(s)] = w[int(s)].data();
    }
    point_at(vectors, &view);
  }
};

}  // namespace

std::vector<std::vector<float>> block_output_gradients(const ModelSource& src,
                                                       const std::vector<std::vector<int>>& seqs,
                                                       ThreadPool& pool) {
  const ModelConfig& c = src.config();
  require(!seqs.empty() && seqs[0].size() >= 2, "loss gradients need sequences of 2+ tokens");
  const int n_seq = int(seqs.size()), T = int(seqs[0].size());
  for (const auto& s : seqs) require(int(s.size()) == T, "loss gradients: sequences of one length");
  const int64_t d = c.dim, V = c.vocab_size, rows = int64_t(n_seq) * T;
  const std::vector<float> inv_freq = load_rope_inv_freq(src);
  blas_single_threaded();

  // Forward, keeping every block's input.
  std::vector<std::vector<float>> x(size_t(c.n_layers) + 1, std::vector<float>(size_t(rows * d)));
  const TensorInfo& emb = src.get(kTokenEmbdName, {V, d});
  for (int64_t r = 0; r < rows; ++r) {
    const int id = seqs[size_t(r / T)][size_t(r % T)];
    require(id >= 0 && id < V, "token id ", id, " is outside the vocabulary");
    tensor_rows_to_f32(emb, id, id + 1, x[0].data() + r * d);
  }
  for (int l = 0; l < c.n_layers; ++l) {
    const FpBlock b(src, l);
    block_forward<float>(c, inv_freq.data(), b.view, x[size_t(l)].data(), n_seq, T,
                         x[size_t(l) + 1].data(), nullptr, pool);
  }

  // The head: final RMSNorm, logits, mean cross-entropy; its gradient at the last block's output.
  const std::vector<float> out_norm = load_vector(src, kOutputNormName, d);
  const TensorInfo& head_t = src.get(c.tied_embeddings ? kTokenEmbdName : kOutputName, {V, d});
  std::vector<float> head(size_t(V * d));
  load_tensor_f32(head_t, head.data());
  std::vector<std::vector<float>> g(size_t(c.n_layers), std::vector<float>(size_t(rows * d), 0.f));
  const int64_t scored = int64_t(n_seq) * (T - 1);
  const float* xl = x[size_t(c.n_layers)].data();
  float* gl = g[size_t(c.n_layers) - 1].data();
  constexpr int64_t kChunk = 16;  // rows of logits at a time per thread
  pool.parallel_chunks(rows, kChunk, [&](int64_t r0, int64_t r1) {
    const int64_t n = r1 - r0;
    std::vector<float> hn(size_t(n * d)), logits(size_t(n * V)), dhn(size_t(n * d));
    std::vector<float> inv(static_cast<size_t>(n));
    std::vector<int> target(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      inv[size_t(i)] = rmsnorm_forward<float>(xl + (r0 + i) * d, out_norm.data(), int(d), c.norm_eps,
                                              hn.data() + i * d);
      const int64_t r = r0 + i;
      target[size_t(i)] = r % T == T - 1 ? -1 : seqs[size_t(r / T)][size_t(r % T + 1)];
    }
    gemm<float>(false, true, int(n), int(V), int(d), 1.f, hn.data(), int(d), head.data(), int(d),
                0.f, logits.data(), int(V));
    for (int64_t i = 0; i < n; ++i) {
      float* li = logits.data() + i * V;
      if (target[size_t(i)] < 0) {
        std::fill(li, li + V, 0.f);  // the last token of a sequence predicts nothing
        continue;
      }
      cross_entropy<float>(li, 1, V, &target[size_t(i)], li, 1.0 / double(scored));
    }
    gemm<float>(false, false, int(n), int(d), int(V), 1.f, logits.data(), int(V), head.data(),
                int(d), 0.f, dhn.data(), int(d));
    for (int64_t i = 0; i < n; ++i)
      rmsnorm_backward<float>(xl + (r0 + i) * d, out_norm.data(), int(d), inv[size_t(i)],
                              dhn.data() + i * d, gl + (r0 + i) * d, nullptr);
  });

  // Backward through the blocks: dL/d(output of l - 1) = dL/d(input of l).
  BlockTape<float> tape;
  BlockGradients<float> grads;
  grads.resize(c);
  std::vector<float> y(size_t(rows * d));
  for (int l = c.n_layers - 1; l >= 1; --l) {
    const FpBlock b(src, l);
    block_forward<float>(c, inv_freq.data(), b.view, x[size_t(l)].data(), n_seq, T, y.data(),
                         &tape, pool);
    block_backward<float>(c, inv_freq.data(), b.view, tape, g[size_t(l)].data(),
                          g[size_t(l) - 1].data(), grads, pool);
  }
  return g;
}

}  // namespace elutq
