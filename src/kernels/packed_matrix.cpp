// The kernels' packed matrices: packed by the codec, synthetic ones for benchmarks, re-laid units.
#include "kernels/packed_matrix.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "tensor/quantized_matrix_codec.h"

namespace elutq {
namespace {

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

PackedMatrix PackedMatrix::allocate(const PackedHeader& h) {
  PackedMatrix out;
  out.owned_ = HugePageBuffer(lut_blob_bytes(h));  // zero-filled
  std::memcpy(out.owned_.data(), &h, sizeof h);
  out.data_ = out.owned_.data();
  out.size_ = out.owned_.size();
  return out;
}

PackedMatrix PackedMatrix::pack(const QuantizedMatrix& q) {
  // The header sizes the buffer; encode_lut_blob checks the rest of q before writing anything.
  require(quantized_blob_is_lut(q.spec),
          "LUT kernels take uniform or HLQ matrices with 1..4 bits, not ", q.spec.name());
  require(q.rows > 0 && q.cols > 0, "cannot pack an empty ", q.rows, "x", q.cols, " matrix");
  PackedMatrix out = allocate(make_lut_header(q.spec, q.rows, q.cols));
  encode_lut_blob(q, out.mutable_data());
  return out;
}

PackedMatrix PackedMatrix::synthetic(const QuantSpec& spec, int64_t rows, int64_t cols,
                                     uint64_t seed, UnitLayout layout) {
  validate_quant_spec(spec);
  require(quantized_blob_is_lut(spec),
          "LUT kernels take uniform or HLQ matrices with 1..4 bits, not ", spec.name());
  require(rows > 0 && cols > 0, "cannot make an empty ", rows, "x", cols, " matrix");
  PackedHeader h = make_lut_header(spec, rows, cols);
  h.layout = uint8_t(layout);  // random bits are random in either unit order
  PackedMatrix out = allocate(h);
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
    float* cb = reinterpret_cast<float*>(out.mutable_data() + sizeof h);
    for (int b = 1; b < h.bits; ++b)
      for (int k = 0; k < kHlqcRatios; ++k) cb[(b - 1) * kHlqcRatios + k] = float(1 << b) * (0.9f + 0.0125f * k);
  }
  const uint16_t param = f32_to_fp16(0.01f);
  for (int64_t tile = 0; tile < h.n_tiles; ++tile) {
    if (spec.kind == QuantKind::HLQC)
      random_bytes(out.mutable_data() + lut_ratio_codes_offset(h, tile, 0),
                   int64_t(h.n_groups) * 16 * (h.bits - 1));
    for (int64_t g = 0; g < h.n_groups; ++g) {
      uint8_t* b = out.mutable_data() + lut_block_offset(h, tile, g);
      uint16_t* params = reinterpret_cast<uint16_t*>(b);  // (P, 32) fp16
      for (int i = 0; i < h.params_per_group * kLutTileRows; ++i) params[i] = param;
      random_bytes(b + h.params_per_group * kLutUnitBytes,
                   h.block_bytes - h.params_per_group * kLutUnitBytes);
    }
  }
  return out;
}

PackedMatrix PackedMatrix::view(const uint8_t* data, size_t size) {
  check_lut_blob(data, size);
  PackedMatrix out;
  out.data_ = data;
  out.size_ = size;
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
      uint8_t* o =
          out.mutable_data() + lut_block_offset(h, tile, g) + h.params_per_group * kLutUnitBytes;
      for (int64_t u = 0; u < units; ++u, in += kLutUnitBytes, o += kLutUnitBytes)
        relay(in, o);
    }
  return out;
}

std::vector<uint8_t> PackedMatrix::unpack_codes() const {
  return decode_quantized_blob(data_, size_).codes;
}

}  // namespace elutq
