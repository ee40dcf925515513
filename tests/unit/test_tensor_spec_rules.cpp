// Per-tensor bits and group (--tensor-spec): parsing, first match wins, every refusal says what
// is wrong, and a mixed file stores each projection in its own format and runs, finetuning too.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "format/synthetic_model.h"
#include "quant/quantize_job.h"
#include "quant/tensor_spec_rules.h"
#include "runtime/open_model.h"
#include "tensor/quantized_matrix_codec.h"
#include "tensor/tensor_names.h"
#include "test_util.h"
#include "train/adamw.h"

namespace elutq {
namespace {

TEST(TensorSpecRules, ParsesWidthsAndTheFirstMatchingRuleDecides) {
  const TensorSpecRule a = parse_tensor_spec_rule("ffn_down=w3");
  EXPECT_EQ(a.bits, 3);
  EXPECT_FALSE(a.group.has_value());
  const TensorSpecRule b = parse_tensor_spec_rule("blk\\.(0|1)\\.=w4g64");
  EXPECT_EQ(b.bits, 4);
  EXPECT_EQ(b.group.value_or(-1), 64);
  EXPECT_EQ(parse_tensor_spec_rule("attn_v=w2g0").group.value_or(-1), 0);  // whole rows

  LayerQuantOptions base;
  base.bits = 2;
  base.group = 128;
  const std::vector<TensorSpecRule> rules = {b, a};
  const auto for_name = [&](const std::string& n) { return layer_options_for(base, rules, n); };
  EXPECT_EQ(for_name("blk.1.ffn_down.weight").bits, 4) << "the first rule wins";
  EXPECT_EQ(for_name("blk.1.ffn_down.weight").group, 64);
  EXPECT_EQ(for_name("blk.7.ffn_down.weight").bits, 3);
  EXPECT_EQ(for_name("blk.7.ffn_down.weight").group, 128) << "no group: the run's";
  EXPECT_EQ(for_name("blk.11.attn_q.weight").bits, 2) << "blk.11 is not blk.1.";
  EXPECT_EQ(tensor_spec_rules_text(rules), "blk\\.(0|1)\\.=w4g64;ffn_down=w3");
}

TEST(TensorSpecRules, RefusesWhatItCannotRead) {
  for (const char* bad : {"ffn_down", "=w3", "ffn_down=3", "ffn_down=w", "ffn_down=w3g",
                          "ffn_down=w3x", "ffn_down=w3g64k", "(=w3"}) {
    const std::string e = test::error_of([&] { parse_tensor_spec_rule(bad); });
    EXPECT_NE(e.find("--tensor-spec '" + std::string(bad) + "'"), std::string::npos) << e;
  }
}

class MixedFile : public ::testing::Test {
 protected:
  void SetUp() override {
    SyntheticModelOptions so;
    so.dim = 64;
    so.n_layers = 2;
    so.hidden_dim = 128;
    so.vocab_size = 300;
    so.n_heads = 4;
    so.n_kv_heads = 2;
    so.context = 64;
    so.seed = 3;
    model_ = dir_.file("tiny.gguf");
    write_synthetic_model(model_, so);
  }
  QuantizeJob job(const std::string& out) const {
    QuantizeJob j;
    j.source_path = model_;
    j.out_path = dir_.file(out);
    j.method = QuantMethod::Hlq;
    j.bits = 2;
    j.group = 32;
    j.n_threads = 2;
    return j;
  }
  test::TempDir dir_;
  std::string model_;
};

TEST_F(MixedFile, StoresEachProjectionInItsOwnFormatAndBitsAddUp) {
  QuantizeJob j = job("mixed.gguf");
  j.tensor_specs = {"blk\\.0\\.ffn_down=w4g16", "ffn_down=w3", "attn_v=w4"};
  const QuantizeResult r = run_quantize_job(j, open_model(model_));
  auto q = open_model(j.out_path);
  double bits = 0, weights = 0;
  for (int l = 0; l < 2; ++l)
    for (LinearSlot s : kAllLinearSlots) {
      const TensorInfo& t = *q->find(linear_weight_name(l, s));
      const QuantSpec spec = inspect_quantized_blob(t.data, t.nbytes).spec;
      const QuantSpec want{QuantKind::HLQ,
                           s == LinearSlot::Down ? (l == 0 ? 4 : 3) : s == LinearSlot::V ? 4 : 2,
                           s == LinearSlot::Down && l == 0 ? 16 : 32};
      EXPECT_EQ(spec.name(), want.name()) << t.name;
      const double n = double(t.shape[0] * t.shape[1]);
      bits += want.bits_per_weight(t.shape[1]) * n;
      weights += n;
    }
  EXPECT_NEAR(r.report.quantized_bits / double(r.report.quantized_weights), bits / weights, 1e-9);

  // A rule that names nothing, or an impossible width, is refused before anything is written.
  QuantizeJob typo = job("typo.gguf");
  typo.tensor_specs = {"ffn_dwn=w3"};
  const std::string e = test::error_of([&] { run_quantize_job(typo, open_model(model_)); });
  EXPECT_NE(e.find("matches no block projection"), std::string::npos) << e;
  QuantizeJob wide = job("wide.gguf");
  wide.tensor_specs = {"ffn_down=w5"};
  const std::string w = test::error_of([&] { run_quantize_job(wide, open_model(model_)); });
  EXPECT_NE(w.find("--tensor-spec 'ffn_down=w5'"), std::string::npos) << w;
  EXPECT_FALSE(std::filesystem::exists(typo.out_path));
  EXPECT_FALSE(std::filesystem::exists(wide.out_path));
}

// Finetuning trains each projection in its own format: a mixed hlq-ft run goes through Block-AP
// and E2E-QP and keeps every projection's format.
TEST_F(MixedFile, FinetunesAMixedFile) {
  QuantizeJob j = job("ft.gguf");
  j.method = QuantMethod::HlqGptq;
  j.tensor_specs = {"ffn_down=w3g16"};
  j.nsamples = 4;
  j.seqlen = 16;
  j.block_ap = BlockApOptions{};
  j.block_ap->epochs = 1;
  j.e2e_qp = E2eQpOptions{};
  j.mem_budget = "1G";
  const QuantizeResult r = run_quantize_job(j, open_model(model_));
  bool trained = false;
  for (const std::string& note : r.report.notes) trained |= note.find("e2e-qp:") != std::string::npos;
  EXPECT_TRUE(trained);
  auto q = open_model(j.out_path);
  const TensorInfo& down = *q->find(linear_weight_name(1, LinearSlot::Down));
  EXPECT_EQ(inspect_quantized_blob(down.data, down.nbytes).spec.name(), "hlq-w3g16");
  const TensorInfo& up = *q->find(linear_weight_name(1, LinearSlot::Up));
  EXPECT_EQ(inspect_quantized_blob(up.data, up.nbytes).spec.name(), "hlq-w2g32");
}

#ifdef ELUTQ_CLI_PATH
// The CLI takes the flag repeatedly, and a mixed file runs through the LUT kernels within 0.5% of
// its dequantized weights, as any HLQ file.
TEST(TensorSpecCli, MixedFileRunsThroughTheLutKernels) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  const std::string text = test::shared_file("data/tinystories/validation_head.txt");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  ELUTQ_REQUIRE_FILE(text, "TinyStories validation text");
  test::TempDir dir;
  const std::string out = dir.file("mixed.gguf");
  const test::CommandResult q = test::run_elutq(
      "quantize " + model + " " + out + " --method hlq-gptq --bits 2 --group 32 --calib " + text +
      " --nsamples 8 --seqlen 64 --tensor-spec ffn_down=w3 --tensor-spec attn_v=w4g16 -t 2");
  ASSERT_EQ(q.code, 0) << q.out;
  EXPECT_NE(q.out.find("hlq-w3g32"), std::string::npos) << q.out;
  EXPECT_NE(q.out.find("hlq-w4g16"), std::string::npos) << q.out;
  const auto ppl = [&](const char* kernel) {
    const test::CommandResult r = test::run_elutq("perplexity -m " + out + " -f " + text +
                                                  " -c 64 --max-windows 8 -t 2 -q --kernel " + kernel);
    EXPECT_EQ(r.code, 0) << r.out;
    const size_t at = r.out.rfind("ppl ");
    return at == std::string::npos ? -1.0 : std::stod(r.out.substr(at + 4));
  };
  const double lut = ppl("lut"), deq = ppl("dequant");
  ASSERT_GT(deq, 1.0);
  EXPECT_LT(std::fabs(lut - deq) / deq, 0.005) << "LUT " << lut << " vs dequant " << deq;
}
#endif

}  // namespace
}  // namespace elutq
