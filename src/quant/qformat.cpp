#include "quant/qformat.h"

#include <cmath>
#include <cstdlib>

#include "core/error.h"
#include "core/fp16.h"

namespace elutq {

int QuantSpec::params_per_group() const {
  switch (kind) {
    case QuantKind::Uniform: return 2;
    case QuantKind::HLQ: return bits + 1;
    case QuantKind::Codebook: return 1 << bits;
  }
  return 0;
}

double QuantSpec::bits_per_weight(int64_t cols) const {
  if (kind == QuantKind::Codebook) return bits + 16.0 * (1 << bits) / double(cols);
  return bits + 16.0 * params_per_group() / double(group_len(cols));
}

std::string QuantSpec::name() const {
  std::string b = std::to_string(bits);
  switch (kind) {
    case QuantKind::Uniform:
      return "uniform-w" + b + "g" + (group > 0 ? std::to_string(group) : "row");
    case QuantKind::HLQ: return "hlq-w" + b + "g" + (group > 0 ? std::to_string(group) : "row");
    case QuantKind::Codebook: return "codebook-w" + b;
  }
  return "?";
}

QuantSpec parse_quant_spec(const std::string& name) {
  QuantSpec s;
  std::string rest;
  auto starts = [&](const char* p) {
    std::string ps(p);
    if (name.rfind(ps, 0) != 0) return false;
    rest = name.substr(ps.size());
    return true;
  };
  if (starts("uniform-w")) s.kind = QuantKind::Uniform;
  else if (starts("hlq-w")) s.kind = QuantKind::HLQ;
  else if (starts("codebook-w")) s.kind = QuantKind::Codebook;
  else fail("unknown quantization format '", name, "' (expected e.g. hlq-w2g128, uniform-w4g128, codebook-w3)");
  char* end = nullptr;
  long bits = std::strtol(rest.c_str(), &end, 10);
  require(end != rest.c_str(), "quantization format '", name, "': missing bit count");
  s.bits = int(bits);
  std::string tail(end);
  if (s.kind == QuantKind::Codebook) {
    require(tail.empty(), "quantization format '", name, "': unexpected '", tail, "'");
    s.group = 0;
  } else {
    require(!tail.empty() && tail[0] == 'g', "quantization format '", name, "': missing group (g128, grow)");
    if (tail == "grow") {
      s.group = 0;
    } else {
      char* e2 = nullptr;
      long g = std::strtol(tail.c_str() + 1, &e2, 10);
      require(*e2 == 0 && e2 != tail.c_str() + 1, "quantization format '", name, "': bad group '", tail, "'");
      s.group = int(g);
    }
  }
  validate_quant_spec(s);
  return s;
}

void validate_quant_spec(const QuantSpec& s) {
  int max_bits = s.kind == QuantKind::HLQ ? 4 : 8;
  require(s.bits >= 1 && s.bits <= max_bits, s.name(), ": bits must be 1..", max_bits);
  require(s.group >= 0 && s.group <= (1 << 20), s.name(), ": group size out of range");
  require(s.group == 0 || s.group % 8 == 0, s.name(), ": group size must be a multiple of 8 (or 'row')");
}

const float* QuantizedMatrix::group_params(int64_t row, int64_t group_index) const {
  if (spec.kind == QuantKind::Codebook) return params.data() + row * (int64_t(1) << spec.bits);
  int64_t gpr = spec.groups_per_row(cols);
  return params.data() + (row * gpr + group_index) * spec.params_per_group();
}

float dequant_code(const QuantSpec& spec, const float* p, uint8_t code) {
  switch (spec.kind) {
    case QuantKind::Uniform: return p[1] + p[0] * float(code);
    case QuantKind::HLQ: {
      float w = p[spec.bits];
      for (int b = 0; b < spec.bits; ++b)
        if (code >> b & 1) w += p[b];
      return w;
    }
    case QuantKind::Codebook: return p[code];
  }
  return 0.0f;
}

void dequantize(const QuantizedMatrix& q, float* dst) {
  int64_t g = q.spec.group_len(q.cols);
  for (int64_t r = 0; r < q.rows; ++r) {
    for (int64_t c = 0; c < q.cols; ++c) {
      const float* p = q.group_params(r, c / g);
      dst[r * q.cols + c] = dequant_code(q.spec, p, q.codes[r * q.cols + c]);
    }
  }
}

void round_params_to_fp16(std::vector<float>& params) {
  for (float& v : params) v = fp16_to_f32(f32_to_fp16(v));
}

}  // namespace elutq
