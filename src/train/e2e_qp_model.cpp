// The quantized model under E2E-QP: its loss and parameter gradient; see e2e_qp_model.h.
#include "train/e2e_qp_model.h"

#include <algorithm>
#include <functional>

#include "core/error.h"
#include "format/dequant.h"
#include "model/block_ops.h"
#include "model/gemm.h"
#include "model/linear.h"
#include "model/rope.h"
#include "tensor/quantized_matrix_codec.h"

namespace elutq {

namespace {

// Logits formed at once, in floats (128 MiB): 220 rows of a 152k vocabulary. Every chunk
// dequantizes the head twice, so fewer, larger chunks cost less time and more memory.
constexpr int64_t kLogitChunkFloats = int64_t(32) << 20;
// Head rows each thread dequantizes at once: at most 1024 (6 MiB at dim 1536), and a small
// vocabulary is still cut into a few tiles per thread.
int64_t head_tile_rows(int64_t vocab, int threads) {
  return std::clamp<int64_t>((vocab + 4 * threads - 1) / (4 * threads), 16, 1024);
}

// The stored projection (layer, s), after checking it is one E2E-QP can train; its format into
// *spec.
const TensorInfo& trainable_projection(const ModelSource& src, int layer, LinearSlot s,
                                       QuantSpec* spec) {
  const auto [rows, cols] = linear_shape(src.config(), s);
  const TensorInfo& t = src.get(linear_weight_name(layer, s), {rows, cols});
  require(t.dtype == DType::ELUTQ,
          "E2E-QP trains the quantization parameters of an elutq quantized model, but tensor '",
          t.name, "' of this ", src.format_name(), " model is stored as ", dtype_name(t.dtype),
          " (quantize the model first)");
  *spec = inspect_quantized_blob(t.data, t.nbytes).spec;
  require(trainable_format(*spec),
          "E2E-QP trains HLQ, HLQC or uniform parameters, but tensor '", t.name, "' is ",
          spec->name(), " (quantize with an HLQ or uniform method)");
  return t;
}

// The stored projection decoded (trainable_projection's checks first).
QuantizedMatrix load_projection(const ModelSource& src, int layer, LinearSlot s) {
  QuantSpec spec;
  const TensorInfo& t = trainable_projection(src, layer, s, &spec);
  QuantizedMatrix q = decode_quantized_blob(t.data, t.nbytes);
  src.release_pages(t);  // decoded: the mapped blob need not stay resident beside its codes
  return q;
}

}  // namespace

E2eQpModel::E2eQpModel(const ModelSource& src, ThreadPool& pool)
    : src_(src), pool_(pool), cfg_(src.config()) {
  validate_config(cfg_);
  const ModelConfig& c = cfg_;
  const int64_t dim = c.dim, vocab = c.vocab_size;
  blocks_.resize(size_t(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    Block& b = blocks_[size_t(l)];
    for (LinearSlot s : kAllLinearSlots) {
      QuantizedMatrix q = load_projection(src, l, s);
      Projection& p = b.proj[int(s)];
      p.spec = q.spec;
      p.rows = q.rows;
      p.cols = q.cols;
      p.codes = PackedCodes(q.codes.data(), int64_t(q.codes.size()), q.spec.bits);
      p.params = trainable_params(q);
      p.grad.assign(p.params.size(), 0.0f);
      p.ratio_codes = std::move(q.ratio_codes);
      p.ratio_codebook = std::move(q.ratio_codebook);
    }
    b.vectors = load_block_vectors(src, l);
  }
  src.get(kTokenEmbdName, {vocab, dim});  // checked here; rows are read as tokens need them
  output_norm_ = load_vector(src, kOutputNormName, dim);
  // As the runtime: a tied model's head is the embedding.
  head_ = &src.get(c.tied_embeddings ? kTokenEmbdName : kOutputName, {vocab, dim});
  inv_freq_ = load_rope_inv_freq(src);
  block_grads_.resize(c);
  blas_single_threaded();  // the head's backward calls BLAS from every pool thread
}

E2eQpModel::~E2eQpModel() = default;

uint64_t E2eQpModel::estimate_bytes(const ModelSource& src,
                                    const std::function<QuantSpec(int, LinearSlot)>& spec_of,
                                    int64_t tokens, int threads) {
  const ModelConfig& c = src.config();
  const uint64_t dim = uint64_t(c.dim), hd = uint64_t(c.head_dim), hidden = uint64_t(c.hidden_dim),
                 q_dim = uint64_t(c.n_heads) * hd, kv_dim = uint64_t(c.n_kv_heads) * hd,
                 vocab = uint64_t(c.vocab_size), T = uint64_t(std::max<int64_t>(tokens, 1));
  // Per projection: its packed codes; per parameter: itself, its gradient, AdamW's two moments
  // (floats) and the best copy (fp16).
  uint64_t trained = 0;
  for (int l = 0; l < c.n_layers; ++l)
    for (LinearSlot s : kAllLinearSlots) {
      const QuantSpec spec = spec_of(l, s);
      const auto [rows, cols] = linear_shape(c, s);
      trained += uint64_t(rows * cols) * uint64_t(PackedCodes::width_for(spec.bits)) / 8 +
                 uint64_t(rows) * uint64_t(spec.groups_per_row(cols)) *
                     (uint64_t(trainable_params_per_group(spec)) * 18 +
                      (spec.kind == QuantKind::HLQC ? uint64_t(spec.bits - 1) : 0));
    }
  // The live block: effective weights, unpacked codes and weight gradients (9 bytes a weight),
  // its tape, the residual stream and the checkpoints of every block input.
  const uint64_t block =
      uint64_t(block_weight_count(c)) * 9 +
      T * (6 * dim + 3 * q_dim + 4 * kv_dim + 3 * hidden + uint64_t(c.n_heads)) * 4 +
      T * dim * 4 * (2 + uint64_t(c.n_layers));
  // The head: a chunk of logits, each thread's tile and partial gradient, and the mapped rows of
  // the head and the embedding, resident once touched.
  const uint64_t chunk = std::clamp<uint64_t>(uint64_t(kLogitChunkFloats) / vocab, 1, T);
  const uint64_t tile = uint64_t(head_tile_rows(int64_t(vocab), threads));
  const std::vector<int64_t> shape = {c.vocab_size, c.dim};
  const uint64_t mapped = src.get(kTokenEmbdName, shape).nbytes +
                          (c.tied_embeddings ? 0 : src.get(kOutputName, shape).nbytes);
  const uint64_t head = chunk * vocab * 4 + uint64_t(threads) * (tile + chunk) * dim * 4 + mapped;
  constexpr uint64_t kProgram = uint64_t(96) << 20;  // code, tokenizer, allocator slack
  return trained + block + head + kProgram;
}

uint64_t E2eQpModel::estimate_bytes(const ModelSource& src, int64_t tokens, int threads) {
  return estimate_bytes(
      src,
      [&](int l, LinearSlot s) {
        QuantSpec spec;
        trainable_projection(src, l, s, &spec);
        return spec;
      },
      tokens, threads);
}

void E2eQpModel::zero_grads() {
  for (Block& b : blocks_)
    for (Projection& p : b.proj) std::fill(p.grad.begin(), p.grad.end(), 0.0f);
}

int64_t E2eQpModel::param_count() const {
  int64_t n = 0;
  for (const Block& b : blocks_)
    for (const Projection& p : b.proj) n += int64_t(p.params.size());
  return n;
}

QuantizedMatrix E2eQpModel::projection(int layer, LinearSlot s) const {
  const Projection& p = blocks_[size_t(layer)].proj[int(s)];
  QuantizedMatrix q;
  q.spec = p.spec;
  q.rows = p.rows;
  q.cols = p.cols;
  q.codes.resize(size_t(p.rows * p.cols));
  pool_.run(p.rows, [&](int, int64_t r0, int64_t r1) {
    p.codes.unpack(r0 * p.cols, r1 * p.cols, q.codes.data() + r0 * p.cols);
  });
  q.ratio_codes = p.ratio_codes;
  q.ratio_codebook = p.ratio_codebook;
  expand_trainable_params(p.params, q);
  return q;
}

double E2eQpModel::loss(std::span<const std::vector<int>* const> seqs) { return run(seqs, false); }

double E2eQpModel::loss_and_grad(std::span<const std::vector<int>* const> seqs) {
  return run(seqs, true);
}

BlockWeights<float> E2eQpModel::load_block(int layer) {
  const Block& b = blocks_[size_t(layer)];
  BlockWeights<float> w;
  for (LinearSlot s : kAllLinearSlots) {
    if (live_layer_ != layer) {
      // The previous block's effective weights go before this block's come.
      live_[int(s)].reset();
      live_[int(s)].emplace(projection(layer, s), /*with_latent=*/false, &pool_);  // codes frozen
    }
    w.w[int(s)] = live_[int(s)]->effective();
  }
  live_layer_ = layer;
  point_at(b.vectors, &w);
  return w;
}

double E2eQpModel::run(std::span<const std::vector<int>* const> seqs, bool with_grad) {
  require(!seqs.empty(), "E2E-QP: no sequences in the batch");
  live_layer_ = -1;  // parameters may have changed since the last call
  const int64_t len = int64_t(seqs[0]->size()) - 1;  // positions predicted per sequence
  require(len >= 1, "E2E-QP: sequences need at least 2 tokens, not ", len + 1);
  const int n_seq = int(seqs.size());
  const int64_t n = n_seq * len, dim = cfg_.dim;
  std::vector<int> targets(static_cast<size_t>(n));  // (n) next tokens
  x_.resize(size_t(n * dim));
  y_.resize(size_t(n * dim));
  for (int i = 0; i < n_seq; ++i) {
    const std::vector<int>& s = *seqs[size_t(i)];
    require(int64_t(s.size()) == len + 1, "E2E-QP: sequences of one batch must have one length (",
            len + 1, " and ", s.size(), ")");
    for (int64_t t = 0; t <= len; ++t)
      require(s[size_t(t)] >= 0 && s[size_t(t)] < cfg_.vocab_size, "token id ", s[size_t(t)],
              " is outside the vocabulary [0, ", cfg_.vocab_size, ")");
    const TensorInfo& emb = *src_.find(kTokenEmbdName);
    for (int64_t t = 0; t < len; ++t) {
      tensor_rows_to_f32(emb, s[size_t(t)], s[size_t(t)] + 1, x_.data() + (i * len + t) * dim);
      targets[size_t(i * len + t)] = s[size_t(t + 1)];
    }
  }

  const int L = cfg_.n_layers;
  if (with_grad) checkpoints_.resize(size_t(L * n * dim));
  for (int l = 0; l < L; ++l) {
    if (with_grad) std::copy(x_.begin(), x_.end(), checkpoints_.begin() + l * n * dim);
    const BlockWeights<float> w = load_block(l);
    block_forward(cfg_, inv_freq_.data(), w, x_.data(), n_seq, int(len), y_.data(),
                  static_cast<BlockTape<float>*>(nullptr), pool_);
    x_.swap(y_);
  }
  // x_ = the last block's output; y_ becomes dL/d(it), then dL/d(each block's input) in turn.
  const double loss = head_loss(x_.data(), targets.data(), n, with_grad ? y_.data() : nullptr);
  if (with_grad) {
    for (int l = L - 1; l >= 0; --l) {
      const BlockWeights<float> w = load_block(l);
      block_forward(cfg_, inv_freq_.data(), w, checkpoints_.data() + l * n * dim, n_seq, int(len),
                    x_.data(), &tape_, pool_);
      block_grads_.zero();
      block_backward(cfg_, inv_freq_.data(), w, tape_, y_.data(), l > 0 ? y_.data() : nullptr,
                     block_grads_, pool_);
      for (LinearSlot s : kAllLinearSlots) {
        QuantizedLinearParam& p = *live_[int(s)];
        p.zero_grads();
        p.accumulate_grads(block_grads_.w[int(s)].data(), /*with_latent=*/false, pool_);
        const std::vector<float>& g = p.grad_params();
        std::vector<float>& acc = grad(l, s);
        for (size_t k = 0; k < acc.size(); ++k) acc[k] += g[k];
      }
    }
  }
  for (auto& p : live_) p.reset();
  live_layer_ = -1;
  return loss;
}

double E2eQpModel::head_loss(const float* h, const int* targets, int64_t n, float* dh) {
  const int dim = cfg_.dim;
  const int64_t vocab = cfg_.vocab_size;
  const int64_t chunk = std::clamp<int64_t>(kLogitChunkFloats / vocab, 1, n);
  const size_t threads = size_t(pool_.size());
  const int64_t tile_rows = head_tile_rows(vocab, pool_.size());
  const int64_t n_tiles = (vocab + tile_rows - 1) / tile_rows;
  hn_.resize(size_t(chunk * dim));
  logits_.resize(size_t(chunk * vocab));
  head_tiles_.resize(threads * size_t(tile_rows * dim));
  if (dh) dhn_parts_.resize(threads * size_t(chunk * dim));
  std::vector<float> inv_rms(static_cast<size_t>(chunk));  // (chunk) of the final norm
  std::vector<double> slot_loss(threads);                   // per thread, summed in a fixed order
  // fn(slot, v0, v1, tile) for every head tile [v0, v1) of the slot's share, tile = its rows in fp32.
  auto over_head_tiles = [&](const std::function<void(int, int64_t, int64_t, float*)>& fn) {
    pool_.run(n_tiles, [&](int slot, int64_t t0, int64_t t1) {
      float* tile = head_tiles_.data() + size_t(slot) * size_t(tile_rows * dim);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t v0 = t * tile_rows, v1 = std::min(vocab, v0 + tile_rows);
        tensor_rows_to_f32(*head_, v0, v1, tile);
        fn(slot, v0, v1, tile);
      }
    });
  };
  double total = 0;
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t m = std::min(chunk, n - r0);
    for (int64_t i = 0; i < m; ++i)
      inv_rms[size_t(i)] = rmsnorm_forward(h + (r0 + i) * dim, output_norm_.data(), dim,
                                           cfg_.norm_eps, hn_.data() + i * dim);
    // logits (m, vocab) = hn (m, dim) W^T, a tile of vocabulary columns at a time.
    over_head_tiles([&](int, int64_t v0, int64_t v1, float* tile) {
      gemm<float>(false, true, int(m), int(v1 - v0), dim, 1.0f, hn_.data(), dim, tile, dim, 0.0f,
                  logits_.data() + v0, int(vocab));
    });
    // With dh, the logits become dL/dlogits of the mean over all n rows, in place.
    std::fill(slot_loss.begin(), slot_loss.end(), 0.0);
    pool_.run(m, [&](int slot, int64_t i0, int64_t i1) {
      if (i0 == i1) return;
      float* rows = logits_.data() + i0 * vocab;
      slot_loss[size_t(slot)] = cross_entropy(rows, i1 - i0, vocab, targets + r0 + i0,
                                              dh ? rows : nullptr, 1.0 / double(n));
    });
    for (double l : slot_loss) total += l;
    if (!dh) continue;
    // d hn (m, dim) = d logits (m, vocab) W (vocab, dim): each thread sums over its tiles, then
    // the threads' sums are added in slot order (the same result on every run).
    std::fill(dhn_parts_.begin(), dhn_parts_.end(), 0.0f);
    over_head_tiles([&](int slot, int64_t v0, int64_t v1, float* tile) {
      gemm<float>(false, false, int(m), dim, int(v1 - v0), 1.0f, logits_.data() + v0, int(vocab),
                  tile, dim, 1.0f, dhn_parts_.data() + size_t(slot) * size_t(chunk * dim), dim);
    });
    pool_.parallel_for(m, [&](int64_t i) {
      float* d = hn_.data() + i * dim;
      std::fill(d, d + dim, 0.0f);
      for (size_t t = 0; t < threads; ++t) {
        const float* part = dhn_parts_.data() + t * size_t(chunk * dim) + i * dim;
        for (int k = 0; k < dim; ++k) d[k] += part[k];
      }
      rmsnorm_backward(h + (r0 + i) * dim, output_norm_.data(), dim, inv_rms[size_t(i)], d,
                       dh + (r0 + i) * dim, static_cast<float*>(nullptr));
    });
  }
  return total / double(n);
}

}  // namespace elutq
