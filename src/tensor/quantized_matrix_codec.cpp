// Encoding, validating and decoding the bytes of a QuantizedMatrix; see quantized_matrix_codec.h.
#include "tensor/quantized_matrix_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"

namespace elutq {
namespace {

constexpr int64_t kMaxDim = int64_t(1) << 31;  // rows and cols of any real model fit easily

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

bool lut_kind(QuantKind k) {
  return k == QuantKind::Uniform || k == QuantKind::HLQ || k == QuantKind::HLQC;
}

// ---- one group's parameters, for every format ----------------------------------------------------

// fp16 parameters a group (Codebook: a row) stores. HLQC keeps s_0 and m, its other plane scales
// coming from the ratio codes; every other kind stores all its in-memory parameters.
int stored_params_per_group(const QuantSpec& spec) {
  return spec.kind == QuantKind::HLQC ? 2 : spec.params_per_group();
}

// The stored parameters of one group, `stride` fp16 apart, from its in-memory ones.
void store_group_params(const QuantSpec& spec, const float* params, uint16_t* out,
                        int64_t stride) {
  if (spec.kind == QuantKind::HLQC) {
    out[0] = f32_to_fp16(params[0]);
    out[stride] = f32_to_fp16(params[spec.bits]);
    return;
  }
  for (int i = 0; i < spec.params_per_group(); ++i) out[i * stride] = f32_to_fp16(params[i]);
}

// And back. HLQC: k is the group's B - 1 ratio codes, codebook the matrix's (B - 1) x 16 ratios.
void load_group_params(const QuantSpec& spec, const uint16_t* in, int64_t stride,
                       const uint8_t* k, const float* codebook, float* params) {
  if (spec.kind == QuantKind::HLQC) {
    hlqc_expand(spec.bits, fp16_to_f32(in[0]), fp16_to_f32(in[stride]), k, codebook, params);
    return;
  }
  for (int i = 0; i < spec.params_per_group(); ++i) params[i] = fp16_to_f32(in[i * stride]);
}

// HLQC ratio codes (planes 1 .. bits - 1, bits <= kLutMaxBits) of row r (0..31) of a tile in its
// (tile, group) ratio-code bytes: plane b's 16 bytes hold row r's code in byte r % 16, low nibble
// for r < 16, high nibble for r >= 16.
void put_ratio_codes(uint8_t* rc, int bits, int r, const uint8_t* k) {
  for (int b = 1; b < bits && b < kLutMaxBits; ++b)
    rc[(b - 1) * 16 + r % 16] |= uint8_t(k[b - 1] << (r / 16 * 4));
}
void get_ratio_codes(const uint8_t* rc, int bits, int r, uint8_t* k) {
  for (int b = 1; b < bits && b < kLutMaxBits; ++b)
    k[b - 1] = (rc[(b - 1) * 16 + r % 16] >> (r / 16 * 4)) & 15;
}

// ---- plain layout ------------------------------------------------------------------------------

// The spec as stored: a format with one parameter set per row ignores the group, so it is
// always 0 there.
QuantSpec normalized(QuantSpec s) {
  if (format_traits(s.kind).per_row) s.group = 0;
  return s;
}

PlainQuantHeader make_plain_header(const QuantSpec& spec, int64_t rows, int64_t cols) {
  PlainQuantHeader h;
  std::memset(&h, 0, sizeof h);
  std::memcpy(h.magic, kPlainBlobMagic, 8);
  h.version = 1;
  h.kind = uint8_t(spec.kind);
  h.bits = uint8_t(spec.bits);
  h.params_per_group = uint16_t(stored_params_per_group(spec));
  h.rows = rows;
  h.cols = cols;
  const bool cb = format_traits(spec.kind).per_row;
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

QuantSpec plain_spec(const PlainQuantHeader& h) {
  QuantSpec s;
  s.kind = QuantKind(h.kind);
  s.bits = h.bits;
  s.group = h.group;
  return s;
}

void check_shape(int64_t rows, int64_t cols) {
  require(rows > 0 && cols > 0 && rows < kMaxDim && cols < kMaxDim, "bad quantized matrix shape ",
          rows, "x", cols);
}

std::vector<uint8_t> encode_plain(const QuantizedMatrix& q, const QuantSpec& spec) {
  const PlainQuantHeader h = make_plain_header(spec, q.rows, q.cols);
  const int64_t P = h.params_per_group, per_row = h.n_groups * P;
  require(int64_t(q.params.size()) == q.rows * per_row, "quantized matrix has ", q.params.size(),
          " parameters, expected ", q.rows * per_row);
  std::vector<uint8_t> out(plain_bytes(h), 0);
  std::memcpy(out.data(), &h, sizeof h);
  uint16_t* params = reinterpret_cast<uint16_t*>(out.data() + sizeof h);  // (rows, n_groups, P)
  for (int64_t g = 0; g < q.rows * h.n_groups; ++g)
    store_group_params(spec, q.params.data() + g * P, params + g * P, 1);
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

// One row of a plain blob: codes (cols) and parameters (n_groups * P floats).
void plain_row(const uint8_t* data, const PlainQuantHeader& h, int64_t r, uint8_t* codes,
               float* params) {
  const QuantSpec spec = plain_spec(h);
  const int64_t P = h.params_per_group;
  const uint16_t* p = reinterpret_cast<const uint16_t*>(data + sizeof h) + r * h.n_groups * P;
  for (int64_t g = 0; g < h.n_groups; ++g)
    load_group_params(spec, p + g * P, 1, nullptr, nullptr, params + g * P);
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

// ---- LUT layout --------------------------------------------------------------------------------

QuantSpec lut_spec(const PackedHeader& h) {
  QuantSpec s;
  s.kind = QuantKind(h.kind);
  s.bits = h.bits;
  s.group = h.group;
  return s;
}

// One row of a LUT blob: codes (cols) and parameters (n_groups * P floats, P = the in-memory
// count: HLQC's expanded B + 1); HLQC also its ratio codes (n_groups * (B - 1), if ratio_codes is
// not null).
void lut_row(const uint8_t* data, const PackedHeader& h, int64_t r, uint8_t* codes, float* params,
             uint8_t* ratio_codes) {
  const QuantSpec spec = lut_spec(h);
  const int64_t tile = r / kLutTileRows;
  const int rr = int(r % kLutTileRows);
  const int B = h.bits, P = spec.params_per_group();
  const bool hlqc = lut_is_hlqc(h);
  const float* codebook = reinterpret_cast<const float*>(data + sizeof(PackedHeader));
  const UnitLayout layout = UnitLayout(h.layout);
  std::memset(codes, 0, size_t(h.cols));
  for (int64_t g = 0; g < h.n_groups; ++g) {
    const uint8_t* blk = data + lut_block_offset(h, tile, g);
    uint8_t k[kLutMaxBits - 1] = {};  // HLQC: ratio codes of planes 1..B-1
    if (hlqc) {
      get_ratio_codes(data + lut_ratio_codes_offset(h, tile, g), B, rr, k);
      if (ratio_codes) std::copy(k, k + (B - 1), ratio_codes + g * (B - 1));
    }
    load_group_params(spec, reinterpret_cast<const uint16_t*>(blk) + rr, kLutTileRows, k,
                      codebook, params + g * P);
    const uint8_t* bits = blk + h.params_per_group * kLutUnitBytes;  // (quads, B, 64)
    for (int64_t quad = 0; quad < h.group_padded / kLutQuadCols; ++quad) {
      for (int b = 0; b < B; ++b) {
        const uint8_t* unit = bits + (quad * B + b) * kLutUnitBytes;
        for (int t = 0; t < 4; ++t) {
          const UnitSlot slot = unit_slot(layout, rr, t);
          const int nib = (unit[slot.byte] >> slot.shift) & 15;
          for (int m = 0; m < 4; ++m) {
            const int64_t off = quad * kLutQuadCols + t * 4 + m;
            const int64_t col = g * h.group_len + off;
            if (off >= h.group_len || col >= h.cols) continue;
            codes[col] |= uint8_t(((nib >> m) & 1) << b);
          }
        }
      }
    }
  }
}

// ---- either layout -----------------------------------------------------------------------------

struct Decoder {
  QuantizedBlobInfo info;
  PackedHeader lut;        // LUT layout
  PlainQuantHeader plain;  // plain layout
  const uint8_t* data;
  int64_t params_per_row() const {
    const int64_t sets =
        format_traits(info.spec.kind).per_row ? 1 : info.spec.groups_per_row(info.cols);
    return sets * info.spec.params_per_group();
  }
  void row(int64_t r, uint8_t* codes, float* params, uint8_t* ratio_codes = nullptr) const {
    if (info.lut)
      lut_row(data, lut, r, codes, params, ratio_codes);
    else
      plain_row(data, plain, r, codes, params);
  }
};

Decoder make_decoder(const uint8_t* data, uint64_t size) {
  Decoder d;
  d.info = inspect_quantized_blob(data, size);
  d.data = data;
  if (d.info.lut)
    std::memcpy(&d.lut, data, sizeof d.lut);
  else
    std::memcpy(&d.plain, data, sizeof d.plain);
  return d;
}

}  // namespace

PackedHeader make_lut_header(const QuantSpec& spec, int64_t rows, int64_t cols) {
  PackedHeader h;
  std::memset(&h, 0, sizeof h);
  std::memcpy(h.magic, kLutBlobMagic, 8);
  h.version = 1;
  h.kind = uint8_t(spec.kind);
  h.bits = uint8_t(spec.bits);
  h.params_per_group = uint8_t(stored_params_per_group(spec));
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

void encode_lut_blob(const QuantizedMatrix& q, uint8_t* out) {
  const QuantSpec& spec = q.spec;
  require(lut_kind(spec.kind), "LUT kernels take uniform or HLQ matrices, not ", spec.name());
  require(spec.bits >= 1 && spec.bits <= kLutMaxBits, "LUT kernels take 1..4 bits, not ",
          spec.name());
  require(q.rows > 0 && q.cols > 0, "cannot pack an empty ", q.rows, "x", q.cols, " matrix");
  require(int64_t(q.codes.size()) == q.rows * q.cols, "quantized matrix has ", q.codes.size(),
          " codes for ", q.rows, "x", q.cols);
  const int64_t gpr = spec.groups_per_row(q.cols);
  require(int64_t(q.params.size()) == q.rows * gpr * spec.params_per_group(),
          "quantized matrix has ", q.params.size(), " parameters, expected ",
          q.rows * gpr * spec.params_per_group());
  require(spec.group_len(q.cols) <= (int64_t(1) << 24), "group too long for the LUT kernels");
  check_hlqc(q);

  const PackedHeader h = make_lut_header(spec, q.rows, q.cols);
  std::memcpy(out, &h, sizeof h);
  const int B = spec.bits;
  const bool hlqc = spec.kind == QuantKind::HLQC;
  if (hlqc && !q.ratio_codebook.empty())  // B = 1 has no ratios
    std::memcpy(out + sizeof h, q.ratio_codebook.data(), q.ratio_codebook.size() * sizeof(float));
  const int64_t n_quads = h.group_padded / kLutQuadCols;
  for (int64_t tile = 0; tile < h.n_tiles; ++tile) {
    for (int64_t g = 0; g < h.n_groups; ++g) {
      uint8_t* blk = out + lut_block_offset(h, tile, g);
      uint16_t* params = reinterpret_cast<uint16_t*>(blk);  // (P, 32) fp16
      const int64_t col0 = g * h.group_len;
      const int64_t col_end = std::min<int64_t>(col0 + h.group_len, q.cols);
      for (int r = 0; r < kLutTileRows; ++r) {
        const int64_t row = tile * kLutTileRows + r;
        if (row >= q.rows) break;
        store_group_params(spec, q.group_params(row, g), params + r, kLutTileRows);
        if (hlqc)
          put_ratio_codes(out + lut_ratio_codes_offset(h, tile, g), B, r,
                          q.ratio_codes.data() + (row * gpr + g) * (B - 1));
      }
      uint8_t* bits = blk + h.params_per_group * kLutUnitBytes;  // (n_quads, B, 64)
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
}

PackedHeader check_lut_blob(const uint8_t* data, uint64_t size) {
  require(data != nullptr && size >= sizeof(PackedHeader), "packed LUT matrix is truncated (",
          size, " bytes, the header alone is 64)");
  PackedHeader h;
  std::memcpy(&h, data, sizeof h);
  require(std::memcmp(h.magic, kLutBlobMagic, 8) == 0, "not a packed LUT matrix (bad magic)");
  require(h.version == 1, "packed LUT matrix version ", h.version, " is not supported (expected 1)");
  require(h.kind <= uint8_t(QuantKind::HLQC) && lut_kind(QuantKind(h.kind)),
          "packed LUT matrix has unknown kind ", int(h.kind));
  require(h.layout <= uint8_t(UnitLayout::Rows32), "packed LUT matrix has unknown unit layout ",
          int(h.layout));
  require(h.rows > 0 && h.cols > 0 && h.rows < (int64_t(1) << 32) && h.cols < (int64_t(1) << 32),
          "packed LUT matrix has bad shape ", h.rows, "x", h.cols);
  const QuantSpec spec = lut_spec(h);
  require(h.bits >= 1 && h.bits <= kLutMaxBits && h.group >= 0,
          "packed LUT matrix has bad bits/group");
  validate_quant_spec(spec);
  const PackedHeader want = make_lut_header(spec, h.rows, h.cols);
  require(h.params_per_group == want.params_per_group && h.group_len == want.group_len &&
              h.group_padded == want.group_padded && h.n_groups == want.n_groups &&
              h.n_tiles == want.n_tiles && h.block_bytes == want.block_bytes,
          "packed LUT matrix header is inconsistent with its shape ", h.rows, "x", h.cols, " ",
          spec.name());
  const size_t want_size = lut_blob_bytes(want);
  require(size == want_size, "packed LUT matrix ", h.rows, "x", h.cols, " ", spec.name(), " has ",
          size, " bytes, expected ", want_size, " (truncated or corrupt file?)");
  for (int i = 0; i < lut_codebook_bytes(h) / int(sizeof(float)); ++i) {
    float r;
    std::memcpy(&r, data + sizeof h + i * sizeof(float), sizeof r);
    require(std::isfinite(r) && r > 0.0f, "packed LUT matrix ", h.rows, "x", h.cols, " ",
            spec.name(), " has a bad ratio codebook entry ", r, " (corrupt file?)");
  }
  return h;
}

bool quantized_blob_is_lut(const QuantSpec& spec) {
  return lut_kind(spec.kind) && spec.bits <= kLutMaxBits;
}

uint64_t quantized_blob_bytes(const QuantSpec& spec, int64_t rows, int64_t cols) {
  validate_quant_spec(spec);
  check_shape(rows, cols);
  if (quantized_blob_is_lut(spec)) return lut_blob_bytes(make_lut_header(spec, rows, cols));
  return plain_bytes(make_plain_header(normalized(spec), rows, cols));
}

std::vector<uint8_t> encode_quantized_blob(const QuantizedMatrix& q) {
  const QuantSpec spec = normalized(q.spec);
  validate_quant_spec(spec);
  check_shape(q.rows, q.cols);
  require(int64_t(q.codes.size()) == q.rows * q.cols, "quantized matrix has ", q.codes.size(),
          " codes for ", q.rows, "x", q.cols);
  if (!quantized_blob_is_lut(spec)) return encode_plain(q, spec);
  std::vector<uint8_t> out(lut_blob_bytes(make_lut_header(spec, q.rows, q.cols)), 0);
  encode_lut_blob(q, out.data());
  return out;
}

QuantizedBlobInfo inspect_quantized_blob(const uint8_t* data, uint64_t size) {
  require(data != nullptr && size >= 64, "quantized tensor is truncated (", size,
          " bytes; its header alone is 64)");
  const bool lut = std::memcmp(data, kLutBlobMagic, 8) == 0;
  require(lut || std::memcmp(data, kPlainBlobMagic, 8) == 0,
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
    const PackedHeader h = check_lut_blob(data, size);
    info.spec = lut_spec(h);
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
  info.spec = plain_spec(h);
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
  require(reinterpret_cast<uintptr_t>(data) % 4 == 0,
          "internal: a quantized blob must be decoded from a 4-byte aligned address");
  const Decoder d = make_decoder(data, size);
  QuantizedMatrix q;
  q.spec = d.info.spec;
  q.rows = d.info.rows;
  q.cols = d.info.cols;
  const int64_t ppr = d.params_per_row();
  q.codes.resize(size_t(q.rows * q.cols));
  q.params.resize(size_t(q.rows * ppr));
  int64_t ratio_codes_per_row = 0;
  if (q.spec.kind == QuantKind::HLQC) {
    const int B = q.spec.bits;
    const float* codebook = reinterpret_cast<const float*>(data + sizeof(PackedHeader));
    q.ratio_codebook.assign(codebook, codebook + (B - 1) * kHlqcRatios);
    ratio_codes_per_row = q.spec.groups_per_row(q.cols) * (B - 1);
    q.ratio_codes.resize(size_t(q.rows * ratio_codes_per_row));
  }
  for (int64_t r = 0; r < q.rows; ++r)
    d.row(r, q.codes.data() + r * q.cols, q.params.data() + r * ppr,
          ratio_codes_per_row ? q.ratio_codes.data() + r * ratio_codes_per_row : nullptr);
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
  const bool per_row = format_traits(spec.kind).per_row;
  const int64_t g = per_row ? cols : spec.group_len(cols);
  const int P = per_row ? 0 : spec.params_per_group();
  for (int64_t r = row_begin; r < row_end; ++r) {
    d.row(r, codes.data(), params.data());
    float* y = dst + (r - row_begin) * cols;
    for (int64_t c = 0; c < cols; ++c)
      y[c] = dequant_code(spec, params.data() + (c / g) * P, codes[size_t(c)]);
  }
}

}  // namespace elutq
