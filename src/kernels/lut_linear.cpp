// LutLinear: the Linear interface over the LUT kernels (see lut_linear.h).
#include "kernels/lut_linear.h"

#include "core/error.h"
#include "kernels/lut_matmul.h"

namespace elutq {

LutLinear::LutLinear(PackedMatrix w, Isa isa) : w_(std::move(w)), isa_(isa) {
  require(!w_.empty(), "LutLinear needs a packed matrix");
  require(isa_available(isa_), "instruction set '", isa_name(isa_), "' is not available");
}

std::unique_ptr<LutLinear> LutLinear::from_quantized(const QuantizedMatrix& q) {
  return std::make_unique<LutLinear>(PackedMatrix::pack(q));
}

void LutLinear::forward(const float* x, int64_t n, float* y, ThreadPool& pool) const {
  lut_gemm_isa(isa_, w_, x, n, y, &pool);
}

std::string LutLinear::describe() const {
  const PackedHeader& h = w_.header();
  QuantSpec spec;
  spec.kind = QuantKind(h.kind);
  spec.bits = h.bits;
  spec.group = h.group;
  return "lut " + spec.name() + " " + std::to_string(h.rows) + "x" + std::to_string(h.cols) +
         " (" + isa_name(isa_) + ")";
}

}  // namespace elutq
