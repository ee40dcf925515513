// GGML block data through dequantization, every type the library converts to fp32. The first
// bytes choose the tensor: [type index][blocks per row][flags][row_begin][row_end]; the rest are
// the tensor's rows (as many whole rows as fit, at most 64), placed at an odd address when
// flags & 1 (blocks in a file are not aligned). Checks that the rows a partial conversion gives
// are bit-identical to those of the whole tensor, and, for the types with integer kernels
// (kernels/kquant_gemm.h, kernels/block32_gemm.h, and Q8_0 in the rows16 layout of
// kernels/q8_rows16.h where the CPU has that kernel), that the active ISA's kernel gives the scalar
// reference's outputs on these rows (NaN where it gives NaN) for 1..9 tokens of activations cut
// from the same bytes.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "core/error.h"
#include "format/dequant.h"
#include "fuzz_util.h"
#include "kernels/dispatch.h"
#include "kernels/gemv.h"
#include "kernels/q8_rows16.h"

using namespace elutq;

namespace {

// Every type with an fp32 conversion, and two without (which must give an Error).
constexpr DType kTypes[] = {
    DType::F32,   DType::F16,   DType::BF16,    DType::Q4_0,   DType::Q4_1,   DType::Q5_0,
    DType::Q5_1,  DType::Q8_0,  DType::Q2_K,    DType::Q3_K,   DType::Q4_K,   DType::Q5_K,
    DType::Q6_K,  DType::Q8_K,  DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S,  DType::IQ3_XXS,
    DType::IQ3_S, DType::IQ1_S, DType::IQ1_M,   DType::IQ4_NL, DType::IQ4_XS, DType::TQ1_0,
    DType::TQ2_0, DType::MXFP4, DType::NVFP4,   DType::I8,     DType::I32,
};

// Equal bit for bit, or both NaN (a NaN's payload is not part of the kernels' contract).
bool same_outputs(const std::vector<float>& a, const std::vector<float>& b) {
  for (size_t i = 0; i < a.size(); ++i)
    if (!(std::isnan(a[i]) && std::isnan(b[i])) && !fuzz::same_bits(&a[i], &b[i], 1)) return false;
  return true;
}

// The integer kernels on the fuzzed rows: the active ISA's against the scalar reference.
void check_integer_kernels(DType type, const uint8_t* rows_at, int64_t rows, int64_t cols,
                           uint8_t flags) {
  const IsaKernels& ref = isa_kernels(Isa::Scalar);
  const int tokens = 1 + flags % 9;
  // Activations: the tensor's own bytes read as small signed values, every 7th scaled up, so
  // blocks of mixed magnitude, zeros and repeats all occur.
  std::vector<float> x(size_t(tokens * cols));
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = float(int8_t(rows_at[i % size_t(rows * dtype_row_bytes(type, cols))])) *
           (i % 7 == 0 ? 64.0f : 0.25f);
  std::vector<float> want(size_t(tokens * rows)), got(want.size());
  // The int16 activations of the 32-weight and rows16 kernels.
  std::vector<int16_t> q16;
  std::vector<float> d16;
  auto quantize16 = [&] {
    q16.resize(x.size());
    d16.resize(x.size() / 32);
    for (int t = 0; t < tokens; ++t)
      quantize_activations_i16(x.data() + t * cols, cols, q16.data() + t * cols,
                               d16.data() + t * cols / 32);
  };
  if (const kern::KQuantGemmFn k = active_kquant_kernel(type)) {
    if (cols % kQK != 0) return;
    std::vector<int8_t> q(x.size());
    std::vector<float> d(x.size() / kQK);
    std::vector<int16_t> s(x.size() / 16);
    for (int t = 0; t < tokens; ++t)
      quantize_activations_q8k(x.data() + t * cols, cols, q.data() + t * cols,
                               d.data() + t * cols / kQK, s.data() + t * cols / 16);
    const Q8KActivations a{q.data(), d.data(), s.data(), cols, tokens};
    const kern::KQuantGemmFn scalar = kquant_kernel(ref, type);
    scalar(rows_at, a, 0, rows, want.data(), rows);
    k(rows_at, a, 0, rows, got.data(), rows);
  } else if (const kern::Block32GemmFn k = active_block32_kernel(type)) {
    quantize16();
    std::vector<int32_t> s(x.size() / 32);
    for (int t = 0; t < tokens; ++t)
      block_sums_i16(q16.data() + t * cols, cols, s.data() + t * cols / 32);
    const BlockActivations16 a{q16.data(), d16.data(), s.data(), cols, tokens};
    const kern::Block32GemmFn scalar = block32_kernel(ref, type);
    scalar(rows_at, a, 0, rows, want.data(), rows);
    k(rows_at, a, 0, rows, got.data(), rows);
  } else if (type == DType::Q8_0 && active_q8_rows16_kernel()) {
    // Q8_0 re-laid in 16-row groups, as StoredLinear runs it.
    std::vector<uint8_t> packed(size_t(q8_rows16_bytes(rows, cols)));
    q8_rows16_pack(rows_at, rows, cols, packed.data());
    quantize16();
    const int64_t groups = (rows + kRows16 - 1) / kRows16;
    kern::q8_rows16_i16_scalar(packed.data(), rows, cols, q16.data(), d16.data(), tokens, 0,
                               groups, want.data(), rows);
    active_q8_rows16_kernel()(packed.data(), rows, cols, q16.data(), d16.data(), tokens, 0, groups,
                              got.data(), rows);
  } else {
    return;
  }
  if (!same_outputs(want, got))
    fuzz::property_failed("an integer kernel differs from the scalar reference on the same rows");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Bytes in(data, size);
  const DType type = kTypes[in.u8() % std::size(kTypes)];
  const int64_t blocks = 1 + in.u8() % 4;
  const uint8_t flags = in.u8();
  const uint8_t rb = in.u8(), re = in.u8();
  try {
    const int64_t cols = blocks * dtype_block_elems(type);
    const uint64_t row_bytes = dtype_row_bytes(type, cols);
    const int64_t rows = std::min<int64_t>(int64_t(in.size() / row_bytes), 64);
    if (rows == 0) return 0;
    const uint64_t nbytes = uint64_t(rows) * row_bytes;
    // Exactly the tensor's bytes (after the odd byte): ASan sees any read past them.
    const std::unique_ptr<uint8_t[]> buf(new uint8_t[nbytes + (flags & 1)]);
    uint8_t* at = buf.get() + (flags & 1);
    std::copy(in.data(), in.data() + nbytes, at);

    TensorInfo t;
    t.name = "fuzz";
    t.shape =
        rows == 1 && (flags & 2) ? std::vector<int64_t>{cols} : std::vector<int64_t>{rows, cols};
    t.dtype = type;
    t.data = at;
    t.nbytes = nbytes;
    std::vector<float> all(size_t(rows * cols));
    tensor_to_f32(t, all.data());

    const int64_t b = rb % (rows + 1), e = std::max<int64_t>(b, re % (rows + 1));
    std::vector<float> part(size_t((e - b) * cols));
    tensor_rows_to_f32(t, b, e, part.data());
    if (!fuzz::same_bits(part.data(), all.data() + b * cols, part.size()))
      fuzz::property_failed("tensor_rows_to_f32 differs from tensor_to_f32 on the same rows");
    check_integer_kernels(type, at, rows, cols, flags);
  } catch (const Error& e) {
    fuzz::expected(e);
  }
  return 0;
}
