// The two byte layouts of a QuantizedMatrix (tensor/qformat.h): their headers, magic strings and
// geometry, defined once for the encoder (tensor/quantized_matrix_codec.h), the LUT kernels
// (kernels/packed_matrix.h), the model file and the resume checkpoints. docs/FORMAT.md describes
// both with worked examples.
//
// LUT layout (Uniform, HLQ and HLQC with B = 1..4): a 64-byte "ELUTQLP1" header (PackedHeader),
// then blocks the LUT kernels run straight from an mmap. Rows are cut into tiles of 32 (the last
// one padded with zero rows); each row's columns into the format's groups, each padded with zero
// columns to a multiple of 16. For every (tile, group) there is one block, blocks ordered
// tile-major:
//   params  P x 32 fp16: parameter p of rows 0..31 of the tile, p-major.
//           HLQ: P = B + 1 (s_0 .. s_{B-1}, zero); Uniform: P = 2 (scale, zero; s_b = scale * 2^b);
//           HLQC: P = 2 (s_0, midpoint m).
//   bits    (padded_group / 16) quads x B planes x 64 bytes, quad-major. In the 64 bytes of
//           (quad q, plane b), byte i holds two 4-bit patterns: the low nibble is row i/4, the high
//           nibble row 16 + i/4, both for the 4 columns 16q + 4(i%4) .. +3 of the group; bit m of
//           a nibble is bit b of the code of column 16q + 4(i%4) + m.
// HLQC also has, right after the header, its ratio codebook, (B - 1) x 16 fp32 (64 bytes per
// plane), and at the start of every tile the ratio codes of its groups, 16 (B - 1) bytes per group
// (then zero padding to 64): for plane b >= 1, 16 bytes whose byte i holds row i's code (low
// nibble) and row 16 + i's (high nibble). s_b = s_0 * codebook[b - 1][code].
// Byte i of a unit thus pairs with entry (i%4)*16 + nibble of the 64-byte activation table of that
// quad (four 16-entry tables, one per 4 columns), which is what vpermb / tbl look up in one go.
// That unit order (UnitLayout::Tables4) is the one files hold; the AVX2 kernels read another
// (UnitLayout::Rows32, see unit_slot), made from it at load; everything but the units' bytes is
// the same in both.
//
// Plain layout (everything else: Codebook / GANQ at any B, Uniform with B = 5..8): a 64-byte
// "ELUTQPC1" header (PlainQuantHeader), the fp16 parameters row-major by (row, group), padding to
// 64 bytes, then each row's B-bit codes as a little-endian bit stream (code of column c in bits
// [c*B, c*B + B) of the row; each row starts on a byte).
#pragma once

#include <cstddef>
#include <cstdint>

#include "tensor/qformat.h"

namespace elutq {

inline constexpr char kLutBlobMagic[8] = {'E', 'L', 'U', 'T', 'Q', 'L', 'P', '1'};
inline constexpr char kPlainBlobMagic[8] = {'E', 'L', 'U', 'T', 'Q', 'P', 'C', '1'};

inline constexpr int kLutMaxBits = 4;      // bit-planes the LUT layout holds at most
inline constexpr int kLutTileRows = 32;     // rows per tile
inline constexpr int kLutQuadCols = 16;     // columns per 64-byte unit (4 tables of 4 columns)
inline constexpr int kLutUnitBytes = 64;    // bytes per (quad, plane) unit and per param row

// The order of the 128 4-bit patterns (32 rows x 4 tables) inside each 64-byte unit.
enum class UnitLayout : uint8_t {
  // Byte 4 (r % 16) + t holds row r (low nibble for r < 16, high nibble for r >= 16) of table t:
  // each dword is one row's four tables, what vpermb + vpdpbusd and tbl + sdot want. Files use it.
  Tables4 = 0,
  // Half h = t / 2 of the unit (32 bytes) holds tables 2h (low nibbles) and 2h + 1 (high nibbles),
  // row r at byte 4 (r % 8) + r / 8: a 128-bit lane then needs a single 16-entry table (vpshufb),
  // and the byte sums split by position mod 4 come out as rows 8k..8k+7 (AVX2 kernels).
  Rows32 = 1,
};

// Where the pattern of row r (0..31) of a tile and table t (0..3) of a quad sits in a unit: the
// byte, and the nibble's shift (0 or 4).
struct UnitSlot {
  int byte, shift;
};
constexpr UnitSlot unit_slot(UnitLayout layout, int r, int t) {
  if (layout == UnitLayout::Tables4) return {4 * (r % 16) + t, 4 * (r / 16)};
  return {32 * (t / 2) + 4 * (r % 8) + r / 8, 4 * (t % 2)};
}

struct PackedHeader {
  char magic[8];             // kLutBlobMagic
  uint32_t version;          // 1
  uint8_t kind;              // QuantKind::Uniform, HLQ or HLQC
  uint8_t bits;              // B, 1..4
  uint8_t params_per_group;  // P: fp16 rows per block: HLQ B + 1, Uniform and HLQC 2
  uint8_t layout;            // UnitLayout (0 in files written before it existed: Tables4)
  int64_t rows, cols;        // the logical matrix
  int32_t group;             // spec.group (0 = whole row)
  int32_t group_len;         // columns per group (group, or cols for a whole-row group)
  int32_t group_padded;      // group_len rounded up to a multiple of 16
  int32_t n_groups;          // groups per row
  int64_t n_tiles;           // ceil(rows / 32)
  int64_t block_bytes;       // bytes per (tile, group) block
};
static_assert(sizeof(PackedHeader) == 64, "the packed header is 64 bytes on disk");

struct PlainQuantHeader {
  char magic[8];              // kPlainBlobMagic
  uint32_t version;           // 1
  uint8_t kind;               // QuantKind
  uint8_t bits;               // B, 1..8
  uint16_t params_per_group;  // P: Uniform 2, HLQ B + 1, Codebook 2^B
  int64_t rows, cols;         // the logical matrix (out, in)
  int32_t group;              // spec.group (0 = whole row; always 0 for Codebook)
  int32_t group_len;          // columns per parameter group (Codebook: cols)
  int64_t n_groups;           // parameter groups per row (Codebook: 1)
  int64_t params_bytes;       // rows * n_groups * P * 2
  int64_t row_code_bytes;     // ceil(cols * B / 8)
};
static_assert(sizeof(PlainQuantHeader) == 64, "the plain quantized header is 64 bytes on disk");

// ---- LUT layout geometry, from a (validated) header -------------------------------------------

inline bool lut_is_hlqc(const PackedHeader& h) { return h.kind == uint8_t(QuantKind::HLQC); }
// HLQC's ratio codebook after the header, (B - 1) x 16 fp32; 0 for the other kinds.
inline int64_t lut_codebook_bytes(const PackedHeader& h) {
  return lut_is_hlqc(h) ? int64_t(h.bits - 1) * 64 : 0;
}
// HLQC's ratio codes at the start of each tile, padded to 64; 0 for the other kinds.
inline int64_t lut_tile_ratio_bytes(const PackedHeader& h) {
  return lut_is_hlqc(h) ? (int64_t(h.n_groups) * 16 * (h.bits - 1) + 63) / 64 * 64 : 0;
}
inline int64_t lut_tile_bytes(const PackedHeader& h) {
  return lut_tile_ratio_bytes(h) + int64_t(h.n_groups) * h.block_bytes;
}
inline size_t lut_blob_bytes(const PackedHeader& h) {
  return sizeof(PackedHeader) + size_t(lut_codebook_bytes(h) + h.n_tiles * lut_tile_bytes(h));
}
inline int64_t lut_tile_offset(const PackedHeader& h, int64_t tile) {
  return int64_t(sizeof(PackedHeader)) + lut_codebook_bytes(h) + tile * lut_tile_bytes(h);
}
// The (tile, group) block: params then bit-plane units.
inline int64_t lut_block_offset(const PackedHeader& h, int64_t tile, int64_t group) {
  return lut_tile_offset(h, tile) + lut_tile_ratio_bytes(h) + group * h.block_bytes;
}
// HLQC: the (tile, group) ratio codes ((B - 1) x 16 bytes).
inline int64_t lut_ratio_codes_offset(const PackedHeader& h, int64_t tile, int64_t group) {
  return lut_tile_offset(h, tile) + group * 16 * (h.bits - 1);
}

}  // namespace elutq
