// LutLinear (model/lut_linear.h) behind the runtime's Linear interface: same numbers as the
// kernel call, right shapes and description. (Host build only — the ARM kernel build has no
// model/ sources, hence the _cli suffix it filters out.)
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/lut_matmul.h"
#include "model/dense_linear.h"
#include "model/lut_linear.h"

namespace elutq {
namespace {

// Random codes and fp16 parameters for a Uniform / HLQ format.
QuantizedMatrix random_matrix(const char* format, int64_t rows, int64_t cols, std::mt19937& rng) {
  QuantizedMatrix q;
  q.spec = parse_quant_spec(format);
  q.rows = rows;
  q.cols = cols;
  q.codes.resize(size_t(rows * cols));
  for (auto& c : q.codes) c = uint8_t(rng() & ((1u << q.spec.bits) - 1));
  q.params.resize(size_t(rows * q.spec.groups_per_row(cols) * q.spec.params_per_group()));
  for (auto& p : q.params) p = 0.01f * float(rng() % 100);
  round_params_to_fp16(q.params);
  return q;
}

TEST(LutLinear, ForwardIsTheLutGemm) {
  std::mt19937 rng(3);
  const QuantizedMatrix q = random_matrix("hlq-w2g64", 45, 192, rng);
  std::unique_ptr<LutLinear> lin = LutLinear::from_quantized(q);
  EXPECT_EQ(lin->in_features(), 192);
  EXPECT_EQ(lin->out_features(), 45);
  EXPECT_NE(lin->describe().find("hlq-w2g64 45x192"), std::string::npos) << lin->describe();
  std::vector<float> x(size_t(3 * q.cols));
  for (auto& v : x) v = float(int(rng() % 200) - 100) / 50.0f;
  std::vector<float> y(size_t(3 * q.rows)), want(y.size());
  ThreadPool pool(2);
  const Linear& as_linear = *lin;
  as_linear.forward(x.data(), 3, y.data(), pool);
  lut_gemm(lin->packed(), x.data(), 3, want.data(), nullptr);
  EXPECT_EQ(y, want);
  EXPECT_NE(lin->describe().find("int8 tables"), std::string::npos) << lin->describe();

  // int16 tables reach the kernels through the layer.
  std::unique_ptr<LutLinear> wide = LutLinear::from_quantized(q, LutTables::Int16);
  EXPECT_NE(wide->describe().find("int16 tables"), std::string::npos) << wide->describe();
  static_cast<const Linear&>(*wide).forward(x.data(), 3, y.data(), pool);
  lut_gemm(wide->packed(), x.data(), 3, want.data(), nullptr, LutTables::Int16);
  EXPECT_EQ(y, want);

  // auto (the tools' default) settles on wide tables for this 2-bit layer when the layer is made:
  // int12 where AVX2 runs it, int16 on the other ISAs.
  std::unique_ptr<LutLinear> automatic = LutLinear::from_quantized(q, LutTables::Auto);
  const char* wide_name = active_isa() == Isa::Avx2 ? "int12 tables" : "int16 tables";
  EXPECT_NE(automatic->describe().find(wide_name), std::string::npos) << automatic->describe();
}

// A layer over a file's bytes (a view) on every ISA this machine runs: AVX2 re-lays a copy of the
// units once, the others use the bytes in place; all give the scalar reference's numbers.
TEST(LutLinear, EveryIsaOnAViewMatchesScalar) {
  std::mt19937 rng(5);
  const QuantizedMatrix q = random_matrix("hlq-w3g128", 70, 300, rng);
  const PackedMatrix file = PackedMatrix::pack(q);
  std::vector<float> x(size_t(2 * q.cols));
  for (auto& v : x) v = float(int(rng() % 200) - 100) / 50.0f;
  std::vector<float> want(size_t(2 * q.rows)), y(want.size());
  lut_gemm_isa(Isa::Scalar, file, x.data(), 2, want.data(), nullptr);
  ThreadPool pool(2);
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon}) {
    if (!isa_available(isa)) continue;
    LutLinear lin(PackedMatrix::view(file.data(), file.size_bytes()), isa);
    EXPECT_EQ(lin.packed().layout(), lut_unit_layout(isa)) << isa_name(isa);
    EXPECT_EQ(lin.packed().data() == file.data(), lut_unit_layout(isa) == UnitLayout::Tables4)
        << isa_name(isa);
    for (int64_t n : {int64_t(1), int64_t(2)}) {
      std::fill(y.begin(), y.end(), -1.0f);
      lin.forward(x.data(), n, y.data(), pool);
      EXPECT_TRUE(std::equal(y.begin(), y.begin() + n * q.rows, want.begin()))
          << isa_name(isa) << " n=" << n;
    }
  }
}

// A block's Q/K/V (and gate/up) go through forward_same_input: LUT layers that share their table
// shape run as one job, anything else one by one; the outputs are those of each layer alone.
TEST(LutLinear, LayersOnOneInputGiveEachLayersOwnOutput) {
  std::mt19937 rng(9);
  const QuantizedMatrix qq = random_matrix("hlq-w3g64", 70, 192, rng),
                        qk = random_matrix("hlq-w3g64", 33, 192, rng),
                        qv = random_matrix("uniform-w4g64", 40, 192, rng),
                        q2 = random_matrix("hlq-w2g64", 40, 192, rng);
  auto q = LutLinear::from_quantized(qq, LutTables::Auto),
       k = LutLinear::from_quantized(qk, LutTables::Auto),
       v = LutLinear::from_quantized(qv, LutTables::Auto),
       two_bit = LutLinear::from_quantized(q2, LutTables::Auto);  // wide tables: not shared
  auto weights = std::make_shared<std::vector<float>>(size_t(40 * 192));
  for (auto& w : *weights) w = float(int(rng() % 200) - 100) / 1000.0f;
  const DenseLinear dense(weights, 40, 192);
  const int64_t n = 3;
  std::vector<float> x(size_t(n * 192));
  for (auto& e : x) e = float(int(rng() % 200) - 100) / 50.0f;
  ThreadPool pool(2);
  // Shared (q, k, v), refused by the first layer (dense first), and refused by a later one.
  const std::vector<std::vector<const Linear*>> sets = {
      {q.get(), k.get(), v.get()}, {&dense, q.get()}, {q.get(), two_bit.get(), &dense}};
  for (const auto& layers : sets) {
    std::vector<std::vector<float>> got, want;
    std::vector<float*> ys;
    for (const Linear* l : layers) {
      want.emplace_back(size_t(n * l->out_features()));
      l->forward(x.data(), n, want.back().data(), pool);
      got.emplace_back(want.back().size(), -1.0f);
    }
    for (auto& g : got) ys.push_back(g.data());
    forward_same_input(layers, x.data(), n, ys, pool);
    for (size_t i = 0; i < layers.size(); ++i)
      EXPECT_EQ(got[i], want[i]) << layers[i]->describe();
  }
  // Which sets ran as one job: only the first (a refusal writes nothing).
  std::vector<float> scratch(size_t(n * 70 * 3));
  std::vector<float*> ys = {scratch.data(), scratch.data() + n * 70, scratch.data() + 2 * n * 70};
  EXPECT_TRUE(sets[0][0]->forward_together(sets[0], x.data(), n, ys, pool));
  EXPECT_FALSE(sets[1][0]->forward_together(sets[1], x.data(), n, {ys.data(), 2}, pool));
  EXPECT_FALSE(sets[2][0]->forward_together(sets[2], x.data(), n, ys, pool));
}

}  // namespace
}  // namespace elutq
