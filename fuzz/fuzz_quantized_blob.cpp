// Our quantized matrix blobs (tensor/quantized_matrix_codec.h), every format: the input is one
// blob, as a model file or a resume checkpoint stores it. It is inspected, decoded and dequantized;
// a LUT-layout blob is also run as a PackedMatrix, one matrix-vector product on every instruction
// set this CPU has, in the unit layout each reads. Checks what the codec and kernels promise:
// a decoded blob re-encodes to one that decodes to the same matrix bit for bit (and to the input
// itself but for padding), the row-wise dequantization equals the reference one, and every SIMD
// kernel's result equals the scalar kernel's bit for bit (NaN where it is NaN).
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/cpu_features.h"
#include "core/error.h"
#include "fuzz_util.h"
#include "kernels/lut_matmul.h"
#include "kernels/packed_matrix.h"
#include "tensor/quantized_matrix_codec.h"

using namespace elutq;

namespace {

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};

bool same_or_both_nan(const std::vector<float>& a, const std::vector<float>& b) {
  for (size_t i = 0; i < a.size(); ++i)
    if (!(std::isnan(a[i]) && std::isnan(b[i])) && std::memcmp(&a[i], &b[i], 4) != 0) return false;
  return true;
}

bool same_bytes(const void* a, const void* b, size_t n) {
  return n == 0 || std::memcmp(a, b, n) == 0;
}

// The same matrix, parameters and codebook compared bit for bit (a NaN is equal to itself).
bool same_matrix(const QuantizedMatrix& a, const QuantizedMatrix& b) {
  return a.spec.name() == b.spec.name() && a.rows == b.rows && a.cols == b.cols &&
         a.codes == b.codes && a.ratio_codes == b.ratio_codes &&
         a.params.size() == b.params.size() &&
         same_bytes(a.params.data(), b.params.data(), a.params.size() * sizeof(float)) &&
         a.ratio_codebook.size() == b.ratio_codebook.size() &&
         same_bytes(a.ratio_codebook.data(), b.ratio_codebook.data(),
                    a.ratio_codebook.size() * sizeof(float));
}

void run_lut(const uint8_t* blob, size_t size, int64_t rows, int64_t cols) {
  const PackedMatrix w = PackedMatrix::view(blob, size);
  std::vector<float> x(
      static_cast<size_t>(cols));  // (cols) small values of both signs, a few zeros
  for (int64_t i = 0; i < cols; ++i) x[size_t(i)] = float(int(i * 37 % 17) - 8) * 0.375f;
  for (LutTables tables : {LutTables::Int8, LutTables::Int16, LutTables::Auto}) {
    std::vector<float> want(static_cast<size_t>(rows));  // (rows)
    lut_gemm_isa(Isa::Scalar, lut_matrix_for(PackedMatrix::view(blob, size), Isa::Scalar), x.data(),
                 1, want.data(), nullptr, tables);
    for (Isa isa : {Isa::Avx2, Isa::Avx512, Isa::Neon}) {
      if (!isa_available(isa)) continue;
      // Auto resolves per ISA (Int12 on AVX2), so only the explicit precisions compare exactly.
      if (tables == LutTables::Auto) {
        std::vector<float> y(static_cast<size_t>(rows));
        lut_gemm_isa(isa, lut_matrix_for(PackedMatrix::view(blob, size), isa), x.data(), 1,
                     y.data(), nullptr, tables);
        continue;
      }
      std::vector<float> got(static_cast<size_t>(rows));
      lut_gemm_isa(isa, lut_matrix_for(PackedMatrix::view(blob, size), isa), x.data(), 1,
                   got.data(), nullptr, tables);
      if (!same_or_both_nan(want, got))
        fuzz::property_failed("a SIMD LUT kernel differs from the scalar kernel");
    }
  }
  (void)w.unpack_codes();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The blob at a 64-byte aligned address, as in a model file, and nothing readable after it.
  void* p = nullptr;
  if (::posix_memalign(&p, 64, size ? size : 1) != 0) return 0;
  const std::unique_ptr<uint8_t, FreeDeleter> blob(static_cast<uint8_t*>(p));
  if (size) std::memcpy(blob.get(), data, size);
  try {
    const QuantizedBlobInfo info = inspect_quantized_blob(blob.get(), size);
    const QuantizedMatrix q = decode_quantized_blob(blob.get(), size);
    // Re-encoded, it decodes to the same matrix bit for bit and re-encodes to the same bytes
    // (the input itself may differ from them in its padding, which no reader looks at).
    const std::vector<uint8_t> again = encode_quantized_blob(q);
    if (again.size() != size) fuzz::property_failed("a re-encoded blob has another size");
    void* p2 = nullptr;
    if (::posix_memalign(&p2, 64, size) != 0) return 0;
    const std::unique_ptr<uint8_t, FreeDeleter> again_blob(static_cast<uint8_t*>(p2));
    std::memcpy(again_blob.get(), again.data(), size);
    const QuantizedMatrix q2 = decode_quantized_blob(again_blob.get(), size);
    if (!same_matrix(q, q2)) fuzz::property_failed("decode(encode(decode(blob))) != decode(blob)");
    if (encode_quantized_blob(q2) != again)
      fuzz::property_failed("encode(decode(.)) is not stable");

    std::vector<float> ref(size_t(q.rows * q.cols)), rows(ref.size());  // (rows, cols)
    dequantize(q, ref.data());
    quantized_blob_rows_to_f32(blob.get(), size, 0, q.rows, rows.data());
    if (!same_or_both_nan(ref, rows))
      fuzz::property_failed("quantized_blob_rows_to_f32 differs from dequantize");

    if (info.lut) run_lut(blob.get(), size, info.rows, info.cols);
  } catch (const Error& e) {
    fuzz::expected(e);
  }
  return 0;
}
