// `elutq quantize` end to end: every bad option gives one clear error line, a non-zero exit and no
// output file; stories260K quantized with calibration (and data-free) loads in `elutq perplexity`
// with a perplexity between the fp32 model's and a broken model's.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "test_util.h"

namespace elutq {
namespace {

using test::CommandResult;
CommandResult run_cli(const std::string& args) { return test::run_elutq(args); }

int count_lines_with(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

// "ppl 12.3456 ..." -> 12.3456, or NaN.
double parse_ppl(const std::string& out) {
  const size_t p = out.rfind("ppl ");
  return p == std::string::npos ? NAN : std::atof(out.c_str() + p + 4);
}

TEST(QuantizeCli, BadOptionsGiveOneErrorLineAndNoFile) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  test::TempDir dir;
  const std::string out = dir.file("out.gguf");
  const std::string base = "quantize " + model + " " + out + " ";
  const std::vector<std::string> bad = {
      "--bits 0",
      "--bits 9",
      "--method hlq --bits 5",
      "--method foo",
      "--group -1",
      "--fit newton",
      "--variant mine",
      "--method gptq --nsamples 0",
      "--method gptq --seqlen 1",
      "--mem-budget lots",
      "--mem-budget 0",
      "--method gptq --calib " + dir.file("missing.txt"),
      "--method rtn --awq-clip",
      "--method gptq --percdamp -1",
      "--awq-grid 0 --method awq",
      "--output-bits 9",
      "--output-group -3",
      "--method hlq --output-bits 5",
      "--threads -2",
  };
  for (const std::string& args : bad) {
    SCOPED_TRACE(args);
    const CommandResult r = run_cli(base + args);
    EXPECT_NE(r.code, 0) << r.out;
    EXPECT_EQ(count_lines_with(r.out, "error"), 1) << r.out;
    EXPECT_EQ(r.out.rfind("elutq: error: ", 0), 0u) << r.out;
    EXPECT_FALSE(std::filesystem::exists(out));
    EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "leftover files after: " << args;
  }
  // Missing or unreadable input.
  CommandResult r = run_cli("quantize " + dir.file("nope.bin") + " " + out);
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(r.out.rfind("elutq: error: ", 0), 0u) << r.out;
  r = run_cli("quantize " + model);
  EXPECT_NE(r.code, 0);
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST(QuantizeCli, Stories260KCalibratedAndDataFreeRunInPerplexity) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  const std::string text = test::shared_file("data/tinystories/validation_head.txt");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  ELUTQ_REQUIRE_FILE(text, "TinyStories text");
  test::TempDir dir;
  const std::string ppl_args = " -f " + text + " -c 256 --max-windows 24 -q -t 1";
  const double fp = parse_ppl(run_cli("perplexity -m " + model + ppl_args).out);
  ASSERT_TRUE(std::isfinite(fp));

  // HLQ-GPTQ w2g32 calibrated on the text (the calibration file is not the point here).
  const std::string out = dir.file("hlq-gptq.gguf");
  CommandResult r = run_cli("quantize " + model + " " + out +
                            " --method hlq-gptq --bits 2 --group 32 -t 1 -q --calib " + text +
                            " --nsamples 8 --seqlen 128");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("summary: bpw 3.5000"), std::string::npos) << r.out;  // 2 + 16*3/32
  EXPECT_NE(r.out.find("blk.4.ffn_down.weight"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("peak RSS"), std::string::npos);
  ASSERT_TRUE(std::filesystem::exists(out));
  EXPECT_FALSE(std::filesystem::exists(out + ".elutq-work")) << "work directory left behind";
  const double q = parse_ppl(run_cli("perplexity -m " + out + ppl_args).out);
  EXPECT_GT(q, fp);
  EXPECT_LT(q, 8.0 * fp) << "2-bit HLQ-GPTQ of a 260K model: far from broken (vocab 512)";

  // Data-free GPTQ: sequences sampled from the model itself.
  const std::string out2 = dir.file("gptq-df.gguf");
  r = run_cli("quantize " + model + " " + out2 +
              " --method gptq --bits 4 --group 32 -t 1 -q --nsamples 4 --seqlen 64");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("sampling 4 x 64 tokens from the model"), std::string::npos) << r.out;
  const double q4 = parse_ppl(run_cli("perplexity -m " + out2 + ppl_args).out);
  EXPECT_GT(q4, fp * 0.999);
  EXPECT_LT(q4, 1.25 * fp) << "4-bit GPTQ should be close to fp32";
}

// stories260K ties its head to the embedding: --output-bits gives the file its own quantized
// output.weight in the head's format, the model loads untied, and a 4-bit head costs little
// perplexity on top of the 2-bit body while a 2-bit head costs more.
TEST(QuantizeCli, TiedHeadGetsItsOwnQuantizedCopy) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  const std::string text = test::shared_file("data/tinystories/validation_head.txt");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  ELUTQ_REQUIRE_FILE(text, "TinyStories text");
  test::TempDir dir;
  const std::string ppl_args = " -f " + text + " -c 256 --max-windows 24 -q -t 1";
  const std::string base = " --method hlq --bits 2 --group 32 -q -t 1";
  auto quantize = [&](const std::string& name, const std::string& extra) {
    const std::string out = dir.file(name);
    const CommandResult r = run_cli("quantize " + model + " " + out + base + extra);
    EXPECT_EQ(r.code, 0) << r.out;
    return out;
  };
  const std::string body = quantize("body.gguf", "");
  const std::string head4 = quantize("head4.gguf", " --output-bits 4");
  const std::string head2 = quantize("head2.gguf", " --quantize-output");

  const CommandResult info = run_cli("inspect -m " + head4);
  ASSERT_EQ(info.code, 0) << info.out;
  EXPECT_NE(info.out.find("tied output:    no"), std::string::npos) << info.out;
  const size_t at = info.out.find("\noutput.weight ");  // not blk.N.attn_output.weight
  ASSERT_NE(at, std::string::npos) << info.out;
  EXPECT_NE(info.out.find("hlq-w4g32", at), std::string::npos) << info.out;
  const std::string body_info = run_cli("inspect -m " + body).out;
  EXPECT_NE(body_info.find("tied output:    yes"), std::string::npos)
      << "without --quantize-output the head stays tied\n" << body_info;

  const double p_body = parse_ppl(run_cli("perplexity -m " + body + ppl_args).out);
  const double p4 = parse_ppl(run_cli("perplexity -m " + head4 + ppl_args).out);
  const double p2 = parse_ppl(run_cli("perplexity -m " + head2 + ppl_args).out);
  ASSERT_TRUE(std::isfinite(p_body) && std::isfinite(p4) && std::isfinite(p2));
  EXPECT_LT(p4, 1.10 * p_body) << "a 4-bit head adds little to a 2-bit body";
  EXPECT_GT(p2, p4) << "a 2-bit head should cost more than a 4-bit one";
}

}  // namespace
}  // namespace elutq
