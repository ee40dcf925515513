// The batching engine; see batch_engine.h.
#include "server/batch_engine.h"

#include <algorithm>
#include <chrono>
#include <exception>

#include "core/error.h"
#include "generate/text_stream.h"

namespace elutq {

struct BatchEngine::Slot {
  int index = 0;
  std::shared_ptr<GenerationJob> job;  // null: free
  std::vector<int> tokens;             // what the slot's KV rows hold, then the pending prompt
  int n_past = 0;                      // KV rows filled
  int n_prompt = 0;
  int next = -1;                       // sampled token to feed at the next step (decoding)
  int generated = 0;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<TextStream> stream;
  std::string held;                    // decoded text not yet released (stop strings)
  uint64_t admitted = 0;               // admission order: prompts are read first come, first served
  bool decoding() const { return job && next >= 0; }
  bool reading() const { return job && next < 0; }
};

bool GenerationJob::next(std::string* out) {
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return !text.empty() || done; });
  out->swap(text);
  text.clear();
  return !out->empty() || !done;
}

size_t releasable_prefix(const std::string& held, const std::vector<std::string>& stop,
                         size_t* stop_at) {
  *stop_at = std::string::npos;
  for (const std::string& s : stop) {
    const size_t p = held.find(s);
    if (p != std::string::npos && p < *stop_at) *stop_at = p;
  }
  if (*stop_at != std::string::npos) return *stop_at;
  // Keep back the longest suffix that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const std::string& s : stop)
    for (size_t k = std::min(s.size() - 1, held.size()); k > keep; --k)
      if (held.compare(held.size() - k, k, s, 0, k) == 0) {
        keep = k;
        break;
      }
  return held.size() - keep;
}

BatchEngine::BatchEngine(Model& model, const Tokenizer& tok, const EngineOptions& opt)
    : model_(model), tok_(tok), opt_(opt) {
  require(opt.parallel >= 1 && opt.slot_ctx >= 2 && opt.prefill_chunk >= 1 && opt.max_queue >= 1,
          "server: bad engine options");
  require(int64_t(opt.parallel) * opt.slot_ctx <= model.max_ctx(), "server: ", opt.parallel,
          " slots of ", opt.slot_ctx, " tokens need a KV cache of ",
          int64_t(opt.parallel) * opt.slot_ctx, " rows; the model has ", model.max_ctx());
  require(opt.parallel + 1 <= model.max_batch(), "server: the model's batch of ",
          model.max_batch(), " tokens is smaller than ", opt.parallel + 1);
  for (int i = 0; i < opt.parallel; ++i) {
    slots_.push_back(std::make_unique<Slot>());
    slots_.back()->index = i;
  }
  thread_ = std::thread([this] { loop(); });
}

BatchEngine::~BatchEngine() { stop(); }

void BatchEngine::submit(const std::shared_ptr<GenerationJob>& job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    require(!stopping_, "queue full: the server is shutting down");
    require(int(queue_.size()) < opt_.max_queue, "queue full: ", queue_.size(),
            " requests are waiting");
    queue_.push_back(job);
    ++stats_.requests;
  }
  wake_.notify_one();
}

void BatchEngine::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

EngineStats BatchEngine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void BatchEngine::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      const bool busy = std::any_of(slots_.begin(), slots_.end(), [](const auto& s) { return s->job != nullptr; });
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || busy; });
      if (stopping_) break;
    }
    try {
      admit();
      step();
    } catch (const std::exception& e) {
      for (auto& s : slots_)
        if (s->job) finish(*s, "error", e.what());
    }
  }
  // Shutting down: nothing is left hanging.
  for (auto& s : slots_)
    if (s->job) finish(*s, "error", "the server is shutting down");
  std::deque<std::shared_ptr<GenerationJob>> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left.swap(queue_);
  }
  for (auto& job : left) {
    std::lock_guard<std::mutex> lock(job->mu);
    job->done = true;
    job->finish_reason = "error";
    job->error = "the server is shutting down";
    job->cv.notify_all();
  }
}

void BatchEngine::admit() {
  for (;;) {
    std::shared_ptr<GenerationJob> job;
    Slot* best = nullptr;
    size_t common = 0;  // tokens the best slot's cache shares with the prompt
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.empty()) return;
      // The free slot sharing the longest prefix with the prompt.
      for (auto& s : slots_) {
        if (s->job) continue;
        const std::vector<int>& p = queue_.front()->prompt;
        size_t c = 0;
        while (c < size_t(s->n_past) && c < p.size() && s->tokens[c] == p[c]) ++c;
        if (!best || c > common) {
          best = s.get();
          common = c;
        }
      }
      if (!best) return;
      job = queue_.front();
      queue_.pop_front();
      stats_.queue_depth = int(queue_.size());
    }
    Slot& s = *best;
    // At least the prompt's last token is read again: its logits choose the first token.
    s.n_past = int(std::min(common, job->prompt.size() - 1));
    s.tokens = job->prompt;
    s.n_prompt = int(job->prompt.size());
    s.next = -1;
    s.generated = 0;
    s.held.clear();
    s.sampler = std::make_unique<Sampler>(job->sampling);
    for (int id : job->prompt) s.sampler->accept(id);
    s.stream = std::make_unique<TextStream>(tok_, false);
    s.admitted = ++admissions_;
    s.job = job;
    std::lock_guard<std::mutex> lock(job->mu);
    job->prompt_tokens = s.n_prompt;
    job->cached_tokens = s.n_past;
  }
}

void BatchEngine::emit(Slot& s, const std::string& piece, bool final) {
  s.held += piece;
  size_t stop_at;
  size_t n = releasable_prefix(s.held, s.job->stop, &stop_at);
  if (final) n = stop_at == std::string::npos ? s.held.size() : stop_at;
  if (n == 0) return;
  std::lock_guard<std::mutex> lock(s.job->mu);
  s.job->text.append(s.held, 0, n);
  s.held.erase(0, n);
  s.job->cv.notify_all();
}

void BatchEngine::finish(Slot& s, const std::string& reason, const std::string& error) {
  std::shared_ptr<GenerationJob> job = std::move(s.job);
  s.job.reset();
  // The KV rows keep the prompt and what was fed back; a later prompt may reuse them.
  s.tokens.resize(size_t(s.n_past));
  s.next = -1;
  std::lock_guard<std::mutex> lock(job->mu);
  job->done = true;
  job->finish_reason = reason;
  job->error = error;
  job->completion_tokens = s.generated;
  job->cv.notify_all();
}

bool BatchEngine::step() {
  for (auto& s : slots_)
    if (s->job && s->job->cancelled.load()) finish(*s, "cancelled");
  std::vector<int> tokens, pos, row0, out_rows;
  std::vector<Slot*> out_slot;
  for (auto& s : slots_) {
    if (!s->decoding()) continue;
    tokens.push_back(s->next);
    pos.push_back(s->n_past);
    row0.push_back(s->index * opt_.slot_ctx);
    out_rows.push_back(int(tokens.size()) - 1);
    out_slot.push_back(s.get());
  }
  const int n_decode = int(tokens.size());
  // Prompts, first come first served, within the chunk and the model's batch.
  std::vector<Slot*> readers;
  for (auto& s : slots_)
    if (s->reading()) readers.push_back(s.get());
  std::sort(readers.begin(), readers.end(), [](Slot* a, Slot* b) { return a->admitted < b->admitted; });
  int budget = std::min(opt_.prefill_chunk, model_.max_batch() - n_decode);
  std::vector<std::pair<Slot*, int>> read;  // slot, tokens read this step
  for (Slot* s : readers) {
    if (budget <= 0) break;
    const int n = std::min(budget, s->n_prompt - s->n_past);
    for (int i = 0; i < n; ++i) {
      tokens.push_back(s->tokens[size_t(s->n_past + i)]);
      pos.push_back(s->n_past + i);
      row0.push_back(s->index * opt_.slot_ctx);
    }
    if (s->n_past + n == s->n_prompt) {
      out_rows.push_back(int(tokens.size()) - 1);
      out_slot.push_back(s);
    }
    read.push_back({s, n});
    budget -= n;
  }
  if (tokens.empty()) return false;
  const auto t0 = std::chrono::steady_clock::now();
  const int vocab = model_.config().vocab_size;
  logits_.resize(out_rows.size() * size_t(vocab));
  // Out rows must ascend: decode rows come first, then prompt ends in batch order.
  model_.forward_batch(tokens.data(), pos.data(), row0.data(), int(tokens.size()),
                       out_rows.data(), int(out_rows.size()), logits_.data());
  const auto t1 = std::chrono::steady_clock::now();
  for (int i = 0; i < n_decode; ++i) ++out_slot[size_t(i)]->n_past;
  for (auto& [s, n] : read) s->n_past += n;
  // Each slot draws from its own logits with its own sampler, so the draws run on the pool: one
  // untruncated draw sorts a whole vocabulary, and done one after another they left the other
  // cores idle for a fifth of a 4-slot step (SmolLM2, 2 cores).
  std::vector<int> drawn(out_slot.size());
  std::vector<std::exception_ptr> failed(out_slot.size());
  model_.pool().parallel_for(int64_t(out_slot.size()), [&](int64_t r) {
    try {
      drawn[size_t(r)] = out_slot[size_t(r)]->sampler->sample(logits_.data() + r * size_t(vocab), vocab);
    } catch (...) {
      failed[size_t(r)] = std::current_exception();
    }
  });
  for (const auto& e : failed)
    if (e) std::rethrow_exception(e);
  const auto t2 = std::chrono::steady_clock::now();
  int64_t sampled = 0;
  for (size_t r = 0; r < out_slot.size(); ++r) {
    Slot& s = *out_slot[r];
    const int t = drawn[r];
    ++s.generated;
    ++sampled;
    if (tok_.is_stop(t)) {
      --s.generated;  // the end-of-text token is not part of the completion
      emit(s, s.stream->finish(), true);
      finish(s, "stop");
      continue;
    }
    emit(s, s.stream->push(t), false);
    size_t stop_at;
    releasable_prefix(s.held, s.job->stop, &stop_at);
    if (stop_at != std::string::npos) {
      emit(s, "", true);
      finish(s, "stop");
      continue;
    }
    const bool length = (s.job->max_tokens > 0 && s.generated >= s.job->max_tokens) ||
                        s.n_past + 1 >= opt_.slot_ctx;
    if (length) {
      emit(s, s.stream->finish(), true);
      finish(s, "length");
      continue;
    }
    s.next = t;
    s.tokens.resize(size_t(s.n_past));
    s.tokens.push_back(t);
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::lock_guard<std::mutex> lock(mu_);
  stats_.completion_tokens += sampled;
  stats_.forward_seconds += std::chrono::duration<double>(t1 - t0).count();
  stats_.sampling_seconds += std::chrono::duration<double>(t2 - t1).count();
  ++stats_.steps;
  for (auto& [s, n] : read) stats_.prompt_tokens += n;
  if (n_decode > 0) {
    stats_.decode_seconds += secs;
    stats_.decode_tokens += n_decode;
  }
  stats_.active = int(std::count_if(slots_.begin(), slots_.end(), [](const auto& s) { return s->job != nullptr; }));
  return true;
}

}  // namespace elutq
