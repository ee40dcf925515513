// K-quant rows against int8 activations (kernels/kquant_gemm.h) beside the rest of the library (the
// kernels alone, every ISA against the scalar one: test_kernel_kquant.cpp): the scalar reference
// equals the product of the dequantized weights (format/dequant, itself checked against the gguf
// package) and the dequantized activations within fp32 rounding, so it reads the blocks as GGML
// lays them out; StoredLinear runs these types within the activations' rounding of the fp32
// layer, each token independent of the others in a forward; a model stored in K-quants, or in
// Q8_0 where the CPU has the rows16 kernel, runs on them near its widened fp32 form.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "format/dequant.h"
#include "isa_test_util.h"
#include "kernels/gemv.h"
#include "kquant_test_util.h"
#include "model/model.h"
#include "model/stored_linear.h"
#include "runtime/quantized_linear_factory.h"
#include "tensor/tensor_info.h"
#include "test_forward_model.h"

namespace elutq {
namespace {

using test::Acts;
using test::kTypes;
using test::quantize;
using test::random_rows;
using test::random_x;

using test::view_tensor;

TEST(KQuantGemm, ScalarEqualsDequantizedWeightsTimesDequantizedActivations) {
  const int64_t rows = 7, n = 768;
  const int tokens = 3;
  const std::vector<float> x = random_x(tokens, n, 5);
  const Acts a = quantize(x, tokens, n);
  for (DType t : kTypes) {
    const std::vector<uint8_t> w = random_rows(t, rows, n, 11);
    std::vector<float> wf(size_t(rows * n));
    tensor_rows_to_f32(view_tensor(t, w, rows, n), 0, rows, wf.data());
    std::vector<float> y(size_t(tokens * rows));
    kern::KQuantGemmFn k = kquant_kernel(isa_kernels(Isa::Scalar), t);
    k(w.data(), a.view(n, tokens), 0, rows, y.data(), rows);
    for (int tk = 0; tk < tokens; ++tk)
      for (int64_t r = 0; r < rows; ++r) {
        double exact = 0, mag = 0;
        for (int64_t c = 0; c < n; ++c) {
          const double xd = double(a.q[size_t(tk * n + c)]) * a.d[size_t((tk * n + c) / kQK)];
          exact += double(wf[size_t(r * n + c)]) * xd;
          mag += std::fabs(double(wf[size_t(r * n + c)]) * xd);
        }
        EXPECT_NEAR(y[size_t(tk * rows + r)], exact, 2e-6 * mag + 1e-30)
            << dtype_name(t) << " token " << tk << " row " << r;
      }
  }
}

TEST(KQuantGemm, StoredLinearRunsKQuantsNearTheFp32LayerEachTokenAlone) {
  const int64_t rows = 37, n = 1024;
  const int tokens = 6;
  const std::vector<float> x = random_x(tokens, n, 8);
  ThreadPool pool(2);
  for (DType t : kTypes) {
    const std::vector<uint8_t> w = random_rows(t, rows, n, 21);
    const TensorInfo ti = view_tensor(t, w, rows, n);
    ASSERT_TRUE(StoredLinear::supports(ti));
    StoredLinear lin(ti);
    EXPECT_NE(lin.describe().find("int8 activations"), std::string::npos) << lin.describe();
    EXPECT_EQ(lin.weight_bytes(), w.size());
    std::vector<float> y(size_t(tokens * rows));
    lin.forward(x.data(), tokens, y.data(), pool);
    std::vector<float> wf(size_t(rows * n));
    tensor_rows_to_f32(ti, 0, rows, wf.data());
    for (int tk = 0; tk < tokens; ++tk) {
      std::vector<float> alone(static_cast<size_t>(rows));
      lin.forward(x.data() + tk * n, 1, alone.data(), pool);
      ASSERT_EQ(std::memcmp(alone.data(), y.data() + tk * rows, size_t(rows) * 4), 0) << tk;
      for (int64_t r = 0; r < rows; ++r) {
        // Each activation moves by at most half its block's step, d / 2 = max|x| / 254.
        double exact = 0, bound = 0;
        for (int64_t c = 0; c < n; ++c) {
          const int64_t b0 = tk * n + c / kQK * kQK;
          float amax = 0.0f;
          for (int k = 0; k < kQK; ++k) amax = std::max(amax, std::fabs(x[size_t(b0 + k)]));
          exact += double(wf[size_t(r * n + c)]) * x[size_t(tk * n + c)];
          bound += std::fabs(double(wf[size_t(r * n + c)])) *
                   (amax / 254.0 + 1e-6 * std::fabs(x[size_t(tk * n + c)]));
        }
        EXPECT_NEAR(y[size_t(tk * rows + r)], exact, bound)
            << dtype_name(t) << " " << tk << " " << r;
      }
    }
  }
  // Rows that are not a multiple of 256 long stay off these kernels.
  const std::vector<uint8_t> w = random_rows(DType::Q4_K, 2, 256, 1);
  TensorInfo odd = view_tensor(DType::Q4_K, w, 2, 256);
  odd.shape = {4, 128};
  EXPECT_FALSE(StoredLinear::supports(odd));
}

TEST(KQuantGemm, LayersOnOneInputRunTogetherAsEachAlone) {
  const int64_t n = 512;
  const int tokens = 3;
  const std::vector<float> x = random_x(tokens, n, 12);
  const std::vector<uint8_t> w0 = random_rows(DType::Q4_K, 37, n, 1),
                             w1 = random_rows(DType::Q6_K, 8, n, 2),
                             w2 = random_rows(DType::Q5_K, 5, n, 3);
  const StoredLinear l0(view_tensor(DType::Q4_K, w0, 37, n)),
      l1(view_tensor(DType::Q6_K, w1, 8, n)), l2(view_tensor(DType::Q5_K, w2, 5, n));
  ThreadPool pool(2);
  const Linear* layers[] = {&l0, &l1, &l2};
  std::vector<float> y0(size_t(tokens * 37)), y1(size_t(tokens * 8)), y2(size_t(tokens * 5));
  float* ys[] = {y0.data(), y1.data(), y2.data()};
  ASSERT_TRUE(l0.forward_together(layers, x.data(), tokens, ys, pool));
  for (int i = 0; i < 3; ++i) {
    const Linear& l = *layers[i];
    std::vector<float> alone(size_t(tokens * l.out_features()));
    l.forward(x.data(), tokens, alone.data(), pool);
    EXPECT_EQ(std::memcmp(alone.data(), ys[i], alone.size() * 4), 0) << i;
  }
  // A layer of another stored type cannot join them.
  std::vector<uint8_t> q8(size_t(4 * n / 32 * 34), 0);
  TensorInfo t8 = view_tensor(DType::Q8_0, q8, 4, n);
  const StoredLinear l8(t8);
  const Linear* mixed[] = {&l0, &l8};
  std::vector<float> y8(size_t(tokens * 4));
  float* ys8[] = {y0.data(), y8.data()};
  EXPECT_FALSE(l0.forward_together(mixed, x.data(), tokens, ys8, pool));
}

// Random Q8_0 rows: fp16 scales like the K-quants', codes over the whole int8 range.
std::vector<uint8_t> random_q8_0_rows(int64_t rows, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(1e-4f, 3e-3f);
  std::vector<uint8_t> w(size_t(rows * n / 32 * 34));
  for (auto& v : w) v = uint8_t(byte(rng));
  for (size_t off = 0; off < w.size(); off += 34) {
    const uint16_t d = f32_to_fp16(scale(rng));
    std::memcpy(&w[off], &d, 2);
  }
  return w;
}

// A tiny model whose projections and embedding are stored as a llama.cpp file would store them
// (by default Q4_K, ffn_down Q6_K; random blocks), norms and biases fp32.
class KQuantSource : public ModelSource {
 public:
  explicit KQuantSource(const ModelConfig& c, DType main = DType::Q4_K, DType down = DType::Q6_K)
      : base_(c, 3) {
    uint32_t seed = 40;
    for (const std::string& name : base_.tensor_names()) {
      TensorInfo t = *base_.find(name);
      if (t.shape.size() == 2 && t.shape[1] % kQK == 0) {
        const DType dt = name.find("ffn_down") != std::string::npos ? down : main;
        bytes_[name] = dt == DType::Q8_0 ? random_q8_0_rows(t.shape[0], t.shape[1], ++seed)
                                         : random_rows(dt, t.shape[0], t.shape[1], ++seed);
        t.dtype = dt;
        t.data = bytes_[name].data();
        t.nbytes = bytes_[name].size();
      }
      info_[name] = t;
    }
  }
  const ModelConfig& config() const override { return base_.config(); }
  const TokenizerSpec& tokenizer() const override { return base_.tokenizer(); }
  std::vector<std::string> tensor_names() const override { return base_.tensor_names(); }
  const TensorInfo* find(const std::string& name) const override {
    auto it = info_.find(name);
    return it == info_.end() ? nullptr : &it->second;
  }
  std::string format_name() const override { return "memory k-quant"; }
  // Which tensors the model let go of (a mapped file would drop their pages).
  void release_pages(const TensorInfo& t) const override { released.push_back(t.name); }
  mutable std::vector<std::string> released;

 private:
  test::MemorySource base_;
  std::map<std::string, std::vector<uint8_t>> bytes_;
  std::map<std::string, TensorInfo> info_;
};

// A Qwen2-shaped model (biases on q/k/v) whose rows are 256 and 512 long, as the K-quants need.
ModelConfig small_qwen2() {
  ModelConfig c = test::tiny("qwen2");
  c.dim = 256;
  c.hidden_dim = 512;
  c.head_dim = 64;
  c.vocab_size = 64;
  c.attn_bias = true;
  return c;
}

// Options of the two models each test compares: projections on `factory` (none: widened to fp32).
ModelOptions two_threads(LinearFactory factory = nullptr) {
  ModelOptions o;
  o.n_threads = 2;
  o.max_ctx = 32;
  o.linear_factory = std::move(factory);
  return o;
}

// The logits of every position of one 12-token prompt.
std::vector<float> prompt_logits(Model& m, const ModelConfig& c) {
  const std::vector<int> ids = {1, 7, 3, 60, 12, 5, 9, 33, 2, 41, 8, 19};
  const int n = int(ids.size());
  std::vector<float> h(size_t(n * c.dim)), logits(size_t(n * c.vocab_size));
  m.forward(ids.data(), n, 0, h.data());
  m.logits(h.data(), n, logits.data());
  return logits;
}

TEST(KQuantGemm, AModelStoredInKQuantsRunsOnThemNearItsWidenedFp32Form) {
  const ModelConfig c = small_qwen2();
  const KQuantSource src(c);
  const LinearFactory native = linear_factory_for(src, KernelChoice::Lut);
  ASSERT_TRUE(native) << "a file with K-quant projections gets the stored-type factory";
  EXPECT_FALSE(linear_factory_for(src, KernelChoice::Dequant)) << "--kernel dequant widens it";
  Model a(src, two_threads(native)), b(src, two_threads());
  EXPECT_NE(a.linear(0, LinearSlot::Down).describe().find("q6_k"), std::string::npos);
  EXPECT_NE(a.linear(1, LinearSlot::Q).describe().find("q4_k"), std::string::npos);
  EXPECT_NE(a.output().describe().find("int8 activations"), std::string::npos);
  const std::vector<float> la = prompt_logits(a, c), lb = prompt_logits(b, c);
  // Every product rounds its activations to int8 (a relative error near 0.3 % per product, more
  // through 2 blocks and the head): close in direction, far from exact.
  double dot = 0, na = 0, nb2 = 0, maxdiff = 0;
  for (size_t i = 0; i < la.size(); ++i) {
    dot += double(la[i]) * lb[i];
    na += double(la[i]) * la[i];
    nb2 += double(lb[i]) * lb[i];
    maxdiff = std::max(maxdiff, std::fabs(double(la[i]) - lb[i]));
  }
  EXPECT_GT(dot / std::sqrt(na * nb2), 0.999);
  EXPECT_GT(maxdiff, 0.0) << "the integer path ran";
}

// Q8_0 projections (a llama.cpp Q8_0 file) run on the rows16 kernel against int16 activations
// where the CPU has one (AVX2, AVX-512, NEON), and are widened to fp32 elsewhere; either way near the widened form,
// and far closer than the int8 K-quant path (a relative 1.5e-5 per product).
TEST(KQuantGemm, AModelStoredInQ8_0RunsOnTheRows16KernelWhereThereIsOne) {
  const ModelConfig c = small_qwen2();
  const KQuantSource src(c, DType::Q8_0, DType::Q8_0);
  const LinearFactory native = linear_factory_for(src, KernelChoice::Lut);
  if (!active_q8_rows16_kernel()) {
    EXPECT_FALSE(native) << "no integer Q8_0 kernel here: the model is widened";
    GTEST_SKIP() << "no rows16 Q8_0 kernel on this CPU (" << isa_name(active_isa()) << ")";
  }
  ASSERT_TRUE(native) << "a file with Q8_0 projections gets the stored-type factory";
  Model a(src, two_threads(native));
  // Each block projection ran on its re-laid copy, so its mapped bytes were let go; nothing else.
  EXPECT_EQ(src.released.size(), size_t(c.n_layers) * 7);
  for (const std::string& name : src.released) EXPECT_EQ(name.rfind("blk.", 0), 0u) << name;
  Model b(src, two_threads());
  EXPECT_NE(a.linear(1, LinearSlot::Down).describe().find("int16 activations"), std::string::npos)
      << a.linear(1, LinearSlot::Down).describe();
  const std::vector<float> la = prompt_logits(a, c), lb = prompt_logits(b, c);
  double maxdiff = 0, maxabs = 0;
  for (size_t i = 0; i < la.size(); ++i) {
    maxdiff = std::max(maxdiff, std::fabs(double(la[i]) - lb[i]));
    maxabs = std::max(maxabs, std::fabs(double(lb[i])));
  }
  EXPECT_LT(maxdiff, 1e-3 * maxabs) << "int16 activations: close to the fp32 form";
  EXPECT_GT(maxdiff, 0.0) << "the integer path ran";
}

}  // namespace
}  // namespace elutq
