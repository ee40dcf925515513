// GGML block data through dequantization, every type the library converts to fp32. The first
// bytes choose the tensor: [type index][blocks per row][flags][row_begin][row_end]; the rest are
// the tensor's rows (as many whole rows as fit, at most 64), placed at an odd address when
// flags & 1 (blocks in a file are not aligned). Checks that the rows a partial conversion gives
// are bit-identical to those of the whole tensor.
#include <algorithm>
#include <memory>
#include <vector>

#include "core/error.h"
#include "format/dequant.h"
#include "fuzz_util.h"

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
  } catch (const Error& e) {
    fuzz::expected(e);
  }
  return 0;
}
