// The server's pieces without HTTP: request parsing and its errors, stop-string holding, and the
// batching engine, whose answers to concurrent requests equal each request generated alone.
// (tests/reference/test_server_openai.py drives the whole server with the openai client.)
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "model/model.h"
#include "runtime/open_model.h"
#include "server/batch_engine.h"
#include "server/openai_protocol.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace elutq {
namespace {

// The ApiError's (status, param) of parsing body, or (0, "") if it parses.
std::pair<int, std::string> parse_error(const std::string& body, bool chat = true) {
  try {
    parse_completion_request(body, chat);
  } catch (const ApiError& e) {
    return {e.status, e.param};
  }
  return {0, ""};
}

TEST(ServerProtocol, ParsesTheFieldsClientsSend) {
  const CompletionRequest r = parse_completion_request(
      R"({"model":"m","messages":[{"role":"developer","content":"be brief"},
          {"role":"user","content":[{"type":"text","text":"hi "},{"type":"text","text":"there"}]}],
          "temperature":0.5,"top_p":0.9,"max_completion_tokens":7,"stop":"\n","seed":-3,
          "stream":true,"stream_options":{"include_usage":true}})",
      true);
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "hi there");
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_EQ(r.stop, std::vector<std::string>{"\n"});
  EXPECT_EQ(r.seed, uint64_t(-3));
  EXPECT_TRUE(r.stream && r.include_usage);
  const CompletionRequest c = parse_completion_request(R"({"prompt":["once"]})", false);
  EXPECT_EQ(c.prompt, "once");
  EXPECT_FLOAT_EQ(c.sampling.temperature, 1.0f);  // OpenAI's default
  EXPECT_FALSE(c.seed.has_value());
}

TEST(ServerProtocol, BadRequestsNameTheField) {
  EXPECT_EQ(parse_error("{oops"), std::make_pair(400, std::string()));
  EXPECT_EQ(parse_error("[]"), std::make_pair(400, std::string()));
  EXPECT_EQ(parse_error("{}"), std::make_pair(400, std::string("messages")));
  EXPECT_EQ(parse_error(R"({"messages":[]})"), std::make_pair(400, std::string("messages")));
  EXPECT_EQ(parse_error(R"({"messages":[{"role":"user","content":3}]})").second,
            "messages[0].content");
  const std::string ok = R"("messages":[{"role":"user","content":"x"}])";
  EXPECT_EQ(parse_error("{" + ok + R"(,"temperature":"hot"})").second, "temperature");
  EXPECT_EQ(parse_error("{" + ok + R"(,"temperature":3})").second, "temperature");
  EXPECT_EQ(parse_error("{" + ok + R"(,"max_tokens":0})").second, "max_tokens");
  EXPECT_EQ(parse_error("{" + ok + R"(,"max_tokens":1.5})").second, "max_tokens");
  EXPECT_EQ(parse_error("{" + ok + R"(,"stop":["a","b","c","d","e"]})").second, "stop");
  EXPECT_EQ(parse_error("{" + ok + R"(,"stop":[""]})").second, "stop");
  EXPECT_EQ(parse_error("{" + ok + R"(,"n":2})").second, "n");
  EXPECT_EQ(parse_error("{" + ok + R"(,"stream":"yes"})").second, "stream");
  EXPECT_EQ(parse_error(R"({"prompt":7})", false).second, "prompt");
  const auto j = nlohmann::json::parse(error_json(ApiError(401, "authentication_error", "no")));
  EXPECT_EQ(j["error"]["type"], "authentication_error");
  EXPECT_TRUE(j["error"]["param"].is_null());
}

TEST(ServerProtocol, StopStringsHoldBackOnlyWhatCouldStillMatch) {
  size_t at;
  EXPECT_EQ(releasable_prefix("hello wor", {"world"}, &at), 6u);  // "wor" may become "world"
  EXPECT_EQ(at, std::string::npos);
  EXPECT_EQ(releasable_prefix("hello world!", {"world"}, &at), 6u);
  EXPECT_EQ(at, 6u);
  EXPECT_EQ(releasable_prefix("abc", {"x", "yz"}, &at), 3u);
  EXPECT_EQ(releasable_prefix("a\n\nb\n", {"\n\n", "b\n\n"}, &at), 1u);  // first match wins
  EXPECT_EQ(releasable_prefix("abc", {}, &at), 3u);
}

// Greedy text of prompt generated alone through the model (the reference).
std::string generate_alone(Model& m, const Tokenizer& tok, const std::vector<int>& prompt, int n) {
  std::vector<int> ids = prompt;
  std::string text;
  const float* logits = m.prefill_logits(ids.data(), int(ids.size()), 0);
  for (int i = 0; i < n; ++i) {
    int best = 0;
    for (int v = 1; v < m.config().vocab_size; ++v)
      if (logits[v] > logits[best]) best = v;
    if (tok.is_stop(best)) break;
    text += tok.token_bytes(best);
    logits = m.decode_logits(best, int(ids.size()));
    ids.push_back(best);
  }
  return text;
}

TEST(BatchEngine, ConcurrentRequestsEqualEachGeneratedAlone) {
  const std::string path = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(path, "stories260K");
  auto src = open_model(path);
  const Tokenizer tok(src->tokenizer());
  const std::vector<std::string> prompts = {"Once upon a time", "The little dog",
                                            "Lily and Tom went to the park. They",
                                            "One day, a big"};
  const int n = 40;
  std::vector<std::string> want;
  {
    ModelOptions o;
    o.n_threads = 1;
    Model alone(*src, o);
    for (const auto& p : prompts) want.push_back(generate_alone(alone, tok, tok.encode(p), n));
  }
  for (int parallel : {1, 3}) {
    SCOPED_TRACE(parallel);
    EngineOptions eo;
    eo.parallel = parallel;
    eo.slot_ctx = 128;
    eo.prefill_chunk = 3;  // prompts read in pieces beside the others' decoding
    ModelOptions o;
    o.n_threads = 1;
    o.max_ctx = parallel * eo.slot_ctx;
    o.max_batch = parallel + eo.prefill_chunk;
    Model m(*src, o);
    BatchEngine engine(m, tok, eo);
    std::vector<std::shared_ptr<GenerationJob>> jobs;
    for (const auto& p : prompts) {
      auto job = std::make_shared<GenerationJob>();
      job->prompt = tok.encode(p);
      job->sampling.temperature = 0;
      job->max_tokens = n;
      engine.submit(job);
      jobs.push_back(job);
    }
    for (size_t i = 0; i < jobs.size(); ++i) {
      std::string text, piece;
      while (jobs[i]->next(&piece)) text += piece;
      EXPECT_EQ(text, want[i]) << prompts[i];
      EXPECT_TRUE(jobs[i]->finish_reason == "stop" || jobs[i]->finish_reason == "length");
      EXPECT_EQ(jobs[i]->prompt_tokens, int(jobs[i]->prompt.size()));
    }
    // The same prompt again reuses the cached prefix of some slot.
    auto again = std::make_shared<GenerationJob>();
    again->prompt = tok.encode(prompts[3]);
    again->sampling.temperature = 0;
    again->max_tokens = n;
    engine.submit(again);
    std::string text, piece;
    while (again->next(&piece)) text += piece;
    EXPECT_EQ(text, want[3]);
    EXPECT_EQ(again->cached_tokens, int(again->prompt.size()) - 1);
    // The counters /metrics reports add up: every generated token and prompt token counted once,
    // every step timed (read once the engine has stopped: a job is answered before its step's
    // counts are added).
    engine.stop();
    const EngineStats st = engine.stats();
    int64_t generated = 0, read = 0;
    jobs.push_back(again);
    for (const auto& j : jobs) {
      generated += j->completion_tokens;
      read += int64_t(j->prompt.size()) - j->cached_tokens;
    }
    EXPECT_EQ(st.requests, 5);
    EXPECT_EQ(st.prompt_tokens, read);
    EXPECT_GE(st.completion_tokens, generated);  // + one end-of-text token per "stop"
    EXPECT_LE(st.completion_tokens, generated + 5);
    EXPECT_GE(st.steps, n);
    EXPECT_GT(st.forward_seconds, 0.0);
    EXPECT_GT(st.sampling_seconds, 0.0);
  }
}

TEST(BatchEngine, StopStringsCancelAndShutdown) {
  const std::string path = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(path, "stories260K");
  auto src = open_model(path);
  const Tokenizer tok(src->tokenizer());
  EngineOptions eo;
  eo.parallel = 2;
  eo.slot_ctx = 200;
  eo.max_queue = 1;
  ModelOptions o;
  o.n_threads = 1;
  o.max_ctx = 2 * eo.slot_ctx;
  o.max_batch = 2 + eo.prefill_chunk;
  Model m(*src, o);
  BatchEngine engine(m, tok, eo);
  const auto make = [&](const std::vector<std::string>& stop) {
    auto job = std::make_shared<GenerationJob>();
    job->prompt = tok.encode("Once upon a time");
    job->sampling.temperature = 0;
    job->max_tokens = 100;
    job->stop = stop;
    return job;
  };
  auto full = make({});
  engine.submit(full);
  std::string whole, piece;
  while (full->next(&piece)) whole += piece;
  const size_t cut = whole.find(' ', 10);
  ASSERT_NE(cut, std::string::npos) << whole;
  const std::string stop = whole.substr(cut, 4);
  auto stopped = make({stop});
  engine.submit(stopped);
  std::string text;
  while (stopped->next(&piece)) text += piece;
  EXPECT_EQ(stopped->finish_reason, "stop");
  EXPECT_EQ(text, whole.substr(0, whole.find(stop)));
  // A cancelled job ends as such; the engine then serves the next.
  auto cancelled = make({});
  cancelled->max_tokens = 0;
  engine.submit(cancelled);
  cancelled->cancelled = true;
  while (cancelled->next(&piece)) {
  }
  EXPECT_EQ(cancelled->finish_reason, "cancelled");
  // Stopping ends whatever is left with an error, and later submissions are refused.
  auto long_job = make({});
  long_job->max_tokens = 0;
  engine.submit(long_job);
  engine.stop();
  while (long_job->next(&piece)) {
  }
  EXPECT_TRUE(long_job->finish_reason == "error" || long_job->finish_reason == "length");
  EXPECT_NE(test::error_of([&] { engine.submit(make({})); }).find("shutting down"),
            std::string::npos);
}

}  // namespace
}  // namespace elutq
