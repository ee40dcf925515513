// Perplexity: the windowed protocol on models whose answer is known in closed form, the text
// readers, and (with the shared data) stories260K against its published figures.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/error.h"
#include "eval/perplexity.h"
#include "model/model.h"
#include "runtime/open_model.h"
#include "tensor/model_source.h"
#include "test_forward_model.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace elutq {
namespace {

TEST(Perplexity, TokenNllIsLogSumExpMinusTarget) {
  const float logits[3] = {1.0f, 2.0f, 3.0f};
  const double lse = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  EXPECT_NEAR(token_nll(logits, 3, 0), lse - 1.0, 1e-12);
  EXPECT_NEAR(token_nll(logits, 3, 2), lse - 3.0, 1e-12);
  const float big[2] = {1000.0f, 1000.0f};  // no overflow
  EXPECT_NEAR(token_nll(big, 2, 1), std::log(2.0), 1e-12);
}

TEST(Perplexity, ZeroOutputHeadGivesVocabSizeAndCountsWindows) {
  // With an all-zero output projection every logit is 0: p = 1/vocab for every token.
  ModelConfig c = test::tiny("llama");
  test::MemorySource src(c);
  std::fill(src.mutable_w("output.weight").begin(), src.mutable_w("output.weight").end(), 0.0f);
  ModelOptions opt;
  opt.n_threads = 2;
  opt.max_ctx = 10;
  Model m(src, opt);
  std::vector<int> ids(47);
  for (int i = 0; i < 47; ++i) ids[i] = (i * 7) % c.vocab_size;
  int calls = 0;
  const PerplexityResult r = perplexity(m, ids, 10, 0, [&](int, int, const PerplexityResult&) { ++calls; });
  EXPECT_EQ(r.windows, 4);  // 47 / 10, remainder dropped
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(r.n_scored, 4 * 9);
  EXPECT_NEAR(r.ppl(), double(c.vocab_size), 1e-3);
  EXPECT_EQ(perplexity(m, ids, 10, 2).windows, 2);
  EXPECT_EQ(perplexity(m, std::vector<int>(ids.begin(), ids.begin() + 6), 10, 0).n_scored, 5);
  EXPECT_THROW(perplexity(m, {3}, 10, 0), Error);
  EXPECT_THROW(perplexity(m, ids, 11, 0), Error);  // over max_ctx
}

TEST(Perplexity, ScoresEqualTokenByTokenDecode) {
  // Window scores computed from chunked prefill logits equal -log softmax of decode logits.
  test::MemorySource src(test::tiny("qwen2"));
  ModelOptions opt;
  opt.n_threads = 1;
  opt.max_ctx = 12;
  Model m(src, opt);
  std::vector<int> ids = {3, 9, 1, 22, 5, 5, 17, 30, 2, 8, 11, 4};
  const PerplexityResult r = perplexity(m, ids, 12, 0);
  double nll = 0;
  for (int i = 0; i + 1 < 12; ++i) nll += token_nll(m.decode_logits(ids[i], i), 40, ids[i + 1]);
  EXPECT_NEAR(r.nll_sum, nll, 1e-4 * nll);
}

TEST(Perplexity, LlamaProtocolScoresTheSecondHalfAfterABosStart) {
  // llama-perplexity's protocol: each window starts with BOS, rows ctx/2 .. ctx-2 are scored.
  test::MemorySource src(test::tiny("llama"));
  ModelOptions opt;
  opt.n_threads = 1;
  opt.max_ctx = 8;
  Model m(src, opt);
  const std::vector<int> ids = {3, 9, 1, 22, 5, 5, 17, 30, 2, 8, 11, 4, 6, 7, 12, 13, 19};
  const int bos = 1, ctx = 8;
  const PerplexityResult r = perplexity(m, ids, ctx, 0, {}, PerplexityProtocol::llama(bos));
  EXPECT_EQ(r.windows, 2);
  EXPECT_EQ(r.n_scored, 2 * (ctx - 1 - ctx / 2));
  double nll = 0;
  for (int w = 0; w < 2; ++w) {
    std::vector<int> win(ids.begin() + w * ctx, ids.begin() + (w + 1) * ctx);
    win[0] = bos;
    for (int i = 0; i + 1 < ctx; ++i) {
      const float* logits = m.decode_logits(win[size_t(i)], i);
      if (i >= ctx / 2) nll += token_nll(logits, 40, win[size_t(i) + 1]);
    }
  }
  EXPECT_NEAR(r.nll_sum, nll, 1e-4 * nll);
  // Without BOS replacement and halves it is the default protocol.
  const PerplexityResult all = perplexity(m, ids, ctx, 0, {}, PerplexityProtocol{});
  const PerplexityResult def = perplexity(m, ids, ctx, 0);
  EXPECT_EQ(all.nll_sum, def.nll_sum);
  EXPECT_EQ(def.n_scored, 2 * (ctx - 1));
}

TEST(Perplexity, ReadsPlainTextAndJsonl) {
  test::TempDir dir;
  {
    std::ofstream(dir.file("a.txt")) << "one\n\ntwo";
    std::ofstream(dir.file("b.jsonl")) << "{\"text\": \"first\", \"url\": 1}\n\n{\"text\": \"se\\ncond\"}\n";
    std::ofstream(dir.file("bad.jsonl")) << "{\"text\": \"ok\"}\n{\"txt\": 3}\n";
    std::ofstream(dir.file("broken.jsonl")) << "{\"text\": \n";
  }
  EXPECT_EQ(read_documents(dir.file("a.txt"), false), std::vector<std::string>{"one\n\ntwo"});
  EXPECT_EQ(read_documents(dir.file("b.jsonl"), false), (std::vector<std::string>{"first", "se\ncond"}));
  EXPECT_THROW(read_documents(dir.file("bad.jsonl"), false), Error);
  EXPECT_THROW(read_documents(dir.file("broken.jsonl"), false), Error);
  EXPECT_THROW(read_documents(dir.file("missing.txt"), false), Error);
}

int run_cli(const std::string& args) {
  const std::string cmd = std::string(ELUTQ_CLI_PATH) + " " + args + " >/dev/null 2>&1";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TEST(Perplexity, CliRejectsEmptyTextAndBadArguments) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(model, "stories260K.bin");
  test::TempDir dir;
  std::ofstream(dir.file("empty.txt")).flush();
  EXPECT_EQ(run_cli("perplexity -m " + model + " -f " + dir.file("empty.txt")), 1);
  EXPECT_EQ(run_cli("perplexity -m " + model + " -f " + dir.file("nope.txt")), 1);
  EXPECT_EQ(run_cli("perplexity -m " + model + " -f " + dir.file("empty.txt") + " --ctx 1"), 1);
  EXPECT_EQ(run_cli("perplexity -m " + model + " --ctx abc -f x"), 2);
  EXPECT_EQ(run_cli("logits -m " + model + " --ids \"1 x\""), 1);
  EXPECT_EQ(run_cli("logits -m " + model + " --ids \"1 999\""), 1);  // outside the vocabulary
}

// Encodes with the model's tokenizer, or skips if the tokenizer is not available in this build.
#define ENCODE_OR_SKIP(tok, text, add, out)                                   \
  try {                                                                       \
    out = (tok).encode(text, add);                                            \
  } catch (const Error& e) {                                                  \
    GTEST_SKIP() << "tokenizer unavailable: " << e.what();                    \
  }

TEST(Stories260K, GreedyContinuationMatchesReference) {
  const std::string path = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(path, "stories260K.bin");
  auto src = open_model(path);
  const Tokenizer tok(src->tokenizer());
  std::vector<int> ids;
  ENCODE_OR_SKIP(tok, "Once upon a time", true, ids);
  ASSERT_EQ(ids.front(), tok.bos_id());
  ModelOptions opt;
  opt.n_threads = 2;
  Model m(*src, opt);
  const float* l = m.prefill_logits(ids.data(), int(ids.size()), 0);
  const int V = m.config().vocab_size;
  while (ids.size() < 40) {
    const int next = int(std::max_element(l, l + V) - l);
    ids.push_back(next);
    l = m.decode_logits(next, int(ids.size()) - 1);
  }
  // The reference continuation from ../shared/README.md (measured outside the project).
  const std::string expected = "Once upon a time, there was a little girl named Lily.";
  EXPECT_EQ(tok.decode(ids).substr(0, expected.size()), expected) << tok.decode(ids);
}

TEST(Stories260K, PerplexityOnTinyStoriesAtCtx512) {
  // Issue 2 asks for 3.66 (../shared/README.md: mean loss 1.298, which is exp of llama2.c's
  // published validation loss of stories260K, 1.297, measured on its own validation shard).
  // No protocol on validation_head.txt reproduces it (docs/notes/2026-11-23-foundation.md,
  // "stories260K"), and neither the tokenizer nor the forward pass is the cause: over the whole
  // file our token ids equal an independent implementation of llama2.c run.c's encode
  // (tests/reference/test_stories260k_tokenizer.py) and our perplexity equals transformers' to 4
  // digits. Whole-file figures at ctx 512: 5.048 (`elutq perplexity`: one BOS, paragraphs joined
  // by "\n\n"), 4.532 (the protocol below), 4.428 (each story scored alone from its BOS), 4.320
  // (the protocol below after repairing the file's UTF-8-read-as-cp1252 quotes, "â€œ" -> "“").
  // The model was trained on stories whose paragraphs are joined by ONE "\n": after a "\n", a
  // second one costs it 8 nats on average, and the file's blank lines hold 4,288 of them.
  //
  // So this test checks our pipeline on the model's training format against an independent
  // reference: a paragraph starting "Once upon a time" begins a new story, each story is
  // BOS + its paragraphs joined by "\n", stories are concatenated and the first 32 windows of 512
  // tokens are scored (32 keeps it fast under ASan). transformers (the conversion in
  // tests/reference/test_stories260k_hf.py) on ids from the independent run.c encoder gives
  // 3.5425 (mean loss 1.26483 over 16,352 tokens) for exactly this input. Band 0.3%: fp32 vs
  // double accumulation differs by ~1e-5; a tokenizer or attention change moves it more.
  const std::string path = test::shared_file("models/stories260K/stories260K.bin");
  const std::string text_path = test::shared_file("data/tinystories/validation_head.txt");
  ELUTQ_REQUIRE_FILE(path, "stories260K.bin");
  ELUTQ_REQUIRE_FILE(text_path, "tinystories validation_head.txt");
  auto src = open_model(path);
  const Tokenizer tok(src->tokenizer());
  const std::string text = read_documents(text_path, false).at(0);
  const size_t want = 32 * 512;
  std::vector<int> ids, story_ids;
  std::string story;
  auto flush_story = [&]() {
    if (story.empty()) return;
    ids.push_back(tok.bos_id());
    story_ids = tok.encode(story, false);  // run.c's encode: dummy-prefix space, no BOS
    ids.insert(ids.end(), story_ids.begin(), story_ids.end());
    story.clear();
  };
  for (size_t p = 0; p < text.size() && ids.size() < want;) {
    size_t q = text.find("\n\n", p);
    if (q == std::string::npos) q = text.size();
    const std::string para = text.substr(p, q - p);
    p = q + 2;
    if (para.empty()) continue;
    if (para.rfind("Once upon a time", 0) == 0) flush_story();
    story += (story.empty() ? "" : "\n") + para;
  }
  flush_story();
  ASSERT_GE(ids.size(), want);
  ids.resize(want);
  ModelOptions opt;
  opt.n_threads = 2;
  opt.max_ctx = 512;
  Model m(*src, opt);
  const PerplexityResult r = perplexity(m, ids, 512, 32);
  ASSERT_EQ(r.windows, 32);
  ASSERT_EQ(r.n_scored, 16352);
  EXPECT_NEAR(r.ppl(), 3.5425, 0.003 * 3.5425) << r.n_scored << " tokens";
}

}  // namespace
}  // namespace elutq
