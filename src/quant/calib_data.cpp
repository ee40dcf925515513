// Calibration token sequences from a corpus or from the model itself (see calib_data.h).
#include "quant/calib_data.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "core/error.h"
#include "eval/perplexity.h"
#include "generate/sampler.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace elutq {

namespace {

void check_sizes(const CalibDataOptions& opt) {
  require(opt.nsamples > 0, "calibration: the number of sequences must be positive, got ",
          opt.nsamples);
  require(opt.seqlen > 1, "calibration: the sequence length must be at least 2 tokens, got ",
          opt.seqlen);
}

}  // namespace

std::vector<std::vector<int>> calibration_from_documents(const std::vector<std::string>& docs,
                                                         const Tokenizer& tok,
                                                         const CalibDataOptions& opt) {
  check_sizes(opt);
  const int64_t need = int64_t(opt.nsamples) * opt.seqlen;
  std::mt19937_64 rng(opt.seed);
  std::vector<size_t> order(docs.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::shuffle(order.begin(), order.end(), rng);

  std::vector<int> stream;  // (tokens) the shuffled documents, concatenated
  for (size_t i : order) {
    if (int64_t(stream.size()) >= need) break;
    if (docs[i].empty()) continue;
    const std::vector<int> ids = tok.encode(docs[i], /*add_special=*/true);
    stream.insert(stream.end(), ids.begin(), ids.end());
  }
  require(int64_t(stream.size()) >= need, "calibration text gives only ", stream.size(),
          " tokens but ", opt.nsamples, " sequences of ", opt.seqlen, " tokens need ", need,
          "; give more text or lower --nsamples / --seqlen");

  // L-token slots of the stream; N of them at random (all of them when the stream is just long
  // enough), in stream order.
  const int64_t slots = int64_t(stream.size()) / opt.seqlen;
  std::vector<int64_t> pick(static_cast<size_t>(slots));
  std::iota(pick.begin(), pick.end(), int64_t(0));
  std::shuffle(pick.begin(), pick.end(), rng);
  pick.resize(size_t(opt.nsamples));
  std::sort(pick.begin(), pick.end());
  std::vector<std::vector<int>> out;
  out.reserve(pick.size());
  for (int64_t s : pick)
    out.emplace_back(stream.begin() + s * opt.seqlen, stream.begin() + (s + 1) * opt.seqlen);
  return out;
}

std::vector<std::vector<int>> calibration_from_file(const std::string& path, bool jsonl,
                                                    const Tokenizer& tok,
                                                    const CalibDataOptions& opt) {
  const std::vector<std::string> docs = read_documents(path, jsonl);
  bool any = false;
  for (const std::string& d : docs) any = any || !d.empty();
  require(any, "calibration file '", path, "' holds no text");
  return calibration_from_documents(docs, tok, opt);
}

std::vector<std::vector<int>> calibration_from_model(
    Model& model, int bos_id, const CalibDataOptions& opt,
    const std::function<void(int64_t)>& on_tokens) {
  check_sizes(opt);
  const int vocab = model.config().vocab_size, L = opt.seqlen;
  require(bos_id >= 0 && bos_id < vocab, "data-free calibration needs the model's BOS token; ",
          "this tokenizer has none, so give a calibration text with --calib");
  require(L <= model.max_ctx(), "calibration sequences of ", L,
          " tokens exceed the model context of ", model.max_ctx(), "; lower --seqlen");
  SamplerOptions so;
  so.temperature = 1.0f;  // the model's own distribution, untruncated
  so.top_k = 0;
  so.top_p = 1.0f;
  so.min_p = 0.0f;
  so.seed = opt.seed;
  // As many sequences side by side as the KV cache holds: one pass over the weights per step
  // serves all of them. Each has its own sampler, advanced to where one sampler drawing the
  // sequences one after another would be, so the draws do not depend on the batch.
  const int batch = std::max(1, std::min({opt.nsamples, model.max_ctx() / L, model.max_batch()}));
  std::vector<std::vector<int>> out(size_t(opt.nsamples));
  std::vector<float> logits(size_t(batch) * vocab);  // (batch, vocab)
  std::vector<int> tokens(static_cast<size_t>(batch)), pos(static_cast<size_t>(batch));
  int64_t done = 0;
  for (int s0 = 0; s0 < opt.nsamples; s0 += batch) {
    const int m = std::min(batch, opt.nsamples - s0);
    std::vector<Sampler> samplers;
    for (int i = 0; i < m; ++i) {
      samplers.emplace_back(so);
      samplers.back().skip_draws(uint64_t(s0 + i) * uint64_t(L - 1));
      out[size_t(s0 + i)].reserve(size_t(L));
      out[size_t(s0 + i)].push_back(bos_id);
      tokens[size_t(i)] = bos_id;
    }
    for (int t = 0; t + 1 < L; ++t) {  // tokens at position t in, tokens at t + 1 out
      std::fill(pos.begin(), pos.begin() + m, t);
      model.decode_sequences(tokens.data(), pos.data(), m, L, logits.data());
      // Each draw sorts the whole vocabulary: the sequences' draws go to the pool's threads.
      model.pool().run(m, [&](int, int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i)
          tokens[size_t(i)] = samplers[size_t(i)].sample(logits.data() + i * vocab, vocab);
      });
      for (int i = 0; i < m; ++i) out[size_t(s0 + i)].push_back(tokens[size_t(i)]);
      done += m;
      if (on_tokens) on_tokens(done);
    }
  }
  return out;
}

bool sampling_streams_blocks(uint64_t fp32_weight_bytes, uint64_t budget, uint64_t available) {
  if (budget > 0) return true;
  return available > 0 && fp32_weight_bytes > available / 4 * 3;
}

int sampling_blocks_kept(uint64_t memory, uint64_t kv_bytes, uint64_t head_bytes,
                         uint64_t block_bytes, int n_layers) {
  if (memory <= kv_bytes + head_bytes || block_bytes == 0) return 0;
  return int(std::min<uint64_t>(uint64_t(n_layers), (memory - kv_bytes - head_bytes) / block_bytes));
}

}  // namespace elutq
