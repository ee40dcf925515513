// The kernel-ready layout of a quantized matrix (Uniform or HLQ, B = 1..4): a flat byte blob with a
// 64-byte header, made once from a QuantizedMatrix and usable straight from an mmap'ed model file.
//
// Rows are cut into tiles of 32 (the last one padded with zero rows); each row's columns into the
// format's groups, each padded with zero columns to a multiple of 16. For every (tile, group) there
// is one block, blocks ordered tile-major:
//   params  P x 32 fp16: parameter p of rows 0..31 of the tile, p-major.
//           HLQ: P = B + 1 (s_0 .. s_{B-1}, zero); Uniform: P = 2 (scale, zero; s_b = scale * 2^b).
//   bits    (padded_group / 16) quads x B planes x 64 bytes, quad-major. In the 64 bytes of
//           (quad q, plane b), byte i holds two 4-bit patterns: the low nibble is row i/4, the high
//           nibble row 16 + i/4, both for the 4 columns 16q + 4(i%4) .. +3 of the group; bit m of
//           a nibble is bit b of the code of column 16q + 4(i%4) + m.
// HLQC (HLQ with compact parameters) adds two things and otherwise has uniform's blocks (P = 2:
// s_0, zero): right after the header its ratio codebook, (B - 1) x 16 fp32 (64 bytes per plane), and
// at the start of every tile the ratio codes of its groups, 16 (B - 1) bytes per group (then zero
// padding to 64): for plane b >= 1, 16 bytes whose byte i holds row i's code (low nibble) and row
// 16 + i's (high nibble). s_b = s_0 * codebook[b - 1][code].
// Byte i of a unit thus pairs with entry (i%4)*16 + nibble of the 64-byte activation table of that
// quad (four 16-entry tables, one per 4 columns), which is what vpermb / tbl look up in one go.
// That unit order (UnitLayout::Tables4) is the one model files hold. The AVX2 kernels read another
// (UnitLayout::Rows32, see unit_slot), made from it once at load by relaid(); everything but the
// units' bytes is the same in both. docs/FORMAT.md ("LUT kernel layout") has a worked example.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/huge_page_buffer.h"
#include "tensor/qformat.h"

namespace elutq {

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
  char magic[8];             // "ELUTQLP1"
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

class PackedMatrix {
 public:
  PackedMatrix() = default;
  PackedMatrix(PackedMatrix&&) = default;
  PackedMatrix& operator=(PackedMatrix&&) = default;
  PackedMatrix(const PackedMatrix&) = delete;
  PackedMatrix& operator=(const PackedMatrix&) = delete;

  // Packs a Uniform, HLQ or HLQC matrix with B <= 4 (throws Error for anything else).
  static PackedMatrix pack(const QuantizedMatrix& q);
  // Random bits and small constant parameters at a real shape, built directly in the packed form
  // (fast even for 7B-size models): for speed measurements only.
  static PackedMatrix synthetic(const QuantSpec& spec, int64_t rows, int64_t cols, uint64_t seed,
                                UnitLayout layout = UnitLayout::Tables4);
  // Uses bytes produced by pack() (e.g. mmap'ed from a model file) without copying; they must
  // outlive the result. Throws Error if the header or the size is inconsistent.
  static PackedMatrix view(const uint8_t* data, size_t size);
  // The same matrix with its units in `layout`: w itself if it is already, else an owned copy
  // (one pass over the bytes; a view's mapping is no longer read afterwards).
  static PackedMatrix relaid(PackedMatrix w, UnitLayout layout);
  // Bytes (header included) pack() produces for a spec and shape, without packing: what a model
  // file writer declares up front.
  static size_t packed_bytes(const QuantSpec& spec, int64_t rows, int64_t cols);

  const PackedHeader& header() const { return *reinterpret_cast<const PackedHeader*>(data_); }
  const uint8_t* data() const { return data_; }
  size_t size_bytes() const { return size_; }
  // Bytes the kernels stream per call: everything after the header.
  size_t weight_bytes() const { return size_ - sizeof(PackedHeader); }
  int64_t rows() const { return header().rows; }
  int64_t cols() const { return header().cols; }
  bool empty() const { return data_ == nullptr; }
  UnitLayout layout() const { return UnitLayout(header().layout); }

  // The (tile, group) block: params then bit-plane units.
  const uint8_t* block(int64_t tile, int64_t group) const {
    const PackedHeader& h = header();
    return tile_begin(tile) + tile_ratio_bytes(h) + group * h.block_bytes;
  }
  // HLQC: the ratio codebook ((B - 1) x 16 fp32) and the (tile, group) ratio codes
  // ((B - 1) x 16 bytes, see above).
  const float* ratio_codebook() const {
    return reinterpret_cast<const float*>(data_ + sizeof(PackedHeader));
  }
  const uint8_t* ratio_codes(int64_t tile, int64_t group) const {
    return tile_begin(tile) + group * 16 * (header().bits - 1);
  }

  // Layout sizes derived from a header (0 for the kinds without ratio codes).
  static int64_t codebook_bytes(const PackedHeader& h) {
    return h.kind == uint8_t(QuantKind::HLQC) ? int64_t(h.bits - 1) * 64 : 0;
  }
  static int64_t tile_ratio_bytes(const PackedHeader& h) {
    return h.kind == uint8_t(QuantKind::HLQC) ? (int64_t(h.n_groups) * 16 * (h.bits - 1) + 63) / 64 * 64
                                              : 0;
  }
  static int64_t tile_bytes(const PackedHeader& h) {
    return tile_ratio_bytes(h) + int64_t(h.n_groups) * h.block_bytes;
  }
  static size_t blob_bytes(const PackedHeader& h) {
    return sizeof(PackedHeader) + size_t(codebook_bytes(h) + h.n_tiles * tile_bytes(h));
  }

  // The codes back out (rows * cols, row-major), for tests.
  std::vector<uint8_t> unpack_codes() const;

 private:
  const uint8_t* tile_begin(int64_t tile) const {
    const PackedHeader& h = header();
    return data_ + sizeof(PackedHeader) + codebook_bytes(h) + tile * tile_bytes(h);
  }
  uint8_t* mutable_data() { return owned_.data(); }

  HugePageBuffer owned_;  // what pack() / synthetic() made (empty for a view)
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace elutq
