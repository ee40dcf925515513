#include "tensor/qformat.h"

#include <cmath>
#include <cstdlib>

#include "core/error.h"
#include "core/fp16.h"

namespace elutq {

namespace {

float dequant_uniform(int, const float* p, uint8_t code) { return p[1] + p[0] * float(code); }

float dequant_hlq(int bits, const float* p, uint8_t code) {  // zero + sum_b s_b bit_b
  float w = p[bits];
  for (int b = 0; b < bits; ++b)
    if (code >> b & 1) w += p[b];
  return w;
}

float dequant_hlqc(int bits, const float* p, uint8_t code) {  // m + sum_b +-s_b / 2 (exact halving)
  float w = p[bits];
  for (int b = 0; b < bits; ++b) w += (code >> b & 1) ? 0.5f * p[b] : -0.5f * p[b];
  return w;
}

float dequant_codebook(int, const float* p, uint8_t code) { return p[code]; }

// Indexed by QuantKind.
const std::vector<QuantFormatTraits>& traits_table() {
  static const std::vector<QuantFormatTraits> t = {
      {QuantKind::Uniform, "uniform-w", 8, false, [](int) { return 2; },
       [](int) { return 32; }, dequant_uniform},
      {QuantKind::HLQ, "hlq-w", 4, false, [](int b) { return b + 1; },
       [](int b) { return 16 * (b + 1); }, dequant_hlq},
      {QuantKind::Codebook, "codebook-w", 8, true, [](int b) { return 1 << b; },
       [](int b) { return 16 * (1 << b); }, dequant_codebook},
      // Holds its expanded (s_0 .. s_{B-1}, m) in memory; stores s_0, m and a 4-bit ratio code
      // per further plane.
      {QuantKind::HLQC, "hlqc-w", 4, false, [](int b) { return b + 1; },
       [](int b) { return 32 + 4 * (b - 1); }, dequant_hlqc},
  };
  return t;
}

}  // namespace

const std::vector<QuantFormatTraits>& all_format_traits() { return traits_table(); }

const QuantFormatTraits& format_traits(QuantKind kind) {
  const auto& t = traits_table();
  require(size_t(kind) < t.size(), "unknown quantization kind ", int(kind));
  return t[size_t(kind)];
}

int QuantSpec::params_per_group() const { return format_traits(kind).params_per_group(bits); }

double QuantSpec::bits_per_weight(int64_t cols) const {
  const QuantFormatTraits& f = format_traits(kind);
  return bits + f.param_bits(bits) / double(f.per_row ? cols : group_len(cols));
}

std::string QuantSpec::name() const {
  const QuantFormatTraits& f = format_traits(kind);
  std::string n = f.prefix + std::to_string(bits);
  if (!f.per_row) n += "g" + (group > 0 ? std::to_string(group) : std::string("row"));
  return n;
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
  const QuantFormatTraits* format = nullptr;
  for (const QuantFormatTraits& f : all_format_traits())
    if (starts(f.prefix)) format = &f;
  if (format) s.kind = format->kind;
  else fail("unknown quantization format '", name, "' (expected e.g. hlq-w2g128, hlqc-w3g128, uniform-w4g128, codebook-w3)");
  char* end = nullptr;
  long bits = std::strtol(rest.c_str(), &end, 10);
  require(end != rest.c_str(), "quantization format '", name, "': missing bit count");
  s.bits = int(bits);
  std::string tail(end);
  if (format->per_row) {
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
  const int max_bits = format_traits(s.kind).max_bits;
  require(s.bits >= 1 && s.bits <= max_bits, s.name(), ": bits must be 1..", max_bits);
  require(s.group >= 0 && s.group <= (1 << 20), s.name(), ": group size out of range");
  require(s.group == 0 || s.group % 8 == 0, s.name(), ": group size must be a multiple of 8 (or 'row')");
}

const float* QuantizedMatrix::group_params(int64_t row, int64_t group_index) const {
  if (format_traits(spec.kind).per_row) return params.data() + row * spec.params_per_group();
  int64_t gpr = spec.groups_per_row(cols);
  return params.data() + (row * gpr + group_index) * spec.params_per_group();
}

float dequant_code(const QuantSpec& spec, const float* p, uint8_t code) {
  return format_traits(spec.kind).dequant_code(spec.bits, p, code);
}

void assign_nearest(const QuantSpec& spec, const float* params, const float* w, int n,
                    uint8_t* codes) {
  const int nv = 1 << spec.bits;
  float vals[256];  // B <= 8
  for (int c = 0; c < nv; ++c) vals[c] = dequant_code(spec, params, uint8_t(c));
  for (int i = 0; i < n; ++i) codes[i] = uint8_t(nearest_level(vals, nv, w[i]));
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
