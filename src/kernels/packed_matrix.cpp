// Packing a QuantizedMatrix into the LUT kernel layout (see packed_matrix.h) and checking a blob.
#include "kernels/packed_matrix.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"

namespace elutq {
namespace {

constexpr char kMagic[8] = {'E', 'L', 'U', 'T', 'Q', 'L', 'P', '1'};

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

bool lut_kind(QuantKind k) {
  return k == QuantKind::Uniform || k == QuantKind::HLQ || k == QuantKind::HLQC;
}

PackedHeader make_header(const QuantSpec& spec, int64_t rows, int64_t cols) {
  PackedHeader h;
  std::memset(&h, 0, sizeof h);
  std::memcpy(h.magic, kMagic, 8);
  h.version = 1;
  h.kind = uint8_t(spec.kind);
  h.bits = uint8_t(spec.bits);
  h.params_per_group = uint8_t(spec.kind == QuantKind::HLQC ? 2 : spec.params_per_group());
  h.rows = rows;
  h.cols = cols;
  h.group = spec.group;
  h.group_len = int32_t(spec.group_len(cols));
  h.group_padded = int32_t(round_up(h.group_len, kLutQuadCols));
  h.n_groups = int32_t(spec.groups_per_row(cols));
  h.n_tiles = (rows + kLutTileRows - 1) / kLutTileRows;
  h.block_bytes = int64_t(h.params_per_group) * kLutUnitBytes +
                  int64_t(h.group_padded / kLutQuadCols) * h.bits * kLutUnitBytes;
  return h;
}

// Per output byte of a unit in layout To, the two source nibbles (one per 4-bit half) in From.
struct NibbleSources {
  uint8_t byte[kLutUnitBytes][2] = {}, shift[kLutUnitBytes][2] = {};
};
constexpr NibbleSources nibble_sources(UnitLayout from, UnitLayout to) {
  NibbleSources s;
  for (int r = 0; r < kLutTileRows; ++r)
    for (int t = 0; t < 4; ++t) {
      const UnitSlot f = unit_slot(from, r, t), o = unit_slot(to, r, t);
      s.byte[o.byte][o.shift / 4] = uint8_t(f.byte);
      s.shift[o.byte][o.shift / 4] = uint8_t(f.shift);
    }
  return s;
}

// One unit re-laid; the sources are compile-time constants, so this is straight-line code
// (with the table walked at run time a 20 MB matrix re-laid at ~0.2 GB/s, 12 s for a 7B model;
// this way ~2 GB/s, the rest of a load being the new pages' first-touch faults).
template <UnitLayout From, UnitLayout To>
void relay_unit(const uint8_t* in, uint8_t* out) {
  static constexpr NibbleSources s = nibble_sources(From, To);
#pragma GCC unroll 64
  for (int i = 0; i < kLutUnitBytes; ++i)
    out[i] = uint8_t(((in[s.byte[i][0]] >> s.shift[i][0]) & 15) |
                     (((in[s.byte[i][1]] >> s.shift[i][1]) & 15) << 4));
}

}  // namespace

PackedMatrix PackedMatrix::pack(const QuantizedMatrix& q) {
  const QuantSpec& spec = q.spec;
  require(lut_kind(spec.kind), "LUT kernels take uniform or HLQ matrices, not ", spec.name());
  require(spec.bits >= 1 && spec.bits <= 4, "LUT kernels take 1..4 bits, not ", spec.name());
  require(q.rows > 0 && q.cols > 0, "cannot pack an empty ", q.rows, "x", q.cols, " matrix");
  require(int64_t(q.codes.size()) == q.rows * q.cols, "quantized matrix has ", q.codes.size(),
          " codes for ", q.rows, "x", q.cols);
  const int64_t gpr = spec.groups_per_row(q.cols);
  require(int64_t(q.params.size()) == q.rows * gpr * spec.params_per_group(),
          "quantized matrix has ", q.params.size(), " parameters, expected ",
          q.rows * gpr * spec.params_per_group());
  require(spec.group_len(q.cols) <= (int64_t(1) << 24), "group too long for the LUT kernels");

  check_hlqc(q);

  const PackedHeader h = make_header(spec, q.rows, q.cols);
  PackedMatrix out;
  out.owned_ = HugePageBuffer(blob_bytes(h));  // zero-filled
  std::memcpy(out.owned_.data(), &h, sizeof h);
  out.data_ = out.owned_.data();
  out.size_ = out.owned_.size();

  const int B = spec.bits, P = h.params_per_group;
  const bool hlqc = spec.kind == QuantKind::HLQC;
  if (hlqc && !q.ratio_codebook.empty()) {  // B = 1 has no ratios
    std::memcpy(out.owned_.data() + sizeof h, q.ratio_codebook.data(),
                q.ratio_codebook.size() * sizeof(float));
  }
  const int64_t n_quads = h.group_padded / kLutQuadCols;
  for (int64_t tile = 0; tile < h.n_tiles; ++tile) {
    for (int64_t g = 0; g < h.n_groups; ++g) {
      uint8_t* blk = out.owned_.data() + (out.block(tile, g) - out.data_);
      uint16_t* params = reinterpret_cast<uint16_t*>(blk);  // (P, 32) fp16
      const int64_t col0 = g * h.group_len;
      const int64_t col_end = std::min<int64_t>(col0 + h.group_len, q.cols);
      for (int r = 0; r < kLutTileRows; ++r) {
        const int64_t row = tile * kLutTileRows + r;
        if (row >= q.rows) break;
        const float* p = q.group_params(row, g);
        if (hlqc) {  // s_0, zero; the ratio codes go to the tile's preamble
          params[r] = f32_to_fp16(p[0]);
          params[kLutTileRows + r] = f32_to_fp16(p[B]);
          uint8_t* rc = out.owned_.data() + (out.ratio_codes(tile, g) - out.data_);
          const uint8_t* k = q.ratio_codes.data() + (row * gpr + g) * (B - 1);
          for (int b = 1; b < B; ++b)
            rc[(b - 1) * 16 + r % 16] |= uint8_t(k[b - 1] << (r / 16 * 4));
        } else {
          for (int k = 0; k < P; ++k) params[k * kLutTileRows + r] = f32_to_fp16(p[k]);
        }
      }
      uint8_t* bits = blk + P * kLutUnitBytes;  // (n_quads, B, 64)
      for (int64_t quad = 0; quad < n_quads; ++quad) {
        for (int b = 0; b < B; ++b) {
          uint8_t* unit = bits + (quad * B + b) * kLutUnitBytes;
          for (int r = 0; r < kLutTileRows; ++r) {
            const int64_t row = tile * kLutTileRows + r;
            if (row >= q.rows) break;
            for (int t = 0; t < 4; ++t) {
              uint8_t pattern = 0;  // bit m: bit b of the code of column 16 quad + 4 t + m
              for (int m = 0; m < 4; ++m) {
                const int64_t col = col0 + quad * kLutQuadCols + t * 4 + m;
                if (col >= col_end) continue;
                pattern |= uint8_t(((q.codes[row * q.cols + col] >> b) & 1) << m);
              }
              const UnitSlot s = unit_slot(UnitLayout::Tables4, r, t);
              unit[s.byte] |= uint8_t(pattern << s.shift);
            }
          }
        }
      }
    }
  }
  return out;
}

PackedMatrix PackedMatrix::synthetic(const QuantSpec& spec, int64_t rows, int64_t cols,
                                     uint64_t seed, UnitLayout layout) {
  require(lut_kind(spec.kind), "LUT kernels take uniform or HLQ matrices, not ", spec.name());
  validate_quant_spec(spec);
  require(spec.bits <= 4, "LUT kernels take 1..4 bits, not ", spec.name());
  require(rows > 0 && cols > 0, "cannot make an empty ", rows, "x", cols, " matrix");
  PackedHeader h = make_header(spec, rows, cols);
  h.layout = uint8_t(layout);  // random bits are random in either unit order
  PackedMatrix out;
  out.owned_ = HugePageBuffer(blob_bytes(h));  // zero-filled
  std::memcpy(out.owned_.data(), &h, sizeof h);
  out.data_ = out.owned_.data();
  out.size_ = out.owned_.size();
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  auto random_bytes = [&](uint8_t* p, int64_t n) {
    for (int64_t off = 0; off < n; off += 8) {
      state ^= state << 13;  // xorshift64: bits only need to look random
      state ^= state >> 7;
      state ^= state << 17;
      std::memcpy(p + off, &state, size_t(std::min<int64_t>(8, n - off)));
    }
  };
  if (spec.kind == QuantKind::HLQC) {  // ratios around 2^b, random ratio codes
    float* cb = reinterpret_cast<float*>(out.owned_.data() + sizeof h);
    for (int b = 1; b < h.bits; ++b)
      for (int k = 0; k < kHlqcRatios; ++k) cb[(b - 1) * kHlqcRatios + k] = float(1 << b) * (0.9f + 0.0125f * k);
  }
  const uint16_t param = f32_to_fp16(0.01f);
  for (int64_t tile = 0; tile < h.n_tiles; ++tile) {
    if (spec.kind == QuantKind::HLQC)
      random_bytes(out.owned_.data() + (out.ratio_codes(tile, 0) - out.data_),
                   int64_t(h.n_groups) * 16 * (h.bits - 1));
    for (int64_t g = 0; g < h.n_groups; ++g) {
      uint8_t* b = out.owned_.data() + (out.block(tile, g) - out.data_);
      uint16_t* params = reinterpret_cast<uint16_t*>(b);  // (P, 32) fp16
      for (int i = 0; i < h.params_per_group * kLutTileRows; ++i) params[i] = param;
      random_bytes(b + h.params_per_group * kLutUnitBytes,
                   h.block_bytes - h.params_per_group * kLutUnitBytes);
    }
  }
  return out;
}

size_t PackedMatrix::packed_bytes(const QuantSpec& spec, int64_t rows, int64_t cols) {
  return blob_bytes(make_header(spec, rows, cols));
}

PackedMatrix PackedMatrix::view(const uint8_t* data, size_t size) {
  require(data != nullptr && size >= sizeof(PackedHeader),
          "packed LUT matrix is truncated (", size, " bytes, the header alone is 64)");
  PackedHeader h;
  std::memcpy(&h, data, sizeof h);
  require(std::memcmp(h.magic, kMagic, 8) == 0, "not a packed LUT matrix (bad magic)");
  require(h.version == 1, "packed LUT matrix version ", h.version, " is not supported (expected 1)");
  require(h.kind <= uint8_t(QuantKind::HLQC) && lut_kind(QuantKind(h.kind)),
          "packed LUT matrix has unknown kind ", int(h.kind));
  require(h.layout <= uint8_t(UnitLayout::Rows32), "packed LUT matrix has unknown unit layout ",
          int(h.layout));
  require(h.rows > 0 && h.cols > 0 && h.rows < (int64_t(1) << 32) && h.cols < (int64_t(1) << 32),
          "packed LUT matrix has bad shape ", h.rows, "x", h.cols);
  QuantSpec spec;
  spec.kind = QuantKind(h.kind);
  spec.bits = h.bits;
  spec.group = h.group;
  require(h.bits >= 1 && h.bits <= 4 && h.group >= 0, "packed LUT matrix has bad bits/group");
  validate_quant_spec(spec);
  const PackedHeader want = make_header(spec, h.rows, h.cols);
  require(h.params_per_group == want.params_per_group && h.group_len == want.group_len &&
              h.group_padded == want.group_padded && h.n_groups == want.n_groups &&
              h.n_tiles == want.n_tiles && h.block_bytes == want.block_bytes,
          "packed LUT matrix header is inconsistent with its shape ", h.rows, "x", h.cols, " ",
          spec.name());
  const size_t want_size = blob_bytes(want);
  require(size == want_size, "packed LUT matrix ", h.rows, "x", h.cols, " ", spec.name(), " has ",
          size, " bytes, expected ", want_size, " (truncated or corrupt file?)");
  PackedMatrix out;
  out.data_ = data;
  out.size_ = size;
  if (h.kind == uint8_t(QuantKind::HLQC)) {
    const float* cb = out.ratio_codebook();
    for (int i = 0; i < (h.bits - 1) * kHlqcRatios; ++i) {
      float r;
      std::memcpy(&r, cb + i, sizeof r);
      require(std::isfinite(r) && r > 0.0f, "packed LUT matrix ", h.rows, "x", h.cols, " ",
              spec.name(), " has a bad ratio codebook entry ", r, " (corrupt file?)");
    }
  }
  return out;
}

PackedMatrix PackedMatrix::relaid(PackedMatrix w, UnitLayout layout) {
  require(!w.empty(), "cannot re-lay an empty packed matrix");
  if (w.layout() == layout) return w;
  PackedMatrix out;
  out.owned_ = HugePageBuffer(w.size_);
  std::memcpy(out.owned_.data(), w.data_, w.size_);  // header, codebook, ratio codes, params
  out.data_ = out.owned_.data();
  out.size_ = w.size_;
  reinterpret_cast<PackedHeader*>(out.owned_.data())->layout = uint8_t(layout);
  const PackedHeader& h = w.header();
  const int64_t units = h.group_padded / kLutQuadCols * h.bits;
  auto* const relay = w.layout() == UnitLayout::Tables4
                          ? relay_unit<UnitLayout::Tables4, UnitLayout::Rows32>
                          : relay_unit<UnitLayout::Rows32, UnitLayout::Tables4>;
  for (int64_t tile = 0; tile < h.n_tiles; ++tile)
    for (int64_t g = 0; g < h.n_groups; ++g) {
      const uint8_t* in = w.block(tile, g) + h.params_per_group * kLutUnitBytes;
      uint8_t* o = out.owned_.data() + (out.block(tile, g) - out.data_) + h.params_per_group * kLutUnitBytes;
      for (int64_t u = 0; u < units; ++u, in += kLutUnitBytes, o += kLutUnitBytes)
        relay(in, o);
    }
  return out;
}

std::vector<uint8_t> PackedMatrix::unpack_codes() const {
  const PackedHeader& h = header();
  std::vector<uint8_t> codes(size_t(h.rows * h.cols), 0);
  const int B = h.bits;
  for (int64_t tile = 0; tile < h.n_tiles; ++tile) {
    for (int64_t g = 0; g < h.n_groups; ++g) {
      const uint8_t* bits = block(tile, g) + h.params_per_group * kLutUnitBytes;
      for (int64_t quad = 0; quad < h.group_padded / kLutQuadCols; ++quad) {
        for (int b = 0; b < B; ++b) {
          const uint8_t* unit = bits + (quad * B + b) * kLutUnitBytes;
          for (int r = 0; r < kLutTileRows; ++r) {
            const int64_t row = tile * kLutTileRows + r;
            if (row >= h.rows) break;
            for (int t = 0; t < 4; ++t) {
              const UnitSlot s = unit_slot(layout(), r, t);
              const int pattern = (unit[s.byte] >> s.shift) & 15;
              for (int m = 0; m < 4; ++m) {
                const int64_t off = quad * kLutQuadCols + t * 4 + m;
                const int64_t col = g * h.group_len + off;
                if (off >= h.group_len || col >= h.cols) continue;
                if ((pattern >> m) & 1) codes[row * h.cols + col] |= uint8_t(1 << b);
              }
            }
          }
        }
      }
    }
  }
  return codes;
}

}  // namespace elutq
