// LutLinear: the Linear interface over the LUT kernels (see lut_linear.h).
#include "model/lut_linear.h"

#include "core/error.h"
#include "kernels/lut_matmul.h"

namespace elutq {

LutLinear::LutLinear(PackedMatrix w, Isa isa, LutTables tables)
    : isa_(isa), tables_(tables) {
  require(!w.empty(), "LutLinear needs a packed matrix");
  require(isa_available(isa_), "instruction set '", isa_name(isa_), "' is not available");
  w_ = lut_matrix_for(std::move(w), isa_);  // AVX2: a re-laid copy, made once here
  tables_ = resolve_lut_tables(tables, w_.header().bits, w_.header().group_padded, isa_);
}

std::unique_ptr<LutLinear> LutLinear::from_quantized(const QuantizedMatrix& q, LutTables tables) {
  return std::make_unique<LutLinear>(PackedMatrix::pack(q), active_isa(), tables);
}

void LutLinear::forward(const float* x, int64_t n, float* y, ThreadPool& pool) const {
  lut_gemm_isa(isa_, w_, x, n, y, &pool, tables_);
}

bool LutLinear::forward_together(std::span<const Linear* const> layers, const float* x,
                                 int64_t n, std::span<float* const> ys, ThreadPool& pool) const {
  if (layers.size() > kLutMaxSameInput || layers.size() != ys.size()) return false;
  const PackedMatrix* ws[kLutMaxSameInput];
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto* l = dynamic_cast<const LutLinear*>(layers[i]);
    // The resolved precisions must be equal too: each layer runs with its own.
    if (!l || l->isa_ != isa_ || l->tables_ != tables_ ||
        !lut_tables_shareable(w_, l->w_, tables_, isa_))
      return false;
    ws[i] = &l->w_;
  }
  lut_gemm_same_input_isa(isa_, std::span(ws, layers.size()), x, n, ys, &pool, tables_);
  return true;
}

std::string LutLinear::describe() const {
  const PackedHeader& h = w_.header();
  QuantSpec spec;
  spec.kind = QuantKind(h.kind);
  spec.bits = h.bits;
  spec.group = h.group;
  return "lut " + spec.name() + " " + std::to_string(h.rows) + "x" + std::to_string(h.cols) +
         " (" + isa_name(isa_) + ", " + lut_tables_name(tables_) + " tables)";
}

}  // namespace elutq
