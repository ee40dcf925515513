// What a quantization run reports per layer and in total; filled by both model loops (the
// calibration-free pipeline and the block-by-block quantizer), printed by `elutq quantize` and
// kept in resume checkpoints.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace elutq {

struct LayerReport {
  std::string name;
  int64_t rows = 0, cols = 0;
  double rel_weight_error = 0;   // ||W - W_hat||^2 / ||W||^2 (in the folded model's weights)
  double rel_output_error = -1;  // tr(D H D^T) / tr(W H W^T) on its calibration inputs; -1 none
  double bits_per_weight = 0;
  double seconds = 0;
  std::string log;
  std::string format;  // QuantSpec::name() of what it was stored as
};

struct QuantReport {
  std::vector<LayerReport> layers;
  int64_t quantized_weights = 0;
  double quantized_bits = 0;  // storage bits of the quantized tensors, parameters included
  std::vector<std::string> notes;  // things the user should know (e.g. a fold that was skipped)

  // Counts a layer's weights and storage bits into the totals (not into layers).
  void add_totals(const LayerReport& l) {
    quantized_weights += l.rows * l.cols;
    quantized_bits += l.bits_per_weight * double(l.rows * l.cols);
  }
};

}  // namespace elutq
