// Malformed model files: each must give elutq::Error with a message naming the problem, never a
// crash (this suite also runs under AddressSanitizer + UndefinedBehaviorSanitizer).
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/model_source.h"
#include "test_util.h"

namespace elutq {
namespace {

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

template <typename T>
void append(std::string* s, T v) {
  s->append(reinterpret_cast<const char*>(&v), sizeof(v));
}

// Runs f, expects an Error, and checks that its message contains every one of the words.
template <typename F>
void expect_error(F f, const std::vector<std::string>& words) {
  try {
    f();
    ADD_FAILURE() << "no error thrown; expected one mentioning '" << words[0] << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& w : words) EXPECT_NE(msg.find(w), std::string::npos) << "message: " << msg;
  }
}

// A well-formed llama2.c checkpoint: dim 8, hidden 16, 1 layer, 2 heads, 1 kv head, vocab 4
// (negative: separate classifier when separate_classifier), seq_len 4.
std::string tiny_llama2c(bool separate_classifier) {
  const int32_t dim = 8, hidden = 16, layers = 1, heads = 2, kv = 1, vocab = 4, seq = 4;
  std::string s;
  for (int32_t v : {dim, hidden, layers, heads, kv, separate_classifier ? -vocab : vocab, seq})
    append(&s, v);
  const int kv_dim = kv * dim / heads, head = dim / heads;
  const size_t floats = vocab * dim + layers * (2 * dim + 2 * dim * dim + 2 * dim * kv_dim +
                                                3 * dim * hidden) +
                        dim + seq * head + (separate_classifier ? vocab * dim : 0);
  for (size_t i = 0; i < floats; ++i) append(&s, 0.01f * float(i % 97));
  return s;
}

// A llama2.c tokenizer.bin with the given pieces.
std::string tiny_tokenizer(const std::vector<std::string>& pieces) {
  std::string s;
  append(&s, int32_t(8));
  for (size_t i = 0; i < pieces.size(); ++i) {
    append(&s, -float(i));
    append(&s, int32_t(pieces[i].size()));
    s += pieces[i];
  }
  return s;
}

TEST(BadInput, Llama2cWellFormedTinyCheckpointLoads) {
  test::TempDir dir;
  for (bool separate : {false, true}) {
    write_file(dir.file("m.bin"), tiny_llama2c(separate));
    auto m = open_model(dir.file("m.bin"));
    EXPECT_EQ(m->config().tied_embeddings, !separate);
    EXPECT_EQ(m->find("output.weight") != nullptr, separate);
    EXPECT_EQ(m->tokenizer().kind, TokenizerKind::None);  // no tokenizer beside it
  }
}

TEST(BadInput, Llama2cTruncatedCheckpoint) {
  test::TempDir dir;
  std::string bytes = tiny_llama2c(false);
  write_file(dir.file("m.bin"), bytes.substr(0, bytes.size() - 4));
  expect_error([&] { open_model(dir.file("m.bin")); }, {"m.bin", "expected", "bytes"});
  write_file(dir.file("m.bin"), bytes + "xxxx");
  expect_error([&] { open_model(dir.file("m.bin")); }, {"expected", "bytes"});
  write_file(dir.file("m.bin"), bytes.substr(0, 10));
  expect_error([&] { open_model(dir.file("m.bin")); }, {"too small"});
  write_file(dir.file("m.bin"), "");
  expect_error([&] { open_model(dir.file("m.bin")); }, {"too small"});
}

TEST(BadInput, Llama2cHeaderOutOfRange) {
  test::TempDir dir;
  std::string bytes = tiny_llama2c(false);
  int32_t bad = -3;
  std::memcpy(bytes.data() + 8, &bad, 4);  // n_layers
  write_file(dir.file("m.bin"), bytes);
  expect_error([&] { open_model(dir.file("m.bin")); }, {"n_layers", "-3"});
  bytes = tiny_llama2c(false);
  bad = 3;
  std::memcpy(bytes.data() + 16, &bad, 4);  // n_kv_heads 3 does not divide 2 heads
  write_file(dir.file("m.bin"), bytes);
  expect_error([&] { open_model(dir.file("m.bin")); }, {"n_kv_heads"});
  bytes = tiny_llama2c(false);
  bad = 0x7fffffff;
  std::memcpy(bytes.data(), &bad, 4);  // absurd dim
  write_file(dir.file("m.bin"), bytes);
  expect_error([&] { open_model(dir.file("m.bin")); }, {"dim", "out of range"});
}

TEST(BadInput, Llama2cWrongTokenizer) {
  test::TempDir dir;
  write_file(dir.file("m.bin"), tiny_llama2c(false));
  // The right one loads.
  write_file(dir.file("tokenizer.bin"), tiny_tokenizer({"<unk>", "\n<s>\n", "\n</s>\n", " a"}));
  EXPECT_EQ(open_model(dir.file("m.bin"))->tokenizer().tokens[3], "\xE2\x96\x81" "a");
  // Too few tokens for the model (another model's vocabulary, or truncated).
  write_file(dir.file("tokenizer.bin"), tiny_tokenizer({"<unk>", "<s>", "</s>"}));
  expect_error([&] { open_model(dir.file("m.bin")); }, {"tokenizer.bin", "ends"});
  // Too many.
  write_file(dir.file("tokenizer.bin"), tiny_tokenizer({"<unk>", "<s>", "</s>", "a", "b"}));
  expect_error([&] { open_model(dir.file("m.bin")); }, {"tokenizer.bin", "more than"});
  // A piece longer than max_token_length / a negative length.
  write_file(dir.file("tokenizer.bin"), tiny_tokenizer({"<unk>", "<s>", "</s>", "123456789"}));
  expect_error([&] { open_model(dir.file("m.bin")); }, {"token 3", "length"});
  // Not a tokenizer at all: the checkpoint itself given as the tokenizer.
  expect_error([&] { open_model(dir.file("m.bin"), dir.file("m.bin")); }, {"max_token_length"});
  write_file(dir.file("tokenizer.bin"), "ab");
  expect_error([&] { open_model(dir.file("m.bin")); }, {"tokenizer.bin", "ends"});
}

TEST(BadInput, UnknownModelKind) {
  test::TempDir dir;
  write_file(dir.file("m.txt"), "hello");
  expect_error([&] { open_model(dir.file("m.txt")); }, {"cannot tell"});
  expect_error([&] { open_model(dir.file("absent.bin")); }, {"does not exist"});
  expect_error([&] { open_model(dir.path()); }, {"config.json"});
}

}  // namespace
}  // namespace elutq
