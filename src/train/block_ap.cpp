// Block-AP; see block_ap.h.
#include "train/block_ap.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <numeric>
#include <random>

#include "core/error.h"
#include "model/block_gradient.h"
#include "model/decoder_block.h"
#include "train/quantized_linear_param.h"

namespace elutq {

namespace {

const float* data_or_null(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }

// The sequences held out to choose the best epoch.
int64_t holdout_count(const BlockApOptions& opt, int64_t count) {
  if (opt.holdout_seqs >= 0) return std::min<int64_t>(opt.holdout_seqs, count - 1);
  return count >= 2 ? std::max<int64_t>(1, count / 10) : 0;
}

// Everything one training run of a block holds: the trainable projections, the weights view the
// training forward reads, batch buffers and the tape.
struct BlockTrainer {
  const DecoderBlock& block;
  const ModelConfig& cfg;
  int64_t tokens;
  ThreadPool& pool;
  std::vector<std::unique_ptr<QuantizedLinearParam>> lin;  // per LinearSlot
  BlockWeights<float> w;
  BlockTape<float> tape;
  BlockGradients<float> grads;
  std::vector<float> x, target, y;  // (batch * tokens, dim)

  BlockTrainer(const DecoderBlock& b, std::array<QuantizedMatrix, kLinearSlots>& q, int64_t t,
               ThreadPool& p)
      : block(b), cfg(b.config()), tokens(t), pool(p) {
    for (int s = 0; s < kLinearSlots; ++s) {
      const auto [R, C] = linear_shape(cfg, LinearSlot(s));
      require(q[size_t(s)].rows == R && q[size_t(s)].cols == C, "Block-AP: ",
              linear_slot_name(LinearSlot(s)), " is ", q[size_t(s)].rows, " x ",
              q[size_t(s)].cols, ", the model needs ", R, " x ", C);
      lin.push_back(std::make_unique<QuantizedLinearParam>(q[size_t(s)], true, &pool));
      w.w[s] = lin.back()->effective();
    }
    w.attn_norm = b.attn_norm.data();
    w.ffn_norm = b.ffn_norm.data();
    w.bq = data_or_null(b.bq);
    w.bk = data_or_null(b.bk);
    w.bv = data_or_null(b.bv);
    w.q_norm = data_or_null(b.q_norm);
    w.k_norm = data_or_null(b.k_norm);
    grads.resize(cfg);
  }

  // Reads the sequences ids into x and target.
  void read(const std::vector<int64_t>& ids, const SequenceReader& inputs,
            const SequenceReader& targets) {
    const size_t per = size_t(tokens * cfg.dim);
    x.resize(per * ids.size());
    target.resize(per * ids.size());
    y.resize(per * ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      inputs(ids[i], x.data() + i * per);
      targets(ids[i], target.data() + i * per);
    }
  }

  // Mean squared error of the block output against the target over the batch in x / target; with
  // train, also the gradients of it (into grads, then into the projections' parameters).
  double loss(int n_seq, bool train, bool with_latent) {
    block_forward<float>(cfg, block.inv_freq().data(), w, x.data(), n_seq, int(tokens), y.data(),
                         train ? &tape : nullptr, pool);
    const int64_t n = int64_t(n_seq) * tokens * cfg.dim;
    double se = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double d = double(y[size_t(i)]) - target[size_t(i)];
      se += d * d;
      if (train) y[size_t(i)] = float(2.0 * d / double(n));  // dL/dy, in place
    }
    if (train) {
      grads.zero();
      block_backward<float>(cfg, block.inv_freq().data(), w, tape, y.data(), nullptr, grads, pool);
      for (int s = 0; s < kLinearSlots; ++s) lin[size_t(s)]->accumulate_grads(grads.w[s].data(), with_latent, pool);
    }
    return se / double(n);
  }

  // Mean loss over the sequences ids, batch by batch, no training.
  double evaluate(const std::vector<int64_t>& ids, int batch, const SequenceReader& inputs,
                  const SequenceReader& targets) {
    double sum = 0;
    for (size_t b = 0; b < ids.size(); b += size_t(batch)) {
      std::vector<int64_t> part(ids.begin() + b, ids.begin() + std::min(ids.size(), b + batch));
      read(part, inputs, targets);
      sum += loss(int(part.size()), false, false) * double(part.size());
    }
    return ids.empty() ? 0.0 : sum / double(ids.size());
  }

  void refresh(bool reassign) {
    for (auto& l : lin) l->update_effective(reassign, pool);
  }
};

// A copy of what training changes, to go back to the best epoch.
struct Snapshot {
  std::vector<std::vector<float>> latent, params;
  void take(BlockTrainer& t) {
    latent.clear();
    params.clear();
    for (auto& l : t.lin) {
      latent.push_back(l->latent());
      params.push_back(l->params());
    }
  }
  void restore(BlockTrainer& t) const {
    for (size_t s = 0; s < t.lin.size(); ++s) {
      t.lin[s]->latent() = latent[s];
      t.lin[s]->params() = params[s];
    }
  }
};

}  // namespace

BlockApResult block_ap(const DecoderBlock& block, std::array<QuantizedMatrix, kLinearSlots>& q,
                       const SequenceReader& inputs, const SequenceReader& targets, int64_t count,
                       int64_t tokens, const BlockApOptions& opt, ThreadPool& pool,
                       const BlockApProgress& progress) {
  require(count >= 1 && tokens >= 1, "Block-AP needs calibration sequences");
  require(opt.epochs >= 0, "Block-AP epochs must be >= 0, got ", opt.epochs);
  require(opt.batch_seqs >= 1, "Block-AP batch must be >= 1 sequence, got ", opt.batch_seqs);
  require(opt.lr_weights >= 0 && opt.lr_params >= 0, "Block-AP learning rates must be >= 0");
  const auto t0 = std::chrono::steady_clock::now();
  BlockTrainer tr(block, q, tokens, pool);
  const bool with_latent = opt.lr_weights > 0;

  const int64_t n_hold = holdout_count(opt, count);
  std::vector<int64_t> train_ids(static_cast<size_t>(count - n_hold));
  std::vector<int64_t> hold_ids(static_cast<size_t>(n_hold));
  std::iota(train_ids.begin(), train_ids.end(), 0);
  std::iota(hold_ids.begin(), hold_ids.end(), count - n_hold);
  const std::vector<int64_t>& judge = n_hold > 0 ? hold_ids : train_ids;

  std::vector<AdamWGroup> groups;
  for (auto& l : tr.lin) {
    if (with_latent) {
      l->grad_latent().assign(l->latent().size(), 0.0f);
      groups.push_back({l->latent().data(), l->grad_latent().data(), l->latent().size(),
                        opt.lr_weights, opt.weight_decay});
    }
    groups.push_back({l->params().data(), l->grad_params().data(), l->params().size(),
                      opt.lr_params, 0.0f});
  }
  AdamW adam(groups);

  BlockApResult res;
  res.start_loss = tr.evaluate(judge, opt.batch_seqs, inputs, targets);
  res.best_loss = res.start_loss;
  Snapshot best;
  bool improved = false;
  const int steps_per_epoch = int((train_ids.size() + size_t(opt.batch_seqs) - 1) / size_t(opt.batch_seqs));
  const int total_steps = steps_per_epoch * opt.epochs;
  std::mt19937_64 rng(opt.seed);
  int step = 0;
  for (int e = 1; e <= opt.epochs; ++e) {
    std::shuffle(train_ids.begin(), train_ids.end(), rng);
    double sum = 0;
    for (int k = 0; k < steps_per_epoch; ++k, ++step) {
      const size_t b = size_t(k) * size_t(opt.batch_seqs);
      std::vector<int64_t> part(train_ids.begin() + b,
                                train_ids.begin() + std::min(train_ids.size(), b + opt.batch_seqs));
      tr.read(part, inputs, targets);
      for (auto& l : tr.lin) l->zero_grads();
      sum += tr.loss(int(part.size()), true, with_latent);
      adam.step(lr_scale_at(opt.schedule, step, total_steps));
      tr.refresh(true);
      if (progress) progress(e, k + 1, steps_per_epoch, sum / (k + 1));
    }
    const double held = tr.evaluate(judge, opt.batch_seqs, inputs, targets);
    res.epochs.push_back({sum / std::max(1, steps_per_epoch), held});
    if (held < res.best_loss) {
      res.best_loss = held;
      res.best_epoch = e;
      best.take(tr);
      improved = true;
    }
  }
  if (improved) {
    best.restore(tr);
    std::array<QuantizedMatrix, kLinearSlots> out;
    for (int s = 0; s < kLinearSlots; ++s) out[size_t(s)] = tr.lin[size_t(s)]->finish(true, pool);
    // The stored form (fp16 parameters, codes reassigned under them) must still beat the start.
    for (int s = 0; s < kLinearSlots; ++s) {
      tr.lin[size_t(s)] = std::make_unique<QuantizedLinearParam>(out[size_t(s)], true, &pool);
      tr.w.w[s] = tr.lin[size_t(s)]->effective();
    }
    const double stored = tr.evaluate(judge, opt.batch_seqs, inputs, targets);
    if (stored < res.start_loss) {
      res.best_loss = stored;
      q = std::move(out);
    } else {
      res.best_loss = res.start_loss;
      res.best_epoch = 0;
    }
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace elutq
