// Encoding, validating and decoding the per-tensor blobs of elutq model files (see
// quantized_blob.h).
#include "format/quantized_blob.h"

#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/packed_matrix.h"

namespace elutq {
namespace {

constexpr char kPlainMagic[8] = {'E', 'L', 'U', 'T', 'Q', 'P', 'C', '1'};
constexpr char kLutMagic[8] = {'E', 'L', 'U', 'T', 'Q', 'L', 'P', '1'};
constexpr int64_t kMaxDim = int64_t(1) << 31;  // rows and cols of any real model fit easily

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// The spec as stored: Codebook ignores the group, so it is always 0 there.
QuantSpec normalized(QuantSpec s) {
  if (s.kind == QuantKind::Codebook) s.group = 0;
  return s;
}

PlainQuantHeader make_plain_header(const QuantSpec& spec, int64_t rows, int64_t cols) {
  PlainQuantHeader h;
  std::memset(&h, 0, sizeof h);
  std::memcpy(h.magic, kPlainMagic, 8);
  h.version = 1;
  h.kind = uint8_t(spec.kind);
  h.bits = uint8_t(spec.bits);
  h.params_per_group = uint16_t(spec.params_per_group());
  h.rows = rows;
  h.cols = cols;
  const bool cb = spec.kind == QuantKind::Codebook;
  h.group = cb ? 0 : spec.group;
  h.group_len = int32_t(cb ? cols : spec.group_len(cols));
  h.n_groups = cb ? 1 : spec.groups_per_row(cols);
  h.params_bytes = rows * h.n_groups * h.params_per_group * 2;
  h.row_code_bytes = (cols * spec.bits + 7) / 8;
  return h;
}

uint64_t plain_bytes(const PlainQuantHeader& h) {
  return sizeof(PlainQuantHeader) + uint64_t(round_up(h.params_bytes, 64)) +
         uint64_t(h.rows * h.row_code_bytes);
}

void check_shape(int64_t rows, int64_t cols) {
  require(rows > 0 && cols > 0 && rows < kMaxDim && cols < kMaxDim, "bad quantized matrix shape ",
          rows, "x", cols);
}

// One row of a plain blob: codes (cols) and parameters (n_groups * P floats).
void plain_row(const uint8_t* data, const PlainQuantHeader& h, int64_t r, uint8_t* codes,
               float* params) {
  const uint16_t* p =
      reinterpret_cast<const uint16_t*>(data + sizeof h) + r * h.n_groups * h.params_per_group;
  for (int64_t i = 0; i < h.n_groups * h.params_per_group; ++i) params[i] = fp16_to_f32(p[i]);
  const uint8_t* c = data + sizeof h + round_up(h.params_bytes, 64) + r * h.row_code_bytes;
  const int B = h.bits;
  for (int64_t col = 0; col < h.cols; ++col) {
    uint32_t v = 0;
    const int64_t bit0 = col * B;
    for (int b = 0; b < B; ++b) {
      const int64_t bit = bit0 + b;
      v |= uint32_t((c[bit >> 3] >> (bit & 7)) & 1) << b;
    }
    codes[col] = uint8_t(v);
  }
}

// One row of a LUT blob: codes (cols) and parameters (n_groups * P floats, P = the in-memory
// count: HLQC's expanded B + 1), read from the tiles; HLQC also its ratio codes
// (n_groups * (B - 1), if ratio_codes is not null).
void lut_row(const PackedMatrix& m, int64_t r, uint8_t* codes, float* params,
             uint8_t* ratio_codes = nullptr) {
  const PackedHeader& h = m.header();
  const int64_t tile = r / kLutTileRows;
  const int rr = int(r % kLutTileRows), half = rr / 16;
  const int B = h.bits, P = h.params_per_group;
  const bool hlqc = h.kind == uint8_t(QuantKind::HLQC);
  std::memset(codes, 0, size_t(h.cols));
  for (int64_t g = 0; g < h.n_groups; ++g) {
    const uint8_t* blk = m.block(tile, g);
    const uint16_t* p = reinterpret_cast<const uint16_t*>(blk);  // (P, 32) fp16
    if (hlqc) {
      uint8_t k[3];
      const uint8_t* rc = m.ratio_codes(tile, g);
      for (int b = 1; b < B; ++b) k[b - 1] = (rc[(b - 1) * 16 + rr % 16] >> (half * 4)) & 15;
      hlqc_expand(B, fp16_to_f32(p[rr]), fp16_to_f32(p[kLutTileRows + rr]), k,
                  m.ratio_codebook(), params + g * (B + 1));
      if (ratio_codes) std::copy(k, k + B - 1, ratio_codes + g * (B - 1));
    } else {
      for (int k = 0; k < P; ++k) params[g * P + k] = fp16_to_f32(p[k * kLutTileRows + rr]);
    }
    const uint8_t* bits = blk + P * kLutUnitBytes;  // (quads, B, 64)
    for (int64_t quad = 0; quad < h.group_padded / kLutQuadCols; ++quad) {
      for (int b = 0; b < B; ++b) {
        const uint8_t* unit = bits + (quad * B + b) * kLutUnitBytes;
        for (int t = 0; t < 4; ++t) {
          const UnitSlot slot = unit_slot(m.layout(), rr, t);
          const int nib = (unit[slot.byte] >> slot.shift) & 15;
          for (int mm = 0; mm < 4; ++mm) {
            const int64_t off = quad * kLutQuadCols + t * 4 + mm;
            const int64_t col = g * h.group_len + off;
            if (off >= h.group_len || col >= h.cols) continue;
            codes[col] |= uint8_t(((nib >> mm) & 1) << b);
          }
        }
      }
    }
  }
}

struct Decoder {
  QuantizedBlobInfo info;
  PackedMatrix lut;        // LUT layout: a view
  PlainQuantHeader plain;  // plain layout
  const uint8_t* data;
  int64_t params_per_row() const {
    return info.spec.kind == QuantKind::Codebook
               ? (int64_t(1) << info.spec.bits)
               : info.spec.groups_per_row(info.cols) * info.spec.params_per_group();
  }
  void row(int64_t r, uint8_t* codes, float* params) const {
    if (info.lut)
      lut_row(lut, r, codes, params);
    else
      plain_row(data, plain, r, codes, params);
  }
};

Decoder make_decoder(const uint8_t* data, uint64_t size) {
  Decoder d;
  d.info = inspect_quantized_blob(data, size);
  d.data = data;
  if (d.info.lut)
    d.lut = PackedMatrix::view(data, size_t(size));
  else
    std::memcpy(&d.plain, data, sizeof d.plain);
  return d;
}

}  // namespace

bool quantized_blob_is_lut(const QuantSpec& spec) {
  return (spec.kind == QuantKind::Uniform || spec.is_hlq()) && spec.bits <= 4;
}

uint64_t quantized_blob_bytes(const QuantSpec& spec, int64_t rows, int64_t cols) {
  validate_quant_spec(spec);
  check_shape(rows, cols);
  if (quantized_blob_is_lut(spec)) return PackedMatrix::packed_bytes(spec, rows, cols);
  return plain_bytes(make_plain_header(normalized(spec), rows, cols));
}

std::vector<uint8_t> encode_quantized_blob(const QuantizedMatrix& q) {
  const QuantSpec spec = normalized(q.spec);
  validate_quant_spec(spec);
  check_shape(q.rows, q.cols);
  require(int64_t(q.codes.size()) == q.rows * q.cols, "quantized matrix has ", q.codes.size(),
          " codes for ", q.rows, "x", q.cols);
  if (quantized_blob_is_lut(spec)) {
    const PackedMatrix m = PackedMatrix::pack(q);
    return std::vector<uint8_t>(m.data(), m.data() + m.size_bytes());
  }
  const PlainQuantHeader h = make_plain_header(spec, q.rows, q.cols);
  const int64_t per_row = h.n_groups * h.params_per_group;
  require(int64_t(q.params.size()) == q.rows * per_row, "quantized matrix has ", q.params.size(),
          " parameters, expected ", q.rows * per_row);
  std::vector<uint8_t> out(plain_bytes(h), 0);
  std::memcpy(out.data(), &h, sizeof h);
  uint16_t* p = reinterpret_cast<uint16_t*>(out.data() + sizeof h);  // (rows, n_groups, P) fp16
  for (size_t i = 0; i < q.params.size(); ++i) p[i] = f32_to_fp16(q.params[i]);
  uint8_t* codes = out.data() + sizeof h + round_up(h.params_bytes, 64);  // (rows, row_code_bytes)
  const int B = spec.bits;
  const uint32_t max_code = (1u << B) - 1;
  for (int64_t r = 0; r < q.rows; ++r) {
    uint8_t* row = codes + r * h.row_code_bytes;
    for (int64_t c = 0; c < q.cols; ++c) {
      const uint32_t v = q.codes[size_t(r * q.cols + c)];
      require(v <= max_code, "code ", v, " at (", r, ", ", c, ") does not fit in ", B, " bits");
      for (int b = 0; b < B; ++b) {
        const int64_t bit = c * B + b;
        row[bit >> 3] |= uint8_t(((v >> b) & 1) << (bit & 7));
      }
    }
  }
  return out;
}

QuantizedBlobInfo inspect_quantized_blob(const uint8_t* data, uint64_t size) {
  require(data != nullptr && size >= 64, "quantized tensor is truncated (", size,
          " bytes; its header alone is 64)");
  const bool lut = std::memcmp(data, kLutMagic, 8) == 0;
  require(lut || std::memcmp(data, kPlainMagic, 8) == 0,
          "quantized tensor has an unknown header (neither ELUTQLP1 nor ELUTQPC1 magic)");
  // Both headers hold rows and cols at bytes 16..31. Checking them against the size first keeps
  // every size computed from a corrupt header far from overflow.
  int64_t shape[2];
  std::memcpy(shape, data + 16, sizeof shape);
  check_shape(shape[0], shape[1]);
  require(uint64_t(shape[0] * shape[1]) <= size * 8, "quantized tensor claims ", shape[0], "x",
          shape[1], " weights but holds only ", size, " bytes (truncated or corrupt file?)");
  QuantizedBlobInfo info;
  if (lut) {
    const PackedMatrix m = PackedMatrix::view(data, size_t(size));  // validates everything
    const PackedHeader& h = m.header();
    info.spec.kind = QuantKind(h.kind);
    info.spec.bits = h.bits;
    info.spec.group = h.group;
    info.rows = h.rows;
    info.cols = h.cols;
    info.lut = true;
    return info;
  }
  PlainQuantHeader h;
  std::memcpy(&h, data, sizeof h);
  require(h.version == 1, "quantized tensor layout version ", h.version,
          " is not supported (this build reads 1)");
  require(h.kind <= uint8_t(QuantKind::Codebook), "quantized tensor has unknown kind ",
          int(h.kind));
  require(h.bits >= 1 && h.bits <= 8, "quantized tensor has ", int(h.bits),
          " bits per code (expected 1..8)");
  info.spec.kind = QuantKind(h.kind);
  info.spec.bits = h.bits;
  info.spec.group = h.group;
  validate_quant_spec(info.spec);
  require(!quantized_blob_is_lut(info.spec), "quantized tensor stores ", info.spec.name(),
          " in the plain layout; that format must use the LUT layout");
  check_shape(h.rows, h.cols);
  const PlainQuantHeader want = make_plain_header(info.spec, h.rows, h.cols);
  require(std::memcmp(&h, &want, sizeof h) == 0, "quantized tensor header (", h.rows, "x", h.cols,
          " ", info.spec.name(), ") has inconsistent derived fields");
  require(size == plain_bytes(h), "quantized tensor ", h.rows, "x", h.cols, " ", info.spec.name(),
          " has ", size, " bytes, expected ", plain_bytes(h), " (truncated or corrupt file?)");
  info.rows = h.rows;
  info.cols = h.cols;
  info.lut = false;
  return info;
}

QuantizedMatrix decode_quantized_blob(const uint8_t* data, uint64_t size) {
  const Decoder d = make_decoder(data, size);
  QuantizedMatrix q;
  q.spec = d.info.spec;
  q.rows = d.info.rows;
  q.cols = d.info.cols;
  const int64_t ppr = d.params_per_row();
  q.codes.resize(size_t(q.rows * q.cols));
  q.params.resize(size_t(q.rows * ppr));
  if (q.spec.kind == QuantKind::HLQC) {
    const int B = q.spec.bits;
    const int64_t gpr = q.spec.groups_per_row(q.cols);
    q.ratio_codebook.assign(d.lut.ratio_codebook(), d.lut.ratio_codebook() + (B - 1) * kHlqcRatios);
    q.ratio_codes.resize(size_t(q.rows * gpr * (B - 1)));
    for (int64_t r = 0; r < q.rows; ++r)
      lut_row(d.lut, r, q.codes.data() + r * q.cols, q.params.data() + r * ppr,
              q.ratio_codes.data() + r * gpr * (B - 1));
    return q;
  }
  for (int64_t r = 0; r < q.rows; ++r)
    d.row(r, q.codes.data() + r * q.cols, q.params.data() + r * ppr);
  return q;
}

void quantized_blob_rows_to_f32(const uint8_t* data, uint64_t size, int64_t row_begin,
                                int64_t row_end, float* dst) {
  const Decoder d = make_decoder(data, size);
  const QuantSpec& spec = d.info.spec;
  const int64_t cols = d.info.cols;
  require(row_begin >= 0 && row_begin <= row_end && row_end <= d.info.rows, "rows [", row_begin,
          ", ", row_end, ") are outside the quantized tensor's ", d.info.rows, " rows");
  std::vector<uint8_t> codes(static_cast<size_t>(cols));  // (cols) one row
  std::vector<float> params(size_t(d.params_per_row()));  // (groups, P) or (2^B) one row
  const int64_t g = spec.kind == QuantKind::Codebook ? cols : spec.group_len(cols);
  const int P = spec.kind == QuantKind::Codebook ? 0 : spec.params_per_group();
  for (int64_t r = row_begin; r < row_end; ++r) {
    d.row(r, codes.data(), params.data());
    float* y = dst + (r - row_begin) * cols;
    for (int64_t c = 0; c < cols; ++c)
      y[c] = dequant_code(spec, params.data() + (c / g) * P, codes[size_t(c)]);
  }
}

}  // namespace elutq
