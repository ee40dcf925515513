#include "tensor/qformat.h"

#include <cmath>
#include <cstdlib>

#include "core/error.h"
#include "core/fp16.h"

namespace elutq {

int QuantSpec::params_per_group() const {
  switch (kind) {
    case QuantKind::Uniform: return 2;
    case QuantKind::HLQ:
    case QuantKind::HLQC: return bits + 1;
    case QuantKind::Codebook: return 1 << bits;
  }
  return 0;
}

double QuantSpec::bits_per_weight(int64_t cols) const {
  if (kind == QuantKind::Codebook) return bits + 16.0 * (1 << bits) / double(cols);
  if (kind == QuantKind::HLQC) return bits + (32.0 + 4.0 * (bits - 1)) / double(group_len(cols));
  return bits + 16.0 * params_per_group() / double(group_len(cols));
}

std::string QuantSpec::name() const {
  std::string b = std::to_string(bits);
  switch (kind) {
    case QuantKind::Uniform:
      return "uniform-w" + b + "g" + (group > 0 ? std::to_string(group) : "row");
    case QuantKind::HLQ: return "hlq-w" + b + "g" + (group > 0 ? std::to_string(group) : "row");
    case QuantKind::HLQC: return "hlqc-w" + b + "g" + (group > 0 ? std::to_string(group) : "row");
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
  else if (starts("hlqc-w")) s.kind = QuantKind::HLQC;
  else if (starts("codebook-w")) s.kind = QuantKind::Codebook;
  else fail("unknown quantization format '", name, "' (expected e.g. hlq-w2g128, hlqc-w3g128, uniform-w4g128, codebook-w3)");
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
  int max_bits = s.is_hlq() ? 4 : 8;
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
    case QuantKind::HLQC: {  // m + sum_b +-s_b / 2 (halving is exact)
      float w = p[spec.bits];
      for (int b = 0; b < spec.bits; ++b) w += (code >> b & 1) ? 0.5f * p[b] : -0.5f * p[b];
      return w;
    }
    case QuantKind::Codebook: return p[code];
  }
  return 0.0f;
}

void assign_nearest(const QuantSpec& spec, const float* params, const float* w, int n,
                    uint8_t* codes) {
  const int nv = 1 << spec.bits;
  float vals[256];  // B <= 8
  for (int c = 0; c < nv; ++c) vals[c] = dequant_code(spec, params, uint8_t(c));
  for (int i = 0; i < n; ++i) {
    int best = 0;
    float bd = std::fabs(w[i] - vals[0]);
    for (int c = 1; c < nv; ++c) {
      const float d = std::fabs(w[i] - vals[c]);
      if (d < bd) {
        bd = d;
        best = c;
      }
    }
    codes[i] = uint8_t(best);
  }
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

void hlqc_expand(int bits, float s0, float mid, const uint8_t* k, const float* codebook,
                 float* params) {
  params[0] = s0;
  for (int b = 1; b < bits; ++b) params[b] = s0 * codebook[(b - 1) * kHlqcRatios + k[b - 1]];
  params[bits] = mid;
}

void check_hlqc(const QuantizedMatrix& q) {
  if (q.spec.kind != QuantKind::HLQC) return;
  const int B = q.spec.bits;
  const int64_t groups = q.rows * q.spec.groups_per_row(q.cols);
  require(int64_t(q.ratio_codebook.size()) == int64_t(B - 1) * kHlqcRatios, q.spec.name(),
          ": ratio codebook has ", q.ratio_codebook.size(), " entries, expected ",
          (B - 1) * kHlqcRatios);
  for (float r : q.ratio_codebook)
    require(std::isfinite(r) && r > 0.0f, q.spec.name(), ": ratio codebook entry ", r,
            " is not a finite positive number");
  require(int64_t(q.ratio_codes.size()) == groups * (B - 1), q.spec.name(), ": has ",
          q.ratio_codes.size(), " ratio codes, expected ", groups * (B - 1));
  require(int64_t(q.params.size()) == groups * (B + 1), q.spec.name(), ": has ", q.params.size(),
          " parameters, expected ", groups * (B + 1));
  float want[5];
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* k = q.ratio_codes.data() + g * (B - 1);
    for (int b = 0; b + 1 < B; ++b)
      require(k[b] < kHlqcRatios, q.spec.name(), ": ratio code ", int(k[b]), " is not 0..15");
    const float* p = q.params.data() + g * (B + 1);
    require(fp16_to_f32(f32_to_fp16(p[0])) == p[0] && fp16_to_f32(f32_to_fp16(p[B])) == p[B],
            q.spec.name(), ": s_0 and m must be fp16 values");
    hlqc_expand(B, p[0], p[B], k, q.ratio_codebook.data(), want);
    for (int b = 0; b <= B; ++b)
      require(want[b] == p[b] || (std::isnan(want[b]) && std::isnan(p[b])), q.spec.name(),
              ": parameter ", b, " of group ", g, " is not s_0 times its ratio");
  }
}

}  // namespace elutq
