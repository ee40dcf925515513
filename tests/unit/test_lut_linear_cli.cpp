// LutLinear (kernels/lut_linear.h) behind the runtime's Linear interface: same numbers as the
// kernel call, right shapes and description. (Host build only — the ARM kernel build has no
// model/ sources, hence the _cli suffix it filters out.)
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/lut_linear.h"
#include "kernels/lut_matmul.h"

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

  // auto (the tools' default) settles on int16 for this 2-bit layer when the layer is made.
  std::unique_ptr<LutLinear> automatic = LutLinear::from_quantized(q, LutTables::Auto);
  EXPECT_NE(automatic->describe().find("int16 tables"), std::string::npos)
      << automatic->describe();
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

}  // namespace
}  // namespace elutq
