// Calibration token sequences for block-wise quantization: N sequences of L tokens, either cut from
// a text / JSONL corpus with the model's tokenizer, or sampled from the model itself (data-free).
//
// Corpus sampling (GPTQ-style, reproducible from the seed): the documents are shuffled with the
// seed, each is tokenized (BOS first where the model's tokenizer adds one), and the shuffled
// documents are concatenated into one token stream that is cut into consecutive sequences of L
// tokens; when the stream is longer than N * L (one big text file), N of its L-token slots are
// drawn at random. Only as many documents as needed are tokenized, so a large file costs little.
// Data-free sampling: each sequence starts at BOS and continues by sampling the model's own
// next-token distribution at temperature 1 (no top-k/top-p), as in data-free QAT/PTQ work.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace elutq {

class Model;
class Tokenizer;

struct CalibDataOptions {
  int nsamples = 128;  // N sequences
  int seqlen = 2048;   // L tokens each
  uint64_t seed = 0;
};

// N x L token ids from documents (see above). Throws Error if the documents hold fewer than N * L
// tokens (the message says how many there are) or if N or L is not positive.
std::vector<std::vector<int>> calibration_from_documents(const std::vector<std::string>& docs,
                                                         const Tokenizer& tok,
                                                         const CalibDataOptions& opt);

// Reads a text file (one document) or a JSONL file ("text" field per line; by extension .jsonl or
// jsonl = true) and samples from it.
std::vector<std::vector<int>> calibration_from_file(const std::string& path, bool jsonl,
                                                    const Tokenizer& tok,
                                                    const CalibDataOptions& opt);

// N x L tokens sampled from the model, each sequence starting with bos_id. The model must have a
// context of at least L tokens; it samples max_ctx / L sequences side by side (up to its
// max_batch), so a cache of N * L tokens does all N in one pass of L steps. The sequences are
// the same whatever the batch (up to fp32 rounding of the logits). on_tokens(k) reports the
// tokens sampled so far, of N * (L - 1) (progress).
std::vector<std::vector<int>> calibration_from_model(
    Model& model, int bos_id, const CalibDataOptions& opt,
    const std::function<void(int64_t)>& on_tokens = {});

// Whether data-free sampling streams the blocks through a lazy model (one block's weights in
// memory at a time, each widened again every step) instead of holding the whole fp32 model:
// always under a memory budget (budget > 0), and without one when the fp32 weights would take
// more than 3/4 of the available memory (available = 0: unknown, then not).
bool sampling_streams_blocks(uint64_t fp32_weight_bytes, uint64_t budget, uint64_t available);

// When sampling streams: how many of n_layers blocks (block_bytes of fp32 weights each) stay
// loaded, so that only the rest are widened again every step. They get what is left of `memory`
// (half the budget, or half the available memory) after the KV cache and the fp32 output head.
int sampling_blocks_kept(uint64_t memory, uint64_t kv_bytes, uint64_t head_bytes,
                         uint64_t block_bytes, int n_layers);

}  // namespace elutq
