// E2E-QP's training loop and output; the model and its gradient are in e2e_qp_model.h.
#include "train/e2e_qp.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <span>

#include "core/error.h"
#include "core/fp16.h"
#include "core/memory_usage.h"
#include "tensor/tensor_names.h"
#include "train/e2e_qp_model.h"
#include "train/quantized_linear_param.h"

namespace elutq {

namespace {

using SeqPtrs = std::vector<const std::vector<int>*>;

// Mean loss over seqs, batch_seqs at a time (every sequence weighs the same: they share a length).
double mean_loss(E2eQpModel& m, const SeqPtrs& seqs, int batch_seqs) {
  double sum = 0;
  for (size_t i = 0; i < seqs.size(); i += size_t(batch_seqs)) {
    const size_t k = std::min(seqs.size() - i, size_t(batch_seqs));
    sum += m.loss(std::span(seqs).subspan(i, k)) * double(k);
  }
  return sum / double(seqs.size());
}

// Every projection's parameters, (layer, slot) in order, as fp16: what the output stores anyway
// (finish rounds to fp16), at half the memory of a float copy.
std::vector<std::vector<uint16_t>> snapshot(E2eQpModel& m) {
  std::vector<std::vector<uint16_t>> out;
  for (int l = 0; l < m.config().n_layers; ++l)
    for (LinearSlot s : kAllLinearSlots) {
      const std::vector<float>& p = m.params(l, s);
      std::vector<uint16_t>& h = out.emplace_back(p.size());
      for (size_t i = 0; i < p.size(); ++i) h[i] = f32_to_fp16(p[i]);
    }
  return out;
}

void restore(E2eQpModel& m, const std::vector<std::vector<uint16_t>>& saved) {
  size_t k = 0;
  for (int l = 0; l < m.config().n_layers; ++l)
    for (LinearSlot s : kAllLinearSlots) {
      std::vector<float>& p = m.params(l, s);
      const std::vector<uint16_t>& h = saved[k++];
      for (size_t i = 0; i < p.size(); ++i) p[i] = fp16_to_f32(h[i]);
    }
}

}  // namespace

E2eQpResult e2e_qp(const ModelSource& quantized, const std::vector<std::vector<int>>& seqs,
                   const E2eQpOptions& opt, QuantizedTensorSink& sink,
                   const E2eQpProgress& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  require(opt.epochs >= 0, "E2E-QP: epochs must be >= 0, not ", opt.epochs);
  require(opt.batch_seqs >= 1, "E2E-QP: batch_seqs must be >= 1, not ", opt.batch_seqs);
  require(opt.lr >= 0 && opt.weight_decay >= 0, "E2E-QP: lr and weight decay must be >= 0");
  require(opt.warmup >= 0 && opt.warmup <= 1, "E2E-QP: warmup is a fraction of the steps, 0..1, not ",
          opt.warmup);
  const int n = int(seqs.size());
  require(n >= 1, "E2E-QP: no calibration sequences");
  for (const std::vector<int>& s : seqs)
    require(s.size() == seqs[0].size() && s.size() >= 2,
            "E2E-QP: the sequences must all have one length of at least 2 tokens (", seqs[0].size(),
            " and ", s.size(), ")");
  const int holdout = opt.holdout_seqs >= 0 ? opt.holdout_seqs : (n >= 2 ? std::max(1, n / 10) : 0);
  require(holdout < n, "E2E-QP: holding out ", holdout, " of ", n,
          " sequences leaves none to train on");

  ThreadPool pool(opt.n_threads);
  E2eQpResult r;
  r.estimated_bytes = E2eQpModel::estimate_bytes(
      quantized, int64_t(seqs[0].size() - 1) * opt.batch_seqs, pool.size());
  require(opt.mem_budget == 0 || r.estimated_bytes <= opt.mem_budget, "E2E-QP needs about ",
          format_byte_size(r.estimated_bytes), " for batches of ", opt.batch_seqs, " x ",
          seqs[0].size(), " tokens, over the memory budget of ", format_byte_size(opt.mem_budget),
          ": give fewer sequences per step or shorter ones, or a larger budget");
  E2eQpModel model(quantized, pool);
  SeqPtrs train, held;
  for (int i = 0; i < n; ++i) (i < n - holdout ? train : held).push_back(&seqs[size_t(i)]);
  // Without a holdout the best epoch is chosen on the training sequences.
  const SeqPtrs& judge = held.empty() ? train : held;

  std::vector<AdamWGroup> groups;
  for (int l = 0; l < model.config().n_layers; ++l)
    for (LinearSlot s : kAllLinearSlots) {
      std::vector<float>& p = model.params(l, s);
      double ss = 0;
      for (float v : p) ss += double(v) * double(v);
      const double rms = p.empty() ? 0.0 : std::sqrt(ss / double(p.size()));
      const float lr = rms > 0 ? float(opt.lr * rms) : opt.lr;  // all zero: lr as given
      groups.push_back({p.data(), model.grad(l, s).data(), p.size(), lr, opt.weight_decay});
    }
  AdamW adam(std::move(groups));

  r.trained_params = model.param_count();
  r.start_loss = r.best_loss = mean_loss(model, judge, opt.batch_seqs);
  std::vector<std::vector<uint16_t>> best = snapshot(model);
  const int steps = int((train.size() + size_t(opt.batch_seqs) - 1) / size_t(opt.batch_seqs));
  const int total_steps = opt.epochs * steps;
  const int warmup_steps = int(std::lround(double(opt.warmup) * total_steps));
  std::mt19937_64 rng(opt.seed);
  for (int epoch = 1; epoch <= opt.epochs; ++epoch) {
    std::shuffle(train.begin(), train.end(), rng);
    double sum = 0;
    for (int step = 0; step < steps; ++step) {
      const size_t i = size_t(step) * size_t(opt.batch_seqs);
      const size_t k = std::min(train.size() - i, size_t(opt.batch_seqs));
      model.zero_grads();
      sum += model.loss_and_grad(std::span(train).subspan(i, k));
      adam.step(lr_scale_at(opt.schedule, (epoch - 1) * steps + step, total_steps, warmup_steps));
      if (progress) progress(epoch, step + 1, steps, sum / (step + 1));
    }
    r.train_loss.push_back(sum / steps);
    const double h = mean_loss(model, judge, opt.batch_seqs);
    r.holdout_loss.push_back(h);
    if (h < r.best_loss) {
      r.best_loss = h;
      r.best_epoch = epoch;
      best = snapshot(model);
    }
  }
  restore(model, best);

  for (const std::string& name : model_file_order(quantized.tensor_names())) {
    const int l = block_index(name);
    const std::optional<LinearSlot> s = linear_slot_of(name);
    if (l >= 0 && s && l < model.config().n_layers) {
      const QuantizedLinearParam trained(model.projection(l, *s), /*with_latent=*/false);
      sink.add_quantized(name, trained.finish(/*reassign_codes=*/false, pool));
    } else {
      sink.add_unchanged(*quantized.find(name));
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::string e2e_qp_summary(const E2eQpResult& r, int epochs) {
  char line[200];
  std::snprintf(line, sizeof line,
                "e2e-qp: held-out cross-entropy %.4f -> %.4f (%s epoch %d of %d), %lld parameters",
                r.start_loss, r.best_loss, r.best_epoch > 0 ? "kept" : "start kept, no better",
                r.best_epoch, epochs, static_cast<long long>(r.trained_params));
  return line;
}

}  // namespace elutq
