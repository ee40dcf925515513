// The server's generation engine: N slots, each a region of one model's KV cache, served by one
// thread in steps. Each step is one Model::forward_batch over the next token of every decoding
// slot plus a bounded chunk of the prompts being read, so the weights are read once per step for
// every request in flight (a memory-bound CPU gains almost linearly in the batch) and a long new
// prompt never stalls the streams already running. A new request takes the free slot whose cached
// tokens share the longest prefix with its prompt (the next turn of a conversation skips what it
// already read). Requests wait in a bounded queue; a cancelled one frees its slot at the next step.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "generate/sampler.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace elutq {

struct EngineOptions {
  int parallel = 4;         // slots (requests generating at once)
  int slot_ctx = 2048;      // KV cache rows per slot: prompt + generated tokens
  int prefill_chunk = 128;  // prompt tokens read per step (beside the decoding tokens)
  int max_queue = 32;       // requests waiting for a slot (>= 1) beyond which submit() refuses
};

// One request as the engine sees it, shared with the thread that answers it: the engine appends
// text and finally sets done; the other side waits on cv, takes the text, may cancel.
struct GenerationJob {
  std::vector<int> prompt;
  SamplerOptions sampling;
  int max_tokens = 0;             // 0: until the end of text or of the slot's context
  std::vector<std::string> stop;  // text ends before the first of these

  std::mutex mu;
  std::condition_variable cv;
  std::string text;               // produced and not yet taken (guarded by mu)
  bool done = false;              // (mu)
  std::string finish_reason;      // "stop", "length", or "error" (mu)
  std::string error;              // with finish_reason "error" (mu)
  int prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;  // (mu)
  std::atomic<bool> cancelled{false};

  // Waits until there is text or the job is done; moves the text into *out. Returns false once
  // the job is done and all its text was taken.
  bool next(std::string* out);
};

struct EngineStats {
  int64_t requests = 0, prompt_tokens = 0, completion_tokens = 0;
  int queue_depth = 0, active = 0;
  double decode_seconds = 0;  // time in steps that decoded at least one token
  int64_t decode_tokens = 0;  // tokens sampled in those steps
  double forward_seconds = 0;   // in the model, all steps
  double sampling_seconds = 0;  // drawing tokens, all steps
  int64_t steps = 0;
};

class BatchEngine {
 public:
  // model must hold parallel * slot_ctx KV rows (ModelOptions::max_ctx) and a batch of at least
  // parallel + prefill_chunk tokens (max_batch). Starts the engine thread.
  BatchEngine(Model& model, const Tokenizer& tok, const EngineOptions& opt);
  ~BatchEngine();
  BatchEngine(const BatchEngine&) = delete;
  BatchEngine& operator=(const BatchEngine&) = delete;

  // Queues the job. Throws Error starting "queue full" when max_queue jobs wait, or when the
  // engine is stopping. The prompt must be shorter than slot_ctx (the caller checks and says so).
  void submit(const std::shared_ptr<GenerationJob>& job);
  // Ends the thread: jobs still queued or running finish with finish_reason "error".
  void stop();

  EngineStats stats() const;
  const EngineOptions& options() const { return opt_; }

 private:
  struct Slot;
  void loop();
  bool step();  // one batch; false when there was nothing to do
  void admit();
  void finish(Slot& s, const std::string& reason, const std::string& error = "");
  void emit(Slot& s, const std::string& piece, bool final);

  Model& model_;
  const Tokenizer& tok_;
  EngineOptions opt_;
  std::vector<std::unique_ptr<Slot>> slots_;
  mutable std::mutex mu_;  // queue_, stopping_, stats_
  std::condition_variable wake_;
  std::deque<std::shared_ptr<GenerationJob>> queue_;
  bool stopping_ = false;
  EngineStats stats_;
  std::vector<float> logits_;
  uint64_t admissions_ = 0;  // engine thread only
  std::thread thread_;
};

// The length of the text that can be sent now: held text ends before the first complete stop
// string (*stop_at its position, else npos), and without any suffix that could still grow into
// one.
size_t releasable_prefix(const std::string& held, const std::vector<std::string>& stop,
                         size_t* stop_at);

}  // namespace elutq
