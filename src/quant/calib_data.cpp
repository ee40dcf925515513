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

std::vector<std::vector<int>> calibration_from_model(Model& model, int bos_id,
                                                     const CalibDataOptions& opt,
                                                     const std::function<void(int)>& on_sequence) {
  check_sizes(opt);
  const int vocab = model.config().vocab_size;
  require(bos_id >= 0 && bos_id < vocab, "data-free calibration needs the model's BOS token; ",
          "this tokenizer has none, so give a calibration text with --calib");
  require(opt.seqlen <= model.max_ctx(), "calibration sequences of ", opt.seqlen,
          " tokens exceed the model context of ", model.max_ctx(), "; lower --seqlen");
  SamplerOptions so;
  so.temperature = 1.0f;  // the model's own distribution, untruncated
  so.top_k = 0;
  so.top_p = 1.0f;
  so.min_p = 0.0f;
  so.seed = opt.seed;
  Sampler sampler(so);
  std::vector<std::vector<int>> out(size_t(opt.nsamples));
  for (int i = 0; i < opt.nsamples; ++i) {
    std::vector<int>& seq = out[size_t(i)];
    seq.reserve(size_t(opt.seqlen));
    seq.push_back(bos_id);
    const float* logits = model.decode_logits(bos_id, 0);
    while (int(seq.size()) < opt.seqlen) {
      const int next = sampler.sample(logits, vocab);
      seq.push_back(next);
      if (int(seq.size()) < opt.seqlen) logits = model.decode_logits(next, int(seq.size()) - 1);
    }
    if (on_sequence) on_sequence(i);
  }
  return out;
}

}  // namespace elutq
