// The quantized weight formats, defined once for the quantizers, the model file and the runtime.
//
// A quantized matrix has rows x cols weights (rows = output features), each stored as a B-bit code
// (0 <= code < 2^B). Bit b of a code is the weight's bit in bit-plane b. How codes map back to
// values depends on the kind:
//   Uniform   per group of `group` consecutive weights in a row: {scale, zero};
//             w = zero + scale * code                               (group 0 = the whole row)
//   HLQ       per group: {s_0, ..., s_{B-1}, zero};
//             w = zero + sum_b s_b * bit_b(code)                    (uniform is s_b = scale * 2^b)
//   HLQC      HLQ with compact parameters: per group s_0 and the midpoint m (fp16) plus one 4-bit
//             ratio code k_b per plane b >= 1, and per matrix a codebook of 16 ratios per plane;
//             s_b = s_0 * ratio_codebook[b - 1][k_b] (fp32 product);
//             w = m + sum_b (bit_b(code) ? s_b / 2 : -s_b / 2)  (the same levels as HLQ with
//             zero = m - sum_b s_b / 2; storing m spares the kernels that sum). It stores
//             32 + 4 (B - 1) bits per group against HLQ's 16 (B + 1) and uniform's 32, so it
//             streams almost the bytes of uniform while each group keeps its own plane scales.
//   Codebook  per row: {c_0, ..., c_{2^B - 1}} (GANQ); w = c[code]
// Parameters are fp16 in the file; in memory they are floats that hold fp16-representable values
// (quantizers round them with round_params_to_fp16 before the final code assignment, so a file
// round trip is bit-exact and what was fitted is what runs).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace elutq {

enum class QuantKind : uint8_t { Uniform = 0, HLQ = 1, Codebook = 2, HLQC = 3 };

// Entries of an HLQC ratio codebook per plane (ratio codes are 4 bits).
inline constexpr int kHlqcRatios = 16;

// A format is one row of this table: everything the rest of the code asks of a kind without
// knowing which kind it is.
struct QuantFormatTraits {
  QuantKind kind;
  const char* prefix;   // name prefix: "uniform-w", "hlq-w", ...
  int max_bits;         // bits are 1..max_bits
  bool per_row;         // parameters per row (one codebook), not per group of a row
  // Floats of parameters per group (per row when per_row) in a QuantizedMatrix.
  int (*params_per_group)(int bits);
  // Stored bits of parameters per group (per row when per_row) in the model file.
  int (*param_bits)(int bits);
  // The reference decoding: the value a code stands for, given its group's parameters.
  float (*dequant_code)(int bits, const float* params, uint8_t code);
};

// The row of a kind (throws Error for a value outside the enum), and every row.
const QuantFormatTraits& format_traits(QuantKind kind);
const std::vector<QuantFormatTraits>& all_format_traits();

struct QuantSpec {
  QuantKind kind = QuantKind::Uniform;
  int bits = 4;   // B, 1..8 (HLQ: 1..4)
  int group = 128;  // weights per group along a row; 0 = whole row (ignored for Codebook)

  // Group length for a row of `cols` weights.
  int64_t group_len(int64_t cols) const { return group > 0 ? group : cols; }
  int64_t groups_per_row(int64_t cols) const {
    int64_t g = group_len(cols);
    return (cols + g - 1) / g;
  }
  // Floats of parameters per group (Uniform, HLQ) or per row (Codebook) in a QuantizedMatrix.
  // HLQC holds its expanded HLQ parameters there (B + 1), though it stores fewer bits.
  int params_per_group() const;
  // True for the kinds whose groups carry (s_0 .. s_{B-1}, zero): HLQ and HLQC.
  bool is_hlq() const { return kind == QuantKind::HLQ || kind == QuantKind::HLQC; }
  // Storage bits per weight including fp16 parameters, for a row of `cols` weights.
  double bits_per_weight(int64_t cols) const;
  // "hlq-w2g128", "hlqc-w3g128", "uniform-w4g128", "codebook-w3", "uniform-w4grow".
  std::string name() const;
};

// Parses the names name() produces. Throws Error on anything else.
QuantSpec parse_quant_spec(const std::string& name);
// Throws Error if the spec is out of range (bits, group) for its kind.
void validate_quant_spec(const QuantSpec& spec);

// A quantized matrix in its plain, unpacked form: one byte per code. Kernels pack it their way.
struct QuantizedMatrix {
  QuantSpec spec;
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> codes;  // rows * cols, row-major
  // Uniform/HLQ: rows * groups_per_row * params_per_group, row-major by (row, group);
  // Codebook: rows * 2^B.
  // HLQC: the expanded (s_0 .. s_{B-1}, m), with s_0 and m fp16 values and
  // s_b = s_0 * ratio_codebook[(b - 1) * 16 + k_b] exactly.
  std::vector<float> params;
  // HLQC only: ratio codes k_1 .. k_{B-1} of every group, rows * groups_per_row * (B - 1), row-major
  // by (row, group); and the matrix's codebook, (B - 1) * 16 ratios (plane-major).
  std::vector<uint8_t> ratio_codes;
  std::vector<float> ratio_codebook;

  const float* group_params(int64_t row, int64_t group_index) const;
};

// The lowest code c among those whose vals[c] (c < nv) is nearest x. Written without branches
// (conditional moves): random weights made the branchy form mispredict on most levels, 3x slower.
inline int nearest_level(const float* vals, int nv, float x) {
  int best = 0;
  float bd = std::fabs(x - vals[0]);
  for (int c = 1; c < nv; ++c) {
    const float d = std::fabs(x - vals[c]);
    const bool closer = d < bd;
    best = closer ? c : best;
    bd = closer ? d : bd;
  }
  return best;
}

// The value a code stands for, with the parameters of its group (or row, for Codebook).
float dequant_code(const QuantSpec& spec, const float* params, uint8_t code);
// Nearest code of each of w (n) under one group's (or row's) params: the first of equally near.
void assign_nearest(const QuantSpec& spec, const float* params, const float* w, int n,
                    uint8_t* codes);
// Reference dequantization of the whole matrix into dst (rows * cols floats, row-major).
void dequantize(const QuantizedMatrix& q, float* dst);
// Rounds every parameter to the nearest fp16 value (in place).
void round_params_to_fp16(std::vector<float>& params);
// HLQC: the expanded parameters (B + 1) of a group from its stored ones: s_0 and the midpoint m
// (fp16 values), its ratio codes k (B - 1), the codebook ((B - 1) * 16).
void hlqc_expand(int bits, float s0, float mid, const uint8_t* k, const float* codebook,
                 float* params);
// Throws Error unless q's HLQC fields are consistent (sizes, codes < 16, finite positive ratios,
// fp16 s_0 and m, s_b = s_0 * ratio exactly). No-op for other kinds.
void check_hlqc(const QuantizedMatrix& q);

}  // namespace elutq
