// Tokenizer unit tests: small vocabularies built here (expected ids worked out by hand from the
// BPE rules), plus round trips with the real LLaMA-2 vocabulary when the shared file is present.
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_files.h"

namespace elutq {
namespace {

const std::string kSp = "\xE2\x96\x81";  // "▁"

// <unk> <s> </s>, the 256 byte tokens (ids 3..258), then a few pieces with scores.
TokenizerSpec tiny_spm() {
  TokenizerSpec s;
  s.kind = TokenizerKind::SentencePieceBPE;
  auto add = [&](const std::string& t, float score, TokenType type) {
    s.tokens.push_back(t);
    s.scores.push_back(score);
    s.types.push_back(type);
  };
  add("<unk>", 0, TokenType::Unknown);
  add("<s>", 0, TokenType::Control);
  add("</s>", 0, TokenType::Control);
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    add(buf, 0, TokenType::Byte);
  }
  add(kSp, -1, TokenType::Normal);        // 259
  add("a", -2, TokenType::Normal);        // 260
  add("b", -3, TokenType::Normal);        // 261
  add("ab", -10, TokenType::Normal);      // 262: made from a+b
  add(kSp + "a", -5, TokenType::Normal);  // 263: beats "ab", so "▁ab" -> "▁a" "b" first
  add(kSp + "ab", -4, TokenType::Normal); // 264
  s.unk_id = 0;
  s.bos_id = 1;
  s.eos_id = 2;
  s.add_bos = true;
  return s;
}

TEST(TokenizerSpm, MergesByScoreWithBosAndPrefix) {
  Tokenizer t(tiny_spm());
  // "ab" -> "▁ab": pairs "▁a" (-5) and "ab" (-10); "▁a" wins, then "▁a"+"b" = "▁ab" (-4).
  EXPECT_EQ(t.encode("ab"), (std::vector<int>{1, 264}));
  EXPECT_EQ(t.encode("ab", false), (std::vector<int>{264}));
  // "ba" -> "▁" "b" "a": "▁b" and "ba" are not pieces.
  EXPECT_EQ(t.encode("ba", false), (std::vector<int>{259, 261, 260}));
}

TEST(TokenizerSpm, ByteFallbackForUnknownCharacters) {
  Tokenizer t(tiny_spm());
  // "é" is U+00E9 = C3 A9, not a piece: falls back to its two byte tokens (3 + byte value).
  EXPECT_EQ(t.encode("\xC3\xA9", false), (std::vector<int>{259, 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(t.decode({259, 3 + 0xC3, 3 + 0xA9}), "\xC3\xA9");
}

TEST(TokenizerSpm, UnknownWithoutByteTokens) {
  TokenizerSpec s = tiny_spm();
  for (int b = 0; b < 256; ++b) s.types[3 + b] = TokenType::Unused;
  for (int b = 0; b < 256; ++b) s.tokens[3 + b] = "\x01unused" + std::to_string(b);
  Tokenizer t(s);
  // Two unknown characters in a row fold into one <unk>, as SentencePiece does.
  EXPECT_EQ(t.encode("xy", false), (std::vector<int>{259, 0}));
}

TEST(Tokenizer, EmptyTextGivesOnlyBos) {
  Tokenizer t(tiny_spm());
  EXPECT_EQ(t.encode(""), (std::vector<int>{1}));
  EXPECT_TRUE(t.encode("", false).empty());
}

TEST(Tokenizer, InvalidUtf8IsAnError) {
  Tokenizer t(tiny_spm());
  for (const char* bad : {"a\xFF", "\xC3", "\xED\xA0\x80", "\xC0\x80", "\xF4\x90\x80\x80"}) {
    EXPECT_THROW(t.encode(bad), Error) << bad;
  }
}

TEST(Tokenizer, OutOfRangeIdIsAnError) {
  Tokenizer t(tiny_spm());
  EXPECT_THROW(t.decode({100000}), Error);
  EXPECT_THROW(t.decode({-1}), Error);
}

// Byte-level: every byte's GPT-2 character, a few merges, two special tokens.
TokenizerSpec tiny_byte_level() {
  TokenizerSpec s;
  s.kind = TokenizerKind::ByteLevelBPE;
  s.pre = "gpt2";
  // GPT-2's bytes->unicode map, written out from its definition.
  for (int b = 0, extra = 256; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    const int cp = printable ? b : extra++;
    std::string c;
    if (cp < 0x80) {
      c += char(cp);
    } else {
      c += char(0xC0 | (cp >> 6));
      c += char(0x80 | (cp & 0x3F));
    }
    s.tokens.push_back(c);
  }
  const std::string G = "\xC4\xA0";  // "Ġ", the space byte
  s.merges = {{"h", "i"}, {G, "hi"}, {"l", "l"}, {"e", "ll"}};
  for (auto& [a, b] : s.merges) s.tokens.push_back(a + b);  // 256 hi, 257 Ġhi, 258 ll, 259 ell
  s.tokens.push_back("<|im_start|>");                          // 260
  s.tokens.push_back("<|endoftext|>");                         // 261
  s.types.assign(s.tokens.size(), TokenType::Normal);
  s.types[260] = s.types[261] = TokenType::Control;
  s.eos_id = 261;
  return s;
}

TEST(TokenizerByteLevel, RankedMergesAndPreTokens) {
  Tokenizer t(tiny_byte_level());
  // "hi hi" -> pre-tokens "hi", " hi" -> [hi], [Ġhi].
  EXPECT_EQ(t.encode("hi hi"), (std::vector<int>{256, 257}));
  // "hell": "ll" (rank 2) first, then "e"+"ll" (rank 3) -> h, ell.
  EXPECT_EQ(t.encode("hell"), (std::vector<int>{'h', 259}));
}

TEST(TokenizerByteLevel, SpecialTokensOnlyWhenAsked) {
  Tokenizer t(tiny_byte_level());
  const std::vector<int> with = t.encode("<|im_start|>hi<|endoftext|>", true, true);
  EXPECT_EQ(with, (std::vector<int>{260, 256, 261}));
  const std::vector<int> without = t.encode("<|im_start|>hi", true, false);
  EXPECT_EQ(std::count(without.begin(), without.end(), 260), 0);
  EXPECT_EQ(t.decode(without), "<|im_start|>hi");
  EXPECT_EQ(t.decode(with), "hi");
  EXPECT_EQ(t.decode(with, true), "<|im_start|>hi<|endoftext|>");
  EXPECT_TRUE(t.is_stop(261));
}

const char* kTricky[] = {
    "Hello, world!", "  multiple   spaces  ", "line\r\nbreak\n\n\ttab", "digits 1234567 3.14",
    "emoji 😀👍🏽 family 👨‍👩‍👧", "CJK 日本語の文章 中文", "combining e\xCC\x81 a\xCC\x8A",
    "I'm can't we'll O'NEIL", " leading", "trailing ", "\xC2\xA0nbsp", "ümlaut ß"};

TEST(TokenizerByteLevel, RoundTripsTrickyText) {
  Tokenizer t(tiny_byte_level());
  for (const char* s : kTricky) EXPECT_EQ(t.decode(t.encode(s)), s) << s;
}

TEST(TokenizerSpm, RoundTripsTrickyTextWithLlama2Vocab) {
  const std::string path = test::shared_file("tokenizers/llama2-32k/tokenizer.model");
  ELUTQ_REQUIRE_FILE(path, "LLaMA-2 tokenizer.model");
  Tokenizer t(load_sentencepiece_model(path));
  EXPECT_EQ(t.vocab_size(), 32000);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_id(), 2);
  for (const char* s : kTricky) EXPECT_EQ(t.decode(t.encode(s)), s) << s;
  // A character not in the vocabulary ("😀") falls back to its 4 UTF-8 bytes: <0xF0> is id 243.
  const std::vector<int> ids = t.encode("\xF0\x9F\x98\x80", false);
  ASSERT_EQ(ids.size(), 5u);  // "▁" + 4 bytes
  EXPECT_EQ(ids[1], 3 + 0xF0);
}

TEST(TokenizerFiles, SentencePieceErrors) {
  test::TempDir dir;
  auto write = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(dir.file(name), std::ios::binary) << bytes;
    return dir.file(name);
  };
  // Protobuf by hand: ModelProto.pieces (field 1) each holding SentencePiece.piece (field 1),
  // then trainer_spec (field 2) with model_type (field 3).
  auto piece = [](const std::string& p) {
    return std::string("\x0A") + char(p.size() + 2) + "\x0A" + char(p.size()) + p;
  };
  auto model = [&](char type) {
    return piece("<unk>") + piece("<s>") + piece("</s>") + piece("a") + "\x12\x02\x18" + type;
  };
  try {
    load_sentencepiece_model(write("uni.model", model('\x01')));
    FAIL() << "unigram accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unigram"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_sentencepiece_model(write("trunc.model", model('\x02').substr(0, 12))), Error);
  EXPECT_THROW(load_sentencepiece_model(write("empty.model", "")), Error);
  const TokenizerSpec s = load_sentencepiece_model(write("bpe.model", model('\x02')));
  EXPECT_EQ(s.tokens, (std::vector<std::string>{"<unk>", "<s>", "</s>", "a"}));
  EXPECT_EQ(s.bos_id, 1);  // SentencePiece's defaults when the trainer spec names none
  EXPECT_TRUE(s.add_space_prefix);
}

TEST(TokenizerFiles, HfTokenizerJsonErrorsNameTheFile) {
  test::TempDir dir;
  std::ofstream(dir.file("tokenizer.json")) << "{\"model\": {";
  try {
    load_hf_tokenizer(dir.path());
    FAIL() << "malformed JSON accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
  }
  std::ofstream(dir.file("tokenizer.json")) << "{\"model\": {\"type\": \"BPE\", \"vocab\": {}}}";
  EXPECT_THROW(load_hf_tokenizer(dir.path()), Error);  // no merges
}

TEST(TokenizerFiles, HfByteLevelTokenizerJson) {
  test::TempDir dir;
  std::ofstream(dir.file("tokenizer.json")) << R"({
    "added_tokens": [{"id": 4, "content": "<|endoftext|>", "special": true}],
    "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
    "post_processor": null,
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3},
              "merges": ["a b"]}})";
  std::ofstream(dir.file("tokenizer_config.json")) << R"({"eos_token": "<|endoftext|>",
    "chat_template": "{{ messages }}"})";
  TokenizerSpec s = load_hf_tokenizer(dir.path());
  EXPECT_EQ(s.kind, TokenizerKind::ByteLevelBPE);
  EXPECT_EQ(s.eos_id, 4);
  EXPECT_FALSE(s.add_bos);
  EXPECT_EQ(s.chat_template, "{{ messages }}");
  Tokenizer t(s);
  EXPECT_EQ(t.encode("ab ab<|endoftext|>", true, true), (std::vector<int>{2, 3, 2, 4}));
}

TEST(TokenizerFiles, HfSentencePieceStyleTokenizerJson) {
  // LLaMA-2-style tokenizer.json: "▁" normalizer, byte fallback, BOS from the template.
  test::TempDir dir;
  std::ofstream(dir.file("tokenizer.json")) << R"({
    "added_tokens": [{"id": 0, "content": "<unk>", "special": true},
                     {"id": 1, "content": "<s>", "special": true},
                     {"id": 2, "content": "</s>", "special": true}],
    "normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
    "pre_tokenizer": null,
    "post_processor": {"type": "TemplateProcessing", "single": [
        {"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]},
    "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true,
              "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0xC3>": 3, "<0xA9>": 4, "▁": 5,
                        "a": 6, "b": 7, "ab": 8, "▁a": 9, "▁ab": 10},
              "merges": ["▁ a", "▁a b", "a b"]}})";
  const TokenizerSpec s = load_hf_tokenizer(dir.path());
  EXPECT_EQ(s.kind, TokenizerKind::SentencePieceBPE);
  EXPECT_TRUE(s.add_bos);
  EXPECT_EQ(s.bos_id, 1);
  EXPECT_EQ(s.eos_id, 2);
  Tokenizer t(s);
  // "▁ab": "▁ a" is the first merge, then "▁a b".
  EXPECT_EQ(t.encode("ab"), (std::vector<int>{1, 10}));
  EXPECT_EQ(t.encode("b ab", false), (std::vector<int>{5, 7, 10}));
  // "é" is not a piece: byte fallback to <0xC3> <0xA9>.
  EXPECT_EQ(t.encode("\xC3\xA9", false), (std::vector<int>{5, 3, 4}));
  EXPECT_EQ(t.decode({1, 5, 7, 10}), "b ab");
}

// Runs `elutq ARGS` quietly and returns its exit status.
int run_cli(const std::string& args) {
  const int rc = std::system((std::string(ELUTQ_CLI_PATH) + " " + args + " >/dev/null 2>&1").c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TEST(TokenizeCli, BadInputGivesAnErrorExit) {
  const std::string model = test::shared_file("tokenizers/llama2-32k/tokenizer.model");
  ELUTQ_REQUIRE_FILE(model, "LLaMA-2 tokenizer.model");
  test::TempDir dir;
  std::ofstream(dir.file("empty.txt")).flush();
  std::ofstream(dir.file("bad.txt"), std::ios::binary) << "ok \xFF\xFE";
  std::ofstream(dir.file("bad.jsonl")) << "{\"text\": \"a\"}\n{\"nope\": 1}\n";
  const std::string spm = "tokenize --spm " + model;
  EXPECT_EQ(run_cli(spm + " -p hello"), 0);
  EXPECT_EQ(run_cli(spm + " --decode \"1 15043\""), 0);
  EXPECT_EQ(run_cli("tokenize -p hello"), 1);                        // no tokenizer
  EXPECT_EQ(run_cli(spm), 1);                                        // no text
  EXPECT_EQ(run_cli(spm + " -f " + dir.file("empty.txt")), 1);      // empty text
  EXPECT_EQ(run_cli(spm + " -f " + dir.file("bad.txt")), 1);        // invalid UTF-8
  EXPECT_EQ(run_cli(spm + " -f " + dir.file("bad.jsonl") + " --jsonl"), 1);
  EXPECT_EQ(run_cli(spm + " --decode \"1 x\""), 1);
  EXPECT_EQ(run_cli(spm + " --decode \"1 99999\""), 1);           // outside the vocabulary
  EXPECT_EQ(run_cli("tokenize --spm " + dir.file("missing.model") + " -p hi"), 1);
  EXPECT_EQ(run_cli(spm + " -p hi --max-docs 0"), 2);                // CLI11 range check
}

TEST(TokenizerSpm, Llama2RoundTripsEveryWikitextLine) {
  const std::string model = test::shared_file("tokenizers/llama2-32k/tokenizer.model");
  const std::string text = test::shared_file("data/wikitext-2-raw/wiki.test.raw");
  ELUTQ_REQUIRE_FILE(model, "LLaMA-2 tokenizer.model");
  ELUTQ_REQUIRE_FILE(text, "WikiText-2 test");
  Tokenizer t(load_sentencepiece_model(model));
  std::ifstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ASSERT_EQ(t.decode(t.encode(line)), line) << "line " << n;
    ++n;
  }
  EXPECT_GT(n, 2000);
}

}  // namespace
}  // namespace elutq
