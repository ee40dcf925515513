// Fitters on real weights: every linear layer of the llama2.c stories260K checkpoint, quantized
// calibration-free. Asserts the per-layer guarantee (our HLQ fit is never worse than clip-searched
// RTN in weight error) and prints the mean relative weight error of each fit procedure, the
// measurement behind the default fit options. Measured (mean over the 35 layers, rel. weight
// error): w2g64 RTN-clip 0.1107, paper alternating 0.1023, paper gradient 0.1286, ours
// alternating 0.0989, ours gradient 0.0992; w3g64 0.0295 / 0.0276 / 0.0275 / 0.0254 / 0.0252.
// Ours alternating is the default: as good as ours gradient at a fraction of the time.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>

#include "quant/blockwise_quantizer.h"
#include "runtime/open_model.h"
#include "test_util.h"

namespace elutq {
namespace {

struct NullSink : QuantizedTensorSink {
  void add_quantized(const std::string&, const QuantizedMatrix&) override {}
  void add_unchanged(const TensorInfo&) override {}
};

TEST(QuantRealWeights, Stories260KFitsAgainstRtn) {
  const std::string path = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(path, "stories260K.bin");
  std::unique_ptr<ModelSource> m = open_model(path);
  struct Config {
    const char* label;
    QuantMethod method;
    HlqFitMethod fit;
    bool paper;
  };
  const Config configs[] = {
      {"rtn (clip search)", QuantMethod::Rtn, HlqFitMethod::Alternating, false},
      {"hlq paper alternating", QuantMethod::Hlq, HlqFitMethod::Alternating, true},
      {"hlq paper gradient", QuantMethod::Hlq, HlqFitMethod::Gradient, true},
      {"hlq ours alternating", QuantMethod::Hlq, HlqFitMethod::Alternating, false},
      {"hlq ours gradient", QuantMethod::Hlq, HlqFitMethod::Gradient, false},
  };
  for (auto [bits, group] : {std::pair{2, 64}}) {  // w3g64 also measured (numbers above); kept out for ASan time
    std::map<std::string, std::vector<double>> err;  // per config, per layer
    for (const Config& c : configs) {
      BlockwiseOptions opt;
      opt.layer.method = c.method;
      opt.layer.bits = bits;
      opt.layer.group = group;
      opt.layer.fit = c.fit;
      opt.layer.paper_fit = c.paper;
      NullSink sink;
      QuantReport rep = BlockwiseQuantizer(*m, opt).run(nullptr, sink);
      ASSERT_GT(rep.layers.size(), 0u);
      double mean = 0;
      for (const LayerReport& l : rep.layers) {
        err[c.label].push_back(l.rel_weight_error);
        mean += l.rel_weight_error / double(rep.layers.size());
      }
      std::printf("w%dg%d  %-24s mean rel weight error %.5f over %zu layers\n", bits, group,
                  c.label, mean, rep.layers.size());
    }
    const std::vector<double>& rtn = err["rtn (clip search)"];
    for (const char* ours : {"hlq ours alternating", "hlq ours gradient"})
      for (size_t i = 0; i < rtn.size(); ++i)
        EXPECT_LE(err[ours][i], rtn[i] * (1 + 1e-5)) << ours << " layer " << i;
  }
}

}  // namespace
}  // namespace elutq
