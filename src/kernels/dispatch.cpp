// The per-ISA kernel tables (see dispatch.h). An ISA that is not compiled into this build (AVX2 and
// AVX-512 off x86, NEON off ARM) has no table; which ISA runs is decided at run time only.
#include "kernels/dispatch.h"

#include <array>

#include "core/error.h"
#include "kernels/gemv_kernels.h"
#include "kernels/lut_isa.h"
#include "kernels/memory_bandwidth_isa.h"

namespace elutq {
namespace {

using TableMaker = IsaKernels (*)();

IsaKernels scalar_table() {
  IsaKernels k;
  k.isa = Isa::Scalar;
  k.lut = &lut_kernels_scalar();
  k.dot_f32 = kern::dot_f32_scalar;
  k.attention_scores = kern::attention_scores_scalar;
  k.attention_weighted_sum_add = kern::attention_weighted_sum_add_scalar;
  k.gemv_rows_f32 = kern::gemv_rows_f32_scalar;
  k.gemv2_rows_f32 = kern::gemv2_rows_f32_scalar;
  k.gemv_rows_q8_0 = kern::gemv_rows_q8_0_scalar;
  k.gemv_rows_q8_0_tokens = kern::gemv_rows_q8_0_tokens_scalar;
  k.block_product_f32_f64 = kern::block_product_f32_f64_scalar;
  k.sub_scaled_f32 = kern::sub_scaled_f32_scalar;
  k.add_scaled_f32_f64 = kern::add_scaled_f32_f64_scalar;
  k.gemv_rows_f16 = kern::gemv_rows_f16_scalar;
  k.gemv_rows_bf16 = kern::gemv_rows_bf16_scalar;
  k.gemm_rows_q4_k = kern::gemm_rows_q4_k_scalar;
  k.gemm_rows_q5_k = kern::gemm_rows_q5_k_scalar;
  k.gemm_rows_q6_k = kern::gemm_rows_q6_k_scalar;
  k.gemm_rows_iq4_xs = kern::gemm_rows_iq4_xs_scalar;
  k.quantize_activations_q8k = kern::quantize_activations_q8k_scalar;
  k.gemm_rows_q4_0 = kern::gemm_rows_q4_0_scalar;
  k.gemm_rows_q4_1 = kern::gemm_rows_q4_1_scalar;
  k.gemm_rows_q5_0 = kern::gemm_rows_q5_0_scalar;
  k.gemm_rows_q5_1 = kern::gemm_rows_q5_1_scalar;
  k.gemm_rows_iq4_nl = kern::gemm_rows_iq4_nl_scalar;
  k.stream_read = stream_read_portable;
  return k;
}

#if defined(ELUTQ_X86)
IsaKernels avx2_table() {
  IsaKernels k = scalar_table();
  k.isa = Isa::Avx2;
  k.lut = &lut_kernels_avx2();
  k.dot_f32 = kern::dot_f32_avx2;
  k.attention_scores = kern::attention_scores_avx2;
  k.attention_weighted_sum_add = kern::attention_weighted_sum_add_avx2;
  k.gemv_rows_f32 = kern::gemv_rows_f32_avx2;
  k.gemv2_rows_f32 = kern::gemv2_rows_f32_avx2;
  k.gemv_rows_q8_0 = kern::gemv_rows_q8_0_avx2;
  k.gemv_rows_q8_0_tokens = kern::gemv_rows_q8_0_tokens_avx2;
  k.block_product_f32_f64 = kern::block_product_f32_f64_avx2;
  k.sub_scaled_f32 = kern::sub_scaled_f32_avx2;
  k.add_scaled_f32_f64 = kern::add_scaled_f32_f64_avx2;
  k.gemv_rows_f16 = kern::gemv_rows_f16_avx2;
  k.gemv_rows_bf16 = kern::gemv_rows_bf16_avx2;
  k.gemm_rows_q4_k = kern::gemm_rows_q4_k_avx2;  // AVX-512 hosts keep these too
  k.gemm_rows_q5_k = kern::gemm_rows_q5_k_avx2;
  k.gemm_rows_q6_k = kern::gemm_rows_q6_k_avx2;
  k.gemm_rows_iq4_xs = kern::gemm_rows_iq4_xs_avx2;
  k.quantize_activations_q8k = kern::quantize_activations_q8k_avx2;
  k.gemm_rows_q4_0 = kern::gemm_rows_q4_0_avx2;
  k.gemm_rows_q4_1 = kern::gemm_rows_q4_1_avx2;
  k.gemm_rows_q5_0 = kern::gemm_rows_q5_0_avx2;
  k.gemm_rows_q5_1 = kern::gemm_rows_q5_1_avx2;
  k.gemm_rows_iq4_nl = kern::gemm_rows_iq4_nl_avx2;
  k.q8_rows16_i16 = kern::q8_rows16_i16_avx2;
  k.stream_read = stream_read_avx2;
  return k;
}

// The fp32 dot/GEMV stay on the AVX2 kernels: they are bound by memory, not by vector width.
IsaKernels avx512_table() {
  IsaKernels k = avx2_table();
  k.isa = Isa::Avx512;
  k.lut = &lut_kernels_avx512();
  k.gemv_rows_q8_0 = kern::gemv_rows_q8_0_avx512;
  k.gemv_rows_q8_0_tokens = kern::gemv_rows_q8_0_tokens_avx512;
  k.q8_rows16_i16 = kern::q8_rows16_i16_avx512;
  k.attention_scores = kern::attention_scores_avx512;
  k.attention_weighted_sum_add = kern::attention_weighted_sum_add_avx512;
  k.block_product_f32_f64 = kern::block_product_f32_f64_avx512;
  k.sub_scaled_f32 = kern::sub_scaled_f32_avx512;
  k.add_scaled_f32_f64 = kern::add_scaled_f32_f64_avx512;
  k.gemv_rows_f16 = kern::gemv_rows_f16_avx512;
  k.gemv_rows_bf16 = kern::gemv_rows_bf16_avx512;
  k.stream_read = stream_read_avx512;
  return k;
}
constexpr TableMaker kAvx2 = avx2_table;
constexpr TableMaker kAvx512 = avx512_table;
#else
constexpr TableMaker kAvx2 = nullptr;
constexpr TableMaker kAvx512 = nullptr;
#endif

#if defined(ELUTQ_ARM)
// The LUT, K-quant, 32-weight block and Q8_0 rows16 kernels have NEON versions; the compiler vectorizes the portable read loop
// itself.
IsaKernels neon_table() {
  IsaKernels k = scalar_table();
  k.isa = Isa::Neon;
  k.lut = &lut_kernels_neon();
  k.gemm_rows_q4_0 = kern::gemm_rows_q4_0_neon;
  k.gemm_rows_q4_1 = kern::gemm_rows_q4_1_neon;
  k.gemm_rows_q5_0 = kern::gemm_rows_q5_0_neon;
  k.gemm_rows_q5_1 = kern::gemm_rows_q5_1_neon;
  k.gemm_rows_iq4_nl = kern::gemm_rows_iq4_nl_neon;
  k.q8_rows16_i16 = kern::q8_rows16_i16_neon;
  if (cpu_features().neon_dotprod) {  // without SDOT the scalar K-quant kernels stay
    k.gemm_rows_q4_k = kern::gemm_rows_q4_k_neon;
    k.gemm_rows_q5_k = kern::gemm_rows_q5_k_neon;
    k.gemm_rows_q6_k = kern::gemm_rows_q6_k_neon;
    k.gemm_rows_iq4_xs = kern::gemm_rows_iq4_xs_neon;
  }
  return k;
}
constexpr TableMaker kNeon = neon_table;
#else
constexpr TableMaker kNeon = nullptr;
#endif

// Indexed by Isa.
constexpr std::array<TableMaker, 4> kTableMakers = {scalar_table, kAvx2, kAvx512, kNeon};

}  // namespace

const IsaKernels& isa_kernels(Isa isa) {
  static const std::array<IsaKernels, 4> tables = [] {
    std::array<IsaKernels, 4> t{};
    for (size_t i = 0; i < t.size(); ++i)
      if (kTableMakers[i]) t[i] = kTableMakers[i]();
    return t;
  }();
  require(isa_available(isa), "instruction set '", isa_name(isa), "' is not available on this CPU");
  const IsaKernels& k = tables[size_t(isa)];
  require(k.lut != nullptr, "instruction set '", isa_name(isa),
          "' is not compiled into this build");
  return k;
}

const IsaKernels& active_kernels() {
  static const IsaKernels& k = isa_kernels(active_isa());
  return k;
}

kern::KQuantGemmFn kquant_kernel(const IsaKernels& k, DType t) {
  switch (t) {
    case DType::Q4_K: return k.gemm_rows_q4_k;
    case DType::Q5_K: return k.gemm_rows_q5_k;
    case DType::Q6_K: return k.gemm_rows_q6_k;
    case DType::IQ4_XS: return k.gemm_rows_iq4_xs;
    default: return nullptr;
  }
}

kern::Block32GemmFn block32_kernel(const IsaKernels& k, DType t) {
  switch (t) {
    case DType::Q4_0: return k.gemm_rows_q4_0;
    case DType::Q4_1: return k.gemm_rows_q4_1;
    case DType::Q5_0: return k.gemm_rows_q5_0;
    case DType::Q5_1: return k.gemm_rows_q5_1;
    case DType::IQ4_NL: return k.gemm_rows_iq4_nl;
    default: return nullptr;
  }
}

}  // namespace elutq
