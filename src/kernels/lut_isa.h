// What each instruction set provides to the LUT matmul driver (lut_matmul.cpp): one table of
// function pointers per ISA, filled in that ISA's own file (lut_scalar.cpp, lut_avx2.cpp,
// lut_avx512.cpp, lut_neon.cpp). Internal to src/kernels.
#pragma once

#include <cstdint>

#include "kernels/packed_matrix.h"

namespace elutq {

// Activations prepared once per call and shared read-only by all threads.
//   int8 tables:  per quad 64 bytes: 4 tables x 16 int8 entries.
//   wide tables (int16, int12): per quad 128 bytes: the low parts of the 64 entries (unsigned:
//                 the entry's low_bits bits), then their high parts (signed):
//                 entry = (high << low_bits) + low. int16: low_bits 8 (0..255, high -128..127);
//                 int12: low_bits 6 (0..63, high -32..31). Each half is looked up with the same
//                 byte instruction as an int8 table.
// Tables are built by the ISA whose kernels read them; AVX2's store the signed bytes (int8 entries,
// int16 high parts) with 128 added and int12 high parts with 32 added (lut_avx2.cpp says why),
// every other ISA as above.
struct LutActivations {
  int64_t n = 0;                   // tokens
  int64_t n_groups = 0;            // weight groups per row
  int64_t quads_per_group = 0;     // group_padded / 16
  bool wide = false;               // int16 or int12 tables (see above)
  int low_bits = 0;                // wide tables: bits of the low part (8: int16, 6: int12)
  int64_t quad_bytes = 64;         // table bytes per quad: 64 (int8) or 128 (wide)
  const int8_t* tables = nullptr;  // (n, n_groups, quads_per_group, quad_bytes)
  const float* scale_half = nullptr;  // (n, n_groups): table scale / 2
  const float* sum_x = nullptr;       // (n, n_groups): sum of the group's activations
};

struct LutIsaKernels {
  // Tables for one token: xpad (n_chunks * 4) zero-padded per group, inv_scale (n_groups) the
  // factor that maps the group's largest |sum| to 127. Writes tables (n_chunks * 16). Every ISA
  // must produce the same entries as the scalar version (round to nearest even of
  // (((+-x0 +- x1) +- x2) +- x3) * inv_scale), stored as its kernels read them (above).
  void (*build_tables)(const float* xpad, const float* inv_scale, int64_t n_groups,
                       int64_t chunks_per_group, int8_t* tables);
  // The same for wide tables: inv_scale maps the largest |sum| to lut_wide_max (below), v = round
  // to nearest even of the same sum * inv_scale; writes (n_groups, chunks_per_group / 4, 128)
  // bytes: per quad the low parts (v & (2^low_bits - 1)) of its 64 entries, then the high parts
  // ((v - low) >> low_bits).
  void (*build_tables_wide)(const float* xpad, const float* inv_scale, int64_t n_groups,
                            int64_t chunks_per_group, int low_bits, int8_t* tables);
  // Y (n, rows) for tiles [tile_begin, tile_end); w is in lut_unit_layout(this ISA) and a.wide
  // says which tables. Float steps are fmas in the scalar order and integer sums are exact, so
  // every ISA gives bit-identical results.
  void (*matmul_tiles)(const PackedMatrix& w, const LutActivations& a, int64_t tile_begin,
                       int64_t tile_end, float* Y);
};

// Decode's software prefetch: the weight bytes this far ahead of the block in use are asked for
// while it works (without it the AVX2 GEMV stalled on its loads; docs/RESULTS.md).
constexpr int64_t kWeightPrefetchBytes = 2048;

// Prefetches (into L1) the `bytes` bytes at `from`, never past `end` (the packed blob's end).
// Internal linkage on purpose: each ISA's file, compiled with its own flags, keeps its own copy
// instead of sharing one the linker might take from a file built for a wider ISA.
// The bound is worked out once, before the loop. Keep it one line per turn: GCC 12 deleted an
// unrolled version once inlined (see docs/RESULTS.md, section "LUT kernels", the AVX2 decode
// notes); check `objdump -d` for prefetcht0 after changing it.
static inline void prefetch_weights(const uint8_t* from, int64_t bytes, const uint8_t* end) {
  const int64_t n = end - from < bytes ? end - from : bytes;
  for (int64_t off = 0; off < n; off += 64)
    __builtin_prefetch(from + off, 0, 3);  // read, keep in all levels: prefetcht0
}

// Decode reads a call's tile range as this many interleaved streams: step i takes tile i of each
// of kGemvStreams equal parts of the range, and the kernel walks those tiles group by group, so
// several weight streams per thread keep more reads in flight than one (AVX-512 and AVX2 GEMVs;
// measured in docs/RESULTS.md, "Decode in several streams" and the AVX2 unit order).
constexpr int kGemvStreams = 4;

// Steps of the stream walk over [begin, end), and the tiles of step i (fewer than kGemvStreams
// in the last steps when the range does not divide evenly): returns how many. Internal linkage
// for the same reason as prefetch_weights.
static inline int64_t gemv_stream_steps(int64_t begin, int64_t end) {
  return (end - begin + kGemvStreams - 1) / kGemvStreams;
}
static inline int gemv_stream_tiles(int64_t begin, int64_t end, int64_t i,
                                    int64_t tiles[kGemvStreams]) {
  const int64_t steps = gemv_stream_steps(begin, end);
  int n = 0;
  for (int k = 0; k < kGemvStreams && begin + k * steps + i < end; ++k)
    tiles[n++] = begin + k * steps + i;
  return n;
}

// The block decode reads after (step i, stream k, group g) of the walk over [begin, ...) in
// `steps` steps, with `tiles` and `streams` those of step i: stream k + 1 at g, else stream 0 at
// g + 1, else the first tile of step i + 1 at group 0; tile -1 past the range's end. A block is a
// tile's bytes for one group.
struct GemvBlockPos {
  int64_t tile;
  int64_t group;
};
static inline GemvBlockPos gemv_next_block(int64_t begin, int64_t steps, int64_t i,
                                           const int64_t* tiles, int streams, int k, int64_t g,
                                           int64_t n_groups) {
  if (k + 1 < streams) return {tiles[k + 1], g};
  if (g + 1 < n_groups) return {tiles[0], g + 1};
  if (i + 1 < steps) return {begin + i + 1, 0};
  return {-1, 0};
}

// Bytes of activation tables a prefill pass may keep hot: three quarters of this core's L2, at
// least 512 KiB (sysconf; computed once). lut_gemm runs the tokens in passes whose tables fit it,
// every thread over its share of the tiles per pass, so the tables are read from L2 and the
// weights once per pass; kernels may cut a pass into smaller token blocks of their own.
int64_t lut_table_budget_bytes();

// The largest wide table entry for groups of chunks_per_group 4-column chunks, entries of
// low_bits-bit low parts: 32767 for int16 (low_bits 8; 258x finer than int8's 127), 2047 for int12
// (low_bits 6; 16x finer). Per plane, group and row the kernels add up chunks_per_group entries in
// int32, and some paths add the low and high parts in separate int32 sums first (then
// (high_sum << low_bits) + low_sum): every partial sum is at most chunks * (max + 255) in size,
// which must stay below 2^31. 32767 is safe up to 65031 chunks (260124 columns per group); larger
// groups (only whole-row groups of huge matrices) get a proportionally smaller maximum.
inline int32_t lut_wide_max(int64_t chunks_per_group, int low_bits) {
  constexpr int64_t kInt32Max = 2147483647;
  const int64_t full = (int64_t(1) << (2 * low_bits - 1)) - 1;  // 32767 or 2047
  const int64_t bound = kInt32Max / (chunks_per_group > 0 ? chunks_per_group : 1) - 255;
  return int32_t(bound < full ? bound : full);
}

// HLQC: the plane ratios of the 32 rows of block (tile, g), row order, ratio[b][r] for b = 1..B-1.
// Every ISA forms s_b = s_0 * ratio (one fp32 product), so all stay bit-identical.
inline void hlqc_block_ratios(const PackedMatrix& w, int64_t tile, int64_t g,
                              float ratio[4][kLutTileRows]) {
  const int B = w.header().bits;
  const uint8_t* rc = w.ratio_codes(tile, g);  // (B - 1, 16): row r%16, nibble r/16
  const float* cb = w.ratio_codebook();        // (B - 1, 16)
  for (int b = 1; b < B; ++b)
    for (int r = 0; r < kLutTileRows; ++r)
      ratio[b][r] = cb[(b - 1) * 16 + ((rc[(b - 1) * 16 + r % 16] >> (r / 16 * 4)) & 15)];
}

const LutIsaKernels& lut_kernels_scalar();
const LutIsaKernels& lut_kernels_avx2();
const LutIsaKernels& lut_kernels_avx512();
const LutIsaKernels& lut_kernels_neon();

}  // namespace elutq
