// TextStream: characters split across byte tokens come out whole, invalid bytes become U+FFFD,
// the SentencePiece dummy-prefix space of the text's first token is dropped as decode() does, and
// streamed text equals Tokenizer::decode on valid sequences.
#include <gtest/gtest.h>

#include <cstdio>

#include "generate/text_stream.h"
#include "runtime/open_model.h"
#include "tensor/model_source.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace elutq {
namespace {

// A small SentencePiece vocabulary: <unk> <s> </s>, the 256 byte tokens, then a few pieces.
Tokenizer small_spm() {
  TokenizerSpec s;
  s.kind = TokenizerKind::SentencePieceBPE;
  s.tokens = {"<unk>", "<s>", "</s>"};
  s.types = {TokenType::Unknown, TokenType::Control, TokenType::Control};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    s.tokens.push_back(buf);
    s.types.push_back(TokenType::Byte);
  }
  for (const char* p : {"\xE2\x96\x81Hello", "\xE2\x96\x81world", "!"}) {
    s.tokens.push_back(p);
    s.types.push_back(TokenType::Normal);
  }
  s.scores.assign(s.tokens.size(), 0.f);
  s.unk_id = 0;
  s.bos_id = 1;
  s.eos_id = 2;
  s.add_bos = true;
  return Tokenizer(s);
}
constexpr int kByte0 = 3;
constexpr int kHello = 259, kWorld = 260, kBang = 261;

TEST(TextStream, MultiByteCharacterWaitsForItsLastByte) {
  const Tokenizer tok = small_spm();
  TextStream st(tok, false);
  // "é" = C3 A9, "€" = E2 82 AC, "😀" = F0 9F 98 80
  EXPECT_EQ(st.push(kByte0 + 0xC3), "");
  EXPECT_EQ(st.push(kByte0 + 0xA9), "\xC3\xA9");
  EXPECT_EQ(st.push(kByte0 + 0xE2), "");
  EXPECT_EQ(st.push(kByte0 + 0x82), "");
  EXPECT_EQ(st.push(kByte0 + 0xAC), "\xE2\x82\xAC");
  for (int b : {0xF0, 0x9F, 0x98}) EXPECT_EQ(st.push(kByte0 + b), "");
  EXPECT_EQ(st.push(kByte0 + 0x80), "\xF0\x9F\x98\x80");
  EXPECT_EQ(st.finish(), "");
}

TEST(TextStream, InvalidBytesBecomeReplacementCharacters) {
  const Tokenizer tok = small_spm();
  TextStream st(tok, false);
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(st.push_bytes("\x80" "a"), fffd + "a");          // stray continuation byte
  EXPECT_EQ(st.push_bytes("\xC3" "b"), fffd + "b");          // lead byte cut by ASCII
  EXPECT_EQ(st.push_bytes("\xED\xA0\x80"), fffd + fffd + fffd);  // surrogate: bad 2nd byte
  EXPECT_EQ(st.push_bytes("\xE2\x82"), "");                  // held back...
  EXPECT_EQ(st.finish(), fffd);                              // ...and flushed as one U+FFFD
}

TEST(TextStream, FirstTokenSpaceDroppedOnlyAtTextStart) {
  const Tokenizer tok = small_spm();
  TextStream start(tok, true);
  EXPECT_EQ(start.push(1), "");  // BOS: control, no text, does not consume the strip
  EXPECT_EQ(start.push(kHello), "Hello");
  EXPECT_EQ(start.push(kWorld), " world");
  TextStream cont(tok, false);
  EXPECT_EQ(cont.push(kHello), " Hello");
}

TEST(TextStream, EqualsDecodeOnValidSequences) {
  const Tokenizer tok = small_spm();
  const std::vector<int> ids = {1, kHello, kByte0 + 0xE2, kByte0 + 0x82, kByte0 + 0xAC, kWorld,
                                kBang, kByte0 + 0xC3, kByte0 + 0xA9, 2};
  TextStream st(tok, true);
  std::string streamed;
  for (int id : ids) streamed += st.push(id);
  streamed += st.finish();
  EXPECT_EQ(streamed, tok.decode(ids));
}

TEST(TextStream, RealSmolLM2ByteLevelPiecesMatchDecode) {
  const std::string path = test::smollm2_path();
  ELUTQ_REQUIRE_FILE(path, "SmolLM2 GGUF");
  auto src = open_model(path);
  const Tokenizer tok(src->tokenizer());
  const std::string text = "Caf\xC3\xA9 \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x98\x80 na\xC3\xAFve\n";
  const std::vector<int> ids = tok.encode(text, false);
  TextStream st(tok, false);
  std::string streamed;
  for (int id : ids) {
    const std::string piece = st.push(id);
    streamed += piece;
  }
  streamed += st.finish();
  EXPECT_EQ(streamed, text);
  EXPECT_EQ(streamed, tok.decode(ids));
}

}  // namespace
}  // namespace elutq
